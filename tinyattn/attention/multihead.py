"""Multi-head attention (Vaswani et al. 2017), as ``keras.layers.MultiHeadAttention``, and
``SelfAttention`` (multi-head attention of a sequence with itself).

Masks are boolean with True = attend. ``MultiHeadAttention`` uses the fused
:func:`~tinyattn.attention.scores.scaled_dot_product_attention` node, where masked weights are exactly
0 and a fully masked row has zero weights and zero output (what Keras's explicit path also returns;
Keras's fused fast path — no dropout, no returned scores — differs on such rows).

``training``: Keras's call argument. Left as None it follows the module's mode (``layer.train()`` /
``layer.eval()``, PyTorch style; a new Module is in training mode), whereas Keras's eager default
is inference — pass ``training=False`` (or call ``.eval()``) to match Keras outside a training loop.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor, array_of
from ..functions import concat, linear, split
from ..kernels.attention import ScaledDotProductAttention, SplitHeads
from ..functions.masks import as_mask, causal_mask, combine_masks
from ..functions import sigmoid
from ..nn import Module, init, cast_input, regularizers, constraints
from ._base import add_projections, check_rank
from .sliding_window import sliding_window_mask


def xp_reshape(xp, mask, full, shape):
    """A boolean mask broadcast to ``full`` and reshaped to ``shape`` (merging axes)."""
    return xp.ascontiguousarray(xp.broadcast_to(mask, full)).reshape(shape)

__all__ = ["MultiHeadAttention", "SelfAttention"]


def _output_shape(output_shape):
    """Keras's ``output_shape``: None, a positive int, or a tuple/list of positive ints."""
    if output_shape is None:
        return None
    err = ValueError(f"MultiHeadAttention: invalid output_shape {output_shape!r}: when specified, "
                     f"output_shape must be a positive int or a tuple/list of positive ints "
                     f"(the output's shape besides the batch and sequence axes)")
    if isinstance(output_shape, bool):
        raise err
    if hasattr(output_shape, "__index__"):
        output_shape = (output_shape,)
    if not isinstance(output_shape, (tuple, list)) or not output_shape:
        raise err
    for s in output_shape:
        if isinstance(s, bool) or not hasattr(s, "__index__") or int(s) <= 0:
            raise err
    return tuple(int(s) for s in output_shape)


