"""Attention score functions and scaled dot-product attention.

Every score function maps queries and keys to one score per (query, key) pair:

    q (..., Tq, dq),  k (..., Tv, dk)  ->  scores (..., Tq, Tv)

Leading axes (batch, heads, ...) broadcast like ``matmul``. A softmax over the last axis turns
scores into attention weights α, and ``attend(α, v)`` = α v gives the context vectors.

    dot_score          e_ij = q_iᵀ k_j                                   (Luong "dot")
    scaled_dot_score   e_ij = q_iᵀ k_j / √d                              (Vaswani et al. 2017)
    general_score      e_ij = q_iᵀ W k_j                                 (Luong "general")
    concat_score       e_ij = vᵀ tanh(W [q_i; k_j])                      (Luong "concat")
    additive_score     e_ij = vᵀ tanh(W_q q_i + W_k k_j)                 (Bahdanau et al. 2015)
    cosine_score       e_ij = τ · cos(q_i, k_j)                          (Graves et al. 2014, NTM)

All inputs are Tensors (arrays are wrapped); every function is differentiable twice.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import maximum, sqrt
from ..functions.attention import ScaledDotProductAttention, AdditiveScore
from .masking import causal_mask, combine_masks, _arr

__all__ = ["dot_score", "scaled_dot_score", "general_score", "concat_score", "additive_score",
           "cosine_score", "attend", "scaled_dot_product_attention"]


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _check_qk(name, q, k, dq=None, dk=None):
    if q.ndim < 2 or k.ndim < 2:
        raise ValueError(f"{name}: q and k must be at least 2-D (..., T, d), got shapes {q.shape} and {k.shape}")
    if dq is not None and q.shape[-1] != dq:
        raise ValueError(f"{name}: q has feature size {q.shape[-1]} but the weight expects {dq} "
                         f"(q {q.shape}, k {k.shape})")
    if dk is not None and k.shape[-1] != dk:
        raise ValueError(f"{name}: k has feature size {k.shape[-1]} but the weight expects {dk} "
                         f"(q {q.shape}, k {k.shape})")
    try:
        np.broadcast_shapes(q.shape[:-2], k.shape[:-2])
    except ValueError:
        raise ValueError(f"{name}: leading axes of q {q.shape} and k {k.shape} do not broadcast") from None


def _kt(k):
    return k.swapaxes(-1, -2)


def _project(x, W):
    """x (..., d) @ W (d, h) as ONE (N, d) @ (d, h) GEMM: a batched matmul against a shared W
    would, in backward, form one (d, h) weight gradient per batch row and then sum them."""
    if x.ndim <= 2:
        return x @ W
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[-1])


def dot_score(q, k):
    """Dot-product score (Luong): e_ij = q_iᵀ k_j, i.e. E = Q Kᵀ.

    q (..., Tq, d), k (..., Tv, d) -> (..., Tq, Tv).
    """
    q, k = _t(q), _t(k)
    _check_qk("dot_score", q, k, dk=q.shape[-1] if q.ndim else None)
    return q @ _kt(k)


def scaled_dot_score(q, k, scale=None):
    """Scaled dot-product score: E = Q Kᵀ · scale, scale = 1/√d by default.

    q (..., Tq, d), k (..., Tv, d) -> (..., Tq, Tv). The 1/√d keeps the scores' variance near 1
    when q, k have unit-variance entries, so the softmax does not saturate.
    """
    q, k = _t(q), _t(k)
    _check_qk("scaled_dot_score", q, k, dk=q.shape[-1] if q.ndim else None)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    return (q @ _kt(k)) * scale


def general_score(q, k, W):
    """Luong's "general" (bilinear) score: e_ij = q_iᵀ W k_j, i.e. E = (Q W) Kᵀ.

    q (..., Tq, dq), k (..., Tv, dk), W (dq, dk) -> (..., Tq, Tv).
    """
    q, k, W = _t(q), _t(k), _t(W)
    if W.ndim != 2:
        raise ValueError(f"general_score: W must be 2-D (dq, dk), got {W.shape}")
    _check_qk("general_score", q, k, W.shape[0], W.shape[1])
    return _project(q, W) @ _kt(k)


def additive_score(q, k, W_q, W_k, v):
    """Bahdanau's additive score: e_ij = vᵀ tanh(W_q q_i + W_k k_j).

    q (..., Tq, dq), k (..., Tv, dk), W_q (dq, h), W_k (dk, h), v (h,) -> (..., Tq, Tv).
    (Row-vector convention: W_q q_i is computed as q_i W_q.) The projections are two GEMMs,
    Q W_q (..., Tq, h) and K W_k (..., Tv, h); the pairwise sum (..., Tq, Tv, h) is formed by
    broadcasting and reduced against v in one fused op (:class:`AdditiveScore`).
    """
    q, k, W_q, W_k, v = map(_t, (q, k, W_q, W_k, v))
    if W_q.ndim != 2 or W_k.ndim != 2 or v.ndim != 1 or not (W_q.shape[1] == W_k.shape[1] == v.shape[0]):
        raise ValueError(f"additive_score: need W_q (dq, h), W_k (dk, h), v (h,), got {W_q.shape}, "
                         f"{W_k.shape}, {v.shape}")
    _check_qk("additive_score", q, k, W_q.shape[0], W_k.shape[0])
    return AdditiveScore()(_project(q, W_q), _project(k, W_k), v)


def concat_score(q, k, W, v):
    """Luong's "concat" score: e_ij = vᵀ tanh(W [q_i; k_j]).

    q (..., Tq, dq), k (..., Tv, dk), W (dq + dk, h), v (h,) -> (..., Tq, Tv).
    Since [q_i; k_j] W = q_i W[:dq] + k_j W[dq:], this is :func:`additive_score` with W split in two
    row blocks — no (Tq·Tv, dq + dk) concatenation of all pairs is ever built.
    """
    q, k, W, v = map(_t, (q, k, W, v))
    if W.ndim != 2 or W.shape[0] != q.shape[-1] + k.shape[-1]:
        raise ValueError(f"concat_score: W must be (dq + dk, h) = ({q.shape[-1]} + {k.shape[-1]}, h), "
                         f"got {W.shape} (q {q.shape}, k {k.shape})")
    if v.ndim != 1 or v.shape[0] != W.shape[1]:
        raise ValueError(f"concat_score: v must be ({W.shape[1]},), got {v.shape}")
    _check_qk("concat_score", q, k)
    dq = q.shape[-1]
    return AdditiveScore()(_project(q, W[:dq]), _project(k, W[dq:]), v)


def cosine_score(q, k, tau=1.0, eps=1e-8):
    """Cosine-similarity score (content addressing of the Neural Turing Machine), sharpened by τ:

        e_ij = τ · q_iᵀ k_j / (max(‖q_i‖, ε) · max(‖k_j‖, ε))

    q (..., Tq, d), k (..., Tv, d) -> (..., Tq, Tv); values lie in [−τ, τ]. τ may be a float or a
    Tensor (a learnable key strength). The norms are clamped at ε (as PyTorch's cosine_similarity),
    so zero vectors give a 0 score with a finite gradient.
    """
    q, k = _t(q), _t(k)
    _check_qk("cosine_score", q, k, dk=q.shape[-1])
    e2 = eps * eps
    qn = sqrt(maximum((q * q).sum(axis=-1, keepdims=True), e2))     # (..., Tq, 1)
    kn = sqrt(maximum((k * k).sum(axis=-1, keepdims=True), e2))     # (..., Tv, 1)
    return ((q / qn) @ _kt(k / kn)) * tau


def attend(weights, v):
    """Context vectors: c_i = Σ_j α_ij v_j, i.e. C = A V.

    weights (..., Tq, Tv), v (..., Tv, dv) -> (..., Tq, dv).
    """
    weights, v = _t(weights), _t(v)
    if weights.shape[-1] != v.shape[-2]:
        raise ValueError(f"attend: weights {weights.shape} cover {weights.shape[-1]} keys but v "
                         f"{v.shape} has {v.shape[-2]}")
    return weights @ v


def scaled_dot_product_attention(q, k, v, mask=None, causal=False, dropout=0.0, scale=None,
                                 return_weights=False, training=True, bias=None):
    """softmax(Q Kᵀ · scale + mask) V, with PyTorch's ``F.scaled_dot_product_attention`` semantics.

    q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> out (..., Tq, dv)
    [and weights (..., Tq, Tk), the softmax output *before* dropout, if ``return_weights``].

    * scale: default 1/√d.
    * mask: boolean, True = attend (PyTorch's ``attn_mask``; the opposite of its
      ``key_padding_mask``), broadcastable to (..., Tq, Tk), e.g. (B, 1, 1, Tk) for padding.
    * causal: query i attends to keys 0..i (top-left aligned, as PyTorch's ``is_causal``); ANDed
      with ``mask`` when both are given (PyTorch refuses both).
    * A query whose keys are all masked gets zero weights and a zero output (PyTorch ≥ 2.5).
    * dropout: probability applied to the weights when ``training`` is True.
    * bias: an additive score bias (PyTorch's float ``attn_mask``; ALiBi, T5 relative positions),
      an array or a (learnable) Tensor broadcastable to the scores (..., Tq, Tk), e.g. (H, Tq, Tk):
      weights = softmax(Q Kᵀ · scale + bias, masked). With a bias the textbook composition of
      differentiable ops runs (:func:`_biased_attention`), so the bias gets a gradient too.

    One fused :class:`~tinyattn.functions.attention.ScaledDotProductAttention` node does the work.
    """
    q, k, v = _t(q), _t(k), _t(v)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"scaled_dot_product_attention: q, k, v must be at least 2-D, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"scaled_dot_product_attention: q {q.shape} and k {k.shape} differ in feature size")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"scaled_dot_product_attention: k {k.shape} and v {v.shape} differ in length")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"scaled_dot_product_attention: dropout must be in [0, 1), got {dropout}")
    tq, tk = q.shape[-2], k.shape[-2]
    xp = backend.get_array_module(q.data)
    if mask is not None:
        mask = xp.asarray(_arr(mask))             # a NumPy mask moves to the GPU with CuPy data
        if mask.dtype != bool:
            raise TypeError(f"scaled_dot_product_attention: mask must be boolean (True = attend), got "
                            f"dtype {mask.dtype}")
        sshape = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2])) + (tq, tk)
        try:
            ok = tuple(np.broadcast_shapes(tuple(mask.shape), sshape)) == sshape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"scaled_dot_product_attention: mask {tuple(mask.shape)} does not broadcast "
                             f"to scores {sshape}")
    if causal:
        mask = combine_masks(mask, causal_mask(tq, tk, xp))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if bias is not None:
        out, w = _biased_attention(q, k, v, bias, mask, dropout, scale, training, xp)
        return (out, w) if return_weights else out
    out, w = ScaledDotProductAttention(scale, mask, dropout, training)(q, k, v)
    return (out, w) if return_weights else out


def _biased_attention(q, k, v, bias, mask, dropout, scale, training, xp):
    """Textbook attention with an additive bias, from differentiable ops:

        S = Q Kᵀ · scale + bias    (..., Tq, Tk)     P = masked softmax(S)    O = dropout(P) V
    """
    from ..functions import dropout as _dropout
    from .masking import masked_softmax
    if not isinstance(bias, Tensor):
        bias = Tensor(xp.asarray(_arr(bias), dtype=q.dtype))   # constants on the data's device
    sshape = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2])) + (q.shape[-2], k.shape[-2])
    try:
        ok = tuple(np.broadcast_shapes(bias.shape, sshape)) == sshape
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"scaled_dot_product_attention: bias {bias.shape} does not broadcast to scores "
                         f"{sshape}; give it shape (..., Tq, Tk), e.g. (H, Tq, Tk) for per-head biases")
    s = (q @ _kt(k)) * scale + bias
    p = masked_softmax(s, mask)
    d = _dropout(p, dropout, training=bool(training)) if dropout > 0.0 else p
    return d @ v, p
