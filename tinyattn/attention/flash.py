"""Exact softmax attention in O(T) memory: the FlashAttention algorithm (Dao et al. 2022), in NumPy.

Naive attention builds the whole score matrix S = scale · Q Kᵀ, (B, H, Tq, Tk), and keeps the
weights P for backward: at T = 4096 with 8 heads that is 512 MiB per array in float32. The same
result can be computed one (row block × column block) tile at a time, holding only

    O (B, H, Tq, dv)   and per query row   m (running max), ℓ (running sum), then L = log-sum-exp,

never more than one (B, H, block, block) tile of scores. This file is that algorithm written to be
read; :func:`flash_attention` is tested equal to :func:`scaled_dot_product_attention` (outputs and
gradients within 1e-10 in float64) in tests/test_flash_attention.py.

Forward: the online-softmax recurrence
--------------------------------------
For one row block Q_i (B, H, bq, d), start with m = −∞, ℓ = 0, A = 0 (B, H, bq, dv) and for every
column block K_j, V_j (B, H, bk, d / dv):

    S_ij  = scale · Q_i K_jᵀ + bias_ij,  −∞ where masked          (B, H, bq, bk)
    m'    = max(m, rowmax S_ij)                                    (B, H, bq, 1)
    P̃_ij  = exp(S_ij − m')                                         (B, H, bq, bk)
    α     = exp(m − m')            rescales what was summed with the old max
    ℓ     ← α ℓ + rowsum P̃_ij
    A     ← α A + P̃_ij V_j                                         (B, H, bq, dv)
    m     ← m'

At the end O_i = A / ℓ and L_i = m + log ℓ, so that softmax(S)_ij = exp(S_ij − L_i) exactly: the
rescaling by α makes every term carry the same final max. A row with every key masked keeps
m = −∞, ℓ = 0: its output is 0 (as tinyattn's masked_softmax and PyTorch's SDPA give) and its L is
set to +∞ so that backward recomputes P = exp(−∞ − ∞) = 0 there. (While m' = −∞ the shift used is 0,
so that exp(−∞ − (−∞)) never makes a NaN.)

Backward: recompute each tile from L
------------------------------------
With dO = ∂loss/∂O (B, H, Tq, dv), the textbook backward of O = P V, P = softmax(S) is

    dV = Pᵀ dO,   dP = dO Vᵀ,   dS = P ⊙ (dP − rowsum(dP ⊙ P)),   dQ = scale · dS K,   dK = scale · dSᵀ Q.

The row sum needs the whole row of P, but rowsum(dP ⊙ P)_i = Σ_j P_ij (dO_i · V_j) = dO_i · O_i,
so it is one number per query known before any tile is visited:

    D_i = rowsum(dO_i ⊙ O_i)                                       (B, H, Tq, 1)

and each tile's contribution is local:

    P_ij  = exp(S_ij − L_i)              (S_ij recomputed from Q_i, K_j: no stored P)
    dV_j += P_ijᵀ dO_i                   (B, H, bk, dv)
    dP_ij = dO_i V_jᵀ                    (B, H, bq, bk)
    dS_ij = P_ij ⊙ (dP_ij − D_i)
    dQ_i += scale · dS_ij K_j,   dK_j += scale · dS_ijᵀ Q_i,   dBias_ij = dS_ij.

Compute: two GEMMs per tile forward, five backward (S recomputed, then dV, dP, dQ, dK): 7 against
the naive kernel's 6 (≈ 1.17× the matmul work, plus one more exp pass), in exchange for O(T·block)
memory instead of O(T²). With ``causal`` the tiles wholly
above the diagonal are skipped (about half the work). On several threads (NumPy, no mask or bias)
the (batch, head) entries run as ranges on the pool, each thread the whole tile loop of its
entries with BLAS on one thread (``tinyattn.parallel.ranges``; the same bits): measured B 1, H 8,
T 4096, d 64, float32, 2 threads, forward + backward 1.44–1.49 → 1.06–1.14 s. Under
``create_graph`` (double backward) the backward falls back to the textbook composition (plain
differentiable ops, O(T²) memory), which is exact to differentiate again, as the fused SDPA does.
"""
import math

import numpy as np

from .. import backend, parallel
from ..autograd import Function, Tensor, sum_to, _sum_to_array
from ..functions.masks import as_mask
from ..functions.nn import MaskedSoftmax, Softmax

__all__ = ["flash_attention", "FlashAttention"]

DEFAULT_BLOCK_SIZE = 256   # benchmarks/bench_transformer.py --sweep-blocks at T = 4096, B 1, 8 heads, d 64,
#                            float32, one thread: CPU time vs naive 0.84 / 0.67 / 0.65 / 0.62 and peak
#                            32.8 / 34.0 / 38.8 / 57.3 MiB (naive 1056) for blocks 64 / 128 / 256 / 512


