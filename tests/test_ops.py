"""Every differentiable op: forward against NumPy, backward by a float64 gradcheck with a random
upstream gradient (gradcheck draws one), on shapes that exercise broadcasting.

Run once per backend (the ``backend`` fixture: NumPy, and CuPy which skips without a GPU).
"""
import zlib

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import functions as F
from tinyattn.backend import as_numpy


def draw(rng, shape, kind="n"):
    """A float64 array: "n" standard normal, "p" positive in [0.5, 2], "a" |x| in [0.3, 1.5]."""
    if kind == "p":
        return rng.uniform(0.5, 2.0, shape)
    x = rng.standard_normal(shape)
    if kind == "a":
        return np.sign(x + (x == 0)) * rng.uniform(0.3, 1.5, shape)
    return x


def make(rng, specs):
    """Leaf Tensors (float64, requires_grad) on the current backend, and their NumPy copies."""
    arrays = [draw(rng, *s) if isinstance(s[0], tuple) else draw(rng, s) for s in specs]
    return [ta.tensor(a, requires_grad=True) for a in arrays], arrays


def n(shape, kind="n"):
    return (shape, kind)


# (id, tinyattn fn on Tensors, NumPy fn on arrays, input specs)
CASES = [
    ("add", lambda a, b: a + b, np.add, [n((3, 4)), n((4,))]),
    ("add-both-broadcast", F.add, np.add, [n((2, 1, 4)), n((3, 1))]),
    ("sub", lambda a, b: a - b, np.subtract, [n((3, 1)), n((3, 4))]),
    ("rsub-scalar", lambda a: 2.0 - a, lambda a: 2.0 - a, [n((3, 4))]),
    ("mul", lambda a, b: a * b, np.multiply, [n((2, 3, 4)), n((3, 1))]),
    ("div", lambda a, b: a / b, np.divide, [n((3, 4)), n((4,), "a")]),
    ("rdiv-scalar", lambda a: 1.5 / a, lambda a: 1.5 / a, [n((3, 4), "a")]),
    ("neg", lambda a: -a, np.negative, [n((3, 4))]),
    ("pow-int", lambda a: a ** 3, lambda a: a ** 3, [n((3, 4))]),
    ("pow-float", lambda a: F.pow(a, 1.5), lambda a: a ** 1.5, [n((3, 4), "p")]),
    ("pow-tensor", F.pow, np.power, [n((3, 4), "p"), n((4,))]),
    ("rpow", lambda a: 2.0 ** a, lambda a: 2.0 ** a, [n((3,))]),
    ("linear", F.linear, lambda x, w, b: x @ w + b, [n((2, 3, 4)), n((4, 5)), n((5,))]),
    ("linear-2d-col-bias", F.linear, lambda x, w, b: x @ w + b, [n((3, 4)), n((4, 5)), n((3, 1))]),
    ("linear-1d", F.linear, lambda x, w, b: x @ w + b, [n((4,)), n((4, 5)), n((5,))]),
    ("matmul-2d", F.matmul, np.matmul, [n((3, 4)), n((4, 5))]),
    ("matmul-batch-broadcast", lambda a, b: a @ b, np.matmul, [n((2, 1, 3, 4)), n((5, 4, 2))]),
    ("matmul-1d-1d", F.matmul, np.matmul, [n((4,)), n((4,))]),
    ("matmul-1d-nd", F.matmul, np.matmul, [n((4,)), n((2, 4, 3))]),
    ("matmul-nd-1d", F.matmul, np.matmul, [n((2, 3, 4)), n((4,))]),
    ("matmul-2d-1d", F.matmul, np.matmul, [n((3, 4)), n((4,))]),
    ("exp", F.exp, np.exp, [n((3, 4))]),
    ("log", F.log, np.log, [n((3, 4), "p")]),
    ("sqrt", F.sqrt, np.sqrt, [n((3, 4), "p")]),
    ("abs", F.abs, np.abs, [n((3, 4), "a")]),
    ("tanh", F.tanh, np.tanh, [n((3, 4))]),
    ("sigmoid", F.sigmoid, lambda a: 1 / (1 + np.exp(-a)), [n((3, 4))]),
    ("relu", F.relu, lambda a: np.maximum(a, 0), [n((3, 4), "a")]),
    ("leaky_relu", lambda a: F.leaky_relu(a, 0.2), lambda a: np.where(a > 0, a, 0.2 * a), [n((3, 4), "a")]),
    ("gelu", F.gelu, None, [n((3, 4))]),
    ("erf", F.erf, None, [n((3, 4))]),
    ("softplus", F.softplus, lambda a: np.log1p(np.exp(a)), [n((3, 4))]),
    ("clip", lambda a: F.clip(a, -0.5, 0.7), lambda a: np.clip(a, -0.5, 0.7), [n((4, 5))]),
    ("clip-lo-only", lambda a: F.clip(a, min=0.1), lambda a: np.maximum(a, 0.1), [n((4, 5))]),
    ("maximum", F.maximum, np.maximum, [n((3, 4)), n((4,))]),
    ("minimum", F.minimum, np.minimum, [n((3, 1)), n((3, 4))]),
    ("sum-all", F.sum, np.sum, [n((3, 4))]),
    ("sum-axis", lambda a: a.sum(axis=1), lambda a: a.sum(axis=1), [n((2, 3, 4))]),
    ("sum-neg-axis-keep", lambda a: a.sum(axis=-1, keepdims=True), lambda a: a.sum(-1, keepdims=True),
     [n((2, 3, 4))]),
    ("sum-tuple", lambda a: a.sum(axis=(0, 2)), lambda a: a.sum(axis=(0, 2)), [n((2, 3, 4))]),
    ("mean-all-keep", lambda a: a.mean(keepdims=True), lambda a: a.mean(keepdims=True), [n((2, 3, 4))]),
    ("mean-tuple", lambda a: a.mean(axis=(1, 2)), lambda a: a.mean(axis=(1, 2)), [n((2, 3, 4))]),
    ("var-axis", lambda a: a.var(axis=0), lambda a: a.var(axis=0), [n((5, 3))]),
    ("var-all", F.var, np.var, [n((5, 3))]),
    ("var-ddof-keep", lambda a: F.var(a, axis=-1, keepdims=True, ddof=1),
     lambda a: a.var(axis=-1, keepdims=True, ddof=1), [n((3, 5))]),
    ("max-axis", lambda a: a.max(axis=1), lambda a: a.max(axis=1), [n((3, 5))]),
    ("max-all", F.max, np.max, [n((3, 5))]),
    ("max-tuple-keep", lambda a: a.max(axis=(0, 2), keepdims=True), lambda a: a.max((0, 2), keepdims=True),
     [n((2, 3, 4))]),
    ("min-axis", lambda a: a.min(axis=-1), lambda a: a.min(axis=-1), [n((3, 5))]),
    ("min-all-keep", lambda a: a.min(keepdims=True), lambda a: a.min(keepdims=True), [n((3, 5))]),
    ("logsumexp-axis", lambda a: F.logsumexp(a, axis=1), lambda a: np.log(np.exp(a).sum(1)), [n((3, 5))]),
    ("logsumexp-all", F.logsumexp, lambda a: np.log(np.exp(a).sum()), [n((3, 5))]),
    ("logsumexp-tuple-keep", lambda a: F.logsumexp(a, axis=(0, 2), keepdims=True),
     lambda a: np.log(np.exp(a).sum((0, 2), keepdims=True)), [n((2, 3, 4))]),
    ("reshape", lambda a: a.reshape(4, -1), lambda a: a.reshape(4, -1), [n((2, 3, 4))]),
    ("transpose", lambda a: a.T, lambda a: a.T, [n((2, 3, 4))]),
    ("permute", lambda a: F.permute(a, 2, 0, 1), lambda a: a.transpose(2, 0, 1), [n((2, 3, 4))]),
    ("permute-neg", lambda a: a.transpose(-1, 0, 1), lambda a: a.transpose(2, 0, 1), [n((2, 3, 4))]),
    ("swapaxes", lambda a: a.swapaxes(0, -1), lambda a: a.swapaxes(0, -1), [n((2, 3, 4))]),
    ("expand_dims", lambda a: F.expand_dims(a, 1), lambda a: np.expand_dims(a, 1), [n((2, 3))]),
    ("squeeze-all", F.squeeze, np.squeeze, [n((2, 1, 3, 1))]),
    ("squeeze-axis", lambda a: F.squeeze(a, 1), lambda a: a.squeeze(1), [n((2, 1, 3, 1))]),
    ("broadcast_to", lambda a: F.broadcast_to(a, (2, 3, 4)), lambda a: np.broadcast_to(a, (2, 3, 4)),
     [n((3, 1))]),
    ("sum_to", lambda a: F.sum_to(a, (3, 1)), lambda a: a.sum(0).sum(-1, keepdims=True), [n((2, 3, 4))]),
    ("concat", lambda a, b, c: F.concat([a, b, c], axis=1),
     lambda a, b, c: np.concatenate([a, b, c], axis=1), [n((2, 1, 3)), n((2, 4, 3)), n((2, 2, 3))]),
    ("concat-neg-axis", lambda a, b: F.concat([a, b], axis=-1), lambda a, b: np.concatenate([a, b], -1),
     [n((2, 3)), n((2, 1))]),
    ("stack", lambda a, b: F.stack([a, b], axis=1), lambda a, b: np.stack([a, b], 1), [n((2, 3)), n((2, 3))]),
    ("stack-neg-axis", lambda a, b, c: F.stack([a, b, c], axis=-1), lambda a, b, c: np.stack([a, b, c], -1),
     [n((2, 3)), n((2, 3)), n((2, 3))]),
    ("flip", lambda a: F.flip(a, 1), lambda a: np.flip(a, 1), [n((2, 3, 4))]),
    ("flip-all", F.flip, np.flip, [n((2, 3))]),
    ("pad", lambda a: F.pad(a, ((0, 0), (1, 2))), lambda a: np.pad(a, ((0, 0), (1, 2))), [n((2, 3))]),
    ("pad-value", lambda a: F.pad(a, 1, value=3.0), lambda a: np.pad(a, 1, constant_values=3.0), [n((2, 3))]),
    ("getitem-slices", lambda a: a[1:, ::2, -1], lambda a: a[1:, ::2, -1], [n((3, 5, 4))]),
    ("getitem-int-ellipsis-none", lambda a: a[..., 1, None], lambda a: a[..., 1, None], [n((3, 5, 4))]),
    ("getitem-int-array-repeats", lambda a: a[np.array([0, 2, 2, 0, 1])],
     lambda a: a[np.array([0, 2, 2, 0, 1])], [n((3, 4))]),
    ("getitem-2-int-arrays", lambda a: a[np.array([0, 0, 2]), np.array([1, 1, 3])],
     lambda a: a[np.array([0, 0, 2]), np.array([1, 1, 3])], [n((3, 4))]),
    ("getitem-slice-and-array", lambda a: a[:, [3, 0, 3]], lambda a: a[:, [3, 0, 3]], [n((3, 4))]),
    ("getitem-bool-mask", lambda a: a[np.array([[True, False, True, True], [False, False, True, False],
                                                  [True, True, False, False]])],
     lambda a: a[np.array([[True, False, True, True], [False, False, True, False], [True, True, False, False]])],
     [n((3, 4))]),
    ("getitem-bool-rows", lambda a: a[np.array([True, False, True])], lambda a: a[np.array([True, False, True])],
     [n((3, 4))]),
    ("getitem-tensor-index", lambda a: a[ta.tensor(np.array([1, 1, 0]))], lambda a: a[np.array([1, 1, 0])],
     [n((3, 4))]),
    ("softmax", lambda a: F.softmax(a, axis=-1),
     lambda a: np.exp(a - a.max(-1, keepdims=True)) / np.exp(a - a.max(-1, keepdims=True)).sum(-1, keepdims=True),
     [n((2, 3, 5))]),
    ("softmax-axis0", lambda a: F.softmax(a, axis=0), lambda a: np.exp(a) / np.exp(a).sum(0, keepdims=True),
     [n((4, 3))]),
    ("log_softmax", lambda a: F.log_softmax(a, axis=-1),
     lambda a: a - np.log(np.exp(a).sum(-1, keepdims=True)), [n((2, 3, 5))]),
    ("log_softmax-axis1", lambda a: F.log_softmax(a, axis=1),
     lambda a: a - np.log(np.exp(a).sum(1, keepdims=True)), [n((2, 3, 5))]),
    ("where", lambda a, b: F.where(np.array([[True], [False], [True]]), a, b),
     lambda a, b: np.where(np.array([[True], [False], [True]]), a, b), [n((3, 4)), n((4,))]),
    ("flatten", F.flatten, lambda a: a.reshape(2, -1), [n((2, 3, 4))]),
]


