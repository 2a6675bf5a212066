"""Numerical gradient checks (Chainer's ``check_backward`` is the model).

For y = f(x₁, …, xₙ), draw a *random* upstream gradient gy for every output and a random direction
dᵢ for every checked input. Then the analytic directional derivative

    a = Σ_outputs ⟨gy, J_f dᵢ⟩ = ⟨backward(gy)ᵢ, dᵢ⟩

must equal the central difference  n = Σ ⟨gy, f(xᵢ + ε dᵢ) − f(xᵢ − ε dᵢ)⟩ / 2ε,  in float64.
A random gy (never all ones) matters: with gy = 1, a softmax whose backward returns zeros passes,
since softmax rows sum to 1.
"""
import numpy as np

from . import backend
from .autograd import Tensor, grad


class GradcheckError(AssertionError):
    """The analytic and numerical directional derivatives differ."""


def _outputs(ys):
    if isinstance(ys, Tensor):
        return [ys]
    return [y for y in ys if y is not None]


def gradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, n_directions=1,
              params=()):
    """Check ``fn(*inputs)``'s backward against central differences; return True or raise.

    ``inputs``: Tensors (and other arguments), passed to ``fn``. ``params``: more Tensors that are
    checked but not passed (a layer's parameters, which ``fn`` reaches through the layer), as in
    ``gradcheck(layer, [x], params=layer.parameters())``. Every floating Tensor that requires grad
    among both is checked: perturbed in place, switched to float64 for the check, then restored.
    """
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    checked, labels = [], []          # labels name a failing tensor: "inputs[2]", "params[0] 'kernel'"
    for where, ts in (("inputs", inputs), ("params", list(params))):
        for j, x in enumerate(ts):
            if isinstance(x, Tensor) and x.requires_grad:
                checked.append(x)
                labels.append(f"{where}[{j}]" + (f" {x.name!r}" if x.name else ""))
    if not checked:
        raise ValueError("gradcheck: no input requires grad")
    saved = [x.data for x in checked]
    rng = np.random.default_rng(seed)
    try:
        for x in checked:
            x.data = x.data.astype(np.float64)
        ys = _outputs(fn(*inputs))
        xp = backend.get_array_module(ys[0].data)
        if grad_outputs is None:
            gys = [xp.asarray(rng.standard_normal(y.shape)) for y in ys]
        else:
            gys = [g.data if isinstance(g, Tensor) else xp.asarray(g, dtype=np.float64)
                   for g in (grad_outputs if isinstance(grad_outputs, (list, tuple)) else [grad_outputs])]
        for y in ys:
            if y.dtype != np.float64:
                raise GradcheckError(f"gradcheck: an output is {y.dtype}, not float64: some op or "
                                     f"parameter in fn is not float64 (cast parameters before checking)")
        diff_ys = [(y, g) for y, g in zip(ys, gys) if y.requires_grad]
        analytic = grad([y for y, _ in diff_ys], checked, [g for _, g in diff_ys], allow_unused=True)

        def project():   # ⟨gy, f(x)⟩ (with grad on: fn may itself take gradients, as in gradgradcheck)
            outs = _outputs(fn(*inputs))
            return sum(float((o.data * g).sum()) for o, g in zip(outs, gys))

        for i, x in enumerate(checked):
            for _ in range(n_directions):
                d = xp.asarray(rng.standard_normal(x.shape))
                x0 = x.data
                ga = analytic[i]
                a = 0.0 if ga is None else float((ga.data * d).sum())
                x.data = x0 + eps * d
                fp = project()
                x.data = x0 - eps * d
                fm = project()
                x.data = x0
                n = (fp - fm) / (2 * eps)
                if not abs(a - n) <= atol + rtol * abs(n):
                    raise GradcheckError(
                        f"gradcheck failed for input {labels[i]} of shape {tuple(x.shape)} (checked: "
                        f"{', '.join(labels)}):\n  analytic directional derivative "
                        f"{a:.10g}\n  numerical (central difference) {n:.10g}\n  |difference| "
                        f"{abs(a - n):.3g} > atol {atol} + rtol {rtol} * |numerical|")
    finally:
        for x, s in zip(checked, saved):
            x.data = s
    return True


def _labelled(inputs, params):
    out = []
    for where, ts in (("inputs", inputs), ("params", params)):
        for j, x in enumerate(ts):
            if isinstance(x, Tensor) and x.requires_grad:
                out.append((x, f"{where}[{j}]" + (f" {x.name!r}" if x.name else "")))
    return out


