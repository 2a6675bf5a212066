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
# # LSTM sequence classification: which motif?
#
# An LSTM classifier on synthetic sequences, then save → load → the same predictions.

# %%
"""LSTM sequence classification on a synthetic "which motif?" task, then save -> load -> same predictions.

Task. Each sequence (length 8-20, zero-padded to 20) is filler tokens 7..19 with one 3-token motif
hidden at a random position. There are 4 motifs, and they come in mirror pairs:

    class 0: 1 2 3      class 1: 3 2 1      class 2: 4 5 6      class 3: 6 5 4

so the *bag* of tokens only tells {0,1} from {2,3}; telling 1 2 3 from 3 2 1 needs the order, which
is what the LSTM's state carries. Padding (id 0) is masked: Embedding(mask_zero=True) gives the mask
(B, T), and the LSTM skips those steps.

Model (shapes for a batch of B sequences of T = 20 ids):

    ids (B, T) ─Embedding(20, 16)─▶ (B, T, 16) ─LSTM(32), mask─▶ h_T (B, 32) ─Dense(4)─▶ logits (B, 4)

Loss: sparse categorical cross-entropy from logits; Adam(lr=0.01). Training stops as soon as the
validation accuracy reaches the target (>= 0.95), at most 30 epochs.

Run:  python examples/lstm_sequence_classification.py     (exit status 1 on any failure)
"""
import os
import sys
import tempfile
import time

import numpy as np

import tinyattn as ta
from tinyattn import nn, optim
from tinyattn.train import evaluate, fit, predict

MOTIFS = np.array([[1, 2, 3], [3, 2, 1], [4, 5, 6], [6, 5, 4]])
VOCAB, T_MAX, TARGET = 20, 20, 0.95


# %% [markdown]
# ## The data

# %%
def make_data(n, rng):
    """ids (n, T_MAX) int64 with 0 padding at the end, labels (n,) in {0, 1, 2, 3}."""
    labels = rng.integers(0, len(MOTIFS), n)
    ids = np.zeros((n, T_MAX), np.int64)
    lengths = rng.integers(8, T_MAX + 1, n)
    for i in range(n):
        seq = rng.integers(7, VOCAB, lengths[i])
        start = rng.integers(0, lengths[i] - 2)
        seq[start:start + 3] = MOTIFS[labels[i]]
        ids[i, :lengths[i]] = seq
    return ids, labels


# %% [markdown]
# ## The model

# %%
class MotifClassifier(nn.Module):
    """ids (B, T) -> logits (B, 4): Embedding(mask_zero) -> LSTM (masked) -> Dense."""

    def __init__(self, vocab=VOCAB, embed=16, units=32, classes=len(MOTIFS)):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed, mask_zero=True)
        self.lstm = nn.LSTM(units)
        self.classifier = nn.Dense(classes)

    def forward(self, ids):
        x = self.embedding(ids)                                  # (B, T, 16)
        h = self.lstm(x, mask=self.embedding.compute_mask(ids))  # (B, 32): the last real step
        return self.classifier(h)                                # (B, 4) logits


# %% [markdown]
# ## Train, evaluate, save, reload

# %%
def main():
    t0 = time.perf_counter()
    ta.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train, y_train = make_data(3000, rng)
    x_val, y_val = make_data(1000, rng)

    model = MotifClassifier()
    _build(model, x_train)                        # create the LSTM/Dense weights before the optimizer
    opt = optim.Adam(model.parameters(), lr=0.01)
    loss = ta.losses.SparseCategoricalCrossentropy(from_logits=True)
    val_acc, epochs = 0.0, 0
    while val_acc < TARGET and epochs < 30:
        epochs += 1
        h = fit(model, loss, opt, x_train, y_train, epochs=1, batch_size=64,
                validation_data=(x_val, y_val), metrics=("accuracy",), verbose=0, clipnorm=5.0)
        val_acc = h["val_accuracy"][-1]
        print(f"epoch {epochs:2d}  loss {h['loss'][-1]:.4f}  acc {h['accuracy'][-1]:.4f}  "
              f"val_loss {h['val_loss'][-1]:.4f}  val_acc {val_acc:.4f}  ({time.perf_counter() - t0:.1f}s)",
              flush=True)
    train_time = time.perf_counter() - t0         # data generation + training

    # save -> load into a fresh model -> predictions must be bit-identical
    preds = predict(model, x_val, batch_size=256)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "motif_lstm.npz")
        ta.save(model, path, optimizer=opt)
        fresh = MotifClassifier()
        _build(fresh, x_val)                      # lazily built layers need one call to create weights
        ta.load(fresh, path)
    reloaded = predict(fresh, x_val, batch_size=256)
    identical = np.array_equal(preds, reloaded)
    reloaded_acc = evaluate(fresh, loss, x_val, y_val, metrics=("accuracy",))["accuracy"]

    print(f"validation accuracy {val_acc:.4f} after {epochs} epochs, {train_time:.1f}s (data + training); "
          f"reloaded model: accuracy {reloaded_acc:.4f}, predictions bit-identical: {identical}")
    ok = val_acc >= TARGET and identical and reloaded_acc == val_acc
    if not ok:
        print("FAILED: " + ("" if val_acc >= TARGET else f"accuracy {val_acc:.4f} < {TARGET}; ")
              + ("" if identical else "reloaded predictions differ"), file=sys.stderr)
    return 0 if ok else 1


# %%
def _build(model, x):
    """Run the model once on one sample so that lazily built layers create their weights."""
    with ta.no_grad():
        model(ta.tensor(x[:1]))
    return model.parameters()


# %%
if __name__ == "__main__":
    sys.exit(main())
