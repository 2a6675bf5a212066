"""Parity with Keras 3: Attention, AdditiveAttention and MultiHeadAttention.

Weights are copied with ``set_weights(keras_layer.get_weights())``; outputs, returned attention
scores and gradients (w.r.t. every input and every weight, under a random upstream gradient, taken
with tf.GradientTape) must agree in float32 within 1e-5 (relative and absolute).
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tinyattn as ta  # noqa: E402
from tinyattn.attention import Attention, AdditiveAttention, MultiHeadAttention  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def _close(a, b, what):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), err_msg=what, **TOL)


def _keras_grads(layer, inputs, call, gy):
    """Output(s) and gradients of Σ out ⊙ gy w.r.t. the inputs and layer.trainable_weights (Keras)."""
    xs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = call(*xs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, gy)])
    grads = tape.gradient(loss, xs + list(layer.weights))
    grads = [np.zeros(v.shape, np.float32) if g is None else g.numpy() for g, v in zip(grads, xs + list(layer.weights))]
    return [o.numpy() for o in outs], grads[:len(xs)], grads[len(xs):]


def _ours_grads(layer, inputs, call, gy):
    xs = [ta.tensor(x, requires_grad=True) for x in inputs]
    out = call(*xs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    ws = layer.weights()
    gs = ta.grad(list(outs), xs + ws, [g for g in gy])
    gs = [np.zeros(t.shape, np.float32) if g is None else g.numpy() for g, t in zip(gs, xs + ws)]
    return [o.numpy() for o in outs], gs[:len(xs)], gs[len(xs):]


def _compare(kl, ol, inputs, kcall, ocall, rows=None):
    """Run both, with one random upstream gradient per output; compare everything."""
    rng = np.random.default_rng(1)
    kouts = kcall(*[tf.constant(x) for x in inputs])
    kouts = kouts if isinstance(kouts, (tuple, list)) else (kouts,)
    gy = [rng.standard_normal(o.shape).astype(np.float32) for o in kouts]
    if rows is not None:                       # ignore rows where the two frameworks legitimately differ
        gy = [g * r for g, r in zip(gy, rows)]
    ol.set_weights(kl.get_weights())
    ko, kgx, kgw = _keras_grads(kl, inputs, kcall, gy)
    oo, ogx, ogw = _ours_grads(ol, inputs, ocall, gy)
    for i, (a, b) in enumerate(zip(oo, ko)):
        if rows is not None:
            a, b = a * rows[i], b * rows[i]
        _close(a, b, f"output {i}")
    for i, (a, b) in enumerate(zip(ogx, kgx)):
        _close(a, b, f"grad input {i}")
    assert len(ogw) == len(kgw) == len(kl.weights)
    for w, a, b in zip(kl.weights, ogw, kgw):
        _close(a, b, f"grad weight {w.path}")


def _data(B=2, tq=4, tv=5, d=3, dv=None, key=False, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((B, tq, d)).astype(np.float32)
    v = rng.standard_normal((B, tv, dv or d)).astype(np.float32)
    k = rng.standard_normal((B, tv, d)).astype(np.float32)
    return (q, v, k) if key else (q, v)


def _masks(B=2, tq=4, tv=5):
    qm = np.ones((B, tq), bool)
    qm[0, -1] = False
    vm = np.ones((B, tv), bool)
    vm[0, -2:] = False
    vm[1, 0] = False
    return qm, vm


# ---------------------------------------------------------------------------- Attention (Luong)
@pytest.mark.parametrize("score_mode", ["dot", "concat"])
@pytest.mark.parametrize("use_scale", [False, True])
@pytest.mark.parametrize("masked,causal,with_key", [(False, False, False), (True, False, True),
                                                    (True, True, False), (False, True, True)])
def test_attention(score_mode, use_scale, masked, causal, with_key):
    kl = keras.layers.Attention(use_scale=use_scale, score_mode=score_mode)
    ol = Attention(use_scale=use_scale, score_mode=score_mode)
    inputs = list(_data(dv=2 if with_key else None, key=with_key))
    mask = list(_masks()) if masked else None
    kl([tf.constant(x) for x in inputs])
    ol(inputs)
    rng = np.random.default_rng(5)
    if use_scale:        # move the scalars off their init value 1 so a wrong use shows up
        kl.set_weights([np.float32(rng.uniform(0.5, 1.5)) for _ in kl.get_weights()])
    elif score_mode == "concat":
        kl.set_weights([np.float32(1.3)])
    kw = dict(mask=mask, return_attention_scores=True, use_causal_mask=causal)
    _compare(kl, ol, inputs, lambda *xs: kl(list(xs), **kw), lambda *xs: ol(list(xs), **kw))


def test_attention_weights_order_and_shapes():
    kl = keras.layers.Attention(use_scale=True, score_mode="concat")
    ol = Attention(use_scale=True, score_mode="concat")
    q, v = _data()
    kl([q, v])
    ol([q, v])
    assert [w.shape for w in ol.get_weights()] == [tuple(w.shape) for w in kl.get_weights()]
    assert [p.name for p in ol.weights()] == [w.name for w in kl.weights]


def test_attention_fully_masked_row_is_uniform_like_keras():
    q, v = _data()
    vm = np.ones((2, 5), bool)
    vm[1] = False
    kl, ol = keras.layers.Attention(), Attention()
    _, ks = kl([q, v], mask=[None, vm], return_attention_scores=True)
    _, os_ = ol([q, v], mask=[None, vm], return_attention_scores=True)
    _close(os_.numpy(), ks.numpy(), "scores")
    np.testing.assert_allclose(os_.numpy()[1], 1.0 / 5, rtol=1e-6)


# ------------------------------------------------------------------------- AdditiveAttention
@pytest.mark.parametrize("use_scale", [True, False])
@pytest.mark.parametrize("masked,causal,with_key", [(False, False, False), (True, True, True),
                                                    (True, False, False)])
def test_additive_attention(use_scale, masked, causal, with_key):
    kl = keras.layers.AdditiveAttention(use_scale=use_scale)
    ol = AdditiveAttention(use_scale=use_scale)
    inputs = list(_data(dv=3, key=with_key, seed=3))
    kl([tf.constant(x) for x in inputs])
    ol(inputs)
    assert [w.shape for w in ol.get_weights()] == [tuple(w.shape) for w in kl.get_weights()]
    kw = dict(mask=list(_masks()) if masked else None, return_attention_scores=True, use_causal_mask=causal)
    _compare(kl, ol, inputs, lambda *xs: kl(list(xs), **kw), lambda *xs: ol(list(xs), **kw))


# ------------------------------------------------------------------------- MultiHeadAttention
def _mha_pair(**kw):
    return keras.layers.MultiHeadAttention(**kw), MultiHeadAttention(**kw)


@pytest.mark.parametrize("cfg", [
    dict(num_heads=2, key_dim=3),
    dict(num_heads=3, key_dim=2, value_dim=4),
    dict(num_heads=2, key_dim=3, output_shape=5),
    dict(num_heads=2, key_dim=4, value_dim=3, output_shape=(2, 3)),
    dict(num_heads=1, key_dim=3, use_bias=False),
])
def test_mha_self_attention(cfg):
    kl, ol = _mha_pair(**cfg)
    x = _data(tq=5, tv=5, d=6)[0]
    kl(x, x)
    ol(x, x)
    assert [w.shape for w in ol.get_weights()] == [tuple(w.shape) for w in kl.get_weights()]
    kcall = lambda q, v: kl(q, v, return_attention_scores=True)   # noqa: E731
    ocall = lambda q, v: ol(q, v, return_attention_scores=True)   # noqa: E731
    _compare(kl, ol, [x, x], kcall, ocall)


@pytest.mark.parametrize("causal", [False, True])
def test_mha_self_attention_same_tensor(causal):
    """mha(x, x): the fused single-GEMM Q/K/V projection path (same object for query and value)."""
    kl, ol = _mha_pair(num_heads=4, key_dim=2, value_dim=3)
    x = _data(tq=5, tv=5, d=6, seed=4)[0]
    kl(x, x)
    ol(x, x)
    kw = dict(use_causal_mask=causal, return_attention_scores=True)
    _compare(kl, ol, [x], lambda x: kl(x, x, **kw), lambda x: ol(x, x, **kw))


@pytest.mark.parametrize("masked,causal", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("scores", [True, False])
def test_mha_cross_attention_masks(masked, causal, scores):
    """Cross-attention Tq ≠ Tk, key ≠ value, different feature sizes; with attention masks/causal."""
    kl, ol = _mha_pair(num_heads=2, key_dim=3, value_dim=4)
    rng = np.random.default_rng(7)
    q = rng.standard_normal((2, 4, 5)).astype(np.float32)
    v = rng.standard_normal((2, 6, 3)).astype(np.float32)
    k = rng.standard_normal((2, 6, 2)).astype(np.float32)
    am = None
    if masked:
        am = rng.random((2, 4, 6)) > 0.3
        am[:, :, 0] = True                     # every query keeps ≥ 1 key (row 0 also survives causal)
    kl(q, v, k)
    ol(q, v, k)
    kw = dict(attention_mask=am, use_causal_mask=causal, return_attention_scores=scores)
    kcall = lambda q, v, k: kl(q, v, k, **kw)   # noqa: E731
    ocall = lambda q, v, k: ol(q, v, k, **kw)   # noqa: E731
    _compare(kl, ol, [q, v, k], kcall, ocall)


def test_mha_fully_masked_rows_compared_where_keys_exist():
    """A query with no key: ours gives zero weights (Keras's explicit path too); compare the rest."""
    kl, ol = _mha_pair(num_heads=2, key_dim=3)
    q, v = _data(tq=4, tv=5, d=4)
    am = np.ones((2, 4, 5), bool)
    am[0, 1] = False                            # query 1 of batch 0 sees nothing
    kl(q, v)
    ol(q, v)
    rows = np.ones((2, 4, 1), np.float32)
    rows[0, 1] = 0
    kcall = lambda q, v: kl(q, v, attention_mask=am)   # noqa: E731
    ocall = lambda q, v: ol(q, v, attention_mask=am)   # noqa: E731
    _compare(kl, ol, [q, v], kcall, ocall, rows=[rows])
    _, s = ol(ta.tensor(q), ta.tensor(v), attention_mask=am, return_attention_scores=True)
    assert np.all(s.numpy()[0, :, 1] == 0)


def test_mha_value_mask_and_dropout_eval():
    kl = keras.layers.MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.5)
    ol = MultiHeadAttention(num_heads=2, key_dim=3, dropout=0.5)
    q, v = _data(tq=3, tv=5, d=4)
    vm = np.ones((2, 5), bool)
    vm[0, 3:] = False
    kl(q, v)
    ol(q, v)
    kcall = lambda q, v: kl(q, v, value_mask=vm, training=False, return_attention_scores=True)   # noqa: E731
    ocall = lambda q, v: ol(q, v, value_mask=vm, training=False, return_attention_scores=True)   # noqa: E731
    _compare(kl, ol, [q, v], kcall, ocall)


