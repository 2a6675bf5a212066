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
# # LSTM + many-to-one attention for regression
#
# Train, save, reload, check identical predictions, and check the attention peaks where it should.

# %%
"""LSTM + many-to-one attention for regression, then save, reload and check (seed 001).

philipperemy's keras-attention example, re-derived on tinyattn — with something to learn:

    data    x (N, T=10, 2): feature 0 ~ U(0, 1) at every step, feature 1 a one-hot marker of one
            random step m;  y = x[m, 0], the value at the marked step   (N, 1)
            (the answer sits at a step that changes from sample to sample: a job for attention;
            the tutorial's own data was pure noise, "nothing to learn")
    model   LSTM(64, return_sequences=True)       (B, 10, 2)  -> (B, 10, 64)
            ManyToOneAttention(32)                (B, 10, 64) -> (B, 32)
                h_t = last state;  α = softmax_s(h_t · (h_s W));  c = Σ α_s h_s;  tanh([c; h_t] W_c)
            Dense(1)                              (B, 32)     -> (B, 1)
    train   Adam, mean absolute error (the tutorial's loss), 10% held out
    check   predictions before saving == predictions of a FRESH model loaded from the checkpoint,
            element for element (exit code 1 otherwise); the trained model must also beat the
            constant "predict the mean" baseline on fresh data (exit code 1 otherwise).

    python examples/lstm_attention_regression.py
    python examples/lstm_attention_regression.py --score bahdanau --epochs 8 --checkpoint model.npz
"""
import argparse
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinyattn as ta                                               # noqa: E402
from tinyattn.nn import LSTM, Dense, Sequential                    # noqa: E402
from tinyattn.attention import ManyToOneAttention                  # noqa: E402
from tinyattn.optim import Adam                                    # noqa: E402
from tinyattn.train import fit, predict                            # noqa: E402


# %% [markdown]
# ## The data

# %%
def get_data(n, time_steps, rng):
    """x (n, T, 2) float32: [:, :, 0] ~ U(0, 1), [:, :, 1] one-hot at a random step m;
    y (n, 1) = x[:, m, 0]. Returns x, y, m."""
    x = np.zeros((n, time_steps, 2), dtype=np.float32)
    x[:, :, 0] = rng.uniform(0.0, 1.0, size=(n, time_steps))
    m = rng.integers(0, time_steps, size=n)
    x[np.arange(n), m, 1] = 1.0
    return x, x[np.arange(n), m, 0][:, None].copy(), m


# %% [markdown]
# ## The model
#
# LSTM(return_sequences) → ManyToOneAttention (Luong or Bahdanau score) → Dense.

# %%
def build_model(lstm_units, attention_units, score):
    return Sequential(
        LSTM(lstm_units, return_sequences=True),
        ManyToOneAttention(attention_units, score=score),
        Dense(1),
    )


# %%
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--time-steps", type=int, default=10)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--lstm-units", type=int, default=64)
    p.add_argument("--attention-units", type=int, default=32)
    p.add_argument("--score", choices=("luong", "bahdanau"), default="luong")
    p.add_argument("--checkpoint", default=None,
                   help="where to save the model (default: a temporary file, removed afterwards)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2))
    return p.parse_args(argv)


# %% [markdown]
# ## Train, save, reload, check

# %%
def main(argv=None):
    args = parse_args(argv)
    t0 = time.perf_counter()
    ta.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x, y, _ = get_data(args.samples, args.time_steps, rng)
    x_new, y_new, m_new = get_data(500, args.time_steps, np.random.default_rng(args.seed + 10_000))
    print(f"data: x {x.shape} (values, marker), y {y.shape} = the value at the marked step")

    model = build_model(args.lstm_units, args.attention_units, args.score)
    model(ta.tensor(x[:1]))                                         # build the lazy layers
    print(f"model: LSTM({args.lstm_units}, return_sequences=True) -> ManyToOneAttention({args.attention_units}, "
          f"score={args.score!r}) -> Dense(1); {sum(p.size for p in model.parameters())} parameters")
    for name, prm in model[1].named_parameters():                # Keras's get_weights() order
        print(f"  attention/{name:<18} {prm.shape}")

    baseline = float(np.abs(y_new - y.mean()).mean())
    history = fit(model, "mae", Adam(model.parameters(), lr=args.lr), x, y, epochs=args.epochs,
                  batch_size=args.batch_size, validation_split=0.1, verbose=args.verbose)
    pred1 = predict(model, x_new, batch_size=128)
    mae = float(np.abs(pred1 - y_new).mean())
    print(f"trained {args.epochs} epoch(s): loss {history['loss'][0]:.4f} -> {history['loss'][-1]:.4f}, "
          f"val_loss {history['val_loss'][-1]:.4f}")
    print(f"fresh data: MAE {mae:.4f} (predicting the mean: {baseline:.4f})")
    model.eval()
    with ta.no_grad():
        model(ta.tensor(x_new))
    hits = float((model[1].last_attention.numpy().argmax(axis=1) == m_new).mean())
    print(f"attention peaks at the marked step for {hits:.1%} of the fresh samples")
    print("attention over time for 3 fresh samples:")
    for i, a in enumerate(model[1].last_attention.numpy()[:3]):
        print(f"  sample {i} (marker at step {m_new[i]}): " + " ".join(f"{v:.2f}" for v in a))

    tmpdir = None
    path = args.checkpoint
    if path is None:
        tmpdir = tempfile.mkdtemp(prefix="tinyattn_")
        path = os.path.join(tmpdir, "lstm_attention.npz")
    try:
        ta.save(model, path)
        print(f"saved {len(model.state_dict())} arrays to {path}")
        fresh = build_model(args.lstm_units, args.attention_units, args.score)
        fresh(ta.tensor(x[:1]))                                     # create its parameters, then load
        ta.load(fresh, path)
        pred2 = predict(fresh, x_new, batch_size=128)
    finally:
        if tmpdir is not None:
            for f in os.listdir(tmpdir):
                os.remove(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)

    print(f"elapsed {time.perf_counter() - t0:.1f}s")
    if not np.array_equal(pred1, pred2):
        print(f"FAIL: the reloaded model predicts differently (max |diff| "
              f"{float(np.abs(pred1 - pred2).max()):.3g})")
        return 1
    print(f"reloaded model: identical predictions on {len(x_new)} samples")
    if not mae < baseline:
        print(f"FAIL: the model did not learn (MAE {mae:.4f} is not below the baseline {baseline:.4f})")
        return 1
    print("Success.")
    return 0


# %%
if __name__ == "__main__":
    sys.exit(main())
