"""Fused recurrent layers (LSTM, GRU) as Functions with hand-written backward passes.

Written as an unrolled graph of elementary ops, an LSTM costs dozens of graph nodes per time step.
Here a single step (``LSTMCellFn``, ``GRUCellFn``) is ONE Function: one small matmul plus a handful
of in-place elementwise passes. A whole layer over a sequence (``LSTMSequenceFn``,
``GRUSequenceFn``) is also ONE Function: the forward loop over T steps, then back-propagation
through time (BPTT) in one backward loop. The work that does not depend on the recurrence is done
outside the loops, for all T·B rows at once:

    forward:   xk = x · K + b                 one (T·B, d)·(d, n·u) matmul before the loop (GRU)
    backward:  gx = gz · Kᵀ,  gK = xᵀ · gz,  gR = Σₜ hₜ₋₁ᵀ gzₜ,  gb = Σ gz     after the loop

Everything runs time-major (T, B, ...) so that ``xk[t]`` is a contiguous (B, n·u) block.
σ is computed as 1/(1 + e⁻ᶻ): the kernels are pre-multiplied by −1 on the sigmoid gate blocks (and
by −2 on the LSTM cell's g block, using tanh(z) = 2σ(2z) − 1), so one exp serves every gate of a step.

The LSTM over a sequence (``LSTMSequenceFn``, and ``BiLSTMSequenceFn`` for both directions of a
bidirectional layer in one loop) is laid out differently, for speed: feature-major (units ×
directions × batch) with the input projection inside each step's matmul; see :class:`_LSTMLoop`.

Shapes: B batch, T time steps, d input features, u units. Gate blocks follow Keras (column blocks
of width u): LSTM  i, f, c(g), o;   GRU  z, r, h.

Masks (``mask`` (T, B) boolean, True = a real step), Keras 3's rule: a masked step leaves the state
unchanged, hₜ = hₜ₋₁ (and cₜ = cₜ₋₁), and its output repeats the previous *output*, which is zero
before the first real step (it is not the initial state); with ``zero_output_for_mask`` (Keras's RNN
option, which Bidirectional turns on with return_sequences) a masked step outputs zeros instead.

The backward passes here work on arrays only (they save intermediate arrays from the forward pass),
so these Functions have no double backward: ``create_graph=True`` through them raises an error.
"""
from collections import OrderedDict
import sys
import threading
import weakref

import numpy as np

from ..autograd import Function
from .. import backend
from ..functions.masks import as_mask

__all__ = ["LSTMCellFn", "LSTMSequenceFn", "BiLSTMSequenceFn", "GRUCellFn", "GRUSequenceFn", "lstm_sequence", "gru_sequence",
           "release_buffers", "buffer_pool_bytes", "set_buffer_pool_limit"]


class _Workspace:
    """Reusable NumPy buffers for the big arrays of a sequence Function (gates and states of every
    step, their derivatives), keyed by (shape, dtype).

    Why: freeing a few megabytes at the end of each training step lets the C allocator hand the
    memory back to the OS, and fresh memory costs a page fault per 4 KiB on first touch (measured at
    up to a third of an LSTM training step, depending on the allocator's heuristics). A buffer is handed out again only when nothing else refers to it
    (its reference count is back to the pool's own), so an output or a saved array that is still
    alive is never overwritten. At most ``per_key`` buffers per shape, ``max_keys`` shapes and
    ``max_bytes`` bytes in all are kept (least recently used shapes are dropped first; a buffer
    larger than ``max_bytes`` is never kept). CuPy has its own memory pool, so GPU arrays are simply
    allocated (and so are all arrays on a free-threaded Python, where reference counts are not exact).

    Lifetime: the pool is emptied by :func:`release_buffers`, and automatically when the last
    recurrent layer that uses it (``tinyattn.nn.LSTM`` / ``GRU``, see :func:`register_user`) is
    garbage-collected. Buffers still used by a live graph stay alive until that graph goes.
    """

    def __init__(self, per_key=4, max_keys=16, max_bytes=256 << 20):
        self.per_key, self.max_keys, self.max_bytes = per_key, max_keys, max_bytes
        self.pool = OrderedDict()
        self.nbytes = 0
        self.users = 0
        self.lock = threading.Lock()

    def _drop_oldest(self):
        _, bufs = self.pool.popitem(last=False)
        self.nbytes -= sum(b.nbytes for b in bufs)

    def empty(self, xp, shape, dtype):
        if xp is not np or not _POOL_SAFE:
            return xp.empty(shape, dtype=dtype)
        key = (tuple(shape), np.dtype(dtype))
        with self.lock:
            bufs = self.pool.pop(key, [])
            self.pool[key] = bufs                       # most recently used last
            if len(self.pool) > self.max_keys:
                self._drop_oldest()
            for b in bufs:
                if sys.getrefcount(b) == 3:             # held only by: the list, b, getrefcount's argument
                    return b
            b = np.empty(shape, dtype=dtype)
            if len(bufs) < self.per_key and b.nbytes <= self.max_bytes:
                while self.nbytes + b.nbytes > self.max_bytes and len(self.pool) > 1:
                    self._drop_oldest()                 # make room: forget the least recently used shapes
                if self.nbytes + b.nbytes <= self.max_bytes:
                    bufs.append(b)
                    self.nbytes += b.nbytes
            return b

    def clear(self):
        with self.lock:
            freed = self.nbytes
            self.pool.clear()
            self.nbytes = 0
            return freed

    def _user_gone(self):
        with self.lock:
            self.users -= 1
            last = self.users <= 0
        if last:
            self.clear()


def _refcounts_as_assumed():
    """Check, once, that ``sys.getrefcount`` counts as ``_Workspace.empty`` assumes: 3 for a buffer
    held only by the pool's list (list, loop variable, call argument) and 4 once someone else holds it.
    CPython may count differently (3.14 can borrow references, a free-threaded build is inexact):
    then the pool is off and every buffer is freshly allocated, never wrongly shared."""
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        return False
    bufs = [np.empty(1)]
    free = [sys.getrefcount(b) for b in bufs][0]
    held = bufs[0]                                   # noqa: F841  (a second owner)
    busy = [sys.getrefcount(b) for b in bufs][0]
    return free == 3 and busy == 4


_POOL_SAFE = _refcounts_as_assumed()
_workspace = _Workspace()


def release_buffers():
    """Empty the LSTM/GRU buffer pool now; returns the number of bytes it held.

    Arrays still referenced elsewhere (a graph not yet backpropagated, an output) stay alive until
    they are no longer used; everything else is returned to the allocator. The pool also empties by
    itself when the last ``tinyattn.nn`` recurrent layer is garbage-collected."""
    return _workspace.clear()


def buffer_pool_bytes():
    """Bytes of NumPy buffers the LSTM/GRU pool currently keeps for reuse."""
    return _workspace.nbytes


