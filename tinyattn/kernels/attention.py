"""Fused attention Functions: scaled dot-product attention and the additive (Bahdanau) score.

Composing attention from small ops (matmul, mul, softmax, dropout, matmul) records ~6 graph nodes
and allocates a fresh (..., Tq, Tk) array at each. The two Functions here do the same maths in one
node each, in place, with the backward written out by hand:

    ScaledDotProductAttention   O = dropout(softmax_mask(scale · Q Kᵀ)) V        (one node)
    AdditiveScore               s_ij = vᵀ tanh(qp_i + kp_j)                         (one node)

Both support double backward: under ``create_graph`` their backward recomputes the intermediates
from the input Tensors with differentiable ops and returns the same formulas on Tensors.

The masked softmax is the one in ``functions/nn.py`` (``softmax_`` in place on arrays,
``MaskedSoftmax`` on Tensors): masked entries 0, fully masked rows all 0.
"""
import numpy as np

from .. import backend, parallel
from ..autograd import Function, sum_to, _sum_to_array
from ..functions.nn import MaskedSoftmax, row_sums, softmax_, _softmax_grad_rows
from .rnn import _copy_rows, _workspace

# Score-sized buffers (S, P and gS) up to this many bytes come from the shared buffer pool of
# kernels/rnn.py (reused once nothing refers to them: refcount-safe, capped in bytes); larger ones
# (long sequences) are allocated per call and returned to the allocator.
_POOLED_SCORE_BYTES = 32 << 20


def _score_buffer(xp, shape, dtype):
    """An uninitialised (..., Tq, Tk) array: from the buffer pool when small enough, else fresh.
    Why: a fresh multi-MiB array each step is mapped anew by the C allocator and page-faulted on
    first touch (a cold process pays it every step); a reused one is already resident."""
    n = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if n <= _POOLED_SCORE_BYTES:
        return _workspace.empty(xp, shape, dtype)
    return xp.empty(shape, dtype=dtype)


def _scale_(a, sc):
    """a *= sc in place (row chunks on the pool for large arrays)."""
    parallel.rows(lambda x: np.multiply(x, sc, out=x), a, tail=0) if parallel.active(a) else a.__imul__(sc)
    return a


# Softmax is shift-invariant: softmax(s) = softmax(s − c) for any c per row. The textbook shift is
# the row max (so that exp never overflows); when every score is known to lie in [−L, L] with
# L = _UNSHIFTED_BOUND, exp(s) itself is safe — no overflow, and no underflow of a whole row
# (e^(−60) ≈ 9e-27 is a normal float32) — so the row max and the subtraction (two of the five
# passes over the (…, Tq, Tk) scores) can be skipped. The bound comes from Cauchy–Schwarz on the
# small inputs:  |s_ij| = scale·|q_i · k_j| ≤ scale · max_i ‖q_i‖ · max_j ‖k_j‖.
_UNSHIFTED_BOUND = 60.0


def _max_sq_norm(xp, a):
    """max_i ‖a_i‖² over the rows of a (…, n, d) (NaN when a holds NaN)."""
    return xp.einsum("...i,...i->...", a, a).max()


def _score_bound(q, k, scale):
    """scale · max_i ‖q_i‖ · max_j ‖k_j‖ ≥ every |s_ij| (NaN when q or k holds NaN, inf for inf)."""
    xp = backend.get_array_module(q, k)
    return abs(scale) * float(_max_sq_norm(xp, q)) ** 0.5 * float(_max_sq_norm(xp, k)) ** 0.5


def _exp_normalize_rows(s, drop):
    """s ← exp(s) / Σ_k exp(s) along the last axis, in place, without the max shift (the caller has
    checked |s| ≤ _UNSHIFTED_BOUND); ``drop`` (True = masked out) entries are exactly 0 and a fully
    masked row is all 0, as :func:`softmax_`."""
    xp = backend.get_array_module(s)
    xp.exp(s, out=s)
    if drop is not None:
        xp.copyto(s, 0, where=drop)
    z = row_sums(s)
    if drop is not None:
        z[z == 0] = 1                      # empty rows stay 0 instead of 0/0
    xp.reciprocal(z, out=z)
    s *= z


