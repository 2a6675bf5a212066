"""Issue 12 (Keras side) without Keras: the mask-propagation mechanism, N-D attention, use_gate,
sliding_window, regularizers/constraints in fit, and float64 gradcheck / gradgradcheck (random
upstream gradients, every input and every parameter) of each new path. Parity with Keras live is in
tests/reference/test_keras_propagation.py; Keras's own test cases in tests/test_keras_cases.py."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn
from tinyattn.attention import Attention, AdditiveAttention, MultiHeadAttention, GroupedQueryAttention
from tinyattn.nn import get_keras_mask, set_keras_mask
from tinyattn.train import fit
from tinyattn.optim import SGD


def T(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=grad)


def _built(layer, *args, **kw):
    layer.astype("float64")
    layer(*args, **kw)
    r = np.random.default_rng(9)
    for p in layer.parameters():
        p.data = p.data + ta.backend.to_device(0.3 * r.standard_normal(p.shape), p.device)
    return layer


IDS = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2], [5, 0, 0, 0, 0]])


# ------------------------------------------------------------------------------------------ mechanism
def test_mask_flows_through_sequential_and_is_dropped_where_keras_drops_it():
    emb = nn.Embedding(10, 4, mask_zero=True)
    seq = nn.Sequential(emb, nn.Dense(6), nn.Dropout(0.1), nn.LayerNormalization(),
                        nn.LSTM(3, return_sequences=True))
    h = seq(IDS)
    np.testing.assert_array_equal(ta.backend.as_numpy(get_keras_mask(h)), IDS != 0)
    assert get_keras_mask(nn.LSTM(3)(h)) is None                      # no return_sequences: no mask
    assert get_keras_mask(nn.Flatten()(h)) is None                    # does not support masking
    assert get_keras_mask(nn.Conv1D(2, 2)(h)) is None
    assert get_keras_mask(nn.GlobalAveragePooling1D()(h)) is None     # consumes it
    assert get_keras_mask(nn.Embedding(10, 4)(IDS)) is None           # mask_zero=False makes none
    out, hT, cT = nn.LSTM(3, return_sequences=True, return_state=True)(h)
    assert get_keras_mask(out) is not None and get_keras_mask(hT) is None and get_keras_mask(cT) is None


def test_recurrent_layer_reads_the_carried_mask_and_an_explicit_mask_wins(rng):
    x = ta.tensor(rng.standard_normal((3, 5, 4)).astype(np.float32))
    lstm = nn.LSTM(3, return_sequences=True)
    set_keras_mask(x, IDS != 0)
    carried = lstm(x).numpy()
    explicit = lstm(ta.tensor(x.numpy()), mask=IDS != 0).numpy()
    np.testing.assert_array_equal(carried, explicit)
    full = lstm(x, mask=np.ones(IDS.shape, bool)).numpy()          # explicit wins over the carried mask
    np.testing.assert_array_equal(full, lstm(ta.tensor(x.numpy())).numpy())
    assert not np.allclose(full, carried)


def test_cast_keeps_the_mask_and_mha_reads_query_value_masks(rng):
    q = ta.tensor(rng.standard_normal((3, 5, 4)))                   # float64 into a float32 layer
    v = ta.tensor(rng.standard_normal((3, 4, 4)))
    set_keras_mask(q, IDS != 0)
    vm = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]], bool)
    set_keras_mask(v, vm)
    mha = MultiHeadAttention(2, 3)
    out, w = mha(q, v, return_attention_scores=True)
    np.testing.assert_array_equal(get_keras_mask(out), IDS != 0)
    expect = (IDS != 0)[:, None, :, None] & vm[:, None, None, :]
    assert np.all(w.numpy()[~np.broadcast_to(expect, w.shape)] == 0)
    out2 = mha(ta.tensor(q.numpy()), ta.tensor(v.numpy()), query_mask=IDS != 0, value_mask=vm)
    np.testing.assert_allclose(out.numpy(), out2.numpy(), rtol=1e-6)


def test_loss_uses_the_prediction_mask():
    pred = ta.tensor(np.arange(6, dtype=np.float32).reshape(2, 3, 1))
    y = np.zeros((2, 3, 1), np.float32)
    m = np.array([[1, 1, 0], [1, 0, 0]], bool)
    set_keras_mask(pred, m)
    got = float(ta.losses.MeanSquaredError()(y, pred).item())
    sq = (np.arange(6).reshape(2, 3) ** 2)
    assert got == pytest.approx(sq[m].mean())
    assert float(ta.losses.MeanSquaredError()(y, pred, mask=np.ones((2, 3), bool)).item()) == pytest.approx(sq.mean())


def test_global_average_pooling_masked_mean_and_gradcheck(rng):
    x = T(rng, 3, 5, 2)
    m = IDS != 0
    gap = nn.GlobalAveragePooling1D(dtype="float64")
    y = gap(x, mask=m)
    np.testing.assert_allclose(y.numpy(), (x.numpy() * m[..., None]).sum(1) / m.sum(1)[:, None], rtol=1e-12)
    np.testing.assert_allclose(gap(x).numpy(), x.numpy().mean(1), rtol=1e-12)
    assert gap(x, mask=m).shape == (3, 2) and nn.GlobalAveragePooling1D(keepdims=True)(x).shape == (3, 1, 2)
    assert ta.gradcheck(lambda x: gap(x, mask=m), [x])
    assert ta.gradgradcheck(lambda x: gap(x, mask=m), [x])


# ------------------------------------------------------------------------------------------ gradchecks
@pytest.mark.parametrize("shape_q,shape_v,axes,mask", [
    ((2, 3, 4, 5), (2, 3, 2, 5), (2,), "per-row"),
    ((2, 2, 3, 5), (2, 2, 2, 5), (1, 2), "2d"),
    ((2, 2, 2, 3, 4), (2, 2, 2, 2, 4), (2, 3), None),
    ((2, 3, 4, 5), (2, 3, 4, 5), (-2,), None),
    ((2, 3, 2, 4), (2, 3, 2, 4), (1,), "causal")])
@pytest.mark.parametrize("use_gate", [False, True])
def test_mha_attention_axes_gradcheck(shape_q, shape_v, axes, mask, use_gate, rng):
    q, v = T(rng, *shape_q), T(rng, *shape_v)
    layer = _built(MultiHeadAttention(2, 2, value_dim=3, attention_axes=axes, use_gate=use_gate,
                                      output_shape=(2, 2)), q, v)
    am, causal = None, mask == "causal"
    if mask == "per-row":
        am = rng.random((shape_q[2], shape_v[2])) > 0.4                 # (Tq, Tk), broadcast
        am[:, 0] = True
    elif mask == "2d":
        am = rng.random((2,) + shape_q[1:3] + shape_v[1:3]) > 0.4       # (B, *q axes, *k axes)
        am[..., 0, 0] = True

    def fn(q, v):
        return layer(q, v, attention_mask=am, use_causal_mask=causal, return_attention_scores=True)

    out, scores = fn(q, v)
    assert out.shape == shape_q[:-1] + (2, 2)
    assert ta.gradcheck(fn, [q, v], params=layer.parameters())
    assert ta.gradgradcheck(fn, [q, v], params=layer.parameters())


def test_mha_nd_equals_3d_on_flattened_axes(rng):
    """attention_axes=(1, 2) on (B, H, W, d) is 3-D attention over the H·W flattened positions."""
    x = T(rng, 2, 3, 2, 4, grad=False)
    nd = _built(MultiHeadAttention(2, 3, attention_axes=(1, 2)), x, x)
    flat = MultiHeadAttention(2, 3, dtype="float64")
    xf = ta.tensor(x.numpy().reshape(2, 6, 4))
    flat(xf, xf)
    flat.set_weights(nd.get_weights())
    o1, s1 = nd(x, x, return_attention_scores=True)
    o2, s2 = flat(xf, xf, return_attention_scores=True)
    np.testing.assert_allclose(o1.numpy().reshape(2, 6, 4), o2.numpy(), rtol=1e-12)
    np.testing.assert_allclose(s1.numpy().reshape(2, 2, 6, 6), s2.numpy(), rtol=1e-12)


@pytest.mark.parametrize("window,causal,use_gate", [(2, False, True), (3, True, False), (1, False, False)])
def test_mha_sliding_window_and_gate_gradcheck(window, causal, use_gate, rng):
    q, v = T(rng, 2, 5, 4), T(rng, 2, 5, 3)
    layer = _built(MultiHeadAttention(2, 2, sliding_window=window, use_gate=use_gate), q, v)
    fn = lambda q, v: layer(q, v, use_causal_mask=causal, return_attention_scores=True)  # noqa: E731
    _, s = fn(q, v)
    i, j = np.indices((5, 5))
    band = (np.abs(i - j) < window) & ((j <= i) if causal else True)
    assert np.all(s.numpy()[..., ~band] == 0)
    assert ta.gradcheck(fn, [q, v], params=layer.parameters())
    assert ta.gradgradcheck(fn, [q, v], params=layer.parameters())


def test_mha_gate_formula(rng):
    """use_gate: out = (O ⊙ σ(query W^G + b^G)) W^O + b^O, O the per-head attention output."""
    q, v = T(rng, 2, 3, 4, grad=False), T(rng, 2, 5, 4, grad=False)
    g = _built(MultiHeadAttention(2, 3, use_gate=True), q, v)
    plain = MultiHeadAttention(2, 3, dtype="float64")
    plain(q, v)
    ws = g.get_weights()
    plain.set_weights(ws[:4] + ws[6:])
    # recompute by hand: the gate multiplies the per-head outputs before W^O
    _, A = plain(q, v, return_attention_scores=True)
    V = np.einsum("btd,dhn->bhtn", v.numpy(), ws[6]) + ws[7][None, :, None]
    O = np.einsum("bhqk,bhkn->bqhn", A.numpy(), V)
    G = 1 / (1 + np.exp(-(np.einsum("btd,dhn->bthn", q.numpy(), ws[4]) + ws[5])))
    want = np.einsum("bqhn,hnd->bqd", O * G, ws[8]) + ws[9]
    np.testing.assert_allclose(g(q, v).numpy(), want, rtol=1e-10)


@pytest.mark.parametrize("cls", [Attention, AdditiveAttention])
def test_dense_attention_nd_gradcheck(cls, rng):
    q, v = T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5)
    layer = _built(cls(), [q, v])
    qm = rng.random((2, 3, 4)) > 0.3
    vm = rng.random((2, 3, 1, 6)) > 0.3
    vm[..., 0] = True
    fn = lambda q, v: layer([q, v], mask=[qm, vm], return_attention_scores=True)  # noqa: E731
    out, w = fn(q, v)
    assert out.shape == (2, 3, 4, 5) and w.shape == (2, 3, 4, 6)
    assert ta.gradcheck(fn, [q, v], params=layer.parameters())
    assert ta.gradgradcheck(fn, [q, v], params=layer.parameters())


def test_regularization_losses_gradcheck(rng):
    x = T(rng, 3, 4)
    d = _built(nn.Dense(2, kernel_regularizer=nn.regularizers.L1L2(0.1, 0.2),
                        bias_regularizer="l2", activity_regularizer=nn.regularizers.L1(0.05)), x)

    def total(x):
        y = d(x)
        return y, sum(d.regularization_losses()[1:], d.regularization_losses()[0])

    assert len(d.regularization_losses()) == 3
    assert ta.gradcheck(total, [x], params=d.parameters())
    k = d.kernel.numpy()
    np.testing.assert_allclose(d.regularization_losses()[0].item(), 0.1 * np.abs(k).sum() + 0.2 * (k ** 2).sum())


def test_regularizer_and_constraint_argument_errors():
    with pytest.raises(ValueError, match="l1"):
        nn.regularizers.L1(-1)
    with pytest.raises(ValueError, match="regularizer identifier"):
        nn.Dense(2, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="constraint identifier"):
        nn.Dense(2, kernel_constraint="positive")


def test_fit_adds_penalties_and_applies_constraints(rng):
    """With a huge L2 penalty the kernel shrinks; with non_neg it stays ≥ 0 after every step."""
    x = rng.standard_normal((16, 3)).astype(np.float32)
    y = rng.standard_normal((16, 2)).astype(np.float32)
    ta.manual_seed(0)
    a = nn.Dense(2, kernel_constraint="non_neg")
    b = nn.Dense(2, kernel_regularizer=nn.regularizers.L2(10.0))
    c = nn.Dense(2)
    for m in (a, b, c):
        m(x)
    b.set_weights(c.get_weights())
    for m in (a, b, c):
        fit(m, "mse", SGD(m.parameters(), lr=0.02), x, y, epochs=3, batch_size=8, shuffle=False, verbose=0)
    assert np.all(a.kernel.numpy() >= 0)
    assert np.abs(b.kernel.numpy()).sum() < 0.5 * np.abs(c.kernel.numpy()).sum()


def test_layers_whose_masks_mean_something_else_are_not_filled(rng):
    """PyTorch-style src_mask (an attention mask) and d2l key masks are never filled from a carried
    (B, T) Keras mask: those layers opt out with keras_mask_args = ()."""
    from tinyattn.transformer import TransformerEncoderLayer
    from tinyattn.attention import BahdanauAttention
    x = ta.tensor(rng.standard_normal((3, 5, 8)).astype(np.float32))
    enc = TransformerEncoderLayer(8, 2, 16, dropout=0.0)
    plain = enc(x).numpy()
    set_keras_mask(x, IDS != 0)
    np.testing.assert_array_equal(enc(x).numpy(), plain)
    k = ta.tensor(rng.standard_normal((3, 5, 8)).astype(np.float32))
    att = BahdanauAttention(4)
    a = att(x, k).numpy()
    set_keras_mask(k, IDS != 0)
    np.testing.assert_array_equal(att(x, k).numpy(), a)


def test_global_max_pooling_ignores_the_mask_as_keras():
    """Keras 3's GlobalMaxPooling1D does not support masking: it takes the max over every step and
    drops the mask (Keras also warns; tinyattn does not)."""
    h = nn.Embedding(10, 4, mask_zero=True)(IDS)
    y = nn.GlobalMaxPooling1D()(h)
    np.testing.assert_array_equal(y.numpy(), h.numpy().max(1))
    assert get_keras_mask(y) is None
