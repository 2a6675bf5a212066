"""Keras-parity attention layers: ``Attention`` (Luong), ``AdditiveAttention`` (Bahdanau) and
``MultiHeadAttention`` (Vaswani et al. 2017, in multihead.py, re-exported here).

Constructor arguments, defaults, weight shapes and ``get_weights()`` order are Keras 3's, so weights
copy across with ``layer.set_weights(keras_layer.get_weights())`` and the outputs agree.

Masks are boolean with True = keep. Two masking conventions meet here, on purpose:

* ``Attention`` / ``AdditiveAttention`` follow Keras exactly: a masked score gets 1e9 *subtracted*
  (not replaced), so a query whose keys are all masked comes out with uniform weights 1/Tv (every
  score shifted by the same amount), just as in Keras. The query mask then zeroes output rows.
* ``MultiHeadAttention`` uses the fused :func:`scaled_dot_product_attention`, where masked weights
  are exactly 0 and a fully masked row has zero weights and zero output (what Keras's explicit path
  also returns; Keras's fused fast path — no dropout, no returned scores — differs on such rows).

The two layers here are thin wrappers: their scores are :func:`~tinyattn.attention.scores.dot_score`
scaled, and :func:`~tinyattn.attention.additive.additive_energy` (Keras's additive score is the
Bahdanau form without projections). Masks go through :func:`as_mask` (bool or 0/1; a mask list may
have 2 or 3 entries, the third ignored, as in Keras); query, value and key are cast to the layer's
dtype on entry.

(In float64 a fully masked row of ``Attention`` keeps the softmax of its unmasked scores, since
s − 1e9 still resolves the differences — again exactly what Keras computes in float64.)

Keras masks propagate (see ``tinyattn.nn.module``): called on Tensors that carry Keras masks (from
``Embedding(mask_zero=True)``, an LSTM with ``return_sequences``, ...), ``Attention`` and
``AdditiveAttention`` take ``mask = [query's mask, value's mask]`` unless a mask is given, and their
output carries the query mask (``compute_mask``, Keras 3.15's definition, edge cases included);
``MultiHeadAttention`` reads ``query_mask``/``value_mask``/``key_mask`` the same way. Inputs with
more than one time axis work as in Keras: (B, …, T, dim) for the two dense layers (leading axes
broadcast), ``attention_axes`` for ``MultiHeadAttention``.

``training``: Keras's call argument. Left as None it follows the module's mode (``layer.train()`` /
``layer.eval()``, PyTorch style; a new Module is in training mode), whereas Keras's eager default
is inference — pass ``training=False`` (or call ``.eval()``) to match Keras outside a training loop.
Dropout only ever acts on the attention weights.
"""
import numpy as np

from .. import backend
from ..functions import dropout as _dropout, broadcast_to
from ..functions.masks import as_mask, causal_mask, combine_masks
from ..autograd import Tensor
from ..nn import Module, Parameter, init, cast_input
from ._base import check_dropout
from .additive import additive_energy
from .multihead import MultiHeadAttention  # noqa: F401  (Keras's third attention layer, here too)

__all__ = ["Attention", "AdditiveAttention"]

_LARGE = 1.0e9


