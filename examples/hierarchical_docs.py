# %% [markdown]
# # Hierarchical attention: which sentence, and which word in it, decides the label
#
# Yang et al. (2016), "Hierarchical Attention Networks for Document Classification" (HAN), pool
# twice with the same mechanism (`AttentionPooling`, one HAN level):
#
#     words → sentence:   u_sw = tanh(h_sw W_w + b_w),  α_sw = softmax_w(u_sw · u_w),  s_s = Σ_w α_sw h_sw
#     sentences → doc:    u_s  = tanh(s_s W_s + b_s),   β_s  = softmax_s(u_s · u_s'),  d   = Σ_s β_s s_s
#
# u_w, u_s' are learned context vectors ("which word / sentence is informative?"). Shapes:
# word features h (B, S, W, d) → sentences (B, S, d) → document d (B, d); word weights α (B, S, W),
# sentence weights β (B, S). `HierarchicalAttention(word_units, sentence_units)` in
# `tinyattn/attention/pooling.py` is both levels, with a word mask for padded sentences.
#
# The synthetic documents: S = 6 sentences of 4–8 words (padded to W = 8, id 0 = padding, masked)
# drawn from 40 filler words. Exactly one sentence — the key sentence — holds the word "overall" and
# a sentiment word, "good" or "bad", at random places; the label is 1 for "good", 0 for "bad". Each
# other sentence holds a random "good" or "bad" too, with probability 1/2: distractors, so reading
# every sentence's sentiment is not enough — the model must find the sentence that says "overall"
# and read the sentiment there. (Without distractors, measured: the label is learnt in one epoch
# while the sentence weights stay split, 52–78 % of the key sentences picked on some seeds — a
# half-weighted key word already decides the label, so nothing sharpens the attention.)
#
# The model: Embedding(d) → Dense(d, tanh) per word (no recurrence: each word's feature is its own)
# → HierarchicalAttention → Dense(1, sigmoid); binary cross-entropy, Adam.
#
# The check (exit 1 otherwise), on 500 held-out documents: the sentence weights' argmax is the key
# sentence for ≥ 90 %, the word weights' argmax inside that sentence is one of its two key words
# ("overall" or the sentiment word; which one is printed) for ≥ 90 %, and the label accuracy is
# ≥ 90 %.
#
#     python examples/hierarchical_docs.py            # defaults, ~3–5 s on 2 cores
#     python examples/hierarchical_docs.py --quick    # the test suite's settings

# %%
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinyattn as ta                                                       # noqa: E402
from tinyattn.attention import HierarchicalAttention                        # noqa: E402
from tinyattn.losses import binary_crossentropy                             # noqa: E402
from tinyattn.nn import Dense, Embedding, Module                           # noqa: E402
from tinyattn.optim import Adam                                             # noqa: E402

FILLER = ("the a of to and in is was it for on with as at by from this that an be are or his her "
          "they we you not but had have one all were when there can more if out so said what up").split()
