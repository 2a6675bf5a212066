"""``Module`` and ``Parameter``: PyTorch's mechanics, Keras's weight lists.

* Parameters and submodules are registered by attribute assignment, in assignment order
  (deterministic names like ``"encoder.cell.kernel"``).
* ``parameters()``, ``named_parameters()``, ``state_dict()`` / ``load_state_dict()``, ``train()`` /
  ``eval()``, ``to(device)``, ``astype(dtype)``, ``zero_grad()``.
* Keras-style layers build lazily on their first call (``build(input_shape)``) when the input size is
  not given, and ``get_weights()`` / ``set_weights()`` list arrays in the Keras layer's order.

Keras mask propagation (Keras 3's ``Layer.__call__``, step for step)
--------------------------------------------------------------------
A Tensor may carry a Keras mask, ``tensor._keras_mask`` (read it with :func:`get_keras_mask`, set it
with :func:`set_keras_mask`): a boolean array (B, T) (True = a real step) saying which steps of the
sequence are padding. ``Module.__call__(*args, **kwargs)``:

1. *mask in*: if ``forward`` has a ``mask`` parameter and the call gives none (or None),
   ``mask`` becomes the first argument's Keras mask (for a list of tensors, the list of their
   masks), when it carries one. Otherwise each ``<name>_mask`` parameter of ``forward``
   (``query_mask``, ``value_mask``, ``key_mask``) left None takes the mask of the argument
   ``<name>``. An explicit mask argument always wins. A layer whose mask arguments mean something
   else (an attention mask (Tq, Tk), PyTorch's ``src_mask``, a d2l key mask) sets the class
   attribute ``keras_mask_args`` to the tuple of arguments that may be filled (``()``: none).
2. ``previous_mask`` = the ``mask`` argument (given or filled in), else the first argument's mask(s).
3. *mask out*: after ``forward``, if the layer ``supports_masking``, its
   ``compute_mask(first_argument, previous_mask)`` is attached to the outputs that carry none yet
   (flattened in order). The default ``compute_mask`` returns ``previous_mask`` (pass-through) when
   ``supports_masking``, else None; a layer that does not support masking drops the mask (its
   output is a new Tensor without one).

Layers: Embedding(mask_zero=True) makes a mask (ids ≠ 0); Dense, Activation, Dropout,
LayerNormalization, BatchNormalization pass it through; LSTM/GRU/Bidirectional consume it and keep
it only with ``return_sequences``; Attention/AdditiveAttention/MultiHeadAttention consume the query
and value masks and output the query mask; GlobalAveragePooling1D takes a masked mean and outputs
no mask; losses (``tinyattn.losses.Loss``) weight their terms by ``y_pred``'s mask, as Keras's do.
"""
import inspect
from collections import OrderedDict
import inspect

import numpy as np

from .. import backend
from ..autograd import Tensor, array_of


def get_keras_mask(x):
    """The Keras mask carried by ``x`` (a Tensor), or None (Keras's ``backend.get_keras_mask``)."""
    return getattr(x, "_keras_mask", None) if isinstance(x, Tensor) else None


def set_keras_mask(x, mask):
    """Attach ``mask`` (an array or Tensor, or None to remove it) to the Tensor ``x``."""
    if not isinstance(x, Tensor):
        raise TypeError(f"set_keras_mask: expected a Tensor, got {type(x).__name__}")
    object.__setattr__(x, "_keras_mask", mask.data if isinstance(mask, Tensor) else mask)


def _masks_of(x):
    """The Keras mask of x, or for a list/tuple of inputs the list of their masks."""
    if isinstance(x, (list, tuple)):
        return [get_keras_mask(e) for e in x]
    return get_keras_mask(x)


def _flat(x):
    if isinstance(x, (list, tuple)):
        return [e for v in x for e in _flat(v)]
    return [x]


def _any_mask(m):
    return any(e is not None for e in _flat(m))


_SIG_CACHE = {}


def _forward_params(cls):
    """(names of forward's parameters, after self), cached per class."""
    names = _SIG_CACHE.get(cls)
    if names is None:
        try:
            names = tuple(p for p in inspect.signature(cls.forward).parameters if p != "self")
        except (TypeError, ValueError):
            names = ()
        _SIG_CACHE[cls] = names
    return names


def _is_float(dtype):
    return np.dtype(dtype).kind == "f"


