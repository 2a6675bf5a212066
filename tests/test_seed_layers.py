"""The seed tutorials' attention layers: gradients (first and second order, inputs and parameters),
plain-NumPy reference implementations written here, masks, weight order, and errors."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (BahdanauAttention, LuongAttention, ManyToOneAttention,
                                TimeStepAttention, CosineAttention)


def T(a, grad=True):
    return ta.tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


def qkv(rng, b=2, tq=3, tk=4, dq=3, dk=3, dv=2):
    return (T(rng.standard_normal((b, tq, dq))), T(rng.standard_normal((b, tk, dk))),
            T(rng.standard_normal((b, tk, dv))))


def built64(layer, *args, **kw):
    """Call once in float32 (builds), then cast the parameters to float64 for checking."""
    f32 = [ta.tensor(a.data.astype(np.float32)) for a in args]
    layer(*f32, **kw)
    return layer.astype("float64")


def check_both(fn, inputs):
    assert ta.gradcheck(fn, inputs)
    assert ta.gradgradcheck(fn, inputs)


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


# -- NumPy references ----------------------------------------------------------------------------
def np_d2l_additive(q, k, v, Wq, Wk, wv, valid_lens=None):
    """d2l's AdditiveAttention with its masked_softmax (masked scores replaced by -1e6)."""
    feats = np.tanh((q @ Wq)[:, :, None, :] + (k @ Wk)[:, None, :, :])   # (B, Tq, Tk, h)
    scores = (feats @ wv)[..., 0]                                        # (B, Tq, Tk)
    if valid_lens is not None:
        vl = np.asarray(valid_lens)
        if vl.ndim == 1:
            vl = np.repeat(vl[:, None], scores.shape[1], axis=1)
        keep = np.arange(scores.shape[-1])[None, None, :] < vl[:, :, None]
        scores = np.where(keep, scores, -1e6)
    w = np_softmax(scores)
    return w @ v, w


def np_many_to_one(h, weights, score):
    h_t = h[:, -1, :]                                                   # (B, d)
    if score == "luong":
        W, Wc = weights
        e = np.einsum("bsd,bd->bs", h @ W, h_t)                          # h_t · (h_s W)
    else:
        v, W1, W2, Wc = weights                                        # philipperemy's order
        e = (np.tanh((h_t @ W1)[:, None, :] + h @ W2) @ v)[..., 0]
    a = np_softmax(e, axis=1)                                           # (B, T)
    c = np.einsum("bs,bsd->bd", a, h)
    return np.tanh(np.concatenate([c, h_t], axis=1) @ Wc), a


def np_time_step(x, kernel, bias, single):
    a = np_softmax(np.transpose(x, (0, 2, 1)) @ kernel + bias, axis=-1)  # (B, d, T)
    if single:
        a = np.repeat(a.mean(axis=1, keepdims=True), x.shape[2], axis=1)
    p = np.transpose(a, (0, 2, 1))
    return x * p, p


# -- BahdanauAttention -----------------------------------------------------------------------------
def test_bahdanau_matches_numpy_d2l_with_valid_lens(rng):
    q, k, v = qkv(rng, b=3, tq=2, tk=5, dq=4, dk=3, dv=2)
    layer = built64(BahdanauAttention(6), q, k, v)
    assert [w.shape for w in layer.get_weights()] == [(4, 6), (3, 6), (6, 1)]
    for vl in (np.array([2, 5, 3]), np.array([[1, 4], [5, 2], [3, 3]])):
        out, w = layer(q, k, v, valid_lens=vl, return_attention_scores=True)
        ref_out, ref_w = np_d2l_additive(q.numpy(), k.numpy(), v.numpy(), *layer.get_weights(), vl)
        np.testing.assert_allclose(out.numpy(), ref_out, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(layer.last_attention.numpy(), w.numpy())
        assert out.shape == (3, 2, 2) and w.shape == (3, 2, 5)


def test_bahdanau_gradcheck_with_valid_lens_and_mask(rng):
    q, k, v = qkv(rng, b=2, tq=2, tk=4, dq=3, dk=2, dv=2)
    layer = built64(BahdanauAttention(3), q, k, v)
    check_both(lambda q, k, v, *p: layer(q, k, v, valid_lens=np.array([3, 1])),
               [q, k, v] + layer.parameters())
    mask = np.array([[True, False, True, True], [False, True, True, False]])
    check_both(lambda q, k, v, *p: layer(q, k, v, mask=mask), [q, k, v] + layer.parameters())


def test_bahdanau_mask_equals_valid_lens_and_zero_length_row(rng):
    q, k, v = qkv(rng, b=2, tq=2, tk=4)
    layer = BahdanauAttention(5).astype("float64")
    a = layer(q, k, v, valid_lens=[2, 3])
    b = layer(q, k, v, mask=np.arange(4)[None, :] < np.array([[2], [3]]))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12)
    out = layer(q, k, v, valid_lens=[0, 4])        # nothing to attend to: zero weights, zero output
    np.testing.assert_array_equal(layer.last_attention.numpy()[0], 0.0)
    np.testing.assert_array_equal(out.numpy()[0], 0.0)
    np.testing.assert_allclose(layer.last_attention.numpy()[1].sum(-1), 1.0)