VOCAB = ["<pad>"] + FILLER + ["good", "bad", "overall"]
GOOD, BAD, OVERALL = VOCAB.index("good"), VOCAB.index("bad"), VOCAB.index("overall")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="HAN finds the key sentence and the key word")
    p.add_argument("--quick", action="store_true", help="small settings for the test suite")
    p.add_argument("--samples", type=int, default=None, help="training documents (default 3000)")
    p.add_argument("--epochs", type=int, default=None, help="default 6")
    p.add_argument("--sentences", type=int, default=6)
    p.add_argument("--words", type=int, default=8, help="words per sentence (padded length)")
    p.add_argument("--dim", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--min-frac", type=float, default=0.9)
    p.add_argument("--plot", default="hierarchical_docs.png", help="PNG path ('' prints text heatmaps)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    a.samples = a.samples or (1500 if a.quick else 3000)
    a.epochs = a.epochs or (4 if a.quick else 6)
    return a


# %% [markdown]
# ## The documents

# %%
def make_docs(n, S, W, rng):
    """ids (n, S, W) (0 = padding), word_mask (n, S, W) bool, y (n, 1) float32, key_sentence (n,),
    key_word (n,), overall (n,): ids[i, key_sentence[i]] holds "overall" at overall[i] and the
    sentiment word that sets the label at key_word[i]; other sentences hold a random "good"/"bad"
    (a distractor) with probability 1/2."""
    lengths = rng.integers(W // 2, W + 1, size=(n, S))
    mask = np.arange(W)[None, None, :] < lengths[:, :, None]
    ids = rng.integers(1, 1 + len(FILLER), size=(n, S, W)) * mask
    pos = (rng.random((n, S)) * lengths).astype(int)                      # a sentiment slot per sentence
    noisy = rng.random((n, S)) < 0.5
    ids[np.arange(n)[:, None], np.arange(S)[None, :], pos] = np.where(
        noisy, rng.choice([GOOD, BAD], size=(n, S)), ids[np.arange(n)[:, None], np.arange(S)[None, :], pos])
    y = rng.integers(0, 2, size=n)
    ks = rng.integers(0, S, size=n)
    kw = pos[np.arange(n), ks]
    ln = lengths[np.arange(n), ks]
    ko = (kw + 1 + (rng.random(n) * (ln - 1)).astype(int)) % ln            # any other slot of the sentence
    ids[np.arange(n), ks, kw] = np.where(y == 1, GOOD, BAD)
    ids[np.arange(n), ks, ko] = OVERALL
    return ids, mask, y.astype(np.float32)[:, None], ks, kw, ko


# %% [markdown]
# ## The model: words → sentences → document

# %%
class HAN(Module):
    def __init__(self, vocab, d):
        super().__init__()
        self.embed = Embedding(vocab, d)
        self.word_features = Dense(d, activation="tanh")
        self.han = HierarchicalAttention(word_units=d, sentence_units=d)
        self.classify = Dense(1, activation="sigmoid")

    def forward(self, ids, word_mask):
        h = self.word_features(self.embed(ids))                              # (B, S, W, d)
        doc, a_w, a_s = self.han(h, word_mask=word_mask, return_attention_scores=True)
        return self.classify(doc), a_w, a_s                                  # (B, 1), (B, S, W), (B, S)


def evaluate(model, ids, mask, y, ks, kw, ko):
    model.eval()
    with ta.no_grad():
        prob, a_w, a_s = model(ids, mask)
    model.train()
    a_w, a_s = a_w.numpy(), a_s.numpy()
    n = len(ids)
    sent_hit = float((a_s.argmax(-1) == ks).mean())
    top = a_w[np.arange(n), ks].argmax(-1)                                  # the key sentence's top word
    word_hit = float(((top == kw) | (top == ko)).mean())
    acc = float(((prob.numpy() > 0.5) == (y > 0.5)).mean())
    return sent_hit, word_hit, acc, a_w, a_s


# %% [markdown]
# ## Train and look

# %%
def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    ta.manual_seed(args.seed)
    ids, mask, y, _, _, _ = make_docs(args.samples, args.sentences, args.words, np.random.default_rng(args.seed))
    test = make_docs(500, args.sentences, args.words, np.random.default_rng(args.seed + 10_000))
    model = HAN(len(VOCAB), args.dim)
    model(ids[:1], mask[:1])                                                 # build the lazy layers
    s0, w0, a0, _, _ = evaluate(model, *test)
    print(f"untrained: key sentence picked {s0:.1%}, key word picked {w0:.1%}, accuracy {a0:.1%}")
    opt = Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed + 1)
    for epoch in range(args.epochs):
        order, total = rng.permutation(len(ids)), 0.0
        for i in range(0, len(ids), args.batch_size):
            idx = order[i:i + args.batch_size]
            prob, _, _ = model(ids[idx], mask[idx])
            loss = binary_crossentropy(ta.tensor(y[idx]), prob)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.item()) * len(idx)
        print(f"epoch {epoch + 1}/{args.epochs}: loss {total / len(ids):.4f}")

    sent_hit, word_hit, acc, a_w, a_s = evaluate(model, *test)
    print(f"held-out (500 docs): key sentence picked {sent_hit:.1%}, key word picked {word_hit:.1%}, "
          f"label accuracy {acc:.1%}")
    print(f"mean weight on the key sentence {a_s[np.arange(500), test[3]].mean():.3f} "
          f"(uniform: {1 / args.sentences:.3f}); on its sentiment word "
          f"{a_w[np.arange(500), test[3], test[4]].mean():.3f}")

    top = a_w[np.arange(500), test[3]].argmax(-1)
    print(f"the key sentence's top word is the sentiment word in {(top == test[4]).mean():.1%} of the "
          f"documents, \"overall\" in {(top == test[5]).mean():.1%}")
    out = plot_doc(test[0][0], test[1][0], a_w[0], a_s[0], int(test[3][0]), args.plot)
    if out:
        print(f"document heatmap written to {out}")
    print(f"elapsed {time.perf_counter() - t0:.1f}s")

    # the check
    ok = True
    for what, frac in (("sentence weights picked the key sentence", sent_hit),
                       ("word weights picked a key word", word_hit), ("label accuracy", acc)):
        if frac < args.min_frac:
            print(f"FAIL: {what}: {frac:.1%} (need >= {args.min_frac:.0%})")
            ok = False
    if ok:
        print(f"PASS: the sentence weights pick the key sentence ({sent_hit:.1%}) and the word weights "
              f"a key word of it ({word_hit:.1%}) in held-out documents")
    return 0 if ok else 1


# %% [markdown]
# ## The plot: one held-out document, word weight × sentence weight
#
# Each row is a sentence (labelled with its sentence weight β_s), each cell a word (its text written
# in it); the colour is α_sw · β_s, the share of the document vector that word contributes.

# %%
def plot_doc(ids, mask, a_w, a_s, key_sentence, path):
    share = a_w * a_s[:, None]                                               # (S, W)
    rows = [f"sent {s} (β={a_s[s]:.2f})" + (" *" if s == key_sentence else "") for s in range(len(a_s))]
    if not path:
        words = [" ".join(VOCAB[i] for i in row[m]) for row, m in zip(ids, mask)]
        print("\n".join(f"{r}: {w}" for r, w in zip(rows, words)))
        ta.viz.plot_attention(share, y_labels=rows, title="word weight × sentence weight", path=None)
        return None
    try:
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        ta.viz.plot_attention(share, y_labels=rows, title="word weight × sentence weight", path=None)
        return None
    S, W = share.shape
    fig = Figure(figsize=(10, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(np.where(mask, share, np.nan), cmap="viridis", aspect="auto", vmin=0.0)
    for s in range(S):
        for w in range(W):
            if mask[s, w]:
                word = VOCAB[ids[s, w]]
                ax.text(w, s, word, ha="center", va="center", fontsize=9,
                        color="black" if share[s, w] > 0.5 * share.max() else "white",
                        fontweight="bold" if word in ("good", "bad", "overall") else "normal")
    ax.set_xticks(range(W))
    ax.set_xticklabels([f"w{w}" for w in range(W)])
    ax.set_yticks(range(S))
    ax.set_yticklabels(rows)
    ax.set_xlabel("word position (padding blank)")
    ax.set_ylabel("sentence (β = sentence weight; * = key)")
    ax.set_title("HAN on a held-out document: word weight α × sentence weight β")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04).set_label("α_sw · β_s (share of the document)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
