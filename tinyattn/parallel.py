"""A small thread pool that runs large elementwise NumPy passes on every core.

NumPy's ufuncs release the GIL on large arrays, so a pass such as ``exp(s, out=s)`` over a
(16, 8, 128, 128) score tensor can run as row chunks on several threads at once. This module is the
one place that does so; the kernels (softmax, GELU, LayerNorm, the attention kernels, the optimizers)
call :func:`rows` with a function that works on a block of rows:

    def kernel(s, drop):                     # s (rows, T), drop (rows, T) or broadcastable
        ...in-place ufuncs on s...
    parallel.rows(kernel, s, drop)           # = kernel(s, drop), split over the leading axes

Rules that keep it exact and cheap:

* **Only leading axes are split.** ``tail`` trailing axes (default 1: the softmax / LayerNorm
  axis) are never cut, so no reduction is ever split and every element is computed by the same
  ufunc loop as on the serial path: results are bit-identical (tests/test_parallel.py checks each
  kernel, with odd sizes and sizes just over the threshold). ``tail=0`` marks a purely elementwise
  kernel (any split is allowed; chunk edges stay multiples of 16 elements).
* **A size threshold.** Arrays with fewer than :func:`get_min_elements` elements (default 2²⁰) run
  ``fn`` directly on the calling thread: tiny tensors pay one comparison, nothing else. A kernel
  that makes several passes says so (``work``: the threshold applies to size × passes, so
  LayerNorm's ~6 passes over a (2048, 256) block go to the pool, a single bias add does not). Why so
  high: handing a chunk to the pool's worker wakes it, and on the 2-core development VM a wake-up
  takes 20–170 µs (the longer the worker slept, the longer), about what one pass over 2¹⁸ float32
  elements costs; meanwhile BLAS's threads may still be busy-waiting on that core after a GEMM.
  Measured (interleaved rounds, pool and BLAS on 2 threads, 2¹⁶ → 2²⁰): the 20-step attention
  decoder 0.76–0.84×, Bahdanau attention 0.84–0.85×, the Transformer block, MHA, LSTM, GRU level
  within noise. ``set_min_elements`` lowers it where wake-ups are cheap (bare metal, many cores).
* **No oversubscription: the pool never calls BLAS.** ``fn`` must be pure elementwise NumPy
  (ufuncs, reductions along the uncut axes, copies, a plain ``einsum``, which is NumPy's own loop):
  never ``matmul`` / ``@`` / ``dot`` / ``tensordot`` / ``einsum(..., optimize=...)`` / ``linalg``.
  Those run on BLAS, which keeps its own threads; called from a pool worker they would put n pool
  threads × m BLAS threads on n cores. GEMMs are called only from the calling thread, between
  passes, and :func:`rows` returns only when every chunk is done, so the pool's threads and BLAS's
  threads take turns on the cores instead of competing.
  tests/test_blas_threads.py reads every ``parallel.rows`` call in the library and fails when the
  function it hands over calls BLAS. The two exceptions hold BLAS at ONE thread while they run, so
  that still only the pool's n threads run: :func:`matmul` (a stack of small products, e.g.
  attention's per-head GEMMs, or one large product, e.g. a Linear layer's, split over the pool) and
  :func:`ranges` (blocks of work that each call BLAS, e.g. the blocked attention kernel). Taking
  turns is not the whole story: an OpenBLAS thread busy-waits ~0.1 s after each GEMM, on a core the
  next pass needs, so the large GEMMs of a Transformer never wake BLAS's threads (:func:`matmul`).
* **Serial switch.** ``set_num_threads(1)`` makes every call run ``fn`` on the whole arrays in the
  calling thread, exactly the serial code path, and sets BLAS to one thread: fully serial. CuPy
  arrays (and anything that is not a NumPy array) always take the serial path: the GPU already runs
  the pass in parallel.
* NumPy's error state (``np.errstate``) of the caller is applied in the workers; an exception in
  any chunk is re-raised in the caller after all chunks finished.

The default size is the number of cores this process may run on (``os.sched_getaffinity``), or
``TINYATTN_NUM_THREADS`` from the environment.

BLAS threads
------------
The GEMMs (``matmul`` / ``@``, ``tensordot``) run on the BLAS NumPy loaded (the OpenBLAS bundled in NumPy's
wheels, MKL in some distributions), which has a thread pool of its own. :func:`blas_info` says which
library it is (found among the loaded shared libraries, then driven through ``ctypes``: NumPy is the
only dependency, no threadpoolctl), :func:`get_blas_threads` / :func:`set_blas_threads` /
:func:`blas_threads` read and change its thread count. Where the library is not found or has no
thread control (Accelerate, an unknown BLAS) they answer ``None`` / ``controllable: False``, never
raise. They govern the host BLAS only: GEMMs on GPU arrays run on cuBLAS, which has no thread count.

``tinyattn.set_num_threads(n)`` is the one knob, as ``torch.set_num_threads(n)`` governs PyTorch's
intra-op threads including its BLAS: it sets the pool to ``n`` threads AND BLAS to ``n`` threads
(``blas=False`` leaves BLAS alone). So ``set_num_threads(1)`` is fully serial. At import BLAS keeps
its own default (all cores, or ``OPENBLAS_NUM_THREADS`` / ``MKL_NUM_THREADS``) unless
``TINYATTN_NUM_THREADS`` is set, which then sizes both, as a ``set_num_threads`` call would.

On a machine busier than its cores, a GEMM split over BLAS threads waits for its slowest thread
(and OpenBLAS's threads busy-wait between GEMMs): on a shared 2-core VM at load average ~4, an MHA
training step took 3–5× longer with BLAS on 2 threads than on 1 (the pool on 2 threads either way),
while at load ~2.5 the two were level within noise. The default stays BLAS's own; where the cores
are shared, ``set_blas_threads(1)`` keeps the pool's threads and drops BLAS's.
``benchmarks/blas_threads.py`` measures every pool × BLAS split where you run.
"""
import contextlib
import ctypes
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["rows", "tasks", "matmul", "ranges", "set_num_threads", "get_num_threads", "set_min_elements", "get_min_elements",
           "active", "blas_info", "get_blas_threads", "set_blas_threads", "blas_threads"]