class _BaseDenseAttention(Module):
    """Shared call logic of Keras's ``Attention`` and ``AdditiveAttention`` (``_score`` differs).

    Keras masks: called as ``layer([query, value])`` on Tensors that carry Keras masks (e.g. from
    ``Embedding(mask_zero=True)``), ``mask`` is filled with [query's mask, value's mask, key's mask]
    (an explicit ``mask=`` wins), and the output carries the query mask (``compute_mask``).
    Inputs of more than three axes (B, ..., T, dim) work as Keras's: the scores are a batched
    matmul over the last two axes, the leading axes broadcast.
    """
    supports_masking = True

    def __init__(self, use_scale, dropout, dtype):
        super().__init__()
        self.dropout = check_dropout(type(self).__name__, dropout)
        self.use_scale = bool(use_scale)
        self.dtype = np.dtype(dtype)

    def _unpack(self, inputs):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{name}: call it on a list of inputs: the layer must be called on a list of "
                             f"inputs, namely [query, value] or [query, value, key], as Keras's layer. "
                             f"Received: a single {type(inputs).__name__}"
                             f"{' of shape ' + str(tuple(inputs.shape)) if hasattr(inputs, 'shape') else ''}")
        if len(inputs) not in (2, 3):
            raise ValueError(f"{name}: call it on a list of inputs of length 2 or 3, namely [query, value] "
                             f"or [query, value, key]. Received length: {len(inputs)}")
        q = cast_input(self, inputs[0], "query")
        v = cast_input(self, inputs[1], "value")
        k = cast_input(self, inputs[2], "key") if len(inputs) == 3 else v
        if q.ndim < 3 or v.ndim < 3 or k.ndim < 3:
            raise ValueError(f"{name}: query, value, key must be (B, ..., T, dim) with at least 3 axes, got "
                             f"{q.shape}, {v.shape}, {k.shape}")
        if k.shape[-2] != v.shape[-2]:
            raise ValueError(f"{name}: batch/length mismatch: key {k.shape} and value {v.shape} must have "
                             f"the same number of steps Tv (axis -2)")
        try:
            np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
        except ValueError:
            raise ValueError(f"{name}: batch/length mismatch: the leading (batch) axes of query {q.shape}, "
                             f"value {v.shape} and key {k.shape} do not broadcast") from None
        return q, v, k

    def _validate_mask(self, mask):
        name = type(self).__name__
        if mask is None:
            return None
        if not isinstance(mask, (list, tuple)):
            raise ValueError(f"{name}: layer mask must be a list, namely [query_mask, value_mask]. "
                             f"Received: a {type(mask).__name__}")
        if len(mask) not in (2, 3):
            raise ValueError(f"{name}: mask must be [query_mask, value_mask] (a mask list of length 2 or "
                             f"3, the third entry ignored, as in Keras). Received length: {len(mask)}")
        return mask

    def compute_mask(self, inputs, mask=None):
        """The output's Keras mask = the query mask, exactly as Keras 3.15's ``compute_mask``:
        None when ``mask`` is None or its first entry is None, else ``mask[0]`` unchanged (its
        shape and dtype kept: a 0/1 int or float mask comes back as it is, all-True and all-False
        masks too). ``inputs`` and ``mask`` are validated as in ``call``."""
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"{name}: the layer must be called on a list of inputs, namely [query, value] or "
                             f"[query, value, key]. Received: a single {type(inputs).__name__}")
        if len(inputs) not in (2, 3):
            raise ValueError(f"{name}: accepts inputs list of length 2 or 3. Received length: {len(inputs)}")
        mask = self._validate_mask(mask)
        if mask is None or mask[0] is None:
            return None
        m = mask[0]
        return m.data if isinstance(m, Tensor) else (m if hasattr(m, "dtype") else np.asarray(m))

    def compute_output_shape(self, input_shape):
        """(*query_shape[:-1], value_shape[-1]) as Keras."""
        return (*tuple(input_shape[0])[:-1], tuple(input_shape[1])[-1])

    def _calculate_score_mask(self, scores, v_mask, use_causal_mask):
        """Keras's helper: the boolean score mask from the value mask and the causal mask (None if
        neither): causal (1, Tq, Tv) = tril, ANDed with v_mask expanded to (B, 1, Tv)."""
        like = scores
        if use_causal_mask:
            cm = causal_mask(scores.shape[-2], scores.shape[-1], like)[None]
            if v_mask is not None:
                return as_mask(v_mask, like, name="value_mask", where=type(self).__name__)[..., None, :] & cm
            return cm
        return None if v_mask is None else as_mask(v_mask, like, name="value_mask", where=type(self).__name__)

    def _calculate_scores(self, query, key):
        """Keras's name for the score function: (…, Tq, d), (…, Tv, d) → (…, Tq, Tv)."""
        return self._score(cast_input(self, query, "query"), cast_input(self, key, "key"))

    def __call__(self, inputs, mask=None, **kwargs):
        q, v, k = self._unpack(inputs)
        if not self.built:
            self.build([q.shape, v.shape, k.shape])
            object.__setattr__(self, "built", True)
        return Module.__call__(self, [q, v, k], mask=mask, **kwargs)

    def forward(self, inputs, mask=None, training=None, return_attention_scores=False,
                use_causal_mask=False):
        """inputs = [query (B, Tq, d), value (B, Tv, dv)(, key (B, Tv, d))]; key defaults to value.

        mask = [query_mask, value_mask] or [query_mask, value_mask, ignored] (as Keras; either may
        be None), True = keep: query_mask broadcasting to (B, Tq); value_mask (B, Tv), (1, Tv) or
        anything broadcasting to the scores (B, Tq, Tv).
        training: None means ``self.training`` (dropout on the weights only when training).
        Returns out (B, Tq, dv) [and the weights (B, Tq, Tv) after dropout, as Keras].

            e = score(q, k)                               (B, Tq, Tv)
            e ← e − 1e9 · ¬(value_mask ∧ causal)          (Keras: subtracted, not replaced)
            α = dropout(softmax(e));   out = α v;   out_i ← 0 where query_mask_i is False
        """
        name = type(self).__name__
        q, v, k = self._unpack(inputs)
        training = self.training if training is None else training
        mask = self._validate_mask(mask)
        qm = vm = None
        if mask is not None:
            qm, vm = mask[0], mask[1]
        scores = self._score(q, k)
        tq, tv = scores.shape[-2:]
        vm = as_mask(vm, scores, name="value_mask", where=name)
        if vm is not None and vm.ndim <= 2:
            vm = vm[..., None, :]                      # (B, Tv) or (1, Tv): one mask for every query
        vm = as_mask(vm, scores, shape=scores.shape, name="value_mask", where=name)
        smask = combine_masks(vm, causal_mask(tq, tv, scores) if use_causal_mask else None, like=scores,
                              where=name)
        if smask is not None:
            # _LARGE a Python float: weak, keeps the dtype (a NumPy scalar would be host data)
            scores = scores - (~smask).astype(scores.dtype) * _LARGE
        weights = scores.softmax(axis=-1)
        weights = _dropout(weights, self.dropout, training)
        out = weights @ v
        qm = as_mask(qm, out, name="query_mask", where=name)
        if qm is not None:
            qm = as_mask(qm[..., None], out, shape=out.shape, name="query_mask", where=name)
            out = out * qm.astype(out.dtype)
        return (out, weights) if return_attention_scores else out


