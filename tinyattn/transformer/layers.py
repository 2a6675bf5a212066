"""Transformer blocks (Vaswani et al. 2017), with PyTorch's arguments and submodule names.

    TransformerEncoderLayer   self-attention + feed-forward
    TransformerDecoderLayer   causal self-attention + cross-attention over a memory + feed-forward
    TransformerEncoder / TransformerDecoder   stacks of N copies, with an optional final norm

Built from tinyattn's ``MultiHeadAttention`` (Keras weight layout), ``Dense``, ``LayerNormalization``
and ``Dropout``. Each sublayer f is wrapped as

    post-norm (norm_first=False, the paper):  x ← LN(x + Dropout(f(x)))
    pre-norm  (norm_first=True, GPT-2 style):  x ← x + Dropout(f(LN(x)))

    FFN(x) = W₂ dropout(act(W₁ x + b₁)) + b₂          act = relu | gelu (exact) | a callable

Shapes: x (B, T, d_model) → (B, T, d_model); memory (B, S, d_model); the attention weights
(B, H, Tq, Tk). ``load_torch_state_dict`` takes the ``state_dict()`` of ``nn.TransformerEncoderLayer``
/ ``nn.TransformerDecoderLayer`` / ``nn.TransformerEncoder`` / ``nn.TransformerDecoder`` (any
``batch_first``: the weights do not depend on it) and the outputs and gradients then agree.

Masks are boolean with True = attend (PyTorch's ``*_key_padding_mask`` and boolean ``*_mask`` are the
opposite: pass ``~mask``). ``training=None`` follows the module's ``train()`` / ``eval()`` mode.
"""
import copy

import numpy as np

from .. import backend
from ..autograd import array_of
from ..nn import Module, ModuleList, Dense, Dropout, LayerNormalization
from ..attention import MultiHeadAttention
from .attention import mha_attend, KVCache

__all__ = ["TransformerEncoderLayer", "TransformerDecoderLayer", "TransformerEncoder", "TransformerDecoder"]


