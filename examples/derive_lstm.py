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
# # Derive and check: one LSTM step, then backpropagation through time over three steps
#
# The LSTM of Hochreiter & Schmidhuber (1997), with the forget gate of Gers et al. (2000), in the
# layout Keras uses: one kernel K (d, 4u), one recurrent kernel R (u, 4u), one bias b (4u,), the
# four gate blocks side by side in the order **i, f, c, o** (input, forget, cell candidate, output):
#
#     z  = x K + h R + b                     (B, 4u)
#     i  = σ(z[:, 0:u])      f = σ(z[:, u:2u])      g = tanh(z[:, 2u:3u])      o = σ(z[:, 3u:4u])
#     c' = f ⊙ c + i ⊙ g                     (B, u)   the cell: forget some, write some
#     h' = o ⊙ tanh(c')                      (B, u)   the output: a gated view of the cell
#
# The library's `LSTMCell` / `LSTM` run this as a fused kernel (one Function per step or per
# sequence, hand-written backward). Here we write the step with plain ops, derive its backward by
# hand, and check the hand gradients against both the op-by-op graph and the fused kernels.
#
# Shapes: B = 2, d = 3 input features, u = 4 units.

# %%
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                              # noqa: E402
from tinyattn.check import compare, compare_table                  # noqa: E402
from tinyattn.nn import LSTM, LSTMCell                             # noqa: E402

rng = np.random.default_rng(4)
B, d, u, T = 2, 3, 4, 3
K_np, R_np = rng.standard_normal((d, 4 * u)) * 0.5, rng.standard_normal((u, 4 * u)) * 0.5
b_np = rng.standard_normal(4 * u) * 0.1
xs_np = rng.standard_normal((B, T, d))
h0_np, c0_np = rng.standard_normal((B, u)) * 0.5, rng.standard_normal((B, u)) * 0.5
rows = []


def check(name, hand, got, what="grad"):
    """One row of the final table: hand-derived ``hand`` vs the engine's (``got.grad``)."""
    rows.append(compare(name, hand, got, what=what, show=False))


def sigmoid(a):
    return 1.0 / (1.0 + np.exp(-a))


# %% [markdown]
# ## 1. One step, op by op
#
# The loss reads both outputs of the step, L = Σ Gh ⊙ h' + Σ Gc ⊙ c', so both gradients that flow
# into a step in BPTT (from the output, and from the next step's cell) are exercised.

# %%
def lstm_step(x, h, c, K, R, b):
    """One LSTM step from tinyattn ops; returns every intermediate (a dict of Tensors)."""
    z = x @ K + h @ R + b
    zi, zf, zg, zo = z[:, 0:u], z[:, u:2 * u], z[:, 2 * u:3 * u], z[:, 3 * u:4 * u]
    i, f, g, o = zi.sigmoid(), zf.sigmoid(), zg.tanh(), zo.sigmoid()
    c1 = f * c + i * g
    tc = c1.tanh()
    h1 = o * tc
    return dict(z=z, i=i, f=f, g=g, o=o, c=c1, tc=tc, h=h1)


leaf = lambda a: ta.tensor(a, dtype=np.float64, requires_grad=True)   # noqa: E731
K, R, b = leaf(K_np), leaf(R_np), leaf(b_np)
x, h0, c0 = leaf(xs_np[:, 0]), leaf(h0_np), leaf(c0_np)
Gh, Gc = rng.standard_normal((B, u)), rng.standard_normal((B, u))
st = lstm_step(x, h0, c0, K, R, b)
for t in st.values():
    t.retain_grad()
((st["h"] * ta.tensor(Gh)).sum() + (st["c"] * ta.tensor(Gc)).sum()).backward()