@pytest.mark.parametrize("name,fn,ref,specs", CASES, ids=[c[0] for c in CASES])
def test_op(backend, name, fn, ref, specs):
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    xs, arrays = make(rng, specs)
    y = fn(*xs)
    assert y.dtype == np.float64
    if ref is not None:
        np.testing.assert_allclose(y.numpy(), ref(*arrays), rtol=1e-12, atol=1e-12)
    ta.gradcheck(fn, xs)


def test_gelu_erf_values():
    import math
    x = np.linspace(-3, 3, 13)
    erf = np.array([math.erf(v) for v in x])
    np.testing.assert_allclose(F.erf(ta.tensor(x)).numpy(), erf, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(F.gelu(ta.tensor(x)).numpy(), x * 0.5 * (1 + np.array(
        [math.erf(v / math.sqrt(2)) for v in x])), rtol=1e-12, atol=1e-14)


def test_split(backend):
    rng = np.random.default_rng(1)
    (x,), (a,) = make(rng, [n((2, 6, 3))])
    parts = F.split(x, 3, axis=1)
    for p, r in zip(parts, np.split(a, 3, axis=1)):
        np.testing.assert_array_equal(p.numpy(), r)
    ta.gradcheck(lambda x: F.split(x, 3, axis=1), [x])
    ta.gradcheck(lambda x: F.split(x, [1, 4], axis=-1 + 0 * 1)[1:], [x])          # uneven cuts
    ta.gradcheck(lambda x: F.split(x, [2, 5], axis=1)[0] * 2.0, [x])              # only one part used


def test_getitem_repeats_accumulate(backend):
    x = ta.tensor(np.zeros(4), requires_grad=True)
    x[np.array([1, 1, 1, 3])].sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0, 3, 0, 1])


