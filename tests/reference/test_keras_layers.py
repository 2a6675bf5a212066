"""Parity with Keras 3 (TensorFlow backend) and PyTorch: Dense, Embedding, LayerNormalization,
Conv1D, activations, LSTM, GRU, Bidirectional.

Each test builds the reference layer, copies its weights into ours with
``ours.set_weights(keras_layer.get_weights())``, and compares in float32 the outputs AND the
gradients of  loss = Σ out ⊙ G  (G random) w.r.t. the input, the initial states and every weight
(tf.GradientTape on the Keras side). Tolerance: rtol = atol = 1e-5 (2e-5 for gradients
accumulated over many recurrent steps, where float32 summation order differs).
"""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tinyattn as ta  # noqa: E402
from tinyattn import nn  # noqa: E402

RTOL = ATOL = 1e-5


def _rng(seed=0):
    return np.random.default_rng(seed)


def _list(v):
    return list(v) if isinstance(v, (list, tuple)) else [v]


def keras_run(layer, x, G, call_kwargs=None, states=()):
    """Outputs and gradients [x, *states, *weights] of Σ out⊙G through a Keras layer."""
    call_kwargs = dict(call_kwargs or {})
    xt = tf.constant(x)
    st = [tf.constant(s) for s in states]
    if st:
        call_kwargs["initial_state"] = st
    with tf.GradientTape() as tape:
        tape.watch(xt)
        for s in st:
            tape.watch(s)
        outs = _list(layer(xt, **call_kwargs))
        loss = tf.add_n([tf.reduce_sum(o * g) for o, g in zip(outs, G)])
    grads = tape.gradient(loss, [xt] + st + list(layer.trainable_weights))
    grads = [None if g is None else tf.convert_to_tensor(g).numpy() for g in grads]
    return [o.numpy() for o in outs], grads


def ours_run(layer, x, G, call_kwargs=None, states=(), x_grad=True):
    call_kwargs = dict(call_kwargs or {})
    xo = ta.tensor(x, requires_grad=x_grad)
    st = [ta.tensor(s, requires_grad=True) for s in states]
    if st:
        call_kwargs["initial_state"] = st
    outs = _list(layer(xo, **call_kwargs))
    loss = None
    for o, g in zip(outs, G):
        term = (o * ta.tensor(g)).sum()
        loss = term if loss is None else loss + term
    grads = ta.grad(loss, ([xo] if x_grad else []) + st + layer.weights())
    return [o.numpy() for o in outs], [None if g is None else g.numpy() for g in grads]


def compare(kl, ol, x, call_kwargs=None, states=(), seed=1, rtol=RTOL, atol=ATOL, x_grad=True):
    """Build the Keras layer, copy its weights into ours, compare outputs and all gradients."""
    call_kwargs = call_kwargs or {}
    kw = dict(call_kwargs)
    if states:
        kw["initial_state"] = [tf.constant(s) for s in states]
    kouts = _list(kl(tf.constant(x), **kw))                # build
    rng = _rng(seed)
    G = [rng.standard_normal(tuple(o.shape)).astype(np.float32) for o in kouts]
    ko, kg = keras_run(kl, x, G, call_kwargs, states)
    ol(ta.tensor(x), **{k: v for k, v in call_kwargs.items()},
       **({"initial_state": [ta.tensor(s) for s in states]} if states else {}))
    ol.set_weights(kl.get_weights())
    oo, og = ours_run(ol, x, G, call_kwargs, states, x_grad=x_grad)
    assert len(ko) == len(oo)
    for a, b in zip(oo, ko):
        assert a.shape == b.shape
        assert a.dtype == np.float32
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    if not x_grad:
        kg = kg[1:]
    assert len(kg) == len(og)
    for i, (a, b) in enumerate(zip(og, kg)):
        if b is None:
            assert a is None or np.allclose(a, 0), f"gradient {i}"
            continue
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=f"gradient {i}")
    return oo


# ------------------------------------------------------------------------------------------------
# activations, Dense, Embedding, LayerNormalization, Conv1D, pooling
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["relu", "tanh", "sigmoid", "softmax", "gelu", "hard_sigmoid", "linear",
                                  "softplus", "silu", "swish", "exponential"])
def test_activations_match_keras(name):
    x = (_rng(2).standard_normal((3, 7)) * 3).astype(np.float32)
    want = keras.activations.get(name)(tf.constant(x)).numpy()
    got = nn.get_activation(name)(ta.tensor(x)).numpy()
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 5)])
@pytest.mark.parametrize("activation,use_bias", [(None, True), ("gelu", True), ("softmax", False),
                                                 ("hard_sigmoid", True)])
