"""Transformer blocks (``tinyattn.transformer``): encoder/decoder layers and stacks with PyTorch's
arguments (loading its state dicts), a KV cache for incremental decoding, and a decoder-only LM."""
from .attention import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .lm import *  # noqa: F401,F403
from . import attention, layers, lm

__all__ = attention.__all__ + layers.__all__ + lm.__all__
