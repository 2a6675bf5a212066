"""Hard attention's gradient estimators: Gumbel-softmax (straight-through) and REINFORCE, and the
HardAttention layer trained each way."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (gumbel_softmax, gumbel_noise, sample_categorical, categorical_log_prob,
                                categorical_entropy, reinforce_loss, Reinforce, HardAttention,
                                masked_softmax)

LOGITS = np.array([0.5, -0.3, 1.2, 0.0])
REWARD = np.array([1.0, -0.5, 2.0, 0.3])


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


def _chi2(counts, p):
    n = counts.sum()
    return float(((counts - n * p) ** 2 / (n * p)).sum())


# ------------------------------------------------------------------------------------------------
# sampling
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("how", ["gumbel_hard", "sample_categorical"])
def test_sample_frequencies_match_softmax(how):
    """N draws of a 4-way choice: the chi-square statistic (3 degrees of freedom) stays below 25
    (p ≈ 1.6e-5); a sampler off by a few percent on any class fails (checked below)."""
    ta.manual_seed(0)
    N = 20000
    logits = ta.tensor(np.tile(LOGITS, (N, 1)))
    if how == "gumbel_hard":
        y = gumbel_softmax(logits, tau=0.5, hard=True).numpy()
        assert set(np.unique(y)) <= {0.0, 1.0} and np.all(y.sum(axis=1) == 1)
        idx = y.argmax(axis=1)
    else:
        idx = ta.backend.as_numpy(sample_categorical(logits))
    counts = np.bincount(idx, minlength=4).astype(float)
    p = _softmax(LOGITS)
    assert _chi2(counts, p) < 25.0
    assert _chi2(counts, _softmax(LOGITS * 1.1)) > 25.0          # the check can fail: a slightly sharper p


def test_sample_respects_mask_and_axis():
    ta.manual_seed(1)
    logits = ta.tensor(np.zeros((500, 5, 3)))
    keep = np.ones((500, 5, 3), bool)
    keep[:, 1:4, :] = False
    idx = ta.backend.as_numpy(sample_categorical(logits, axis=1, mask=keep))
    assert idx.shape == (500, 3) and set(np.unique(idx)) == {0, 4}
    y = gumbel_softmax(logits, hard=True, axis=1, mask=keep).numpy()
    assert np.all(y[:, 1:4] == 0) and np.all(y.sum(axis=1) == 1)


def test_gumbel_noise_is_seeded():
    ta.manual_seed(3)
    a = ta.backend.as_numpy(gumbel_noise((4, 5), np.float64))
    ta.manual_seed(3)
    np.testing.assert_array_equal(a, ta.backend.as_numpy(gumbel_noise((4, 5), np.float64)))
    assert np.isfinite(a).all()


# ------------------------------------------------------------------------------------------------
# Gumbel-softmax
# ------------------------------------------------------------------------------------------------
def test_relaxed_gumbel_softmax_formula_and_gradcheck(rng):
    x = ta.tensor(rng.standard_normal((3, 5)), requires_grad=True)
    g = rng.gumbel(size=(3, 5))
    y = gumbel_softmax(x, tau=0.7, noise=g).numpy()
    z = (x.numpy() + g) / 0.7
    want = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(y, want / want.sum(1, keepdims=True), rtol=1e-12)
    keep = np.ones((3, 5), bool)
    keep[0, 2:] = False
    assert ta.gradcheck(lambda x: gumbel_softmax(x, tau=0.7, noise=g), [x])
    assert ta.gradcheck(lambda x: gumbel_softmax(x, tau=0.7, noise=g, mask=keep), [x])
    assert ta.gradgradcheck(lambda x: gumbel_softmax(x, tau=0.7, noise=g), [x])


def test_straight_through_forward_is_one_hot_backward_is_soft(rng):
    x = ta.tensor(rng.standard_normal((4, 6)), requires_grad=True)
    g = rng.gumbel(size=(4, 6))
    gy = rng.standard_normal((4, 6))
    hard = gumbel_softmax(x, tau=0.5, hard=True, noise=g)
    want = np.eye(6)[(x.numpy() + g).argmax(axis=1)]
    np.testing.assert_array_equal(hard.numpy(), want)               # exactly 0/1, the Gumbel-max pick
    (g_hard,) = ta.grad([hard], [x], [gy])
    soft = gumbel_softmax(x, tau=0.5, hard=False, noise=g)
    (g_soft,) = ta.grad([soft], [x], [gy])
    np.testing.assert_allclose(g_hard.numpy(), g_soft.numpy(), rtol=1e-12, atol=1e-15)
    assert np.abs(g_soft.numpy()).max() > 1e-3                      # a real gradient, not zeros


def test_gumbel_softmax_errors():
    with pytest.raises(ValueError, match="gumbel_softmax: tau"):
        gumbel_softmax(ta.tensor(np.zeros(3)), tau=0.0)
    with pytest.raises(ValueError, match="gumbel_softmax: noise"):
        gumbel_softmax(ta.tensor(np.zeros(3)), noise=np.zeros(4))


# ------------------------------------------------------------------------------------------------
# REINFORCE
# ------------------------------------------------------------------------------------------------
def _exact_gradient(logits, reward, entropy_weight):
    """∇_θ (E_{j~p}[f(j)] + w H(p)), p = softmax(θ), by enumeration of the K outcomes:
    ∇E[f] = Σ_j f_j ∇p_j = p ⊙ (f − p·f);   ∇H = −p ⊙ (log p + H)."""
    p = _softmax(logits)
    H = -(p * np.log(p)).sum()
    return p * (reward - p @ reward) - entropy_weight * p * (np.log(p) + H)


@pytest.mark.parametrize("entropy_weight", [0.0, 0.5])
def test_reinforce_mean_gradient_matches_exact_gradient(entropy_weight):
    """M batches of N samples at a fixed seed: the mean estimate is within 4 standard errors of the
    exact gradient (enumerated), coordinate by coordinate; the baseline moves between batches."""
    ta.manual_seed(0)
    est = Reinforce(baseline_decay=0.9, entropy_weight=entropy_weight)
    M, N = 300, 32
    theta = ta.tensor(LOGITS.copy(), requires_grad=True)
    ests = []
    for _ in range(M):
        logits = theta.reshape(1, 4) + ta.tensor(np.zeros((N, 4)))
        j, log_p, H = est.sample(logits)
        loss = est.loss(log_p, REWARD[ta.backend.as_numpy(j)], H)
        (g,) = ta.grad([loss], [theta])
        ests.append(-g.numpy())                     # the loss is minimised: −∇loss estimates ∇objective
    ests = np.array(ests)
    exact = _exact_gradient(LOGITS, REWARD, entropy_weight)
    se = ests.std(axis=0, ddof=1) / np.sqrt(M)
    assert np.all(np.abs(ests.mean(axis=0) - exact) < 4 * se + 1e-12), (ests.mean(axis=0), exact, se)
    assert np.all(se < 0.2 * np.abs(exact).max())   # precise enough that a wrong sign or scale fails
    assert 0.5 < est.baseline < 1.5                  # moved toward E[f] ≈ 1.04


def test_reinforce_estimate_without_baseline_is_biased_when_sign_is_wrong():
    """The test above can fail: flipping the advantage's sign (a classic bug) lands far outside."""
    ta.manual_seed(0)
    theta = ta.tensor(LOGITS.copy(), requires_grad=True)
    logits = theta.reshape(1, 4) + ta.tensor(np.zeros((4000, 4)))
    j = sample_categorical(logits)
    lp = categorical_log_prob(logits, j)
    (g,) = ta.grad([reinforce_loss(lp, -REWARD[ta.backend.as_numpy(j)])], [theta])
    assert np.abs(-g.numpy() - _exact_gradient(LOGITS, REWARD, 0.0)).max() > 0.3


