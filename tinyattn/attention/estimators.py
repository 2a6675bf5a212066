"""Gradient estimators for a discrete choice: Gumbel-softmax (straight-through) and REINFORCE.

Hard attention picks ONE position j ~ p = softmax(e) instead of averaging all of them; the pick has
no derivative, so training needs an estimate of ∇_e E_{j~p}[f(j)]. Two classic ones:

    gumbel_softmax(logits, tau, hard)      Jang et al. 2017; Maddison et al. 2017
        g_j = −log(−log U_j),  U_j ~ Uniform(0, 1)         Gumbel(0, 1) noise, (…, K)
        y   = softmax((logits + g) / τ)                      relaxed sample, (…, K)
        hard: forward one_hot(argmax y) (= one_hot(argmax(logits + g)), an exact sample of
              softmax(logits), the Gumbel-max trick); backward the gradient of the soft y
              (straight-through; biased, low variance).
    Reinforce(baseline_decay, entropy_weight)  Williams 1992 (score-function / likelihood ratio)
        ∇_θ E_{j~p_θ}[f(j)] = E[(f(j) − b) ∇_θ log p_θ(j)]      unbiased for any b not depending on j
        b ← decay·b + (1 − decay)·mean(f)                     moving-average baseline (variance ↓)
        loss = −mean((f − b)·log p(j)) − w·mean(H(p)),   H(p) = −Σ_k p_k log p_k   (entropy bonus)
        minimising the loss ascends E[f] + w·H.
    reinforce_loss(log_prob, reward, baseline, entropy, entropy_weight)    the same, functional.

Shapes: logits (…, K) (or along ``axis``); samples are indices (…) or one-hot (…, K); rewards
broadcast to the log-probabilities (…). Masks (True = allowed) exclude choices: probability 0,
never sampled. Randomness comes from ``tinyattn.backend.rng`` (seeded by ``ta.manual_seed``) unless
an ``rng`` (a NumPy/CuPy Generator) or the ``noise`` itself is given.
"""
import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from ..functions import log_softmax, softmax, where
from ..functions.masks import as_mask

__all__ = ["gumbel_softmax", "gumbel_noise", "sample_categorical", "categorical_log_prob",
           "categorical_entropy", "reinforce_loss", "Reinforce"]


class StraightThroughOneHot(Function):
    """y = one_hot(argmax p) (or of a sample i ~ p), along the last axis: (…, T) -> (…, T).

    The straight-through estimator (Bengio et al. 2013): the backward treats the pick as the identity,
    gp = gy, so the soft probabilities p still receive a useful gradient. (Xu et al.'s hard attention
    trains with REINFORCE instead; straight-through is the common low-variance substitute.)
    """

    def __init__(self, sample=False):
        self.sample = sample

    def forward(self, p):
        xp = backend.get_array_module(p)
        if self.sample:
            u = backend.rng(xp).random(p.shape[:-1] + (1,))
            idx = (p.cumsum(axis=-1) < u).sum(axis=-1)
            idx = xp.minimum(idx, p.shape[-1] - 1)
        else:
            idx = p.argmax(axis=-1)
        y = xp.zeros_like(p)
        xp.put_along_axis(y, idx[..., None], 1, axis=-1)
        empty = p.sum(axis=-1, keepdims=True) == 0      # a fully masked row picks nothing
        y *= ~empty
        return y

    def backward(self, gy):
        return gy


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _masked_logits(logits, mask, where_):
    """Masked choices get a logit of −1e30 (probability exactly 0 after exp; finite, so no NaN)."""
    m = as_mask(mask, logits, shape=logits.shape, where=where_)
    if m is None:
        return logits, None
    xp = backend.get_array_module(logits.data)
    return where(m, logits, Tensor(xp.asarray(-1e30, dtype=logits.dtype))), m


def gumbel_noise(shape, dtype=np.float32, xp=None, rng=None):
    """Standard Gumbel noise g = −log(−log U), U ~ Uniform(0, 1), as an array of ``shape``."""
    xp = xp or backend.default_xp()
    rng = rng or backend.rng(xp)
    u = rng.random(shape, dtype=np.dtype(dtype) if np.dtype(dtype) in (np.float32, np.float64) else np.float64)
    tiny = np.finfo(u.dtype).tiny
    return -xp.log(-xp.log(xp.clip(u, tiny, 1.0 - np.finfo(u.dtype).epsneg)))


