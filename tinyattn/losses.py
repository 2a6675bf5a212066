"""Losses: Keras's formulas and reduction, written with tinyattn's differentiable functions.

Every loss is computed in two stages, exactly as Keras does it:

1. a *per-sample* loss ℓ, reducing only the last axis (the features / classes axis):

       y_true, y_pred (B, ..., D)  ──▶  ℓ (B, ...)

2. a *reduction* with optional sample weights w and mask m (Keras's ``sum_over_batch_size``):

       loss = Σ ℓ ⊙ w / size(ℓ)                          (no mask)
       loss = Σ ℓ ⊙ w ⊙ m / Σ m                          (with a mask: masked-out entries do not count)

   i.e. the weights are *not* normalized (a weight of 0.5 halves a sample's contribution; the
   divisor stays the number of loss entries), while the mask changes the divisor to the number of
   valid entries. This is ``keras.losses.Loss.__call__`` (Keras 3.15, checked in
   ``tests/reference/test_keras_losses.py``). PyTorch's ``reduction="mean"`` with ``weight=``
   divides by Σ w instead; use ``reduction="sum"`` and divide yourself for that.

Probability inputs are clipped to [ε, 1 − ε] with ε = 1e-7 like Keras, which keeps log finite but
zeroes the gradient of saturated predictions; the ``from_logits=True`` forms use softplus /
log-softmax and are exact and stable for logits of any size (±1e4 included). Prefer them.

All losses accept Tensors or arrays; ``y_true`` is cast to ``y_pred``'s dtype (float32 stays float32).
``y_pred`` (and ``sample_weight``, if it is a Tensor requiring grad) receive gradients.
"""
import numpy as np

from . import backend
from .autograd import Tensor
from . import functions as F
from .functions.masks import as_mask

__all__ = ["EPSILON", "mse", "mae", "mean_squared_error", "mean_absolute_error", "binary_crossentropy",
           "categorical_crossentropy", "sparse_categorical_crossentropy", "reduce_loss", "Loss",
           "MeanSquaredError", "MeanAbsoluteError", "BinaryCrossentropy", "CategoricalCrossentropy",
           "SparseCategoricalCrossentropy", "get"]

EPSILON = 1e-7
_REDUCTIONS = ("sum_over_batch_size", "mean", "sum", "none", None)


# -- helpers ------------------------------------------------------------------------------------------
def _pred(y_pred, name):
    t = y_pred if isinstance(y_pred, Tensor) else Tensor(backend.get_array_module(y_pred).asarray(y_pred))
    if t.dtype.kind != "f":
        raise TypeError(f"{name}: y_pred must be floating point, got dtype {t.dtype}")
    return t


def _true(y_true, y_pred):
    """y_true as an array on y_pred's device, in y_pred's dtype (labels are constants: no grad)."""
    a = y_true.data if isinstance(y_true, Tensor) else y_true
    xp = backend.get_array_module(y_pred.data)
    return xp.asarray(backend.to_device(np.asarray(a) if not hasattr(a, "shape") else a, y_pred.device),
                      dtype=y_pred.dtype)


def _same_rank(a_shape, b_shape):
    """Keras's squeeze_or_expand_to_same_rank, on shapes: returns the new (a_shape, b_shape).

    If the ranks differ by one and the longer one ends in a 1, that axis is squeezed (or, when the
    shorter one is 1-D, the shorter one gets a trailing 1): (B,) vs (B, 1) -> (B, 1) vs (B, 1).
    """
    a_shape, b_shape = tuple(a_shape), tuple(b_shape)
    if len(a_shape) == len(b_shape) + 1 and a_shape[-1] == 1:
        return (a_shape, b_shape + (1,)) if len(b_shape) == 1 else (a_shape[:-1], b_shape)
    if len(b_shape) == len(a_shape) + 1 and b_shape[-1] == 1:
        return (a_shape + (1,), b_shape) if len(a_shape) == 1 else (a_shape, b_shape[:-1])
    return a_shape, b_shape


