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
# # Derive and check: multi-head attention (Keras weight layout)
#
# Multi-head attention runs H scaled dot-product attentions side by side, each on its own learned
# projection of the inputs, then mixes the heads with one more projection. The weights are laid out
# as Keras's `MultiHeadAttention` stores them (`get_weights()` order), so the hand derivation below
# is also a derivation of Keras's layer:
#
#     Wq (d, H, dk)  bq (H, dk)   Wk (d, H, dk)  bk (H, dk)   Wv (d, H, dv)  bv (H, dv)
#     Wo (H, dv, dout)  bo (dout,)
#
# Shapes: B = 2, Tq = 3 queries, Tk = 4 keys, model width d = 8, H = 2 heads, dk = dv = 4 (the
# *head* width), dout = d. query x (B, Tq, d); value y (B, Tk, d) (the key is the value, as in
# Keras's default). A value mask hides the last key of sequence 1.
#
# Einstein notation keeps the head axis visible: `np.einsum("btd,dhk->bhtk", x, Wq)` is, for every
# batch b, head h and step t, Σ_d x[b,t,d] Wq[d,h,k].

# %%
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                               # noqa: E402
from tinyattn.attention import MultiHeadAttention                   # noqa: E402
from tinyattn.check import compare, compare_table                   # noqa: E402

rng = np.random.default_rng(2)
B, Tq, Tk, d, H, dk = 2, 3, 4, 8, 2, 4
dv, dout = dk, d
x_np, y_np = rng.standard_normal((B, Tq, d)), rng.standard_normal((B, Tk, d))
W_np = {"Wq": rng.standard_normal((d, H, dk)) * 0.4, "bq": rng.standard_normal((H, dk)) * 0.1,
        "Wk": rng.standard_normal((d, H, dk)) * 0.4, "bk": rng.standard_normal((H, dk)) * 0.1,
        "Wv": rng.standard_normal((d, H, dv)) * 0.4, "bv": rng.standard_normal((H, dv)) * 0.1,
        "Wo": rng.standard_normal((H, dv, dout)) * 0.4, "bo": rng.standard_normal((dout,)) * 0.1}
value_mask = np.array([[1, 1, 1, 1], [1, 1, 1, 0]], dtype=bool)         # (B, Tk)
mask4 = value_mask[:, None, None, :]                                    # (B, 1, 1, Tk)
G = rng.standard_normal((B, Tq, dout))
rows = []


def check(name, hand, got, what="grad"):
    """One row of the final table: hand-derived ``hand`` vs the engine's (``got.grad``)."""
    rows.append(compare(name, hand, got, what=what, show=False))


# %% [markdown]
# ## 1. Forward
#
#     Qh = x Wq + bq   → (B, H, Tq, dk)    per head h: Qh[b,h] = x[b] Wq[:,h,:] + bq[h]
#     Kh = y Wk + bk   → (B, H, Tk, dk)
#     Vh = y Wv + bv   → (B, H, Tk, dv)
#     R  = Qh Khᵀ                          (B, H, Tq, Tk)
#     S  = R / √dk                         (B, H, Tq, Tk)   — √ of the HEAD width dk, not of d
#     A  = softmax(S, masked)              (B, H, Tq, Tk)
#     Oh = A Vh                            (B, H, Tq, dv)
#     Y  = Σ_h Oh[:, h] Wo[h] + bo         (B, Tq, dout)    heads concatenated, then projected
#     L  = Σ G ⊙ Y

# %%
P = {k: ta.tensor(v, dtype=np.float64, requires_grad=True) for k, v in W_np.items()}
x = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
y = ta.tensor(y_np, dtype=np.float64, requires_grad=True)


def heads(inp, W, b, n):
    """(B, T, d) @ (d, H·n) + b -> (B, T, H, n) -> (B, H, T, n)."""
    Bn, T, _ = inp.shape
    return ((inp.reshape(Bn * T, d) @ W.reshape(d, H * n)) + b.reshape(H * n)) \
        .reshape(Bn, T, H, n).transpose(0, 2, 1, 3)


Qh, Kh, Vh = heads(x, P["Wq"], P["bq"], dk), heads(y, P["Wk"], P["bk"], dk), heads(y, P["Wv"], P["bv"], dv)
R = Qh @ Kh.swapaxes(-1, -2)
S = R * (1.0 / np.sqrt(dk))
Sm = ta.where(np.broadcast_to(mask4, S.shape), S, -np.inf)
A = ta.softmax(Sm, axis=-1)
Oh = A @ Vh
Y = (Oh.transpose(0, 2, 1, 3).reshape(B * Tq, H * dv) @ P["Wo"].reshape(H * dv, dout)
     + P["bo"]).reshape(B, Tq, dout)
for t in (Qh, Kh, Vh, R, S, Sm, A, Oh, Y):
    t.retain_grad()
(Y * ta.tensor(G)).sum().backward()

