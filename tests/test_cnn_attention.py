"""CNN + attention: match_score, ABCNN-1/-2/-3 (Yin et al. 2016) against a NumPy re-derivation, float64
gradchecks over inputs and every parameter, and attention pooling over Conv1D feature maps."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import match_score, ABCNN1, ABCNN2, ABCNN3, ConvAttentionPooling


def T(rng, *shape):
    return ta.tensor(rng.standard_normal(shape), requires_grad=True)


def _np_match(x, y, eps=1e-12):
    """match_score's documented formula, eps included: A_ij = 1 / (1 + √(Σ (x_i − y_j)² + eps))."""
    return 1.0 / (1.0 + np.sqrt(((x[:, :, None, :] - y[:, None, :, :]) ** 2).sum(-1) + eps))


def _np_wide_conv(x, kernel, bias):
    w = kernel.shape[0]
    xp = np.pad(x, ((0, 0), (w - 1, w - 1), (0, 0)))
    n = xp.shape[1] - w + 1
    return np.tanh(np.stack([np.einsum("bkc,kcf->bf", xp[:, t:t + w], kernel) for t in range(n)], 1) + bias)


def _np_abcnn(x0, x1, weights, maps, attn_pool, w):
    if maps:
        W0, W1, K, b = weights
        A = _np_match(x0, x1)
        x0 = np.concatenate([x0, A @ W0], -1)
        x1 = np.concatenate([x1, A.transpose(0, 2, 1) @ W1], -1)
    else:
        K, b = weights
    c0, c1 = _np_wide_conv(x0, K, b), _np_wide_conv(x1, K, b)
    if attn_pool:
        A2 = _np_match(c0, c1)
        a0, a1 = A2.sum(2), A2.sum(1)
        return (np.stack([(a0[:, j:j + w, None] * c0[:, j:j + w]).sum(1) for j in range(c0.shape[1] - w + 1)], 1),
                np.stack([(a1[:, j:j + w, None] * c1[:, j:j + w]).sum(1) for j in range(c1.shape[1] - w + 1)], 1))
    return (np.stack([c0[:, j:j + w].mean(1) for j in range(c0.shape[1] - w + 1)], 1),
            np.stack([c1[:, j:j + w].mean(1) for j in range(c1.shape[1] - w + 1)], 1))


def _assert_close_to_terms(actual, desired):
    """rtol 1e-10 plus an atol of 1e-12 × max|desired|. An ABCNN output is a sum of terms of either
    sign (tanh conv outputs, weighted by the attention sums), so an entry can cancel to ~1e-5 of the
    terms' size, where a pure rtol would demand agreement far below float64 rounding of the terms
    (measured over 300 seeds: |actual − desired| ≤ 6e-16 × max|desired|). The atol still catches an
    eps-sized difference in A (leaving eps out of the reference gives up to 1e-11 × max|desired|)."""
    np.testing.assert_allclose(actual, desired, rtol=1e-10, atol=1e-12 * np.abs(desired).max())


def test_match_score_formula_and_gradcheck(rng):
    x, y = T(rng, 2, 3, 4), T(rng, 2, 5, 4)
    np.testing.assert_allclose(match_score(x, y).numpy(), _np_match(x.numpy(), y.numpy()), rtol=1e-10)
    same = match_score(x, x).numpy()
    np.testing.assert_allclose(np.diagonal(same, axis1=1, axis2=2), 1.0, rtol=1e-5)   # ‖0‖ = 0 -> 1
    assert ta.gradcheck(match_score, [x, y])
    assert ta.gradgradcheck(match_score, [x, y])
    with pytest.raises(ValueError, match="match_score"):
        match_score(x, T(rng, 2, 5, 3))


@pytest.mark.parametrize("cls,maps,pool", [(ABCNN1, True, False), (ABCNN2, False, True), (ABCNN3, True, True)])
def test_abcnn_matches_numpy_and_gradchecks(rng, cls, maps, pool):
    ta.manual_seed(0)                              # the layer's weights come from the library's generator
    x0, x1 = T(rng, 2, 4, 3), T(rng, 2, 5, 3)
    layer = cls(filters=2, kernel_size=3, dtype="float64")
    o0, o1, A = layer(x0, x1, return_attention_scores=True)
    assert o0.shape == (2, 4, 2) and o1.shape == (2, 5, 2)
    assert A.shape == ((2, 4, 5) if maps else (2, 6, 7))
    r0, r1 = _np_abcnn(x0.numpy(), x1.numpy(), layer.get_weights(), maps, pool, 3)
    _assert_close_to_terms(o0.numpy(), r0)
    _assert_close_to_terms(o1.numpy(), r1)
    names = [p.name for p in layer.weights()]
    assert names == (["W0", "W1"] if maps else []) + ["kernel", "bias"]
    assert ta.gradcheck(lambda a, b: layer(a, b), [x0, x1], params=layer.parameters(), n_directions=2)


def test_abcnn1_needs_its_build_lengths(rng):
    layer = ABCNN1(2, 3, dtype="float64")
    layer(T(rng, 1, 4, 3), T(rng, 1, 5, 3))
    with pytest.raises(ValueError, match="ABCNN1: built for sentence lengths"):
        layer(T(rng, 1, 6, 3), T(rng, 1, 5, 3))
    ABCNN2(2, 3, dtype="float64")(T(rng, 1, 6, 3), T(rng, 1, 2, 3))      # ABCNN-2 takes any lengths


def test_conv_attention_pooling(rng):
    x = T(rng, 2, 6, 3)
    keep = np.ones((2, 6), bool)
    keep[0, 4:] = False
    layer = ConvAttentionPooling(filters=4, kernel_size=3, units=5, dtype="float64")
    s, a = layer(x, mask=keep, return_attention_scores=True)
    a = a.numpy()
    assert s.shape == (2, 4) and a.shape == (2, 6)
    np.testing.assert_allclose(a.sum(-1), 1.0)
    assert np.all(a[0, 4:] == 0)
    c = layer.conv(x).numpy()                                           # s = Σ_t α_t c_t
    np.testing.assert_allclose(s.numpy(), (a[..., None] * c).sum(1), rtol=1e-10)
    assert [w.shape for w in layer.get_weights()] == [(3, 3, 4), (4,), (4, 5), (5,), (5,)]
    assert ta.gradcheck(lambda x: layer(x, mask=keep), [x], params=layer.parameters())
    with pytest.raises(ValueError, match="padding='same'"):
        ConvAttentionPooling(2, 3, padding="valid", dtype="float64")(x, mask=keep)


def test_abcnn_double_backward(rng):
    """ABCNN is plain differentiable ops (no kernel): second derivatives work through it."""
    x0, x1 = T(rng, 1, 3, 2), T(rng, 1, 4, 2)
    layer = ABCNN3(filters=2, kernel_size=2, dtype="float64")
    layer(x0, x1)
    assert ta.gradgradcheck(lambda a, b: layer(a, b), [x0, x1], params=layer.parameters())
