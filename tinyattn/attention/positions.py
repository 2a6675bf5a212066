"""Position information for attention, which by itself is permutation-equivariant.

Absolute positions (added to the token embeddings before the first layer):

    sinusoidal_positions / SinusoidalPositionalEncoding    P[t, 2i] = sin(t / 10000^{2i/d}),
                                                          P[t, 2i+1] = cos(t / 10000^{2i/d})
                                                          (Vaswani et al. 2017; d2l §11.6)
    LearnedPositionalEmbedding                            P = a learned (max_len, d) table (BERT, GPT-2)

Relative positions (inside every attention layer):

    apply_rotary / RotaryEmbedding     RoPE (Su et al. 2021): rotate q and k by position-dependent
                                       angles so that q_mᵀ k_n depends on m − n only
    alibi_bias                         ALiBi (Press et al. 2021): score bias −m_h · (i − j)
    T5RelativePositionBias             T5 (Raffel et al. 2020): a learned per-head bias per bucket of
                                       the key − query offset (log-spaced buckets beyond max_exact)

The biases have shape (H, Tq, Tk) (or (1, H, Tq, Tk)) and go to ``scaled_dot_product_attention(...,
bias=)`` or ``MultiHeadAttention(..., bias=)``; a ``RotaryEmbedding`` goes to
``MultiHeadAttention(..., rotary=)``. Shapes: B batch, H heads, T positions, d features.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import concat, dropout as _dropout, embedding
from ..nn import Module, Parameter, init

__all__ = ["sinusoidal_positions", "SinusoidalPositionalEncoding", "LearnedPositionalEmbedding",
           "rotary_angles", "apply_rotary", "RotaryEmbedding", "alibi_slopes", "alibi_bias",
           "t5_relative_position_bucket", "T5RelativePositionBias"]


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _dtype(dtype):
    return np.dtype("float32" if dtype is None else dtype)


# ------------------------------------------------------------------------------------------------
# absolute positions
# ------------------------------------------------------------------------------------------------
def sinusoidal_positions(T, d, offset=0, base=10000.0, xp=None, dtype="float32"):
    """The sinusoidal table P (T, d) of Vaswani et al. (2017), rows offset .. offset+T−1:

        P[t, 2i]   = sin(t · ω_i),   P[t, 2i+1] = cos(t · ω_i),   ω_i = base^{−2i/d}

    Each pair of columns is a rotation at frequency ω_i, so P[t + k] is a linear function of P[t].
    An odd d keeps the first d columns of the table for d + 1. An array (not a Tensor).
    """
    if T < 0 or d <= 0:
        raise ValueError(f"sinusoidal_positions: need T ≥ 0 and d > 0, got T={T}, d={d}")
    xp = xp or backend.default_xp()
    t = xp.arange(offset, offset + T, dtype=np.float64)[:, None]                 # (T, 1)
    omega = base ** (-xp.arange(0, d, 2, dtype=np.float64) / d)                  # (⌈d/2⌉,)
    P = xp.empty((T, 2 * omega.shape[0]), dtype=np.float64)
    P[:, 0::2] = xp.sin(t * omega)
    P[:, 1::2] = xp.cos(t * omega)
    return P[:, :d].astype(dtype)


class SinusoidalPositionalEncoding(Module):
    """d2l's ``PositionalEncoding``: y = dropout(x + P[offset : offset+T]).

    x (B, T, d) → y (B, T, d); P from :func:`sinusoidal_positions` (no weights). ``offset`` is the
    position of x's first step (for incremental decoding). Dropout acts in training only.
    """

    def __init__(self, d_model, dropout=0.0, max_len=None, base=10000.0, dtype="float32"):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"SinusoidalPositionalEncoding: dropout must be in [0, 1), got {dropout}")
        self.d_model, self.rate, self.max_len, self.base = int(d_model), float(dropout), max_len, float(base)
        self.dtype = np.dtype(dtype)
        object.__setattr__(self, "built", True)

    def forward(self, x, offset=0, training=None):
        x = _t(x)
        if x.ndim < 2 or x.shape[-1] != self.d_model:
            raise ValueError(f"SinusoidalPositionalEncoding: expected (…, T, {self.d_model}), got {x.shape}")
        T = x.shape[-2]
        if self.max_len is not None and offset + T > self.max_len:
            raise ValueError(f"SinusoidalPositionalEncoding: positions up to {offset + T} exceed max_len "
                             f"{self.max_len}")
        xp = backend.get_array_module(x.data)
        y = x + sinusoidal_positions(T, self.d_model, offset, self.base, xp, x.dtype)
        training = self.training if training is None else training
        return _dropout(y, self.rate, training=bool(training)) if self.rate > 0 else y


class LearnedPositionalEmbedding(Module):
    """Learned absolute positions (BERT / GPT-2): y = x + E[offset : offset+T].

    Weight ``embeddings`` (max_len, d), glorot-uniform (as Keras-hub's PositionEmbedding). x (B, T, d) → y (B, T, d). With ``add=False`` returns only the
    slice E[offset : offset+T] (T, d).
    """

    def __init__(self, max_len, d_model, initializer="glorot_uniform", dtype="float32"):
        super().__init__()
        self.max_len, self.d_model = int(max_len), int(d_model)
        self.dtype = np.dtype(dtype)
        self.embeddings = Parameter(init.get(initializer)((self.max_len, self.d_model), dtype=self.dtype),
                                    name="embeddings")
        object.__setattr__(self, "built", True)

    def forward(self, x, offset=0, add=True):
        x = _t(x)
        T = x.shape[-2]
        if offset + T > self.max_len:
            raise ValueError(f"LearnedPositionalEmbedding: positions {offset}..{offset + T - 1} exceed "
                             f"max_len {self.max_len}; build it with a larger max_len")
        if x.shape[-1] != self.d_model:
            raise ValueError(f"LearnedPositionalEmbedding: expected (…, T, {self.d_model}), got {x.shape}")
        e = self.embeddings[offset:offset + T]
        return x + e if add else e


# ------------------------------------------------------------------------------------------------
# rotary embeddings (RoPE)
# ------------------------------------------------------------------------------------------------
def rotary_angles(positions, d, base=10000.0, xp=None):
    """cos, sin tables (T, d) of RoPE in the half-split layout: for i < d/2,

        θ_i = base^{−2i/d},   angle[t, i] = angle[t, i + d/2] = p_t · θ_i.
    """
    if d % 2:
        raise ValueError(f"rotary: the rotated feature size must be even, got {d}")
    xp = xp or backend.default_xp()
    p = xp.asarray(positions, dtype=np.float64).reshape(-1, 1)                   # (T, 1)
    theta = base ** (-xp.arange(0, d, 2, dtype=np.float64) / d)                  # (d/2,)
    ang = p * theta
    ang = xp.concatenate([ang, ang], axis=1)                                     # (T, d)
    return xp.cos(ang), xp.sin(ang)


def _rotate_half(x):
    """[x₁, x₂] → [−x₂, x₁] on the last axis (halves of size d/2)."""
    h = x.shape[-1] // 2
    return concat([-x[..., h:], x[..., :h]], axis=-1)


def apply_rotary(x, positions=None, base=10000.0):
    """Rotary position embedding (RoPE, Su et al. 2021), half-split ("rotate_half") convention of
    GPT-NeoX / Hugging Face Llama: the feature pairs are (x_i, x_{i+d/2}), i < d/2, not the
    interleaved (x_{2i}, x_{2i+1}) of the paper / GPT-J. With x = [x₁, x₂] (each (…, T, d/2)):

        RoPE(x)_t = x_t ⊙ cos(p_t θ) + rotate_half(x_t) ⊙ sin(p_t θ),   rotate_half([x₁, x₂]) = [−x₂, x₁]

    i.e. each pair is rotated by the angle p_t θ_i, θ_i = base^{−2i/d}. Since rotations compose,
    RoPE(q)_mᵀ RoPE(k)_n = qᵀ R(θ (n − m)) k depends on the positions only through n − m.

    x (…, T, d) Tensor, d even; positions: T integers (default 0..T−1) → (…, T, d). Differentiable
    (the angles are constants on x's device).
    """
    x = _t(x)
    T, d = x.shape[-2], x.shape[-1]
    xp = backend.get_array_module(x.data)
    if isinstance(positions, Tensor):
        positions = positions.data
    positions = xp.arange(T) if positions is None else xp.asarray(positions)      # onto x's device
    if positions.shape != (T,):
        raise ValueError(f"apply_rotary: positions must have shape (T,) = ({T},), got {tuple(positions.shape)}")
    cos, sin = rotary_angles(positions, d, base, xp)
    return x * cos.astype(x.dtype) + _rotate_half(x) * sin.astype(x.dtype)


class RotaryEmbedding(Module):
    """RoPE as a module (no weights): ``rope(x, offset=0)`` = :func:`apply_rotary` at positions
    offset .. offset+T−1 (half-split convention). x (…, T, dim) → same shape. Pass it as
    ``MultiHeadAttention(...)(q, v, rotary=RotaryEmbedding(key_dim))``; ``dim`` may be smaller than
    x's last axis (partial rotary: only the first ``dim`` features rotate).
    """

    def __init__(self, dim, base=10000.0):
        super().__init__()
        if dim % 2 or dim <= 0:
            raise ValueError(f"RotaryEmbedding: dim must be a positive even integer, got {dim}")
        self.dim, self.base = int(dim), float(base)
        object.__setattr__(self, "built", True)

    def forward(self, x, offset=0, positions=None):
        x = _t(x)
        T = x.shape[-2]
        if x.shape[-1] < self.dim:
            raise ValueError(f"RotaryEmbedding: dim {self.dim} exceeds the input's feature size {x.shape}")
        if positions is None:
            positions = backend.get_array_module(x.data).arange(offset, offset + T)
        if x.shape[-1] == self.dim:
            return apply_rotary(x, positions, self.base)
        return concat([apply_rotary(x[..., :self.dim], positions, self.base), x[..., self.dim:]], axis=-1)


# ------------------------------------------------------------------------------------------------
# ALiBi
# ------------------------------------------------------------------------------------------------
def alibi_slopes(num_heads):
    """ALiBi's head slopes m_h (Press et al. 2021), a geometric sequence:

        n a power of 2:  m_h = 2^{−8h/n},  h = 1..n      (n = 8: 1/2, 1/4, …, 1/256)
        otherwise:       the n' = 2^⌊log₂ n⌋ slopes for n', then every other slope of the 2n'
                         schedule (2^{−8h/(2n')}, h = 1, 3, 5, …) for the n − n' remaining heads.

    Returns a float64 NumPy array (num_heads,).
    """
    if not isinstance(num_heads, (int, np.integer)) or num_heads <= 0:
        raise ValueError(f"alibi_slopes: num_heads must be a positive integer, got {num_heads!r}")

    def pow2(n):
        return [2.0 ** (-8.0 * h / n) for h in range(1, n + 1)]

    n2 = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = pow2(n2)
    if n2 < num_heads:
        slopes += pow2(2 * n2)[0::2][:num_heads - n2]
    return np.array(slopes, dtype=np.float64)


def alibi_bias(num_heads, Tq, Tk=None, offset=None, symmetric=False, xp=None, dtype="float32"):
    """ALiBi bias (H, Tq, Tk): b[h, i, j] = −m_h · (i + offset − j)  (−m_h · |i + offset − j| if
    ``symmetric``, for non-causal use).

    Query i sits at absolute position i + offset (default offset = Tk − Tq: the queries are the last
    Tq positions, as in incremental decoding). Future keys (j > i + offset) get a positive bias: use
    it with a causal mask. Add to the scores: ``scaled_dot_product_attention(q, k, v, causal=True,
    bias=alibi_bias(H, T, T))`` with q, k, v (B, H, T, d). An array, not a Tensor.
    """
    Tk = Tq if Tk is None else Tk
    offset = Tk - Tq if offset is None else offset
    xp = xp or backend.default_xp()
    m = xp.asarray(alibi_slopes(num_heads))[:, None, None]                       # (H, 1, 1)
    dist = (xp.arange(Tq)[:, None] + offset) - xp.arange(Tk)[None, :]            # (Tq, Tk)
    dist = xp.abs(dist) if symmetric else dist
    return (-m * dist.astype(np.float64)).astype(dtype)


# ------------------------------------------------------------------------------------------------
# T5 relative position buckets
# ------------------------------------------------------------------------------------------------
def t5_relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
    """T5's bucket of each relative position r = key − query (integer array → integer array).

    Let n = −r (how far back the key is). Bidirectional: half the buckets are for keys after the
    query (n < 0, offset by num_buckets/2), and n ← |n|; causal (unidirectional): n ← max(n, 0) and
    all buckets are for the past. With N buckets per side and max_exact = N/2:

        n < max_exact:   bucket = n                                    (one bucket per offset)
        otherwise:       bucket = min(max_exact + ⌊log(n/max_exact) / log(max_distance/max_exact)
                                                   · (N − max_exact)⌋, N − 1)      (log-spaced)
    """
    xp = backend.get_array_module(relative_position)
    r = xp.asarray(relative_position).astype(np.int64)
    n = -r
    out = xp.zeros(r.shape, dtype=np.int64)
    N = num_buckets
    if bidirectional:
        N = num_buckets // 2
        out = out + (n < 0).astype(np.int64) * N
        n = xp.abs(n)
    else:
        n = xp.maximum(n, 0)
    max_exact = N // 2
    small = n < max_exact
    nf = xp.maximum(n, 1).astype(np.float64)        # the log is only used where n ≥ max_exact ≥ 1
    large = max_exact + (xp.log(nf / max_exact) / math.log(max_distance / max_exact)
                         * (N - max_exact)).astype(np.int64)
    large = xp.minimum(large, N - 1)
    return out + xp.where(small, n, large)


class T5RelativePositionBias(Module):
    """T5's learned relative position bias (Raffel et al. 2020): one scalar per (bucket, head),

        b[h, i, j] = E[bucket(j − (i + offset)), h]          → (1, H, Tq, Tk)

    with the buckets of :func:`t5_relative_position_bucket` (bidirectional for an encoder, causal
    for a decoder). Weight ``embeddings`` (num_buckets, num_heads) (HF's ``relative_attention_bias``).
    ``bias = t5(Tq, Tk)`` goes to ``MultiHeadAttention(..., bias=bias)``; the table gets gradients.
    offset (default Tk − Tq) is the first query's absolute position.
    """

    def __init__(self, num_heads, bidirectional=True, num_buckets=32, max_distance=128,
                 initializer="glorot_uniform", dtype="float32"):
        super().__init__()
        self.num_heads, self.bidirectional = int(num_heads), bool(bidirectional)
        self.num_buckets, self.max_distance = int(num_buckets), int(max_distance)
        self.dtype = np.dtype(dtype)
        self.embeddings = Parameter(init.get(initializer)((self.num_buckets, self.num_heads), dtype=self.dtype),
                                    name="embeddings")
        object.__setattr__(self, "built", True)

    def buckets(self, Tq, Tk=None, offset=None):
        """(Tq, Tk) integer buckets of the offsets key − query, on the weights' device."""
        Tk = Tq if Tk is None else Tk
        offset = Tk - Tq if offset is None else offset
        xp = backend.get_array_module(self.embeddings.data)
        rel = xp.arange(Tk)[None, :] - (xp.arange(Tq)[:, None] + offset)
        return t5_relative_position_bucket(rel, self.bidirectional, self.num_buckets, self.max_distance)

    def forward(self, Tq, Tk=None, offset=None):
        e = embedding(self.buckets(Tq, Tk, offset), self.embeddings)                  # (Tq, Tk, H)
        return e.transpose(2, 0, 1).expand_dims(0)                                    # (1, H, Tq, Tk)

    def __call__(self, Tq, Tk=None, offset=None):
        return self.forward(Tq, Tk, offset)
