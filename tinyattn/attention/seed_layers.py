"""The seed tutorials' attention layers, re-derived on tinyattn's engine.

| layer                | from                                   | what it attends with                        |
|----------------------|----------------------------------------|---------------------------------------------|
| ``BahdanauAttention`` | d2l (seed 003)                        | vᵀ tanh(q W_q + k W_k), masked by valid_lens |
| ``LuongAttention``    | Luong et al. 2015 (seeds 000, 001)    | q·k, q W kᵀ, or vᵀ tanh([q; k] W)            |
| ``ManyToOneAttention``| philipperemy keras-attention v5 (001) | the last hidden state h_t against every h_s  |
| ``TimeStepAttention`` | ``attention_3d_block`` (seed 004)     | a Dense(T, softmax) across the time axis     |
| ``CosineAttention``   | seed 001's cosine score                | cos(q, k) / τ                                |
| ``SelfAttention``     | seed 001's "self attention"            | multi-head attention with q = k = v = x      |

Conventions shared by every layer here:

* call order is d2l's ``(queries, keys, values)`` (values default to the keys); masks are boolean with **True = attend**, and may be
  (B, Tk) (one mask per batch row, shared by every query) or anything that broadcasts to the scores
  (B, Tq, Tk); d2l's ``valid_lens`` ((B,) or (B, Tq) integers) are accepted where the tutorial had them;
* ``return_attention_scores=True`` returns ``(output, weights)``; the weights of the last call are kept,
  detached, in ``layer.last_attention`` (a Tensor) for plotting (``tinyattn.viz.plot_attention``);
* parameters are created on the first call (or at construction when the sizes are given), with
  Keras's default initializer (glorot_uniform; zeros for biases), in the layer's ``dtype``;
  ``get_weights()`` lists them in the order each docstring states.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import clip, concat, dropout, softmax, tanh, broadcast_to
from ..nn import Module, Parameter, init
from .masking import masked_softmax
from .layers import MultiHeadAttention
from . import scores as S

__all__ = ["BahdanauAttention", "LuongAttention", "ManyToOneAttention", "TimeStepAttention",
           "CosineAttention", "SelfAttention"]


# -- helpers ----------------------------------------------------------------------------------------
def _tensor(x, like=None):
    if isinstance(x, Tensor):
        return x
    if like is not None:
        xp = backend.get_array_module(like.data)
        return Tensor(xp.asarray(x, dtype=like.dtype))
    return Tensor(np.asarray(x))


def _check_rank(layer, name, x, rank=3):
    if x.ndim != rank:
        raise ValueError(f"{layer}: {name} must be {rank}-D, got shape {x.shape}")


def _check_qkv(layer, q, k, v):
    for name, t in (("queries", q), ("keys", k), ("values", v)):
        _check_rank(layer, name, t)
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(f"{layer}: batch sizes differ: queries {q.shape}, keys {k.shape}, values {v.shape}")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"{layer}: keys {k.shape} and values {v.shape} must have the same number of "
                         f"steps (axis 1)")


def _key_mask(layer, mask, scores):
    """A (B, Tk) mask becomes (B, 1, Tk); anything else must broadcast to the scores (B, Tq, Tk).
    The mask is moved to the scores' device (NumPy or CuPy)."""
    if mask is None:
        return None
    scores_shape = scores.shape
    m = mask.data if isinstance(mask, Tensor) else mask
    m = backend.to_device(np.asarray(m) if not hasattr(m, "shape") else m, backend.device_of(scores.data))
    if m.ndim == 2:
        m = m[:, None, :]
    try:
        np.broadcast_shapes(tuple(m.shape), tuple(scores_shape))
    except ValueError:
        raise ValueError(f"{layer}: mask of shape {tuple(np.shape(mask))} does not fit scores of shape "
                         f"{tuple(scores_shape)} (give (B, Tk) or something broadcastable to (B, Tq, Tk))"
                         ) from None
    return m


def _attend(layer, scores, values, mask=None, valid_lens=None, rate=0.0):
    """weights = masked_softmax(scores); out = dropout(weights) @ values; keep weights for plotting."""
    weights = masked_softmax(scores, _key_mask(type(layer).__name__, mask, scores),
                             valid_lens=valid_lens)
    object.__setattr__(layer, "last_attention", weights.detach())
    out = dropout(weights, rate, layer.training) @ values
    return out, weights


