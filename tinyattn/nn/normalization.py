"""Batch normalisation (Ioffe & Szegedy 2015), with Keras's names, arguments and weight order.

Layer normalisation (``LayerNormalization``, in ``layers.py``) normalises each *example* over its
features; batch normalisation normalises each *feature* over the batch (and every other axis but
``axis``), which is what d2l's Transformer chapter contrasts: BatchNorm's statistics depend on the
other examples in the batch and on padding, LayerNorm's do not, so Transformers use LayerNorm.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor, no_grad
from .. import functions as F
from ..functions.masks import as_mask
from . import init, regularizers, constraints
from .module import Module, Parameter

__all__ = ["BatchNormalization"]

_KERAS_EPSILON = 1e-7   # keras.backend.epsilon(): added to the mask's weight count in masked moments


class BatchNormalization(Module):
    """Keras ``BatchNormalization``: normalise every feature on ``axis`` over all the other axes.

    Training (``training=True``, or ``None`` while the module is in ``train()`` mode):
        μ = mean(x) and σ² = mean((x − μ)²) over every axis but ``axis`` (biased variance);
        y = γ ⊙ (x − μ)/√(σ² + ε) + β
        moving_mean ← m · moving_mean + (1 − m) · μ;  moving_variance ← m · moving_variance + (1 − m) · σ²
    Inference (``training=False``, or ``None`` after ``eval()``): μ, σ² are the moving statistics.

    With a ``mask`` (one axis fewer than x, e.g. (B, T) for x (B, T, C); True = real step) the
    moments are masked averages, μ = Σ mᵢxᵢ / (Σ mᵢ + 10⁻⁷), as Keras computes them; masked steps are
    still normalised (with the statistics of the unmasked ones).

    Arguments and defaults as Keras: ``axis=-1, momentum=0.99, epsilon=1e-3, center=True,
    scale=True``, the four initialisers, beta/gamma_regularizer and beta/gamma_constraint. Weights (``get_weights()`` order, each of shape
    (x.shape[axis],)): ``gamma`` (if scale), ``beta`` (if center) — trainable Parameters — then
    ``moving_mean`` and ``moving_variance`` — buffers: saved, loaded and moved with the module, never
    given to an optimizer. Unlike PyTorch's BatchNorm the moving variance uses the biased batch
    variance, and momentum weighs the *old* value (PyTorch's momentum is 1 − Keras's).

    x (…, C, …) → y, same shape. The backward is autograd's through the plain ops above (the
    textbook form; the gradient flows through μ and σ² too, as it must in training).
    """
    supports_masking = True          # the Keras mask passes through unchanged

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones", moving_mean_initializer="zeros",
                 moving_variance_initializer="ones", dtype="float32", beta_regularizer=None,
                 gamma_regularizer=None, beta_constraint=None, gamma_constraint=None):
        super().__init__()
        self.add_weight_regularizer("gamma", regularizers.get(gamma_regularizer), constraints.get(gamma_constraint))
        self.add_weight_regularizer("beta", regularizers.get(beta_regularizer), constraints.get(beta_constraint))
        if isinstance(axis, (list, tuple)) or not isinstance(axis, (int, np.integer)):
            raise ValueError(f"BatchNormalization: axis must be one int (Keras), got {axis!r}")
        momentum, epsilon = float(momentum), float(epsilon)
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be in [0, 1], got {momentum}")
        if not epsilon > 0.0:
            raise ValueError(f"BatchNormalization: epsilon must be > 0, got {epsilon}")
        self.axis, self.momentum, self.epsilon = int(axis), momentum, epsilon
        self.center, self.scale = bool(center), bool(scale)
        self.initializers = dict(beta=beta_initializer, gamma=gamma_initializer,
                                 moving_mean=moving_mean_initializer,
                                 moving_variance=moving_variance_initializer)
        self.dtype = np.dtype(dtype)

    def build(self, input_shape):
        if input_shape is None:
            raise ValueError("BatchNormalization: call it on an array or Tensor (its shape builds it)")
        nd = len(input_shape)
        if not -nd <= self.axis < nd:
            raise ValueError(f"BatchNormalization: axis {self.axis} out of range for input shape "
                             f"{tuple(input_shape)}")
        self._axis = self.axis % nd
        self._ndim = nd
        c = input_shape[self._axis]
        shape = (c,)
        get = lambda name: init.get(self.initializers[name])(shape, dtype=self.dtype)  # noqa: E731
        if self.scale:
            self.gamma = Parameter(get("gamma"), name="gamma")
        if self.center:
            self.beta = Parameter(get("beta"), name="beta")
        self.register_buffer("moving_mean", Tensor(get("moving_mean"), name="moving_mean"))
        self.register_buffer("moving_variance", Tensor(get("moving_variance"), name="moving_variance"))

    def weights(self):
        return (([self.gamma] if self.scale else []) + ([self.beta] if self.center else [])
                + [self.moving_mean, self.moving_variance])

    def _moments(self, x, axes, mask):
        """Batch mean and biased variance over ``axes`` (kept as size-1 axes), masked as Keras."""
        if mask is None:
            mean = F.mean(x, axis=axes, keepdims=True)
            d = x - mean
            return mean, F.mean(d * d, axis=axes, keepdims=True)
        w = Tensor(mask)                                   # 0/1 in x's dtype, x's shape: a constant
        count = F.sum(w, axis=axes, keepdims=True) + _KERAS_EPSILON
        mean = F.sum(x * w, axis=axes, keepdims=True) / count
        d = (x - mean) * w
        return mean, F.sum(d * d, axis=axes, keepdims=True) / count

    def forward(self, x, training=None, mask=None):
        x = self.cast_input(x, "inputs")                  # floating inputs -> the layer's dtype
        if x.ndim != self._ndim or x.shape[self._axis] != self.moving_mean.shape[0]:
            raise ValueError(f"BatchNormalization: built for {self._ndim}-D inputs with "
                             f"{self.moving_mean.shape[0]} features on axis {self._axis}, "
                             f"got shape {x.shape}")
        xp = backend.get_array_module(x.data)
        bshape = tuple(n if i == self._axis else 1 for i, n in enumerate(x.shape))
        axes = tuple(i for i in range(x.ndim) if i != self._axis)
        training = self.training if training is None else bool(training)
        if training:
            m = None
            if mask is not None:
                m = _mask_array(mask, x, xp)
            mean, var = self._moments(x, axes, m)
            with no_grad():
                k = self.momentum
                self.moving_mean.data = (self.moving_mean.data * k
                                         + mean.data.reshape(-1) * (1.0 - k)).astype(self.dtype)
                self.moving_variance.data = (self.moving_variance.data * k
                                             + var.data.reshape(-1) * (1.0 - k)).astype(self.dtype)
        else:
            mean = Tensor(self.moving_mean.data.reshape(bshape))
            var = Tensor(self.moving_variance.data.reshape(bshape))
        y = (x - mean) / F.sqrt(var + self.epsilon)
        if self.scale:
            y = y * self.gamma.reshape(*bshape)
        if self.center:
            y = y + self.beta.reshape(*bshape)
        return y


def _mask_array(mask, x, xp):
    """Keras's rule: the mask has one axis fewer than x; it is expanded on the last axis and
    broadcast to x. Returned as 0/1 values in x's dtype on x's device."""
    m = as_mask(mask, x, name="mask", where="BatchNormalization")
    if m.ndim != x.ndim - 1:
        raise ValueError(f"BatchNormalization: the mask must have one axis fewer than the inputs; "
                         f"got mask shape {tuple(m.shape)} for inputs of shape {x.shape}")
    return xp.broadcast_to(m[..., None], x.shape).astype(x.dtype)
