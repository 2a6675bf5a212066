"""A short training run of tinyattn.seq2seq on the reversal task (reverse a string of digits) reaches
≥ 90% held-out token accuracy with greedy decoding, and its attention is the anti-diagonal.
(Slow: about a minute of CPU; run with ``python3 -m pytest -m slow tests/test_seq2seq_training.py``.)"""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.optim import Adam
from tinyattn.seq2seq import BahdanauDecoder, Encoder, Seq2Seq, greedy_decode
from tinyattn.train import fit

PAD, BOS, EOS, OFFSET = 0, 1, 2, 3


def reversal_data(n, rng, min_len=3, max_len=8):
    """src (n, max_len) digit ids (k + 3) padded with 0; tgt_in = BOS + reversed; tgt_out = reversed + EOS."""
    src = np.zeros((n, max_len), np.int64)
    tgt_in = np.zeros((n, max_len + 1), np.int64)
    tgt_out = np.zeros((n, max_len + 1), np.int64)
    lengths = rng.integers(min_len, max_len + 1, size=n)
    for i, L in enumerate(lengths):
        d = rng.integers(0, 10, size=L) + OFFSET
        src[i, :L] = d
        tgt_in[i, 0], tgt_in[i, 1:L + 1] = BOS, d[::-1]
        tgt_out[i, :L], tgt_out[i, L] = d[::-1], EOS
    return src, tgt_in, tgt_out, lengths


def test_reversal_data_is_what_it_says():
    src, tgt_in, tgt_out, lengths = reversal_data(20, np.random.default_rng(0))
    for s, ti, to, L in zip(src, tgt_in, tgt_out, lengths):
        assert list(to[:L]) == list(s[:L][::-1]) and to[L] == EOS and not to[L + 1:].any()
        assert ti[0] == BOS and list(ti[1:L + 1]) == list(to[:L])
        assert not s[L:].any() and (s[:L] >= OFFSET).all()


@pytest.mark.slow
def test_reversal_reaches_90_percent_token_accuracy():
    ta.manual_seed(0)
    rng = np.random.default_rng(0)
    src, tgt_in, tgt_out, _ = reversal_data(4000, rng)
    tsrc, _, ttgt, tlen = reversal_data(300, rng)
    V = OFFSET + 10
    model = Seq2Seq(Encoder(V, 16, 48, cell="gru", pad_id=PAD), BahdanauDecoder(V, 16, 48, cell="gru"))
    fit(model, model.loss_fn, Adam(model.parameters(), lr=5e-3), (src, tgt_in), tgt_out,
        epochs=5, batch_size=64, verbose=0, clipnorm=1.0)
    res = greedy_decode(model, tsrc, max_len=ttgt.shape[1])
    pred = np.full(ttgt.shape, -1)
    pred[:, :res.tokens.shape[1]] = res.tokens
    valid = ttgt != PAD                                      # the digits and EOS of each target
    accuracy = float(((pred == ttgt) & valid).sum() / valid.sum())
    assert accuracy >= 0.90, f"held-out token accuracy {accuracy:.3f} < 0.90"
    # The attention found the alignment: output t reads source position L − 1 − t.
    top = res.alignments.argmax(-1)
    hits = sum(int((top[i, :L] == L - 1 - np.arange(L)).sum()) for i, L in enumerate(tlen))
    assert hits / tlen.sum() >= 0.8, f"only {hits / tlen.sum():.3f} of outputs attend to the mirrored digit"