def _np(x):
    """A NumPy array from a NumPy array, a Tensor or a PyTorch tensor (without importing torch)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return backend.as_numpy(array_of(x))


def _sub(sd, prefix):
    return {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}


class _Block(Module):
    """What both layers share: the feed-forward sublayer, the norms and the torch loading."""
    keras_mask_args = ()      # its mask arguments are not Keras masks of its inputs

    def __init__(self, d_model, nhead, dim_feedforward, dropout, activation, norm_first, layer_norm_eps,
                 bias, dtype, n_norms):
        super().__init__()
        name = type(self).__name__
        if not isinstance(d_model, (int, np.integer)) or not isinstance(nhead, (int, np.integer)) \
                or d_model <= 0 or nhead <= 0 or d_model % nhead:
            raise ValueError(f"{name}: d_model ({d_model}) must be a positive multiple of nhead ({nhead})")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{name}: dropout must be in [0, 1), got {dropout}")
        self.d_model, self.nhead, self.dim_feedforward = int(d_model), int(nhead), int(dim_feedforward)
        self.norm_first, self.layer_norm_eps, self.bias = bool(norm_first), float(layer_norm_eps), bool(bias)
        self.dtype = np.dtype(dtype)
        self._rate = float(dropout)
        self._activation = activation
        self._n_norms = n_norms

    def _mha(self):
        m = MultiHeadAttention(self.nhead, self.d_model // self.nhead, dropout=self._rate, use_bias=self.bias,
                               dtype=self.dtype)
        d = (None, None, self.d_model)
        m.build(d, d, d)
        return m

    def _make_ffn_and_norms(self):
        d = self.d_model
        self.linear1 = Dense(self.dim_feedforward, activation=self._activation, use_bias=self.bias, input_dim=d,
                             dtype=self.dtype)
        self.dropout = Dropout(self._rate)
        self.linear2 = Dense(d, use_bias=self.bias, input_dim=self.dim_feedforward, dtype=self.dtype)
        for i in range(1, self._n_norms + 1):
            n = LayerNormalization(epsilon=self.layer_norm_eps, center=self.bias, dtype=self.dtype)
            n.build((None, None, d))
            setattr(self, f"norm{i}", n)
        for i in range(1, self._n_norms + 1):
            setattr(self, f"dropout{i}", Dropout(self._rate))
        object.__setattr__(self, "built", True)

    def _ff(self, x, training):
        """Dropout₂(W₂ Dropout(act(W₁ x + b₁)) + b₂): the feed-forward sublayer's residual branch."""
        y = self.linear2(self.dropout(self.linear1(x), training=training))
        return self._drop(y, self._n_norms, training)

    def _drop(self, y, i, training):
        return getattr(self, f"dropout{i}")(y, training=training)

    def _residual(self, x, i, f):
        """Pre-norm: x + f(LN_i(x)); post-norm: LN_i(x + f(x)). f returns (branch, extra)."""
        norm = getattr(self, f"norm{i}")
        if self.norm_first:
            y, extra = f(norm(x))
            return x + y, extra
        y, extra = f(x)
        return norm(x + y), extra

    # -- PyTorch interop -----------------------------------------------------------------------
    def _load_common(self, sd):
        for lin in ("linear1", "linear2"):
            ws = [_np(sd[f"{lin}.weight"]).T] + ([_np(sd[f"{lin}.bias"])] if self.bias else [])
            getattr(self, lin).set_weights(ws)
        for i in range(1, self._n_norms + 1):
            ws = [_np(sd[f"norm{i}.weight"])] + ([_np(sd[f"norm{i}.bias"])] if self.bias else [])
            getattr(self, f"norm{i}").set_weights(ws)

    def load_torch_state_dict(self, sd):
        """Load a PyTorch ``nn.Transformer{Encoder,Decoder}Layer`` state dict: the attention through
        ``MultiHeadAttention.load_torch_state_dict``, linear{1,2}.weight (out, in) → Dense kernel (in, out)
        (transposed), norm{i}.weight / .bias → gamma / beta. Returns self."""
        sd = {k: _np(v) for k, v in sd.items()}
        expected = {"linear1.weight", "linear2.weight"} | {f"norm{i}.weight" for i in range(1, self._n_norms + 1)}
        missing = sorted(expected - set(sd))
        if missing:
            raise ValueError(f"{type(self).__name__}.load_torch_state_dict: missing keys {missing} (got "
                             f"{sorted(sd)}); is it the state dict of the matching PyTorch layer?")
        for att in self._attention_names:
            getattr(self, att).load_torch_state_dict(_sub(sd, f"{att}."))
        self._load_common(sd)
        return self


class TransformerEncoderLayer(_Block):
    """Encoder block: self-attention then a position-wise feed-forward network (PyTorch's arguments).

        post-norm: x ← LN₁(x + Drop₁(SelfAttn(x)));   x ← LN₂(x + Drop₂(FFN(x)))
        pre-norm:  x ← x + Drop₁(SelfAttn(LN₁(x)));   x ← x + Drop₂(FFN(LN₂(x)))

    src (B, T, d_model) → (B, T, d_model). Submodules (as PyTorch's): self_attn
    (MultiHeadAttention, H = nhead, key_dim = d_model/nhead, dropout on the weights), linear1
    (d_model → dim_feedforward, with the activation), dropout, linear2, norm1, norm2, dropout1, dropout2.
    ``bias=False`` drops every bias (attention, linear and the LayerNorms' β), as PyTorch's.
    """
    _attention_names = ("self_attn",)

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", norm_first=False,
                 layer_norm_eps=1e-5, bias=True, dtype="float32"):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias,
                         dtype, n_norms=2)
        self.self_attn = self._mha()
        self._make_ffn_and_norms()

    def forward(self, src, src_mask=None, src_key_mask=None, causal=False, bias=None, rotary=None,
                training=None, return_attention=False):
        """src (B, T, d); src_mask boolean (T, T) / (B, T, T) / (B, H, T, T), True = attend;
        src_key_mask (B, T) True = a real token; causal; bias additive (…, H, T, T) (ALiBi, T5);
        rotary: a RoPE module applied to Q, K. Returns (B, T, d) [and the weights (B, H, T, T)]."""
        training = self.training if training is None else bool(training)

        def sa(x):
            y, w = mha_attend(self.self_attn, x, mask=src_mask, key_mask=src_key_mask, causal=causal, bias=bias,
                              rotary=rotary, training=training)
            return self._drop(y, 1, training), w

        x, w = self._residual(src, 1, sa)
        x, _ = self._residual(x, 2, lambda h: (self._ff(h, training), None))
        return (x, w) if return_attention else x


