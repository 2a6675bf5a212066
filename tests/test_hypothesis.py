"""Property tests: elementwise ops on hypothesis-drawn broadcastable shapes.

Forward against NumPy, backward by gradcheck (float64, random upstream gradient). Examples are kept
few (the shapes are small) so the file runs in seconds.
"""
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402
from hypothesis.extra.numpy import mutually_broadcastable_shapes  # noqa: E402

import tinyattn as ta  # noqa: E402
from tinyattn import functions as F  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes2 = mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, min_side=1, max_side=3)
shapes1 = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
seeds = st.integers(0, 2**31 - 1)


def draw(seed, shape, kind):
    rng = np.random.default_rng(seed)
    if kind == "p":
        return rng.uniform(0.5, 2.0, shape)
    x = rng.standard_normal(shape)
    if kind == "a":                     # away from 0 (abs, relu kinks; safe divisors)
        return np.where(x >= 0, 1.0, -1.0) * rng.uniform(0.3, 1.5, shape)
    return x


BINARY = {
    "add": (F.add, np.add, "n", "n"),
    "sub": (F.sub, np.subtract, "n", "n"),
    "mul": (F.mul, np.multiply, "n", "n"),
    "div": (F.div, np.divide, "n", "a"),
    "pow": (F.pow, np.power, "p", "n"),
    "maximum": (F.maximum, np.maximum, "n", "n"),
    "minimum": (F.minimum, np.minimum, "n", "n"),
    "where": (lambda a, b: F.where((a * b).data > 0, a, b), lambda a, b: np.where(a * b > 0, a, b), "n", "n"),
}

UNARY = {
    "neg": (F.neg, np.negative, "n"),
    "exp": (F.exp, np.exp, "n"),
    "log": (F.log, np.log, "p"),
    "sqrt": (F.sqrt, np.sqrt, "p"),
    "abs": (F.abs, np.abs, "a"),
    "tanh": (F.tanh, np.tanh, "n"),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), "n"),
    "relu": (F.relu, lambda x: np.maximum(x, 0), "a"),
    "leaky_relu": (lambda x: F.leaky_relu(x, 0.3), lambda x: np.where(x > 0, x, 0.3 * x), "a"),
    "softplus": (F.softplus, lambda x: np.logaddexp(0, x), "n"),
    "gelu": (F.gelu, None, "n"),
    "pow-scalar": (lambda x: x ** 3, lambda x: x ** 3, "n"),
    "clip": (lambda x: F.clip(x, -0.5, 0.5), lambda x: np.clip(x, -0.5, 0.5), "n"),
}


@pytest.mark.parametrize("name", sorted(BINARY))
@SETTINGS
@given(shapes=shapes2, seed=seeds)
def test_binary_broadcast(name, shapes, seed):
    fn, ref, ka, kb = BINARY[name]
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a_np, b_np = draw(seed, sa, ka), draw(seed + 1, sb, kb)
    a, b = ta.tensor(a_np, requires_grad=True), ta.tensor(b_np, requires_grad=True)
    y = fn(a, b)
    assert y.shape == out and y.dtype == np.float64
    np.testing.assert_allclose(y.numpy(), ref(a_np, b_np), rtol=1e-12, atol=1e-12)
    ta.gradcheck(fn, [a, b], seed=seed)


@pytest.mark.parametrize("name", sorted(UNARY))
@SETTINGS
@given(shape=shapes1, seed=seeds)
def test_unary(name, shape, seed):
    fn, ref, kind = UNARY[name]
    x_np = draw(seed, shape, kind)
    x = ta.tensor(x_np, requires_grad=True)
    y = fn(x)
    assert y.shape == x_np.shape and y.dtype == np.float64
    if ref is not None:
        np.testing.assert_allclose(y.numpy(), ref(x_np), rtol=1e-12, atol=1e-12)
    ta.gradcheck(fn, [x], seed=seed)


@SETTINGS
@given(shapes=mutually_broadcastable_shapes(min_dims=0, max_dims=2, max_side=3,
                                             signature=np.matmul.signature), seed=seeds)
def test_matmul_shapes(shapes, seed):
    (sa, sb), out = shapes.input_shapes, shapes.result_shape
    a_np, b_np = draw(seed, sa, "n"), draw(seed + 1, sb, "n")
    a, b = ta.tensor(a_np, requires_grad=True), ta.tensor(b_np, requires_grad=True)
    y = a @ b
    assert y.shape == out
    np.testing.assert_allclose(y.numpy(), a_np @ b_np, rtol=1e-12, atol=1e-12)
    ta.gradcheck(F.matmul, [a, b], seed=seed)


@SETTINGS
@given(shape=st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), seed=seeds,
       data=st.data())
def test_reductions(shape, seed, data):
    axis = data.draw(st.one_of(st.none(), st.integers(-len(shape), len(shape) - 1),
                               st.lists(st.integers(0, len(shape) - 1), min_size=1, unique=True).map(tuple)))
    keepdims = data.draw(st.booleans())
    x_np = draw(seed, shape, "n")
    x = ta.tensor(x_np, requires_grad=True)
    for fn, ref in ((F.sum, np.sum), (F.mean, np.mean), (F.max, np.max), (F.var, np.var),
                    (F.logsumexp, lambda a, axis, keepdims: np.log(np.exp(a).sum(axis=axis, keepdims=keepdims)))):
        y = fn(x, axis=axis, keepdims=keepdims)
        np.testing.assert_allclose(y.numpy(), ref(x_np, axis=axis, keepdims=keepdims), rtol=1e-12, atol=1e-12)
        ta.gradcheck(lambda x: fn(x, axis=axis, keepdims=keepdims), [x], seed=seed)
