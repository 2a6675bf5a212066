"""Multiplicative (Luong et al. 2015) attention: the "dot", "general" and "concat" scores.

    dot      e_ij = q_iᵀ k_j                 scores.dot_score
    general  e_ij = q_iᵀ W k_j               scores.general_score
    concat   e_ij = vᵀ tanh(W [q_i; k_j])    concat_score (here; the additive form of additive.py)
    LuongAttention(score=...)                the layer: score, masked softmax, α v

(Luong's "concat" is additive in form; it lives here beside the other two of his scores and
computes through :func:`~tinyattn.attention.additive.additive_energy`.)
"""
import numpy as np

from ..nn import Parameter, init
from ._base import QKVLayer, attend_masked, check_qkv, check_positive_int
from .additive import additive_energy
from .scores import _t, _check_qk, _project, dot_score, general_score

__all__ = ["concat_score", "LuongAttention"]


def concat_score(q, k, W, v):
    """Luong's "concat" score: e_ij = vᵀ tanh(W [q_i; k_j]).

    q (..., Tq, dq), k (..., Tv, dk), W (dq + dk, h), v (h,) -> (..., Tq, Tv).
    Since [q_i; k_j] W = q_i W[:dq] + k_j W[dq:], this is :func:`~tinyattn.attention.additive.additive_score` with W split in two
    row blocks — no (Tq·Tv, dq + dk) concatenation of all pairs is ever built.
    """
    q, k, W, v = map(_t, (q, k, W, v))
    if W.ndim != 2 or W.shape[0] != q.shape[-1] + k.shape[-1]:
        raise ValueError(f"concat_score: W must be (dq + dk, h) = ({q.shape[-1]} + {k.shape[-1]}, h), "
                         f"got {W.shape} (q {q.shape}, k {k.shape})")
    if v.ndim != 1 or v.shape[0] != W.shape[1]:
        raise ValueError(f"concat_score: v must be ({W.shape[1]},), got {v.shape}")
    _check_qk("concat_score", q, k)
    dq = q.shape[-1]
    return additive_energy(_project(q, W[:dq]), _project(k, W[dq:]), v)


class LuongAttention(QKVLayer):
    """Luong's global attention with one of his three score functions:

        dot:     e_ij = q_i · k_j                        (needs dq == dk; no weights)
        general: e_ij = q_i W k_jᵀ                       W (dq, dk)
        concat:  e_ij = vᵀ tanh([q_i; k_j] W)            W (dq + dk, units), v (units, 1)
        α = masked_softmax_j(e);  out_i = Σ_j α_ij v_j

    Shapes: queries (B, Tq, dq), keys (B, Tk, dk), values (B, Tk, dv) -> (B, Tq, dv); weights
    (B, Tq, Tk). Weights (``get_weights()`` order): [] (dot), [W] (general), [W, v] (concat).
    ``units`` only applies to concat (default dk). No biases.
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, score="dot", units=None, dtype="float32"):
        super().__init__()
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"LuongAttention: score must be 'dot', 'general' or 'concat', got {score!r}")
        if units is not None and score != "concat":
            raise ValueError(f"LuongAttention: units only applies to score='concat' (got score={score!r})")
        check_positive_int("LuongAttention", "units", units, allow_none=True)
        self.score, self.units, self.dtype = score, units, np.dtype(dtype)

    def build(self, shapes):
        dq, dk = shapes[0][-1], shapes[1][-1]
        if self.score == "dot" and dq != dk:
            raise ValueError(f"LuongAttention(score='dot'): queries and keys need the same last size, "
                             f"got {shapes[0]} and {shapes[1]}; use score='general'")
        if self.score == "general":
            self.W = Parameter(init.glorot_uniform((dq, dk), self.dtype), name="W")
        elif self.score == "concat":
            units = dk if self.units is None else int(self.units)
            self.W = Parameter(init.glorot_uniform((dq + dk, units), self.dtype), name="W")
            self.v = Parameter(init.glorot_uniform((units, 1), self.dtype), name="v")

    def weights(self):
        if self.score == "dot":
            return []
        return [self.W] if self.score == "general" else [self.W, self.v]

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        check_qkv("LuongAttention", queries, keys, values)
        if self.score == "dot":
            if queries.shape[-1] != keys.shape[-1]:
                raise ValueError(f"LuongAttention(score='dot'): queries {queries.shape} and keys "
                                 f"{keys.shape} need the same last size")
            scores = dot_score(queries, keys)
        elif self.score == "general":
            if (queries.shape[-1], keys.shape[-1]) != self.W.shape:
                raise ValueError(f"LuongAttention: W is {self.W.shape}, got queries {queries.shape} "
                                 f"and keys {keys.shape}")
            scores = general_score(queries, keys, self.W)
        else:
            if queries.shape[-1] + keys.shape[-1] != self.W.shape[0]:
                raise ValueError(f"LuongAttention: W is {self.W.shape} (dq + dk rows), got queries "
                                 f"{queries.shape} and keys {keys.shape}")
            scores = concat_score(queries, keys, self.W, self.v.reshape(self.v.shape[0]))
        out, weights = attend_masked(self, scores, values, mask, valid_lens)
        return (out, weights) if return_attention_scores else out
