"""Recurrent layers and their fused Functions: float64 gradchecks (random upstream gradients) over
the inputs, initial states and every parameter, masks included; semantics (masks, go_backwards,
Bidirectional), shapes, errors, weights round trips."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn
from tinyattn.functions.rnn import LSTMCellFn, LSTMSequenceFn, GRUCellFn, GRUSequenceFn
from tinyattn.kernels import BiLSTMSequenceFn

T, B, D, U = 4, 3, 3, 2
MASK_BT = np.array([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 1]], dtype=bool)   # (B, T)


def t64(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=grad)


# ------------------------------------------------------------------------------------------------
# the fused Functions
# ------------------------------------------------------------------------------------------------
def test_lstm_cell_fn_gradcheck(rng):
    args = [t64(rng, B, 4 * U), t64(rng, B, U), t64(rng, B, U), t64(rng, U, 4 * U)]
    assert ta.gradcheck(lambda *a: LSTMCellFn()(*a), args, n_directions=2)


@pytest.mark.parametrize("reset_after", [True, False])
def test_gru_cell_fn_gradcheck(rng, reset_after):
    args = [t64(rng, B, 3 * U), t64(rng, B, U), t64(rng, U, 3 * U)] + ([t64(rng, 3 * U)] if reset_after else [])
    assert ta.gradcheck(lambda *a: GRUCellFn(reset_after)(*a), args, n_directions=2)


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("zero_output", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_lstm_sequence_fn_gradcheck(rng, masked, zero_output, bias):
    mask = ta.tensor(MASK_BT.T.copy()).data if masked else None   # a Function takes arrays on the data's device
    args = [t64(rng, T, B, D), t64(rng, B, U), t64(rng, B, U), t64(rng, D, 4 * U), t64(rng, U, 4 * U)]
    args += [t64(rng, 4 * U)] if bias else []
    assert ta.gradcheck(lambda *a: LSTMSequenceFn(mask, zero_output)(*a), args, n_directions=2)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("masked,zero_output", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("bias", [True, False])
def test_gru_sequence_fn_gradcheck(rng, reset_after, masked, zero_output, bias):
    mask = ta.tensor(MASK_BT.T.copy()).data if masked else None   # a Function takes arrays on the data's device
    args = [t64(rng, T, B, D), t64(rng, B, U), t64(rng, D, 3 * U), t64(rng, U, 3 * U)]
    if bias:
        args.append(t64(rng, 2, 3 * U) if reset_after else t64(rng, 3 * U))
    assert ta.gradcheck(lambda *a: GRUSequenceFn(reset_after, mask, zero_output)(*a), args, n_directions=2)


def test_sequence_fn_only_some_outputs_used(rng):
    """Gradients when only h_T (not the sequence, not c_T) reaches the loss."""
    args = [t64(rng, T, B, D), t64(rng, B, U), t64(rng, B, U), t64(rng, D, 4 * U), t64(rng, U, 4 * U)]
    assert ta.gradcheck(lambda *a: LSTMSequenceFn(ta.tensor(MASK_BT.T.copy()).data)(*a)[1], args)
    assert ta.gradcheck(lambda *a: LSTMSequenceFn()(*a)[2], args)


def test_sequence_matches_cell_loop(rng):
    """One fused Function over T steps == T calls of the fused cell."""
    dev = lambda *shape: ta.tensor(rng.standard_normal(shape))     # noqa: E731  (on the test's backend)
    x, h0, c0 = dev(T, B, D), dev(B, U), dev(B, U)
    K, R, b = dev(D, 4 * U), dev(U, 4 * U), dev(4 * U)
    out, hT, cT = LSTMSequenceFn()(x, h0, c0, K, R, b)
    h, c = ta.tensor(h0), ta.tensor(c0)
    for t in range(T):
        h, c = LSTMCellFn()(x[t] @ K + b, h, c, R)
        np.testing.assert_allclose(out.numpy()[t], h.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cT.numpy(), c.numpy(), rtol=1e-12, atol=1e-12)
    for reset_after in (True, False):
        Kg, Rg = dev(D, 3 * U), dev(U, 3 * U)
        bg = dev(2, 3 * U) if reset_after else dev(3 * U)
        out, hT = GRUSequenceFn(reset_after)(x, h0, Kg, Rg, bg)
        h = ta.tensor(h0)
        for t in range(T):
            if reset_after:
                h = GRUCellFn(True)(x[t] @ Kg + bg[0], h, Rg, bg[1])
            else:
                h = GRUCellFn(False)(x[t] @ Kg + bg, h, Rg)
            np.testing.assert_allclose(out.numpy()[t], h.numpy(), rtol=1e-12, atol=1e-12)


def test_lstm_cell_matches_unfused_formula(rng):
    xk, h, c, R = (rng.standard_normal(s) * 3 for s in [(B, 4 * U), (B, U), (B, U), (U, 4 * U)])
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    z = xk + h @ R
    i, f, g, o = np.split(z, 4, axis=1)
    c2 = sig(f) * c + sig(i) * np.tanh(g)
    h2 = sig(o) * np.tanh(c2)
    hh, cc = LSTMCellFn()(xk, h, c, R)
    np.testing.assert_allclose(hh.numpy(), h2, rtol=1e-12)
    np.testing.assert_allclose(cc.numpy(), c2, rtol=1e-12)


def test_extreme_preactivations_stay_finite():
    """exp overflows for very negative pre-activations; σ must still come out 0, no NaN, no warning."""
    xk = np.full((1, 4 * U), -1e4, dtype=np.float32)
    xk[0, :U] = 1e4
    h, c = LSTMCellFn()(xk, np.zeros((1, U), np.float32), np.ones((1, U), np.float32),
                        np.zeros((U, 4 * U), np.float32))
    assert np.isfinite(h.numpy()).all() and np.isfinite(c.numpy()).all()
    np.testing.assert_allclose(c.numpy(), -1.0)       # f = 0, i = 1, g = tanh(−1e4) = −1


def test_double_backward_is_refused(rng):
    args = [t64(rng, T, B, D), t64(rng, B, U), t64(rng, B, U), t64(rng, D, 4 * U), t64(rng, U, 4 * U)]
    out, _, _ = LSTMSequenceFn()(*args)
    with pytest.raises(NotImplementedError, match="double backward"):
        ta.grad(out.sum(), args[0], create_graph=True)


def test_fn_shape_errors(rng):
    with pytest.raises(ValueError, match="lstm"):
        LSTMSequenceFn()(np.zeros((T, B, D)), np.zeros((B, U)), np.zeros((B, U)), np.zeros((D, 3 * U)),
                         np.zeros((U, 4 * U)))
    with pytest.raises(ValueError, match="mask"):
        LSTMSequenceFn(np.ones((B, T), bool))(np.zeros((T, B, D)), np.zeros((B, U)), np.zeros((B, U)),
                                              np.zeros((D, 4 * U)), np.zeros((U, 4 * U)))
    with pytest.raises(ValueError, match="gru"):
        GRUSequenceFn(True)(np.zeros((T, B, D)), np.zeros((B, U)), np.zeros((D, 3 * U)), np.zeros((U, 3 * U)),
                            np.zeros(3 * U))
    with pytest.raises(ValueError, match="gru cell"):
        GRUCellFn(False)(np.zeros((B, 3 * U)), np.zeros((B, U)), np.zeros((U, 3 * U)), np.zeros(3 * U))


@pytest.mark.parametrize("masked,zero_output", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("reverse", [(False, True), (True, False)])
@pytest.mark.parametrize("bias", [True, False])
def test_bilstm_sequence_fn_gradcheck(rng, masked, zero_output, reverse, bias):
    """Both directions in one loop: float64 gradcheck over x, the four initial states and both
    directions' weights, random upstream gradients on all six outputs."""
    mask = ta.tensor(MASK_BT.T.copy()).data if masked else None
    args = [t64(rng, T, B, D)] + [t64(rng, B, U) for _ in range(4)]
    args += [t64(rng, D, 4 * U), t64(rng, U, 4 * U), t64(rng, D, 4 * U), t64(rng, U, 4 * U)]
    args += [t64(rng, 4 * U), t64(rng, 4 * U)] if bias else []
    assert ta.gradcheck(lambda *a: BiLSTMSequenceFn(mask, zero_output, reverse)(*a), args, n_directions=2)


