"""What every attention decoder shares: the decoder state, the stack of recurrent cells, the
teacher-forced loop over a target sequence, and the checks of the memory it attends to.

A decoder is used one step at a time (decoding) or over a whole target sequence (training):

    state = dec.init_state(mem)
    logits, state, weights = dec.step(token, state, mem)     # token (B,) → logits (B, V), weights (B, S)
    logits, weights = dec(tgt_in, mem)                       # (B, T) → (B, T, V), (B, T, S)

``dec(tgt_in, mem)`` runs exactly the steps of ``step`` (each decoder's ``advance``), embedding the
whole target once and applying the output layer once to all T steps' features.
"""
import numpy as np

from .. import backend
from .. import functions as F
from ..autograd import Tensor
from ..nn import Module, ModuleList, Embedding, LSTMCell, GRUCell
from .encoder import EncoderOutput, check_cell, ids_array

__all__ = ["DecoderState", "BaseDecoder"]


def _gather(x, idx):
    if x is None:
        return None
    if isinstance(x, (list, tuple)):
        return type(x)(_gather(u, idx) for u in x)
    return x[idx]


class DecoderState:
    """The decoder's recurrent state between steps.

    layers: list over decoder layers (bottom first) of h (B, u) [GRU] or (h, c) [LSTM].
    feed:   what the next step feeds back besides the token (Luong: h̃ (B, u); the legacy decoder:
            the attention reads and the previous logits), or None.
    t:      the index of the next step (0 at the start).
    cache:  per-sequence constants computed once by ``init_state`` from the memory (the projected
            keys W_k h_j): they depend on the source sentence only, so beam search never reorders them.
    """
    __slots__ = ("layers", "feed", "t", "cache")

    def __init__(self, layers, feed=None, t=0, cache=None):
        self.layers, self.feed, self.t, self.cache = layers, feed, t, cache or {}

    @property
    def top(self):
        """The top layer's hidden state h (B, u)."""
        s = self.layers[-1]
        return s[0] if isinstance(s, tuple) else s

    def reorder(self, idx):
        """The state of batch rows ``idx`` (an integer array): beam search keeps the states of the
        hypotheses it extends. Rows of ``idx`` must stay within their source sentence (the cache is
        shared)."""
        return DecoderState(_gather(self.layers, idx), _gather(self.feed, idx), self.t, self.cache)

    def repeat(self, k):
        """Every batch row repeated ``k`` times in place (row b → rows b·k … b·k+k−1), cache included:
        the start state of a beam search, computed once per sentence (as ``EncoderOutput.repeat``)."""
        first = self.top.data
        xp = backend.get_array_module(first)
        idx = xp.repeat(xp.arange(first.shape[0]), k)
        return DecoderState(_gather(self.layers, idx), _gather(self.feed, idx), self.t,
                            {name: _gather(v, idx) for name, v in self.cache.items()})


def make_cells(kind, units, input_dim, num_layers, dtype):
    """num_layers LSTMCell/GRUCell (Keras weights), the first reading input_dim features."""
    cls = LSTMCell if kind == "lstm" else GRUCell
    return ModuleList([cls(units, input_dim=input_dim if i == 0 else units, dtype=dtype)
                       for i in range(num_layers)])


def run_cells(cells, x, layers, dropout=0.0, training=False):
    """One step of a stack of cells: x (B, d) → top output (B, u) and the new per-layer states.
    ``dropout`` applies between layers (not to the input of the first)."""
    new = []
    for i, (cell, s) in enumerate(zip(cells, layers)):
        if i > 0 and dropout:
            x = F.dropout(x, dropout, training=training)
        if isinstance(s, tuple):
            x, (h, c) = cell(x, [s[0], s[1]])
            new.append((h, c))
        else:
            x, _ = cell(x, s)
            new.append(x)
    return x, new