def _cores():
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):      # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _env_threads():
    v = os.environ.get("TINYATTN_NUM_THREADS")
    if v:
        try:
            return max(1, int(v))
        except ValueError:
            raise ValueError(f"TINYATTN_NUM_THREADS={v!r}: expected a positive integer") from None
    return _cores()


_state = {"n": _env_threads(), "min": 1 << 20, "pool": None, "pool_n": 0}
_lock = threading.Lock()
_local = threading.local()                  # .busy: this thread is inside a pool task


def _check_count(fn, n):
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{fn}: n must be a positive integer, got {n!r}")
    return int(n)


def set_num_threads(n, *, blas=True):
    """Use ``n`` threads for tinyattn's CPU work, as ``torch.set_num_threads``: large elementwise
    passes run on the pool (the caller plus ``n − 1`` workers) and, with ``blas=True`` (the
    default), NumPy's BLAS runs its GEMMs on ``n`` threads too (:func:`set_blas_threads`; nothing
    happens to BLAS where it is not controllable, see :func:`blas_info`). ``set_num_threads(1)`` is
    fully serial: every pass on the calling thread, every GEMM on one BLAS thread.

    ``blas=False`` sizes the pool only (BLAS keeps its count: e.g. to compare the pool's serial and
    parallel paths with the GEMMs unchanged). Call it between computations, not while another
    thread runs NumPy work: the BLAS setting is process-wide."""
    n = _check_count("set_num_threads", n)
    with _lock:
        _state["n"] = n
    if blas:
        set_blas_threads(n)


def get_num_threads():
    """The number of threads elementwise passes use (1 = serial)."""
    return _state["n"]


