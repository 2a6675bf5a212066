"""Optimizers: closed-form steps, in-place updates, dtype/device, groups, exact resume, clipping."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import optim
from tinyattn.nn import Parameter

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.3)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, momentum=0.9, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.05)),
    ("Adam", dict(lr=0.05, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.05)),
    ("AdamW", dict(lr=0.05, amsgrad=True, weight_decay=0.1)),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw in CONFIGS]


def _problem(rng, dtype=np.float64):
    """A least-squares problem: loss = mean((X w + b − y)²) with parameters w (4, 2), b (2,)."""
    X = rng.standard_normal((16, 4)).astype(dtype)
    Y = rng.standard_normal((16, 2)).astype(dtype)
    w = Parameter(ta.tensor(rng.standard_normal((4, 2)).astype(dtype)).data)
    b = Parameter(ta.tensor(np.zeros(2, dtype)).data)

    def loss():
        return ((ta.tensor(X) @ w + b - ta.tensor(Y)) ** 2).mean()
    return [w, b], loss


def _train(opt, params, loss, steps):
    for _ in range(steps):
        opt.zero_grad()
        loss().backward()
        opt.step()


def test_sgd_plain_step_closed_form(rng):
    p = Parameter(ta.tensor(rng.standard_normal(5)).data)
    g = rng.standard_normal(5)
    p0 = p.numpy()
    opt = optim.SGD([p], lr=0.3, weight_decay=0.1)
    p.grad = ta.tensor(g)
    opt.step()
    np.testing.assert_allclose(p.numpy(), p0 - 0.3 * (g + 0.1 * p0), rtol=1e-15)


def test_sgd_momentum_two_steps_closed_form(rng):
    p = Parameter(ta.tensor(rng.standard_normal(3)).data)
    g1, g2 = rng.standard_normal(3), rng.standard_normal(3)
    p0 = p.numpy()
    opt = optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True)
    p.grad = ta.tensor(g1)
    opt.step()                       # b = g1; d = g1 + 0.9 g1
    p1 = p0 - 0.1 * (g1 + 0.9 * g1)
    np.testing.assert_allclose(p.numpy(), p1, rtol=1e-14)
    p.grad = ta.tensor(g2)
    opt.step()                       # b = 0.9 g1 + g2; d = g2 + 0.9 b
    b = 0.9 * g1 + g2
    np.testing.assert_allclose(p.numpy(), p1 - 0.1 * (g2 + 0.9 * b), rtol=1e-14)


def test_adam_first_step_is_lr_times_sign(rng):
    """After one step m̂ = g and v̂ = g², so the update is lr · g / (|g| + ε) ≈ lr · sign(g)."""
    p = Parameter(ta.tensor(rng.standard_normal(6)).data)
    g = rng.standard_normal(6)
    p0 = p.numpy()
    opt = optim.Adam([p], lr=0.01)
    p.grad = ta.tensor(g)
    opt.step()
    np.testing.assert_allclose(p.numpy(), p0 - 0.01 * g / (np.abs(g) + 1e-8), rtol=1e-12)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam_casts_a_gradient_of_another_dtype_to_the_state(rng, amsgrad):
    """A float64 gradient on a float32 parameter updates it in float32, exactly as the same gradient
    rounded to float32 does; the state stays float32."""
    w = rng.standard_normal(70_000).astype(np.float32)           # large enough for the pool's chunks
    gs = [rng.standard_normal(w.shape) for _ in range(3)]
    ps = [Parameter(ta.tensor(w).data), Parameter(ta.tensor(w).data)]     # (on the test's device)
    opts = [optim.AdamW([p], lr=0.01, weight_decay=0.1, amsgrad=amsgrad) for p in ps]
    for g in gs:
        for p, opt, gi in zip(ps, opts, (g, g.astype(np.float32))):
            p.grad = ta.tensor(gi)
            opt.step()
    assert ps[0].data.dtype == np.float32
    assert all(v.dtype == np.float32 for v in opts[0].state[id(ps[0])].values() if hasattr(v, "dtype"))
    np.testing.assert_array_equal(ps[0].numpy(), ps[1].numpy())


def test_adamw_decay_is_decoupled(rng):
    """With a zero gradient, Adam's L2 term still moves p (through m/v) but AdamW only shrinks it."""
    p = Parameter(ta.tensor(rng.standard_normal(4)).data)
    p0 = p.numpy()
    opt = optim.AdamW([p], lr=0.1, weight_decay=0.5)
    p.grad = ta.tensor(np.zeros(4))
    opt.step()
    np.testing.assert_allclose(p.numpy(), p0 * (1 - 0.1 * 0.5), rtol=1e-15)