def _swap(a):
    return a.swapaxes(-1, -2)


def _flat(a):
    """(..., m, n) → (N, m, n), N the product of the leading axes (a view when the layout allows)."""
    return a.reshape((-1,) + a.shape[-2:])


def _tile(a, i0, i1, j0, j1):
    """The (i0:i1, j0:j1) tile of a mask/bias whose last two axes are (Tq or 1, Tk or 1)."""
    if a is None:
        return None
    return a[..., (slice(None) if a.shape[-2] == 1 else slice(i0, i1)),
             (slice(None) if a.shape[-1] == 1 else slice(j0, j1))]


class FlashAttention(Function):
    """O = softmax(scale · Q Kᵀ + bias, masked) V computed tile by tile (see the module docstring).

    Inputs q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) [, bias broadcastable to (..., Tq, Tk)];
    output O (..., Tq, dv). Leading axes broadcast as in matmul. ``mask``: boolean array (True =
    keep) broadcastable to (..., Tq, Tk), with last two axes of size Tq or 1 and Tk or 1, or None.
    Saved for backward: O and L (..., Tq, 1) only.
    """

    def __init__(self, scale, mask=None, causal=False, block_size=DEFAULT_BLOCK_SIZE):
        self.scale = float(scale)
        self.mask = mask
        self.causal = bool(causal)
        self.block = int(block_size)

    # -- the tiles ---------------------------------------------------------------------------------
    def _blocks(self, tq, tk):
        """(i0, i1, [(j0, j1), ...]) for every row block, the causal upper tiles left out."""
        b = self.block
        for i0 in range(0, tq, b):
            i1 = min(i0 + b, tq)
            stop = min(tk, i1) if self.causal else tk       # key j ≤ query i: keys ≥ i1 never seen
            yield i0, i1, [(j0, min(j0 + b, stop)) for j0 in range(0, stop, b)]

    def _scores(self, xp, qs, k, bias, i0, i1, j0, j1):
        """S_ij = (scale · Q_i) K_jᵀ + bias_ij with −∞ where masked, and whether any entry was masked."""
        s = xp.matmul(qs, _swap(k[..., j0:j1, :]))
        if bias is not None:
            s += _tile(bias, i0, i1, j0, j1)
        keep = _tile(self.mask, i0, i1, j0, j1)
        if self.causal and j1 > i0 + 1:                     # the tile crosses the diagonal
            c = xp.arange(j0, j1)[None, :] <= xp.arange(i0, i1)[:, None]
            keep = c if keep is None else keep & c
        if keep is not None:
            xp.copyto(s, -math.inf, where=~keep)
        return s

    # -- forward -----------------------------------------------------------------------------------
    def forward(self, q, k, v, bias=None):
        xp = backend.get_array_module(q, k, v)
        dt = q.dtype
        lead = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
        tq = q.shape[-2]
        out = xp.zeros(lead + (tq, v.shape[-1]), dtype=dt)
        lse = xp.empty(lead + (tq, 1), dtype=dt)
        heads = self._heads(xp, bias, q, k, v)
        if heads is None:
            self._forward_tiles(xp, q, k, v, bias, out, lse)
        else:                              # every (batch, head) apart: ranges of them on the pool
            (qf, kf, vf), of, lf = heads, _flat(out), _flat(lse)
            parallel.ranges(lambda lo, hi: self._forward_tiles(np, qf[lo:hi], kf[lo:hi], vf[lo:hi], None,
                                                               of[lo:hi], lf[lo:hi]), qf.shape[0])
        self.O, self.L = out, lse
        return out

    def _heads(self, xp, bias, *arrays):
        """``arrays`` as (N, T, ·) stacks of their N = B·H… matrices when the tiles may run as
        ranges of (batch, head) entries on the pool (tinyattn.parallel.ranges: each thread the whole
        tile loop of its entries, BLAS on one thread): NumPy, more than one thread, the same
        leading axes everywhere (no broadcasting), no mask and no bias (which could broadcast over
        them). None otherwise: the loop below runs once over all entries. Each entry's tiles are the
        same operations either way (per-matrix GEMMs, row-wise reductions): the same bits."""
        lead = arrays[0].shape[:-2]
        if (xp is not np or bias is not None or self.mask is not None or parallel.get_num_threads() < 2
                or not lead or int(np.prod(lead)) < 2 or any(a.shape[:-2] != lead for a in arrays)):
            return None
        return [_flat(a) for a in arrays]

    def _forward_tiles(self, xp, q, k, v, bias, out, lse):
        """The forward's tile loop into ``out`` (..., Tq, dv) and ``lse`` (..., Tq, 1)."""
        dt = q.dtype
        lead = out.shape[:-2]
        tq, tk = q.shape[-2], k.shape[-2]
        sc = self.scale                    # a Python float: weak, keeps the dtype (and CuPy-safe)
        neg_inf = -math.inf               # Python numbers: weak, CuPy-safe (no NumPy scalar)
        for i0, i1, cols in self._blocks(tq, tk):
            qs = q[..., i0:i1, :] * sc                      # (..., bq, d)
            m = xp.full(lead + (i1 - i0, 1), neg_inf, dtype=dt)     # running max
            ell = xp.zeros(lead + (i1 - i0, 1), dtype=dt)            # running sum
            acc = out[..., i0:i1, :]                                 # running numerator A (a view)
            for j0, j1 in cols:
                s = self._scores(xp, qs, k, bias, i0, i1, j0, j1)   # (..., bq, bk)
                m_new = xp.maximum(m, s.max(axis=-1, keepdims=True))
                shift = xp.where(m_new == neg_inf, 0.0, m_new)     # all masked so far: shift 0
                s -= shift
                xp.exp(s, out=s)                                     # P̃ = exp(S − m')
                alpha = xp.exp(m - shift)                            # exp(m − m'), 0 at the start
                ell *= alpha
                ell += s.sum(axis=-1, keepdims=True)
                acc *= alpha
                acc += xp.matmul(s, v[..., j0:j1, :])
                m = m_new
            empty = ell == 0                                         # no kept key in the row
            acc /= xp.where(empty, 1.0, ell)                  # O = A / ℓ (0 for empty rows)
            lse[..., i0:i1, :] = xp.where(empty, math.inf, m + xp.log(xp.where(empty, 1.0, ell)))

    # -- backward ----------------------------------------------------------------------------------
    def backward(self, go):
        if self._as_tensors:
            return self._backward_textbook(go)
        q, k, v = self.inputs[:3]
        bias = self.inputs[3] if len(self.inputs) > 3 else None
        need = [x.requires_grad for x in self._inputs]
        xp = backend.get_array_module(q, k, v)
        dt = q.dtype
        lead = self.O.shape[:-2]
        sc = self.scale                    # a Python float: weak, keeps the dtype (and CuPy-safe)
        D = xp.einsum("...i,...i->...", go, self.O)[..., None]      # rowsum(dO ⊙ O) (..., Tq, 1)
        gq = xp.zeros(lead + q.shape[-2:], dtype=dt)
        gk = xp.zeros(lead + k.shape[-2:], dtype=dt)
        gv = xp.zeros(lead + v.shape[-2:], dtype=dt)
        gb = xp.zeros(bias.shape, dtype=dt) if bias is not None and need[3] else None
        heads = self._heads(xp, bias, q, k, v, go, D, self.L)
        if heads is None:
            self._backward_tiles(xp, q, k, v, bias, go, D, self.L, gq, gk, gv, gb)
        else:                              # ranges of (batch, head) entries on the pool (see forward)
            (qf, kf, vf, gof, Df, Lf), gqf, gkf, gvf = heads, _flat(gq), _flat(gk), _flat(gv)
            parallel.ranges(lambda lo, hi: self._backward_tiles(
                np, qf[lo:hi], kf[lo:hi], vf[lo:hi], None, gof[lo:hi], Df[lo:hi], Lf[lo:hi],
                gqf[lo:hi], gkf[lo:hi], gvf[lo:hi], None), qf.shape[0])
        gq *= sc
        gk *= sc
        grads = [gq if need[0] else None, gk if need[1] else None, gv if need[2] else None]
        if bias is not None:
            grads.append(gb)
        return tuple(grads)

    def _backward_tiles(self, xp, q, k, v, bias, go, D, L, gq, gk, gv, gb):
        """The backward's tile loop, accumulating into gq, gk (unscaled), gv and gb."""
        tq, tk = q.shape[-2], k.shape[-2]
        sc = self.scale
        for i0, i1, cols in self._blocks(tq, tk):
            qi = q[..., i0:i1, :]
            qs = qi * sc
            goi, Di, Li = go[..., i0:i1, :], D[..., i0:i1, :], L[..., i0:i1, :]
            for j0, j1 in cols:
                p = self._scores(xp, qs, k, bias, i0, i1, j0, j1)
                p -= Li
                xp.exp(p, out=p)                                     # P_ij = exp(S_ij − L_i)
                gv[..., j0:j1, :] += xp.matmul(_swap(p), goi)        # dV_j += P_ijᵀ dO_i
                ds = xp.matmul(goi, _swap(v[..., j0:j1, :]))         # dP_ij = dO_i V_jᵀ
                ds -= Di
                ds *= p                                              # dS_ij = P ⊙ (dP − D_i)
                if gb is not None:
                    t = _tile(gb, i0, i1, j0, j1)
                    t += _sum_to_array(ds, t.shape)
                gq[..., i0:i1, :] += xp.matmul(ds, k[..., j0:j1, :])    # dQ_i += dS K_j
                gk[..., j0:j1, :] += xp.matmul(_swap(ds), qi)           # dK_j += dSᵀ Q_i

    def _backward_textbook(self, go):
        """Double backward: the same gradients from plain differentiable ops on Tensors (O(T²))."""
        q, k, v = self.inputs[:3]
        bias = self.inputs[3] if len(self.inputs) > 3 else None
        need = [x.requires_grad for x in self._inputs]
        xp = backend.get_array_module(q.data)
        s = (q @ _swap(k)) * self.scale
        if bias is not None:
            s = s + bias
        keep = self.mask
        if self.causal:
            tq, tk = q.shape[-2], k.shape[-2]
            c = xp.tril(xp.ones((tq, tk), dtype=bool))
            keep = c if keep is None else keep & c
        p = Softmax()(s) if keep is None else MaskedSoftmax(keep)(s)
        gv = _swap(p) @ go if need[2] else None
        gp = sum_to(go @ _swap(v), p.shape)
        gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
        grads = [(gs @ k) * self.scale if need[0] else None,
                 (_swap(gs) @ q) * self.scale if need[1] else None, gv]
        if bias is not None:
            grads.append(gs if need[3] else None)
        return tuple(grads)


