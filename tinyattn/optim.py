"""Optimizers with PyTorch's update rules (``torch.optim``, checked step for step in
``tests/reference/test_torch_optim.py``) and gradient-norm clipping.

    opt = Adam(model.parameters(), lr=1e-3)
    for x, y in batches:
        opt.zero_grad()
        loss_fn(y, model(x)).backward()
        opt.step()

Each optimizer keeps a list of *parameter groups* (dicts with ``"params"`` and the hyper-parameters,
so different groups may use different ``lr``/``weight_decay``) and a per-parameter *state* (moment
buffers, the step count). Parameters are updated in place (``p.data -= ...``) in their own dtype and on
their own device (NumPy or CuPy: the xp pattern); gradients are read, never modified. Parameters
whose ``.grad`` is None are skipped, like PyTorch.

``state_dict()`` / ``load_state_dict()`` save and restore everything (copies of the buffers, exact
hyper-parameters), so a resumed run continues bit for bit.
"""
import math

import numpy as np

from . import backend, parallel
from .autograd import Tensor, array_of

__all__ = ["Optimizer", "SGD", "RMSprop", "Adam", "AdamW", "clip_grad_norm"]


class Optimizer:
    """Base class: parameter groups, state, ``zero_grad``, ``step``, ``state_dict``.

    params: an iterable of Parameters (or of (name, Parameter) pairs, as ``named_parameters()``
    yields), or of dicts ``{"params": [...], "lr": ..., ...}`` (groups; missing options take the
    constructor's values). Argument names, order and defaults are PyTorch's. Subclasses implement ``_update(p, g, state, group)``
    that changes ``p.data`` in place.
    """
    _passes = 1              # about how many passes an update makes over a parameter (the pool's
                             # size threshold weighs them: tinyattn.parallel.rows / tasks ``work``)

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        params = list(params)
        if not params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list "
                             f"(is the model built? lazily built layers create their weights on the first call)")
        if isinstance(params[0], tuple) and len(params[0]) == 2 and isinstance(params[0][0], str):
            params = [p for _, p in params]                     # model.named_parameters()
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        seen = set()
        for g in groups:
            ps = list(g["params"])
            for p in ps:
                if not isinstance(p, Tensor):
                    raise TypeError(f"{type(self).__name__}: parameters must be Tensors, got {type(p).__name__}")
                if not p.requires_grad:
                    raise ValueError(f"{type(self).__name__}: a parameter of shape {p.shape} does not require grad")
                if id(p) in seen:
                    raise ValueError(f"{type(self).__name__}: a parameter appears twice")
                seen.add(id(p))
            group = dict(self.defaults)
            group.update({k: v for k, v in g.items() if k != "params"})
            group["params"] = ps
            self.param_groups.append(group)
        self.state = {}          # id(p) -> dict of buffers and "step"

    def params(self):
        """All parameters, in group order."""
        return [p for g in self.param_groups for p in g["params"]]

    def zero_grad(self):
        """Forget every parameter's gradient (``p.grad = None``)."""
        for p in self.params():
            p.grad = None

    def step(self):
        """Apply one update to every parameter that has a gradient (in place: each updated
        parameter's version counter goes up, see ``Tensor.version``)."""
        hps = [_plain(group, type(self).__name__) for group in self.param_groups]   # all checked first
        calls, updated = [], []
        for group, hp in zip(self.param_groups, hps):
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad.data if isinstance(p.grad, Tensor) else p.grad
                if g.shape != p.data.shape:
                    raise ValueError(f"{type(self).__name__}.step: gradient shape {tuple(g.shape)} does not "
                                     f"match parameter shape {p.shape}")
                if g.dtype != p.data.dtype:
                    g = g.astype(p.data.dtype)
                state = self.state.setdefault(id(p), {})
                calls.append((self._update, p, g, state, hp))
                updated.append(p)
        # the parameters' updates are independent: one hand-off to the pool for all of them, each
        # parameter whole in one thread (tinyattn.parallel.tasks; same bits as one after another)
        host = all(type(p.data) is np.ndarray for p in updated)      # device arrays: in order, here
        parallel.tasks(calls, [p.data.size if host else 0 for p in updated], work=self._passes)
        for p in updated:
            p.bump_version()                  # an in-place change: graphs that used p refuse backward

    def _update(self, p, g, state, group):
        raise NotImplementedError

    # -- saving and resuming --------------------------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {name: array copy or int}}, "param_groups": [{options, "params": [indices]}]}``
        with parameters numbered in group order (PyTorch's layout)."""
        index = {id(p): i for i, p in enumerate(self.params())}
        state = {}
        for pid, s in self.state.items():
            if not s:                    # plain SGD keeps no state
                continue
            state[index[pid]] = {k: (v.copy() if hasattr(v, "copy") and hasattr(v, "shape") else v)
                                 for k, v in s.items()}
        groups = []
        for g in self.param_groups:
            d = {k: v for k, v in g.items() if k != "params"}
            d["params"] = [index[id(p)] for p in g["params"]]
            groups.append(d)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict):
        """Restore what :meth:`state_dict` returned (buffers are copied onto each parameter's device
        and dtype). The groups must hold the same numbers of parameters of the same shapes."""
        name = type(self).__name__
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: {len(groups)} parameter groups in the state, "
                             f"{len(self.param_groups)} in the optimizer")
        params = self.params()
        for mine, theirs in zip(self.param_groups, groups):
            if len(mine["params"]) != len(theirs["params"]):
                raise ValueError(f"{name}.load_state_dict: a group has {len(theirs['params'])} parameters in "
                                 f"the state but {len(mine['params'])} in the optimizer")
        new_state = {}
        for key, s in state_dict["state"].items():
            i = int(key)
            if not 0 <= i < len(params):
                raise ValueError(f"{name}.load_state_dict: state for parameter {i}, but there are {len(params)}")
            p = params[i]
            xp = backend.get_array_module(p.data)
            entry = {}
            for k, v in s.items():
                if k == "step":
                    entry[k] = int(v)
                else:
                    v = array_of(v)
                    if tuple(np.shape(v)) != p.shape:
                        raise ValueError(f"{name}.load_state_dict: state {k!r} of parameter {i} has shape "
                                         f"{tuple(np.shape(v))}, the parameter {p.shape}")
                    entry[k] = xp.asarray(backend.to_device(v, p.device), dtype=p.data.dtype).copy()
            new_state[id(p)] = entry
        for mine, theirs in zip(self.param_groups, groups):
            for k, v in theirs.items():
                if k != "params":
                    mine[k] = tuple(v) if isinstance(v, list) else v
        self.state = new_state
        return self

    @property
    def lr(self):
        """The learning rate of the first group (set it to change every group's)."""
        return self.param_groups[0]["lr"]

    @lr.setter
    def lr(self, value):
        _check(type(self).__name__, value)
        for g in self.param_groups:
            g["lr"] = value

    def __repr__(self):
        opts = ", ".join(f"{k}={v!r}" for k, v in self.defaults.items())
        return f"{type(self).__name__}({opts})"


