"""Autograd semantics: graph walking, accumulation, memory, grad modes, dtypes, the Tensor API, errors."""
import gc
import threading
import weakref

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import functions as F
from tinyattn.autograd import Tensor


def t64(*shape, seed=0, requires_grad=True):
    return ta.tensor(np.random.default_rng(seed).standard_normal(shape), requires_grad=requires_grad)


# --- graph walking ---------------------------------------------------------------------------

def test_long_chain_no_recursion_error():
    x = ta.tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(100_000):          # y = (-1)^100000 x (unary ops: the cheapest 100k-op chain)
        y = -y
    assert y.generation == 100_000
    y.backward()
    assert x.grad.item() == 1.0
    z = x
    for _ in range(100_000):          # a chain that is never backpropagated is freed without recursion
        z = -z
    del z
    gc.collect()


def test_wide_graph_32k_terms():
    rng = np.random.default_rng(0)
    av, bv = rng.standard_normal(32_000), rng.standard_normal(32_000)
    a = [ta.tensor(v, requires_grad=True) for v in av]
    b = [ta.tensor(v, requires_grad=True) for v in bv]
    s = a[0] * b[0]
    for i in range(1, len(a)):
        s = s + a[i] * b[i]
    s.backward()
    np.testing.assert_allclose(s.item(), av @ bv, rtol=1e-9)
    np.testing.assert_array_equal([t.grad.item() for t in a], bv)
    np.testing.assert_array_equal([t.grad.item() for t in b], av)


def test_diamond_each_function_runs_once():
    x = t64(3)
    h = x.tanh()
    y = (h * 2.0 + h.exp() + h).sum()      # h feeds three consumers
    y.backward()
    hx = np.tanh(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), (2 + np.exp(hx) + 1) * (1 - hx ** 2), rtol=1e-12)


# --- accumulation ----------------------------------------------------------------------------

def test_reused_tensor_accumulates():
    x = t64(4)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    x.zero_grad()
    (x.exp() + x * 3.0).sum().backward()                                # x used in two branches
    np.testing.assert_allclose(x.grad.numpy(), np.exp(x.numpy()) + 3.0)


def test_grad_accumulates_across_backward_calls():
    x = t64(4)
    (x * 2.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 5.0))
    x.grad = None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(4, 3.0))


def test_backward_does_not_alias_user_or_grad_arrays():
    x = t64(3)
    g = np.ones(3)
    y = x + 0.0
    y.backward(g)
    x.grad.data += 1                    # changing the grad must not change g (or later grads)
    np.testing.assert_array_equal(g, np.ones(3))


def test_non_leaf_grad_only_with_retain_grad():
    x = t64(3)
    h = x * 2.0
    k = (x * 3.0).retain_grad()
    (h * k).sum().backward()
    assert h.grad is None and h.creator is not None
    np.testing.assert_allclose(k.grad.numpy(), 2 * x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), 12 * x.numpy())


def test_backward_with_explicit_grad():
    x = t64(2, 3)
    g = np.random.default_rng(1).standard_normal((2, 3))
    (x * 3.0).backward(g)
    np.testing.assert_allclose(x.grad.numpy(), 3 * g)
    with pytest.raises(ValueError, match="grad has shape"):
        (x * 3.0).backward(np.ones(3))


# --- memory ----------------------------------------------------------------------------------

def test_graph_freed_with_its_output():
    x = t64(3)
    h = x.tanh()
    fn_ref, h_ref = weakref.ref(h.creator), weakref.ref(h)
    y = (h * 2.0).sum()
    del h
    assert h_ref() is not None          # y's graph keeps the intermediate alive
    del y
    assert h_ref() is None and fn_ref() is None     # by reference counting, without gc.collect()


def test_graph_freed_after_backward_buffers():
    x = t64(3)
    h = x * 2.0
    y = (h * h).sum()
    y.backward()
    assert h.creator._inputs is None    # buffers released by backward
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_retain_graph_allows_second_backward():
    x = t64(3)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 4 * x.numpy())


# --- higher order ----------------------------------------------------------------------------

def test_create_graph_second_derivative():
    x = t64(5)
    y = (x ** 3).sum()
    gx, = ta.grad(y, [x], create_graph=True)
    np.testing.assert_allclose(gx.numpy(), 3 * x.numpy() ** 2)
    assert gx.requires_grad
    gx.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * x.numpy())


