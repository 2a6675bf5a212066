"""Bahdanau et al. (2015), "Neural Machine Translation by Jointly Learning to Align and Translate",
in the form of d2l's ``Seq2SeqAttentionDecoder`` (Dive into Deep Learning, §10.4 / §11.4).

One step t, with s_{t−1} the previous top-layer hidden state (the *query*), h_j the encoder states
(keys = values) and y_{t−1} the previous target token:

    e_tj = vᵀ tanh(W_q s_{t−1} + W_k h_j)          additive score (``tinyattn.attention.additive_score``)
    α_t  = masked_softmax(e_t)                      padding gets exactly zero weight
    c_t  = Σ_j α_tj h_j                             context (B, D)
    s_t  = RNN([c_t; embed(y_{t−1})], s_{t−1})      GRU or LSTM, num_layers deep
    logits_t = W_o s_t + b_o                        (B, V)

W_k h_j does not change during the sentence: it is computed once in ``init_state`` (the cache), so a
step costs one (B, u)·(u, A) projection of the query, the (B, S, A) tanh and two small products —
the score, softmax and context in one fused Function (``tinyattn.kernels.additive_step.additive_attention``, tested equal to
``attend(masked_softmax(additive_score(...)), h)``).
"""
from .. import functions as F
from ..nn import Dense, Parameter, init
from .base import BaseDecoder, make_cells, run_cells
from ..kernels.additive_step import additive_attention

__all__ = ["BahdanauDecoder"]


class BahdanauDecoder(BaseDecoder):
    """Additive-attention decoder (Bahdanau 2015 / d2l): query = previous hidden state, the cell is
    fed [context; embedding], logits from a Dense over the cell's output.

    BahdanauDecoder(vocab_size, embed_dim, units, cell="gru"|"lstm", num_layers=1,
                    attention_units=None, dropout=0.0, memory_dim=None, dtype="float32")

    Weights: ``embedding`` (V, E); ``W_q`` Dense (u, A) and ``W_k`` Dense (D, A), no bias; ``v`` (A,);
    ``cells`` (layer 0 reads D + E features); ``out`` Dense (u, V). A = attention_units (default u),
    D = memory_dim (default u; 2u after a bidirectional encoder).

    step: token (B,) → logits (B, V), state, α (B, S).  forward: tgt_in (B, T) → (B, T, V), (B, T, S).
    ``dropout``: between cell layers and on the top output before ``out`` (training mode only).
    """

    def __init__(self, vocab_size, embed_dim, units, cell="gru", num_layers=1, attention_units=None,
                 dropout=0.0, memory_dim=None, dtype="float32"):
        super().__init__()
        self._setup(vocab_size, embed_dim, units, cell, num_layers, memory_dim, dropout, dtype)
        A = self.attention_units = int(attention_units or units)
        self.W_q = Dense(A, use_bias=False, input_dim=self.units, dtype=dtype)
        self.W_k = Dense(A, use_bias=False, input_dim=self.memory_dim, dtype=dtype)
        self.v = Parameter(init.glorot_uniform((A, 1), dtype=self.dtype).reshape(A), name="v")
        self.cells = make_cells(cell, self.units, self.memory_dim + self.embed_dim, self.num_layers, dtype)
        self.out = Dense(self.vocab_size, input_dim=self.units, dtype=dtype)
        object.__setattr__(self, "built", True)

    def init_cache(self, mem):
        return {"keys": self.W_k(mem.states)}                       # W_k h_j, (B, S, A), once

    def advance(self, x, state, mem):
        q = self.W_q(state.top)                                      # W_q s_{t−1}   (B, A)
        context, alpha = additive_attention(q, state.cache["keys"], mem.states, self.v, mem.mask)
        # = masked_softmax(vᵀ tanh(q + W_k h_j)) and Σ_j α_j h_j: context (B, D), alpha (B, S)
        h, layers = run_cells(self.cells, F.concat([context, x], axis=-1), state.layers,
                              self.dropout, self.training)
        if self.dropout:
            h = F.dropout(h, self.dropout, training=self.training)
        new = type(state)(layers, None, state.t + 1, state.cache)
        return h, new, alpha