def test_dense(shape, activation, use_bias):
    x = _rng(3).standard_normal(shape).astype(np.float32) * 2
    kl = keras.layers.Dense(6, activation=activation, use_bias=use_bias)
    if use_bias:
        kl.build(shape)
        kl.bias.assign(_rng(4).standard_normal(6).astype(np.float32))
    compare(kl, nn.Dense(6, activation=activation, use_bias=use_bias), x)


def test_embedding_and_mask():
    ids = np.array([[0, 3, 3, 5], [2, 0, 7, 3]])
    kl = keras.layers.Embedding(8, 4, mask_zero=True)
    ol = nn.Embedding(8, 4, mask_zero=True)
    kl.build(ids.shape)
    ol.set_weights(kl.get_weights())
    G = _rng(5).standard_normal((2, 4, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(kl(tf.constant(ids)) * G)
    kg = tf.convert_to_tensor(tape.gradient(loss, kl.embeddings)).numpy()
    out = ol(ids)
    np.testing.assert_allclose(out.numpy(), kl(tf.constant(ids)).numpy(), rtol=RTOL, atol=ATOL)
    gw, = ta.grad((out * ta.tensor(G)).sum(), [ol.embeddings])
    np.testing.assert_allclose(gw.numpy(), kg, rtol=RTOL, atol=ATOL)
    np.testing.assert_array_equal(ol.compute_mask(ids).numpy(), kl.compute_mask(tf.constant(ids)).numpy())


@pytest.mark.parametrize("axis,shape", [(-1, (3, 4, 6)), (1, (3, 4, 6)), ([1, 2], (2, 3, 5))])
def test_layer_normalization(axis, shape):
    x = (_rng(6).standard_normal(shape) * 3 + 1).astype(np.float32)
    kl = keras.layers.LayerNormalization(axis=axis)
    kl.build(shape)
    kl.set_weights([w + _rng(7).standard_normal(w.shape).astype(np.float32) for w in kl.get_weights()])
    compare(kl, nn.LayerNormalization(axis=axis), x)


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("kernel_size,strides,dilation", [(3, 1, 1), (4, 2, 1), (2, 3, 1), (3, 1, 2)])
def test_conv1d(padding, kernel_size, strides, dilation):
    x = _rng(8).standard_normal((2, 9, 3)).astype(np.float32)
    kl = keras.layers.Conv1D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
                             activation="relu")
    kl.build(x.shape)
    kl.bias.assign(_rng(9).standard_normal(4).astype(np.float32) * 0.1)
    compare(kl, nn.Conv1D(4, kernel_size, strides=strides, padding=padding, dilation_rate=dilation,
                          activation="relu"), x)


def test_global_max_pooling_and_flatten():
    x = _rng(10).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(nn.GlobalMaxPooling1D()(ta.tensor(x)).numpy(),
                               keras.layers.GlobalMaxPooling1D()(x).numpy())
    np.testing.assert_allclose(nn.Flatten()(ta.tensor(x)).numpy(), keras.layers.Flatten()(x).numpy())


# ------------------------------------------------------------------------------------------------
# recurrent layers
# ------------------------------------------------------------------------------------------------
B, T, D, U = 3, 6, 4, 5
MASK = np.array([[1, 1, 0, 1, 1, 0],      # gaps in the middle and at the end
                 [0, 0, 1, 1, 1, 1],      # leading padding
                 [1, 1, 1, 1, 1, 1]], dtype=bool)
RNN_TOL = dict(rtol=2e-5, atol=2e-5)


def _x(seed=11):
    return _rng(seed).standard_normal((B, T, D)).astype(np.float32)


def _randomize(kl):
    """Random biases too (Keras starts them at 0 / 1), so that every weight matters."""
    kl.set_weights([w + 0.3 * _rng(12 + i).standard_normal(w.shape).astype(np.float32)
                    for i, w in enumerate(kl.get_weights())])


def _rnn_compare(kl, ol, x, mask=None, states=()):
    kw = {} if mask is None else {"mask": mask}
    kl(tf.constant(x), **kw)
    _randomize(kl)
    return compare(kl, ol, x, kw, states, **RNN_TOL)


@pytest.mark.parametrize("return_sequences", [False, True])
@pytest.mark.parametrize("return_state", [False, True])
@pytest.mark.parametrize("go_backwards", [False, True])
def test_lstm(return_sequences, return_state, go_backwards):
    kw = dict(return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards)
    _rnn_compare(keras.layers.LSTM(U, **kw), nn.LSTM(U, **kw), _x())


@pytest.mark.parametrize("return_sequences,go_backwards,zero_output",
                         [(False, False, False), (True, False, False), (False, True, False),
                          (True, True, False), (True, False, True), (False, True, True)])
def test_lstm_mask_and_initial_state(return_sequences, go_backwards, zero_output):
    kw = dict(return_sequences=return_sequences, return_state=True, go_backwards=go_backwards,
              zero_output_for_mask=zero_output)
    rng = _rng(13)
    states = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(2)]
    _rnn_compare(keras.layers.LSTM(U, **kw), nn.LSTM(U, **kw), _x(), mask=MASK, states=states)