def test_bahdanau_dropout_only_in_training(rng):
    q, k, v = qkv(rng, b=2, tq=3, tk=6)
    ta.manual_seed(0)
    layer = BahdanauAttention(4, dropout=0.5).astype("float64")
    layer.eval()
    clean = layer(q, k, v)
    ref = layer.last_attention.numpy() @ v.numpy()
    np.testing.assert_allclose(clean.numpy(), ref, atol=1e-12)
    layer.train()
    noisy = layer(q, k, v)
    assert not np.allclose(noisy.numpy(), clean.numpy())
    np.testing.assert_allclose(layer.last_attention.numpy().sum(-1), 1.0)   # kept before dropout


def test_bahdanau_float32_stays_float32_and_eager_build(rng):
    layer = BahdanauAttention(4, query_dim=3, key_dim=5)
    assert layer.built and [w.shape for w in layer.get_weights()] == [(3, 4), (5, 4), (4, 1)]
    q = ta.tensor(rng.standard_normal((2, 1, 3)).astype(np.float32))
    k = ta.tensor(rng.standard_normal((2, 7, 5)).astype(np.float32))
    out = layer(q, k, k)
    assert out.dtype == np.float32 and out.shape == (2, 1, 5)


def test_bahdanau_errors(rng):
    q, k, v = qkv(rng, b=2, tq=2, tk=4, dq=3, dk=3)
    layer = BahdanauAttention(4).astype("float64")
    with pytest.raises(ValueError, match="BahdanauAttention.*keys.*values"):
        layer(q, k, T(rng.standard_normal((2, 3, 2))))
    layer(q, k, v)
    with pytest.raises(ValueError, match="BahdanauAttention: built for query dim 3"):
        layer(T(rng.standard_normal((2, 2, 5))), k, v)
    with pytest.raises(ValueError, match="BahdanauAttention: mask of shape"):
        layer(q, k, v, mask=np.ones((2, 3), dtype=bool))


# -- LuongAttention --------------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["dot", "general", "concat"])
def test_luong_matches_numpy_and_gradchecks(rng, score):
    q, k, v = qkv(rng, b=2, tq=2, tk=4, dq=3, dk=3, dv=2)
    layer = built64(LuongAttention(score, units=5 if score == "concat" else None), q, k, v)
    mask = np.array([[True, True, False, True], [False, True, True, True]])
    out, w = layer(q, k, v, mask=mask, return_attention_scores=True)
    qn, kn, vn, ws = q.numpy(), k.numpy(), v.numpy(), layer.get_weights()
    if score == "dot":
        assert ws == []
        e = qn @ kn.transpose(0, 2, 1)
    elif score == "general":
        assert [a.shape for a in ws] == [(3, 3)]
        e = qn @ ws[0] @ kn.transpose(0, 2, 1)
    else:
        assert [a.shape for a in ws] == [(6, 5), (5, 1)]
        pairs = np.concatenate([np.repeat(qn[:, :, None, :], 4, 2), np.repeat(kn[:, None, :, :], 2, 1)], -1)
        e = (np.tanh(pairs @ ws[0]) @ ws[1])[..., 0]
    ref_w = np_softmax(np.where(mask[:, None, :], e, -np.inf))
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), ref_w @ vn, rtol=1e-6, atol=1e-6)
    check_both(lambda q, k, v, *p: layer(q, k, v, mask=mask), [q, k, v] + layer.parameters())
    check_both(lambda q, k, v, *p: layer(q, k, v, valid_lens=np.array([[1, 3], [4, 2]])),
               [q, k, v] + layer.parameters())


def test_luong_errors(rng):
    with pytest.raises(ValueError, match="LuongAttention: score must be"):
        LuongAttention("bilinear")
    with pytest.raises(ValueError, match="units only applies"):
        LuongAttention("dot", units=4)
    q, k, v = qkv(rng, dq=3, dk=4)
    with pytest.raises(ValueError, match="LuongAttention\\(score='dot'\\)"):
        LuongAttention("dot")(q, k, v)
    out = LuongAttention("general").astype("float64")(q, k, v)
    assert out.shape == (2, 3, 2)