def _plain(group, name):
    """The group's hyper-parameters as Python numbers (NumPy float64 scalars such as
    ``np.float64(1e-3)`` are strong in NumPy 2 and would turn float32 updates and state into
    float64), checked finite: a scheduler or a user may have written them into the group."""
    hp = {}
    for k, v in group.items():
        if k == "params":
            continue
        if isinstance(v, (tuple, list)):
            v = tuple(_number(x, k, name) for x in v)
        elif not isinstance(v, (bool, str)) and v is not None:
            v = _number(v, k, name)
        hp[k] = v
    return hp


def _number(v, key, name):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    try:
        f = float(v)
    except (TypeError, ValueError):
        return v                                    # not a number: the user's own group entry
    if not math.isfinite(f):
        raise ValueError(f"{name}: hyper-parameter {key!r} is {f}; it must be finite")
    return int(v) if isinstance(v, (int, np.integer)) else f


def _zeros(p):
    return backend.get_array_module(p.data).zeros_like(p.data)


def _check(name, lr, **nonneg):
    """lr and the other hyper-parameters must be finite numbers ≥ 0 (NaN compares false with
    everything, so ``lr < 0`` alone would let lr=nan through to poison every weight)."""
    for k, v in (("lr", lr), *nonneg.items()):
        try:
            f = float(v)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: {k} must be a number, got {v!r}") from None
        if not math.isfinite(f) or f < 0:
            what = "learning rate" if k == "lr" else k
            raise ValueError(f"{name}: invalid {what} {v} (must be a finite number ≥ 0)")


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, Nesterov momentum and L2 weight decay (PyTorch's rule).

        g ← ∇p + λ p                                    (weight_decay λ)
        b ← g  on the first step,  b ← μ b + (1 − τ) g  after          (momentum μ, dampening τ)
        d ← g + μ b  (nesterov)   or   d ← b   (momentum)   or   d ← g   (μ = 0)
        p ← p − η d                                     (lr η)

    Every array has the parameter's shape; the state is ``momentum_buffer`` (when μ > 0).
    """
    _passes = 3

    def __init__(self, params, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False):
        _check("SGD", lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, nesterov=nesterov,
                                      weight_decay=weight_decay))

    def _update(self, p, g, state, group):
        wd, mu, lr = group["weight_decay"], group["momentum"], group["lr"]
        damp, nesterov = group["dampening"], group["nesterov"]
        first = bool(mu) and "momentum_buffer" not in state
        if first:
            state["momentum_buffer"] = backend.get_array_module(p.data).empty_like(p.data)

        def kernel(pd, g, buf):                      # one block of the parameter (tinyattn.parallel)
            if wd:
                g = g + wd * pd
            if mu:
                if first:
                    buf[...] = g
                else:
                    buf *= mu
                    buf += (1 - damp) * g
                g = g + mu * buf if nesterov else buf
            pd -= lr * g
        parallel.rows(kernel, p.data, g, state.get("momentum_buffer"), tail=0, work=self._passes)


class RMSprop(Optimizer):
    """RMSprop (PyTorch's rule: ε outside the square root, optional centering and momentum).

        g ← ∇p + λ p
        v ← α v + (1 − α) g²                            (``square_avg``)
        m̄ ← α m̄ + (1 − α) g   and   s ← √(v − m̄²) + ε   (centered)   else   s ← √v + ε
        b ← μ b + g / s,  p ← p − η b   (momentum μ > 0)    else    p ← p − η g / s

    State arrays have the parameter's shape.
    """
    _passes = 8

    def __init__(self, params, lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False):
        _check("RMSprop", lr, alpha=alpha, eps=eps, weight_decay=weight_decay, momentum=momentum)
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, weight_decay=weight_decay,
                                      momentum=momentum, centered=centered))

    def _update(self, p, g, state, group):
        xp = backend.get_array_module(p.data)
        alpha, wd, mu = group["alpha"], group["weight_decay"], group["momentum"]
        lr, eps, centered = group["lr"], group["eps"], group["centered"]
        if not state:
            state["step"] = 0
            state["square_avg"] = _zeros(p)
            if mu:
                state["momentum_buffer"] = _zeros(p)
            if centered:
                state["grad_avg"] = _zeros(p)
        state["step"] += 1

        def kernel(pd, g, v, buf, ga):               # one block of the parameter (tinyattn.parallel)
            if wd:
                g = g + wd * pd
            v *= alpha
            v += (1 - alpha) * (g * g)
            if centered:
                ga *= alpha
                ga += (1 - alpha) * g
                s = xp.sqrt(v - ga * ga)
            else:
                s = xp.sqrt(v)
            s += eps
            if mu:
                buf *= mu
                buf += g / s
                pd -= lr * buf
            else:
                pd -= lr * (g / s)
        parallel.rows(kernel, p.data, g, state["square_avg"], state.get("momentum_buffer"),
                      state.get("grad_avg"), tail=0, work=self._passes)


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's rule; ``weight_decay`` is L2 added to the gradient.

        t ← t + 1,  g ← ∇p + λ p
        m ← β₁ m + (1 − β₁) g,   v ← β₂ v + (1 − β₂) g²
        v̂ ← max(v̂, v) (amsgrad)  else  v̂ ← v
        p ← p − (η / (1 − β₁ᵗ)) · m / (√v̂ / √(1 − β₂ᵗ) + ε)

    State: ``step`` (int), ``exp_avg`` m, ``exp_avg_sq`` v (and ``max_exp_avg_sq``), parameter-shaped.
    """
    decoupled = False
    _passes = 10

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False):
        name = type(self).__name__
        _check(name, lr, eps=eps, weight_decay=weight_decay)
        if len(betas) != 2 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):   # (NaN fails too)
            raise ValueError(f"{name}: betas must lie in [0, 1), got {betas}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      amsgrad=amsgrad))

    def _update(self, p, g, state, group):
        xp = backend.get_array_module(p.data)
        (b1, b2), lr, wd = group["betas"], group["lr"], group["weight_decay"]
        if not state:
            state["step"] = 0
            state["exp_avg"] = _zeros(p)
            state["exp_avg_sq"] = _zeros(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = _zeros(p)
        state["step"] += 1
        t = state["step"]
        decoupled, amsgrad, eps = self.decoupled, group["amsgrad"], group["eps"]
        step_size = lr / (1 - b1 ** t)
        bias2 = math.sqrt(1 - b2 ** t)

        def kernel(pd, g, m, v, vmax):               # one block of the parameter (tinyattn.parallel)
            if wd:
                if decoupled:
                    pd *= 1 - lr * wd            # AdamW: shrink the weights, not the gradient
                else:
                    g = g + wd * pd
            # (g has the parameter's dtype: step() casts it.) One scratch block for the temporaries
            m *= b1
            tmp = xp.multiply(g, 1 - b1)                 # (1 − β₁) g
            m += tmp
            v *= b2
            tmp = xp.multiply(g, g, out=tmp)
            tmp *= 1 - b2                                # (1 − β₂) g²
            v += tmp
            if amsgrad:
                xp.maximum(vmax, v, out=vmax)
                v = vmax
            # m / (√v / b₂ + ε) · s  =  m / (√v + ε b₂) · (s b₂): the bias correction b₂ = √(1 − β₂ᵗ)
            # folded into the scalars (one pass fewer over the parameter)
            denom = xp.sqrt(v, out=tmp)
            denom += eps * bias2
            step = xp.divide(m, denom, out=denom)
            step *= step_size * bias2
            pd -= step
        parallel.rows(kernel, p.data, g, state["exp_avg"], state["exp_avg_sq"],
                      state.get("max_exp_avg_sq"), tail=0, work=self._passes)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), PyTorch's rule:

        p ← p (1 − η λ),  then the Adam update without λ in the gradient.

    Default ``weight_decay=0.01``. Shapes and state as :class:`Adam`.
    """
    decoupled = True

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, amsgrad=False):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad)


def clip_grad_norm(params, max_norm, norm_type=2.0, eps=1e-6):
    """Scale all gradients together so that their global norm is at most ``max_norm``.

        n = (Σ_p ‖∇p‖^k)^(1/k)   (k = ``norm_type``; k = inf: max |∇p|),
        ∇p ← ∇p · min(1, max_norm / (n + 1e-6))       (PyTorch's clip_grad_norm_)

    params: Parameters (or an iterable of them; those without .grad are ignored). The gradients are
    replaced by scaled copies (never scaled in place: autograd may share one gradient array between
    leaves). Returns n, the norm *before* clipping, as a Python float.
    """
    params = [params] if isinstance(params, Tensor) else list(params)
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        total = max(float(abs(p.grad.data).max()) for p in grads)
    else:
        total = sum(float((abs(p.grad.data) ** norm_type).sum()) for p in grads) ** (1.0 / norm_type)
    coef = max_norm / (total + eps)
    if coef < 1:
        for p in grads:
            g = p.grad.data
            p.grad = Tensor(g * float(coef))
    return total
