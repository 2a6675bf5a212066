"""strict_xp: a strict stand-in for CuPy, so that tinyattn's GPU path runs on every CI machine.

CuPy has rules that NumPy does not, and code written on a laptop breaks them silently:

1. **No implicit device -> host conversion.** ``np.asarray(gpu_array)`` raises ``TypeError``
   (CuPy's ``__array__``); the data comes back only through ``cupy.asnumpy(a)`` / ``a.get()``.
2. **No host data in device arithmetic.** A NumPy array meeting a CuPy array in an operator, a
   ufunc or a function raises ``TypeError``. This stand-in is stricter than CuPy in one place, as
   tinyattn's contract asks: a *NumPy scalar* (``np.float64(2)``, ``x.dtype.type(0)``) or a list
   meeting a device array also raises; Python numbers are fine (they are "weak" and keep the
   array's dtype, as in CuPy). Creating a device array from host data is explicit:
   ``strict_xp.asarray(host)``.
3. **Every device -> host read is a synchronisation.** ``.item()``, ``float()``, ``int()``,
   ``bool()``, ``.tolist()``, ``.get()``, ``asnumpy`` and printing all work, and each is counted in
   :data:`syncs` (by kind in :data:`sync_counts`), so a test can bound how often a training loop
   waits for the device.
4. **Reductions and indexing give 0-d device arrays**, not host scalars (``a.sum()`` stays on the
   device until something reads it).

The device array, :class:`ndarray`, wraps a NumPy array (``_a``) but is *not* an ``np.ndarray``
subclass, so NumPy can never take it for host memory. NumPy functions and ufuncs called on it
(``np.exp(a)``, ``np.concatenate([a, b])``) dispatch through ``__array_ufunc__`` /
``__array_function__`` and stay on the "device", as they do for CuPy arrays. The module mirrors
the part of CuPy's namespace tinyattn uses: creation functions, math (any NumPy function, wrapped),
``linalg``, ``random.default_rng``/``random.seed``, ``scatter_add`` (cupyx's), ``asnumpy``,
dtype names, ``ndarray``, ``get_array_module``.

Installed by tests/conftest.py: ``pytest --backend=strict`` runs the whole suite with this module as
tinyattn's device module and ``use_backend("cupy")`` as the default.
"""
import collections
import numbers
import sys
import types

import numpy as _np

syncs = 0                                  # device -> host reads so far (all kinds)
sync_counts = collections.Counter()        # ... by kind: "item", "float", "asnumpy", ...


def _sync(kind):
    global syncs
    syncs += 1
    sync_counts[kind] += 1


def reset_syncs():
    """Set the sync counters to zero."""
    global syncs
    syncs = 0
    sync_counts.clear()


def _host_error(what, x):
    desc = (f"a NumPy array of shape {x.shape}" if isinstance(x, _np.ndarray)
            else f"a NumPy scalar {type(x).__name__}({x!r})" if isinstance(x, _np.generic)
            else f"a {type(x).__name__}")
    return TypeError(f"strict_xp {what}: {desc} met a device array; host data must be moved "
                     f"explicitly (xp.asarray(...)), and constants must be Python numbers or device "
                     f"arrays (as CuPy requires)")


def _is_py_scalar(x):
    return isinstance(x, (bool, int, float, complex)) and not isinstance(x, _np.generic)


def _unwrap_operand(what, x):
    """An operand of an operator/ufunc: a device array or a Python number, else TypeError."""
    if isinstance(x, ndarray):
        return x._a
    if _is_py_scalar(x) or x is None:
        return x
    if isinstance(x, (_np.ndarray, _np.generic, list, tuple)):
        raise _host_error(what, x)
    return NotImplemented


