"""The elementwise thread pool (tinyattn.parallel): API, chunking, and bit-identity of every kernel
that uses it against the serial path (set_num_threads(1))."""
import threading

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import parallel


@pytest.fixture(autouse=True)
def _host_backend():
    """The pool is a host (NumPy) mechanism: device arrays always take the serial path (tested
    below with a device-like array), so these bit-identity tests run on NumPy in both passes.
    conftest's fixture restores the pass's backend afterwards."""
    ta.use_backend("numpy")
    yield



@pytest.fixture
def pool():
    """Parallel path forced on for small arrays: 3 threads (uneven chunks even on 2 cores), a low
    threshold; the previous settings restored afterwards. Every switch here sizes the pool only
    (``blas=False``): the GEMMs keep their BLAS thread count, so serial and parallel runs differ in
    the pool alone (a GEMM on 1 vs n BLAS threads is not guaranteed bit-identical)."""
    n, m = ta.get_num_threads(), parallel.get_min_elements()
    ta.set_num_threads(3, blas=False)
    parallel.set_min_elements(64)
    yield
    ta.set_num_threads(n, blas=False)
    parallel.set_min_elements(m)


def _threads_used(fn, *arrays, tail=1, work=1):
    names = []

    def rec(*chunks):
        names.append(threading.current_thread().name)
        fn(*chunks)
    parallel.rows(rec, *arrays, tail=tail, work=work)
    return names


def test_api_validates_and_round_trips():
    n = ta.get_num_threads()
    try:
        ta.set_num_threads(5, blas=False)
        assert ta.get_num_threads() == 5 and parallel.get_num_threads() == 5
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError, match="set_num_threads"):
                ta.set_num_threads(bad)
    finally:
        ta.set_num_threads(n, blas=False)
    with pytest.raises(ValueError, match="set_min_elements"):
        parallel.set_min_elements(0)


def test_default_is_the_cores_we_may_run_on():
    import os
    import subprocess
    import sys
    code = "import os, tinyattn as ta; print(ta.get_num_threads(), len(os.sched_getaffinity(0)))"
    env = {k: v for k, v in os.environ.items() if k != "TINYATTN_NUM_THREADS"}
    a, b = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          env=env, cwd=os.path.dirname(os.path.dirname(__file__))).stdout.split()
    assert a == b


def test_chunks_run_on_worker_threads_and_set_num_threads_1_is_serial(pool):
    x = np.random.default_rng(0).standard_normal((37, 11)).astype(np.float32)
    names = _threads_used(lambda a: np.exp(a, out=a), x.copy())
    assert len(names) == 3 and any(n.startswith("tinyattn") for n in names)
    ta.set_num_threads(1, blas=False)
    names = _threads_used(lambda a: np.exp(a, out=a), x.copy())
    assert names == [threading.current_thread().name]


def test_small_arrays_stay_serial(pool):
    parallel.set_min_elements(10_000)
    names = _threads_used(lambda a: np.exp(a, out=a), np.ones((99, 100)))      # 9900 < 10000
    assert names == [threading.current_thread().name]
    names = _threads_used(lambda a: np.exp(a, out=a), np.ones((101, 100)))     # just over
    assert len(names) > 1


@pytest.mark.parametrize("shape", [(5, 7, 13), (3, 65), (130,), (2, 3, 4, 17), (1, 1, 200, 3)])
@pytest.mark.parametrize("tail", [0, 1])
def test_rows_bit_identical_softmax_like(pool, shape, tail):
    """A row reduction (max, sum) and transcendental ufuncs: split == serial, bit for bit."""
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(shape) * 5).astype(np.float32)

    def kern(a):
        if tail:
            a -= a.max(axis=-1, keepdims=True)
        np.exp(a, out=a)
        if tail:
            a /= a.sum(axis=-1, keepdims=True)
        np.tanh(a, out=a)
    if tail == 0:
        ser = x.copy()
        ta.set_num_threads(1, blas=False)
        kern(ser)
        ta.set_num_threads(3, blas=False)
    else:
        ser = x.copy()
        kern(ser)
    par = x.copy()
    parallel.rows(kern, par, tail=tail)
    assert par.tobytes() == ser.tobytes()