def set_min_elements(n):
    """Arrays with fewer than ``n`` elements stay on the serial path (default 2²⁰ = 1,048,576; see
    the module's notes on the threshold)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_min_elements: n must be a positive integer, got {n!r}")
    _state["min"] = int(n)


def get_min_elements():
    """The size threshold below which :func:`rows` runs serially."""
    return _state["min"]


def active(a, work=1):
    """True when a kernel making ``work`` passes over array ``a`` would be split across threads
    (``a.size · work`` ≥ :func:`get_min_elements`)."""
    return (_state["n"] > 1 and type(a) is np.ndarray and a.size * work >= _state["min"]
            and not getattr(_local, "busy", False))


def _pool(n):
    with _lock:
        if _state["pool"] is None or _state["pool_n"] < n - 1:
            old = _state["pool"]
            _state["pool"] = ThreadPoolExecutor(max_workers=n - 1, thread_name_prefix="tinyattn")
            _state["pool_n"] = n - 1
            if old is not None:
                old.shutdown(wait=False)
        return _state["pool"]


def _reset_after_fork():                   # a forked child has no worker threads: make a new pool
    _state["pool"] = None
    _state["pool_n"] = 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


def _run(fn, err, chunk):
    _local.busy = True
    try:
        with np.errstate(**err):
            fn(*chunk)
    finally:
        _local.busy = False


def _bounds(n, k, align):
    """k+1 boundaries cutting range(n) into k nearly equal pieces, inner edges multiples of align."""
    edges = [0]
    for i in range(1, k):
        e = (n * i // k) // align * align
        if e > edges[-1]:
            edges.append(e)
    if n > edges[-1]:
        edges.append(n)
    return edges


def _split(arrays, lead_nd, how, tail):
    """Views of ``arrays`` whose leading ``lead_nd`` axes (shape ``lead``) are merged into one axis,
    or None when a view is impossible. Arrays that broadcast over the leading axes pass whole."""
    first = arrays[0]
    lead = first.shape[:lead_nd]
    nd = first.ndim
    out = []
    for a in arrays:
        if a is None or not isinstance(a, np.ndarray) or a.ndim == 0:
            out.append((False, a))
            continue
        pad = nd - a.ndim                           # broadcasting aligns from the right
        a_lead = (1,) * max(pad, 0) + a.shape[:max(lead_nd - pad, 0)]
        if all(s == 1 for s in a_lead):             # the same block for every chunk; in a flattened
            if how == "flat":                       # split, drop its size-1 leading axes so that it
                a = a.reshape(a.shape[a.ndim - min(a.ndim, tail):] if tail else ())   # still broadcasts
            out.append((False, a))
            continue
        if a.ndim != nd or a.shape[:lead_nd] != lead:
            if how == "flat":
                return None                         # partial broadcast: split on axis 0 instead
            if a.ndim == nd and a.shape[0] == first.shape[0]:
                out.append((True, a))
                continue
            if a.ndim == nd and a.shape[0] == 1:
                out.append((False, a))
                continue
            return None
        if how == "flat":
            v = a.view()
            try:
                v.shape = (-1,) + a.shape[lead_nd:]   # raises rather than copy
            except AttributeError:
                return None
            out.append((True, v))
        else:
            out.append((True, a))
    return out


def rows(fn, *arrays, tail=1, work=1):
    """``fn(*arrays)``, run as chunks of rows on the pool when the first array is large.

    fn: works in place on its arguments (blocks of rows of each array), returns nothing that is used.
    arrays: NumPy arrays; the first fixes the shape. Every array either has the first's leading axes
      (all axes but the last ``tail``), and is cut the same way, or broadcasts over them (then every
      chunk gets it whole). None and scalars pass through.
    tail: how many trailing axes are never cut (1: the reduction axis of softmax / LayerNorm;
      0: a purely elementwise ``fn``). A kernel reducing over another axis must not use this.
    work: about how many passes ``fn`` makes over the first array (LayerNorm ~6, GELU ~30): the
      threshold applies to size × work, so that a kernel of many passes over a mid-sized array
      still gains from the pool while a single pass over it would not pay for the hand-off.

    Returns None; results are bit-identical to ``fn(*arrays)`` because no reduction is split.
    """
    first = arrays[0]
    n = _state["n"]
    if (n <= 1 or type(first) is not np.ndarray or first.size * work < _state["min"]
            or getattr(_local, "busy", False)):
        fn(*arrays)
        return None
    lead_nd = first.ndim - tail
    if lead_nd <= 0:
        fn(*arrays)
        return None
    parts = _split(arrays, lead_nd, "flat", tail)
    if parts is None:
        parts = _split(arrays, 1, "axis0", tail)
    if parts is None:
        fn(*arrays)
        return None
    if not parts[0][0]:                   # a single row (leading axes all 1): nothing to split
        fn(*arrays)
        return None
    nrows = parts[0][1].shape[0]
    row_size = max(1, first.size // max(nrows, 1))
    k = min(n, nrows, max(1, first.size * work // (_state["min"] // 2)))   # ≥ min/2 of work a chunk
    if k <= 1:
        fn(*arrays)
        return None
    align = 16 if tail == 0 and row_size == 1 else 1
    edges = _bounds(nrows, k, align)
    chunks = [tuple(a[lo:hi] if cut else a for cut, a in parts) for lo, hi in zip(edges[:-1], edges[1:])]
    if len(chunks) <= 1:
        fn(*arrays)
        return None
    err = np.geterr()
    _fan_out(_pool(n), [(_run, fn, err, c) for c in chunks])
    return None


def tasks(calls, sizes, work=1):
    """Run independent ``calls`` — (function, *args) each — on the pool, each call whole in one
    thread, the threads' shares balanced by ``sizes`` (the elements each call works on; largest
    first, each to the least loaded thread). Inside a call, :func:`rows` runs serially, so every
    call computes exactly what it computes alone: results are bit-identical to running the calls
    in order on the calling thread, which is what happens with one thread, inside a pool task, or
    when the sizes times ``work`` (passes each call makes over its elements) add up to fewer than
    :func:`get_min_elements`.

    Why: the optimizers update a dozen parameters of 10⁵–10⁶ elements each; one :func:`rows` split
    per parameter wakes the pool's worker a dozen times, and on the 2-core development VM a wake-up
    costs 20–170 µs (longer the longer the worker slept), more than half a parameter's update. One
    hand-off for the whole step: measured (AdamW on a Transformer block's 16 parameters, 0.79M
    elements, 2 threads, median of 7 × 50 steps) 3.3 → 1.6 ms, against 2.0 ms serial.

    The calls must not call BLAS (as :func:`rows`'s functions) and must touch disjoint data.
    Returns None; the first error of any call is re-raised after all finished."""
    calls = list(calls)
    n = min(_state["n"], len(calls))
    if n <= 1 or getattr(_local, "busy", False) or sum(sizes) * work < _state["min"]:
        _run_calls(calls)
        return None
    shares, loads = [[] for _ in range(n)], [0] * n
    for i in sorted(range(len(calls)), key=lambda i: -sizes[i]):
        j = loads.index(min(loads))
        shares[j].append(calls[i])
        loads[j] += sizes[i]
    err = np.geterr()
    _fan_out(_pool(_state["n"]), [(_run, _run_calls, err, (share,)) for share in shares if share])
    return None


def _run_calls(share):
    """Each call (function, *args) of ``share``, in order, on this thread."""
    for c in share:
        c[0](*c[1:])


def _fan_out(pool, calls):
    """Run ``calls`` — (function, *args) each — the first in this thread, the others on ``pool``;
    return when all are done, re-raising the first error (after waiting for the others)."""
    futures = [pool.submit(*c) for c in calls[1:]]
    exc = None
    try:
        calls[0][0](*calls[0][1:])
    except BaseException as e:            # wait for the others before raising
        exc = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:
            exc = exc or e
    if exc is not None:
        raise exc


# A stack of matrix products each below this many multiply-adds (m·k·n) is "small": 128 × 32 × 128
# attention products are 2¹⁹. Larger products in a stack keep BLAS's own threads.
_SMALL_GEMM = 1 << 21
# A single product (m, k) @ (k, n) of at least this many multiply-adds is "large": cut into row (or
# column) blocks over the pool. 2²⁷ is ~2.8 ms on one core of the development VM, ~20× a wake-up of
# the pool's worker; a Transformer block's projections at d 256 (2048 × 256 × 256 … 1024) are
# 2²⁷–2²⁹. Smaller ones come in quick succession (Bahdanau's 1600 × 128 × 128, ~2²⁴·⁶), or beside
# products that stay on BLAS's threads anyway: tiny_gpt (d 128: 2048 × 128 × 384, 2²⁶·⁶, next to
# an LM head of 2²⁴·⁷) trained 17 % slower with them split at 2²⁶ (a step that mixes split and
# BLAS-threaded products gets BLAS's spinning worker and the pool's worker on one core).
_LARGE_GEMM = 1 << 27


def matmul(a, b, out=None):
    """``np.matmul(a, b, out=out)`` with the work split over the pool's threads and NumPy's BLAS held
    at ONE thread meanwhile, so that each thread runs whole BLAS calls on one core. Two cases:

    * a STACK of small products (…, m, k) @ (…, k, n), the per-head products of attention: the
      stack is cut (each product below 2²¹ multiply-adds, the first stack axis ≥ n entries);
    * ONE large product, a (m, k) @ b (k, p) of at least 2²⁷ multiply-adds (the projections of a
      Linear layer, their gradients): the rows of a and of the result are cut when m ≥ p, else the
      columns of b and of the result (each thread reads all of the other operand: cutting the
      bigger one halves the traffic; the weight gradient xᵀ·gy, (256, 4096) @ (4096, 1024), took
      22.9 ms cut by rows, 16.1 ms by columns, 27.2 ms on one thread).

    Why the stacks: OpenBLAS threads each small product separately (two threads for a 128 × 32 × 128
    GEMM), paying a hand-off and a join per product; measured on the 2-core development VM, 128
    such products: 2.2 ms on one thread, 1.2× faster on two BLAS threads when the machine is idle,
    up to 6× SLOWER (13 ms) when another process keeps a core busy (BLAS's second thread waits its
    turn while the first spins), and ~1.9× faster split here (each half on one thread).

    Why the large products: the GEMM itself runs as fast either way (two BLAS threads or two
    halves here, ~180 GFLOP/s on the VM), but an OpenBLAS thread that finished a GEMM does not
    sleep: it busy-waits ~0.1 s (2²⁸ cycles, OpenBLAS's THREAD_TIMEOUT) for the next one, on a
    core that the pool's next pass (GELU, LayerNorm, softmax, Adam) needs; the first pass of each
    GELU chunk then took 10× its time (profile). With these GEMMs split here, BLAS's own threads
    are never woken and the pool's threads sleep when idle. Measured (training step, pool and BLAS on 2
    threads, old and new code in two processes, 8 interleaved rounds, median ratio, 2 runs): pre-norm
    Transformer encoder block (B 16, T 128, d 256, FFN 1024) 0.91–0.95×, multi-head attention
    (B 16, T 128, d 256) 0.80–0.93×; Bahdanau, the decoder loop, LSTM, GRU unchanged (their
    products stay below 2²⁷: small GEMMs in quick succession are where BLAS's spinning threads pay).
    Parts are multiples of 16 rows (columns) and stay past OpenBLAS's small-matrix path, whose
    kernels sum in another order.

    The rule "the pool never runs BLAS in parallel with BLAS threads" holds: BLAS is set to one
    thread for the duration, so exactly the pool's n threads run. Used when the pool has n > 1
    threads, a and b are NumPy arrays and BLAS's thread count is controllable
    (:func:`blas_info`); otherwise (other shapes, one thread, CuPy arrays) this is ``np.matmul`` /
    ``cupy.matmul``. Every part is a BLAS call on whole rows (columns) of the operands with the
    whole inner dimension, which computes each element of the result as the undivided product
    does: results equal one BLAS thread's (tests/test_parallel.py, also through Linear layers).
    """
    n = _state["n"]
    how = None
    if (n > 1 and type(a) is np.ndarray and type(b) is np.ndarray and not getattr(_local, "busy", False)
            and a.ndim >= 2 and b.ndim >= 2 and a.shape[-1] == b.shape[-2]):
        m, k, p = a.shape[-2], a.shape[-1], b.shape[-1]
        if a.ndim >= 3 and a.shape[:-2] == b.shape[:-2] and a.shape[0] >= n and m * k * p <= _SMALL_GEMM:
            how = "stack"
        elif a.ndim == 2 and b.ndim == 2 and m * k * p >= _LARGE_GEMM and max(m, p) >= 16 * n:
            # each thread reads all of the operand that is not cut: cut the bigger one (m ≥ p: a)
            how = "rows" if m >= 16 * n and (m >= p or p < 16 * n) else "cols"
        if how is not None and _find_blas() is None:
            how = None
    if how is None:
        if type(a) is np.ndarray and type(b) is np.ndarray:
            return np.matmul(a, b) if out is None else np.matmul(a, b, out=out)
        xp = _array_module(a)
        return xp.matmul(a, b) if out is None else xp.matmul(a, b, out=out)
    if out is None:
        out = np.empty(a.shape[:-1] + (b.shape[-1],), dtype=np.result_type(a, b))
    if how == "stack":
        edges = _bounds(a.shape[0], n, 1)
        parts = [(a[lo:hi], b[lo:hi], out[lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    elif how == "rows":
        edges = _bounds(a.shape[0], n, 16)
        parts = [(a[lo:hi], b, out[lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    else:
        edges = _bounds(b.shape[1], n, 16)
        parts = [(a, b[:, lo:hi], out[:, lo:hi]) for lo, hi in zip(edges[:-1], edges[1:])]
    with blas_threads(1):
        _fan_out(_pool(n), [(_matmul_part,) + p for p in parts])
    return out


def ranges(fn, n):
    """``fn(lo, hi)`` over contiguous pieces of ``range(n)``, one piece per thread of the pool, with
    NumPy's BLAS held at one thread meanwhile — so ``fn`` MAY call BLAS: each thread runs its own
    GEMMs on its own core (the blocked attention kernel: per block, QKᵀ, the softmax and PV while the
    block's scores sit in cache). Passes (:func:`rows`) inside ``fn`` run serially in its thread.
    Serial — ``fn(0, n)`` — with one thread, n < 2, inside a pool task, or where BLAS's threads are
    not controllable (then BLAS threads could oversubscribe the cores). ``fn`` must write disjoint
    parts of its outputs for disjoint ranges; results are those of ``fn(0, n)`` when ``fn``'s work
    on an index does not depend on the range it came in."""
    k = min(_state["n"], int(n))
    if k <= 1 or getattr(_local, "busy", False) or _find_blas() is None:
        fn(0, n)
        return None
    edges = _bounds(int(n), k, 1)
    pieces = list(zip(edges[:-1], edges[1:]))
    err = np.geterr()
    with blas_threads(1):
        _fan_out(_pool(_state["n"]), [(_run, fn, err, piece) for piece in pieces])
    return None


def _matmul_part(a, b, out):
    np.matmul(a, b, out=out)


def _array_module(a):
    from . import backend                    # (same layer; imported here: parallel loads first)
    return backend.get_array_module(a)


# ================================================================================================
# BLAS threads: NumPy's own BLAS, found among the loaded libraries and driven through ctypes
# ================================================================================================
# Thread-control entry points per vendor (what threadpoolctl calls too, re-derived from the
# libraries' C APIs). OpenBLAS exports them plain (``openblas_get_num_threads``) or, as NumPy's
# wheels bundle it (scipy-openblas), with a ``scipy_`` prefix and a ``64_`` / ``_64`` suffix.
_OPENBLAS_AFFIXES = [(pre, suf) for pre in ("scipy_", "") for suf in ("64_", "_64", "")]
_BLAS_NAME_KEYS = ("openblas", "mkl", "blis", "flexiblas", "libblas", "libcblas", "accelerate")
_MKL_LAYERS = {0: "intel", 1: "sequential", 2: "pgi", 3: "gnu", 4: "tbb", -1: "not set"}
_blas = {"lib": None, "done": False}
_blas_lock = threading.Lock()


def _fn(lib, name, restype=None, argtypes=()):
    """``lib.name`` as a ctypes function with the given signature, or None when not exported."""
    try:
        f = getattr(lib, name)
    except AttributeError:
        return None
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


def _text(b):
    return b.decode("utf-8", "replace").strip() if b else None


def _numpy_dirs():
    """Where a NumPy wheel keeps the libraries it bundles: numpy/ (.libs, .dylibs) and numpy.libs/."""
    d = os.path.realpath(os.path.dirname(np.__file__))
    return [d + os.sep, os.path.join(os.path.dirname(d), "numpy.libs") + os.sep]


def _is_blas_name(path):
    name = os.path.basename(path).lower()
    return any(k in name for k in _BLAS_NAME_KEYS)


def _loaded_blas_paths():
    """BLAS-looking shared libraries loaded in this process, NumPy's own first.

    Linux: the mapped files of /proc/self/maps. Elsewhere (no /proc): the libraries NumPy's wheel
    bundles (numpy.libs/, numpy/.libs, numpy/.dylibs), which NumPy has loaded by now."""
    paths = {}
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and parts[5].startswith("/"):
                    paths.setdefault(parts[5].rstrip("\n"), None)
    except OSError:
        for d in _numpy_dirs():
            for sub in ("", ".libs", ".dylibs"):
                folder = os.path.join(d, sub)
                try:
                    paths.update((os.path.join(folder, n), None) for n in sorted(os.listdir(folder)))
                except OSError:
                    pass
    found = [p for p in paths if _is_blas_name(p)]
    ours = tuple(_numpy_dirs())
    return [p for p in found if p.startswith(ours)] + [p for p in found if not p.startswith(ours)]


def _open_loaded(path):
    """ctypes handle of an ALREADY loaded library (RTLD_NOLOAD: never loads new code), or None."""
    try:
        return ctypes.CDLL(path, mode=ctypes.DEFAULT_MODE | getattr(os, "RTLD_NOLOAD", 0))
    except OSError:
        return None


def _probe_blas(lib, path):
    """The controls of the BLAS in ``lib`` (a ctypes handle), or None when it exports none we know.

    Returns {"vendor", "path", "get" (→ int), "set" (int →), "info" (→ dict of version, config,
    core, threading)}."""
    for pre, suf in _OPENBLAS_AFFIXES:                                    # OpenBLAS
        get = _fn(lib, f"{pre}openblas_get_num_threads{suf}", ctypes.c_int)
        set_ = _fn(lib, f"{pre}openblas_set_num_threads{suf}", None, [ctypes.c_int])
        if get is None or set_ is None:
            continue
        config = _fn(lib, f"{pre}openblas_get_config{suf}", ctypes.c_char_p)
        core = _fn(lib, f"{pre}openblas_get_corename{suf}", ctypes.c_char_p)
        par = _fn(lib, f"{pre}openblas_get_parallel{suf}", ctypes.c_int)

        def info(config=config, core=core, par=par):
            cfg = _text(config()) if config else None
            version = cfg.split()[1] if cfg and cfg.startswith("OpenBLAS ") and len(cfg.split()) > 1 else None
            threading_ = {0: "sequential", 1: "pthreads", 2: "openmp"}.get(par(), "?") if par else None
            return {"version": version, "config": cfg, "core": _text(core()) if core else None,
                    "threading": threading_, "symbols": f"{pre}openblas_*{suf}"}
        return {"vendor": "openblas", "path": path, "get": get, "set": set_, "info": info}
    get = _fn(lib, "MKL_Get_Max_Threads", ctypes.c_int)                  # Intel MKL (mkl_rt)
    set_ = _fn(lib, "MKL_Set_Num_Threads", None, [ctypes.c_int])
    if get is not None and set_ is not None:
        version = _fn(lib, "MKL_Get_Version_String", None, [ctypes.c_char_p, ctypes.c_int])
        layer = _fn(lib, "MKL_Set_Threading_Layer", ctypes.c_int, [ctypes.c_int])

        def info(version=version, layer=layer):
            v = None
            if version:
                buf = ctypes.create_string_buffer(256)
                version(buf, len(buf))
                v = _text(buf.value)
            return {"version": v, "config": v, "core": None,        # (-1: read without changing)
                    "threading": _MKL_LAYERS.get(layer(-1), "?") if layer else None, "symbols": "MKL_*"}
        return {"vendor": "mkl", "path": path, "get": get, "set": set_, "info": info}
    get = _fn(lib, "bli_thread_get_num_threads", ctypes.c_int64)         # BLIS (dim_t = int64)
    set_ = _fn(lib, "bli_thread_set_num_threads", None, [ctypes.c_int64])
    if get is not None and set_ is not None:
        version = _fn(lib, "bli_info_get_version_str", ctypes.c_char_p)
        arch_id = _fn(lib, "bli_arch_query_id", ctypes.c_int)
        arch_name = _fn(lib, "bli_arch_string", ctypes.c_char_p, [ctypes.c_int])

        def info(version=version, arch_id=arch_id, arch_name=arch_name):
            v = _text(version()) if version else None
            core = _text(arch_name(arch_id())) if arch_id and arch_name else None
            return {"version": v, "config": v, "core": core, "threading": None, "symbols": "bli_*"}
        return {"vendor": "blis", "path": path, "get": get, "set": set_, "info": info}
    return None


def _numpy_build_blas():
    """The BLAS NumPy was built against, from its build configuration: 'scipy-openblas 0.3.31' etc."""
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:                       # noqa: BLE001  (an older NumPy, an odd build): unknown
        return None


def _find_blas():
    """NumPy's BLAS controls (cached after the first look), or None."""
    with _blas_lock:
        if not _blas["done"]:
            _blas["done"] = True
            try:
                for path in _loaded_blas_paths():
                    lib = _open_loaded(path)
                    found = _probe_blas(lib, path) if lib is not None else None
                    if found is not None:
                        _blas["lib"] = found
                        break
            except Exception:               # noqa: BLE001  never fail the caller: "not controllable"
                _blas["lib"] = None
        return _blas["lib"]


def get_blas_threads():
    """How many threads NumPy's BLAS uses for a GEMM, or None when its BLAS is not controllable
    (not found, or a library without a thread-count API; see :func:`blas_info`)."""
    b = _find_blas()
    return int(b["get"]()) if b is not None else None


def set_blas_threads(n):
    """Make NumPy's BLAS use ``n`` threads for its GEMMs (process-wide; call it between
    computations). Returns the count now in effect (the library may cap it), or None where the BLAS
    is not controllable, in which case nothing changes. ``n`` must be a positive integer."""
    n = _check_count("set_blas_threads", n)
    b = _find_blas()
    if b is None:
        return None
    with _blas_lock:
        b["set"](n)
        return int(b["get"]())


@contextlib.contextmanager
def blas_threads(n):
    """``with blas_threads(1): ...`` runs the block with NumPy's BLAS on ``n`` threads and restores
    the previous count afterwards (also on an exception). Yields the count in effect, or None (and
    changes nothing) where the BLAS is not controllable."""
    n = _check_count("blas_threads", n)
    prev = get_blas_threads()
    try:
        yield set_blas_threads(n)
    finally:
        if prev is not None:
            set_blas_threads(prev)


def blas_info():
    """Which BLAS NumPy's GEMMs run on, and its threads: a dict

    vendor: "openblas" / "mkl" / "blis", or "unknown"; path: the loaded library (None if not found);
    version, config (OpenBLAS's build string: version, DYNAMIC_ARCH, MAX_THREADS...), core (the
    kernel set in use, e.g. "SkylakeX"; OPENBLAS_CORETYPE forces one), threading ("pthreads",
    "openmp", "sequential", or MKL's layer); threads (None when unknown); controllable (bool);
    reason (why not, when not); numpy_build (the BLAS NumPy was built against); backend (the current
    default backend: with "cupy", GEMMs of GPU arrays run on cuBLAS, which has no thread count:
    these settings govern host arrays only); summary (one line, for benchmark headers).
    Never raises."""
    from . import backend                    # (same layer; imported here: parallel loads first)
    b = _find_blas()
    d = {"vendor": "unknown", "path": None, "version": None, "config": None, "core": None,
         "threading": None, "threads": None, "controllable": False, "reason": None,
         "numpy_build": _numpy_build_blas(), "backend": backend.get_backend()}
    if b is None:
        seen = []
        try:
            seen = _loaded_blas_paths()
        except Exception:                    # noqa: BLE001
            pass
        d["path"] = seen[0] if seen else None
        d["reason"] = ("no thread-count API found in " + ", ".join(os.path.basename(p) for p in seen)
                       if seen else "no BLAS library of NumPy's found among the loaded libraries")
        build = (d["numpy_build"] or "").lower()
        d["vendor"] = next((k for k in ("openblas", "mkl", "blis", "accelerate", "flexiblas") if k in build),
                           "unknown")
    else:
        d.update(vendor=b["vendor"], path=b["path"], controllable=True)
        try:
            d.update(b["info"]())
            d["threads"] = get_blas_threads()
        except Exception as e:               # noqa: BLE001
            d["reason"] = f"reading its configuration failed: {e}"
    where = os.path.basename(d["path"]) if d["path"] else "not found"
    if d["controllable"]:
        extra = ", ".join(x for x in (d["threading"], d["core"] and f"core {d['core']}") if x)
        d["summary"] = (f"{d['vendor']} {d['version'] or '?'} ({extra}; {where}), "
                        f"{d['threads']} thread{'s' if d['threads'] != 1 else ''}")
    else:
        d["summary"] = f"{d['vendor']} (not controllable: {d['reason']}; NumPy built with {d['numpy_build']})"
    if d["backend"] == "cupy":
        d["summary"] += "; default backend CuPy: GPU GEMMs run on cuBLAS (no thread count)"
    return d


def _apply_env_to_blas():
    """TINYATTN_NUM_THREADS sizes BLAS too, as set_num_threads would; never fails the import."""
    if os.environ.get("TINYATTN_NUM_THREADS"):
        try:
            set_blas_threads(_state["n"])
        except Exception:                    # noqa: BLE001
            pass


_apply_env_to_blas()
