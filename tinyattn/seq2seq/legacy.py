"""TensorFlow's legacy ``attention_decoder`` (``tf.contrib.legacy_seq2seq``, used by
``embedding_attention_seq2seq``), after Vinyals et al. (2014), "Grammar as a Foreign Language".

Memory h_i (B, S, D) (``attention_states``), decoder state d_t, num_heads heads a = 1…H:

    once per sentence:  K_a = W1_a h_i             (a 1×1 convolution over the states = a Dense on
                                                    each state, no bias)        (B, S, A) per head
    attention(d):       q   = concat(flatten(d))   the whole state: [c; h] of every LSTM layer
                                                    (TF's LSTMStateTuple order), or h for a GRU
                        u_i = v_aᵀ tanh(K_a,i + W2_a q + b2_a)
                        a   = softmax(u)           (here masked: padding gets zero weight)
                        read_a = Σ_i a_i h_i       (B, D)
    reads₀ = attention(initial state) with ``initial_state_attention``, else zeros
    step t, input token y (in ``forward`` with ``feed_previous`` and t > 0: y = argmax of the
                           previous logits, TF's ``loop_function``):
        x      = W_in [embed(y); read_1; …; read_H] + b_in         (B, E)  "linear([inp] + attns)"
        out, d = cell(x, d)
        reads  = attention(d)
        output = W_o [out; read_1; …; read_H] + b_o                 "AttnOutputProjection"
        logits = output W_p + b_p                                   ``output_projection=True``: output
                                                                     is (B, u), then the projection
    With ``output_projection=False`` (TF's OutputProjectionWrapper around the cell) the cell output is
    first mapped to the vocabulary, out = h W_w + b_w (B, V), and output (B, V) are the logits.
"""
import numpy as np

from .. import backend
from .. import functions as F
from ..autograd import Tensor
from ..nn import Dense, ModuleList, Parameter, init
from .base import BaseDecoder, make_cells, run_cells
from ..kernels.additive_step import additive_attention
from .encoder import ids_array

__all__ = ["AttentionDecoder"]


