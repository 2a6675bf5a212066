"""PyTorch semantics of scaled_dot_product_attention without PyTorch: additive float attn_mask, causal
alignment (upper-left / lower-right, CausalBias), enable_gqa, fully masked rows, argument aliases, and
MultiHeadAttention.torch_forward's mask meanings. Values from NumPy formulas written here; float64
gradcheck (random upstream gradient) and gradgradcheck of every new path. The live comparison with
torch 2.13 is tests/reference/test_torch_sdpa_semantics.py."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (scaled_dot_product_attention as sdpa, causal_mask, CausalBias,
                                causal_upper_left, causal_lower_right, as_mask, MultiHeadAttention)


def T(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape), dtype=np.float64, requires_grad=grad)


def _np(t):
    return ta.backend.as_numpy(t.data)


def ref_attention(q, k, v, add=None, keep=None, scale=None):
    """NumPy: softmax(q kᵀ·scale + add) over kept entries, a row with no finite kept score -> 0."""
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    s = q @ np.swapaxes(k, -1, -2) * scale
    if add is not None:
        s = s + add
    if keep is not None:
        s = np.where(keep, s, -np.inf)
    m = s.max(axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    e = np.exp(s - m)
    z = e.sum(axis=-1, keepdims=True)
    p = e / np.where(z == 0, 1.0, z)
    return p @ v, p


# ------------------------------------------------------------------ causal alignment
def test_causal_mask_alignments():
    ul = np.array([[1, 0, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], bool)
    lr = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(3, 5)), ul)
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(3, 5, align="upper_left")), ul)
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(3, 5, align="lower_right")), lr)
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(3, 5, align="bottom_right")), lr)
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(4, 4, align="lower_right")), ta.backend.as_numpy(causal_mask(4, 4)))
    tall = ta.backend.as_numpy(causal_mask(5, 3, align="lower_right"))            # Tq > Tk: the first 2 rows keep nothing
    np.testing.assert_array_equal(tall.sum(axis=1), [0, 0, 1, 2, 3])
    with pytest.raises(ValueError, match="causal_mask: align"):
        causal_mask(3, 5, align="diagonal")


def test_causal_bias_objects():
    b = causal_lower_right(3, 5)
    assert isinstance(b, CausalBias) and b.variant == "lower_right" and b.shape == (3, 5)
    assert "lower_right" in repr(b)
    np.testing.assert_array_equal(np.asarray(b), ta.backend.as_numpy(causal_mask(3, 5, align="lower_right")))
    np.testing.assert_array_equal(np.asarray(causal_upper_left(3, 5)), ta.backend.as_numpy(causal_mask(3, 5)))
    bias = ta.backend.as_numpy(b.to_bias())
    assert bias.dtype == np.float32
    np.testing.assert_array_equal(bias == 0, np.asarray(b))
    assert np.all(np.isneginf(bias[~np.asarray(b)]))
    np.testing.assert_array_equal(ta.backend.as_numpy(as_mask(b, None)), np.asarray(b))   # as_mask takes it
    with pytest.raises(ValueError, match="CausalBias: variant"):
        CausalBias("left", 3, 5)
    with pytest.raises(ValueError, match="CausalBias: seq_len_kv"):
        causal_upper_left(3, 0)


@pytest.mark.parametrize("tq,tk", [(3, 5), (5, 3), (4, 4)])
@pytest.mark.parametrize("variant", ["upper_left", "lower_right"])
def test_causal_variants_values(backend, tq, tk, variant, rng):
    q, k, v = T(rng, 2, 2, tq, 4), T(rng, 2, 2, tk, 4), T(rng, 2, 2, tk, 3)
    keep = causal_mask(tq, tk, np, align=variant)
    ref, refw = ref_attention(_np(q), _np(k), _np(v), keep=keep)
    make = causal_upper_left if variant == "upper_left" else causal_lower_right
    outs = [sdpa(q, k, v, causal=variant, return_weights=True),
            sdpa(q, k, v, is_causal=variant, return_weights=True),
            sdpa(q, k, v, attn_mask=make(tq, tk), return_weights=True),
            sdpa(q, k, v, attn_mask=keep, return_weights=True),
            sdpa(q, k, v, attn_mask=make(tq, tk).to_bias(q, np.float64), return_weights=True)]
    if variant == "upper_left":
        outs.append(sdpa(q, k, v, is_causal=True, return_weights=True))
    for out, w in outs:
        np.testing.assert_allclose(_np(out), ref, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_np(w), refw, rtol=1e-12, atol=1e-14)
        assert not np.isnan(_np(out)).any()
    if variant == "lower_right" and tq > tk:               # rows with no key: exactly 0
        assert np.all(_np(outs[0][0])[..., : tq - tk, :] == 0)


def test_causal_bias_errors(rng):
    q, k, v = T(rng, 1, 3, 4), T(rng, 1, 5, 4), T(rng, 1, 5, 4)
    with pytest.raises(ValueError, match="CausalBias should not be used with causal=True"):
        sdpa(q, k, v, attn_mask=causal_upper_left(3, 5), is_causal=True)
    with pytest.raises(ValueError, match=r"\(Tq, Tk\) = \(5, 3\)"):
        sdpa(q, k, v, attn_mask=causal_lower_right(5, 3))
    with pytest.raises(ValueError, match="is_causal / causal must be"):
        sdpa(q, k, v, is_causal="diagonal")


# ------------------------------------------------------------------ float attn_mask is added
def test_float_attn_mask_is_added(backend, rng):
    q, k, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 3)
    add = rng.standard_normal((2, 3, 5))
    ref, refw = ref_attention(_np(q), _np(k), _np(v), add=add)
    out, w = sdpa(q, k, v, attn_mask=add, return_weights=True)
    np.testing.assert_allclose(_np(out), ref, rtol=1e-12)
    np.testing.assert_allclose(_np(w), refw, rtol=1e-12)
    np.testing.assert_allclose(_np(sdpa(q, k, v, bias=add)), ref, rtol=1e-12)
    np.testing.assert_allclose(_np(sdpa(q, k, v, attn_mask=add.tolist())), ref, rtol=1e-12)   # a list of floats
    # a 0/1 FLOAT attn_mask is added (PyTorch), while mask= reads it as keep/drop (tinyattn): they differ
    zo = (rng.random((3, 5)) > 0.5).astype(np.float64)
    zo[:, 0] = 1
    np.testing.assert_allclose(_np(sdpa(q, k, v, attn_mask=zo)), ref_attention(_np(q), _np(k), _np(v), add=zo)[0],
                               rtol=1e-12)
    np.testing.assert_allclose(_np(sdpa(q, k, v, mask=zo)), ref_attention(_np(q), _np(k), _np(v), keep=zo > 0)[0],
                               rtol=1e-12)
    # a bool attn_mask masks, and equals mask=
    bm = zo > 0
    np.testing.assert_allclose(_np(sdpa(q, k, v, attn_mask=bm)), _np(sdpa(q, k, v, mask=bm)), rtol=0, atol=0)
    # float attn_mask and bias= are both added; a bool mask= is ANDed with them
    b2 = rng.standard_normal((5,))
    np.testing.assert_allclose(_np(sdpa(q, k, v, attn_mask=add, bias=b2, mask=bm)),
                               ref_attention(_np(q), _np(k), _np(v), add=add + b2, keep=bm)[0], rtol=1e-12)


def test_attn_mask_kinds_refused(rng):
    q, k, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 3)
    with pytest.raises(ValueError, match="attn_mask must be boolean .* or floating"):
        sdpa(q, k, v, attn_mask=np.ones((3, 5), np.int64))
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, attn_mask=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="does not broadcast"):
        sdpa(q, k, v, attn_mask=np.ones((4, 5), bool))
    with pytest.raises(TypeError, match="attn_mask / bias Tensor is float32 but q is float64"):
        sdpa(q, k, v, attn_mask=ta.tensor(np.zeros((3, 5)), dtype=np.float32))
    plus = np.zeros((3, 5))
    plus[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"\+inf"):
        sdpa(q, k, v, attn_mask=plus)


def test_fully_masked_rows_through_minus_inf(backend, rng):
    """A row that is -inf everywhere: zero weights, zero output, zero gradients (PyTorch 2.13 CPU);
    a row partly -inf: the softmax over the rest."""
    q, k, v = T(rng, 2, 4, 3), T(rng, 2, 6, 3), T(rng, 2, 6, 5)
    add = rng.standard_normal((2, 4, 6))
    add[0, 1] = -np.inf
    add[1, 3, :4] = -np.inf
    out, w = sdpa(q, k, v, attn_mask=add, return_weights=True)
    o, wn = _np(out), _np(w)
    assert not np.isnan(o).any() and not np.isnan(wn).any()
    assert np.all(o[0, 1] == 0) and np.all(wn[0, 1] == 0)
    np.testing.assert_allclose(wn[1, 3, 4:].sum(), 1.0, rtol=1e-12)
    assert np.all(wn[1, 3, :4] == 0)
    keep = np.isfinite(add)
    np.testing.assert_allclose(o, ref_attention(_np(q), _np(k), _np(v), add=np.where(keep, add, 0), keep=keep)[0],
                               rtol=1e-12, atol=1e-15)
    gq, gk, gv = ta.grad(out, [q, k, v], np.ones(out.shape))
    assert np.all(_np(gq)[0, 1] == 0)
    assert all(np.isfinite(_np(g)).all() for g in (gq, gk, gv))


def test_nan_in_float_mask_propagates(rng):
    """NaN is never produced silently, and never swallowed: a NaN in the mask makes that row NaN
    (as in PyTorch); the other rows stay finite."""
    q, k, v = T(rng, 1, 3, 4), T(rng, 1, 5, 4), T(rng, 1, 5, 3)
    add = np.zeros((3, 5))
    add[2, 1] = np.nan
    o = _np(sdpa(q, k, v, attn_mask=add))
    assert np.isnan(o[0, 2]).all() and np.isfinite(o[0, :2]).all()


# ------------------------------------------------------------------ enable_gqa
def _repeat_interleave(x, g):
    return np.repeat(x, g, axis=-3)


@pytest.mark.parametrize("hq,hk,hv", [(6, 2, 2), (6, 3, 3), (6, 1, 1), (6, 2, 3), (4, 4, 4)])
def test_enable_gqa_values(backend, hq, hk, hv, rng):
    q, k, v = T(rng, 2, hq, 3, 4), T(rng, 2, hk, 5, 4), T(rng, 2, hv, 5, 2)
    K, V = _repeat_interleave(_np(k), hq // hk), _repeat_interleave(_np(v), hq // hv)
    keep = rng.random((2, hq, 3, 5)) > 0.3
    add = rng.standard_normal((hq, 1, 5))
    for kw, ref in ((dict(), ref_attention(_np(q), K, V)),
                    (dict(attn_mask=keep), ref_attention(_np(q), K, V, keep=keep)),
                    (dict(attn_mask=add), ref_attention(_np(q), K, V, add=add)),
                    (dict(is_causal="lower_right"), ref_attention(_np(q), K, V, keep=causal_mask(3, 5, np, "lower_right")))):
        out, w = sdpa(q, k, v, enable_gqa=True, return_weights=True, **kw)
        assert out.shape == (2, hq, 3, 2) and w.shape == (2, hq, 3, 5)
        np.testing.assert_allclose(_np(out), ref[0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(_np(w), ref[1], rtol=1e-12, atol=1e-14)


def test_enable_gqa_errors(rng):
    q, k, v = T(rng, 2, 6, 3, 4), T(rng, 2, 4, 5, 4), T(rng, 2, 4, 5, 2)
    with pytest.raises(ValueError, match="must divide"):
        sdpa(q, k, v, enable_gqa=True)
    with pytest.raises(ValueError, match="enable_gqa=True"):
        sdpa(q, k, v)                                  # fewer kv heads without enable_gqa
    with pytest.raises(ValueError, match="needs a head axis"):
        sdpa(T(rng, 3, 4), T(rng, 5, 4), T(rng, 5, 4), enable_gqa=True)


# ------------------------------------------------------------------ PyTorch names, positional order
def test_pytorch_argument_names_and_aliases(rng):
    q, k, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 3)
    add = rng.standard_normal((3, 5))
    a = sdpa(q, k, v, add, 0.0, False, 0.3)           # PyTorch's positional order
    b = sdpa(q, k, v, attn_mask=add, dropout_p=0.0, is_causal=False, scale=0.3)
    np.testing.assert_array_equal(_np(a), _np(b))
    np.testing.assert_array_equal(_np(sdpa(q, k, v, dropout_p=0.5, training=False)), _np(sdpa(q, k, v)))
    np.testing.assert_array_equal(_np(sdpa(q, k, v, causal=True)), _np(sdpa(q, k, v, is_causal=True)))
    sdpa(q, k, v, causal=True, is_causal=True)         # the same value twice is fine
    np.testing.assert_array_equal(_np(sdpa(q, k, v, causal=True, is_causal=False)),   # PyTorch's default
                                  _np(sdpa(q, k, v, causal=True)))                    # gives way
    with pytest.raises(ValueError, match="two names for one argument"):
        sdpa(q, k, v, causal="lower_right", is_causal=True)
    with pytest.raises(ValueError, match="two names for one argument"):
        sdpa(q, k, v, dropout=0.1, dropout_p=0.2)
    with pytest.raises(ValueError, match="dropout_p must be in"):
        sdpa(q, k, v, dropout_p=1.0)


def test_dropout_p_zero_equals_no_dropout_and_is_seeded(rng):
    q, k, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 3)
    add = rng.standard_normal((3, 5))
    np.testing.assert_array_equal(_np(sdpa(q, k, v, attn_mask=add, dropout_p=0.0)), _np(sdpa(q, k, v, attn_mask=add)))
    ta.manual_seed(3)
    a = _np(sdpa(q, k, v, attn_mask=add, dropout_p=0.5))
    ta.manual_seed(3)
    b = _np(sdpa(q, k, v, attn_mask=add, dropout_p=0.5))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, _np(sdpa(q, k, v, attn_mask=add)))


# ------------------------------------------------------------------ float64 gradcheck of every new path
def test_gradcheck_float_attn_mask_tensor(rng):
    q, k, v = T(rng, 2, 2, 3, 4), T(rng, 2, 2, 5, 4), T(rng, 2, 2, 5, 3)
    m = T(rng, 2, 3, 5)                                 # per-head float mask, learnable
    fn = lambda q, k, v, m: sdpa(q, k, v, attn_mask=m, return_weights=True)   # noqa: E731
    assert ta.gradcheck(fn, [q, k, v, m])
    assert ta.gradgradcheck(fn, [q, k, v, m])


def test_gradcheck_float_attn_mask_with_minus_inf_rows(rng):
    q, k, v = T(rng, 2, 4, 3), T(rng, 2, 6, 3), T(rng, 2, 6, 2)
    add = rng.standard_normal((2, 4, 6))
    add[0, 1] = -np.inf
    add[1, 2, :3] = -np.inf
    fn = lambda q, k, v: sdpa(q, k, v, attn_mask=add, is_causal="lower_right", return_weights=True)   # noqa: E731
    assert ta.gradcheck(fn, [q, k, v])
    assert ta.gradgradcheck(fn, [q, k, v])


@pytest.mark.parametrize("tq,tk", [(3, 5), (5, 3)])
def test_gradcheck_lower_right(tq, tk, rng):
    q, k, v = T(rng, 2, 2, tq, 4), T(rng, 2, 2, tk, 4), T(rng, 2, 2, tk, 3)
    def dropped(q, k, v):                               # the same dropout mask at every evaluation
        ta.manual_seed(0)
        return sdpa(q, k, v, attn_mask=causal_lower_right(tq, tk), dropout_p=0.3)

    for fn in (lambda q, k, v: sdpa(q, k, v, is_causal="lower_right", return_weights=True), dropped):
        assert ta.gradcheck(fn, [q, k, v])
        assert ta.gradgradcheck(fn, [q, k, v])


@pytest.mark.parametrize("hq,hk,hv", [(6, 2, 2), (6, 2, 3)])
def test_gradcheck_enable_gqa(hq, hk, hv, rng):
    q, k, v = T(rng, 2, hq, 3, 4), T(rng, 2, hk, 5, 4), T(rng, 2, hv, 5, 2)
    m = T(rng, hq, 3, 5)
    keep = rng.random((2, 1, 3, 5)) > 0.3
    for fn, args in ((lambda q, k, v: sdpa(q, k, v, enable_gqa=True, attn_mask=keep, is_causal=True,
                                           return_weights=True), [q, k, v]),
                     (lambda q, k, v, m: sdpa(q, k, v, m, enable_gqa=True, return_weights=True), [q, k, v, m])):
        assert ta.gradcheck(fn, args)
        assert ta.gradgradcheck(fn, args)


# ------------------------------------------------------------------ MultiHeadAttention.torch_forward
def _mha(rng, E=8, H=2, use_bias=True):
    m = MultiHeadAttention(H, E // H, use_bias=use_bias, dtype="float64")
    m.build((E,), (E,), (E,))
    m.set_weights([rng.standard_normal(w.shape) for w in m.get_weights()])
    return m


def test_torch_forward_masks_mean_what_pytorch_says(rng):
    m = _mha(rng)
    x, y = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 8))
    ignore = np.zeros((2, 4), bool)
    ignore[0, -2:] = True
    o, w = m.torch_forward(x, y, y, key_padding_mask=ignore)        # True = IGNORE (PyTorch)
    ok, wk = m(x, y, value_mask=~ignore, return_attention_scores=True, training=False)  # True = attend (Keras)
    np.testing.assert_allclose(_np(o), _np(ok), rtol=1e-12)
    np.testing.assert_allclose(_np(w), _np(wk).mean(axis=1), rtol=1e-12)
    fl = np.where(ignore, -np.inf, 0.0)                             # the same as a float mask
    np.testing.assert_allclose(_np(m.torch_forward(x, y, y, key_padding_mask=fl)[0]), _np(o), rtol=1e-12)
    am = np.triu(np.ones((3, 4), bool), 1)                          # attn_mask True = not allowed
    o2, w2 = m.torch_forward(x, y, y, attn_mask=am, average_attn_weights=False)
    o2k, w2k = m(x, y, attention_mask=~am[None], return_attention_scores=True, training=False)
    np.testing.assert_allclose(_np(o2), _np(o2k), rtol=1e-12)
    np.testing.assert_allclose(_np(w2), _np(w2k), rtol=1e-12)
    # PyTorch's order is (query, KEY, value); forward's is Keras's (query, value, key)
    z = rng.standard_normal((2, 4, 8))
    np.testing.assert_allclose(_np(m.torch_forward(x, z, y)[0]), _np(m(x, y, z, training=False)), rtol=1e-12)
    assert m.torch_forward(x, y, y, need_weights=False)[1] is None
    # unbatched (L, E)
    ou, wu = m.torch_forward(x[0], y[0], y[0], key_padding_mask=ignore[0])
    np.testing.assert_allclose(_np(ou), _np(o)[0], rtol=1e-12)
    np.testing.assert_allclose(_np(wu), _np(w)[0], rtol=1e-12)


def test_torch_forward_all_keys_ignored_is_finite(rng):
    m = _mha(rng)
    x, y = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 8))
    ignore = np.zeros((2, 4), bool)
    ignore[1] = True
    o, w = m.torch_forward(x, y, y, key_padding_mask=ignore)
    assert np.isfinite(_np(o)).all() and np.all(_np(w)[1] == 0)
    np.testing.assert_allclose(_np(o)[1], np.broadcast_to(_np(m.output_bias), (3, 8)), rtol=1e-12)


def test_torch_forward_errors(rng):
    m = _mha(rng)
    x, y = rng.standard_normal((2, 3, 8)), rng.standard_normal((2, 4, 8))
    with pytest.raises(ValueError, match="is_causal=True is only a hint"):
        m.torch_forward(x, y, y, is_causal=True)
    with pytest.raises(ValueError, match="only bool .* and floating"):
        m.torch_forward(x, y, y, key_padding_mask=np.zeros((2, 4), np.int64))
    with pytest.raises(ValueError, match=r"key_padding_mask must be \(B, S\)"):
        m.torch_forward(x, y, y, key_padding_mask=np.zeros((2, 3), bool))
    with pytest.raises(ValueError, match=r"attn_mask must be \(L, S\)"):
        m.torch_forward(x, y, y, attn_mask=np.zeros((3, 3)))
    am = np.triu(np.ones((3, 4), bool), 1)                # is_causal with its mask: the mask's result
    np.testing.assert_array_equal(_np(m.torch_forward(x, y, y, attn_mask=am, is_causal=True)[0]),
                                  _np(m.torch_forward(x, y, y, attn_mask=am)[0]))


def test_torch_forward_gradcheck(rng):
    m = _mha(rng)
    x, y = T(rng, 2, 3, 8), T(rng, 2, 4, 8)
    am = T(rng, 4, 3, 4)                                  # (B·H, L, S) float mask with a gradient
    ignore = np.zeros((2, 4), bool)
    ignore[0, 0] = True
    fn = lambda x, y, am: m.torch_forward(x, y, y, key_padding_mask=ignore, attn_mask=am,   # noqa: E731
                                          average_attn_weights=False, training=False)
    assert ta.gradcheck(fn, [x, y, am], params=m.parameters())


# ------------------------------------------------------------------ fused (constant bias) = textbook
@pytest.mark.parametrize("gqa", [False, True])
def test_fused_constant_float_mask_equals_textbook(backend, gqa, rng):
    """A constant float attn_mask runs in the fused node, a Tensor one that requires grad in the textbook
    ops: same outputs, weights and q, k, v gradients (−inf rows, a causal flag and GQA included), and
    the double-backward (Tensor) path of the fused node agrees too (gradgradcheck)."""
    hk = 2 if gqa else 4
    q, k, v = T(rng, 2, 4, 3, 5), T(rng, 2, hk, 6, 5), T(rng, 2, hk, 6, 2)
    add = rng.standard_normal((4, 3, 6))
    add[1, 2] = -np.inf
    add[3, 0, :4] = -np.inf
    kw = dict(enable_gqa=gqa, is_causal="lower_right", return_weights=True)
    fused = sdpa(q, k, v, attn_mask=add, **kw)
    mt = ta.tensor(add, requires_grad=True)
    text = sdpa(q, k, v, attn_mask=mt, **kw)
    for a, b in zip(fused, text):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-12, atol=1e-15)
    gy = [rng.standard_normal(t.shape) for t in fused]
    ga = ta.grad(list(fused), [q, k, v], gy)
    gb = ta.grad(list(text), [q, k, v], gy)
    for a, b in zip(ga, gb):
        np.testing.assert_allclose(_np(a), _np(b), rtol=1e-10, atol=1e-13)
    fn = lambda q, k, v: sdpa(q, k, v, attn_mask=add, **kw)   # noqa: E731
    assert ta.gradcheck(fn, [q, k, v])
    assert ta.gradgradcheck(fn, [q, k, v])
