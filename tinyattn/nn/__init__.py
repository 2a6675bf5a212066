"""Layers (``tinyattn.nn``): Module mechanics from PyTorch, names/arguments/weights from Keras.

The attention layers live one level up (``tinyattn.attention``) and are also reachable here, e.g.
``tinyattn.nn.MultiHeadAttention``, through a lazy lookup (so this lower layer never imports them).
"""
from .module import Module, Parameter, Sequential, ModuleList
from . import init
from .layers import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from ..functions.rnn import release_buffers, buffer_pool_bytes, set_buffer_pool_limit  # noqa: F401


def __getattr__(name):
    from .. import attention
    if name in getattr(attention, "__all__", ()):
        return getattr(attention, name)
    raise AttributeError(f"module 'tinyattn.nn' has no attribute {name!r}")
