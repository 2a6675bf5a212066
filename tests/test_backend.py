"""The backend: choosing NumPy/CuPy, device checks, seeding. CuPy tests are marked gpu and skip cleanly."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import backend
from tinyattn import functions as F

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not ta.gpu_available(), reason="CuPy or a GPU is not available")


def test_default_backend_is_numpy():
    assert ta.get_backend() == "numpy"
    assert backend.default_xp() is np
    assert backend.get_array_module(np.ones(2), 3.0) is np
    assert backend.device_of(np.ones(2)) == "cpu"
    assert ta.tensor([1.0]).device == "cpu"


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        ta.use_backend("jax")
    assert ta.get_backend() == "numpy"


@pytest.mark.skipif(ta.gpu_available(), reason="a GPU is present")
def test_cupy_backend_without_gpu_raises_clearly():
    with pytest.raises(RuntimeError, match=r"use_backend\('cupy'\): CuPy or a GPU is not available.*install"):
        ta.use_backend("cupy")
    assert ta.get_backend() == "numpy"
    with pytest.raises(RuntimeError, match="not available"):
        ta.tensor([1.0]).to("gpu")


def test_manual_seed_reproducible():
    x = ta.ones(50, 40)
    ta.manual_seed(123)
    r1, m1 = ta.randn(3, 4), F.dropout(x, 0.5).numpy()
    ta.manual_seed(123)
    r2, m2 = ta.randn(3, 4), F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(r1.numpy(), r2.numpy())
    np.testing.assert_array_equal(m1, m2)
    ta.manual_seed(124)
    assert not np.array_equal(F.dropout(x, 0.5).numpy(), m1)
    ta.manual_seed(5)
    a = backend.rng(np).standard_normal(3)
    ta.manual_seed(5)
    np.testing.assert_array_equal(backend.rng().standard_normal(3), a)


def test_scatter_add_accumulates_repeats():
    t = np.zeros(4)
    backend.scatter_add(t, np.array([1, 1, 3]), np.array([1.0, 2.0, 5.0]))
    np.testing.assert_array_equal(t, [0, 3, 0, 5])


def test_as_numpy_and_to_device_cpu():
    a = np.arange(3.0)
    assert backend.as_numpy(a) is a
    assert backend.to_device(a, "cpu") is a
    with pytest.raises(ValueError, match="unknown device"):
        backend.to_device(a, "tpu")


class _FakeGpuArray:
    """Stands in for a CuPy array in the device-mix checks (no GPU needed)."""

    def __init__(self, shape, dtype=np.float32):
        self.shape, self.dtype, self.ndim = shape, np.dtype(dtype), len(shape)


def test_device_mix_is_a_clear_error(monkeypatch):
    fake_cupy = type("FakeCuPy", (), {"ndarray": _FakeGpuArray})
    monkeypatch.setattr(backend, "cupy", fake_cupy)
    gpu_arr, cpu_arr = _FakeGpuArray((3, 4)), np.ones((3, 4), np.float32)
    assert backend.device_of(gpu_arr) == "gpu" and backend.device_of(cpu_arr) == "cpu"
    backend.check_same_device("add", cpu_arr, cpu_arr)               # fine
    backend.check_same_device("add", gpu_arr, gpu_arr)               # fine
    with pytest.raises(RuntimeError, match=r"matmul: arrays on different devices.*\.to\('gpu'\)"):
        backend.check_same_device("matmul", cpu_arr, gpu_arr)
    with pytest.raises(RuntimeError, match=r"add: arrays on different devices \(cpu/NumPy and gpu/CuPy: "
                                           r"cpu \(3, 4\), gpu \(3, 4\)\)"):
        F.add(ta.Tensor(cpu_arr), ta.Tensor(gpu_arr))                # caught before any arithmetic


# --- on a GPU ---------------------------------------------------------------------------------

@gpu
@needs_gpu
def test_cupy_backend_roundtrip():
    import cupy
    ta.use_backend("cupy")
    try:
        x = ta.randn(3, 4, dtype=np.float64, requires_grad=True)
        assert isinstance(x.data, cupy.ndarray) and x.device == "gpu"
        y = (x @ x.T).tanh().sum()
        y.backward()
        assert isinstance(x.grad.data, cupy.ndarray)
        c = x.to("cpu")
        assert c.device == "cpu" and isinstance(c.data, np.ndarray) and c.is_leaf
        np.testing.assert_allclose(c.grad.numpy(), x.grad.numpy())
        xs = c.numpy()
        expect = (1 - np.tanh(xs @ xs.T) ** 2)
        np.testing.assert_allclose(x.grad.numpy(), expect @ xs + expect.T @ xs, rtol=1e-10)
    finally:
        ta.use_backend("numpy")


@gpu
@needs_gpu
def test_cupy_device_mix_and_seed():
    x = ta.tensor(np.ones(3, np.float32))
    g = x.to("gpu")
    with pytest.raises(RuntimeError, match="different devices"):
        x + g
    ta.use_backend("cupy")
    try:
        ta.manual_seed(3)
        a = ta.randn(4).numpy()
        m = F.dropout(ta.ones(100), 0.5).numpy()
        ta.manual_seed(3)
        np.testing.assert_array_equal(ta.randn(4).numpy(), a)
        np.testing.assert_array_equal(F.dropout(ta.ones(100), 0.5).numpy(), m)
    finally:
        ta.use_backend("numpy")
