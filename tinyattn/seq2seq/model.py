"""``Seq2Seq``: an encoder and an attention decoder trained by teacher forcing.

    src (B, S) ──encoder──▶ memory ──decoder(tgt_in)──▶ logits (B, T, V)
    tgt_in  = BOS y₁ … y_{T−1}   (the target shifted right: what the decoder reads)
    tgt_out = y₁ … y_{T−1} EOS   (what it must predict), both padded with pad_id

The loss is the masked sequence cross-entropy, optionally label-smoothed (Szegedy et al. 2016):

    q_k  = (1 − ε)·[k = y] + ε / V                  smoothed target distribution over V tokens
    ℓ_bt = −Σ_k q_k log softmax(z_bt)_k             = (1 − ε)(−log p_y) + ε · mean_k(−log p_k)
    loss = Σ_{b,t} m_bt ℓ_bt / Σ_{b,t} m_bt,         m_bt = [tgt_out_bt ≠ pad_id]

so padding contributes neither to the loss nor to its gradient.
"""
import numpy as np

from .. import backend
from .. import functions as F
from ..autograd import Tensor, array_of
from ..nn import Module
from .encoder import Encoder, EncoderOutput, ids_array
from .base import BaseDecoder

__all__ = ["Seq2Seq", "sequence_cross_entropy"]


def sequence_cross_entropy(logits, targets, pad_id=0, label_smoothing=0.0):
    """Masked (label-smoothed) cross-entropy of logits (B, T, V) against integer targets (B, T);
    positions where targets == pad_id are ignored. Returns a scalar Tensor (the mean over real tokens;
    0 when there are none)."""
    if not isinstance(logits, Tensor):
        logits = Tensor(logits)
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"sequence_cross_entropy: label_smoothing must be in [0, 1), got {label_smoothing}")
    y = ids_array(targets, logits.data, "sequence_cross_entropy", "targets")
    if y.ndim == logits.ndim and y.shape[-1] == 1:
        y = y.reshape(y.shape[:-1])
    if tuple(y.shape) != logits.shape[:-1]:
        raise ValueError(f"sequence_cross_entropy: targets {tuple(y.shape)} need logits of shape "
                         f"{tuple(y.shape)} + (V,), got {logits.shape}")
    V = logits.shape[-1]
    xp = backend.get_array_module(logits.data)
    if y.size and (int(y.min()) < 0 or int(y.max()) >= V):
        raise IndexError(f"sequence_cross_entropy: targets must lie in [0, {V}), got [{int(y.min())}, {int(y.max())}]")
    logp = F.log_softmax(logits, axis=-1).reshape(-1, V)                  # (N, V)
    flat = y.reshape(-1)
    nll = -logp[xp.arange(flat.shape[0]), flat]                           # (N,)
    if label_smoothing:
        nll = nll * (1.0 - label_smoothing) - logp.mean(axis=-1) * label_smoothing
    m = (flat != pad_id).astype(logits.dtype)                             # (N,) on the data's device
    return (nll * m).sum() / max(float(m.sum()), 1.0)


class Seq2Seq(Module):
    """Encoder–decoder with attention.

    Seq2Seq(encoder, decoder, pad_id=0, bos_id=1, eos_id=2, label_smoothing=0.0)

    * ``model(src, tgt_in)`` → logits (B, T, V); the attention weights of every step are kept in
      ``model.last_attention`` (B, T, S) (a constant Tensor).
    * ``model.loss(src, tgt_in, tgt_out)`` → scalar: :func:`sequence_cross_entropy` (module docstring).
    * ``model.loss_fn(tgt_out, logits)`` is the same loss in ``fit``'s (y_true, y_pred) order:
      ``fit(model, model.loss_fn, opt, (src, tgt_in), tgt_out, ...)``.
    * ``model.encode(src)`` → EncoderOutput; decoding: ``tinyattn.seq2seq.greedy_decode`` /
      ``beam_search`` / ``sample``.
    """

    def __init__(self, encoder, decoder, pad_id=0, bos_id=1, eos_id=2, label_smoothing=0.0):
        super().__init__()
        if not isinstance(decoder, BaseDecoder):
            raise TypeError(f"Seq2Seq: decoder must be a tinyattn.seq2seq decoder, got {type(decoder).__name__}")
        out_dim = getattr(encoder, "output_dim", None)
        if out_dim is not None and out_dim != decoder.memory_dim:
            raise ValueError(f"Seq2Seq: the encoder's states have size {out_dim} but the decoder expects "
                             f"memory_dim={decoder.memory_dim}; build the decoder with memory_dim={out_dim}")
        if isinstance(encoder, Encoder) and encoder.pad_id != pad_id:
            raise ValueError(f"Seq2Seq: pad_id={pad_id} but the encoder masks pad_id={encoder.pad_id}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"Seq2Seq: label_smoothing must be in [0, 1), got {label_smoothing}")
        self.encoder, self.decoder = encoder, decoder
        self.pad_id, self.bos_id, self.eos_id = int(pad_id), int(bos_id), int(eos_id)
        self.label_smoothing = float(label_smoothing)
        self.last_attention = None
        self.dtype = getattr(decoder, "dtype", np.dtype("float32"))
        object.__setattr__(self, "built", True)

    def encode(self, src):
        mem = self.encoder(src)
        if not isinstance(mem, EncoderOutput):
            raise TypeError(f"Seq2Seq: the encoder must return an EncoderOutput, got {type(mem).__name__}")
        return mem

    def forward(self, src, tgt_in):
        logits, weights = self.decoder(tgt_in, self.encode(src))
        self.last_attention = Tensor(weights.data)
        return logits

    def loss_fn(self, y_true, y_pred):
        """(tgt_out (B, T) ids, logits (B, T, V)) → the masked, label-smoothed cross-entropy."""
        return sequence_cross_entropy(y_pred, array_of(y_true), self.pad_id, self.label_smoothing)

    def loss(self, src, tgt_in, tgt_out):
        return self.loss_fn(tgt_out, self(src, tgt_in))