def set_buffer_pool_limit(max_bytes):
    """Cap the LSTM/GRU buffer pool at ``max_bytes`` (default 256 MiB; 0 turns pooling off);
    shapes used least recently are dropped to fit. Returns the previous cap."""
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
        raise ValueError(f"set_buffer_pool_limit: max_bytes must be a non-negative integer, got {max_bytes!r}")
    ws = _workspace
    with ws.lock:
        old, ws.max_bytes = ws.max_bytes, int(max_bytes)
        while ws.nbytes > ws.max_bytes and ws.pool:
            ws._drop_oldest()
    return old


def register_user(owner):
    """Count ``owner`` (a recurrent layer) as a user of the buffer pool; when the last registered
    user is garbage-collected, the pool is emptied (:func:`release_buffers`)."""
    with _workspace.lock:
        _workspace.users += 1
    weakref.finalize(owner, _workspace._user_gone)


def _quiet():
    """exp(−z) may overflow to inf for very negative z; 1/(1 + inf) = 0 is then the right σ."""
    return np.errstate(over="ignore")


def _array_only(fn):
    if fn._as_tensors:
        raise NotImplementedError(f"{type(fn).__name__}: double backward (create_graph=True) is not "
                                  f"supported; this fused recurrent cell has an array-only backward")


def _check_mask(mask, T, B, name):
    if mask is None:
        return None
    if tuple(mask.shape) != (T, B):
        raise ValueError(f"{name}: time-major mask must have shape (T, B) = {(T, B)}, got {tuple(mask.shape)}")
    return mask


# ------------------------------------------------------------------------------------------------
# LSTM
# ------------------------------------------------------------------------------------------------
def _lstm_scale(xp, u, dtype):
    """−s (4u,): −1 on the i, f, o column blocks and −2 on the g block (see :func:`_lstm_activate`)."""
    s = xp.full((4 * u,), -1, dtype=dtype)
    s[2 * u:3 * u] = -2
    return s


def _lstm_activate(xp, a, c, c_new, tc, h_new):
    """Finish one LSTM step in place, given ``a`` (B, 4u) = −s⊙z (−z on i, f, o and −2z on g).

    One exp serves all four gates: 1/(1 + eᵃ) is σ(z) on the i, f, o blocks and σ(2z) on the g
    block, and tanh(z) = 2σ(2z) − 1. (An exp costs about half a tanh in NumPy.) Then
        c' = f⊙c + i⊙g → ``c_new``,   tanh(c') → ``tc``,   h' = o⊙tanh(c') → ``h_new``   (B, u)
    and ``a`` holds the activations [i f g o].
    """
    u = c.shape[-1]
    xp.exp(a, out=a)
    a += 1
    xp.reciprocal(a, out=a)
    g = a[:, 2 * u:3 * u]
    g *= 2
    g -= 1
    i, f, o = a[:, :u], a[:, u:2 * u], a[:, 3 * u:]
    xp.multiply(f, c, out=c_new)
    xp.multiply(i, g, out=tc)                 # tc as scratch before it gets tanh(c')
    c_new += tc
    xp.tanh(c_new, out=tc)
    xp.multiply(o, tc, out=h_new)


def _lstm_derivs(xp, A, D=None):
    """Gate derivatives from the activations A (…, 4u): σ(1 − σ) on i, f, o and 1 − g² on g
    (written into ``D`` when given)."""
    u = A.shape[-1] // 4
    D = xp.subtract(1, A, out=D)
    D *= A
    Dg = D[..., 2 * u:3 * u]
    xp.multiply(A[..., 2 * u:3 * u], A[..., 2 * u:3 * u], out=Dg)
    xp.subtract(1, Dg, out=Dg)
    return D


def _lstm_backprop(xp, gh, gc, a, c, tc, do, dz, scratch):
    """BPTT through one LSTM step, in place. Shapes: (B, u) and (B, 4u).

    gh, gc: gradients w.r.t. h' and c'; a: activations [i f g o]; c: the previous cell state;
    tc = tanh(c'); do = o⊙(1 − tanh²c'); dz: on entry the gate derivatives, on exit the gradient
    w.r.t. the pre-activations z;  ``gc`` becomes the gradient w.r.t. the previous c:
        gc ← gc + gh⊙do
        gz = [gc⊙g,  gc⊙c,  gc⊙i,  gh⊙tanh c'] ⊙ [σ'(i), σ'(f), tanh'(g), σ'(o)]
        gc ← gc⊙f          (g h_prev = gz·Rᵀ, g xk = gz, gR = h_prevᵀ·gz are left to the caller)
    """
    u = gh.shape[-1]
    i, f, g = a[:, :u], a[:, u:2 * u], a[:, 2 * u:3 * u]
    xp.multiply(gh, do, out=scratch[:, :u])
    gc += scratch[:, :u]
    xp.multiply(gc, g, out=scratch[:, :u])
    xp.multiply(gc, c, out=scratch[:, u:2 * u])
    xp.multiply(gc, i, out=scratch[:, 2 * u:3 * u])
    xp.multiply(gh, tc, out=scratch[:, 3 * u:])
    dz *= scratch
    gc *= f


class LSTMCellFn(Function):
    """One fused LSTM step (Keras gate order i, f, c, o).

    Inputs: xk (B, 4u) — this step's input projection x·K + b; h, c (B, u); R (u, 4u).
        z = xk + h·R,  i = σ(zᵢ), f = σ(z_f), g = tanh(z_g), o = σ(z_o)
        c' = f⊙c + i⊙g,   h' = o⊙tanh(c')                     Outputs: (h', c'), each (B, u).
    Backward (array-only, no double backward), see :func:`_lstm_backprop`:
        g xk = gz,  g h = gz·Rᵀ,  g c = (gc' + gh'⊙o⊙(1 − tanh²c'))⊙f,  gR = hᵀ·gz.
    """

    def forward(self, xk, h, c, R):
        xp = backend.get_array_module(xk, h, c, R)
        B, u = h.shape
        if xk.shape != (B, 4 * u) or c.shape != (B, u) or R.shape != (u, 4 * u):
            raise ValueError(f"lstm cell: expected xk (B, 4u), h and c (B, u), R (u, 4u); got xk "
                             f"{tuple(xk.shape)}, h {tuple(h.shape)}, c {tuple(c.shape)}, R {tuple(R.shape)}")
        a = h @ R
        a += xk
        a *= _lstm_scale(xp, u, a.dtype)
        self.tc = xp.empty((B, u), dtype=xk.dtype)
        c_new, h_new = xp.empty_like(self.tc), xp.empty_like(self.tc)
        with _quiet():
            _lstm_activate(xp, a, c, c_new, self.tc, h_new)
        self.a = a
        return h_new, c_new

    def backward(self, gh, gc):
        _array_only(self)
        xk, h, c, R = self.inputs
        xp = backend.get_array_module(xk)
        u = h.shape[-1]
        gh = xp.zeros_like(h) if gh is None else gh
        gc = xp.zeros_like(c) if gc is None else gc.copy()
        gz = _lstm_derivs(xp, self.a)
        do = self.a[:, 3 * u:] * (1 - self.tc * self.tc)
        _lstm_backprop(xp, gh, gc, self.a, c, self.tc, do, gz, xp.empty_like(gz))
        return gz, gz @ R.T, gc, h.T @ gz


