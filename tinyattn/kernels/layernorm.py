"""Layer normalization as one fused Function (``LayerNormalization``'s forward and backward).

Textbook form it must equal: ``(x − x.mean(axes)) / sqrt(x.var(axes) + ε) * γ + β`` composed of
differentiable ops (mean, sub, mul, pow), which records ~8 graph nodes; this is one node with the
backward written out (tests/test_layers.py::test_layernorm_fn_matches_composed_ops, and gradcheck /
gradgradcheck in tests/test_gradcheck.py and tests/test_layers.py).
"""
from ..autograd import Function

__all__ = ["LayerNormFn"]


class LayerNormFn(Function):
    """Layer normalization over ``axes`` as one Function.

    Forward, with μ, σ² the mean and (biased) variance of x over ``axes`` and n their element count:
        x̂ = (x − μ)·r,  r = 1/√(σ² + ε),   y = γ ⊙ x̂ + β
    x (…), γ and β broadcastable to x (the layer reshapes them), y like x.
    Backward (one pass; means over ``axes``):
        gβ = Σ gy,  gγ = Σ gy⊙x̂ (sums over the other axes, done by the engine's sum_to),
        g x̂ = gy⊙γ,   gx = r ⊙ (g x̂ − mean(g x̂) − x̂ ⊙ mean(g x̂ ⊙ x̂)).
    Double backward works: under ``create_graph`` x̂ and r are recomputed from the x Tensor.
    """

    def __init__(self, axes, epsilon):
        self.axes, self.epsilon = tuple(axes), epsilon

    def _normalize(self, x):
        mu = x.mean(axis=self.axes, keepdims=True)
        xc = x - mu
        var = (xc * xc).mean(axis=self.axes, keepdims=True)
        r = (var + self.epsilon) ** -0.5
        return xc * r, r

    def forward(self, x, gamma, beta):
        self.xhat, self.r = self._normalize(x)
        return self.xhat * gamma + beta

    def backward(self, gy):
        x, gamma, beta = self.inputs
        xhat, r = self._normalize(x) if self._as_tensors else (self.xhat, self.r)
        gx = None
        if self._inputs[0].requires_grad:
            gxh = gy * gamma
            gx = r * (gxh - gxh.mean(axis=self.axes, keepdims=True)
                      - xhat * (gxh * xhat).mean(axis=self.axes, keepdims=True))
        gg = gy * xhat if self._inputs[1].requires_grad else None
        return gx, gg, gy if self._inputs[2].requires_grad else None
