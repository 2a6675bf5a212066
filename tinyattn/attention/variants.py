"""Attention beyond the soft global kind: hard, local (Luong 2015) and hierarchical (Yang et al. 2016).

Soft attention averages every value with weights α = softmax(scores). The variants here change
*which* positions are averaged:

* hard attention picks one position (the argmax, or a sample from α) — not differentiable, so its
  gradient is estimated (straight-through, below);
* local attention looks only inside a window of half-width D around a centre p_t and multiplies the
  weights by a Gaussian centred there;
* hierarchical attention pools words into sentence vectors, then sentences into a document vector.
"""
import numpy as np

from .. import backend
from ..autograd import Function, Tensor, array_of
from ..functions import exp, sigmoid, tanh
from ..nn import Module, Parameter, init
from .masking import masked_softmax

__all__ = ["hard_attention", "StraightThroughOneHot", "local_attention", "LocalAttention",
           "AttentionPooling", "HierarchicalAttention"]


class StraightThroughOneHot(Function):
    """y = one_hot(argmax p) (or of a sample i ~ p), along the last axis: (…, T) -> (…, T).

    The straight-through estimator (Bengio et al. 2013): the backward treats the pick as the identity,
    gp = gy, so the soft probabilities p still receive a useful gradient. (Xu et al.'s hard attention
    trains with REINFORCE instead; straight-through is the common low-variance substitute.)
    """

    def __init__(self, sample=False):
        self.sample = sample

    def forward(self, p):
        xp = backend.get_array_module(p)
        if self.sample:
            u = backend.rng(xp).random(p.shape[:-1] + (1,))
            idx = (p.cumsum(axis=-1) < u).sum(axis=-1)
            idx = xp.minimum(idx, p.shape[-1] - 1)
        else:
            idx = p.argmax(axis=-1)
        y = xp.zeros_like(p)
        xp.put_along_axis(y, idx[..., None], 1, axis=-1)
        empty = p.sum(axis=-1, keepdims=True) == 0      # a fully masked row picks nothing
        y *= ~empty
        return y

    def backward(self, gy):
        return gy


def hard_attention(scores, values, mask=None, sample=False):
    """Hard attention: out_i = v_{j*}, j* = argmax_j α_ij (or j* ~ α_i when ``sample``).

    scores (…, Tq, Tk), values (…, Tk, dv), mask True = attend  ->  (out (…, Tq, dv), weights (…, Tq, Tk)),
    where the weights are one-hot. Gradients reach the scores by the straight-through estimator.
    """
    p = masked_softmax(scores, mask)
    w = StraightThroughOneHot(sample)(p)
    return w @ values, w


def local_attention(scores, values, centers, window, mask=None):
    """Luong et al.'s local attention: a window of half-width D = ``window`` around centre p_t.

        α_ts = softmax_{s : |s − p_t| ≤ D}(score_ts) · exp(−(s − p_t)² / (2σ²)),   σ = D / 2
        c_t  = Σ_s α_ts v_s

    scores (B, Tq, Tk); values (B, Tk, dv); centers p (B, Tq) — a Tensor (local-p: learned, gets a
    gradient through the Gaussian) or an array (local-m: p_t = t). Positions outside the window are
    masked (the window edges follow round(p_t) and carry no gradient). Returns (context (B, Tq, dv),
    weights (B, Tq, Tk)); as in the paper, the Gaussian makes the weights sum to less than 1.
    """
    centers = centers if isinstance(centers, Tensor) else Tensor(centers)
    xp = backend.get_array_module(scores.data)
    tk = scores.shape[-1]
    pos = xp.arange(tk, dtype=scores.dtype)                          # s = 0 .. Tk−1
    p = centers.reshape(centers.shape + (1,))                         # (B, Tq, 1)
    inside = xp.abs(pos - xp.round(p.data)) <= window                 # (B, Tq, Tk) window mask
    if mask is not None:                      # a key mask (B, Tk) serves every query: (B, 1, Tk)
        m = xp.asarray(array_of(mask)).astype(bool)
        inside = inside & (m[..., None, :] if m.ndim == scores.ndim - 1 else m)
    sigma = window / 2.0
    gauss = exp((p - pos) * (p - pos) * (-1.0 / (2 * sigma * sigma)))
    w = masked_softmax(scores, inside) * gauss
    return w @ values, w