def test_embedding(backend):
    rng = np.random.default_rng(2)
    (w,), (wa,) = make(rng, [n((6, 3))])
    ids = np.array([[0, 5, 5], [2, 0, 5]])
    y = F.embedding(ids, w)
    assert y.shape == (2, 3, 3)
    np.testing.assert_array_equal(y.numpy(), wa[ids])
    ta.gradcheck(lambda w: F.embedding(ids, w), [w])
    y = F.embedding(ta.tensor(ids), w)
    y.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy()[:, 0], [2, 0, 1, 0, 0, 3])   # repeated ids add up
    with pytest.raises(IndexError, match="embedding"):
        F.embedding(np.array([6]), w)
    with pytest.raises(TypeError, match="embedding"):
        F.embedding(np.array([0.5]), w)


def test_dropout_fixed_seed(backend):
    rng = np.random.default_rng(3)
    (x,), (a,) = make(rng, [n((4, 5))])

    def fn(x):
        ta.manual_seed(7)                  # the same mask on every call
        return F.dropout(x, 0.4, training=True)
    y = fn(x)
    kept = y.numpy() != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(y.numpy()[kept], a[kept] / 0.6, rtol=1e-12)
    ta.gradcheck(fn, [x])


def test_dropout_eval_is_identity(backend):
    x = ta.tensor(np.random.default_rng(0).standard_normal((3, 4)), requires_grad=True)
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0) is x
    with pytest.raises(ValueError, match="dropout"):
        F.dropout(x, 1.0)


