"""The elementwise thread pool (tinyattn.parallel): API, chunking, and bit-identity of every kernel
that uses it against the serial path (set_num_threads(1))."""
import threading

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import parallel


@pytest.fixture
def pool():
    """Parallel path forced on for small arrays: 3 threads (uneven chunks even on 2 cores), a low
    threshold; the previous settings restored afterwards."""
    n, m = ta.get_num_threads(), parallel.get_min_elements()
    ta.set_num_threads(3)
    parallel.set_min_elements(64)
    yield
    ta.set_num_threads(n)
    parallel.set_min_elements(m)


def _threads_used(fn, *arrays, tail=1):
    names = []

    def rec(*chunks):
        names.append(threading.current_thread().name)
        fn(*chunks)
    parallel.rows(rec, *arrays, tail=tail)
    return names


def test_api_validates_and_round_trips():
    n = ta.get_num_threads()
    try:
        ta.set_num_threads(5)
        assert ta.get_num_threads() == 5 and parallel.get_num_threads() == 5
        for bad in (0, -1, 1.5, "2", True):
            with pytest.raises(ValueError, match="set_num_threads"):
                ta.set_num_threads(bad)
    finally:
        ta.set_num_threads(n)
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
    ta.set_num_threads(1)
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
        ta.set_num_threads(1)
        kern(ser)
        ta.set_num_threads(3)
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
    ta.set_num_threads(1)
    ser = run()
    ta.set_num_threads(3)
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
