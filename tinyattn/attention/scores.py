"""Attention score functions and scaled dot-product attention.

Every score function maps queries and keys to one score per (query, key) pair:

    q (..., Tq, dq),  k (..., Tv, dk)  ->  scores (..., Tq, Tv)

Leading axes (batch, heads, ...) broadcast like ``matmul``. A softmax over the last axis turns
scores into attention weights α, and ``attend(α, v)`` = α v gives the context vectors.

    dot_score          e_ij = q_iᵀ k_j                                   (Luong "dot")
    scaled_dot_score   e_ij = q_iᵀ k_j / √d                              (Vaswani et al. 2017)
    general_score      e_ij = q_iᵀ W k_j                                 (Luong "general")
    cosine_score       e_ij = cos(q_i, k_j) / τ                          (Graves et al. 2014, NTM)
    (additive.py)      e_ij = vᵀ tanh(W_q q_i + W_k k_j)                 (Bahdanau et al. 2015)
    (multiplicative.py) e_ij = vᵀ tanh(W [q_i; k_j])                     (Luong "concat")

All inputs are Tensors (arrays are wrapped); every function is differentiable twice.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import maximum, sqrt
from ..kernels.attention import ScaledDotProductAttention
from ..functions.masks import as_mask, causal_mask, combine_masks
from .masks import CausalBias

__all__ = ["dot_score", "scaled_dot_score", "general_score", "cosine_score", "attend",
           "scaled_dot_product_attention"]


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


def cosine_score(q, k, tau=1.0, eps=1e-8):
    """Cosine-similarity score (content addressing of the Neural Turing Machine) at temperature τ:

        e_ij = cos(q_i, k_j) / τ = q_iᵀ k_j / (max(‖q_i‖, ε) · max(‖k_j‖, ε) · τ)

    q (..., Tq, d), k (..., Tv, d) -> (..., Tq, Tv); values lie in [−1/τ, 1/τ]. τ is a
    *temperature*, as in :class:`CosineAttention` and in a softmax: a small τ sharpens the weights,
    a large τ flattens them (the NTM's key strength β is 1/τ). τ may be a positive float or a Tensor
    (learnable). The norms are clamped at ε (as PyTorch's cosine_similarity), so zero vectors give a
    0 score with a finite gradient.
    """
    q, k = _t(q), _t(k)
    _check_qk("cosine_score", q, k, dk=q.shape[-1])
    if not isinstance(tau, Tensor) and not tau > 0:
        raise ValueError(f"cosine_score: tau (the temperature) must be positive, got {tau}")
    e2 = eps * eps
    qn = sqrt(maximum((q * q).sum(axis=-1, keepdims=True), e2))     # (..., Tq, 1)
    kn = sqrt(maximum((k * k).sum(axis=-1, keepdims=True), e2))     # (..., Tv, 1)
    cos = (q / qn) @ _kt(k / kn)
    return cos / tau if isinstance(tau, Tensor) else cos * (1.0 / float(tau))


def attend(weights, v):
    """Context vectors: c_i = Σ_j α_ij v_j, i.e. C = A V.

    weights (..., Tq, Tv), v (..., Tv, dv) -> (..., Tq, dv).
    """
    weights, v = _t(weights), _t(v)
    if weights.shape[-1] != v.shape[-2]:
        raise ValueError(f"attend: weights {weights.shape} cover {weights.shape[-1]} keys but v "
                         f"{v.shape} has {v.shape[-2]}")
    return weights @ v


def scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, mask=None, causal=None, dropout=None,
                                 return_weights=False, training=True, bias=None):
    """softmax(Q Kᵀ · scale + bias, masked) V, with PyTorch's ``F.scaled_dot_product_attention`` semantics
    and argument names (positional order too), plus tinyattn's own names.

    q (..., Hq, Tq, d), k (..., Hk, Tk, d), v (..., Hk, Tk, dv) -> out (..., Hq, Tq, dv)
    [and weights (..., Hq, Tq, Tk), the softmax output *before* dropout, if ``return_weights``].
    Leading axes broadcast as in matmul (k, v with one head serve every head).

    * scale: default 1/√d (may be negative, as PyTorch allows).
    * attn_mask (PyTorch's argument; its dtype decides, checked here, explicitly):
        - **boolean**: True = attend, masked entries get weight 0 (through :func:`as_mask`);
        - **floating** (NumPy/CuPy array, list of floats, PyTorch tensor, or a Tensor — then it gets a
          gradient):
          **added** to the scores, S = Q Kᵀ·scale + attn_mask (PyTorch's float mask; −inf entries mask,
          and a row that is −inf everywhere gets zero weights and a zero output, as PyTorch 2.13 on CPU,
          never NaN; +inf is refused, since it can only make NaN; a NaN in the mask propagates);
        - a :class:`~tinyattn.attention.CausalBias` (``causal_upper_left`` / ``causal_lower_right``):
          that causal mask, built on the data's device;
        - anything else (ints, 0/1 keep-masks meant as keep/drop): ValueError — 0/1 masks go to ``mask=``.
      Broadcastable to the scores (..., Hq, Tq, Tk), e.g. (Tq, Tk), (B, 1, 1, Tk), (B, Hq, Tq, Tk).
    * mask (tinyattn's): True = attend — bool, 0/1 ints or 0/1 floats (:func:`as_mask`; never additive).
      ANDed with a boolean ``attn_mask`` if both are given.
    * is_causal / causal (one name or the other): False, True or "upper_left" (query i sees keys
      0..i, PyTorch's ``is_causal``), or "lower_right" (query i sees keys 0..i + Tk − Tq,
      PyTorch's ``causal_lower_right``; equal to upper-left when Tq = Tk). ANDed with any mask
      (PyTorch 2.13's CPU kernel does the same for 4-D inputs with a boolean ``attn_mask``; its math
      backend refuses the pair); a CausalBias ``attn_mask`` with a causal flag is an error, as in PyTorch.
    * dropout_p / dropout (one name or the other): probability applied to the weights when
      ``training`` is True (``training=False`` turns it off; PyTorch has no such switch).
    * enable_gqa: k and v may have fewer heads Hk than q (axis −3), Hq divisible by Hk: query head h
      uses kv head h // (Hq/Hk) — PyTorch's ``repeat_interleave`` semantics — computed without copying
      k and v (q is viewed as (..., Hk, Hq/Hk, Tq, d) against (..., Hk, 1, Tk, d)).
    * bias (tinyattn's): an additive score bias (ALiBi, T5 relative positions) broadcastable to the
      scores, e.g. (H, Tq, Tk); added together with a float ``attn_mask``.
    * A query whose keys are all masked (by booleans, causal alignment or −inf) gets zero weights
      and a zero output row, with zero gradients (PyTorch ≥ 2.5).

    One fused :class:`~tinyattn.kernels.attention.ScaledDotProductAttention` node does the work,
    constant additive terms (a float attn_mask or bias array) included; when an additive term is a
    Tensor that requires grad, the textbook composition of differentiable ops runs instead
    (:func:`_biased_attention`), so that term gets its gradient. The two are tested equal.
    """
    w = "scaled_dot_product_attention"
    q, k, v = _t(q), _t(k), _t(v)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"{w}: q, k, v must be at least 2-D (..., T, d), got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"{w}: q {q.shape} and k {k.shape} differ in feature size")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{w}: k {k.shape} and v {v.shape} differ in length")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"{w}: q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}; cast "
                        f"with .astype(...) (PyTorch refuses the mix too)")
    p = _one_of(w, "dropout_p", dropout_p, 0.0, "dropout", dropout)
    if not 0.0 <= p < 1.0:
        raise ValueError(f"{w}: dropout_p must be in [0, 1), got {p}")
    align = _causal_align(w, _one_of(w, "is_causal", is_causal, False, "causal", causal))
    tq, tk = q.shape[-2], k.shape[-2]

    groups = 1
    if enable_gqa:
        q, k, v, groups = _gqa_views(w, q, k, v)
    try:
        lead = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except ValueError:
        raise ValueError(f"{w}: leading (batch, head) axes of q {q.shape}, k {k.shape}, v {v.shape} do not "
                         f"broadcast; for k, v with fewer heads than q pass enable_gqa=True") from None
    sshape = lead + (tq, tk)                     # the scores' shape (grouped view under GQA)

    # attn_mask: decided by its dtype, here and nowhere else
    additive = None
    if hasattr(attn_mask, "detach") and hasattr(attn_mask, "cpu") and not isinstance(attn_mask, Tensor):
        attn_mask = attn_mask.detach().cpu().numpy()          # a PyTorch tensor (torch is never imported)
    if isinstance(attn_mask, CausalBias):
        if align is not None:
            raise ValueError(f"{w}: CausalBias should not be used with causal=True / is_causal=True: "
                             f"it is already causal; pass one or the other")
        if attn_mask.shape != (tq, tk):
            raise ValueError(f"{w}: attn_mask {attn_mask!r} is for (Tq, Tk) = {attn_mask.shape}, but q "
                             f"{q.shape} and k {k.shape} give ({tq}, {tk})")
        align, attn_mask = attn_mask.variant, None
    elif attn_mask is not None:
        kind = _dtype_kind(attn_mask)
        if kind == "f":
            additive = attn_mask
            attn_mask = None
        elif kind != "b":
            raise ValueError(f"{w}: attn_mask must be boolean (True = attend) or floating (added to the "
                             f"scores), as in PyTorch; got dtype kind {kind!r}. For a 0/1 keep-mask use "
                             f"mask=, for an additive bias pass floats")
    shape_full = sshape if groups == 1 else sshape[:-4] + (sshape[-4] * sshape[-3],) + sshape[-2:]
    masks = []
    for nm, m in (("mask", mask), ("attn_mask", attn_mask)):
        m = as_mask(m, q, shape=shape_full, name=nm, where=w)
        if m is not None:
            masks.append(_group(m, groups))
    if align is not None:
        masks.append(causal_mask(tq, tk, q, align=align))
    mask = combine_masks(*masks, like=q, where=w) if masks else None
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)

    terms = [t for t in (bias, additive) if t is not None]
    const = None
    if terms:
        const, learn, keep = _additive_terms(q, terms, groups, shape_full)
        if keep:                                  # −inf entries are masked entries
            mask = combine_masks(mask, *keep, like=q, where=w)
        if learn:                                 # a bias that takes a gradient: the textbook ops
            out, wts = _biased_attention(q, k, v, const, learn, mask, p, scale, training)
    if not terms or not learn:                    # constants only: the fused node adds them
        out, wts = ScaledDotProductAttention(scale, mask, p, training, bias=const)(q, k, v)
    if groups != 1:                               # (..., Hk, G, Tq, ·) -> (..., Hq, Tq, ·)
        out = out.reshape(out.shape[:-4] + (out.shape[-4] * out.shape[-3],) + out.shape[-2:])
        wts = wts.reshape(wts.shape[:-4] + (wts.shape[-4] * wts.shape[-3],) + wts.shape[-2:])
    return (out, wts) if return_weights else out


def _one_of(where, a_name, a, a_default, b_name, b):
    """PyTorch's name ``a`` (default ``a_default``) or tinyattn's ``b`` (default None) for one argument:
    whichever was given; both given with different values is an error."""
    def same(x, y):
        return x is y or (type(x) is type(y) and x == y) or (not isinstance(x, str) and not isinstance(y, str)
                                                             and x == y)
    if b is None:
        return a
    if same(a, a_default) or same(a, b):
        return b
    raise ValueError(f"{where}: {a_name}={a!r} and {b_name}={b!r} are two names for one argument; give one")


def _causal_align(where, c):
    """False/None -> None; True -> "upper_left"; "upper_left"/"lower_right" (or aliases) as they are."""
    from ..functions.masks import _ALIGN
    if c is None or c is False:
        return None
    if c is True:
        return "upper_left"
    if isinstance(c, str) and c in _ALIGN:
        return _ALIGN[c]
    if isinstance(c, (int, np.integer)) and not isinstance(c, bool) and c in (0, 1):
        return "upper_left" if c else None
    raise ValueError(f"{where}: is_causal / causal must be False, True, 'upper_left' or 'lower_right', got {c!r}")


def _dtype_kind(m):
    """The dtype kind ('b', 'f', 'i', ...) of an attn_mask given as a Tensor, array or list."""
    d = m.data if isinstance(m, Tensor) else m
    if not hasattr(d, "dtype"):
        try:
            d = np.asarray(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"scaled_dot_product_attention: attn_mask could not be read as an array ({e})") from None
    return d.dtype.kind


def _gqa_views(where, q, k, v):
    """enable_gqa: q (..., Hq, Tq, d), k (..., Hk, Tk, d), v (..., Hv, Tk, dv) with Hq = G·Hk.

    Query head h uses kv head h // G (``repeat_interleave``). With Hk = Hv: views q as
    (..., Hk, G, Tq, d) and k, v as (..., Hk, 1, Tk, ·) — the broadcast does the repeat, nothing is
    copied, and backward sums the G query heads' gradients into their kv head. With Hk ≠ Hv (each
    dividing Hq, as PyTorch allows) k and v are repeated to Hq heads (a copy). Returns q, k, v, G."""
    if q.ndim < 3 or k.ndim < 3 or v.ndim < 3:
        raise ValueError(f"{where}: enable_gqa needs a head axis (..., H, T, d) on q, k, v, got "
                         f"{q.shape}, {k.shape}, {v.shape}")
    hq, hk, hv = q.shape[-3], k.shape[-3], v.shape[-3]
    if hq % hk or hq % hv:
        raise ValueError(f"{where}: enable_gqa: the number of heads of k ({hk}) and v ({hv}) must divide "
                         f"that of q ({hq}); q {q.shape}, k {k.shape}, v {v.shape}")
    if hk == hq and hv == hq:
        return q, k, v, 1
    if hk != hv:
        return q, _repeat_heads(k, hq // hk), _repeat_heads(v, hq // hv), 1
    g = hq // hk
    return (q.reshape(q.shape[:-3] + (hk, g) + q.shape[-2:]), k.expand_dims(-3), v.expand_dims(-3), g)


def _repeat_heads(x, g):
    """repeat_interleave over the head axis −3: (..., H, T, d) -> (..., H·g, T, d), head h -> h // g."""
    if g == 1:
        return x
    from ..functions import broadcast_to
    y = broadcast_to(x.expand_dims(-3), x.shape[:-3] + (x.shape[-3], g) + x.shape[-2:])
    return y.reshape(x.shape[:-3] + (x.shape[-3] * g,) + x.shape[-2:])


def _group(m, g):
    """A mask / bias broadcastable to (..., Hq, Tq, Tk) as one broadcastable to the grouped scores
    (..., Hk, G, Tq, Tk): its head axis (size Hq) split into (Hk, G), or a size-1 axis added."""
    if g == 1 or m.ndim < 3:
        return m
    h = m.shape[-3]
    if h == 1:
        return m.reshape(m.shape[:-3] + (1, 1) + m.shape[-2:])
    return m.reshape(m.shape[:-3] + (h // g, g) + m.shape[-2:])


def _additive_terms(q, terms, groups, shape_full):
    """The additive score terms (tinyattn's ``bias``, PyTorch's float ``attn_mask``), checked and split:

    returns (const, learn, keep): ``const`` the sum of the constant terms (arrays, lists, Tensors that
    do not require grad) as one array of q's dtype on q's device, or None; ``learn`` the Tensors that
    require grad; ``keep`` boolean masks, False where a term is −inf (those entries are masked, so a
    row that is −inf everywhere gets zero weights instead of 0/0). Every term must broadcast to the
    scores ``shape_full`` (..., Hq, Tq, Tk) and share q's dtype; +inf is refused (it can only give
    NaN); a NaN propagates. Under GQA every term is viewed as (..., Hk, G, Tq, Tk)."""
    w = "scaled_dot_product_attention"
    xp = backend.get_array_module(q.data)
    const, learn, keep = None, [], []
    for b in terms:
        if isinstance(b, Tensor):
            if b.dtype != q.dtype:
                raise TypeError(f"{w}: the float attn_mask / bias Tensor is {b.dtype} but q is {q.dtype}; "
                                f"cast it with .astype(...)")
            arr = b.data
        else:                                                  # a constant, on the data's device
            arr = b if hasattr(b, "dtype") else np.asarray(b)
            arr = (backend.as_numpy(arr) if xp is np else xp.asarray(arr)).astype(q.dtype, copy=False)
        try:
            ok = tuple(np.broadcast_shapes(arr.shape, shape_full)) == shape_full
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{w}: bias / float attn_mask {tuple(arr.shape)} does not broadcast to the scores "
                             f"{shape_full}; give it shape (..., Tq, Tk), e.g. (H, Tq, Tk) for per-head biases")
        if arr.size and arr.dtype.kind == "f":
            if bool(xp.any(xp.isposinf(arr))):
                raise ValueError(f"{w}: the float attn_mask / bias holds +inf, which can only give NaN weights; "
                                 f"use 0 to attend and -inf (or a boolean mask) to mask")
            isneg = xp.isneginf(arr)
            if bool(isneg.any()):
                keep.append(_group(~isneg, groups))
        if isinstance(b, Tensor) and b.requires_grad:
            learn.append(_group(b, groups))
        else:
            arr = _group(arr, groups)
            const = arr if const is None else const + arr
    return const, learn, keep


def _biased_attention(q, k, v, const, learn, mask, dropout, scale, training):
    """Textbook attention with additive terms that take gradients, from differentiable ops:

        S = Q Kᵀ · scale + const + Σ learn    (..., Tq, Tk)     P = masked softmax(S)    O = dropout(P) V

    (``mask`` already holds the −inf entries of the terms, see :func:`_additive_terms`.)
    """
    from ..functions import dropout as _dropout
    from .masks import masked_softmax
    s = (q @ _kt(k)) * scale
    if const is not None:
        s = s + const
    for b in learn:
        s = s + b
    p = masked_softmax(s, mask)
    d = _dropout(p, dropout, training=bool(training)) if dropout > 0.0 else p
    return d @ v, p