def test_broadcast_operands_pass_whole_and_partial_broadcast_splits_axis0(pool):
    rng = np.random.default_rng(2)
    s = rng.standard_normal((4, 3, 9, 10))
    drop = rng.random((4, 1, 1, 10)) < 0.3          # broadcasts over heads and queries: axis-0 split
    gamma = rng.standard_normal(10)                 # broadcasts over everything

    def kern(a, d, g):
        np.copyto(a, 0.0, where=d)
        a *= g
    ser = s.copy()
    kern(ser, drop, gamma)
    par = s.copy()
    names = _threads_used(kern, par, drop, gamma)
    assert len(names) > 1
    assert par.tobytes() == ser.tobytes()


def test_non_contiguous_first_array_is_split_on_axis0_without_copy(pool):
    base = np.random.default_rng(3).standard_normal((8, 20, 12))
    view = base[:, ::2]                              # cannot be flattened without a copy
    expect = np.exp(view)
    parallel.rows(lambda a: np.exp(a, out=a), view)
    assert np.array_equal(base[:, ::2], expect)       # written through the view


def test_exceptions_propagate_and_errstate_is_the_callers(pool):
    x = np.full((50, 10), 1000.0, dtype=np.float32)

    def kern(a):
        np.exp(a, out=a)
    with np.errstate(over="raise"):
        with pytest.raises(FloatingPointError):
            parallel.rows(kern, x.copy())
    with np.errstate(over="ignore"):
        y = x.copy()
        parallel.rows(kern, y)
        assert np.isinf(y).all()


def test_nested_calls_do_not_deadlock(pool):
    x = np.ones((40, 8))

    def outer(a):
        parallel.rows(lambda b: np.exp(b, out=b), a)
    parallel.rows(outer, x)
    assert np.allclose(x, np.e)


# ------------------------------------------------------------------------------------------------
# Every kernel that uses the pool: parallel result == serial result, bit for bit
# ------------------------------------------------------------------------------------------------
SHAPES = [(5, 13), (7, 13, 5), (3, 4, 9, 17), (2, 1000)]       # 65 elements: just over the threshold


def _serial_and_parallel(run):
    """run() under set_num_threads(1) and under the forced pool; both results (lists of arrays)."""
    ta.set_num_threads(1, blas=False)
    ser = run()
    ta.set_num_threads(3, blas=False)
    par = run()
    return ser, par


def _same(ser, par):
    assert len(ser) == len(par)
    for a, b in zip(ser, par):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("op", ["exp", "tanh", "sigmoid", "gelu"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_elementwise_ops_forward_backward_bit_identical(pool, shape, op, dtype):
    rng = np.random.default_rng(4)
    x0 = (rng.standard_normal(shape) * 3).astype(dtype)
    g0 = rng.standard_normal(shape).astype(dtype)

    def run():
        x = ta.tensor(x0, requires_grad=True)
        y = getattr(ta, op)(x)
        y.backward(ta.tensor(g0))
        return [y.data, x.grad.data]
    _same(*_serial_and_parallel(run))


@pytest.mark.parametrize("opt", ["SGD", "SGDm", "SGDn", "RMSprop", "RMSpropc", "Adam", "AdamW", "Adamams"])
def test_optimizer_updates_bit_identical(pool, opt):
    rng = np.random.default_rng(5)
    shapes = [(13, 7), (5,), (3, 4, 11), (2, 100)]
    w0 = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    gs = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(3)]
    make = {"SGD": lambda ps: ta.optim.SGD(ps, lr=0.1, weight_decay=0.01),
            "SGDm": lambda ps: ta.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1),
            "SGDn": lambda ps: ta.optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1),
            "RMSprop": lambda ps: ta.optim.RMSprop(ps, lr=0.01, momentum=0.5, weight_decay=0.1),
            "RMSpropc": lambda ps: ta.optim.RMSprop(ps, lr=0.01, centered=True),
            "Adam": lambda ps: ta.optim.Adam(ps, lr=0.01, weight_decay=0.1),
            "AdamW": lambda ps: ta.optim.AdamW(ps, lr=0.01),
            "Adamams": lambda ps: ta.optim.Adam(ps, lr=0.01, amsgrad=True)}[opt]

    def run():
        ps = [ta.nn.Parameter(w.copy()) if hasattr(ta.nn, "Parameter") else ta.tensor(w, requires_grad=True)
              for w in w0]
        o = make(ps)
        for step in gs:
            for p, g in zip(ps, step):
                p.grad = ta.tensor(g)
            o.step()
        state = [v for s in o.state.values() for v in s.values() if hasattr(v, "shape")]
        return [p.data for p in ps] + state
    ser, par = _serial_and_parallel(run)
    assert not np.array_equal(ser[0], w0[0])           # the update did something
    _same(ser, par)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("masked", [False, True])