def test_bilstm_sequence_fn_equals_two_lstm_sequence_fns(rng):
    """Each direction of the fused kernel is exactly LSTMSequenceFn on x (reversed in time for the
    reversed direction, mask included), outputs and every gradient, only some outputs used."""
    mask = ta.tensor(MASK_BT.T.copy()).data                 # a Function takes arrays on the data's device
    x, states = t64(rng, T, B, D), [t64(rng, B, U) for _ in range(4)]
    w = [t64(rng, D, 4 * U), t64(rng, U, 4 * U), t64(rng, 4 * U), t64(rng, D, 4 * U), t64(rng, U, 4 * U),
         t64(rng, 4 * U)]
    leaves = [x] + states + w
    gs = [t64(rng, *shape, grad=False) for shape in ((T, B, U), (B, U), (T, B, U))]

    def run(fused):
        for v in leaves:
            v.grad = None
        if fused:
            of, hf, cf, ob, hb, cb = BiLSTMSequenceFn(mask, True)(x, *states, w[0], w[1], w[3], w[4], w[2], w[5])
        else:
            of, hf, cf = LSTMSequenceFn(mask, True)(x, states[0], states[1], w[0], w[1], w[2])
            ob, hb, cb = LSTMSequenceFn(mask[::-1].copy(), True)(ta.flip(x, 0), states[2], states[3], *w[3:])
        ((of * gs[0]).sum() + (cf * gs[1]).sum() + (ob * gs[2]).sum() + hb.sum()).backward()
        return [t.numpy() for t in (of, hf, cf, ob, hb, cb)] + [v.grad.numpy() for v in leaves]

    for a, b_ in zip(run(True), run(False)):
        np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12)