def _align_pair(name, y_true, y_pred):
    """Apply the rank rule to (array y_true, Tensor y_pred) and check the shapes then match."""
    ts, ps = _same_rank(y_true.shape, y_pred.shape)
    y_true = y_true.reshape(ts)
    if ps != y_pred.shape:
        y_pred = y_pred.reshape(ps)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true shape {tuple(y_true.shape)} does not match y_pred shape "
                         f"{y_pred.shape}")
    return y_true, y_pred


def _weights_to(name, w, values, what):
    """Bring a weight/mask array to ``values``' shape: Keras's rank rule, then (our convenience)
    trailing axes appended so that per-sample weights (B,) apply to per-step losses (B, T)."""
    vs, ws = _same_rank(values.shape, w.shape)
    if vs != values.shape:
        values = values.reshape(vs)
    w = w.reshape(ws)
    while w.ndim < values.ndim:
        w = w.reshape(w.shape + (1,))
    try:
        np.broadcast_shapes(tuple(w.shape), values.shape)
    except ValueError:
        raise ValueError(f"{name}: {what} of shape {tuple(w.shape)} cannot be applied to per-sample "
                         f"losses of shape {values.shape}") from None
    return w, values


def reduce_loss(values, sample_weight=None, mask=None, reduction="sum_over_batch_size", name="loss"):
    """Keras's weighted reduction of per-sample losses ``values`` (a Tensor of shape (B, ...)).

    sample_weight: None, or an array/Tensor broadcastable to (B, ...) after Keras's rank rule
    (a (B,) weight also applies to (B, T) losses: one weight per sequence);
    mask: None or a boolean array of shape (B, ...) (True = count this entry);
    reduction: ``"sum_over_batch_size"`` (= ``"mean"``): Σ ℓ⊙w⊙m̃ / size(ℓ) with
    m̃ = m · size(ℓ)/Σm (so with a mask it is Σ ℓ⊙w⊙m / Σ m; 0 if nothing is valid), ``"sum"``:
    Σ ℓ⊙w⊙m, ``"none"``/None: ℓ⊙w⊙m (shape (B, ...)). Returns a scalar Tensor (or (B, ...)).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{name}: unknown reduction {reduction!r}; use one of {_REDUCTIONS}")
    xp = backend.get_array_module(values.data)
    dtype = values.dtype
    weight = None
    if mask is not None:
        m = as_mask(mask, values, name="mask", where=name)
        m, values = _weights_to(name, m, values, "mask")
        m = xp.broadcast_to(m, values.shape)
        if reduction in ("sum_over_batch_size", "mean"):
            valid = int(m.sum())
            scale = values.size / valid if valid else 0.0     # Keras's divide_no_nan(total, valid)
            weight = Tensor(m.astype(dtype) * scale)
        else:
            weight = Tensor(m.astype(dtype))
    if sample_weight is not None:
        if isinstance(sample_weight, Tensor):
            sw = sample_weight if sample_weight.dtype == dtype else sample_weight.astype(dtype)
        else:
            a = sample_weight if hasattr(sample_weight, "shape") else np.asarray(sample_weight)
            sw = Tensor(xp.asarray(backend.to_device(a, values.device), dtype=dtype))
        swd, values = _weights_to(name, sw.data, values, "sample_weight")
        if swd.shape != sw.shape:
            sw = sw.reshape(*swd.shape)
        weight = sw if weight is None else weight * sw
    if weight is not None:
        values = values * weight
    if reduction in ("none", None) or values.ndim == 0:
        return values
    total = values.sum()
    if reduction == "sum":
        return total
    n = values.size
    return total / n if n else total * 0     # Python numbers: no host scalar meets the device


# -- per-sample losses --------------------------------------------------------------------------------
def _regression(name, y_true, y_pred, sample_weight, mask, reduction, fn):
    y_pred = _pred(y_pred, name)
    y_true, y_pred = _align_pair(name, _true(y_true, y_pred), y_pred)
    per_sample = fn(y_true, y_pred).mean(axis=-1)
    return reduce_loss(per_sample, sample_weight, mask, reduction, name)


def mse(y_true, y_pred, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Mean squared error: ℓ = mean_d (y_true − y_pred)²,  loss = reduce(ℓ).

    y_true, y_pred: (B, ..., D) (a (B,) target against a (B, 1) prediction is fine);
    ℓ: (B, ...); sample_weight: broadcastable to ℓ (e.g. (B,)); mask: bool (B, ...).
    Returns a scalar Tensor (``reduction="none"``: ℓ). Gradient: ∂ℓ/∂y_pred = 2(y_pred − y_true)/D.
    """
    return _regression("mse", y_true, y_pred, sample_weight, mask, reduction,
                       lambda t, p: (p - t) ** 2)