def _copy_rows(xp, dst, src):
    """``dst[...] = src`` for two arrays of the same shape whose last axis (a batch row of B items) is
    contiguous in both, but ordered differently otherwise (a re-layout such as (T, 4u, B) → (4u, T, B)).

    NumPy copies such arrays row by row with a fixed cost per row; viewed as one opaque item per row
    (a void scalar of B·itemsize bytes) it moves whole rows at once: measured 0.16 ms instead of
    0.31–0.38 ms for 50 × 512 rows of 32 float32. Other cases (CuPy, other strides) copy plainly."""
    if (xp is np and src.shape == dst.shape and src.ndim and src.dtype == dst.dtype
            and src.strides[-1] == src.itemsize and dst.strides[-1] == dst.itemsize):
        row = np.dtype((np.void, src.shape[-1] * src.itemsize))
        np.copyto(dst.view(row)[..., 0], src.view(row)[..., 0])
    else:
        dst[...] = src


def _fm_gates(W):
    """Keras's gate blocks [i f g o] on the last axis (…, 4u) → the feature-major kernel's order
    [o i f g]: the sigmoid gates o, i, f are adjacent (one pass activates them) and so are i, f, g
    (the three gradients that are gc times something: one pass computes them)."""
    u = W.shape[-1] // 4
    xp = backend.get_array_module(W)
    return xp.concatenate([W[..., 3 * u:], W[..., :3 * u]], axis=-1)


def _keras_gates(G):
    """Inverse of :func:`_fm_gates` on the last axis: [o i f g] → [i f g o]."""
    u = G.shape[-1] // 4
    xp = backend.get_array_module(G)
    return xp.concatenate([G[..., u:], G[..., :u]], axis=-1)


