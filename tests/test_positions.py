"""Positions: sinusoidal / learned / RoPE / ALiBi / T5 — formulas against hand computations, RoPE's
relative property, and float64 gradchecks (random upstream gradients) through SDPA and MHA."""
import math

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (sinusoidal_positions, SinusoidalPositionalEncoding, LearnedPositionalEmbedding,
                                apply_rotary, RotaryEmbedding, alibi_slopes, alibi_bias,
                                t5_relative_position_bucket, T5RelativePositionBias, MultiHeadAttention,
                                scaled_dot_product_attention)


def _t(a, grad=True):
    return ta.tensor(np.asarray(a, dtype=np.float64), dtype=np.float64, requires_grad=grad)


# ---- sinusoidal / learned ---------------------------------------------------------------------
def test_sinusoidal_matches_formula():
    T, d = 7, 6
    P = ta.backend.as_numpy(sinusoidal_positions(T, d, dtype="float64"))
    for t in range(T):
        for i in range(d // 2):
            w = 10000.0 ** (-2 * i / d)
            assert P[t, 2 * i] == pytest.approx(math.sin(t * w), abs=1e-14)
            assert P[t, 2 * i + 1] == pytest.approx(math.cos(t * w), abs=1e-14)
    np.testing.assert_allclose(ta.backend.as_numpy(sinusoidal_positions(3, d, offset=4, dtype="float64")), P[4:7], atol=1e-14)
    assert sinusoidal_positions(4, 5).shape == (4, 5)          # odd d


def test_sinusoidal_encoding_adds_and_drops(rng):
    enc = SinusoidalPositionalEncoding(8, dropout=0.5)
    x = _t(rng.standard_normal((2, 5, 8)))
    np.testing.assert_allclose(enc(x, training=False).numpy(), x.numpy() + ta.backend.as_numpy(sinusoidal_positions(5, 8, dtype="float64")))
    ta.manual_seed(0)
    y = enc(x, training=True).numpy()
    assert np.any(y == 0) and not np.allclose(y, x.numpy() + ta.backend.as_numpy(sinusoidal_positions(5, 8, dtype="float64")))
    assert ta.gradcheck(lambda a: enc(a, offset=2, training=False), [x])


def test_learned_positions_gradcheck(rng):
    pe = LearnedPositionalEmbedding(10, 4).astype(np.float64)
    x = _t(rng.standard_normal((2, 3, 4)))
    np.testing.assert_allclose(pe(x, offset=5).numpy(), x.numpy() + pe.embeddings.numpy()[5:8])
    assert ta.gradcheck(lambda a: pe(a, offset=5), [x], params=pe.parameters())
    with pytest.raises(ValueError, match="max_len"):
        pe(x, offset=8)


# ---- RoPE ------------------------------------------------------------------------------------
def _rope_by_hand(x, pos, base=10000.0):
    """Rotate each pair (x_i, x_{i+d/2}) by the angle pos·base^(−2i/d), one scalar at a time."""
    T, d = x.shape
    out = np.empty_like(x)
    for t in range(T):
        for i in range(d // 2):
            a = pos[t] * base ** (-2 * i / d)
            c, s = math.cos(a), math.sin(a)
            out[t, i] = x[t, i] * c - x[t, i + d // 2] * s
            out[t, i + d // 2] = x[t, i + d // 2] * c + x[t, i] * s
    return out


def test_rope_matches_hand_rotation(rng):
    x = rng.standard_normal((5, 8))
    pos = np.array([0, 3, 1, 7, 2])
    np.testing.assert_allclose(apply_rotary(_t(x, False), pos).numpy(), _rope_by_hand(x, pos), atol=1e-13)
    # a rotation keeps norms
    y = RotaryEmbedding(8)(_t(x, False), offset=11).numpy()
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-13)


def test_rope_scores_depend_only_on_offset(rng):
    """q_mᵀ k_n after RoPE is a function of n − m: shifting both positions leaves every score equal."""
    q, k = rng.standard_normal((1, 16)), rng.standard_normal((1, 16))
    Q, K = _t(q, False), _t(k, False)

    def score(m, n):
        return float((apply_rotary(Q, [m]).numpy() * apply_rotary(K, [n]).numpy()).sum())

    for m, n in [(0, 0), (3, 1), (2, 9), (10, 4)]:
        for shift in (1, 5, 100):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-10)
    assert abs(score(0, 3) - score(0, 4)) > 1e-3             # …but it does depend on the offset
    # the same in a full attention matrix: a shifted sequence gives the same RoPE scores
    x = _t(rng.standard_normal((2, 6, 8)), False)
    rope = RotaryEmbedding(8)
    s0 = (rope(x) @ rope(x).swapaxes(-1, -2)).numpy()
    s7 = (rope(x, offset=7) @ rope(x, offset=7).swapaxes(-1, -2)).numpy()
    np.testing.assert_allclose(s0, s7, atol=1e-12)


def test_rope_gradcheck_and_partial(rng):
    x = _t(rng.standard_normal((2, 3, 4, 6)))
    assert ta.gradcheck(lambda a: apply_rotary(a, np.arange(2, 6)), [x])
    assert ta.gradgradcheck(lambda a: apply_rotary(a), [x])
    part = RotaryEmbedding(4)(x)
    np.testing.assert_array_equal(part.numpy()[..., 4:], x.numpy()[..., 4:])
    np.testing.assert_allclose(part.numpy()[..., :4], apply_rotary(x[..., :4]).numpy())
    with pytest.raises(ValueError, match="even"):
        apply_rotary(_t(np.ones((2, 3))))


def test_mha_rotary_equals_rotating_projections(rng):
    mha = MultiHeadAttention(2, 4).astype(np.float64)
    x = _t(rng.standard_normal((2, 5, 6)))
    mha(x, x)
    rope = RotaryEmbedding(4)
    y = mha(x, x, rotary=rope, use_causal_mask=True)
    # by hand: project, rotate, attend, output
    W = lambda n: mha.__dict__[f"{n}_kernel"].numpy()            # noqa: E731
    b = lambda n: mha.__dict__[f"{n}_bias"].numpy()              # noqa: E731
    X = x.numpy()
    q, k, v = (np.einsum("btd,dhk->bhtk", X, W(n)) + b(n)[None, :, None] for n in ("query", "key", "value"))
    q = np.stack([[_rope_by_hand(q[i, h], np.arange(5)) for h in range(2)] for i in range(2)])
    k = np.stack([[_rope_by_hand(k[i, h], np.arange(5)) for h in range(2)] for i in range(2)])
    s = q @ k.swapaxes(-1, -2) / 2.0 + np.where(np.tril(np.ones((5, 5))) > 0, 0, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    o = np.einsum("bhtk,hkd->btd", a @ v, mha.output_kernel.numpy()) + mha.output_bias.numpy()
    np.testing.assert_allclose(y.numpy(), o, atol=1e-12)
    assert ta.gradcheck(lambda a: mha(a, a, rotary=rope, use_causal_mask=True, training=False), [x],
                        params=mha.parameters())


# ---- ALiBi -----------------------------------------------------------------------------------
def test_alibi_slopes_schedule():
    np.testing.assert_allclose(ta.backend.as_numpy(alibi_slopes(8)), [2.0 ** -k for k in range(1, 9)])
    np.testing.assert_allclose(ta.backend.as_numpy(alibi_slopes(4)), [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8])
    # non-power of 2 (Press et al.'s code): the 8 slopes for 8 heads, then odd entries of the 16-head list
    np.testing.assert_allclose(ta.backend.as_numpy(alibi_slopes(12)), [2.0 ** -k for k in range(1, 9)] + [2.0 ** -(k / 2) for k in (1, 3, 5, 7)])
    np.testing.assert_allclose(ta.backend.as_numpy(alibi_slopes(6)), [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3])
    with pytest.raises(ValueError):
        alibi_slopes(0)


def test_alibi_bias_hand_formula():
    H, Tq, Tk = 3, 2, 5
    b = ta.backend.as_numpy(alibi_bias(H, Tq, Tk, dtype="float64"))
    m = ta.backend.as_numpy(alibi_slopes(H))
    for h in range(H):
        for i in range(Tq):
            for j in range(Tk):
                assert b[h, i, j] == pytest.approx(-m[h] * (i + Tk - Tq - j))
    bs = ta.backend.as_numpy(alibi_bias(H, 4, symmetric=True, dtype="float64"))
    assert bs[1, 0, 3] == pytest.approx(-m[1] * 3) and bs[1, 3, 0] == pytest.approx(-m[1] * 3)


def test_alibi_in_sdpa_and_mha(rng):
    B, H, T, d = 2, 4, 5, 3
    q, k, v = (_t(rng.standard_normal((B, H, T, d))) for _ in range(3))
    bias = alibi_bias(H, T, dtype="float64")
    out = scaled_dot_product_attention(q, k, v, causal=True, bias=bias)
    s = q.numpy() @ k.numpy().swapaxes(-1, -2) / math.sqrt(d) + ta.backend.as_numpy(bias)
    s = np.where(np.tril(np.ones((T, T), bool)), s, -np.inf)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    np.testing.assert_allclose(out.numpy(), a @ v.numpy(), atol=1e-12)
    assert ta.gradcheck(lambda *x: scaled_dot_product_attention(*x, causal=True, bias=bias), [q, k, v])
    assert ta.gradgradcheck(lambda *x: scaled_dot_product_attention(*x, causal=True, bias=bias), [q, k, v])
    mha = MultiHeadAttention(H, 2).astype(np.float64)
    x = _t(rng.standard_normal((B, T, 6)))
    mha(x, x)
    y, w = mha(x, x, bias=bias, use_causal_mask=True, return_attention_scores=True)
    assert w.shape == (B, H, T, T)
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0)
    assert ta.gradcheck(lambda a: mha(a, a, bias=bias, use_causal_mask=True, training=False), [x],
                        params=mha.parameters())
    with pytest.raises(ValueError, match="bias"):
        scaled_dot_product_attention(q, k, v, bias=np.zeros((3, T, T)))


def test_sdpa_bias_zero_equals_fused_and_bias_gets_gradient(rng):
    q, k, v = (_t(rng.standard_normal((2, 3, 4, 5))) for _ in range(3))
    mask = rng.random((2, 1, 4, 4)) > 0.3
    mask[..., 0] = True
    np.testing.assert_allclose(scaled_dot_product_attention(q, k, v, mask=mask, bias=np.zeros((4, 4))).numpy(),
                               scaled_dot_product_attention(q, k, v, mask=mask).numpy(), atol=1e-13)
    b = _t(rng.standard_normal((3, 4, 4)))
    assert ta.gradcheck(lambda *x: scaled_dot_product_attention(*x[:3], mask=mask, bias=x[3]), [q, k, v, b])


# ---- T5 --------------------------------------------------------------------------------------
def _t5_bucket_by_hand(rel, bidirectional, num_buckets, max_distance):
    """T5's _relative_position_bucket (mesh-tensorflow / HF), transcribed for one Python int."""
    ret = 0
    n = -rel
    if bidirectional:
        num_buckets //= 2
        if n < 0:
            ret += num_buckets
        n = abs(n)
    else:
        n = max(n, 0)
    max_exact = num_buckets // 2
    if n < max_exact:
        return ret + n
    val = max_exact + int(math.log(n / max_exact) / math.log(max_distance / max_exact) * (num_buckets - max_exact))
    return ret + min(val, num_buckets - 1)


@pytest.mark.parametrize("bidirectional,num_buckets,max_distance", [(True, 32, 128), (False, 32, 128),
                                                                    (True, 16, 40), (False, 8, 20)])
def test_t5_buckets_match_hand_transcription(bidirectional, num_buckets, max_distance):
    rel = np.arange(-300, 301)
    got = t5_relative_position_bucket(rel, bidirectional, num_buckets, max_distance)
    want = [_t5_bucket_by_hand(int(r), bidirectional, num_buckets, max_distance) for r in rel]
    np.testing.assert_array_equal(got, want)
    assert got.min() >= 0 and got.max() <= num_buckets - 1


def test_t5_bias_layer(rng):
    t5 = T5RelativePositionBias(3, bidirectional=False, num_buckets=8, max_distance=16).astype(np.float64)
    b = t5(4, 6)
    assert b.shape == (1, 3, 4, 6)
    E = t5.embeddings.numpy()
    for i in range(4):
        for j in range(6):
            bucket = _t5_bucket_by_hand(j - (i + 2), False, 8, 16)
            np.testing.assert_allclose(b.numpy()[0, :, i, j], E[bucket])
    mha = MultiHeadAttention(3, 2).astype(np.float64)
    x = _t(rng.standard_normal((2, 6, 4)))
    mha(x, x)
    assert ta.gradcheck(lambda a: mha(a, a, bias=t5(6), use_causal_mask=True, training=False), [x],
                        params=mha.parameters() + t5.parameters())
