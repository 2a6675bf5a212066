"""Attention, AdditiveAttention, MultiHeadAttention: float64 gradcheck and gradgradcheck over every
input and parameter, mask semantics, dropout, weights, errors. (Keras parity: tests/reference/.)"""
import math

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import Attention, AdditiveAttention, MultiHeadAttention


def T(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=grad)


def _built(layer, *args, **kw):
    layer.astype("float64")                # sets the dtype the lazy build will use
    layer(*args, **kw)
    rng = np.random.default_rng(9)
    for p in layer.parameters():           # move off the init (scale = 1, zero biases)
        p.data = p.data + ta.backend.to_device(0.3 * rng.standard_normal(p.shape), p.device)
    return layer


def _masks():
    qm = np.array([[1, 1, 0], [1, 1, 1]], bool)
    vm = np.array([[1, 1, 1, 0], [1, 0, 1, 1]], bool)
    return [qm, vm]    # no query loses every key, even with the causal mask: such a row's scores sit
                       # near −1e9, where float64 central differences are pure rounding noise


@pytest.mark.parametrize("layer_fn", [
    lambda: Attention(), lambda: Attention(use_scale=True),
    lambda: Attention(score_mode="concat"), lambda: Attention(use_scale=True, score_mode="concat"),
    lambda: AdditiveAttention(), lambda: AdditiveAttention(use_scale=False)],
    ids=["dot", "dot_scale", "concat", "concat_scale", "additive", "additive_noscale"])
@pytest.mark.parametrize("masked,causal", [(False, False), (True, True)])
def test_dense_attention_gradcheck(layer_fn, masked, causal, rng):
    q, v, k = T(rng, 2, 3, 4), T(rng, 2, 4, 2), T(rng, 2, 4, 4)
    mask = _masks() if masked else None
    layer = _built(layer_fn(), [q, v, k])

    def fn(q, v, k):
        return layer([q, v, k], mask=mask, use_causal_mask=causal, return_attention_scores=True)

    ps = layer.parameters()
    assert ta.gradcheck(fn, [q, v, k], params=ps)
    assert ta.gradgradcheck(fn, [q, v, k], params=ps)


def test_attention_values(rng):
    q, v = T(rng, 2, 3, 4), T(rng, 2, 4, 4)
    layer = _built(Attention(use_scale=True), [q, v])
    s = layer.scale.item() * q.numpy() @ v.numpy().transpose(0, 2, 1)
    qm, vm = _masks()
    s = s - 1e9 * ~vm[:, None, :]
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    out, ws = layer([q, v], mask=[qm, vm], return_attention_scores=True)
    np.testing.assert_allclose(ws.numpy(), w, rtol=1e-12)
    np.testing.assert_allclose(out.numpy(), (w @ v.numpy()) * qm[..., None], rtol=1e-12)
    assert np.all(out.numpy()[0, 2] == 0)


def test_additive_attention_values(rng):
    q, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4)
    layer = _built(AdditiveAttention(), [q, v])
    assert layer.get_weights()[0].shape == (4,)
    s = (layer.scale.numpy() * np.tanh(q.numpy()[:, :, None] + v.numpy()[:, None])).sum(-1)
    w = np.exp(s - s.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    np.testing.assert_allclose(layer([q, v]).numpy(), w @ v.numpy(), rtol=1e-12, atol=1e-15)


def test_causal_is_top_left(rng):
    q, v = T(rng, 1, 3, 2), T(rng, 1, 5, 2)
    _, w = Attention()([q, v], use_causal_mask=True, return_attention_scores=True)
    assert np.all(w.numpy()[0][~np.tril(np.ones((3, 5), bool))] < 1e-30)


@pytest.mark.parametrize("layer_fn", [lambda: Attention(dropout=0.5),
                                      lambda: AdditiveAttention(dropout=0.5, dtype="float64")])
def test_dense_attention_dropout(layer_fn, rng):
    ta.manual_seed(0)
    q, v = T(rng, 2, 6, 4), T(rng, 2, 8, 4)
    layer = layer_fn()
    _, w_train = layer([q, v], training=True, return_attention_scores=True)
    _, w_eval = layer([q, v], training=False, return_attention_scores=True)
    assert np.mean(w_train.numpy() == 0) > 0.3 and np.all(w_eval.numpy() > 0)
    kept = w_train.numpy() != 0
    np.testing.assert_allclose(w_train.numpy()[kept], 2 * w_eval.numpy()[kept], rtol=1e-12)
    layer.eval()                              # training=None follows the module's mode
    np.testing.assert_array_equal(layer([q, v], return_attention_scores=True)[1].numpy(), w_eval.numpy())


def test_dense_attention_errors(rng):
    with pytest.raises(ValueError, match="score_mode"):
        Attention(score_mode="general")
    with pytest.raises(ValueError, match=r"Attention: call it on a list"):
        Attention()(T(rng, 2, 3, 4))
    with pytest.raises(ValueError, match=r"Attention: query \(2, 3, 4\) and key \(2, 5, 3\)"):
        Attention()([T(rng, 2, 3, 4), T(rng, 2, 5, 3)])
    with pytest.raises(ValueError, match="AdditiveAttention: batch/length"):
        AdditiveAttention()([T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 4, 4)])