class _LSTMLoop(Function):
    """The engine of :class:`LSTMSequenceFn` (n = 1 direction) and :class:`BiLSTMSequenceFn` (n = 2):
    n LSTM layers over the same sequence x (T, B, d), each reading it forwards or backwards in time
    (``reverse``), in ONE time loop, feature-major.

    The math (Keras's LSTM; per direction k, xₖ = x or x reversed in time, gate order [o i f g] here):
        zₜ = [Rₖ; Kₖ; bₖ]ᵀ·[hₜ₋₁; xₖ[t]; 1]                   (4u, B): ONE matmul per step and direction
        o, i, f = σ(z_o, z_i, z_f),  g = tanh(z_g)
        cₜ = f⊙cₜ₋₁ + i⊙g,   hₜ = o⊙tanh(cₜ),   outₜ = hₜ
        with ``mask`` (T, B) (in x's time order; a reversed direction reads it reversed), Keras's rule:
            hₜ = m⊙h' + (1−m)⊙hₜ₋₁ (c alike), outₜ = m⊙h' + (1−m)⊙outₜ₋₁, out₋₁ = 0
            (or outₜ = m⊙h' with ``zero_output_for_mask``, Keras's option, forced on by Bidirectional)
    Backward (BPTT, array-only, no double backward). First, for all steps at once, the factors of gz
    that do not depend on the incoming gradient:
        DO = o⊙(1−tanh²c),  P_o = tanh(c)⊙o(1−o),  P_i = g⊙i(1−i),  P_f = cₜ₋₁⊙f(1−f),  P_g = i⊙(1−g²)
    then for t = T−1 … 0, gh and gc being the gradients reaching hₜ, cₜ:
        gc ← gc + gh⊙DO;   gz = [gh⊙P_o, gc⊙P_i, gc⊙P_f, gc⊙P_g];   gc ← gc⊙f
        [g hₜ₋₁; g xₖ[t]] = [Rₖ; Kₖ]·gz          (ONE matmul per step and direction)
        (with a mask: gh' = m⊙(gh + gout_acc), gc' = m⊙gc, and the masked part carried past the step)
    and after the loop ONE batched matmul over all T·B columns gives every weight gradient:
        [gRₖ; gKₖ; gbₖ] = Σₜ [hₜ₋₁; xₖ[t]; 1]·gzₖ[t]ᵀ   (computed as gz·Sᵀ, gz laid out (4u, T·B)).

    Layout and what it buys. What makes a small LSTM step slow in NumPy is less the arithmetic than
    the fixed price of each call, several times what 4 000 elements cost, and that price depends on
    the layout (measured, float32, 4 096 elements: ~1.2 µs for a contiguous array, ~2.7 µs for two
    contiguous halves with a gap, ~2.7 µs for the (B, u) column block of a (B, 4u) array):
      * feature-major, units × directions × batch: a step's pre-activations are ONE array
        (4u, n, B), each gate block (u, n, B) is contiguous for both directions at once, and so are
        the states c, tanh(c) (u, n, B); every elementwise operation of a step is one call on a
        contiguous array (the matmuls write (n, 4u, B); the tanh reads them into (4u, n, B));
      * σ(z) = (1 + tanh(z/2))/2 with the ½ folded into the weights: one tanh and two passes
        activate all four gates; [o i f] are adjacent for those two passes;
      * the input projection rides in each step's matmul ([R; K; b] times [hₜ₋₁; xₜ; 1], the bias as
        a row of ones) and g x in the backward's ([R; K]·gz), so no separate passes add them;
        HX (T + 1, u + d + 1, n, B) holds [hₜ₋₁; xₖ[t]; 1] of every step: HX[t, :, k] is the
        forward's matmul operand (rows of stride n·B, taken by BLAS as they are), HX[t + 1, :u] the
        new state h (u, n, B), written contiguously; the backward re-lays HX out once as the operand
        S (n, u + d + 1, T·B) of the weight gradients (measured: writing h straight into that layout
        each step cost more, 0.5–0.7 ms of a BiLSTM step, than the one re-layout, ~0.1 ms);
      * the gz-independent factors P for all steps at once, in gate-major copies (bulk passes over
        contiguous arrays), leaving six elementwise calls and one matmul per backward step;
      * the two re-layouts into the weight-gradient operands (gz and HX to (n, ·, T·B)) move whole
        batch rows (:func:`_copy_rows`, 2× faster than NumPy's element copy of 32-float rows);
      * big arrays come from the buffer pool (:class:`_Workspace`): no page faults per step.
    Measured (x (T, B, d) = (50, 32, 32), float32, one thread, the training step forward + backward
    of ``nn.LSTM(128)`` / ``nn.Bidirectional(nn.LSTM(64))``, rounds interleaved with the previous
    kernels in one process, shared 2-core machine at load 2.4–3, median of per-round ratios, two
    runs): LSTM(128) 0.86–0.87× the previous batch-major kernel ((B, 4u) gate blocks, a separate
    input projection), BiLSTM(64) 0.86–0.89× the previous two-direction kernel ((n, 4u, B) blocks);
    the GEMMs (~9 ms of a ~14 ms LSTM(128) step, ~5 ms of a ~10 ms BiLSTM step, at 80–100 GFLOPS)
    are the floor: ~786 and ~470 MFLOP, none of which can be dropped. What did not pay (measured,
    reverted): the factors P computed per step inside the loop (three times the calls), P in a
    per-step-stacked layout (bulk passes over strided slabs cost more than the calls saved), gz
    written in the loop straight into the (4u, T·B) layout of the final matmul (32-element rows),
    matmuls writing a strided ``out`` such as (u + d, n, B) (slower than a contiguous result).

    Saved for backward: A (T, 4u, n, B) activations [o i f g]; HX (T+1, u+d+1, n, B) as above (its
    h rows: the states, index 0 the initial state); C (T+1, u, n, B) cell states (index 0: the initial state); TC (T, u, n, B) = tanh(cₜ).
    """

    def __init__(self, mask, zero_output_for_mask, reverse):
        self.mask, self.zero_output = mask, zero_output_for_mask
        self.reverse = tuple(bool(r) for r in reverse)

    def _forward(self, xp, x, h0s, c0s, Ks, Rs, bs):
        """Run the loop; returns out, H (views (T, u, n, B) and (T+1, u, n, B)) and C (T+1, u, n, B)."""
        T, B, d = x.shape
        n, u = len(Ks), Rs[0].shape[0]
        dt = x.dtype
        ws = _workspace                                # big arrays from the pool: fresh pages fault
        nb = 1 if bs else 0
        nr = u + d + nb                                # rows of [hₜ₋₁; xₖ[t]; 1]
        # HX[t, :, k] = [hₜ₋₁; xₖ[t]; 1] (nr, B): step t's matmul operand for direction k (rows of
        # stride n·B, taken by BLAS as they are); its h rows HX[t, :u] are the states, (u, n, B) each
        HX = ws.empty(xp, (T + 1, nr, n, B), dt)
        for k, r in enumerate(self.reverse):
            HX[:T, u:u + d, k] = (x[::-1] if r else x).transpose(0, 2, 1)
        if nb:
            HX[:T, u + d] = 1
        H = HX[:, :u]                                  # (T+1, u, n, B) view: H[t+1] = the states hᵀ after step t
        # W (n, nr, 4u) = [R; K; b], gate blocks in the order [o i f g], scaled: written block by block
        # (no transposed copy: measured 0.06 ms vs 0.33 ms for u = 128; BLAS takes Wᵀ as a view)
        W = xp.empty((n, nr, 4 * u), dtype=dt)
        for k in range(n):
            for dst, src in enumerate((3, 0, 1, 2)):   # Keras's [i f g o] → [o i f g]
                s, cols, kc = (1 if dst == 3 else 0.5), slice(dst * u, (dst + 1) * u), slice(src * u, (src + 1) * u)
                xp.multiply(Rs[k][:, kc], s, out=W[k, :u, cols])
                xp.multiply(Ks[k][:, kc], s, out=W[k, u:u + d, cols])
                if nb:
                    xp.multiply(bs[k][kc], s, out=W[k, u + d, cols])
        WT = W.transpose(0, 2, 1)                      # (n, 4u, nr)
        A = ws.empty(xp, (T, 4 * u, n, B), dt)         # scaled z per step; becomes the activations
        C = ws.empty(xp, (T + 1, u, n, B), dt)
        TC = ws.empty(xp, (T, u, n, B), dt)            # tanh(c') of each step
        for k in range(n):
            H[0, :, k], C[0, :, k] = h0s[k].T, c0s[k].T
        M = None
        if self.mask is not None:                      # (T, n, B): each direction's mask in its step order
            M = xp.stack([self.mask[::-1] if r else self.mask for r in self.reverse], axis=1)
            out = xp.zeros((T, u, n, B), dtype=dt)
        else:
            out = H[1:]
        Z = xp.empty((n, 4 * u, B), dtype=dt)
        for t in range(T):
            a = A[t]
            xp.matmul(WT, HX[t].transpose(1, 0, 2), out=Z)   # the input projection rides in the recurrent matmul
            xp.tanh(Z.transpose(1, 0, 2), out=a)       # (n, 4u, B) → (4u, n, B) on the way
            s = a[:3 * u]                              # o, i, f: σ(z) = (1 + tanh(z/2)) / 2
            s *= 0.5
            s += 0.5
            o, i, f, g = a[:u], a[u:2 * u], a[2 * u:3 * u], a[3 * u:]
            c_new, tc, h_new = C[t + 1], TC[t], H[t + 1]
            xp.multiply(f, C[t], out=c_new)
            xp.multiply(i, g, out=tc)                  # tc as scratch before it gets tanh(c')
            c_new += tc
            xp.tanh(c_new, out=tc)
            xp.multiply(o, tc, out=h_new)
            if M is not None:
                keep = M[t][None]                      # (1, n, B): True = a real step
                out[t] = xp.where(keep, h_new, out[t - 1] if t and not self.zero_output else 0)
                xp.copyto(h_new, H[t], where=~keep)    # masked: carry the state through
                xp.copyto(c_new, C[t], where=~keep)
        self.saved, self.M = (A, HX, C, TC), M
        return out, H, C

    def _backward(self, xp, x, Ks, Rs, has_b, gouts, ghs, gcs, need_x, need_w):
        """BPTT. gouts (T, B, u), ghs, gcs (B, u): per direction, None = 0. need_w[k]: (K, R, b) flags.
        Returns gx (or None), gh, gc (lists of (B, u)), gK, gR, gb (lists; None where not needed)."""
        A, HX, C, TC = self.saved
        T, u, n, B = TC.shape
        d = x.shape[-1]
        dt = x.dtype
        ws = _workspace

        def stacked(shape, gs):                        # the directions' gradients, feature-major; None = 0
            if all(g is None for g in gs):
                return None
            s = ws.empty(xp, shape, dt)
            for k, g in enumerate(gs):
                s[..., k, :] = 0 if g is None else xp.swapaxes(g, -1, -2)
            return s

        gh = stacked((u, n, B), ghs)
        gh = xp.zeros((u, n, B), dtype=dt) if gh is None else gh
        gc = stacked((u, n, B), gcs)
        gc = xp.zeros((u, n, B), dtype=dt) if gc is None else gc
        gout = stacked((T, u, n, B), gouts)
        # the gradient-independent factors of gz, for all steps at once, gate-major (4, T, u, n, B):
        # the gate blocks of A are copied out first so that every bulk pass is over contiguous arrays
        # (measured: the passes straight over A's strided gate blocks cost more than the copies)
        P = ws.empty(xp, (4,) + TC.shape, dt)
        for j in range(4):
            P[j] = A[:, j * u:(j + 1) * u]             # the activations o, i, f, g
        Po, Pi, Pf, Pg = P
        DO = xp.multiply(TC, TC, out=ws.empty(xp, TC.shape, dt))
        xp.subtract(1, DO, out=DO)
        DO *= Po                                       # DO = o⊙(1 − tanh²c')
        tmp = ws.empty(xp, TC.shape, dt)
        xp.subtract(1, Po, out=tmp)
        Po *= tmp
        Po *= TC                                       # P_o = tanh(c')⊙o(1 − o)
        xp.subtract(1, Pf, out=tmp)
        Pf *= tmp
        Pf *= C[:T]                                    # P_f = c⊙f(1 − f)
        xp.subtract(1, Pi, out=tmp)
        tmp *= Pi
        tmp *= Pg                                      # P_i = g⊙i(1 − i), for now in tmp
        Pg *= Pg
        xp.subtract(1, Pg, out=Pg)
        Pg *= Pi                                       # P_g = i⊙(1 − g²)
        Pi[...] = tmp
        P3 = P[1:]                                     # P_i, P_f, P_g: (3, T, u, n, B)
        GZ = ws.empty(xp, A.shape, dt)                 # gz per step, [o i f g]
        GZ3 = GZ[:, u:].reshape(T, 3, u, n, B).transpose(1, 0, 2, 3, 4)   # (3, T, u, n, B) view
        RK = _fm_gates(xp.stack(Rs))                   # (n, u, 4u): g hₜ₋₁ = R·gz
        if need_x:                                     # and g xₖ[t] = K·gz in the same matmul
            RK = xp.concatenate([RK, _fm_gates(xp.stack(Ks))], axis=1)
        GHX = ws.empty(xp, (T, n, RK.shape[1], B), dt)  # [g hₜ₋₁; g xₖ[t]] of each step
        tmp = xp.empty((u, n, B), dtype=dt)
        M = self.M
        if M is not None:
            mf = M.astype(dt)[:, None]                 # (T, 1, n, B) as 1.0 / 0.0
            gacc = xp.zeros((u, n, B), dtype=dt)       # output gradient carried back through masked steps
        ghbuf = xp.empty((u, n, B), dtype=dt)
        for t in range(T - 1, -1, -1):
            if M is None:
                if gout is not None:
                    gh = xp.add(gh, gout[t], out=ghbuf)   # (u, n, B) contiguous from here on
                ghn, gcn = gh, gc
            else:
                m = mf[t]
                if gout is not None:
                    gacc += gout[t]
                ghn, gcn = m * (gh + gacc), m * gc
            xp.multiply(ghn, DO[t], out=tmp)
            gcn += tmp
            xp.multiply(ghn, Po[t], out=GZ[t, :u])
            xp.multiply(gcn, P3[:, t], out=GZ3[:, t])
            gcn *= A[t, 2 * u:3 * u]                   # f
            xp.matmul(RK, GZ[t].transpose(1, 0, 2), out=GHX[t])
            if M is None:
                gh = GHX[t, :, :u].transpose(1, 0, 2)  # (u, n, B) view
            else:
                gh = GHX[t, :, :u].transpose(1, 0, 2) + (1 - m) * gh
                gc = gcn + (1 - m) * gc
                gacc *= 0 if self.zero_output else 1 - m
        # over all T·B columns at once, in loop order: gz as (n, 4u, T·B)
        GZc = ws.empty(xp, (n, 4 * u, T, B), dt)
        _copy_rows(xp, GZc, GZ.transpose(2, 1, 0, 3))
        GZc = GZc.reshape(n, 4 * u, T * B)
        gx = None
        if need_x:                                     # gx = Σₖ g xₖ, in x's time order
            for k, r in enumerate(self.reverse):
                gk = GHX[::-1, k, u:] if r else GHX[:, k, u:]
                gx = gk if gx is None else xp.add(gx, gk)
            gx = gx.transpose(0, 2, 1)
        gK, gR, gb = [None] * n, [None] * n, [None] * n
        if any(any(w) for w in need_w):
            # [hₜ₋₁; xₖ[t]; 1] of every step as (n, u + d + 1, T·B): ONE batched matmul with gz gives
            # gR, gK and gb of all directions (rows 0…u−1, u…u+d−1 and u+d of the result)
            nb = 1 if has_b else 0
            S = ws.empty(xp, (n, u + d + nb, T, B), dt)
            _copy_rows(xp, S, HX[:T].transpose(2, 1, 0, 3))   # saved by the forward pass, re-laid out
            S = S.reshape(n, u + d + nb, T * B)
            # as Gᵀ = gz·Sᵀ (n, 4u, u + d + 1): measured 1.1–1.5× faster than S·gzᵀ in OpenBLAS
            G = _keras_gates(xp.matmul(GZc, S.transpose(0, 2, 1)).transpose(0, 2, 1))
            for k, (nK, nR, nB) in enumerate(need_w):
                gK[k] = G[k, u:u + d] if nK else None
                gR[k] = G[k, :u] if nR else None
                gb[k] = G[k, u + d] if nb and nB else None
        return gx, [gh[:, k].T for k in range(n)], [gc[:, k].T for k in range(n)], gK, gR, gb


