"""Neural-network functions: softmax, log_softmax, dropout, embedding, one_hot.
"""
import numpy as np

from ..autograd import Function, Tensor, apply
from .. import backend
from .elementwise import Exp
from .shape import GetItemGrad


class Softmax(Function):
    """y = softmax(x) along ``axis``: yᵢ = e^(xᵢ − m) / Σⱼ e^(xⱼ − m), m = max x (stable).

    Fused backward (one pass, no Jacobian): gx = y ⊙ (gy − Σ_axis gy ⊙ y).
    """

    def __init__(self, axis=-1):
        self.axis = axis

    def forward(self, x):
        xp = backend.get_array_module(x)
        y = x - x.max(axis=self.axis, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=self.axis, keepdims=True)
        return y

    def backward(self, gy):
        y = self.output_values[0]
        gx = gy * y
        s = gx.sum(axis=self.axis, keepdims=True)
        if isinstance(gx, Tensor):
            return gx - y * s
        gx -= y * s                      # fast path: in place, no extra temporary
        return gx


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
        self.mask = (keep >= self.p).astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.p))
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
    """(...) integer indices -> (..., num_classes) with a 1 at each index (no gradient)."""
    idx = indices.data if isinstance(indices, Tensor) else indices
    xp = backend.get_array_module(idx)
    idx = xp.asarray(idx).astype(np.int64)
    return Tensor(xp.eye(num_classes, dtype=dtype)[idx])