class TransformerDecoderLayer(_Block):
    """Decoder block: causal self-attention, cross-attention over the encoder memory, feed-forward.

        post-norm: x ← LN₁(x + Drop₁(SelfAttn(x)));  x ← LN₂(x + Drop₂(CrossAttn(x, m)));
                   x ← LN₃(x + Drop₃(FFN(x)))
        pre-norm:  x ← x + Drop₁(SelfAttn(LN₁(x)));  x ← x + Drop₂(CrossAttn(LN₂(x), m));
                   x ← x + Drop₃(FFN(LN₃(x)))

    tgt (B, T, d_model), memory (B, S, d_model) → (B, T, d_model). Submodules (PyTorch's names):
    self_attn, multihead_attn (cross), linear1, dropout, linear2, norm1..3, dropout1..3.

    ``cross_attention=False`` gives the decoder-only (GPT) block: self-attention and FFN only, with
    norm1, norm2 (FFN), dropout1, dropout2 — the encoder layer's structure, causal.

    Incremental decoding: pass a :class:`~tinyattn.transformer.LayerKVCache` as ``cache`` and feed
    only the new token(s): the self-attention's keys/values are appended to the cache, the queries
    sit at absolute positions cache.length + i (for the causal mask and RoPE), and the memory is
    projected to keys/values once, on the first step.
    """

    def __init__(self, d_model, nhead, dim_feedforward=2048, dropout=0.1, activation="relu", norm_first=False,
                 layer_norm_eps=1e-5, bias=True, dtype="float32", cross_attention=True):
        super().__init__(d_model, nhead, dim_feedforward, dropout, activation, norm_first, layer_norm_eps, bias,
                         dtype, n_norms=3 if cross_attention else 2)
        self.cross_attention = bool(cross_attention)
        self.self_attn = self._mha()
        if cross_attention:
            self.multihead_attn = self._mha()
        self._make_ffn_and_norms()

    @property
    def _attention_names(self):
        return ("self_attn", "multihead_attn") if self.cross_attention else ("self_attn",)

    def forward(self, tgt, memory=None, tgt_mask=None, memory_mask=None, tgt_key_mask=None, memory_key_mask=None,
                causal=True, self_bias=None, cross_bias=None, rotary=None, cache=None, training=None,
                return_attention=False):
        """tgt (B, T, d); memory (B, S, d) (required with cross-attention); tgt_mask (T, Tk) /
        (B, T, Tk) / (B, H, T, Tk) and memory_mask (…, T, S) boolean, True = attend; tgt_key_mask
        (B, Tk) and memory_key_mask (B, S), True = a real token; causal (default True): query i sees
        keys ≤ its absolute position; self_bias / cross_bias additive score biases; rotary: RoPE on the
        self-attention's Q, K; cache: a LayerKVCache (Tk = cached + T).

        Returns (B, T, d) [and (self_weights (B, H, T, Tk), cross_weights (B, H, T, S) or None)]."""
        training = self.training if training is None else bool(training)
        if self.cross_attention and memory is None and (cache is None or cache.memory_k is None):
            raise ValueError("TransformerDecoderLayer: this layer has cross-attention and needs memory (B, S, d); "
                             "build it with cross_attention=False for a decoder-only model")

        def sa(x):
            y, w = mha_attend(self.self_attn, x, mask=tgt_mask, key_mask=tgt_key_mask, causal=causal,
                              bias=self_bias, rotary=rotary, cache=cache, training=training)
            return self._drop(y, 1, training), w

        def ca(x):
            y, w = mha_attend(self.multihead_attn, x, memory if memory is not None else x, mask=memory_mask,
                              key_mask=memory_key_mask, bias=cross_bias, cache=cache, cross_cache=True,
                              training=training)
            return self._drop(y, 2, training), w

        x, w_self = self._residual(tgt, 1, sa)
        w_cross = None
        if self.cross_attention:
            x, w_cross = self._residual(x, 2, ca)
        x, _ = self._residual(x, self._n_norms, lambda h: (self._ff(h, training), None))
        return (x, (w_self, w_cross)) if return_attention else x


