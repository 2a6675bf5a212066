# %% [markdown]
# # A tiny GPT: a character-level causal Transformer on Python's own documentation
#
# The corpus is text every Python installation already has: ``pydoc_data.topics.topics``, the
# language reference behind ``help("if")``, ``help("lambda")`` ... : 79 topics, 459 k characters on
# Python 3.10, 465 k on 3.11, 492 k on 3.12, 511 k on 3.13 (measured). No download.
#
#     data    characters -> ids (vocabulary: the characters of the corpus, ~100);
#             first 90% of the text to train, last 10% to validate
#     model   DecoderOnlyLM: token embedding (V, d) -> N pre-norm TransformerDecoderLayer blocks
#             (causal self-attention with RoPE on q, k; GELU FFN) -> LayerNorm -> Dense (d, V)
#             tokens (B, T) -> logits (B, T, V)
#     loss    mean next-character cross-entropy, in nats per character
#     train   AdamW, linear warm-up then cosine decay, gradient norm clipped to 1
#
# Two baselines, fitted on the training text and scored on exactly the same validation
# characters as the model:
#
#     unigram  p(c)              (add-one smoothing)       ignores all context
#     bigram   p(c | previous c) (add-0.1 smoothing)       one character of context
#
# The run succeeds (exit code 0) when the model's validation loss is below both, by at least
# ``--margin`` nats/char under the bigram. Then it samples text through the KV cache (and checks
# that greedy decoding with and without the cache gives the same characters), and draws the
# attention maps of the heads of the first and last layer on one validation snippet.
#
#     python examples/tiny_gpt.py                  # defaults: a few minutes on 2 CPU cores
#     python examples/tiny_gpt.py --quick          # seconds: a smoke test (the check is not expected to pass)
#     python examples/tiny_gpt.py --device gpu     # CuPy

# %%
import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinyattn as ta                                                   # noqa: E402
from tinyattn import backend                                            # noqa: E402
from tinyattn.losses import sparse_categorical_crossentropy             # noqa: E402
from tinyattn.optim import AdamW, clip_grad_norm                        # noqa: E402
from tinyattn.transformer import DecoderOnlyLM                          # noqa: E402
from tinyattn.viz import plot_heads                                     # noqa: E402


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Character-level GPT on pydoc_data.topics")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--ff", type=int, default=384)
    p.add_argument("--positions", choices=["rope", "learned"], default="rope")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--eval-windows", type=int, default=128)
    p.add_argument("--margin", type=float, default=0.2, help="nats/char below the bigram needed to pass")
    p.add_argument("--max-minutes", type=float, default=8.0,
                   help="shorten the run (timed over steps 10-19) so that training fits in this wall time")
    p.add_argument("--sample-chars", type=int, default=400)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--plot", default="tiny_gpt_attention.png", help="PNG path ('' = text heatmaps)")
    p.add_argument("--quick", action="store_true", help="tiny settings for tests")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.batch, a.context, a.d_model, a.heads, a.layers, a.ff = 60, 16, 32, 32, 2, 1, 64
        a.eval_windows, a.sample_chars = 16, 60
    return a


# %% [markdown]
# ## The corpus and the baselines

# %%
def load_corpus():
    """The text of every pydoc topic, in a fixed (sorted) order."""
    from pydoc_data.topics import topics
    return "\n\n".join(topics[k].strip() for k in sorted(topics))


def encode(text):
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    return np.array([stoi[c] for c in text], dtype=np.int64), chars


def eval_windows(n_text, context, n, rng):
    """Start offsets of ``n`` validation windows of ``context`` inputs + the next character."""
    return np.sort(rng.integers(0, n_text - context - 1, size=n))


def baselines(train, val, offsets, context, V):
    """Unigram and bigram cross-entropy (nats/char) on the targets val[o+1 : o+context+1]."""
    uni = np.bincount(train, minlength=V).astype(np.float64) + 1.0
    uni /= uni.sum()
    big = np.full((V, V), 0.1)
    np.add.at(big, (train[:-1], train[1:]), 1.0)
    big /= big.sum(axis=1, keepdims=True)
    prev = np.concatenate([val[o:o + context] for o in offsets])
    tgt = np.concatenate([val[o + 1:o + context + 1] for o in offsets])
    return -np.log(uni[tgt]).mean(), -np.log(big[prev, tgt]).mean()


