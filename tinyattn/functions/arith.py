"""Arithmetic: add, sub, mul, div, neg, pow, matmul.

Broadcasting is allowed everywhere; each backward returns the gradient at the *broadcast* shape
and the engine (``autograd.sum_to``) sums it back to each input's shape, once, for every op.
"""
import numpy as np

from ..autograd import Function, Tensor, apply
from .. import backend, parallel
from .shape import ExpandDims


class Add(Function):
    """y = a + b.   dy/da = 1, dy/db = 1."""

    def forward(self, a, b):
        return a + b

    def backward(self, gy):
        return gy, gy


class Sub(Function):
    """y = a - b.   dy/da = 1, dy/db = -1."""

    def forward(self, a, b):
        return a - b

    def backward(self, gy):
        return gy, -gy


class Mul(Function):
    """y = a ⊙ b.   ga = gy ⊙ b, gb = gy ⊙ a."""

    def forward(self, a, b):
        return a * b

    def backward(self, gy):
        a, b = self.inputs
        return gy * b, gy * a


class Div(Function):
    """y = a / b.   ga = gy / b, gb = -gy ⊙ a / b².  Integer / integer is float32 (PyTorch's true
    division into the default dtype; NumPy would give float64)."""

    def forward(self, a, b):
        y = a / b
        if y.dtype == np.float64 and a.dtype.kind != "f" and b.dtype.kind != "f":
            y = y.astype(np.float32)
        return y

    def backward(self, gy):
        a, b = self.inputs
        ga = gy / b
        return ga, -ga * a / b


class Neg(Function):
    """y = -x.   gx = -gy."""

    def forward(self, x):
        return -x

    def backward(self, gy):
        return -gy


class PowScalar(Function):
    """y = x ** c for a constant c.   gx = gy ⊙ c x^(c-1);  c = 0: gx = 0 (PyTorch's rule; the
    formula would give 0 · 0⁻¹ = NaN at x = 0). At x = 0 the other exponents give what the formula
    gives, as in PyTorch: 0 for c ≥ 1, +inf for 0 < c < 1 (x**0.5), -inf for c = -1.
    An integer x with a float c gives float32 (PyTorch), an integer c keeps x's dtype."""

    def __init__(self, c):
        self.c = c

    def forward(self, x):
        if x.dtype.kind != "f" and isinstance(self.c, float):
            x = x.astype(np.float32)
        return x ** self.c

    def backward(self, gy):
        if self.c == 0:
            return gy * 0.0
        x, = self.inputs
        return gy * (x ** (self.c - 1)) * self.c


class Pow(Function):
    """y = a ** b (tensor exponent).   ga = gy ⊙ b a^(b-1),  gb = gy ⊙ y ⊙ log a.

    PyTorch's values where the formulas give 0 · ∞ = NaN: ga = 0 where a = 0 and b = 0, and gb = 0
    where a = 0 and b ≥ 0 (y = 0 or 1 there and log 0 = −∞)."""

    def forward(self, a, b):
        return a ** b

    def backward(self, gy):
        from .elementwise import Log, Where
        a, b = self.inputs
        a0, b0 = self._inputs[0].data, self._inputs[1].data
        y, = self.output_values
        ga = gb = None
        if self._inputs[0].requires_grad:
            ga = gy * b * a ** (b - 1)
            zero = (b0 == 0) & (a0 == 0)           # 0 · 0⁻¹: only there (keeps d²/db da elsewhere)
            if zero.any():
                ga = apply(Where(zero), 0.0, ga)
        if self._inputs[1].requires_grad:
            zero = (a0 == 0) & (b0 >= 0)
            if zero.any():                          # log 1 = 0 stands in where the answer is 0
                gb = apply(Where(zero), 0.0, gy * y * apply(Log(), apply(Where(zero), 1.0, a)))
            else:
                gb = gy * y * apply(Log(), a)
        return ga, gb


class MatMul(Function):
    """y = a @ b with NumPy's rules: (..., m, k) @ (..., k, n) -> (..., m, n), batch dims broadcast;
    a 1-D ``a`` is a row (k,) and a 1-D ``b`` a column (k,), that axis dropped from y.

    ga = gy @ bᵀ,  gb = aᵀ @ gy   (transposes on the last two axes; batch axes summed by the engine).
    When b is one matrix shared by a stack a (B, m, k) — a layer's weight — gb = Σ_batch aᵀ gy is
    computed as ONE (k, B·m) @ (B·m, n) product instead of B small ones and a sum.
    """

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: operands must be at least 1-D, got shapes {a.shape} and {b.shape}")
        ka, kb = a.shape[-1], (b.shape[-2] if b.ndim > 1 else b.shape[0])
        if ka != kb:
            raise ValueError(f"matmul: {tuple(a.shape)} @ {tuple(b.shape)}: inner dimensions {ka} and {kb} differ")
        return _matmul(a, b)

    def backward(self, gy):
        a, b = self.inputs
        return _matmul_backward(a, b, gy, self._inputs[0].requires_grad, self._inputs[1].requires_grad)


