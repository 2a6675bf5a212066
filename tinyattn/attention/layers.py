"""Keras-parity attention layers: ``Attention`` (Luong), ``AdditiveAttention`` (Bahdanau) and
``MultiHeadAttention`` (Vaswani et al. 2017).

Constructor arguments, defaults, weight shapes and ``get_weights()`` order are Keras 3's, so weights
copy across with ``layer.set_weights(keras_layer.get_weights())`` and the outputs agree.

Masks are boolean with True = keep. Two masking conventions meet here, on purpose:

* ``Attention`` / ``AdditiveAttention`` follow Keras exactly: a masked score gets 1e9 *subtracted*
  (not replaced), so a query whose keys are all masked comes out with uniform weights 1/Tv (every
  score shifted by the same amount), just as in Keras. The query mask then zeroes output rows.
* ``MultiHeadAttention`` uses the fused :func:`scaled_dot_product_attention`, where masked weights
  are exactly 0 and a fully masked row has zero weights and zero output (what Keras's explicit path
  also returns; Keras's fused fast path — no dropout, no returned scores — differs on such rows).

(In float64 a fully masked row of ``Attention`` keeps the softmax of its unmasked scores, since
s − 1e9 still resolves the differences — again exactly what Keras computes in float64.)

``training``: Keras's call argument. Left as None it follows the module's mode (``layer.train()`` /
``layer.eval()``, PyTorch style; a new Module is in training mode), whereas Keras's eager default
is inference — pass ``training=False`` (or call ``.eval()``) to match Keras outside a training loop.
Dropout only ever acts on the attention weights.
"""
import math

import numpy as np

from .. import backend
from ..autograd import Tensor
from ..functions import dropout as _dropout, broadcast_to, concat, split
from ..functions.attention import ScaledDotProductAttention, AdditiveScore
from ..nn import Module, Parameter, init
from .masking import causal_mask, combine_masks, _arr

__all__ = ["Attention", "AdditiveAttention", "MultiHeadAttention"]

_LARGE = 1.0e9


def _t(x):
    return x if isinstance(x, Tensor) else Tensor(x)


def _bool(m):
    """A mask as a boolean array (True = keep); None stays None."""
    if m is None:
        return None
    m = _arr(m)
    if m.dtype != bool:
        if m.dtype.kind == "f":
            m = m > 0.5                  # Keras reads a float mask as "keep where > 0.5"
        else:
            m = m.astype(bool)
    return m


