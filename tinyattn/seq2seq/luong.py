"""Luong, Pham & Manning (2015), "Effective Approaches to Attention-based Neural Machine Translation".

Unlike Bahdanau's decoder, attention comes *after* the recurrent step and looks at the current top
state h_t. One step t:

    x_t  = [embed(y_{t−1}); h̃_{t−1}]   with input feeding (h̃₀ = 0), else embed(y_{t−1})
    h_t  = RNN(x_t, h_{t−1})                              LSTM (or GRU), num_layers deep
    e_ts = score(h_t, h̄_s):   dot      h_tᵀ h̄_s                     (``dot_score``)
                              general  h_tᵀ W_a h̄_s                  (``general_score``)
                              concat   v_aᵀ tanh(W_a [h_t; h̄_s])     (``concat_score``; W_a h̄_s cached)
    global:  a_t = masked_softmax(e_t)                      over every real source position
    local-m: p_t = min(t, S_b − 1)                          aligned monotonically
    local-p: p_t = (S_b − 1) · σ(v_pᵀ tanh(W_p h_t))        predicted (S_b: real length of row b)
             a_ts = softmax over |s − p_t| ≤ D of e_ts, times exp(−(s − p_t)²/(2σ²)), σ = D/2
             (``tinyattn.attention.local_attention``)
    c_t  = Σ_s a_ts h̄_s
    h̃_t  = tanh(W_c [c_t; h_t])                            the attentional hidden state (B, u)
    logits_t = W_s h̃_t + b_s                               (B, V)
"""
import numpy as np

from .. import backend
from .. import functions as F
from ..attention import masked_softmax, dot_score, general_score, local_attention
from ..autograd import Tensor
from ..nn import Dense, Parameter, init
from .base import BaseDecoder, make_cells, run_cells
from ..kernels.additive_step import additive_attention

__all__ = ["LuongDecoder"]

SCORES = ("dot", "general", "concat")