class _QKVLayer(Module):
    """Builds from the shapes of queries, keys and values together (``build([q, k, v] shapes)``)."""
    last_attention = None

    def __call__(self, queries, keys, values=None, *args, **kwargs):
        queries = _tensor(queries)
        keys = _tensor(keys, queries)
        values = keys if values is None else _tensor(values, queries)
        if not self.built:
            _check_qkv(type(self).__name__, queries, keys, values)
            self.build([queries.shape, keys.shape, values.shape])
            object.__setattr__(self, "built", True)
        return self.forward(queries, keys, values, *args, **kwargs)


# -- d2l's additive attention ------------------------------------------------------------------------
class BahdanauAttention(_QKVLayer):
    """Additive (Bahdanau) attention as in d2l: an MLP with one tanh hidden layer scores each pair.

        e_ij  = w_vᵀ tanh(q_i W_q + k_j W_k)             scores (B, Tq, Tk)
        α_ij  = masked_softmax_j(e_ij)                  keys j ≥ valid_len (or mask False) get 0
        out_i = Σ_j dropout(α)_ij v_j                   (B, Tq, dv)

    Shapes: queries (B, Tq, dq), keys (B, Tk, dk), values (B, Tk, dv); valid_lens (B,) or (B, Tq);
    mask (B, Tk) or broadcastable to (B, Tq, Tk), True = attend.
    Weights (``get_weights()`` order): ``W_q (dq, units)``, ``W_k (dk, units)``, ``w_v (units, 1)``; no
    biases. ``dropout`` drops attention weights in training (``last_attention`` is before dropout).
    A query with no valid key (valid_len 0) gets zero weights and a zero output (d2l's −1e6 fill
    gives uniform weights there instead); for every other row the two agree.
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, units, dropout=0.0, query_dim=None, key_dim=None, dtype="float32"):
        super().__init__()
        if units <= 0:
            raise ValueError(f"BahdanauAttention: units must be positive, got {units}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"BahdanauAttention: dropout must be in [0, 1), got {dropout}")
        self.units, self.rate, self.dtype = int(units), float(dropout), np.dtype(dtype)
        if query_dim is not None and key_dim is not None:
            self.build([(None, None, query_dim), (None, None, key_dim)])
            object.__setattr__(self, "built", True)

    def build(self, shapes):
        dq, dk = shapes[0][-1], shapes[1][-1]
        self.W_q = Parameter(init.glorot_uniform((dq, self.units), self.dtype), name="W_q")
        self.W_k = Parameter(init.glorot_uniform((dk, self.units), self.dtype), name="W_k")
        self.w_v = Parameter(init.glorot_uniform((self.units, 1), self.dtype), name="w_v")

    def weights(self):
        return [self.W_q, self.W_k, self.w_v]

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        _check_qkv("BahdanauAttention", queries, keys, values)
        if queries.shape[-1] != self.W_q.shape[0] or keys.shape[-1] != self.W_k.shape[0]:
            raise ValueError(f"BahdanauAttention: built for query dim {self.W_q.shape[0]} and key dim "
                             f"{self.W_k.shape[0]}, got queries {queries.shape}, keys {keys.shape}")
        scores = S.additive_score(queries, keys, self.W_q, self.W_k,
                                  self.w_v.reshape(self.units))
        out, weights = _attend(self, scores, values, mask, valid_lens, self.rate)
        return (out, weights) if return_attention_scores else out


# -- Luong's three scores ----------------------------------------------------------------------------
class LuongAttention(_QKVLayer):
    """Luong's global attention with one of his three score functions:

        dot:     e_ij = q_i · k_j                        (needs dq == dk; no weights)
        general: e_ij = q_i W k_jᵀ                       W (dq, dk)
        concat:  e_ij = vᵀ tanh([q_i; k_j] W)            W (dq + dk, units), v (units, 1)
        α = masked_softmax_j(e);  out_i = Σ_j α_ij v_j

    Shapes: queries (B, Tq, dq), keys (B, Tk, dk), values (B, Tk, dv) -> (B, Tq, dv); weights
    (B, Tq, Tk). Weights (``get_weights()`` order): [] (dot), [W] (general), [W, v] (concat).
    ``units`` only applies to concat (default dk). No biases.
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, score="dot", units=None, dtype="float32"):
        super().__init__()
        if score not in ("dot", "general", "concat"):
            raise ValueError(f"LuongAttention: score must be 'dot', 'general' or 'concat', got {score!r}")
        if units is not None and score != "concat":
            raise ValueError(f"LuongAttention: units only applies to score='concat' (got score={score!r})")
        self.score, self.units, self.dtype = score, units, np.dtype(dtype)

    def build(self, shapes):
        dq, dk = shapes[0][-1], shapes[1][-1]
        if self.score == "dot" and dq != dk:
            raise ValueError(f"LuongAttention(score='dot'): queries and keys need the same last size, "
                             f"got {shapes[0]} and {shapes[1]}; use score='general'")
        if self.score == "general":
            self.W = Parameter(init.glorot_uniform((dq, dk), self.dtype), name="W")
        elif self.score == "concat":
            units = dk if self.units is None else int(self.units)
            self.W = Parameter(init.glorot_uniform((dq + dk, units), self.dtype), name="W")
            self.v = Parameter(init.glorot_uniform((units, 1), self.dtype), name="v")

    def weights(self):
        if self.score == "dot":
            return []
        return [self.W] if self.score == "general" else [self.W, self.v]

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        _check_qkv("LuongAttention", queries, keys, values)
        if self.score == "dot":
            if queries.shape[-1] != keys.shape[-1]:
                raise ValueError(f"LuongAttention(score='dot'): queries {queries.shape} and keys "
                                 f"{keys.shape} need the same last size")
            scores = S.dot_score(queries, keys)
        elif self.score == "general":
            if (queries.shape[-1], keys.shape[-1]) != self.W.shape:
                raise ValueError(f"LuongAttention: W is {self.W.shape}, got queries {queries.shape} "
                                 f"and keys {keys.shape}")
            scores = S.general_score(queries, keys, self.W)
        else:
            if queries.shape[-1] + keys.shape[-1] != self.W.shape[0]:
                raise ValueError(f"LuongAttention: W is {self.W.shape} (dq + dk rows), got queries "
                                 f"{queries.shape} and keys {keys.shape}")
            scores = S.concat_score(queries, keys, self.W, self.v.reshape(self.v.shape[0]))
        out, weights = _attend(self, scores, values, mask, valid_lens)
        return (out, weights) if return_attention_scores else out


