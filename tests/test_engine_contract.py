"""The engine's contract (issue 7): dtypes, NaN and tie conventions, pow at 0, the version counter,
deterministic backward order, and tensor()/as_tensor()/from_numpy() memory semantics.

Expected values are PyTorch 2.13's (checked live against torch in tests/reference/test_torch_engine.py).
"""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import functions as F
from tinyattn import optim
from tinyattn.functions.arith import Mul

nan, inf = np.nan, np.inf


# --- dtypes -------------------------------------------------------------------------------------

INT_SCALAR = [                        # (expression on an int64 tensor i, PyTorch's result dtype)
    ("i * 2.5", lambda i: i * 2.5, np.float32),
    ("2.5 * i", lambda i: 2.5 * i, np.float32),
    ("i + 0.5", lambda i: i + 0.5, np.float32),
    ("0.5 + i", lambda i: 0.5 + i, np.float32),
    ("i - 0.5", lambda i: i - 0.5, np.float32),
    ("0.5 - i", lambda i: 0.5 - i, np.float32),
    ("i / 2", lambda i: i / 2, np.float32),
    ("i / 2.0", lambda i: i / 2.0, np.float32),
    ("2 / i", lambda i: 2 / i, np.float32),
    ("i / i", lambda i: i / i, np.float32),
    ("i ** 0.5", lambda i: i ** 0.5, np.float32),
    ("2.0 ** i", lambda i: 2.0 ** i, np.float32),
    ("i * np.float64(2.5)", lambda i: i * np.float64(2.5), np.float32),
    ("np.float64(2.5) * i", lambda i: np.float64(2.5) * i, np.float32),
    ("maximum(i, 0.5)", lambda i: F.maximum(i, 0.5), np.float32),
    ("i * 2", lambda i: i * 2, np.int64),
    ("i + 1", lambda i: i + 1, np.int64),
    ("i ** 2", lambda i: i ** 2, np.int64),
    ("2 ** i", lambda i: 2 ** i, np.int64),
    ("-i", lambda i: -i, np.int64),
]


@pytest.mark.parametrize("name,fn,dtype", INT_SCALAR, ids=[c[0] for c in INT_SCALAR])
def test_int_tensor_with_python_scalar_follows_pytorch_dtypes(name, fn, dtype):
    i = ta.tensor(np.array([1, 2, 3], np.int64))
    y = fn(i)
    assert y.dtype == dtype, f"{name}: {y.dtype}"
    ref = fn(np.array([1, 2, 3], np.int64))       # NumPy's values (in float64 where it promotes)
    np.testing.assert_allclose(y.numpy(), np.asarray(ref, np.float64), rtol=1e-6)


def test_raw_ops_still_refuse_a_float32_float64_mix():
    a = ta.tensor(np.ones(3, np.float32))
    b = ta.tensor(np.ones(3, np.float64))
    with pytest.raises(TypeError, match=r"mul: dtype mix float32, float64; cast one side"):
        a * b


def test_tensor_copies_its_input():
    a = np.ones(3, np.float32)
    t = ta.tensor(a)
    a[0] = 5
    assert t.numpy()[0] == 1
    assert t.device == "gpu" or not np.shares_memory(t.data, a)   # (a device array never shares host memory)
    u = ta.tensor(t)                                     # from a Tensor: a copy too (torch.tensor)
    assert not np.shares_memory(u.data, t.data)
    assert ta.tensor(a, dtype=np.float64).dtype == np.float64


def test_as_tensor_and_from_numpy_share_memory():
    a = np.zeros(4, np.float32)
    t, f = ta.as_tensor(a), ta.from_numpy(a)
    a[1] = 7.0
    assert t.numpy()[1] == 7.0 and f.numpy()[1] == 7.0
    f.data[2] = 3.0
    assert a[2] == 3.0
    assert ta.as_tensor(t) is t
    c = ta.as_tensor(a, dtype=np.float64)                # another dtype: a converted copy
    assert c.dtype == np.float64 and not np.shares_memory(c.data, a)
    assert ta.as_tensor([1.0, 2.0]).dtype == np.float32
    assert ta.as_tensor([1, 2]).dtype == np.int64
    with pytest.raises(TypeError, match="from_numpy: expected a numpy.ndarray, got list"):
        ta.from_numpy([1.0, 2.0])


OPTIMIZERS = [
    (optim.SGD, dict(lr=1e-2, momentum=0.9, dampening=0.1, weight_decay=0.1)),
    (optim.SGD, dict(lr=1e-2, momentum=0.9, nesterov=True, weight_decay=0.1)),
    (optim.RMSprop, dict(lr=1e-2, alpha=0.9, eps=1e-8, weight_decay=0.1, momentum=0.5, centered=True)),
    (optim.Adam, dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, amsgrad=True)),
    (optim.AdamW, dict(lr=1e-3, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1)),
]