def _layer_device(layer):
    """The array module of the layer's parameters (None when it has none yet)."""
    for p in layer.parameters():
        return backend.get_array_module(p.data)
    return None


def cast_input(layer, x, name="input", ids=False):
    """An input as a Tensor in the layer's dtype, as Keras layers cast on entry.

    x: a Tensor, a NumPy/CuPy array or a (nested) Python list. Floating inputs become the layer's
    ``dtype`` (``np.random.rand(...)``, float64, into a float32 layer gives float32; a Tensor is
    cast with the differentiable ``astype``, so its gradient still flows). With ``ids=True`` (an
    Embedding's token ids) integer inputs are kept as they are; otherwise integer and boolean
    inputs become the layer's float dtype too. Arrays and lists are placed on the device of the
    layer's parameters (or, before it has any: a device array stays on its device, host data goes
    to the current backend, where the parameters will be built);
    a Tensor keeps its device. None stays None. ``name`` is the argument, for error messages.
    """
    if x is None:
        return None
    dtype = getattr(layer, "dtype", None)
    dtype = np.dtype(dtype) if dtype is not None else None
    if isinstance(x, Tensor):
        xd = x.data.dtype
        if dtype is None or (ids and xd.kind in "iu") or xd == dtype or not _is_float(dtype):
            return x
        if xd.kind not in "iufb":
            raise TypeError(f"{type(layer).__name__}: {name} has dtype {xd}; expected numbers")
        y = x.astype(dtype)
        m = get_keras_mask(x)
        if m is not None:                         # the cast keeps the Keras mask
            object.__setattr__(y, "_keras_mask", m)
        return y
    a = x
    if not (hasattr(a, "dtype") and hasattr(a, "shape")):
        try:
            a = np.asarray(a)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{type(layer).__name__}: {name} could not be read as an array ({e})") from None
        if a.dtype.kind == "O":
            raise ValueError(f"{type(layer).__name__}: {name} is ragged or not numeric "
                             f"(a list of shape {np.shape(a)} of objects)")
    # Before the layer has parameters: a device array stays where it is; host data (NumPy, lists)
    # goes to the current backend, where build() will make the parameters (as Module.__call__ does).
    xp = _layer_device(layer) or (backend.get_array_module(a) if backend.is_gpu_array(a) else backend.default_xp())
    a = backend.as_numpy(a) if xp is np else xp.asarray(a)
    if a.dtype.kind not in "iufb":
        raise TypeError(f"{type(layer).__name__}: {name} has dtype {a.dtype}; expected numbers")
    if dtype is not None and _is_float(dtype) and a.dtype != dtype and not (ids and a.dtype.kind in "iu"):
        a = a.astype(dtype)
    return Tensor(a)


def _input_shape(first):
    """The build shape of a layer's first argument: a tuple, a list of tuples for a list of
    inputs, or None."""
    if first is None:
        return None
    if hasattr(first, "shape"):
        return tuple(first.shape)
    if isinstance(first, (list, tuple)) and first and all(hasattr(a, "shape") or a is None for a in first):
        return [tuple(a.shape) if a is not None else None for a in first]
    if isinstance(first, (list, tuple)):
        try:
            a = np.asarray(first)
        except (ValueError, TypeError):
            return None
        if a.dtype.kind == "O":                 # a list of differently shaped inputs
            return [tuple(np.shape(e)) for e in first]
        return tuple(a.shape)
    return None


def _dtype_mix_error(module, err, args, kwargs):
    """The engine's "dtype mix" error, re-raised naming the layer and which side is the model."""
    pd = sorted({str(p.data.dtype) for p in module.parameters()})
    ins = []
    for v in list(args) + list(kwargs.values()):
        for e in (v if isinstance(v, (list, tuple)) else [v]):
            d = getattr(e, "dtype", None)
            if d is not None and np.dtype(d).kind == "f":
                ins.append(str(np.dtype(d)))
    ins = sorted(set(ins))
    return TypeError(f"{type(module).__name__}: float dtype mix inside the layer: the model's weights "
                     f"are {', '.join(pd) or 'none'}, its dtype {getattr(module, 'dtype', None)}, the "
                     f"inputs {', '.join(ins) or 'not floating'} ({err}). Cast the inputs with "
                     f".astype(...) or the model with model.astype(...) so both sides match")

def _to_gpu(a):
    return backend.to_device(a, "gpu") if isinstance(a, np.ndarray) else a



