"""NumPy's BLAS threads from NumPy alone (tinyattn.parallel: blas_info, get/set_blas_threads,
blas_threads, and set_num_threads governing BLAS too), and the rule that the elementwise pool never
calls BLAS (every ``parallel.rows`` call in the library is read and checked).

A GEMM on 1 vs n BLAS threads is not guaranteed bit-identical, so nothing here compares results
across thread counts; these tests check which library is found and that the counts change and are
restored. Where NumPy's BLAS is not controllable (a platform without /proc and without a bundled
BLAS, Accelerate) the tests that need control skip; on Linux with a known BLAS they must find it."""
import ast
import ctypes
import os
import pathlib
import re
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import parallel

ROOT = pathlib.Path(__file__).resolve().parent.parent
KNOWN = ("openblas", "mkl", "blis")


def _build_vendor():
    return next((k for k in KNOWN if k in (parallel.blas_info()["numpy_build"] or "").lower()), None)


@pytest.fixture
def controllable():
    """NumPy's BLAS threads, restored afterwards (pool and BLAS), or a skip where not controllable."""
    info = parallel.blas_info()
    if not info["controllable"]:
        if sys.platform.startswith("linux") and _build_vendor():
            pytest.fail(f"NumPy was built with {info['numpy_build']} but blas_info found no control: {info}")
        pytest.skip(f"NumPy's BLAS is not controllable here: {info['summary']}")
    pool, blas = ta.get_num_threads(), parallel.get_blas_threads()
    yield info
    ta.set_num_threads(pool, blas=False)
    parallel.set_blas_threads(blas)


def test_blas_info_finds_numpys_own_blas(controllable):
    info = controllable
    assert info["vendor"] in KNOWN and info["threads"] >= 1
    assert info["vendor"] == _build_vendor(), info              # the library NumPy was built with
    assert os.path.isfile(info["path"])
    if sys.platform.startswith("linux"):                         # and it is loaded in this process
        with open("/proc/self/maps") as f:
            assert info["path"] in f.read()
    if "scipy-openblas" in (info["numpy_build"] or ""):          # the wheel's bundled copy, not scipy's
        numpy_dir = os.path.dirname(os.path.realpath(np.__file__))
        assert info["path"].startswith((numpy_dir, os.path.join(os.path.dirname(numpy_dir), "numpy.libs")))
        assert info["version"] and info["version"] in info["numpy_build"]
        assert info["config"].startswith("OpenBLAS") and info["core"]
        assert info["threading"] in ("pthreads", "openmp", "sequential")
    assert info["vendor"] in info["summary"] and f"{info['threads']} thread" in info["summary"]


def test_set_get_round_trip_and_context_manager_restores(controllable):
    assert parallel.set_blas_threads(1) == 1 and parallel.get_blas_threads() == 1
    assert parallel.set_blas_threads(2) == 2 and parallel.get_blas_threads() == 2
    with parallel.blas_threads(1) as n:
        assert n == 1 and parallel.get_blas_threads() == 1
        with parallel.blas_threads(3):
            assert parallel.get_blas_threads() == 3
        assert parallel.get_blas_threads() == 1
    assert parallel.get_blas_threads() == 2
    with pytest.raises(RuntimeError, match="inside"):
        with parallel.blas_threads(1):
            raise RuntimeError("inside")
    assert parallel.get_blas_threads() == 2                      # restored on an exception too
    a = np.ones((64, 64), np.float32)
    with parallel.blas_threads(1):                               # GEMMs still run (right result)
        assert np.array_equal(a @ a, np.full((64, 64), 64, np.float32))


def test_set_num_threads_governs_blas_and_1_is_fully_serial(controllable):
    ta.set_num_threads(1)
    assert ta.get_num_threads() == 1 and parallel.get_blas_threads() == 1
    ta.set_num_threads(2)
    assert ta.get_num_threads() == 2 and parallel.get_blas_threads() == 2
    ta.set_num_threads(1, blas=False)                            # the pool alone
    assert ta.get_num_threads() == 1 and parallel.get_blas_threads() == 2


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True, None])
def test_counts_are_validated_even_where_not_controllable(bad):
    for fn in (parallel.set_blas_threads, ta.set_num_threads):
        with pytest.raises(ValueError, match=fn.__name__):
            fn(bad)
    with pytest.raises(ValueError, match="blas_threads"):
        with parallel.blas_threads(bad):
            pass