def _unwrap_args(what, x):
    """Arguments of a function: device arrays unwrapped (also inside lists/tuples/dicts); host
    ndarrays and NumPy float scalars refused; shapes, axes, dtypes, Python numbers pass."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise _host_error(what, x)
    if isinstance(x, _np.generic) and not isinstance(x, (_np.integer, _np.bool_)):
        raise _host_error(what, x)
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap_args(what, v) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap_args(what, v) for k, v in x.items()}
    return x


def _wrap(x):
    """Results back onto the device (host scalars from reductions become 0-d device arrays)."""
    if isinstance(x, _np.ndarray):
        return ndarray(x)
    if isinstance(x, _np.generic):
        return ndarray(_np.asarray(x))
    if isinstance(x, tuple):
        return tuple(_wrap(v) for v in x)
    if isinstance(x, list):
        return [_wrap(v) for v in x]
    return x


def _call(func, args, kwargs, what=None):
    what = what or getattr(func, "__name__", "call")
    r = func(*_unwrap_args(what, args), **_unwrap_args(what, kwargs))
    return ndarray(_np.asarray(r)) if type(r) is bool else _wrap(r)   # allclose, array_equal: on the device


def _index(key):
    """An index: device arrays unwrapped; host integer/bool arrays and lists are allowed, as CuPy
    copies them to the device itself."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key


class MemoryPointer:
    """What CuPy's ``ndarray.data`` is: an opaque pointer to device memory (not array-like)."""
    __slots__ = ("size",)
    __array__ = None             # np.asarray(pointer) fails too

    def __init__(self, size):
        self.size = size


class ndarray:
    """A device array: a NumPy array behind CuPy's rules (see the module docstring)."""
    __slots__ = ("_a",)
    __array_priority__ = 100

    def __init__(self, a):
        if not isinstance(a, _np.ndarray):
            raise TypeError("strict_xp.ndarray wraps a NumPy array; use strict_xp.asarray(...)")
        self._a = a

    # -- rule 1: no implicit host conversion --------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to "
                        "construct a NumPy array explicitly. (strict_xp, as CuPy)")

    # -- rule 3: explicit, counted device -> host reads ---------------------------------------------
    def get(self):
        _sync("get")
        return self._a.copy()

    def item(self, *args):
        _sync("item")
        return self._a.item(*args)

    def tolist(self):
        _sync("tolist")
        return self._a.tolist()

    def __float__(self):
        _sync("float")
        return float(self._a)

    def __int__(self):
        _sync("int")
        return int(self._a)

    def __bool__(self):
        _sync("bool")
        return bool(self._a)

    def __repr__(self):
        _sync("repr")
        return repr(self._a).replace("array(", "strict_xp.array(", 1)

    def __str__(self):
        _sync("repr")
        return str(self._a)

    def __format__(self, spec):
        _sync("repr")
        return format(self._a.item() if self._a.ndim == 0 else self._a, spec)

    # -- metadata (no sync) ------------------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: ndarray(self._a.T))
    real = property(lambda self: ndarray(self._a.real))
    imag = property(lambda self: ndarray(self._a.imag))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))
    # CuPy's ``a.data`` is a device MemoryPointer, not an array: ``getattr(x, "data", x)`` meant to
    # unwrap a Tensor silently gets it for a raw CuPy array. Same trap here.
    data = property(lambda self: MemoryPointer(self._a.nbytes))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        if self._a.ndim == 0:
            raise TypeError("iteration over a 0-d array")
        return (ndarray(self._a[i]) if self._a.ndim > 1 else ndarray(_np.asarray(self._a[i]))
                for i in range(len(self._a)))

    def __getitem__(self, key):
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key, value):
        v = _unwrap_operand("__setitem__", value)
        if v is NotImplemented:
            raise _host_error("__setitem__", value)
        self._a[_index(key)] = v

    # -- NumPy dispatch ------------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        what = f"{ufunc.__name__}" + ("" if method == "__call__" else f".{method}")
        args = []
        for x in inputs:
            u = _unwrap_operand(what, x)
            if u is NotImplemented:
                return NotImplemented
            args.append(u)
        if method == "at":      # ufunc.at(a, index, b): the index may be host integers
            args[1] = _index(inputs[1])
        out = kwargs.get("out")
        if out is not None:
            out = outs = out if isinstance(out, tuple) else (out,)
            if not all(isinstance(o, ndarray) for o in outs):
                raise _host_error(f"{what}(out=...)", outs[0])
            kwargs["out"] = tuple(o._a for o in outs)
        if "where" in kwargs:
            w = _unwrap_operand(what, kwargs["where"])
            kwargs["where"] = w
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _call(func, args, kwargs, func.__name__)

    # -- methods: NumPy's, run on the device ------------------------------------------------------
    def astype(self, dtype, copy=True, **kw):
        return ndarray(self._a.astype(dtype, copy=copy, **kw))

    def copy(self, order="C"):
        return ndarray(self._a.copy(order))

    def view(self, dtype=None):
        return ndarray(self._a.view() if dtype is None else self._a.view(dtype))

    def __getattr__(self, name):
        if name in _METHODS:
            meth = getattr(self._a, name)
            return lambda *a, **k: _call(meth, a, k, f"ndarray.{name}")
        raise AttributeError(f"strict_xp.ndarray has no attribute {name!r}")

    def __copy__(self):
        return self.copy()

    def __deepcopy__(self, memo):
        return self.copy()

    def __reduce__(self):      # pickling a device array is a host read in CuPy too
        _sync("pickle")
        return (asarray, (self._a.copy(),))


