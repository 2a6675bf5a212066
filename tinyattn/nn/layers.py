"""Basic layers with Keras's names, arguments, defaults and weight layouts.

Dense, Embedding, Dropout, LayerNormalization, Conv1D, GlobalMaxPooling1D, Flatten, Activation, and
``get_activation``. Layers whose input size is not given at construction build lazily on their first
call (Keras's ``build``); ``get_weights()`` / ``set_weights()`` take exactly the Keras layer's list,
so ``ours.set_weights(keras_layer.get_weights())`` copies a trained Keras layer. Every layer takes
its input through ``cast_input``: floating inputs (lists, NumPy/CuPy arrays, Tensors) are cast to the
layer's dtype on entry, as in Keras; an Embedding keeps integer ids as they are.

Shapes: B batch, T time steps, d (or C) features/channels; "…" any number of leading axes.
"""
import numpy as np

from .. import backend
from ..autograd import Function, Tensor, apply
from .. import functions as F
from ..functions.masks import as_mask
from ..kernels.layernorm import LayerNormFn  # noqa: F401  (also importable from here, as before)
from . import init, regularizers, constraints
from .module import Module, Parameter, cast_input

__all__ = ["get_activation", "Dense", "Embedding", "Dropout", "LayerNormalization", "Conv1D",
           "GlobalMaxPooling1D", "GlobalAveragePooling1D", "Flatten", "Activation"]


# ------------------------------------------------------------------------------------------------
# activations
# ------------------------------------------------------------------------------------------------
def _linear(x):
    return x


def _hard_sigmoid(x):
    """Keras 3: relu6(x + 3)/6 = clip(x/6 + ½, 0, 1)."""
    return F.clip(x * (1.0 / 6.0) + 0.5, 0.0, 1.0)


def _silu(x):
    return x * F.sigmoid(x)


_ACTIVATIONS = {
    "linear": _linear,
    "relu": F.relu,
    "tanh": F.tanh,
    "sigmoid": F.sigmoid,
    "softmax": lambda x: F.softmax(x, axis=-1),
    "gelu": F.gelu,
    "hard_sigmoid": _hard_sigmoid,
    "softplus": F.softplus,
    "silu": _silu,
    "swish": _silu,
    "exponential": F.exp,
}


def get_activation(activation, layer="get_activation", argument="activation"):
    """A Keras activation by name (or a callable, returned as is); ``None`` and "linear" → identity.

    relu max(x, 0) · tanh · sigmoid σ(x) · softmax over the last axis · gelu x·Φ(x) (exact, Keras's
    default) · hard_sigmoid clip(x/6 + ½, 0, 1) (Keras 3's relu6(x+3)/6) · softplus ln(1 + eˣ) ·
    silu/swish x·σ(x) · exponential eˣ. Each maps a Tensor to a Tensor of the same shape.
    """
    if activation is None:
        return _linear
    if callable(activation):
        return activation
    if not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise ValueError(f"{layer}: unknown activation {activation!r} (argument {argument!r}); use one of "
                         f"{sorted(_ACTIVATIONS)}, None, or a callable Tensor -> Tensor")
    return _ACTIVATIONS[activation]