def _f64(v):
    if isinstance(v, tuple):
        return tuple(np.float64(x) for x in v)
    return v if isinstance(v, bool) else np.float64(v)


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", "-"))
def test_numpy_float64_hyperparameters_keep_float32_parameters_and_state(cls, kw):
    """np.float64 is strong in NumPy 2: left as is, ``g + wd * p`` and ``lr * g`` become float64."""
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal(5).astype(np.float32)
    p = ta.tensor(w0, requires_grad=True)
    q = ta.tensor(w0, requires_grad=True)
    opt = cls([p], **{k: _f64(v) for k, v in kw.items()})
    ref = cls([q], **kw)
    for _ in range(3):
        g = rng.standard_normal(5).astype(np.float32)
        p.grad, q.grad = ta.tensor(g), ta.tensor(g)
        opt.step()
        ref.step()
    assert p.dtype == np.float32
    for k, v in opt.state[id(p)].items():
        if hasattr(v, "dtype"):
            assert v.dtype == np.float32, k
    np.testing.assert_array_equal(p.numpy(), q.numpy())      # the same float32 arithmetic


@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", "-"))
@pytest.mark.parametrize("lr", [nan, inf, -1e-3])
def test_invalid_learning_rates_are_refused(cls, kw, lr):
    p = ta.tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match=rf"{cls.__name__}: invalid learning rate {lr}"):
        cls([p], **dict(kw, lr=lr))
    opt = cls([p], **kw)
    with pytest.raises(ValueError, match="invalid learning rate"):
        opt.lr = lr
    opt.param_groups[0]["lr"] = lr                      # written behind its back (a scheduler)
    p.grad = ta.tensor(np.ones(2, np.float32))
    if lr < 0:
        return                                          # finite: step() cannot tell it from a schedule
    with pytest.raises(ValueError, match="hyper-parameter 'lr' is"):
        opt.step()
    np.testing.assert_array_equal(p.numpy(), [1, 1])


@pytest.mark.parametrize("kw", [dict(momentum=nan), dict(weight_decay=nan), dict(weight_decay=inf),
                                dict(dampening=nan)])
def test_invalid_sgd_options_are_refused(kw):
    p = ta.tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="SGD: invalid"):
        optim.SGD([p], lr=0.1, **kw)


def test_invalid_adam_eps_and_betas_are_refused():
    p = ta.tensor(np.ones(2, np.float32), requires_grad=True)
    with pytest.raises(ValueError, match="Adam: invalid eps"):
        optim.Adam([p], eps=nan)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([p], betas=(nan, 0.9))


# --- NaN, ties, pow at 0 ---------------------------------------------------------------------

def _grad(fn, *vals):
    xs = [ta.tensor(np.array(v, np.float64), requires_grad=True) for v in vals]
    y = fn(*xs)
    y.sum().backward()
    return (y.numpy(), *[x.grad.numpy() for x in xs])


def test_relu_keeps_nan_and_sends_its_gradient_through():
    y, g = _grad(F.relu, [nan, -1.0, 2.0, -inf, 0.0])
    np.testing.assert_array_equal(y, [nan, 0, 2, 0, 0])
    np.testing.assert_array_equal(g, [1, 0, 1, 0, 0])       # PyTorch: NaN > 0 is not "off"


@pytest.mark.parametrize("fn,y_ref", [(F.maximum, [nan, 0, 2]), (F.minimum, [nan, -1, 0])])
def test_maximum_minimum_with_zero_keep_nan(fn, y_ref):
    x = ta.tensor(np.array([nan, -1.0, 2.0]))
    np.testing.assert_array_equal(fn(x, 0.0).numpy(), y_ref)
    np.testing.assert_array_equal(fn(0.0, x).numpy(), y_ref)


def test_maximum_minimum_ties_and_nan_gradients_follow_pytorch():
    a, b = [1.0, 2.0, 3.0, nan, 1.0], [1.0, 1.0, 4.0, 0.0, nan]
    y, ga, gb = _grad(F.maximum, a, b)
    np.testing.assert_array_equal(y, [1, 2, 4, nan, nan])
    np.testing.assert_array_equal(ga, [0.5, 1, 0, 1, 1])
    np.testing.assert_array_equal(gb, [0.5, 0, 1, 1, 1])
    y, ga, gb = _grad(F.minimum, a, b)
    np.testing.assert_array_equal(y, [1, 1, 3, nan, nan])
    np.testing.assert_array_equal(ga, [0.5, 0, 1, 1, 1])
    np.testing.assert_array_equal(gb, [0.5, 1, 0, 1, 1])


