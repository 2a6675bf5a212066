"""Attention pooling: a sequence of states in, one (or a re-weighted) summary out.

    ManyToOneAttention      philipperemy keras-attention v5: the last state h_t queries every h_s
    TimeStepAttention       the ``attention_3d_block``: a Dense(T, softmax) across the time axis
    AttentionPooling        Yang et al. 2016 (one HAN level): a learned context vector u_ctx queries
    HierarchicalAttention   HAN: words -> sentence vectors -> one document vector
"""
import numpy as np

from ..functions import concat, softmax, tanh, broadcast_to
from ..functions.masks import as_mask
from ..nn import Module, Parameter, init, cast_input
from ._base import check_rank as _check_rank, check_positive_int
from .additive import additive_score
from .masks import masked_softmax
from .scores import general_score

__all__ = ["ManyToOneAttention", "TimeStepAttention", "AttentionPooling", "HierarchicalAttention"]


class ManyToOneAttention(Module):
    """Many-to-one attention over RNN states (philipperemy's keras-attention v5 ``Attention``).

    The last state h_t asks which earlier states matter:

        h_t = h_{T−1}                                             (B, d)
        luong:    e_s = h_t · (h_s W)                             W = luong_w (d, d)
        bahdanau: e_s = vᵀ tanh(h_t W1 + h_s W2)                  W1, W2 (d, d), v (d, 1)
        α = softmax_s(e)                                          (B, T)
        c = Σ_s α_s h_s                                           (B, d)
        out = tanh([c; h_t] W_c)                                  W_c = attention_vector (2d, units)

    Input: hidden states (B, T, d); output (B, units); attention weights (B, T). No biases, no mask.
    Weights (``get_weights()`` order = philipperemy's layer's ``get_weights()``, so
    ``ours.set_weights(theirs.get_weights())`` copies across in one line): luong:
    ``[luong_w (d, d), attention_vector (2d, units)]``; bahdanau:
    ``[v (d, 1), w1 (d, d), w2 (d, d), attention_vector (2d, units)]`` (v first: Keras lists nested
    layers' weights in the order the sub-layers were assigned).
    """
    last_attention = None

    def __init__(self, units=128, score="luong", input_dim=None, dtype="float32"):
        super().__init__()
        if score not in ("luong", "bahdanau"):
            raise ValueError(f"ManyToOneAttention: score must be 'luong' or 'bahdanau', got {score!r}")
        self.units = check_positive_int("ManyToOneAttention", "units", units)
        check_positive_int("ManyToOneAttention", "input_dim", input_dim, allow_none=True)
        self.score, self.dtype = score, np.dtype(dtype)
        if input_dim is not None:
            self.build((None, None, input_dim))
            object.__setattr__(self, "built", True)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(f"ManyToOneAttention: input must be (B, T, d), got shape {input_shape}")
        d, g = input_shape[-1], init.glorot_uniform
        if self.score == "luong":
            self.luong_w = Parameter(g((d, d), self.dtype), name="luong_w")
        else:
            self.v = Parameter(g((d, 1), self.dtype), name="v")
            self.w1 = Parameter(g((d, d), self.dtype), name="w1")
            self.w2 = Parameter(g((d, d), self.dtype), name="w2")
        self.attention_vector = Parameter(g((2 * d, self.units), self.dtype), name="attention_vector")

    def weights(self):
        if self.score == "luong":
            return [self.luong_w, self.attention_vector]
        return [self.v, self.w1, self.w2, self.attention_vector]

    def forward(self, hidden_states, return_attention_scores=False):
        h = cast_input(self, hidden_states, "hidden states")
        _check_rank("ManyToOneAttention", "hidden states", h)
        d = self.attention_vector.shape[0] // 2
        if h.shape[-1] != d:
            raise ValueError(f"ManyToOneAttention: built for d = {d}, got hidden states {h.shape}")
        b, t = h.shape[0], h.shape[1]
        h_t = h[:, t - 1:t, :]                                             # (B, 1, d)
        if self.score == "luong":
            # e_s = h_t · (h_s W) = h_t Wᵀ h_sᵀ: Luong's general score with the matrix Wᵀ
            scores = general_score(h_t, h, self.luong_w.T)              # (B, 1, T)
        else:
            scores = additive_score(h_t, h, self.w1, self.w2, self.v.reshape(d))  # (B, 1, T)
        alpha = softmax(scores, axis=-1)                                   # (B, 1, T)
        context = alpha @ h                                                # (B, 1, d)
        pre = concat([context, h_t], axis=-1).reshape(b, 2 * d)            # (B, 2d)
        out = tanh(pre @ self.attention_vector)                            # (B, units)
        weights = alpha.reshape(b, t)
        object.__setattr__(self, "last_attention", weights.detach())
        return (out, weights) if return_attention_scores else out


