"""The autograd core: ``Tensor``, ``Function`` and the backward pass (one page of chain rule).

A ``Function`` computes ``forward(*arrays) -> array(s)`` and ``backward(*grads) -> grads``, the
vector-Jacobian product, side by side. Calling a Function on Tensors records the graph:

    x ──▶ [Function] ──▶ y        y.creator = Function; Function.inputs = (x, ...)
                                   Function.outputs = (weakref(y), ...)

``Tensor.backward()`` walks that graph from the output back to the leaves. Functions are visited
newest first, by a creation sequence number held in a heap (as PyTorch's ready queue): a Function is
always created after the Functions that made its inputs, so each Function runs once, after every
consumer of its outputs has sent its gradient, and no recursion is involved (a 100,000-op chain is
fine). Gradients are summed in the same order in every run, so float32 results repeat bit for bit.
(``generation``, one more than the deepest input's, is the graph depth: kept for walking and
drawing the graph, not needed for the order.)

Version counter (PyTorch's): each Tensor counts the in-place changes of its data (``optimizer.step()``,
``Tensor.bump_version()``), and backward raises a RuntimeError for a Function whose input was changed
in place after the Function ran, instead of differentiating at the new values. Cheaply: a change
stamps the tensor with the next creation sequence number, so "changed after f ran" is
``x._changed > f._seq``, and only Functions older than the latest in-place change anywhere are checked
(no per-op cost in forward, one comparison per Function in backward).

Walking a graph (what ``tinyattn.viz.draw_graph`` does): ``Tensor.creator`` is the Function that
made a tensor (None for a leaf), ``Function.input_tensors`` its input Tensors, and
:func:`walk_graph` yields every Function and Tensor behind a result in topological order. That
also works after ``backward()``: a backward pass without ``retain_graph`` frees each Function's
input Tensors and the arrays it saved for its backward (as before), keeping only a skeleton for
walking — per input a :class:`ReleasedTensor` (shape, dtype, name, creator; no data; the live
Tensor is returned instead while something else still holds it) and the Function's small settings
(axis, scale ...). The skeleton keeps no array alive except the parameters' (leaves that require
grad, kept as themselves, as PyTorch's ``AccumulateGrad`` nodes keep theirs).

Backward code is written once and serves two purposes: on plain arrays (the fast path) and on
Tensors (``create_graph=True``, so gradients are themselves differentiable). It uses only the array
methods that Tensors share with ndarrays (``*``, ``@``, ``.sum``, ``.reshape``, ``.transpose`` ...)
plus the helpers below (``sum_to``, ``broadcast_to``). Broadcasting is undone once, here in the
engine: a gradient whose shape differs from its input's is summed back to that shape by ``sum_to``.
"""
import contextlib
import gc
from heapq import heappop, heappush
import itertools
import threading
import weakref

import numpy as np

from . import backend


class _Mode(threading.local):
    enabled = True            # per thread: a thread inside no_grad() leaves the others recording


_mode = _Mode()
_off = 0                      # grad-disabling contexts now open in all threads; while it is 0 every
_off_lock = threading.Lock()  # thread records, and ops skip reading the (slower) thread-local flag


def is_grad_enabled():
    return _off == 0 or _mode.enabled


@contextlib.contextmanager
def _grad_mode(enabled):
    global _off
    old = _mode.enabled
    if not enabled:
        with _off_lock:
            _off += 1
    _mode.enabled = enabled
    try:
        yield
    finally:
        _mode.enabled = old
        if not enabled:
            with _off_lock:
                _off -= 1


def no_grad():
    """Context manager (thread-local): ops inside record no graph. ``with tinyattn.no_grad(): ...``"""
    return _grad_mode(False)


def enable_grad():
    """Context manager: turn graph recording back on (inside ``no_grad``)."""
    return _grad_mode(True)


def _is_float(dtype):
    return dtype.kind == "f"


