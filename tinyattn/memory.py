"""Host memory cache: keep freed NumPy buffers in the process for reuse (the CPU analogue of CuPy's
memory pool), by two settings of glibc's ``malloc``.

Why. A training step allocates dozens of arrays of several MiB (activations saved for backward,
gradients, matmul outputs) and frees them at the end. With glibc's default heuristics, blocks above
the (dynamic) mmap threshold are ``mmap``-ed and ``munmap``-ed, and free memory at the top of the
heap beyond the (dynamic) trim threshold is handed back to the kernel; the next step gets fresh pages
and the kernel zero-fills each one on first touch (a minor page fault). PyTorch's CPU tensors use the
same ``malloc`` but allocate fewer, longer-lived temporaries; NumPy code pays this cost every step.

What. :func:`set_host_memory_cache` calls ``mallopt`` twice:

    M_MMAP_THRESHOLD = 32 MiB     blocks up to 32 MiB come from the heap (freed ones are reused)
    M_TRIM_THRESHOLD = nbytes     up to ``nbytes`` of free memory at the top of a heap is kept

(glibc's 32 MiB is the largest mmap threshold it accepts; larger arrays are still ``mmap``-ed and
returned at once). The memory kept is memory the process already used: a bounded cache of free
heap, reused by the next allocations of the same sizes; :func:`release_host_memory` hands it back
(``malloc_trim``).

Measured (pre-norm Transformer encoder block, B 32, T 128, d 256, 8 heads, FFN 1024, one training
step forward + backward + Adam, float32, one thread, 5 rounds on a 2-core machine at load ~1; per
step, medians; ``benchmarks/bench_transformer.py --only block --threads 1 --rounds 5``, which prints
these for both libraries, each in its own process):

                                                 faults   system ms   CPU ms   ratio to PyTorch
    glibc defaults (TINYATTN_HOST_MEMORY_CACHE=0)  ~2,000        ~12       369    0.99 (CPU 0.99)
    host memory cache on (the default)                  0       ~0.3       351    0.93 (CPU 0.93)
    PyTorch 2.13 CPU (glibc defaults)         4,000–13,000     8–20   340–380    1

(before the kernels stopped making temporaries of their inputs' size, with glibc defaults: ~3,100
faults, ~16 ms system time, 396 ms CPU, ratio 1.15). Wall-clock ratios on the shared machine vary
by ±15 % from round to round; the fault counts and system times do not.

It is applied when ``tinyattn`` is imported, with :data:`DEFAULT_CACHE_BYTES`, unless the
environment variable ``TINYATTN_HOST_MEMORY_CACHE`` says otherwise: ``0`` (or ``off``/``false``/
``no``) leaves the allocator untouched; a byte count (``536870912``, or with a suffix ``512M``,
``2G``) sets that cache size. ``malloc`` settings are process-wide: they also apply to every other
library in the process. Only glibc (Linux) has them; elsewhere (macOS, Windows, musl) every function
here is a no-op that returns False. Importing tinyattn never raises because of this module.
"""
import ctypes
import operator
import os
import sys
import warnings

__all__ = ["set_host_memory_cache", "get_host_memory_cache", "release_host_memory", "DEFAULT_CACHE_BYTES"]

DEFAULT_CACHE_BYTES = 1 << 30        # at most 1 GiB of free heap kept (trim threshold)
MMAP_THRESHOLD = 32 << 20            # glibc's largest accepted mmap threshold (64-bit)
_GLIBC_DEFAULT = 128 << 10           # glibc's documented initial mmap and trim thresholds
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
ENV = "TINYATTN_HOST_MEMORY_CACHE"

_state = {"libc": None, "loaded": False, "nbytes": None}


def _libc():
    """glibc's handle (with ``mallopt`` and ``malloc_trim``), or None off glibc."""
    if not _state["loaded"]:
        _state["loaded"] = True
        try:
            if sys.platform.startswith("linux"):
                libc = ctypes.CDLL(None)
                if all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
                    libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                    libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                    _state["libc"] = libc
        except Exception:                # pragma: no cover - an unusual platform: stay a no-op
            _state["libc"] = None
    return _state["libc"]


def set_host_memory_cache(nbytes=DEFAULT_CACHE_BYTES):
    """Keep up to ``nbytes`` of freed host memory in the process for reuse (see the module's text).

    nbytes: a positive int (the trim threshold; at least 32 MiB is sensible) — arrays up to 32 MiB
      then come from glibc's heap and freed ones are reused without new page faults;
      ``None`` or 0 — give memory back promptly: glibc's documented initial thresholds (128 KiB
      each; glibc's own dynamic adjustment of them does not come back once set) and a
      ``malloc_trim`` now.
    Returns True when the allocator took the setting, False where there is nothing to set (not
    glibc). Process-wide, like every ``malloc`` setting.
    """
    if nbytes is None:
        nbytes = 0
    try:
        n = operator.index(nbytes) if not isinstance(nbytes, bool) else -1   # ints, NumPy ints
    except TypeError:
        n = -1
    if n < 0:
        raise ValueError(f"set_host_memory_cache: nbytes must be a non-negative int (bytes) or None, "
                         f"got {nbytes!r}")
    nbytes = n
    libc = _libc()
    if libc is None:
        return False
    cap = (1 << 31) - 1                                 # mallopt takes a C int
    if nbytes:
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, min(int(nbytes), cap)) == 1)
    else:
        ok = (libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT) == 1
              and libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT) == 1)
        libc.malloc_trim(0)
    if ok:
        _state["nbytes"] = int(nbytes) or None
    return bool(ok)


def get_host_memory_cache():
    """The cache size set by :func:`set_host_memory_cache` (bytes), or None (not set, turned off,
    or not glibc)."""
    return _state["nbytes"]


def release_host_memory():
    """Hand the free host memory the process holds back to the OS now (glibc ``malloc_trim(0)``);
    the cache setting stays. Returns True if memory was released, False otherwise (or off glibc)."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))


def _parse(value):
    """``TINYATTN_HOST_MEMORY_CACHE``'s value -> bytes (0: off). Raises ValueError."""
    v = value.strip().lower()
    if v in ("0", "off", "false", "no", "none"):
        return 0
    if v in ("1", "on", "true", "yes", ""):
        return DEFAULT_CACHE_BYTES
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if v[-1:] == "b":
        v = v[:-1]
    scale = mult.get(v[-1:], 1)
    n = int(float(v[:-1] if scale != 1 else v) * scale)
    if n < 0:
        raise ValueError(value)
    return n


def _apply_at_import():
    """Called by ``import tinyattn``: the default cache unless the environment turns it off. Never
    raises (a bad value warns and leaves the allocator untouched)."""
    try:
        raw = os.environ.get(ENV)
        try:
            n = DEFAULT_CACHE_BYTES if raw is None else _parse(raw)
        except (ValueError, IndexError):
            warnings.warn(f"{ENV}={raw!r}: expected 0/off or a byte count such as 1073741824 or 1G; "
                          f"leaving the host allocator untouched", RuntimeWarning, stacklevel=3)
            return False
        return set_host_memory_cache(n) if n else False
    except Exception:                    # pragma: no cover - never fail an import over a tuning knob
        return False