def state_problems(own, given, strict=True):
    """How a state (name -> shape) ``given`` differs from a module's own (name -> shape): a list of
    "missing keys: [...]", "unexpected keys: [...]" (both only with ``strict``) and "shape mismatch:
    [...]" sentences, empty when they fit. ``load_state_dict`` and ``tinyattn.load`` both use it."""
    missing = [n for n in own if n not in given]
    unexpected = [n for n in given if n not in own]
    bad = [f"{n}: checkpoint {tuple(given[n])} vs model {tuple(own[n])}"
           for n in own if n in given and tuple(given[n]) != tuple(own[n])]
    problems = []
    if strict and missing:
        problems.append(f"missing keys: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected keys: {unexpected}")
    if bad:
        problems.append(f"shape mismatch: {bad}")
    return problems


def resolve_identifier(identifier, names, kind):
    """Keras's ``get`` for a regularizer or a constraint: None stays None; a name (any case) from
    ``names`` gives a default instance; a class gives an instance; an instance or any callable is
    returned as is. Anything else is a ValueError naming ``kind`` and the known names."""
    if identifier is None:
        return None
    if isinstance(identifier, str):
        cls = names.get(identifier.lower())
        if cls is None:
            raise ValueError(f"Could not interpret {kind} identifier: {identifier!r}; known names: "
                             f"{sorted(names)}")
        return cls()
    if isinstance(identifier, type):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"Could not interpret {kind} identifier: {identifier!r}")