class _BaseDenseAttention(Module):
    """Shared call logic of Keras's ``Attention`` and ``AdditiveAttention`` (``_score`` differs)."""

    def __init__(self, use_scale, dropout, dtype):
        super().__init__()
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), got {dropout}")
        self.use_scale = use_scale
        self.dropout = float(dropout)
        self.dtype = np.dtype(dtype)

    def _unpack(self, inputs):
        name = type(self).__name__
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            raise ValueError(f"{name}: call it on a list [query, value] or [query, value, key], got "
                             f"{type(inputs).__name__}")
        q, v = _t(inputs[0]), _t(inputs[1])
        k = _t(inputs[2]) if len(inputs) == 3 else v
        if q.ndim != 3 or v.ndim != 3 or k.ndim != 3:
            raise ValueError(f"{name}: query, value, key must be (B, T, dim), got {q.shape}, {v.shape}, {k.shape}")
        if k.shape[:2] != v.shape[:2] or q.shape[0] != v.shape[0]:
            raise ValueError(f"{name}: batch/length mismatch: query {q.shape}, value {v.shape}, key {k.shape}")
        return q, v, k

    def forward(self, inputs, mask=None, training=None, return_attention_scores=False,
                use_causal_mask=False):
        """inputs = [query (B, Tq, d), value (B, Tv, dv)(, key (B, Tv, d))]; key defaults to value.

        mask = [query_mask (B, Tq), value_mask (B, Tv)] (either may be None), True = keep.
        training: None means ``self.training`` (dropout on the weights only when training).
        Returns out (B, Tq, dv) [and the weights (B, Tq, Tv) after dropout, as Keras].

            e = score(q, k)                               (B, Tq, Tv)
            e ← e − 1e9 · ¬(value_mask ∧ causal)          (Keras: subtracted, not replaced)
            α = dropout(softmax(e));   out = α v;   out_i ← 0 where query_mask_i is False
        """
        q, v, k = self._unpack(inputs)
        training = self.training if training is None else training
        qm = vm = None
        if mask is not None:
            if not isinstance(mask, (list, tuple)) or len(mask) != 2:
                raise ValueError(f"{type(self).__name__}: mask must be [query_mask, value_mask]")
            qm = _bool(mask[0])
            vm = _bool(mask[1])
        scores = self._score(q, k)
        xp = backend.get_array_module(scores.data)
        tq, tv = scores.shape[-2], scores.shape[-1]
        if vm is not None:
            if vm.shape not in ((q.shape[0], tv), (q.shape[0], 1, tv), (q.shape[0], tq, tv)):
                raise ValueError(f"{type(self).__name__}: value mask of shape {vm.shape} does not "
                                 f"match scores {scores.shape}")
            if vm.ndim == 2:
                vm = vm[:, None, :]
        vm = None if vm is None else xp.asarray(vm)
        smask = combine_masks(vm, causal_mask(tq, tv, xp) if use_causal_mask else None)
        if smask is not None:
            scores = scores - (~smask).astype(scores.dtype) * scores.dtype.type(_LARGE)
        weights = scores.softmax(axis=-1)
        weights = _dropout(weights, self.dropout, training)
        out = weights @ v
        if qm is not None:
            if qm.shape != (q.shape[0], tq):
                raise ValueError(f"{type(self).__name__}: query mask {qm.shape} should be {(q.shape[0], tq)}")
            out = out * xp.asarray(qm[..., None], dtype=out.dtype)
        return (out, weights) if return_attention_scores else out


class Attention(_BaseDenseAttention):
    """Dot-product (Luong) attention layer, as ``keras.layers.Attention``.

    Args: use_scale (False): learn a scalar ``scale`` (init 1); score_mode "dot" or "concat";
    dropout on the attention weights. Weights (``get_weights()`` order): [scale] if use_scale, then
    [concat_score_weight] (a scalar, init 1) if score_mode == "concat".

    query (B, Tq, d), key (B, Tv, d), value (B, Tv, dv):

        dot:     e_ij = scale · q_iᵀ k_j                     (scale = 1 without use_scale, never 1/√d)
        concat:  e_ij = c · Σ_d tanh(scale · (q_id + k_jd))  (c = concat_score_weight)

    then masked softmax and α v as in ``_BaseDenseAttention.forward``.
    """

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, dtype="float32"):
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Attention: score_mode must be 'dot' or 'concat', got {score_mode!r}")
        super().__init__(use_scale, dropout, dtype)
        self.score_mode = score_mode

    def build(self, input_shape):
        if self.use_scale:
            self.scale = Parameter(init.ones((), self.dtype), name="scale")
        if self.score_mode == "concat":
            self.concat_score_weight = Parameter(init.ones((), self.dtype), name="concat_score_weight")

    def weights(self):
        return ([self.scale] if self.use_scale else []) + \
               ([self.concat_score_weight] if self.score_mode == "concat" else [])

    def _score(self, q, k):
        if q.shape[-1] != k.shape[-1]:
            raise ValueError(f"Attention: query {q.shape} and key {k.shape} need the same last dimension")
        if self.score_mode == "dot":
            s = q @ k.swapaxes(-1, -2)
            return s * self.scale if self.use_scale else s
        if self.use_scale:
            q, k = q * self.scale, k * self.scale
        c = broadcast_to(self.concat_score_weight, (q.shape[-1],))      # Σ_d c·tanh = (c 1)ᵀ tanh
        return AdditiveScore()(q, k, c)


