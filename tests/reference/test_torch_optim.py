"""Optimizers vs torch.optim: 20-step trajectories on a quadratic and on a small MLP, in float64
(agreement to ~1e-12: the same rule up to rounding order) and float32 (1e-5), resuming from a
state_dict, and clip_grad_norm vs torch.nn.utils.clip_grad_norm_."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyattn as ta  # noqa: E402
from tinyattn import optim  # noqa: E402
from tinyattn.nn import Parameter  # noqa: E402

CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, dampening=0.2, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.03)),
    ("Adam", dict(lr=0.03, betas=(0.8, 0.95), weight_decay=0.05, amsgrad=True)),
    ("AdamW", dict(lr=0.03)),
    ("AdamW", dict(lr=0.03, weight_decay=0.2, amsgrad=True)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS]
TOL = {np.float64: dict(rtol=1e-12, atol=1e-12), np.float32: dict(rtol=1e-5, atol=1e-5)}


class Quadratic:
    """f(p) = ½ pᵀ A p − bᵀ p, A symmetric positive definite (5 × 5)."""

    def __init__(self, rng, dtype):
        m = rng.standard_normal((5, 5))
        self.A, self.b = (m @ m.T / 5 + np.eye(5)).astype(dtype), rng.standard_normal(5).astype(dtype)
        self.init = [rng.standard_normal(5).astype(dtype)]

    def ours(self, ps):
        p, = ps
        return (p @ ta.tensor(self.A) * p).sum() * 0.5 - (p * ta.tensor(self.b)).sum()

    def torch(self, ps):
        p, = ps
        return (p @ torch.tensor(self.A) * p).sum() * 0.5 - (p * torch.tensor(self.b)).sum()


class MLP:
    """mean((tanh(X W1 + b1) W2 + b2 − Y)²): X (16, 3), W1 (3, 8), W2 (8, 2)."""

    def __init__(self, rng, dtype):
        self.X = rng.standard_normal((16, 3)).astype(dtype)
        self.Y = rng.standard_normal((16, 2)).astype(dtype)
        self.init = [(rng.standard_normal((3, 8)) * 0.5).astype(dtype), np.zeros(8, dtype),
                     (rng.standard_normal((8, 2)) * 0.5).astype(dtype), (rng.standard_normal(2) * 0.1).astype(dtype)]

    def ours(self, ps):
        w1, b1, w2, b2 = ps
        return (((ta.tensor(self.X) @ w1 + b1).tanh() @ w2 + b2 - ta.tensor(self.Y)) ** 2).mean()

    def torch(self, ps):
        w1, b1, w2, b2 = ps
        return ((torch.tanh(torch.tensor(self.X) @ w1 + b1) @ w2 + b2 - torch.tensor(self.Y)) ** 2).mean()


def _pair(problem, name, kw):
    ours = [Parameter(ta.tensor(a.copy()).data) for a in problem.init]
    theirs = [torch.tensor(a.copy(), requires_grad=True) for a in problem.init]
    return ours, getattr(optim, name)(ours, **kw), theirs, getattr(torch.optim, name)(theirs, **kw)


def _step(problem, ours, opt, theirs, topt):
    opt.zero_grad()
    problem.ours(ours).backward()
    opt.step()
    topt.zero_grad()
    problem.torch(theirs).backward()
    topt.step()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("problem_cls", [Quadratic, MLP])
@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_trajectory_matches_torch(name, kw, problem_cls, dtype, rng):
    problem = problem_cls(rng, dtype)
    ours, opt, theirs, topt = _pair(problem, name, kw)
    for step in range(20):
        _step(problem, ours, opt, theirs, topt)
        for p, t in zip(ours, theirs):
            assert p.dtype == dtype
            np.testing.assert_allclose(p.numpy(), t.detach().numpy(), **TOL[dtype],
                                       err_msg=f"step {step + 1}")
    assert problem.ours(ours).item() < problem.ours([Parameter(ta.tensor(a).data) for a in problem.init]).item()


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_resume_from_state_dict_matches_torch(name, kw, rng):
    """10 steps, snapshot, a fresh optimizer loads the snapshot, 10 more: equals torch's 20 steps."""
    problem = MLP(rng, np.float64)
    ours, opt, theirs, topt = _pair(problem, name, kw)
    for _ in range(10):
        _step(problem, ours, opt, theirs, topt)
    snapshot = opt.state_dict()
    resumed = getattr(optim, name)(ours, lr=0.5)
    resumed.load_state_dict(snapshot)
    for _ in range(10):
        _step(problem, ours, resumed, theirs, topt)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.numpy(), t.detach().numpy(), **TOL[np.float64])
    ts = topt.state_dict()["state"]
    for i, s in snapshot["state"].items():      # same buffer names as torch, same step counts
        assert set(s) <= set(ts[i]), (s.keys(), ts[i].keys())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, np.inf])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch(norm_type, max_norm, rng):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(7), rng.standard_normal((2, 2, 2))]
    ours = [Parameter(ta.tensor(np.zeros_like(g)).data) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, t, g in zip(ours, theirs, grads):
        p.grad = ta.tensor(g.copy())
        t.grad = torch.tensor(g.copy())
    total = optim.clip_grad_norm(ours, max_norm, norm_type=norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, max_norm, norm_type=norm_type)
    assert total == pytest.approx(float(ttotal), rel=1e-12)
    for p, t in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=1e-15)
