"""Score functions, attend and scaled_dot_product_attention: values from the formulas (NumPy),
float64 gradcheck with a random upstream gradient, and gradgradcheck (double backward)."""
import math

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import (dot_score, scaled_dot_score, general_score, concat_score, additive_score,
                                cosine_score, attend, scaled_dot_product_attention)
from tinyattn.functions.attention import ScaledDotProductAttention


def T(rng, *shape, grad=True, dtype=np.float64):
    return ta.tensor(rng.standard_normal(shape), dtype=dtype, requires_grad=grad)


def _np(t):
    return ta.backend.as_numpy(t.data)


# ------------------------------------------------------------------ values against plain NumPy
def test_score_values(backend, rng):
    q, k = T(rng, 2, 3, 4), T(rng, 2, 5, 4)
    Q, K = _np(q), _np(k)
    np.testing.assert_allclose(_np(dot_score(q, k)), Q @ K.transpose(0, 2, 1), rtol=1e-12)
    np.testing.assert_allclose(_np(scaled_dot_score(q, k)), Q @ K.transpose(0, 2, 1) / 2.0, rtol=1e-12)
    np.testing.assert_allclose(_np(scaled_dot_score(q, k, scale=0.3)), 0.3 * Q @ K.transpose(0, 2, 1), rtol=1e-12)
    W = T(rng, 4, 4)
    np.testing.assert_allclose(_np(general_score(q, k, W)), Q @ _np(W) @ K.transpose(0, 2, 1), rtol=1e-12)
    Wq, Wk, v = T(rng, 4, 6), T(rng, 4, 6), T(rng, 6)
    ref = np.einsum("h,bijh->bij", _np(v), np.tanh((Q @ _np(Wq))[:, :, None] + (K @ _np(Wk))[:, None]))
    np.testing.assert_allclose(_np(additive_score(q, k, Wq, Wk, v)), ref, rtol=1e-12)
    # concat: vᵀ tanh(W [q_i; k_j]) built the slow way, from every concatenated pair
    Wc = T(rng, 8, 6)
    pairs = np.concatenate([np.broadcast_to(Q[:, :, None], (2, 3, 5, 4)),
                            np.broadcast_to(K[:, None], (2, 3, 5, 4))], axis=-1)
    np.testing.assert_allclose(_np(concat_score(q, k, Wc, v)), np.tanh(pairs @ _np(Wc)) @ _np(v), rtol=1e-12)
    cos = (Q @ K.transpose(0, 2, 1)) / (np.linalg.norm(Q, axis=-1)[:, :, None] * np.linalg.norm(K, axis=-1)[:, None])
    np.testing.assert_allclose(_np(cosine_score(q, k, tau=3.0)), cos / 3.0, rtol=1e-12)   # τ divides (temperature)
    w = T(rng, 2, 3, 5)
    vv = T(rng, 2, 5, 7)
    np.testing.assert_allclose(_np(attend(w, vv)), _np(w) @ _np(vv), rtol=1e-12)


def test_heads_broadcast(rng):
    q, k = T(rng, 2, 3, 4, 5), T(rng, 2, 1, 6, 5)       # k shared by the 3 heads
    assert dot_score(q, k).shape == (2, 3, 4, 6)
    assert additive_score(q, k, T(rng, 5, 2), T(rng, 5, 2), T(rng, 2)).shape == (2, 3, 4, 6)


def test_float32_stays_float32(rng):
    q, k, v = (T(rng, 2, 3, 4, dtype=np.float32) for _ in range(3))
    for s in (dot_score(q, k), scaled_dot_score(q, k), cosine_score(q, k),
              additive_score(q, k, T(rng, 4, 3, dtype=np.float32), T(rng, 4, 3, dtype=np.float32),
                             T(rng, 3, dtype=np.float32)),
              scaled_dot_product_attention(q, k, v, causal=True, dropout=0.5)):
        assert s.dtype == np.float32


def test_cosine_zero_vector_is_finite(rng):
    q = ta.tensor(np.zeros((1, 1, 3)), dtype=np.float64, requires_grad=True)
    k = T(rng, 1, 2, 3)
    s = cosine_score(q, k)
    s.sum().backward()
    assert np.all(s.numpy() == 0) and np.all(np.isfinite(q.grad.numpy()))