class Tensor:
    """An array (NumPy or CuPy) that remembers how it was computed.

    Attributes: ``data`` (the array), ``grad`` (a Tensor or None), ``requires_grad``,
    ``creator`` (the Function that produced it, None for a leaf), ``generation`` (graph depth),
    ``version`` (PyTorch's version counter: how many times ``data`` was changed in place).

    Version counter: backward refuses to use a Function's input whose data was changed in place
    after the Function ran (``optimizer.step()``, :meth:`bump_version`), since its gradient would
    silently be computed from the new values.
    """
    __slots__ = ("data", "grad", "requires_grad", "creator", "generation", "_retain", "name",
                 "_version", "_changed", "_keras_mask", "__weakref__")   # _keras_mask: see nn.module (Keras mask propagation)
    __array_priority__ = 200   # so ``ndarray op Tensor`` dispatches to Tensor's reflected operator
    __array_ufunc__ = None

    def __init__(self, data, requires_grad=False, name=None):
        if type(data) is not np.ndarray:
            if isinstance(data, Tensor):
                data = data.data
            elif isinstance(data, np.generic):
                data = np.asarray(data)           # NumPy scalars -> 0-d arrays
            elif not hasattr(data, "dtype"):      # Python numbers and lists
                data = np.asarray(data)
                if data.dtype == np.float64:      # Python floats default to float32, like PyTorch
                    data = data.astype(np.float32)
        self.data = data
        self.grad = None
        self.creator = None
        self.generation = 0
        self._retain = False
        self.name = name
        self._version = self._changed = 0      # in-place changes: count, sequence stamp of the last
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @staticmethod
    def _wrap(a, _new=object.__new__):
        """``Tensor(a)`` for a fresh ndarray ``a`` (an op's result), minus ``__init__``'s conversions:
        the ops' hot path. Sets every slot ``__init__`` sets (tests/test_engine_contract.py checks)."""
        t = _new(Tensor)
        t.data = a
        t.grad = t.creator = t.name = None
        t.generation = t._version = t._changed = 0
        t._retain = t.requires_grad = False
        return t

    def requires_grad_(self, flag=True):
        if flag and not _is_float(self.data.dtype):
            raise TypeError(f"only floating-point tensors can require grad (got dtype {self.data.dtype}); "
                            f"create it with dtype=np.float32 or .astype('float32')")
        self.requires_grad = bool(flag)
        return self

    # -- plain properties -------------------------------------------------------------------------
    shape = property(lambda self: tuple(self.data.shape))
    ndim = property(lambda self: self.data.ndim)
    size = property(lambda self: int(self.data.size))
    dtype = property(lambda self: self.data.dtype)
    device = property(lambda self: backend.device_of(self.data))
    is_leaf = property(lambda self: self.creator is None)

    def __len__(self):
        return len(self.data)

    def __bool__(self):   # as NumPy: one element -> its truth; more -> "ambiguous" error (not len > 0)
        return bool(self.data)

    def __repr__(self):
        body = str(backend.as_numpy(self.data)).replace("\n", "\n       ")
        extra = ", requires_grad=True" if self.requires_grad else ""
        dev = ", device='gpu'" if self.device == "gpu" else ""
        return f"tensor({body}, dtype={self.dtype}{dev}{extra})"

    def numpy(self):
        """A NumPy copy of the data (from the GPU too)."""
        return backend.as_numpy(self.data).copy()

    def item(self):
        return self.data.item()

    def __array__(self, dtype=None, copy=None):   # np.asarray(t), np.testing on CPU Tensors
        if backend.is_gpu_array(self.data):       # as torch and CuPy: a device read is explicit
            raise TypeError("a GPU Tensor cannot be converted to NumPy implicitly; use .numpy() "
                            "(a device->host copy) or .to('cpu')")
        a = self.data
        return a if dtype is None else a.astype(dtype)

    __float__ = lambda self: float(self.data.item())   # noqa: E731
    __int__ = lambda self: int(self.data.item())       # noqa: E731

    def detach(self):
        """The same data, cut from the graph (a leaf that does not require grad)."""
        return Tensor(self.data)

    def retain_grad(self):
        """Keep ``.grad`` on this non-leaf tensor after backward."""
        self._retain = True
        return self

    def to(self, device):
        """Move to ``"cpu"`` (NumPy) or ``"gpu"`` (CuPy). Moving a leaf gives a leaf."""
        if device == self.device:
            return self
        t = Tensor(backend.to_device(self.data, device), requires_grad=self.requires_grad)
        if self.grad is not None:
            t.grad = Tensor(backend.to_device(self.grad.data, device))
        return t


    def zero_grad(self):
        self.grad = None

    @property
    def version(self):
        """How many times this tensor's data was changed in place (PyTorch's ``_version``)."""
        return self._version

    def bump_version(self):
        """Record an in-place change of ``data`` (call after writing into ``t.data[...]``): a graph that
        used the old values then refuses to backpropagate through it instead of using the new ones."""
        self._version += 1
        self._changed = _last_change[0] = next(_sequence)
        return self

    def backward(self, grad=None, retain_graph=False, create_graph=False):
        """Accumulate d(self)/d(leaf) · grad into every leaf's ``.grad`` that requires grad."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad (no input requires grad, "
                               "or it was computed under no_grad())")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: output has shape {self.shape}, not a scalar; pass "
                                   f"grad= (an array of that shape) or reduce it first, e.g. y.sum()")
            grad = backend.get_array_module(self.data).ones_like(self.data)
        run_backward([self], [grad], retain_graph=retain_graph, create_graph=create_graph)


_wrap = Tensor._wrap


def as_array(x, like):
    """Turn a scalar/list/array into an array on ``like``'s device with ``like``'s float dtype.

    Python scalars never upcast: ``float32_tensor * 2.0`` stays float32, and a float beside an
    integer array is float32 (PyTorch's default dtype): ``int_tensor * 2.5`` is float32.
    (``np.float64`` is a Python float subclass, so NumPy float64 scalars count as Python floats.)
    """
    xp = np if type(like) is np.ndarray else backend.get_array_module(like)
    if isinstance(x, (int, float, bool)):
        if _is_float(like.dtype):
            dtype = like.dtype
        else:
            dtype = np.float32 if isinstance(x, float) else None
        return xp.asarray(x, dtype=dtype)
    if isinstance(x, np.generic):             # a NumPy scalar (np.float32(2)): a constant, moved
        a = xp.asarray(x)                      # explicitly to like's device (CuPy refuses the mix)
    else:
        a = x if hasattr(x, "dtype") and hasattr(x, "shape") else xp.asarray(x)
    if _is_float(like.dtype) and not _is_float(a.dtype):
        a = a.astype(like.dtype)
    return a


def array_of(x):
    """The array inside a Tensor; anything else unchanged. (Not a getattr of ``.data`` with a default: an ndarray's
    ``.data`` is a memoryview.)"""
    return x.data if isinstance(x, Tensor) else x


def as_tensor(x, like=None):
    if isinstance(x, Tensor):
        return x
    return Tensor(as_array(x, like) if like is not None else x)


class Function:
    """One differentiable operation. Subclasses define ``forward(*arrays)`` and ``backward(*grads)``.

    In ``backward``, ``self.inputs`` gives the inputs and ``self.output_values`` the outputs — plain
    arrays on the fast path, Tensors when building a differentiable gradient (``create_graph``).
    ``backward`` returns one gradient per input (or None where there is none), each either of the
    input's shape or broadcastable to it (the engine sums broadcast axes back).
    """
    _inputs, outputs, generation, _as_tensors, _seq, _released = None, (), 0, False, 0, ()

    def __call__(self, *inputs):
        xs = inputs
        for x in inputs:
            if not isinstance(x, Tensor):
                xs = _to_tensors(inputs)
                break
        if len(xs) == 1:
            arrays = (xs[0].data,)
        elif len(xs) == 2:                     # the common case, unrolled: one dtype, one array type
            a, b = arrays = xs[0].data, xs[1].data
            if a.dtype != b.dtype or type(a) is not type(b):
                xs = _check_mix(self, xs)
                arrays = xs[0].data, xs[1].data
        else:
            xs = _check_mix(self, xs)
            arrays = [x.data for x in xs]
        try:
            ys = self.forward(*arrays)
        except (ValueError, IndexError) as e:  # NumPy's errors, reworded to name the op and shapes
            op, shapes = type(self).__name__.lower(), " and ".join(str(tuple(x.shape)) for x in xs)
            if "could not be broadcast" in str(e):
                raise ValueError(f"{op}: shapes {shapes} cannot be broadcast together; reshape or "
                                 f"expand_dims one side first") from None
            if str(e).startswith(op):
                raise
            raise type(e)(f"{op}: {e} (input shapes {shapes})") from None
        single = type(ys) is not tuple         # one output (most ops)
        if single:
            outs = (_wrap(ys) if type(ys) is np.ndarray else Tensor(ys),)   # (ndarray: the cheap path)
        else:
            outs = tuple([Tensor(y) for y in ys])
        if _off == 0 or _mode.enabled:         # join the graph if an input needs a gradient
            gen = -1                           # the deepest such input
            for x in xs:
                if x.requires_grad and x.generation > gen:
                    gen = x.generation
            if gen >= 0:
                self.generation = gen
                self._seq = next(_sequence)    # creation order: backward's order and tie-break
                self._inputs = xs
                for o in outs:
                    if o.data.dtype.kind == "f":
                        o.requires_grad = True
                        o.creator = self
                        o.generation = gen + 1
                self.outputs = (weakref.ref(outs[0]),) if single else tuple([weakref.ref(o) for o in outs])
        return outs[0] if single else outs

    @property
    def inputs(self):
        """The inputs: arrays on the fast path, Tensors under create_graph."""
        xs = self._inputs
        if self._as_tensors:
            return xs
        if len(xs) == 2:
            return xs[0].data, xs[1].data
        return [x.data for x in xs]

    @property
    def input_tensors(self):
        """The input Tensors (a tuple), for walking the graph; also after a backward pass that freed
        them: each input still alive is returned as itself, a freed one as a :class:`ReleasedTensor`
        (shape, dtype, name, creator; no data). Empty for a Function that recorded no graph."""
        if self._inputs is not None:
            return tuple(self._inputs)
        rel = self._released
        for i, r in enumerate(rel):
            if type(r) is tuple:                   # made into a stand-in once, on first demand
                rel[i] = ReleasedTensor._from_skeleton(r)
        return tuple(r if type(r) is not ReleasedTensor or r._ref() is None else r._ref() for r in rel)

    def _release(self):
        """Free what backward needed (the input Tensors, saved arrays); keep a skeleton for walking.

        A parameter (a leaf that requires grad) stays in the skeleton as itself, as PyTorch's graph
        keeps its leaves (``AccumulateGrad`` holds the variable); any other input is kept as a tuple
        (weakref, shape, dtype, name, creator, requires_grad, generation) that ``input_tensors``
        turns into a :class:`ReleasedTensor` when asked (cheaper than making one per input here).
        """
        rel = []
        for x in self._inputs:
            if x.creator is None and x.requires_grad:
                rel.append(x)
            else:
                a = x.data
                rel.append((weakref.ref(x), a.shape, a.dtype, x.name, x.creator, x.requires_grad,
                            x.generation))
        self._released = rel
        self._inputs = None
        d = self.__dict__
        if len(d) > 5:                             # more than the engine's own attributes: drop the
            for k in [k for k, v in d.items() if k not in _ENGINE_KEYS and _holds_array(v)]:
                d[k] = None                        # arrays saved for backward (masks, gates ...)

    @property
    def output_values(self):
        outs = [r() for r in self.outputs]
        if self._as_tensors:
            return outs
        return [None if o is None else o.data for o in outs]

    def forward(self, *xs):
        raise NotImplementedError

    def backward(self, *gys):
        raise NotImplementedError


_sequence = itertools.count(1)   # Functions recorded in a graph are numbered in creation order; an
_last_change = [0]               # in-place change takes a number too: the latest one is kept here


_PLAIN = frozenset((int, float, bool, str, type(None), slice))
_ENGINE_KEYS = frozenset(("generation", "_seq", "_inputs", "outputs", "_released", "_as_tensors"))


def _holds_array(v):
    """Is ``v`` an array (NumPy, CuPy, a Tensor) or a tuple/list holding one?"""
    t = type(v)
    if t in _PLAIN:
        return False
    if t is tuple or t is list:
        return any(_holds_array(e) for e in v)
    return (isinstance(v, (np.ndarray, np.generic, Tensor)) or backend.is_gpu_array(v)
            or hasattr(v, "__cuda_array_interface__"))


class ReleasedTensor:
    """What remains of a Function's input after a backward pass freed it (``retain_graph=False``):
    ``shape``, ``dtype``, ``name``, ``creator`` (the Function that made it, None for a leaf),
    ``requires_grad``, ``generation``; ``grad`` is None and there is no data (``.data`` raises).
    ``Function.input_tensors`` returns the live Tensor instead as long as something still holds it.
    """
    __slots__ = ("_ref", "shape", "dtype", "name", "creator", "requires_grad", "generation")
    grad = None

    def __init__(self, t):
        a = t.data
        self._ref, self.shape, self.dtype, self.name = weakref.ref(t), a.shape, a.dtype, t.name
        self.creator, self.requires_grad, self.generation = t.creator, t.requires_grad, t.generation

    @classmethod
    def _from_skeleton(cls, s):
        """From ``Function._release``'s tuple (weakref, shape, dtype, name, creator, requires_grad,
        generation)."""
        r = object.__new__(cls)
        r._ref, r.shape, r.dtype, r.name, r.creator, r.requires_grad, r.generation = s
        return r

    is_leaf = property(lambda self: self.creator is None)
    ndim = property(lambda self: len(self.shape))

    @property
    def data(self):
        raise RuntimeError("this tensor's data was freed by backward(); keep a reference to the tensor, "
                           "or pass retain_graph=True to backward(), to read it afterwards")

    def __repr__(self):
        return f"ReleasedTensor(shape={self.shape}, dtype={self.dtype})"


def walk_graph(tensor):
    """Yield every Function and Tensor of the graph behind ``tensor``, each once, in topological
    order: a node comes after everything it was computed from (leaves first, ``tensor`` last).

    Tensors are ``Tensor`` objects (or :class:`ReleasedTensor` stand-ins for intermediates a backward
    pass freed); Functions are ``Function`` objects. Edges: ``t.creator`` -> t, and each of
    ``f.input_tensors`` -> f. Identify nodes with :func:`node_id` (two Functions that consumed the
    same freed tensor hold two stand-ins with one ``node_id``). Iterative: no recursion limit.
    """
    seen, stack = set(), [(tensor, False)]
    while stack:
        node, done = stack.pop()
        if done:
            yield node
            continue
        key = node_id(node)
        if key in seen:
            continue
        seen.add(key)
        stack.append((node, True))
        if isinstance(node, Function):
            parents = node.input_tensors
        else:
            parents = () if node.creator is None else (node.creator,)
        for p in reversed(parents):
            if node_id(p) not in seen:
                stack.append((p, False))


def node_id(node):
    """A key that identifies a graph node (Tensor, ReleasedTensor or Function) while the graph lives."""
    return id(node._ref) if type(node) is ReleasedTensor else id(node)


def _to_tensors(inputs):
    """Scalars and arrays among ``inputs`` become Tensors with the dtype/device of the first Tensor."""
    like = None
    for x in inputs:
        if isinstance(x, Tensor):
            like = x.data
            break
    out = []
    for x in inputs:
        if isinstance(x, Tensor):
            out.append(x)
        elif like is None:
            out.append(Tensor(x))
        else:
            a = as_array(x, like)
            out.append(_wrap(a) if type(a) is np.ndarray else Tensor(a))
    return out


def _check_mix(fn, xs):
    """One-line errors for float dtype mixes and CPU/GPU mixes among an op's inputs; integer and
    boolean inputs beside a float one take its dtype (float32 + int stays float32). Returns xs."""
    a = xs[0].data
    for x in xs:
        if x.data.dtype != a.dtype or type(x.data) is not type(a):
            break
    else:
        return xs                              # the common case: one dtype, one array type
    dts = {x.data.dtype for x in xs if _is_float(x.data.dtype)}
    if len(dts) > 1:
        raise TypeError(f"{type(fn).__name__.lower()}: dtype mix {', '.join(sorted(map(str, dts)))}; "
                        f"cast one side with .astype(...) so both match")
    backend.check_same_device(type(fn).__name__.lower(), *[x.data for x in xs])
    if dts:
        f = dts.pop()
        xs = [x if x.data.dtype == f else Tensor(x.data.astype(f)) for x in xs]
    return xs


def apply(fn, *args):
    """Run Function ``fn`` on Tensors (records a graph) or, on plain arrays, just its forward.

    Backward code calls its helpers through ``apply`` so the same line serves both paths.
    """
    if any(isinstance(a, Tensor) for a in args):
        return fn(*args)
    return fn.forward(*args)


class SumTo(Function):
    """Sum ``x`` down to ``shape`` (undo broadcasting). Backward: broadcast back."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return _sum_to_array(x, self.shape)

    def backward(self, gy):
        return broadcast_to(gy, self._inputs[0].shape)