def test_create_graph_via_backward():
    x = t64(4)
    (x.tanh()).sum().backward(create_graph=True)
    g = x.grad
    assert g.requires_grad
    x.grad = None
    g.sum().backward()
    th = np.tanh(x.numpy())
    np.testing.assert_allclose(x.grad.numpy(), -2 * th * (1 - th ** 2), rtol=1e-12)


def test_third_derivative():
    x = ta.tensor(np.array([0.3, -1.2]), requires_grad=True)
    g1, = ta.grad((x ** 4).sum(), [x], create_graph=True)
    g2, = ta.grad(g1.sum(), [x], create_graph=True)
    g3, = ta.grad(g2.sum(), [x])
    np.testing.assert_allclose(g3.numpy(), 24 * x.numpy())


def test_grad_does_not_touch_dot_grad():
    x, w = t64(3), t64(3, seed=1)
    gx, gw = ta.grad((x * w).sum(), [x, w])
    assert x.grad is None and w.grad is None
    np.testing.assert_allclose(gx.numpy(), w.numpy())
    np.testing.assert_allclose(gw.numpy(), x.numpy())
    h = x * 2.0
    gh, = ta.grad((h * h).sum(), [h])              # gradient of an intermediate
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    unused = t64(2)
    assert ta.grad((x * 2.0).sum(), [unused])[0] is None
    with pytest.raises(RuntimeError, match="not used"):
        ta.grad((x * 2.0).sum(), [unused], allow_unused=False)
    y = x * 2.0
    g, = ta.grad(y, [x], grad_outputs=[np.arange(3.0)])
    np.testing.assert_allclose(g.numpy(), 2 * np.arange(3.0))


# --- grad modes ------------------------------------------------------------------------------

def test_no_grad_builds_no_graph():
    x = t64(3)
    with ta.no_grad():
        y = x * 2.0
        assert not ta.is_grad_enabled()
    assert ta.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.sum().backward()


def test_enable_grad_inside_no_grad():
    x = t64(3)
    with ta.no_grad():
        with ta.enable_grad():
            y = x * 2.0
        z = x * 2.0
    assert y.requires_grad and y.creator is not None
    assert z.creator is None


def test_no_grad_is_thread_local():
    x = t64(3)
    inside, release = threading.Event(), threading.Event()
    seen = {}

    def worker():
        with ta.no_grad():
            inside.set()
            release.wait(10)
            seen["worker"] = (x * 2.0).requires_grad

    th = threading.Thread(target=worker)
    th.start()
    inside.wait(10)
    seen["main"] = (x * 2.0).requires_grad       # the main thread still records while the worker doesn't
    release.set()
    th.join()
    assert seen == {"main": True, "worker": False}


def test_no_grad_restored_after_exception():
    with pytest.raises(ZeroDivisionError):
        with ta.no_grad():
            1 / 0
    assert ta.is_grad_enabled()


# --- dtypes ----------------------------------------------------------------------------------

F32_OPS = [
    lambda x, w: x + 1, lambda x, w: 2 - x, lambda x, w: x * 0.5, lambda x, w: 3 / (x * x + 1),
    lambda x, w: x / 2, lambda x, w: -x, lambda x, w: x ** 2, lambda x, w: abs(x) ** 1.5,
    lambda x, w: 2.0 ** x, lambda x, w: x @ w, lambda x, w: x.exp(), lambda x, w: (x * x + 1).log(),
    lambda x, w: (x * x + 1).sqrt(), lambda x, w: abs(x), lambda x, w: x.tanh(), lambda x, w: x.sigmoid(),
    lambda x, w: x.relu(), lambda x, w: F.leaky_relu(x, 0.1), lambda x, w: F.gelu(x), lambda x, w: F.erf(x),
    lambda x, w: F.softplus(x), lambda x, w: F.clip(x, -0.5, 0.5), lambda x, w: F.maximum(x, 0.1),
    lambda x, w: F.minimum(x, 0.1), lambda x, w: F.where(x > 0, x, 0.5), lambda x, w: x.sum(),
    lambda x, w: x.mean(axis=0), lambda x, w: x.var(axis=1), lambda x, w: x.max(), lambda x, w: x.min(axis=0),
    lambda x, w: F.logsumexp(x, axis=1), lambda x, w: x.reshape(-1), lambda x, w: x.T,
    lambda x, w: F.expand_dims(x, 0).squeeze(0), lambda x, w: F.broadcast_to(x, (2, 3, 4)),
    lambda x, w: F.concat([x, x], 0), lambda x, w: F.stack([x, x], 0), lambda x, w: F.split(x, 3, axis=0)[1],
    lambda x, w: F.flip(x, 0), lambda x, w: F.pad(x, 1, value=1.0), lambda x, w: x[np.array([0, 0])],
    lambda x, w: x[x.data > 0], lambda x, w: F.softmax(x), lambda x, w: F.log_softmax(x),
    lambda x, w: F.dropout(x, 0.5), lambda x, w: F.embedding(np.array([1, 2]), x),
    lambda x, w: x.mean() * 1e-3 + np.float64(2.0) * x.sum() + 7,
]