def test_dropout_scale_statistics():
    ta.manual_seed(0)
    x = ta.ones(200, 200)
    y = F.dropout(x, 0.25)
    assert y.dtype == np.float32
    assert abs(float(y.numpy().mean()) - 1.0) < 0.02           # inverted dropout keeps the mean
    assert abs(float((y.numpy() == 0).mean()) - 0.25) < 0.02


def test_one_hot(backend):
    y = F.one_hot(ta.tensor(np.array([[0, 2], [1, 1]])), 3)
    assert y.dtype == np.float32 and y.shape == (2, 2, 3) and not y.requires_grad
    np.testing.assert_array_equal(y.numpy(), np.eye(3, dtype=np.float32)[[[0, 2], [1, 1]]])
    assert F.one_hot(np.array([1]), 2, dtype=np.float64).dtype == np.float64


def test_astype_gradcheck(backend):
    """float64 -> float32 -> float64 is linear: a large eps keeps float32 rounding out of the check."""
    x = ta.tensor(np.random.default_rng(4).standard_normal((3, 4)), requires_grad=True)
    fn = lambda x: F.astype(F.astype(x, np.float32), np.float64) * 3.0       # noqa: E731
    np.testing.assert_allclose(fn(x).numpy(), x.numpy().astype(np.float32) * 3.0)
    ta.gradcheck(fn, [x], eps=1e-2, atol=1e-4)