class BroadcastTo(Function):
    """Broadcast ``x`` to ``shape`` (a copy). Backward: ``sum_to`` the input shape."""

    def __init__(self, shape):
        self.shape = tuple(shape)

    def forward(self, x):
        xp = backend.get_array_module(x)
        try:
            return xp.broadcast_to(x, self.shape).copy()
        except ValueError:
            raise ValueError(f"broadcast_to: cannot broadcast shape {tuple(x.shape)} to {self.shape}; "
                             f"sizes must match or be 1, aligned from the right") from None

    def backward(self, gy):
        return sum_to(gy, self._inputs[0].shape)


def _sum_to_array(x, shape):
    lead = x.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(i + lead for i, n in enumerate(shape) if n == 1 and x.shape[i + lead] != 1)
    y = x.sum(axis=axes, keepdims=True) if axes else x
    return y.reshape(shape) if lead else y


def sum_to(x, shape):
    """Sum broadcast axes of ``x`` so that it has ``shape``. Works on arrays and Tensors."""
    if tuple(x.shape) == tuple(shape):
        return x
    return apply(SumTo(tuple(shape)), x)


def broadcast_to(x, shape):
    """Broadcast ``x`` to ``shape``: a Tensor op (arrays and Tensors alike)."""
    if not isinstance(x, Tensor) and tuple(x.shape) == tuple(shape):
        return x
    return apply(BroadcastTo(shape), x)