def gradgradcheck(fn, inputs, grad_outputs=None, eps=1e-6, atol=1e-5, rtol=1e-4, seed=0, params=(),
                  first_order_rtol=1e-7, first_order_atol=1e-9):
    """Check double backward, in two steps (float64 throughout):

    1. The first-order gradient computed through the Tensor path (``create_graph=True``: every
       backward evaluated on Tensors) must equal the one from the fast array path, input by input,
       within ``first_order_rtol``/``first_order_atol`` (both are exact formulas, so only rounding
       may differ). A Function whose two backward branches disagree — a sign error in the Tensor
       branch alone — fails here even when that wrong branch is internally consistent.
    2. gradcheck of  (x, gy) -> grad(fn(x), [x, params], gy, create_graph=True): the second
       derivatives against central differences.

    Functions without double backward (the fused LSTM/GRU sequences) raise NotImplementedError.
    """
    inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    params = list(params)
    labelled = _labelled(inputs, params)
    checked = [x for x, _ in labelled]
    if not checked:
        raise ValueError("gradgradcheck: no input requires grad")
    saved = [x.data for x in checked]
    rng = np.random.default_rng(seed + 1)
    try:
        for x in checked:
            x.data = x.data.astype(np.float64)
        ys = _outputs(fn(*inputs))
        xp = backend.get_array_module(ys[0].data)
        if grad_outputs is None:
            gys = [Tensor(xp.asarray(rng.standard_normal(y.shape)), requires_grad=True) for y in ys]
        else:
            gos = grad_outputs if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
            gys = [Tensor(g.data if isinstance(g, Tensor) else xp.asarray(g, dtype=np.float64),
                          requires_grad=True) for g in gos]
        diff = [(y, g) for y, g in zip(ys, gys) if y.requires_grad]
        outs = [y for y, _ in diff]
        fast = grad(outs, checked, [g.data for _, g in diff], retain_graph=True, allow_unused=True)
        slow = grad(outs, checked, [g for _, g in diff], create_graph=True, allow_unused=True)
        _compare_first_order(fast, slow, labelled, first_order_rtol, first_order_atol)
    finally:
        for x, s in zip(checked, saved):
            x.data = s
    n = len(inputs)

    def first_grads(*args):
        xs, gs = args[:n], args[n:]
        outs = _outputs(fn(*xs))
        cx = [x for x in list(xs) + params if isinstance(x, Tensor) and x.requires_grad]
        gx = grad(outs, cx, list(gs), create_graph=True, allow_unused=True)
        return [g for g in gx if g is not None]   # a detached gradient must fail, not be skipped

    return gradcheck(first_grads, inputs + gys, eps=eps, atol=atol, rtol=rtol, seed=seed + 2,
                     params=params)


def _compare_first_order(fast, slow, labelled, rtol, atol):
    for (x, label), a, t in zip(labelled, fast, slow):
        if (a is None) != (t is None):
            raise GradcheckError(
                f"gradgradcheck: input {label} of shape {tuple(x.shape)} gets "
                f"{'no' if t is None else 'a'} gradient through the Tensor path (create_graph=True) but "
                f"{'no' if a is None else 'a'} gradient through the array path")
        if a is None:
            continue
        fa, ft = backend.as_numpy(a.data), backend.as_numpy(t.data)
        err = np.abs(ft - fa)
        bound = atol + rtol * np.abs(fa)
        if not (err <= bound).all():                       # (a NaN on either side fails too)
            i = np.unravel_index(int(np.nanargmax(np.where(np.isnan(err), np.inf, err - bound))), err.shape) \
                if err.ndim else ()
            raise GradcheckError(
                f"gradgradcheck: the first-order gradient of input {label} of shape {tuple(x.shape)} "
                f"computed through the Tensor path (create_graph=True) differs from the array path:\n"
                f"  at index {tuple(int(k) for k in i)}: Tensor path {float(ft[i]):.10g}, array path "
                f"{float(fa[i]):.10g}\n  max |difference| {float(np.nanmax(err)) if err.size else 0.0:.3g} "
                f"> atol {atol} + rtol {rtol} * |array path|. The two branches of some Function's "
                f"backward (on arrays / on Tensors under create_graph) disagree.")
