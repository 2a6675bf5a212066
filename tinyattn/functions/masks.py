"""Masks: the one door every mask goes through (``as_mask``), and the helpers that make masks.

A mask is boolean with **True = attend / keep** (Keras's convention, and PyTorch's ``attn_mask``;
PyTorch's ``key_padding_mask`` is the opposite). ``as_mask`` is the only place in tinyattn where a
user's mask is normalised; every layer, score and function calls it:

    as_mask(mask, like, shape=None, name="mask", where="op")  ->  None or a bool array

* accepted: bool; 0/1 integers; 0/1 floats (``1.0`` keep, ``0.0`` drop); Python lists; NumPy or
  CuPy arrays; Tensors (their array; a mask never carries a gradient);
* refused (ValueError): any other value, e.g. ``[1, .3, .3, 0]`` or ``-inf`` / ``-1e9`` entries — an
  *additive* float mask is a bias on the scores, given through an explicit ``bias=`` argument where
  one exists (PyTorch's float ``attn_mask``), never guessed from a mask;
* moved to the device (array module) of ``like`` (a Tensor or an array): a NumPy mask beside CuPy
  scores goes to the GPU, a CuPy mask beside NumPy scores comes back to the host;
* with ``shape``: checked to broadcast to ``shape`` (e.g. the scores (B, Tq, Tk)); otherwise a
  ValueError naming ``where``, ``name`` and both shapes.

This module sits with the functions (below ``nn``) so the recurrent layers use it too.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor

__all__ = ["as_mask", "causal_mask", "valid_lens_to_mask", "combine_masks"]


def _xp_of(like):
    if like is None:
        return backend.default_xp()
    return backend.get_array_module(like.data if isinstance(like, Tensor) else like)


def as_mask(mask, like, *, shape=None, name="mask", where="mask"):
    """``mask`` as a boolean array (True = keep) on the array module of ``like``; None stays None.

    mask: bool / 0-1 int / 0-1 float; list, NumPy or CuPy array, or Tensor.
    like: a Tensor or array whose device the mask must live on (None: the default backend).
    shape: if given, the mask must broadcast to it (its own shape is kept; broadcasting is the
    caller's). name / where: the argument and the layer or op, for error messages.
    """
    if mask is None:
        return None
    xp = _xp_of(like)
    m = mask.data if isinstance(mask, Tensor) else mask
    if not (hasattr(m, "dtype") and hasattr(m, "shape")):
        try:
            m = np.asarray(m)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {name} could not be read as an array ({e})") from None
    kind = m.dtype.kind
    if kind != "b":
        if kind not in "iuf":
            raise ValueError(f"{where}: {name} must be boolean (True = attend) or 0/1 numbers, got "
                             f"dtype {m.dtype}")
        mxp = backend.get_array_module(m)
        binary = bool(mxp.all((m == 0) | (m == 1))) if m.size else True
        if not binary:
            bad = backend.as_numpy(m[(m != 0) & (m != 1)]).ravel()[:3].tolist()
            raise ValueError(
                f"{where}: {name} must be boolean (True = attend) or hold only 0 and 1, got dtype "
                f"{m.dtype} with values such as {bad}. A mask says which positions to keep; an "
                f"additive float mask (a bias such as -inf or -1e9 added to the scores) must go "
                f"through an explicit bias= argument instead")
        m = m != 0
    if xp is np:
        m = backend.as_numpy(m)
    else:
        m = xp.asarray(m)
    if shape is not None:
        shape = tuple(int(s) for s in shape)
        try:
            ok = tuple(np.broadcast_shapes(tuple(m.shape), shape)) == shape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"{where}: {name} of shape {tuple(m.shape)} does not broadcast to "
                             f"{shape}; give a mask of that shape, or with size-1 axes where one "
                             f"mask is shared")
    return m


_ALIGN = {"upper_left": "upper_left", "top_left": "upper_left",
          "lower_right": "lower_right", "bottom_right": "lower_right"}


def causal_mask(tq, tk=None, xp=None, align="upper_left"):
    """(Tq, Tk) boolean causal mask, True = attend.

    align="upper_left" (Keras, PyTorch's ``is_causal``): key j ≤ query i — ``tril(ones)``;
    align="lower_right" (flash-attention, PyTorch's ``causal_lower_right``): the last query sees every
    key, i.e. key j ≤ i + (Tk − Tq) — ``tril(ones, k=Tk−Tq)``; for a query block that continues a
    cached prefix of Tk − Tq keys. With Tq > Tk its first Tq − Tk rows keep no key.
    ("top_left" / "bottom_right" are accepted as aliases.) The two agree when Tq = Tk.
    ``xp`` may be an array module, or a Tensor/array whose device the mask goes to."""
    tk = tq if tk is None else tk
    try:
        align = _ALIGN[align]
    except (KeyError, TypeError):
        raise ValueError(f"causal_mask: align must be 'upper_left' or 'lower_right', got {align!r}") from None
    if xp is not None and not hasattr(xp, "tril"):
        xp = _xp_of(xp)
    xp = xp or backend.default_xp()
    return xp.tril(xp.ones((tq, tk), dtype=bool), k=0 if align == "upper_left" else tk - tq)


def valid_lens_to_mask(valid_lens, tk, ndim=3, xp=None):
    """d2l's valid lengths -> a boolean mask that broadcasts against scores of rank ``ndim``.

    valid_lens (B,): every query of batch row b sees keys 0..len_b−1  -> mask (B, 1, …, 1, Tk);
    valid_lens (B, Tq): query i of row b sees keys 0..len_bi−1        -> mask (B, 1, …, Tq, Tk).
    Extra middle axes (heads) broadcast. ``xp``: the array module (or a Tensor/array) of the scores.
    """
    vl = valid_lens.data if isinstance(valid_lens, Tensor) else valid_lens
    if xp is not None and not hasattr(xp, "arange"):
        xp = _xp_of(xp)
    if not hasattr(vl, "dtype"):
        vl = np.asarray(vl)
    xp = xp or backend.get_array_module(vl)
    vl = backend.as_numpy(vl) if xp is np else xp.asarray(vl)
    if vl.dtype.kind not in "iu" and not (vl.dtype.kind == "f" and bool(xp.all(vl == xp.round(vl)))):
        raise ValueError(f"valid_lens_to_mask: valid_lens must be integer lengths, got dtype {vl.dtype}")
    keys = xp.arange(tk)
    if vl.ndim == 1:
        return keys < vl.reshape((vl.shape[0],) + (1,) * (ndim - 1))
    if vl.ndim == 2:
        return keys < vl.reshape((vl.shape[0],) + (1,) * (ndim - 3) + (vl.shape[1], 1))
    raise ValueError(f"valid_lens must be 1-D (B,) or 2-D (B, Tq), got shape {tuple(vl.shape)}")


def combine_masks(*masks, like=None, where="combine_masks"):
    """AND of the given masks (each through :func:`as_mask`; None entries skipped); None if all are
    None. The result lives on ``like``'s device (default: the first mask's)."""
    out = None
    for i, m in enumerate(masks):
        if m is None:
            continue
        if like is None:
            like = m.data if isinstance(m, Tensor) else m
            like = like if hasattr(like, "dtype") else None
        m = as_mask(m, like, name=f"mask {i}", where=where)
        if out is None:
            out = m
        else:
            try:
                out = out & m
            except ValueError:
                raise ValueError(f"{where}: masks of shapes {tuple(out.shape)} and {tuple(m.shape)} "
                                 f"do not broadcast together") from None
    return out
