"""A decoder-only (GPT-style) language model on the Transformer blocks, with KV-cached generation.

    h₀ = Embed(tokens) (+ P[positions] for learned / sinusoidal positions)      (B, T, d)
    h_l = DecoderBlock_l(h_{l−1})   causal self-attention (+ RoPE on Q, K) and FFN, l = 1..N
    logits = LN(h_N) W_out + b_out                                              (B, T, V)

``forward(tokens, cache=cache)`` processes only the new tokens at positions cache.offset.. and
appends their keys/values, so generating token by token costs O(T) per step instead of O(T²), and
gives the same logits as the full causal forward.
"""
import numpy as np

from .. import backend
from ..autograd import Tensor, array_of, no_grad
from ..nn import Module, ModuleList, Dense, Embedding, LayerNormalization
from ..attention import RotaryEmbedding, LearnedPositionalEmbedding, SinusoidalPositionalEncoding
from .attention import KVCache
from .layers import TransformerDecoderLayer

__all__ = ["DecoderOnlyLM"]


class DecoderOnlyLM(Module):
    """A character/token-level causal Transformer LM (GPT-2-like: pre-norm by default, final LN).

    Args: vocab_size V, d_model d, nhead H, num_layers N, dim_feedforward (default 4d), max_len (the
    longest context for learned/sinusoidal positions), positions "rope" | "learned" | "sinusoidal" |
    None, dropout, activation ("gelu"), norm_first (True), dtype.

    Submodules: token_embedding (V, d), positional (LearnedPositionalEmbedding / Sinusoidal… / None),
    rotary (RotaryEmbedding(d/H) or None), layers (N × TransformerDecoderLayer(cross_attention=False)),
    norm (final LayerNormalization, pre-norm only), head (Dense d → V).

    forward(tokens (B, T) ints, cache=None, return_attention=False, training=None) → logits (B, T, V)
    [and a list of N attention weights (B, H, T, T_total)].
    """

    def __init__(self, vocab_size, d_model=128, nhead=4, num_layers=2, dim_feedforward=None, max_len=256,
                 positions="rope", dropout=0.0, activation="gelu", norm_first=True, dtype="float32"):
        super().__init__()
        if positions not in ("rope", "learned", "sinusoidal", None):
            raise ValueError(f"DecoderOnlyLM: positions must be 'rope', 'learned', 'sinusoidal' or None, "
                             f"got {positions!r}")
        self.vocab_size, self.d_model, self.nhead = int(vocab_size), int(d_model), int(nhead)
        self.num_layers, self.max_len, self.positions = int(num_layers), int(max_len), positions
        self.dtype = np.dtype(dtype)
        ff = 4 * self.d_model if dim_feedforward is None else int(dim_feedforward)
        self.token_embedding = Embedding(self.vocab_size, self.d_model, dtype=dtype)
        object.__setattr__(self, "rotary", None)
        object.__setattr__(self, "positional", None)
        if positions == "learned":
            self.positional = LearnedPositionalEmbedding(self.max_len, self.d_model, dtype=dtype)
        elif positions == "sinusoidal":
            self.positional = SinusoidalPositionalEncoding(self.d_model, max_len=self.max_len, dtype=dtype)
        elif positions == "rope":
            self.rotary = RotaryEmbedding(self.d_model // self.nhead)
        self.layers = ModuleList([TransformerDecoderLayer(self.d_model, self.nhead, ff, dropout, activation,
                                                          norm_first, dtype=dtype, cross_attention=False)
                                  for _ in range(self.num_layers)])
        if norm_first:
            self.norm = LayerNormalization(epsilon=1e-5, dtype=dtype)
            self.norm.build((None, None, self.d_model))
        else:
            object.__setattr__(self, "norm", None)
        self.head = Dense(self.vocab_size, input_dim=self.d_model, dtype=dtype)
        object.__setattr__(self, "built", True)

    def new_cache(self):
        """An empty :class:`KVCache` with one entry per layer."""
        return KVCache(self.num_layers)

    def forward(self, tokens, cache=None, return_attention=False, training=None):
        ids = tokens.data if isinstance(tokens, Tensor) else tokens
        if getattr(ids, "ndim", None) != 2:
            raise ValueError(f"DecoderOnlyLM: tokens must be (B, T) integers, got shape {getattr(ids, 'shape', None)}")
        offset = 0 if cache is None else cache.offset
        T = ids.shape[1]
        if self.positional is not None and offset + T > self.max_len:
            raise ValueError(f"DecoderOnlyLM: positions up to {offset + T} exceed max_len {self.max_len} "
                             f"({self.positions} positions); crop the context or use positions='rope'")
        if cache is not None and len(cache) != self.num_layers:
            raise ValueError(f"DecoderOnlyLM: cache has {len(cache)} layers, the model {self.num_layers}")
        xp = backend.get_array_module(self.token_embedding.embeddings.data)
        h = self.token_embedding(xp.asarray(ids))
        if self.positional is not None:
            h = self.positional(h, offset=offset)
        ws = []
        for i, layer in enumerate(self.layers):
            h, (w, _) = layer(h, causal=True, rotary=self.rotary, cache=None if cache is None else cache[i],
                              training=training, return_attention=True)
            ws.append(w)
        if self.norm is not None:
            h = self.norm(h)
        logits = self.head(h)
        return (logits, ws) if return_attention else logits

    def generate(self, prompt, max_new_tokens, temperature=1.0, top_k=None, greedy=False, seed=None,
                 use_cache=True):
        """Continue ``prompt`` (B, T₀) ints by ``max_new_tokens`` tokens → (B, T₀ + n) NumPy ints.

        Each step: logits of the last position ℓ (V,), then greedy argmax ℓ, or sample from
        softmax(ℓ / temperature) restricted to the ``top_k`` largest logits. Sampling draws from
        ``np.random.default_rng(seed)`` (``seed=None``: tinyattn's seeded generator), on the host.
        With ``use_cache`` the prompt is run once and each new token attends through the KV cache;
        otherwise the whole context is recomputed each step. Runs in eval mode without recording a
        graph.

        The context never exceeds ``max_len``, the longest the model was built (and trained) for:
        past it, each step sees the last ``max_len`` tokens (a sliding window, recomputed: learned
        and sinusoidal positions end there, and RoPE scores at offsets never seen in training
        turn the text to noise), as nanoGPT's ``generate`` crops to its block size. The cache
        serves every step up to ``max_len``, so cached and uncached generation see the same
        contexts and give the same tokens.
        """
        if temperature <= 0 and not greedy:
            raise ValueError(f"DecoderOnlyLM.generate: temperature must be > 0 (or greedy=True), got {temperature}")
        if top_k is not None and (top_k <= 0 or top_k > self.vocab_size):
            raise ValueError(f"DecoderOnlyLM.generate: top_k must be in 1..{self.vocab_size}, got {top_k}")
        out = np.array(backend.as_numpy(array_of(prompt)), dtype=np.int64)
        if out.ndim == 1:
            out = out[None]
        if out.ndim != 2 or out.shape[1] == 0:
            raise ValueError(f"DecoderOnlyLM.generate: prompt must be (B, T₀) with T₀ ≥ 1, got {out.shape}")
        rng = np.random.default_rng(seed) if seed is not None else backend.rng(np)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                cache = self.new_cache() if use_cache else None
                step_in = out
                for _ in range(max_new_tokens):
                    if use_cache and out.shape[1] > self.max_len:
                        use_cache, cache = False, None      # the window is full: slide it from here on
                    if not use_cache:
                        step_in = out[:, -self.max_len:]
                    logits = backend.as_numpy(self.forward(step_in, cache=cache).data[:, -1]).astype(np.float64)
                    nxt = self._pick(logits, temperature, top_k, greedy, rng)
                    out = np.concatenate([out, nxt[:, None]], axis=1)
                    step_in = nxt[:, None] if use_cache else out
        finally:
            self.train(was_training)
        return out

    @staticmethod
    def _pick(logits, temperature, top_k, greedy, rng):
        """logits (B, V) float64 on the host → next tokens (B,)."""
        if greedy:
            return logits.argmax(axis=-1)
        z = logits / temperature
        if top_k is not None:
            kth = np.sort(z, axis=-1)[:, -top_k][:, None]
            z = np.where(z < kth, -np.inf, z)
        z = z - z.max(axis=-1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=-1, keepdims=True)
        u = rng.random((p.shape[0], 1))
        return np.minimum((np.cumsum(p, axis=-1) < u).sum(axis=-1), p.shape[1] - 1)
