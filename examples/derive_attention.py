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
# # Derive and check: scaled dot-product attention with a mask
#
# The heart of a Transformer (Vaswani et al. 2017):
#
#     out = softmax(Q Kᵀ / √d, masked) V
#
# We build it from tinyattn ops, keeping every intermediate; derive every gradient by hand in NumPy;
# compare each with the engine's; then compare with the library's fused one-node
# `scaled_dot_product_attention` and gradcheck both.
#
# Shapes: B = 2 sequences, Tq = 4 queries, Tk = 5 keys, d = 6 (query/key width), dv = 3.
#
#     Q (B, Tq, d)   K (B, Tk, d)   V (B, Tk, dv)   mask (B, 1, Tk)  True = attend
#
# The mask is a *padding* mask: sequence 0 has 5 real keys, sequence 1 only 3 (keys 3 and 4 are
# padding and must get exactly zero weight). It broadcasts over the Tq query rows.

# %%
import os
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                                   # noqa: E402
from tinyattn.attention import scaled_dot_product_attention             # noqa: E402
from tinyattn.check import compare, compare_table                       # noqa: E402
from tinyattn.viz import draw_graph                                     # noqa: E402

rng = np.random.default_rng(1)
B, Tq, Tk, d, dv = 2, 4, 5, 6, 3
Q_np, K_np = rng.standard_normal((B, Tq, d)), rng.standard_normal((B, Tk, d))
V_np = rng.standard_normal((B, Tk, dv))
valid = np.array([5, 3])
mask = (np.arange(Tk)[None, :] < valid[:, None])[:, None, :]        # (B, 1, Tk)
G = rng.standard_normal((B, Tq, dv))                                  # upstream gradient dL/dout
rows = []


def check(name, hand, got, what="grad"):
    """One row of the final table: hand-derived ``hand`` vs the engine's (``got.grad``)."""
    rows.append(compare(name, hand, got, what=what, show=False))


# %% [markdown]
# ## 1. Forward, one op per line
#
#     S  = Q Kᵀ                        (B, Tq, Tk)   raw scores, S_ij = q_i · k_j
#     Sc = S · c,  c = 1/√d            (B, Tq, Tk)   scaled: keeps the variance of S_ij near 1
#     Sm = where(mask, Sc, −∞)         (B, Tq, Tk)   masked keys can never win
#     A  = softmax(Sm) along keys      (B, Tq, Tk)   each row sums to 1; masked entries are exactly 0
#     O  = A V                         (B, Tq, dv)   each output row: a weighted average of values
#     L  = Σ G ⊙ O

# %%
Q = ta.tensor(Q_np, dtype=np.float64, requires_grad=True)
K = ta.tensor(K_np, dtype=np.float64, requires_grad=True)
V = ta.tensor(V_np, dtype=np.float64, requires_grad=True)
c = 1.0 / np.sqrt(d)
S = Q @ K.swapaxes(-1, -2)
Sc = S * c
Sm = ta.where(np.broadcast_to(mask, S.shape), Sc, -np.inf)
A = ta.softmax(Sm, axis=-1)
O = A @ V
for t in (S, Sc, Sm, A, O):
    t.retain_grad()
Q.name, K.name, V.name, A.name = "Q", "K", "V", "A"
L = (O * ta.tensor(G)).sum()
L.backward()
print("weights of sequence 1 (keys 3, 4 are padding):\n", np.round(A.numpy()[1], 3))

# %% [markdown]
# ## 2. Backward by hand
#
# * `O = A V` (a batched matrix product): `dA = dO Vᵀ` (B, Tq, Tk) and `dV = Aᵀ dO` (B, Tk, dv).
#   Shapes decide the formulas: dA must be (Tq, Tk), and (Tq, dv)·(dv, Tk) is the only product of
#   dO and V with that shape.
# * `A = softmax(Sm)` row by row: `dSm = A ⊙ (dA − Σ_j dA_j A_j)` (see derive_softmax.py).
#   Masked entries have A = 0, so their dSm is 0 automatically.
# * `Sm = where(mask, Sc, −∞)`: the gradient passes where the mask is True, 0 elsewhere:
#   `dSc = mask ⊙ dSm`.
# * `Sc = c · S`: `dS = c · dSc`.
# * `S = Q Kᵀ`: `dQ = dS K` (B, Tq, d) and `dK = dSᵀ Q` (B, Tk, d).