def test_rmsprop_first_step_closed_form(rng):
    p = Parameter(ta.tensor(rng.standard_normal(4)).data)
    g = rng.standard_normal(4)
    p0 = p.numpy()
    opt = optim.RMSprop([p], lr=0.01, alpha=0.9)
    p.grad = ta.tensor(g)
    opt.step()
    np.testing.assert_allclose(p.numpy(), p0 - 0.01 * g / (np.sqrt(0.1 * g * g) + 1e-8), rtol=1e-12)


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_reduces_loss_in_place_and_keeps_dtype(name, kw, rng):
    params, loss = _problem(rng, np.float32)
    arrays = [p.data for p in params]
    start = loss().item()
    opt = getattr(optim, name)(params, **kw)
    _train(opt, params, loss, 30)
    assert loss().item() < start
    for p, a in zip(params, arrays):
        assert p.data is a and p.dtype == np.float32           # updated in place, float32 kept
    for s in opt.state.values():
        for v in s.values():
            assert not hasattr(v, "dtype") or v.dtype == np.float32


@pytest.mark.parametrize("name,kw", CONFIGS, ids=IDS)
def test_state_dict_resume_is_bit_identical(name, kw, rng):
    params, loss = _problem(rng)
    init = [p.numpy() for p in params]
    opt = getattr(optim, name)(params, **kw)
    _train(opt, params, loss, 5)
    saved_params = [p.numpy() for p in params]
    saved = opt.state_dict()
    _train(opt, params, loss, 7)
    straight = [p.numpy() for p in params]

    for p, a in zip(params, init):       # scramble everything, then resume from the snapshot
        p.data = ta.backend.to_device(a.copy(), p.device)
    fresh = getattr(optim, name)(params, lr=123.0)  # wrong lr on purpose: the state restores it
    fresh.load_state_dict(saved)
    for p, a in zip(params, saved_params):
        p.data = ta.backend.to_device(a.copy(), p.device)
    _train(fresh, params, loss, 7)
    for p, a in zip(params, straight):
        np.testing.assert_array_equal(p.numpy(), a)
    assert fresh.param_groups[0]["lr"] == kw["lr"]


def test_state_dict_is_a_copy(rng):
    params, loss = _problem(rng)
    opt = optim.Adam(params)
    _train(opt, params, loss, 2)
    sd = opt.state_dict()
    before = ta.backend.as_numpy(sd["state"][0]["exp_avg"]).copy()
    _train(opt, params, loss, 2)
    np.testing.assert_array_equal(ta.backend.as_numpy(sd["state"][0]["exp_avg"]), before)
    assert sd["state"][0]["step"] == 2 and sd["param_groups"][0]["params"] == [0, 1]


def test_load_state_dict_errors(rng):
    params, loss = _problem(rng)
    opt = optim.Adam(params)
    _train(opt, params, loss, 1)
    sd = opt.state_dict()
    other = optim.Adam([Parameter(ta.tensor(np.zeros((3, 3))).data)])
    with pytest.raises(ValueError, match="a group has 2 parameters in the state but 1"):
        other.load_state_dict(sd)
    other = optim.Adam([Parameter(ta.tensor(np.zeros((3, 3))).data), Parameter(ta.tensor(np.zeros(2)).data)])
    with pytest.raises(ValueError, match=r"state 'exp_avg' of parameter 0 has shape \(4, 2\), the parameter \(3, 3\)"):
        other.load_state_dict(sd)


def test_param_groups_and_skipping(rng):
    a, b, c = (Parameter(ta.tensor(rng.standard_normal(3)).data) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}, {"params": [c]}], lr=0.1)
    a0, b0, c0 = a.numpy(), b.numpy(), c.numpy()
    g = np.ones(3)
    a.grad, b.grad = ta.tensor(g), ta.tensor(g)         # c has no gradient: skipped
    opt.step()
    np.testing.assert_allclose(a.numpy(), a0 - 0.1)
    np.testing.assert_allclose(b.numpy(), b0 - 1.0)
    np.testing.assert_array_equal(c.numpy(), c0)
    np.testing.assert_array_equal(a.grad.numpy(), g)       # gradients are not modified
    opt.lr = 0.5
    assert [grp["lr"] for grp in opt.param_groups] == [0.5, 0.5, 0.5]
    opt.zero_grad()
    assert a.grad is None and b.grad is None


