"""Grouped-query / multi-query attention, sliding-window masks and linear attention: hand formulas,
special cases, the parallel and recurrent forms of linear attention, and float64 gradchecks."""
import math

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (GroupedQueryAttention, GroupQueryAttention, MultiHeadAttention, sliding_window_mask,
                                scaled_dot_product_attention, linear_attention, linear_attention_recurrent,
                                elu_feature_map)


def _t(a, grad=True):
    return ta.tensor(np.asarray(a, dtype=np.float64), dtype=np.float64, requires_grad=grad)


def _perturb(m, rng):
    for p in m.parameters():
        p.data = p.data + ta.backend.to_device(0.1 * rng.standard_normal(p.shape), p.device)
    return m


# ---- grouped-query attention -----------------------------------------------------------------
def test_gqa_with_all_heads_is_multi_head_attention(rng):
    g = _perturb(GroupedQueryAttention(3, 4, 4).astype(np.float64), rng)
    x, y = _t(rng.standard_normal((2, 5, 6))), _t(rng.standard_normal((2, 4, 6)))
    g(x, y)
    _perturb(g, rng)
    mha = MultiHeadAttention(4, 3).astype(np.float64)
    mha(x, y)
    mha.set_weights(g.get_weights())
    a, wa = g(x, y, return_attention_scores=True, use_causal_mask=True)
    b, wb = mha(x, y, return_attention_scores=True, use_causal_mask=True)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-13)
    np.testing.assert_allclose(wa.numpy(), wb.numpy(), atol=1e-13)
    assert GroupQueryAttention is GroupedQueryAttention