def mae(y_true, y_pred, sample_weight=None, mask=None, reduction="sum_over_batch_size"):
    """Mean absolute error: ℓ = mean_d |y_true − y_pred|,  loss = reduce(ℓ).

    Shapes as in :func:`mse`. Gradient: sign(y_pred − y_true)/D (0 where they are equal).
    """
    return _regression("mae", y_true, y_pred, sample_weight, mask, reduction,
                       lambda t, p: F.abs(p - t))


mean_squared_error, mean_absolute_error = mse, mae


def binary_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None,
                        label_smoothing=0.0, reduction="sum_over_batch_size"):
    """Binary cross-entropy, averaged over the last axis: ℓ = mean_d bce(y, p).

    Probabilities (``from_logits=False``):  p̂ = clip(p, ε, 1 − ε),
        bce = −[y ln p̂ + (1 − y) ln(1 − p̂)]           (ε = 1e-7, Keras's epsilon)
    Logits z (``from_logits=True``):  bce = softplus(z) − y z = max(z, 0) − y z + ln(1 + e^−|z|),
        exact for any z; gradient σ(z) − y.
    Label smoothing s: y ← y(1 − s) + s/2.

    y_true, y_pred: (B, ..., D) with y_true ∈ [0, 1] (a (B,) target against (B, 1) is fine);
    ℓ: (B, ...); sample_weight broadcastable to ℓ; mask bool (B, ...). Returns a scalar Tensor.
    """
    name = "binary_crossentropy"
    y_pred = _pred(y_pred, name)
    y, y_pred = _align_pair(name, _true(y_true, y_pred), y_pred)
    if label_smoothing:
        y = y * float(1.0 - label_smoothing) + float(0.5 * label_smoothing)   # Python numbers: weak
    if from_logits:
        bce = F.softplus(y_pred) - y_pred * y
    else:
        p = F.clip(y_pred, EPSILON, 1.0 - EPSILON)
        bce = -(F.log(p) * y + F.log(1.0 - p) * (1 - y))
    return reduce_loss(bce.mean(axis=-1), sample_weight, mask, reduction, name)