class LocalAttention(Module):
    """Luong local attention with a ``general`` score (q W kᵀ) and a window of half-width ``window``.

    mode "monotonic" (local-m): p_t = t (query index t aligned with source position t).
    mode "predictive" (local-p): p_t = S · σ(v_pᵀ tanh(W_p h_t)), S = Tk − 1 here, so p_t ∈ [0, S].
    Call: (queries (B, Tq, d), values (B, Tk, d)) -> context (B, Tq, d); the weights (B, Tq, Tk) are
    kept in ``last_attention`` (and returned with ``return_attention_scores=True``).
    Weights: ``w (d, d)``, and for "predictive" ``w_p (d, units)``, ``v_p (units, 1)``.
    """

    def __init__(self, window=2, mode="predictive", units=32, dtype="float32"):
        super().__init__()
        if mode not in ("monotonic", "predictive"):
            raise ValueError(f"LocalAttention: mode must be 'monotonic' or 'predictive', got {mode!r}")
        self.window, self.mode, self.units, self.dtype = window, mode, units, np.dtype(dtype)
        self.last_attention = None

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
            xp = backend.get_array_module(q.data)
            centers = xp.broadcast_to(xp.minimum(xp.arange(q.shape[-2]), tk - 1).astype(q.dtype),
                                      q.shape[:-1])
        else:
            centers = sigmoid(tanh(q @ self.w_p) @ self.v_p).reshape(q.shape[:-1]) * (tk - 1)
        out, w = local_attention(scores, v, centers, self.window, mask)
        self.last_attention = w.numpy()
        return (out, w) if return_attention_scores else out


class AttentionPooling(Module):
    """Attention pooling over a sequence (Yang et al. 2016, one level of HAN):

        u_t = tanh(h_t W + b),   α_t = softmax_t(u_t · u_ctx),   s = Σ_t α_t h_t

    h (…, T, d) -> s (…, d); mask (…, T) True = real step. Weights ``kernel (d, units)``,
    ``bias (units,)``, ``context (units,)`` (the learned query u_ctx).
    """

    def __init__(self, units, dtype="float32"):
        super().__init__()
        self.units, self.dtype = units, np.dtype(dtype)
        self.last_attention = None

    def build(self, input_shape):
        d = input_shape[-1]
        self.kernel = Parameter(init.glorot_uniform((d, self.units), self.dtype), name="kernel")
        self.bias = Parameter(init.zeros((self.units,), self.dtype), name="bias")
        self.context = Parameter(init.glorot_uniform((self.units, 1), self.dtype).reshape(self.units),
                                 name="context")

    def forward(self, h, mask=None, return_attention_scores=False):
        u = tanh(h @ self.kernel + self.bias)                    # (…, T, units)
        scores = u @ self.context                                # (…, T)
        alpha = masked_softmax(scores, mask)                     # (…, T)
        s = (alpha.reshape(alpha.shape + (1,)) * h).sum(axis=-2)  # (…, d)
        self.last_attention = alpha.numpy()
        return (s, alpha) if return_attention_scores else s


class HierarchicalAttention(Module):
    """Two-level attention pooling (HAN): words -> sentence vectors -> one document vector.

    x (B, S, W, d) word features (e.g. BiLSTM outputs) -> word-level ``AttentionPooling`` gives
    sentences (B, S, d) -> sentence-level ``AttentionPooling`` gives the document (B, d).
    ``word_mask`` (B, S, W) and ``sentence_mask`` (B, S) mark real words / sentences (True = keep).
    Word and sentence attention weights are kept in ``word_attention`` / ``sentence_attention``.
    """

    def __init__(self, word_units, sentence_units, dtype="float32"):
        super().__init__()
        self.word = AttentionPooling(word_units, dtype)
        self.sentence = AttentionPooling(sentence_units, dtype)

    def forward(self, x, word_mask=None, sentence_mask=None, return_attention_scores=False):
        sents, a_w = self.word(x, mask=word_mask, return_attention_scores=True)        # (B, S, d)
        doc, a_s = self.sentence(sents, mask=sentence_mask, return_attention_scores=True)  # (B, d)
        self.word_attention, self.sentence_attention = a_w.numpy(), a_s.numpy()
        return (doc, a_w, a_s) if return_attention_scores else doc