def _np(x):
    """A NumPy array from a NumPy array, a Tensor or a PyTorch tensor (without importing torch)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return backend.as_numpy(array_of(x))


class MultiHeadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017), as ``keras.layers.MultiHeadAttention``.

    Args: num_heads H, key_dim dk, value_dim dv (default dk), dropout (on the attention weights,
    training only), use_bias (True), output_shape (default: the query's last dimension; an int or a
    tuple: the output kernel is (H, dv, *output_shape), as Keras's), attention_axes (None: every axis
    between batch and features; an int or a tuple, negative axes counting from the input's end),
    sliding_window (None or w ≥ 1: query i sees keys |i − j| < w, a symmetric band, ANDed with the
    other masks; 3-D inputs), use_gate (Keras's gated attention: O_h ← O_h ⊙ σ(query W^G_h + b^G_h)
    before the output projection, W^G (d_q, H, dv)), kernel/bias_regularizer,
    activity_regularizer (on each projection's output, as Keras's sublayers), kernel/bias_constraint
    (on every projection), the initialisers and dtype.

    N-D inputs (Keras's einsum semantics): query (B, …, d_q), value/key (B, …, d) of the same rank.
    Axes not in ``attention_axes`` (and the batch axis) are batch axes and must agree between query
    and key; the attention axes are flattened into one sequence of Tq = ∏ query sizes and
    Tk = ∏ key sizes positions (e.g. attention_axes=(1, 2) on images (B, H, W, C): every pixel
    attends to every pixel). The scores come back as (*batch axes, H, *query attention axes,
    *key attention axes). use_causal_mask and sliding_window need the attention over axis 1 alone
    (3-D inputs, or attention_axes=1), as Keras builds those masks from axis 1 (it fails otherwise).

    Weights (``get_weights()`` order, Keras shapes):
        query/kernel (d_q, H, dk), query/bias (H, dk), key/kernel (d_k, H, dk), key/bias (H, dk),
        [gate/kernel (d_q, H, dv), gate/bias (H, dv) with use_gate,] value/kernel (d_v, H, dv), value/bias (H, dv), attention_output/kernel (H, dv, *out),
        attention_output/bias (*out,)      — biases only with use_bias.

    query (B, Tq, d_q), value (B, Tk, d_v), key (B, Tk, d_k) (default: value):

        Q_h = query W^Q_h + b^Q_h    (B, H, Tq, dk)   — each projection is ONE GEMM
        K_h = key   W^K_h + b^K_h    (B, H, Tk, dk)     (B·T, d) @ (d, H·dk), then a reshape
        V_h = value W^V_h + b^V_h    (B, H, Tk, dv)
        A_h = softmax(Q_h K_hᵀ / √dk, masked)        (B, H, Tq, Tk)   (returned scores)
        O   = Σ_h dropout(A_h) V_h W^O_h + b^O        (B, Tq, *out)

    Masks (True = attend; bool or 0/1, any array kind, through :func:`as_mask`): attention_mask
    (B, Tq, Tk) or anything broadcasting to it, or 4-D (B, H, Tq, Tk) / (B|1, 1, Tq, Tk) — a mask per
    head, as Keras reads a 4-D mask; value_mask / key_mask (B, Tk); query_mask (B, Tq) (Keras reads it
    from the query's Keras mask); use_causal_mask — all ANDed, as (B|1, H|1, Tq, Tk). A query with no
    key left gets zero weights and a zero output row.
    """

    supports_masking = True          # the output carries the query's Keras mask

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 activity_regularizer=None, kernel_constraint=None, bias_constraint=None, use_gate=False,
                 dtype="float32"):
        super().__init__()
        for nm, val in (("num_heads", num_heads), ("key_dim", key_dim)):
            if isinstance(val, bool) or not isinstance(val, (int, np.integer)) or val <= 0:
                raise ValueError(f"MultiHeadAttention: received an invalid value for argument `{nm}`, "
                                 f"expected a positive integer. Received: {nm}={val!r}")
        if value_dim is not None and (isinstance(value_dim, bool) or not isinstance(value_dim, (int, np.integer))
                                      or value_dim <= 0):
            raise ValueError(f"MultiHeadAttention: received an invalid value for argument `value_dim`, "
                             f"expected a positive integer or None. Received: value_dim={value_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout}")
        if sliding_window is not None and (isinstance(sliding_window, bool) or
                                           not isinstance(sliding_window, (int, np.integer)) or sliding_window <= 0):
            raise ValueError(f"MultiHeadAttention: `sliding_window` must be `None` or a positive integer. "
                             f"Received: sliding_window={sliding_window!r}")
        if isinstance(attention_axes, (int, np.integer)) and not isinstance(attention_axes, bool):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(f"MultiHeadAttention: `attention_axes` must be an int, list, or tuple. "
                             f"Received: attention_axes={attention_axes!r}")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout = float(dropout)
        self.use_bias = use_bias
        self.use_gate = bool(use_gate)
        self.output_shape = _output_shape(output_shape)
        self.attention_axes = None if attention_axes is None else tuple(int(a) for a in attention_axes)
        self.sliding_window = None if sliding_window is None else int(sliding_window)
        self.kernel_initializer = init.get(kernel_initializer)
        self.bias_initializer = init.get(bias_initializer)
        self.dtype = np.dtype(dtype)
        kr, br = regularizers.get(kernel_regularizer), regularizers.get(bias_regularizer)
        kc, bc = constraints.get(kernel_constraint), constraints.get(bias_constraint)
        for n in ("query", "key", "gate", "value", "output"):          # every projection, as Keras's
            self.add_weight_regularizer(f"{n}_kernel", kr, kc)         # EinsumDense sublayers
            self.add_weight_regularizer(f"{n}_bias", br, bc)
        # Keras hands the activity regularizer to each projection (EinsumDense) sublayer: a penalty
        # R(projection output) / batch size for query, key, [gate,] value and the output projection.
        object.__setattr__(self, "_projection_activity_regularizer", regularizers.get(activity_regularizer))

    # -- building ------------------------------------------------------------------------------
    def build(self, query_shape, value_shape=None, key_shape=None):
        """Create the weights for query (B, …, d_q), value (B, …, d_v) and key (B, …, d_k)."""
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        if len(value_shape) > 1 and tuple(value_shape[1:-1]) != tuple(key_shape[1:-1]):
            raise ValueError(f"MultiHeadAttention: all dimensions of `value` and `key`, except the last one, "
                             f"must be equal. Received: value_shape={tuple(value_shape)} and "
                             f"key_shape={tuple(key_shape)}")
        dq, dk, dv = query_shape[-1], key_shape[-1], value_shape[-1]
        H, kd, vd = self.num_heads, self.key_dim, self.value_dim
        out = self.output_shape or (dq,)
        add_projections(self, [("query", (dq, H, kd), (H, kd)), ("key", (dk, H, kd), (H, kd))]
                        + ([("gate", (dq, H, vd), (H, vd))] if self.use_gate else [])
                        + [("value", (dv, H, vd), (H, vd)), ("output", (H, vd) + tuple(out), tuple(out))])
        object.__setattr__(self, "built", True)

    def weights(self):
        names = ["query", "key"] + (["gate"] if self.use_gate else []) + ["value", "output"]
        out = []
        for n in names:
            out.append(getattr(self, f"{n}_kernel"))
            if self.use_bias:
                out.append(getattr(self, f"{n}_bias"))
        return out

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        """The output shape, as Keras: the query's shape with its last axis replaced by
        ``output_shape`` (default: unchanged). Checks value/key agree on all axes but the last."""
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        key_shape = value_shape if key_shape is None else tuple(key_shape)
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(f"MultiHeadAttention: all dimensions of `value` and `key`, except the last one, "
                             f"must be equal. Received: value_shape={value_shape} and key_shape={key_shape}")
        return query_shape[:-1] + self.output_shape if self.output_shape else query_shape

    def _axes(self, rank):
        """The attention axes for inputs of ``rank`` axes, as Keras normalises them: None → every
        axis between the batch and the features; a negative axis a counts from the input's end
        (a + rank). Returns (batch axes, attention axes), both of input axes 0..rank−2."""
        if self.attention_axes is None:
            axes = tuple(range(1, rank - 1))
        else:
            axes = tuple(a if a >= 0 else rank + a for a in self.attention_axes)
        if not axes or any(not 1 <= a <= rank - 2 for a in axes) or len(set(axes)) != len(axes):
            raise ValueError(f"MultiHeadAttention: attention_axes {self.attention_axes} do not fit inputs of "
                             f"rank {rank}: they must be distinct axes between the batch axis 0 and the "
                             f"feature axis {rank - 1}")
        batch = tuple(i for i in range(rank - 1) if i not in axes)
        return batch, axes

    def __call__(self, query, value, key=None, **kwargs):
        same_qv, same_kv = value is query, key is None or key is value
        query = cast_input(self, query, "query")
        value = query if same_qv else cast_input(self, value, "value")
        key = value if same_kv else cast_input(self, key, "key")
        if value.shape[1:-1] != key.shape[1:-1]:
            raise ValueError(f"MultiHeadAttention: all dimensions of `value` and `key`, except the last one, "
                             f"must be equal. Received: value_shape={value.shape} and key_shape={key.shape}")
        if not self.built:
            if query.ndim < 3 or value.ndim < 3 or key.ndim < 3:
                raise ValueError(f"MultiHeadAttention: query, value, key must be (B, T, d) or have more "
                                 f"axes (B, …, d), got {query.shape}, {value.shape}, {key.shape}")
            self.build(tuple(query.shape), tuple(value.shape), tuple(key.shape))
        return Module.__call__(self, query, value, key, **kwargs)

    # -- the computation -----------------------------------------------------------------------
    def _project(self, x, names, heads=False):
        """Project x (B, …, d) with one or more of "query"/"key"/"value"/"gate" that share this input
        → [(B, …, H, n)] (Keras's EinsumDense "…d,dhn->…hn"); with ``heads`` (x (B, T, d)) straight
        to the per-head layout [(B, H, T, n)] that attention works in.

        One projection: x W + b as ONE (N, d) @ (d, H·n) GEMM and a reshape. Several (self-attention:
        query is key is value; or key is value): their kernels side by side, (N, d) @ [W^Q | W^K | W^V],
        then split — one bigger GEMM each way, and in backward gx = gY Wᵀ at once. The per-head
        layout comes from :class:`~tinyattn.kernels.SplitHeads` (split, reshape and transpose as one
        node: views forward, every head's gradient written into ONE buffer backward). Measured (MHA
        training step, B 16, T 128, d 256, 8 heads, self-attention, one thread): the backward of
        split → reshape → transpose 1.7 → 0.6 ms.
        """
        d = x.shape[-1]
        lead = x.shape[:-1]
        ks = [getattr(self, f"{n}_kernel") for n in names]
        for n, w in zip(names, ks):
            if d != w.shape[0]:
                raise ValueError(f"MultiHeadAttention: {n} has feature size {d}, but the layer was built "
                                 f"for {w.shape[0]} ({n} {x.shape}, {n}/kernel {w.shape})")
        H = self.num_heads
        ns = [w.shape[2] for w in ks]
        W = ks[0].reshape(d, H * ns[0]) if len(ks) == 1 else \
            concat([w.reshape(d, H * n) for w, n in zip(ks, ns)], axis=1)
        b = None
        if self.use_bias:
            bs = [getattr(self, f"{n}_bias").reshape(H * m) for n, m in zip(names, ns)]
            b = bs[0] if len(bs) == 1 else concat(bs, axis=0)
        y = linear(x.reshape(-1, d), W, b)                       # x W + b: one node
        if heads:
            out = SplitHeads(x.shape[0], x.shape[1], H, ns)(y)   # (B, H, T, n) each
            return list(out) if isinstance(out, tuple) else [out]
        parts = [y] if len(ks) == 1 else split(y, list(np.cumsum([H * n for n in ns[:-1]])), axis=1)
        return [part.reshape(*lead, H, n) for part, n in zip(parts, ns)]

    def _mask(self, like, batch_shape, qa, ka, attention_mask, query_mask, value_mask, key_mask, causal):
        """Every mask through :func:`as_mask`, combined as Keras's ``_compute_attention_mask`` and
        ``_masked_softmax`` do, into one boolean mask broadcasting to the scores
        (*batch, H, *q_attn, *k_attn):

            auto = query_mask[..., None] ∧ value_mask[..., None, :] ∧ key_mask[..., None, :]
                   ∧ causal (1, Tq, Tk) ∧ band |i − j| < sliding_window (1, Tq, Tk)
            mask = attention_mask ∧ auto, each first given size-1 axes before the attention axes
                   (Keras's expansion at axis −2·len(attention_axes) − 1) up to the scores' rank
                   (so a 4-D per-head attention_mask combines with query/value masks too).

        For 3-D inputs: query_mask (B, Tq) → (B, 1, Tq, 1), value/key masks (B, Tk) → (B, 1, 1, Tk),
        attention_mask (B, Tq, Tk) → (B, 1, Tq, Tk), a 4-D (B, H, Tq, Tk) one as it is (per head)."""
        w = "MultiHeadAttention"
        xp = backend.get_array_module(like.data)
        n_ax = len(qa)
        tq, tk = int(np.prod(qa)), int(np.prod(ka))
        sshape = tuple(batch_shape) + (self.num_heads,) + tuple(qa) + tuple(ka)
        ms = []
        qm = as_mask(query_mask, like, name="query_mask", where=w)
        if qm is not None:
            ms.append(qm[..., None])
        for nm, vm in (("value_mask", value_mask), ("key_mask", key_mask)):
            vm = as_mask(vm, like, name=nm, where=w)
            if vm is not None:
                ms.append(vm[..., None, :])
        if causal:
            ms.append(causal_mask(tq, tk, xp)[None])
        if self.sliding_window is not None:
            ms.append(sliding_window_mask(tq, tk, self.sliding_window, causal=False, xp=xp)[None])
        am = as_mask(attention_mask, like, name="attention_mask", where=w)
        if not ms and am is None:
            return None

        def expand(m):                    # Keras's expansion: size-1 axes before the attention axes
            while m.ndim < len(sshape):
                m = xp.expand_dims(m, -2 * n_ax - 1)
            return m

        try:
            auto = combine_masks(*ms, like=like, where=w)
        except ValueError:
            raise ValueError(f"MultiHeadAttention: the masks {[tuple(m.shape) for m in ms]} (query/value/key "
                             f"masks as (…, Tq, 1) / (…, 1, Tk), causal/sliding-window (1, Tq, Tk)) do not "
                             f"broadcast together; scores are {sshape}") from None
        if am is not None:
            per_head = am.ndim == len(sshape)
            am = as_mask(expand(am), like, shape=sshape, where=w,
                         name="attention_mask (per head)" if per_head else "attention_mask")
        parts = [expand(m) for m in (am, auto) if m is not None]
        try:
            mask = parts[0] if len(parts) == 1 else parts[0] & parts[1]
        except ValueError:
            raise ValueError(f"MultiHeadAttention: attention_mask {tuple(am.shape)} and the query/value/key/causal "
                             f"masks {tuple(auto.shape)} do not broadcast together; scores are {sshape}") from None
        try:
            ok = tuple(np.broadcast_shapes(tuple(mask.shape), sshape)) == sshape
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"MultiHeadAttention: the combined mask of shape {tuple(mask.shape)} does not "
                             f"broadcast to the scores (*batch, heads, *query axes, *key axes) = {sshape}; "
                             f"give attention_mask as (B, Tq, Tk) (or with the input's attention axes), "
                             f"or 4-D (B, H, Tq, Tk)")
        return mask

    def forward(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
                training=None, use_causal_mask=False, query_mask=None, value_mask=None, key_mask=None,
                bias=None, rotary=None):
        """Returns out (B, …q, *out) [and the attention scores, before dropout:
        (B, H, Tq, Tk) for 3-D inputs; in general (*batch axes, H, *query attention axes,
        *key attention axes), Keras's layout]. training: None means ``self.training``.

        query_mask / value_mask / key_mask: None means the Keras mask the query / value / key carries
        (e.g. from ``Embedding(mask_zero=True)``); the output carries the query's mask.
        bias: additive score bias broadcastable to (B, H, Tq, Tk) — e.g. ``alibi_bias(H, Tq, Tk)``
        or a ``T5RelativePositionBias`` output: A_h = softmax(Q_h K_hᵀ/√dk + bias_h, masked).
        rotary: a callable applied to the projected Q_h (B, H, Tq, dk) and K_h (B, H, Tk, dk), e.g. a
        ``RotaryEmbedding(key_dim)`` (RoPE at positions 0..T−1). bias and rotary need 3-D inputs."""
        w = "MultiHeadAttention"
        same_qv, same_kv = value is query, key is None or key is value
        query = cast_input(self, query, "query")
        value = query if same_qv else cast_input(self, value, "value")
        key = value if same_kv else cast_input(self, key, "key")
        rank = query.ndim
        if rank < 3 or value.ndim != rank or key.ndim != rank:
            raise ValueError(f"{w}: query, value, key must be (B, T, d) or (B, …, d) of one rank, got "
                             f"{query.shape}, {value.shape}, {key.shape}")
        if key.shape[:-1] != value.shape[:-1]:
            raise ValueError(f"{w}: all dimensions of `value` and `key`, except the last one, must be equal. "
                             f"Received: value_shape={value.shape} and key_shape={key.shape}")
        batch, axes = self._axes(rank)
        bq = tuple(query.shape[i] for i in batch)
        bk = tuple(key.shape[i] for i in batch)
        if bq != bk:
            raise ValueError(f"{w}: batch/length mismatch: query {query.shape} and value {value.shape} must "
                             f"agree on the non-attention axes {batch} (attention_axes={axes})")
        if (use_causal_mask or self.sliding_window is not None) and axes != (1,):
            what = "use_causal_mask" if use_causal_mask else "sliding_window"
            raise ValueError(f"{w}: {what} needs the attention over axis 1 alone (3-D inputs (B, T, d), or "
                             f"attention_axes=1): Keras builds its (1, T, S) mask from axis 1 and fails "
                             f"otherwise; got query {query.shape} with attention_axes={axes}")
        if (bias is not None or rotary is not None) and (rank != 3):
            raise ValueError(f"{w}: bias= and rotary= need 3-D inputs (B, T, d), got query {query.shape}")
        training = self.training if training is None else training
        qa = tuple(query.shape[i] for i in axes)
        ka = tuple(key.shape[i] for i in axes)
        tq, tk = int(np.prod(qa)), int(np.prod(ka))
        nb = int(np.prod(bq))
        mask = self._mask(query, bq, qa, ka, attention_mask, query_mask, value_mask, key_mask, use_causal_mask)
        per_head = rank == 3 and axes == (1,)                  # (B, T, d): heads straight from the GEMM
        if query is value and key is value:                    # self-attention: one GEMM
            q, k, v = self._project(query, ["query", "key", "value"], per_head)
        elif key is value:                                     # key defaults to value: K, V fused
            q, = self._project(query, ["query"], per_head)
            k, v = self._project(value, ["key", "value"], per_head)
        else:
            q, = self._project(query, ["query"], per_head)
            k, = self._project(key, ["key"], per_head)
            v, = self._project(value, ["value"], per_head)
        areg = self.__dict__.get("_projection_activity_regularizer")
        act = [] if areg is None else [areg(t) * (1.0 / t.shape[0]) for t in (q, k, v)]
        H = self.num_heads
        # (B, …, H, n) → (*batch, H, *attention axes, n) → (N_b, H, T, n)
        perm = list(batch) + [rank - 1] + list(axes) + [rank]
        inv = list(np.argsort(perm))

        def heads(t, T):
            return t.transpose(*perm).reshape(nb, H, T, t.shape[-1])

        if not per_head:
            q, k, v = heads(q, tq), heads(k, tk), heads(v, tk)
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if mask is not None and (len(bq) != 1 or len(axes) != 1):
            mask = xp_reshape(backend.get_array_module(query.data), mask,
                              tuple(bq) + (H,) + qa + ka, (nb, H, tq, tk))
        scale = 1.0 / math.sqrt(self.key_dim)
        if bias is not None:
            from .scores import scaled_dot_product_attention
            o, scores = scaled_dot_product_attention(q, k, v, mask=mask, dropout=self.dropout, return_weights=True,
                                                     scale=scale, training=training, bias=bias)
        else:
            o, scores = ScaledDotProductAttention(scale, mask, self.dropout, training)(q, k, v)   # (N_b, H, Tq, dv)
        vd = self.value_dim
        o = o.reshape(*(bq + (H,) + qa + (vd,))).transpose(*inv)                # (B, …q, H, dv)
        if self.use_gate:                                                       # gated attention output
            g, = self._project(query, ["gate"])
            g = sigmoid(g)
            if areg is not None:
                act.append(areg(g) * (1.0 / g.shape[0]))
            o = o * g
        out_shape = self.output_kernel.shape[2:]
        n_out = int(np.prod(out_shape))
        y = linear(o.reshape(-1, H * vd), self.output_kernel.reshape(H * vd, n_out),
                   self.output_bias.reshape(n_out) if self.use_bias else None)
        y = y.reshape(tuple(query.shape[:-1]) + tuple(out_shape))
        if areg is not None:
            act.append(areg(y) * (1.0 / y.shape[0]))
            object.__setattr__(self, "_sublayer_activity_losses", act)
        if rank != 3 or len(axes) != 1:
            scores = scores.reshape(*(bq + (H,) + qa + ka))
        return (y, scores) if return_attention_scores else y

    # -- PyTorch interop -----------------------------------------------------------------------
    def torch_forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                      average_attn_weights=True, is_causal=False, training=None):
        """``nn.MultiheadAttention(batch_first=True).forward`` — same arguments, order, mask meanings and
        return values — for a layer loaded with :meth:`load_torch_state_dict`.

        query (B, L, E), key (B, S, E_k), value (B, S, E_v) (note PyTorch's order: query, KEY, value;
        :meth:`forward` takes Keras's query, value, key), or unbatched (L, E), (S, E_k), (S, E_v).
        For ``batch_first=False`` modules transpose the inputs to (B, T, E) first.

        Masks, in **PyTorch's** meaning (the opposite of Keras's True = attend):
          * key_padding_mask (B, S): bool True = IGNORE that key; float: ADDED to the scores (−inf ignores);
          * attn_mask (L, S) or (B·H, L, S): bool True = NOT allowed to attend; float: ADDED to the scores.
          Both may be given, of either kind (PyTorch deprecates mixing kinds; here booleans mask and
          floats add, which is what PyTorch's conversion of a bool mask to −inf amounts to).
          Float masks may be Tensors that require grad (they get gradients).
        is_causal: a hint, as in PyTorch: it requires ``attn_mask`` (the causal mask itself), and the
        result is that of ``attn_mask``; ``is_causal=True`` alone is an error, as in PyTorch.

        Returns (out (B, L, E), weights): weights averaged over heads (B, L, S) if ``average_attn_weights``,
        else per head (B, H, L, S); None if not ``need_weights``. A query whose keys are all masked gets
        zero weights and attends to nothing (its output is the output bias): PyTorch returns that with
        ``need_weights=False`` but NaN with ``need_weights=True``; here it is never NaN. Weights are taken
        before dropout (PyTorch returns them after dropout; equal when dropout is 0 or in eval mode).
        training: None means ``self.training``.
        """
        w = "MultiHeadAttention.torch_forward"
        same_qk, same_kv = key is query, value is key
        query = cast_input(self, query, "query")
        key = query if same_qk else cast_input(self, key, "key")
        value = key if same_kv else cast_input(self, value, "value")
        unbatched = query.ndim == 2
        if unbatched:
            if key.ndim != 2 or value.ndim != 2:
                raise ValueError(f"{w}: unbatched query {query.shape} needs unbatched key and value (S, E), got "
                                 f"{key.shape}, {value.shape}")
            query = query.expand_dims(0)
            key = query if same_qk else key.expand_dims(0)
            value = key if same_kv else value.expand_dims(0)
        if query.ndim != 3 or key.ndim != 3 or value.ndim != 3:
            raise ValueError(f"{w}: query, key, value must be (B, T, E) (batch_first=True) or unbatched (T, E), "
                             f"got {query.shape}, {key.shape}, {value.shape}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
            raise ValueError(f"{w}: batch/length mismatch: query {query.shape}, key {key.shape}, value {value.shape}")
        if is_causal and attn_mask is None:
            raise ValueError(f"{w}: is_causal=True is only a hint in PyTorch and needs attn_mask (the causal "
                             f"mask itself); pass attn_mask, or use forward(..., use_causal_mask=True)")
        if not self.built:
            self.build(tuple(query.shape), tuple(value.shape), tuple(key.shape))
        training = self.training if training is None else training
        B, L, S, H = query.shape[0], query.shape[1], key.shape[1], self.num_heads

        keeps, adds = [], []
        kk, ka = _torch_mask(key_padding_mask, "key_padding_mask", query)
        if unbatched:                                          # (S,) -> (1, S)
            kk, ka = (None if m is None or m.ndim != 1 else m.reshape(1, -1) for m in (kk, ka))
        for m in (kk, ka):
            if m is not None and tuple(m.shape) != (B, S):
                raise ValueError(f"{w}: key_padding_mask must be (B, S) = {(B, S)}, got {tuple(m.shape)}")
        if kk is not None:
            keeps.append(kk[:, None, None, :])
        if ka is not None:
            adds.append(ka.reshape(B, 1, 1, S))
        ak, aa = _torch_mask(attn_mask, "attn_mask", query)
        for i, m in enumerate((ak, aa)):
            if m is None:
                continue
            if tuple(m.shape) == (L, S):
                pass
            elif tuple(m.shape) == (B * H, L, S):
                m = m.reshape(B, H, L, S)
            else:
                raise ValueError(f"{w}: attn_mask must be (L, S) = {(L, S)} or (B·H, L, S) = {(B * H, L, S)}, "
                                 f"got {tuple(m.shape)}")
            (keeps if i == 0 else adds).append(m)
        bias = None
        for a in adds:
            bias = a if bias is None else (a + bias if isinstance(a, Tensor) else bias + a)

        if query is key and key is value:                            # each (B, H, T, n)
            q, k, v = self._project(query, ["query", "key", "value"], heads=True)
        elif key is value:
            q, = self._project(query, ["query"], heads=True)
            k, v = self._project(key, ["key", "value"], heads=True)
        else:
            q, = self._project(query, ["query"], heads=True)
            k, = self._project(key, ["key"], heads=True)
            v, = self._project(value, ["value"], heads=True)
        from .scores import scaled_dot_product_attention
        mask = combine_masks(*keeps, like=query, where=w) if keeps else None
        o, scores = scaled_dot_product_attention(q, k, v, mask=mask, bias=bias, dropout_p=self.dropout,
                                                 scale=1.0 / math.sqrt(self.key_dim), training=training,
                                                 return_weights=True)          # (B, H, L, dv), (B, H, L, S)
        vd = self.value_dim
        out_shape = self.output_kernel.shape[2:]
        n_out = int(np.prod(out_shape))
        y = linear(o.transpose(0, 2, 1, 3).reshape(B * L, H * vd), self.output_kernel.reshape(H * vd, n_out),
                   self.output_bias.reshape(n_out) if self.use_bias else None)
        y = y.reshape((B, L) + tuple(out_shape))
        wts = None
        if need_weights:
            wts = scores.mean(axis=1) if average_attn_weights else scores
        if unbatched:
            y = y[0]
            wts = None if wts is None else wts[0]
        return y, wts

    def load_torch_state_dict(self, sd):
        """Load a PyTorch ``nn.MultiheadAttention`` state dict (E = embed_dim, H heads, E/H per head).

        in_proj_weight (3E, E) = [W_q; W_k; W_v] applied as x Wᵀ + b (or q/k/v_proj_weight when
        kdim/vdim differ), in_proj_bias (3E,), out_proj.weight (E, E), out_proj.bias (E,):
            query/kernel = W_qᵀ.reshape(E, H, E/H),  query/bias = b_q.reshape(H, E/H), likewise k, v;
            attention_output/kernel = W_oᵀ.reshape(H, E/H, E).
        Needs key_dim = value_dim = E/H. Builds the layer if needed. Returns self.
        """
        sd = {k: _np(v) for k, v in sd.items()}
        if "bias_k" in sd or "bias_v" in sd:
            raise ValueError("MultiHeadAttention.load_torch_state_dict: add_bias_kv is not supported")
        if "in_proj_weight" in sd:
            W = sd["in_proj_weight"]
            E = W.shape[1]
            if W.shape[0] != 3 * E:
                raise ValueError(f"load_torch_state_dict: in_proj_weight {W.shape} should be (3E, E)")
            Wq, Wk, Wv = W[:E], W[E:2 * E], W[2 * E:]
        else:
            try:
                Wq, Wk, Wv = sd["q_proj_weight"], sd["k_proj_weight"], sd["v_proj_weight"]
            except KeyError:
                raise ValueError("load_torch_state_dict: need in_proj_weight or q/k/v_proj_weight, got "
                                 f"keys {sorted(sd)}") from None
        E = Wq.shape[0]
        Wo = sd["out_proj.weight"]
        H = self.num_heads
        if E % H or E // H != self.key_dim or E // H != self.value_dim:
            raise ValueError(f"load_torch_state_dict: embed_dim {E} with {H} heads needs key_dim = value_dim "
                             f"= {E / H}, this layer has key_dim {self.key_dim}, value_dim {self.value_dim}")
        has_bias = "in_proj_bias" in sd
        if has_bias != bool(self.use_bias):
            raise ValueError(f"load_torch_state_dict: state dict has biases: {has_bias}, "
                             f"layer use_bias={self.use_bias}")
        if not self.built:
            self.build((Wq.shape[1],), (Wv.shape[1],), (Wk.shape[1],))
        hd = E // H
        ws = []
        bq = bk = bv = None
        if has_bias:
            bq, bk, bv = np.split(sd["in_proj_bias"], 3)
        for Wx, bx in ((Wq, bq), (Wk, bk), (Wv, bv)):
            ws.append(Wx.T.reshape(Wx.shape[1], H, hd))
            if has_bias:
                ws.append(bx.reshape(H, hd))
        ws.append(Wo.T.reshape(H, hd, Wo.shape[0]))
        if has_bias:
            ws.append(sd["out_proj.bias"])
        self.set_weights(ws)
        return self


def _torch_mask(m, name, like):
    """A PyTorch ``nn.MultiheadAttention`` mask -> (keep, additive), where PyTorch's meaning is
    bool True = IGNORE (the opposite of tinyattn's and Keras's True = attend) and floating = ADDED to
    the scores. Bool -> keep = ~m (an array); float -> additive (an array, or the Tensor itself so it
    gets a gradient). Accepts NumPy/CuPy arrays, lists, Tensors and PyTorch tensors (via NumPy)."""
    if m is None:
        return None, None
    if isinstance(m, Tensor):
        if m.dtype.kind == "f":
            return None, m
        d = m.data
    elif hasattr(m, "detach") and hasattr(m, "cpu"):         # a torch tensor (never imported here)
        d = _np(m)
    else:
        d = m if hasattr(m, "dtype") else np.asarray(m)
    kind = d.dtype.kind
    if kind == "b":
        xp = backend.get_array_module(like.data)
        d = backend.as_numpy(d) if xp is np else xp.asarray(d)
        return ~d, None
    if kind == "f":
        return None, d
    raise ValueError(f"MultiHeadAttention.torch_forward: only bool (True = ignore) and floating (added to "
                     f"the scores) {name} are supported, as in PyTorch; got dtype {d.dtype}")


class SelfAttention(Module):
    """Self-attention: multi-head attention of a sequence with itself (query = key = value = x).

        out = MultiHeadAttention(num_heads, key_dim)(x, x, x)         (causal: query i sees keys ≤ i)

    Input x (B, T, d); output (B, T, d) (Keras's default output size); attention weights (B, H, T, T).
    ``mask`` (B, T) marks real (True) vs padded steps; it masks both keys and queries, as a Keras
    mask carried by x would (a padded query attends to nothing: zero weights, output = the output bias).
    Weights: those of the wrapped ``MultiHeadAttention`` (``self.mha``), in Keras's order:
    query/kernel (d, H, key_dim), query/bias, key/kernel, key/bias, value/kernel, value/bias,
    attention_output/kernel (H, key_dim, d), attention_output/bias (d,).
    """
    last_attention = None
    supports_masking = True          # the output carries x's Keras mask; ``mask`` defaults to it

    def __init__(self, num_heads, key_dim, causal=False, **mha_kwargs):
        super().__init__()
        self.causal = bool(causal)
        self.mha = MultiHeadAttention(num_heads, key_dim, **mha_kwargs)
        self.dtype = self.mha.dtype

    def weights(self):
        return self.mha.weights()

    def forward(self, x, mask=None, return_attention_scores=False):
        x = cast_input(self, x)
        check_rank("SelfAttention", "input", x)
        mask = as_mask(mask, x, shape=x.shape[:2], name="mask", where="SelfAttention")
        out, weights = self.mha(x, x, x, query_mask=mask, value_mask=mask, use_causal_mask=self.causal,
                                return_attention_scores=True)
        object.__setattr__(self, "last_attention", weights.detach())
        return (out, weights) if return_attention_scores else out