class _Stack(Module):
    keras_mask_args = ()      # its mask arguments are not Keras masks of its inputs

    def __init__(self, layer, num_layers, norm):
        super().__init__()
        if not isinstance(num_layers, (int, np.integer)) or num_layers <= 0:
            raise ValueError(f"{type(self).__name__}: num_layers must be a positive integer, got {num_layers!r}")
        self.layers = ModuleList([copy.deepcopy(layer) for _ in range(int(num_layers))])
        self.num_layers = int(num_layers)
        if norm is not None:
            self.norm = norm
        else:
            object.__setattr__(self, "norm", None)
        object.__setattr__(self, "built", True)

    def load_torch_state_dict(self, sd):
        """Load ``nn.TransformerEncoder`` / ``nn.TransformerDecoder``'s state dict: layers.{i}.* into each
        layer, norm.weight / norm.bias into the final norm. Returns self."""
        sd = {k: _np(v) for k, v in sd.items()}
        for i, layer in enumerate(self.layers):
            layer.load_torch_state_dict(_sub(sd, f"layers.{i}."))
        if self.norm is not None:
            self.norm.set_weights([sd["norm.weight"]] + ([sd["norm.bias"]] if self.norm.center else []))
        return self


class TransformerEncoder(_Stack):
    """N encoder layers (deep copies of ``encoder_layer``, so they start with equal weights, as in
    PyTorch) and an optional final ``norm`` (a LayerNormalization; use one with pre-norm layers).
    src (B, T, d) → (B, T, d) [and a list of N weights (B, H, T, T)]."""

    def __init__(self, encoder_layer, num_layers, norm=None):
        super().__init__(encoder_layer, num_layers, norm)

    def forward(self, src, src_mask=None, src_key_mask=None, causal=False, bias=None, rotary=None, training=None,
                return_attention=False):
        x, ws = src, []
        for layer in self.layers:
            x, w = layer(x, src_mask=src_mask, src_key_mask=src_key_mask, causal=causal, bias=bias, rotary=rotary,
                         training=training, return_attention=True)
            ws.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, ws) if return_attention else x


class TransformerDecoder(_Stack):
    """N decoder layers and an optional final ``norm``. tgt (B, T, d), memory (B, S, d) → (B, T, d)
    [and a list of N (self_weights, cross_weights)]. ``cache``: a :class:`KVCache` (one entry per layer;
    ``new_cache()`` makes one) for incremental decoding."""

    def __init__(self, decoder_layer, num_layers, norm=None):
        super().__init__(decoder_layer, num_layers, norm)

    def new_cache(self):
        return KVCache(self.num_layers)

    def forward(self, tgt, memory=None, tgt_mask=None, memory_mask=None, tgt_key_mask=None, memory_key_mask=None,
                causal=True, self_bias=None, cross_bias=None, rotary=None, cache=None, training=None,
                return_attention=False):
        if cache is not None and len(cache) != self.num_layers:
            raise ValueError(f"TransformerDecoder: cache has {len(cache)} layers, the decoder {self.num_layers}")
        x, ws = tgt, []
        for i, layer in enumerate(self.layers):
            x, w = layer(x, memory, tgt_mask=tgt_mask, memory_mask=memory_mask, tgt_key_mask=tgt_key_mask,
                         memory_key_mask=memory_key_mask, causal=causal, self_bias=self_bias, cross_bias=cross_bias,
                         rotary=rotary, cache=None if cache is None else cache[i], training=training,
                         return_attention=True)
            ws.append(w)
        if self.norm is not None:
            x = self.norm(x)
        return (x, ws) if return_attention else x