class LSTMSequenceFn(_LSTMLoop):
    """A whole LSTM layer over a sequence, input projection + loop + BPTT, as ONE Function.

    Inputs (time-major): x (T, B, d); h0, c0 (B, u); K (d, 4u); R (u, 4u); optionally b (4u,)
    (Keras gate order i, f, c, o). Outputs: out (T, B, u), h_T (B, u), c_T (B, u) (transposed views
    of the feature-major states).
    Per step t:  z = xₜ·K + hₜ₋₁·R + b;  i, f, o = σ(z blocks), g = tanh(z_g);  c' = f⊙c + i⊙g,
    h' = o⊙tanh(c')  (with ``mask`` (T, B) and ``zero_output_for_mask`` Keras's mask rule). The loop,
    its BPTT and the math of the backward pass: :class:`_LSTMLoop` with n = 1 direction.

    Measured (the training step of ``nn.LSTM(128)``, x (32, 50, 32), one thread): 0.86–0.87× the
    time of the previous kernel, which kept the batch-major (B, 4u) layout of :class:`LSTMCellFn`
    (gate blocks as column slices, σ via one exp); see :class:`_LSTMLoop`.
    """

    def __init__(self, mask=None, zero_output_for_mask=False):
        super().__init__(mask, zero_output_for_mask, (False,))

    def forward(self, x, h0, c0, K, R, *b):
        xp = backend.get_array_module(x, h0, c0, K, R)
        T, B, d = x.shape
        u = R.shape[0]
        if (K.shape != (d, 4 * u) or R.shape != (u, 4 * u) or h0.shape != (B, u) or c0.shape != (B, u)
                or (b and b[0].shape != (4 * u,))):
            raise ValueError(f"lstm: expected x (T, B, d), h0 and c0 (B, u), K (d, 4u), R (u, 4u), b (4u,); "
                             f"got x {tuple(x.shape)}, h0 {tuple(h0.shape)}, c0 {tuple(c0.shape)}, "
                             f"K {tuple(K.shape)}, R {tuple(R.shape)}" + (f", b {tuple(b[0].shape)}" if b else ""))
        _check_mask(self.mask, T, B, "lstm")
        out, H, C = self._forward(xp, x, (h0,), (c0,), (K,), (R,), b)
        return out[:, :, 0].transpose(0, 2, 1), H[T, :, 0].T, C[T, :, 0].T

    def backward(self, gout, ghT, gcT):
        _array_only(self)
        x, h0, c0, K, R, *b = self.inputs
        xp = backend.get_array_module(x)
        need = [v.requires_grad for v in self._inputs] + [False]
        gx, gh, gc, gK, gR, gb = self._backward(xp, x, (K,), (R,), bool(b), (gout,), (ghT,), (gcT,),
                                                need[0], [(need[3], need[4], need[5])])
        return (gx, gh[0], gc[0], gK[0], gR[0]) + ((gb[0],) if b else ())


