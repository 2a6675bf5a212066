"""One decoder step of additive attention as a single Function (the hot spot of the decoders' loop).

The textbook form, with one query per batch row (the decoder state) and the projections done outside
(W_q s once per step, W_k h_j once per sentence):

    e_j = vᵀ tanh(qp + k_j)                 ``tinyattn.attention.additive_score``
    α   = masked_softmax(e)                 padding: exactly 0
    c   = Σ_j α_j x_j                       ``tinyattn.attention.attend``

Fused, the step makes three (B, S, ·) arrays (tanh, the values' gradient and the keys' gradient) instead
of the half-dozen the composed ops allocate, and one graph node instead of four. It is tested equal to
the composition (values and gradients) in ``tests/test_seq2seq.py``.
"""
import numpy as np

from .. import backend, parallel
from ..autograd import Function
from ..functions.nn import softmax_
from ..functions.masks import as_mask

__all__ = ["AdditiveAttentionStep", "additive_attention"]


def _add_tanh(h, a, b):
    """h ← tanh(a + b) (one block of rows)."""
    xp = backend.get_array_module(h)
    xp.add(a, b, out=h)
    xp.tanh(h, out=h)


def _score_grad(G, H, v, ge):
    """G ← (1 − H²) ⊙ v ⊙ ge (one block of rows; the operations of the serial form, in its order)."""
    xp = backend.get_array_module(G)
    xp.multiply(H, H, out=G)
    xp.subtract(1, G, out=G)
    G *= v
    G *= ge


class AdditiveAttentionStep(Function):
    """(qp (B, A), keys (B, S, A), values (B, S, D), v (A,)) → (context (B, D), α (B, S)):

        H = tanh(qp[:, None] + keys)  (B, S, A);   e = H v;   α = masked_softmax(e);   c = α X

    Backward (gc, gα the upstream gradients of the context and of the weights):

        gα' = X gc + gα,   gX = α ⊗ gc,   ge = α ⊙ (gα' − Σ_j α_j gα'_j),
        G = (ge ⊗ v) ⊙ (1 − H²),   g keys = G,   g qp = Σ_j G_j,   g v = Σ_{b,j} ge_bj H_bj

    Masked keys have α = 0, hence ge = 0, G = 0 and gX = 0 there: exactly zero gradient.
    ``mask`` (B, S) boolean, True = a real position (None: all real). Array-only backward.
    """

    def __init__(self, mask=None):
        self.drop = None if mask is None else ~mask

    def forward(self, qp, keys, values, v):
        xp = backend.get_array_module(qp, keys, values, v)
        B, S, A = keys.shape
        if qp.shape != (B, A) or v.shape != (A,) or values.shape[:2] != (B, S):
            raise ValueError(f"additive_attention: expected qp (B, A), keys (B, S, A), values (B, S, D), "
                             f"v (A,); got qp {tuple(qp.shape)}, keys {tuple(keys.shape)}, values "
                             f"{tuple(values.shape)}, v {tuple(v.shape)}")
        if xp is np:                   # H = tanh(qp + k_j): row blocks on the pool when large
            H = np.empty((B, S, A), dtype=np.result_type(qp, keys))
            parallel.rows(_add_tanh, H, qp[:, None, :], keys, tail=0)
        else:
            H = qp[:, None, :] + keys
            xp.tanh(H, out=H)
        e = (H.reshape(B * S, A) @ v).reshape(B, S)
        a = softmax_(e, self.drop, axis=-1)
        self.H, self.a = H, a          # α kept here: the weights output may be dropped by the caller
        return (a[:, None, :] @ values)[:, 0], a

    def backward(self, gc, ga):
        if self._as_tensors:
            raise NotImplementedError("AdditiveAttentionStep: double backward (create_graph=True) is not "
                                      "supported; compose additive_score, masked_softmax and attend instead")
        qp, keys, values, v = self.inputs
        need_q, need_k, need_x, need_v = (x.requires_grad for x in self._inputs)
        a, H = self.a, self.H
        xp = backend.get_array_module(H)
        B, S, A = H.shape
        gx = None
        if gc is not None:
            g_alpha = (values @ gc[:, :, None])[:, :, 0]                      # (B, S)
            if ga is not None:
                g_alpha += ga
            if need_x:
                gx = xp.einsum("bs,bd->bsd", a, gc)                          # (B, S, D) outer products
        else:
            g_alpha = ga
        ge = a * (g_alpha - (a * g_alpha).sum(axis=1, keepdims=True))      # softmax backward
        gv = H.reshape(B * S, A).T @ ge.reshape(B * S) if need_v else None
        gq = gk = None
        if need_q or need_k:
            G = xp.empty_like(H)
            parallel.rows(_score_grad, G, H, v, ge[:, :, None], tail=0)   # (1 − H²) ⊙ v ⊙ ge
            gq = xp.einsum("bsa->ba", G) if need_q else None              # Σ_j G_j
            gk = G if need_k else None
        return gq, gk, gx, gv


def additive_attention(qp, keys, values, v, mask=None):
    """Fused additive attention for one query per row: → (context (B, D), weights α (B, S)).
    See :class:`AdditiveAttentionStep`; mask (B, S) True = real, through :func:`as_mask` (to the
    data's device)."""
    mask = as_mask(mask, keys, shape=tuple(keys.shape[:2]), where="additive_attention")
    return AdditiveAttentionStep(mask)(qp, keys, values, v)