class LuongDecoder(BaseDecoder):
    """Luong's global / local attention decoder with input feeding.

    LuongDecoder(vocab_size, embed_dim, units, score="dot"|"general"|"concat", input_feeding=True,
                 local=None|"m"|"p", window=2, cell="lstm", num_layers=1, dropout=0.0,
                 attention_units=None, memory_dim=None, dtype="float32")

    Weights: ``embedding`` (V, E); ``cells`` (layer 0 reads E (+ u with input feeding));
    score "general": ``W_a`` (u, D); "concat": ``W_a`` (u + D, A), ``v_a`` (A,) (A = attention_units,
    default u); local="p": ``W_p`` Dense (u, u) no bias, ``v_p`` (u,); ``W_c`` Dense (D + u, u) no bias;
    ``out`` Dense (u, V). "dot" needs D = u. ``window`` is the half-width D of the local window.

    step: token (B,) → logits (B, V), state, a_t (B, S).  forward: (B, T) → (B, T, V), (B, T, S).
    ``dropout``: between cell layers and on h̃ before ``out`` (training only; h̃ is fed back undropped).
    """

    def __init__(self, vocab_size, embed_dim, units, score="dot", input_feeding=True, local=None, window=2,
                 cell="lstm", num_layers=1, dropout=0.0, attention_units=None, memory_dim=None,
                 dtype="float32"):
        super().__init__()
        self._setup(vocab_size, embed_dim, units, cell, num_layers, memory_dim, dropout, dtype)
        if score not in SCORES:
            raise ValueError(f"LuongDecoder: score must be one of {SCORES}, got {score!r}")
        if local not in (None, "m", "p"):
            raise ValueError(f"LuongDecoder: local must be None, 'm' or 'p', got {local!r}")
        if score == "dot" and self.memory_dim != self.units:
            raise ValueError(f"LuongDecoder: score='dot' needs memory_dim == units, got {self.memory_dim} "
                             f"and {self.units}; use score='general' or 'concat'")
        if local is not None and (not isinstance(window, (int, np.integer)) or window < 0):
            raise ValueError(f"LuongDecoder: window must be a non-negative integer, got {window!r}")
        self.score, self.input_feeding, self.local, self.window = score, bool(input_feeding), local, window
        u, D = self.units, self.memory_dim
        if score == "general":
            self.W_a = Parameter(init.glorot_uniform((u, D), dtype=self.dtype), name="W_a")
        elif score == "concat":
            A = self.attention_units = int(attention_units or u)
            self.W_a = Parameter(init.glorot_uniform((u + D, A), dtype=self.dtype), name="W_a")
            self.v_a = Parameter(init.glorot_uniform((A, 1), dtype=self.dtype).reshape(A), name="v_a")
        if local == "p":
            self.W_p = Dense(u, use_bias=False, input_dim=u, dtype=dtype)
            self.v_p = Parameter(init.glorot_uniform((u, 1), dtype=self.dtype).reshape(u), name="v_p")
        self.cells = make_cells(cell, u, self.embed_dim + (u if self.input_feeding else 0), self.num_layers, dtype)
        self.W_c = Dense(u, activation="tanh", use_bias=False, input_dim=D + u, dtype=dtype)
        self.out = Dense(self.vocab_size, input_dim=u, dtype=dtype)
        object.__setattr__(self, "built", True)

    def init_cache(self, mem):
        cache = {}
        if self.score == "concat":            # the key half of W_a [h_t; h̄_s]: W_a[u:] h̄_s, once
            D, A = self.memory_dim, self.attention_units
            B, S = mem.states.shape[:2]
            cache["keys"] = (mem.states.reshape(B * S, D) @ self.W_a[self.units:]).reshape(B, S, A)
        if self.local is not None:            # S_b − 1 per row, the largest centre
            cache["last"] = (mem.lengths - 1).astype(mem.states.dtype)[:, None]      # (B, 1) array
        return cache

    def init_feed(self, state, mem):
        if not self.input_feeding:
            return None
        xp = backend.get_array_module(mem.states.data)
        return Tensor(xp.zeros((mem.states.shape[0], self.units), dtype=mem.states.dtype))  # h̃₀ = 0

    def scores(self, h, state, mem):
        """e_t (B, 1, S) for the current top state h (B, u)."""
        B = h.shape[0]
        q = h.reshape(B, 1, self.units)
        if self.score == "dot":
            return dot_score(q, mem.states)
        if self.score == "general":
            return general_score(q, mem.states, self.W_a)
        H = F.tanh((h @ self.W_a[:self.units]).reshape(B, 1, -1) + state.cache["keys"])   # (B, S, A)
        return (H @ self.v_a).reshape(B, 1, -1)

    def advance(self, x, state, mem):
        B = x.shape[0]
        inp = F.concat([x, state.feed], axis=-1) if self.input_feeding else x
        h, layers = run_cells(self.cells, inp, state.layers, self.dropout, self.training)   # h_t (B, u)
        if self.local is None and self.score == "concat":     # score, softmax, context: one fused node
            c, a = additive_attention(h @ self.W_a[:self.units], state.cache["keys"], mem.states, self.v_a,
                                      mem.mask)
        elif self.local is None:
            e = self.scores(h, state, mem)                                  # (B, 1, S)
            a = masked_softmax(e, mem.mask[:, None, :])
            c = a @ mem.states
        else:
            e = self.scores(h, state, mem)
            last = state.cache["last"]
            if self.local == "m":
                xp = backend.get_array_module(last)
                centre = xp.minimum(xp.asarray(state.t, dtype=last.dtype), last)          # (B, 1)
            else:
                centre = F.sigmoid(F.tanh(self.W_p(h)) @ self.v_p).reshape(B, 1) * last
            c, a = local_attention(e, mem.states, centre, self.window, mask=mem.mask)
        c = c.reshape(B, self.memory_dim)
        h_tilde = self.W_c(F.concat([c, h], axis=-1))                       # tanh(W_c [c_t; h_t])
        new = type(state)(layers, h_tilde if self.input_feeding else None, state.t + 1, state.cache)
        out = F.dropout(h_tilde, self.dropout, training=self.training) if self.dropout else h_tilde
        return out, new, a.reshape(B, a.shape[-1])
