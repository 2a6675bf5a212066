"""tinyattn: every attention mechanism, on a from-scratch NumPy/CuPy autograd engine.

Layers of the design (lower never imports higher):
    backend -> autograd (Tensor, Function) -> functions -> nn (layers) -> attention -> examples
"""
import numpy as np

from . import backend
from .backend import use_backend, get_backend, manual_seed, get_array_module, gpu_available
from .autograd import Tensor, Function, no_grad, enable_grad, is_grad_enabled, grad
from .functions import *  # noqa: F401,F403  (the differentiable functions, and Tensor's methods)
from . import functions
from .gradcheck import gradcheck, gradgradcheck, GradcheckError

__version__ = "0.1.0"

float32, float64, int64 = np.float32, np.float64, np.int64


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new leaf Tensor from a list, scalar or array, on ``device`` ("cpu"/"gpu"; default: the
    current backend). Python floats become float32 unless ``dtype`` says otherwise."""
    data = getattr(data, "data", data) if isinstance(data, Tensor) else data
    if device is None:
        device = "gpu" if get_backend() == "cupy" else "cpu"
    if not hasattr(data, "dtype"):
        arr = np.asarray(data)
        if dtype is None and arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        data = arr
    if dtype is not None:
        data = data.astype(dtype)
    return Tensor(backend.to_device(data, device), requires_grad=requires_grad)


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


from . import nn, losses, optim, train, attention, viz, transformer  # noqa: E402  (higher layers, imported last)
from .serialization import save, load  # noqa: E402,F401