@pytest.mark.parametrize("hq,hkv", [(4, 2), (6, 1), (6, 3)])
def test_gqa_matches_repeated_kv_by_hand(hq, hkv, rng):
    g = GroupedQueryAttention(2, hq, hkv).astype(np.float64)
    x, v = _t(rng.standard_normal((2, 4, 5))), _t(rng.standard_normal((2, 6, 3)))
    g(x, v)
    _perturb(g, rng)
    out, w = g(x, v, return_attention_scores=True)
    qk, qb, kk, kb, vk, vb, ok, ob = g.get_weights()
    assert qk.shape == (5, hq, 2) and kk.shape == (3, hkv, 2) and ok.shape == (hq, 2, 5) and ob.shape == (5,)
    Q = np.einsum("btd,dhk->bhtk", x.numpy(), qk) + qb[None, :, None]
    K = np.repeat(np.einsum("btd,dhk->bhtk", v.numpy(), kk) + kb[None, :, None], hq // hkv, axis=1)
    V = np.repeat(np.einsum("btd,dhk->bhtk", v.numpy(), vk) + vb[None, :, None], hq // hkv, axis=1)
    s = Q @ K.swapaxes(-1, -2) / math.sqrt(2)
    a = np.exp(s - s.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    np.testing.assert_allclose(w.numpy(), a, atol=1e-13)
    np.testing.assert_allclose(out.numpy(), np.einsum("bhtk,hkd->btd", a @ V, ok) + ob, atol=1e-12)


@pytest.mark.parametrize("use_gate,use_bias,window", [(False, True, None), (True, True, 2), (False, False, 3)])
def test_gqa_gradcheck(use_gate, use_bias, window, rng):
    g = GroupedQueryAttention(2, 4, 2, use_bias=use_bias, use_gate=use_gate, sliding_window=window).astype(np.float64)
    q, v, k = (_t(rng.standard_normal((2, 5, 3))) for _ in range(3))
    g(q, v, k)
    _perturb(g, rng)
    vm = np.ones((2, 5), bool)
    vm[1, 3] = False
    fn = lambda a, b, c: g(a, b, c, value_mask=vm, use_causal_mask=True, training=False)   # noqa: E731
    assert ta.gradcheck(fn, [q, v, k], params=g.parameters())
    assert ta.gradgradcheck(fn, [q, v, k], params=g.parameters())


def test_gqa_errors():
    with pytest.raises(ValueError, match="divisible"):
        GroupedQueryAttention(4, 6, 4)
    with pytest.raises(ValueError, match="sliding_window"):
        GroupedQueryAttention(4, 4, 2, sliding_window=0)


# ---- sliding window --------------------------------------------------------------------------
@pytest.mark.parametrize("tq,tk,w,causal,offset", [(6, 6, 3, True, 0), (6, 6, 2, False, 0), (2, 7, 3, True, 5),
                                                   (5, 5, 1, True, 0), (4, 4, 10, True, 0)])
def test_sliding_window_mask_by_hand(tq, tk, w, causal, offset):
    m = sliding_window_mask(tq, tk, w, causal=causal, offset=offset)
    for i in range(tq):
        for j in range(tk):
            ip = i + offset
            want = (ip - w < j <= ip) if causal else abs(ip - j) < w
            assert m[i, j] == want
    assert m.dtype == bool


def test_sliding_window_attention_only_sees_the_window(rng):
    q, k, v = (_t(rng.standard_normal((1, 2, 6, 3))) for _ in range(3))
    m = sliding_window_mask(6, 6, 2)
    out, w = scaled_dot_product_attention(q, k, v, mask=m, return_weights=True)
    assert np.all(w.numpy()[..., ~ta.backend.as_numpy(m)] == 0)
    for i in range(6):                            # each row = softmax attention over its window only
        lo = max(0, i - 1)
        s = q.numpy()[..., i:i + 1, :] @ k.numpy()[..., lo:i + 1, :].swapaxes(-1, -2) / math.sqrt(3)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        np.testing.assert_allclose(out.numpy()[..., i:i + 1, :], a @ v.numpy()[..., lo:i + 1, :], atol=1e-13)
    with pytest.raises(ValueError, match="window"):
        sliding_window_mask(3, 3, 0)


# ---- linear attention ------------------------------------------------------------------------
def test_feature_map_is_elu_plus_one(rng):
    x = rng.standard_normal(50) * 3
    want = np.where(x > 0, x, np.expm1(x)) + 1
    np.testing.assert_allclose(elu_feature_map(_t(x, False)).numpy(), want, rtol=1e-12)
    assert ta.gradcheck(elu_feature_map, [_t(x + 0.01)])


def _kernel_attention_by_hand(q, k, v, causal, eps=1e-6):
    fq, fk = (np.where(a > 0, a + 1, np.exp(np.minimum(a, 0))) for a in (q, k))
    A = fq @ fk.swapaxes(-1, -2)
    if causal:
        A = A * np.tril(np.ones(A.shape[-2:]))
    return (A @ v) / (A.sum(-1, keepdims=True) + eps)


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_parallel_matches_formula(causal, rng):
    tq = 5
    q, k, v = rng.standard_normal((2, 3, tq, 4)), rng.standard_normal((2, 3, 5, 4)), rng.standard_normal((2, 3, 5, 2))
    out = linear_attention(_t(q, False), _t(k, False), _t(v, False), causal=causal).numpy()
    np.testing.assert_allclose(out, _kernel_attention_by_hand(q, k, v, causal), rtol=1e-12, atol=1e-13)


def test_linear_attention_recurrent_equals_parallel(rng):
    q, k, v = (_t(rng.standard_normal((2, 3, 7, 4)), False) for _ in range(3))
    par = linear_attention(q, k, v, causal=True).numpy()
    rec, (S, z) = linear_attention_recurrent(q, k, v)
    np.testing.assert_allclose(rec.numpy(), par, rtol=1e-12, atol=1e-13)
    assert S.shape == (2, 3, 4, 4) and z.shape == (2, 3, 4)
    # continued from a saved state, one step at a time (constant memory): the same outputs
    out, state = linear_attention_recurrent(q[..., :3, :], k[..., :3, :], v[..., :3, :])
    steps = [out.numpy()]
    for t in range(3, 7):
        o, state = linear_attention_recurrent(q[..., t:t + 1, :], k[..., t:t + 1, :], v[..., t:t + 1, :], state)
        steps.append(o.numpy())
    np.testing.assert_allclose(np.concatenate(steps, axis=-2), par, rtol=1e-12, atol=1e-13)
    # the last causal row is the non-causal result (every key seen)
    np.testing.assert_allclose(par[..., -1, :], linear_attention(q, k, v).numpy()[..., -1, :], rtol=1e-12)


@pytest.mark.parametrize("form", ["parallel", "causal", "recurrent"])
def test_linear_attention_gradcheck(form, rng):
    q, k, v = (_t(rng.standard_normal((2, 4, 3))) for _ in range(3))
    fn = {"parallel": lambda *a: linear_attention(*a),
          "causal": lambda *a: linear_attention(*a, causal=True),
          "recurrent": lambda *a: linear_attention_recurrent(*a)[0]}[form]
    assert ta.gradcheck(fn, [q, k, v])
    assert ta.gradgradcheck(fn, [q, k, v])