class AdditiveAttention(_BaseDenseAttention):
    """Additive (Bahdanau-style) attention layer, as ``keras.layers.AdditiveAttention``.

    Args: use_scale (True): learn ``scale`` (d,) (glorot_uniform init); dropout on the weights.
    Weights: [scale] if use_scale. No projections (put Dense layers in front for full Bahdanau).

    query (B, Tq, d), key (B, Tv, d), value (B, Tv, dv):

        e_ij = Σ_d scale_d · tanh(q_id + k_jd)     (scale_d = 1 without use_scale)
    """

    def __init__(self, use_scale=True, dropout=0.0, dtype="float32"):
        super().__init__(use_scale, dropout, dtype)

    def build(self, input_shape):
        if self.use_scale:
            self.scale = Parameter(init.glorot_uniform((input_shape[0][-1],), self.dtype), name="scale")

    def weights(self):
        return [self.scale] if self.use_scale else []

    def _score(self, q, k):
        if q.shape[-1] != k.shape[-1]:
            raise ValueError(f"AdditiveAttention: query {q.shape} and key {k.shape} need the same last dimension")
        if self.use_scale and self.scale.shape[0] != q.shape[-1]:
            raise ValueError(f"AdditiveAttention: built for dim {self.scale.shape[0]}, got query {q.shape}")
        v = self.scale if self.use_scale else backend.get_array_module(q.data).ones(q.shape[-1], q.dtype)
        return AdditiveScore()(q, k, v)


