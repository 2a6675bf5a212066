"""Losses: float64 gradient checks (random upstream gradient), NumPy formulas, stability, errors."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import losses as L

B, T, K = 3, 4, 5


def _data(rng, kind, shape=(B, T, K)):
    if kind == "regression":
        return rng.standard_normal(shape), rng.standard_normal(shape)
    if kind == "binary":
        return (rng.random(shape) > 0.5).astype(np.float64), rng.uniform(0.05, 0.95, shape)
    if kind == "binary_logits":
        return rng.random(shape), rng.standard_normal(shape) * 3
    if kind == "categorical":
        p = rng.random(shape) + 0.1
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])], p / p.sum(-1, keepdims=True)
    if kind == "categorical_logits":
        t = rng.random(shape)
        return t / t.sum(-1, keepdims=True), rng.standard_normal(shape) * 3
    if kind == "sparse":
        p = rng.random(shape) + 0.1
        return rng.integers(0, shape[-1], shape[:-1]), p / p.sum(-1, keepdims=True)
    if kind == "sparse_logits":
        return rng.integers(0, shape[-1], shape[:-1]), rng.standard_normal(shape) * 3
    raise AssertionError(kind)


CASES = [
    ("mse", L.mse, "regression", {}),
    ("mae", L.mae, "regression", {}),
    ("bce", L.binary_crossentropy, "binary", {}),
    ("bce_logits", L.binary_crossentropy, "binary_logits", {"from_logits": True}),
    ("bce_smooth", L.binary_crossentropy, "binary", {"label_smoothing": 0.2}),
    ("cce", L.categorical_crossentropy, "categorical", {}),
    ("cce_logits", L.categorical_crossentropy, "categorical_logits", {"from_logits": True}),
    ("cce_smooth", L.categorical_crossentropy, "categorical_logits", {"from_logits": True,
                                                                      "label_smoothing": 0.1}),
    ("scce", L.sparse_categorical_crossentropy, "sparse", {}),
    ("scce_logits", L.sparse_categorical_crossentropy, "sparse_logits", {"from_logits": True}),
]
IDS = [c[0] for c in CASES]


@pytest.mark.parametrize("name,fn,kind,kw", CASES, ids=IDS)
@pytest.mark.parametrize("weighting", ["none", "sample_weight", "mask", "both"])
def test_gradcheck(name, fn, kind, kw, weighting, rng):
    y_true, y_pred = _data(rng, kind)
    p = ta.tensor(y_pred, dtype=np.float64, requires_grad=True)
    sw = rng.random((B, T)) if weighting in ("sample_weight", "both") else None
    mask = rng.random((B, T)) > 0.4 if weighting in ("mask", "both") else None
    ta.gradcheck(lambda p: fn(y_true, p, sample_weight=sw, mask=mask, **kw), [p])


@pytest.mark.parametrize("name,fn,kind,kw", CASES, ids=IDS)
def test_gradcheck_per_sample_and_weights(name, fn, kind, kw, rng):
    """reduction='none' (a (B, T) output, random upstream gradient) and a differentiable weight."""
    y_true, y_pred = _data(rng, kind)
    p = ta.tensor(y_pred, dtype=np.float64, requires_grad=True)
    w = ta.tensor(rng.random((B, 1)), dtype=np.float64, requires_grad=True)
    ta.gradcheck(lambda p: fn(y_true, p, reduction="none", **kw), [p])
    ta.gradcheck(lambda p, w: fn(y_true, p, sample_weight=w, **kw), [p, w])


@pytest.mark.parametrize("name,fn,kind,kw", CASES, ids=IDS)
def test_gradgradcheck(name, fn, kind, kw, rng):
    y_true, y_pred = _data(rng, kind, (2, K))
    if name == "mae":
        pytest.skip("|x| has zero second derivative almost everywhere (trivially passes)")
    p = ta.tensor(y_pred, dtype=np.float64, requires_grad=True)
    ta.gradgradcheck(lambda p: fn(y_true, p, **kw), [p])


def _np_per_sample(name, y, p):
    """Independent NumPy formulas for the per-sample losses (B, T)."""
    eps = 1e-7
    if name == "mse":
        return ((y - p) ** 2).mean(-1)
    if name == "mae":
        return np.abs(y - p).mean(-1)
    if name == "bce":
        q = np.clip(p, eps, 1 - eps)
        return -(y * np.log(q) + (1 - y) * np.log(1 - q)).mean(-1)
    if name == "bce_logits":
        return (np.maximum(p, 0) - p * y + np.log1p(np.exp(-np.abs(p)))).mean(-1)
    if name == "bce_smooth":
        return _np_per_sample("bce", y * 0.8 + 0.1, p)
    if name == "cce":
        q = np.clip(p / p.sum(-1, keepdims=True), eps, 1 - eps)
        return -(y * np.log(q)).sum(-1)
    if name in ("cce_logits", "cce_smooth"):
        if name == "cce_smooth":
            y = y * 0.9 + 0.1 / y.shape[-1]
        m = p.max(-1, keepdims=True)
        logp = p - m - np.log(np.exp(p - m).sum(-1, keepdims=True))
        return -(y * logp).sum(-1)
    if name == "scce":
        q = np.clip(p, eps, 1 - eps)
        return np.log(q.sum(-1)) - np.take_along_axis(np.log(q), y[..., None], -1)[..., 0]
    if name == "scce_logits":
        m = p.max(-1, keepdims=True)
        logp = p - m - np.log(np.exp(p - m).sum(-1, keepdims=True))
        return -np.take_along_axis(logp, y[..., None], -1)[..., 0]
    raise AssertionError(name)


@pytest.mark.parametrize("name,fn,kind,kw", CASES, ids=IDS)
def test_values_and_keras_reduction(name, fn, kind, kw, rng):
    y_true, y_pred = _data(rng, kind)
    per = _np_per_sample(name, y_true, y_pred)
    sw = rng.random((B, T))
    mask = rng.random((B, T)) > 0.4
    np.testing.assert_allclose(fn(y_true, y_pred, reduction="none", **kw).numpy(), per, rtol=1e-12)
    np.testing.assert_allclose(fn(y_true, y_pred, **kw).item(), per.mean(), rtol=1e-12)
    # weights are not normalized: sum(l * w) / size(l)
    np.testing.assert_allclose(fn(y_true, y_pred, sample_weight=sw, **kw).item(), (per * sw).sum() / per.size,
                               rtol=1e-12)
    # a mask changes the divisor to the number of valid entries
    np.testing.assert_allclose(fn(y_true, y_pred, mask=mask, **kw).item(), per[mask].sum() / mask.sum(),
                               rtol=1e-12)
    np.testing.assert_allclose(fn(y_true, y_pred, sample_weight=sw, mask=mask, **kw).item(),
                               (per * sw)[mask].sum() / mask.sum(), rtol=1e-12)
    np.testing.assert_allclose(fn(y_true, y_pred, sample_weight=sw, reduction="sum", **kw).item(),
                               (per * sw).sum(), rtol=1e-12)
    # a per-sequence weight (B,) applies to every step of (B, T) losses
    w = rng.random(B)
    np.testing.assert_allclose(fn(y_true, y_pred, sample_weight=w, **kw).item(),
                               (per * w[:, None]).mean(), rtol=1e-12)


def test_all_masked_gives_zero():
    y = np.zeros((2, 3, 1))
    out = L.mse(y, np.ones((2, 3, 1)), mask=np.zeros((2, 3), bool))
    assert out.item() == 0.0


def test_rank_rule_targets_b_vs_b1(rng):
    """(B,) targets against (B, 1) predictions, as Keras: no accidental (B, B) broadcast."""
    y = rng.standard_normal(6)
    p = rng.standard_normal((6, 1))
    np.testing.assert_allclose(L.mse(y, p).item(), ((y - p[:, 0]) ** 2).mean(), rtol=1e-12)
    yb = (y > 0).astype(np.float64)
    q = 1 / (1 + np.exp(-p))
    ref = -(yb * np.log(q[:, 0]) + (1 - yb) * np.log(1 - q[:, 0])).mean()
    np.testing.assert_allclose(L.binary_crossentropy(yb, q).item(), ref, rtol=1e-6)
    np.testing.assert_allclose(L.binary_crossentropy(yb, p, from_logits=True).item(), ref, rtol=1e-6)
    lab = rng.integers(0, 4, (6, 1))
    z = rng.standard_normal((6, 4))
    ref = L.sparse_categorical_crossentropy(lab[:, 0], z, from_logits=True).item()
    assert L.sparse_categorical_crossentropy(lab, z, from_logits=True).item() == ref


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_logits_stable_at_1e4(dtype, rng):
    z = (rng.choice([-1.0, 1.0], (4, 5)) * 1e4).astype(dtype)
    z[0, 0] = 0.0
    y = (rng.random((4, 5)) > 0.5).astype(dtype)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        p = ta.tensor(z, requires_grad=True)
        loss = L.binary_crossentropy(y, p, from_logits=True)
        loss.backward()
    assert loss.dtype == dtype and p.grad.dtype == dtype
    assert np.isfinite(loss.item()) and np.isfinite(p.grad.numpy()).all()
    sig = (z > 0).astype(np.float64)
    sig[0, 0] = 0.5
    np.testing.assert_allclose(p.grad.numpy(), (sig - y) / z.size, rtol=1e-6, atol=1e-12)
    ref = (np.maximum(z, 0) - z * y).astype(np.float64)
    ref[0, 0] = np.log(2)
    np.testing.assert_allclose(loss.item(), ref.mean(), rtol=1e-6)
    labels = rng.integers(0, 5, 4)
    onehot = np.eye(5, dtype=dtype)[labels]
    for f, t in ((L.sparse_categorical_crossentropy, labels), (L.categorical_crossentropy, onehot)):
        p = ta.tensor(z, requires_grad=True)
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            loss = f(t, p, from_logits=True)
            loss.backward()
        assert loss.dtype == dtype and np.isfinite(loss.item()) and np.isfinite(p.grad.numpy()).all()
        zz = z.astype(np.float64)
        ref = (zz.max(-1) + np.log(np.exp(zz - zz.max(-1, keepdims=True)).sum(-1)) - zz[np.arange(4), labels])
        np.testing.assert_allclose(loss.item(), ref.mean(), rtol=1e-6)


def test_probabilities_are_clipped():
    """p = 0 or 1 gives a finite loss (ε = 1e-7), not inf/nan."""
    y = np.array([[1.0, 0.0]], np.float32)
    p = np.array([[0.0, 1.0]], np.float32)
    out = L.binary_crossentropy(y, p).item()
    lo, hi = np.float32(1e-7), np.float32(1 - 1e-7)          # the clip bounds, rounded to float32
    assert out == pytest.approx(-(np.log(lo) + np.log(np.float32(1) - hi)) / 2, rel=1e-5)
    out = L.categorical_crossentropy(y, p).item()
    assert np.isfinite(out) and out > 15
    assert np.isfinite(L.sparse_categorical_crossentropy(np.array([0]), p).item())


def test_float32_stays_float32(rng):
    y_true, y_pred = _data(rng, "categorical_logits")
    for f, t in ((L.categorical_crossentropy, y_true), (L.binary_crossentropy, y_true),
                 (L.sparse_categorical_crossentropy, rng.integers(0, K, (B, T))), (L.mse, y_true)):
        p = ta.tensor(y_pred.astype(np.float32), requires_grad=True)
        out = f(t, p, sample_weight=rng.random((B, T)), mask=rng.random((B, T)) > 0.5)
        out.backward()
        assert out.dtype == np.float32 and p.grad.dtype == np.float32, f.__name__


def test_class_wrappers_and_get(rng):
    y_true, y_pred = _data(rng, "binary_logits")
    sw = rng.random((B, T))
    assert L.BinaryCrossentropy(from_logits=True)(y_true, y_pred, sample_weight=sw).item() == \
        L.binary_crossentropy(y_true, y_pred, from_logits=True, sample_weight=sw).item()
    assert L.MeanSquaredError()(y_true, y_pred).item() == L.mse(y_true, y_pred).item()
    assert L.MeanAbsoluteError(reduction="sum")(y_true, y_pred).item() == \
        L.mae(y_true, y_pred, reduction="sum").item()
    t, p = _data(rng, "sparse_logits")
    assert L.SparseCategoricalCrossentropy(from_logits=True)(t, p).item() == \
        L.sparse_categorical_crossentropy(t, p, from_logits=True).item()
    t, p = _data(rng, "categorical")
    assert L.CategoricalCrossentropy()(t, p).item() == L.categorical_crossentropy(t, p).item()
    assert isinstance(L.get("mse"), L.MeanSquaredError)
    assert isinstance(L.get("binary_crossentropy"), L.BinaryCrossentropy)
    assert isinstance(L.get("sparse_categorical_crossentropy"), L.SparseCategoricalCrossentropy)
    assert L.get(L.mse) is L.mse
    with pytest.raises(ValueError, match="unknown loss 'msee'"):
        L.get("msee")


def test_errors(rng):
    with pytest.raises(ValueError, match=r"categorical_crossentropy: y_true shape \(3, 4\) must equal"):
        L.categorical_crossentropy(np.zeros((3, 4)), np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"mse: y_true shape \(3, 4\) does not match y_pred shape \(3, 5\)"):
        L.mse(np.zeros((3, 4)), np.ones((3, 5)))
    with pytest.raises(IndexError, match=r"labels must lie in \[0, 5\), got range \[0, 7\]"):
        L.sparse_categorical_crossentropy(np.array([0, 7]), np.ones((2, 5)))
    with pytest.raises(TypeError, match="integer class labels"):
        L.sparse_categorical_crossentropy(np.array([0.5, 1.0]), np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"labels of shape \(3,\) need predictions of shape \(3,\) \+ \(K,\)"):
        L.sparse_categorical_crossentropy(np.array([0, 1, 2]), np.ones((2, 5)))
    with pytest.raises(ValueError, match=r"sample_weight of shape \(4,\) cannot be applied"):
        L.mse(np.zeros((3, 2)), np.ones((3, 2)), sample_weight=np.ones(4))
    with pytest.raises(ValueError, match="unknown reduction"):
        L.mse(np.zeros((3, 2)), np.ones((3, 2)), reduction="avg")


def test_losses_on_backend(backend, rng):
    """The loss runs on each backend's arrays (NumPy; CuPy when a GPU is present)."""
    xp = ta.backend.default_xp()
    y_true, y_pred = _data(rng, "sparse_logits")
    p = ta.Tensor(xp.asarray(y_pred.astype(np.float32)), requires_grad=True)
    out = L.sparse_categorical_crossentropy(xp.asarray(y_true), p, from_logits=True,
                                            sample_weight=xp.asarray(rng.random((B, T))),
                                            mask=xp.asarray(rng.random((B, T)) > 0.3))
    out.backward()
    assert ta.backend.get_array_module(p.grad.data) is xp
    ref = L.sparse_categorical_crossentropy(y_true, y_pred.astype(np.float32), from_logits=True).item()
    assert np.isfinite(out.item()) and np.isfinite(ref)


