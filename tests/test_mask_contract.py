"""Issue 7 (items 1, 2, 9): one mask door (``as_mask``), layers that cast floating inputs to their
dtype, and the attention package laid out by mechanism. Each test here failed before the fix."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn
from tinyattn.functions.masks import as_mask
from tinyattn.functions.rnn import lstm_sequence, gru_sequence
from tinyattn.attention import (Attention, AdditiveAttention, MultiHeadAttention, BahdanauAttention,
                                LuongAttention, CosineAttention, SelfAttention, LocalAttention,
                                LocalMonotonicAttention, LocalPredictiveAttention, AttentionPooling,
                                ManyToOneAttention, TimeStepAttention, HierarchicalAttention,
                                masked_softmax, scaled_dot_product_attention, cosine_score,
                                additive_energy, additive_score)

FUZZY = [1.0, 0.3, 0.3, 0.0]          # a "soft" mask: not a mask; an additive bias goes via bias=


def T64(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=grad)


# -- as_mask ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("m", [
    np.array([True, False, True]), np.array([1, 0, 1]), np.array([1.0, 0.0, 1.0], np.float32),
    [1, 0, 1], [True, False, True], ta.tensor(np.array([1.0, 0.0, 1.0]))],
    ids=["bool", "int", "float", "list_int", "list_bool", "tensor"])
def test_as_mask_accepts_every_binary_form(m):
    like = ta.tensor(np.zeros((2, 3)))
    out = as_mask(m, like, shape=(2, 3), where="op")
    assert type(out) is type(like.data) and out.dtype == bool          # on the scores' device
    np.testing.assert_array_equal(ta.backend.as_numpy(out), [True, False, True])
    assert as_mask(None, np.zeros(3)) is None


@pytest.mark.parametrize("bad", [FUZZY, [0.0, -np.inf, 0.0, 0.0], [1, 2, 0, 1], [1.0, np.nan, 0.0, 1.0]])
def test_as_mask_refuses_non_binary_values_and_points_to_bias(bad):
    with pytest.raises(ValueError, match=r"MyLayer: value_mask .*0 and 1.*bias="):
        as_mask(bad, np.zeros(4), name="value_mask", where="MyLayer")


def test_as_mask_shape_error_names_where_name_and_both_shapes():
    with pytest.raises(ValueError, match=r"LayerX: key_mask of shape \(2, 5\) does not broadcast to \(2, 3, 4\)"):
        as_mask(np.ones((2, 5), bool), np.zeros(1), shape=(2, 3, 4), name="key_mask", where="LayerX")
    assert as_mask(np.ones((1, 4), bool), np.zeros(1), shape=(2, 3, 4)).shape == (1, 4)


def test_ndarray_data_is_never_taken_for_the_array():
    # an ndarray's .data is a memoryview: these broke with `getattr(mask, "data", mask)`
    x = ta.tensor(np.random.default_rng(0).standard_normal((5, 2, 3)))
    h0 = ta.tensor(np.zeros((2, 4)))
    K, R, b = (ta.tensor(np.full(s, 0.1)) for s in ((3, 16), (4, 16), (16,)))
    mask = np.array([[1, 1], [1, 0], [1, 0], [0, 1], [1, 1]], bool)          # (T, B)
    out, h, c = lstm_sequence(x, h0, h0, K, R, b, mask=mask)
    assert out.shape == (5, 2, 4)
    Kg, Rg = ta.tensor(np.full((3, 12), 0.1)), ta.tensor(np.full((4, 12), 0.1))
    out, h = gru_sequence(x, h0, Kg, Rg, ta.tensor(np.zeros((2, 12))), mask=mask.astype(np.int64))
    assert out.shape == (5, 2, 4)


def test_viz_takes_arrays_whose_data_attribute_is_not_the_array():
    # CuPy arrays' .data is a MemoryPointer; viz must convert through backend.as_numpy
    class DeviceLike:
        shape, data = (2, 3), object()

        def __array__(self, dtype=None, copy=None):
            return np.arange(6.0).reshape(2, 3)

    text = ta.viz.ascii_heatmap(DeviceLike())
    assert isinstance(text, str) and text


# -- one meaning for a mask everywhere --------------------------------------------------------------
def _qkv(rng, b=2, tq=3, tk=4, d=4):
    return T64(rng, b, tq, d, grad=False), T64(rng, b, tk, d, grad=False), T64(rng, b, tk, d, grad=False)


def test_fuzzy_float_mask_is_refused_everywhere(rng):
    q, k, v = _qkv(rng)
    fm = np.array([FUZZY, FUZZY])
    with pytest.raises(ValueError, match="masked_softmax: mask.*bias="):
        masked_softmax(ta.tensor(rng.standard_normal((2, 3, 4))), fm[:, None, :])
    with pytest.raises(ValueError, match="BahdanauAttention: mask.*bias="):
        BahdanauAttention(5, dtype="float64")(q, k, v, mask=fm)
    with pytest.raises(ValueError, match="MultiHeadAttention: value_mask.*bias="):
        MultiHeadAttention(2, 2, dtype="float64")(q, v, value_mask=fm)
    with pytest.raises(ValueError, match="Attention: value_mask.*bias="):
        Attention(dtype="float64")([q, v], mask=[None, fm])
    with pytest.raises(ValueError, match="scaled_dot_product_attention: mask.*bias="):
        scaled_dot_product_attention(q, k, v, mask=fm[:, None, :])
    with pytest.raises(ValueError, match="LSTM: mask.*bias="):
        nn.LSTM(3, dtype="float64")(q, mask=np.array([[1, .5, 0], [1, 1, 1]]))


def test_binary_float_and_int_masks_mean_the_boolean_mask(rng):
    q, k, v = _qkv(rng)
    bm = np.array([[True, True, False, True], [True, False, True, True]])
    ref = masked_softmax(ta.tensor(rng.standard_normal((2, 3, 4))), bm[:, None, :])
    for m in (bm.astype(np.float32), bm.astype(np.int64), bm.tolist(), ta.tensor(bm.astype(np.float64))):
        m3 = as_mask(m, q)[:, None, :]
        np.testing.assert_array_equal(ta.backend.as_numpy(m3), bm[:, None, :])
        lay = BahdanauAttention(3, query_dim=4, key_dim=4, dtype="float64")
        np.testing.assert_array_equal(lay(q, k, v, mask=m).numpy(), lay(q, k, v, mask=bm).numpy())
    assert ref.shape == (2, 3, 4)
    # SDPA refused float masks before: a 0/1 float mask is a mask
    np.testing.assert_array_equal(scaled_dot_product_attention(q, k, v, mask=bm[:, None, :].astype(float)).numpy(),
                                  scaled_dot_product_attention(q, k, v, mask=bm[:, None, :]).numpy())
    mha = MultiHeadAttention(2, 2, dtype="float64")
    np.testing.assert_array_equal(mha(q, v, value_mask=bm.astype(np.float32)).numpy(),
                                  mha(q, v, value_mask=bm).numpy())
    att = Attention(dtype="float64")
    np.testing.assert_array_equal(att([q, v], mask=[None, bm.astype(float)]).numpy(),
                                  att([q, v], mask=[None, bm]).numpy())


@pytest.mark.parametrize("shape", [(1, 4), (2, 4), (2, 3, 4), (1, 1, 4)])
def test_any_broadcasting_value_mask_works_in_every_dense_layer(rng, shape):
    q, k, v = _qkv(rng)
    m = rng.random(shape) > 0.3
    m[..., 0] = True
    full = np.broadcast_to(m if len(shape) == 3 else m.reshape(m.shape[0], 1, 4), (2, 3, 4))
    ref = scaled_dot_product_attention(q, k, v, mask=full, scale=1.0, return_weights=True)[1].numpy()
    _, w = LuongAttention("dot", dtype="float64")(q, k, v, mask=m, return_attention_scores=True)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-12, atol=1e-15)
    _, w = Attention(dtype="float64")([q, v, k], mask=[None, m], return_attention_scores=True)
    np.testing.assert_allclose(w.numpy(), ref, rtol=1e-9, atol=1e-12)
    _, w = BahdanauAttention(3, dtype="float64")(q, k, v, mask=m, return_attention_scores=True)
    assert np.all(w.numpy()[~full] == 0)


def test_mha_per_head_mask_with_heads_not_equal_batch_and_value_query_masks(rng):
    B, H, tq, tk = 2, 3, 4, 5
    q, v = T64(rng, B, tq, 6, grad=False), T64(rng, B, tk, 6, grad=False)
    layer = MultiHeadAttention(H, 2, dtype="float64")
    head_mask = rng.random((B, H, tq, tk)) > 0.4
    head_mask[..., 0] = True
    vm = np.array([[1, 1, 1, 0, 1], [1, 1, 1, 1, 0]], bool)
    qm = np.array([[1, 1, 1, 1], [1, 0, 1, 1]], bool)
    _, s = layer(q, v, attention_mask=head_mask, value_mask=vm, query_mask=qm, return_attention_scores=True)
    allowed = head_mask & vm[:, None, None, :] & qm[:, None, :, None]
    assert s.shape == (B, H, tq, tk)
    assert np.all(s.numpy()[~allowed] == 0)
    sums = s.numpy().sum(-1)
    np.testing.assert_allclose(sums[allowed.any(-1)], 1.0)
    # the same result from the explicit per-head mask: the masks are ANDed, not misaligned
    _, s2 = layer(q, v, attention_mask=allowed, return_attention_scores=True)
    np.testing.assert_array_equal(s.numpy(), s2.numpy())
    # (1, 1, Tq, Tk): one mask for every batch row and head
    shared = np.tril(np.ones((tq, tk), bool))[None, None]
    _, s3 = layer(q, v, attention_mask=shared, return_attention_scores=True)
    _, s4 = layer(q, v, use_causal_mask=True, return_attention_scores=True)
    np.testing.assert_array_equal(s3.numpy(), s4.numpy())
    with pytest.raises(ValueError, match=r"MultiHeadAttention: attention_mask \(per head\) of shape "
                                         r"\(2, 2, 4, 5\) does not broadcast to \(2, 3, 4, 5\)"):
        layer(q, v, attention_mask=np.ones((B, 2, tq, tk), bool))


def test_mha_per_head_mask_gradcheck(rng):
    q, v = T64(rng, 2, 3, 4), T64(rng, 2, 4, 4)
    layer = MultiHeadAttention(3, 2, dtype="float64")
    layer(q, v)
    m = rng.random((2, 3, 3, 4)) > 0.3
    m[..., 0] = True
    fn = lambda q, v, *p: layer(q, v, attention_mask=m, value_mask=np.array([[1, 1, 1, 0], [1] * 4]))  # noqa: E731
    assert ta.gradcheck(fn, [q, v] + layer.parameters())
    assert ta.gradgradcheck(fn, [q, v] + layer.parameters())


# -- Keras details ----------------------------------------------------------------------------------
def test_mask_list_of_three_is_accepted_and_the_third_ignored(rng):
    q, k, v = _qkv(rng)
    vm = np.array([[1, 1, 0, 1], [1, 1, 1, 1]], bool)
    for layer in (Attention(dtype="float64"), AdditiveAttention(dtype="float64")):
        a = layer([q, v], mask=[None, vm, np.zeros((2, 4), bool)]).numpy()
        np.testing.assert_array_equal(a, layer([q, v], mask=[None, vm]).numpy())
        with pytest.raises(ValueError, match="mask must be"):
            layer([q, v], mask=[None])


def test_keras_constructor_and_call_errors_are_value_errors(rng):
    x = ta.tensor(np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match=r"AdditiveAttention: call it on a list of inputs.*\[query, value\]"):
        AdditiveAttention()(x)
    with pytest.raises(ValueError, match=r"Attention: call it on a list of inputs"):
        Attention()(x)
    with pytest.raises(ValueError, match=r"MultiHeadAttention: invalid output_shape 8\.0"):
        MultiHeadAttention(2, 2, output_shape=8.0)
    with pytest.raises(ValueError, match="output_shape"):
        MultiHeadAttention(2, 2, output_shape=(4, 0))
    assert MultiHeadAttention(2, 2, output_shape=[3, 2])(x, x).shape == (2, 3, 3, 2)


@pytest.mark.parametrize("make,arg", [
    (lambda: LocalAttention(window=0), "window"), (lambda: LocalAttention(window=-2), "window"),
    (lambda: LocalAttention(window=1.5), "window"), (lambda: LocalAttention(units=0), "units"),
    (lambda: LocalMonotonicAttention(window=0), "window"), (lambda: LocalPredictiveAttention(units=-1), "units"),
    (lambda: AttentionPooling(0), "units"), (lambda: ManyToOneAttention(0), "units"),
    (lambda: TimeStepAttention(time_steps=0), "time_steps"), (lambda: LuongAttention("concat", units=0), "units"),
    (lambda: BahdanauAttention(0), "units"), (lambda: BahdanauAttention(4, query_dim=0, key_dim=2), "query_dim"),
    (lambda: CosineAttention(tau=-1.0), "tau"), (lambda: Attention(dropout=1.0), "dropout"),
    (lambda: HierarchicalAttention(0, 3), "units")])
def test_impossible_constructor_arguments_name_the_argument(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


# -- layout by mechanism ----------------------------------------------------------------------------
def test_nn_does_not_reach_up_into_attention():
    assert not hasattr(nn, "MultiHeadAttention")
    with pytest.raises(AttributeError):
        nn.BahdanauAttention                                        # noqa: B018


def test_every_public_name_is_exported_from_its_mechanism_file():
    import importlib
    import tinyattn.attention as A
    files = {"masks", "scores", "additive", "multiplicative", "local", "hard", "cosine", "multihead",
             "pooling", "keras", "positions", "sliding_window", "grouped_query", "linear", "estimators", "cnn", "flash"}
    owners = {}
    for f in files:
        for n in importlib.import_module(f"tinyattn.attention.{f}").__all__:
            owners.setdefault(n, f)
            assert getattr(A, n) is not None
    assert set(A.__all__) == set(owners)
    assert owners["BahdanauAttention"] == "additive" and owners["LuongAttention"] == "multiplicative"
    assert owners["LocalPredictiveAttention"] == "local" and owners["ManyToOneAttention"] == "pooling"
    assert owners["Attention"] == "keras" and owners["scaled_dot_product_attention"] == "scores"
    for n in ("LocalMonotonicAttention", "LocalPredictiveAttention", "BahdanauAttention", "CosineAttention"):
        assert n in A.__doc__                                      # the paper -> class -> file table


def test_local_m_and_local_p_are_named_layers_equal_to_the_mode_strings(rng):
    q, v = T64(rng, 2, 4, 3, grad=False), T64(rng, 2, 6, 3, grad=False)
    for cls, mode in ((LocalMonotonicAttention, "monotonic"), (LocalPredictiveAttention, "predictive")):
        a, b = cls(window=2, dtype="float64"), LocalAttention(window=2, mode=mode, dtype="float64")
        a([q, v])
        b([q, v])
        b.set_weights(a.get_weights())
        np.testing.assert_array_equal(a([q, v]).numpy(), b([q, v]).numpy())


@pytest.mark.parametrize("cls", [LocalMonotonicAttention, LocalPredictiveAttention])
def test_local_layers_gradcheck_with_key_mask(rng, cls):
    q, v = T64(rng, 2, 3, 3), T64(rng, 2, 5, 3)
    layer = cls(window=2, dtype="float64")
    layer([q, v])
    m = np.array([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    fn = lambda q, v, *p: layer([q, v], mask=m)                     # noqa: E731
    assert ta.gradcheck(fn, [q, v] + layer.parameters())


def test_additive_energy_is_the_one_additive_form(rng):
    qp, kp, w = T64(rng, 2, 3, 4), T64(rng, 2, 5, 4), T64(rng, 4)
    ref = np.tanh(qp.numpy()[:, :, None] + kp.numpy()[:, None]) @ w.numpy()
    np.testing.assert_allclose(additive_energy(qp, kp, w).numpy(), ref, rtol=1e-12)
    assert ta.gradcheck(additive_energy, [qp, kp, w])
    assert ta.gradgradcheck(additive_energy, [qp, kp, w])
    q, k, Wq, Wk = T64(rng, 2, 3, 2), T64(rng, 2, 5, 3), T64(rng, 2, 4), T64(rng, 3, 4)
    np.testing.assert_allclose(additive_score(q, k, Wq, Wk, w).numpy(),
                               additive_energy(q @ Wq, k @ Wk, w).numpy(), rtol=1e-12)
    with pytest.raises(ValueError, match="additive_energy"):
        additive_energy(qp, kp, T64(rng, 3))


def test_cosine_score_and_cosine_attention_agree_on_tau(rng):
    q, k, v = _qkv(rng)
    for tau in (0.25, 2.0):
        _, w = CosineAttention(tau=tau, dtype="float64")(q, k, v, return_attention_scores=True)
        np.testing.assert_allclose(w.numpy(), ta.softmax(cosine_score(q, k, tau), axis=-1).numpy(), rtol=1e-12)
    assert np.abs(cosine_score(q, k, tau=0.5).numpy()).max() > 1.0           # divided by τ: up to 1/τ
    with pytest.raises(ValueError, match="cosine_score: tau"):
        cosine_score(q, k, tau=0.0)


def test_many_to_one_bahdanau_takes_philipperemy_weight_order(rng):
    d, units = 4, 3
    layer = ManyToOneAttention(units, score="bahdanau", input_dim=d)
    theirs = [rng.standard_normal((d, 1)), rng.standard_normal((d, d)), rng.standard_normal((d, d)),
              rng.standard_normal((2 * d, units))]                    # [v, w1, w2, attention_vector]
    layer.set_weights(theirs)                                         # one line, as the README says
    np.testing.assert_allclose(layer.v.numpy(), theirs[0].astype(np.float32))
    np.testing.assert_allclose(layer.w1.numpy(), theirs[1].astype(np.float32))


# -- layers cast floating inputs to their dtype -----------------------------------------------------
LAYERS_3D = [
    ("Dense", lambda: nn.Dense(3), lambda x: [x]),
    ("LayerNormalization", lambda: nn.LayerNormalization(), lambda x: [x]),
    ("Conv1D", lambda: nn.Conv1D(2, 2), lambda x: [x]),
    ("LSTM", lambda: nn.LSTM(3), lambda x: [x]),
    ("GRU", lambda: nn.GRU(3), lambda x: [x]),
    ("Bidirectional", lambda: nn.Bidirectional(nn.LSTM(2)), lambda x: [x]),
    ("Attention", lambda: Attention(), lambda x: [[x, x]]),
    ("AdditiveAttention", lambda: AdditiveAttention(), lambda x: [[x, x]]),
    ("MultiHeadAttention", lambda: MultiHeadAttention(2, 2), lambda x: [x, x]),
    ("SelfAttention", lambda: SelfAttention(2, 2), lambda x: [x]),
    ("BahdanauAttention", lambda: BahdanauAttention(3), lambda x: [x, x]),
    ("LuongAttention", lambda: LuongAttention("general"), lambda x: [x, x]),
    ("CosineAttention", lambda: CosineAttention(learnable_tau=True), lambda x: [x, x]),
    ("ManyToOneAttention", lambda: ManyToOneAttention(3), lambda x: [x]),
    ("TimeStepAttention", lambda: TimeStepAttention(), lambda x: [x]),
    ("AttentionPooling", lambda: AttentionPooling(3), lambda x: [x]),
    ("LocalAttention", lambda: LocalAttention(window=1), lambda x: [[x, x]]),
]


@pytest.mark.parametrize("name,make,args", LAYERS_3D, ids=[n for n, _, _ in LAYERS_3D])
@pytest.mark.parametrize("kind", ["float64_numpy", "list", "float64_tensor"])
def test_float32_layers_take_float64_numpy_lists_and_tensors(name, make, args, kind):
    x = np.random.default_rng(0).random((2, 4, 4))                  # float64, like np.random.rand
    x = {"float64_numpy": x, "list": x.tolist(), "float64_tensor": ta.tensor(x)}[kind]
    layer = make()
    out = layer(*args(x))                                           # the first call (it builds)
    outs = out if isinstance(out, (list, tuple)) else [out]
    assert all(o.dtype == np.float32 for o in outs)
    again = layer(*args(x))                                         # and after building
    again = again if isinstance(again, (list, tuple)) else [again]
    for a, b in zip(outs, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_rnn_initial_state_and_cells_are_cast(rng):
    x = rng.random((2, 3, 4))
    h0, c0 = rng.random((2, 5)), rng.random((2, 5))
    y = nn.LSTM(5)(x, initial_state=[h0, c0])
    assert y.dtype == np.float32
    assert nn.GRU(5)(x, initial_state=[h0.tolist()]).dtype == np.float32
    h, (h1, c1) = nn.LSTMCell(5, input_dim=4)(x[:, 0], states=[h0, c0])
    assert h.dtype == c1.dtype == np.float32
    h, _ = nn.GRUCell(5, input_dim=4)(x[:, 0].tolist(), states=ta.tensor(h0))
    assert h.dtype == np.float32


def test_embedding_keeps_integer_ids_and_dense_casts_ints():
    emb = nn.Embedding(10, 3)
    out = emb([[1, 2, 3]])
    assert out.shape == (1, 3, 3) and out.dtype == np.float32
    assert nn.Dense(2)(np.array([[1, 2]])).dtype == np.float32
    m = nn.Embedding(10, 3, mask_zero=True).compute_mask([[1, 0, 3]])      # a list was `list != 0`
    np.testing.assert_array_equal(m.numpy(), [[True, False, True]])


def test_cast_input_keeps_the_gradient_of_a_float64_input(rng):
    x = ta.tensor(rng.standard_normal((2, 3)), requires_grad=True)  # float64
    y = nn.Dense(4)(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad is not None and x.grad.dtype == np.float64


def test_dtype_mix_error_names_the_layer_and_the_model_side(rng):
    layer = nn.LSTM(3)
    x = rng.random((2, 4, 5))
    layer(x)
    layer.cell.kernel.data = layer.cell.kernel.data.astype(np.float64)    # a half-cast model
    with pytest.raises(TypeError, match=r"^LSTM: float dtype mix inside the layer: the model's weights "
                                        r"are float32, float64"):
        layer(x)
    model = nn.Sequential(nn.Dense(3), nn.Dense(2))
    model(x)
    model[1].kernel.data = model[1].kernel.data.astype(np.float64)
    with pytest.raises(TypeError, match=r"^Dense: .*model's weights"):
        model(x)