def run_backward(roots, root_grads, retain_graph=False, create_graph=False, capture=None):
    """The backward pass: from ``roots`` (with gradients ``root_grads``) to the leaves.

    Leaves that require grad get their gradient *added* to ``.grad``. With ``capture`` (a list of
    tensors), nothing touches ``.grad``: the gradients of those tensors are returned instead.
    """
    gc_was_on = gc.isenabled()
    gc.disable()     # the graph is acyclic and alive: a cyclic-GC pass over it would only cost time
    try:
        return _run_backward(roots, root_grads, retain_graph or create_graph, create_graph, capture)
    finally:
        if gc_was_on:
            gc.enable()


def _run_backward(roots, root_grads, retain_graph, create_graph, capture):
    pending = {}   # id(t) -> [t, gradient so far]; holding t keeps it alive until its creator runs
    # A min-heap of keys −seq: the most recently created Function first (as PyTorch's ready queue).
    # Creation order is a topological order (a Function is created after the Functions that made
    # its inputs), so when f is popped every consumer of its outputs has run. Ordering by creation
    # sequence, never by id(f) (a memory address), makes the order in which gradients are summed,
    # hence float32 results, the same in every run.
    heap, queued = [], {}   # key -> f

    def add_grad(t, g):                       # sum every contribution a tensor receives
        entry = pending.get(id(t))
        if entry is not None:
            entry[1] = entry[1] + g
            return
        pending[id(t)] = [t, g]
        f = t.creator
        if f is not None:
            key = -f._seq
            if key not in queued:
                queued[key] = f
                heappush(heap, key)

    last_change = _last_change[0]
    with _grad_mode(create_graph):
        for r, g in zip(roots, root_grads):   # a root gradient: an array of the output's dtype, or
            if isinstance(g, Tensor) and not create_graph:   # under create_graph a Tensor (which may
                g = g.data                                     # itself be differentiated)
            if not isinstance(g, Tensor):
                g = backend.get_array_module(r.data).asarray(g, dtype=r.data.dtype)
                g = Tensor(g) if create_graph else g
            if g.shape != r.data.shape:
                raise ValueError(f"backward: grad has shape {tuple(g.shape)} but the output has {r.shape}")
            add_grad(r, g)
        keep = {}                             # non-leaf tensors whose gradient is kept or returned
        wanted = {id(t) for t in capture} if capture is not None else set()
        while heap:                           # newest first: all consumers are done
            f = queued[heappop(heap)]
            if f._inputs is None:
                raise RuntimeError("backward through a graph a second time, but its buffers were freed; "
                                   "pass retain_graph=True to the first backward() to keep them")
            outs = f.outputs
            if len(outs) == 1:                    # one output (most ops)
                o = outs[0]()
                entry = None if o is None else pending.pop(id(o), None)
                if entry is None:
                    continue
                if o._retain or (wanted and id(o) in wanted):
                    keep[id(o)] = entry
                gys = (entry[1],)
            else:
                gys, got = [], False
                for ref in outs:
                    o = ref()
                    entry = None if o is None else pending.pop(id(o), None)
                    if entry is None:
                        gys.append(None)
                        continue
                    if o._retain or (wanted and id(o) in wanted):
                        keep[id(o)] = entry
                    gys.append(entry[1])
                    got = True
                if not got:
                    continue
            if f._seq < last_change:             # older than some in-place change: check its inputs
                for x in f._inputs:
                    if x._changed > f._seq:
                        _modified_in_place(f, x)
            if create_graph:
                f._as_tensors = True
                gxs = f.backward(*gys)
                f._as_tensors = False
            else:
                gxs = f.backward(*gys)
            if type(gxs) is not tuple:
                gxs = (gxs,)
            for x, gx in zip(f._inputs, gxs):       # add_grad, inlined: this loop is the hot path
                if gx is None or not x.requires_grad:
                    continue
                if gx.shape != x.data.shape:
                    gx = sum_to(gx, x.data.shape)
                    if gx.shape != x.data.shape:
                        raise RuntimeError(f"{type(f).__name__}.backward returned a gradient of shape "
                                           f"{tuple(gx.shape)} for an input of shape {x.shape}")
                key = id(x)
                entry = pending.get(key)
                if entry is not None:
                    entry[1] = entry[1] + gx
                    continue
                pending[key] = [x, gx]
                c = x.creator
                if c is not None:
                    key = -c._seq
                    if key not in queued:
                        queued[key] = c
                        heappush(heap, key)
            if not retain_graph:
                f._release()
    keep.update(pending)                      # what is left in pending are the leaves
    if capture is not None:
        return [keep.get(id(t), (None, None))[1] for t in capture]
    shared = {id(g.data if isinstance(g, Tensor) else g) for g in root_grads}   # the caller holds these
    for t, g in keep.values():       # leaves, and non-leaves with retain_grad(): both accumulate
        if create_graph:
            g = g if isinstance(g, Tensor) else Tensor(g)
            t.grad = g if t.grad is None else t.grad + g
        elif t.grad is None:         # .grad owns its array: copy one that another tensor or the
            if not isinstance(g, np.generic):     # caller shares (y = a + b sends one gy to both) or
                if id(g) in shared or g.base is not None:      # a view (NumPy scalars: immutable)
                    g = g.copy()
                shared.add(id(g))
            t.grad = Tensor(g)
        else:
            t.grad = Tensor(t.grad.data + g)


