"""Attention (``tinyattn.attention``): masked softmax, every score function, the Keras layers
``Attention`` / ``AdditiveAttention`` / ``MultiHeadAttention``, the seed tutorials' layers, and the
hard / local / hierarchical variants; positions (sinusoidal, learned, RoPE, ALiBi, T5), sliding-window
masks, grouped-query attention and linear attention."""
from .masking import *  # noqa: F401,F403
from .scores import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .seed_layers import *  # noqa: F401,F403
from .variants import *  # noqa: F401,F403
from .positions import *  # noqa: F401,F403
from .sliding_window import *  # noqa: F401,F403
from .grouped_query import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .flash import flash_attention, FlashAttention  # noqa: F401
from . import masking, scores, layers, seed_layers, variants, positions, sliding_window, grouped_query, linear

__all__ = (masking.__all__ + scores.__all__ + layers.__all__ + seed_layers.__all__
           + variants.__all__ + positions.__all__
           + sliding_window.__all__ + grouped_query.__all__ + linear.__all__)
