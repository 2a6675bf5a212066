"""Plumbing shared by the attention layers: input casting, shape checks, the masked attend step.

Not public: each mechanism's file (additive.py, multiplicative.py, cosine.py, ...) builds on it.
"""
from ..functions import dropout
from ..nn import Module, Parameter, cast_input
from ..functions.masks import as_mask
from .masks import masked_softmax

__all__ = []


def check_rank(layer, name, x, rank=3):
    if x.ndim != rank:
        raise ValueError(f"{layer}: {name} must be {rank}-D, got shape {x.shape}")


def check_qkv(layer, q, k, v):
    for name, t in (("queries", q), ("keys", k), ("values", v)):
        check_rank(layer, name, t)
    if not (q.shape[0] == k.shape[0] == v.shape[0]):
        raise ValueError(f"{layer}: batch sizes differ: queries {q.shape}, keys {k.shape}, values {v.shape}")
    if k.shape[1] != v.shape[1]:
        raise ValueError(f"{layer}: keys {k.shape} and values {v.shape} must have the same number of "
                         f"steps (axis 1)")


def check_dropout(layer, rate):
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"{layer}: dropout must be in [0, 1), got {rate}")
    return float(rate)


def check_positive_int(layer, name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) <= 0:
        raise ValueError(f"{layer}: {name} must be a positive integer"
                         f"{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def key_mask(layer, mask, scores):
    """A (B, Tk) mask (one per batch row) becomes (B, 1, Tk); anything else must broadcast to the
    scores (B, Tq, Tk). Normalised by :func:`as_mask` (on the scores' device)."""
    m = as_mask(mask, scores, where=layer)
    if m is None:
        return None
    if m.ndim == 2 and scores.ndim == 3 and tuple(m.shape) == (scores.shape[0], scores.shape[2]):
        m = m[:, None, :]
    return as_mask(m, scores, shape=scores.shape, where=layer)


def attend_masked(layer, scores, values, mask=None, valid_lens=None, rate=0.0):
    """weights = masked_softmax(scores); out = dropout(weights) @ values; keep weights for plotting."""
    weights = masked_softmax(scores, key_mask(type(layer).__name__, mask, scores), valid_lens=valid_lens)
    object.__setattr__(layer, "last_attention", weights.detach())
    out = dropout(weights, rate, layer.training) @ values
    return out, weights


class QKVLayer(Module):
    """Called as ``layer(queries, keys, values=None, ...)`` (d2l's order; values default to keys);
    casts the three to the layer's dtype and builds from their shapes (``build([q, k, v] shapes)``)."""
    keras_mask_args = ()      # its mask arguments are not Keras masks of its inputs
    last_attention = None

    def __call__(self, queries, keys, values=None, *args, **kwargs):
        queries = cast_input(self, queries, "queries")
        keys = cast_input(self, keys, "keys")
        values = keys if values is None else cast_input(self, values, "values")
        if not self.built:
            check_qkv(type(self).__name__, queries, keys, values)
            self.build([queries.shape, keys.shape, values.shape])
            object.__setattr__(self, "built", True)
        return Module.__call__(self, queries, keys, values, *args, **kwargs)


_KERAS_NAMES = {"output": "attention_output"}


def add_projections(layer, specs):
    """Create the Keras EinsumDense projections of MultiHeadAttention / GroupedQueryAttention, in
    Keras's weight order: for each (name, kernel_shape, bias_shape) a Parameter ``<name>_kernel``
    ("<name>/kernel", ``layer.kernel_initializer``) and, with ``layer.use_bias``, ``<name>_bias``
    ("<name>/bias", ``layer.bias_initializer``); ``output`` is Keras's "attention_output"."""
    ki, bi, dt = layer.kernel_initializer, layer.bias_initializer, layer.dtype
    for name, kshape, bshape in specs:
        keras = _KERAS_NAMES.get(name, name)
        setattr(layer, f"{name}_kernel", Parameter(ki(tuple(kshape), dtype=dt), name=f"{keras}/kernel"))
        if layer.use_bias:
            setattr(layer, f"{name}_bias", Parameter(bi(tuple(bshape), dtype=dt), name=f"{keras}/bias"))