def categorical_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None,
                             label_smoothing=0.0, reduction="sum_over_batch_size"):
    """Categorical cross-entropy with one-hot (or soft) targets over the last axis (K classes).

    Logits z:          ℓ = −Σ_k y_k log_softmax(z)_k = logsumexp(z) − Σ_k y_k z_k  (Σ y = 1), stable.
    Probabilities p:   p̂ = clip(p / Σ_k p_k, ε, 1 − ε),  ℓ = −Σ_k y_k ln p̂_k   (Keras renormalizes p
                       first, so the gradient also flows through the normalization).
    Label smoothing s: y ← y(1 − s) + s/K.

    y_true, y_pred: (B, ..., K); ℓ: (B, ...); sample_weight broadcastable to ℓ; mask bool (B, ...).
    Returns a scalar Tensor.
    """
    name = "categorical_crossentropy"
    y_pred = _pred(y_pred, name)
    y = _true(y_true, y_pred)
    if y.shape != y_pred.shape:
        raise ValueError(f"{name}: y_true shape {tuple(y.shape)} must equal y_pred shape {y_pred.shape} "
                         f"(one-hot targets; use sparse_categorical_crossentropy for integer labels)")
    if label_smoothing:
        k = y.shape[-1]
        y = y * float(1.0 - label_smoothing) + float(label_smoothing / k)
    if from_logits:
        logp = F.log_softmax(y_pred, axis=-1)
    else:
        p = y_pred / y_pred.sum(axis=-1, keepdims=True)
        logp = F.log(F.clip(p, EPSILON, 1.0 - EPSILON))
    per_sample = -(logp * y).sum(axis=-1)
    return reduce_loss(per_sample, sample_weight, mask, reduction, name)


def _labels(name, y_true, y_pred):
    """Integer labels (B, ...) for predictions (B, ..., K); a trailing 1 axis is squeezed."""
    xp = backend.get_array_module(y_pred.data)
    a = y_true.data if isinstance(y_true, Tensor) else y_true
    a = xp.asarray(backend.to_device(np.asarray(a) if not hasattr(a, "shape") else a, y_pred.device))
    if a.dtype.kind == "f":
        if a.size and not bool((a == xp.round(a)).all()):
            raise TypeError(f"{name}: y_true must hold integer class labels, got non-integer floats")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu":
        raise TypeError(f"{name}: y_true must hold integer class labels, got dtype {a.dtype}")
    if a.ndim == y_pred.ndim and a.shape[-1] == 1:
        a = a.reshape(a.shape[:-1])
    if tuple(a.shape) != y_pred.shape[:-1]:
        raise ValueError(f"{name}: labels of shape {tuple(a.shape)} need predictions of shape "
                         f"{tuple(a.shape)} + (K,), got {y_pred.shape}")
    k = y_pred.shape[-1]
    if a.size and (int(a.min()) < 0 or int(a.max()) >= k):
        raise IndexError(f"{name}: labels must lie in [0, {k}), got range [{int(a.min())}, {int(a.max())}]")
    return a


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, sample_weight=None, mask=None,
                                    reduction="sum_over_batch_size"):
    """Categorical cross-entropy with integer labels c ∈ {0, …, K−1}.

    Logits z:         ℓ = −log_softmax(z)_c = logsumexp(z) − z_c  (stable for any z).
    Probabilities p:  q = ln clip(p, ε, 1 − ε),  ℓ = −log_softmax(q)_c = ln Σ_k p̂_k − ln p̂_c
                      (Keras feeds the clipped log-probabilities to the logits form; for a proper
                      distribution this is −ln p_c).

    y_true: (B, ...) integers (or (B, ..., 1)); y_pred: (B, ..., K); ℓ: (B, ...);
    sample_weight broadcastable to ℓ; mask bool (B, ...). Returns a scalar Tensor.
    """
    name = "sparse_categorical_crossentropy"
    y_pred = _pred(y_pred, name)
    labels = _labels(name, y_true, y_pred)
    logits = y_pred if from_logits else F.log(F.clip(y_pred, EPSILON, 1.0 - EPSILON))
    logp = F.log_softmax(logits, axis=-1)
    k = y_pred.shape[-1]
    flat = logp.reshape(-1, k)
    xp = backend.get_array_module(labels)
    picked = flat[xp.arange(flat.shape[0]), labels.reshape(-1)]
    per_sample = -picked.reshape(*labels.shape) if labels.ndim else -picked.reshape(())
    return reduce_loss(per_sample, sample_weight, mask, reduction, name)


