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
* **A size threshold.** Arrays with fewer than :func:`get_min_elements` elements (default 2¹⁶) run
  ``fn`` directly on the calling thread: tiny tensors pay one comparison, nothing else.
* **No oversubscription.** The pool only ever runs the pure elementwise ``fn`` handed to it and
  :func:`rows` returns only when every chunk is done, so BLAS (which keeps its own threads for the
  GEMMs, called from the calling thread between passes) never overlaps with the pool.
* **Serial switch.** ``set_num_threads(1)`` makes every call run ``fn`` on the whole arrays in the
  calling thread, exactly the serial code path. CuPy arrays (and anything that is not a NumPy
  array) always take the serial path: the GPU already runs the pass in parallel.
* NumPy's error state (``np.errstate``) of the caller is applied in the workers; an exception in
  any chunk is re-raised in the caller after all chunks finished.

The default size is the number of cores this process may run on (``os.sched_getaffinity``), or
``TINYATTN_NUM_THREADS`` from the environment.
"""
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["rows", "set_num_threads", "get_num_threads", "set_min_elements", "get_min_elements",
           "active"]


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


_state = {"n": _env_threads(), "min": 1 << 16, "pool": None, "pool_n": 0}
_lock = threading.Lock()
_local = threading.local()                  # .busy: this thread is inside a pool task


def set_num_threads(n):
    """Use ``n`` threads (the caller plus ``n − 1`` workers) for large elementwise passes; 1 runs
    everything serially on the calling thread. BLAS's own threads are not changed."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_num_threads: n must be a positive integer, got {n!r}")
    with _lock:
        _state["n"] = int(n)


def get_num_threads():
    """The number of threads elementwise passes use (1 = serial)."""
    return _state["n"]


def set_min_elements(n):
    """Arrays with fewer than ``n`` elements stay on the serial path (default 65536)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"set_min_elements: n must be a positive integer, got {n!r}")
    _state["min"] = int(n)


def get_min_elements():
    """The size threshold below which :func:`rows` runs serially."""
    return _state["min"]


def active(a):
    """True when a pass over array ``a`` would be split across threads."""
    return (_state["n"] > 1 and type(a) is np.ndarray and a.size >= _state["min"]
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


def rows(fn, *arrays, tail=1):
    """``fn(*arrays)``, run as chunks of rows on the pool when the first array is large.

    fn: works in place on its arguments (blocks of rows of each array), returns nothing that is used.
    arrays: NumPy arrays; the first fixes the shape. Every array either has the first's leading axes
      (all axes but the last ``tail``), and is cut the same way, or broadcasts over them (then every
      chunk gets it whole). None and scalars pass through.
    tail: how many trailing axes are never cut (1: the reduction axis of softmax / LayerNorm;
      0: a purely elementwise ``fn``). A kernel reducing over another axis must not use this.

    Returns None; results are bit-identical to ``fn(*arrays)`` because no reduction is split.
    """
    first = arrays[0]
    n = _state["n"]
    if (n <= 1 or type(first) is not np.ndarray or first.size < _state["min"]
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
    k = min(n, nrows, max(1, first.size // (_state["min"] // 2)))   # ≥ min/2 elements a chunk
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
    pool = _pool(n)
    futures = [pool.submit(_run, fn, err, c) for c in chunks[1:]]
    exc = None
    try:
        _run(fn, err, chunks[0])
    except BaseException as e:            # wait for the others before raising
        exc = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:
            exc = exc or e
    if exc is not None:
        raise exc
    return None

