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
# # Common attention bugs, and the checks that catch them
#
# Each bug below runs without an error, produces numbers of the right shape, and often even trains.
# That is what makes it dangerous. For each one we write the **wrong** variant beside the **right**
# one and a check that tells them apart — one of three kinds:
#
# * a **parity test**: compare with an independent implementation (the library's layer, a formula);
# * a **property test**: something that must hold whatever the weights — rows sum to 1, no output
#   depends on a future position, no NaN, dropped weights are exactly 0;
# * a **gradient check** (`ta.gradcheck`): the backward against central differences.
#
# A check is only worth something if it can fail: so every check is run on both variants, the right
# one must pass and the wrong one must be CAUGHT. The script prints one line per bug and exits
# non-zero if any bug goes uncaught (or any right variant fails its own check).
#
#     python examples/attention_bugs.py            # all bugs; exit 0 when every bug is caught
#     python examples/attention_bugs.py --disarm 3 # swap bug 3's wrong variant for the right one:
#                                                  # the check must then say "NOT caught", exit 1

# %%
import argparse
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__)) if "__file__" in globals() else os.getcwd()  # notebook: cwd
sys.path.insert(0, os.path.join(HERE, ".."))

import tinyattn as ta                                                             # noqa: E402
from tinyattn.attention import BahdanauAttention, MultiHeadAttention, masked_softmax   # noqa: E402
from tinyattn.autograd import Function                                            # noqa: E402

rng = np.random.default_rng(0)
BUGS = []


def bug(title, check_name):
    """Register a bug: the decorated function returns (check, right, wrong); check(variant) runs the
    check on one variant and returns (passed, detail)."""
    def register(make):
        BUGS.append((title, check_name, make))
        return make
    return register


def t64(a, grad=False):
    return ta.tensor(np.asarray(a, dtype=np.float64), dtype=np.float64, requires_grad=grad)


# %% [markdown]
# ## 1. Scaling by the model width instead of the head width
#
# Multi-head attention divides the scores of head h by √dk, the width of **one head** (dk = d/H in
# the usual set-up), because each head's dot product sums dk terms. Dividing by √d (the model width)
# makes every softmax too flat by a factor √H. Caught by a **parity test** against the library's
# `MultiHeadAttention` (Keras semantics) with the same weights.

# %%
@bug("scale the scores by the model width d instead of the head width dk", "parity with MultiHeadAttention")
def bug_scale():
    B, T, d, H = 2, 5, 16, 4
    dk = d // H
    mha = MultiHeadAttention(num_heads=H, key_dim=dk, dtype="float64")
    x = t64(rng.standard_normal((B, T, d)))
    ref = mha(x, x, training=False).numpy()
    Wq, bq, Wk, bk, Wv, bv, Wo, bo = mha.get_weights()
    xn = x.numpy()

    def mha_by_hand(width):
        q = np.einsum("btd,dhk->bhtk", xn, Wq) + bq[:, None, :]
        k = np.einsum("btd,dhk->bhtk", xn, Wk) + bk[:, None, :]
        v = np.einsum("btd,dhk->bhtk", xn, Wv) + bv[:, None, :]
        a = ta.softmax(t64(q @ k.swapaxes(-1, -2) / math.sqrt(width)), axis=-1).numpy()
        return np.einsum("bhqv,hvo->bqo", a @ v, Wo) + bo

    def check(variant):
        diff = float(np.abs(variant() - ref).max())
        return diff < 1e-10, f"max |out − MultiHeadAttention| = {diff:.2g}"
    return check, lambda: mha_by_hand(dk), lambda: mha_by_hand(d)


# %% [markdown]
# ## 2. An off-by-one causal mask
#
# A decoder's query i may look at keys 0..i — `tril(ones)`, diagonal included. `tril(ones, k=1)`
# (a classic slip when building the mask from `triu` and flipping it) lets position i see i + 1:
# the model "predicts" the next token by reading it. Caught by a **property test**: no output may
# depend on a later position — ∂out_i / ∂(q, k, v)_j = 0 for every j > i, read off the engine's
# gradients one output position at a time.

# %%
@bug("off-by-one causal mask (query i sees key i + 1)", "no-future-leakage property (gradients)")
def bug_causal():
    B, T, d = 2, 6, 4
    q_np, k_np, v_np = (rng.standard_normal((B, T, d)) for _ in range(3))

    def attention(mask_np):
        def run(q, k, v):
            s = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(d))
            return masked_softmax(s, mask=mask_np) @ v
        return run

    def check(variant):
        for i in range(T):
            q, k, v = t64(q_np, True), t64(k_np, True), t64(v_np, True)
            variant(q, k, v)[:, i].sum().backward()
            leak = max(float(np.abs(t.grad.numpy()[:, i + 1:]).max(initial=0.0)) for t in (q, k, v))
            if leak > 0:
                return False, f"output {i} depends on a later position (|gradient| up to {leak:.2g})"
        return True, "no output depends on a later position"
    return (check, attention(np.tril(np.ones((T, T), dtype=bool))),
            attention(np.tril(np.ones((T, T), dtype=bool), k=1)))