# %%
A_, Sc_ = A.numpy(), Sc.numpy()
dO = G
dA = dO @ V_np.swapaxes(-1, -2)
dV = A_.swapaxes(-1, -2) @ dO
dSm = A_ * (dA - (dA * A_).sum(axis=-1, keepdims=True))
dSc = np.where(mask, dSm, 0.0)
dS = c * dSc
dQ = dS @ K_np
dK = dS.swapaxes(-1, -2) @ Q_np
check("dO", dO, O)
check("dA", dA, A)
check("dV", dV, V)
check("dSm", dSm, Sm)
check("dSc", dSc, Sc)
check("dS", dS, S)
check("dQ", dQ, Q)
check("dK", dK, K)

# %% [markdown]
# ## 3. The same attention as one fused node
#
# `scaled_dot_product_attention(q, k, v, mask=...)` (PyTorch's `F.scaled_dot_product_attention`
# semantics) does all of the above in one `Function`, whose backward is exactly the five hand lines.
# Its output, its weights and its three input gradients must equal ours.

# %%
q2, k2, v2 = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (Q_np, K_np, V_np))
out2, w2 = scaled_dot_product_attention(q2, k2, v2, mask=mask, return_weights=True)
(out2 * ta.tensor(G)).sum().backward()
check("fused: out", O.numpy(), out2, what="value")
check("fused: weights", A_, w2, what="value")
check("fused: dQ", dQ, q2)
check("fused: dK", dK, k2)
check("fused: dV", dV, v2)

# %% [markdown]
# ## 4. See the graph
#
# `draw_graph(L)` walks the graph behind the loss (`Tensor.creator`, `Function.input_tensors`) and
# returns it as Graphviz DOT text: one ellipse per op, one box per tensor (shape, dtype, name, and
# ‖grad‖ for the tensors that kept a gradient). Given a path (`python derive_attention.py graph.png`)
# it draws it — with Graphviz's `dot` if installed, otherwise with matplotlib.

# %%
dot = draw_graph(L)
ops = re.findall(r'shape=ellipse[^\n]*label="([A-Za-z]+)', dot)
print("ops in the graph, inputs first:", " -> ".join(ops))
graph_path = next((a for a in sys.argv[1:] if a.endswith((".png", ".svg"))), None)
if graph_path:
    draw_graph(L, graph_path, title="scaled dot-product attention, after backward")
    print(f"graph written to {graph_path}")

# %% [markdown]
# ## 5. Table, property checks and gradcheck
#
# Rows sum to 1, padding keys get exactly 0, and `ta.gradcheck` (central differences in float64,
# random upstream gradient) agrees with both the op-by-op graph and the fused node.

# %%
compare_table(rows, title="scaled dot-product attention: hand-derived vs engine gradients")
assert np.allclose(A_.sum(axis=-1), 1.0), "rows of A must sum to 1"
assert np.all(A_[1, :, 3:] == 0.0), "padding keys must get exactly 0 weight"
print("properties: rows sum to 1; padding keys get exactly 0")


def by_ops(q, k, v):
    s = (q @ k.swapaxes(-1, -2)) * c
    return ta.softmax(ta.where(np.broadcast_to(mask, s.shape), s, -np.inf), axis=-1) @ v


def fused(q, k, v):
    return scaled_dot_product_attention(q, k, v, mask=mask)


for name, fn in [("op by op", by_ops), ("fused node", fused)]:
    args = [ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (Q_np, K_np, V_np)]
    ta.gradcheck(fn, args)
    print(f"gradcheck passed: {name}")
print("OK: every hand-derived gradient matches the engine")