class AttentionDecoder(BaseDecoder):
    """TF legacy ``attention_decoder`` (Vinyals et al. 2014): several heads, input feeding of the
    previous attention reads, ``initial_state_attention``, ``feed_previous``, output projection.

    AttentionDecoder(vocab_size, embed_dim, units, num_heads=1, initial_state_attention=False,
                     feed_previous=False, cell="lstm", output_projection=True, num_layers=1,
                     attention_vec_size=None, memory_dim=None, dtype="float32")

    Weights: ``embedding`` (V, E); per head a: ``W1[a]`` Dense (D, A) no bias, ``W2[a]`` Dense (Q, A),
    ``v[a]`` (A,) (A = attention_vec_size, default D as in TF; Q = 2u per LSTM layer, u per GRU layer);
    ``W_in`` Dense (E + H·D, E); ``cells`` (E → u); with output_projection ``W_o`` Dense (u + H·D, u)
    and ``proj`` Dense (u, V); without, ``W_w`` Dense (u, V) and ``W_o`` Dense (V + H·D, V).

    step: token (B,) → logits (B, V), state, weights (B, S) (one head) or (B, H, S); the step reads the
    token it is given (greedy / beam / sampling choose it), whatever ``feed_previous`` says.
    forward: tgt_in (B, T) → (B, T, V), (B, T, S) or (B, T, H, S). With ``feed_previous`` only
    tgt_in[:, 0] (the GO token) is read; later inputs are the argmax of the previous logits.
    """

    def __init__(self, vocab_size, embed_dim, units, num_heads=1, initial_state_attention=False,
                 feed_previous=False, cell="lstm", output_projection=True, num_layers=1,
                 attention_vec_size=None, memory_dim=None, dtype="float32"):
        super().__init__()
        self._setup(vocab_size, embed_dim, units, cell, num_layers, memory_dim, 0.0, dtype)
        if not isinstance(num_heads, (int, np.integer)) or num_heads < 1:
            raise ValueError(f"AttentionDecoder: num_heads must be a positive integer, got {num_heads!r}")
        self.num_heads = int(num_heads)
        self.initial_state_attention, self.feed_previous = bool(initial_state_attention), bool(feed_previous)
        self.output_projection = bool(output_projection)
        u, D, E, H, V = self.units, self.memory_dim, self.embed_dim, self.num_heads, self.vocab_size
        A = self.attention_vec_size = int(attention_vec_size or D)
        Q = self.query_dim = (2 * u if cell == "lstm" else u) * self.num_layers
        self.W1 = ModuleList([Dense(A, use_bias=False, input_dim=D, dtype=dtype) for _ in range(H)])
        self.W2 = ModuleList([Dense(A, input_dim=Q, dtype=dtype) for _ in range(H)])
        for a in range(H):
            setattr(self, f"v{a}", Parameter(init.glorot_uniform((A, 1), dtype=self.dtype).reshape(A), name=f"v{a}"))
        self.W_in = Dense(E, input_dim=E + H * D, dtype=dtype)
        self.cells = make_cells(cell, u, E, self.num_layers, dtype)
        if self.output_projection:
            self.W_o = Dense(u, input_dim=u + H * D, dtype=dtype)
            self.proj = Dense(V, input_dim=u, dtype=dtype)
        else:
            self.W_w = Dense(V, input_dim=u, dtype=dtype)
            self.W_o = Dense(V, input_dim=V + H * D, dtype=dtype)
        object.__setattr__(self, "built", True)

    @property
    def v(self):
        """The heads' score vectors v_a (A,)."""
        return [getattr(self, f"v{a}") for a in range(self.num_heads)]

    def query(self, layers):
        """TF flattens the state tuple into one query: [c₁; h₁; c₂; h₂; …] (LSTM) or [h₁; h₂; …]."""
        parts = []
        for s in layers:
            parts.extend([s[1], s[0]] if isinstance(s, tuple) else [s])
        return parts[0] if len(parts) == 1 else F.concat(parts, axis=-1)

    def attention(self, layers, state, mem):
        """(reads: list over heads of (B, D), weights: list over heads of (B, S)) for a state."""
        q = self.query(layers)
        reads, weights = [], []
        for a in range(self.num_heads):
            y = self.W2[a](q)                                                   # W2_a q + b2_a  (B, A)
            # u_i = v_aᵀ tanh(W1_a h_i + y), a = softmax(u) (masked), read = Σ_i a_i h_i, fused
            read, w = additive_attention(y, state.cache["hidden"][a], mem.states, self.v[a], mem.mask)
            reads.append(read)
            weights.append(w)
        return reads, weights

    def init_cache(self, mem):
        return {"hidden": [self.W1[a](mem.states) for a in range(self.num_heads)]}   # W1_a h_i, once

    def init_feed(self, state, mem):
        """reads₀: attention(initial state) with ``initial_state_attention``, else zeros."""
        if self.initial_state_attention:
            return self.attention(state.layers, state, mem)[0]
        xp = backend.get_array_module(mem.states.data)
        zero = Tensor(xp.zeros((mem.states.shape[0], self.memory_dim), dtype=mem.states.dtype))
        return [zero] * self.num_heads

    def output(self, features):
        return self.proj(features) if self.output_projection else features

    def advance(self, x, state, mem):
        inp = self.W_in(F.concat([x] + list(state.feed), axis=-1))             # linear([inp] + attns)
        out, layers = run_cells(self.cells, inp, state.layers)
        reads, weights = self.attention(layers, state, mem)
        if not self.output_projection:
            out = self.W_w(out)                                                 # OutputProjectionWrapper
        output = self.W_o(F.concat([out] + reads, axis=-1))                     # AttnOutputProjection
        new = type(state)(layers, reads, state.t + 1, state.cache)
        w = weights[0] if self.num_heads == 1 else F.stack(weights, axis=1)     # (B, S) or (B, H, S)
        return output, new, w

    def forward(self, tgt_in, mem):
        """Teacher forcing, as :meth:`BaseDecoder.forward`; with ``feed_previous`` (TF's
        ``loop_function``) only tgt_in[:, 0] (the GO token) is read, and every later input is the argmax
        of the previous step's logits (no gradient flows through the argmax)."""
        if not self.feed_previous:
            return super().forward(tgt_in, mem)
        self.check_memory(mem)
        ids = ids_array(tgt_in, self.embedding.embeddings.data, "AttentionDecoder", "tgt_in")
        if ids.ndim != 2:
            raise ValueError(f"AttentionDecoder: tgt_in must be (B, T) ids, got shape {tuple(ids.shape)}")
        xp = backend.get_array_module(ids)
        state = self.init_state(mem)
        token, logits, weights = ids[:, 0], [], []
        for t in range(ids.shape[1]):
            lg, state, w = self.step(token, state, mem)
            logits.append(lg)
            weights.append(w)
            token = xp.argmax(lg.data, axis=-1)                                 # loop_function
        return F.stack(logits, axis=1), F.stack(weights, axis=1)