def gumbel_softmax(logits, tau=1.0, hard=False, axis=-1, mask=None, rng=None, noise=None):
    """A (relaxed) sample of softmax(logits) along ``axis``: y = softmax((logits + g)/τ), g ~ Gumbel(0, 1).

    logits (…, K) Tensor (or array); tau > 0 the temperature (τ → 0: y → one-hot; large τ: uniform);
    hard: forward returns one_hot(argmax y) — an exact sample of softmax(logits) — and the backward
    is the gradient of the soft y (straight-through); mask (broadcastable, True = allowed): excluded
    choices get probability 0 (a row with no allowed choice gives zeros); noise: the Gumbel noise
    array itself (…, K) (fixed noise makes the relaxed sample a deterministic, gradcheckable function);
    rng: the generator to draw it from. Returns y, same shape as logits.
    """
    logits = _t(logits)
    if not (isinstance(tau, (int, float, np.floating, np.integer)) and not isinstance(tau, bool) and tau > 0):
        raise ValueError(f"gumbel_softmax: tau must be a positive number, got {tau!r}")
    if axis not in (-1, logits.ndim - 1):               # work on the last axis, then swap back
        m = as_mask(mask, logits, shape=logits.shape, where="gumbel_softmax")
        xp = backend.get_array_module(logits.data)
        y = gumbel_softmax(logits.swapaxes(axis, -1), tau, hard, -1,
                           None if m is None else xp.swapaxes(m, axis, -1), rng,
                           None if noise is None else xp.swapaxes(noise, axis, -1))
        return y.swapaxes(axis, -1)
    xp = backend.get_array_module(logits.data)
    if noise is None:
        noise = gumbel_noise(logits.shape, logits.dtype, xp, rng)
    elif tuple(noise.shape) != tuple(logits.shape):
        raise ValueError(f"gumbel_softmax: noise must have the logits' shape {logits.shape}, got {tuple(noise.shape)}")
    z, m = _masked_logits(logits + Tensor(xp.asarray(noise, dtype=logits.dtype)), mask, "gumbel_softmax")
    y = softmax(z * (1.0 / tau), axis=-1)
    if m is not None:
        y = y * Tensor(xp.broadcast_to(m, y.shape).astype(y.dtype))     # all-masked rows: zeros
    return StraightThroughOneHot(sample=False)(y) if hard else y


def sample_categorical(logits, axis=-1, mask=None, rng=None):
    """Indices j ~ softmax(logits) along ``axis`` (the Gumbel-max trick: argmax(logits + g)), no gradient.

    logits (…, K) -> integer array (…) on the logits' device. Masked choices (mask False) are never drawn.
    """
    logits = _t(logits)
    xp = backend.get_array_module(logits.data)
    z = xp.moveaxis(logits.data, axis, -1)
    z = z + gumbel_noise(z.shape, z.dtype, xp, rng)
    if mask is not None:
        m = as_mask(mask, logits, shape=logits.shape, where="sample_categorical")
        z = xp.where(xp.moveaxis(m, axis, -1), z, -xp.inf)
    return z.argmax(axis=-1)


def categorical_log_prob(logits, index, axis=-1, mask=None):
    """log p(index) with p = softmax(logits) (masked choices excluded): logits (…, K), index (…) -> (…)."""
    logits = _t(logits)
    if axis not in (-1, logits.ndim - 1):
        m = as_mask(mask, logits, shape=logits.shape, where="categorical_log_prob")
        mask = None if m is None else backend.get_array_module(m).swapaxes(m, axis, -1)
        logits = logits.swapaxes(axis, -1)
    z, _ = _masked_logits(logits, mask, "categorical_log_prob")
    lp = log_softmax(z, axis=-1)
    xp = backend.get_array_module(lp.data)
    idx = index.data if isinstance(index, Tensor) else xp.asarray(index)
    if tuple(idx.shape) != tuple(lp.shape[:-1]):
        raise ValueError(f"categorical_log_prob: index must have shape {lp.shape[:-1]} (logits {logits.shape} "
                         f"without the choice axis), got {tuple(idx.shape)}")
    pick = xp.zeros(lp.shape, dtype=lp.dtype)
    xp.put_along_axis(pick, idx[..., None].astype(np.int64), 1, axis=-1)
    return (lp * Tensor(pick)).sum(axis=-1)


