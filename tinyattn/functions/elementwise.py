"""Elementwise functions: exp, log, sqrt, abs, tanh, sigmoid, relu, leaky_relu, gelu, erf, softplus,
clip, maximum, minimum, where, astype. Shapes: y has x's shape (binary ones broadcast).

Masks (relu, clip, abs, maximum ...) are saved as constant arrays in forward: their derivative is
zero almost everywhere, so ``gy * mask`` is also right under ``create_graph``.
"""
import math

import numpy as np

from ..autograd import Function, Tensor, apply
from .. import backend, parallel


def _big(a):
    """True for a NumPy array large enough for the thread pool (tinyattn.parallel)."""
    return parallel.active(a)


def _fresh(a, *others):
    """An uninitialised output for a kernel over ``a`` (dtype: NumPy's result type of the inputs)."""
    return np.empty(a.shape, dtype=np.result_type(a, *others))


def _floating(x):
    """Integer/boolean input to a transcendental function computes in float32, as PyTorch (NumPy
    would give float64): exp(int_tensor) is float32."""
    return x if x.dtype.kind == "f" else x.astype(np.float32)


class Exp(Function):
    """y = eˣ.   gx = gy ⊙ y."""

    def forward(self, x):
        x = _floating(x)
        if _big(x):                             # large: row chunks on the pool (same ufunc, same bits)
            y = _fresh(x)
            parallel.rows(lambda a, o: np.exp(a, out=o), x, y, tail=0)
            return y
        return backend.get_array_module(x).exp(x)

    def backward(self, gy):
        y = self.output_values[0]
        if not self._as_tensors and _big(gy) and gy.shape == y.shape:
            gx = _fresh(gy, y)
            parallel.rows(lambda g, a, o: np.multiply(g, a, out=o), gy, y, gx, tail=0)
            return gx
        return gy * y


class Log(Function):
    """y = ln x.   gx = gy / x."""

    def forward(self, x):
        x = _floating(x)
        return backend.get_array_module(x).log(x)

    def backward(self, gy):
        return gy / self.inputs[0]


class Sqrt(Function):
    """y = √x.   gx = gy / (2y)."""

    def forward(self, x):
        x = _floating(x)
        return backend.get_array_module(x).sqrt(x)

    def backward(self, gy):
        return gy / (self.output_values[0] * 2)


class Tanh(Function):
    """y = tanh x.   gx = gy ⊙ (1 − y²)."""

    def forward(self, x):
        x = _floating(x)
        if _big(x):
            y = _fresh(x)
            parallel.rows(lambda a, o: np.tanh(a, out=o), x, y, tail=0)
            return y
        return backend.get_array_module(x).tanh(x)

    def backward(self, gy):
        y = self.output_values[0]
        if not self._as_tensors and _big(gy) and gy.shape == y.shape:
            gx = _fresh(gy, y)
            parallel.rows(_tanh_grad, gy, y, gx, tail=0)
            return gx
        return gy * (1 - y * y)


def _tanh_grad(g, y, o):
    """o = g ⊙ (1 − y²), the same operations in the same order as the serial form."""
    t = y * y
    np.subtract(1, t, out=t)
    np.multiply(g, t, out=o)


def _sigmoid(a, o):
    """o = ½ tanh(a/2) + ½."""
    np.multiply(a, 0.5, out=o)
    np.tanh(o, out=o)
    o *= 0.5
    o += 0.5


def _sigmoid_grad(g, y, o):
    """o = g ⊙ y ⊙ (1 − y)."""
    np.multiply(g, y, out=o)
    o *= 1 - y