def test_not_controllable_degrades_without_raising(monkeypatch):
    """No BLAS found: None / controllable False with a reason, and set_num_threads still sizes the pool."""
    monkeypatch.setitem(parallel._blas, "lib", None)
    monkeypatch.setitem(parallel._blas, "done", True)
    n = ta.get_num_threads()
    try:
        assert parallel.get_blas_threads() is None and parallel.set_blas_threads(2) is None
        with parallel.blas_threads(1) as k:
            assert k is None
        ta.set_num_threads(1)
        assert ta.get_num_threads() == 1
    finally:
        ta.set_num_threads(n, blas=False)
    info = parallel.blas_info()
    assert info["controllable"] is False and info["threads"] is None and info["reason"]
    assert "not controllable" in info["summary"]
    assert parallel._probe_blas(ctypes.CDLL(None), "libc") is None     # a library without BLAS controls


def test_blas_info_names_cublas_on_the_device_backend(backend):
    info = parallel.blas_info()
    assert info["backend"] == ta.get_backend()
    assert ("cuBLAS" in info["summary"]) == (backend == "cupy")


def test_import_leaves_blas_alone_unless_tinyattn_num_threads_is_set():
    code = ("import tinyattn as ta; from tinyattn import parallel as p; "
            "print(ta.get_num_threads(), p.get_blas_threads(), p.blas_info()['controllable'])")
    env = {k: v for k, v in os.environ.items() if k != "TINYATTN_NUM_THREADS"}

    def run(e):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                              env=e, cwd=ROOT).stdout.split()
    pool, blas, ok = run(dict(env, OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    if ok != "True":
        pytest.skip("NumPy's BLAS is not controllable here")
    assert blas == "1" and int(pool) == len(os.sched_getaffinity(0))     # the pool sized, BLAS untouched
    pool, blas, _ = run(dict(env, TINYATTN_NUM_THREADS="3", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1"))
    assert pool == "3" and blas == "3"                                   # the variable sizes both
    pool, blas, _ = run(dict(env, TINYATTN_NUM_THREADS="1"))
    assert pool == "1" and blas == "1"


# ------------------------------------------------------------------------------------------------
# The probe against stand-in MKL and BLIS libraries (their C APIs, compiled here when a compiler is)
# ------------------------------------------------------------------------------------------------
FAKE = {
    "mkl": r'''
        #include <string.h>
        static int n = 4;
        int MKL_Get_Max_Threads(void) { return n; }
        void MKL_Set_Num_Threads(int k) { n = k; }
        void MKL_Get_Version_String(char *buf, int len) { strncpy(buf, "Intel(R) oneAPI MKL 2099.0", len); }
        int MKL_Set_Threading_Layer(int layer) { return layer == -1 ? 3 : layer; }
    ''',
    "blis": r'''
        #include <stdint.h>
        static int64_t n = 4;
        int64_t bli_thread_get_num_threads(void) { return n; }
        void bli_thread_set_num_threads(int64_t k) { n = k; }
        const char *bli_info_get_version_str(void) { return "9.9.9"; }
        int bli_arch_query_id(void) { return 7; }
        const char *bli_arch_string(int id) { return id == 7 ? "zen3" : "?"; }
    ''',
}


@pytest.mark.parametrize("vendor", sorted(FAKE))
def test_probe_reads_and_sets_mkl_and_blis(vendor, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the stand-in library")
    src, so = tmp_path / f"{vendor}.c", tmp_path / f"lib{vendor}_fake.so"
    src.write_text(textwrap.dedent(FAKE[vendor]))
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(so), str(src)], check=True, capture_output=True)
    b = parallel._probe_blas(ctypes.CDLL(str(so)), str(so))
    assert b is not None and b["vendor"] == vendor
    assert b["get"]() == 4
    b["set"](2)
    assert b["get"]() == 2
    info = b["info"]()
    if vendor == "mkl":
        assert info["version"] == "Intel(R) oneAPI MKL 2099.0" and info["threading"] == "gnu"
    else:
        assert info["version"] == "9.9.9" and info["core"] == "zen3"


# ------------------------------------------------------------------------------------------------
# The pool never calls BLAS: every function handed to parallel.rows is pure elementwise work
# ------------------------------------------------------------------------------------------------
BLAS_NAMES = {"matmul", "dot", "einsum", "tensordot", "inner", "vdot", "vecdot", "matvec", "vecmat", "linalg"}


def _plain_einsum(call):
    """``einsum(...)`` without ``optimize=`` (or with optimize=False) is NumPy's own C loop, no BLAS;
    with ``optimize`` it contracts through tensordot, i.e. BLAS."""
    return all(k.arg != "optimize" or (isinstance(k.value, ast.Constant) and k.value.value is False)
               for k in call.keywords)


def _blas_uses(source):
    """Problems with every parallel.rows(fn, ...) call in ``source``: fn (a lambda, or a function
    of this module, and the module's functions it calls, followed) uses BLAS or cannot be resolved."""
    tree = ast.parse(source)
    defs = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defs.setdefault(node.name, []).append(node)

    def check(node, seen):
        bad = []
        ok = {id(c.func) for c in ast.walk(node) if isinstance(c, ast.Call) and _plain_einsum(c)
              and getattr(c.func, "attr", getattr(c.func, "id", None)) == "einsum"}
        for sub in ast.walk(node):
            if id(sub) in ok:
                continue
            if isinstance(sub, (ast.BinOp, ast.AugAssign)) and isinstance(sub.op, ast.MatMult):
                bad.append(f"line {sub.lineno}: @")
            elif isinstance(sub, ast.Attribute) and sub.attr in BLAS_NAMES:
                bad.append(f"line {sub.lineno}: .{sub.attr}")
            elif isinstance(sub, ast.Name) and sub.id in BLAS_NAMES:
                bad.append(f"line {sub.lineno}: {sub.id}")
            elif (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in defs
                  and sub.func.id not in seen):
                seen.add(sub.func.id)
                for d in defs[sub.func.id]:
                    bad += check(d, seen)
        return bad

    problems, calls = [], 0
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "rows"
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "parallel"):
            continue
        calls += 1
        fn = node.args[0] if node.args else None
        if isinstance(fn, ast.Lambda):
            bad = check(fn, set())
        elif isinstance(fn, ast.Name) and fn.id in defs:
            bad = [b for d in defs[fn.id] for b in check(d, {fn.id})]
        else:
            bad = ["its function cannot be read (not a lambda or a function of this module)"]
        problems += [f"parallel.rows at line {node.lineno}: {b}" for b in bad]
    return problems, calls


def test_the_checker_flags_blas_in_a_pool_function():
    bad = textwrap.dedent('''
        def helper(a):
            r = np.einsum("ij,ij->i", a, a)           # NumPy's own loop: allowed
            return np.einsum("ij,jk->ik", a, a, optimize=True)
        def kern(a, o):
            np.exp(a, out=a)
            helper(a)
        def go(x, y):
            parallel.rows(kern, x, y)
            parallel.rows(lambda a: a @ a, x)
            parallel.rows(lambda a: np.linalg.norm(a), x)
            parallel.rows(getattr(np, "exp"), x)
            parallel.rows(lambda a: np.exp(a, out=a), x)
    ''')
    problems, calls = _blas_uses(bad)
    assert calls == 5
    text = "\n".join(problems)
    assert "einsum" in text and ": @" in text and "linalg" in text and "cannot be read" in text
    assert len(problems) == 4, text                              # the plain exp lambda passes


def test_the_pool_never_calls_blas():
    files = sorted((ROOT / "tinyattn").rglob("*.py"))
    total, problems = 0, []
    for path in files:
        if path.name == "parallel.py" and path.parent.name == "tinyattn":
            continue
        found, calls = _blas_uses(path.read_text())
        total += calls
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in found]
    assert not problems, "a function run on the pool calls BLAS:\n" + "\n".join(problems)
    assert total >= 10, f"only {total} parallel.rows calls found: is the checker still reading them?"


def test_blas_threads_benchmark_runs(controllable):
    """benchmarks/blas_threads.py --quick prints a row for every (pool, BLAS) setting."""
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "blas_threads.py"), "--quick", "--rounds", "1",
                        "--reps", "1", "--only", "mha_warm"], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| mha_warm")]
    pool, blas = map(int, re.search(r"# defaults: pool (\d+), BLAS (\d+)", r.stdout).groups())
    assert len(rows) == len({1, pool, blas}) ** 2, r.stdout
    assert "load average" in r.stdout and controllable["vendor"] in r.stdout.lower()
    assert all(re.search(r"\d+\.\d+ – \d+\.\d+ – \d+\.\d+ \|$", row) for row in rows), rows
