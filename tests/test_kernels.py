"""Each fused kernel in tinyattn.kernels equals its textbook form (plain differentiable ops, autograd
doing the backward): outputs and gradients, float64, with a random upstream gradient."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import kernels


def T(rng, *shape):
    return ta.tensor(rng.standard_normal(shape), requires_grad=True)



def _same(rng, fast, slow, ins, rtol=1e-10, atol=1e-12):
    """fast(*ins) and slow(*ins) agree, and so do their gradients for one random upstream gradient."""
    yf, ys = fast(*ins), slow(*ins)
    yf = yf if isinstance(yf, tuple) else (yf,)
    ys = ys if isinstance(ys, tuple) else (ys,)
    assert len(yf) == len(ys)
    gys = [rng.standard_normal(y.shape) for y in yf]
    for a, b in zip(yf, ys):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)
    gf = ta.grad(list(yf), ins, gys)
    gs = ta.grad(list(ys), ins, gys)
    for a, b in zip(gf, gs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=rtol, atol=atol)


def _textbook_masked_softmax(s, keep):
    """softmax over the kept entries, written out: exp(s − max) ⊙ keep / Σ."""
    s = ta.where(keep, s, ta.tensor(np.full((), -1e30)))
    e = (s - s.detach().max(axis=-1, keepdims=True)).exp() * ta.tensor(keep.astype(np.float64))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("masked", [False, True])
def test_sdpa_fused_equals_textbook(rng, masked):
    q, k, v = T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5), T(rng, 2, 3, 6, 2)
    keep = rng.random((2, 1, 4, 6)) > 0.3
    keep[..., 0] = True                               # no fully masked row (the textbook form divides)
    keep = keep if masked else np.ones_like(keep)
    scale = 0.37

    def fast(q, k, v):
        return kernels.ScaledDotProductAttention(scale, ta.backend.to_device(keep, q.device) if masked else None)(q, k, v)

    def slow(q, k, v):
        p = _textbook_masked_softmax((q @ k.swapaxes(-1, -2)) * scale, keep)
        return p @ v, p

    _same(rng, fast, slow, [q, k, v])


@pytest.mark.parametrize("spread", [1.0, 40.0])
def test_sdpa_unshifted_and_shifted_softmax_equal_textbook(rng, spread):
    """The fused forward skips the row-max shift when Cauchy–Schwarz bounds every score by 60
    (spread 1) and keeps it otherwise (spread 40: scores in the hundreds, exp(s) would overflow);
    both equal the textbook form, and a fully masked row is all zeros either way."""
    from tinyattn.kernels import attention as KA
    q, k, v = T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5), T(rng, 2, 3, 6, 2)
    q = ta.tensor(q.numpy() * spread, requires_grad=True, device=k.device)
    keep = rng.random((2, 1, 4, 6)) > 0.3
    keep[..., 0] = True
    scale = 0.45
    assert (KA._score_bound(q.numpy(), k.numpy(), scale) <= KA._UNSHIFTED_BOUND) == (spread == 1.0)

    def slow(q, k, v):
        p = _textbook_masked_softmax((q @ k.swapaxes(-1, -2)) * scale, keep)
        return p @ v, p
    dev = ta.backend.to_device
    _same(rng, lambda q, k, v: kernels.ScaledDotProductAttention(scale, dev(keep, q.device))(q, k, v), slow,
          [q, k, v])
    empty = keep.copy()
    empty[1, 0, 2] = False                            # one fully masked query row
    o, p = kernels.ScaledDotProductAttention(scale, dev(empty, q.device))(q, k, v)
    assert (p.numpy()[1, :, 2] == 0).all() and (o.numpy()[1, :, 2] == 0).all()
    for dt in (np.float32, np.float64):               # large float32 scores stay finite (shifted)
        o, p = kernels.ScaledDotProductAttention(scale)(*(ta.tensor(a.numpy().astype(dt)) for a in (q, k, v)))
        assert np.isfinite(p.numpy()).all() and np.allclose(p.numpy().sum(-1), 1, atol=1e-5)


def test_split_heads_equals_textbook(rng):
    """SplitHeads = split → reshape (B, T, H, n) → transpose, outputs and gradients (also when one
    part gets no gradient), gradcheck and double backward."""
    B, S, H, ns = 2, 3, 2, (2, 3, 1)
    y = T(rng, B * S, H * sum(ns))

    def slow(y):
        parts = ta.functions.split(y, list(np.cumsum([H * n for n in ns[:-1]])), axis=1)
        return tuple(p.reshape(B, S, H, n).transpose(0, 2, 1, 3) for p, n in zip(parts, ns))

    _same(rng, lambda y: kernels.SplitHeads(B, S, H, ns)(y), slow, [y])
    q, k, v = kernels.SplitHeads(B, S, H, ns)(y)
    g, = ta.grad([q.sum() + v.sum() * 2], [y])                  # k gets no gradient: zeros there
    want = np.concatenate([np.ones((B * S, H * 2)), np.zeros((B * S, H * 3)), np.full((B * S, H), 2.0)], 1)
    np.testing.assert_array_equal(g.numpy(), want)
    f = lambda y: kernels.SplitHeads(B, S, H, ns)(y)             # noqa: E731
    ta.gradcheck(f, [y])
    ta.gradgradcheck(lambda y: [a * a for a in f(y)], [y])
    with pytest.raises(ValueError, match="split_heads"):
        kernels.SplitHeads(B, S, H, ns)(T(rng, B * S, 5))


def test_additive_score_fused_equals_textbook(rng):
    qp, kp, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 4)

    def slow(qp, kp, v):
        return (qp.expand_dims(-2) + kp.expand_dims(-3)).tanh() @ v

    _same(rng, lambda *a: kernels.AdditiveScore()(*a), slow, [qp, kp, v])


@pytest.mark.parametrize("axes", [(1,), (1, 2)])
def test_layernorm_fused_equals_textbook(rng, axes):
    x = T(rng, 2, 3, 4)
    shp = tuple(n if i in axes else 1 for i, n in enumerate(x.shape))
    g, b = T(rng, *shp), T(rng, *shp)

    def slow(x, g, b):
        mu = x.mean(axis=axes, keepdims=True)
        var = ((x - mu) * (x - mu)).mean(axis=axes, keepdims=True)
        return (x - mu) / (var + 1e-3).sqrt() * g + b

    _same(rng, lambda *a: kernels.LayerNormFn(axes, 1e-3)(*a), slow, [x, g, b])


def test_old_import_paths_still_work():
    from tinyattn.functions import rnn, attention
    from tinyattn.seq2seq import fused
    from tinyattn.nn.layers import LayerNormFn
    assert rnn.lstm_sequence is kernels.lstm_sequence and rnn.LSTMSequenceFn is kernels.LSTMSequenceFn
    assert attention.ScaledDotProductAttention is kernels.ScaledDotProductAttention
    assert fused.additive_attention is kernels.additive_attention
    assert LayerNormFn is kernels.LayerNormFn
    assert ta.nn.release_buffers is kernels.release_buffers


# ------------------------------------------------------------------------------------------------
# Recurrent kernels vs the textbook cells (tinyattn.nn.recurrent: lstm_step, gru_step; fused=False)
# ------------------------------------------------------------------------------------------------
B, T_, D, U = 3, 5, 4, 3
MASK = np.array([[1, 1, 0, 1, 0], [0, 0, 1, 1, 1], [1, 1, 1, 1, 1]], bool)


def _pair(rng, cls, **kw):
    """The same layer twice, fused and textbook, with equal random weights (biases included), float64."""
    fast, slow = cls(U, dtype="float64", fused=True, **kw), cls(U, dtype="float64", fused=False, **kw)
    fast.build((B, T_, D))
    slow.build((B, T_, D))
    ws = [w + 0.3 * rng.standard_normal(w.shape) for w in fast.get_weights()]
    fast.set_weights(ws)
    slow.set_weights(ws)
    return fast, slow


def _outs(y):
    return list(y) if isinstance(y, (list, tuple)) else [y]


def _same_layers(rng, fast, slow, inputs, call):
    """call(layer, *inputs) agree for both layers, and so do the gradients w.r.t. the inputs and each
    layer's own parameters (same order: the weights are equal), for one random upstream gradient."""
    yf, ys = _outs(call(fast, *inputs)), _outs(call(slow, *inputs))
    assert len(yf) == len(ys)
    gys = [rng.standard_normal(y.shape) for y in yf]
    for a, b in zip(yf, ys):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
    gf = ta.grad(yf, inputs + fast.parameters(), gys)
    gs = ta.grad(ys, inputs + slow.parameters(), gys)
    assert len(gf) == len(gs)
    for a, b in zip(gf, gs):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def _layer_same(rng, fast, slow, masked, with_state, n_states):
    x = T(rng, B, T_, D)
    states = [T(rng, B, U) for _ in range(n_states)] if with_state else []
    kw = {"mask": MASK} if masked else {}
    _same_layers(rng, fast, slow, [x] + states,
                 lambda layer, x, *st: layer(x, initial_state=list(st) if st else None, **kw))