def test_errors(rng):
    q, k = T(rng, 2, 3, 4), T(rng, 2, 5, 3)
    with pytest.raises(ValueError, match=r"dot_score.*\(2, 3, 4\).*\(2, 5, 3\)"):
        dot_score(q, k)
    with pytest.raises(ValueError, match="general_score"):
        general_score(q, k, T(rng, 4, 4))
    with pytest.raises(ValueError, match="concat_score"):
        concat_score(q, k, T(rng, 6, 2), T(rng, 2))
    with pytest.raises(ValueError, match="additive_score"):
        additive_score(q, k, T(rng, 4, 2), T(rng, 3, 5), T(rng, 2))
    with pytest.raises(ValueError, match="scaled_dot_product_attention.*length"):
        scaled_dot_product_attention(T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 6, 4))
    with pytest.raises(ValueError, match="does not broadcast"):
        scaled_dot_product_attention(T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 4),
                                     mask=np.ones((2, 3, 4), bool))
    with pytest.raises(ValueError, match="scaled_dot_product_attention: mask .*0 and 1.*bias="):
        scaled_dot_product_attention(T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 4),
                                     mask=np.full((2, 3, 5), -1e9))   # an additive mask: refused


# ------------------------------------------------------------------ gradients
SCORES = {
    "dot": (dot_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 4)]),
    "scaled_dot": (scaled_dot_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 4)]),
    "general": (general_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 3), T(r, 4, 3)]),
    "concat": (concat_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 3), T(r, 7, 6), T(r, 6)]),
    "additive": (additive_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 3), T(r, 4, 6), T(r, 3, 6), T(r, 6)]),
    "additive_heads": (additive_score, lambda r: [T(r, 2, 2, 3, 4), T(r, 2, 1, 5, 3), T(r, 4, 6), T(r, 3, 6),
                                                  T(r, 6)]),
    "cosine": (cosine_score, lambda r: [T(r, 2, 3, 4), T(r, 2, 5, 4), T(r)]),     # learnable τ (0-d)
    "attend": (attend, lambda r: [T(r, 2, 3, 5), T(r, 2, 5, 4)]),
}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_score_gradcheck(name, rng):
    fn, make = SCORES[name]
    ins = make(rng)
    assert ta.gradcheck(fn, ins)
    assert ta.gradgradcheck(fn, ins)


def _masks(rng):
    m = rng.random((2, 1, 4, 6)) > 0.4
    m[0, 0, 1] = False                          # a query with no key at all
    return m


@pytest.mark.parametrize("mask,causal,scale", [(False, False, None), (True, False, None),
                                               (False, True, 0.4), (True, True, None)])
def test_sdpa_gradcheck(mask, causal, scale, rng):
    q, k, v = T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5), T(rng, 2, 3, 6, 2)
    m = _masks(rng) if mask else None

    def fn(q, k, v):                            # both outputs, so the weights' gradient is checked too
        return scaled_dot_product_attention(q, k, v, mask=m, causal=causal, scale=scale, return_weights=True)

    assert ta.gradcheck(fn, [q, k, v])
    assert ta.gradgradcheck(fn, [q, k, v])


@pytest.mark.parametrize("name", ["sdpa", "sdpa_dropout", "additive"])
def test_create_graph_gradients_equal_fast_path(name, rng):
    """The fused ops' backward has two code paths (arrays; Tensors under create_graph):
    gradgradcheck only checks the derivative of the second, so check that both give equal values."""
    ta.manual_seed(0)
    if name == "additive":
        ins = [T(rng, 2, 3, 4), T(rng, 2, 5, 3), T(rng, 4, 6), T(rng, 3, 6), T(rng, 6)]
        fn = additive_score
    else:
        ins = [T(rng, 2, 3, 4, 5), T(rng, 2, 3, 6, 5), T(rng, 2, 3, 6, 2)]
        p = 0.4 if name == "sdpa_dropout" else 0.0
        f = ScaledDotProductAttention(0.37, ta.tensor(_masks(rng)).data, dropout=p)   # a Function: device arrays
        outs = f(*ins)                                   # one instance: one dropout mask
        fn = None
    if fn is not None:
        outs = fn(*ins)
    outs = outs if isinstance(outs, tuple) else (outs,)
    gys = [rng.standard_normal(o.shape) for o in outs]
    fast = ta.grad(list(outs), ins, gys, retain_graph=True)
    slow = ta.grad(list(outs), ins, gys, create_graph=True)
    for a, b in zip(fast, slow):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)