# -- the attention_3d_block -------------------------------------------------------------------------
class TimeStepAttention(Module):
    """Attention across time steps, feature by feature (the ``attention_3d_block`` of seed 004).

        a   = softmax_over_t(xᵀ K + b)      xᵀ = permute(x) (B, d, T); K (T, T), b (T,) -> (B, d, T)
        (single_attention_vector: a = mean over d, repeated for every feature)
        p   = permute(a)                     (B, T, d): p[b, :, f] sums to 1 over the T steps
        out = x ⊙ p                          (B, T, d)

    For feature f, the weight of step t is computed from that feature's whole sequence x[:, :, f]
    (the Dense layer mixes time steps, which is why the tutorial permutes first).
    Input (B, T, d) with T fixed at build time; output (B, T, d); with ``return_attention_scores=True``
    also p (B, T, d). Weights (``get_weights()`` order): ``kernel (T, T)``, ``bias (T,)``.
    ``attention_per_step()`` gives the mean of the last p over features, (B, T) — the seed's plot.
    """
    last_attention = None

    def __init__(self, single_attention_vector=False, time_steps=None, dtype="float32"):
        super().__init__()
        self.single_attention_vector = bool(single_attention_vector)
        self.dtype = np.dtype(dtype)
        check_positive_int("TimeStepAttention", "time_steps", time_steps, allow_none=True)
        if time_steps is not None:
            self.build((None, time_steps, None))
            object.__setattr__(self, "built", True)

    def build(self, input_shape):
        if input_shape is None or len(input_shape) != 3:
            raise ValueError(f"TimeStepAttention: input must be (B, T, d), got shape {input_shape}")
        t = input_shape[1]
        self.kernel = Parameter(init.glorot_uniform((t, t), self.dtype), name="kernel")
        self.bias = Parameter(init.zeros((t,), self.dtype), name="bias")

    def weights(self):
        return [self.kernel, self.bias]

    def forward(self, x, return_attention_scores=False):
        x = cast_input(self, x)
        _check_rank("TimeStepAttention", "input", x)
        t = self.kernel.shape[0]
        if x.shape[1] != t:
            raise ValueError(f"TimeStepAttention: built for T = {t} time steps, got input {x.shape}")
        a = softmax(x.swapaxes(1, 2) @ self.kernel + self.bias, axis=-1)   # (B, d, T)
        if self.single_attention_vector:
            a = broadcast_to(a.mean(axis=1, keepdims=True), a.shape)      # (B, d, T), rows equal
        p = a.swapaxes(1, 2)                                               # (B, T, d)
        object.__setattr__(self, "last_attention", p.detach())
        out = x * p
        return (out, p) if return_attention_scores else out

    def attention_per_step(self):
        """Mean over features of the last attention probabilities: (B, T), rows sum to 1."""
        if self.last_attention is None:
            raise RuntimeError("TimeStepAttention.attention_per_step: call the layer first")
        return self.last_attention.numpy().mean(axis=-1)


class AttentionPooling(Module):
    """Attention pooling over a sequence (Yang et al. 2016, one level of HAN):

        u_t = tanh(h_t W + b),   α_t = softmax_t(u_t · u_ctx),   s = Σ_t α_t h_t

    h (…, T, d) -> s (…, d); mask (…, T) True = real step. Weights ``kernel (d, units)``,
    ``bias (units,)``, ``context (units,)`` (the learned query u_ctx).
    """

    def __init__(self, units, dtype="float32"):
        super().__init__()
        self.units = check_positive_int("AttentionPooling", "units", units)
        self.dtype = np.dtype(dtype)
        self.last_attention = None

    def build(self, input_shape):
        d = input_shape[-1]
        self.kernel = Parameter(init.glorot_uniform((d, self.units), self.dtype), name="kernel")
        self.bias = Parameter(init.zeros((self.units,), self.dtype), name="bias")
        self.context = Parameter(init.glorot_uniform((self.units, 1), self.dtype).reshape(self.units),
                                 name="context")

    def forward(self, h, mask=None, return_attention_scores=False):
        h = cast_input(self, h)
        if h.ndim < 2 or h.shape[-1] != self.kernel.shape[0]:
            raise ValueError(f"AttentionPooling: expected h (…, T, {self.kernel.shape[0]}), got {h.shape}")
        u = tanh(h @ self.kernel + self.bias)                    # (…, T, units)
        scores = u @ self.context                                # (…, T)
        mask = as_mask(mask, scores, shape=scores.shape, where="AttentionPooling")
        alpha = masked_softmax(scores, mask)                     # (…, T)
        s = (alpha.reshape(alpha.shape + (1,)) * h).sum(axis=-2)  # (…, d)
        self.last_attention = alpha.numpy()
        return (s, alpha) if return_attention_scores else s


class HierarchicalAttention(Module):
    """Two-level attention pooling (HAN): words -> sentence vectors -> one document vector.

    x (B, S, W, d) word features (e.g. BiLSTM outputs) -> word-level ``AttentionPooling`` gives
    sentences (B, S, d) -> sentence-level ``AttentionPooling`` gives the document (B, d).
    ``word_mask`` (B, S, W) and ``sentence_mask`` (B, S) mark real words / sentences (True = keep).
    Word and sentence attention weights are kept in ``word_attention`` / ``sentence_attention``.
    """

    def __init__(self, word_units, sentence_units, dtype="float32"):
        super().__init__()
        self.dtype = np.dtype(dtype)
        self.word = AttentionPooling(word_units, dtype)
        self.sentence = AttentionPooling(sentence_units, dtype)

    def forward(self, x, word_mask=None, sentence_mask=None, return_attention_scores=False):
        x = cast_input(self, x)
        if x.ndim != 4:
            raise ValueError(f"HierarchicalAttention: x must be (B, S, W, d), got {x.shape}")
        sents, a_w = self.word(x, mask=word_mask, return_attention_scores=True)        # (B, S, d)
        doc, a_s = self.sentence(sents, mask=sentence_mask, return_attention_scores=True)  # (B, d)
        self.word_attention, self.sentence_attention = a_w.numpy(), a_s.numpy()
        return (doc, a_w, a_s) if return_attention_scores else doc
