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
# # Keras-style attention between an encoder and a decoder
#
# `Attention()([decoder_out, encoder_out])` and a bilinear score on a BiLSTM encoder, with every shape printed.

# %%
"""Keras-style attention between a BiLSTM encoder and a decoder, with shapes (seed 000).

The tutorial's walk-through, re-derived on tinyattn:

    source x        (50, 80, 8)      50 sentences of 80 steps, 8 features per step
    encoder         Bidirectional(LSTM(15, return_sequences=True))  -> encoder_out (50, 80, 30)
    decoder         LSTM(30, return_sequences=True) on one decoder step (50, 1, 8),
                    started from the encoder's final states            -> decoder_out (50, 1, 30)
    Attention()     ([decoder_out, encoder_out]): query = decoder_out, value = key = encoder_out
                    e = q kᵀ (no scale, Keras's default)   (50, 1, 80)
                    α = softmax(e) over the 80 source steps;  out = α v   -> (50, 1, 30)
    bilinear score  the tutorial's custom layer, e = q W kᵀ (Luong's "general" score):
                    LuongAttention("general"), W (30, 30)                 -> (50, 1, 30)

The tutorial's custom layer also had a weight W of shape (batch, dim, dim) (one matrix per batch
*position*, so the layer only worked for one batch size), a softmax over the flattened Tq·Tv scores
and a bias of shape (batch, Tq, dim). Re-derived, W is one (dim, dim) matrix and the softmax runs
over the keys of each query (the same thing when Tq = 1, as here).

Finally a small case to look at: 5 decoder steps attending over 12 source steps, drawn as a heatmap
(a PNG when matplotlib is installed, text otherwise). The networks are untrained: this example is
about shapes and plumbing, the weights are whatever the seeded initialisers give.

    python examples/keras_style_attention.py
    python examples/keras_style_attention.py --plot heatmap.png
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import tinyattn as ta                                               # noqa: E402
from tinyattn.nn import LSTM, Bidirectional, Module                # noqa: E402
from tinyattn.attention import Attention, LuongAttention           # noqa: E402
from tinyattn.viz import plot_attention                            # noqa: E402


# %% [markdown]
# ## The model
#
# A BiLSTM encoder, an LSTM decoder and two attention layers over the encoder states.

# %%
class EncoderDecoderAttention(Module):
    """BiLSTM encoder -> LSTM decoder (initial state = the encoder's final states) -> attention.

    forward(source (B, Ts, d), target (B, Tt, d)) -> dict of every intermediate tensor:
    encoder_out (B, Ts, 2u), decoder_out (B, Tt, 2u), keras_out (B, Tt, 2u), keras_weights (B, Tt, Ts),
    bilinear_out (B, Tt, 2u), bilinear_weights (B, Tt, Ts).
    """

    def __init__(self, units):
        super().__init__()
        self.encoder = Bidirectional(LSTM(units, return_sequences=True, return_state=True))
        self.decoder = LSTM(2 * units, return_sequences=True)
        self.attention = Attention()                      # Keras: dot score, no scale, no weights
        self.bilinear = LuongAttention(score="general")   # the tutorial's custom q W kᵀ layer

    def forward(self, source, target):
        enc_out, h_f, c_f, h_b, c_b = self.encoder(source)
        h0 = ta.concat([h_f, h_b], axis=-1)              # (B, 2u): both directions' final states
        c0 = ta.concat([c_f, c_b], axis=-1)
        dec_out = self.decoder(target, initial_state=[h0, c0])
        keras_out, keras_w = self.attention([dec_out, enc_out], return_attention_scores=True)
        bil_out, bil_w = self.bilinear(dec_out, enc_out, enc_out, return_attention_scores=True)
        return dict(encoder_out=enc_out, decoder_out=dec_out, keras_out=keras_out, keras_weights=keras_w,
                    bilinear_out=bil_out, bilinear_weights=bil_w)


# %%
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--source-len", type=int, default=80)
    p.add_argument("--features", type=int, default=8)
    p.add_argument("--units", type=int, default=15, help="LSTM units per direction (output 2x)")
    p.add_argument("--plot", default="keras_style_attention.png",
                   help="heatmap PNG path ('' prints a text heatmap instead)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


# %% [markdown]
# ## Run it
#
# Print every tensor's shape, check them, and draw one example's attention weights.

# %%
def main(argv=None):
    args = parse_args(argv)
    ta.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    model = EncoderDecoderAttention(args.units)
    model.eval()
    d = 2 * args.units

    source = ta.tensor(rng.standard_normal((args.batch, args.source_len, args.features)).astype(np.float32))
    target = ta.tensor(rng.standard_normal((args.batch, 1, args.features)).astype(np.float32))
    with ta.no_grad():
        out = model(source, target)
    print(f"source                      {source.shape}")
    for name in ("encoder_out", "decoder_out", "keras_out", "keras_weights", "bilinear_out", "bilinear_weights"):
        print(f"{name:<27} {out[name].shape}")
    print(f"bilinear W                  {model.bilinear.W.shape}")
    expected = (args.batch, 1, d)
    problems = [n for n in ("decoder_out", "keras_out", "bilinear_out") if out[n].shape != expected]
    problems += [n for n in ("keras_weights", "bilinear_weights")
                 if out[n].shape != (args.batch, 1, args.source_len)
                 or not np.allclose(out[n].numpy().sum(-1), 1.0, atol=1e-5)]
    # Keras's Attention is softmax(q kᵀ) v, written out here in NumPy as a check.
    q, k = out["decoder_out"].numpy(), out["encoder_out"].numpy()
    e = q @ k.transpose(0, 2, 1)
    w = np.exp(e - e.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    if not np.allclose(out["keras_out"].numpy(), w @ k, rtol=1e-4, atol=1e-5):
        problems.append("keras_out != softmax(q kᵀ) v")
    print(f"Attention()([decoder_out, encoder_out]) -> {out['keras_out'].shape}"
          + ("   (as in the tutorial)" if out["keras_out"].shape == (50, 1, 30) else ""))

    # A small case to look at: 5 decoder steps over 12 source steps, sample 0.
    with ta.no_grad():
        small = model(ta.tensor(rng.standard_normal((1, 12, args.features)).astype(np.float32)),
                      ta.tensor(rng.standard_normal((1, 5, args.features)).astype(np.float32)))
    weights = small["bilinear_weights"].numpy()[0]                      # (5, 12)
    print(f"bilinear attention weights of a small example {weights.shape} (decoder step x source step):")
    res = plot_attention(weights, x_labels=[f"s{j}" for j in range(12)], y_labels=[f"t{i}" for i in range(5)],
                         path=args.plot or None, title="q W kᵀ attention (untrained)")
    if res is not None and str(res).endswith(".png"):
        print(f"heatmap written to {res}")
    if problems:
        print("FAIL: " + "; ".join(problems))
        return 1
    print("OK: all shapes as expected")
    return 0


# %%
if __name__ == "__main__":
    sys.exit(main())