def test_sdpa_values_and_empty_rows(rng):
    q, k, v = T(rng, 2, 4, 3), T(rng, 2, 5, 3), T(rng, 2, 5, 2)
    m = np.ones((2, 4, 5), bool)
    m[1, 2] = False
    m[0, 0, 3:] = False
    out, w = scaled_dot_product_attention(q, k, v, mask=m, causal=True, return_weights=True)
    s = _np(q) @ _np(k).transpose(0, 2, 1) / math.sqrt(3)
    keep = m & np.tril(np.ones((4, 5), bool))
    e = np.where(keep, np.exp(s - s.max(-1, keepdims=True)), 0)
    z = e.sum(-1, keepdims=True)
    ref_w = np.divide(e, z, out=np.zeros_like(e), where=z > 0)
    np.testing.assert_allclose(w.numpy(), ref_w, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out.numpy(), ref_w @ _np(v), rtol=1e-12, atol=1e-15)
    assert np.all(out.numpy()[1, 2] == 0) and np.all(w.numpy()[1, 2] == 0)
    g = ta.grad(out, [q], np.ones(out.shape))[0]
    assert np.all(np.isfinite(g.numpy()))


def test_sdpa_broadcast_batch_axes(rng):
    """v with more batch axes than q, k (and q with fewer than k): gradients sum back correctly."""
    q, k, v = T(rng, 2, 1, 4, 3), T(rng, 2, 1, 5, 3), T(rng, 2, 3, 5, 2)
    fn = lambda q, k, v: scaled_dot_product_attention(q, k, v, causal=True, return_weights=True)   # noqa: E731
    assert ta.gradcheck(fn, [q, k, v])
    q2, k2 = T(rng, 1, 4, 3), T(rng, 2, 3, 5, 3)
    assert ta.gradcheck(fn, [q2, k2, v])
    assert ta.gradgradcheck(fn, [q2, k2, v])


def test_sdpa_weights_only(rng):
    """Only the returned weights are used: the output's upstream gradient is None."""
    q, k, v = T(rng, 2, 4, 3), T(rng, 2, 5, 3), T(rng, 2, 5, 2)
    fn = lambda q, k, v: scaled_dot_product_attention(q, k, v, return_weights=True)[1]   # noqa: E731
    assert ta.gradcheck(fn, [q, k, v])
    assert ta.gradgradcheck(fn, [q, k, v])


def test_sdpa_only_q_requires_grad(rng):
    q, k, v = T(rng, 2, 4, 3), T(rng, 2, 5, 3, grad=False), T(rng, 2, 5, 2, grad=False)
    assert ta.gradcheck(lambda q: scaled_dot_product_attention(q, k, v), [q])


def test_sdpa_dropout(rng):
    """Dropout in training zeros some weights (output changes, rescaled by 1/(1-p)); eval doesn't."""
    ta.manual_seed(0)
    q, k, v = T(rng, 2, 6, 4), T(rng, 2, 8, 4), T(rng, 2, 8, 8)
    fn = ScaledDotProductAttention(0.5, None, dropout=0.5, training=True)
    out, w = fn(q, k, v)
    assert fn.M is not None and (fn.M == 0).mean() > 0.3 and set(np.unique(ta.backend.as_numpy(fn.M)).tolist()) == {0.0, 2.0}
    np.testing.assert_allclose(out.numpy(), (w.numpy() * ta.backend.as_numpy(fn.M)) @ v.numpy(), rtol=1e-12)
    ref = scaled_dot_product_attention(q, k, v, scale=0.5)
    assert not np.allclose(out.numpy(), ref.numpy())
    ev = scaled_dot_product_attention(q, k, v, scale=0.5, dropout=0.5, training=False)
    np.testing.assert_array_equal(ev.numpy(), ref.numpy())


def test_sdpa_dropout_backward(rng):
    """The dropout path's backward uses the same mask: compare with the composed ops."""
    ta.manual_seed(3)
    q, k, v = T(rng, 2, 3, 4), T(rng, 2, 5, 4), T(rng, 2, 5, 2)
    f = ScaledDotProductAttention(0.7, None, dropout=0.3, training=True)
    out, w = f(q, k, v)
    M = f.M                       # the dropout mask (a backward without retain_graph drops saved arrays)
    gy, gw = rng.standard_normal(out.shape), rng.standard_normal(w.shape)
    g1 = ta.grad([out, w], [q, k, v], [gy, gw])
    q2, k2, v2 = (ta.tensor(x.numpy(), requires_grad=True) for x in (q, k, v))
    w2 = ((q2 @ k2.swapaxes(-1, -2)) * 0.7).softmax(-1)
    out2 = (w2 * M) @ v2
    g2 = ta.grad([out2, w2], [q2, k2, v2], [gy, gw])
    for a, b in zip(g1, g2):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-10, atol=1e-12)
