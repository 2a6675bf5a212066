"""Losses vs keras.losses (Keras 3, TF backend), float32: values and gradients w.r.t. y_pred,
including sample weights and Keras masks (set on y_pred, as a masking layer would)."""
import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

import tinyattn as ta  # noqa: E402
from tinyattn import losses as L  # noqa: E402

B, T, K = 4, 3, 5
RTOL = ATOL = 1e-5


def _set_mask(t, mask):
    from keras.src import backend as kb
    kb.set_keras_mask(t, tf.constant(mask))


def _data(rng, kind, shape):
    if kind == "regression":
        return rng.standard_normal(shape), rng.standard_normal(shape)
    if kind == "binary":
        return (rng.random(shape) > 0.5) * 1.0, rng.uniform(0.02, 0.98, shape)
    if kind == "logits":
        return rng.random(shape), rng.standard_normal(shape) * 4
    if kind == "categorical":
        p = rng.random(shape) + 0.05
        return np.eye(shape[-1])[rng.integers(0, shape[-1], shape[:-1])], p / p.sum(-1, keepdims=True)
    if kind == "categorical_logits":
        t = rng.random(shape)
        return t / t.sum(-1, keepdims=True), rng.standard_normal(shape) * 4
    if kind == "sparse":
        p = rng.random(shape) + 0.05
        return rng.integers(0, shape[-1], shape[:-1]), p / p.sum(-1, keepdims=True)
    if kind == "sparse_logits":
        return rng.integers(0, shape[-1], shape[:-1]), rng.standard_normal(shape) * 4
    raise AssertionError(kind)


CASES = [
    ("mse", L.MeanSquaredError(), lambda: keras.losses.MeanSquaredError(), "regression"),
    ("mae", L.MeanAbsoluteError(), lambda: keras.losses.MeanAbsoluteError(), "regression"),
    ("bce", L.BinaryCrossentropy(), lambda: keras.losses.BinaryCrossentropy(), "binary"),
    ("bce_logits", L.BinaryCrossentropy(from_logits=True),
     lambda: keras.losses.BinaryCrossentropy(from_logits=True), "logits"),
    ("bce_smooth", L.BinaryCrossentropy(label_smoothing=0.1),
     lambda: keras.losses.BinaryCrossentropy(label_smoothing=0.1), "binary"),
    ("cce", L.CategoricalCrossentropy(), lambda: keras.losses.CategoricalCrossentropy(), "categorical"),
    ("cce_logits", L.CategoricalCrossentropy(from_logits=True),
     lambda: keras.losses.CategoricalCrossentropy(from_logits=True), "categorical_logits"),
    ("cce_smooth", L.CategoricalCrossentropy(label_smoothing=0.2),
     lambda: keras.losses.CategoricalCrossentropy(label_smoothing=0.2), "categorical"),
    ("scce", L.SparseCategoricalCrossentropy(), lambda: keras.losses.SparseCategoricalCrossentropy(), "sparse"),
    ("scce_logits", L.SparseCategoricalCrossentropy(from_logits=True),
     lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=True), "sparse_logits"),
]


def _keras(kloss, y_true, y_pred, sw, mask):
    p = tf.constant(y_pred)
    with tf.GradientTape() as tape:
        tape.watch(p)
        if mask is not None:
            _set_mask(p, mask)
        out = kloss(tf.constant(y_true), p, sample_weight=None if sw is None else tf.constant(sw))
    return float(out.numpy()), tape.gradient(out, p).numpy()


def _ours(loss, y_true, y_pred, sw, mask):
    p = ta.tensor(y_pred, requires_grad=True)
    out = loss(y_true, p, sample_weight=sw, mask=mask)
    out.backward()
    assert out.dtype == np.float32 and p.grad.dtype == np.float32
    return out.item(), p.grad.numpy()


@pytest.mark.parametrize("name,loss,kfactory,kind", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("weighting", ["none", "sample_weight", "mask", "both"])
@pytest.mark.parametrize("seq", [False, True], ids=["2d", "3d"])
def test_matches_keras(name, loss, kfactory, kind, weighting, seq, rng):
    shape = (B, T, K) if seq else (B, K)
    y_true, y_pred = _data(rng, kind, shape)
    y_true = y_true.astype(np.int64 if kind.startswith("sparse") else np.float32)
    y_pred = y_pred.astype(np.float32)
    lshape = shape[:-1]
    sw = rng.random(lshape).astype(np.float32) if weighting in ("sample_weight", "both") else None
    mask = None
    if weighting in ("mask", "both"):
        mask = rng.random(lshape) > 0.4
        mask.flat[0] = True
    kv, kg = _keras(kfactory(), y_true, y_pred, sw, mask)
    ov, og = _ours(loss, y_true, y_pred, sw, mask)
    np.testing.assert_allclose(ov, kv, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(og, kg, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize("fn,kfn,kind,kw", [
    (L.mse, "mean_squared_error", "regression", {}),
    (L.binary_crossentropy, "binary_crossentropy", "logits", {"from_logits": True}),
    (L.categorical_crossentropy, "categorical_crossentropy", "categorical", {}),
    (L.sparse_categorical_crossentropy, "sparse_categorical_crossentropy", "sparse_logits",
     {"from_logits": True}),
])
def test_per_sample_functions(fn, kfn, kind, kw, rng):
    """reduction='none' equals keras.losses.<function> (the unreduced per-sample losses)."""
    y_true, y_pred = _data(rng, kind, (B, T, K))
    y_pred = y_pred.astype(np.float32)
    k = getattr(keras.losses, kfn)(y_true, tf.constant(y_pred), **kw).numpy()
    np.testing.assert_allclose(fn(y_true, y_pred, reduction="none", **kw).numpy(), k, rtol=RTOL, atol=ATOL)


def test_large_logits_match_keras(rng):
    """Logits of size 1e4: finite and equal to TF's stable kernels."""
    z = (rng.choice([-1.0, 1.0], (B, K)) * 1e4 + rng.standard_normal((B, K))).astype(np.float32)
    y = (rng.random((B, K)) > 0.5).astype(np.float32)
    labels = rng.integers(0, K, B)
    for ours, theirs, t in [
        (L.BinaryCrossentropy(from_logits=True), keras.losses.BinaryCrossentropy(from_logits=True), y),
        (L.SparseCategoricalCrossentropy(from_logits=True),
         keras.losses.SparseCategoricalCrossentropy(from_logits=True), labels),
        (L.CategoricalCrossentropy(from_logits=True), keras.losses.CategoricalCrossentropy(from_logits=True),
         np.eye(K, dtype=np.float32)[labels]),
    ]:
        kv, kg = _keras(theirs, t, z, None, None)
        ov, og = _ours(ours, t, z, None, None)
        assert np.isfinite(ov) and np.isfinite(og).all()
        np.testing.assert_allclose(ov, kv, rtol=RTOL)
        np.testing.assert_allclose(og, kg, rtol=RTOL, atol=ATOL)


def test_b_vs_b1_targets_match_keras(rng):
    y = rng.standard_normal(6).astype(np.float32)
    p = rng.standard_normal((6, 1)).astype(np.float32)
    kv, kg = _keras(keras.losses.MeanSquaredError(), y, p, None, None)
    ov, og = _ours(L.MeanSquaredError(), y, p, None, None)
    np.testing.assert_allclose(ov, kv, rtol=RTOL)
    np.testing.assert_allclose(og, kg, rtol=RTOL, atol=ATOL)