def test_log_prob_and_entropy_values(rng):
    z = rng.standard_normal((3, 5))
    keep = np.ones((3, 5), bool)
    keep[1, :2] = False
    idx = np.array([0, 3, 4])
    lp = categorical_log_prob(ta.tensor(z), idx, mask=keep).numpy()
    H = categorical_entropy(ta.tensor(z), mask=keep).numpy()
    for b in range(3):
        p = np.zeros(5)
        p[keep[b]] = _softmax(z[b][keep[b]])
        assert np.isclose(lp[b], np.log(p[idx[b]]))
        assert np.isclose(H[b], -(p[p > 0] * np.log(p[p > 0])).sum())
    zt = ta.tensor(z, requires_grad=True)
    assert ta.gradcheck(lambda z: categorical_log_prob(z, idx, mask=keep), [zt])
    assert ta.gradcheck(lambda z: categorical_entropy(z, mask=keep), [zt])


def test_reinforce_loss_errors():
    lp = ta.tensor(np.zeros(3), requires_grad=True)
    with pytest.raises(ValueError, match="reinforce_loss: entropy_weight"):
        reinforce_loss(lp, np.ones(3), entropy_weight=0.1)
    with pytest.raises(ValueError, match="NaN"):
        reinforce_loss(lp, np.array([1.0, np.nan, 0.0]))
    with pytest.raises(ValueError, match="does not broadcast"):
        reinforce_loss(lp, np.ones(4))
    with pytest.raises(ValueError, match="baseline_decay"):
        Reinforce(baseline_decay=1.5)