def _softmax_backward_(gs, p, m, gp_ext):
    """gS = P ⊙ (gP − Σ_k gP ⊙ P) in place on ``gs`` (which holds gO Vᵀ), after the dropout mask and
    the external gradient of P are folded in:  gP = gs ⊙ M + gP_ext. One pass over each row block."""
    if m is not None:
        gs *= m
    if gp_ext is not None:
        gs += gp_ext
    _softmax_grad_rows(gs, p)

__all__ = ["ScaledDotProductAttention", "AdditiveScore", "SplitHeads"]


def _swap(a):
    return a.swapaxes(-1, -2)


# Blocked path: blocks of the first batch axis whose scores take about this many bytes (L2-sized).
_BLOCK_BYTES = 512 << 10


def _blockable(xp, shape, q, k, v):
    """The blocked array path applies: NumPy, a stack of score matrices whose first axis (≥ 2) q, k
    and v all have (same batch shape, no broadcasting between them)."""
    return (xp is np and len(shape) >= 3 and shape[0] >= 2 and q.shape[:-2] == shape[:-2]
            and k.shape[:-2] == shape[:-2] and v.shape[:-2] == shape[:-2])


def _block_rows(shape, itemsize):
    """How many entries of the first axis make one block of about _BLOCK_BYTES of scores."""
    return max(1, _BLOCK_BYTES // max(1, int(np.prod(shape[1:])) * itemsize))


def _cut(a, i, j, nd):
    """Entries i:j of the first axis of an array broadcast against an nd-dim score tensor (a mask,
    a bias, an external gradient): sliced when it has that axis, whole when it broadcasts over it."""
    if a is None or np.ndim(a) < nd or a.shape[0] == 1:
        return a
    return a[i:j]


def _contiguous(xp, a):
    """A C-contiguous copy of ``a``: a head view (B, H, T, n) of a fused projection moves as whole
    rows of n items (:func:`~tinyattn.kernels.rnn._copy_rows`: measured 0.17 ms for 1M float32 in
    rows of 32, against 0.29 ms element by element and 0.34 ms as row blocks on the pool, where the
    second thread's wake-up costs more than it saves; other layouts element by element)."""
    if xp is not np:
        return xp.ascontiguousarray(a)
    out = np.empty(a.shape, a.dtype)
    _copy_rows(np, out, a)
    return out


# The per-head products (…, Tq, d) @ (…, d, Tk) are small: on several threads their stack is split
# over the pool with BLAS on one thread (tinyattn.parallel.matmul; np.matmul otherwise).
_mm = parallel.matmul


class ScaledDotProductAttention(Function):
    """Fused attention: q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv) -> (O (..., Tq, dv), P (..., Tq, Tk)).

        S = scale · Q Kᵀ [+ bias]        (..., Tq, Tk)    bias: an optional CONSTANT array (PyTorch's
                                                           float attn_mask), broadcastable to S; it
                                                           takes no gradient (a learnable bias goes
                                                           through the textbook ops instead)
        P = masked softmax_k(S)          (..., Tq, Tk)   mask True = keep; fully masked row -> 0
        D = P ⊙ M / (1 − p)              dropout (M ~ Bernoulli(1 − p)) in training, else D = P
        O = D V                          (..., Tq, dv)

    The second output P is the attention weights *before* dropout. Leading (batch, head) axes
    broadcast as in matmul. Backward, for upstream gO (and gP_ext if P itself was used):

        gV = Dᵀ gO,   gP = (gO Vᵀ) ⊙ M/(1 − p) + gP_ext,   gS = P ⊙ (gP − Σ_k gP ⊙ P),
        gQ = scale · gS K,   gK = scale · gSᵀ Q.

    On arrays everything runs in place with one scaled copy of Q (kept: gK = gSᵀ (scale·Q)), a
    contiguous copy of V when it is a strided view (heads cut from a fused projection), transposes
    handed to BLAS as strides. Under ``create_graph`` the same formulas are evaluated on Tensors (S and P recomputed
    with differentiable ops), so second derivatives are exact.
    """

    def __init__(self, scale, mask=None, dropout=0.0, training=True, bias=None):
        self.scale = float(scale)
        self.mask = mask
        self.p = float(dropout) if training else 0.0
        self.bias = bias

    def forward(self, q, k, v):
        xp = backend.get_array_module(q, k, v)
        kt = _swap(k)
        shape = np.broadcast_shapes(q.shape[:-2], kt.shape[:-2]) + (q.shape[-2], kt.shape[-1])
        drop = None if self.mask is None else ~self.mask
        if _blockable(xp, shape, q, k, v):
            qs, v, bound = self._prepare_blocked(q, k, v)
            self.QS, self.V = qs, v
            return self._forward_blocked(qs, kt, v, drop, shape, np.result_type(qs.dtype, kt.dtype), bound)
        qs = q * float(self.scale)                            # scale the small side (contiguous)
        if not v.flags.c_contiguous:       # heads cut from a fused projection are strided views:
            v = _contiguous(xp, v)         # P V and gO Vᵀ run ~25% faster on a contiguous copy
        self.QS, self.V = qs, v            # (kept for backward: gK = gSᵀ (scale·Q) needs no scaling)
        dt = np.result_type(qs.dtype, kt.dtype)
        s = _mm(qs, kt, out=_score_buffer(xp, shape, dt)) if xp is np else xp.matmul(qs, kt)
        if self.bias is None and _score_bound(qs, k, 1.0) <= _UNSHIFTED_BOUND:
            parallel.rows(_exp_normalize_rows, s, drop, work=3)   # no row max needed (see above)
            p = s
        else:
            if self.bias is not None:
                s += self.bias             # s has the full broadcast shape; the bias broadcasts into it
            p = softmax_(s, drop)
        self.P = p
        self.M = self._dropout_mask(xp, p.shape, p.dtype)
        d = p if self.M is None else p * self.M
        return _mm(d, v), p

    def _dropout_mask(self, xp, shape, dtype):
        """M = Bernoulli(1 − p) / (1 − p) of the scores' shape (None without dropout)."""
        if self.p <= 0.0:
            return None
        keep = backend.rng(xp).random(shape, dtype=dtype if dtype in (np.float32, np.float64) else np.float64)
        return (keep >= self.p).astype(dtype) * (1.0 / (1.0 - self.p))

    def _prepare_blocked(self, q, k, v):
        """What the blocked forward needs before its blocks, itself as blocks on the pool
        (parallel.ranges): qs = scale·q, a C-contiguous v (a head view of a fused projection moves
        as whole rows), and — without a bias — the Cauchy–Schwarz bound of :func:`_score_bound` from
        each block's largest squared row norms (a max of maxima: the same number, NaN included).
        The same arrays and bound as the whole-tensor path's, on every thread instead of one
        (measured, B 32, H 8, T 128, d 32, 2 threads: these three serial steps were ~4 ms)."""
        qs = np.empty(q.shape, np.result_type(q.dtype, 1.0))
        vc = None if v.flags.c_contiguous else np.empty(v.shape, v.dtype)
        sq, sk = {}, {}
        sc, want_bound = float(self.scale), self.bias is None

        def run(lo, hi):
            np.multiply(q[lo:hi], sc, out=qs[lo:hi])
            if vc is not None:
                _copy_rows(np, vc[lo:hi], v[lo:hi])
            if want_bound:
                sq[lo], sk[lo] = _max_sq_norm(np, qs[lo:hi]), _max_sq_norm(np, k[lo:hi])
        parallel.ranges(run, q.shape[0])
        bound = None
        if want_bound:
            bound = float(np.max(list(sq.values()))) ** 0.5 * float(np.max(list(sk.values()))) ** 0.5
        return qs, (v if vc is None else vc), bound

    def _forward_blocked(self, qs, kt, v, drop, shape, dt, bound):
        """The same forward, one cache-sized block of the first batch axis at a time: S = Q Kᵀ, its
        softmax and D V while the block's scores (~512 KiB) are in cache, instead of three passes of
        BLAS and softmax over the whole (…, Tq, Tk) tensor; on several threads each thread takes a
        range of blocks with BLAS on one thread (parallel.ranges). Measured (B 16, H 8, T 128, d 32,
        float32, one thread): forward 7.9 → 5.4 ms. ``bound``: the scores' bound (None with a bias)."""
        p = _score_buffer(np, shape, dt)
        unshifted = bound is not None and bound <= _UNSHIFTED_BOUND
        self.P = p
        self.M = m = self._dropout_mask(np, shape, dt)
        o = np.empty(shape[:-1] + (v.shape[-1],), dtype=np.result_type(p.dtype, v.dtype))
        bias, nd, step = self.bias, len(shape), _block_rows(shape, p.itemsize)

        def run(lo, hi):
            for i in range(lo, hi, step):
                j = min(i + step, hi)
                s = p[i:j]
                np.matmul(qs[i:j], kt[i:j], out=s)
                if unshifted:
                    _exp_normalize_rows(s, _cut(drop, i, j, nd))
                else:
                    if bias is not None:
                        s += _cut(bias, i, j, nd)
                    softmax_(s, _cut(drop, i, j, nd))
                np.matmul(s if m is None else s * m[i:j], v[i:j], out=o[i:j])
        parallel.ranges(run, shape[0])
        return o, p

    def _backward_blocked(self, q, k, v, qs, go, gp_ext, need_q, need_k, need_v):
        """The array backward one cache-sized block at a time (see :meth:`_forward_blocked`): gS of a
        block lives in one per-thread scratch block (no (…, Tq, Tk) gradient array at all)."""
        p, m = self.P, self.M
        step = _block_rows(p.shape, p.itemsize)
        sc = float(self.scale)
        gv = np.empty(v.shape, np.result_type(p.dtype, go.dtype)) if need_v and go is not None else None
        gdt = np.result_type(p.dtype, go.dtype if go is not None else p.dtype)
        gq = np.empty(q.shape, np.result_type(gdt, k.dtype)) if need_q else None
        gk = np.empty(k.shape, np.result_type(gdt, qs.dtype)) if need_k else None
        vt = _swap(v)
        nd = p.ndim

        def run(lo, hi):
            buf = np.empty((min(step, hi - lo),) + p.shape[1:], gdt) if (need_q or need_k) else None
            for i in range(lo, hi, step):
                j = min(i + step, hi)
                pb, mb = p[i:j], (None if m is None else m[i:j])
                if gv is not None:
                    np.matmul(_swap(pb if mb is None else pb * mb), go[i:j], out=gv[i:j])
                if need_q or need_k:
                    gs = buf[:j - i]
                    if go is not None:
                        np.matmul(go[i:j], vt[i:j], out=gs)
                        _softmax_backward_(gs, pb, mb, _cut(gp_ext, i, j, nd))
                    else:
                        np.copyto(gs, _cut(gp_ext, i, j, nd))
                        _softmax_backward_(gs, pb, None, None)
                    if gq is not None:
                        np.matmul(gs, k[i:j], out=gq[i:j])
                        gq[i:j] *= sc
                    if gk is not None:
                        np.matmul(_swap(gs), qs[i:j], out=gk[i:j])          # = scale · gSᵀ Q
        parallel.ranges(run, p.shape[0])
        return gq, gk, gv

    def backward(self, go, gp_ext):
        need_q, need_k, need_v = (x.requires_grad for x in self._inputs)
        if self._as_tensors:
            return self._backward_tensors(go, gp_ext, need_q, need_k, need_v)
        q, k, _ = self.inputs
        v, qs = self.V, self.QS
        xp = backend.get_array_module(q, k, v)
        p, m = self.P, self.M
        if (_blockable(xp, p.shape, qs, k, v) and (go is None or go.shape[:-2] == p.shape[:-2])
                and (gp_ext is None or gp_ext.shape == p.shape)):
            return self._backward_blocked(q, k, v, qs, go, gp_ext, need_q, need_k, need_v)
        gq = gk = gv = None
        if go is not None and need_v:
            gv = _mm(_swap(p if m is None else p * m), go)
        if need_q or need_k:
            if go is not None:
                vt = _swap(v)
                gshape = np.broadcast_shapes(go.shape[:-2], vt.shape[:-2]) + (go.shape[-2], vt.shape[-1])
                gs = (_mm(go, vt, out=_score_buffer(xp, gshape, np.result_type(go.dtype, vt.dtype)))
                      if xp is np else xp.matmul(go, vt))
                if gs.shape != p.shape:                # v had batch axes that P lacks: sum them
                    gs = _sum_to_array(gs, p.shape)
                # gS = P ⊙ (gP − Σ gP ⊙ P), gP = gs ⊙ M + gP_ext: in place, row blocks on the pool
                parallel.rows(_softmax_backward_, gs, p, m, gp_ext, work=4)
            else:
                gs = gp_ext.copy()
                parallel.rows(_softmax_backward_, gs, p, None, None, work=4)
            sc = float(self.scale)
            if need_q:
                gq = _scale_(_mm(gs, k), sc)
            if need_k:
                gk = _mm(_swap(gs), qs)                    # = scale · gSᵀ Q
        return gq, gk, gv

    def _backward_tensors(self, go, gp_ext, need_q, need_k, need_v):
        q, k, v = self.inputs
        m = self.M
        s = (q @ _swap(k)) * self.scale
        if self.bias is not None:
            s = s + self.bias
        p = MaskedSoftmax(self.mask)(s)
        d = p if m is None else p * m
        gq = gk = gv = None
        if go is not None and need_v:
            gv = _swap(d) @ go
        if need_q or need_k:
            gp = None
            if go is not None:
                gp = sum_to(go @ _swap(v), p.shape)
                if m is not None:
                    gp = gp * m
            if gp_ext is not None:
                gp = gp_ext if gp is None else gp + gp_ext
            gs = p * (gp - (gp * p).sum(axis=-1, keepdims=True))
            if need_q:
                gq = (gs @ k) * self.scale
            if need_k:
                gk = (_swap(gs) @ q) * self.scale
        return gq, gk, gv


def _add_tanh(h, a, b):
    """h ← tanh(a + b) (one block of rows). NumPy's own tanh: with its SIMD loops (NumPy 2.4 on the
    AVX-512 development VM) 79 µs for (32, 1, 50, 128) float32, against 166–214 µs for the exp form
    2 / (1 + e^(−2h)) − 1 that this kernel used to take (float64: 423 against 433 µs)."""
    np.add(a, b, out=h)
    np.tanh(h, out=h)


def _square(h):
    """h ⊙ h, row blocks on the pool for large NumPy arrays."""
    if not parallel.active(h):
        return h * h
    out = np.empty_like(h)
    parallel.rows(lambda x, o: np.multiply(x, x, out=o), h, out, tail=0)
    return out


class AdditiveScore(Function):
    """Additive (Bahdanau / Luong-concat) score, fused: qp (..., Tq, h), kp (..., Tk, h), v (h,)
    -> s (..., Tq, Tk) with

        H_ij = tanh(qp_i + kp_j)   (..., Tq, Tk, h)   (broadcast, no concatenation of pairs)
        s_ij = vᵀ H_ij

    Backward: G = (gs ⊗ v) ⊙ (1 − H²);  gqp = Σ_j G_ij,  gkp = Σ_i G_ij,  gv = Σ_ij gs_ij H_ij
    (gv is one GEMV over the flattened pairs). Double backward: H is recomputed on Tensors.
    """

    def forward(self, qp, kp, v):
        xp = backend.get_array_module(qp, kp, v)
        a, b = xp.expand_dims(qp, -2), xp.expand_dims(kp, -3)
        if xp is np:                                  # H = tanh(a + b) as row blocks on the pool
            h = np.empty(np.broadcast_shapes(a.shape, b.shape), dtype=np.result_type(a, b))
            parallel.rows(_add_tanh, h, a, b, tail=0)
        else:
            h = a + b
            xp.tanh(h, out=h)
        self.H = h
        return xp.matmul(h, v)

    def backward(self, gs):
        need_q, need_k, need_v = (x.requires_grad for x in self._inputs)
        if self._as_tensors:
            qp, kp, v = self.inputs
            h = (qp.expand_dims(-2) + kp.expand_dims(-3)).tanh()
            gsx = gs.expand_dims(-1)
            gv = (h * gsx) if need_v else None          # (..., Tq, Tk, h): the engine sums to (h,)
            g = None
            if need_q or need_k:
                g = gsx * v * (1 - h * h)
            return (g.sum(axis=-2) if need_q else None, g.sum(axis=-3) if need_k else None, gv)
        qp, kp, v = self.inputs
        h = self.H
        xp = backend.get_array_module(h)
        n = h.shape[-1]
        gq = gk = gv = None
        if need_v:
            gv = h.reshape(-1, n).T @ gs.reshape(-1)
        if need_q or need_k:                            # G = (gs ⊗ v) ⊙ (1 − H²), summed without
            h2 = _square(h)                             # building G: Σ_j gs_ij (1 − H²_ij)
            if need_q:                                  #   = Σ_j gs_ij − Σ_j gs_ij H²_ij
                gq = _one_minus_contract(xp, "...ij,...ijh->...ih", gs, h2, gs.sum(axis=-1), v)
            if need_k:                                  # Σ_i likewise
                gk = _one_minus_contract(xp, "...ij,...ijh->...jh", gs, h2, gs.sum(axis=-2), v)
        return gq, gk, gv


def _one_minus_contract(xp, spec, gs, h2, gs_sum, v):
    """(Σ gs − Σ gs ⊙ H²) ⊙ v over one index of the pairs, for :class:`AdditiveScore`'s backward.

    The contraction is one einsum (no (…, Tq, Tk, h) product array; its result is then updated in
    place). Measured (float32, B 32, Tk 50, h 128, one thread): the keys' gradient at Tq = 1 (a
    decoder step) 254 → 140 µs, and at Tq = 50 14.3 → 6.9 ms (the product array was 41 MB); the
    query's at Tq = 50 5.3 → 2.1 ms (it was B·Tq matrix–vector products)."""
    g = xp.einsum(spec, gs, h2)
    xp.subtract(gs_sum[..., None], g, out=g)
    g *= v
    return g


class SplitHeads(Function):
    """Cut a fused projection into per-head tensors: y (B·T, Σᵢ H·nᵢ) → [Yᵢ (B, H, T, nᵢ)], with

        Yᵢ[b, h, t, :] = y[b·T + t, oᵢ + h·nᵢ : oᵢ + (h + 1)·nᵢ],    oᵢ = Σ_{j<i} H·nⱼ

    the textbook ``split(y, …, axis=1)`` → ``reshape(B, T, H, nᵢ)`` → ``transpose(0, 2, 1, 3)`` as one
    node. Forward returns views (no copy; BLAS takes each head's (T, nᵢ) rows with their stride).
    Backward writes every gYᵢ straight into its columns of ONE (B·T, Σ) gradient: one strided copy
    instead of a reshape copy per part and a concatenation (zeros for parts without a gradient),
    each moving whole rows of nᵢ items (:func:`~tinyattn.kernels.rnn._copy_rows`). Measured (B 16,
    T 128, H 8, three parts of n 32, float32, one thread): the backward ~1.7 → ~0.6 ms; whole rows
    instead of row blocks on the pool: B 32, pool on 2 threads, 6.5 → ~1.5 ms (profile; the pool's
    second thread, woken per part, cost more than it saved).
    """

    def __init__(self, batch, steps, heads, sizes):
        self.B, self.T, self.H, self.sizes = int(batch), int(steps), int(heads), tuple(int(n) for n in sizes)

    def _cuts(self):
        o = 0
        for n in self.sizes:
            yield o, n
            o += self.H * n

    def forward(self, y):
        B, T, H = self.B, self.T, self.H
        if y.ndim != 2 or y.shape[0] != B * T or y.shape[1] != H * sum(self.sizes):
            raise ValueError(f"split_heads: expected y of shape ({B * T}, {H * sum(self.sizes)}) = (B·T, "
                             f"H·Σn) for B {B}, T {T}, H {H}, sizes {self.sizes}; got {tuple(y.shape)}")
        return tuple(y[:, o:o + H * n].reshape(B, T, H, n).transpose(0, 2, 1, 3) for o, n in self._cuts())

    def backward(self, *gys):
        B, T, H = self.B, self.T, self.H
        if self._as_tensors:
            from ..functions import concat
            parts = [(g if g is not None else _zeros_like_tensor(self, B, H, T, n)).transpose(0, 2, 1, 3)
                     .reshape(B * T, H * n) for g, (o, n) in zip(gys, self._cuts())]
            return concat(parts, axis=1) if len(parts) > 1 else parts[0]
        y = self.inputs[0]
        xp = backend.get_array_module(y)
        dt = np.result_type(*[g.dtype for g in gys if g is not None])
        gy = xp.empty((B, T, H * sum(self.sizes)), dtype=dt)
        for g, (o, n) in zip(gys, self._cuts()):
            dst = gy[:, :, o:o + H * n].reshape(B, T, H, n)
            if g is None:
                dst[...] = 0
            else:
                _copy_rows(xp, dst, g.transpose(0, 2, 1, 3))   # whole rows of n items (see _contiguous)
        return gy.reshape(B * T, -1)


def _zeros_like_tensor(fn, B, H, T, n):
    from ..autograd import Tensor
    y = fn.inputs[0]
    return Tensor(backend.get_array_module(y.data).zeros((B, H, T, n), dtype=y.dtype))
