"""CNN + attention: attention pooling over convolution feature maps, and ABCNN (Yin et al. 2016).

    match_score(x, y)         A_ij = 1 / (1 + ‖x_i − y_j‖)                        (B, s0, s1)
    ConvAttentionPooling      Conv1D, then attention pooling over time instead of max pooling
    ABCNN1                    attention feature maps F0 = A W0, F1 = Aᵀ W1 stacked beside the inputs
                              as extra channels BEFORE a shared wide convolution, then w-ap
    ABCNN2                    shared wide convolution, then attention-weighted window pooling AFTER it
                              (row / column sums of A over the conv outputs as weights)
    ABCNN3                    both: ABCNN-1's input maps and ABCNN-2's pooling

Layout: channels-last, as ``tinyattn.nn.Conv1D``: a sentence is (B, s, d) (s words, d features).
The paper's 2-D convolution over a (d × s) map with "d0 channels" whose filters span the whole
feature height is exactly a 1-D convolution over s with the channels concatenated on the feature axis,
which is how the two-channel input of ABCNN-1 (representation + attention map) is fed here.
Wide convolution (the paper's): w − 1 zeros on both sides, so a sentence of s words gives s + w − 1
outputs; ``w-ap`` (window average pooling, width w, stride 1) brings them back to s.
The two sentences share the convolution (Siamese), as in the paper.
"""
import numpy as np

from ..autograd import Tensor
from ..functions import concat, pad, sqrt
from ..functions.masks import as_mask
from ..nn import Module, Parameter, init, cast_input, Conv1D
from ._base import check_positive_int
from .pooling import AttentionPooling

__all__ = ["match_score", "ConvAttentionPooling", "ABCNN1", "ABCNN2", "ABCNN3"]


