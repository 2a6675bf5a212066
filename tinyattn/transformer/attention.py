"""The attention step of the Transformer blocks, on a ``MultiHeadAttention``'s weights, with a KV cache.

One function, :func:`mha_attend`, runs a :class:`~tinyattn.attention.MultiHeadAttention` layer's
computation (Keras weight layout: query/kernel (d, H, dk), …, attention_output/kernel (H, dv, d)) and
adds what a decoder needs that a plain call does not: RoPE at an offset, and keys/values appended to
a cache so that one new token attends to every earlier one without recomputing them.

    Q = x W^Q + b^Q,  K = kv W^K + b^K,  V = kv W^V + b^V       (B, H, T, dk) per head
    K ← [K_cache; K],  V ← [V_cache; V]                          (self-attention with a cache)
    A = softmax(Q Kᵀ/√dk + bias, mask)                           (B, H, Tq, Tk)
    out = Σ_h dropout(A_h) V_h W^O_h + b^O                       (B, Tq, d)

Masks are boolean with True = attend (tinyattn's convention; PyTorch's ``key_padding_mask`` is the
opposite: pass ``~key_padding_mask``).
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import concat, linear
from ..attention import scaled_dot_product_attention, as_mask, combine_masks

__all__ = ["LayerKVCache", "KVCache", "project_heads", "mha_attend", "offset_causal_mask"]


class LayerKVCache:
    """The cache of one decoder layer.

    self_k, self_v: (B, H, T_past, dk) / (B, H, T_past, dv) — the self-attention's keys and values of
    every position seen so far (appended each step); memory_k, memory_v: (B, H, S, dk) — the
    cross-attention's projection of the encoder memory, computed once on the first step.
    ``length`` = T_past, the absolute position of the next token.
    """

    def __init__(self):
        self.self_k = self.self_v = None
        self.memory_k = self.memory_v = None

    @property
    def length(self):
        return 0 if self.self_k is None else self.self_k.shape[-2]

    def append(self, k, v):
        """Append k (B, H, t, dk), v (B, H, t, dv) and return the full (B, H, T_past + t, ·) pair."""
        if self.self_k is not None:
            if self.self_k.shape[:2] != k.shape[:2]:
                raise ValueError(f"KV cache: cached keys {self.self_k.shape} and new keys {k.shape} differ "
                                 f"in batch or heads; start a new cache for a new batch")
            k = concat([self.self_k, k], axis=2)
            v = concat([self.self_v, v], axis=2)
        self.self_k, self.self_v = k, v
        return k, v


class KVCache:
    """A :class:`LayerKVCache` per decoder layer; ``offset`` = the number of positions cached."""

    def __init__(self, num_layers):
        self.layers = [LayerKVCache() for _ in range(int(num_layers))]

    @property
    def offset(self):
        return self.layers[0].length if self.layers else 0

    def __getitem__(self, i):
        return self.layers[i]

    def __len__(self):
        return len(self.layers)


def project_heads(mha, x, names):
    """x (B, T, d) → [(B, H, T, n)] for each of ``names`` ⊂ {"query", "key", "value"}, as ONE GEMM
    (B·T, d) @ [W_1 | W_2 | …] with the kernels side by side, then split and reshaped per head
    (:class:`~tinyattn.kernels.SplitHeads`: views forward, one gradient buffer backward): ``mha``'s
    own projection (``MultiHeadAttention._project`` with ``heads=True``)."""
    if x.ndim != 3:
        raise ValueError(f"attention: expected x of shape (B, T, d), got {tuple(x.shape)}")
    return mha._project(x, names, heads=True)


def offset_causal_mask(tq, tk, offset, xp):
    """(Tq, Tk) boolean: query i (absolute position offset + i) sees keys j ≤ offset + i.
    offset = 0 with Tq = Tk is the usual lower triangle; offset = Tk − Tq is bottom-right aligned."""
    return xp.arange(tk)[None, :] <= (xp.arange(tq)[:, None] + offset)


def mha_attend(mha, x, kv=None, *, mask=None, key_mask=None, causal=False, bias=None, rotary=None,
               cache=None, cross_cache=False, training=True):
    """Multi-head attention of queries x (B, Tq, d) over kv (B, Tk, d) (kv None: self-attention) with
    ``mha``'s weights. Returns out (B, Tq, d_out) and the weights A (B, H, Tq, Tk) before dropout.

    mask: boolean, broadcastable to (B, Tq, Tk) (or 4-D (B, H, Tq, Tk)), True = attend;
    key_mask: (B, Tk) True = a real key (covering the cached keys too when a cache is used);
    causal: query i sees keys ≤ its absolute position (offset + i, offset = the cache length);
    bias: additive (…, H, Tq, Tk); rotary: ``rotary(x, offset=…)`` applied to Q and K (RoPE).
    cache: a :class:`LayerKVCache`. Self-attention appends this step's K, V to it; with
    ``cross_cache`` (cross-attention) K, V of the memory are computed on the first call and reused.
    """
    B, tq = x.shape[0], x.shape[1]
    xp = backend.get_array_module(x.data)
    offset = 0
    if kv is None:                                              # self-attention: one GEMM for Q, K, V
        q, k, v = project_heads(mha, x, ["query", "key", "value"])
        if cache is not None:
            offset = cache.length
        if rotary is not None:
            q, k = rotary(q, offset=offset), rotary(k, offset=offset)
        if cache is not None:
            k, v = cache.append(k, v)
    else:
        q, = project_heads(mha, x, ["query"])
        if cache is not None and cross_cache and cache.memory_k is not None:
            k, v = cache.memory_k, cache.memory_v              # the memory is projected only once
        else:
            k, v = project_heads(mha, kv, ["key", "value"])
            if cache is not None and cross_cache:
                cache.memory_k, cache.memory_v = k, v
        if rotary is not None:
            q, k = rotary(q), rotary(k)
    tk = k.shape[2]
    ms = []
    m = as_mask(mask, x, name="attention mask", where="attention")
    if m is not None:
        ms.append(m[:, None] if m.ndim == 3 else m)            # (B, Tq, Tk) -> (B, 1, Tq, Tk)
    km = as_mask(key_mask, x, name="key mask", where="attention")
    if km is not None:
        if km.shape != (B, tk):
            raise ValueError(f"attention: key mask must be (B, Tk) = {(B, tk)}, got {tuple(km.shape)}")
        ms.append(km[:, None, None, :])
    if causal:
        ms.append(offset_causal_mask(tq, tk, offset, xp))
    full = combine_masks(*ms, like=x)
    o, w = scaled_dot_product_attention(q, k, v, mask=full, dropout=mha.dropout, scale=1.0 / math.sqrt(mha.key_dim),
                                        return_weights=True, training=training, bias=bias)
    H, dv = o.shape[1], o.shape[3]
    Wo = mha.output_kernel
    n_out = int(np.prod(Wo.shape[2:]))
    y = linear(o.transpose(0, 2, 1, 3).reshape(B * tq, H * dv), Wo.reshape(H * dv, n_out),
               mha.output_bias.reshape(n_out) if mha.use_bias else None)
    return y.reshape((B, tq) + tuple(Wo.shape[2:])), w
