"""Each fused kernel in tinyattn.kernels equals its textbook form (plain differentiable ops, autograd
doing the backward): outputs and gradients, float64, with a random upstream gradient."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import kernels


def T(rng, *shape):
    return ta.tensor(rng.standard_normal(shape), requires_grad=True)


def _same(rng, fast, slow, ins, rtol=1e-10, atol=1e-12):
    """fast(*ins) and slow(*ins) agree, and so do their gradients for one random upstream gradient."""
    yf, ys = fast(*ins), slow(*ins)
    yf = yf if isinstance(yf, tuple) else (yf,)
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert len(yf) == len(ys)
    gys = [rng.standard_normal(y.shape) for y in yf]
    for a, b in zip(yf, ys):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
    gf = ta.grad(list(yf), ins, gys)
    gs = ta.grad(list(ys), ins, gys)
    for a, b in zip(gf, gs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)


def _textbook_masked_softmax(s, keep):
    """softmax over the kept entries, written out: exp(s − max) ⊙ keep / Σ."""
    s = ta.where(keep, s, ta.tensor(np.full((), -1e30)))
    e = (s - s.detach().max(axis=-1, keepdims=True)).exp() * ta.tensor(keep.astype(np.float64))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_fused_equals_textbook(rng, masked):
    q, k, v = T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5), T(rng, 2, 3, 6, 2)
    keep = rng.random((2, 1, 4, 6)) > 0.3
    keep[..., 0] = True                               # no fully masked row (the textbook form divides)
    keep = keep if masked else np.ones_like(keep)
    scale = 0.37

    def fast(q, k, v):
        return kernels.ScaledDotProductAttention(scale, keep if masked else None)(q, k, v)

    def slow(q, k, v):
        p = _textbook_masked_softmax((q @ k.swapaxes(-1, -2)) * scale, keep)
        return p @ v, p

    _same(rng, fast, slow, [q, k, v])


def test_additive_score_fused_equals_textbook(rng):
    qp, kp, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 4)

    def slow(qp, kp, v):
        return (qp.expand_dims(-2) + kp.expand_dims(-3)).tanh() @ v

    _same(rng, lambda *a: kernels.AdditiveScore()(*a), slow, [qp, kp, v])


@pytest.mark.parametrize("axes", [(1,), (1, 2)])
def test_layernorm_fused_equals_textbook(rng, axes):
    x = T(rng, 2, 3, 4)
    shp = tuple(n if i in axes else 1 for i, n in enumerate(x.shape))
    g, b = T(rng, *shp), T(rng, *shp)

    def slow(x, g, b):
        mu = x.mean(axis=axes, keepdims=True)
        var = ((x - mu) * (x - mu)).mean(axis=axes, keepdims=True)
        return (x - mu) / (var + 1e-3).sqrt() * g + b

    _same(rng, lambda *a: kernels.LayerNormFn(axes, 1e-3)(*a), slow, [x, g, b])


def test_old_import_paths_still_work():
    from tinyattn.functions import rnn, attention
    from tinyattn.seq2seq import fused
    from tinyattn.nn.layers import LayerNormFn
    assert rnn.lstm_sequence is kernels.lstm_sequence and rnn.LSTMSequenceFn is kernels.LSTMSequenceFn
    assert attention.ScaledDotProductAttention is kernels.ScaledDotProductAttention
    assert fused.additive_attention is kernels.additive_attention
    assert LayerNormFn is kernels.LayerNormFn
    assert ta.nn.release_buffers is kernels.release_buffers