_METHODS = {"reshape", "transpose", "swapaxes", "sum", "mean", "max", "min", "argmax", "argmin", "prod",
            "cumsum", "cumprod", "std", "var", "any", "all", "fill", "ravel", "flatten", "squeeze",
            "clip", "dot", "repeat", "take", "nonzero", "round", "conj", "sort", "argsort", "trace",
            "diagonal", "put", "choose", "searchsorted", "ptp", "__contains__"}


def _binary(ufunc, reflected=False):
    def op(self, other):
        return self.__array_ufunc__(ufunc, "__call__", *((other, self) if reflected else (self, other)))
    return op


def _inplace(ufunc):
    def op(self, other):
        r = self.__array_ufunc__(ufunc, "__call__", self, other, out=(self,))
        return self if r is not NotImplemented else r
    return op


for _name, _uf in [("add", _np.add), ("sub", _np.subtract), ("mul", _np.multiply),
                   ("truediv", _np.true_divide), ("floordiv", _np.floor_divide), ("mod", _np.remainder),
                   ("pow", _np.power), ("matmul", _np.matmul), ("and", _np.bitwise_and),
                   ("or", _np.bitwise_or), ("xor", _np.bitwise_xor), ("lshift", _np.left_shift),
                   ("rshift", _np.right_shift)]:
    setattr(ndarray, f"__{_name}__", _binary(_uf))
    setattr(ndarray, f"__r{_name}__", _binary(_uf, reflected=True))
    setattr(ndarray, f"__i{_name}__", _inplace(_uf))
for _name, _uf in [("lt", _np.less), ("le", _np.less_equal), ("gt", _np.greater),
                   ("ge", _np.greater_equal), ("eq", _np.equal), ("ne", _np.not_equal)]:
    setattr(ndarray, f"__{_name}__", _binary(_uf))
for _name, _uf in [("neg", _np.negative), ("pos", _np.positive), ("abs", _np.absolute),
                   ("invert", _np.invert)]:
    setattr(ndarray, f"__{_name}__", lambda self, _uf=_uf: self.__array_ufunc__(_uf, "__call__", self))
ndarray.__hash__ = None


# -- explicit transfers --------------------------------------------------------------------------------
def asarray(a, dtype=None, order=None):
    """Host -> device (a copy, as for a real device), or the device array itself (cast if asked)."""
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else a.astype(dtype)
    if isinstance(a, (list, tuple)) and any(isinstance(v, ndarray) for v in _flat(a)):
        r = _np.stack([asarray(v)._a for v in a])          # a list of device arrays: stays on the device
        return ndarray(r if dtype is None else r.astype(dtype))
    return ndarray(_np.array(a, dtype=dtype, order=order or "K", copy=True))


def _flat(a):
    for v in a:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    r = asarray(a, dtype)
    r = r.copy() if copy and isinstance(a, ndarray) else r
    while r.ndim < ndmin:
        r = r[None]
    return r


def ascontiguousarray(a, dtype=None):
    return asarray(a, dtype).copy()


def asnumpy(a, stream=None, order="C", out=None):
    """Device -> host (counted); a host array is returned as NumPy's asarray gives it (as CuPy)."""
    if isinstance(a, ndarray):
        _sync("asnumpy")
        return _np.array(a._a, order=order, copy=True)
    return _np.asarray(a)