def _np(x):
    """A NumPy array from a NumPy array, a Tensor or a PyTorch tensor (without importing torch)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return backend.as_numpy(getattr(x, "data", x) if isinstance(x, Tensor) else x)


class MultiHeadAttention(Module):
    """Multi-head attention (Vaswani et al. 2017), as ``keras.layers.MultiHeadAttention``.

    Args: num_heads H, key_dim dk, value_dim dv (default dk), dropout (on the attention weights,
    training only), use_bias (True), output_shape (default: the query's last dimension).

    Weights (``get_weights()`` order, Keras shapes):
        query/kernel (d_q, H, dk), query/bias (H, dk), key/kernel (d_k, H, dk), key/bias (H, dk),
        value/kernel (d_v, H, dv), value/bias (H, dv), attention_output/kernel (H, dv, *out),
        attention_output/bias (*out,)      — biases only with use_bias.

    query (B, Tq, d_q), value (B, Tk, d_v), key (B, Tk, d_k) (default: value):

        Q_h = query W^Q_h + b^Q_h    (B, H, Tq, dk)   — each projection is ONE GEMM
        K_h = key   W^K_h + b^K_h    (B, H, Tk, dk)     (B·T, d) @ (d, H·dk), then a reshape
        V_h = value W^V_h + b^V_h    (B, H, Tk, dv)
        A_h = softmax(Q_h K_hᵀ / √dk, masked)        (B, H, Tq, Tk)   (returned scores)
        O   = Σ_h dropout(A_h) V_h W^O_h + b^O        (B, Tq, *out)

    Masks (True = attend): attention_mask (B, Tq, Tk) (or broadcastable), value_mask / key_mask
    (B, Tk), query_mask (B, Tq) (Keras reads it from the query's Keras mask), use_causal_mask — all
    ANDed. A query with no key left gets zero weights and a zero output row.
    """

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", dtype="float32"):
        super().__init__()
        for nm, val in (("num_heads", num_heads), ("key_dim", key_dim)):
            if not isinstance(val, (int, np.integer)) or val <= 0:
                raise ValueError(f"MultiHeadAttention: {nm} must be a positive integer, got {val!r}")
        if value_dim is not None and (not isinstance(value_dim, (int, np.integer)) or value_dim <= 0):
            raise ValueError(f"MultiHeadAttention: value_dim must be a positive integer or None, got {value_dim!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiHeadAttention: dropout must be in [0, 1), got {dropout}")
        self.num_heads = int(num_heads)
        self.key_dim = int(key_dim)
        self.value_dim = int(value_dim) if value_dim else self.key_dim
        self.dropout = float(dropout)
        self.use_bias = use_bias
        if output_shape is not None:
            output_shape = (int(output_shape),) if isinstance(output_shape, (int, np.integer)) \
                else tuple(int(s) for s in output_shape)
        self.output_shape = output_shape
        self.kernel_initializer = init.get(kernel_initializer)
        self.bias_initializer = init.get(bias_initializer)
        self.dtype = np.dtype(dtype)

    # -- building ------------------------------------------------------------------------------
    def build(self, query_shape, value_shape=None, key_shape=None):
        """Create the weights for query (…, d_q), value (…, d_v) and key (…, d_k) feature sizes."""
        value_shape = query_shape if value_shape is None else value_shape
        key_shape = value_shape if key_shape is None else key_shape
        dq, dk, dv = query_shape[-1], key_shape[-1], value_shape[-1]
        H, kd, vd = self.num_heads, self.key_dim, self.value_dim
        out = self.output_shape or (dq,)
        ki, bi, dt = self.kernel_initializer, self.bias_initializer, self.dtype
        self.query_kernel = Parameter(ki((dq, H, kd), dt), name="query/kernel")
        if self.use_bias:
            self.query_bias = Parameter(bi((H, kd), dt), name="query/bias")
        self.key_kernel = Parameter(ki((dk, H, kd), dt), name="key/kernel")
        if self.use_bias:
            self.key_bias = Parameter(bi((H, kd), dt), name="key/bias")
        self.value_kernel = Parameter(ki((dv, H, vd), dt), name="value/kernel")
        if self.use_bias:
            self.value_bias = Parameter(bi((H, vd), dt), name="value/bias")
        self.output_kernel = Parameter(ki((H, vd) + tuple(out), dt), name="attention_output/kernel")
        if self.use_bias:
            self.output_bias = Parameter(bi(tuple(out), dt), name="attention_output/bias")
        object.__setattr__(self, "built", True)

    def weights(self):
        if self.use_bias:
            return [self.query_kernel, self.query_bias, self.key_kernel, self.key_bias,
                    self.value_kernel, self.value_bias, self.output_kernel, self.output_bias]
        return [self.query_kernel, self.key_kernel, self.value_kernel, self.output_kernel]

    def __call__(self, query, value, key=None, **kwargs):
        if not self.built:
            self.build(tuple(query.shape), tuple(value.shape), None if key is None else tuple(key.shape))
        return self.forward(query, value, key, **kwargs)

    # -- the computation -----------------------------------------------------------------------
    def _project(self, x, names):
        """Project x (B, T, d) with one or more of "query"/"key"/"value" that share this input.

        One projection: x W + b as ONE (B·T, d) @ (d, H·n) GEMM -> (B, H, T, n) (a reshape and a
        transpose view). Several (self-attention: query is key is value; or key is value): their
        kernels side by side, (B·T, d) @ [W^Q | W^K | W^V], then split — one bigger GEMM each way,
        and in backward gx = gY Wᵀ at once instead of three products and two additions.
        """
        B, T, d = x.shape
        ks = [getattr(self, f"{n}_kernel") for n in names]
        for n, w in zip(names, ks):
            if d != w.shape[0]:
                raise ValueError(f"MultiHeadAttention: {n} has feature size {d}, but the layer was built "
                                 f"for {w.shape[0]} ({n} {x.shape}, {n}/kernel {w.shape})")
        H = self.num_heads
        ns = [w.shape[2] for w in ks]
        W = ks[0].reshape(d, H * ns[0]) if len(ks) == 1 else \
            concat([w.reshape(d, H * n) for w, n in zip(ks, ns)], axis=1)
        y = x.reshape(B * T, d) @ W
        if self.use_bias:
            bs = [getattr(self, f"{n}_bias").reshape(H * m) for n, m in zip(names, ns)]
            y = y + (bs[0] if len(bs) == 1 else concat(bs, axis=0))
        parts = [y] if len(ks) == 1 else split(y, list(np.cumsum([H * n for n in ns[:-1]])), axis=1)
        return [part.reshape(B, T, H, n).transpose(0, 2, 1, 3) for part, n in zip(parts, ns)]

    def _mask(self, B, tq, tk, xp, attention_mask, query_mask, value_mask, key_mask, causal):
        ms = []
        if query_mask is not None:
            ms.append(_bool(query_mask)[:, :, None])
        for vm in (value_mask, key_mask):
            if vm is not None:
                ms.append(_bool(vm)[:, None, :])
        if causal:
            ms.append(causal_mask(tq, tk, xp))
        if attention_mask is not None:
            ms.append(_bool(attention_mask))
        m = combine_masks(*[xp.asarray(x) for x in ms])     # NumPy masks move to the GPU with CuPy data
        if m is None:
            return None
        try:
            shape = np.broadcast_shapes(tuple(m.shape), (B, tq, tk))
        except ValueError:
            raise ValueError(f"MultiHeadAttention: masks of shapes {[tuple(x.shape) for x in ms]} do not "
                             f"broadcast to (B, Tq, Tk) = {(B, tq, tk)}") from None
        m = xp.broadcast_to(m, shape) if m.ndim < 3 else m
        return m[:, None] if m.ndim == 3 else m        # (B, 1, Tq, Tk): heads broadcast

    def forward(self, query, value, key=None, attention_mask=None, return_attention_scores=False,
                training=None, use_causal_mask=False, query_mask=None, value_mask=None, key_mask=None,
                bias=None, rotary=None):
        """Returns out (B, Tq, *out) [and the attention scores (B, H, Tq, Tk), before dropout].
        training: None means ``self.training``.

        bias: additive score bias broadcastable to (B, H, Tq, Tk) — e.g. ``alibi_bias(H, Tq, Tk)``
        or a ``T5RelativePositionBias`` output: A_h = softmax(Q_h K_hᵀ/√dk + bias_h, masked).
        rotary: a callable applied to the projected Q_h (B, H, Tq, dk) and K_h (B, H, Tk, dk), e.g. a
        ``RotaryEmbedding(key_dim)`` (RoPE at positions 0..T−1)."""
        same_qv, same_kv = value is query, key is None or key is value
        query = _t(query)
        value = query if same_qv else _t(value)
        key = value if same_kv else _t(key)
        if query.ndim != 3 or value.ndim != 3 or key.ndim != 3:
            raise ValueError(f"MultiHeadAttention: query, value, key must be (B, T, d), got "
                             f"{query.shape}, {value.shape}, {key.shape}")
        if key.shape[:2] != value.shape[:2] or query.shape[0] != value.shape[0]:
            raise ValueError(f"MultiHeadAttention: batch/length mismatch: query {query.shape}, "
                             f"value {value.shape}, key {key.shape}")
        training = self.training if training is None else training
        B, tq, tk = query.shape[0], query.shape[1], key.shape[1]
        xp = backend.get_array_module(query.data)
        mask = self._mask(B, tq, tk, xp, attention_mask, query_mask, value_mask, key_mask, use_causal_mask)
        if query is value and key is value:                    # self-attention: one GEMM
            q, k, v = self._project(query, ["query", "key", "value"])
        elif key is value:                                     # key defaults to value: K, V fused
            q, = self._project(query, ["query"])
            k, v = self._project(value, ["key", "value"])
        else:
            q, = self._project(query, ["query"])
            k, = self._project(key, ["key"])
            v, = self._project(value, ["value"])
        if rotary is not None:
            q, k = rotary(q), rotary(k)
        if bias is not None:
            from .scores import scaled_dot_product_attention
            o, scores = scaled_dot_product_attention(q, k, v, mask=mask, dropout=self.dropout, return_weights=True,
                                                     scale=1.0 / math.sqrt(self.key_dim), training=training, bias=bias)
        else:
            o, scores = ScaledDotProductAttention(1.0 / math.sqrt(self.key_dim), mask, self.dropout,
                                                  training)(q, k, v)              # (B, H, Tq, dv)
        H, vd = self.num_heads, self.value_dim
        out_shape = self.output_kernel.shape[2:]
        n_out = int(np.prod(out_shape))
        y = o.transpose(0, 2, 1, 3).reshape(B * tq, H * vd) @ self.output_kernel.reshape(H * vd, n_out)
        if self.use_bias:
            y = y + self.output_bias.reshape(n_out)
        y = y.reshape((B, tq) + tuple(out_shape))
        return (y, scores) if return_attention_scores else y

    # -- PyTorch interop -----------------------------------------------------------------------
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