class BiLSTMSequenceFn(_LSTMLoop):
    """The two directions of a bidirectional LSTM (two LSTM layers over the same sequence, one of them
    reading it backwards in time) in ONE time loop: :class:`_LSTMLoop` with n = 2.

    Inputs (time-major): x (T, B, d); h0f, c0f, h0b, c0b (B, u); Kf, Kb (d, 4u); Rf, Rb (u, 4u);
    optionally bf, bb (4u,) ("f": the first layer, "b": the second; Keras gate order i, f, c, o).
    ``reverse`` = (r_f, r_b): whether each direction reads x reversed in time (Bidirectional:
    (False, True)); ``mask`` (T, B) is in x's time order (a reversed direction reads it reversed).
    Outputs: out_f (T, B, u), h_f (B, u), c_f (B, u), out_b, h_b, c_b: what :class:`LSTMSequenceFn`
    returns for each direction run on its own (a reversed direction's out is in its own step order,
    i.e. reversed time); they are transposed views of the feature-major states.

    Measured (the training step of ``nn.Bidirectional(nn.LSTM(64))``, x (32, 50, 32), one thread):
    0.86–0.89× the time of the previous version of this kernel (per-direction (4u, B) blocks, so
    that a gate block of both directions was two slabs with a gap; a separate input projection).
    """

    def __init__(self, mask=None, zero_output_for_mask=False, reverse=(False, True)):
        super().__init__(mask, zero_output_for_mask, reverse)

    def forward(self, x, h0f, c0f, h0b, c0b, Kf, Rf, Kb, Rb, *b):
        xp = backend.get_array_module(x, h0f, c0f, Kf, Rf)
        T, B, d = x.shape
        u = Rf.shape[0]
        want = dict(h0f=(B, u), c0f=(B, u), h0b=(B, u), c0b=(B, u), Kf=(d, 4 * u), Rf=(u, 4 * u),
                    Kb=(d, 4 * u), Rb=(u, 4 * u))
        got = dict(h0f=h0f, c0f=c0f, h0b=h0b, c0b=c0b, Kf=Kf, Rf=Rf, Kb=Kb, Rb=Rb)
        if len(b) == 2:
            want.update(bf=(4 * u,), bb=(4 * u,))
            got.update(bf=b[0], bb=b[1])
        bad = {k: tuple(v.shape) for k, v in got.items() if tuple(v.shape) != want[k]}
        if bad or len(b) not in (0, 2):
            raise ValueError(f"bidirectional lstm: with x (T, B, d) = {tuple(x.shape)} and u = {u} expected "
                             f"{want}; got {bad or f'{len(b)} biases (pass both or none)'}")
        _check_mask(self.mask, T, B, "bidirectional lstm")
        out, H, C = self._forward(xp, x, (h0f, h0b), (c0f, c0b), (Kf, Kb), (Rf, Rb), b)
        return (out[:, :, 0].transpose(0, 2, 1), H[T, :, 0].T, C[T, :, 0].T,
                out[:, :, 1].transpose(0, 2, 1), H[T, :, 1].T, C[T, :, 1].T)

    def backward(self, gout_f, ghf, gcf, gout_b, ghb, gcb):
        _array_only(self)
        x, h0f, c0f, h0b, c0b, Kf, Rf, Kb, Rb, *b = self.inputs
        xp = backend.get_array_module(x)
        need = [v.requires_grad for v in self._inputs] + [False, False]
        gx, gh, gc, gK, gR, gb = self._backward(
            xp, x, (Kf, Kb), (Rf, Rb), bool(b), (gout_f, gout_b), (ghf, ghb), (gcf, gcb), need[0],
            [(need[5], need[6], need[9]), (need[7], need[8], need[10])])
        return (gx, gh[0], gc[0], gh[1], gc[1], gK[0], gR[0], gK[1], gR[1]) + (tuple(gb) if b else ())



# ------------------------------------------------------------------------------------------------
# GRU
# ------------------------------------------------------------------------------------------------
def _gru_scale(xp, u, dtype):
    """s (3u,): −1 on the z and r column blocks (so that σ is one exp away), +1 on the h block."""
    s = xp.ones((3 * u,), dtype=dtype)
    s[:2 * u] = -1
    return s


def _gru_step(xp, a, h, mats, b_rec, zbuf, aux, h_new, reset_after):
    """One GRU step in place. ``a`` (B, 3u) holds the scaled input projection s⊙(x·K + b_in)
    (−pre-activation on z, r; +pre-activation on h) and becomes the activations [z r ĥ].

    reset_after (``mats`` = (s⊙R,), ``b_rec`` = s⊙b_rec or None):
        rk = h·R + b_rec;  [z r] = σ(xk_zr + rk_zr);  ĥ = tanh(xk_h + r⊙rk_h);  ``aux`` ← rk_h
    otherwise (``mats`` = (s⊙R_zr, R_h)):
        [z r] = σ(xk_zr + h·R_zr);  ĥ = tanh(xk_h + (r⊙h)·R_h);  ``aux`` ← r⊙h
    h' = z⊙h + (1 − z)⊙ĥ = (h − ĥ)⊙z + ĥ → ``h_new``.   zbuf: scratch (B, 3u) or (B, 2u).
    """
    u = h.shape[-1]
    zr, hh = a[:, :2 * u], a[:, 2 * u:]
    xp.matmul(h, mats[0], out=zbuf)
    if reset_after:
        if b_rec is not None:
            zbuf += b_rec
        aux[...] = zbuf[:, 2 * u:]
        zr += zbuf[:, :2 * u]
    else:
        zr += zbuf
    xp.exp(zr, out=zr)                              # σ(v) = 1/(1 + e^(−v)), zr holds −v
    zr += 1
    xp.reciprocal(zr, out=zr)
    z, r = a[:, :u], a[:, u:2 * u]
    if reset_after:
        hh += r * aux
    else:
        xp.multiply(r, h, out=aux)
        hh += aux @ mats[1]
    xp.tanh(hh, out=hh)
    xp.subtract(h, hh, out=h_new)
    h_new *= z
    h_new += hh


