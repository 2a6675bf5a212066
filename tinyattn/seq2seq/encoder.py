"""The recurrent encoder shared by every decoder in ``tinyattn.seq2seq``.

    src (B, S) token ids ──Embedding──▶ (B, S, E) ──num_layers × (Bi)LSTM/GRU──▶ states (B, S, D)
                                                                           └──▶ final state of each layer

D = units, or 2·units for a bidirectional encoder (forward and backward states concatenated, the
"annotations" h_j = [→h_j; ←h_j] of Bahdanau et al. 2015). Padded source positions (id ``pad_id``) are
masked in the recurrence (a masked step keeps the state, so the final state is the state after the
last real token, and the backward direction starts at the last real token); their states are zero.

A decoder starts from the encoder's final states. When the sizes differ (a bidirectional encoder, or
``decoder_units`` ≠ ``units``) a Dense *bridge* maps them, as the papers do (Bahdanau et al. 2015
initialise the decoder with s₀ = tanh(W_s h); here the bridge sees both directions):

    h₀ = tanh([→h; ←h] W_h + b_h)        c₀ = [→c; ←c] W_c + b_c   (LSTM memory cell: linear)
"""
import numpy as np

from .. import backend
from .. import functions as F
from ..autograd import Tensor, array_of
from ..functions.masks import as_mask
from ..nn import Module, ModuleList, Embedding, Dense, LSTM, GRU, Bidirectional

__all__ = ["Encoder", "EncoderOutput"]

CELLS = ("lstm", "gru")


def check_cell(owner, cell):
    if cell not in CELLS:
        raise ValueError(f"{owner}: cell must be 'lstm' or 'gru', got {cell!r}")
    return cell


def ids_array(ids, like, owner, name="src"):
    """Token ids (a Tensor, array or list) as an integer array on the device of ``like`` (an array)."""
    xp = backend.get_array_module(like)
    a = array_of(ids)
    a = xp.asarray(backend.to_device(np.asarray(a) if not hasattr(a, "dtype") else a, backend.device_of(like)))
    if a.dtype.kind not in "iu":
        raise TypeError(f"{owner}: {name} must hold integer token ids, got dtype {a.dtype}")
    return a


class EncoderOutput:
    """What an encoder hands to a decoder (the decoder's *memory*).

    states: Tensor (B, S, D) — the top layer's state at every source position: the attention keys
            and values. Padded positions hold zeros.
    final:  list over encoder layers (bottom first) of the state to start a decoder layer from:
            h (B, units) for a GRU, the pair (h, c) for an LSTM — already bridged to the decoder's size.
    mask:   boolean array (B, S) on the data's device, True = a real token (False = padding); any
            mask :func:`as_mask` takes (a NumPy mask beside device states moves to the device).
    """

    def __init__(self, states, final, mask):
        self.states, self.final = states, final
        self.mask = as_mask(mask, states, name="mask", where="EncoderOutput")

    @property
    def lengths(self):
        """(B,) number of real source tokens of each row (an array on the data's device)."""
        return self.mask.sum(axis=1)

    def repeat(self, k):
        """Every batch row repeated ``k`` times in place (row b → rows b·k … b·k+k−1), as constants:
        the memory of a beam search over k hypotheses per source sentence."""
        xp = backend.get_array_module(self.states.data)

        def rep(t):
            if t is None:
                return None
            if isinstance(t, (tuple, list)):
                return type(t)(rep(u) for u in t)
            return Tensor(xp.repeat(t.data, k, axis=0))
        return EncoderOutput(rep(self.states), rep(self.final), xp.repeat(self.mask, k, axis=0))

    def __repr__(self):
        return f"EncoderOutput(states={self.states.shape}, layers={len(self.final)}, mask={tuple(self.mask.shape)})"


