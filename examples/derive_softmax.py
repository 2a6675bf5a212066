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
# # Derive and check: softmax and log-softmax
#
# Every attention weight is a softmax, so this is the backward pass to know by heart. We build the
# softmax out of five small tinyattn ops, keep every intermediate tensor, let the engine run the
# backward, then derive **every** intermediate gradient again by hand in NumPy and compare, row by
# row (`tinyattn.check.compare`). Then the same for log-softmax, then the engine's one-node fused
# versions, then a numerical gradient check.
#
# Shapes: a batch of B = 3 rows of n = 5 scores, `x (B, n)`; the softmax is taken along the last
# axis. The loss is L = Σ G ⊙ y with a *random* upstream gradient G (B, n) — with G = 1 the softmax's
# gradient is exactly zero (rows sum to 1) and a wrong backward could hide.
#
# Notation: for every tensor `t`, `dt` is ∂L/∂t, of the same shape as t.

# %%
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                    # noqa: E402
from tinyattn.check import compare, compare_table        # noqa: E402

rng = np.random.default_rng(0)
B, n = 3, 5
x_np = rng.standard_normal((B, n))
G = rng.standard_normal((B, n))                          # the upstream gradient dL/dy
rows = []


def check(name, hand, got, what="grad"):
    """One row of the final table: hand-derived ``hand`` vs the engine's (``got.grad``)."""
    rows.append(compare(name, hand, got, what=what, show=False))

# %% [markdown]
# ## 1. The forward pass, one op per line
#
#     m = max_j x_j                  (B, 1)   the shift, for numerical stability
#     z = x − m                      (B, n)   every z ≤ 0, so e^z never overflows
#     e = exp(z)                     (B, n)
#     s = Σ_j e_j                    (B, 1)
#     r = 1 / s                      (B, 1)
#     y = e · r                      (B, n)   the softmax: y_j = e^{x_j − m} / Σ_k e^{x_k − m}
#     L = Σ G ⊙ y                    ()

# %%
x = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
m = x.max(axis=-1, keepdims=True)
z = x - m
e = z.exp()
s = e.sum(axis=-1, keepdims=True)
r = 1.0 / s
y = e * r
L = (y * ta.tensor(G)).sum()
for t in (m, z, e, s, r, y):
    t.retain_grad()
L.backward()
print("softmax rows sum to", y.numpy().sum(axis=-1))

# %% [markdown]
# ## 2. The backward pass by hand, last line first
#
# Each line of the forward gives one line of the backward (the chain rule, applied to one op):
#
# * `L = Σ G ⊙ y`  ⇒  `dy = G`.
# * `y = e · r` (r broadcast over the row)  ⇒  `de = dy · r` and `dr = Σ_j dy_j e_j` — a broadcast
#   input receives the **sum** of the gradients of every element it was copied to.
# * `r = 1/s`  ⇒  `ds = −dr / s²`.
# * `s = Σ_j e_j`  ⇒  every e_j gets `ds` too: `de += ds` (a second path into e: gradients add).
# * `e = exp(z)`  ⇒  `dz = de ⊙ e` (exp is its own derivative).
# * `z = x − m`  ⇒  `dx = dz` and `dm = −Σ_j dz_j`.
# * `m = max x`  ⇒  `dx += dm` at the arg-max of each row (the max passes its gradient to the winner).
#
# `dm` is zero in exact arithmetic — shifting every score by the same amount does not change a
# softmax — so what is left of it is a rounding residue (printed below); the engine adds the same
# numbers in the same order and gets the same residue.

# %%
y_ = y.numpy()
e_, s_, r_ = e.numpy(), s.numpy(), r.numpy()
dy = G
de = dy * r_
dr = (dy * e_).sum(axis=-1, keepdims=True)
ds = -dr / s_ ** 2
de = de + ds
dz = de * e_
dm = -dz.sum(axis=-1, keepdims=True)
dx = dz + dm * (x_np == x_np.max(axis=-1, keepdims=True))
print("dm (zero up to rounding):", dm.ravel())
check("softmax: dy", dy, y)
check("softmax: dr", dr, r)
check("softmax: ds", ds, s)
check("softmax: de", de, e)
check("softmax: dz", dz, z)
check("softmax: dm", dm, m)
check("softmax: dx", dx, x)