def _graph_ops(t):
    """The types of the Functions in the graph behind Tensor t."""
    seen, todo, ops = set(), [t], set()
    while todo:
        f = todo.pop().creator
        if f is not None and id(f) not in seen:
            seen.add(id(f))
            ops.add(type(f))
            todo.extend(v for v in f.input_tensors if getattr(v, "creator", None) is not None)
    return ops


def _run_bidirectional(layer, x, mask, states, seed):
    """Outputs and the gradients of x, the initial states and every parameter, float64."""
    xt = ta.tensor(x, requires_grad=True)
    st = None if states is None else [ta.tensor(s, requires_grad=True) for s in states]
    y = layer(xt, mask=mask, initial_state=st)
    ys = y if isinstance(y, list) else [y]
    r = np.random.default_rng(seed)
    sum((t * ta.tensor(r.standard_normal(t.shape))).sum() for t in ys).backward()
    grads = [xt.grad] + ([] if st is None else [s.grad for s in st]) + [p.grad for p in layer.parameters()]
    return _graph_ops(ys[0]), [t.numpy() for t in ys] + [g.numpy() for g in grads]


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("kw", [dict(return_sequences=True), dict(return_sequences=True, return_state=True),
                                dict(return_state=True, use_bias=False), dict(go_backwards=True),
                                dict(return_sequences=True, go_backwards=True, states=True)])
def test_fused_bidirectional_equals_the_two_layers(rng, merge_mode, masked, kw):
    """Bidirectional(LSTM) runs both directions in one BiLSTMSequenceFn; fused=False runs the two
    layers one after the other (each its own LSTMSequenceFn). Same outputs and gradients (float64,
    1e-12), with and without a mask, every merge mode, return_sequences / return_state, no bias, a
    forward layer with go_backwards, initial states."""
    kw = dict(kw)
    with_states = kw.pop("states", False)
    x = rng.standard_normal((B, T, D))
    states = [rng.standard_normal((B, U)) for _ in range(4)] if with_states else None
    mask = MASK_BT if masked else None
    fused = _layer64(nn.Bidirectional(nn.LSTM(U, **kw), merge_mode=merge_mode), x)
    apart = _layer64(nn.Bidirectional(nn.LSTM(U, **kw), merge_mode=merge_mode, fused=False), x)
    apart.set_weights(fused.get_weights())
    ops_f, got = _run_bidirectional(fused, x, mask, states, 1)
    ops_a, want = _run_bidirectional(apart, x, mask, states, 1)
    assert BiLSTMSequenceFn in ops_f and LSTMSequenceFn not in ops_f
    assert BiLSTMSequenceFn not in ops_a and LSTMSequenceFn in ops_a
    assert len(got) == len(want)
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, rtol=0, atol=1e-12)