class BaseDecoder(Module):
    """Shared plumbing of the attention decoders. A subclass defines

    * ``init_cache(mem)`` → dict of per-sequence constants (e.g. projected keys), default {};
    * ``init_feed(state, mem)`` → the initial ``state.feed`` (default None);
    * ``advance(x, state, mem)`` → (features (B, F), new state, weights (B, S) or (B, H, S)), one step
      given the embedded token x (B, E);
    * ``output(features)`` → logits (…, V) (default: ``self.out``, a Dense).
    """

    def _setup(self, vocab_size, embed_dim, units, cell, num_layers, memory_dim, dropout, dtype):
        name = type(self).__name__
        check_cell(name, cell)
        if num_layers < 1:
            raise ValueError(f"{name}: num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.embed_dim, self.units = int(vocab_size), int(embed_dim), int(units)
        self.cell, self.num_layers, self.dropout = cell, int(num_layers), float(dropout)
        self.memory_dim = int(memory_dim or units)
        self.dtype = np.dtype(dtype)
        self.embedding = Embedding(vocab_size, embed_dim, dtype=dtype)

    # -- state ------------------------------------------------------------------------------------
    def check_memory(self, mem):
        name = type(self).__name__
        if not isinstance(mem, EncoderOutput):
            raise TypeError(f"{name}: the memory must be an EncoderOutput (what Encoder returns), "
                            f"got {type(mem).__name__}")
        if mem.states.ndim != 3 or mem.states.shape[-1] != self.memory_dim:
            raise ValueError(f"{name}: memory states must be (B, S, memory_dim={self.memory_dim}), got "
                             f"{mem.states.shape}; pass memory_dim=encoder.output_dim (2·units for a "
                             f"bidirectional encoder) to the decoder")
        if tuple(mem.mask.shape) != mem.states.shape[:2]:
            raise ValueError(f"{name}: memory mask {tuple(mem.mask.shape)} does not match the states "
                             f"{mem.states.shape[:2]}")

    def initial_layers(self, mem):
        """Per-layer start states from the encoder's final states. A GRU decoder takes h of an LSTM
        encoder; an LSTM decoder after a GRU encoder starts its memory cell c at zero."""
        name = type(self).__name__
        final = mem.final
        if final is None or len(final) == 0:
            xp = backend.get_array_module(mem.states.data)
            z = lambda: Tensor(xp.zeros((mem.states.shape[0], self.units), dtype=mem.states.dtype))  # noqa: E731
            return [(z(), z()) if self.cell == "lstm" else z() for _ in range(self.num_layers)]
        if len(final) != self.num_layers:
            raise ValueError(f"{name}: the encoder has {len(final)} layer(s) but the decoder {self.num_layers}; "
                             f"give both the same num_layers")
        out = []
        for s in final:
            h, c = (s if isinstance(s, (tuple, list)) else (s, None))
            if h.shape[-1] != self.units:
                raise ValueError(f"{name}: the encoder's final state has size {h.shape[-1]} but the decoder "
                                 f"has units={self.units}; build the Encoder with decoder_units={self.units}")
            if self.cell == "lstm":
                if c is None:
                    c = Tensor(backend.get_array_module(h.data).zeros_like(h.data))
                out.append((h, c))
            else:
                out.append(h)
        return out

    def init_cache(self, mem):
        return {}

    def init_feed(self, state, mem):
        return None

    def init_state(self, mem):
        """The state before the first step: the encoder's final states, the per-sequence cache
        (projected keys) and the initial feed."""
        self.check_memory(mem)
        state = DecoderState(self.initial_layers(mem), None, 0, self.init_cache(mem))
        state.feed = self.init_feed(state, mem)
        return state

    # -- steps ------------------------------------------------------------------------------------
    def output(self, features):
        return self.out(features)

    def embed(self, token, mem):
        ids = ids_array(token, self.embedding.embeddings.data, type(self).__name__, "token")
        if ids.ndim != 1 or ids.shape[0] != mem.states.shape[0]:
            raise ValueError(f"{type(self).__name__}.step: token must be (B,) = ({mem.states.shape[0]},) ids, "
                             f"got shape {tuple(ids.shape)}")
        return self.embedding(ids)

    def step(self, token, state, mem):
        """One decoding step: token (B,) ids, the state, the memory → (logits (B, V), new state,
        attention weights (B, S) — (B, heads, S) for a multi-head decoder)."""
        features, state, weights = self.advance(self.embed(token, mem), state, mem)
        return self.output(features), state, weights

    def forward(self, tgt_in, mem):
        """Teacher forcing: tgt_in (B, T) ids (BOS, y₁, …, y_{T−1}) → logits (B, T, V) and the
        attention weights of every step (B, T, S) (or (B, T, heads, S))."""
        self.check_memory(mem)
        ids = ids_array(tgt_in, self.embedding.embeddings.data, type(self).__name__, "tgt_in")
        if ids.ndim != 2 or ids.shape[0] != mem.states.shape[0]:
            raise ValueError(f"{type(self).__name__}: tgt_in must be (B, T) ids with B = {mem.states.shape[0]}, "
                             f"got shape {tuple(ids.shape)}")
        B, T = ids.shape
        state = self.init_state(mem)
        emb = self.embedding(ids)                                   # (B, T, E), one lookup
        xs = F.split(emb, T, axis=1) if T > 1 else [emb]
        feats, weights = [], []
        for t in range(T):
            f, state, w = self.advance(xs[t].reshape(B, self.embed_dim), state, mem)
            feats.append(f)
            weights.append(w)
        logits = self.output(F.stack(feats, axis=1))                 # one output GEMM for all steps
        return logits, F.stack(weights, axis=1)
