"""Local attention (Luong et al. 2015, §3.2): attend inside a window of half-width D around a
centre p_t, with the weights multiplied by a Gaussian centred there.

    local_attention(scores, values, centers, window)    the mechanism, any centres
    local_m_centers(tq, tk, batch, like)                local-m: p_t = t (monotonic alignment)
    local_p_centers(q, w_p, v_p, tk)                    local-p: p_t = S · σ(v_pᵀ tanh(W_p h_t))
    LocalMonotonicAttention(window)                     the local-m layer (general score q W kᵀ)
    LocalPredictiveAttention(window, units)             the local-p layer (general score q W kᵀ)
    LocalAttention(window, mode)                        either, chosen by ``mode``
"""
import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import exp, sigmoid, tanh
from ..functions.masks import as_mask
from ..nn import Module, Parameter, init, cast_input
from ._base import check_positive_int
from .masks import masked_softmax

__all__ = ["local_attention", "local_m_centers", "local_p_centers", "LocalAttention",
           "LocalMonotonicAttention", "LocalPredictiveAttention"]


def _check_window(where, window):
    if isinstance(window, bool) or not hasattr(window, "__index__") or int(window) <= 0:
        raise ValueError(f"{where}: window (the half-width D) must be a positive integer, got {window!r}")
    return int(window)


def local_attention(scores, values, centers, window, mask=None):
    """Luong et al.'s local attention: a window of half-width D = ``window`` around centre p_t.

        α_ts = softmax_{s : |s − p_t| ≤ D}(score_ts) · exp(−(s − p_t)² / (2σ²)),   σ = D / 2
        c_t  = Σ_s α_ts v_s

    scores (B, Tq, Tk); values (B, Tk, dv); centers p (B, Tq) — a Tensor (local-p: learned, gets a
    gradient through the Gaussian) or an array (local-m: p_t = t). mask: a key mask (B, Tk) or
    anything broadcasting to (B, Tq, Tk), True = attend. Positions outside the window are masked
    (the window edges follow round(p_t) and carry no gradient). Returns (context (B, Tq, dv),
    weights (B, Tq, Tk)); as in the paper, the Gaussian makes the weights sum to less than 1.
    """
    window = _check_window("local_attention", window)
    scores = scores if isinstance(scores, Tensor) else Tensor(scores)
    centers = centers if isinstance(centers, Tensor) else \
        Tensor(backend.get_array_module(scores.data).asarray(centers, dtype=scores.dtype))
    if tuple(centers.shape) != tuple(scores.shape[:-1]):
        raise ValueError(f"local_attention: centers {centers.shape} must be the scores' {scores.shape[:-1]}")
    xp = backend.get_array_module(scores.data)
    tk = scores.shape[-1]
    pos = xp.arange(tk, dtype=scores.dtype)                          # s = 0 .. Tk−1
    p = centers.reshape(centers.shape + (1,))                         # (B, Tq, 1)
    inside = xp.abs(pos - xp.round(p.data)) <= window                 # (B, Tq, Tk) window mask
    m = as_mask(mask, scores, where="local_attention")
    if m is not None:                         # a key mask (B, Tk) serves every query: (B, 1, Tk)
        if m.ndim == scores.ndim - 1:
            m = m[..., None, :]
        inside = inside & as_mask(m, scores, shape=scores.shape, where="local_attention")
    sigma = window / 2.0
    gauss = exp((p - pos) * (p - pos) * (-1.0 / (2 * sigma * sigma)))
    w = masked_softmax(scores, inside) * gauss
    return w @ values, w


def local_m_centers(tq, tk, batch, like):
    """local-m centres p_t = min(t, Tk − 1): (batch, Tq), on ``like``'s device and dtype."""
    xp = backend.get_array_module(like.data if isinstance(like, Tensor) else like)
    return xp.broadcast_to(xp.minimum(xp.arange(tq), tk - 1).astype(like.dtype), (batch, tq))