def _gru_derivs(xp, A, D=None):
    """Derivative factors from the activations A (…, 3u): z(1 − z), r(1 − r), 1 − ĥ² (into ``D``)."""
    u = A.shape[-1] // 3
    D = xp.subtract(1, A, out=D)
    D *= A
    Dh = D[..., 2 * u:]
    xp.multiply(A[..., 2 * u:], A[..., 2 * u:], out=Dh)
    xp.subtract(1, Dh, out=Dh)
    return D


def _gru_backprop(xp, gh, h, a, aux, dz, scratch, reset_after, RhT=None):
    """BPTT through one GRU step (the VJP of :func:`_gru_step`), in place. gh: gradient w.r.t. h'.

    dz (B, 3u): on entry the derivative factors (:func:`_gru_derivs`), on exit gz, the gradient
    w.r.t. the pre-activations [a_z a_r a_h] (which is also g xk):
        gz_h = gh⊙(1 − z)⊙(1 − ĥ²),   gz_z = gh⊙(h − ĥ)⊙z(1 − z)
        reset_after:  g r = gz_h⊙rk_h;   otherwise  g(r⊙h) = gz_h·R_hᵀ,  g r = g(r⊙h)⊙h
        gz_r = g r⊙r(1 − r)
    Returns the part of g h_prev that does not pass through h·R:  gh⊙z (+ g(r⊙h)⊙r).
    """
    u = h.shape[-1]
    z, r, hh = a[:, :u], a[:, u:2 * u], a[:, 2 * u:]
    direct = gh * z
    xp.subtract(gh, direct, out=scratch[:, 2 * u:])
    dz[:, 2 * u:] *= scratch[:, 2 * u:]
    xp.subtract(h, hh, out=scratch[:, :u])
    scratch[:, :u] *= gh
    if reset_after:
        xp.multiply(dz[:, 2 * u:], aux, out=scratch[:, u:2 * u])
    else:
        grh = dz[:, 2 * u:] @ RhT
        xp.multiply(grh, h, out=scratch[:, u:2 * u])
        grh *= r
        direct += grh
    dz[:, :2 * u] *= scratch[:, :2 * u]
    return direct


def _gru_mats(xp, R, s, reset_after):
    u = R.shape[0]
    if reset_after:
        return (R * s,)
    return (xp.ascontiguousarray(R[:, :2 * u] * s[:2 * u]), xp.ascontiguousarray(R[:, 2 * u:]))


class GRUCellFn(Function):
    """One fused GRU step (Keras gate order z, r, h).

    Inputs: xk (B, 3u) = x·K + b_in;  h (B, u);  R (u, 3u);  with ``reset_after`` optionally rb
    (3u,), the recurrent bias (row 1 of Keras's (2, 3u) bias).
        reset_after:  rk = h·R + rb,  z, r = σ(xk + rk) blocks,  ĥ = tanh(xk_h + r⊙rk_h)
        otherwise:    z, r = σ(xk + h·R) blocks,                 ĥ = tanh(xk_h + (r⊙h)·R_h)
        h' = z⊙h + (1 − z)⊙ĥ                                      Output: h' (B, u).
    Backward (array-only), gz from :func:`_gru_backprop`; g xk = gz;
        reset_after:  grk = [gz_z, gz_r, gz_h⊙r],  g h = direct + grk·Rᵀ,  gR = hᵀ·grk,  g rb = Σ_B grk
        otherwise:    g h = direct + gz_zr·R_zrᵀ,  gR = [hᵀ·gz_zr, (r⊙h)ᵀ·gz_h].
    """

    def __init__(self, reset_after=True):
        self.reset_after = reset_after

    def forward(self, xk, h, R, *rb):
        xp = backend.get_array_module(xk, h, R)
        B, u = h.shape
        if xk.shape != (B, 3 * u) or R.shape != (u, 3 * u) or (rb and rb[0].shape != (3 * u,)):
            raise ValueError(f"gru cell: expected xk (B, 3u), h (B, u), R (u, 3u), rb (3u,); got xk "
                             f"{tuple(xk.shape)}, h {tuple(h.shape)}, R {tuple(R.shape)}"
                             + (f", rb {tuple(rb[0].shape)}" if rb else ""))
        if rb and not self.reset_after:
            raise ValueError("gru cell: a recurrent bias rb exists only with reset_after=True")
        s = _gru_scale(xp, u, xk.dtype)
        self.a = xk * s
        self.aux = xp.empty((B, u), dtype=xk.dtype)      # rk_h (reset_after) or r⊙h
        h_new = xp.empty((B, u), dtype=xk.dtype)
        zbuf = xp.empty((B, 3 * u if self.reset_after else 2 * u), dtype=xk.dtype)
        with _quiet():
            _gru_step(xp, self.a, h, _gru_mats(xp, R, s, self.reset_after), rb[0] * s if rb else None,
                      zbuf, self.aux, h_new, self.reset_after)
        return h_new

    def backward(self, gh):
        _array_only(self)
        xk, h, R, *rb = self.inputs
        xp = backend.get_array_module(xk)
        u = h.shape[-1]
        gz = _gru_derivs(xp, self.a)
        direct = _gru_backprop(xp, gh, h, self.a, self.aux, gz, xp.empty_like(gz), self.reset_after,
                               xp.ascontiguousarray(R[:, 2 * u:].T))
        if self.reset_after:
            grk = gz.copy()
            grk[:, 2 * u:] *= self.a[:, u:2 * u]
            return (gz, direct + grk @ R.T, h.T @ grk) + ((grk.sum(axis=0),) if rb else ())
        gR = xp.concatenate([h.T @ gz[:, :2 * u], self.aux.T @ gz[:, 2 * u:]], axis=1)
        return gz, direct + gz[:, :2 * u] @ R[:, :2 * u].T, gR