# -------------------------------------------------------------------------- MultiHeadAttention
@pytest.mark.parametrize("cfg,causal,masked", [
    (dict(num_heads=2, key_dim=3), False, False),
    (dict(num_heads=2, key_dim=2, value_dim=3, output_shape=(2, 2)), True, True),
    (dict(num_heads=1, key_dim=2, use_bias=False), False, True)])
def test_mha_gradcheck(cfg, causal, masked, rng):
    q, v, k = T(rng, 2, 3, 5), T(rng, 2, 4, 3), T(rng, 2, 4, 2)
    am = None
    if masked:
        am = rng.random((2, 3, 4)) > 0.3
        am[1, 2] = False                        # a query with no key: zero weights, zero gradient
    layer = _built(MultiHeadAttention(**cfg), q, v, k)

    def fn(q, v, k):
        return layer(q, v, k, attention_mask=am, use_causal_mask=causal, return_attention_scores=True)

    ps = layer.parameters()
    assert len(ps) == (8 if cfg.get("use_bias", True) else 4)
    assert ta.gradcheck(fn, [q, v, k], params=ps)
    assert ta.gradgradcheck(fn, [q, v, k], params=ps)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_self_attention_fused_projection(causal, rng):
    """query is key is value: the Q/K/V projections run as one GEMM; same result and gradients."""
    x = T(rng, 2, 4, 5)
    layer = _built(MultiHeadAttention(2, 3, value_dim=2), x, x)
    ps = layer.parameters()
    fn = lambda x: layer(x, x, use_causal_mask=causal, return_attention_scores=True)   # noqa: E731
    assert ta.gradcheck(fn, [x], params=ps)
    assert ta.gradgradcheck(fn, [x], params=ps)
    # against the unfused path (three different objects), and the K/V-fused one (key defaults to value)
    x2, x3 = (ta.tensor(x.numpy(), requires_grad=True) for _ in range(2))
    out1, _ = fn(x)
    g = rng.standard_normal(out1.shape)
    g1 = ta.grad(out1, [x] + ps, g)
    for args in ((x, x2, x3), (x, x2)):
        out2 = layer(*args, use_causal_mask=causal)
        np.testing.assert_allclose(out1.numpy(), out2.numpy(), rtol=1e-12)
        g2 = ta.grad(out2, list(args) + ps, g)
        np.testing.assert_allclose(g1[0].numpy(), sum(t.numpy() for t in g2[:len(args)]), rtol=1e-10)
        for a, b in zip(g1[1:], g2[len(args):]):
            np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    q = T(rng, 2, 3, 5)
    fkv = lambda q, x: layer(q, x, use_causal_mask=causal, return_attention_scores=True)   # noqa: E731
    assert ta.gradcheck(fkv, [q, x], params=ps)


def test_mha_values(rng):
    """Against a per-head loop written from the formula."""
    H, kd, vd = 2, 3, 4
    x, y = T(rng, 2, 3, 5), T(rng, 2, 4, 6)
    layer = _built(MultiHeadAttention(H, kd, value_dim=vd), x, y)
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = layer.get_weights()
    X, Y = x.numpy(), y.numpy()
    ref = np.zeros((2, 3, 5)) + bo
    for h in range(H):
        Q, K, V = X @ Wq[:, h] + bq[h], Y @ Wk[:, h] + bk[h], Y @ Wv[:, h] + bv[h]
        s = Q @ K.transpose(0, 2, 1) / math.sqrt(kd)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        ref += (a @ V) @ Wo[h]
    out, sc = layer(x, y, return_attention_scores=True)
    assert out.shape == (2, 3, 5) and sc.shape == (2, H, 3, 4)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-10)


def test_mha_weights_shapes_and_order():
    layer = MultiHeadAttention(num_heads=4, key_dim=3, value_dim=5, output_shape=7)
    layer.build((2, 3, 8), (2, 6, 9), (2, 6, 10))
    assert [w.shape for w in layer.get_weights()] == [(8, 4, 3), (4, 3), (10, 4, 3), (4, 3), (9, 4, 5), (4, 5),
                                                      (4, 5, 7), (7,)]
    assert [p.name for p in layer.weights()][::2] == ["query/kernel", "key/kernel", "value/kernel",
                                                      "attention_output/kernel"]


def test_mha_dropout(rng):
    ta.manual_seed(1)
    x = T(rng, 2, 8, 4)
    layer = MultiHeadAttention(2, 4, dropout=0.5).astype("float64")
    out_t, sc_t = layer(x, x, training=True, return_attention_scores=True)
    out_e, sc_e = layer(x, x, training=False, return_attention_scores=True)
    np.testing.assert_allclose(sc_t.numpy(), sc_e.numpy(), rtol=1e-12)   # scores: before dropout (Keras)
    assert not np.allclose(out_t.numpy(), out_e.numpy())
    layer.eval()
    np.testing.assert_array_equal(layer(x, x).numpy(), out_e.numpy())


def test_mha_errors(rng):
    with pytest.raises(ValueError, match="num_heads"):
        MultiHeadAttention(0, 3)
    layer = MultiHeadAttention(2, 3, dtype="float64")
    layer(T(rng, 2, 3, 4), T(rng, 2, 5, 4))
    with pytest.raises(ValueError, match=r"query has feature size 6.*built for 4"):
        layer(T(rng, 2, 3, 6), T(rng, 2, 5, 4))
    with pytest.raises(ValueError, match="not broadcast"):
        layer(T(rng, 2, 3, 4), T(rng, 2, 5, 4), attention_mask=np.ones((2, 3, 4), bool))
