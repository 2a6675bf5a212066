"""Cosine attention (Graves et al. 2014, the Neural Turing Machine's content addressing) with a
temperature τ:

    e_ij = cos(q_i, k_j) / τ          scores.cosine_score(q, k, tau)  (the same τ, divided by)
    CosineAttention(tau, learnable_tau) the layer: cosine score, masked softmax, α v

τ is a temperature everywhere in tinyattn: small τ = sharp weights, large τ = flat weights
(the NTM's key strength β is 1/τ).
"""
import numpy as np

from .. import backend
from ..functions import clip
from ..nn import Parameter
from ._base import QKVLayer, attend_masked, check_qkv
from .scores import cosine_score

__all__ = ["CosineAttention"]


class CosineAttention(QKVLayer):
    """Attention scored by cosine similarity with a temperature τ:

        e_ij = cos(q_i, k_j) / τ = q_i·k_j / (‖q_i‖ ‖k_j‖ τ);  α = masked_softmax_j(e);  out = α v

    Shapes: queries (B, Tq, d), keys (B, Tk, d), values (B, Tk, dv) -> (B, Tq, dv); weights
    (B, Tq, Tk). Cosines lie in [−1, 1], so a small τ is what lets the weights get sharp; with
    ``learnable_tau=True``, τ is a trainable scalar weight ``tau`` (shape ()), the only entry of
    ``get_weights()`` (else there are none).
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, tau=1.0, learnable_tau=False, dtype="float32"):
        super().__init__()
        if isinstance(tau, bool) or not isinstance(tau, (int, float, np.floating, np.integer)) or not tau > 0:
            raise ValueError(f"CosineAttention: tau must be positive, got {tau}")
        self.tau0, self.learnable_tau, self.dtype = float(tau), bool(learnable_tau), np.dtype(dtype)
        if self.learnable_tau:
            xp = backend.default_xp()
            self.tau = Parameter(xp.asarray(self.tau0, dtype=self.dtype), name="tau")
            object.__setattr__(self, "built", True)

    def weights(self):
        return [self.tau] if self.learnable_tau else []

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        check_qkv("CosineAttention", queries, keys, values)
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(f"CosineAttention: queries {queries.shape} and keys {keys.shape} need the "
                             f"same last size")
        tau = clip(self.tau, 1e-3, None) if self.learnable_tau else self.tau0   # τ stays positive
        scores = cosine_score(queries, keys, tau)                  # cos / τ, as the layer
        out, weights = attend_masked(self, scores, values, mask, valid_lens)
        return (out, weights) if return_attention_scores else out