class Attention(_BaseDenseAttention):
    """Dot-product (Luong) attention layer, as ``keras.layers.Attention``.

    Args: use_scale (False): learn a scalar ``scale`` (init 1); score_mode "dot" or "concat";
    dropout on the attention weights. Weights (``get_weights()`` order): [scale] if use_scale, then
    [concat_score_weight] (a scalar, init 1) if score_mode == "concat".

    query (B, Tq, d), key (B, Tv, d), value (B, Tv, dv):

        dot:     e_ij = scale · q_iᵀ k_j                     (scale = 1 without use_scale, never 1/√d)
        concat:  e_ij = c · Σ_d tanh(scale · (q_id + k_jd))  (c = concat_score_weight)

    then masked softmax and α v as in ``_BaseDenseAttention.forward``.
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, dtype="float32"):
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Attention: Invalid value for argument score_mode. Expected one of "
                             f"{{'dot', 'concat'}}. Received: score_mode={score_mode!r}")
        super().__init__(use_scale, dropout, dtype)
        self.score_mode = score_mode

    def build(self, input_shape):
        if self.use_scale:
            self.scale = Parameter(init.ones((), self.dtype), name="scale")
        if self.score_mode == "concat":
            self.concat_score_weight = Parameter(init.ones((), self.dtype), name="concat_score_weight")

    def weights(self):
        return ([self.scale] if self.use_scale else []) + \
               ([self.concat_score_weight] if self.score_mode == "concat" else [])

    def _score(self, q, k):
        if q.shape[-1] != k.shape[-1]:
            raise ValueError(f"Attention: query {q.shape} and key {k.shape} need the same last dimension")
        if self.score_mode == "dot":
            s = q @ k.swapaxes(-1, -2)
            return s * self.scale if self.use_scale else s
        if self.use_scale:
            q, k = q * self.scale, k * self.scale
        c = broadcast_to(self.concat_score_weight, (q.shape[-1],))      # Σ_d c·tanh = (c 1)ᵀ tanh
        return additive_energy(q, k, c)


class AdditiveAttention(_BaseDenseAttention):
    """Additive (Bahdanau-style) attention layer, as ``keras.layers.AdditiveAttention``.

    Args: use_scale (True): learn ``scale`` (d,) (glorot_uniform init); dropout on the weights.
    Weights: [scale] if use_scale. No projections (put Dense layers in front for full Bahdanau).

    query (B, Tq, d), key (B, Tv, d), value (B, Tv, dv):

        e_ij = Σ_d scale_d · tanh(q_id + k_jd)     (scale_d = 1 without use_scale)
    """

    def __init__(self, use_scale=True, dropout=0.0, dtype="float32"):
        super().__init__(use_scale, dropout, dtype)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = Parameter(init.glorot_uniform((input_shape[0][-1],), self.dtype), name="scale")

    def weights(self):
        return [self.scale] if self.use_scale else []

    def _score(self, q, k):
        if q.shape[-1] != k.shape[-1]:
            raise ValueError(f"AdditiveAttention: query {q.shape} and key {k.shape} need the same last dimension")
        if self.use_scale and self.scale.shape[0] != q.shape[-1]:
            raise ValueError(f"AdditiveAttention: built for dim {self.scale.shape[0]}, got query {q.shape}")
        v = self.scale if self.use_scale else backend.get_array_module(q.data).ones(q.shape[-1], q.dtype)
        return additive_energy(q, k, v)
