"""Parity with Keras 3.15 for issue 12's Keras side: mask propagation, N-D attention
(``attention_axes``), ``use_gate``, ``sliding_window``, regularizers and constraints.

Keras runs live (TensorFlow backend); weights are copied with ``set_weights(get_weights())``;
outputs, attention scores, propagated masks and gradients (tf.GradientTape vs ``ta.grad``, one random
upstream gradient) must agree in float32.
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tinyattn as ta  # noqa: E402
from tinyattn import nn  # noqa: E402
from tinyattn.attention import Attention, AdditiveAttention, MultiHeadAttention  # noqa: E402
from tinyattn.nn import get_keras_mask  # noqa: E402
from tinyattn.train import evaluate, fit  # noqa: E402
from tinyattn.optim import SGD  # noqa: E402

TOL = dict(rtol=2e-5, atol=2e-5)


def _kmask(t):
    m = getattr(t, "_keras_mask", None)
    return None if m is None else np.asarray(m)


def _grads_keras(weights, inputs, call, gy):
    xs = [tf.constant(x) for x in inputs]
    with tf.GradientTape() as tape:
        tape.watch(xs)
        out = call(*xs)
        outs = out if isinstance(out, (tuple, list)) else (out,)
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, gy)])
    gs = tape.gradient(loss, xs + list(weights))
    gs = [np.zeros(v.shape, np.float32) if g is None else tf.convert_to_tensor(g).numpy()
          for g, v in zip(gs, xs + list(weights))]
    return [np.asarray(o) for o in outs], gs


def _grads_ours(weights, inputs, call, gy):
    xs = [ta.tensor(x, requires_grad=x.dtype.kind == "f") for x in inputs]
    out = call(*xs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    wrt = [x for x in xs if x.requires_grad] + list(weights)
    gs = ta.grad(list(outs), wrt, list(gy))
    gs = [np.zeros(t.shape, np.float32) if g is None else g.numpy() for g, t in zip(gs, wrt)]
    return [o.numpy() for o in outs], gs


def _compare(kweights, oweights, inputs, kcall, ocall, seed=1):
    rng = np.random.default_rng(seed)
    kouts = kcall(*[tf.constant(x) for x in inputs])
    kouts = kouts if isinstance(kouts, (tuple, list)) else (kouts,)
    gy = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in kouts]
    ko, kg = _grads_keras(kweights, inputs, kcall, gy)
    oo, og = _grads_ours(oweights, inputs, ocall, gy)
    kg = [g for g, x in zip(kg, inputs) if x.dtype.kind == "f"] + kg[len(inputs):]
    assert len(ko) == len(oo) and len(kg) == len(og)
    for i, (a, b) in enumerate(zip(oo, ko)):
        np.testing.assert_allclose(a, b, err_msg=f"output {i}", **TOL)
    for i, (a, b) in enumerate(zip(og, kg)):
        np.testing.assert_allclose(a, b, err_msg=f"gradient {i}", **TOL)
    return oo


# ------------------------------------------------------------------------------------------------
# 1. mask propagation: Embedding(mask_zero) → LSTM → Attention → GlobalAveragePooling1D → Dense
# ------------------------------------------------------------------------------------------------
IDS = np.array([[3, 1, 4, 1, 0, 0], [2, 7, 1, 8, 2, 8], [5, 0, 0, 0, 0, 0], [9, 2, 6, 0, 0, 0]])


def _keras_pipeline(attn="dot"):
    ids = keras.Input((IDS.shape[1],), dtype="int32")
    emb = keras.layers.Embedding(10, 5, mask_zero=True)
    lstm = keras.layers.LSTM(4, return_sequences=True)
    att = keras.layers.Attention() if attn == "dot" else keras.layers.AdditiveAttention()
    gap = keras.layers.GlobalAveragePooling1D()
    dense = keras.layers.Dense(3)
    h = lstm(emb(ids))
    y = dense(gap(att([h, h])))
    return keras.Model(ids, y), (emb, lstm, att, gap, dense)


def _ours_layers(attn="dot"):
    return (nn.Embedding(10, 5, mask_zero=True), nn.LSTM(4, return_sequences=True),
            Attention() if attn == "dot" else AdditiveAttention(), nn.GlobalAveragePooling1D(), nn.Dense(3))


class _SelfAttn(ta.nn.Module):
    """Attention([x, x]) as a one-input layer, so it fits in a Sequential."""
    supports_masking = True

    def __init__(self, att):
        super().__init__()
        self.att = att

    def forward(self, x):
        return self.att([x, x])


@pytest.mark.parametrize("attn", ["dot", "additive"])
@pytest.mark.parametrize("style", ["functional", "sequential"])
def test_mask_pipeline_matches_keras(attn, style):
    keras.utils.set_random_seed(3)
    kmodel, klayers = _keras_pipeline(attn)
    emb, lstm, att, gap, dense = _ours_layers(attn)
    emb(IDS)
    h = lstm(emb(IDS))
    dense(gap(att([h, h])))
    for o, k in zip((emb, lstm, att, gap, dense), klayers):
        o.set_weights(k.get_weights())
    if style == "functional":
        def ours(ids):
            x = lstm(emb(ids))
            return dense(gap(att([x, x])))
        weights = [w for lay in (emb, lstm, att, dense) for w in lay.weights()]
    else:
        model = nn.Sequential(emb, lstm, _SelfAttn(att), gap, dense)
        ours = model
        weights = model.weights()
    kweights = [w for lay in klayers for w in lay.trainable_weights]
    # Keras's attention sees [query_mask, value_mask] from the LSTM's output mask; so must ours
    _compare(kweights, weights, [IDS.astype(np.int32)], lambda i: kmodel(i), ours)
    # the masks along the way, eagerly, vs Keras's _keras_mask
    ke = klayers[0](tf.constant(IDS))
    kh = klayers[1](ke)
    ka = klayers[2]([kh, kh])
    oe = emb(IDS)
    oh = lstm(oe)
    oa = att([oh, oh])
    for k, o in ((ke, oe), (kh, oh), (ka, oa)):
        np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(o)), _kmask(k))
    assert get_keras_mask(gap(oa)) is None and _kmask(klayers[3](ka)) is None
    # an explicit mask wins over the carried one
    full = [np.ones(IDS.shape, bool)] * 2
    np.testing.assert_allclose(att([oh, oh], mask=full).numpy(), klayers[2]([kh, kh], mask=full).numpy(), **TOL)


def test_lstm_without_return_sequences_drops_the_mask_and_bidirectional_keeps_it():
    ke = keras.layers.Embedding(10, 3, mask_zero=True)(tf.constant(IDS))
    oe = nn.Embedding(10, 3, mask_zero=True)(IDS)
    assert _kmask(keras.layers.LSTM(2)(ke)) is None and get_keras_mask(nn.LSTM(2)(oe)) is None
    kb = keras.layers.Bidirectional(keras.layers.GRU(2, return_sequences=True))(ke)
    ob = nn.Bidirectional(nn.GRU(2, return_sequences=True))(oe)
    np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(ob)), _kmask(kb))
    ks = keras.layers.LSTM(2, return_sequences=True, return_state=True)(ke)
    os_ = nn.LSTM(2, return_sequences=True, return_state=True)(oe)
    assert [(_kmask(t) is None) for t in ks] == [(get_keras_mask(t) is None) for t in os_]


def test_mha_output_carries_the_query_mask_and_value_mask_is_read():
    keras.utils.set_random_seed(4)
    q_ids = np.array([[1, 2, 3, 0, 0], [3, 3, 1, 1, 2], [1, 0, 0, 0, 0]])
    v_ids = np.array([[5, 4, 0], [3, 0, 0], [2, 1, 1]])
    kq = keras.layers.Embedding(4, 8, mask_zero=True)
    kv = keras.layers.Embedding(6, 8, mask_zero=True)
    kmha = keras.layers.MultiHeadAttention(2, 2)
    oq, ov = nn.Embedding(4, 8, mask_zero=True), nn.Embedding(6, 8, mask_zero=True)
    omha = MultiHeadAttention(2, 2)
    for causal in (False, True):
        ko = kmha(query=kq(q_ids), value=kv(v_ids), use_causal_mask=causal)
        oq.set_weights(kq.get_weights())
        ov.set_weights(kv.get_weights())
        omha(oq(q_ids), ov(v_ids))
        omha.set_weights(kmha.get_weights())
        oo = omha(oq(q_ids), ov(v_ids), use_causal_mask=causal, training=False)
        np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(oo)), _kmask(ko))
        rows = np.asarray(q_ids != 0)[..., None]             # Keras's fused path differs on fully masked rows
        np.testing.assert_allclose(oo.numpy() * rows, np.asarray(ko) * rows, **TOL)


def test_fit_uses_the_prediction_mask_regularizers_and_constraints_as_keras():
    """One epoch of SGD on a masked sequence model with an L2 kernel penalty, an L1 activity penalty
    and a max-norm constraint: the weights after fit and the reported loss match Keras's."""
    keras.utils.set_random_seed(5)
    rng = np.random.default_rng(5)
    y = rng.standard_normal((IDS.shape[0], IDS.shape[1], 2)).astype(np.float32)
    kmodel = keras.Sequential([
        keras.Input((IDS.shape[1],), dtype="int32"),
        keras.layers.Embedding(10, 4, mask_zero=True, embeddings_regularizer="l2"),
        keras.layers.LSTM(3, return_sequences=True, kernel_regularizer=keras.regularizers.L2(0.05),
                          recurrent_constraint=keras.constraints.MaxNorm(0.5)),
        keras.layers.Dense(2, kernel_constraint=keras.constraints.MaxNorm(0.3),
                           bias_regularizer=keras.regularizers.L1L2(0.01, 0.02),
                           activity_regularizer=keras.regularizers.L1(0.001)),
    ])
    model = nn.Sequential(nn.Embedding(10, 4, mask_zero=True, embeddings_regularizer="l2"),
                          nn.LSTM(3, return_sequences=True, kernel_regularizer=nn.regularizers.L2(0.05),
                                  recurrent_constraint=nn.constraints.MaxNorm(0.5)),
                          nn.Dense(2, kernel_constraint=nn.constraints.MaxNorm(0.3),
                                   bias_regularizer=nn.regularizers.L1L2(0.01, 0.02),
                                   activity_regularizer=nn.regularizers.L1(0.001)))
    model(IDS)
    model.set_weights(kmodel.get_weights())
    # the loss of the first batch, with the penalties, before any step
    kpred = kmodel(tf.constant(IDS))
    kloss = float(keras.losses.MeanSquaredError()(y, kpred)) + float(sum(kmodel.losses))
    pred = model(IDS)
    np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(pred)), IDS != 0)
    oloss = float(ta.losses.MeanSquaredError()(y, pred).item()) + float(sum(r.item() for r in model.regularization_losses()))
    np.testing.assert_allclose(oloss, kloss, rtol=1e-5)
    assert len(model.regularization_losses()) == len(kmodel.losses) == 4
    kmodel.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    yv = rng.standard_normal(y.shape).astype(np.float32)
    kh = kmodel.fit(IDS, y, batch_size=2, epochs=2, shuffle=False, verbose=0, validation_data=(IDS, yv))
    oh = fit(model, "mse", SGD(model.parameters(), lr=0.5), IDS, y, batch_size=2, epochs=2, shuffle=False,
             verbose=0, validation_data=(IDS, yv))
    for a, b in zip(model.get_weights(), kmodel.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(oh["loss"], kh.history["loss"], rtol=1e-4)
    # val_loss and evaluate include the penalties too (Keras's compute_loss in test_step)
    np.testing.assert_allclose(oh["val_loss"], kh.history["val_loss"], rtol=1e-4)
    np.testing.assert_allclose(evaluate(model, "mse", IDS, yv, batch_size=2),
                               kmodel.evaluate(IDS, yv, batch_size=2, verbose=0), rtol=1e-4)
    assert np.all(np.linalg.norm(model.get_weights()[-2], axis=0) <= 0.3 + 1e-6)


# ------------------------------------------------------------------------------------------------
# 2. N-D inputs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layer", ["Attention", "AdditiveAttention"])
def test_dense_attention_nd_inputs_match_keras(layer):
    rng = np.random.default_rng(2)
    q = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    v = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    kl = getattr(keras.layers, layer)()
    ol = Attention() if layer == "Attention" else AdditiveAttention()
    kl([q, v])
    ol([q, v])
    ol.set_weights(kl.get_weights())
    qm = rng.random((2, 3, 4)) > 0.3
    vm = rng.random((2, 3, 1, 6)) > 0.3               # Keras expands only a 2-D value mask
    vm[..., 0] = True
    with pytest.raises(ValueError, match="value_mask"):
        ol([q, v], mask=[qm, vm[:, :, 0]])            # (B, X, Tv): Keras fails too (a broadcast error)
    _compare(kl.trainable_weights, ol.weights(), [q, v],
             lambda a, b: kl([a, b], mask=[qm, vm], return_attention_scores=True),
             lambda a, b: ol([a, b], mask=[qm, vm], return_attention_scores=True, training=False))


ND_CASES = [   # Keras's test_high_dim_attention cases (q dims, v dims, attention_axes), + masks
    ("4d_1freebatch", (3, 4), (3, 2), (2,), (4, 2)),
    ("4d_1freebatch_mask3", (3, 4), (3, 2), (2,), (3, 4, 2)),
    ("4d_2d_attention", (3, 4), (3, 2), (1, 2), (3, 4, 3, 2)),
    ("5d_2d_attention", (5, 3, 4), (5, 3, 2), (2, 3), (3, 4, 3, 2)),
    ("5d_2d_attention_fullmask", (5, 3, 4), (5, 3, 2), (2, 3), (3, 5, 3, 4, 3, 2)),
    ("4d_negative_axis", (3, 4), (3, 2), (-2,), None),
    ("4d_default_axes", (3, 4), (2, 5), None, None),
]


@pytest.mark.parametrize("use_gate", [False, True])
@pytest.mark.parametrize("name,qd,vd,axes,mask_dims", ND_CASES, ids=[c[0] for c in ND_CASES])
def test_mha_attention_axes_match_keras(name, qd, vd, axes, mask_dims, use_gate):
    keras.utils.set_random_seed(6)
    rng = np.random.default_rng(6)
    B, d = 3, 8
    q = rng.standard_normal((B,) + qd + (d,)).astype(np.float32)
    v = rng.standard_normal((B,) + vd + (d,)).astype(np.float32)
    kl = keras.layers.MultiHeadAttention(2, 2, attention_axes=axes, use_gate=use_gate, output_shape=(2, 3))
    ol = MultiHeadAttention(2, 2, attention_axes=axes, use_gate=use_gate, output_shape=(2, 3))
    kl(q, v)
    ol(q, v)
    assert [w.shape for w in ol.get_weights()] == [tuple(w.shape) for w in kl.get_weights()]
    ol.set_weights(kl.get_weights())
    mask = None
    if mask_dims is not None:
        mask = rng.random(mask_dims) > 0.3
        mask[..., 0] = True
    kw = {} if mask is None else {"attention_mask": mask}
    oo = _compare(kl.trainable_weights, ol.weights(), [q, v],
                  lambda a, b: kl(a, b, return_attention_scores=True, **kw),
                  lambda a, b: ol(a, b, return_attention_scores=True, training=False, **kw))
    assert oo[0].shape == kl.compute_output_shape(q.shape, v.shape) == ol.compute_output_shape(q.shape, v.shape)


def test_mha_nd_mask_without_batch_axis_is_refused_as_keras():
    """Keras's test lists a (5, 3, 4, 3, 2) mask for 5-D inputs with attention_axes=(2, 3) but never
    uses it: Keras's expansion puts it at (5, 1, 1, 3, 4, 3, 2), which does not broadcast to the
    scores (B=3, 5, H, 3, 4, 3, 2). Both refuse it with a ValueError."""
    rng = np.random.default_rng(0)
    q = rng.standard_normal((3, 5, 3, 4, 8)).astype(np.float32)
    v = rng.standard_normal((3, 5, 3, 2, 8)).astype(np.float32)
    m = np.ones((5, 3, 4, 3, 2), bool)
    with pytest.raises(ValueError):
        keras.layers.MultiHeadAttention(2, 2, attention_axes=(2, 3))(q, v, attention_mask=m)
    with pytest.raises(ValueError, match=r"attention_mask of shape \(5, 1, 1, 3, 4, 3, 2\) does not broadcast"):
        MultiHeadAttention(2, 2, attention_axes=(2, 3))(q, v, attention_mask=m)


def test_mha_negative_axes_equal_positive_and_causal_needs_3d():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 3, 8, 4)).astype(np.float32)
    pos, neg = MultiHeadAttention(2, 4, attention_axes=2), MultiHeadAttention(2, 4, attention_axes=-2)
    pos(x, x)
    neg(x, x)
    neg.set_weights(pos.get_weights())
    zp, ap = pos(x, x, return_attention_scores=True)
    zn, an = neg(x, x, return_attention_scores=True)
    np.testing.assert_allclose(zp.numpy(), zn.numpy(), rtol=1e-6)
    np.testing.assert_allclose(ap.numpy(), an.numpy(), rtol=1e-6)
    kl = keras.layers.MultiHeadAttention(2, 3, attention_axes=(1, 2))
    with pytest.raises(Exception):
        kl(x, x, use_causal_mask=True)                   # Keras fails too
    with pytest.raises(ValueError, match="use_causal_mask needs the attention over axis 1 alone"):
        MultiHeadAttention(2, 3, attention_axes=(1, 2))(x, x, use_causal_mask=True)
    with pytest.raises(ValueError, match="sliding_window needs the attention over axis 1 alone"):
        MultiHeadAttention(2, 3, sliding_window=2)(x, x)