# %% [markdown]
# ## 3. Dropout on the scores instead of the weights
#
# Attention dropout zeroes some attention *weights* after the softmax (and scales the rest by
# 1/(1 − p), so the expected weight is unchanged). Dropping *scores* before the softmax instead
# sets a score to 0 — which is not "ignore this key", it is "give this key weight e⁰ / Σ" — and the
# weights are no longer the eval weights rescaled. Caught by a **property test**: with V = I the
# output *is* the weight matrix, and every training-mode entry must be either exactly 0 or the
# eval-mode weight times 1/(1 − p).

# %%
@bug("dropout applied to the scores instead of the weights", "dropout property (0 or w/(1-p))")
def bug_dropout():
    B, T, d, p = 2, 6, 4, 0.3
    q, k = t64(rng.standard_normal((B, T, d))), t64(rng.standard_normal((B, T, d)))
    eye = t64(np.eye(T))
    s = (q @ k.swapaxes(-1, -2)) * (1.0 / math.sqrt(d))
    eval_w = ta.softmax(s, axis=-1).numpy()

    def right():
        return ta.dropout(ta.softmax(s, axis=-1), p) @ eye

    def wrong():
        return ta.softmax(ta.dropout(s, p), axis=-1) @ eye

    def check(variant):
        ta.manual_seed(1)
        w = variant().numpy()
        kept = w != 0
        ok = np.allclose(w[kept], eval_w[kept] / (1 - p), rtol=1e-12, atol=0) and kept.any() and (~kept).any()
        n_bad = int((~np.isclose(w[kept], eval_w[kept] / (1 - p), rtol=1e-12, atol=0)).sum())
        return ok, f"{n_bad} of {int(kept.sum())} kept weights are not (eval weight)/(1 − p)"
    return check, right, wrong


# %% [markdown]
# ## 4. Bahdanau attention scored with the current decoder state
#
# In Bahdanau et al. (2015) the context for output step t is computed from the *previous* decoder
# state s_{t−1}: α_t = softmax(score(s_{t−1}, h_j)); then s_t = f(s_{t−1}, y_{t−1}, c_t). Using
# the current state (update the RNN with y_{t−1} first, then attend with s_t) is Luong's ordering,
# not Bahdanau's — and then c_t is not an input to s_t. Caught by a **property test** on the
# dependency structure: in Bahdanau's decoder the weights α_t cannot depend on y_{t−1}, the token
# fed at the same step, so ∂α_t/∂y_{t−1} must be exactly 0.

# %%
@bug("Bahdanau scoring with the current decoder state s_t instead of s_(t-1)",
     "dependency property: alpha_t independent of y_(t-1)")
def bug_bahdanau():
    B, Tk, h, e, u, T = 2, 5, 6, 3, 6, 3
    enc = t64(rng.standard_normal((B, Tk, h)))
    attn = BahdanauAttention(8, query_dim=u, key_dim=h, dtype="float64")
    W = t64(rng.standard_normal((e + h, u)) * 0.4)          # the decoder RNN: s' = tanh([y; c] W + s U)
    U = t64(rng.standard_normal((u, u)) * 0.4)

    def rnn(y, c, s):
        return (ta.concat([y, c], axis=-1) @ W + s @ U).tanh()

    def attend(s):
        c, a = attn(s.expand_dims(1), enc, enc, return_attention_scores=True)
        return c[:, 0], a[:, 0]

    def right(ys):
        s, alphas = t64(np.zeros((B, u))), []
        for t in range(T):
            c, a = attend(s)                      # score with s_(t-1)
            s = rnn(ys[t], c, s)                  # then update with y_(t-1) and c_t
            alphas.append(a)
        return alphas

    def wrong(ys):
        s, c, alphas = t64(np.zeros((B, u))), t64(np.zeros((B, h))), []
        for t in range(T):
            s = rnn(ys[t], c, s)                  # update first (with the previous context) ...
            c, a = attend(s)                      # ... then score with the current state s_t
            alphas.append(a)
        return alphas

    def check(variant):
        for t in range(T):
            ys = [t64(rng.standard_normal((B, e)), True) for _ in range(T)]
            (variant(ys)[t] * t64(rng.standard_normal((B, Tk)))).sum().backward()
            g = ys[t].grad
            dep = 0.0 if g is None else float(np.abs(g.numpy()).max())
            if dep > 0:
                return False, f"alpha_{t} depends on the input fed at step {t} (|gradient| {dep:.2g})"
        return True, "every alpha_t is independent of the input fed at step t"
    return check, right, wrong