# %% [markdown]
# ## 3. Collapse it into one formula
#
# Put the lines together: `dz = e ⊙ (dy · r) − e · Σ_j dy_j e_j / s²` = `y ⊙ dy − y · Σ_j dy_j y_j`:
#
#     dx = y ⊙ (dy − Σ_j dy_j y_j)        (B, n)
#
# one pass, no n × n Jacobian. This is what tinyattn's fused `softmax` node computes in its backward.

# %%
dx_formula = y_ * (G - (G * y_).sum(axis=-1, keepdims=True))
check("softmax: dx formula", dx_formula, x)
x2 = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
(ta.softmax(x2, axis=-1) * ta.tensor(G)).sum().backward()
check("softmax: fused node dx", dx_formula, x2)
check("softmax: fused forward", y_, ta.softmax(ta.tensor(x_np), axis=-1), what="value")

# %% [markdown]
# ## 4. Log-softmax
#
#     m = max x,  z = x − m,  e = exp z,  s = Σ e,  l = log s,  o = z − l      (B, n)
#
# o_j = x_j − log Σ_k e^{x_k} is the log of the softmax, computed without ever taking log of a
# number that underflowed to 0. Backward, with `do = G`:
#
# * `o = z − l`  ⇒  `dz = do`, `dl = −Σ_j do_j`.
# * `l = log s`  ⇒  `ds = dl / s`.
# * `s = Σ e`  ⇒  `de = ds` (broadcast);  `e = exp z`  ⇒  `dz += de ⊙ e`.
# * `z = x − m`  ⇒  `dx = dz`, `dm = −Σ dz` (again ≈ 0), `dx += dm` at the arg-max.
#
# Collapsed: `dx = do − softmax(x) · Σ_j do_j`.

# %%
x3 = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
m3 = x3.max(axis=-1, keepdims=True)
z3 = x3 - m3
e3 = z3.exp()
s3 = e3.sum(axis=-1, keepdims=True)
l3 = s3.log()
o3 = z3 - l3
for t in (m3, z3, e3, s3, l3, o3):
    t.retain_grad()
(o3 * ta.tensor(G)).sum().backward()

do = G
dz3 = do.copy()
dl3 = -do.sum(axis=-1, keepdims=True)
ds3 = dl3 / s3.numpy()
de3 = np.broadcast_to(ds3, e3.shape).copy()
dz3 = dz3 + de3 * e3.numpy()
dm3 = -dz3.sum(axis=-1, keepdims=True)
dx3 = dz3 + dm3 * (x_np == x_np.max(axis=-1, keepdims=True))
check("log_softmax: do", do, o3)
check("log_softmax: dl", dl3, l3)
check("log_softmax: ds", ds3, s3)
check("log_softmax: de", de3, e3)
check("log_softmax: dz", dz3, z3)
check("log_softmax: dm", dm3, m3)
check("log_softmax: dx", dx3, x3)

sm = np.exp(o3.numpy())
dx3_formula = G - sm * G.sum(axis=-1, keepdims=True)
x4 = ta.tensor(x_np, dtype=np.float64, requires_grad=True)
(ta.log_softmax(x4, axis=-1) * ta.tensor(G)).sum().backward()
check("log_softmax: dx formula", dx3_formula, x3)
check("log_softmax: fused dx", dx3_formula, x4)

# %% [markdown]
# ## 5. The table, and a numerical gradient check
#
# Every row must be `exact` (bit-identical) or `close` (equal to rounding); `compare_table` raises —
# and the script exits non-zero — if any is `WRONG`. Then `ta.gradcheck` compares the engine's
# backward with central differences (float64, random directions, random upstream gradient), for the
# fused nodes and for the op-by-op versions built above.

# %%
compare_table(rows, title="softmax / log-softmax: hand-derived vs engine gradients")


def softmax_by_ops(x):
    e = (x - x.max(axis=-1, keepdims=True)).exp()
    return e / e.sum(axis=-1, keepdims=True)


for name, fn in [("softmax", lambda x: ta.softmax(x, axis=-1)),
                 ("log_softmax", lambda x: ta.log_softmax(x, axis=-1)),
                 ("softmax built from ops", softmax_by_ops)]:
    ta.gradcheck(fn, [ta.tensor(x_np, dtype=np.float64, requires_grad=True)])
    ta.gradgradcheck(fn, [ta.tensor(x_np, dtype=np.float64, requires_grad=True)])
    print(f"gradcheck + gradgradcheck passed: {name}")
print("OK: every hand-derived gradient matches the engine")
