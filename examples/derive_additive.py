# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Derive and check: additive (Bahdanau) attention
#
# Bahdanau et al. (2015) score a query against a key with a one-hidden-layer MLP:
#
#     e_ij = vᵀ tanh(q_i W_q + k_j W_k)
#
# then softmax over the keys and average the values. The backward has a new feature compared with
# dot-product attention: a *pairwise* tensor F (B, Tq, Tk, h), formed by broadcasting, whose
# gradient has to be summed back over the axis each input was broadcast along.
#
# Shapes: B = 2, Tq = 3 queries of width dq = 4, Tk = 5 keys of width dk = 6, values of width
# dv = 2, hidden width h = 7. valid_lens = (5, 2): in sequence 1 only the first two keys count.

# %%
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                               # noqa: E402
from tinyattn.attention import BahdanauAttention                    # noqa: E402
from tinyattn.check import compare, compare_table                   # noqa: E402

rng = np.random.default_rng(3)
B, Tq, Tk, dq, dk, dv, h = 2, 3, 5, 4, 6, 2, 7
q_np, k_np, val_np = (rng.standard_normal((B, Tq, dq)), rng.standard_normal((B, Tk, dk)),
                      rng.standard_normal((B, Tk, dv)))
Wq_np, Wk_np = rng.standard_normal((dq, h)) * 0.5, rng.standard_normal((dk, h)) * 0.5
v_np = rng.standard_normal(h)
valid_lens = np.array([5, 2])
mask = (np.arange(Tk)[None, :] < valid_lens[:, None])[:, None, :]     # (B, 1, Tk)
G = rng.standard_normal((B, Tq, dv))
rows = []


def check(name, hand, got, what="grad"):
    """One row of the final table: hand-derived ``hand`` vs the engine's (``got.grad``)."""
    rows.append(compare(name, hand, got, what=what, show=False))


# %% [markdown]
# ## 1. Forward
#
#     Pq = q W_q                               (B, Tq, h)
#     Pk = k W_k                               (B, Tk, h)
#     F  = Pq[:, :, None, :] + Pk[:, None, :, :] (B, Tq, Tk, h)   every (query, key) pair
#     T  = tanh F                              (B, Tq, Tk, h)
#     E  = T v   (Σ over h)                    (B, Tq, Tk)      the energies e_ij
#     Em = where(mask, E, −∞)                  (B, Tq, Tk)
#     A  = softmax(Em) over keys               (B, Tq, Tk)
#     C  = A V                                 (B, Tq, dv)      context vectors
#     L  = Σ G ⊙ C

# %%
q, k, val = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (q_np, k_np, val_np))
Wq, Wk, v = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (Wq_np, Wk_np, v_np))
Pq, Pk = q @ Wq, k @ Wk
F = Pq.expand_dims(2) + Pk.expand_dims(1)
T = F.tanh()
E = (T * v).sum(axis=-1)
Em = ta.where(np.broadcast_to(mask, E.shape), E, -np.inf)
A = ta.softmax(Em, axis=-1)
C = A @ val
for t in (Pq, Pk, F, T, E, Em, A, C):
    t.retain_grad()
(C * ta.tensor(G)).sum().backward()

# %% [markdown]
# ## 2. Backward by hand
#
# * `C = A V`:  `dA = dC Vᵀ`,  `dV = Aᵀ dC`.
# * softmax:  `dEm = A ⊙ (dA − Σ_j dA_j A_j)`;  mask:  `dE = mask ⊙ dEm`.
# * `E = Σ_h T ⊙ v`:  `dT = dE[..., None] · v` (B, Tq, Tk, h) and `dv = Σ_{b,i,j} dE_ij T_ij` (h,) —
#   v was broadcast over (b, i, j), so its gradient sums over them.
# * `T = tanh F`:  `dF = dT ⊙ (1 − T²)`.
# * `F = Pq (broadcast over keys) + Pk (broadcast over queries)`:  `dPq = Σ_j dF` (B, Tq, h),
#   `dPk = Σ_i dF` (B, Tk, h).
# * `Pq = q W_q`:  `dW_q = Σ_b q_bᵀ dPq_b`,  `dq = dPq W_qᵀ`; the same for k and W_k.

# %%
A_, T_ = A.numpy(), T.numpy()
dC = G
dA = dC @ val_np.swapaxes(-1, -2)
dV = A_.swapaxes(-1, -2) @ dC
dEm = A_ * (dA - (dA * A_).sum(axis=-1, keepdims=True))
dE = np.where(mask, dEm, 0.0)
dT = dE[..., None] * v_np
dv = (dE[..., None] * T_).sum(axis=(0, 1, 2))
dF = dT * (1.0 - T_ ** 2)
dPq, dPk = dF.sum(axis=2), dF.sum(axis=1)
dWq = np.einsum("bqi,bqh->ih", q_np, dPq)
dWk = np.einsum("bki,bkh->ih", k_np, dPk)
dq_, dk_ = dPq @ Wq_np.T, dPk @ Wk_np.T
for name, hand, t in [("dC", dC, C), ("dA", dA, A), ("dV", dV, val), ("dEm", dEm, Em), ("dE", dE, E),
                      ("dT", dT, T), ("dv", dv, v), ("dF", dF, F), ("dPq", dPq, Pq), ("dPk", dPk, Pk),
                      ("dW_q", dWq, Wq), ("dW_k", dWk, Wk), ("dq", dq_, q), ("dk", dk_, k)]:
    check(name, hand, t)

# %% [markdown]
# ## 3. The library's `BahdanauAttention` (d2l's layer), weights copied in
#
# Its weights are `W_q (dq, h)`, `W_k (dk, h)`, `w_v (h, 1)`; `valid_lens` builds the same mask.

# %%
layer = BahdanauAttention(h, query_dim=dq, key_dim=dk, dtype="float64")
layer.set_weights([Wq_np, Wk_np, v_np[:, None]])
q2, k2, val2 = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (q_np, k_np, val_np))
C2, A2 = layer(q2, k2, val2, valid_lens=valid_lens, return_attention_scores=True)
(C2 * ta.tensor(G)).sum().backward()
check("layer: context", C.numpy(), C2, what="value")
check("layer: weights", A_, A2, what="value")
check("layer: dW_q", dWq, layer.W_q)
check("layer: dW_k", dWk, layer.W_k)
check("layer: dw_v", dv[:, None], layer.w_v)
check("layer: dq", dq_, q2)
check("layer: dk", dk_, k2)
check("layer: dV", dV, val2)

# %% [markdown]
# ## 4. Table and gradcheck

# %%
compare_table(rows, title="additive (Bahdanau) attention: hand-derived vs engine gradients")
args = [ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (q_np, k_np, val_np)]
ta.gradcheck(lambda a, b, c: layer(a, b, c, valid_lens=valid_lens), args, params=layer.parameters())
print("gradcheck passed: BahdanauAttention (queries, keys, values, W_q, W_k, w_v)")
print("OK: every hand-derived gradient matches the engine")