# -- philipperemy's many-to-one attention --------------------------------------------------------------
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
    Weights (``get_weights()`` order): luong: ``luong_w (d, d)``, ``attention_vector (2d, units)``;
    bahdanau: ``w1 (d, d)``, ``w2 (d, d)``, ``v (d, 1)``, ``attention_vector (2d, units)``.
    """
    last_attention = None

    def __init__(self, units=128, score="luong", input_dim=None, dtype="float32"):
        super().__init__()
        if score not in ("luong", "bahdanau"):
            raise ValueError(f"ManyToOneAttention: score must be 'luong' or 'bahdanau', got {score!r}")
        self.units, self.score, self.dtype = int(units), score, np.dtype(dtype)
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
            self.w1 = Parameter(g((d, d), self.dtype), name="w1")
            self.w2 = Parameter(g((d, d), self.dtype), name="w2")
            self.v = Parameter(g((d, 1), self.dtype), name="v")
        self.attention_vector = Parameter(g((2 * d, self.units), self.dtype), name="attention_vector")

    def weights(self):
        if self.score == "luong":
            return [self.luong_w, self.attention_vector]
        return [self.w1, self.w2, self.v, self.attention_vector]

    def forward(self, hidden_states, return_attention_scores=False):
        h = _tensor(hidden_states)
        _check_rank("ManyToOneAttention", "hidden states", h)
        d = self.attention_vector.shape[0] // 2
        if h.shape[-1] != d:
            raise ValueError(f"ManyToOneAttention: built for d = {d}, got hidden states {h.shape}")
        b, t = h.shape[0], h.shape[1]
        h_t = h[:, t - 1:t, :]                                             # (B, 1, d)
        if self.score == "luong":
            # e_s = h_t · (h_s W) = h_t Wᵀ h_sᵀ: Luong's general score with the matrix Wᵀ
            scores = S.general_score(h_t, h, self.luong_w.T)              # (B, 1, T)
        else:
            scores = S.additive_score(h_t, h, self.w1, self.w2, self.v.reshape(d))  # (B, 1, T)
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
        x = _tensor(x)
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


# -- cosine -------------------------------------------------------------------------------------------
class CosineAttention(_QKVLayer):
    """Attention scored by cosine similarity with a temperature τ:

        e_ij = cos(q_i, k_j) / τ = q_i·k_j / (‖q_i‖ ‖k_j‖ τ);  α = masked_softmax_j(e);  out = α v

    Shapes: queries (B, Tq, d), keys (B, Tk, d), values (B, Tk, dv) -> (B, Tq, dv); weights
    (B, Tq, Tk). Cosines lie in [−1, 1], so a small τ is what lets the weights get sharp; with
    ``learnable_tau=True``, τ is a trainable scalar weight ``tau`` (shape ()), the only entry of
    ``get_weights()`` (else there are none).
    Call: ``layer(queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False)``.
    """

    def __init__(self, tau=1.0, learnable_tau=False, dtype="float32"):
        super().__init__()
        if not tau > 0:
            raise ValueError(f"CosineAttention: tau must be positive, got {tau}")
        self.tau0, self.learnable_tau, self.dtype = float(tau), bool(learnable_tau), np.dtype(dtype)
        if self.learnable_tau:
            xp = backend.default_xp()
            self.tau = Parameter(xp.asarray(self.tau0, dtype=self.dtype), name="tau")
            object.__setattr__(self, "built", True)

    def weights(self):
        return [self.tau] if self.learnable_tau else []

    def forward(self, queries, keys, values, valid_lens=None, mask=None, return_attention_scores=False):
        _check_qkv("CosineAttention", queries, keys, values)
        if queries.shape[-1] != keys.shape[-1]:
            raise ValueError(f"CosineAttention: queries {queries.shape} and keys {keys.shape} need the "
                             f"same last size")
        tau = clip(self.tau, 1e-3, None) if self.learnable_tau else self.tau0   # τ stays positive
        scores = S.cosine_score(queries, keys, 1.0 / tau)          # cosine_score multiplies by its τ
        out, weights = _attend(self, scores, values, mask, valid_lens)
        return (out, weights) if return_attention_scores else out


# -- self-attention -----------------------------------------------------------------------------------
class SelfAttention(Module):
    """Self-attention: multi-head attention of a sequence with itself (query = key = value = x).

        out = MultiHeadAttention(num_heads, key_dim)(x, x, x)         (causal: query i sees keys ≤ i)

    Input x (B, T, d); output (B, T, d) (Keras's default output size); attention weights (B, H, T, T).
    ``mask`` (B, T) marks real (True) vs padded steps; it masks both keys and queries, as a Keras
    mask carried by x would (a padded query attends to nothing: zero weights, output = the output bias).
    Weights: those of the wrapped ``MultiHeadAttention`` (``self.mha``), in Keras's order:
    query/kernel (d, H, key_dim), query/bias, key/kernel, key/bias, value/kernel, value/bias,
    attention_output/kernel (H, key_dim, d), attention_output/bias (d,).
    """
    last_attention = None

    def __init__(self, num_heads, key_dim, causal=False, **mha_kwargs):
        super().__init__()
        self.causal = bool(causal)
        self.mha = MultiHeadAttention(num_heads, key_dim, **mha_kwargs)

    def weights(self):
        return self.mha.weights()

    def forward(self, x, mask=None, return_attention_scores=False):
        x = _tensor(x)
        _check_rank("SelfAttention", "input", x)
        if mask is not None:
            m = mask.data if isinstance(mask, Tensor) else np.asarray(mask)
            if tuple(m.shape) != x.shape[:2]:
                raise ValueError(f"SelfAttention: mask must be (B, T) = {x.shape[:2]}, got {tuple(m.shape)}")
            mask = backend.get_array_module(x.data).asarray(m, dtype=bool)
        out, weights = self.mha(x, x, x, query_mask=mask, value_mask=mask, use_causal_mask=self.causal,
                                return_attention_scores=True)
        object.__setattr__(self, "last_attention", weights.detach())
        return (out, weights) if return_attention_scores else out
