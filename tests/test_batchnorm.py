"""BatchNormalization: gradients (float64, random upstream gradients), statistics, buffers."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn


def _bn(x, **kw):
    layer = nn.BatchNormalization(dtype="float64", **kw)
    layer(x, training=False)                              # build
    rng = np.random.default_rng(5)
    c = layer.moving_mean.shape[0]
    layer.set_weights([rng.standard_normal(c) for _ in layer.weights()[:-1]] + [rng.uniform(0.5, 2, c)])
    return layer


@pytest.mark.parametrize("shape,axis", [((6, 3), -1), ((4, 5, 3), -1), ((2, 3, 4, 5), 1)])
@pytest.mark.parametrize("training", [True, False])
def test_gradcheck(shape, axis, training):
    x = ta.tensor(np.random.default_rng(0).standard_normal(shape), dtype=np.float64, requires_grad=True)
    layer = _bn(x, axis=axis)
    ta.gradcheck(lambda x: layer(x, training=training), [x], params=layer.parameters())
    ta.gradgradcheck(lambda x: layer(x, training=training), [x], params=layer.parameters())


def test_gradcheck_masked():
    rng = np.random.default_rng(1)
    x = ta.tensor(rng.standard_normal((3, 5, 4)), dtype=np.float64, requires_grad=True)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]], dtype=bool)
    layer = _bn(x)
    ta.gradcheck(lambda x: layer(x, training=True, mask=mask), [x], params=layer.parameters())


def test_training_statistics_and_moving_update():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((8, 6, 3)) * 3 + 1
    layer = _bn(x, momentum=0.9, epsilon=1e-3)
    g, b, mm, mv = layer.get_weights()
    y = layer(ta.tensor(x, dtype=np.float64), training=True).numpy()
    mu, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-3) * g + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.moving_mean.numpy(), 0.9 * mm + 0.1 * mu, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), 0.9 * mv + 0.1 * var, rtol=1e-12)
    # inference uses the moving statistics and leaves them alone
    mm2, mv2 = layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()
    y = layer(ta.tensor(x, dtype=np.float64), training=False).numpy()
    np.testing.assert_allclose(y, (x - mm2) / np.sqrt(mv2 + 1e-3) * g + b, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), mm2)


def test_training_none_follows_module_mode():
    x = np.random.default_rng(3).standard_normal((5, 2)).astype(np.float32)
    layer = nn.BatchNormalization()
    layer(x)                                              # train mode: updates the moving mean
    assert np.any(layer.moving_mean.numpy() != 0)
    before = layer.moving_mean.numpy().copy()
    layer.eval()
    layer(x)
    np.testing.assert_array_equal(layer.moving_mean.numpy(), before)


def test_masked_moments_match_keras_formula():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 5, 2))
    mask = rng.random((3, 5)) > 0.4
    layer = _bn(x, momentum=0.0, center=False, scale=False)
    layer(ta.tensor(x, dtype=np.float64), training=True, mask=mask)
    w = mask[..., None].astype(float)
    mu = (x * w).sum((0, 1)) / (w.sum((0, 1)) + 1e-7)
    var = (((x - mu) * w) ** 2).sum((0, 1)) / (w.sum((0, 1)) + 1e-7)
    np.testing.assert_allclose(layer.moving_mean.numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(layer.moving_variance.numpy(), var, rtol=1e-12)
    with pytest.raises(ValueError, match="one axis fewer"):
        layer(ta.tensor(x, dtype=np.float64), training=True, mask=mask[:, :, None])


def test_buffers_are_state_not_parameters(tmp_path):
    x = np.random.default_rng(5).standard_normal((4, 3)).astype(np.float32)
    model = nn.Sequential(nn.Dense(3), nn.BatchNormalization())
    model(x)
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.kernel", "0.bias", "1.gamma", "1.beta"]
    assert list(model.state_dict()) == names + ["1.moving_mean", "1.moving_variance"]
    ta.optim.Adam(model.parameters())                    # buffers never reach an optimizer
    model(x)                                             # move the statistics off their init
    path = tmp_path / "bn.npz"
    ta.save(model, path)
    other = nn.Sequential(nn.Dense(3), nn.BatchNormalization())
    other(x)
    ta.load(other, path)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)
    model.astype(np.float64)
    assert model[1].moving_variance.dtype == np.float64


def test_float64_input_cast_to_layer_dtype_and_bad_arguments():
    layer = nn.BatchNormalization()
    assert layer(np.random.default_rng(0).standard_normal((4, 3))).dtype == np.float32
    with pytest.raises(ValueError, match="shape"):
        layer(np.zeros((4, 5), np.float32))
    for kw in (dict(momentum=1.5), dict(epsilon=0.0), dict(axis=(1, 2))):
        with pytest.raises(ValueError, match="BatchNormalization"):
            nn.BatchNormalization(**kw)
    with pytest.raises(ValueError, match="axis"):
        nn.BatchNormalization(axis=3)(np.zeros((2, 3), np.float32))
