"""Shape ops: reshape, transpose/permute, swapaxes, expand_dims, squeeze, broadcast_to, concat, stack,
split, flip, pad, getitem. Each backward moves gy back the way x came (values are only rearranged).
"""
import numpy as np

from ..autograd import Function, Tensor, apply, broadcast_to  # noqa: F401  (broadcast_to re-exported)
from .. import backend


class Reshape(Function):
    """y = x viewed with ``shape`` (same elements, row-major).   gx = gy reshaped to x's shape."""

    def __init__(self, shape):
        self.shape = shape

    def forward(self, x):
        return x.reshape(self.shape)

    def backward(self, gy):
        return gy.reshape(self._inputs[0].shape)


class Transpose(Function):
    """y = x with axes permuted: y.shape[i] = x.shape[axes[i]].   gx = gy permuted by the inverse."""

    def __init__(self, axes=None):
        self.axes = axes

    def forward(self, x):
        return x.transpose(self.axes)

    def backward(self, gy):
        if self.axes is None:
            return gy.transpose()
        inv = tuple(np.argsort([a % len(self.axes) for a in self.axes]))
        return gy.transpose(inv)


class SwapAxes(Function):
    """y = x with axes a and b exchanged.   gx = gy with them exchanged back."""

    def __init__(self, a, b):
        self.a, self.b = a, b

    def forward(self, x):
        return x.swapaxes(self.a, self.b)

    def backward(self, gy):
        return gy.swapaxes(self.a, self.b)


class ExpandDims(Function):
    """y = x with a new axis of length 1 at ``axis``.   gx = gy reshaped to x's shape."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return backend.get_array_module(x).expand_dims(x, self.axis)

    def backward(self, gy):
        return gy.reshape(self._inputs[0].shape)


class Squeeze(Function):
    """y = x without length-1 axes (those in ``axis``, or all).   gx = gy reshaped to x's shape."""

    def __init__(self, axis=None):
        self.axis = axis

    def forward(self, x):
        return x.squeeze(self.axis)

    def backward(self, gy):
        return gy.reshape(self._inputs[0].shape)