class Sigmoid(Function):
    """y = σ(x) = 1 / (1 + e⁻ˣ) (computed as ½ tanh(x/2) + ½, stable for any x).   gx = gy ⊙ y(1 − y)."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        x = _floating(x)
        if _big(x):
            y = _fresh(x)
            parallel.rows(_sigmoid, x, y, tail=0)
            return y
        y = xp.tanh(x * 0.5)
        y *= 0.5
        y += 0.5
        return y

    def backward(self, gy):
        y = self.output_values[0]
        if not self._as_tensors and _big(gy) and gy.shape == y.shape:
            gx = _fresh(gy, y)
            parallel.rows(_sigmoid_grad, gy, y, gx, tail=0)
            return gx
        return gy * y * (1 - y)


class Masked(Function):
    """Base for y = f(x) whose derivative is a constant mask m (piecewise-linear f): gx = gy ⊙ m."""

    def backward(self, gy):
        return gy * self.mask


class ReLU(Masked):
    """y = max(x, 0), NaN kept (relu(NaN) = NaN, as PyTorch; relu(−inf) = 0).   m = [not x ≤ 0]
    (PyTorch's mask: 1 for x > 0 and for NaN, so a NaN stays visible in the gradient too)."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        off = x <= 0
        self.mask = ~off
        return xp.where(off, x.dtype.type(0), x)


class LeakyReLU(Masked):
    """y = x if x > 0 else αx.   m = 1 or α."""

    def __init__(self, slope):
        self.slope = slope

    def forward(self, x):
        xp = backend.get_array_module(x)
        self.mask = xp.where(x > 0, x.dtype.type(1), x.dtype.type(self.slope))
        return x * self.mask


class Abs(Masked):
    """y = |x|.   m = sign(x)."""

    def forward(self, x):
        self.mask = backend.get_array_module(x).sign(x)
        return x * self.mask


class Clip(Masked):
    """y = min(max(x, lo), hi).   m = [lo ≤ x ≤ hi]."""

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi

    def forward(self, x):
        xp = backend.get_array_module(x)
        lo = -np.inf if self.lo is None else self.lo
        hi = np.inf if self.hi is None else self.hi
        self.mask = (x >= lo) & (x <= hi)
        return xp.clip(x, lo, hi).astype(x.dtype, copy=False)


def _erf_array(x):
    xp = backend.get_array_module(x)
    if xp is not np:
        import cupyx.scipy.special as sp
        return sp.erf(x)
    try:
        from scipy.special import erf
        return erf(x).astype(x.dtype, copy=False)
    except ImportError:   # NumPy alone: exact, if slower
        return np.vectorize(math.erf, otypes=[x.dtype])(x)


class Erf(Function):
    """y = erf(x) = 2/√π ∫₀ˣ e^(−t²) dt.   gx = gy ⊙ 2/√π e^(−x²)."""

    def forward(self, x):
        return _erf_array(x)

    def backward(self, gy):
        x = self.inputs[0]
        return gy * apply(Exp(), -(x * x)) * (2 / math.sqrt(math.pi))


def _gelu(a, o):
    """o = a ⊙ (erf(a/√2) + 1) ⊙ ½ (GELU.forward's operations, in its order, on one block)."""
    o[...] = _erf_array(a * (1 / math.sqrt(2)))
    o += 1
    np.multiply(a, o, out=o)
    o *= 0.5


def _gelu_grad(g, x, o):
    """o = g ⊙ (Φ(x) + x φ(x)) (GELU.backward's operations on arrays, in its order, on one block)."""
    cdf = _erf_array(x * (1 / math.sqrt(2)))
    cdf += 1
    cdf *= 0.5
    pdf = x * x
    pdf *= -0.5
    np.exp(pdf, out=pdf)
    pdf *= 1 / math.sqrt(2 * math.pi)
    pdf *= x
    cdf += pdf
    np.multiply(g, cdf, out=o)


class GELU(Function):
    """y = x Φ(x), Φ the standard normal CDF = ½(1 + erf(x/√2)) (exact form, Keras/PyTorch default).
    gx = gy ⊙ (Φ(x) + x φ(x)),  φ(x) = e^(−x²/2)/√(2π)."""

    def forward(self, x):
        if _big(x) and x.dtype.kind == "f":
            y = _fresh(x)
            parallel.rows(_gelu, x, y, tail=0)
            return y
        return x * (_erf_array(x * (1 / math.sqrt(2))) + 1) * 0.5

    def backward(self, gy):
        x = self.inputs[0]
        if not self._as_tensors and _big(gy) and gy.shape == x.shape and x.dtype.kind == "f":
            gx = _fresh(gy, x)
            parallel.rows(_gelu_grad, gy, x, gx, tail=0)
            return gx
        cdf = (apply(Erf(), x * (1 / math.sqrt(2))) + 1) * 0.5
        pdf = apply(Exp(), x * x * -0.5) * (1 / math.sqrt(2 * math.pi))
        return gy * (cdf + x * pdf)


class Softplus(Function):
    """y = ln(1 + eˣ) (as logaddexp(0, x), stable).   gx = gy ⊙ σ(x)."""

    def forward(self, x):
        return backend.get_array_module(x).logaddexp(x.dtype.type(0), x)

    def backward(self, gy):
        return gy * apply(Sigmoid(), self.inputs[0])


class Where(Function):
    """y = a where cond else b (cond a constant boolean array, broadcast).   ga = gy⊙cond, gb = gy⊙¬cond."""

    def __init__(self, cond):
        self.cond = cond

    def forward(self, a, b):
        return backend.get_array_module(a, b).where(self.cond, a, b)

    def backward(self, gy):
        return gy * self.cond, gy * ~self.cond


class Maximum(Function):
    """y = max(a, b) elementwise, broadcast; NaN in either input gives NaN (PyTorch, np.maximum).

    PyTorch's gradient convention: ties share the gradient equally, and where y is NaN both inputs
    receive the full gradient:
        ga = gy ⊙ wa,  wa = 1 − [a < b] − ½[a = b]
        gb = gy ⊙ wb,  wb = 1 − [a > b] − ½[a = b]
    (so maximum(x, 0) at x = 0 sends half of gy to x; a NaN compares false both ways: wa = wb = 1).
    """
    less = True   # wa drops where a < b (maximum); Minimum flips it

    def forward(self, a, b):
        xp = backend.get_array_module(a, b)
        y = xp.maximum(a, b) if self.less else xp.minimum(a, b)
        if y.dtype.kind != "f":                 # integers and booleans: no gradient
            return y
        lo, hi = (a < b, a > b) if self.less else (a > b, a < b)
        tie = (a == b).astype(y.dtype)
        tie *= 0.5
        self.wa = (~lo).astype(y.dtype)       # 1 − [a < b] (True for NaN: compares false)
        self.wa -= tie
        self.wb = (~hi).astype(y.dtype)
        self.wb -= tie
        return y

    def backward(self, gy):
        return gy * self.wa, gy * self.wb


class Minimum(Maximum):
    """y = min(a, b) elementwise, broadcast; NaN in either input gives NaN (PyTorch, np.minimum).

    PyTorch's gradient convention: ties share the gradient equally, and where y is NaN both inputs
    receive the full gradient:
        ga = gy ⊙ wa,  wa = 1 − [a > b] − ½[a = b]
        gb = gy ⊙ wb,  wb = 1 − [a < b] − ½[a = b]
    """
    less = False


class Cast(Function):
    """y = x as another float dtype.   gx = gy cast back."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        self.src = x.dtype
        return x.astype(self.dtype)

    def backward(self, gy):
        return apply(Cast(self.src), gy)


def exp(x):
    return Exp()(x)


def log(x):
    return Log()(x)


def sqrt(x):
    return Sqrt()(x)


def abs(x):
    return Abs()(x)


def tanh(x):
    return Tanh()(x)


def sigmoid(x):
    return Sigmoid()(x)


def relu(x):
    return ReLU()(x)


def leaky_relu(x, negative_slope=0.01):
    return LeakyReLU(negative_slope)(x)


def gelu(x):
    return GELU()(x)


def erf(x):
    return Erf()(x)


def softplus(x):
    return Softplus()(x)


def clip(x, min=None, max=None):
    return Clip(min, max)(x)


def maximum(a, b):
    return Maximum()(a, b)


def minimum(a, b):
    return Minimum()(a, b)


def where(cond, a, b):
    """Elementwise ``a if cond else b``; ``cond`` is a boolean array or Tensor (no gradient)."""
    if isinstance(cond, Tensor):
        cond = cond.data                       # (not a getattr with a default: ndarray.data is a buffer)
    like = next((t.data for t in (a, b) if isinstance(t, Tensor)), None)
    xp = backend.get_array_module(like) if like is not None else backend.default_xp()
    return Where(xp.asarray(cond, dtype=bool))(a, b)


def astype(x, dtype):
    if x.dtype == np.dtype(dtype):
        return x
    return Cast(dtype)(x)