def test_softmax_and_masked_softmax_bit_identical(pool, shape, masked):
    rng = np.random.default_rng(6)
    x0 = (rng.standard_normal(shape) * 4).astype(np.float32)
    g0 = rng.standard_normal(shape).astype(np.float32)
    mask = rng.random(shape) < 0.7
    if masked:
        mask.reshape(-1, shape[-1])[0] = False          # one fully masked row

    def run():
        x = ta.tensor(x0, requires_grad=True)
        y = ta.functions.nn.MaskedSoftmax(mask)(x) if masked else ta.softmax(x, axis=-1)
        y.backward(ta.tensor(g0))
        return [y.data, x.grad.data]
    _same(*_serial_and_parallel(run))


@pytest.mark.parametrize("shape", [(2, 3, 7, 11), (1, 2, 13, 5), (3, 1, 9, 9)])
@pytest.mark.parametrize("variant", ["plain", "mask", "causal_bias", "dropout", "weights_used"])
def test_fused_sdpa_bit_identical(pool, shape, variant):
    B, H, T, S = shape
    rng = np.random.default_rng(7)
    q0 = rng.standard_normal((B, H, T, 8)).astype(np.float32)
    k0, v0 = (rng.standard_normal((B, H, S, 8)).astype(np.float32) for _ in range(2))
    go = rng.standard_normal((B, H, T, 8)).astype(np.float32)
    gw = rng.standard_normal((B, H, T, S)).astype(np.float32)
    mask = rng.random((B, 1, 1, S)) < 0.8 if variant == "mask" else None
    bias = np.triu(np.full((T, S), -1e9, np.float32), 1) if variant == "causal_bias" else None
    p = 0.3 if variant == "dropout" else 0.0

    def run():
        ta.manual_seed(0)
        q, k, v = (ta.tensor(a, requires_grad=True) for a in (q0, k0, v0))
        fn = ta.kernels.attention.ScaledDotProductAttention(1 / np.sqrt(8), mask=mask, dropout=p, bias=bias)
        o, w = fn(q, k, v)
        loss = (o * ta.tensor(go)).sum()
        if variant == "weights_used":
            loss = loss + (w * ta.tensor(gw)).sum()
        loss.backward()
        return [o.data, w.data, q.grad.data, k.grad.data, v.grad.data]
    _same(*_serial_and_parallel(run))


@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm_bit_identical(pool, shape):
    rng = np.random.default_rng(8)
    x0 = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    g0 = rng.standard_normal(shape).astype(np.float32)

    def run():
        ta.manual_seed(0)
        ln = ta.nn.LayerNormalization(epsilon=1e-5)
        x = ta.tensor(x0, requires_grad=True)
        ln(x)
        ln.gamma.data[...] = rng_g = np.linspace(0.5, 1.5, shape[-1], dtype=np.float32)   # noqa: F841
        ln.beta.data[...] = np.linspace(-1, 1, shape[-1], dtype=np.float32)
        y = ln(x)
        y.backward(ta.tensor(g0))
        return [y.data, x.grad.data, ln.gamma.grad.data, ln.beta.grad.data]
    _same(*_serial_and_parallel(run))