def get_array_module(*args):
    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


def scatter_add(a, slices, value):
    """cupyx.scatter_add: ``a[slices] += value`` with repeated indices accumulated."""
    v = _unwrap_operand("scatter_add", value)
    if v is NotImplemented or not isinstance(a, ndarray):
        raise _host_error("scatter_add", value if v is NotImplemented else a)
    _np.add.at(a._a, _index(slices), v)


# -- the namespace: NumPy's functions, run on the device -------------------------------------------
class _DeviceFunction:
    """A NumPy function or ufunc whose arguments must be on the device and whose results stay there."""

    def __init__(self, f, name):
        self._f, self.__name__ = f, name

    def __call__(self, *args, **kwargs):
        if isinstance(self._f, _np.ufunc) and any(isinstance(v, ndarray) for v in args):
            return self._f(*args, **kwargs)      # NumPy dispatches to ndarray.__array_ufunc__'s rules
        return _call(self._f, args, kwargs, self.__name__)

    def __getattr__(self, name):   # ufunc methods: reduce, accumulate, outer, at
        m = getattr(self._f, name)
        if not callable(m):
            return m
        if name == "at":
            def at(a, index, b=None):
                if not isinstance(a, ndarray):
                    raise _host_error(f"{self.__name__}.at", a)
                self._f.at(a._a, _index(index), *([] if b is None else [_unwrap_operand("at", b)]))
            return at
        return _DeviceFunction(m, f"{self.__name__}.{name}")


_PASS = {"dtype", "finfo", "iinfo", "issubdtype", "result_type", "can_cast", "promote_types",
         "broadcast_shapes", "ndim", "shape", "isscalar", "errstate", "seterr", "geterr"}


def _creation(name):
    f = getattr(_np, name)

    def make(*args, **kwargs):
        return _call(f, args, kwargs, name)
    make.__name__ = name
    return make


for _n in ("zeros", "ones", "empty", "full", "arange", "eye", "identity", "linspace", "tri", "indices"):
    globals()[_n] = _creation(_n)


def __getattr__(name):
    """Everything else of NumPy's namespace: types and constants as they are, functions wrapped."""
    if name.startswith("__"):
        raise AttributeError(name)
    obj = getattr(_np, name)
    if name in _PASS or isinstance(obj, (type, numbers.Number)) or not callable(obj):
        return obj
    return _DeviceFunction(obj, name)


def _submodule(name, source):
    mod = types.ModuleType(f"{__name__}.{name}")
    mod.__getattr__ = lambda n: _DeviceFunction(getattr(source, n), f"{name}.{n}")
    return mod


linalg = _submodule("linalg", _np.linalg)
try:   # cupyx.scipy.special's stand-in (erf for GELU); SciPy's ufuncs run on the wrapped arrays
    import scipy.special as _special
    special = _submodule("special", _special)
except ImportError:  # pragma: no cover
    special = None


class Generator:
    """cupy.random.Generator: NumPy's generator whose draws land on the device."""

    def __init__(self, seed=None):
        self._g = _np.random.default_rng(seed)

    def __getattr__(self, name):
        f = getattr(self._g, name)
        # Parameters (loc, scale, low, high, size) may be any host number, as in CuPy; arrays may not.
        host = lambda v: v.item() if isinstance(v, _np.generic) else v  # noqa: E731
        return lambda *a, **k: _call(f, [host(v) for v in a], {n: host(v) for n, v in k.items()},
                                     f"random.Generator.{name}")


class _Random(types.ModuleType):
    def __init__(self):
        super().__init__(f"{__name__}.random")
        self._global = Generator()
        self.Generator = Generator

    def default_rng(self, seed=None):
        return Generator(seed)

    def seed(self, seed=None):
        self._global = Generator(seed)

    def __getattr__(self, name):   # legacy cupy.random.rand/randn/uniform/...: the global generator
        legacy = {"rand": lambda *s: self._global.random(s), "randn": lambda *s: self._global.standard_normal(s)}
        return legacy.get(name) or getattr(self._global, name)


random = _Random()