# ------------------------------------------------------------------------------------------------
# the HardAttention layer
# ------------------------------------------------------------------------------------------------
def _qkv(rng):
    return (ta.tensor(rng.standard_normal((2, 3, 4)), requires_grad=True),
            ta.tensor(rng.standard_normal((2, 5, 4)), requires_grad=True),
            ta.tensor(rng.standard_normal((2, 5, 2)), requires_grad=True))


@pytest.mark.parametrize("estimator", HardAttention.ESTIMATORS)
def test_hard_attention_reads_one_value(rng, estimator):
    ta.manual_seed(0)
    q, k, v = _qkv(rng)
    keep = np.ones((2, 5), bool)
    keep[0, 3:] = False
    layer = HardAttention(estimator, dtype="float64")
    out, w = layer(q, k, v, mask=keep, return_attention_scores=True)
    w = w.numpy()
    assert set(np.unique(w)) <= {0.0, 1.0} and np.all(w.sum(-1) == 1)
    assert np.all(w[0, :, 3:] == 0)                                  # masked keys are never read
    np.testing.assert_allclose(out.numpy(), w @ v.numpy(), rtol=1e-12)
    loss = (out * ta.tensor(rng.standard_normal(out.shape))).sum()
    if estimator == "reinforce":
        loss = loss + layer.reinforce_loss(rng.standard_normal((2, 3)))
    loss.backward()
    assert np.abs(q.grad.numpy()).max() > 0 and np.abs(k.grad.numpy()).max() > 0   # the scores learn
    layer.eval()
    out, w = layer(q, k, v, mask=keep, return_attention_scores=True)
    p = layer.last_probs.numpy()
    np.testing.assert_array_equal(w.numpy().argmax(-1), p.argmax(-1))              # argmax at inference


def test_hard_attention_straight_through_gradient_is_the_soft_one(rng):
    """Straight-through: the queries' and keys' gradients are those of soft attention p·v."""
    ta.manual_seed(0)
    q, k, v = _qkv(rng)
    layer = HardAttention("straight_through", dtype="float64")
    out = layer(q, k, v)
    gy = rng.standard_normal(out.shape)
    gq, gk = ta.grad([out], [q, k], [gy])
    p = masked_softmax(q @ k.swapaxes(1, 2) * (1 / 2.0))
    sq, sk = ta.grad([p @ v], [q, k], [gy])
    np.testing.assert_allclose(gq.numpy(), sq.numpy(), rtol=1e-12)
    np.testing.assert_allclose(gk.numpy(), sk.numpy(), rtol=1e-12)


def test_hard_attention_fully_masked_row_reads_zeros(rng):
    q, k, v = _qkv(rng)
    keep = np.ones((2, 5), bool)
    keep[1] = False
    for est in HardAttention.ESTIMATORS:
        out = HardAttention(est, dtype="float64")(q, k, v, mask=keep)
        assert np.all(out.numpy()[1] == 0) and np.isfinite(out.numpy()).all()


def test_hard_attention_errors(rng):
    with pytest.raises(ValueError, match="HardAttention: estimator"):
        HardAttention("gumble")
    layer = HardAttention("gumbel", dtype="float64")
    with pytest.raises(ValueError, match="estimator='reinforce'"):
        layer.reinforce_loss(np.ones(3))
    with pytest.raises(ValueError, match="call the layer"):
        HardAttention("reinforce").reinforce_loss(np.ones(3))
