"""Weight constraints with Keras's names, defaults and formulas (``keras.constraints``).

A constraint projects a weight after each optimizer step (``fit`` calls
``Module.apply_constraints()`` right after ``optimizer.step()``, as Keras's optimizers apply a
variable's constraint after its update). With n = ‖w‖₂ over ``axis`` (kept), ε = 1e-7:

    MaxNorm(max_value=2, axis=0)                      w ← w · clip(n, 0, max) / (ε + n)
    NonNeg()                                          w ← max(w, 0)
    UnitNorm(axis=0)                                  w ← w / (ε + n)
    MinMaxNorm(min_value=0, max_value=1, rate=1, axis=0)
                                  w ← w · (rate · clip(n, min, max) + (1 − rate) · n) / (ε + n)

axis=0 (Keras's default): for a Dense kernel (d, units) each unit's incoming weight vector; for a
MultiHeadAttention kernel (d, H, k) each (head, feature) column. A constraint maps an array (NumPy
or CuPy, on the weight's device) to an array of the same shape; layers take them as
``kernel_constraint=`` / ``bias_constraint=`` / ... by instance, class or name ("max_norm",
"non_neg", "unit_norm", "min_max_norm", or the class names), or any callable.
"""
from .. import backend
from .module import resolve_identifier

__all__ = ["Constraint", "MaxNorm", "NonNeg", "UnitNorm", "MinMaxNorm", "max_norm", "non_neg",
           "unit_norm", "min_max_norm", "get"]

_EPS = 1e-7


def _norms(w, axis):
    xp = backend.get_array_module(w)
    axis = tuple(axis) if isinstance(axis, list) else axis          # Keras accepts a list of axes
    return xp.sqrt(xp.sum(w * w, axis=axis, keepdims=True))


class Constraint:
    """Base class: ``__call__(w)`` returns the projected array (here: w unchanged)."""

    def __call__(self, w):
        return w

    def get_config(self):
        return {}

    def __repr__(self):
        return f"{type(self).__name__}({', '.join(f'{k}={v}' for k, v in self.get_config().items())})"


class MaxNorm(Constraint):
    """Rescale so that ‖w‖₂ over ``axis`` ≤ ``max_value``: w · clip(n, 0, max) / (ε + n)."""

    def __init__(self, max_value=2, axis=0):
        self.max_value, self.axis = max_value, axis

    def __call__(self, w):
        xp = backend.get_array_module(w)
        n = _norms(w, self.axis)
        return (w * (xp.clip(n, 0, self.max_value) / (_EPS + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"max_value": self.max_value, "axis": self.axis}


class NonNeg(Constraint):
    """w ← max(w, 0)."""

    def __call__(self, w):
        xp = backend.get_array_module(w)
        return xp.maximum(w, 0)


class UnitNorm(Constraint):
    """w ← w / (ε + ‖w‖₂ over ``axis``)."""

    def __init__(self, axis=0):
        self.axis = axis

    def __call__(self, w):
        return (w / (_EPS + _norms(w, self.axis))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"axis": self.axis}


class MinMaxNorm(Constraint):
    """Norms over ``axis`` pulled into [min_value, max_value] at ``rate`` (1: exactly)."""

    def __init__(self, min_value=0.0, max_value=1.0, rate=1.0, axis=0):
        self.min_value, self.max_value, self.rate, self.axis = min_value, max_value, rate, axis

    def __call__(self, w):
        xp = backend.get_array_module(w)
        n = _norms(w, self.axis)
        desired = self.rate * xp.clip(n, self.min_value, self.max_value) + (1 - self.rate) * n
        return (w * (desired / (_EPS + n))).astype(w.dtype, copy=False)

    def get_config(self):
        return {"min_value": self.min_value, "max_value": self.max_value, "rate": self.rate, "axis": self.axis}


max_norm, non_neg, unit_norm, min_max_norm = MaxNorm, NonNeg, UnitNorm, MinMaxNorm

_NAMES = {"maxnorm": MaxNorm, "max_norm": MaxNorm, "nonneg": NonNeg, "non_neg": NonNeg,
          "unitnorm": UnitNorm, "unit_norm": UnitNorm, "minmaxnorm": MinMaxNorm,
          "min_max_norm": MinMaxNorm, "constraint": Constraint}


def get(identifier):
    """A constraint from None, a name, a class, an instance or a callable (``keras.constraints.get``)."""
    return resolve_identifier(identifier, _NAMES, "constraint")
