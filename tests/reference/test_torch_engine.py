"""The engine's conventions vs PyTorch, live: result dtypes of int tensors with Python scalars, NaN
through relu/maximum/minimum/max/min, tie gradients, pow gradients at 0, and the version counter's
refusal (issue 7). tests/test_engine_contract.py pins the same values without torch."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyattn as ta  # noqa: E402
from tinyattn import functions as F  # noqa: E402

nan, inf = float("nan"), float("inf")

SCALAR_EXPRS = ["i * 2.5", "2.5 * i", "i + 0.5", "0.5 - i", "i / 2", "2 / i", "i / i", "i ** 0.5",
                "2.0 ** i", "i * 2", "i ** 2", "2 ** i", "-i", "i * np.float64(2.5)"]


@pytest.mark.parametrize("expr", SCALAR_EXPRS)
def test_int_tensor_scalar_dtypes_match_torch(expr):
    ours = eval(expr, {"np": np, "i": ta.tensor(np.array([1, 2, 3]))})
    theirs = eval(expr, {"np": np, "i": torch.tensor([1, 2, 3])})
    assert ours.dtype == np.dtype(str(theirs.dtype).replace("torch.", "")), expr
    np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def _both(fn_ta, fn_torch, *vals):
    xs = [ta.tensor(np.array(v, np.float64), requires_grad=True) for v in vals]
    ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in vals]
    y, yt = fn_ta(*xs), fn_torch(*ts)
    y.sum().backward()
    yt.sum().backward()
    np.testing.assert_allclose(y.numpy(), yt.detach().numpy(), rtol=1e-14, atol=0)   # NaN, ±inf: equal
    for x, t in zip(xs, ts):
        np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-14, atol=0)


A = [1.0, 2.0, 3.0, nan, 1.0, 0.0, -inf]
B = [1.0, 1.0, 4.0, 0.0, nan, 0.0, 0.0]


def test_relu_nan_matches_torch():
    _both(F.relu, torch.relu, [nan, -1.0, 2.0, -inf, 0.0, 3.0])


@pytest.mark.parametrize("name", ["maximum", "minimum"])
def test_maximum_minimum_nan_and_ties_match_torch(name):
    _both(getattr(F, name), getattr(torch, name), A, B)


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_min_reduction_nan_and_ties_match_torch_amax(op):
    vals = [[3.0, 1.0, 3.0], [1.0, nan, 3.0], [1.0, 1.0, 1.0]]
    tfn = torch.amax if op == "max" else torch.amin
    _both(lambda x: getattr(x, op)(axis=1), lambda t: tfn(t, dim=1), vals)
    _both(lambda x: getattr(x, op)(), lambda t: getattr(t, op)(), [[3.0, 1.0], [3.0, 2.0]])


@pytest.mark.parametrize("c", [2, 0.5, 0, -1, 1.5, 1, 3])
def test_pow_scalar_gradient_at_zero_matches_torch(c):
    with np.errstate(divide="ignore", invalid="ignore"):
        _both(lambda x: x ** c, lambda t: t ** c, [0.0, 1.5])


def test_pow_tensor_gradients_at_zero_match_torch():
    with np.errstate(divide="ignore", invalid="ignore"):
        _both(F.pow, torch.pow, [0.0, 0.0, 2.0, 0.0, 3.0], [0.0, 2.0, 0.0, -1.0, 0.5])


def test_in_place_change_then_backward_raises_like_torch():
    w = ta.tensor(np.array([1.0, 2.0]), requires_grad=True)
    wt = torch.tensor([1.0, 2.0], requires_grad=True)
    y, yt = (w * w).sum(), (wt * wt).sum()
    with torch.no_grad():
        wt.add_(1.0)
    w.data += 1.0
    w.bump_version()
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        yt.backward()
    with pytest.raises(RuntimeError, match="modified in place"):
        y.backward()