def test_fused_bidirectional_equals_the_textbook_layers(rng):
    """The fused bidirectional kernel equals the textbook form: two LSTM(fused=False) layers (the
    paper's equations on plain ops, autograd doing BPTT), outputs and all gradients."""
    x = rng.standard_normal((B, T, D))
    fused = _layer64(nn.Bidirectional(nn.LSTM(U, return_sequences=True, return_state=True)), x)
    book = _layer64(nn.Bidirectional(nn.LSTM(U, return_sequences=True, return_state=True, fused=False)), x)
    book.set_weights(fused.get_weights())
    ops_f, got = _run_bidirectional(fused, x, MASK_BT, None, 2)
    ops_b, want = _run_bidirectional(book, x, MASK_BT, None, 2)
    assert BiLSTMSequenceFn in ops_f and BiLSTMSequenceFn not in ops_b
    for a, b_ in zip(got, want):
        np.testing.assert_allclose(a, b_, rtol=1e-9, atol=1e-11)


def test_bidirectional_falls_back_when_the_layers_differ(rng):
    """Only two fused LSTMs that agree run as one kernel: a GRU, a textbook LSTM, different units or
    an activity regularizer take the two-layer path."""
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    cases = [nn.Bidirectional(nn.GRU(U)),
             nn.Bidirectional(nn.LSTM(U), backward_layer=nn.LSTM(U, fused=False, go_backwards=True)),
             nn.Bidirectional(nn.LSTM(U), backward_layer=nn.LSTM(U + 1, go_backwards=True)),
             nn.Bidirectional(nn.LSTM(U, activity_regularizer="l2"))]
    for bi in cases:
        bi(x)
        assert not bi._fusable()
    bi = nn.Bidirectional(nn.LSTM(U))
    bi(x)
    assert bi._fusable()


def test_bilstm_sequence_fn_shape_errors(rng):
    z = np.zeros
    with pytest.raises(ValueError, match="bidirectional lstm"):
        BiLSTMSequenceFn()(z((T, B, D)), z((B, U)), z((B, U)), z((B, U)), z((B, U)), z((D, 4 * U)),
                           z((U, 4 * U)), z((D, 4 * U)), z((U + 1, 4 * U)))
    with pytest.raises(ValueError, match="biases"):
        BiLSTMSequenceFn()(z((T, B, D)), z((B, U)), z((B, U)), z((B, U)), z((B, U)), z((D, 4 * U)),
                           z((U, 4 * U)), z((D, 4 * U)), z((U, 4 * U)), z(4 * U))


# ------------------------------------------------------------------------------------------------
# layers: gradchecks over input, initial states and all parameters
# ------------------------------------------------------------------------------------------------
def _layer64(layer, x):
    layer(ta.tensor(x.astype(np.float32)))
    return layer.astype("float64")


@pytest.mark.parametrize("kw", [dict(return_sequences=True),
                                dict(return_state=True, go_backwards=True),
                                dict(return_sequences=True, return_state=True, go_backwards=True)])
@pytest.mark.parametrize("masked", [False, True])
def test_lstm_layer_gradcheck(rng, kw, masked):
    x = rng.standard_normal((B, T, D))
    layer = _layer64(nn.LSTM(U, **kw), x)
    xt, h0, c0 = t64(rng, B, T, D), t64(rng, B, U), t64(rng, B, U)
    mask = MASK_BT if masked else None
    fn = lambda x_, h_, c_, *p: layer(x_, mask=mask, initial_state=[h_, c_])  # noqa: E731
    assert ta.gradcheck(fn, [xt, h0, c0] + layer.parameters())


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_gru_layer_gradcheck(rng, reset_after, masked):
    x = rng.standard_normal((B, T, D))
    layer = _layer64(nn.GRU(U, reset_after=reset_after, return_sequences=True, return_state=True), x)
    xt, h0 = t64(rng, B, T, D), t64(rng, B, U)
    mask = MASK_BT if masked else None
    assert ta.gradcheck(lambda x_, h_, *p: layer(x_, mask=mask, initial_state=h_),
                        [xt, h0] + layer.parameters())


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_gradcheck(rng, merge_mode):
    x = rng.standard_normal((B, T, D))
    layer = _layer64(nn.Bidirectional(nn.LSTM(U, return_sequences=True, return_state=True),
                                      merge_mode=merge_mode), x)
    xt = t64(rng, B, T, D)
    states = [t64(rng, B, U) for _ in range(4)]
    assert ta.gradcheck(lambda x_, *s: layer(x_, mask=MASK_BT, initial_state=list(s[:4])),
                        [xt] + states + layer.parameters())


