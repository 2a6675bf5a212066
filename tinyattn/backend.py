"""Backend: the one place that chooses the array module (NumPy or a device module such as CuPy).

Every other module asks this one for ``xp`` (the array module of its data) instead of importing
NumPy or CuPy directly for array work, so a whole model moves to the GPU with
``tinyattn.use_backend("cupy")`` or ``Tensor.to("gpu")``.

    xp = get_array_module(a, b)   # numpy, or the device module if any argument is a device array

The device ("gpu") module is CuPy when it imports and sees a GPU. The test-suite plugs in a strict
stand-in instead (tests/strict_xp.py, ``pytest --backend=strict``) through
:func:`_set_device_module`, so the device path runs on every machine.
"""
import contextlib
import threading

import numpy as np

_state = threading.local()
_default = {"backend": "numpy"}
_rng = {"numpy": np.random.default_rng()}
# The device array module: xp (module), ndarray (its array type), asnumpy (device -> host copy),
# scatter_add (target[index] += values with repeats), special (the device's erf, cupyx.scipy.special), name.
_device = {"xp": None, "ndarray": (), "asnumpy": None, "scatter_add": None, "special": None, "name": None}


def _set_device_module(xp, ndarray_type=None, asnumpy=None, scatter_add=None, special=None, name="cupy"):
    """Plug in the array module used for device ("gpu") arrays; ``xp=None`` removes it.

    Used once at import for real CuPy, and by the tests for their strict stand-in. Returns the
    previous setting (a dict) so that a caller can restore it with ``_set_device_module(**old)``.
    """
    old = {"xp": _device["xp"], "ndarray_type": _device["ndarray"] or None,
           "asnumpy": _device["asnumpy"], "scatter_add": _device["scatter_add"], "special": _device["special"],
           "name": _device["name"]}
    _device.update(xp=xp, ndarray=ndarray_type if xp is not None else (), asnumpy=asnumpy,
                   scatter_add=scatter_add, special=special, name=name if xp is not None else None)
    _rng.pop("device", None)
    if xp is None and _default["backend"] == "cupy":
        _default["backend"] = "numpy"
    return old


try:  # CuPy is optional: the GPU backend.
    import cupy
    import cupyx
    if cupy.cuda.runtime.getDeviceCount() > 0:
        import cupyx.scipy.special
        _set_device_module(cupy, cupy.ndarray, asnumpy=cupy.asnumpy, scatter_add=cupyx.scatter_add,
                           special=cupyx.scipy.special)
except Exception:  # pragma: no cover - no CuPy, or CuPy installed without a driver / GPU
    pass


def gpu_available():
    """True when a device module is plugged in (CuPy that sees at least one GPU)."""
    return _device["xp"] is not None


def use_backend(name):
    """Set where new tensors live: ``"numpy"`` (CPU) or ``"cupy"`` (GPU)."""
    if name not in ("numpy", "cupy"):
        raise ValueError(f"use_backend: unknown backend {name!r}; use 'numpy' or 'cupy'")
    if name == "cupy" and not gpu_available():
        raise RuntimeError("use_backend('cupy'): CuPy or a GPU is not available; "
                           "install tinyattn[gpu] on a machine with an NVIDIA GPU")
    _default["backend"] = name


def get_backend():
    """The name of the backend new tensors are created on (in this thread, see :func:`using_device`)."""
    return getattr(_state, "backend", None) or _default["backend"]


def default_xp():
    """The array module new tensors are created with."""
    return _device["xp"] if get_backend() == "cupy" else np


@contextlib.contextmanager
def using_device(device):
    """Inside the block (this thread), new arrays go to ``device`` ("cpu"/"gpu"): a layer builds its
    parameters and makes its constants on the device of its inputs, whatever the global backend."""
    prev = getattr(_state, "backend", None)
    _state.backend = "cupy" if device == "gpu" else "numpy"
    try:
        yield
    finally:
        _state.backend = prev


def is_gpu_array(a):
    """True for an array of the device module (a CuPy array)."""
    return isinstance(a, _device["ndarray"])


def get_array_module(*arrays):
    """The device module if any argument is a device array, else ``numpy`` (the xp pattern)."""
    for a in arrays:
        if type(a) is not np.ndarray and isinstance(a, _device["ndarray"]):   # (an exact ndarray:
            return _device["xp"]                                                 # no check needed)
    return np


def device_of(a):
    """``"gpu"`` for a device (CuPy) array, ``"cpu"`` for anything else."""
    return "gpu" if is_gpu_array(a) else "cpu"


def check_same_device(op, *arrays):
    """Raise a clear error when NumPy and device arrays meet in one op."""
    if not gpu_available():
        return
    devs = {device_of(a) for a in arrays if hasattr(a, "shape")}
    if len(devs) > 1:
        shapes = ", ".join(f"{device_of(a)} {tuple(a.shape)}" for a in arrays if hasattr(a, "shape"))
        raise RuntimeError(f"{op}: arrays on different devices (cpu/NumPy and gpu/CuPy: {shapes}); "
                           f"move them together with Tensor.to('cpu') or Tensor.to('gpu')")


def to_device(a, device):
    """Copy array ``a`` to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy); no copy if already there."""
    if device == "cpu":
        return as_numpy(a)
    if device == "gpu":
        if not gpu_available():
            raise RuntimeError("to('gpu'): CuPy or a GPU is not available")
        return a if is_gpu_array(a) else _device["xp"].asarray(a)
    raise ValueError(f"unknown device {device!r}; use 'cpu' or 'gpu'")


def as_numpy(a):
    """A NumPy array (a copy from the GPU, the array itself on the CPU)."""
    return _device["asnumpy"](a) if is_gpu_array(a) else np.asarray(a)


def manual_seed(seed):
    """Seed every random draw of tinyattn (NumPy and the device module) reproducibly."""
    _rng["numpy"] = np.random.default_rng(seed)
    _rng.pop("device", None)
    if gpu_available():
        _device["xp"].random.seed(seed)
        _rng["device"] = _device_rng(seed)


def _device_rng(seed=None):
    r = _device["xp"].random
    return r.default_rng(seed) if hasattr(r, "default_rng") else r


def rng(xp=None):
    """The random generator for ``xp`` (seeded by :func:`manual_seed`)."""
    xp = xp or default_xp()
    if xp is np:
        return _rng["numpy"]
    if "device" not in _rng:
        _rng["device"] = _device_rng()
    return _rng["device"]


def special(xp):
    """The device's special-function namespace (``cupyx.scipy.special``), for ``erf`` on the GPU.
    On the host tinyattn computes erf itself (``functions/elementwise.py``): NumPy needs no SciPy."""
    if xp is np or _device.get("special") is None:
        raise RuntimeError("backend.special: only the device module has one (cupyx.scipy.special); "
                           "on NumPy use tinyattn.functions.erf")
    return _device["special"]


def scatter_add(target, index, values):
    """``target[index] += values`` with repeated indices accumulated (np.add.at / cupyx.scatter_add)."""
    if is_gpu_array(target):
        _device["scatter_add"](target, index, values)
    else:
        np.add.at(target, index, values)
    return target
