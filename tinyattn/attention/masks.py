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
from ..autograd import Tensor
from ..functions.nn import Softmax, MaskedSoftmax
from ..functions.masks import as_mask, causal_mask, valid_lens_to_mask, combine_masks

__all__ = ["masked_softmax", "as_mask", "causal_mask", "valid_lens_to_mask", "combine_masks"]


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
