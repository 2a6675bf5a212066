"""Hard, local and hierarchical attention: gradients in float64 and plain-NumPy references."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (hard_attention, local_attention, LocalAttention, AttentionPooling,
                                HierarchicalAttention, masked_softmax)


def _t(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), requires_grad=grad)


def _softmax(x, mask=None):
    x = np.where(mask, x, -np.inf) if mask is not None else x
    m = np.max(x, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    e = np.exp(x - m)
    s = e.sum(-1, keepdims=True)
    return e / np.where(s == 0, 1, s)


def test_local_attention_matches_numpy_and_gradchecks(rng):
    s, v = _t(rng, 2, 3, 7), _t(rng, 2, 7, 4)
    c = ta.tensor(rng.uniform(0, 6, (2, 3)), requires_grad=True)
    out, w = local_attention(s, v, c, window=2)
    pos = np.arange(7)
    p = c.numpy()[..., None]
    inside = np.abs(pos - np.round(p)) <= 2
    ref_w = _softmax(s.numpy(), inside) * np.exp(-(pos - p) ** 2 / (2 * 1.0 ** 2))
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-12)
    np.testing.assert_allclose(out.numpy(), ref_w @ v.numpy(), rtol=1e-12)
    assert (w.numpy()[~inside] == 0).all()
    ta.gradcheck(lambda s, v, c: local_attention(s, v, c, 2)[0], [s, v, c])
    ta.gradgradcheck(lambda s, v, c: local_attention(s, v, c, 2)[0], [s, v, c])


@pytest.mark.parametrize("mode", ["monotonic", "predictive"])
def test_local_attention_layer(rng, mode):
    q, v = _t(rng, 2, 4, 5), _t(rng, 2, 6, 5)
    layer = LocalAttention(window=1, mode=mode, units=3, dtype="float64")
    out, w = layer([q, v], return_attention_scores=True)
    assert out.shape == (2, 4, 5) and w.shape == (2, 4, 6)
    if mode == "monotonic":   # query t sees only keys t-1..t+1
        assert (w.numpy()[:, 0, 2:] == 0).all() and (w.numpy()[:, 3, :2] == 0).all()
    assert [n for n, _ in layer.named_parameters()] == (["w"] if mode == "monotonic" else ["w", "w_p", "v_p"])
    ta.gradcheck(lambda q, v: layer([q, v]), [q, v], params=layer.parameters())
    ta.gradgradcheck(lambda q, v: layer([q, v]), [q, v], params=layer.parameters())


def test_local_attention_rejects_unknown_mode():
    with pytest.raises(ValueError, match="mode"):
        LocalAttention(mode="sideways")


def test_hard_attention_picks_argmax_and_uses_straight_through(rng):
    s, v = _t(rng, 2, 3, 5), _t(rng, 2, 5, 4)
    out, w = hard_attention(s, v)
    idx = s.numpy().argmax(-1)
    np.testing.assert_array_equal(w.numpy(), np.eye(5)[idx])
    np.testing.assert_allclose(out.numpy(), np.take_along_axis(v.numpy(), idx[..., None], 1))
    # straight-through: the gradient w.r.t. the scores is the soft path's gradient with w's one-hot values
    g = rng.standard_normal(out.shape)
    gs = ta.grad(hard_attention(s, v)[0], [s], [g])[0].numpy()
    p = _softmax(s.numpy())
    gp = g @ v.numpy().swapaxes(-1, -2)
    ref = p * (gp - (gp * p).sum(-1, keepdims=True))
    np.testing.assert_allclose(gs, ref, rtol=1e-10)


def test_hard_attention_masked_and_sampled(rng):
    s, v = _t(rng, 1, 2, 4), _t(rng, 1, 4, 3)
    mask = np.array([[[True, True, False, False], [False, False, False, False]]])
    out, w = hard_attention(s, v, mask=mask)
    assert w.numpy()[0, 0, 2:].sum() == 0 and w.numpy()[0, 1].sum() == 0 and np.isfinite(out.numpy()).all()
    ta.manual_seed(3)
    p = masked_softmax(ta.tensor(np.log(np.array([[0.1, 0.9, 0.0, 0.0]]) + 1e-300)), None).numpy()
    counts = np.zeros(4)
    for _ in range(400):
        _, w = hard_attention(ta.tensor(np.log(p + 1e-300)), ta.tensor(np.eye(4)), sample=True)
        counts += w.numpy()[0]
    assert counts.sum() == 400 and counts[2:].sum() == 0 and 300 < counts[1] < 400


def test_attention_pooling_matches_numpy(rng):
    h = _t(rng, 3, 5, 4)
    mask = rng.random((3, 5)) > 0.3
    mask[:, 0] = True
    pool = AttentionPooling(6, dtype="float64")
    s, a = pool(h, mask=mask, return_attention_scores=True)
    W, b, u = (p.numpy() for p in pool.parameters())
    scores = np.tanh(h.numpy() @ W + b) @ u
    alpha = _softmax(scores, mask)
    np.testing.assert_allclose(a.numpy(), alpha, rtol=1e-12)
    np.testing.assert_allclose(s.numpy(), (alpha[..., None] * h.numpy()).sum(1), rtol=1e-12)
    ta.gradcheck(lambda h: pool(h, mask=mask), [h], params=pool.parameters())
    ta.gradgradcheck(lambda h: pool(h, mask=mask), [h], params=pool.parameters())


def test_local_attention_key_mask_applies_to_every_query(rng):
    s, v = _t(rng, 2, 3, 5), _t(rng, 2, 5, 4)
    centers = np.full((2, 3), 2.0)
    key_mask = np.ones((2, 5), bool)
    key_mask[0, 2] = False                                   # batch 0 loses key 2, for every query
    _, w = local_attention(s, v, centers, window=2, mask=key_mask)
    w = w.numpy()
    assert (w[0, :, 2] == 0).all() and (w[1, :, 2] > 0).all()


def test_hierarchical_attention_gradients_and_masks(rng):
    x = _t(rng, 2, 3, 4, 5)
    wm = rng.random((2, 3, 4)) > 0.3
    sm = np.array([[True, True, False], [True, False, False]])
    han = HierarchicalAttention(4, 3, dtype="float64")
    doc, a_w, a_s = han(x, wm, sm, return_attention_scores=True)
    assert doc.shape == (2, 5) and a_w.shape == (2, 3, 4) and a_s.shape == (2, 3)
    assert (a_s.numpy()[~sm] == 0).all() and np.isfinite(doc.numpy()).all()
    ta.gradcheck(lambda x: han(x, wm, sm), [x], params=han.parameters())
    ta.gradgradcheck(lambda x: han(x, wm, sm), [x], params=han.parameters())
