"""Neural-network functions: softmax (plain and masked), log_softmax, dropout, embedding, one_hot.
"""
import numpy as np

from ..autograd import Function, Tensor, apply
from .. import backend, parallel
from .elementwise import Exp
from .shape import GetItemGrad


def softmax_(s, drop=None, axis=-1):
    """Softmax of the array ``s`` along ``axis``, IN PLACE (the one kernel every softmax here uses).

    ``drop`` (boolean, broadcastable; True = masked out) entries become exactly 0, and a row whose
    entries are all masked becomes all 0 (never 0/0 = NaN). Returns ``s``.

    Large NumPy arrays softmaxed along their last axis run as row chunks on the thread pool
    (``tinyattn.parallel``): every row is still reduced whole, so the result is bit-identical.
    """
    if (axis == -1 or axis == s.ndim - 1) and parallel.active(s, work=4):
        parallel.rows(_softmax_rows, s, drop, work=4)
        return s
    return _softmax_rows(s, drop, axis)


def row_sums(a):
    """Σ over the last axis of array ``a``, kept as an axis of size 1: (…, k) → (…, 1). Through
    ``einsum``, whose one SIMD pass is ~3.5× ``np.sum``'s on rows of 128 (the softmax and LayerNorm
    kernels' row sums). NumPy or CuPy."""
    return backend.get_array_module(a).einsum("...k->...", a)[..., None]


def _softmax_rows(s, drop, axis=-1):
    xp = backend.get_array_module(s)
    if drop is not None:
        xp.copyto(s, -xp.inf, where=drop)
    m = s.max(axis=axis, keepdims=True)
    if drop is not None:
        m[~xp.isfinite(m)] = 0             # a fully masked row: any finite shift will do
    s -= m
    xp.exp(s, out=s)                       # exp(-inf) = 0 at masked entries
    if axis in (-1, s.ndim - 1):
        z = row_sums(s)
    else:
        z = s.sum(axis=axis, keepdims=True)
    if drop is not None:
        z[z == 0] = 1                      # empty rows stay 0 instead of 0/0
    xp.reciprocal(z, out=z)
    s *= z
    return s


def softmax_grad_(g, y, axis=-1):
    """g ← y ⊙ (g − Σ_axis g ⊙ y), IN PLACE on the array ``g`` (the softmax backward; ``y`` the
    softmax output, same shape). Returns ``g``. Large arrays: row chunks on the pool, bit-identical."""
    if (axis == -1 or axis == g.ndim - 1) and g.shape == y.shape and parallel.active(g, work=3):
        parallel.rows(_softmax_grad_rows, g, y, work=3)
        return g
    return _softmax_grad_rows(g, y, axis)


def _softmax_grad_rows(g, y, axis=-1):
    xp = backend.get_array_module(g, y)
    r = xp.einsum("...k,...k->...", g, y) if axis in (-1, g.ndim - 1) and g.shape == y.shape \
        else (g * y).sum(axis=axis)
    g -= xp.expand_dims(r, axis)
    g *= y
    return g


class Softmax(Function):
    """y = softmax(x) along ``axis``: yᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m), m = max x (stable).

    Fused backward (one pass, no Jacobian): gx = y ⊙ (gy − Σ_axis gy ⊙ y).
    """

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        return softmax_(x.copy(), None, self.axis)

    def backward(self, gy):
        y = self.output_values[0]
        if not self._as_tensors and gy.shape == y.shape:
            return softmax_grad_(gy.copy(), y, self.axis)   # in place on a copy; pool for large arrays
        gx = gy * y
        s = gx.sum(axis=self.axis, keepdims=True)
        if isinstance(gx, Tensor):
            return gx - y * s
        gx -= y * s                      # fast path: in place, no extra temporary
        return gx


class MaskedSoftmax(Softmax):
    """y = softmax over the kept entries of x along ``axis``; masked entries get exactly 0.

    y_i = m_i e^(x_i − c) / Σ_j m_j e^(x_j − c),  c = max over kept x (0 if none kept), ``mask`` m
    boolean (True = keep, broadcastable to x; None keeps all), and a row with no kept entry gives
    y = 0. The backward is Softmax's fused one, y ⊙ (gy − Σ gy ⊙ y), which is already right here:
    masked and empty-row entries have y = 0, so their gradient is 0.
    """

    def __init__(self, mask=None, axis=-1):
        super().__init__(axis)
        self.mask = mask

    def forward(self, x):
        return softmax_(x.copy(), None if self.mask is None else ~self.mask, self.axis)


