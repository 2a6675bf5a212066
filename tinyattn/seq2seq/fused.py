"""Moved: seq2seq's fused additive-attention decoder step lives in :mod:`tinyattn.kernels.additive_step`.

Re-exported here so that ``from tinyattn.seq2seq.fused import additive_attention`` keeps working.
"""
from ..kernels.additive_step import AdditiveAttentionStep, additive_attention  # noqa: F401

__all__ = ["AdditiveAttentionStep", "additive_attention"]