# ------------------------------------------------------------------------------------------------
# 3. use_gate and sliding_window on 3-D inputs
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("window,causal,use_gate", [(1, False, False), (2, False, True), (3, True, False),
                                                    (2, True, True), (None, False, True)])
def test_mha_sliding_window_and_gate_match_keras(window, causal, use_gate):
    keras.utils.set_random_seed(8)
    rng = np.random.default_rng(8)
    q = rng.standard_normal((2, 5, 6)).astype(np.float32)
    v = rng.standard_normal((2, 5, 4)).astype(np.float32)
    kl = keras.layers.MultiHeadAttention(3, 2, value_dim=3, sliding_window=window, use_gate=use_gate)
    ol = MultiHeadAttention(3, 2, value_dim=3, sliding_window=window, use_gate=use_gate)
    kl(q, v)
    ol(q, v)
    ol.set_weights(kl.get_weights())
    _compare(kl.trainable_weights, ol.weights(), [q, v],
             lambda a, b: kl(a, b, use_causal_mask=causal, return_attention_scores=True),
             lambda a, b: ol(a, b, use_causal_mask=causal, return_attention_scores=True, training=False))
    if window is not None:      # equal to an explicit banded mask
        band = np.abs(np.arange(5)[:, None] - np.arange(5)[None]) < window
        plain = MultiHeadAttention(3, 2, value_dim=3, use_gate=use_gate)
        plain(q, v)
        plain.set_weights(kl.get_weights())
        a = ol(q, v, use_causal_mask=causal, training=False).numpy()
        b = plain(q, v, attention_mask=band[None], use_causal_mask=causal, training=False).numpy()
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_sliding_window_validation_as_keras():
    for bad in (0, -1, 1.5, "2"):
        with pytest.raises(ValueError, match="sliding_window"):
            keras.layers.MultiHeadAttention(2, 2, sliding_window=bad)
        with pytest.raises(ValueError, match="sliding_window"):
            MultiHeadAttention(2, 2, sliding_window=bad)