class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires grad by default)."""
    __slots__ = ()

    def __init__(self, data, requires_grad=True, name=None):
        super().__init__(data, requires_grad=requires_grad, name=name)

    def __repr__(self):
        return "Parameter(" + super().__repr__()[len("tensor("):]


class Module:
    """Base class of every layer and model. Subclasses define ``forward(*args, **kwargs)``.

    ``supports_masking`` (class or instance attribute, default False) and ``compute_mask(inputs,
    mask=None)``: Keras mask propagation, see the module docstring.
    """
    supports_masking = False
    keras_mask_args = None    # None: Keras's rule for filling mask arguments; a tuple: only these

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "built", False)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        params, mods = self.__dict__["_parameters"], self.__dict__["_modules"]
        params.pop(name, None)
        mods.pop(name, None)
        bufs = self.__dict__["_buffers"]
        if name in bufs:                         # re-assigning a buffer keeps it a buffer
            if not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}: buffer {name!r} must stay a Tensor, "
                                f"got {type(value).__name__}")
            bufs[name] = value
        elif isinstance(value, Parameter):
            params[name] = value
        elif isinstance(value, Module):
            mods[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._buffers.pop(name, None)
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
                self.build(_input_shape(first))
                object.__setattr__(self, "built", True)
            previous_mask = self._fill_masks(args, kwargs)
            try:
                outputs = self.forward(*args, **kwargs)
            except TypeError as e:
                msg = str(e)
                if "dtype mix" not in msg or "dtype mix inside the layer" in msg:
                    raise
                raise _dtype_mix_error(self, e, args, kwargs) from e
        if self.supports_masking:
            self._set_mask_metadata(args[0] if args else None, outputs, previous_mask)
        reg = self.__dict__.get("activity_regularizer")
        if reg is not None:                       # Keras: R(output) / batch size, per output
            losses = []
            for o in _flat(outputs):
                if isinstance(o, Tensor):
                    r = reg(o)
                    losses.append(r * (1.0 / o.shape[0]) if o.ndim > 0 and o.shape[0] else r)
            object.__setattr__(self, "_activity_losses", losses)
        return outputs

    # -- regularizers and constraints (Keras's layer.losses and weight constraints) -----------------
    def add_weight_regularizer(self, name, regularizer=None, constraint=None):
        """Attach a Keras regularizer and/or constraint (already resolved with
        ``regularizers.get`` / ``constraints.get``) to the Parameter attribute ``name`` (it may be
        created later, in ``build``). None entries are ignored."""
        if "_weight_regularizers" not in self.__dict__:
            object.__setattr__(self, "_weight_regularizers", OrderedDict())
            object.__setattr__(self, "_weight_constraints", OrderedDict())
        if regularizer is not None:
            self._weight_regularizers[name] = regularizer
        if constraint is not None:
            self._weight_constraints[name] = constraint

    def regularization_losses(self):
        """Keras's ``layer.losses``: every weight regularizer's penalty R(w) (scalar Tensors, with
        gradients), module by module in registration order, then the activity regularizers'
        penalties of the last call (R(output) / batch size; ``_sublayer_activity_losses`` holds those
        a layer records for its inner projections, as Keras's sublayers do). ``fit`` adds their sum
        to the loss."""
        out = []
        for m in self.modules():
            for name, reg in m.__dict__.get("_weight_regularizers", {}).items():
                p = m.__dict__.get(name)
                if p is not None:
                    out.append(reg(p))
            out.extend(m.__dict__.get("_activity_losses", ()))
            out.extend(m.__dict__.get("_sublayer_activity_losses", ()))
        return out

    def apply_constraints(self):
        """Project every constrained weight in place (``w.data ← c(w.data)``), as Keras does after
        each optimizer update; ``fit`` calls it after ``optimizer.step()``. Returns self."""
        for m in self.modules():
            for name, c in m.__dict__.get("_weight_constraints", {}).items():
                p = m.__dict__.get(name)
                if p is not None:
                    xp = backend.get_array_module(p.data)
                    p.data = xp.asarray(c(p.data), dtype=p.data.dtype)
                    p.bump_version()
        return self

    def _fill_masks(self, args, kwargs):
        """Steps 1-2 of Keras mask propagation: fill ``mask`` / ``<name>_mask`` arguments left None
        from the inputs' Keras masks (in ``kwargs``, in place); return ``previous_mask``."""
        params = _forward_params(type(self))
        named = dict(zip(params, args))
        if self.keras_mask_args is not None:      # a layer whose mask arguments mean something else
            params = tuple(p for p in params if p not in ("mask",) and not p.endswith("_mask")
                           or p in self.keras_mask_args)
        if "mask" in params:
            if named.get("mask", kwargs.get("mask")) is None and "mask" not in named and args:
                m = _masks_of(args[0])
                if _any_mask(m):
                    kwargs["mask"] = m
        else:
            for k, v in list(named.items()) + list(kwargs.items()):
                mk = f"{k}_mask"
                if mk in params and mk not in named and kwargs.get(mk) is None:
                    m = _masks_of(v)
                    if _any_mask(m):
                        kwargs[mk] = m
        explicit = named.get("mask", kwargs.get("mask"))
        if explicit is not None:
            return explicit
        return _masks_of(args[0]) if args else None

    def _set_mask_metadata(self, first, outputs, previous_mask):
        """Step 3: attach ``compute_mask(first, previous_mask)`` to outputs without a mask."""
        flat_out = [o for o in _flat(outputs)]
        if all(get_keras_mask(o) is not None for o in flat_out if isinstance(o, Tensor)):
            return
        masks = self.compute_mask(first, previous_mask)
        if masks is None:
            return
        for o, m in zip(flat_out, _flat(masks)):
            if isinstance(o, Tensor) and m is not None and get_keras_mask(o) is None:
                set_keras_mask(o, m)

    def compute_mask(self, inputs, mask=None):
        """The Keras mask of the output, from the input(s) and their mask (Keras's
        ``Layer.compute_mask``). Default: ``mask`` unchanged when ``supports_masking``, else None."""
        return mask if self.supports_masking else None

    def cast_input(self, x, name="input", ids=False):
        """:func:`cast_input` (``x`` as a Tensor in this layer's dtype, on its device)."""
        return cast_input(self, x, name, ids)

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

    def register_buffer(self, name, value):
        """Register ``value`` (a Tensor, or an array made one) as state that is saved and moved with
        the module but is not a Parameter: no gradient, never given to an optimizer (PyTorch's
        buffers; Keras's non-trainable weights such as BatchNormalization's moving statistics)."""
        t = value if isinstance(value, Tensor) else Tensor(value)
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        self._buffers[name] = t
        object.__setattr__(self, name, t)
        return t

    def named_buffers(self, prefix=""):
        for mprefix, m in self.named_modules(prefix):
            for name, b in m._buffers.items():
                yield (f"{mprefix}.{name}" if mprefix else name), b

    def buffers(self):
        return [b for _, b in self.named_buffers()]

    def named_state(self):
        """Parameters and buffers, module by module (each module's parameters, then its buffers)."""
        seen = set()
        for mprefix, m in self.named_modules():
            for name, t in list(m._parameters.items()) + list(m._buffers.items()):
                if id(t) not in seen:
                    seen.add(id(t))
                    yield (f"{mprefix}.{name}" if mprefix else name), t

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
        for p in self.parameters() + self.buffers():
            p.data = backend.to_device(p.data, device)
            p.bump_version()        # a graph built on the old values must not backpropagate
            if p.grad is not None:
                p.grad = Tensor(backend.to_device(p.grad.data, device))
        return self

    def astype(self, dtype):
        """Cast every parameter to ``dtype`` in place (e.g. float64 for gradient checks)."""
        object.__setattr__(self, "dtype", np.dtype(dtype))
        for m in self.modules():
            if "dtype" in m.__dict__:
                object.__setattr__(m, "dtype", np.dtype(dtype))
        for p in self.parameters() + [b for b in self.buffers() if b.dtype.kind == "f"]:
            p.data = p.data.astype(dtype)
            p.bump_version()        # a graph built on the old values must not backpropagate
            p.grad = None
        return self

    # -- weights ------------------------------------------------------------------------------------
    def state_dict(self):
        """name -> array (a copy): parameters and buffers, in registration order."""
        return OrderedDict((n, p.data.copy()) for n, p in self.named_state())

    def load_state_dict(self, state, strict=True):
        """Copy arrays into the parameters. A missing/unexpected name or a shape mismatch is an error
        listing every difference (with ``strict=False``, missing and unexpected names are skipped)."""
        own = OrderedDict(self.named_state())
        problems = state_problems({n: t.shape for n, t in own.items()},
                                  {n: tuple(np.shape(a)) for n, a in state.items()}, strict)
        if problems:
            raise ValueError(f"load_state_dict({type(self).__name__}): " + "; ".join(problems))
        for n, p in own.items():
            if n in state:
                v = array_of(state[n])
                xp = backend.get_array_module(p.data)
                p.data = xp.asarray(backend.to_device(v, p.device), dtype=p.data.dtype).copy()
                p.bump_version()        # a graph built on the old values must not backpropagate
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
            p.bump_version()        # a graph built on the old values must not backpropagate

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


def _keywords(layer):
    """``(names, any)``: the keyword arguments ``layer.forward`` takes after its input, and whether it
    takes any keyword (``**kwargs``). A nested Sequential takes what its layers take."""
    if isinstance(layer, Sequential):
        return layer._accepted_keywords()
    fn = getattr(type(layer), "forward", None)
    cached = _KEYWORDS.get(fn)
    if cached is None:
        try:
            params = list(inspect.signature(layer.forward).parameters.values())
        except (TypeError, ValueError):
            cached = (frozenset(), True)          # cannot tell: let it take everything
        else:
            positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
            first = positional[0].name if positional else None
            names = frozenset(p.name for p in params if p.name != first and
                              p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
            cached = (names, any(p.kind == p.VAR_KEYWORD for p in params))
        if fn is not None:
            _KEYWORDS[fn] = cached
    return cached


_KEYWORDS = {}


class Sequential(ModuleList):
    """Modules applied in order: ``Sequential(a, b, c)(x) == c(b(a(x)))``.

    Keyword arguments go to every layer whose ``forward`` takes them, e.g.
    ``Sequential(Embedding(...), LSTM(8), Dense(2))(ids, mask=m, training=True)`` passes ``mask`` and
    ``training`` to the LSTM only (Dense and Embedding take neither). A keyword that no layer takes
    is a TypeError naming it (it is never silently dropped) -- except ``training``, which every Keras
    model takes, and which is simply unused when no layer behaves differently in training.
    """

    def __init__(self, *layers):
        super().__init__(layers)

    def _accepted_keywords(self):
        names, anything = set(), False
        for layer in self:
            n, a = _keywords(layer)
            names |= n
            anything = anything or a
        return frozenset(names), anything

    def forward(self, x, **kwargs):
        if kwargs:
            names, anything = self._accepted_keywords()
            unknown = sorted(k for k in kwargs if k not in names and k != "training")
            if unknown and not anything:
                layers = ", ".join(type(m).__name__ for m in self) or "none"
                raise TypeError(f"Sequential: no layer takes the keyword argument(s) {unknown} (layers: "
                                f"{layers}; keywords they take: {sorted(names)}); check the spelling or "
                                f"call the layer that needs it directly")
        for layer in self:
            if kwargs:
                names, anything = _keywords(layer)
                x = layer(x, **(kwargs if anything else {k: v for k, v in kwargs.items() if k in names}))
            else:
                x = layer(x)
        return x

    def weights(self):
        return [w for layer in self for w in layer.weights()]