# %% [markdown]
# ## 2. The step's backward by hand
#
# Given dh' and dc' arriving at the step's outputs:
#
# * `h' = o ⊙ tc`:  `do = dh' ⊙ tc`,  `dtc = dh' ⊙ o`.
# * `tc = tanh c'`:  the cell's total gradient is `dc' + dtc ⊙ (1 − tc²)` — two paths into c'
#   (the loss, or the next step, and this step's own output).
# * `c' = f ⊙ c + i ⊙ g`:  `df = dc' ⊙ c`,  `dc = dc' ⊙ f`,  `di = dc' ⊙ g`,  `dg = dc' ⊙ i`.
#   `dc = dc' ⊙ f` is the "constant error carousel": along the cell, the gradient is only
#   multiplied by the forget gate, so it can survive many steps.
# * gates:  σ' = σ(1 − σ), tanh' = 1 − tanh²:  `dz_i = di ⊙ i(1 − i)`, `dz_f = df ⊙ f(1 − f)`,
#   `dz_g = dg ⊙ (1 − g²)`, `dz_o = do ⊙ o(1 − o)`; `dz = [dz_i | dz_f | dz_g | dz_o]` (B, 4u).
# * `z = x K + h R + b`:  `dK = xᵀ dz`,  `dR = hᵀ dz`,  `db = Σ_b dz`,  `dx = dz Kᵀ`,  `dh = dz Rᵀ`.

# %%
def lstm_step_backward(dh1, dc1, cache, x, h, c):
    """Hand backward of one step (NumPy). cache: the step's values; returns a dict of gradients."""
    i, f, g, o, tc = (cache[k] for k in ("i", "f", "g", "o", "tc"))
    do = dh1 * tc
    dtc = dh1 * o
    dc_total = dc1 + dtc * (1.0 - tc ** 2)
    df, dc_prev, di, dg = dc_total * c, dc_total * f, dc_total * g, dc_total * i
    dz = np.concatenate([di * i * (1 - i), df * f * (1 - f), dg * (1 - g ** 2), do * o * (1 - o)], axis=1)
    return dict(o=do, tc=dtc, c=dc_total, i=di, f=df, g=dg, z=dz, K=x.T @ dz, R=h.T @ dz,
                b=dz.sum(axis=0), x=dz @ K_np.T, h_prev=dz @ R_np.T, c_prev=dc_prev)


cache = {k: t.numpy() for k, t in st.items()}
gr = lstm_step_backward(Gh, Gc, cache, xs_np[:, 0], h0_np, c0_np)
check("step: dh'", Gh, st["h"])
for name in ("o", "tc", "c", "i", "f", "g", "z"):
    check(f"step: d{name}" + ("'" if name == "c" else ""), gr[name], st[name])
for name, t in (("K", K), ("R", R), ("b", b), ("x", x)):
    check(f"step: d{name}", gr[name], t)
check("step: dh (previous)", gr["h_prev"], h0)
check("step: dc (previous)", gr["c_prev"], c0)

# %% [markdown]
# The fused `LSTMCell` with the same weights (`set_weights([K, R, b])`, Keras order) must agree.

# %%
cell = LSTMCell(u, input_dim=d, dtype="float64")
cell.set_weights([K_np, R_np, b_np])
x2, h2, c2 = leaf(xs_np[:, 0]), leaf(h0_np), leaf(c0_np)
hh, (_, cc) = cell(x2, [h2, c2])
((hh * ta.tensor(Gh)).sum() + (cc * ta.tensor(Gc)).sum()).backward()
check("LSTMCell: h'", cache["h"], hh, what="value")
check("LSTMCell: c'", cache["c"], cc, what="value")
for name, t in zip(("K", "R", "b"), cell.weights()):
    check(f"LSTMCell: d{name}", gr[name], t)
check("LSTMCell: dx", gr["x"], x2)
check("LSTMCell: dh", gr["h_prev"], h2)
check("LSTMCell: dc", gr["c_prev"], c2)

# %% [markdown]
# ## 3. Backpropagation through time, three steps
#
# Unroll: (h₀, c₀) → step(x₁) → (h₁, c₁) → step(x₂) → (h₂, c₂) → step(x₃) → (h₃, c₃), with a loss on
# every output and on the last cell: L = Σ_t Σ G_t ⊙ h_t + Σ G_c ⊙ c₃.
#
# Backward, last step first, carrying two gradients back in time:
#
#     dh_t = G_t + (dh from step t+1)      dc_t = (dc from step t+1)   [+ G_c at t = 3]
#
# and since K, R, b are shared by every step, their gradients are the **sums** of each step's.