@pytest.mark.parametrize("i", range(len(F32_OPS)))
def test_float32_stays_float32(i):
    x = ta.tensor(np.random.default_rng(i).standard_normal((3, 4)).astype(np.float32), requires_grad=True)
    w = ta.tensor(np.ones((4, 2), np.float32), requires_grad=True)
    y = F32_OPS[i](x, w)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32
    assert w.grad is None or w.grad.dtype == np.float32


def test_python_scalars_make_float32():
    assert ta.tensor(1.5).dtype == np.float32
    assert ta.tensor([1.0, 2.0]).dtype == np.float32
    assert ta.tensor(np.ones(2)).dtype == np.float64            # arrays keep their dtype
    assert ta.tensor([1, 2]).dtype.kind == "i"
    assert ta.tensor([1.0], dtype=np.float64).dtype == np.float64


def test_float_dtype_mix_is_an_error():
    a = ta.tensor(np.ones(3, np.float32))
    b = ta.tensor(np.ones(3, np.float64))
    with pytest.raises(TypeError, match=r"mul: dtype mix float32, float64.*astype"):
        a * b


# --- the Tensor API --------------------------------------------------------------------------

def test_tensor_api():
    x = ta.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    assert x.shape == (2, 2) and x.ndim == 2 and x.dtype == np.float32 and x.device == ("gpu" if ta.get_backend() == "cupy" else "cpu")
    assert x.is_leaf and len(x) == 2
    n = x.numpy()
    assert isinstance(n, np.ndarray)
    n[0, 0] = 100
    assert x.data[0, 0] == 1.0                       # numpy() is a copy
    assert ta.tensor(np.array(2.5)).item() == 2.5
    d = (x * 2.0).detach()
    assert d.creator is None and not d.requires_grad and d.is_leaf
    assert x.to(x.device) is x
    assert "requires_grad=True" in repr(x)
    with pytest.raises(ValueError, match="unknown device"):
        x.to("tpu")


@pytest.mark.not_strict("a host ndarray meeting a Tensor is the subject (host-only dispatch)")
def test_ndarray_op_tensor_dispatches_to_tensor():
    x = t64(3)
    a = np.arange(3.0)
    for y in (a + x, a - x, a * x, a / (x * x + 1), a @ x):
        assert isinstance(y, Tensor) and y.requires_grad
    (a * x).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), a)
    np.testing.assert_allclose((a - x).numpy(), a - x.numpy())


def test_comparisons_have_no_grad():
    x = t64(4)
    for c in (x > 0, x < 0.5, x >= x, x <= 1, x == x, x != 0):
        assert isinstance(c, Tensor) and c.dtype == bool and not c.requires_grad and c.creator is None
    np.testing.assert_array_equal((x > 0).numpy(), x.numpy() > 0)


def test_factories():
    ta.manual_seed(0)
    assert ta.zeros(2, 3).shape == (2, 3) and ta.ones((2,)).dtype == np.float32
    assert ta.randn(3, dtype=np.float64).dtype == np.float64
    assert ta.zeros_like(t64(2)).dtype == np.float64


# --- errors ----------------------------------------------------------------------------------

