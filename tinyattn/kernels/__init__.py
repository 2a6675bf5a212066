"""Fast kernels: fused Functions with hand-written array backwards — the speed work, kept apart.

Every mechanism in tinyattn exists first in a *textbook* form, composed of plain differentiable ops
(matmul, tanh, softmax, …) with autograd doing the backward; read that form to learn the maths. A
kernel here computes the same thing as ONE graph node, in place, with its backward derived and written
out by hand. It is an optimisation only: each one is tested equal (outputs and gradients, float64) to
its textbook form, and gradchecked on its own.

==========================  ==============================  =====================================
kernel (module)             what the trick buys             textbook form it must equal (test)
==========================  ==============================  =====================================
``LSTMSequenceFn``,         the whole layer (input           ``tinyattn.nn.LSTMCell`` /
``LSTMCellFn`` (rnn.py)     projection, T-step loop, BPTT)   ``LSTM(fused=False)``: the paper's
                            as one node: x·K for all T·B     equations on plain ops
                            rows in one matmul, one exp      (tests/test_kernels.py::
                            for all four gates (weights      test_lstm_fused_equals_textbook)
                            pre-scaled by −1/−2, tanh(z) =
                            2σ(2z) − 1), in-place column
                            writes, pooled buffers
``GRUSequenceFn``,          the same for the GRU (both       ``tinyattn.nn.GRUCell`` /
``GRUCellFn`` (rnn.py)      ``reset_after`` variants)        ``GRU(fused=False)`` (tests/
                                                             test_kernels.py::
                                                             test_gru_fused_equals_textbook)
buffer pool (rnn.py:        reuses the big (T, B, ·) arrays  — (behaviour: tests/test_resources.py)
``release_buffers``,        of the sequence kernels across
``buffer_pool_bytes``,      steps: no fresh pages (a page
``set_buffer_pool_limit``)  fault per 4 KiB), reference-
                            counted so live arrays are
                            never overwritten
``ScaledDotProductAttention`` softmax(scale·QKᵀ + bias,      ``matmul → masked_softmax → dropout
(attention.py)              masked) → dropout → ·V in one    → matmul`` (tests/test_kernels.py::
                            node: scale applied to the       test_sdpa_fused_equals_textbook)
                            small side (Q), in-place
                            softmax, no (…, Tq, Tk)
                            temporaries per op; double
                            backward supported
``AdditiveScore``           vᵀ tanh(qp_i + kp_j) by          ``(qp[..., :, None, :] + kp[..., None,
(attention.py)              broadcasting, tanh via one exp   :, :]).tanh() @ v`` (tests/
                            (NumPy's float32 exp is          test_kernels.py::
                            vectorised, its tanh is not),    test_additive_score_fused_equals_
                            backward without building the    textbook)
                            (…, Tq, Tk, h) gradient
``AdditiveAttentionStep``   one seq2seq decoder step of      ``additive_energy → masked_softmax →
(additive_step.py)          additive attention (score,       attend`` (tests/test_seq2seq.py::
                            softmax, context) as one node:   test_fused_additive_attention_
                            three (B, S, ·) arrays instead   equals_the_composed_ops)
                            of about six
``LayerNormFn``             LayerNormalization in one node   ``(x − μ)/√(σ² + ε)·γ + β`` from
(layernorm.py)              (one-pass backward); double      mean/sub/mul/pow (tests/
                            backward supported               test_kernels.py::
                                                             test_layernorm_fused_equals_textbook)
==========================  ==============================  =====================================

Not moved here: ``tinyattn.functions.nn.softmax_``, the in-place softmax every softmax (plain,
masked, fused) uses — it is the textbook softmax's own forward, not an alternative to it.

Double backward: the recurrent kernels and ``AdditiveAttentionStep`` have array-only backwards
(``create_graph=True`` through them raises NotImplementedError); use the textbook forms
(``fused=False``) for second derivatives.

The old import paths (``tinyattn.functions.rnn``, ``tinyattn.functions.attention``,
``tinyattn.seq2seq.fused``, ``tinyattn.nn.layers.LayerNormFn``) re-export these names.
"""
from .rnn import (LSTMCellFn, LSTMSequenceFn, GRUCellFn, GRUSequenceFn, lstm_sequence, gru_sequence,
                  release_buffers, buffer_pool_bytes, set_buffer_pool_limit)
from .attention import ScaledDotProductAttention, AdditiveScore
from .additive_step import AdditiveAttentionStep, additive_attention
from .layernorm import LayerNormFn

__all__ = ["LSTMCellFn", "LSTMSequenceFn", "GRUCellFn", "GRUSequenceFn", "lstm_sequence", "gru_sequence",
           "release_buffers", "buffer_pool_bytes", "set_buffer_pool_limit", "ScaledDotProductAttention",
           "AdditiveScore", "AdditiveAttentionStep", "additive_attention", "LayerNormFn"]