# -- class-style wrappers -----------------------------------------------------------------------------
class Loss:
    """A loss with its options bound: ``loss_fn = BinaryCrossentropy(from_logits=True)`` then
    ``loss_fn(y_true, y_pred, sample_weight=None, mask=None)`` -> scalar Tensor (Keras's classes)."""
    fn = None
    name = "loss"

    def __init__(self, reduction="sum_over_batch_size", **options):
        if reduction not in _REDUCTIONS:
            raise ValueError(f"{type(self).__name__}: unknown reduction {reduction!r}; use one of {_REDUCTIONS}")
        self.reduction = reduction
        self.options = options

    def __call__(self, y_true, y_pred, sample_weight=None, mask=None):
        """mask: None means ``y_pred``'s Keras mask, if it carries one (as Keras's losses: padded
        steps of a masked sequence output do not count, the mean is over the valid entries)."""
        if mask is None:
            mask = getattr(y_pred, "_keras_mask", None)
        return type(self).fn(y_true, y_pred, sample_weight=sample_weight, mask=mask,
                             reduction=self.reduction, **self.options)

    @property
    def from_logits(self):
        return self.options.get("from_logits", False)

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"{type(self).__name__}({opts})"


class MeanSquaredError(Loss):
    """Class form of :func:`mse`: ``MeanSquaredError()(y_true, y_pred)``."""
    fn, name = staticmethod(mse), "mean_squared_error"

    def __init__(self, reduction="sum_over_batch_size"):
        super().__init__(reduction)


class MeanAbsoluteError(Loss):
    """Class form of :func:`mae`: ``MeanAbsoluteError()(y_true, y_pred)``."""
    fn, name = staticmethod(mae), "mean_absolute_error"

    def __init__(self, reduction="sum_over_batch_size"):
        super().__init__(reduction)


class BinaryCrossentropy(Loss):
    """Class form of :func:`binary_crossentropy`: ``BinaryCrossentropy(from_logits=False)``."""
    fn, name = staticmethod(binary_crossentropy), "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size"):
        super().__init__(reduction, from_logits=from_logits, label_smoothing=label_smoothing)


class CategoricalCrossentropy(Loss):
    """Class form of :func:`categorical_crossentropy`: ``CategoricalCrossentropy(from_logits=False)``."""
    fn, name = staticmethod(categorical_crossentropy), "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, reduction="sum_over_batch_size"):
        super().__init__(reduction, from_logits=from_logits, label_smoothing=label_smoothing)


class SparseCategoricalCrossentropy(Loss):
    """Class form of :func:`sparse_categorical_crossentropy` (integer labels)."""
    fn, name = staticmethod(sparse_categorical_crossentropy), "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, reduction="sum_over_batch_size"):
        super().__init__(reduction, from_logits=from_logits)


_NAMES = {
    "mse": MeanSquaredError, "mean_squared_error": MeanSquaredError, "meansquarederror": MeanSquaredError,
    "mae": MeanAbsoluteError, "mean_absolute_error": MeanAbsoluteError,
    "meanabsoluteerror": MeanAbsoluteError,
    "bce": BinaryCrossentropy, "binary_crossentropy": BinaryCrossentropy,
    "binarycrossentropy": BinaryCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy, "categoricalcrossentropy": CategoricalCrossentropy,
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "sparsecategoricalcrossentropy": SparseCategoricalCrossentropy,
}


def get(identifier):
    """A loss object from a name (``"mse"``, ``"binary_crossentropy"``, ...), a Loss, or a callable
    ``(y_true, y_pred) -> scalar Tensor`` (returned as is)."""
    if isinstance(identifier, str):
        cls = _NAMES.get(identifier.lower())
        if cls is None:
            raise ValueError(f"unknown loss {identifier!r}; known names: "
                             f"{sorted(k for k in _NAMES if '_' in k or len(k) == 3)}")
        return cls()
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if callable(identifier):
        return identifier
    raise TypeError(f"a loss must be a name or a callable, got {type(identifier).__name__}")
