"""Moved: the fused attention kernels live in :mod:`tinyattn.kernels.attention`.

Re-exported here so that ``from tinyattn.functions.attention import ScaledDotProductAttention``
keeps working. Their textbook forms are ``tinyattn.attention.scaled_dot_product_attention(...,
fused=False)``-style compositions of matmul, masked softmax and dropout (see the kernels docstring).
"""
from ..kernels.attention import ScaledDotProductAttention, AdditiveScore  # noqa: F401

__all__ = ["ScaledDotProductAttention", "AdditiveScore"]
