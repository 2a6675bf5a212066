"""Reductions: sum, mean, var, max, min, logsumexp over an axis, a tuple of axes, or all (axis=None).

With ``keepdims=False`` the reduced axes vanish; backward first reshapes gy to the keepdims shape
``ks`` (1 on reduced axes), then broadcasts it back to x's shape.
"""
import numpy as np

from ..autograd import Function, apply, broadcast_to
from .. import backend
from .elementwise import Exp


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, int):
        axis = (axis,)
    return tuple(a % ndim for a in axis)


def _kshape(shape, axes):
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


class Reduction(Function):
    def __init__(self, axis=None, keepdims=False):
        self.axis, self.keepdims = axis, keepdims

    def _grad_up(self, g, shape):
        """gy at the keepdims shape, broadcast to x's shape."""
        ks = _kshape(shape, _axes(self.axis, len(shape)))
        return broadcast_to(g.reshape(ks), shape)


class Sum(Reduction):
    """y = Σ_axis x.   gx = broadcast(gy)."""

    def forward(self, x):
        return x.sum(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        return self._grad_up(gy, self._inputs[0].shape)


class Mean(Reduction):
    """y = (1/N) Σ_axis x, N the number of reduced elements.   gx = broadcast(gy) / N."""

    def forward(self, x):
        return x.mean(axis=self.axis, keepdims=self.keepdims)

    def backward(self, gy):
        shape = self._inputs[0].shape
        n = _count(shape, self.axis)
        return self._grad_up(gy, shape) * (1.0 / (n or 1))      # n = 0: an empty gradient


class Var(Reduction):
    """y = (1/(N − ddof)) Σ (x − x̄)².   gx = broadcast(gy) ⊙ 2(x − x̄)/(N − ddof)."""

    def __init__(self, axis=None, keepdims=False, ddof=0):
        super().__init__(axis, keepdims)
        self.ddof = ddof

    def forward(self, x):
        return x.var(axis=self.axis, keepdims=self.keepdims, ddof=self.ddof)

    def backward(self, gy):
        x = self.inputs[0]
        n = _count(x.shape, self.axis)
        centered = x - x.mean(axis=self.axis, keepdims=True)
        return self._grad_up(gy, x.shape) * centered * (2.0 / (n - self.ddof) if n != self.ddof else np.nan)


class Max(Reduction):
    """y = max_axis x.   gx = broadcast(gy) ⊙ [x = y] / (number of ties): PyTorch's ``amax``
    (and full ``max()``) convention.

    Ties share the gradient equally (max of [3, 1, 3]: gx = [½, 0, ½]). NaN propagates: a slice
    holding a NaN has y = NaN and, as in PyTorch's ``amax``, gx = NaN on that whole slice (no entry
    equals NaN, so the tie count is 0 and the gradient 0/0); the NaN is never hidden.
    """

    op = "max"

    def forward(self, x):
        y = getattr(x, self.op)(axis=self.axis, keepdims=True)
        mask = x == y
        with np.errstate(invalid="ignore", divide="ignore"):     # NaN slices: 0/0 = NaN, on purpose
            self.mask = mask / mask.sum(axis=self.axis, keepdims=True).astype(x.dtype)
        return y if self.keepdims else y.reshape(_reduced_shape(x.shape, self.axis))

    def backward(self, gy):
        return self._grad_up(gy, self._inputs[0].shape) * self.mask


class Min(Max):
    """y = min_axis x.   gx = broadcast(gy) ⊙ [x = y] / (number of ties), PyTorch's ``amin``
    convention: ties share the gradient equally; a slice with a NaN gives y = NaN and gx = NaN."""

    op = "min"


class LogSumExp(Reduction):
    """y = log Σ_axis eˣ (computed as m + log Σ e^(x−m), m = max x).   gx = broadcast(gy) ⊙ e^(x−y)."""

    def forward(self, x):
        xp = backend.get_array_module(x)
        m = x.max(axis=self.axis, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0).astype(x.dtype, copy=False)
        y = xp.log(xp.exp(x - m).sum(axis=self.axis, keepdims=True)) + m
        return y if self.keepdims else y.reshape(_reduced_shape(x.shape, self.axis))

    def backward(self, gy):
        x = self.inputs[0]
        y = self.output_values[0]
        ks = _kshape(x.shape, _axes(self.axis, x.ndim))
        return self._grad_up(gy, x.shape) * apply(Exp(), x - y.reshape(ks))


def _count(shape, axis):
    n = 1
    for a in _axes(axis, len(shape)):
        n *= shape[a]
    return n


def _reduced_shape(shape, axis):
    axes = _axes(axis, len(shape))
    return tuple(n for i, n in enumerate(shape) if i not in axes)


def sum(x, axis=None, keepdims=False):
    return Sum(axis, keepdims)(x)


def mean(x, axis=None, keepdims=False):
    return Mean(axis, keepdims)(x)


def var(x, axis=None, keepdims=False, ddof=0):
    return Var(axis, keepdims, ddof)(x)


def max(x, axis=None, keepdims=False):
    return Max(axis, keepdims)(x)


def min(x, axis=None, keepdims=False):
    return Min(axis, keepdims)(x)


def logsumexp(x, axis=None, keepdims=False):
    return LogSumExp(axis, keepdims)(x)
