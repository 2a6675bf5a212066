"""Differentiable functions (each a ``Function`` with forward and backward side by side).

Importing this package also gives ``Tensor`` its operators and NumPy-style methods, so the
autograd core never imports anything above it.
"""
from ..autograd import Tensor, broadcast_to, sum_to
from .arith import add, sub, mul, div, neg, pow, matmul, linear, install as _install_arith
from .elementwise import (exp, log, sqrt, abs, tanh, sigmoid, relu, leaky_relu, gelu, erf, softplus,
                          clip, maximum, minimum, where, astype)
from .reduce import sum, mean, var, max, min, logsumexp
from .shape import (reshape, transpose, permute, swapaxes, expand_dims, squeeze, concat, stack, split,
                    flip, pad, getitem, flatten)
from .nn import softmax, log_softmax, dropout, embedding, one_hot


def _compare(op):
    def f(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(op(self.data, other))
    return f


def _install(T):
    import operator
    _install_arith(T)
    T.__getitem__ = getitem
    for name in ("lt", "le", "gt", "ge", "eq", "ne"):
        setattr(T, f"__{name}__", _compare(getattr(operator, name)))
    T.__hash__ = object.__hash__
    T.reshape = reshape
    T.view = reshape
    T.transpose = transpose
    T.permute = permute
    T.swapaxes = swapaxes
    T.expand_dims = expand_dims
    T.unsqueeze = expand_dims
    T.squeeze = squeeze
    T.flatten = flatten
    T.T = property(lambda self: transpose(self))
    T.sum = sum
    T.mean = mean
    T.var = var
    T.max = max
    T.min = min
    T.logsumexp = logsumexp
    T.clip = clip
    for fn in (exp, log, sqrt, abs, tanh, sigmoid, relu, softmax, log_softmax, softplus, gelu):
        setattr(T, fn.__name__, fn)
    T.__abs__ = abs
    T.astype = astype


def _document():
    """Each public function shows its Function's docstring (formula, shapes, VJP) in help()."""
    from . import arith as A, elementwise as E, reduce as R, shape as S, nn as N
    table = {add: A.Add, sub: A.Sub, mul: A.Mul, div: A.Div, neg: A.Neg, matmul: A.MatMul,
             exp: E.Exp, log: E.Log, sqrt: E.Sqrt, abs: E.Abs, tanh: E.Tanh, sigmoid: E.Sigmoid,
             relu: E.ReLU, leaky_relu: E.LeakyReLU, gelu: E.GELU, erf: E.Erf, softplus: E.Softplus,
             clip: E.Clip, maximum: E.Maximum, minimum: E.Minimum, astype: E.Cast, sum: R.Sum,
             mean: R.Mean, var: R.Var, max: R.Max, min: R.Min, logsumexp: R.LogSumExp,
             reshape: S.Reshape, transpose: S.Transpose, permute: S.Transpose, swapaxes: S.SwapAxes,
             expand_dims: S.ExpandDims, squeeze: S.Squeeze, concat: S.Concat, stack: S.Stack,
             flip: S.Flip, pad: S.Pad, getitem: S.GetItem, softmax: N.Softmax, log_softmax: N.LogSoftmax}
    for fn, cls in table.items():
        if not fn.__doc__:
            fn.__doc__ = cls.__doc__


_install(Tensor)
_document()

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "matmul", "linear", "exp", "log", "sqrt", "abs", "tanh",
           "sigmoid", "relu", "leaky_relu", "gelu", "erf", "softplus", "clip", "maximum", "minimum",
           "where", "astype", "sum", "mean", "var", "max", "min", "logsumexp", "reshape", "transpose",
           "permute", "swapaxes", "expand_dims", "squeeze", "broadcast_to", "sum_to", "concat", "stack",
           "split", "flip", "pad", "getitem", "flatten", "softmax", "log_softmax", "dropout",
           "embedding", "one_hot"]