def test_lstm_fully_masked_row_with_initial_state():
    """An all-masked row: the state stays the initial state; the output stays zero (Keras 3)."""
    mask = MASK.copy()
    mask[1] = False
    kw = dict(return_sequences=True, return_state=True)
    rng = _rng(14)
    states = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(2)]
    out, h, c = _rnn_compare(keras.layers.LSTM(U, **kw), nn.LSTM(U, **kw), _x(), mask=mask, states=states)
    np.testing.assert_array_equal(out[1], 0)
    np.testing.assert_allclose(h[1], states[0][1])


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
def test_no_bias(kind):
    kw = dict(use_bias=False, return_sequences=True)
    if kind == "lstm":
        kl, ol = keras.layers.LSTM(U, **kw), nn.LSTM(U, **kw)
    else:
        kw["reset_after"] = kind == "gru"
        kl, ol = keras.layers.GRU(U, **kw), nn.GRU(U, **kw)
    _rnn_compare(kl, ol, _x(), mask=MASK)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("return_sequences,return_state,go_backwards",
                         [(False, False, False), (True, True, False), (True, False, True), (False, True, True)])
def test_gru(reset_after, return_sequences, return_state, go_backwards):
    kw = dict(reset_after=reset_after, return_sequences=return_sequences, return_state=return_state,
              go_backwards=go_backwards)
    _rnn_compare(keras.layers.GRU(U, **kw), nn.GRU(U, **kw), _x())


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("return_sequences", [False, True])
def test_gru_mask_and_initial_state(reset_after, return_sequences):
    kw = dict(reset_after=reset_after, return_sequences=return_sequences, return_state=True)
    states = [_rng(15).standard_normal((B, U)).astype(np.float32)]
    _rnn_compare(keras.layers.GRU(U, **kw), nn.GRU(U, **kw), _x(), mask=MASK, states=states)


@pytest.mark.parametrize("merge_mode,kind", [("concat", "lstm"), ("sum", "lstm"), ("ave", "lstm"),
                                             ("mul", "lstm"), (None, "lstm"), ("concat", "gru"), ("mul", "gru")])
def test_bidirectional(merge_mode, kind):
    cls_k, cls_o = (keras.layers.LSTM, nn.LSTM) if kind == "lstm" else (keras.layers.GRU, nn.GRU)
    kl = keras.layers.Bidirectional(cls_k(U, return_sequences=True), merge_mode=merge_mode)
    ol = nn.Bidirectional(cls_o(U, return_sequences=True), merge_mode=merge_mode)
    _rnn_compare(kl, ol, _x(), mask=MASK)


@pytest.mark.parametrize("return_sequences,merge_mode", [(False, "concat"), (True, None), (True, "ave")])
def test_bidirectional_states(return_sequences, merge_mode):
    kw = dict(return_sequences=return_sequences, return_state=True)
    kl = keras.layers.Bidirectional(keras.layers.LSTM(U, **kw), merge_mode=merge_mode)
    ol = nn.Bidirectional(nn.LSTM(U, **kw), merge_mode=merge_mode)
    rng = _rng(16)
    states = [rng.standard_normal((B, U)).astype(np.float32) for _ in range(4)]
    outs = _rnn_compare(kl, ol, _x(), mask=MASK, states=states)
    assert len(outs) == (5 if merge_mode else 6)


