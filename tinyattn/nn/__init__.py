"""Layers (``tinyattn.nn``): Module mechanics from PyTorch, names/arguments/weights from Keras.

The attention layers live one level up, in ``tinyattn.attention`` (import them from there: this
lower layer never reaches up into it). ``cast_input`` is how every layer takes its inputs: floating
inputs are cast to the layer's dtype on entry, as in Keras.
"""
from .module import Module, Parameter, Sequential, ModuleList, cast_input
from . import init
from .layers import *  # noqa: F401,F403
from .recurrent import *  # noqa: F401,F403
from .normalization import *  # noqa: F401,F403
from ..kernels.rnn import release_buffers, buffer_pool_bytes, set_buffer_pool_limit  # noqa: F401
