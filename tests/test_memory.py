"""The host memory cache (tinyattn/memory.py): glibc keeps freed blocks when it is on, so a loop
that allocates and frees the same arrays stops page-faulting; off (explicitly or by the environment
variable) it does not; bad values raise (the function) or warn (the environment, at import)."""
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import memory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GLIBC = memory._libc() is not None
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the host memory cache is a glibc malloc setting")

# Each step allocates 24 arrays of 3 MiB (below NumPy's 4 MiB huge-page hint, so a fault is a 4 KiB
# page), writes them, then frees them all: 72 MiB of free heap top each step, which glibc's default
# heuristics hand back to the OS (trim threshold: twice the largest block freed, here ~6 MiB).
PROBE = textwrap.dedent("""
    import json, resource, sys
    sys.path.insert(0, {root!r})
    import numpy as np
    import tinyattn as ta
    {setup}
    def step():
        arrs = [np.ones(3 << 18, dtype=np.float32) for _ in range(24)]
        del arrs
    step(); step()
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(10):
        step()
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10
    print(json.dumps({{"faults": faults, "cache": ta.get_host_memory_cache()}}))
""")


def _probe(env=None, setup=""):
    e = {k: v for k, v in os.environ.items() if k != memory.ENV}
    e.update(env or {})
    p = subprocess.run([sys.executable, "-c", PROBE.format(root=ROOT, setup=setup)], env=e,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1]), p.stderr


@pytest.fixture
def restore_cache():
    before = ta.get_host_memory_cache()
    yield
    if GLIBC:                  # (None: glibc's initial thresholds, the nearest to "untouched")
        ta.set_host_memory_cache(before)


@needs_glibc
def test_cache_on_by_default_stops_refaulting_and_env_zero_opts_out():
    on, _ = _probe()
    off, _ = _probe({memory.ENV: "0"})
    assert on["cache"] == memory.DEFAULT_CACHE_BYTES and off["cache"] is None
    # 72 MiB handed back and re-faulted each step (~18,000 faults of 4 KiB) vs memory reused
    assert off["faults"] > 5000, off
    assert on["faults"] < off["faults"] / 20, (on, off)


@needs_glibc
def test_explicit_off_gives_memory_back_and_size_from_env():
    off, _ = _probe(setup="assert ta.set_host_memory_cache(None) is True")
    assert off["cache"] is None and off["faults"] > 5000, off
    sized, _ = _probe({memory.ENV: "256M"})
    assert sized["cache"] == 256 << 20 and sized["faults"] < 500, sized
    # a cache smaller than a step's free memory (72 MiB) does not hold it: faults come back
    small, _ = _probe(setup="ta.set_host_memory_cache(8 << 20)")
    assert small["cache"] == 8 << 20 and small["faults"] > 5000, small


def test_bad_env_value_warns_and_import_still_works():
    res, err = _probe({memory.ENV: "lots"})
    assert res["cache"] is None
    if GLIBC:
        assert "TINYATTN_HOST_MEMORY_CACHE='lots'" in err and "RuntimeWarning" in err


@pytest.mark.parametrize("text, n", [("0", 0), ("off", 0), ("1", memory.DEFAULT_CACHE_BYTES),
                                     ("512M", 512 << 20), ("2g", 2 << 30), ("1048576", 1 << 20),
                                     ("64MB", 64 << 20)])
def test_env_values(text, n):
    assert memory._parse(text) == n


@pytest.mark.parametrize("bad", [-1, 1.5, "1G", True])
def test_bad_argument_names_the_function(bad):
    with pytest.raises(ValueError, match="set_host_memory_cache: nbytes"):
        ta.set_host_memory_cache(bad)


@needs_glibc
def test_set_get_release_in_process(restore_cache):
    assert ta.set_host_memory_cache(64 << 20) is True
    assert ta.get_host_memory_cache() == 64 << 20
    assert ta.set_host_memory_cache(np.int64(128 << 20)) is True
    assert ta.get_host_memory_cache() == 128 << 20
    assert isinstance(ta.release_host_memory(), bool)
    assert ta.set_host_memory_cache(0) is True and ta.get_host_memory_cache() is None


def test_no_op_off_glibc(monkeypatch):
    monkeypatch.setitem(memory._state, "loaded", True)
    monkeypatch.setitem(memory._state, "libc", None)
    monkeypatch.setitem(memory._state, "nbytes", None)
    assert ta.set_host_memory_cache(1 << 30) is False
    assert ta.get_host_memory_cache() is None
    assert ta.release_host_memory() is False
