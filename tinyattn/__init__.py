"""tinyattn: every attention mechanism, on a from-scratch NumPy/CuPy autograd engine.

Layers of the design (lower never imports higher):
    backend -> autograd (Tensor, Function) -> functions (+ kernels: the fused speed work) -> nn (layers)
    -> attention -> seq2seq -> examples
"""
import numpy as np

from . import backend, parallel, memory
from .memory import set_host_memory_cache, get_host_memory_cache, release_host_memory
from .parallel import set_num_threads, get_num_threads
from .backend import use_backend, get_backend, manual_seed, get_array_module, gpu_available
from .autograd import Tensor, Function, no_grad, enable_grad, is_grad_enabled, grad
from .autograd import array_of as _array_of
from .functions import *  # noqa: F401,F403  (the differentiable functions, and Tensor's methods)
from . import functions
from .gradcheck import gradcheck, gradgradcheck, GradcheckError
from . import check

__version__ = "0.1.0"

memory._apply_at_import()       # keep freed host memory for reuse (opt out: TINYATTN_HOST_MEMORY_CACHE=0)

float32, float64, int64 = np.float32, np.float64, np.int64


def _default_device():
    return "gpu" if get_backend() == "cupy" else "cpu"


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new leaf Tensor holding a COPY of ``data`` (a list, scalar, array or Tensor), as
    ``torch.tensor``: changing ``data`` afterwards never changes the tensor (see :func:`as_tensor` /
    :func:`from_numpy` to share memory instead). ``device``: "cpu"/"gpu" (default: the current
    backend). Python floats become float32 unless ``dtype`` says otherwise; arrays keep their dtype."""
    data = _array_of(data)
    if device is None:
        device = _default_device()
    if not hasattr(data, "dtype"):
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        data = arr
    moved = backend.to_device(data, device)
    if dtype is not None and moved.dtype != np.dtype(dtype):
        moved = moved.astype(dtype)                # astype copies
    elif moved is data or (isinstance(moved, np.ndarray) and isinstance(data, np.ndarray)
                           and np.shares_memory(moved, data)):      # (a host->device move copies)
        moved = moved.copy()
    return Tensor(moved, requires_grad=requires_grad)


def as_tensor(data, dtype=None, device=None):
    """A Tensor that SHARES memory with ``data`` where possible, as ``torch.as_tensor``.

    A NumPy/CuPy array already of ``dtype`` (or any dtype when None) on ``device`` is used as is —
    writing into the array changes the tensor and vice versa; a Tensor is returned itself. Anything
    else (a list, another dtype, another device) is converted, which copies. ``device`` defaults to
    where an array already lives (the current backend for lists and scalars). Python floats become
    float32 unless ``dtype`` says otherwise. The result is a leaf that does not require grad.
    """
    if isinstance(data, Tensor):
        if (dtype is None or data.dtype == np.dtype(dtype)) and (device is None or data.device == device):
            return data
        data = data.data
    if hasattr(data, "dtype") and hasattr(data, "shape") and not isinstance(data, np.generic):
        arr = data if device is None else backend.to_device(data, device)
    else:
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64 and not isinstance(data, np.generic):
            arr = arr.astype(np.float32)
        arr = backend.to_device(arr, device or _default_device())
    if dtype is not None and arr.dtype != np.dtype(dtype):
        arr = arr.astype(dtype)
    return Tensor(arr)


def from_numpy(ndarray):
    """A Tensor sharing memory with the NumPy array ``ndarray`` (no copy, its dtype kept), as
    ``torch.from_numpy``: writing into one is seen by the other. Raises TypeError for anything that
    is not a ``numpy.ndarray`` (use :func:`tensor` to copy, :func:`as_tensor` for lists/CuPy)."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(ndarray).__name__}; use "
                        f"ta.tensor(...) (copies) or ta.as_tensor(...) (shares where possible)")
    return Tensor(ndarray)


def _factory(name):
    def make(*shape, dtype=np.float32, requires_grad=False):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        xp = backend.default_xp()
        return Tensor(getattr(xp, name)(shape, dtype=dtype), requires_grad=requires_grad)
    make.__name__ = name
    make.__doc__ = f"A new {name}-filled Tensor of ``shape`` on the current backend."
    return make


zeros, ones = _factory("zeros"), _factory("ones")


def randn(*shape, dtype=np.float32, requires_grad=False):
    """Standard-normal Tensor of ``shape`` drawn from tinyattn's seeded generator."""
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    xp = backend.default_xp()
    return Tensor(backend.rng(xp).standard_normal(shape).astype(dtype), requires_grad=requires_grad)


def zeros_like(t):
    return Tensor(backend.get_array_module(t.data).zeros_like(t.data))


def ones_like(t):
    return Tensor(backend.get_array_module(t.data).ones_like(t.data))


from . import kernels  # noqa: E402,F401
from . import nn, losses, optim, train, attention, viz, transformer, seq2seq  # noqa: E402  (higher layers, imported last)
from .serialization import save, load  # noqa: E402,F401