def test_score_buffers_are_reused_only_when_free():
    """The fused SDPA takes its score buffers from the refcount-safe pool: a live P is never reused."""
    rng = np.random.default_rng(9)
    q, k, v = (ta.tensor(rng.standard_normal((2, 2, 16, 8)).astype(np.float32)) for _ in range(3))
    fn = ta.kernels.attention.ScaledDotProductAttention
    _, w1 = fn(0.3)(q, k, v)
    keep = w1.data.copy()
    _, w2 = fn(0.3)(q * 2, k, v)                       # w1 alive: w2 must be another array
    assert not np.shares_memory(w1.data, w2.data)
    assert np.array_equal(w1.data, keep)
    addr = w2.data.__array_interface__["data"][0]
    del w2
    _, w3 = fn(0.3)(q, k, v)
    assert w3.data.__array_interface__["data"][0] == addr       # the freed buffer came back
    assert np.array_equal(w3.data, keep)


def test_non_numpy_arrays_take_the_serial_path(pool):
    """Anything that is not exactly a NumPy ndarray (CuPy arrays, subclasses) runs fn once, whole,
    on the calling thread: the GPU already runs the pass in parallel."""
    class Sub(np.ndarray):
        pass
    x = np.ones((50, 10)).view(Sub)
    assert not parallel.active(x)
    names = _threads_used(lambda a: np.exp(a, out=a), x)
    assert names == [threading.current_thread().name]


@pytest.mark.parametrize("B,T,S,A", [(3, 1, 7, 5), (2, 4, 9, 6), (5, 1, 13, 3)])
def test_additive_score_and_decoder_step_bit_identical(pool, B, T, S, A):
    rng = np.random.default_rng(10)
    qp0 = rng.standard_normal((B, T, A)).astype(np.float32)
    kp0 = rng.standard_normal((B, S, A)).astype(np.float32)
    x0 = rng.standard_normal((B, S, 4)).astype(np.float32)
    v0 = rng.standard_normal(A).astype(np.float32)
    gs0 = rng.standard_normal((B, T, S)).astype(np.float32)
    gc0 = rng.standard_normal((B, 4)).astype(np.float32)
    mask = rng.random((B, S)) < 0.8

    def run():
        qp, kp, v, x = (ta.tensor(a, requires_grad=True) for a in (qp0, kp0, v0, x0))
        s = ta.kernels.attention.AdditiveScore()(qp, kp, v)
        s.backward(ta.tensor(gs0))
        res = [s.data, qp.grad.data, kp.grad.data, v.grad.data]
        for t in (qp, kp, v):
            t.grad = None
        c, a = ta.seq2seq.additive_attention(qp[:, 0], kp, x, v, mask=mask)
        ((c * ta.tensor(gc0)).sum() + (a * a).sum()).backward()
        return res + [c.data, a.data, qp.grad.data, kp.grad.data, v.grad.data, x.grad.data]
    _same(*_serial_and_parallel(run))


def test_a_single_long_row_runs_serially(pool):
    """(1, n) softmaxed over n, or (1, 1, n): one row, nothing to split; the result is still right."""
    x = np.random.default_rng(11).standard_normal((1, 1, 500)).astype(np.float32)
    y = ta.softmax(ta.tensor(x), axis=-1).data
    ta.set_num_threads(1, blas=False)
    assert y.tobytes() == ta.softmax(ta.tensor(x), axis=-1).data.tobytes()
    names = _threads_used(lambda a: np.exp(a, out=a), x.copy())
    assert names == [threading.current_thread().name]


def _spy_matmul_parts(monkeypatch, record):
    """The pool on 2 threads (BLAS unchanged), and every part parallel.matmul hands out recorded as
    record(a, b, out) in the list returned with BLAS's thread count before."""
    ta.set_num_threads(2, blas=False)
    seen = []
    real = parallel._matmul_part
    monkeypatch.setattr(parallel, "_matmul_part", lambda x, y, o: (seen.append(record(x, y, o)), real(x, y, o)))
    return parallel.get_blas_threads(), seen