def _positive_int(layer, argument, value):
    """``value`` as an int, or a ValueError naming the layer and the argument (bools refused)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{layer}: {argument} must be a positive integer, got {value!r}")
    return int(value)


def _built(module):
    object.__setattr__(module, "built", True)


def _regularize(module, activity=None, **weights):
    """Resolve and attach Keras regularizers/constraints: ``name=(regularizer, constraint)`` per
    weight attribute, ``activity`` the activity regularizer (applied to the outputs)."""
    for name, (reg, con) in weights.items():
        module.add_weight_regularizer(name, regularizers.get(reg), constraints.get(con))
    module.activity_regularizer = regularizers.get(activity)


# ------------------------------------------------------------------------------------------------
# Dense, Activation, Flatten, Dropout
# ------------------------------------------------------------------------------------------------
class Dense(Module):
    """Fully connected layer on the last axis (Keras ``Dense``).

        y = activation(x · kernel + bias):   x (…, d) → y (…, units)
    Weights: ``kernel`` (d, units) glorot-uniform, ``bias`` (units,) zeros (when ``use_bias``).
    Inputs of any rank are flattened to (N, d) for one 2-D matmul and reshaped back.
    kernel/bias_regularizer, activity_regularizer, kernel/bias_constraint: as Keras's
    (``tinyattn.nn.regularizers`` / ``constraints``; see ``Module.regularization_losses``).
    """
    supports_masking = True          # the Keras mask passes through unchanged

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", input_dim=None, dtype="float32", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                 bias_constraint=None):
        super().__init__()
        _regularize(self, kernel=(kernel_regularizer, kernel_constraint),
                    bias=(bias_regularizer, bias_constraint), activity=activity_regularizer)
        self.units, self.use_bias = _positive_int("Dense", "units", units), use_bias
        self.activation = get_activation(activation, "Dense")
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.dtype = np.dtype(dtype)
        if input_dim is not None:
            self.build((None, input_dim))

    def build(self, input_shape):
        if input_shape is None or len(input_shape) < 1:
            raise ValueError(f"Dense: input must have at least one axis, got shape {input_shape}")
        d = input_shape[-1]
        self.kernel = Parameter(init.get(self.kernel_initializer)((d, self.units), dtype=self.dtype), name="kernel")
        if self.use_bias:
            self.bias = Parameter(init.get(self.bias_initializer)((self.units,), dtype=self.dtype), name="bias")
        _built(self)

    def weights(self):
        return [self.kernel] + ([self.bias] if self.use_bias else [])

    def forward(self, x):
        x = cast_input(self, x)
        d = self.kernel.shape[0]
        if x.ndim < 1 or x.shape[-1] != d:
            raise ValueError(f"Dense: expected input (…, {d}), got shape {x.shape}")
        lead = x.shape[:-1]
        y = F.linear(x.reshape(-1, d) if x.ndim != 2 else x, self.kernel,   # x W + b: one node
                     self.bias if self.use_bias else None)
        if x.ndim != 2:
            y = y.reshape(*lead, self.units)
        return self.activation(y)


class Activation(Module):
    """Apply an activation by name (Keras ``Activation``): y = activation(x), same shape."""
    supports_masking = True          # the Keras mask passes through unchanged

    def __init__(self, activation, dtype="float32"):
        super().__init__()
        self.activation = get_activation(activation, "Activation")
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        return self.activation(cast_input(self, x))


class Flatten(Module):
    """(B, …) → (B, ∏…) (Keras ``Flatten``; a (B,) input becomes (B, 1))."""

    def __init__(self, dtype="float32"):
        super().__init__()
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        x = cast_input(self, x)
        if x.ndim == 0:
            raise ValueError("Flatten: expected an input with a batch axis, got a scalar")
        return x.reshape(x.shape[0], -1)


class Dropout(Module):
    """Inverted dropout (Keras ``Dropout``): y = x ⊙ m / (1 − rate), m ~ Bernoulli(1 − rate).

    Active only in training: ``training=None`` uses the module's mode (``train()`` / ``eval()``);
    ``training=True/False`` overrides it for one call. Same shape in and out; no weights.
    """
    supports_masking = True          # the Keras mask passes through unchanged

    def __init__(self, rate, dtype="float32"):
        super().__init__()
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)) \
                or not 0.0 <= rate < 1.0:
            raise ValueError(f"Dropout: rate must be a number in [0, 1) (the fraction of inputs dropped), "
                             f"got {rate!r}")
        self.rate = float(rate)
        self.dtype = np.dtype(dtype)

    def forward(self, x, training=None):
        training = self.training if training is None else training
        return F.dropout(cast_input(self, x), self.rate, training=bool(training))


# ------------------------------------------------------------------------------------------------
# Embedding
# ------------------------------------------------------------------------------------------------
class Embedding(Module):
    """Lookup table (Keras ``Embedding``): integer ids (…) → vectors (…, output_dim), y = W[ids].

    Weight ``embeddings`` (input_dim, output_dim), initialised uniform(−0.05, 0.05) like Keras.
    With ``mask_zero`` id 0 is padding: ``compute_mask(ids)`` returns ids ≠ 0 (a boolean Tensor),
    and the output carries it as its Keras mask, so downstream layers (LSTM, Attention, pooling,
    losses) read it without being passed it (see ``tinyattn.nn.module``).
    """

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", mask_zero=False,
                 dtype="float32", embeddings_regularizer=None, activity_regularizer=None,
                 embeddings_constraint=None):
        super().__init__()
        _regularize(self, embeddings=(embeddings_regularizer, embeddings_constraint),
                    activity=activity_regularizer)
        self.input_dim = _positive_int("Embedding", "input_dim (the vocabulary size)", input_dim)
        self.output_dim = _positive_int("Embedding", "output_dim (the vector size)", output_dim)
        self.mask_zero = mask_zero
        self.dtype = np.dtype(dtype)
        self.embeddings = Parameter(init.get(embeddings_initializer)((self.input_dim, self.output_dim),
                                                                     dtype=self.dtype), name="embeddings")
        _built(self)

    @property
    def supports_masking(self):
        return bool(self.mask_zero)

    def forward(self, ids):
        return F.embedding(cast_input(self, ids, "ids", ids=True), self.embeddings)

    def compute_mask(self, ids, mask=None):
        """ids ≠ 0 (same shape as ids, boolean) when ``mask_zero``, else None."""
        if not self.mask_zero:
            return None
        return Tensor(cast_input(self, ids, "ids", ids=True).data != 0)


# ------------------------------------------------------------------------------------------------
# LayerNormalization (one fused Function: tinyattn.kernels.layernorm.LayerNormFn)
# ------------------------------------------------------------------------------------------------
class LayerNormalization(Module):
    """Keras ``LayerNormalization``: normalise each example over ``axis`` (default the last).

        y = γ ⊙ (x − μ)/√(σ² + ε) + β,   μ, σ² over ``axis``;  ε = 1e-3 (Keras's default)
    Weights: ``gamma`` (ones) then ``beta`` (zeros), each of shape (x.shape[a] for a in axis), when
    ``scale`` / ``center``. x (…) → y, same shape. Forward and backward are one fused Function.
    """
    supports_masking = True          # the Keras mask passes through unchanged

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", dtype="float32"):
        super().__init__()
        self.axis = tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)
        self.epsilon, self.center, self.scale = epsilon, center, scale
        self.beta_initializer, self.gamma_initializer = beta_initializer, gamma_initializer
        self.dtype = np.dtype(dtype)

    def build(self, input_shape):
        nd = len(input_shape)
        if any(not -nd <= a < nd for a in self.axis):
            raise ValueError(f"LayerNormalization: axis {self.axis} out of range for input shape "
                             f"{tuple(input_shape)}")
        self._axes = tuple(sorted(a % nd for a in self.axis))
        self._input_ndim = nd
        pshape = tuple(input_shape[a] for a in self._axes)
        if self.scale:
            self.gamma = Parameter(init.get(self.gamma_initializer)(pshape, dtype=self.dtype), name="gamma")
        if self.center:
            self.beta = Parameter(init.get(self.beta_initializer)(pshape, dtype=self.dtype), name="beta")
        self._pshape = pshape
        _built(self)

    def weights(self):
        return ([self.gamma] if self.scale else []) + ([self.beta] if self.center else [])

    def forward(self, x):
        x = cast_input(self, x)
        if x.ndim != self._input_ndim or tuple(x.shape[a] for a in self._axes) != self._pshape:
            raise ValueError(f"LayerNormalization: built for {self._input_ndim}-D inputs with sizes "
                             f"{self._pshape} on axes {self._axes}, got shape {x.shape}")
        bshape = tuple(n if i in self._axes else 1 for i, n in enumerate(x.shape))
        xp = backend.get_array_module(x.data)
        gamma = self.gamma.reshape(*bshape) if self.scale else Tensor(xp.ones(bshape, dtype=x.dtype))
        beta = self.beta.reshape(*bshape) if self.center else Tensor(xp.zeros(bshape, dtype=x.dtype))
        return LayerNormFn(self._axes, self.epsilon)(x, gamma, beta)


# ------------------------------------------------------------------------------------------------
# Conv1D (im2col + one matmul)
# ------------------------------------------------------------------------------------------------
class Im2Col1D(Function):
    """Gather the receptive fields of a 1-D convolution (channels-last) into columns.

    x (B, T, C) → cols (B, T_out, k, C) with cols[b, t, j] = x_pad[b, t·s + j·dil], x_pad being x
    with ``pad_left`` / ``pad_right`` zero steps. Backward (``Col2Im1D``): the columns are added back
    at the same positions (overlapping windows accumulate) and the padding is cut off.
    """

    def __init__(self, k, stride, dilation, pad_left, pad_right):
        self.k, self.s, self.dil, self.pl, self.pr = k, stride, dilation, pad_left, pad_right

    def _t_out(self, T):
        return (T + self.pl + self.pr - self.dil * (self.k - 1) - 1) // self.s + 1

    def forward(self, x):
        xp = backend.get_array_module(x)
        B, T, C = x.shape
        To = self._t_out(T)
        xpad = xp.zeros((B, T + self.pl + self.pr, C), dtype=x.dtype)
        xpad[:, self.pl:self.pl + T] = x
        cols = xp.empty((B, To, self.k, C), dtype=x.dtype)
        for j in range(self.k):                      # k strided copies, no Python loop over time
            start = j * self.dil
            cols[:, :, j] = xpad[:, start:start + self.s * (To - 1) + 1:self.s]
        return cols

    def backward(self, gcols):
        return apply(Col2Im1D(self, self._inputs[0].shape[1]), gcols)


class Col2Im1D(Function):
    """The adjoint of :class:`Im2Col1D`: g (B, T_out, k, C) → gx (B, T, C), overlaps summed.
    Its backward is Im2Col1D again (both are linear)."""

    def __init__(self, im2col, T):
        self.im2col, self.T = im2col, T

    def forward(self, g):
        xp = backend.get_array_module(g)
        ic = self.im2col
        B, To, k, C = g.shape
        gpad = xp.zeros((B, self.T + ic.pl + ic.pr, C), dtype=g.dtype)
        for j in range(k):
            start = j * ic.dil
            gpad[:, start:start + ic.s * (To - 1) + 1:ic.s] += g[:, :, j]
        return gpad[:, ic.pl:ic.pl + self.T]

    def backward(self, gx):
        return apply(Im2Col1D(self.im2col.k, self.im2col.s, self.im2col.dil, self.im2col.pl, self.im2col.pr), gx)


class Conv1D(Module):
    """1-D convolution over time, channels-last (Keras ``Conv1D``), as im2col + one matmul.

        y[b, t, f] = act( Σ_j Σ_c x_pad[b, t·s + j·dil, c] · kernel[j, c, f] + bias[f] )
    x (B, T, C) → y (B, T_out, filters). Weights: ``kernel`` (k, C, filters) glorot-uniform,
    ``bias`` (filters,) zeros. Padding (TensorFlow's convention):
        "valid":  no padding,  T_out = ⌊(T − dil·(k−1) − 1)/s⌋ + 1
        "same":   T_out = ⌈T/s⌉, total padding max((T_out−1)·s + dil·(k−1) + 1 − T, 0), the extra
                  step on the right
        "causal": dil·(k−1) zeros on the left only (output t sees inputs ≤ t), then "valid".
    The windows are gathered into (B·T_out, k·C) columns (:class:`Im2Col1D`) and multiplied by the
    kernel reshaped to (k·C, filters): one big matmul instead of k small ones.
    """

    def __init__(self, filters, kernel_size, strides=1, padding="valid", dilation_rate=1,
                 activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", dtype="float32"):
        super().__init__()
        def one(name, v):                 # an int, or a 1-tuple/list holding one (Keras's form)
            if isinstance(v, (list, tuple)):
                if len(v) != 1:
                    raise ValueError(f"Conv1D: {name} must be an integer or a 1-tuple, got {v!r}")
                v = v[0]
            return _positive_int("Conv1D", name, v)
        self.filters, self.kernel_size = one("filters", filters), one("kernel_size", kernel_size)
        self.strides, self.dilation_rate = one("strides", strides), one("dilation_rate", dilation_rate)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same", "causal"):
            raise ValueError(f"Conv1D: padding must be 'valid', 'same' or 'causal', got {padding!r}")
        padding = padding.lower()
        if self.strides > 1 and self.dilation_rate > 1:
            raise ValueError("Conv1D: strides > 1 together with dilation_rate > 1 is not supported (as in Keras)")
        self.padding, self.use_bias = padding, use_bias
        self.activation = get_activation(activation, "Conv1D")
        self.kernel_initializer, self.bias_initializer = kernel_initializer, bias_initializer
        self.dtype = np.dtype(dtype)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(f"Conv1D: expected input (B, T, C), got shape {input_shape}")
        C = input_shape[-1]
        self.kernel = Parameter(init.get(self.kernel_initializer)((self.kernel_size, C, self.filters),
                                                                  dtype=self.dtype), name="kernel")
        if self.use_bias:
            self.bias = Parameter(init.get(self.bias_initializer)((self.filters,), dtype=self.dtype), name="bias")
        _built(self)

    def weights(self):
        return [self.kernel] + ([self.bias] if self.use_bias else [])

    def _padding(self, T):
        span = self.dilation_rate * (self.kernel_size - 1)
        if self.padding == "valid":
            return 0, 0
        if self.padding == "causal":
            return span, 0
        out = -(-T // self.strides)
        total = max((out - 1) * self.strides + span + 1 - T, 0)
        return total // 2, total - total // 2

    def forward(self, x):
        x = cast_input(self, x)
        k, C = self.kernel.shape[0], self.kernel.shape[1]
        if x.ndim != 3 or x.shape[-1] != C:
            raise ValueError(f"Conv1D: expected input (B, T, {C}), got shape {x.shape}")
        B, T, _ = x.shape
        pl, pr = self._padding(T)
        im2col = Im2Col1D(k, self.strides, self.dilation_rate, pl, pr)
        To = im2col._t_out(T)
        if To <= 0:
            raise ValueError(f"Conv1D: input of {T} steps is shorter than the kernel's span "
                             f"{self.dilation_rate * (k - 1) + 1} with padding {self.padding!r}")
        cols = im2col(x).reshape(B * To, k * C)
        y = cols @ self.kernel.reshape(k * C, self.filters)
        if self.use_bias:
            y = y + self.bias
        return self.activation(y.reshape(B, To, self.filters))


class GlobalMaxPooling1D(Module):
    """Max over the time axis (Keras ``GlobalMaxPooling1D``, channels-last):
    x (B, T, C) → y (B, C) (or (B, 1, C) with ``keepdims``). The gradient goes to the maxima.
    As Keras 3's layer it ignores a Keras mask (and drops it); use GlobalAveragePooling1D for a
    masked mean."""

    def __init__(self, keepdims=False, dtype="float32"):
        super().__init__()
        self.keepdims = keepdims
        self.dtype = np.dtype(dtype)

    def forward(self, x):
        x = cast_input(self, x)
        if x.ndim != 3:
            raise ValueError(f"GlobalMaxPooling1D: expected input (B, T, C), got shape {x.shape}")
        return x.max(axis=1, keepdims=self.keepdims)



class GlobalAveragePooling1D(Module):
    """Mean over the time axis (Keras ``GlobalAveragePooling1D``, channels-last), masked as Keras's:

        no mask:    y_bc = (1/T) Σ_t x_btc
        mask m:     y_bc = Σ_t m_bt x_btc / Σ_t m_bt       (padded steps do not count)
    x (B, T, C), mask (B, T) (bool or 0/1; by default the input's Keras mask) → y (B, C) (or
    (B, 1, C) with ``keepdims``). A row with no valid step gives 0/0 = NaN, as in Keras. The output
    carries no mask (``compute_mask`` → None).
    """
    supports_masking = True

    def __init__(self, keepdims=False, dtype="float32"):
        super().__init__()
        self.keepdims = keepdims
        self.dtype = np.dtype(dtype)

    def forward(self, x, mask=None):
        x = cast_input(self, x)
        if x.ndim != 3:
            raise ValueError(f"GlobalAveragePooling1D: expected input (B, T, C), got shape {x.shape}")
        if mask is None:
            return x.mean(axis=1, keepdims=self.keepdims)
        m = as_mask(mask, x, shape=x.shape[:2], name="mask", where="GlobalAveragePooling1D")
        xp = backend.get_array_module(x.data)
        m = xp.broadcast_to(m, x.shape[:2])[:, :, None].astype(x.dtype)          # (B, T, 1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return (x * m).sum(axis=1, keepdims=self.keepdims) / Tensor(m.sum(axis=1, keepdims=self.keepdims))

    def compute_mask(self, inputs, mask=None):
        return None