def _modified_in_place(f, x):
    raise RuntimeError(
        f"backward: an input of {type(f).__name__} (a {x.dtype} tensor of shape {x.shape}"
        f"{' ' + repr(x.name) if x.name else ''}) was modified in place after {type(f).__name__} used it "
        f"(it is now at version {x._version}). Its gradient would be computed from "
        f"the new values. Call backward() before changing it (e.g. before optimizer.step()), or "
        f"recompute the forward pass after the change.")


def grad(outputs, inputs, grad_outputs=None, create_graph=False, retain_graph=None, allow_unused=True):
    """Gradients of ``outputs`` w.r.t. ``inputs`` (a list of Tensors), without touching ``.grad``.

    ``grad_outputs``: one array/Tensor per output (default ones for scalar outputs). Returns a list
    with one Tensor per input (None where the input does not influence the outputs).
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    single = isinstance(inputs, Tensor)
    inputs = [inputs] if single else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or hasattr(grad_outputs, "shape"):
        grad_outputs = [grad_outputs]
    gos = []
    for o, g in zip(outputs, grad_outputs):
        if not o.requires_grad:
            raise RuntimeError("grad: an output does not require grad")
        if g is None:
            if o.data.size != 1:
                raise RuntimeError(f"grad: output of shape {o.shape} is not a scalar; pass grad_outputs")
            g = backend.get_array_module(o.data).ones_like(o.data)
        gos.append(g)
    retain = create_graph if retain_graph is None else retain_graph
    res = run_backward(outputs, gos, retain_graph=retain, create_graph=create_graph, capture=inputs)
    res = [None if g is None else (g if isinstance(g, Tensor) else Tensor(g)) for g in res]
    if not allow_unused and any(g is None for g in res):
        raise RuntimeError("grad: one of the inputs was not used to compute the outputs")
    return res[0] if single else res