class GRUSequenceFn(Function):
    """A whole GRU layer over a sequence, input projection + loop + BPTT, as ONE Function.

    Inputs (time-major): x (T, B, d); h0 (B, u); K (d, 3u); R (u, 3u); optionally the bias b,
    Keras's layout: (2, 3u) with ``reset_after`` (rows: input bias, recurrent bias) or (3u,).
    Forward: xk = x·K + b_in for all T·B rows (one matmul), then per step h' = cell(xk[t], hₜ₋₁)
    (:class:`GRUCellFn`); the mask rule of :class:`LSTMSequenceFn`. Outputs: out (T, B, u), h_T (B, u).
    Backward (BPTT, array-only): per step gz[t] (:func:`_gru_backprop`) and
        reset_after: grk[t] = [gz_z, gz_r, gz_h⊙r],  gh ← direct + grk[t]·Rᵀ
        otherwise:   gh ← direct + gz_zr[t]·R_zrᵀ
    then over all T·B rows at once: gx = gz·Kᵀ, gK = xᵀ·gz, gR = Σ hₜ₋₁ᵀ grk[t] (or
    [Σ hₜ₋₁ᵀ gz_zr[t], Σ (r⊙h)ₜᵀ gz_h[t]]), gb = Σ gz (and Σ grk for the recurrent row).
    """

    def __init__(self, reset_after=True, mask=None, zero_output_for_mask=False):
        self.reset_after, self.mask, self.zero_output = reset_after, mask, zero_output_for_mask

    def forward(self, x, h0, K, R, *b):
        xp = backend.get_array_module(x, h0, K, R)
        T, B, d = x.shape
        u = R.shape[0]
        ra = self.reset_after
        bshape = (2, 3 * u) if ra else (3 * u,)
        if (K.shape != (d, 3 * u) or R.shape != (u, 3 * u) or h0.shape != (B, u)
                or (b and b[0].shape != bshape)):
            raise ValueError(f"gru: expected x (T, B, d), h0 (B, u), K (d, 3u), R (u, 3u), b {bshape} "
                             f"(u = {u}); got x {tuple(x.shape)}, h0 {tuple(h0.shape)}, K {tuple(K.shape)}, "
                             f"R {tuple(R.shape)}" + (f", b {tuple(b[0].shape)}" if b else ""))
        mask = _check_mask(self.mask, T, B, "gru")
        dt = x.dtype
        s = _gru_scale(xp, u, dt)
        ws = _workspace
        self.x2 = x.reshape(T * B, d)
        A = ws.empty(xp, (T, B, 3 * u), dt)            # s⊙(x·K + b_in), becomes the activations
        xp.matmul(self.x2, K * s, out=A.reshape(T * B, 3 * u))
        b_rec = None
        if b:
            A += (b[0][0] if ra else b[0]) * s
            b_rec = b[0][1] * s if ra else None
        mats = _gru_mats(xp, R, s, ra)
        H = ws.empty(xp, (T + 1, B, u), dt)
        AUX = ws.empty(xp, (T, B, u), dt)              # rk_h (reset_after) or r⊙h, per step
        zbuf = xp.empty((B, 3 * u if ra else 2 * u), dtype=dt)
        H[0] = h0
        out = H[1:] if mask is None else xp.zeros((T, B, u), dtype=dt)
        with _quiet():
            for t in range(T):
                _gru_step(xp, A[t], H[t], mats, b_rec, zbuf, AUX[t], H[t + 1], ra)
                if mask is not None:
                    keep = mask[t][:, None]
                    out[t] = xp.where(keep, H[t + 1], out[t - 1] if t and not self.zero_output else 0)
                    xp.copyto(H[t + 1], H[t], where=~keep)
        self.saved = (A, H, AUX)
        return out, H[T]

    def backward(self, gout, ghT):
        _array_only(self)
        x, h0, K, R, *b = self.inputs
        xp = backend.get_array_module(x)
        A, H, AUX = self.saved
        T, B, u = AUX.shape
        ra = self.reset_after
        gh = xp.zeros_like(h0) if ghT is None else ghT.copy()
        GZ = _gru_derivs(xp, A, _workspace.empty(xp, A.shape, A.dtype))  # becomes gz step by step
        scratch = xp.empty((B, 3 * u), dtype=x.dtype)
        if ra:
            GRK = _workspace.empty(xp, A.shape, A.dtype)  # gradient w.r.t. rk = h·R + b_rec
            RT = xp.ascontiguousarray(R.T)
            RhT = None
        else:
            RzrT = xp.ascontiguousarray(R[:, :2 * u].T)
            RhT = xp.ascontiguousarray(R[:, 2 * u:].T)
        mask = self.mask
        if mask is not None:
            mf = mask.astype(x.dtype)[:, :, None]
            gacc = xp.zeros_like(h0)
        for t in range(T - 1, -1, -1):
            if mask is None:
                if gout is not None:
                    gh += gout[t]
                gnew = gh
            else:
                m = mf[t]
                if gout is not None:
                    gacc += gout[t]
                gnew = m * (gh + gacc)
            direct = _gru_backprop(xp, gnew, H[t], A[t], AUX[t], GZ[t], scratch, ra, RhT)
            if ra:
                GRK[t, :, :2 * u] = GZ[t, :, :2 * u]
                xp.multiply(GZ[t, :, 2 * u:], A[t, :, u:2 * u], out=GRK[t, :, 2 * u:])
                direct += GRK[t] @ RT
            else:
                direct += GZ[t, :, :2 * u] @ RzrT
            if mask is None:
                gh = direct
            else:
                direct += (1 - m) * gh
                gh = direct
                gacc *= 0 if self.zero_output else 1 - m
        need = [v.requires_grad for v in self._inputs]
        GZ2 = GZ.reshape(T * B, 3 * u)
        Hp = H[:-1].reshape(T * B, u)
        gx = (GZ2 @ K.T).reshape(T, B, K.shape[0]) if need[0] else None
        gK = self.x2.T @ GZ2 if need[2] else None
        gb = ()
        if ra:
            GRK2 = GRK.reshape(T * B, 3 * u)
            gR = Hp.T @ GRK2 if need[3] else None
            if b:
                gb = (xp.stack([GZ2.sum(axis=0), GRK2.sum(axis=0)]),)
        else:
            gR = xp.concatenate([Hp.T @ GZ2[:, :2 * u], AUX.reshape(T * B, u).T @ GZ2[:, 2 * u:]],
                                axis=1) if need[3] else None
            if b:
                gb = (GZ2.sum(axis=0),)
        return (gx, gh, gK, gR) + gb


def lstm_sequence(x, h0, c0, K, R, b=None, mask=None, zero_output_for_mask=False):
    """Run :class:`LSTMSequenceFn`: x (T, B, d), h0, c0 (B, u), K (d, 4u), R (u, 4u), b (4u,) or None,
    mask (T, B) or None -> (out (T, B, u), h_T (B, u), c_T (B, u))."""
    mask = as_mask(mask, x, shape=x.shape[:2], where="lstm_sequence")
    if mask is not None:                         # (T, B), one contiguous row per step
        xp = backend.get_array_module(mask)
        mask = xp.ascontiguousarray(xp.broadcast_to(mask, x.shape[:2]))
    return LSTMSequenceFn(mask, zero_output_for_mask)(*((x, h0, c0, K, R) + ((b,) if b is not None else ())))


def gru_sequence(x, h0, K, R, b=None, reset_after=True, mask=None, zero_output_for_mask=False):
    """Run :class:`GRUSequenceFn`: x (T, B, d), h0 (B, u), K (d, 3u), R (u, 3u), b ((2, 3u) with
    ``reset_after``, else (3u,)) or None, mask (T, B) or None -> (out (T, B, u), h_T (B, u))."""
    mask = as_mask(mask, x, shape=x.shape[:2], where="gru_sequence")
    if mask is not None:                         # (T, B), one contiguous row per step
        xp = backend.get_array_module(mask)
        mask = xp.ascontiguousarray(xp.broadcast_to(mask, x.shape[:2]))
    return GRUSequenceFn(reset_after, mask, zero_output_for_mask)(*((x, h0, K, R) + ((b,) if b is not None else ())))
