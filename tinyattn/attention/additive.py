"""Additive attention (Bahdanau et al. 2015) — the ONE implementation of the tanh-MLP score.

    additive_energy(qp, kp, v)   e_ij = vᵀ tanh(qp_i + kp_j)             already projected inputs
    additive_score(q, k, W_q, W_k, v)
                                 e_ij = vᵀ tanh(W_q q_i + W_k k_j)       Bahdanau's score
    BahdanauAttention            d2l's layer: additive_score, masked softmax, α v

Every other user of the form vᵀ tanh(a_i + b_j) calls these: Luong's "concat" score
(multiplicative.py, W split in two row blocks), Keras's ``AdditiveAttention`` and
``Attention(score_mode="concat")`` (keras.py) and ``ManyToOneAttention(score="bahdanau")``
(pooling.py). The pairwise tensor (..., Tq, Tk, h) is formed by broadcasting — no concatenation of
all pairs — inside the fused :class:`~tinyattn.kernels.attention.AdditiveScore` node.
"""
import numpy as np

from ..kernels.attention import AdditiveScore
from ..nn import Parameter, init
from ._base import QKVLayer, attend_masked, check_qkv, check_dropout, check_positive_int
from .scores import _t, _check_qk, _project

__all__ = ["additive_energy", "additive_score", "BahdanauAttention"]


def additive_energy(qp, kp, v):
    """e_ij = vᵀ tanh(qp_i + kp_j):  qp (..., Tq, h), kp (..., Tk, h), v (h,) -> (..., Tq, Tk).

    The additive score once q and k are projected (or not: Keras's AdditiveAttention uses q, k
    directly with v = its ``scale``). One fused node; differentiable twice.
    """
    qp, kp, v = map(_t, (qp, kp, v))
    if v.ndim != 1 or qp.shape[-1] != v.shape[0] or kp.shape[-1] != v.shape[0]:
        raise ValueError(f"additive_energy: need qp (..., Tq, h), kp (..., Tk, h), v (h,), got "
                         f"{qp.shape}, {kp.shape}, {v.shape}")
    return AdditiveScore()(qp, kp, v)


def additive_score(q, k, W_q, W_k, v):
    """Bahdanau's additive score: e_ij = vᵀ tanh(W_q q_i + W_k k_j).

    q (..., Tq, dq), k (..., Tv, dk), W_q (dq, h), W_k (dk, h), v (h,) -> (..., Tq, Tv).
    (Row-vector convention: W_q q_i is computed as q_i W_q.) The projections are two GEMMs,
    Q W_q (..., Tq, h) and K W_k (..., Tv, h); the pairwise sum (..., Tq, Tv, h) is formed by
    broadcasting and reduced against v in one fused op (:func:`additive_energy`).
    """
    q, k, W_q, W_k, v = map(_t, (q, k, W_q, W_k, v))
    if W_q.ndim != 2 or W_k.ndim != 2 or v.ndim != 1 or not (W_q.shape[1] == W_k.shape[1] == v.shape[0]):
        raise ValueError(f"additive_score: need W_q (dq, h), W_k (dk, h), v (h,), got {W_q.shape}, "
                         f"{W_k.shape}, {v.shape}")
    _check_qk("additive_score", q, k, W_q.shape[0], W_k.shape[0])
    return additive_energy(_project(q, W_q), _project(k, W_k), v)


class BahdanauAttention(QKVLayer):
    """Additive (Bahdanau) attention as in d2l: an MLP with one tanh hidden layer scores each pair.

        e_ij  = w_vᵀ tanh(q_i W_q + k_j W_k)             scores (B, Tq, Tk)
        α_ij  = masked_softmax_j(e_ij)                  keys j ≥ valid_len (or mask False) get 0
        out_i = Σ_j dropout(α)_ij v_j                   (B, Tq, dv)

    Shapes: queries (B, Tq, dq), keys (B, Tk, dk), values (B, Tk, dv); valid_lens (B,) or (B, Tq);
    mask (B, Tk) or broadcastable to (B, Tq, Tk), True = attend (bool or 0/1).
    Weights (``get_weights()`` order): ``W_q (dq, units)``, ``W_k (dk, units)``, ``w_v (units, 1)``; no
    biases. ``dropout`` drops attention weights in training (``last_attention`` is before dropout).
    A query with no valid key (valid_len 0) gets zero weights and a zero output (d2l's −1e6 fill
    gives uniform weights there instead); for every other row the two agree.
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, units, dropout=0.0, query_dim=None, key_dim=None, dtype="float32"):
        super().__init__()
        self.units = check_positive_int("BahdanauAttention", "units", units)
        self.rate = check_dropout("BahdanauAttention", dropout)
        self.dtype = np.dtype(dtype)
        check_positive_int("BahdanauAttention", "query_dim", query_dim, allow_none=True)
        check_positive_int("BahdanauAttention", "key_dim", key_dim, allow_none=True)
        if query_dim is not None and key_dim is not None:
            self.build([(None, None, query_dim), (None, None, key_dim)])
            object.__setattr__(self, "built", True)

    def build(self, shapes):
        dq, dk = shapes[0][-1], shapes[1][-1]
        self.W_q = Parameter(init.glorot_uniform((dq, self.units), self.dtype), name="W_q")
        self.W_k = Parameter(init.glorot_uniform((dk, self.units), self.dtype), name="W_k")
        self.w_v = Parameter(init.glorot_uniform((self.units, 1), self.dtype), name="w_v")

    def weights(self):
        return [self.W_q, self.W_k, self.w_v]

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        check_qkv("BahdanauAttention", queries, keys, values)
        if queries.shape[-1] != self.W_q.shape[0] or keys.shape[-1] != self.W_k.shape[0]:
            raise ValueError(f"BahdanauAttention: built for query dim {self.W_q.shape[0]} and key dim "
                             f"{self.W_k.shape[0]}, got queries {queries.shape}, keys {keys.shape}")
        scores = additive_score(queries, keys, self.W_q, self.W_k, self.w_v.reshape(self.units))
        out, weights = attend_masked(self, scores, values, mask, valid_lens, self.rate)
        return (out, weights) if return_attention_scores else out