@pytest.mark.parametrize("cls", [nn.LSTMCell, nn.GRUCell])
def test_cell_layers_gradcheck(rng, cls):
    x = rng.standard_normal((B, D))
    cell = cls(U)
    cell(ta.tensor(x.astype(np.float32)))
    cell.astype("float64")
    xt = t64(rng, B, D)
    states = [t64(rng, B, U) for _ in range(2 if cls is nn.LSTMCell else 1)]
    assert ta.gradcheck(lambda x_, *s: cell(x_, list(s[:len(states)]))[1], [xt] + states + cell.parameters())


# ------------------------------------------------------------------------------------------------
# semantics
# ------------------------------------------------------------------------------------------------
def _np_lstm(x, K, R, b, h, c, mask=None, zero_output=False):
    """A plain NumPy LSTM loop with Keras 3's mask rule, for reference."""
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    outs, prev = [], np.zeros_like(h)
    for t in range(x.shape[1]):
        i, f, g, o = np.split(x[:, t] @ K + h @ R + b, 4, axis=1)
        c2 = sig(f) * c + sig(i) * np.tanh(g)
        h2 = sig(o) * np.tanh(c2)
        m = np.ones((x.shape[0], 1), bool) if mask is None else mask[:, t:t + 1]
        prev = np.where(m, h2, 0 if zero_output else prev)
        h, c = np.where(m, h2, h), np.where(m, c2, c)
        outs.append(prev)
    return np.stack(outs, 1), h, c


@pytest.mark.parametrize("zero_output", [False, True])
def test_lstm_masks_follow_keras_rule(rng, zero_output):
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    layer = nn.LSTM(U, return_sequences=True, return_state=True, zero_output_for_mask=zero_output)
    h0, c0 = (rng.standard_normal((B, U)).astype(np.float32) for _ in range(2))
    out, h, c = layer(ta.tensor(x), mask=MASK_BT, initial_state=[h0, c0])
    K, R, b = layer.get_weights()
    want = _np_lstm(x, K, R, b, h0, c0, MASK_BT, zero_output)
    for got, w in zip((out, h, c), want):
        np.testing.assert_allclose(got.numpy(), w, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out.numpy()[1, :2], 0)          # leading padding: zero output


def test_go_backwards_equals_reversed_input(rng):
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    fwd = nn.LSTM(U, return_sequences=True)
    bwd = nn.LSTM(U, return_sequences=True, go_backwards=True)
    fwd(ta.tensor(x))
    bwd(ta.tensor(x))
    bwd.set_weights(fwd.get_weights())
    np.testing.assert_allclose(bwd(ta.tensor(x)).numpy(), fwd(ta.tensor(x[:, ::-1].copy())).numpy(), rtol=1e-6)
    np.testing.assert_allclose(bwd(ta.tensor(x), mask=MASK_BT).numpy(),
                               fwd(ta.tensor(x[:, ::-1].copy()), mask=MASK_BT[:, ::-1]).numpy(), rtol=1e-6)


@pytest.mark.parametrize("merge_mode", ["concat", "sum", "ave", "mul", None])
def test_bidirectional_merge(rng, merge_mode):
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    bi = nn.Bidirectional(nn.GRU(U, return_sequences=True), merge_mode=merge_mode)
    y = bi(ta.tensor(x))
    yf = bi.forward_layer(ta.tensor(x)).numpy()
    yb = bi.backward_layer(ta.tensor(x)).numpy()[:, ::-1]
    want = {"concat": np.concatenate([yf, yb], -1), "sum": yf + yb, "ave": (yf + yb) / 2, "mul": yf * yb,
            None: None}[merge_mode]
    if merge_mode is None:
        np.testing.assert_allclose(y[0].numpy(), yf, rtol=1e-6)
        np.testing.assert_allclose(y[1].numpy(), yb, rtol=1e-6)
    else:
        np.testing.assert_allclose(y.numpy(), want, rtol=1e-6)
    assert bi.backward_layer.go_backwards and not bi.forward_layer.go_backwards
    assert len(bi.get_weights()) == 6 and bi.get_weights()[0].shape == (D, 3 * U)


def test_bidirectional_return_state_order(rng):
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    res = nn.Bidirectional(nn.LSTM(U, return_state=True))(x)
    assert [r.shape for r in res] == [(B, 2 * U)] + [(B, U)] * 4
    res = nn.Bidirectional(nn.GRU(U, return_state=True, return_sequences=True), merge_mode=None)(x)
    assert [r.shape for r in res] == [(B, T, U), (B, T, U), (B, U), (B, U)]