# ------------------------------------------------------------------------------------------------
# 3b. regularizers and constraints
# ------------------------------------------------------------------------------------------------
REGS = [("l1", "l1"), ("l2", "l2"), ("L1L2(0.1, 0.2)", None), ("L1(0.3)", None), ("L2(0.04)", None)]


@pytest.mark.parametrize("spec", ["l1", "l2", "l1l2", "L1", "L1(0.3)", "L2(0.04)", "L1L2(0.1, 0.2)"])
def test_regularizer_values_match_keras(spec):
    w = np.random.default_rng(9).standard_normal((4, 3)).astype(np.float32)
    if "(" in spec:
        k = eval("keras.regularizers." + spec)
        o = eval("nn.regularizers." + spec)
    else:
        k, o = keras.regularizers.get(spec), nn.regularizers.get(spec)
    np.testing.assert_allclose(float(o(ta.tensor(w)).item()), float(k(tf.constant(w))), rtol=1e-6)


@pytest.mark.parametrize("spec", ["max_norm", "non_neg", "unit_norm", "min_max_norm", "MaxNorm(0.7, axis=1)",
                                  "UnitNorm(axis=[0, 1])", "MinMaxNorm(0.5, 0.8, rate=0.5)"])
def test_constraint_values_match_keras(spec):
    w = (3 * np.random.default_rng(10).standard_normal((4, 2, 3))).astype(np.float32)
    if "(" in spec:
        k = eval("keras.constraints." + spec)
        o = eval("nn.constraints." + spec)
    else:
        k, o = keras.constraints.get(spec), nn.constraints.get(spec)
    np.testing.assert_allclose(o(w), np.asarray(k(tf.constant(w))), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("layer", ["MultiHeadAttention", "GroupQueryAttention", "Dense", "GRU",
                                   "BatchNormalization"])
def test_layer_losses_match_keras(layer):
    keras.utils.set_random_seed(11)
    rng = np.random.default_rng(11)
    from tinyattn.attention import GroupedQueryAttention
    kr, br, ar = keras.regularizers.L2(0.01), keras.regularizers.L1(0.02), keras.regularizers.L1(0.003)
    okr, obr, oar = nn.regularizers.L2(0.01), nn.regularizers.L1(0.02), nn.regularizers.L1(0.003)
    x = rng.standard_normal((2, 4, 6)).astype(np.float32)
    if layer == "MultiHeadAttention":
        kl = keras.layers.MultiHeadAttention(2, 3, use_gate=True, kernel_regularizer=kr, bias_regularizer=br,
                                             activity_regularizer=ar, bias_initializer="ones")
        ol = MultiHeadAttention(2, 3, use_gate=True, kernel_regularizer=okr, bias_regularizer=obr,
                                activity_regularizer=oar)
        kcall, ocall = (lambda: kl(x, x)), (lambda: ol(x, x, training=False))
    elif layer == "GroupQueryAttention":
        kl = keras.layers.GroupQueryAttention(3, 4, 2, kernel_regularizer=kr, bias_regularizer=br,
                                              activity_regularizer=ar, bias_initializer="ones")
        ol = GroupedQueryAttention(3, 4, 2, kernel_regularizer=okr, bias_regularizer=obr,
                                   activity_regularizer=oar)
        kcall, ocall = (lambda: kl(x, x)), (lambda: ol(x, x, training=False))
    elif layer == "Dense":
        kl = keras.layers.Dense(3, kernel_regularizer=kr, bias_regularizer=br, activity_regularizer=ar,
                                bias_initializer="ones")
        ol = nn.Dense(3, kernel_regularizer=okr, bias_regularizer=obr, activity_regularizer=oar)
        kcall, ocall = (lambda: kl(x)), (lambda: ol(x))
    elif layer == "GRU":
        kl = keras.layers.GRU(3, kernel_regularizer=kr, recurrent_regularizer=kr, bias_regularizer=br,
                              activity_regularizer=ar, bias_initializer="ones")
        ol = nn.GRU(3, kernel_regularizer=okr, recurrent_regularizer=okr, bias_regularizer=obr,
                    activity_regularizer=oar)
        kcall, ocall = (lambda: kl(x)), (lambda: ol(x))
    else:
        kl = keras.layers.BatchNormalization(gamma_regularizer=kr, beta_regularizer=br, beta_initializer="ones")
        ol = nn.BatchNormalization(gamma_regularizer=okr, beta_regularizer=obr)
        kcall, ocall = (lambda: kl(x, training=True)), (lambda: ol(x, training=True))
    kcall()
    ocall()
    ol.set_weights(kl.get_weights())
    kcall()
    ocall()
    kl_losses = sorted(float(v) for v in kl.losses)
    ol_losses = sorted(float(v.item()) for v in ol.regularization_losses())
    np.testing.assert_allclose(ol_losses, kl_losses, rtol=2e-5, atol=1e-7)


# ------------------------------------------------------------------------------------------------
# compute_mask of Attention / AdditiveAttention, every edge case against Keras live
# ------------------------------------------------------------------------------------------------
EDGE_MASKS = [None, [None, np.array([True, False, True])], [np.array([True, False, True])] * 2,
              [np.array([True] * 3)] * 2, [np.array([False] * 3)] * 2, [np.array([1.0, 0.0, 1.0])] * 2,
              [np.array([1, 0, 1]), np.array([0, 1, 0])], [np.array([True]), np.array([False])],
              [np.array([[True, False, True], [False, False, True]]), None, None]]


@pytest.mark.parametrize("cls", ["Attention", "AdditiveAttention"])
@pytest.mark.parametrize("i", range(len(EDGE_MASKS)))
def test_compute_mask_edge_cases_match_keras(cls, i):
    mask = EDGE_MASKS[i]
    inputs = [np.ones((2, 3, 4), np.float32), np.ones((2, 4, 4), np.float32)]
    k = getattr(keras.layers, cls)().compute_mask(inputs, mask)
    o = (Attention() if cls == "Attention" else AdditiveAttention()).compute_mask(inputs, mask)
    assert (k is None) == (o is None)
    if k is not None:
        k = np.asarray(k)
        assert o.dtype == k.dtype or (o.dtype.kind == k.dtype.kind == "f")
        np.testing.assert_array_equal(o, k)
    for bad in ([inputs[0]], inputs[0]):
        with pytest.raises(ValueError):
            getattr(keras.layers, cls)().compute_mask(bad, mask)
        with pytest.raises(ValueError):
            (Attention() if cls == "Attention" else AdditiveAttention()).compute_mask(bad, mask)


def test_mha_nd_keras_masks_from_embedding_match_keras():
    """Ids (B, X, T) → Embedding(mask_zero) (B, X, T, d) with a (B, X, T) mask → MultiHeadAttention
    over axis 2: the query/value masks are read from the inputs and combined as Keras does."""
    keras.utils.set_random_seed(12)
    ids = np.array([[[1, 2, 0, 0], [3, 1, 2, 0]], [[2, 0, 0, 0], [1, 1, 1, 1]], [[3, 3, 0, 0], [0, 0, 0, 0]]])
    ke, kl = keras.layers.Embedding(4, 6, mask_zero=True), keras.layers.MultiHeadAttention(2, 3, attention_axes=2)
    oe, ol = nn.Embedding(4, 6, mask_zero=True), MultiHeadAttention(2, 3, attention_axes=2)
    kx = ke(ids)
    ko, ks = kl(kx, kx, return_attention_scores=True)
    oe.set_weights(ke.get_weights())
    ox = oe(ids)
    ol(ox, ox)
    ol.set_weights(kl.get_weights())
    oo, os_ = ol(ox, ox, return_attention_scores=True, training=False)
    np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(oo)), _kmask(ko))
    valid = (ids != 0)[..., None]                  # rows with a real query (others differ in Keras's fallback)
    np.testing.assert_allclose(oo.numpy() * valid, np.asarray(ko) * valid, **TOL)
    np.testing.assert_allclose(os_.numpy(), np.asarray(ks), **TOL)
