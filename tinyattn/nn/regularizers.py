"""Weight and activity regularizers with Keras's names, defaults and formulas (``keras.regularizers``).

    L1(l1=0.01)            R(w) = l1 · Σ |w|
    L2(l2=0.01)            R(w) = l2 · Σ w²
    L1L2(l1=0.0, l2=0.0)   R(w) = l1 · Σ |w| + l2 · Σ w²

A regularizer maps a Tensor (any shape) to a scalar Tensor, differentiably. Layers take them as
``kernel_regularizer=`` / ``bias_regularizer=`` / ``embeddings_regularizer=`` / ... (by instance, by
class, by name — "l1", "l2", "l1_l2"/"l1l2", "L1", ... — or any callable) and
``activity_regularizer=`` (applied to the layer's output, divided by its batch size, as Keras).
``Module.regularization_losses()`` (Keras's ``layer.losses``) lists the penalties; ``fit`` adds
their sum to the loss.
"""
import math

from .. import backend
from .module import resolve_identifier
from ..autograd import Tensor
from .. import functions as F

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get"]


def _factor(value, name):
    if isinstance(value, bool) or not isinstance(value, (float, int)) or math.isinf(value) \
            or math.isnan(value) or value < 0:
        raise ValueError(f"Invalid value for argument {name}: expected a non-negative float. "
                         f"Received: {name}={value!r}")
    return float(value)


class Regularizer:
    """Base class: ``__call__(w)`` returns the penalty, a scalar Tensor (0 here)."""

    def __call__(self, x):
        return _zero(x)

    def get_config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.get_config().items())})"


def _zero(x):
    """A 0-d zero of x's dtype on x's device (no host scalar beside device data)."""
    data = x.data if isinstance(x, Tensor) else x
    return Tensor(backend.get_array_module(data).zeros((), dtype=data.dtype))


class L1(Regularizer):
    """R(w) = l1 · Σ|w| (Keras ``L1``, l1 = 0.01 by default)."""

    def __init__(self, l1=0.01):
        self.l1 = _factor(l1, "l1")

    def __call__(self, x):
        return F.abs(x).sum() * self.l1

    def get_config(self):
        return {"l1": self.l1}


class L2(Regularizer):
    """R(w) = l2 · Σ w² (Keras ``L2``, l2 = 0.01 by default)."""

    def __init__(self, l2=0.01):
        self.l2 = _factor(l2, "l2")

    def __call__(self, x):
        return (x * x).sum() * self.l2

    def get_config(self):
        return {"l2": self.l2}


class L1L2(Regularizer):
    """R(w) = l1 · Σ|w| + l2 · Σ w² (Keras ``L1L2``, both 0 by default)."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1, self.l2 = _factor(l1, "l1"), _factor(l2, "l2")

    def __call__(self, x):
        out = _zero(x)
        if self.l1:
            out = out + F.abs(x).sum() * self.l1
        if self.l2:
            out = out + (x * x).sum() * self.l2
        return out

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


l1, l2, l1_l2 = L1, L2, L1L2          # Keras's lower-case aliases

_NAMES = {"l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": L1L2, "regularizer": Regularizer}


def get(identifier):
    """A regularizer from None, a name ("l1", "l2", "l1_l2", "L1", ...), a class, an instance or a
    callable (returned as is), as ``keras.regularizers.get``."""
    return resolve_identifier(identifier, _NAMES, "regularizer")