def test_mha_per_head_4d_mask_with_value_and_query_masks():
    """Keras reads a 4-D attention_mask as (B, num_heads, Tq, Tk); with heads ≠ batch and value/query
    masks on top (issue 7: this died in a NumPy broadcast error before)."""
    kl, ol = _mha_pair(num_heads=3, key_dim=2)
    rng = np.random.default_rng(11)
    q, v = _data(tq=4, tv=5, d=4)
    am = rng.random((2, 3, 4, 5)) > 0.3
    am[..., 0] = True                            # every (head, query) keeps key 0
    vm = np.array([[1, 1, 1, 1, 0], [1, 1, 0, 1, 1]], bool)
    qm = np.ones((2, 4), bool)
    qm[1, 2] = False                             # a query with no key: zero weights in both
    kl(q, v)
    ol(q, v)
    # Keras itself cannot AND a 4-D mask with value/query masks (a TF broadcast error): it gets the
    # combined 4-D mask, we get the pieces
    both = am & vm[:, None, None, :] & qm[:, None, :, None]
    kcall = lambda q, v: kl(q, v, attention_mask=both, return_attention_scores=True)   # noqa: E731
    ocall = lambda q, v: ol(q, v, attention_mask=am, value_mask=vm, query_mask=qm,     # noqa: E731
                            return_attention_scores=True)
    _compare(kl, ol, [q, v], kcall, ocall)
    # (1, 1, Tq, Tk): one mask for every batch row and head
    shared = np.tril(np.ones((4, 5), bool))[None, None]
    kcall = lambda q, v: kl(q, v, attention_mask=shared, return_attention_scores=True)   # noqa: E731
    ocall = lambda q, v: ol(q, v, attention_mask=shared, return_attention_scores=True)   # noqa: E731
    _compare(kl, ol, [q, v], kcall, ocall)


@pytest.mark.parametrize("cls", ["Attention", "AdditiveAttention"])
def test_dense_attention_mask_list_of_three_and_float64_inputs(cls):
    """Keras accepts a 3-element mask list (the third ignored) and casts float64 inputs to float32."""
    kl = getattr(keras.layers, cls)()
    ol = {"Attention": Attention, "AdditiveAttention": AdditiveAttention}[cls]()
    rng = np.random.default_rng(3)
    q, v = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 5, 4))     # float64
    vm = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], bool)
    mask = [None, vm, None]
    ko = kl([q, v], mask=mask)
    oo = ol([q, v], mask=mask)
    ol.set_weights(kl.get_weights())
    oo = ol([q, v], mask=mask)
    assert oo.dtype == np.float32 and keras.ops.convert_to_numpy(ko).dtype == np.float32
    _close(oo.numpy(), keras.ops.convert_to_numpy(ko), "output")
    with pytest.raises(ValueError):
        kl(ta.tensor(q).numpy())
    with pytest.raises(ValueError, match="call it on a list"):
        ol(q)