# %% [markdown]
# ## Training

# %%
def lr_at(step, steps, peak, warmup):
    """Linear warm-up over ``warmup`` steps, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def batch_of(data, offsets, context, xp):
    x = np.stack([data[o:o + context] for o in offsets])
    y = np.stack([data[o + 1:o + context + 1] for o in offsets])
    return xp.asarray(x), xp.asarray(y)


def evaluate(model, val, offsets, context, xp, chunk=32):
    """Mean next-character loss over the windows (nats/char), in eval mode without a graph."""
    model.eval()
    total, n = 0.0, 0
    with ta.no_grad():
        for i in range(0, len(offsets), chunk):
            x, y = batch_of(val, offsets[i:i + chunk], context, xp)
            loss = sparse_categorical_crossentropy(y, model(x), from_logits=True)
            total += float(loss.item()) * y.size
            n += y.size
    model.train()
    return total / n


def train(args, model, train_ids, xp, rng):
    """AdamW steps on random windows. The schedule spans ``args.steps`` steps; if, timed over steps
    10-19, that many would take longer than ``--max-minutes`` (a slow or shared machine), the run is
    shortened up front to what fits, so that the learning rate still decays to its end."""
    opt = AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.01)
    total = args.steps
    t0, cpu0 = time.perf_counter(), time.process_time()
    step = 0
    while step < total:
        warmup = max(1, total // 20)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total, args.lr, warmup)
        x, y = batch_of(train_ids, rng.integers(0, len(train_ids) - args.context - 1, size=args.batch),
                        args.context, xp)
        opt.zero_grad()
        loss = sparse_categorical_crossentropy(y, model(x), from_logits=True)
        loss.backward()
        clip_grad_norm(opt.params(), 1.0)
        opt.step()
        if step % max(1, total // 10) == 0 or step == total - 1:
            print(f"step {step:5d}  train loss {float(loss.item()):.3f}  lr {opt.param_groups[0]['lr']:.2e}  "
                  f"{time.perf_counter() - t0:6.1f} s", flush=True)
        step += 1
        if step == 10:
            t10 = time.perf_counter()          # the first steps are slower (first touch of memory)
        if step == 20 and total > 20:
            per_step = (time.perf_counter() - t10) / 10
            fit = 20 + int((60 * args.max_minutes - (time.perf_counter() - t0)) / per_step)
            if fit < total:
                total = max(30, fit)
                print(f"{per_step:.2f} s a step here (load average {os.getloadavg()[0]:.1f}): training "
                      f"{total} steps instead of {args.steps} to stay within --max-minutes {args.max_minutes}",
                      flush=True)
    return step, time.perf_counter() - t0, time.process_time() - cpu0


# %% [markdown]
# ## Sampling with the KV cache, and the attention maps

# %%
def show(chars):
    """Tick labels for characters: visible marks for space and newline."""
    return ["␣" if c == " " else "⏎" if c == "\n" else c for c in chars]


def main(argv=None):
    args = parse_args(argv)
    if args.device == "gpu":
        if not ta.gpu_available():
            print("FAIL: --device gpu needs CuPy and a GPU")
            return 1
        ta.use_backend("cupy")
    xp = backend.default_xp()
    ta.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    try:
        text = load_corpus()
    except ImportError:
        print("FAIL: this Python has no pydoc_data (the documentation topics behind help()); "
              "install the full standard library (e.g. Debian's libpython3-stdlib)")
        return 1
    ids, chars = encode(text)
    V = len(chars)
    n_train = int(0.9 * len(ids))
    train_ids, val_ids = ids[:n_train], ids[n_train:]
    print(f"corpus: pydoc_data.topics, {len(text):,} characters, vocabulary {V}; "
          f"train {len(train_ids):,}, validation {len(val_ids):,}")
    val_offsets = eval_windows(len(val_ids), args.context, args.eval_windows, np.random.default_rng(1234))
    uni, bi = baselines(train_ids, val_ids, val_offsets, args.context, V)

    model = DecoderOnlyLM(V, d_model=args.d_model, nhead=args.heads, num_layers=args.layers,
                          dim_feedforward=args.ff, max_len=args.context, positions=args.positions, dropout=0.0)
    if args.device == "gpu":
        model.to("gpu")
    n_params = sum(int(p.size) for p in model.parameters())
    print(f"model: {args.layers} layers, d_model {args.d_model}, {args.heads} heads, FFN {args.ff}, "
          f"{args.positions} positions, context {args.context}: {n_params:,} parameters")
    print(f"training: {args.steps} steps of {args.batch} × {args.context} characters on {args.device}")
    steps, wall, cpu = train(args, model, train_ids, xp, rng)
    val = evaluate(model, val_ids, val_offsets, args.context, xp)
    print(f"\ntrained {steps} steps in {wall:.1f} s wall ({cpu:.1f} s CPU, load average "
          f"{os.getloadavg()[0]:.1f})")
    print(f"validation loss, nats/char on {len(val_offsets)} windows × {args.context} characters:")
    print(f"  unigram baseline {uni:.3f}")
    print(f"  bigram baseline  {bi:.3f}")
    print(f"  tiny GPT         {val:.3f}   ({val / math.log(2):.2f} bits/char)")

    # %%
    prompt_text = "The "
    prompt = np.array([[chars.index(c) for c in prompt_text]])
    t = time.perf_counter()
    out = model.generate(prompt, args.sample_chars, temperature=0.8, top_k=20, seed=args.seed, use_cache=True)
    dt = time.perf_counter() - t
    sample = "".join(chars[i] for i in out[0])
    # The KV cache serves the first `context` characters; past them each step sees the last `context`
    # characters (a sliding window: the model never saw longer contexts in training).
    print(f"\nsample ({args.sample_chars} characters with the KV cache, temperature 0.8, top-k 20, "
          f"{dt:.2f} s):\n{'-' * 60}\n{sample}\n{'-' * 60}")
    n_check = min(40, args.context - len(prompt_text))
    g1 = model.generate(prompt, n_check, greedy=True, use_cache=True)
    g2 = model.generate(prompt, n_check, greedy=True, use_cache=False)
    same = np.array_equal(g1, g2)
    print(f"KV cache: greedy decoding of {n_check} characters {'identical' if same else 'DIFFERS'} "
          f"with and without the cache")

    # %%
    snippet_len = min(24, args.context)
    o = int(val_offsets[len(val_offsets) // 2])
    snip = val_ids[o:o + snippet_len]
    model.eval()
    with ta.no_grad():
        _, ws = model(xp.asarray(snip[None]), return_attention=True)
    labels = show([chars[i] for i in snip])
    for li in sorted({0, len(ws) - 1}):
        w = backend.as_numpy(ws[li].data)[0]                                   # (H, T, T)
        path = None
        if args.plot:
            root, ext = os.path.splitext(args.plot)
            path = f"{root}_layer{li}{ext or '.png'}"
        res = plot_heads(w, path=path or None, x_labels=labels, y_labels=labels,
                         title=f"tiny GPT, layer {li}: causal self-attention on a validation snippet",
                         titles=[f"layer {li}, head {h}" for h in range(w.shape[0])],
                         x_label="keys (attended to)", y_label="queries")
        if path:
            print(f"attention maps of layer {li} written to {res}")

    ok = val < uni and val < bi - args.margin and same
    if ok:
        print(f"PASS: validation loss {val:.3f} is below the unigram ({uni:.3f}) and bigram ({bi:.3f}) "
              f"baselines (margin {args.margin})")
        return 0
    why = "the KV cache changed greedy decoding" if not same else (
        f"validation loss {val:.3f} is not below the unigram ({uni:.3f}) and the bigram − {args.margin} "
        f"({bi - args.margin:.3f})")
    print(f"FAIL: {why}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