@pytest.mark.parametrize("masked,with_state,go_backwards,zero_output,seqs",
                         [(False, False, False, False, True), (True, True, False, False, True),
                          (True, True, True, False, False), (True, False, False, True, True),
                          (False, True, True, False, True), (True, True, True, True, True)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_lstm_fused_equals_textbook(rng, masked, with_state, go_backwards, zero_output, seqs, use_bias):
    kw = dict(return_sequences=seqs, return_state=True, go_backwards=go_backwards,
              zero_output_for_mask=zero_output, use_bias=use_bias)
    fast, slow = _pair(rng, ta.nn.LSTM, **kw)
    _layer_same(rng, fast, slow, masked, with_state, 2)


@pytest.mark.parametrize("reset_after", [True, False])
@pytest.mark.parametrize("masked,with_state,go_backwards,zero_output,seqs",
                         [(False, False, False, False, True), (True, True, False, False, True),
                          (True, True, True, False, False), (True, False, True, True, True)])
@pytest.mark.parametrize("use_bias", [True, False])
def test_gru_fused_equals_textbook(rng, reset_after, masked, with_state, go_backwards, zero_output, seqs,
                                   use_bias):
    kw = dict(return_sequences=seqs, return_state=True, go_backwards=go_backwards,
              zero_output_for_mask=zero_output, reset_after=reset_after, use_bias=use_bias)
    fast, slow = _pair(rng, ta.nn.GRU, **kw)
    _layer_same(rng, fast, slow, masked, with_state, 1)


def test_bidirectional_keeps_the_textbook_choice(rng):
    bi = ta.nn.Bidirectional(ta.nn.LSTM(U, return_sequences=True, fused=False, dtype="float64"))
    assert bi.backward_layer.cell.fused is False
    fast = ta.nn.Bidirectional(ta.nn.LSTM(U, return_sequences=True, dtype="float64"))
    x = T(rng, B, T_, D)
    bi(x)
    fast(x)
    fast.set_weights(bi.get_weights())
    _same_layers(rng, fast, bi, [x], lambda layer, x: layer(x, mask=MASK))


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
def test_cells_fused_equal_textbook(rng, kind):
    if kind == "lstm":
        mk = lambda f: ta.nn.LSTMCell(U, input_dim=D, dtype="float64", fused=f)    # noqa: E731
    else:
        mk = lambda f: ta.nn.GRUCell(U, input_dim=D, dtype="float64", fused=f,    # noqa: E731
                                     reset_after=kind == "gru")
    fast, slow = mk(True), mk(False)
    ws = [w + 0.3 * rng.standard_normal(w.shape) for w in fast.get_weights()]
    fast.set_weights(ws)
    slow.set_weights(ws)
    x = T(rng, B, D)
    st = [T(rng, B, U) for _ in range(2 if kind == "lstm" else 1)]

    _same_layers(rng, fast, slow, [x] + st, lambda cell, x, *s: cell(x, list(s))[1])


@pytest.mark.parametrize("cls,kw", [(ta.nn.LSTM, {}), (ta.nn.GRU, {"reset_after": True}),
                                    (ta.nn.GRU, {"reset_after": False}), (ta.nn.SimpleRNN, {})])
def test_textbook_recurrent_gradcheck_and_gradgradcheck(rng, cls, kw):
    """The textbook path is plain ops: double backward works through it (the kernels refuse it)."""
    layer = cls(2, return_sequences=True, dtype="float64", fused=False, **kw)
    x = T(rng, 2, 3, 2)
    layer(x)
    layer.set_weights([w + 0.3 * rng.standard_normal(w.shape) for w in layer.get_weights()])
    mask = np.array([[1, 0, 1], [1, 1, 1]], bool)
    f = lambda x: layer(x, mask=mask)      # noqa: E731
    assert ta.gradcheck(f, [x], params=layer.parameters())
    assert ta.gradgradcheck(f, [x], params=layer.parameters())


def test_textbook_lstm_equations_by_hand(rng):
    """lstm_step is the paper's equations: check one step against NumPy written from them."""
    x, h, c = rng.standard_normal((B, D)), rng.standard_normal((B, U)), rng.standard_normal((B, U))
    K, R, b = rng.standard_normal((D, 4 * U)), rng.standard_normal((U, 4 * U)), rng.standard_normal(4 * U)
    hn, cn = ta.nn.lstm_step(*map(ta.tensor, (x, h, c, K, R, b)))
    z = x @ K + h @ R + b
    sig = lambda v: 1 / (1 + np.exp(-v))                            # noqa: E731
    i, f, g, o = sig(z[:, :U]), sig(z[:, U:2 * U]), np.tanh(z[:, 2 * U:3 * U]), sig(z[:, 3 * U:])
    np.testing.assert_allclose(cn.numpy(), f * c + i * g, rtol=1e-12)
    np.testing.assert_allclose(hn.numpy(), o * np.tanh(f * c + i * g), rtol=1e-12)


def test_textbook_only_options():
    with pytest.raises(ValueError, match="fused=False"):
        ta.nn.LSTM(3, activation="relu")
    ta.nn.LSTM(3, activation="relu", fused=False)                     # any activation, textbook
    with pytest.raises(ValueError, match="SimpleRNN: there is no fused kernel"):
        ta.nn.SimpleRNN(3, fused=True)
    lstm = ta.nn.LSTM(2, fused=False, dtype="float64")
    x = ta.tensor(np.ones((1, 2, 2)))
    with pytest.raises(NotImplementedError):                          # the kernel refuses double backward
        fast = ta.nn.LSTM(2, dtype="float64")
        y = fast(ta.tensor(np.ones((1, 2, 2)), requires_grad=True)).sum()
        ta.grad([y], fast.parameters(), create_graph=True)
    y = lstm(x).sum()
    (g,) = ta.grad([y], [lstm.cell.kernel], create_graph=True)        # the textbook path allows it
    assert g.requires_grad


def test_kernels_docstring_names_tests_that_exist():
    """Every ``tests/…py::name`` the kernels docstring cites is a test function in that file."""
    import pathlib
    import re
    root = pathlib.Path(__file__).resolve().parents[1]
    cited = re.findall(r"(tests/[\w/]+\.py)::(\w+)", kernels.__doc__)
    assert len(cited) >= 9
    for path, name in cited:
        assert re.search(rf"^def {name}\(", (root / path).read_text(), re.M), f"{path}::{name}"
    for name in kernels.__all__:
        assert getattr(kernels, name) is not None


@pytest.mark.parametrize("case", ["plain", "masked", "dropout", "bias", "big-scores"])
def test_sdpa_blocked_path_equals_whole_tensor_path(rng, monkeypatch, case):
    """NumPy stacks go through the fused attention one cache-sized block of the first axis at a time
    (forward and backward); the whole-tensor path gives the same bits (the same GEMM calls per
    matrix, the same row passes), with masks, dropout, a bias and large (shifted) scores."""
    from tinyattn.kernels import attention as KA
    if ta.backend.get_backend() != "numpy":
        pytest.skip("the blocked path is NumPy's")
    q0, k0, v0 = (rng.standard_normal(s) for s in ((5, 3, 4, 6), (5, 3, 7, 6), (5, 3, 7, 2)))
    if case == "big-scores":
        q0 = q0 * 40
    mask = rng.random((5, 1, 4, 7)) > 0.3 if case == "masked" else None
    bias = rng.standard_normal((3, 4, 7)) if case == "bias" else None
    drop = 0.3 if case == "dropout" else 0.0
    go, gp = rng.standard_normal((5, 3, 4, 2)), rng.standard_normal((5, 3, 4, 7))

    def run():
        ta.manual_seed(3)
        q, k, v = (ta.tensor(a, requires_grad=True) for a in (q0, k0, v0))
        o, p = kernels.ScaledDotProductAttention(0.4, mask, dropout=drop, bias=bias)(q, k, v)
        gq, gk, gv = ta.grad([o, p], [q, k, v], [go, gp])
        return [o.numpy(), p.numpy(), gq.numpy(), gk.numpy(), gv.numpy()]
    monkeypatch.setattr(KA, "_BLOCK_BYTES", 2 * 4 * 7 * 8)          # blocks of 2 (last one of 1)
    blocked = run()
    monkeypatch.setattr(KA, "_blockable", lambda *a: False)
    whole = run()
    for a, b in zip(blocked, whole):
        assert a.tobytes() == b.tobytes()