def local_p_centers(q, w_p, v_p, tk):
    """local-p centres p_t = S · σ(v_pᵀ tanh(W_p h_t)), S = Tk − 1: q (B, Tq, d), w_p (d, units),
    v_p (units, 1) -> (B, Tq), differentiable (the Gaussian passes gradients to W_p, v_p)."""
    return sigmoid(tanh(q @ w_p) @ v_p).reshape(q.shape[:-1]) * (tk - 1)


class LocalAttention(Module):
    """Luong local attention with a ``general`` score (q W kᵀ) and a window of half-width ``window``.

    mode "monotonic" (local-m, :class:`LocalMonotonicAttention`): p_t = t.
    mode "predictive" (local-p, :class:`LocalPredictiveAttention`): p_t = S · σ(v_pᵀ tanh(W_p h_t)),
    S = Tk − 1 here, so p_t ∈ [0, S].
    Call: ([queries (B, Tq, d), values (B, Tk, d)], mask=None) -> context (B, Tq, d); the weights
    (B, Tq, Tk) are kept in ``last_attention`` (and returned with ``return_attention_scores=True``).
    Weights: ``w (d, d)``, and for "predictive" ``w_p (d, units)``, ``v_p (units, 1)``.
    """
    keras_mask_args = ()      # its mask arguments are not Keras masks of its inputs

    def __init__(self, window=2, mode="predictive", units=32, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        if mode not in ("monotonic", "predictive"):
            raise ValueError(f"{name}: mode must be 'monotonic' or 'predictive', got {mode!r}")
        self.window = _check_window(name, window)
        self.units = check_positive_int(name, "units", units)
        self.mode, self.dtype = mode, np.dtype(dtype)
        self.last_attention = None

    def __call__(self, inputs, *args, **kwargs):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(f"{name}: call it on a list [queries, values], got {type(inputs).__name__}")
        q, v = cast_input(self, inputs[0], "queries"), cast_input(self, inputs[1], "values")
        if q.ndim != 3 or v.ndim != 3 or q.shape[0] != v.shape[0] or q.shape[-1] != v.shape[-1]:
            raise ValueError(f"{name}: queries (B, Tq, d) and values (B, Tk, d) needed, got {q.shape}, {v.shape}")
        return super().__call__([q, v], *args, **kwargs)

    def build(self, input_shape):
        d = input_shape[0][-1]
        self.w = Parameter(init.glorot_uniform((d, d), self.dtype), name="w")
        if self.mode == "predictive":
            self.w_p = Parameter(init.glorot_uniform((d, self.units), self.dtype), name="w_p")
            self.v_p = Parameter(init.glorot_uniform((self.units, 1), self.dtype), name="v_p")

    def forward(self, inputs, mask=None, return_attention_scores=False):
        q, v = inputs
        scores = (q @ self.w) @ v.swapaxes(-1, -2)                              # (B, Tq, Tk)
        tk = v.shape[-2]
        if self.mode == "monotonic":
            centers = local_m_centers(q.shape[-2], tk, q.shape[0], q.data)
        else:
            centers = local_p_centers(q, self.w_p, self.v_p, tk)
        out, w = local_attention(scores, v, centers, self.window, mask)
        self.last_attention = w.numpy()
        return (out, w) if return_attention_scores else out


class LocalMonotonicAttention(LocalAttention):
    """local-m (Luong et al. 2015): centres p_t = t; window half-width ``window``; general score.
    Weights: ``w (d, d)``. See :class:`LocalAttention` for the call."""

    def __init__(self, window=2, dtype="float32"):
        super().__init__(window=window, mode="monotonic", dtype=dtype)


class LocalPredictiveAttention(LocalAttention):
    """local-p (Luong et al. 2015): centres predicted, p_t = S · σ(v_pᵀ tanh(W_p h_t)); general score.
    Weights: ``w (d, d)``, ``w_p (d, units)``, ``v_p (units, 1)``. See :class:`LocalAttention`."""

    def __init__(self, window=2, units=32, dtype="float32"):
        super().__init__(window=window, mode="predictive", units=units, dtype=dtype)