def test_astype_gradient_dtype():
    x = ta.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    y = x.astype(np.float64)
    assert y.dtype == np.float64
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 2])
    assert x.astype("float32") is x


def test_max_ties_split_gradient():
    x = ta.tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 0.5, 0.5], [0.5, 0, 0.5]])


def test_softmax_extreme_logits_stable():
    x = ta.tensor(np.array([[1000.0, 0.0, -1000.0]]), requires_grad=True)
    y = F.softmax(x)
    np.testing.assert_allclose(y.numpy(), [[1, 0, 0]], atol=1e-12)
    assert np.isfinite(F.log_softmax(x).numpy()).all()
    assert np.isfinite(F.logsumexp(x).numpy()).all() and np.isfinite(F.sigmoid(x).numpy()).all()
    assert np.isfinite(F.softplus(x).numpy()).all()


@pytest.mark.parametrize("ids,match", [([-1], r"one_hot: indices must lie in \[0, 3\) for num_classes=3, got "
                                                 r"values in \[-1, -1\]"),
                                       ([0, 3], r"got values in \[0, 3\]"),
                                       ([[2, -5]], r"got values in \[-5, 2\] \(shape \(1, 2\)\)")])
def test_one_hot_rejects_out_of_range_indices(ids, match):
    with pytest.raises(IndexError, match=match):
        F.one_hot(np.array(ids), 3)


def test_one_hot_rejects_fractional_indices_and_bad_num_classes():
    with pytest.raises(TypeError, match="one_hot: indices must be integers, got dtype float64"):
        F.one_hot(np.array([0.5]), 3)
    np.testing.assert_array_equal(F.one_hot(np.array([2.0]), 3).numpy(), [[0, 0, 1]])
    for n in (0, -2, 2.5):
        with pytest.raises(ValueError, match="num_classes must be a positive integer"):
            F.one_hot(np.array([0]), n)
    assert F.one_hot(np.zeros((0,), np.int64), 3).shape == (0, 3)


@pytest.mark.parametrize("ids", [[-1], [3], [0, 7]])
def test_embedding_rejects_out_of_range_ids(ids):
    w = ta.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    with pytest.raises(IndexError, match=r"embedding: ids must lie in \[0, 3\)"):
        F.embedding(np.array(ids), w)


@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_linear_equals_textbook_bits_and_double_backward(backend, shape, dtype):
    """F.linear (one node, the bias added in place into the product) equals x @ W + b bit for bit,
    forward and every gradient; double backward through it matches the textbook form too."""
    rng = np.random.default_rng(11)
    arrays = [rng.standard_normal(s).astype(dtype) for s in (shape, (4, 5), (5,))]
    gy = rng.standard_normal(shape[:-1] + (5,)).astype(dtype)
    outs = []
    for f in (F.linear, lambda x, w, b: x @ w + b):
        xs = [ta.tensor(a, requires_grad=True) for a in arrays]
        y = f(*xs)
        y.backward(ta.tensor(gy))
        outs.append([as_numpy(y.data)] + [as_numpy(x.grad.data) for x in xs])
    for a, b in zip(*outs):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    xs = [ta.tensor(a.astype(np.float64), requires_grad=True) for a in arrays]
    ta.gradgradcheck(F.linear, xs)
    with pytest.raises(ValueError, match="linear: bias of shape"):
        F.linear(*[ta.tensor(a) for a in arrays[:2]], ta.tensor(np.ones(3, dtype)))
    with pytest.raises(ValueError, match="linear: .* inner dimensions"):
        F.linear(ta.tensor(np.ones((2, 3), dtype)), *[ta.tensor(a) for a in arrays[1:]])