def test_max_min_reductions_ties_and_nan_follow_pytorch_amax():
    y, g = _grad(lambda x: x.max(axis=1), [[3.0, 1.0, 3.0], [1.0, nan, 3.0]])
    np.testing.assert_array_equal(y, [3, nan])
    np.testing.assert_array_equal(g, [[0.5, 0, 0.5], [nan, nan, nan]])
    y, g = _grad(lambda x: x.min(axis=0), [[1.0, 2.0], [1.0, nan]])
    np.testing.assert_array_equal(y, [1, nan])
    np.testing.assert_array_equal(g, [[0.5, nan], [0.5, nan]])
    assert "NaN" in F.max.__doc__ and "Ties" in F.max.__doc__
    assert "NaN" in F.maximum.__doc__ and "ties" in F.maximum.__doc__


@pytest.mark.parametrize("c,g", [(2, 0.0), (0.5, inf), (0, 0.0), (-1, -inf), (1.5, 0.0), (1, 1.0)])
def test_pow_scalar_gradient_at_zero_follows_pytorch(c, g):
    with np.errstate(divide="ignore", invalid="ignore"):
        _, gx = _grad(lambda x: x ** c, [0.0])
    np.testing.assert_array_equal(gx, [g])


def test_pow_tensor_gradients_at_zero_follow_pytorch():
    with np.errstate(divide="ignore", invalid="ignore"):
        _, ga, gb = _grad(F.pow, [0.0, 0.0, 2.0], [0.0, 2.0, 0.0])
        np.testing.assert_array_equal(ga, [0, 0, 0])
        np.testing.assert_allclose(gb, [0, 0, np.log(2.0)])
        _, ga, gb = _grad(F.pow, [0.0], [-1.0])
    np.testing.assert_array_equal(ga, [-inf])
    np.testing.assert_array_equal(gb, [-inf])


def test_pow_at_zero_still_has_a_second_derivative():
    x = ta.tensor(np.array([0.5, 1.5]), requires_grad=True)
    b = ta.tensor(np.array([0.0, 2.0]), requires_grad=True)
    assert ta.gradgradcheck(F.pow, [x, b])


# --- version counter ----------------------------------------------------------------------------

@pytest.mark.parametrize("cls,kw", OPTIMIZERS, ids=lambda v: getattr(v, "__name__", "-"))
def test_optimizer_step_bumps_versions_and_stale_backward_raises(cls, kw):
    w = ta.tensor(np.ones(3, np.float32), requires_grad=True)
    unused = ta.tensor(np.ones(3, np.float32), requires_grad=True)
    opt = cls([w, unused], **kw)
    loss = (w * w).sum()
    loss.backward(retain_graph=True)
    assert w.version == 0
    opt.step()
    assert w.version == 1 and unused.version == 0           # no gradient: not touched, not bumped
    with pytest.raises(RuntimeError, match=r"an input of Mul .* was modified in place after Mul used it "
                                           r"\(it is now at version 1\).*before optimizer.step"):
        loss.backward()
    opt.zero_grad()
    (w * w).sum().backward()                                 # a fresh graph is fine
    assert w.grad is not None


def test_bump_version_after_writing_into_data():
    x = ta.tensor(np.ones(3), requires_grad=True)
    y = (x.exp() * 2).sum()
    x.data[0] = 5.0
    x.bump_version()
    with pytest.raises(RuntimeError, match="Exp"):
        y.backward()


# --- determinism --------------------------------------------------------------------------------

class _Logged(Mul):
    log = []

    def backward(self, gy):
        _Logged.log.append(self.tag)
        return super().backward(gy)


def test_backward_orders_one_generation_by_creation_not_by_address():
    """The Functions are instantiated in one order and called in another: backward must visit them
    in reverse order of the calls (PyTorch's rule), whatever their memory addresses."""
    x = ta.tensor(np.ones(3, np.float32), requires_grad=True)
    fns = [_Logged() for _ in range(40)]
    order = np.random.default_rng(0).permutation(40)
    outs = []
    for k in order:
        fns[k].tag = int(k)
        outs.append(fns[k](x, np.float32(1.0)))
    total = outs[0].sum()
    for o in outs[1:]:
        total = total + o.sum()
    _Logged.log = []
    total.backward()
    assert _Logged.log == [int(k) for k in order[::-1]]


