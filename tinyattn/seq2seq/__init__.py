"""Encoder–decoder attention (``tinyattn.seq2seq``): an encoder, three attention decoders, a
teacher-forced model, greedy / beam / sampled decoding, and BLEU.

    ========================================================  ====================  ==============
    paper / source                                            class                 file
    ========================================================  ====================  ==============
    (Bi)LSTM/GRU encoder; bridge s₀ = tanh(W h) (Bahdanau)    ``Encoder``           encoder.py
    Bahdanau, Cho & Bengio 2015 (d2l Seq2SeqAttentionDecoder) ``BahdanauDecoder``   bahdanau.py
    Luong, Pham & Manning 2015 (global, local-m, local-p)     ``LuongDecoder``      luong.py
    Vinyals et al. 2014, TF legacy ``attention_decoder``       ``AttentionDecoder``  legacy.py
    Sutskever et al. 2014 (teacher forcing); Szegedy et al.   ``Seq2Seq``           model.py
      2016 (label smoothing)
    Wu et al. 2016 (GNMT length penalty) beam search;         ``beam_search``,      decoding.py
      greedy decoding; ancestral / top-k sampling             ``greedy_decode``,
                                                              ``sample``
    Papineni et al. 2002 as simplified in d2l                 ``bleu``,             metrics.py
                                                              ``exact_match``
    one step of additive attention, fused (= additive_score   ``additive_attention`` fused.py
      + masked_softmax + attend, tested equal)
    ========================================================  ====================  ==============

Typical use::

    enc = Encoder(V_src, 32, 64, cell="gru")
    dec = BahdanauDecoder(V_tgt, 32, 64, cell="gru")
    model = Seq2Seq(enc, dec, pad_id=0, bos_id=1, eos_id=2)
    fit(model, model.loss_fn, Adam(model.parameters()), (src, tgt_in), tgt_out, epochs=10)
    res = beam_search(model, src_test, beam_width=4, max_len=12)
    res.tokens, res.alignments            # (B, L) ids and (B, L, S) attention: plot with tinyattn.viz

Every decoder has ``init_state(mem)``, ``step(token, state, mem) -> (logits, state, weights)`` (one
step, to read or to decode) and ``decoder(tgt_in, mem) -> (logits, weights)`` (teacher forcing; the
weights of every step). Source padding gets exactly zero attention (and zero gradient) everywhere.
"""
from .encoder import Encoder, EncoderOutput
from .base import BaseDecoder, DecoderState
from .bahdanau import BahdanauDecoder
from .luong import LuongDecoder
from .legacy import AttentionDecoder
from .model import Seq2Seq, sequence_cross_entropy
from .decoding import DecodeResult, greedy_decode, beam_search, sample, length_penalty
from .metrics import bleu, exact_match
from ..kernels.additive_step import additive_attention

__all__ = ["Encoder", "EncoderOutput", "BaseDecoder", "DecoderState", "BahdanauDecoder", "LuongDecoder",
           "AttentionDecoder", "Seq2Seq", "sequence_cross_entropy", "DecodeResult", "greedy_decode",
           "beam_search", "sample", "length_penalty", "bleu", "exact_match", "additive_attention"]
