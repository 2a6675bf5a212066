"""Backend: the one place that chooses the array module (NumPy or CuPy).

Every other module asks this one for ``xp`` (the array module of its data) instead of importing
NumPy or CuPy directly for array work, so a whole model moves to the GPU with
``tinyattn.use_backend("cupy")`` or ``Tensor.to("gpu")``.

    xp = get_array_module(a, b)   # numpy, or cupy if any argument is a CuPy array
"""
import threading

import numpy as np

try:  # CuPy is optional: the GPU backend.
    import cupy
    import cupyx
    try:
        _GPU_OK = cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # CuPy installed but no driver / no GPU
        _GPU_OK = False
except ImportError:  # pragma: no cover - depends on the machine
    cupy = None
    cupyx = None
    _GPU_OK = False

_state = threading.local()
_default = {"backend": "numpy"}
_rng = {"numpy": np.random.default_rng()}


def gpu_available():
    """True when CuPy imports and sees at least one GPU."""
    return _GPU_OK


def use_backend(name):
    """Set where new tensors live: ``"numpy"`` (CPU) or ``"cupy"`` (GPU)."""
    if name not in ("numpy", "cupy"):
        raise ValueError(f"use_backend: unknown backend {name!r}; use 'numpy' or 'cupy'")
    if name == "cupy" and not _GPU_OK:
        raise RuntimeError("use_backend('cupy'): CuPy or a GPU is not available; "
                           "install tinyattn[gpu] on a machine with an NVIDIA GPU")
    _default["backend"] = name


def get_backend():
    """The name of the backend new tensors are created on."""
    return _default["backend"]


def default_xp():
    """The array module new tensors are created with."""
    return cupy if _default["backend"] == "cupy" else np


def is_gpu_array(a):
    return cupy is not None and isinstance(a, cupy.ndarray)


def get_array_module(*arrays):
    """``cupy`` if any argument is a CuPy array, else ``numpy`` (the xp pattern)."""
    if cupy is not None:
        for a in arrays:
            if isinstance(a, cupy.ndarray):
                return cupy
    return np


def device_of(a):
    """``"gpu"`` for a CuPy array, ``"cpu"`` for anything else."""
    return "gpu" if is_gpu_array(a) else "cpu"


def check_same_device(op, *arrays):
    """Raise a clear error when NumPy and CuPy arrays meet in one op."""
    if cupy is None:
        return
    devs = {device_of(a) for a in arrays if hasattr(a, "shape")}
    if len(devs) > 1:
        shapes = ", ".join(f"{device_of(a)} {tuple(a.shape)}" for a in arrays if hasattr(a, "shape"))
        raise RuntimeError(f"{op}: arrays on different devices (cpu/NumPy and gpu/CuPy: {shapes}); "
                           f"move them together with Tensor.to('cpu') or Tensor.to('gpu')")


def to_device(a, device):
    """Copy array ``a`` to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); no copy if already there."""
    if device == "cpu":
        return cupy.asnumpy(a) if is_gpu_array(a) else np.asarray(a)
    if device == "gpu":
        if not _GPU_OK:
            raise RuntimeError("to('gpu'): CuPy or a GPU is not available")
        return cupy.asarray(a)
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'gpu'")


def as_numpy(a):
    """A NumPy array (a copy from the GPU, the array itself on the CPU)."""
    return cupy.asnumpy(a) if is_gpu_array(a) else np.asarray(a)


def manual_seed(seed):
    """Seed every random draw of tinyattn (NumPy and CuPy) reproducibly."""
    _rng["numpy"] = np.random.default_rng(seed)
    if _GPU_OK:
        cupy.random.seed(seed)
        _rng["cupy"] = cupy.random.default_rng(seed) if hasattr(cupy.random, "default_rng") else cupy.random


def rng(xp=None):
    """The random generator for ``xp`` (seeded by :func:`manual_seed`)."""
    xp = xp or default_xp()
    if xp is np:
        return _rng["numpy"]
    if "cupy" not in _rng:
        _rng["cupy"] = cupy.random.default_rng() if hasattr(cupy.random, "default_rng") else cupy.random
    return _rng["cupy"]


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices accumulated (np.add.at / cupyx.scatter_add)."""
    if is_gpu_array(target):
        cupyx.scatter_add(target, index, values)
    else:
        np.add.at(target, index, values)
    return target
