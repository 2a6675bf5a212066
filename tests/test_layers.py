"""Basic layers: float64 gradchecks (random upstream gradients) over the input and every parameter,
reference formulas in NumPy, shapes, dtypes, lazy build, weights round trips and error messages."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn
from tinyattn.nn.layers import LayerNormFn, Im2Col1D


def t64(rng, *shape):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=True)


def built64(layer, shape, rng):
    """Build ``layer`` on a float32 input of ``shape``, then cast it to float64 for gradchecks."""
    layer(ta.tensor(rng.standard_normal(shape).astype(np.float32)))
    for p in layer.parameters():                     # random weights, so that every one matters
        p.data = p.data + ta.backend.to_device(rng.standard_normal(p.shape).astype(p.dtype) * 0.3, p.device)
    return layer.astype("float64")


# ------------------------------------------------------------------------------------------------
# activations
# ------------------------------------------------------------------------------------------------
ACTS = ["relu", "tanh", "sigmoid", "softmax", "gelu", "hard_sigmoid", "linear", "softplus", "silu",
        "exponential"]


@pytest.mark.parametrize("name", ACTS)
def test_activation_gradcheck(rng, name):
    x = t64(rng, 3, 5)
    assert ta.gradcheck(nn.get_activation(name), [x])


def test_activation_values(rng):
    x = rng.standard_normal((4, 6)) * 4
    f = lambda n: nn.get_activation(n)(ta.tensor(x)).numpy()  # noqa: E731
    np.testing.assert_allclose(f("hard_sigmoid"), np.clip(x / 6 + 0.5, 0, 1))
    np.testing.assert_allclose(f("softmax"), np.exp(x) / np.exp(x).sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(f("silu"), x / (1 + np.exp(-x)), rtol=1e-12)
    np.testing.assert_array_equal(f(None), x)
    assert nn.get_activation(np.tanh) is np.tanh
    with pytest.raises(ValueError, match="unknown activation 'rleu'"):
        nn.get_activation("rleu")
    np.testing.assert_allclose(nn.Activation("tanh")(ta.tensor(x)).numpy(), np.tanh(x))


# ------------------------------------------------------------------------------------------------
# Dense
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 3), (2, 1, 2, 3)])
@pytest.mark.parametrize("activation,use_bias", [(None, True), ("tanh", False), ("softmax", True)])
def test_dense_gradcheck(rng, shape, activation, use_bias):
    layer = built64(nn.Dense(5, activation=activation, use_bias=use_bias), shape, rng)
    assert ta.gradcheck(lambda x, *p: layer(x), [t64(rng, *shape)] + layer.parameters())


def test_dense_formula_shapes_dtype(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    layer = nn.Dense(5, activation="relu")
    y = layer(ta.tensor(x))
    K, b = layer.get_weights()
    assert y.shape == (2, 3, 5) and y.dtype == np.float32 and K.shape == (4, 5) and b.shape == (5,)
    np.testing.assert_allclose(y.numpy(), np.maximum(x @ K + b, 0), rtol=1e-6)
    eager = nn.Dense(5, input_dim=4)
    assert eager.built and eager.kernel.shape == (4, 5)
    with pytest.raises(ValueError, match=r"Dense: expected input \(…, 4\), got shape \(2, 3\)"):
        layer(ta.tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="units"):
        nn.Dense(0)


def test_dense_weights_roundtrip_and_state_dict(rng):
    a, b = nn.Dense(3), nn.Dense(3)
    x = ta.tensor(rng.standard_normal((2, 4)).astype(np.float32))
    a(x)
    b(x)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())
    c = nn.Dense(3)
    c(x)
    c.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), c(x).numpy())
    assert list(a.state_dict()) == ["kernel", "bias"]
    with pytest.raises(ValueError, match="does not match"):
        a.set_weights([np.zeros((5, 3)), np.zeros(3)])
    assert nn.Dense(3, use_bias=False, input_dim=2).get_weights()[0].shape == (2, 3)
    assert len(nn.Dense(3, use_bias=False, input_dim=2).get_weights()) == 1


# ------------------------------------------------------------------------------------------------
# Embedding, Dropout, Flatten, GlobalMaxPooling1D
# ------------------------------------------------------------------------------------------------
def test_embedding(rng):
    emb = nn.Embedding(6, 3, mask_zero=True)
    W = emb.get_weights()[0]
    assert W.shape == (6, 3) and np.abs(W).max() <= 0.05 and W.dtype == np.float32
    ids = np.array([[0, 2, 2], [5, 0, 1]])
    np.testing.assert_array_equal(emb(ids).numpy(), W[ids])
    np.testing.assert_array_equal(emb.compute_mask(ids).numpy(), ids != 0)
    assert nn.Embedding(6, 3).compute_mask(ids) is None
    emb.astype("float64")
    assert ta.gradcheck(lambda w: emb(ids), [emb.embeddings])
    with pytest.raises(IndexError, match="ids must lie in"):
        emb(np.array([[6]]))


def test_dropout(rng):
    ta.manual_seed(0)
    d = nn.Dropout(0.5)
    x = ta.tensor(np.ones((200, 50), np.float32))
    y = d(x).numpy()
    assert set(np.unique(y)) <= {0.0, 2.0} and 0.4 < (y == 0).mean() < 0.6 and y.dtype == np.float32
    d.eval()
    np.testing.assert_array_equal(d(x).numpy(), x.numpy())
    assert (d(x, training=True).numpy() == 0).any()
    d.train()
    np.testing.assert_array_equal(d(x, training=False).numpy(), x.numpy())
    xg = t64(rng, 4, 5)
    # the gradient uses the same mask as the forward pass: gx = gy ⊙ m/(1 − p)
    y = d(xg)
    g, = ta.grad(y.sum(), [xg])
    np.testing.assert_allclose(g.numpy(), (y.numpy() != 0) * 2.0)
    with pytest.raises(ValueError, match="rate"):
        nn.Dropout(1.0)


def test_flatten_and_pooling(rng):
    x = t64(rng, 2, 5, 3)
    assert nn.Flatten(dtype="float64")(x).shape == (2, 15)
    assert ta.gradcheck(lambda v: nn.Flatten(dtype="float64")(v), [x])
    y = nn.GlobalMaxPooling1D(dtype="float64")(x)
    np.testing.assert_array_equal(y.numpy(), x.numpy().max(axis=1))
    assert nn.GlobalMaxPooling1D(keepdims=True, dtype="float64")(x).shape == (2, 1, 3)
    assert ta.gradcheck(lambda v: nn.GlobalMaxPooling1D(dtype="float64")(v), [x])
    with pytest.raises(ValueError, match="GlobalMaxPooling1D"):
        nn.GlobalMaxPooling1D()(ta.tensor(np.zeros((2, 3))))


# ------------------------------------------------------------------------------------------------
# LayerNormalization
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("axis,shape", [(-1, (3, 5)), (-1, (2, 3, 4)), (1, (2, 3, 4)), ((1, 2), (2, 3, 4))])
def test_layer_norm_gradcheck(rng, axis, shape):
    layer = built64(nn.LayerNormalization(axis=axis), shape, rng)
    assert ta.gradcheck(lambda x, *p: layer(x), [t64(rng, *shape)] + layer.parameters(), n_directions=2)


def test_layer_norm_fn_gradgradcheck(rng):
    x, g, b = t64(rng, 3, 4), t64(rng, 1, 4), t64(rng, 1, 4)
    assert ta.gradcheck(lambda *a: LayerNormFn((1,), 1e-3)(*a), [x, g, b])
    assert ta.gradgradcheck(lambda *a: LayerNormFn((1,), 1e-3)(*a), [x, g, b])


def test_layer_norm_formula(rng):
    x = (rng.standard_normal((2, 3, 6)) * 5 + 2).astype(np.float32)
    ln = nn.LayerNormalization()
    y = ln(ta.tensor(x))
    want = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-3)
    np.testing.assert_allclose(y.numpy(), want, rtol=1e-5, atol=1e-5)
    assert y.dtype == np.float32 and [w.shape for w in ln.get_weights()] == [(6,), (6,)]
    ln2 = nn.LayerNormalization(axis=[1, 2], center=False)
    ln2(ta.tensor(x))
    assert [w.shape for w in ln2.get_weights()] == [(3, 6)]
    with pytest.raises(ValueError, match="LayerNormalization"):
        ln(ta.tensor(np.zeros((2, 3, 5), np.float32)))
    with pytest.raises(ValueError, match="out of range"):
        nn.LayerNormalization(axis=3)(ta.tensor(x))


# ------------------------------------------------------------------------------------------------
# Conv1D
# ------------------------------------------------------------------------------------------------
def _np_conv1d(x, K, b, stride, padding, dil):
    """Direct loop definition of Keras's Conv1D (channels-last), for reference."""
    k = K.shape[0]
    span = dil * (k - 1)
    T = x.shape[1]
    if padding == "causal":
        pl, pr = span, 0
    elif padding == "same":
        out = -(-T // stride)
        tot = max((out - 1) * stride + span + 1 - T, 0)
        pl, pr = tot // 2, tot - tot // 2
    else:
        pl = pr = 0
    xp = np.pad(x, ((0, 0), (pl, pr), (0, 0)))
    To = (xp.shape[1] - span - 1) // stride + 1
    y = np.zeros((x.shape[0], To, K.shape[2]))
    for t in range(To):
        for j in range(k):
            y[:, t] += xp[:, t * stride + j * dil] @ K[j]
    return y + b


@pytest.mark.parametrize("padding", ["valid", "same", "causal"])
@pytest.mark.parametrize("k,stride,dil", [(3, 1, 1), (3, 2, 1), (2, 3, 1), (3, 1, 2), (1, 1, 1)])
def test_conv1d_formula_and_gradcheck(rng, padding, k, stride, dil):
    x = rng.standard_normal((2, 7, 3))
    layer = built64(nn.Conv1D(4, k, strides=stride, padding=padding, dilation_rate=dil), x.shape, rng)
    K, b = layer.get_weights()
    assert K.shape == (k, 3, 4) and b.shape == (4,)
    np.testing.assert_allclose(layer(ta.tensor(x)).numpy(), _np_conv1d(x, K, b, stride, padding, dil),
                               rtol=1e-10, atol=1e-12)
    assert ta.gradcheck(lambda v, *p: layer(v), [t64(rng, 2, 7, 3)] + layer.parameters())


def test_im2col_double_backward(rng):
    x = t64(rng, 2, 6, 2)
    assert ta.gradgradcheck(lambda v: Im2Col1D(3, 2, 1, 1, 1)(v), [x])


def test_conv1d_errors_and_dtype(rng):
    layer = nn.Conv1D(2, 4)
    x = ta.tensor(rng.standard_normal((1, 5, 3)).astype(np.float32))
    y = layer(x)
    assert y.shape == (1, 2, 2) and y.dtype == np.float32
    with pytest.raises(ValueError, match=r"Conv1D: expected input \(B, T, 3\)"):
        layer(ta.tensor(np.zeros((1, 5, 2), np.float32)))
    with pytest.raises(ValueError, match="shorter than the kernel"):
        layer(ta.tensor(np.zeros((1, 2, 3), np.float32)))
    with pytest.raises(ValueError, match="padding"):
        nn.Conv1D(2, 3, padding="full")
    with pytest.raises(ValueError, match="Conv1D: expected input"):
        nn.Conv1D(2, 3)(ta.tensor(np.zeros((5, 3), np.float32)))
    assert nn.Conv1D(2, 3, padding="same", strides=2)(ta.tensor(np.zeros((1, 5, 3), np.float32))).shape == (1, 3, 2)


def test_layers_in_sequential(rng):
    model = nn.Sequential(nn.Conv1D(4, 3, padding="causal", activation="relu"), nn.LayerNormalization(),
                          nn.GlobalMaxPooling1D(), nn.Dense(2))
    x = ta.tensor(rng.standard_normal((2, 6, 3)).astype(np.float32))
    assert model(x).shape == (2, 2)
    assert [w.shape for w in model.get_weights()] == [(3, 3, 4), (4,), (4,), (4,), (4, 2), (2,)]


def test_layer_builds_and_runs_on_its_inputs_device(backend, rng):
    """The device of the inputs, not the global backend, decides where a layer builds; raw NumPy
    inputs then move to the layer's device (as Keras moves them)."""
    if backend != "cupy":
        pytest.skip("needs the device backend (CuPy, or the strict stand-in)")
    x = rng.standard_normal((2, 4)).astype(np.float32)
    xg = ta.tensor(x, device="gpu")
    ta.use_backend("numpy")
    layer = nn.Dense(3)
    y = layer(xg)
    assert layer.kernel.device == "gpu" and y.device == "gpu"
    ln = nn.LayerNormalization()
    assert ln(xg).device == "gpu" and ln.gamma.device == "gpu"
    np.testing.assert_allclose(layer(x).numpy(), y.numpy(), rtol=1e-6)    # NumPy input, GPU layer
    cpu = nn.Dense(3)
    assert cpu(ta.tensor(x, device="cpu")).device == "cpu" and cpu.kernel.device == "cpu"
