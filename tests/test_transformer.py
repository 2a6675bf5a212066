"""Transformer blocks, stacks, KV cache and DecoderOnlyLM: float64 gradchecks over inputs and every
parameter (random upstream gradients), cached decoding = full causal forward (1e-12), generation."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import alibi_bias, RotaryEmbedding, sliding_window_mask
from tinyattn.transformer import (TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,
                                  TransformerDecoder, DecoderOnlyLM, KVCache, LayerKVCache)

D, H, FF = 8, 2, 12


def _t(a, grad=True):
    return ta.tensor(np.asarray(a, dtype=np.float64), dtype=np.float64, requires_grad=grad)


def _perturb(module, rng, scale=0.1):
    """Non-trivial LayerNorm gains and biases (they start at 1 and 0)."""
    for p in module.parameters():
        p.data = p.data + ta.backend.to_device(scale * rng.standard_normal(p.shape), p.device)
    return module


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_gradcheck(norm_first, activation, rng):
    layer = _perturb(TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation,
                                             norm_first=norm_first).astype(np.float64), rng)
    x = _t(rng.standard_normal((2, 4, D)))
    keep = np.array([[True] * 4, [True, True, True, False]])
    fn = lambda a: layer(a, src_key_mask=keep)                            # noqa: E731
    assert ta.gradcheck(fn, [x], params=layer.parameters())


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_gradcheck(norm_first, rng):
    layer = _perturb(TransformerDecoderLayer(D, H, FF, dropout=0.0, activation="gelu",
                                             norm_first=norm_first).astype(np.float64), rng)
    x, m = _t(rng.standard_normal((2, 4, D))), _t(rng.standard_normal((2, 3, D)))
    mkeep = np.array([[True] * 3, [True, False, True]])
    assert ta.gradcheck(lambda a, b: layer(a, b, memory_key_mask=mkeep), [x, m], params=layer.parameters())


def test_decoder_only_block_with_bias_and_rope_gradcheck(rng):
    layer = _perturb(TransformerDecoderLayer(D, H, FF, dropout=0.0, norm_first=True, cross_attention=False)
                     .astype(np.float64), rng)
    assert not hasattr(layer, "multihead_attn") and not hasattr(layer, "norm3")
    x = _t(rng.standard_normal((2, 5, D)))
    bias = alibi_bias(H, 5, dtype="float64")
    rope = RotaryEmbedding(D // H)
    assert ta.gradcheck(lambda a: layer(a, self_bias=bias, rotary=rope), [x], params=layer.parameters())


def test_stacks_gradcheck_and_attention_weights(rng):
    enc = TransformerEncoder(TransformerEncoderLayer(D, H, FF, 0.0, norm_first=True), 2,
                             norm=ta.nn.LayerNormalization(epsilon=1e-5)).astype(np.float64)
    dec = TransformerDecoder(TransformerDecoderLayer(D, H, FF, 0.0), 2).astype(np.float64)
    src, tgt = _t(rng.standard_normal((2, 5, D))), _t(rng.standard_normal((2, 3, D)))
    enc(src)
    np.testing.assert_array_equal(enc.layers[0].linear1.kernel.numpy(), enc.layers[1].linear1.kernel.numpy())
    assert enc.layers[0].linear1.kernel is not enc.layers[1].linear1.kernel      # copies, not shared
    _perturb(enc, rng)
    _perturb(dec, rng)
    params = enc.parameters() + dec.parameters()
    assert len(params) == len(set(map(id, params)))
    assert ta.gradcheck(lambda s, t: dec(t, enc(s)), [src, tgt], params=params)
    out, ws = dec(tgt, enc(src), return_attention=True)
    assert len(ws) == 2
    w_self, w_cross = ws[0]
    assert w_self.shape == (2, H, 3, 3) and w_cross.shape == (2, H, 3, 5)
    np.testing.assert_allclose(np.triu(w_self.numpy(), 1), 0)                    # causal
    np.testing.assert_allclose(w_cross.numpy().sum(-1), 1.0)


def test_cross_attention_reads_memory(rng):
    """The cross-attention is a first-class use of the decoder: changing the memory changes the output,
    and a masked memory position has no effect."""
    layer = TransformerDecoderLayer(D, H, FF, 0.0).astype(np.float64)
    x, m = _t(rng.standard_normal((1, 3, D)), False), rng.standard_normal((1, 4, D))
    keep = np.array([[True, True, True, False]])
    y = layer(x, _t(m, False), memory_key_mask=keep).numpy()
    m2 = m.copy()
    m2[0, 3] += 10.0
    np.testing.assert_allclose(layer(x, _t(m2, False), memory_key_mask=keep).numpy(), y, atol=1e-13)
    m2[0, 0] += 1.0
    assert np.abs(layer(x, _t(m2, False), memory_key_mask=keep).numpy() - y).max() > 1e-3
    with pytest.raises(ValueError, match="memory"):
        layer(x)


def test_dropout_only_in_training_and_seeded(rng):
    layer = TransformerEncoderLayer(D, H, FF, dropout=0.3).astype(np.float64)
    x = _t(rng.standard_normal((2, 4, D)), False)
    ta.manual_seed(3)
    a = layer(x).numpy()
    ta.manual_seed(3)
    b = layer(x).numpy()
    np.testing.assert_array_equal(a, b)
    layer.eval()
    e1, e2 = layer(x).numpy(), layer(x).numpy()
    np.testing.assert_array_equal(e1, e2)
    assert np.abs(a - e1).max() > 1e-3


# ---- KV cache --------------------------------------------------------------------------------
@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_kv_cache_equals_full_forward(norm_first, rng):
    dec = TransformerDecoder(TransformerDecoderLayer(D, H, FF, 0.0, norm_first=norm_first), 3).astype(np.float64)
    _perturb(dec, rng)
    tgt, mem = _t(rng.standard_normal((2, 7, D)), False), _t(rng.standard_normal((2, 5, D)), False)
    mkeep = np.ones((2, 5), bool)
    mkeep[1, 3:] = False
    full = dec(tgt, mem, memory_key_mask=mkeep).numpy()
    cache = dec.new_cache()
    steps = [dec(tgt[:, :3], mem, memory_key_mask=mkeep, cache=cache).numpy()]       # a prompt, then
    mk = cache[0].memory_k
    for t in range(3, 7):                                                            # one token at a time
        steps.append(dec(tgt[:, t:t + 1], mem, memory_key_mask=mkeep, cache=cache).numpy())
    assert cache[0].memory_k is mk                                                   # memory projected once
    assert cache.offset == 7 and cache[2].self_k.shape == (2, H, 7, D // H)
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=0, atol=1e-12)


@pytest.mark.parametrize("positions", ["rope", "learned", "sinusoidal", None])
def test_lm_kv_cache_equals_full_forward(positions, rng):
    lm = DecoderOnlyLM(13, D, H, 2, FF, max_len=16, positions=positions).astype(np.float64)
    _perturb(lm, rng)
    toks = rng.integers(0, 13, (3, 10))
    full = lm(toks).numpy()
    cache = lm.new_cache()
    steps = [lm(toks[:, t:t + 1], cache=cache).numpy() for t in range(10)]
    np.testing.assert_allclose(np.concatenate(steps, axis=1), full, rtol=0, atol=1e-12)
    # the attention of the cached step is the last row of the full attention
    _, ws_full = lm(toks, return_attention=True)
    cache = lm.new_cache()
    lm(toks[:, :9], cache=cache)
    _, ws_step = lm(toks[:, 9:], cache=cache, return_attention=True)
    np.testing.assert_allclose(ws_step[1].numpy()[:, :, 0], ws_full[1].numpy()[:, :, 9], atol=1e-12)


def test_lm_gradcheck(rng):
    lm = DecoderOnlyLM(7, D, H, 2, FF, max_len=8, positions="learned").astype(np.float64)
    toks = rng.integers(0, 7, (2, 5))
    _perturb(lm, rng)
    s = _t(1.0)          # the tokens are integers: a scale on the logits is the checked input
    assert ta.gradcheck(lambda a: lm(toks) * a, [s], params=lm.parameters())
    lm2 = _perturb(DecoderOnlyLM(7, D, H, 1, FF, positions="rope").astype(np.float64), rng)
    assert ta.gradcheck(lambda a: lm2(toks) * a, [s], params=lm2.parameters())


def test_lm_causal_and_generation(rng):
    lm = DecoderOnlyLM(11, D, H, 2, FF, max_len=12, positions="learned").astype(np.float64)
    _perturb(lm, rng, 0.5)
    toks = rng.integers(0, 11, (2, 6))
    a = lm(toks).numpy()
    t2 = toks.copy()
    t2[:, 4] = (t2[:, 4] + 1) % 11
    b = lm(t2).numpy()
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-13)                      # no look-ahead
    assert np.abs(a[:, 4:] - b[:, 4:]).max() > 1e-6
    prompt = toks[:, :3]
    g1 = lm.generate(prompt, 5, greedy=True)
    g2 = lm.generate(prompt, 5, greedy=True, use_cache=False)
    np.testing.assert_array_equal(g1, g2)
    np.testing.assert_array_equal(g1[:, :3], prompt)
    np.testing.assert_array_equal(lm.generate(prompt, 5, top_k=1, seed=4), g1)        # top-1 = greedy
    s1, s2 = lm.generate(prompt, 8, temperature=2.0, seed=7), lm.generate(prompt, 8, temperature=2.0, seed=7)
    np.testing.assert_array_equal(s1, s2)
    assert s1.shape == (2, 11)
    # the greedy token really is the argmax of the full forward's last logits
    full = lm(g1[:, :-1]).numpy()
    np.testing.assert_array_equal(full[:, -1].argmax(-1), g1[:, -1])
    # learned positions past max_len: generation slides the window instead of failing
    assert lm.generate(prompt, 12, greedy=True).shape == (2, 15)
    with pytest.raises(ValueError, match="max_len"):
        lm(rng.integers(0, 11, (1, 13)))


@pytest.mark.parametrize("positions", ["rope", "learned"])
def test_generation_slides_a_max_len_window(rng, positions):
    """Past max_len every step sees the last max_len tokens (nanoGPT's crop), with or without the
    cache; each token is the argmax of a full forward over exactly that window."""
    lm = DecoderOnlyLM(11, D, H, 2, FF, max_len=6, positions=positions).astype(np.float64)
    _perturb(lm, rng, 0.5)
    prompt = rng.integers(0, 11, (2, 3))
    g1 = lm.generate(prompt, 10, greedy=True)
    g2 = lm.generate(prompt, 10, greedy=True, use_cache=False)
    np.testing.assert_array_equal(g1, g2)
    for t in range(3, 13):
        ctx = g1[:, max(0, t - 6):t]
        np.testing.assert_array_equal(lm(ctx).numpy()[:, -1].argmax(-1), g1[:, t])


def test_top_k_sampling_support(rng):
    logits = np.array([[0.0, 5.0, 4.0, -1.0, 3.0]])
    seen = {int(DecoderOnlyLM._pick(logits, 1.0, 2, False, np.random.default_rng(s))[0]) for s in range(200)}
    assert seen == {1, 2}
    seen = {int(DecoderOnlyLM._pick(logits, 100.0, None, False, np.random.default_rng(s))[0]) for s in range(300)}
    assert seen == {0, 1, 2, 3, 4}                                          # high temperature: near uniform


def test_sliding_window_in_encoder(rng):
    layer = TransformerEncoderLayer(D, H, FF, 0.0).astype(np.float64)
    x = rng.standard_normal((1, 6, D))
    m = sliding_window_mask(6, 6, 2)
    y, w = layer(_t(x, False), src_mask=m, return_attention=True)
    np.testing.assert_array_equal(w.numpy()[0, 0] > 0, ta.backend.as_numpy(m))
    x2 = x.copy()
    x2[0, 0] += 5.0                                  # position 0 is outside the window of query 3+
    y2 = layer(_t(x2, False), src_mask=m).numpy()
    np.testing.assert_allclose(y2[0, 2:], y.numpy()[0, 2:], atol=1e-13)


def test_errors_name_the_layer():
    with pytest.raises(ValueError, match="TransformerEncoderLayer: d_model"):
        TransformerEncoderLayer(10, 3)
    with pytest.raises(ValueError, match="DecoderOnlyLM"):
        DecoderOnlyLM(5, 8, 2, 1, positions="alibi")
    layer = TransformerDecoderLayer(D, H, FF, 0.0, cross_attention=False)
    c = LayerKVCache()
    layer(ta.tensor(np.zeros((2, 1, D), np.float32)), cache=c)
    with pytest.raises(ValueError, match="cache"):
        layer(ta.tensor(np.zeros((3, 1, D), np.float32)), cache=c)
    assert len(KVCache(3)) == 3


@pytest.mark.parametrize("norm_first", [False, True])
def test_blocks_gradgradcheck(norm_first, rng):
    enc = _perturb(TransformerEncoderLayer(D, H, FF, 0.0, activation="gelu", norm_first=norm_first)
                   .astype(np.float64), rng)
    x = _t(rng.standard_normal((2, 3, D)))
    assert ta.gradgradcheck(lambda a: enc(a, causal=True), [x], params=enc.parameters())
    dec = _perturb(TransformerDecoderLayer(D, H, FF, 0.0, norm_first=norm_first).astype(np.float64), rng)
    m = _t(rng.standard_normal((2, 4, D)))
    bias = alibi_bias(H, 3, dtype="float64")                     # the textbook (biased) attention path too
    assert ta.gradgradcheck(lambda a, b: dec(a, b, self_bias=bias), [x, m], params=dec.parameters())
