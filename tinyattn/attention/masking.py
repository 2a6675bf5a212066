"""Masked softmax and mask helpers.

A mask is boolean with **True = attend** (Keras's convention, and PyTorch's ``attn_mask``; note that
PyTorch's ``key_padding_mask`` is the opposite). Masks broadcast against the scores, so one
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

__all__ = ["masked_softmax", "causal_mask", "valid_lens_to_mask", "combine_masks"]


def _arr(m):
    """A Tensor's array; a list becomes an array; an array stays as it is."""
    if isinstance(m, Tensor):
        return m.data
    return m if hasattr(m, "dtype") else np.asarray(m)


def causal_mask(tq, tk=None, xp=None):
    """(Tq, Tk) boolean, True where key j ≤ query i (top-left aligned, as Keras and PyTorch)."""
    tk = tq if tk is None else tk
    xp = xp or backend.default_xp()
    return xp.tril(xp.ones((tq, tk), dtype=bool))


def valid_lens_to_mask(valid_lens, tk, ndim=3, xp=None):
    """d2l's valid lengths -> a boolean mask that broadcasts against scores of rank ``ndim``.

    valid_lens (B,): every query of batch row b sees keys 0..len_b−1  -> mask (B, 1, …, 1, Tk);
    valid_lens (B, Tq): query i of row b sees keys 0..len_bi−1        -> mask (B, 1, …, Tq, Tk).
    Extra middle axes (heads) broadcast.
    """
    vl = _arr(valid_lens)
    xp = xp or backend.get_array_module(vl)
    vl = xp.asarray(vl)
    keys = xp.arange(tk)
    if vl.ndim == 1:
        return keys < vl.reshape((vl.shape[0],) + (1,) * (ndim - 1))
    if vl.ndim == 2:
        return keys < vl.reshape((vl.shape[0],) + (1,) * (ndim - 3) + (vl.shape[1], 1))
    raise ValueError(f"valid_lens must be 1-D (B,) or 2-D (B, Tq), got shape {tuple(vl.shape)}")


def combine_masks(*masks):
    """AND of the given boolean masks (None entries skipped); None if all are None."""
    out = None
    for m in masks:
        if m is None:
            continue
        m = _arr(m).astype(bool, copy=False)
        out = m if out is None else (out & m)
    return out


def masked_softmax(scores, mask=None, valid_lens=None, axis=-1):
    """Softmax of ``scores`` over ``axis`` that ignores masked positions.

    scores: (..., Tq, Tk) Tensor. mask: boolean, True = attend, broadcastable to scores.
    valid_lens: (B,) or (B, Tq) integer lengths (d2l): keys at positions ≥ length are masked.
    Both may be given (they are ANDed). Returns weights of the scores' shape and dtype; a fully
    masked row is all zeros (no NaN) with zero gradient.
    """
    if not isinstance(scores, Tensor):
        scores = Tensor(scores)
    if valid_lens is not None:
        if axis not in (-1, scores.ndim - 1):
            raise ValueError("masked_softmax: valid_lens applies to the last axis")
        mask = combine_masks(mask, valid_lens_to_mask(valid_lens, scores.shape[-1], scores.ndim,
                                                       backend.get_array_module(scores.data)))
    if mask is None:
        return Softmax(axis)(scores)
    mask = _arr(mask)
    if mask.dtype != bool:
        mask = mask.astype(bool)
    try:
        np.broadcast_shapes(tuple(mask.shape), scores.shape)
    except ValueError:
        raise ValueError(f"masked_softmax: mask of shape {tuple(mask.shape)} does not broadcast to "
                         f"scores of shape {scores.shape}") from None
    backend.check_same_device("masked_softmax", scores.data, mask)
    return MaskedSoftmax(mask, axis)(scores)