def match_score(x, y, eps=1e-12):
    """ABCNN's attention matrix, A_ij = 1 / (1 + ‖x_i − y_j‖)  (Yin et al. 2016, eq. 3).

    x (B, s0, d), y (B, s1, d) -> A (B, s0, s1), entries in (0, 1] (1 where x_i = y_j). The distance
    is √(Σ (x_i − y_j)² + eps): eps (default 1e-12) keeps the gradient finite where x_i = y_j.
    The pairwise differences (B, s0, s1, d) are formed by broadcasting.
    """
    x, y = (t if isinstance(t, Tensor) else Tensor(t) for t in (x, y))
    if x.ndim != 3 or y.ndim != 3 or x.shape[0] != y.shape[0] or x.shape[-1] != y.shape[-1]:
        raise ValueError(f"match_score: need x (B, s0, d) and y (B, s1, d) with the same B and d, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    diff = x.expand_dims(2) - y.expand_dims(1)                      # (B, s0, s1, d)
    return 1.0 / (1.0 + sqrt((diff * diff).sum(axis=-1) + eps))


def _wide(x, w):
    """Zero-pad w − 1 steps on both sides of the time axis: (B, s, d) -> (B, s + 2(w − 1), d)."""
    return pad(x, ((0, 0), (w - 1, w - 1), (0, 0))) if w > 1 else x


def _window_pool(c, w, weights=None):
    """Window pooling, width w, stride 1, over (B, s + w − 1, f) -> (B, s, f):
        out_j = Σ_{k=j}^{j+w−1} a_k c_k   (a_k = weights (B, s + w − 1), ABCNN-2)  or the mean (w-ap)."""
    n = c.shape[1] - w + 1
    if weights is not None:
        c = c * weights.expand_dims(-1)
    out = c[:, 0:n]
    for k in range(1, w):
        out = out + c[:, k:k + n]
    return out if weights is not None else out * (1.0 / w)


class ConvAttentionPooling(Module):
    """A Conv1D feature extractor pooled by attention over time (in place of GlobalMaxPooling1D):

        c = act(conv(x))                                  (B, T', filters)   Conv1D (Keras's)
        u_t = tanh(c_t W + b),  α_t = softmax_t(u_t · u_ctx),  s = Σ_t α_t c_t      (B, filters)

    x (B, T, d) -> s (B, filters) [and α (B, T') with ``return_attention_scores``]. ``mask`` (B, T)
    (True = real step) is honoured with ``padding="same"`` (T' = T), where a padded step gets α = 0.
    Weights (``get_weights()`` order): the Conv1D's ``kernel (k, d, filters)``, ``bias (filters,)``,
    then the pooling's ``kernel (filters, units)``, ``bias (units,)``, ``context (units,)``
    (:class:`~tinyattn.attention.AttentionPooling`). The weights α are kept in ``last_attention``.
    """

    def __init__(self, filters, kernel_size, units=None, padding="same", activation="relu", dtype="float32"):
        super().__init__()
        self.filters = check_positive_int("ConvAttentionPooling", "filters", filters)
        units = self.filters if units is None else check_positive_int("ConvAttentionPooling", "units", units)
        self.dtype = np.dtype(dtype)
        self.conv = Conv1D(filters, kernel_size, padding=padding, activation=activation, dtype=dtype)
        self.pool = AttentionPooling(units, dtype)
        self.last_attention = None

    def forward(self, x, mask=None, return_attention_scores=False):
        x = cast_input(self, x)
        if x.ndim != 3:
            raise ValueError(f"ConvAttentionPooling: expected x (B, T, d), got shape {x.shape}")
        c = self.conv(x)
        if mask is not None:
            if c.shape[1] != x.shape[1]:
                raise ValueError(f"ConvAttentionPooling: a mask needs padding='same' (T' = T); the conv "
                                 f"gives {c.shape[1]} steps for {x.shape[1]}")
            mask = as_mask(mask, c, shape=c.shape[:2], where="ConvAttentionPooling")
        s, alpha = self.pool(c, mask=mask, return_attention_scores=True)
        self.last_attention = alpha.numpy()
        return (s, alpha) if return_attention_scores else s


class _ABCNN(Module):
    """Shared plumbing: one wide Conv1D (shared by both sentences), optional ABCNN-1 maps W0, W1."""
    input_maps = False
    attention_pooling = False

    def __init__(self, filters, kernel_size=3, activation="tanh", eps=1e-12, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        self.filters = check_positive_int(name, "filters", filters)
        self.kernel_size = check_positive_int(name, "kernel_size", kernel_size)
        self.eps, self.dtype = float(eps), np.dtype(dtype)
        self.conv = Conv1D(filters, kernel_size, padding="valid", activation=activation, dtype=dtype)
        self.last_attention = None

    def build(self, input_shape):
        (_, s0, d), (_, s1, d1) = input_shape
        if self.input_maps:
            g = init.glorot_uniform
            self.W0 = Parameter(g((s1, d), self.dtype), name="W0")     # F0 = A W0      (B, s0, d)
            self.W1 = Parameter(g((s0, d1), self.dtype), name="W1")    # F1 = Aᵀ W1     (B, s1, d)
        self._lengths = (s0, s1)

    def weights(self):
        own = [self.W0, self.W1] if self.input_maps else []
        return own + self.conv.weights()

    def __call__(self, x0, x1, *args, **kwargs):
        name = type(self).__name__
        x0, x1 = cast_input(self, x0, "x0"), cast_input(self, x1, "x1")
        if x0.ndim != 3 or x1.ndim != 3 or x0.shape[0] != x1.shape[0] or x0.shape[-1] != x1.shape[-1]:
            raise ValueError(f"{name}: expected x0 (B, s0, d) and x1 (B, s1, d) with the same B and d, got "
                             f"{x0.shape} and {x1.shape}")
        if not self.built:
            self.build([x0.shape, x1.shape])
            object.__setattr__(self, "built", True)
        if self.input_maps and (x0.shape[1], x1.shape[1]) != self._lengths:
            raise ValueError(f"{name}: built for sentence lengths (s0, s1) = {self._lengths} (W0, W1 depend "
                             f"on them; pad sentences to these lengths), got {x0.shape[1]} and {x1.shape[1]}")
        return Module.__call__(self, x0, x1, *args, **kwargs)

    def forward(self, x0, x1, return_attention_scores=False):
        w = self.kernel_size
        A = None
        if self.input_maps:                                    # ABCNN-1: attention feature maps
            A = match_score(x0, x1, self.eps)                                 # (B, s0, s1)
            f0 = A @ self.W0                                                  # (B, s0, d)
            f1 = A.swapaxes(1, 2) @ self.W1                                   # (B, s1, d)
            x0, x1 = concat([x0, f0], axis=-1), concat([x1, f1], axis=-1)     # two "channels"
        c0, c1 = self.conv(_wide(x0, w)), self.conv(_wide(x1, w))             # (B, s + w − 1, f)
        if self.attention_pooling:                             # ABCNN-2: attention-weighted w-ap
            A2 = match_score(c0, c1, self.eps)                                # (B, s0+w−1, s1+w−1)
            o0 = _window_pool(c0, w, A2.sum(axis=2))                          # row sums    (B, s0, f)
            o1 = _window_pool(c1, w, A2.sum(axis=1))                          # column sums (B, s1, f)
            A = A2 if A is None else A
            self.last_attention = A2.numpy()
        else:
            o0, o1 = _window_pool(c0, w), _window_pool(c1, w)                 # w-ap
            self.last_attention = A.numpy()
        return (o0, o1, A) if return_attention_scores else (o0, o1)


class ABCNN1(_ABCNN):
    """ABCNN-1 (Yin et al. 2016, §3.2): attention feature maps as extra input channels.

        A   = match_score(x0, x1)                  (B, s0, s1),  A_ij = 1/(1 + ‖x0_i − x1_j‖)
        F0  = A W0,   F1 = Aᵀ W1                    (B, s0, d), (B, s1, d);  W0 (s1, d), W1 (s0, d)
        c_k = act(wide_conv([x_k ; F_k]))           (B, s_k + w − 1, filters)   one Conv1D, shared
        out_k = w-ap(c_k)                           (B, s_k, filters)   window average, width w
    Call ``layer(x0, x1, return_attention_scores=False)`` -> (out0, out1) [, A]. Weights
    (``get_weights()``): W0, W1, then the Conv1D's kernel (w, 2d, filters) and bias (filters,). The
    sentence lengths s0, s1 are fixed at build time (W0, W1 depend on them), as in the paper.
    """
    input_maps = True


class ABCNN2(_ABCNN):
    """ABCNN-2 (Yin et al. 2016, §3.3): attention-weighted pooling after the convolution.

        c_k = act(wide_conv(x_k))                   (B, s_k + w − 1, filters)   one Conv1D, shared
        A   = match_score(c0, c1)                   (B, s0 + w − 1, s1 + w − 1)
        a0_j = Σ_m A_jm,   a1_m = Σ_j A_jm          row / column sums: each unit's attention weight
        out0_j = Σ_{k=j}^{j+w−1} a0_k c0_k          (B, s0, filters)   (out1 alike with a1)
    Call ``layer(x0, x1, return_attention_scores=False)`` -> (out0, out1) [, A]. Weights: the
    Conv1D's kernel (w, d, filters) and bias (filters,). Any sentence lengths.
    """
    attention_pooling = True


class ABCNN3(_ABCNN):
    """ABCNN-3 (Yin et al. 2016, §3.4): ABCNN-1's attention feature maps before the convolution and
    ABCNN-2's attention-weighted pooling after it. Returns (out0, out1) [, A of the input maps]."""
    input_maps = True
    attention_pooling = True