# %% [markdown]
# ## 5. A softmax over the wrong axis
#
# Scores are (B, Tq, Tk): one row per query. The softmax must normalise over the **keys**
# (axis −1). `softmax(scores, axis=1)` normalises over the queries instead — the shapes are the
# same, nothing complains. Caught by a **property test**: every query's weights sum to 1 over the
# keys.

# %%
@bug("softmax over the query axis instead of the key axis", "property: each query's weights sum to 1")
def bug_axis():
    s = t64(rng.standard_normal((2, 3, 5)))

    def check(variant):
        sums = variant().numpy().sum(axis=-1)
        err = float(np.abs(sums - 1).max())
        return err < 1e-12, f"max |Σ_keys w − 1| = {err:.2g}"
    return check, lambda: ta.softmax(s, axis=-1), lambda: ta.softmax(s, axis=1)


# %% [markdown]
# ## 6. A fully masked row produces NaN
#
# Masking by filling −∞ and taking a plain softmax works until a query has *no* key left (an
# all-padding row, or a causal mask on a shifted sequence): then the row is −∞ − (−∞) = NaN, and
# the NaN spreads through the output and, in the backward, to every weight. The library's
# `masked_softmax` gives such a row zero weights and a zero gradient. Caught by a **property
# test**: output and gradients are NaN-free.

# %%
@bug("fill -inf and take a plain softmax: a fully masked row gives NaN", "property: NaN-free forward and backward")
def bug_nan():
    s_np = rng.standard_normal((2, 3, 4))
    mask = np.ones((2, 3, 4), dtype=bool)
    mask[1, 2, :] = False                                   # query 2 of sequence 1 has no key left

    def right(s):
        return masked_softmax(s, mask=mask)

    def wrong(s):
        return ta.softmax(ta.where(mask, s, -np.inf), axis=-1)

    def check(variant):
        s = t64(s_np, True)
        with np.errstate(invalid="ignore"):                 # the wrong variant computes −∞ − (−∞)
            w = variant(s)
            (w * t64(rng.standard_normal(w.shape))).sum().backward()
        bad_w, bad_g = int(np.isnan(w.numpy()).sum()), int(np.isnan(s.grad.numpy()).sum())
        return bad_w == 0 and bad_g == 0, f"{bad_w} NaN weights, {bad_g} NaN gradients"
    return check, right, wrong


# %% [markdown]
# ## 7. A hand-written softmax backward that forgets a term
#
# The softmax VJP is y ⊙ (gy − Σ gy ⊙ y). Dropping the Σ term gives gy ⊙ y: the right shape, the
# right sign most of the time, and a model trained with it may still make some progress — shape
# checks and "the loss went down" cannot see it. Caught by **gradcheck**: the analytic directional
# derivative against central differences, along a random direction with a random upstream gradient.

# %%
class SoftmaxForgotTheSum(Function):
    """A buggy softmax: forward right, backward returns gy ⊙ y (the − y Σ gy ⊙ y term is missing)."""

    def forward(self, x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def backward(self, gy):
        return gy * self.output_values[0]


@bug("hand-written softmax backward without the −y·Σ(gy·y) term", "gradcheck")
def bug_backward():
    x_np = rng.standard_normal((3, 5))

    def check(variant):
        try:
            ta.gradcheck(variant, [t64(x_np, True)])
            return True, "gradcheck passed"
        except ta.GradcheckError as err:
            return False, "gradcheck: " + " ".join(str(err).split())[:110]
    return check, lambda x: ta.softmax(x, axis=-1), lambda x: SoftmaxForgotTheSum()(x)


# %% [markdown]
# ## Run every check on both variants

# %%
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--disarm", type=int, default=0,
                    help="replace bug N's wrong variant by the right one (the check must then fail "
                         "to catch it and the script exit 1: a check that cannot fail is no check)")
    args, _ = ap.parse_known_args(argv)          # (a notebook kernel passes its own arguments)
    failures = 0
    for n, (title, check_name, make) in enumerate(BUGS, 1):
        check, right, wrong = make()
        if n == args.disarm:
            wrong = right
        right_ok, right_detail = check(right)
        wrong_ok, wrong_detail = check(wrong)
        print(f"[{n}] {title}")
        print(f"    check: {check_name}")
        print(f"    right variant: {'passes' if right_ok else 'FAILS its own check'} ({right_detail})")
        print(f"    wrong variant: {'NOT caught' if wrong_ok else 'CAUGHT'} ({wrong_detail})")
        failures += (not right_ok) + wrong_ok
    caught = sum(1 for _ in BUGS) - failures
    if failures:
        print(f"FAIL: {failures} problem(s): a bug went uncaught or a right variant failed its check")
        return 1
    print(f"OK: all {len(BUGS)} bugs caught; every right variant passes its check")
    return 0 if caught == len(BUGS) else 1


if __name__ == "__main__":
    sys.exit(main())
