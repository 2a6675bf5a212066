"""Grouped-query attention (Ainslie et al. 2023), as ``keras.layers.GroupQueryAttention`` (Keras 3).

H_q query heads share H_kv key/value heads (H_kv divides H_q; r = H_q / H_kv query heads per group):
query head h reads key/value head ⌊h / r⌋. H_kv = H_q is multi-head attention, H_kv = 1 is
multi-query attention (Shazeer 2019). The K/V projections (and a KV cache) shrink by the factor r.

    Q = query W^Q + b^Q      (B, Tq, H_q, hd)          W^Q (d_q, H_q, hd)
    K = key   W^K + b^K      (B, Tk, H_kv, hd)         W^K (d_k, H_kv, hd)
    V = value W^V + b^V      (B, Tk, H_kv, hd)         W^V (d_v, H_kv, hd)
    A_h = softmax(Q_h K_⌊h/r⌋ᵀ / √hd, masked)           (B, H_q, Tq, Tk)     (returned scores)
    O = Σ_h dropout(A_h) V_⌊h/r⌋ W^O_h + b^O            (B, Tq, d_q)          W^O (H_q, hd, d_q)

    use_gate: O_h ← O_h ⊙ σ(query W^G + b^G) before W^O (gated attention, Qiu et al. 2025).

Instead of repeating K and V r times (Keras's ``ops.repeat``), the query heads are grouped as
(B, H_kv, r, Tq, hd) and K, V as (B, H_kv, 1, Tk, hd): the matmuls broadcast over the group axis, so
no copy of K and V is made, and in backward their gradients are summed over each group.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import sigmoid
from ..kernels.attention import ScaledDotProductAttention
from ..nn import Module, init, regularizers, constraints
from ..functions.masks import as_mask, causal_mask, combine_masks
from ._base import add_projections
from .sliding_window import sliding_window_mask

__all__ = ["GroupedQueryAttention", "GroupQueryAttention"]


class GroupedQueryAttention(Module):
    """``keras.layers.GroupQueryAttention``: arguments, call signature and weights of Keras 3.15.

    Args: head_dim, num_query_heads H_q, num_key_value_heads H_kv (divides H_q), dropout (on the
    weights, training only), use_bias, sliding_window (None or w: query i sees keys |i − j| < w),
    use_gate, kernel_initializer, bias_initializer, kernel/bias_regularizer, activity_regularizer
    (as Keras: on the layer's output and on each projection's output), kernel/bias_constraint, dtype.
    Keras masks: query_mask / value_mask / key_mask left None are read from the inputs' Keras masks,
    and the output carries the query's.

    Weights (``get_weights()`` order = Keras's): query/kernel (d_q, H_q, hd), query/bias (H_q, hd),
    key/kernel (d_k, H_kv, hd), key/bias (H_kv, hd), [gate/kernel (d_q, H_q, hd), gate/bias (H_q, hd)],
    value/kernel (d_v, H_kv, hd), value/bias (H_kv, hd), attention_output/kernel (H_q, hd, d_q),
    attention_output/bias (d_q,) — biases only with use_bias, gate only with use_gate.

    Call: (query (B, Tq, d_q), value (B, Tk, d_v), key=None (→ value), query_mask (B, Tq),
    value_mask (B, Tk), key_mask (B, Tk), attention_mask (B, Tq, Tk), return_attention_scores,
    training, use_causal_mask) → out (B, Tq, d_q) [, scores (B, H_q, Tq, Tk)]. Masks True = attend,
    all ANDed; a query with no key left gets zero weights (Keras's fallback differs on such rows).
    """

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0, use_bias=True,
                 sliding_window=None, use_gate=False, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, dtype="float32"):
        super().__init__()
        kr, br = regularizers.get(kernel_regularizer), regularizers.get(bias_regularizer)
        kc, bc = constraints.get(kernel_constraint), constraints.get(bias_constraint)
        for n in ("query", "key", "gate", "value", "output"):
            self.add_weight_regularizer(f"{n}_kernel", kr, kc)
            self.add_weight_regularizer(f"{n}_bias", br, bc)
        # Keras sets the activity regularizer on the layer (a penalty on its outputs) AND on each
        # projection sublayer (a penalty on each projection's output): both, as there.
        self.activity_regularizer = regularizers.get(activity_regularizer)
        for nm, val in (("head_dim", head_dim), ("num_query_heads", num_query_heads),
                        ("num_key_value_heads", num_key_value_heads)):
            if not isinstance(val, (int, np.integer)) or val <= 0:
                raise ValueError(f"GroupedQueryAttention: {nm} must be a positive integer, got {val!r}")
        if num_query_heads % num_key_value_heads:
            raise ValueError(f"GroupedQueryAttention: num_query_heads ({num_query_heads}) must be divisible by "
                             f"num_key_value_heads ({num_key_value_heads})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"GroupedQueryAttention: dropout must be in [0, 1), got {dropout}")
        if sliding_window is not None and (not isinstance(sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise ValueError(f"GroupedQueryAttention: sliding_window must be None or a positive integer, "
                             f"got {sliding_window!r}")
        self.head_dim, self.num_query_heads = int(head_dim), int(num_query_heads)
        self.num_key_value_heads = int(num_key_value_heads)
        self.num_repeats = self.num_query_heads // self.num_key_value_heads
        self.dropout, self.use_bias, self.use_gate = float(dropout), bool(use_bias), bool(use_gate)
        self.sliding_window = sliding_window
        self.kernel_initializer = init.get(kernel_initializer)
        self.bias_initializer = init.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The query's shape (Keras's); value and key must agree on all axes but the last."""
        value_shape = tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(f"GroupedQueryAttention: all dimensions of `value` and `key`, except the last one, "
                             f"must be equal. Received: value_shape={value_shape} and key_shape={key_shape}")
        return tuple(query_shape)

    def build(self, query_shape, value_shape=None, key_shape=None):
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        self.compute_output_shape(query_shape, value_shape, key_shape)
        dq, dk, dv = query_shape[-1], key_shape[-1], value_shape[-1]
        Hq, Hkv, hd = self.num_query_heads, self.num_key_value_heads, self.head_dim
        add_projections(self, [("query", (dq, Hq, hd), (Hq, hd)), ("key", (dk, Hkv, hd), (Hkv, hd))]
                        + ([("gate", (dq, Hq, hd), (Hq, hd))] if self.use_gate else [])
                        + [("value", (dv, Hkv, hd), (Hkv, hd)), ("output", (Hq, hd, dq), (dq,))])
        object.__setattr__(self, "built", True)

    def weights(self):
        names = ["query", "key"] + (["gate"] if self.use_gate else []) + ["value", "output"]
        out = []
        for n in names:
            out.append(getattr(self, f"{n}_kernel"))
            if self.use_bias:
                out.append(getattr(self, f"{n}_bias"))
        return out

    supports_masking = True          # the output carries the query's Keras mask

    def __call__(self, query, value, key=None, **kwargs):
        if not self.built:
            self.build(tuple(np.shape(query)) if not hasattr(query, "shape") else tuple(query.shape),
                       tuple(value.shape) if hasattr(value, "shape") else tuple(np.shape(value)),
                       None if key is None else tuple(np.shape(key) if not hasattr(key, "shape") else key.shape))
        return Module.__call__(self, query, value, key, **kwargs)

    def _dense(self, x, name):
        """x (B, T, d) @ kernel (d, H, hd) + bias (H, hd) → (B, T, H, hd), one (B·T, d) GEMM."""
        W = getattr(self, f"{name}_kernel")
        B, T, d = x.shape
        if d != W.shape[0]:
            raise ValueError(f"GroupedQueryAttention: {name} input has feature size {d}, the layer was built for "
                             f"{W.shape[0]} ({name} {x.shape}, {name}/kernel {W.shape})")
        y = x.reshape(B * T, d) @ W.reshape(d, -1)
        if self.use_bias:
            y = y + getattr(self, f"{name}_bias").reshape(-1)
        y = y.reshape(B, T, W.shape[1], W.shape[2])
        self._record_activity(y, gate=name == "gate")
        return y

    def _record_activity(self, t, gate=False):
        """Keras's sublayer activity penalty R(t) / batch size (with an activity_regularizer; the
        gate sublayer's output is σ(t))."""
        reg = self.__dict__.get("activity_regularizer")
        if reg is not None:
            t = sigmoid(t) if gate else t
            self.__dict__.setdefault("_sublayer_activity_losses", []).append(reg(t) * (1.0 / t.shape[0]))

    def forward(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
                return_attention_scores=False, training=None, use_causal_mask=False):
        object.__setattr__(self, "_sublayer_activity_losses", [])
        query, value = self.cast_input(query, "query"), self.cast_input(value, "value")
        key = value if key is None else self.cast_input(key, "key")
        if query.ndim != 3 or value.ndim != 3 or key.ndim != 3:
            raise ValueError(f"GroupedQueryAttention: query, value, key must be (B, T, d), got "
                             f"{query.shape}, {value.shape}, {key.shape}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != value.shape[0]:
            raise ValueError(f"GroupedQueryAttention: batch/length mismatch: query {query.shape}, value "
                             f"{value.shape}, key {key.shape}")
        training = self.training if training is None else bool(training)
        B, tq, tk = query.shape[0], query.shape[1], value.shape[1]
        Hkv, r, hd = self.num_key_value_heads, self.num_repeats, self.head_dim
        xp = backend.get_array_module(query.data)
        W = "GroupedQueryAttention"
        ms = []
        if query_mask is not None:
            ms.append(as_mask(query_mask, query, shape=(B, tq), name="query_mask", where=W)[..., :, None])
        for name, m in (("value_mask", value_mask), ("key_mask", key_mask)):
            if m is not None:
                ms.append(as_mask(m, query, shape=(B, tk), name=name, where=W)[..., None, :])
        if use_causal_mask:
            ms.append(causal_mask(tq, tk, xp))
        if self.sliding_window is not None:
            ms.append(sliding_window_mask(tq, tk, self.sliding_window, causal=False, xp=xp))
        if attention_mask is not None:
            ms.append(as_mask(attention_mask, query, shape=(B, tq, tk), name="attention_mask", where=W))
        mask = combine_masks(*ms)
        if mask is not None:
            try:
                mask = xp.broadcast_to(mask, np.broadcast_shapes(tuple(mask.shape), (B, tq, tk)))
            except ValueError:
                raise ValueError(f"GroupedQueryAttention: masks {[tuple(m.shape) for m in ms]} do not broadcast "
                                 f"to (B, Tq, Tk) = {(B, tq, tk)}") from None
            mask = mask[:, None, None]                                   # (B, 1, 1, Tq, Tk)
        q = self._dense(query, "query")                                  # (B, Tq, Hq, hd)
        k = self._dense(key, "key")                                      # (B, Tk, Hkv, hd)
        v = self._dense(value, "value")
        q = q.reshape(B, tq, Hkv, r, hd).transpose(0, 2, 3, 1, 4)        # (B, Hkv, r, Tq, hd)
        k = k.transpose(0, 2, 1, 3).expand_dims(2)                       # (B, Hkv, 1, Tk, hd)
        v = v.transpose(0, 2, 1, 3).expand_dims(2)
        o, w = ScaledDotProductAttention(1.0 / math.sqrt(hd), mask, self.dropout, training)(q, k, v)
        o = o.reshape(B, Hkv * r, tq, hd).transpose(0, 2, 1, 3)          # (B, Tq, Hq, hd)
        if self.use_gate:
            o = o * sigmoid(self._dense(query, "gate"))
        Hq, dq = self.num_query_heads, self.output_kernel.shape[2]
        y = o.reshape(B * tq, Hq * hd) @ self.output_kernel.reshape(Hq * hd, dq)
        if self.use_bias:
            y = y + self.output_bias
        y = y.reshape(B, tq, dq)
        self._record_activity(y)
        if return_attention_scores:
            return y, w.reshape(B, Hq, tq, tk)
        return y


GroupQueryAttention = GroupedQueryAttention      # Keras's export name
