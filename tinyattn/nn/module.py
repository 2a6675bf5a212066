"""``Module`` and ``Parameter``: PyTorch's mechanics, Keras's weight lists.

* Parameters and submodules are registered by attribute assignment, in assignment order
  (deterministic names like ``"encoder.cell.kernel"``).
* ``parameters()``, ``named_parameters()``, ``state_dict()`` / ``load_state_dict()``, ``train()`` /
  ``eval()``, ``to(device)``, ``astype(dtype)``, ``zero_grad()``.
* Keras-style layers build lazily on their first call (``build(input_shape)``) when the input size is
  not given, and ``get_weights()`` / ``set_weights()`` list arrays in the Keras layer's order.
"""
from collections import OrderedDict

import numpy as np

from .. import backend
from ..autograd import Tensor, array_of


def _to_gpu(a):
    return backend.to_device(a, "gpu") if isinstance(a, np.ndarray) else a


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires grad by default)."""
    __slots__ = ()

    def __init__(self, data, requires_grad=True, name=None):
        super().__init__(data, requires_grad=requires_grad, name=name)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("tensor("):]


class Module:
    """Base class of every layer and model. Subclasses define ``forward(*args, **kwargs)``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "built", False)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, mods = self.__dict__["_parameters"], self.__dict__["_modules"]
        params.pop(name, None)
        mods.pop(name, None)
        if isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # -- calling ------------------------------------------------------------------------------------
    def __call__(self, *args, **kwargs):
        first = args[0] if args else None
        many = isinstance(first, (list, tuple)) and first and hasattr(first[0], "shape")
        device = self._call_device(first[0] if many else first)
        if device == "gpu" and args:   # raw NumPy inputs go to the layer's device, as Keras moves them
            first = type(first)(map(_to_gpu, first)) if many else _to_gpu(first)
            args = (first,) + tuple(map(_to_gpu, args[1:]))
        # Parameters and constants are made on that device, not on whatever the global backend says.
        with backend.using_device(device):
            if not self.built:
                if many:
                    shape = [tuple(a.shape) for a in first]
                else:
                    shape = tuple(first.shape) if hasattr(first, "shape") else None
                self.build(shape)
                object.__setattr__(self, "built", True)
            return self.forward(*args, **kwargs)

    def _call_device(self, x):
        """Where a call computes: the device of a Tensor/device-array input, else of the layer's
        parameters, else the current backend's."""
        if isinstance(x, Tensor) or backend.is_gpu_array(x):
            return backend.device_of(array_of(x))
        p = next((p for _, p in self.named_parameters()), None)
        return p.device if p is not None else ("gpu" if backend.get_backend() == "cupy" else "cpu")

    def build(self, input_shape):
        """Create the parameters once the input shape is known (Keras's lazy build). Default: none."""

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward()")

    # -- traversal ----------------------------------------------------------------------------------
    def named_modules(self, prefix=""):
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return [m for _, m in self.named_modules()]

    def children(self):
        return list(self._modules.values())

    def named_parameters(self, prefix=""):
        seen = set()
        for mprefix, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mprefix}.{name}" if mprefix else name), p

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def zero_grad(self):
        for p in self.parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self):
        return self.train(False)

    def to(self, device):
        """Move every parameter to ``"cpu"`` or ``"gpu"`` in place (they stay the same objects)."""
        for p in self.parameters():
            p.data = backend.to_device(p.data, device)
            if p.grad is not None:
                p.grad = Tensor(backend.to_device(p.grad.data, device))
        return self

    def astype(self, dtype):
        """Cast every parameter to ``dtype`` in place (e.g. float64 for gradient checks)."""
        object.__setattr__(self, "dtype", np.dtype(dtype))
        for m in self.modules():
            if "dtype" in m.__dict__:
                object.__setattr__(m, "dtype", np.dtype(dtype))
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # -- weights ------------------------------------------------------------------------------------
    def state_dict(self):
        """name -> array (a copy), in registration order."""
        return OrderedDict((n, p.data.copy()) for n, p in self.named_parameters())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters. A missing/unexpected name or a shape mismatch is an error
        listing every difference (with ``strict=False``, missing and unexpected names are skipped)."""
        own = OrderedDict(self.named_parameters())
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        bad = [f"{n}: checkpoint {tuple(np.shape(state[n]))} vs model {own[n].shape}"
               for n in own if n in state and tuple(np.shape(state[n])) != own[n].shape]
        problems = []
        if strict and missing:
            problems.append(f"missing keys: {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys: {unexpected}")
        if bad:
            problems.append(f"shape mismatch: {bad}")
        if problems:
            raise ValueError(f"load_state_dict({type(self).__name__}): " + "; ".join(problems))
        for n, p in own.items():
            if n in state:
                v = array_of(state[n])
                xp = backend.get_array_module(p.data)
                p.data = xp.asarray(backend.to_device(v, p.device), dtype=p.data.dtype).copy()
        return self

    def weights(self):
        """The Parameters in Keras's ``get_weights()`` order (default: registration order)."""
        return self.parameters()

    def get_weights(self):
        """The weights as NumPy arrays, in the same order and shapes as the Keras layer's."""
        return [backend.as_numpy(p.data).copy() for p in self.weights()]

    def set_weights(self, arrays):
        """Take the list that Keras's ``get_weights()`` returns (same order, same shapes)."""
        ws = self.weights()
        if len(arrays) != len(ws):
            raise ValueError(f"{type(self).__name__}.set_weights: expected {len(ws)} arrays "
                             f"{[p.shape for p in ws]}, got {len(arrays)}")
        for p, a in zip(ws, arrays):
            a = np.asarray(backend.as_numpy(array_of(a)))
            if a.shape != p.shape:
                raise ValueError(f"{type(self).__name__}.set_weights: shape {a.shape} does not match "
                                 f"weight {p.name or ''} of shape {p.shape}")
            p.data = backend.to_device(a.astype(p.data.dtype), p.device)

    def __repr__(self):
        lines = [f"{type(self).__name__}("]
        for name, m in self._modules.items():
            lines.append(f"  ({name}): " + repr(m).replace("\n", "\n  "))
        return "\n".join(lines) + ")" if len(lines) > 1 else f"{type(self).__name__}()"


class ModuleList(Module):
    """A list of submodules, registered under their indices."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, m):
        setattr(self, str(len(self._modules)), m)
        return self

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self):
        return len(self._modules)

    def __getitem__(self, i):
        return list(self._modules.values())[i]


class Sequential(ModuleList):
    """Modules applied in order: ``Sequential(a, b, c)(x) == c(b(a(x)))``."""

    def __init__(self, *layers):
        super().__init__(layers)

    def forward(self, x, **kwargs):
        for layer in self:
            x = layer(x)
        return x

    def weights(self):
        return [w for layer in self for w in layer.weights()]
