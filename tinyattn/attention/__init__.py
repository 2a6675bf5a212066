"""Attention (``tinyattn.attention``), one file per mechanism.

| paper / source                         | class or function                                   | file              |
|----------------------------------------|-----------------------------------------------------|-------------------|
| (masks: Keras / PyTorch / d2l)         | ``masked_softmax``, ``as_mask``, ``causal_mask``,    | ``masks.py``      |
|                                        | ``valid_lens_to_mask``, ``combine_masks``            |                   |
| PyTorch ``torch.nn.attention.bias``     | ``CausalBias``, ``causal_upper_left``,               | ``masks.py``      |
|                                        | ``causal_lower_right``                               |                   |
| Luong et al. 2015; Vaswani et al. 2017 | ``dot_score``, ``scaled_dot_score``,                 | ``scores.py``     |
|                                        | ``general_score``, ``attend``,                       |                   |
|                                        | ``scaled_dot_product_attention`` (PyTorch's F.sdpa)  |                   |
| Bahdanau et al. 2015 (d2l)             | ``additive_score``, ``additive_energy``,             | ``additive.py``   |
|                                        | ``BahdanauAttention``                                |                   |
| Luong et al. 2015 (global)             | ``LuongAttention`` (dot / general / concat),         | ``multiplicative.py`` |
|                                        | ``concat_score``                                     |                   |
| Luong et al. 2015 (local-m, local-p)   | ``LocalMonotonicAttention``,                         | ``local.py``      |
|                                        | ``LocalPredictiveAttention``, ``LocalAttention``,    |                   |
|                                        | ``local_attention``, ``local_m_centers``,            |                   |
|                                        | ``local_p_centers``                                  |                   |
| Xu et al. 2015 (hard)                  | ``hard_attention``, ``StraightThroughOneHot``,       | ``hard.py``       |
|                                        | ``HardAttention`` (estimator: reinforce / gumbel /   |                   |
|                                        | straight_through)                                    |                   |
| Jang 2017, Maddison 2017 (Gumbel-softmax); | ``gumbel_softmax``, ``gumbel_noise``, ``Reinforce``, | ``estimators.py`` |
| Williams 1992 (REINFORCE)              | ``reinforce_loss``, ``sample_categorical``,          |                   |
|                                        | ``categorical_log_prob``, ``categorical_entropy``    |                   |
| Graves et al. 2014 (NTM, cosine)       | ``cosine_score`` (scores.py), ``CosineAttention``    | ``cosine.py``     |
| Vaswani et al. 2017                    | ``MultiHeadAttention`` (Keras), ``SelfAttention``    | ``multihead.py``  |
| philipperemy keras-attention           | ``ManyToOneAttention``                               | ``pooling.py``    |
| ``attention_3d_block``                 | ``TimeStepAttention``                                | ``pooling.py``    |
| Yang et al. 2016 (HAN)                 | ``AttentionPooling``, ``HierarchicalAttention``      | ``pooling.py``    |
| Keras ``Attention`` / ``AdditiveAttention`` | ``Attention``, ``AdditiveAttention``            | ``keras.py``      |
| Vaswani 2017; Su 2021 (RoPE); Press 2021 (ALiBi); Raffel 2020 (T5) | ``sinusoidal_positions``, | ``positions.py`` |
|                                        | ``SinusoidalPositionalEncoding``, ``LearnedPositionalEmbedding``, |  |
|                                        | ``apply_rotary``, ``RotaryEmbedding``, ``alibi_bias``, |                 |
|                                        | ``T5RelativePositionBias``                           |                   |
| Beltagy 2020 (Longformer), Mistral     | ``sliding_window_mask``                              | ``sliding_window.py`` |
| Ainslie et al. 2023 (GQA); Shazeer 2019 (MQA) | ``GroupedQueryAttention`` (Keras ``GroupQueryAttention``) | ``grouped_query.py`` |
| Katharopoulos et al. 2020              | ``linear_attention``, ``linear_attention_recurrent`` | ``linear.py``     |
| Yin et al. 2016 (ABCNN); CNN + attention pooling | ``match_score``, ``ABCNN1``, ``ABCNN2``,   | ``cnn.py``        |
|                                        | ``ABCNN3``, ``ConvAttentionPooling``                 |                   |

Every public name is importable from ``tinyattn.attention`` (``__all__``). Masks are True = attend
everywhere and go through ``as_mask`` (defined in ``tinyattn/functions/masks.py``, below ``nn``, so
the recurrent layers use it too; re-exported by ``masks.py``); layers cast floating inputs to their
dtype on entry (``tinyattn.nn.cast_input``). Shared layer plumbing is in ``_base.py`` (private).
τ (``cosine_score``, ``CosineAttention``) is a temperature: the cosine is divided by it.
"""
from .masks import *  # noqa: F401,F403
from .scores import *  # noqa: F401,F403
from .additive import *  # noqa: F401,F403
from .multiplicative import *  # noqa: F401,F403
from .local import *  # noqa: F401,F403
from .estimators import *  # noqa: F401,F403
from .hard import *  # noqa: F401,F403
from .cosine import *  # noqa: F401,F403
from .multihead import *  # noqa: F401,F403
from .pooling import *  # noqa: F401,F403
from .keras import *  # noqa: F401,F403
from .positions import *  # noqa: F401,F403
from .sliding_window import *  # noqa: F401,F403
from .grouped_query import *  # noqa: F401,F403
from .linear import *  # noqa: F401,F403
from .cnn import *  # noqa: F401,F403
from . import (masks, scores, additive, multiplicative, local, estimators, hard, cosine, multihead, pooling, keras,
               positions, sliding_window, grouped_query, linear, cnn)

__all__ = (masks.__all__ + scores.__all__ + additive.__all__ + multiplicative.__all__ + local.__all__
           + estimators.__all__ + hard.__all__ + cosine.__all__ + multihead.__all__ + pooling.__all__ + keras.__all__
           + positions.__all__ + sliding_window.__all__ + grouped_query.__all__ + linear.__all__
           + cnn.__all__)