def test_lstm_cell_and_gru_cell_step():
    x = _x()[:, 0]
    h, c = (_rng(17).standard_normal((B, U)).astype(np.float32) for _ in range(2))
    kc = keras.layers.LSTMCell(U)
    kout, (kh, kc_) = kc(tf.constant(x), [tf.constant(h), tf.constant(c)])
    oc = nn.LSTMCell(U)
    oc(ta.tensor(x))
    oc.set_weights(kc.get_weights())
    oout, (oh, oc_) = oc(ta.tensor(x), [ta.tensor(h), ta.tensor(c)])
    np.testing.assert_allclose(oout.numpy(), kout.numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(oc_.numpy(), kc_.numpy(), rtol=RTOL, atol=ATOL)
    for reset_after in (True, False):
        kg = keras.layers.GRUCell(U, reset_after=reset_after)
        kh, _ = kg(tf.constant(x), tf.constant(h))
        kg.set_weights([w + 0.2 for w in kg.get_weights()])
        kh, _ = kg(tf.constant(x), tf.constant(h))
        og = nn.GRUCell(U, reset_after=reset_after)
        og(ta.tensor(x))
        og.set_weights(kg.get_weights())
        oh, _ = og(ta.tensor(x), ta.tensor(h))
        np.testing.assert_allclose(oh.numpy(), kh.numpy(), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------------
# PyTorch weights
# ------------------------------------------------------------------------------------------------
def test_pytorch_lstm_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    tl = torch.nn.LSTM(D, U, batch_first=True)
    x = _x()
    want, (hn, cn) = tl(torch.from_numpy(x))
    ol = nn.LSTM(U, return_sequences=True, return_state=True)
    ol(ta.tensor(x))
    p = {k: v.detach().numpy() for k, v in tl.named_parameters()}
    ol.set_weights([p["weight_ih_l0"].T, p["weight_hh_l0"].T, p["bias_ih_l0"] + p["bias_hh_l0"]])
    out, h, c = ol(ta.tensor(x))
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(h.numpy(), hn[0].detach().numpy(), rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(c.numpy(), cn[0].detach().numpy(), rtol=RTOL, atol=ATOL)


def test_pytorch_gru_weights():
    """torch gate order r, z, n -> Keras z, r, h; torch's GRU is Keras's reset_after=True."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    tg = torch.nn.GRU(D, U, batch_first=True)
    x = _x()
    want, _ = tg(torch.from_numpy(x))
    p = {k: v.detach().numpy() for k, v in tg.named_parameters()}

    def zrh(w):
        r, z, n = np.split(w, 3, axis=0)
        return np.concatenate([z, r, n], axis=0)
    og = nn.GRU(U, return_sequences=True)
    og(ta.tensor(x))
    og.set_weights([zrh(p["weight_ih_l0"]).T, zrh(p["weight_hh_l0"]).T,
                    np.stack([zrh(p["bias_ih_l0"]), zrh(p["bias_hh_l0"])])])
    np.testing.assert_allclose(og(ta.tensor(x)).numpy(), want.detach().numpy(), rtol=RTOL, atol=ATOL)


# ------------------------------------------------------------------------------------------------
# SimpleRNN (textbook only) and the textbook LSTM / GRU (fused=False) against Keras
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("return_sequences,return_state,go_backwards,masked",
                         [(False, False, False, False), (True, True, False, True), (True, False, True, True),
                          (False, True, True, False)])
@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_simple_rnn(return_sequences, return_state, go_backwards, masked, activation):
    kw = dict(return_sequences=return_sequences, return_state=return_state, go_backwards=go_backwards,
              activation=activation)
    states = [_rng(18).standard_normal((B, U)).astype(np.float32)] if return_state else []
    _rnn_compare(keras.layers.SimpleRNN(U, **kw), nn.SimpleRNN(U, **kw), _x(), mask=MASK if masked else None,
                 states=states)


def test_simple_rnn_bidirectional_and_cell():
    kl = keras.layers.Bidirectional(keras.layers.SimpleRNN(U, return_sequences=True))
    ol = nn.Bidirectional(nn.SimpleRNN(U, return_sequences=True))
    _rnn_compare(kl, ol, _x(), mask=MASK)
    x, h = _x()[:, 0], _rng(19).standard_normal((B, U)).astype(np.float32)
    kc = keras.layers.SimpleRNNCell(U)
    kc(tf.constant(x), [tf.constant(h)])
    kc.set_weights([w + 0.2 for w in kc.get_weights()])
    kout, _ = kc(tf.constant(x), [tf.constant(h)])
    oc = nn.SimpleRNNCell(U)
    oc(ta.tensor(x))
    oc.set_weights(kc.get_weights())
    oout, _ = oc(ta.tensor(x), [ta.tensor(h)])
    np.testing.assert_allclose(oout.numpy(), kout.numpy(), rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
def test_textbook_recurrent_layers_match_keras(kind):
    kw = dict(return_sequences=True, return_state=True)
    if kind == "lstm":
        kl, ol = keras.layers.LSTM(U, **kw), nn.LSTM(U, fused=False, **kw)
        states = [_rng(20 + i).standard_normal((B, U)).astype(np.float32) for i in range(2)]
    else:
        kw["reset_after"] = kind == "gru"
        kl, ol = keras.layers.GRU(U, **kw), nn.GRU(U, fused=False, **kw)
        states = [_rng(20).standard_normal((B, U)).astype(np.float32)]
    _rnn_compare(kl, ol, _x(), mask=MASK, states=states)