def test_named_parameters_accepted(rng):
    params, loss = _problem(rng)
    named = [("w", params[0]), ("b", params[1])]
    opt = optim.SGD(named, lr=0.1)
    assert len(opt.params()) == 2 and all(a is b for a, b in zip(opt.params(), params))


def test_constructor_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(ValueError, match="nesterov momentum needs momentum > 0"):
        optim.SGD([Parameter(ta.tensor(np.zeros(2)).data)], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="invalid learning rate"):
        optim.Adam([Parameter(ta.tensor(np.zeros(2)).data)], lr=-1)
    with pytest.raises(ValueError, match="betas"):
        optim.Adam([Parameter(ta.tensor(np.zeros(2)).data)], betas=(0.9, 1.0))
    p = Parameter(ta.tensor(np.zeros(2)).data)
    with pytest.raises(ValueError, match="appears twice"):
        optim.SGD([p, p])


def test_clip_grad_norm(rng):
    a, b = Parameter(ta.tensor(rng.standard_normal((3, 2))).data), Parameter(ta.tensor(rng.standard_normal(4)).data)
    ga, gb = rng.standard_normal((3, 2)) * 3, rng.standard_normal(4) * 3
    a.grad, b.grad = ta.tensor(ga), ta.tensor(gb)
    norm = np.sqrt((ga ** 2).sum() + (gb ** 2).sum())
    total = optim.clip_grad_norm([a, b], 1.0)
    assert total == pytest.approx(norm, rel=1e-12)
    coef = 1.0 / (norm + 1e-6)
    np.testing.assert_allclose(a.grad.numpy(), ga * coef, rtol=1e-12)
    np.testing.assert_allclose(b.grad.numpy(), gb * coef, rtol=1e-12)
    new = np.sqrt((a.grad.numpy() ** 2).sum() + (b.grad.numpy() ** 2).sum())
    assert new == pytest.approx(1.0, rel=1e-5)
    # below the threshold: unchanged
    assert optim.clip_grad_norm([a, b], 10.0) == pytest.approx(new, rel=1e-12)
    assert optim.clip_grad_norm([a, b], 10.0, norm_type=np.inf) == pytest.approx(
        max(np.abs(a.grad.numpy()).max(), np.abs(b.grad.numpy()).max()))


def test_clip_grad_norm_with_shared_gradient_arrays():
    """(a + b): one upstream gradient flows to both leaves; each is scaled exactly once."""
    a, b = Parameter(ta.tensor(np.zeros(4)).data), Parameter(ta.tensor(np.zeros(4)).data)
    ((a + b) * 3.0).sum().backward()
    total = optim.clip_grad_norm([a, b], 1.0)
    assert total == pytest.approx(np.sqrt(8 * 9))
    np.testing.assert_allclose(a.grad.numpy(), 3.0 / (np.sqrt(72) + 1e-6))
    np.testing.assert_allclose(b.grad.numpy(), 3.0 / (np.sqrt(72) + 1e-6))


@pytest.mark.parametrize("name,kw", CONFIGS[::3], ids=IDS[::3])
def test_step_on_backend(backend, name, kw, rng):
    """Parameters stay on their device (NumPy or CuPy) and match the NumPy run."""
    xp = ta.backend.default_xp()
    p_np = Parameter(rng.standard_normal(5).astype(np.float32))       # on the host, on purpose
    p_dev = Parameter(ta.tensor(xp.asarray(p_np.numpy())).data)
    opts = [getattr(optim, name)([p], **kw) for p in (p_np, p_dev)]
    for _ in range(3):
        g = rng.standard_normal(5).astype(np.float32)
        p_np.grad, p_dev.grad = ta.Tensor(g), ta.Tensor(xp.asarray(g))
        for o in opts:
            o.step()
    assert ta.backend.get_array_module(p_dev.data) is xp
    np.testing.assert_allclose(ta.backend.as_numpy(p_dev.data), p_np.numpy(), rtol=1e-5, atol=1e-6)
