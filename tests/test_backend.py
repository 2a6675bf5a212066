"""The backend: choosing NumPy/CuPy, device checks, seeding. CuPy tests are marked gpu and skip cleanly."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn import backend
from tinyattn import backend as backend_mod
from tinyattn import functions as F

gpu = pytest.mark.gpu
needs_gpu = pytest.mark.skipif(not ta.gpu_available(), reason="CuPy or a GPU is not available")


@pytest.mark.not_strict("checks the NumPy default itself")
def test_default_backend_is_numpy():
    assert ta.get_backend() == "numpy"
    assert backend.default_xp() is np
    assert backend.get_array_module(np.ones(2), 3.0) is np
    assert backend.device_of(np.ones(2)) == "cpu"
    assert ta.tensor([1.0]).device == "cpu"


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        before = ta.get_backend()
        ta.use_backend("jax")
    assert ta.get_backend() == before


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
    xp = backend.default_xp()
    a = backend.as_numpy(backend.rng(xp).standard_normal(3))
    ta.manual_seed(5)
    np.testing.assert_array_equal(backend.as_numpy(backend.rng().standard_normal(3)), a)


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


def test_device_mix_is_a_clear_error(backend):
    """On the device backend (CuPy, or the strict stand-in without a GPU) a host array meeting a
    device array is caught before any arithmetic, with both shapes named."""
    if backend != "cupy":
        pytest.skip("needs the device backend")
    gpu_arr, cpu_arr = ta.ones(3, 4).data, np.ones((3, 4), np.float32)
    assert backend_mod.device_of(gpu_arr) == "gpu" and backend_mod.device_of(cpu_arr) == "cpu"
    backend_mod.check_same_device("add", cpu_arr, cpu_arr)               # fine
    backend_mod.check_same_device("add", gpu_arr, gpu_arr)               # fine
    with pytest.raises(RuntimeError, match=r"matmul: arrays on different devices.*\.to\('gpu'\)"):
        backend_mod.check_same_device("matmul", cpu_arr, gpu_arr)
    with pytest.raises(RuntimeError, match=r"add: arrays on different devices \(cpu/NumPy and gpu/CuPy: "
                                           r"cpu \(3, 4\), gpu \(3, 4\)\)"):
        F.add(ta.Tensor(cpu_arr), ta.Tensor(gpu_arr))                # caught before any arithmetic


def test_set_device_module_plugs_in_and_restores():
    """_set_device_module: every backend helper follows the plugged-in module; restoring works."""
    import strict_xp
    old = backend_mod._set_device_module(strict_xp, strict_xp.ndarray, asnumpy=strict_xp.asnumpy,
                                         scatter_add=strict_xp.scatter_add,
                                         special=strict_xp.special, name="strict_xp")
    try:
        assert backend_mod.gpu_available()
        ta.use_backend("cupy")
        assert backend_mod.default_xp() is strict_xp
        d = backend_mod.to_device(np.arange(3.0), "gpu")
        assert isinstance(d, strict_xp.ndarray) and backend_mod.get_array_module(d, 1.0) is strict_xp
        assert backend_mod.device_of(d) == "gpu" and backend_mod.is_gpu_array(d)
        np.testing.assert_array_equal(backend_mod.as_numpy(d), [0, 1, 2])
        backend_mod.scatter_add(d, np.array([1, 1]), strict_xp.asarray([1.0, 2.0]))
        np.testing.assert_array_equal(backend_mod.to_device(d, "cpu"), [0, 4, 2])
        ta.manual_seed(7)
        a = backend_mod.rng().standard_normal(3)
        ta.manual_seed(7)
        assert isinstance(a, strict_xp.ndarray)
        np.testing.assert_array_equal(backend_mod.as_numpy(backend_mod.rng().standard_normal(3)),
                                      backend_mod.as_numpy(a))
    finally:
        backend_mod._set_device_module(**old)
    assert backend_mod.gpu_available() == (old["xp"] is not None)
    if old["xp"] is None:
        assert ta.get_backend() == "numpy" and backend_mod.default_xp() is np


# --- on a GPU ---------------------------------------------------------------------------------

@gpu
@needs_gpu
def test_cupy_backend_roundtrip():
    ta.use_backend("cupy")
    try:
        x = ta.randn(3, 4, dtype=np.float64, requires_grad=True)
        assert backend.is_gpu_array(x.data) and x.device == "gpu"
        y = (x @ x.T).tanh().sum()
        y.backward()
        assert backend.is_gpu_array(x.grad.data)
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
    x = ta.tensor(np.ones(3, np.float32), device="cpu")
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


# -- regressions found by the strict pass (they run on the device in the plain pass too) ----------------
def _on_device(backend):
    if backend != "cupy":
        pytest.skip("needs the device backend")


def test_unbuilt_layer_takes_host_inputs_to_the_backend(backend):
    """A layer's first call with NumPy inputs builds on the current backend and computes there
    (cast_input used to keep the inputs on the host while build() put the weights on the device)."""
    _on_device(backend)
    from tinyattn.attention import MultiHeadAttention, Attention
    rng = np.random.default_rng(0)
    q, v = rng.standard_normal((2, 4, 5)), rng.standard_normal((2, 6, 3))
    out = MultiHeadAttention(num_heads=2, key_dim=3)(q, v)
    assert out.device == "gpu" and out.shape == (2, 4, 5)
    vm = np.array([[1, 1, 0, 0, 1, 1], [1, 1, 1, 1, 1, 0]], bool)   # Keras's −1e9 · ¬mask on the device
    w = Attention()([q[..., :3].astype(np.float32), v.astype(np.float32)], mask=[None, vm],
                    return_attention_scores=True)[1]
    assert w.device == "gpu"
    np.testing.assert_array_equal(w.numpy()[:, :, ~vm[0]][0], 0)


def test_numpy_scalar_constant_moves_to_the_device(backend):
    """np.float32(2) beside a device Tensor is a constant moved explicitly (CuPy refuses the mix)."""
    _on_device(backend)
    x = ta.tensor([1.0, 2.0], requires_grad=True)
    y = F.mul(x, np.float32(3.0))
    assert y.device == "gpu" and y.dtype == np.float32
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 3.0])


def test_encoder_output_and_additive_attention_move_host_masks(backend):
    _on_device(backend)
    from tinyattn.seq2seq import EncoderOutput
    from tinyattn.seq2seq.fused import additive_attention
    rng = np.random.default_rng(1)
    states = ta.tensor(rng.standard_normal((2, 3, 4)))
    mask = np.array([[True, True, False], [True, True, True]])
    mem = EncoderOutput(states, [], mask)
    assert backend_mod.device_of(mem.mask) == "gpu" and mem.mask.dtype == bool
    qp, keys, v = ta.tensor(rng.standard_normal((2, 5))), ta.tensor(rng.standard_normal((2, 3, 5))), ta.tensor(rng.standard_normal(5))
    ctx, alpha = additive_attention(qp, keys, states, v, mask)        # a NumPy mask: through as_mask
    assert alpha.device == "gpu" and alpha.numpy()[0, 2] == 0


def test_release_frees_device_arrays_a_function_saved(backend):
    _on_device(backend)
    x = ta.tensor(np.ones((4, 6)), requires_grad=True)
    y = ta.dropout(x, 0.5)
    fn = y.creator
    assert backend_mod.is_gpu_array(fn.mask)
    y.sum().backward()
    assert fn.mask is None
