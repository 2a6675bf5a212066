"""Hard attention (Xu et al. 2015): attend to ONE position instead of averaging all of them.

    hard_attention(scores, values, mask, sample)   out_i = v_{j*},  j* = argmax_j α_ij  (or j* ~ α_i)
    StraightThroughOneHot                          the pick, with a straight-through gradient
    HardAttention(estimator=...)                   the layer, trained by REINFORCE, Gumbel-softmax
                                                   or straight-through (estimators.py)

The pick is not differentiable; its gradient is estimated: straight-through (Bengio et al. 2013),
straight-through Gumbel-softmax (Jang et al. 2017) or REINFORCE (Williams 1992, as Xu et al.).
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ._base import QKVLayer, check_qkv, key_mask
from .estimators import (StraightThroughOneHot, Reinforce, gumbel_softmax, sample_categorical,
                         categorical_log_prob, categorical_entropy)
from .masks import masked_softmax

__all__ = ["hard_attention", "StraightThroughOneHot", "HardAttention"]


def hard_attention(scores, values, mask=None, sample=False):
    """Hard attention: out_i = v_{j*}, j* = argmax_j α_ij (or j* ~ α_i when ``sample``).

    scores (…, Tq, Tk), values (…, Tk, dv), mask True = attend  ->  (out (…, Tq, dv), weights (…, Tq, Tk)),
    where the weights are one-hot. Gradients reach the scores by the straight-through estimator.
    """
    p = masked_softmax(scores, mask)
    w = StraightThroughOneHot(sample)(p)
    return w @ values, w


class HardAttention(QKVLayer):
    """Hard (stochastic) attention: each query reads ONE value, sampled in training, argmax at inference.

        e_ij = q_i·k_j / √d  (``score="scaled_dot"``)  or  q_i·k_j  (``score="dot"``)    (B, Tq, Tk)
        p_i  = masked_softmax_j(e_ij)                                                     (B, Tq, Tk)
        training:   j_i ~ p_i;  inference: j_i = argmax_j p_ij;   w_i = one_hot(j_i)      (B, Tq, Tk)
        out_i = Σ_j w_ij v_j = v_{j_i}                                                    (B, Tq, dv)

    How the scores learn (``estimator``), all with the same one-hot forward:
        "reinforce"         w is a constant sample; after the call ``layer.log_prob`` = log p_i(j_i)
                            (B, Tq) and ``layer.entropy`` = H(p_i) (B, Tq) are kept, and
                            ``layer.reinforce_loss(reward)`` (reward (B, Tq) or (B, 1), higher = better)
                            returns the REINFORCE surrogate loss with the layer's :class:`Reinforce`
                            (moving-average baseline ``baseline_decay``, entropy bonus ``entropy_weight``)
                            to add to the task loss.
        "gumbel"            w = gumbel_softmax(e, tau, hard=True): a sample of p; backward the gradient of
                            softmax((e + g)/τ) (straight-through Gumbel-softmax).
        "straight_through"  w = one_hot(j_i ~ p_i); backward as if w were p (Bengio et al. 2013).
    No weights. Call: ``layer(queries, keys, values=None, mask=None, training=None,
    return_attention_scores=False)`` (training None: the layer's mode, ``train()`` / ``eval()``);
    the returned weights are the one-hot w; ``last_probs`` keeps p for plotting. A query with every key
    masked reads zeros.
    """

    ESTIMATORS = ("reinforce", "gumbel", "straight_through")

    def __init__(self, estimator="reinforce", score="scaled_dot", tau=1.0, baseline_decay=0.9,
                 entropy_weight=0.0, dtype="float32"):
        super().__init__()
        if estimator not in self.ESTIMATORS:
            raise ValueError(f"HardAttention: estimator must be one of {self.ESTIMATORS}, got {estimator!r}")
        if score not in ("dot", "scaled_dot"):
            raise ValueError(f"HardAttention: score must be 'dot' or 'scaled_dot', got {score!r}")
        if not tau > 0:
            raise ValueError(f"HardAttention: tau must be positive, got {tau}")
        self.estimator, self.score, self.tau, self.dtype = estimator, score, float(tau), np.dtype(dtype)
        object.__setattr__(self, "reinforce", Reinforce(baseline_decay, entropy_weight))
        object.__setattr__(self, "log_prob", None)
        object.__setattr__(self, "entropy", None)
        object.__setattr__(self, "last_probs", None)
        object.__setattr__(self, "built", True)

    def weights(self):
        return []

    def forward(self, queries, keys, values, mask=None, training=None, return_attention_scores=False):
        check_qkv("HardAttention", queries, keys, values)
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(f"HardAttention: queries {queries.shape} and keys {keys.shape} need the same "
                             f"last size")
        training = self.training if training is None else bool(training)
        e = queries @ keys.swapaxes(-1, -2)
        if self.score == "scaled_dot":
            e = e * (1.0 / math.sqrt(queries.shape[-1]))
        m = key_mask("HardAttention", mask, e)
        p = masked_softmax(e, m)
        object.__setattr__(self, "last_probs", p.detach())
        xp = backend.get_array_module(e.data)
        if not training:
            w = Tensor(StraightThroughOneHot(sample=False).forward(p.data))
        elif self.estimator == "gumbel":
            w = gumbel_softmax(e, self.tau, hard=True, mask=m)
        elif self.estimator == "straight_through":
            w = StraightThroughOneHot(sample=True)(p)
        else:
            j = sample_categorical(e, mask=m)
            w = xp.zeros(e.shape, dtype=e.dtype)
            xp.put_along_axis(w, j[..., None], 1, axis=-1)
            if m is not None:
                w *= xp.broadcast_to(m, e.shape).any(axis=-1, keepdims=True)
            w = Tensor(w)
            object.__setattr__(self, "log_prob", categorical_log_prob(e, j, mask=m))
            object.__setattr__(self, "entropy", categorical_entropy(e, mask=m))
        object.__setattr__(self, "last_attention", w.detach())
        out = w @ values
        return (out, w) if return_attention_scores else out

    def reinforce_loss(self, reward, update_baseline=True):
        """REINFORCE surrogate loss for the last training call (``estimator="reinforce"``): reward
        (B, Tq) or broadcastable, higher = better; see :class:`Reinforce`. Returns a scalar Tensor."""
        if self.estimator != "reinforce":
            raise ValueError(f"HardAttention.reinforce_loss: the layer uses estimator={self.estimator!r}; "
                             f"construct it with estimator='reinforce'")
        if self.log_prob is None:
            raise ValueError("HardAttention.reinforce_loss: call the layer in training mode first (it keeps "
                             "the log-probabilities of the positions it sampled)")
        return self.reinforce.loss(self.log_prob, reward, self.entropy, update=update_baseline)