# ------------------------------------------------------------------------------------------------
# shapes, dtypes, initialisation, weights, errors
# ------------------------------------------------------------------------------------------------
def test_shapes_and_float32(rng):
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32), requires_grad=True)
    out, h, c = nn.LSTM(U, return_sequences=True, return_state=True)(x)
    assert out.shape == (B, T, U) and h.shape == c.shape == (B, U)
    assert out.dtype == h.dtype == np.float32
    out.sum().backward()
    assert x.grad.dtype == np.float32 and x.grad.shape == x.shape
    assert nn.GRU(U)(x).shape == (B, U)
    assert nn.GRU(U, reset_after=False, return_state=True)(x)[1].shape == (B, U)


def test_initialisation():
    layer = nn.LSTM(8)
    layer(ta.tensor(np.zeros((2, 3, 5), np.float32)))
    K, R, b = layer.get_weights()
    assert K.shape == (5, 32) and R.shape == (8, 32) and b.shape == (32,)
    np.testing.assert_array_equal(b, np.r_[np.zeros(8), np.ones(8), np.zeros(16)])
    np.testing.assert_allclose(R @ R.T, np.eye(8), atol=1e-5)          # orthogonal rows
    assert np.abs(K).max() <= np.sqrt(6 / (5 + 32))                   # glorot uniform limit
    g = nn.GRU(4)
    g(ta.tensor(np.zeros((2, 3, 5), np.float32)))
    assert [w.shape for w in g.get_weights()] == [(5, 12), (4, 12), (2, 12)]
    g = nn.GRU(4, reset_after=False)
    g(ta.tensor(np.zeros((2, 3, 5), np.float32)))
    assert [w.shape for w in g.get_weights()] == [(5, 12), (4, 12), (12,)]
    assert nn.LSTM(3, use_bias=False).cell.use_bias is False


def test_weights_roundtrip_and_state_dict(rng):
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    a = nn.Bidirectional(nn.LSTM(U, return_sequences=True))
    b = nn.Bidirectional(nn.LSTM(U, return_sequences=True))
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    np.testing.assert_allclose(a(x).numpy(), b(x).numpy())
    c = nn.Bidirectional(nn.LSTM(U, return_sequences=True))
    c(x)
    c.load_state_dict(a.state_dict())
    np.testing.assert_allclose(a(x).numpy(), c(x).numpy())
    assert list(a.state_dict())[:3] == ["forward_layer.cell.kernel", "forward_layer.cell.recurrent_kernel",
                                        "forward_layer.cell.bias"]
    with pytest.raises(ValueError, match="set_weights"):
        b.set_weights(a.get_weights()[:3])


def test_float64_layer(rng):
    layer = nn.GRU(U, dtype="float64")
    y = layer(ta.tensor(rng.standard_normal((B, T, D))))
    assert y.dtype == np.float64 and layer.get_weights()[0].dtype == np.float64


def test_errors(rng):
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    layer = nn.LSTM(U)
    layer(x)
    with pytest.raises(ValueError, match=r"LSTM: expected input \(B, T, d\)"):
        layer(ta.tensor(np.zeros((B, T, D + 1), np.float32)))
    with pytest.raises(ValueError, match="LSTM: expected input"):
        nn.LSTM(U)(ta.tensor(np.zeros((B, D), np.float32)))
    with pytest.raises(ValueError, match=r"LSTM: mask of shape \(3, 5\) does not broadcast to \(3, 4\)"):
        layer(x, mask=np.ones((B, T + 1), bool))
    with pytest.raises(ValueError, match="initial_state needs 2"):
        layer(x, initial_state=[np.zeros((B, U), np.float32)])
    with pytest.raises(ValueError, match="initial_state must have shape"):
        layer(x, initial_state=[np.zeros((B, U + 1), np.float32)] * 2)
    with pytest.raises(ValueError, match="no time steps"):
        layer(ta.tensor(np.zeros((B, 0, D), np.float32)))
    with pytest.raises(ValueError, match="activation"):
        nn.LSTM(U, activation="relu")
    with pytest.raises(ValueError, match="units"):
        nn.GRU(0)
    with pytest.raises(ValueError, match="merge_mode"):
        nn.Bidirectional(nn.LSTM(U), merge_mode="max")
    with pytest.raises(TypeError, match="Bidirectional"):
        nn.Bidirectional(nn.Dense(3))
    with pytest.raises(ValueError, match="even"):
        nn.Bidirectional(nn.LSTM(U))(x, initial_state=[np.zeros((B, U), np.float32)] * 3)
    with pytest.raises(ValueError, match="LSTMCell: expected input"):
        nn.LSTMCell(U, input_dim=D)(ta.tensor(np.zeros((B, D + 1), np.float32)))