# %% [markdown]
# ## 2. Backward by hand, with einsum
#
# Read each einsum backwards: the gradient of an input is the upstream gradient contracted with
# the *other* inputs over the indices the input does not have.
#
# * `Y = einsum("bhqv,hvo->bqo", Oh, Wo) + bo`:  `dbo = Σ_{b,q} dY`,
#   `dWo = einsum("bhqv,bqo->hvo", Oh, dY)`,  `dOh = einsum("bqo,hvo->bhqv", dY, Wo)`.
# * `Oh = A Vh`:  `dA = dOh Vhᵀ`,  `dVh = Aᵀ dOh`.
# * softmax with mask:  `dSm = A ⊙ (dA − Σ_j dA_j A_j)`;  `dS = mask ⊙ dSm`;  `dR = dS / √dk`.
# * `R = Qh Khᵀ`:  `dQh = dR Kh`,  `dKh = dRᵀ Qh`.
# * `Qh = einsum("btd,dhk->bhtk", x, Wq) + bq`:  `dWq = einsum("btd,bhtk->dhk", x, dQh)`,
#   `dbq = Σ_{b,t} dQh`,  `dx = einsum("bhtk,dhk->btd", dQh, Wq)`. Likewise K and V from y — and y
#   receives gradient through **both** Kh and Vh: `dy = dy_from_K + dy_from_V`.

# %%
Qh_, Kh_, Vh_, A_, Oh_ = (t.numpy() for t in (Qh, Kh, Vh, A, Oh))
W = W_np
dY = G
dbo = dY.sum(axis=(0, 1))
dWo = np.einsum("bhqv,bqo->hvo", Oh_, dY)
dOh = np.einsum("bqo,hvo->bhqv", dY, W["Wo"])
dA = dOh @ Vh_.swapaxes(-1, -2)
dVh = A_.swapaxes(-1, -2) @ dOh
dSm = A_ * (dA - (dA * A_).sum(axis=-1, keepdims=True))
dS = np.where(mask4, dSm, 0.0)
dR = dS / np.sqrt(dk)
dQh = dR @ Kh_
dKh = dR.swapaxes(-1, -2) @ Qh_
dWq, dbq = np.einsum("btd,bhtk->dhk", x_np, dQh), dQh.sum(axis=(0, 2))
dWk, dbk = np.einsum("btd,bhtk->dhk", y_np, dKh), dKh.sum(axis=(0, 2))
dWv, dbv = np.einsum("btd,bhtk->dhk", y_np, dVh), dVh.sum(axis=(0, 2))
dx = np.einsum("bhtk,dhk->btd", dQh, W["Wq"])
dy = np.einsum("bhtk,dhk->btd", dKh, W["Wk"]) + np.einsum("bhtk,dhk->btd", dVh, W["Wv"])
for name, hand, t in [("dY", dY, Y), ("dOh", dOh, Oh), ("dA", dA, A), ("dVh", dVh, Vh), ("dSm", dSm, Sm),
                      ("dS", dS, S), ("dR", dR, R), ("dQh", dQh, Qh), ("dKh", dKh, Kh),
                      ("dWo", dWo, P["Wo"]), ("dbo", dbo, P["bo"]), ("dWq", dWq, P["Wq"]),
                      ("dbq", dbq, P["bq"]), ("dWk", dWk, P["Wk"]), ("dbk", dbk, P["bk"]),
                      ("dWv", dWv, P["Wv"]), ("dbv", dbv, P["bv"]), ("dx (query)", dx, x),
                      ("dy (key = value)", dy, y)]:
    check(name, hand, t)

# %% [markdown]
# ## 3. The library's layer, Keras weights copied in
#
# `MultiHeadAttention(num_heads=2, key_dim=4)` built for these shapes takes the same eight arrays in
# `set_weights` (Keras's order). Its output and every gradient must equal the hand ones. (The layer
# fuses the key and value projections into one GEMM; the sums come out the same to rounding.)

# %%
mha = MultiHeadAttention(num_heads=H, key_dim=dk, dtype="float64")
mha.build((B, Tq, d), (B, Tk, d))
mha.set_weights([W[k] for k in ("Wq", "bq", "Wk", "bk", "Wv", "bv", "Wo", "bo")])
x2 = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
y2 = ta.tensor(y_np, dtype=np.float64, requires_grad=True)
Y2, scores = mha(x2, y2, value_mask=value_mask, return_attention_scores=True, training=False)
(Y2 * ta.tensor(G)).sum().backward()
check("layer: output", Y.numpy(), Y2, what="value")
check("layer: scores", A_, scores, what="value")
for name, hand, p in zip(["layer: dWq", "layer: dbq", "layer: dWk", "layer: dbk", "layer: dWv",
                          "layer: dbv", "layer: dWo", "layer: dbo"],
                         [dWq, dbq, dWk, dbk, dWv, dbv, dWo, dbo], mha.weights()):
    check(name, hand, p)
check("layer: dx (query)", dx, x2)
check("layer: dy (value)", dy, y2)

# %% [markdown]
# ## 4. Table and gradcheck (every input and every weight of the layer)

# %%
compare_table(rows, title="multi-head attention: hand-derived vs engine gradients")
xg = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
yg = ta.tensor(y_np, dtype=np.float64, requires_grad=True)
ta.gradcheck(lambda a, b: mha(a, b, value_mask=value_mask, training=False), [xg, yg],
             params=mha.parameters())
print("gradcheck passed: MultiHeadAttention (query, value and all 8 weights)")
print("OK: every hand-derived gradient matches the engine")