def test_float32_gradient_sum_is_the_same_in_every_run():
    """1e8 + 1 − 1e8 in float32 is 0 or 1 depending on the order: fixed by creation order."""
    results = set()
    for _ in range(20):
        x = ta.tensor(np.float32(1.0), requires_grad=True)
        keep = [Mul() for _ in range(3)][::-1]              # addresses unrelated to the call order
        ys = [keep[0](x, np.float32(1e8)), keep[1](x, np.float32(1.0)), keep[2](x, np.float32(-1e8))]
        (ys[0].sum() + ys[1].sum() + ys[2].sum()).backward()
        results.add(float(x.grad.item()))
    assert results == {0.0}          # newest first: (−1e8 + 1) + 1e8 = −1e8 + 1e8 in float32


@pytest.mark.parametrize("fn", [F.exp, F.log, F.sqrt, F.tanh, F.sigmoid], ids=lambda f: f.__name__)
def test_transcendental_functions_of_int_tensors_are_float32(fn):
    i = ta.tensor(np.array([1, 2, 3]))
    y = fn(i)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), fn(ta.tensor(np.array([1.0, 2.0, 3.0]))).numpy())


def test_a_nan_in_one_group_updates_no_group():
    a = ta.tensor(np.ones(2, np.float32), requires_grad=True)
    b = ta.tensor(np.ones(2, np.float32), requires_grad=True)
    opt = optim.SGD([{"params": [a], "tag": "encoder"}, {"params": [b]}], lr=0.1)
    a.grad = b.grad = ta.tensor(np.ones(2, np.float32))
    opt.param_groups[1]["momentum"] = np.float64(nan)
    with pytest.raises(ValueError, match="SGD: hyper-parameter 'momentum' is nan"):
        opt.step()
    np.testing.assert_array_equal(a.numpy(), [1, 1])
    opt.param_groups[1]["momentum"] = 0.0
    opt.step()                                              # a non-numeric entry ("tag") is fine
    np.testing.assert_allclose(a.numpy(), [0.9, 0.9])


def test_only_uses_before_the_change_are_refused():
    x = ta.tensor(np.ones(3), requires_grad=True)
    w = ta.tensor(np.full(3, 2.0), requires_grad=True)
    before = x * w
    other = (x * 3.0).sum()                          # older than the change, but w is not its input
    w.bump_version()
    after = x * w
    (after.sum() + other).backward(retain_graph=True)          # fine: made after / not using w
    np.testing.assert_array_equal(x.grad.numpy(), [5, 5, 5])
    with pytest.raises(RuntimeError, match=r"an input of Mul .*shape \(3,\).* now at version 1"):
        (before.sum() + after.sum()).backward()


def test_loading_weights_invalidates_graphs_built_on_the_old_ones():
    """set_weights / load_state_dict / astype replace a parameter's array: a graph built before
    must refuse to backpropagate (it would silently use the new weights otherwise)."""
    from tinyattn import nn
    layer = nn.Dense(3)
    x = np.ones((2, 4), np.float32)
    for change in (lambda: layer.set_weights(layer.get_weights()),
                   lambda: layer.load_state_dict(layer.state_dict()),
                   lambda: layer.astype(np.float32)):
        y = layer(x).sum()
        change()
        with pytest.raises(RuntimeError):
            y.backward()


def test_the_fast_tensor_wrapper_sets_every_slot_as_init_does():
    """Function.__call__ wraps ndarray results with Tensor._wrap (no __init__ conversions): it must
    leave a Tensor in exactly the state Tensor(a) does."""
    from tinyattn.autograd import Tensor
    a = np.arange(6.0, dtype=np.float32).reshape(2, 3)
    t, u = Tensor(a), Tensor._wrap(a)
    for slot in Tensor.__slots__:
        if slot in ("__weakref__", "_keras_mask"):
            continue
        assert getattr(u, slot) is getattr(t, slot) or getattr(u, slot) == getattr(t, slot), slot
    assert not hasattr(u, "_keras_mask") and not hasattr(t, "_keras_mask")


def test_grad_mode_counter_returns_to_zero_in_every_thread():
    """Ops skip the thread-local grad flag while no thread is inside no_grad (a global count of
    open no_grad contexts); the count must come back to 0 after nesting, exceptions and threads."""
    import threading
    from tinyattn import autograd
    assert autograd._off == 0
    with pytest.raises(ZeroDivisionError):
        with ta.no_grad():
            with ta.enable_grad():
                with ta.no_grad():
                    assert autograd._off == 2
                    1 / 0
    assert autograd._off == 0 and ta.is_grad_enabled()
    def work():
        for _ in range(200):
            with ta.no_grad():
                pass
    ths = [threading.Thread(target=work) for _ in range(4)]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    assert autograd._off == 0
    x = ta.tensor(np.ones(2), requires_grad=True)
    assert (x * 2.0).requires_grad