def test_lstm_on_backend(backend, rng):
    """The layer runs on the current backend (NumPy; CuPy when a GPU is present) with the same result."""
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    ref = nn.LSTM(U, return_sequences=True)
    want = ref(ta.tensor(x, device="cpu"))
    layer = nn.LSTM(U, return_sequences=True)
    dev = "gpu" if backend == "cupy" else "cpu"
    layer(ta.tensor(x, device=dev))
    layer.set_weights(ref.get_weights())
    xt = ta.tensor(x, device=dev, requires_grad=True)
    y = layer(xt, mask=MASK_BT)
    y.sum().backward()
    assert xt.grad.shape == x.shape
    np.testing.assert_allclose(layer(ta.tensor(x, device=dev)).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_loop_gradients_when_only_some_inputs_need_them(rng, bidirectional):
    """The fused LSTM loops skip g x when x needs no gradient (the usual case: data) and the weight
    product when no weight does; what they do return equals the full run's gradients."""
    xs = [rng.standard_normal(s) for s in [(T, B, D)] + [(B, U)] * (4 if bidirectional else 2)]
    ws = [rng.standard_normal(s) for s in ([(D, 4 * U), (U, 4 * U)] * (2 if bidirectional else 1)
                                           + [(4 * U,)] * (2 if bidirectional else 1))]
    fn = (lambda: BiLSTMSequenceFn(None, False, (False, True))) if bidirectional else LSTMSequenceFn
    def grads(need):
        args = [ta.tensor(a, dtype=np.float64, requires_grad=nd) for a, nd in zip(xs + ws, need)]
        outs = fn()(*args)
        G = [np.random.default_rng(5 + k).standard_normal(o.shape) for k, o in enumerate(outs)]
        got = ta.grad(list(outs), [a for a in args if a.requires_grad], G)
        return dict(zip([i for i, nd in enumerate(need) if nd], got))
    n = len(xs) + len(ws)
    full = grads([True] * n)
    for need in ([False] + [True] * (n - 1),                              # x is data
                 [True] * len(xs) + [False] * len(ws),                    # frozen weights
                 [False] * len(xs) + [i % 2 == 0 for i in range(len(ws))]):  # some weights only
        part = grads(need)
        assert part.keys() == {i for i, nd in enumerate(need) if nd}
        for i, g in part.items():
            np.testing.assert_allclose(g.numpy(), full[i].numpy(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_backward_twice_with_retain_graph(rng, kind):
    """The backward passes leave the saved forward arrays intact."""
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32), requires_grad=True)
    layer = nn.LSTM(U, return_sequences=True) if kind == "lstm" else nn.GRU(U, return_sequences=True)
    y = layer(x, mask=MASK_BT)
    G = rng.standard_normal(y.shape).astype(np.float32)
    first = [g.numpy() for g in ta.grad(y, [x] + layer.parameters(), G, retain_graph=True)]
    second = [g.numpy() for g in ta.grad(y, [x] + layer.parameters(), G)]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


def test_reused_buffers_never_overwrite_live_results(rng):
    """Sequence Functions recycle their big buffers only once nothing refers to them."""
    layer = nn.LSTM(U, return_sequences=True, return_state=True)
    x1, x2 = (ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32)) for _ in range(2))
    first = layer(x1)
    saved = [t.numpy() for t in first]
    for _ in range(6):                                 # more calls than buffers kept per shape
        layer(x2)
        y = layer(x2)
        y[0].sum().backward()
    for t, s in zip(first, saved):
        np.testing.assert_array_equal(t.numpy(), s)
    again = layer(x1)
    for t, s in zip(again, saved):
        np.testing.assert_array_equal(t.numpy(), s)


def test_bidirectional_rejects_a_backward_layer_running_the_same_way():
    with pytest.raises(ValueError, match="must run the other way"):
        nn.Bidirectional(nn.LSTM(3), backward_layer=nn.LSTM(3))
    nn.Bidirectional(nn.LSTM(3), backward_layer=nn.LSTM(3, go_backwards=True))