class LogSoftmax(Function):
    """y = x − logsumexp(x) along ``axis``.   gx = gy − softmax(x) ⊙ Σ_axis gy,  softmax(x) = e^y."""

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.get_array_module(x)
        m = x.max(axis=self.axis, keepdims=True)
        y = x - m
        y -= xp.log(xp.exp(y).sum(axis=self.axis, keepdims=True))
        return y

    def backward(self, gy):
        y = self.output_values[0]
        return gy - apply(Exp(), y) * gy.sum(axis=self.axis, keepdims=True)


class Dropout(Function):
    """y = x ⊙ m / (1 − p), m ~ Bernoulli(1 − p) per element (inverted dropout: E[y] = x).
    gx = gy ⊙ m / (1 − p), the same mask."""

    def __init__(self, p):
        self.p = p

    def forward(self, x):
        xp = backend.get_array_module(x)
        keep = backend.rng(xp).random(x.shape, dtype=np.float32 if x.dtype == np.float32 else np.float64)
        self.mask = (keep >= self.p).astype(x.dtype) * float(1.0 / (1.0 - self.p))   # a Python number: weak
        return x * self.mask

    def backward(self, gy):
        return gy * self.mask


class Embedding(Function):
    """y = W[ids]: ids (...) integers, W (V, d) -> y (..., d).
    gW = zeros (V, d) with gy rows added at ids (repeated ids accumulate)."""

    def __init__(self, ids):
        self.ids = ids

    def forward(self, w):
        if self.ids.size and (int(self.ids.min()) < 0 or int(self.ids.max()) >= w.shape[0]):
            raise IndexError(f"embedding: ids must lie in [0, {w.shape[0]}), got range "
                             f"[{int(self.ids.min())}, {int(self.ids.max())}]")
        return w[self.ids]

    def backward(self, gy):
        w = self._inputs[0]
        return apply(GetItemGrad(self.ids, w.shape, w.dtype), gy)


def softmax(x, axis=-1):
    return Softmax(axis)(x)


def log_softmax(x, axis=-1):
    return LogSoftmax(axis)(x)


def dropout(x, p=0.5, training=True):
    """Inverted dropout; the identity when ``training`` is False or p == 0."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: rate must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x if isinstance(x, Tensor) else Tensor(x)
    return Dropout(p)(x)


def embedding(ids, weight):
    """Look up rows of ``weight`` (V, d) at integer ``ids`` (any shape) -> (*ids.shape, d)."""
    ids = ids.data if isinstance(ids, Tensor) else ids
    xp = backend.get_array_module(weight.data if isinstance(weight, Tensor) else weight)
    ids = xp.asarray(ids)
    if ids.dtype.kind not in "iu":
        if ids.dtype.kind == "f" and ids.size and bool((ids == xp.round(ids)).all()):
            ids = ids.astype(np.int64)
        else:
            raise TypeError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    return Embedding(ids)(weight)


def one_hot(indices, num_classes, dtype=np.float32):
    """(...) integer indices in [0, num_classes) -> (..., num_classes) with a 1 at each index (no
    gradient). A negative or too-large index is an error (not NumPy's wrap-around: -1 would silently
    become the last class), and so are non-integer values (1.5 is not a class)."""
    idx = indices.data if isinstance(indices, Tensor) else indices
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(f"one_hot: num_classes must be a positive integer, got {num_classes!r}")
    xp = backend.get_array_module(idx)
    idx = xp.asarray(idx)
    if idx.dtype.kind not in "iub":
        if idx.dtype.kind == "f" and (idx.size == 0 or bool((idx == xp.round(idx)).all())):
            idx = idx.astype(np.int64)
        else:
            raise TypeError(f"one_hot: indices must be integers, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    if idx.size:
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= num_classes:
            raise IndexError(f"one_hot: indices must lie in [0, {num_classes}) for num_classes="
                             f"{num_classes}, got values in [{lo}, {hi}] (shape {tuple(idx.shape)})")
    return Tensor(xp.eye(num_classes, dtype=dtype)[idx])