class Encoder(Module):
    """Embedding + a stack of (bidirectional) LSTM or GRU layers over the source sentence.

    Encoder(vocab_size, embed_dim, units, cell="lstm"|"gru", bidirectional=False, num_layers=1,
            dropout=0.0, pad_id=0, decoder_units=None, dtype="float32")

    Call: ``enc(src)`` with src (B, S) integer ids → :class:`EncoderOutput` with
    ``states`` (B, S, D), D = ``output_dim`` = units (·2 if bidirectional); ``final`` (one entry per
    layer, each h (B, decoder_units) or (h, c)); ``mask`` (B, S) = src ≠ pad_id.

    * Layer l > 0 reads layer l−1's states (both directions concatenated); ``dropout`` is applied
      between layers (as PyTorch's ``nn.LSTM(dropout=)``) in training mode.
    * ``decoder_units`` (default ``units``): the size of the decoder's state. A bidirectional encoder,
      or decoder_units ≠ units, gets a Dense bridge per layer: h₀ = tanh([→h; ←h] W + b) and, for an
      LSTM, c₀ = [→c; ←c] W' + b'.
    """

    def __init__(self, vocab_size, embed_dim, units, cell="lstm", bidirectional=False, num_layers=1,
                 dropout=0.0, pad_id=0, decoder_units=None, dtype="float32"):
        super().__init__()
        check_cell("Encoder", cell)
        if num_layers < 1:
            raise ValueError(f"Encoder: num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"Encoder: dropout must be in [0, 1), got {dropout}")
        self.vocab_size, self.embed_dim, self.units = int(vocab_size), int(embed_dim), int(units)
        self.cell, self.bidirectional, self.num_layers = cell, bool(bidirectional), int(num_layers)
        self.dropout, self.pad_id = float(dropout), int(pad_id)
        self.decoder_units = int(decoder_units or units)
        self.dtype = np.dtype(dtype)
        self.output_dim = self.units * (2 if self.bidirectional else 1)
        self.embedding = Embedding(vocab_size, embed_dim, dtype=dtype)
        rnn = LSTM if cell == "lstm" else GRU
        layers = []
        for i in range(self.num_layers):
            d_in = self.embed_dim if i == 0 else self.output_dim
            layer = rnn(self.units, return_sequences=True, return_state=True, zero_output_for_mask=True,
                        dtype=dtype)
            if self.bidirectional:
                layer = Bidirectional(layer)
            layer.build((None, None, d_in))
            layers.append(layer)
        self.layers = ModuleList(layers)
        self.bridged = self.bidirectional or self.decoder_units != self.units
        if self.bridged:
            self.bridge_h = ModuleList([Dense(self.decoder_units, activation="tanh", input_dim=self.output_dim,
                                              dtype=dtype) for _ in range(self.num_layers)])
            if cell == "lstm":
                self.bridge_c = ModuleList([Dense(self.decoder_units, input_dim=self.output_dim, dtype=dtype)
                                            for _ in range(self.num_layers)])
        object.__setattr__(self, "built", True)

    def forward(self, src):
        """src (B, S) ids → EncoderOutput(states (B, S, D), final [per layer], mask (B, S))."""
        ids = ids_array(src, self.embedding.embeddings.data, "Encoder")
        if ids.ndim != 2:
            raise ValueError(f"Encoder: src must be (B, S) token ids, got shape {tuple(ids.shape)}")
        mask = ids != self.pad_id                                   # (B, S), on the data's device
        x = self.embedding(ids)                                     # (B, S, E)
        final = []
        for i, layer in enumerate(self.layers):
            if i > 0 and self.dropout:
                x = F.dropout(x, self.dropout, training=self.training)
            x, *st = layer(x, mask=mask)                            # x (B, S, D); states of the layer
            final.append(self._final(i, st))
        return EncoderOutput(x, final, mask)

    def _final(self, i, st):
        """The layer's final state(s), bridged: GRU h; LSTM (h, c)."""
        lstm = self.cell == "lstm"
        if self.bidirectional:      # st = [h_f, (c_f,) h_b, (c_b)]
            half = len(st) // 2
            f, b = st[:half], st[half:]
            st = [F.concat([u, v], axis=-1) for u, v in zip(f, b)]
        if self.bridged:
            h = self.bridge_h[i](st[0])
            return (h, self.bridge_c[i](st[1])) if lstm else h
        return (st[0], st[1]) if lstm else st[0]