def _as_tensor(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _pad2(a):
    """Give a mask/bias at least the two (Tq, Tk) axes: (Tk,) -> (1, Tk)."""
    return a.reshape((1,) * (2 - a.ndim) + tuple(a.shape)) if a.ndim < 2 else a


def flash_attention(q, k, v, mask=None, causal=False, bias=None, scale=None,
                    block_size=DEFAULT_BLOCK_SIZE):
    """softmax(Q Kᵀ · scale + bias, masked) V, computed block by block in O(T · block) memory.

    q (B, H, Tq, d) or (B, Tq, d) (any leading axes), k (..., Tk, d), v (..., Tk, dv)
    -> out (..., Tq, dv): the same values and gradients as :func:`scaled_dot_product_attention`
    (see the module docstring for the algorithm, FlashAttention of Dao et al. 2022).

    * mask: True = keep (bool or 0/1 numbers, read by :func:`tinyattn.functions.masks.as_mask`),
      broadcastable to (..., Tq, Tk), e.g. (B, 1, 1, Tk) for padding. A query whose keys are all masked gets a zero output.
    * causal: query i sees keys 0..i (top-left aligned, as PyTorch's ``is_causal``); ANDed with mask.
    * bias: additive, broadcastable to (..., Tq, Tk) (ALiBi, T5 buckets, ...); a Tensor that
      requires grad gets its gradient (summed over its broadcast axes).
    * scale: default 1/√d. block_size: rows and columns per tile (the memory/speed knob; the
      scores never exist beyond one (..., block, block) tile). No dropout.
    """
    q, k, v = _as_tensor(q), _as_tensor(k), _as_tensor(v)
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"flash_attention: q, k, v must be at least 2-D (..., T, d), got {q.shape}, "
                         f"{k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"flash_attention: q {q.shape} and k {k.shape} differ in feature size")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"flash_attention: k {k.shape} and v {v.shape} differ in length")
    try:
        lead = tuple(np.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2]))
    except ValueError:
        raise ValueError(f"flash_attention: leading axes of q {q.shape}, k {k.shape}, v {v.shape} do "
                         f"not broadcast") from None
    if not (isinstance(block_size, (int, np.integer)) and block_size >= 1):
        raise ValueError(f"flash_attention: block_size must be a positive integer, got {block_size!r}")
    tq, tk = q.shape[-2], k.shape[-2]
    sshape = lead + (tq, tk)
    xp = backend.get_array_module(q.data)

    def fits(a, what):
        try:
            ok = tuple(np.broadcast_shapes(tuple(a.shape), sshape)) == sshape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"flash_attention: {what} {tuple(a.shape)} does not broadcast to the scores "
                             f"{sshape} (..., Tq, Tk)")

    if mask is not None:                   # bool / 0-1 numbers, moved to q's device (the one door)
        mask = _pad2(as_mask(mask, q, shape=sshape, where="flash_attention"))
    inputs = [q, k, v]
    if bias is not None:
        b = bias if isinstance(bias, Tensor) else Tensor(xp.asarray(bias, dtype=q.dtype))
        if b.dtype != q.dtype:
            raise TypeError(f"flash_attention: bias is {b.dtype} but q is {q.dtype}; cast one of them")
        fits(b, "bias")
        if b.ndim < 2:
            b = b.reshape(*_pad2(b.data).shape)
        inputs.append(b)
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    return FlashAttention(scale, mask, causal, int(block_size))(*inputs)