class Concat(Function):
    """y = [x₁; x₂; …] along ``axis`` (other axes equal).   gxᵢ = the matching slice of gy."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        shapes = [tuple(x.shape) for x in xs]
        ax = self.axis % xs[0].ndim
        if any(len(s) != len(shapes[0]) or s[:ax] + s[ax + 1:] != shapes[0][:ax] + shapes[0][ax + 1:]
               for s in shapes):
            raise ValueError(f"concat: shapes {shapes} differ outside axis {self.axis}")
        self.sizes = [s[ax] for s in shapes]
        return backend.get_array_module(*xs).concatenate(xs, axis=ax)

    def backward(self, gy):
        ax = self.axis % gy.ndim
        out, start = [], 0
        for n in self.sizes:
            out.append(gy[(slice(None),) * ax + (slice(start, start + n),)])
            start += n
        return tuple(out)


class Stack(Function):
    """y = xs stacked on a new ``axis`` (all xs one shape).   gxᵢ = gy taken at index i of that axis."""

    def __init__(self, axis=0):
        self.axis = axis

    def forward(self, *xs):
        shapes = {tuple(x.shape) for x in xs}
        if len(shapes) > 1:
            raise ValueError(f"stack: all inputs must have one shape, got {sorted(shapes)}")
        return backend.get_array_module(*xs).stack(xs, axis=self.axis)

    def backward(self, gy):
        ax = self.axis % gy.ndim
        return tuple(gy[(slice(None),) * ax + (i,)] for i in range(gy.shape[ax]))


class Split(Function):
    """ys = x cut along ``axis`` (``sections``: a count of equal parts, or the cut indices, as NumPy).
    gx = the gys concatenated back (zeros for outputs that got no gradient)."""

    def __init__(self, sections, axis=0):
        self.sections, self.axis = sections, axis

    def forward(self, x):
        return tuple(backend.get_array_module(x).split(x, self.sections, axis=self.axis))

    def backward(self, *gys):
        xp = backend.get_array_module(self._inputs[0].data)
        outs = self.output_values
        gys = [xp.zeros(o.shape if o is not None else _split_shape(self, i), self._inputs[0].dtype)
               if g is None else g for i, (g, o) in enumerate(zip(gys, outs))]
        return apply(Concat(self.axis), *gys)


def _split_shape(f, i):
    x = f._inputs[0].data
    return backend.get_array_module(x).split(x, f.sections, axis=f.axis)[i].shape


class Flip(Function):
    """y = x reversed along ``axis``.   gx = gy reversed back."""

    def __init__(self, axis):
        self.axis = axis

    def forward(self, x):
        return backend.get_array_module(x).flip(x, self.axis)

    def backward(self, gy):
        return apply(Flip(self.axis), gy)


class Pad(Function):
    """y = x padded with ``value`` (``pad_width`` as in numpy.pad).   gx = the centre slice of gy."""

    def __init__(self, pad_width, value=0.0):
        self.pad_width, self.value = pad_width, value

    def forward(self, x):
        pw = np.broadcast_to(np.asarray(self.pad_width, dtype=int), (x.ndim, 2))
        self.slices = tuple(slice(int(a), int(a) + n) for (a, _), n in zip(pw, x.shape))
        return backend.get_array_module(x).pad(x, [tuple(map(int, p)) for p in pw],
                                               constant_values=self.value)

    def backward(self, gy):
        return gy[self.slices]


def _index_data(index):
    """Tensors inside an index become their arrays."""
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index.data if isinstance(index, Tensor) else index


def _is_basic(index):
    items = index if isinstance(index, tuple) else (index,)
    for i in items:
        if not (i is None or i is Ellipsis or isinstance(i, (int, slice, np.integer))):
            if getattr(i, "dtype", None) != bool:
                return False
    return True


class GetItem(Function):
    """y = x[index] (slices, ints, integer arrays, boolean masks — NumPy indexing).
    gx = zeros of x's shape with gy scattered in; repeated integer indices accumulate (add.at)."""

    def __init__(self, index):
        self.index = index

    def forward(self, x):
        return x[self.index]

    def backward(self, gy):
        x = self._inputs[0]
        return apply(GetItemGrad(self.index, x.shape, x.dtype), gy)


class GetItemGrad(Function):
    """gx = zeros(shape); gx[index] += gy (the backward of GetItem).  Its backward is gy[index]."""

    def __init__(self, index, shape, dtype):
        self.index, self.shape, self.dtype = index, shape, dtype

    def forward(self, gy):
        xp = backend.get_array_module(gy)
        gx = xp.zeros(self.shape, dtype=gy.dtype)
        if _is_basic(self.index):
            gx[self.index] = gy
        else:
            backend.scatter_add(gx, self.index, gy)
        return gx

    def backward(self, ggx):
        return apply(GetItem(self.index), ggx)


def reshape(x, *shape):
    shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Reshape(tuple(shape))(x)


def transpose(x, *axes):
    axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
    return Transpose(tuple(axes) if axes else None)(x)


def permute(x, *axes):
    return transpose(x, *axes)


def swapaxes(x, a, b):
    return SwapAxes(a, b)(x)


def expand_dims(x, axis):
    return ExpandDims(axis)(x)


def squeeze(x, axis=None):
    return Squeeze(axis)(x)


def concat(xs, axis=0):
    return Concat(axis)(*xs)


def stack(xs, axis=0):
    return Stack(axis)(*xs)


def split(x, sections, axis=0):
    """Like numpy.split: ``sections`` is a number of equal parts or a list of cut indices."""
    out = Split(sections, axis)(x)
    return list(out) if isinstance(out, tuple) else [out]


def flip(x, axis=None):
    return Flip(axis)(x)


def pad(x, pad_width, value=0.0):
    return Pad(pad_width, value)(x)


def getitem(x, index):
    return GetItem(_index_data(index))(x)


def flatten(x, start_dim=1):
    """Merge axes from ``start_dim`` on: (B, T, d) -> (B, T·d) with the default."""
    return Reshape(tuple(x.shape[:start_dim]) + (-1,))(x)