# -- ManyToOneAttention ----------------------------------------------------------------------------
@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_many_to_one_matches_numpy(rng, score):
    h = T(rng.standard_normal((4, 6, 5)))
    layer = built64(ManyToOneAttention(7, score=score), h)
    shapes = [w.shape for w in layer.get_weights()]
    assert shapes == ([(5, 5), (10, 7)] if score == "luong" else [(5, 1), (5, 5), (5, 5), (10, 7)])
    names = [n for n, _ in layer.named_parameters()]
    assert names == (["luong_w", "attention_vector"] if score == "luong"
                     else ["v", "w1", "w2", "attention_vector"])
    out, a = layer(h, return_attention_scores=True)
    ref, ref_a = np_many_to_one(h.numpy(), layer.get_weights(), score)
    assert out.shape == (4, 7) and a.shape == (4, 6)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(a.numpy(), ref_a, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(layer.last_attention.numpy(), ref_a, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_many_to_one_gradcheck(rng, score):
    h = T(rng.standard_normal((2, 4, 3)))
    layer = built64(ManyToOneAttention(3, score=score), h)
    check_both(lambda h, *p: layer(h), [h] + layer.parameters())


def test_many_to_one_set_weights_and_errors(rng):
    layer = ManyToOneAttention(2, input_dim=3)
    assert layer.built
    ws = [rng.standard_normal((3, 3)), rng.standard_normal((6, 2))]
    layer.set_weights(ws)
    np.testing.assert_allclose(layer.get_weights()[1], ws[1].astype(np.float32))
    with pytest.raises(ValueError, match="ManyToOneAttention: built for d = 3"):
        layer(ta.tensor(np.zeros((1, 4, 5), np.float32)))
    with pytest.raises(ValueError, match="ManyToOneAttention: score must be"):
        ManyToOneAttention(score="dot")
    with pytest.raises(ValueError, match="ManyToOneAttention: input must be"):
        ManyToOneAttention()(ta.tensor(np.zeros((4, 5), np.float32)))


# -- TimeStepAttention -----------------------------------------------------------------------------
@pytest.mark.parametrize("single", [False, True])
def test_time_step_matches_numpy(rng, single):
    x = T(rng.standard_normal((3, 5, 4)))
    layer = built64(TimeStepAttention(single_attention_vector=single), x)
    layer.set_weights([rng.standard_normal((5, 5)), rng.standard_normal(5)])   # a nonzero bias
    assert [w.shape for w in layer.get_weights()] == [(5, 5), (5,)]
    out, p = layer(x, return_attention_scores=True)
    ref, ref_p = np_time_step(x.numpy(), *layer.get_weights(), single)
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.numpy(), ref_p, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(p.numpy().sum(axis=1), 1.0)             # a distribution over time
    per_step = layer.attention_per_step()
    assert per_step.shape == (3, 5)
    np.testing.assert_allclose(per_step.sum(axis=1), 1.0)
    if single:
        np.testing.assert_allclose(p.numpy(), np.repeat(p.numpy()[:, :, :1], 4, axis=2))


@pytest.mark.parametrize("single", [False, True])
def test_time_step_gradcheck(rng, single):
    x = T(rng.standard_normal((2, 4, 3)))
    layer = built64(TimeStepAttention(single_attention_vector=single), x)
    layer.bias.data = ta.backend.to_device(rng.standard_normal(4), layer.bias.device)
    check_both(lambda x, *p: layer(x), [x] + layer.parameters())


def test_time_step_errors():
    layer = TimeStepAttention(time_steps=10)
    assert layer.built
    with pytest.raises(ValueError, match="TimeStepAttention: built for T = 10"):
        layer(ta.tensor(np.zeros((2, 9, 3), np.float32)))
    with pytest.raises(RuntimeError, match="call the layer first"):
        TimeStepAttention().attention_per_step()


# -- CosineAttention -------------------------------------------------------------------------------
@pytest.mark.parametrize("learnable", [False, True])
def test_cosine_matches_numpy_and_gradchecks(rng, learnable):
    q, k, v = qkv(rng, b=2, tq=3, tk=4, dq=3, dk=3, dv=2)
    layer = CosineAttention(tau=0.5, learnable_tau=learnable).astype("float64")
    out, w = layer(q, k, v, valid_lens=np.array([2, 4]), return_attention_scores=True)
    qn, kn = q.numpy(), k.numpy()
    cos = (qn / np.linalg.norm(qn, axis=-1, keepdims=True)) @ \
        (kn / np.linalg.norm(kn, axis=-1, keepdims=True)).transpose(0, 2, 1)
    keep = np.arange(4)[None, None, :] < np.array([2, 4])[:, None, None]
    ref_w = np_softmax(np.where(keep, cos / 0.5, -np.inf))
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(out.numpy(), ref_w @ v.numpy(), rtol=1e-6, atol=1e-6)
    assert [a.shape for a in layer.get_weights()] == ([()] if learnable else [])
    check_both(lambda q, k, v, *p: layer(q, k, v, mask=np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)),
               [q, k, v] + layer.parameters())


def test_cosine_errors():
    with pytest.raises(ValueError, match="CosineAttention: tau must be positive"):
        CosineAttention(tau=0.0)


# -- SelfAttention ---------------------------------------------------------------------------------
def test_self_attention_is_mha_of_x_with_itself(rng):
    from tinyattn.attention import SelfAttention, MultiHeadAttention
    x = T(rng.standard_normal((2, 5, 4)))
    layer = SelfAttention(num_heads=2, key_dim=3, causal=True).astype("float64")
    out, w = layer(x, return_attention_scores=True)
    assert out.shape == (2, 5, 4) and w.shape == (2, 2, 5, 5)
    assert len(layer.get_weights()) == 8 and layer.get_weights()[0].shape == (4, 2, 3)
    np.testing.assert_array_equal(np.triu(w.numpy(), k=1), 0.0)          # causal: no peeking ahead
    np.testing.assert_allclose(w.numpy().sum(-1), 1.0)
    mha = MultiHeadAttention(2, 3).astype("float64")
    mha(x, x)
    mha.set_weights(layer.get_weights())
    ref, ref_w = mha(x, x, x, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.last_attention.numpy(), ref_w.numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_gradcheck_with_mask(rng, causal):
    from tinyattn.attention import SelfAttention
    x = T(rng.standard_normal((2, 4, 3)))
    layer = built64(SelfAttention(num_heads=2, key_dim=2, causal=causal), x)
    for p in layer.parameters():                           # nonzero biases, so they are really checked
        p.data = p.data + ta.backend.to_device(0.1 * rng.standard_normal(p.shape), p.device)
    mask = np.array([[True, True, True, False], [True, True, True, True]])
    check_both(lambda x, *p: layer(x, mask=mask), [x] + layer.parameters())
    _, w = layer(x, mask=mask, return_attention_scores=True)
    np.testing.assert_array_equal(w.numpy()[0, :, :, 3], 0.0)              # the padded key
    with pytest.raises(ValueError, match=r"SelfAttention: mask of shape \(2, 3\) does not broadcast to \(2, 4\)"):
        layer(x, mask=np.ones((2, 3), bool))


# -- Keras parity (the two layers that Keras users build from Keras pieces) ------------------------
# These belong with the other parity tests in spirit; they skip cleanly without TensorFlow.
def _keras():
    pytest.importorskip("tensorflow")
    import keras
    return keras


@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_many_to_one_keras_parity(rng, score):
    keras = _keras()
    from keras import layers, ops
    b, t, d, units = 3, 7, 5, 4
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    ours = ManyToOneAttention(units, score=score)
    out = ours(ta.tensor(x))
    ws = ours.get_weights()
    h = ops.convert_to_tensor(x)
    h_t = h[:, -1, :]                                                         # (B, d)

    def dense(units_, w, activation=None):
        layer = layers.Dense(units_, use_bias=False, activation=activation)
        layer.build((None, w.shape[0]))
        layer.set_weights([w])
        return layer

    if score == "luong":
        e = layers.Dot(axes=[1, 2])([h_t, dense(d, ws[0])(h)])                # h_t · (h_s W)
    else:
        s = ops.tanh(ops.expand_dims(dense(d, ws[1])(h_t), 1) + dense(d, ws[2])(h))
        e = ops.squeeze(dense(1, ws[0])(s), -1)                                # v first
    alpha = layers.Activation("softmax")(e)                                   # over time
    context = layers.Dot(axes=[1, 1])([h, alpha])
    ref = dense(units, ws[-1], "tanh")(layers.Concatenate()([context, h_t]))
    np.testing.assert_allclose(out.numpy(), keras.ops.convert_to_numpy(ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ours.last_attention.numpy(), keras.ops.convert_to_numpy(alpha),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("single", [False, True])
def test_time_step_keras_parity(rng, single):
    keras = _keras()
    from keras import layers, ops
    b, t, d = 3, 6, 4
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    ours = TimeStepAttention(single_attention_vector=single)
    ours(ta.tensor(x))
    ours.set_weights([rng.standard_normal((t, t)), rng.standard_normal(t)])
    out, p = ours(ta.tensor(x), return_attention_scores=True)
    dense = layers.Dense(t, activation="softmax")
    dense.build((None, t))
    dense.set_weights(ours.get_weights())
    a = dense(layers.Permute((2, 1))(ops.convert_to_tensor(x)))                # (B, d, T)
    if single:
        a = layers.RepeatVector(d)(ops.mean(a, axis=1))
    probs = layers.Permute((2, 1))(a)
    ref = layers.Multiply()([ops.convert_to_tensor(x), probs])
    np.testing.assert_allclose(out.numpy(), keras.ops.convert_to_numpy(ref), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.numpy(), keras.ops.convert_to_numpy(probs), rtol=1e-5, atol=1e-5)