def test_matmul_splits_small_product_stacks_with_blas_on_one_thread(pool, monkeypatch):
    """parallel.matmul on n > 1 threads: the stack of small products is cut over the pool, BLAS on
    one thread meanwhile (and restored after), each product the same BLAS call as np.matmul's with
    one BLAS thread: equal bits. Broadcast stacks, big products and one thread are np.matmul."""
    if not parallel.blas_info()["controllable"]:
        pytest.skip("NumPy's BLAS thread count is not controllable here")
    rng = np.random.default_rng(9)
    a = rng.standard_normal((5, 3, 16, 8)).astype(np.float32)
    b = rng.standard_normal((5, 3, 8, 16)).astype(np.float32)
    with parallel.blas_threads(1):
        want = np.matmul(a, b)
    before, seen = _spy_matmul_parts(monkeypatch, lambda x, y, o: (
        threading.current_thread() is not threading.main_thread(), parallel.get_blas_threads()))
    out = np.empty_like(want)
    got = parallel.matmul(a, b, out=out)
    assert got is out and got.tobytes() == want.tobytes()
    assert sorted(seen) == [(False, 1), (True, 1)]        # one half here, one on a pool thread, BLAS at 1
    assert parallel.get_blas_threads() == before
    assert parallel.matmul(a, b.swapaxes(-1, -2).swapaxes(-1, -2)).tobytes() == want.tobytes()
    seen.clear()
    np.testing.assert_allclose(parallel.matmul(a, b[:1]), np.matmul(a, b[:1]), rtol=1e-6)   # broadcast
    big = rng.standard_normal((2, 160, 160)).astype(np.float32)
    np.testing.assert_allclose(parallel.matmul(big, big), np.matmul(big, big), rtol=1e-5)     # 2²² > 2²¹
    assert seen == []
    ta.set_num_threads(1, blas=False)
    assert parallel.matmul(a, b).tobytes() == np.matmul(a, b).tobytes() and seen == []


@pytest.mark.parametrize("m,k,n,trans", [(256, 96, 128, ""), (200, 128, 160, "a"), (64, 256, 512, "a"), (16, 512, 520, "b"),
                                         (8, 64, 24, "ab")])
def test_matmul_splits_one_large_product_with_blas_on_one_thread(pool, monkeypatch, m, k, n, trans):
    """parallel.matmul of ONE large 2-D product (threshold lowered here): the rows of a and of the
    result are cut over the pool when a is the bigger operand (m ≥ n), else the columns of b (too
    few of both: whole),
    BLAS on one thread meanwhile (restored after); transposed operands (views) as they are; the
    bits of np.matmul on one BLAS thread. Linear layers' GEMMs come here through functions.arith.

    Sizes: every part here is past OpenBLAS's small-matrix path (≲ 1M multiply-adds, other kernels
    and another summation order: a 24 × 160 × 72 product cut in two differs in the last bit); the
    real threshold, 2²⁷, keeps parts at 2²¹ or more on up to 64 threads."""
    if not parallel.blas_info()["controllable"]:
        pytest.skip("NumPy's BLAS thread count is not controllable here")
    monkeypatch.setattr(parallel, "_LARGE_GEMM", 1)
    rng = np.random.default_rng(12)
    a = rng.standard_normal((k, m) if "a" in trans else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if "b" in trans else (k, n)).astype(np.float32)
    a, b = (a.T if "a" in trans else a), (b.T if "b" in trans else b)
    with parallel.blas_threads(1):
        want = np.matmul(a, b)
    before, seen = _spy_matmul_parts(monkeypatch, lambda x, y, o: (x.shape, y.shape, parallel.get_blas_threads()))
    got = parallel.matmul(a, b)
    assert got.shape == (m, n) and got.tobytes() == want.tobytes()
    assert parallel.get_blas_threads() == before
    half = lambda v: v // 2 // 16 * 16                           # noqa: E731 (cuts at multiples of 16)
    if m >= 32 and (m >= n or n < 32):                           # rows cut
        assert sorted(s[0][0] for s in seen) == sorted([half(m), m - half(m)]) and {s[2] for s in seen} == {1}
    elif n >= 32:                                                # columns cut
        assert sorted(s[1][1] for s in seen) == sorted([half(n), n - half(n)]) and {s[2] for s in seen} == {1}
    else:
        assert seen == []
    out = np.empty((m, n), np.float32)
    assert parallel.matmul(a, b, out=out) is out and out.tobytes() == want.tobytes()
    monkeypatch.setattr(parallel, "_LARGE_GEMM", m * k * n + 1)  # below the threshold: np.matmul
    seen.clear()
    assert parallel.matmul(a, b).tobytes() == np.matmul(a, b).tobytes() and seen == []