# %%
xs = leaf(xs_np)
K3, R3, b3, h03, c03 = leaf(K_np), leaf(R_np), leaf(b_np), leaf(h0_np), leaf(c0_np)
Gs, Gc3 = rng.standard_normal((B, T, u)), rng.standard_normal((B, u))
steps, h, c = [], h03, c03
for t in range(T):
    s = lstm_step(xs[:, t], h, c, K3, R3, b3)
    for v in s.values():
        v.retain_grad()
    steps.append(s)
    h, c = s["h"], s["c"]
loss = sum((steps[t]["h"] * ta.tensor(Gs[:, t])).sum() for t in range(T)) + (c * ta.tensor(Gc3)).sum()
loss.backward()

dK, dR, db = np.zeros_like(K_np), np.zeros_like(R_np), np.zeros_like(b_np)
dxs = np.zeros_like(xs_np)
dh_next, dc_next = np.zeros((B, u)), Gc3.copy()
for t in reversed(range(T)):
    cache = {k: v.numpy() for k, v in steps[t].items()}
    h_prev = h0_np if t == 0 else steps[t - 1]["h"].numpy()
    c_prev = c0_np if t == 0 else steps[t - 1]["c"].numpy()
    dh = Gs[:, t] + dh_next                          # the output's own gradient + the recurrence
    check(f"BPTT t={t + 1}: dh_t", dh, steps[t]["h"])
    g_t = lstm_step_backward(dh, dc_next, cache, xs_np[:, t], h_prev, c_prev)
    check(f"BPTT t={t + 1}: dc_t", g_t["c"], steps[t]["c"])
    check(f"BPTT t={t + 1}: dz_t", g_t["z"], steps[t]["z"])
    dK, dR, db = dK + g_t["K"], dR + g_t["R"], db + g_t["b"]
    dxs[:, t] = g_t["x"]
    dh_next, dc_next = g_t["h_prev"], g_t["c_prev"]
for name, hand, tt in (("dK", dK, K3), ("dR", dR, R3), ("db", db, b3), ("dx (all steps)", dxs, xs),
                       ("dh0", dh_next, h03), ("dc0", dc_next, c03)):
    check(f"BPTT: {name}", hand, tt)

# %% [markdown]
# The fused `LSTM` layer runs all three steps in one Function; with the same weights and initial
# state, its outputs and gradients must equal the hand BPTT.

# %%
lstm = LSTM(u, return_sequences=True, return_state=True, dtype="float64")
lstm.build((B, T, d))
lstm.set_weights([K_np, R_np, b_np])
xs2, h02, c02 = leaf(xs_np), leaf(h0_np), leaf(c0_np)
seq, hT, cT = lstm(xs2, initial_state=[h02, c02])
((seq * ta.tensor(Gs)).sum() + (cT * ta.tensor(Gc3)).sum()).backward()
check("LSTM layer: outputs", np.stack([s["h"].numpy() for s in steps], axis=1), seq, what="value")
for name, hand, tt in zip(("dK", "dR", "db"), (dK, dR, db), lstm.weights()):
    check(f"LSTM layer: {name}", hand, tt)
check("LSTM layer: dx", dxs, xs2)
check("LSTM layer: dh0", dh_next, h02)
check("LSTM layer: dc0", dc_next, c02)

# %% [markdown]
# ## 4. Table and gradcheck (the fused cell and the fused sequence kernel, every weight)

# %%
compare_table(rows, title="LSTM step and BPTT: hand-derived vs engine gradients")
ta.gradcheck(lambda a, hh, cc: cell(a, [hh, cc])[1], [leaf(xs_np[:, 0]), leaf(h0_np), leaf(c0_np)],
             params=cell.parameters())
print("gradcheck passed: LSTMCell (x, h, c, kernel, recurrent_kernel, bias)")
ta.gradcheck(lambda a, hh, cc: lstm(a, initial_state=[hh, cc]), [leaf(xs_np), leaf(h0_np), leaf(c0_np)],
             params=lstm.parameters())
print("gradcheck passed: LSTM over 3 steps (x, h0, c0, kernel, recurrent_kernel, bias)")
print("OK: every hand-derived gradient matches the engine")