def _matmul_backward(a, b, gy, need_a, need_b):
    """(ga, gb) of y = a @ b (MatMul's formulas; arrays, or Tensors under create_graph)."""
    if a.ndim == 1 and b.ndim == 1:        # dot product: y is a scalar
        return gy * b, gy * a
    a2 = a.reshape(1, -1) if a.ndim == 1 else a
    b2 = b.reshape(-1, 1) if b.ndim == 1 else b
    if a.ndim == 1:
        gy = apply(ExpandDims(-2), gy)
    if b.ndim == 1:
        gy = apply(ExpandDims(-1), gy)
    ga = apply(MatMul(), gy, b2.swapaxes(-1, -2)) if need_a else None
    gb = None
    if need_b:
        if b2.ndim == 2 and a2.ndim > 2:   # shared weight: one big GEMM over the whole stack
            k, n = a2.shape[-1], gy.shape[-1]
            gb = apply(MatMul(), a2.reshape(-1, k).swapaxes(0, 1), gy.reshape(-1, n))
        else:
            gb = apply(MatMul(), a2.swapaxes(-1, -2), gy)
    if a.ndim == 1 and ga is not None:
        ga = ga.squeeze(-2)
    if b.ndim == 1 and gb is not None:
        gb = gb.squeeze(-1)
    return ga, gb


class Linear(Function):
    """y = x @ W + b as one node (a Dense layer's affine map; textbook form: ``x @ W + b``, two nodes).

        x (..., k),  W (k, n),  b (n,) (anything broadcastable to y),  y (..., n)
        gx = gy @ Wᵀ,  gW = xᵀ gy (one GEMM over the flattened stack),  gb = gy (the engine sums it
        to b's shape)

    Forward adds b in place into the fresh product (no second array of y's size); backward is
    MatMul's and Add's, so results are bit-identical to ``x @ W + b``. Double backward works (the
    same formulas on Tensors).
    """

    def forward(self, x, w, b):
        if x.ndim == 0 or w.ndim != 2:
            raise ValueError(f"linear: x must be at least 1-D and W 2-D (k, n), got shapes {x.shape} and {w.shape}")
        if x.shape[-1] != w.shape[0]:
            raise ValueError(f"linear: {tuple(x.shape)} @ {tuple(w.shape)}: inner dimensions "
                             f"{x.shape[-1]} and {w.shape[0]} differ")
        y = _matmul(x, w)
        try:
            shape = np.broadcast_shapes(y.shape, b.shape)
        except ValueError:
            raise ValueError(f"linear: bias of shape {tuple(b.shape)} does not broadcast to the product's "
                             f"shape {tuple(y.shape)}; give b shape ({w.shape[1]},)") from None
        if shape == y.shape and np.result_type(y.dtype, b.dtype) == y.dtype:
            if b.ndim <= 1 and parallel.active(y):
                parallel.rows(_add_, y, b)     # large: row blocks on the pool (same bits)
            else:
                y += b                         # y is the fresh product (or a view of it): ours alone
            return y
        return y + b

    def backward(self, gy):
        x, w, _ = self.inputs
        ga, gw = _matmul_backward(x, w, gy, self._inputs[0].requires_grad, self._inputs[1].requires_grad)
        return ga, gw, gy if self._inputs[2].requires_grad else None


def _add_(y, b):
    """y += b in place (one block of rows)."""
    y += b


def _matmul(a, b):
    """Array a @ b, steering NumPy to its fast paths: a stack (..., m, k) times one matrix (k, n) as
    one (… · m, k) @ (k, n) GEMM (NumPy would loop over the stack), and an inner size k = 1 as a
    broadcast product a * b (an outer product, which BLAS does poorly in small batches). A large
    single product (≥ 2²⁷ multiply-adds: a Transformer's projections) runs on the pool
    (:func:`tinyattn.parallel.matmul`: BLAS held at one thread, so that its threads, which busy-wait
    after a GEMM, never take the cores the pool's next pass needs)."""
    xp = backend.get_array_module(a, b)
    if a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == 1:
        return a * b
    if b.ndim == 2 and a.ndim > 2:
        return parallel.matmul(a.reshape(-1, a.shape[-1]), b).reshape(a.shape[:-1] + (b.shape[-1],))
    if a.ndim == 2 and b.ndim == 2:
        return parallel.matmul(a, b)
    return xp.matmul(a, b)


def add(a, b):
    return Add()(a, b)


def sub(a, b):
    return Sub()(a, b)


def mul(a, b):
    return Mul()(a, b)


def div(a, b):
    return Div()(a, b)


def neg(x):
    return Neg()(x)


def pow(a, b):
    """a ** b; a Python-number exponent is a constant, a Tensor exponent gets a gradient too."""
    if isinstance(b, (int, float, np.integer, np.floating)):   # Python numbers stay weak: float32
        return PowScalar(int(b) if isinstance(b, (int, np.integer)) else float(b))(a)   # stays float32
    return Pow()(a, b)


def matmul(a, b):
    return MatMul()(a, b)


def linear(x, w, b=None):
    """y = x @ W + b in one graph node (:class:`Linear`); ``b=None``: just x @ W."""
    return MatMul()(x, w) if b is None else Linear()(x, w, b)


def _rev(cls):
    return lambda self, other: cls()(other, self)


def install(T):
    """Give Tensor its Python operators (``ndarray op Tensor`` lands in the reflected ones)."""
    T.__add__ = lambda self, o: Add()(self, o)
    T.__radd__ = _rev(Add)
    T.__sub__ = lambda self, o: Sub()(self, o)
    T.__rsub__ = _rev(Sub)
    T.__mul__ = lambda self, o: Mul()(self, o)
    T.__rmul__ = _rev(Mul)
    T.__truediv__ = lambda self, o: Div()(self, o)
    T.__rtruediv__ = _rev(Div)
    T.__neg__ = lambda self: Neg()(self)
    T.__pos__ = lambda self: self
    T.__pow__ = lambda self, o: pow(self, o)
    T.__rpow__ = _rev(Pow)
    T.__matmul__ = lambda self, o: MatMul()(self, o)
    T.__rmatmul__ = _rev(MatMul)
    T.matmul = T.__matmul__


__all__ = ["add", "sub", "mul", "div", "neg", "pow", "matmul", "linear", "Tensor"]