def test_linear_layers_split_large_gemms_bit_identical(pool, monkeypatch):
    """Every GEMM of a Linear layer's forward and backward (x @ W, gy @ Wᵀ, xᵀ gy) taken through the
    large-product split (threshold lowered; every part, on 3 threads, past OpenBLAS's small-matrix
    path): the bits of the serial run, both on one BLAS thread."""
    monkeypatch.setattr(parallel, "_LARGE_GEMM", 1)
    rng = np.random.default_rng(13)
    x0, w0, b0, g0 = (rng.standard_normal(s).astype(np.float32) for s in ((4, 64, 96), (96, 192), (192,), (4, 64, 192)))

    def run():
        x, w, b = (ta.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        y = ta.functions.linear(x, w, b)
        y.backward(ta.tensor(g0))
        return [y.data, x.grad.data, w.grad.data, b.grad.data]
    with parallel.blas_threads(1):
        _same(*_serial_and_parallel(run))


def test_work_weighs_the_threshold(pool):
    """``work`` (passes a kernel makes) scales the size threshold: a kernel of 8 passes over an
    array of 1/4 the threshold is split, a single pass over it is not; tasks() alike."""
    parallel.set_min_elements(4096)
    a = np.zeros((64, 16), np.float32)                          # 1,024 elements
    assert not parallel.active(a) and parallel.active(a, work=8)
    assert len(set(_threads_used(lambda x: None, a))) == 1
    assert len(set(_threads_used(lambda x: None, a, work=8))) > 1
    seen = []
    parallel.tasks([(lambda: seen.append(threading.current_thread().name),) for _ in range(4)], [256] * 4)
    assert len(set(seen)) == 1
    seen.clear()
    parallel.tasks([(lambda: seen.append(threading.current_thread().name),) for _ in range(4)], [256] * 4, work=8)
    assert len(seen) == 4


def test_tasks_run_whole_calls_balanced_over_the_pool(pool, monkeypatch):
    """parallel.tasks: every call runs once, whole, in one thread (rows() inside it serial), the
    threads' shares balanced by size (largest first to the least loaded); an error reaches the
    caller after all calls finished; one thread, or sizes under the threshold, run in order here."""
    seen, lock = [], threading.Lock()

    def call(i, a):
        with lock:
            seen.append((i, threading.current_thread().name, parallel.active(a)))
        a += i
    arrays = [np.zeros(s, np.float32) for s in (500, 400, 300, 200, 100)]
    shares = []
    real = parallel._run_calls
    monkeypatch.setattr(parallel, "_run_calls", lambda share: (shares.append(
        (threading.current_thread() is threading.main_thread(), sorted(c[1] for c in share))), real(share)))
    parallel.tasks([(call, i, a) for i, a in enumerate(arrays)], [a.size for a in arrays])
    assert sorted(i for i, _, _ in seen) == [0, 1, 2, 3, 4] and not any(act for _, _, act in seen)
    assert all((a == i).all() for i, a in enumerate(arrays))
    assert sorted(shares) == [(False, [1, 4]), (False, [2, 3]), (True, [0])]   # 3 threads, 500 elements each
    seen.clear()
    failed = []

    def bad(i):
        failed.append(i)
        if i == 1:
            raise RuntimeError("task failed")
    with pytest.raises(RuntimeError, match="task failed"):
        parallel.tasks([(bad, i) for i in range(3)], [100, 100, 100])
    assert sorted(failed) == [0, 1, 2]
    ta.set_num_threads(1, blas=False)
    parallel.tasks([(call, i, a) for i, a in enumerate(arrays)], [a.size for a in arrays])
    assert [i for i, _, _ in seen] == [0, 1, 2, 3, 4] and {n for _, n, _ in seen} == {threading.current_thread().name}


@pytest.mark.parametrize("causal", [False, True])
def test_flash_attention_heads_on_the_pool_bit_identical(pool, monkeypatch, causal):
    """flash_attention with several (batch, head) entries runs its tile loops as ranges of entries
    on the pool (parallel.ranges, BLAS on one thread): outputs and gradients have the serial run's
    bits; with a bias (which may broadcast over the entries) the loop stays whole."""
    from tinyattn.attention import flash_attention
    rng = np.random.default_rng(15)
    q0, k0, v0, g0 = (rng.standard_normal((2, 3, 40, 8)).astype(np.float32) for _ in range(4))
    pieces = []
    real = parallel.ranges
    monkeypatch.setattr(parallel, "ranges", lambda fn, n: (pieces.append(n), real(fn, n)))

    def run():
        q, k, v = (ta.tensor(a, requires_grad=True) for a in (q0, k0, v0))
        y = flash_attention(q, k, v, causal=causal, block_size=16)
        y.backward(ta.tensor(g0))
        return [y.data, q.grad.data, k.grad.data, v.grad.data]
    with parallel.blas_threads(1):
        _same(*_serial_and_parallel(run))
    assert pieces == [6, 6]                                      # forward and backward, 2 × 3 entries
    pieces.clear()
    q, k, v = (ta.tensor(a) for a in (q0, k0, v0))
    flash_attention(q, k, v, bias=ta.tensor(np.zeros((40, 40), np.float32)), block_size=16)
    assert pieces == []


def test_linear_bias_add_bit_identical(pool):
    """F.linear adds the bias into the fresh product as row blocks on the pool: same bits."""
    rng = np.random.default_rng(10)
    x0, w0, b0 = (rng.standard_normal(s).astype(np.float32) for s in ((7, 33, 12), (12, 40), (40,)))

    def run():
        x, w, b = (ta.tensor(a, requires_grad=True) for a in (x0, w0, b0))
        y = ta.functions.linear(x, w, b)
        y.backward(ta.tensor(np.ones(y.shape, np.float32)))
        return [y.data, x.grad.data, w.grad.data, b.grad.data]
    _same(*_serial_and_parallel(run))


def test_transformer_block_bit_identical(pool):
    """A pre-norm encoder block's training step (fused attention on head views of the QKV
    projection, SplitHeads, the contiguous V copy, parallel.matmul, LayerNorm, GELU, AdamW): serial
    and pooled runs give the same bits (BLAS on one thread in both, so the GEMMs are the same calls)."""
    rng = np.random.default_rng(11)
    x0 = rng.standard_normal((3, 10, 16)).astype(np.float32)
    g0 = rng.standard_normal((3, 10, 16)).astype(np.float32)

    def run():
        ta.manual_seed(0)
        layer = ta.transformer.TransformerEncoderLayer(16, 4, 32, dropout=0.0, activation="gelu", norm_first=True)
        opt = ta.optim.AdamW(layer.parameters(), lr=1e-2)
        y = layer(ta.tensor(x0))
        y.backward(ta.tensor(g0))
        opt.step()
        return [y.data] + [p.data for p in layer.parameters()]
    with parallel.blas_threads(1):
        _same(*_serial_and_parallel(run))


def test_ranges_covers_the_range_with_blas_on_one_thread(pool):
    """parallel.ranges: fn(lo, hi) over pieces covering range(n) once, on the pool's threads, BLAS
    at one thread inside (restored after); an exception in a piece reaches the caller; one thread
    (or n < 2) is fn(0, n)."""
    if not parallel.blas_info()["controllable"]:
        pytest.skip("NumPy's BLAS thread count is not controllable here")
    before = parallel.get_blas_threads()
    seen, lock = [], threading.Lock()

    def fn(lo, hi):
        with lock:
            seen.append((lo, hi, parallel.get_blas_threads()))
    parallel.ranges(fn, 7)
    assert sorted(x[:2] for x in seen) == [(0, 2), (2, 4), (4, 7)] and {x[2] for x in seen} == {1}
    assert parallel.get_blas_threads() == before

    def bad(lo, hi):
        if lo > 0:
            raise RuntimeError("piece failed")
    with pytest.raises(RuntimeError, match="piece failed"):
        parallel.ranges(bad, 7)
    assert parallel.get_blas_threads() == before
    seen.clear()
    parallel.ranges(fn, 1)
    ta.set_num_threads(1, blas=False)
    parallel.ranges(fn, 9)
    assert [x[:2] for x in seen] == [(0, 1), (0, 9)]