@pytest.mark.parametrize("name,fn,kind,kw", CASES, ids=IDS)
def test_float32_loss_on_the_device_equals_the_host(name, fn, kind, kw, backend, rng):
    """Every float32 loss, weighted and masked, runs on the device (no NumPy scalar or host array
    meets the device arrays: strict stand-in) and equals the host value; its gradient stays there."""
    y_true, y_pred = _data(rng, kind)
    y_pred = y_pred.astype(np.float32)
    sw, mask = rng.random((B, T)).astype(np.float32), rng.random((B, T)) > 0.4
    dev = "gpu" if backend == "cupy" else "cpu"
    p = ta.tensor(y_pred, device=dev, requires_grad=True)
    for reduction in ("sum_over_batch_size", "sum"):
        out = fn(ta.tensor(y_true, device=dev), p, sample_weight=ta.tensor(sw, device=dev),
                 mask=ta.tensor(mask, device=dev), reduction=reduction, **kw)
        host = fn(y_true, ta.tensor(y_pred, device="cpu"), sample_weight=sw, mask=mask, reduction=reduction, **kw)
        assert out.dtype == np.float32 and out.device == dev
        np.testing.assert_allclose(out.numpy(), host.numpy(), rtol=2e-6)
    out.backward()
    assert p.grad.device == dev and p.grad.dtype == np.float32
