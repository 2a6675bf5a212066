"""Masked softmax, and the mask helpers (re-exported from :mod:`tinyattn.functions.masks`).

A mask is boolean with **True = attend** (Keras's convention, and PyTorch's ``attn_mask``; note that
PyTorch's ``key_padding_mask`` is the opposite). Every mask goes through
:func:`~tinyattn.functions.masks.as_mask` (bool, 0/1 ints or floats, lists, NumPy/CuPy, Tensors;
moved to the scores' device; checked to broadcast). Masks broadcast against the scores, so one
``(B, 1, Tk)`` mask serves every query and every head.

    scores (..., Tq, Tk)  --masked_softmax-->  weights (..., Tq, Tk), each row sums to 1 over kept keys

A row whose keys are *all* masked has nothing to attend to: its weights are all **zero** (finite,
never NaN) and its gradient is zero. (Keras instead subtracts 1e9 and returns uniform weights 1/Tk on
such rows; d2l replaces by −1e6 and also gets uniform weights. Zeros are what PyTorch's
``scaled_dot_product_attention`` returns since 2.5: a padded query then contributes nothing.)
"""
import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions.nn import Softmax, MaskedSoftmax
from ..functions.masks import as_mask, causal_mask, valid_lens_to_mask, combine_masks

__all__ = ["masked_softmax", "as_mask", "causal_mask", "valid_lens_to_mask", "combine_masks",
           "CausalBias", "causal_upper_left", "causal_lower_right"]


def masked_softmax(scores, mask=None, valid_lens=None, axis=-1):
    """Softmax of ``scores`` over ``axis`` that ignores masked positions.

    scores: (..., Tq, Tk) Tensor. mask: True = attend (bool or 0/1), broadcastable to scores.
    valid_lens: (B,) or (B, Tq) integer lengths (d2l): keys at positions ≥ length are masked.
    Both may be given (they are ANDed). Returns weights of the scores' shape and dtype; a fully
    masked row is all zeros (no NaN) with zero gradient.
    """
    if not isinstance(scores, Tensor):
        scores = Tensor(scores)
    mask = as_mask(mask, scores, shape=scores.shape, where="masked_softmax")
    if valid_lens is not None:
        if axis not in (-1, scores.ndim - 1):
            raise ValueError("masked_softmax: valid_lens applies to the last axis")
        mask = combine_masks(mask, valid_lens_to_mask(valid_lens, scores.shape[-1], scores.ndim, scores),
                             like=scores, where="masked_softmax")
    if mask is None:
        return Softmax(axis)(scores)
    return MaskedSoftmax(mask, axis)(scores)


class CausalBias:
    """A causal mask given by its alignment and sizes, not by its entries (PyTorch's
    ``torch.nn.attention.bias.CausalBias``): pass it as ``attn_mask=`` to
    :func:`~tinyattn.attention.scaled_dot_product_attention`, which builds the (Tq, Tk) boolean mask
    on the data's device.

        variant "upper_left":  query i attends to keys j ≤ i                 (tril(ones), PyTorch's is_causal)
        variant "lower_right": query i attends to keys j ≤ i + (Tk − Tq)     (tril(ones, Tk − Tq))

    Tq = 3, Tk = 5:  upper_left  1 0 0 0 0     lower_right  1 1 1 0 0
                                 1 1 0 0 0                  1 1 1 1 0
                                 1 1 1 0 0                  1 1 1 1 1
    Lower-right is what a block of Tq new queries after Tk − Tq cached keys needs (KV cache, chunked
    prefill; flash-attention's convention). With Tq > Tk its first Tq − Tk rows keep no key: those
    queries get zero weights and a zero output (as PyTorch 2.13 on CPU), never NaN.

    Anything that reads arrays sees the boolean mask (True = attend): ``np.asarray(bias)``, so it also
    works as a ``mask=`` / ``attention_mask=`` anywhere :func:`as_mask` is the door. ``to_mask(like)``
    gives it on the device of ``like``; ``to_bias(like)`` the additive form (0 / −inf).
    """

    def __init__(self, variant, seq_len_q, seq_len_kv):
        from ..functions.masks import _ALIGN
        if variant not in _ALIGN:
            raise ValueError(f"CausalBias: variant must be 'upper_left' or 'lower_right', got {variant!r}")
        for nm, n in (("seq_len_q", seq_len_q), ("seq_len_kv", seq_len_kv)):
            if isinstance(n, bool) or not hasattr(n, "__index__") or int(n) <= 0:
                raise ValueError(f"CausalBias: {nm} must be a positive integer, got {n!r}")
        self.variant = _ALIGN[variant]
        self.seq_len_q, self.seq_len_kv = int(seq_len_q), int(seq_len_kv)

    @property
    def shape(self):
        return (self.seq_len_q, self.seq_len_kv)

    def to_mask(self, like=None):
        """The (Tq, Tk) boolean mask (True = attend) on the device of ``like`` (Tensor/array/None)."""
        return causal_mask(self.seq_len_q, self.seq_len_kv, like, align=self.variant)

    def to_bias(self, like=None, dtype=np.float32):
        """The additive form: 0 where attended, −inf elsewhere, (Tq, Tk), on the device of ``like``."""
        m = self.to_mask(like)
        xp = backend.get_array_module(m)
        return xp.where(m, xp.zeros((), dtype=dtype), xp.asarray(-np.inf, dtype=dtype))

    def __array__(self, dtype=None, copy=None):
        m = backend.as_numpy(self.to_mask(np))
        return m if dtype is None else m.astype(dtype)

    def __repr__(self):
        return f"CausalBias({self.variant!r}, seq_len_q={self.seq_len_q}, seq_len_kv={self.seq_len_kv})"


def causal_upper_left(seq_len_q, seq_len_kv):
    """A :class:`CausalBias` aligned top-left: query i sees keys 0..i (PyTorch's ``is_causal=True`` and
    ``causal_upper_left``). (Tq, Tk) boolean when read as an array."""
    return CausalBias("upper_left", seq_len_q, seq_len_kv)


def causal_lower_right(seq_len_q, seq_len_kv):
    """A :class:`CausalBias` aligned bottom-right: query i sees keys 0..i + (Tk − Tq), so the last query
    sees every key (PyTorch's ``causal_lower_right``, flash-attention's causal). (Tq, Tk) boolean when
    read as an array."""
    return CausalBias("lower_right", seq_len_q, seq_len_kv)
