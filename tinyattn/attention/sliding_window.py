"""Sliding-window (local) attention masks (Longformer, Mistral): each query sees only nearby keys.

    causal:      key j visible to query i  ⇔  i' − window < j ≤ i'       (the last ``window`` keys)
    symmetric:   key j visible to query i  ⇔  |i' − j| < window          (Keras GQA's band)

with i' = i + offset the query's absolute position (offset 0: top-left aligned, as ``causal_mask``;
offset Tk − Tq: the queries are the last Tq positions, as with a KV cache). The mask is boolean
(Tq, Tk), True = attend, and goes to ``scaled_dot_product_attention(..., mask=)`` or
``MultiHeadAttention(..., attention_mask=)`` (broadcasting over batch and heads). Restricting to a
window makes each row's cost O(window) instead of O(Tk) for a kernel that skips masked blocks.
"""
from .. import backend

__all__ = ["sliding_window_mask"]


def sliding_window_mask(Tq, Tk=None, window=None, causal=True, offset=0, xp=None):
    """(Tq, Tk) boolean local mask, True = attend (see the module docstring for the formula).

    window ≥ 1 keys (causal: the query itself and the window − 1 before it). ``xp``: the array
    module of the data (NumPy or CuPy), so the mask lives on the data's device.
    """
    Tk = Tq if Tk is None else Tk
    if window is None or int(window) != window or window < 1:
        raise ValueError(f"sliding_window_mask: window must be a positive integer, got {window!r}")
    xp = xp or backend.default_xp()
    i = xp.arange(Tq)[:, None] + offset
    j = xp.arange(Tk)[None, :]
    if causal:
        return (j <= i) & (j > i - window)
    return xp.abs(i - j) < window