def test_matmul_shape_error_message():
    with pytest.raises(ValueError) as err:
        ta.tensor(np.ones((3, 4))) @ ta.tensor(np.ones((5, 2)))
    assert str(err.value) == "matmul: (3, 4) @ (5, 2): inner dimensions 4 and 5 differ"
    with pytest.raises(ValueError, match=r"matmul: \(4,\) @ \(3,\): inner dimensions 4 and 3 differ"):
        F.matmul(t64(4), t64(3))
    with pytest.raises(ValueError, match="at least 1-D"):
        F.matmul(ta.tensor(np.array(2.0)), t64(3))


@pytest.mark.parametrize("op,name", [(F.add, "add"), (F.sub, "sub"), (F.mul, "mul"), (F.div, "div"),
                                     (F.maximum, "maximum"), (F.minimum, "minimum"), (F.pow, "pow")])
def test_broadcast_error_names_op_and_shapes(op, name):
    with pytest.raises(ValueError) as err:
        op(t64(3, 4), t64(5))
    msg = str(err.value)
    assert msg.startswith(f"{name}: shapes (3, 4) and (5,) cannot be broadcast") and "\n" not in msg


def test_broadcast_error_in_where_and_broadcast_to():
    with pytest.raises(ValueError, match=r"where: shapes \(3, 4\) and \(5,\)"):
        F.where(np.ones((3, 4), bool), t64(3, 4), t64(5))
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast shape \(3,\) to \(2, 4\)"):
        F.broadcast_to(t64(3), (2, 4))


def test_concat_stack_shape_errors():
    with pytest.raises(ValueError, match=r"concat: shapes \[\(2, 3\), \(2, 4\)\] differ outside axis 0"):
        F.concat([t64(2, 3), t64(2, 4)], axis=0)
    with pytest.raises(ValueError, match=r"stack: all inputs must have one shape"):
        F.stack([t64(2, 3), t64(3, 2)])


def test_non_float_requires_grad_error():
    with pytest.raises(TypeError, match="only floating-point tensors can require grad.*astype"):
        ta.tensor([1, 2, 3], requires_grad=True)


def test_backward_non_scalar_error():
    with pytest.raises(RuntimeError, match=r"output has shape \(3,\), not a scalar.*grad="):
        (t64(3) * 2.0).backward()
    with pytest.raises(RuntimeError, match="not a scalar"):
        ta.grad(t64(3) * 2.0, [t64(3)])


def test_leaf_grads_never_share_memory():
    """y = a + b sends one gy to both; a transpose sends a view: each leaf must own its .grad."""
    a, b, c = t64(3, 2), t64(3, 2, seed=1), t64(2, 3, seed=2)
    (a + b + c.T).sum().backward()
    a.grad.data *= 0                    # e.g. an optimizer's in-place gradient clipping
    np.testing.assert_array_equal(b.grad.numpy(), np.ones((3, 2)))
    np.testing.assert_array_equal(c.grad.numpy(), np.ones((2, 3)))
    leaf = t64(3)
    g = np.ones(3)
    leaf.backward(g)
    leaf.grad.data += 1
    np.testing.assert_array_equal(g, np.ones(3))


def test_truth_value_like_numpy():
    assert bool(ta.tensor(np.array(1.0))) and not bool(ta.tensor(np.array([0.0])))
    assert (ta.tensor(np.array(2.0)) > 1).item() is True
    with pytest.raises(ValueError, match="ambiguous"):
        bool(ta.tensor(np.ones(3)) == ta.tensor(np.zeros(3)))
    a = ta.tensor(np.ones(3))
    assert a in [a] and a in {a}                               # identity, not elementwise ==


def test_root_gradient_takes_the_output_dtype():
    x = ta.tensor(np.ones(3, np.float32), requires_grad=True)
    (x * 2.0).backward(np.ones(3))                      # a float64 upstream gradient
    assert x.grad.dtype == np.float32
    x.grad = None
    (x * 2.0).backward([1.0, 2.0, 3.0])                 # a list
    np.testing.assert_array_equal(x.grad.numpy(), [2, 4, 6])
    g, = ta.grad(x * 2.0, [x], grad_outputs=[np.ones(3)])
    assert g.dtype == np.float32
    g, = ta.grad(x * 2.0, [x], grad_outputs=[ta.tensor(np.ones(3))])
    assert g.dtype == np.float32
