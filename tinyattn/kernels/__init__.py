"""Fast kernels: fused Functions with hand-written array backwards — the speed work, kept apart.

Every mechanism in tinyattn exists first in a *textbook* form, composed of plain differentiable ops
(matmul, tanh, softmax, …) with autograd doing the backward; read that form to learn the maths. A
kernel here computes the same thing as ONE graph node, in place, with its backward derived and written
out by hand. It is an optimisation only: each one is tested equal (outputs and gradients, float64) to
its textbook form, and gradchecked on its own.

==========================  ==============================  ==================================
kernel (module)             what the trick buys             the textbook form it must equal
==========================  ==============================  ==================================
``LSTMSequenceFn``,         the whole layer (input          ``LSTM(fused=False)`` /
``LSTMCellFn`` (rnn.py)     projection, T-step loop, BPTT)  ``LSTMCell(fused=False)``: the
                            as one node: x·K for all T·B    paper's equations on plain ops,
                            rows in one matmul, one exp     ``tinyattn.nn.lstm_step``, in a
                            for all four gates (weights     Python loop over time
                            pre-scaled by −1/−2, tanh(z) =
                            2σ(2z) − 1), in-place column
                            writes, pooled buffers.
                            Measured: 1.7–1.8×
``BiLSTMSequenceFn``        the two directions of a         the two layers run apart (each an
(rnn.py)                    ``Bidirectional(LSTM)`` in ONE  ``LSTMSequenceFn``), and so
                            loop: states stacked and        ``Bidirectional(LSTM(fused=
                            feature-major, so each gate is  False))``
                            a contiguous (u, B) slab; one
                            batched matmul and one pass
                            per gate op for both
                            directions; σ via tanh.
                            Measured: see its docstring
``GRUSequenceFn``,          the same for the GRU (both      ``GRU(fused=False)`` /
``GRUCellFn`` (rnn.py)      ``reset_after`` variants).      ``GRUCell(fused=False)``:
                            Measured: 1.8–2.1×              ``tinyattn.nn.gru_step``
buffer pool (rnn.py:        reuses the big (T, B, ·) arrays plain allocation (pool limit 0,
``release_buffers``,        of the sequence kernels across  ``set_buffer_pool_limit(0)``)
``buffer_pool_bytes``,      steps: no fresh pages (a page
``set_buffer_pool_limit``)  fault per 4 KiB), reference-
                            counted so live arrays are
                            never overwritten. Measured:
                            ~1.0× here (glibc); earlier
                            profiles saw page faults cost
                            up to a third of a step — it
                            depends on the allocator
``ScaledDotProductAttention`` softmax(scale·QKᵀ + bias,     matmul → masked_softmax →
(attention.py)              masked) → dropout → ·V in one   dropout → matmul
                            node: scale applied to the
                            small side (Q), in-place
                            softmax, no (…, Tq, Tk)
                            temporaries per op; double
                            backward supported. No row-max
                            pass when Cauchy–Schwarz bounds
                            |scores| ≤ 60; gK from the kept
                            scaled Q; per-head GEMMs split
                            over the pool (parallel.matmul).
                            Measured: 1.2–1.3× (masked);
                            forward+backward B16 H8 T128
                            d32 on head views 16.8 → 14.0
                            ms (min of 40) vs the earlier
                            fused kernel
``SplitHeads``              the fused QKV projection cut    split → reshape → transpose
(attention.py)              into (B, H, T, n) heads as one  (per part)
                            node: views forward, one
                            strided copy into one gradient
                            buffer backward. Measured:
                            backward 1.9 → 0.6 ms (B16
                            T128 H8, 3 × 32)
``AdditiveScore``           vᵀ tanh(qp_i + kp_j) by         (qp[..., :, None, :] +
(attention.py)              broadcasting into one buffer;   kp[..., None, :, :]).tanh() @ v
                            backward without building the
                            (…, Tq, Tk, h) gradient: its
                            two sums are one einsum each.
                            Measured: 1.2–1.3×
``AdditiveAttentionStep``   one seq2seq decoder step of     additive_energy → masked_softmax
(additive_step.py)          additive attention (score,      → attend
                            softmax, context) as one node:
                            three (B, S, ·) arrays instead
                            of about six. Measured: 1.1–1.6×
``LayerNormFn``             LayerNormalization in one node  (x − μ)/√(σ² + ε)·γ + β from
(layernorm.py)              (one-pass backward); double     mean / sub / mul / pow
                            backward supported; row sums
                            by einsum. Measured: 2.0×;
                            (16, 128, 256) float32 fwd+bwd
                            3.6 → 2.5 ms with einsum
==========================  ==============================  ==================================

The tests that hold each kernel equal to its textbook form (outputs and gradients, float64):

    tests/test_kernels.py::test_lstm_fused_equals_textbook          (masks, initial states, go_backwards)
    tests/test_kernels.py::test_gru_fused_equals_textbook           (reset_after both ways, masks, ...)
    tests/test_kernels.py::test_cells_fused_equal_textbook          (one step, LSTMCell / GRUCell)
    tests/test_kernels.py::test_bidirectional_keeps_the_textbook_choice
    tests/test_recurrent.py::test_fused_bidirectional_equals_the_two_layers   (1e-12; masks, merge modes, ...)
    tests/test_recurrent.py::test_fused_bidirectional_equals_the_textbook_layers
    tests/test_resources.py::test_release_buffers_explicitly        (the pool's behaviour)
    tests/test_kernels.py::test_sdpa_fused_equals_textbook
    tests/test_kernels.py::test_additive_score_fused_equals_textbook
    tests/test_seq2seq.py::test_fused_additive_attention_equals_the_composed_ops
    tests/test_kernels.py::test_sdpa_unshifted_and_shifted_softmax_equal_textbook
    tests/test_kernels.py::test_split_heads_equals_textbook
    tests/test_kernels.py::test_layernorm_fused_equals_textbook
and each kernel's own gradcheck: tests/test_gradcheck.py, tests/test_recurrent.py.

"Measured": forward + backward of one step, float32, textbook time / kernel time, process CPU time
with one BLAS thread, medians of 10–25 steps in two runs of ``benchmarks/bench_kernels.py`` (sizes
there: LSTM/GRU B 32, T 50, d 32, u 128; attention B 8, H 4, T 128, d 32) on the 2-core shared
development machine — rerun it on yours; the ranges are the two runs.

Not moved here: ``tinyattn.functions.nn.softmax_``, the in-place softmax every softmax (plain,
masked, fused) uses — it is the textbook softmax's own forward, not an alternative to it; GELU's
chunked NumPy kernel (``tinyattn.functions.elementwise``: float32 Φ from one fitted rational
function, |error| < 2e-7, forward 2048 × 1024 15.5 → 6.0 ms; GELU'(x) kept for a one-pass
backward; tests/test_erf.py holds it to math.erf).

Double backward: the recurrent kernels and ``AdditiveAttentionStep`` have array-only backwards
(``create_graph=True`` through them raises NotImplementedError); use the textbook forms
(``fused=False``) for second derivatives.

The old import paths (``tinyattn.functions.rnn``, ``tinyattn.functions.attention``,
``tinyattn.seq2seq.fused``, ``tinyattn.nn.layers.LayerNormFn``) re-export these names.
"""
from .rnn import (LSTMCellFn, LSTMSequenceFn, BiLSTMSequenceFn, GRUCellFn, GRUSequenceFn, lstm_sequence, gru_sequence,
                  release_buffers, buffer_pool_bytes, set_buffer_pool_limit)
from .attention import ScaledDotProductAttention, AdditiveScore, SplitHeads
from .additive_step import AdditiveAttentionStep, additive_attention
from .layernorm import LayerNormFn

__all__ = ["LSTMCellFn", "LSTMSequenceFn", "BiLSTMSequenceFn", "GRUCellFn", "GRUSequenceFn", "lstm_sequence", "gru_sequence",
           "release_buffers", "buffer_pool_bytes", "set_buffer_pool_limit", "ScaledDotProductAttention",
           "AdditiveScore", "SplitHeads", "AdditiveAttentionStep", "additive_attention", "LayerNormFn"]