def categorical_entropy(logits, axis=-1, mask=None):
    """H(p) = −Σ_k p_k log p_k, p = softmax(logits) over ``axis`` (masked choices excluded) -> (…)."""
    logits = _t(logits)
    if axis not in (-1, logits.ndim - 1):
        m = as_mask(mask, logits, shape=logits.shape, where="categorical_entropy")
        mask = None if m is None else backend.get_array_module(m).swapaxes(m, axis, -1)
        logits = logits.swapaxes(axis, -1)
    z, _ = _masked_logits(logits, mask, "categorical_entropy")
    lp = log_softmax(z, axis=-1)
    return -(lp.exp() * lp).sum(axis=-1)


def reinforce_loss(log_prob, reward, baseline=0.0, entropy=None, entropy_weight=0.0):
    """The REINFORCE surrogate loss; its gradient is the score-function estimate of −∇E[reward]:

        loss = −mean((reward − baseline) · log_prob) − entropy_weight · mean(entropy)

    log_prob (…) Tensor: log p(sampled choice); reward (…) or broadcastable, array or Tensor — treated
    as a constant (detached); baseline: a number or array not depending on the sample (else the
    estimate is biased); entropy (…) Tensor or None (then entropy_weight must be 0). Returns a scalar.
    """
    log_prob = _t(log_prob)
    xp = backend.get_array_module(log_prob.data)
    r = reward.data if isinstance(reward, Tensor) else xp.asarray(reward)
    b = baseline.data if isinstance(baseline, Tensor) else xp.asarray(baseline)
    adv = (r - b).astype(log_prob.dtype)
    try:
        np.broadcast_shapes(tuple(adv.shape), tuple(log_prob.shape))
    except ValueError:
        raise ValueError(f"reinforce_loss: reward {tuple(r.shape)} does not broadcast to log_prob "
                         f"{log_prob.shape}") from None
    if not bool(xp.all(xp.isfinite(adv))):
        raise ValueError("reinforce_loss: reward − baseline has NaN or inf entries")
    loss = -(Tensor(adv) * log_prob).mean()
    if entropy_weight:
        if entropy is None:
            raise ValueError("reinforce_loss: entropy_weight is non-zero but no entropy was given; pass "
                             "entropy=categorical_entropy(logits)")
        loss = loss - _t(entropy).mean() * float(entropy_weight)
    return loss


class Reinforce:
    """A reusable REINFORCE estimator with a moving-average baseline and an entropy bonus.

        b ← decay·b + (1 − decay)·mean(reward)   after each :meth:`loss` (first call: b = 0, then updated)
        loss = −mean((reward − b)·log p(j)) − entropy_weight·mean(H(p))

    The baseline used in a loss comes from earlier batches only, so the estimate stays unbiased.
    Use::

        est = Reinforce(baseline_decay=0.9, entropy_weight=0.01)
        j, log_p, H = est.sample(logits, mask)          # j (…) indices, log_p (…), H (…) Tensors
        reward = ...                                     # (…) array, e.g. 1.0 where j was right
        (task_loss + est.loss(log_p, reward, H)).backward()
    """

    def __init__(self, baseline_decay=0.9, entropy_weight=0.0):
        if not 0.0 <= baseline_decay <= 1.0:
            raise ValueError(f"Reinforce: baseline_decay must be in [0, 1], got {baseline_decay}")
        if entropy_weight < 0:
            raise ValueError(f"Reinforce: entropy_weight must be ≥ 0, got {entropy_weight}")
        self.baseline_decay, self.entropy_weight = float(baseline_decay), float(entropy_weight)
        self.baseline = 0.0

    def sample(self, logits, mask=None, axis=-1, rng=None):
        """(indices (…), log p(indices) (…) Tensor, entropy H(p) (…) Tensor) for j ~ softmax(logits)."""
        j = sample_categorical(logits, axis, mask, rng)
        return j, categorical_log_prob(logits, j, axis, mask), categorical_entropy(logits, axis, mask)

    def loss(self, log_prob, reward, entropy=None, update=True):
        """The surrogate loss with the current baseline; then (``update``) moves the baseline toward
        mean(reward)."""
        out = reinforce_loss(log_prob, reward, self.baseline, entropy, self.entropy_weight)
        if update:
            r = reward.data if isinstance(reward, Tensor) else reward
            mean = float(backend.as_numpy(backend.get_array_module(r).asarray(r)).mean())
            self.baseline = self.baseline_decay * self.baseline + (1.0 - self.baseline_decay) * mean
        return out

    def __repr__(self):
        return (f"Reinforce(baseline_decay={self.baseline_decay}, entropy_weight={self.entropy_weight}, "
                f"baseline={self.baseline:.4g})")
