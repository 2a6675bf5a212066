"""flash_attention (tile-by-tile attention, tinyattn/attention/flash.py) against the naive fused
scaled_dot_product_attention and against the textbook composition of plain ops, in float64:
outputs and gradients within 1e-10, causal / masked / bias / Tq ≠ Tk / ragged and size-1 blocks;
gradcheck and gradgradcheck with random upstream gradients; a sabotaged backward is caught; and no
(Tq, Tk) array is ever allocated."""
import math
import tracemalloc

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import flash_attention, scaled_dot_product_attention, masked_softmax
from tinyattn.attention.flash import FlashAttention

TOL = dict(rtol=1e-10, atol=1e-10)


def _t(rng, *shape):
    return ta.tensor(rng.standard_normal(shape), requires_grad=True)


def _qkv(rng, lead, tq, tk, d=4, dv=3):
    return _t(rng, *lead, tq, d), _t(rng, *lead, tk, d), _t(rng, *lead, tk, dv)


def _compare(fa, ref, inputs, gy):
    """Outputs and gradients w.r.t. every input of the two callables agree within TOL."""
    out = fa()
    grads = ta.grad(out, inputs, gy)
    out_r = ref()
    grads_r = ta.grad(out_r, inputs, gy)
    np.testing.assert_allclose(out.numpy(), out_r.numpy(), **TOL)
    for g, gr, x in zip(grads, grads_r, inputs):
        assert g.shape == x.shape
        np.testing.assert_allclose(g.numpy(), gr.numpy(), **TOL)
    return out


CASES = [  # lead, Tq, Tk, mask kind, causal, block
    ((2, 3), 8, 8, None, False, 4),
    ((2, 3), 9, 13, None, False, 4),          # Tq ≠ Tk, neither a multiple of the block
    ((2, 3), 10, 10, None, True, 3),
    ((2, 3), 7, 12, None, True, 5),           # causal, Tq < Tk (top-left aligned)
    ((2, 3), 12, 7, None, True, 5),           # causal, Tq > Tk
    ((2, 3), 9, 11, "full", False, 4),
    ((2, 3), 9, 11, "padding", True, 2),
    ((2, 3), 6, 5, "empty_row", False, 4),    # a query with no key: zero output and gradients
    ((2,), 7, 9, "full", True, 1),            # (B, T, d) inputs and block_size 1
    ((2, 3), 5, 6, None, False, 64),          # one tile holds everything
]


def _mask(rng, kind, lead, tq, tk):
    if kind is None:
        return None
    if kind == "full":
        m = rng.random(lead + (tq, tk)) > 0.4
        m[..., 0] = True
        return m
    if kind == "padding":
        m = np.ones((lead[0],) + (1,) * (len(lead) - 1) + (1, tk), bool)
        m[0, ..., -3:] = False
        return m
    m = np.ones((lead[0], 1, tq, tk), bool)
    m[1, 0, 2] = False
    return m


@pytest.mark.parametrize("lead,tq,tk,kind,causal,block", CASES)
def test_flash_equals_sdpa(lead, tq, tk, kind, causal, block):
    rng = np.random.default_rng(0)
    q, k, v = _qkv(rng, lead, tq, tk)
    mask = _mask(rng, kind, lead, tq, tk)
    gy = rng.standard_normal(lead + (tq, 3))
    out = _compare(lambda: flash_attention(q, k, v, mask=mask, causal=causal, block_size=block),
                   lambda: scaled_dot_product_attention(q, k, v, mask=mask, causal=causal),
                   [q, k, v], gy)
    if kind == "empty_row":
        assert np.all(out.numpy()[1, :, 2] == 0)


def _textbook(q, k, v, bias, mask=None, scale=None):
    """softmax(Q Kᵀ · scale + bias) V from plain differentiable ops."""
    scale = 1 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = (q @ k.swapaxes(-1, -2)) * scale + bias
    return masked_softmax(s, mask) @ v


@pytest.mark.parametrize("bshape", [(2, 3, 9, 11), (3, 9, 11), (1, 11), (9, 1), (11,)])
@pytest.mark.parametrize("causal", [False, True])
def test_flash_bias_equals_textbook(bshape, causal):
    rng = np.random.default_rng(1)
    q, k, v = _qkv(rng, (2, 3), 9, 11)
    bias = _t(rng, *bshape)
    mask = rng.random((2, 1, 9, 11)) > 0.3
    keep = mask & np.tril(np.ones((9, 11), bool)) if causal else mask
    gy = rng.standard_normal((2, 3, 9, 3))
    _compare(lambda: flash_attention(q, k, v, mask=mask, causal=causal, bias=bias, scale=0.7, block_size=4),
             lambda: _textbook(q, k, v, bias, keep, scale=0.7), [q, k, v, bias], gy)


def test_flash_constant_bias_and_int_mask():
    """A NumPy bias (no gradient) and a 0/1 integer mask."""
    rng = np.random.default_rng(2)
    q, k, v = _qkv(rng, (2, 2), 6, 7)
    bias = rng.standard_normal((2, 6, 7))
    mask = (rng.random((6, 7)) > 0.3).astype(np.int64)
    mask[:, 0] = 1
    gy = rng.standard_normal((2, 2, 6, 3))
    _compare(lambda: flash_attention(q, k, v, mask=mask, bias=bias, block_size=3),
             lambda: _textbook(q, k, v, ta.tensor(bias), mask.astype(bool)), [q, k, v], gy)


def test_flash_broadcast_kv_over_heads():
    """k, v shared by every head (B, 1, Tk, d): their gradients are summed over the heads."""
    rng = np.random.default_rng(3)
    q, k, v = _t(rng, 2, 4, 5, 4), _t(rng, 2, 1, 7, 4), _t(rng, 2, 1, 7, 3)
    gy = rng.standard_normal((2, 4, 5, 3))
    _compare(lambda: flash_attention(q, k, v, causal=True, block_size=2),
             lambda: scaled_dot_product_attention(q, k, v, causal=True), [q, k, v], gy)


def test_flash_gradcheck():
    rng = np.random.default_rng(4)
    q, k, v = _qkv(rng, (2, 2), 5, 6)
    bias = _t(rng, 2, 1, 6)
    mask = rng.random((2, 1, 5, 6)) > 0.3
    mask[1, 0, 3] = False                                       # one empty row
    ta.gradcheck(lambda q, k, v, b: flash_attention(q, k, v, mask=mask, causal=True, bias=b,
                                                    block_size=2), [q, k, v, bias])


def test_flash_gradgradcheck():
    """Under create_graph the backward is the textbook composition: second derivatives exact."""
    rng = np.random.default_rng(5)
    q, k, v = _qkv(rng, (1, 2), 4, 5)
    bias = _t(rng, 4, 5)
    ta.gradgradcheck(lambda q, k, v, b: flash_attention(q, k, v, causal=True, bias=b, block_size=2),
                     [q, k, v, bias])


class _Sabotaged(FlashAttention):
    """A plausible bug: the D_i = rowsum(dO ⊙ O) term left out of dS."""

    def backward(self, go):
        self.O = self.O * 0
        return super().backward(go)


def test_sabotaged_backward_is_caught():
    rng = np.random.default_rng(6)
    q, k, v = _qkv(rng, (1, 2), 4, 5)
    with pytest.raises(ta.GradcheckError):
        ta.gradcheck(lambda q, k, v: _Sabotaged(0.5, None, False, 2)(q, k, v), [q, k, v])
    ta.gradcheck(lambda q, k, v: FlashAttention(0.5, None, False, 2)(q, k, v), [q, k, v])


def test_flash_float32_and_values():
    rng = np.random.default_rng(7)
    q, k, v = (ta.tensor(rng.standard_normal((1, 2, 33, 8)).astype(np.float32), requires_grad=True)
               for _ in range(3))
    out = flash_attention(q, k, v, causal=True, block_size=8)
    assert out.dtype == np.float32
    ref = scaled_dot_product_attention(q, k, v, causal=True)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), rtol=1e-5, atol=1e-6)
    out.sum().backward()
    assert q.grad.dtype == np.float32


def test_flash_never_builds_the_score_matrix():
    """Peak memory of forward + backward stays far below one (Tq, Tk) float64 array."""
    rng = np.random.default_rng(8)
    T, d = 1024, 16
    q, k, v = (ta.tensor(rng.standard_normal((1, 1, T, d)), requires_grad=True) for _ in range(3))
    gy = rng.standard_normal((1, 1, T, d))
    tracemalloc.start()
    try:
        out = flash_attention(q, k, v, causal=True, block_size=64)
        ta.grad(out, [q, k, v], gy)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < T * T * 8 / 8, f"peak {peak} bytes: a (T, T) array is {T * T * 8}"


def test_flash_errors():
    rng = np.random.default_rng(9)
    q, k, v = _qkv(rng, (2,), 4, 5)
    with pytest.raises(ValueError, match="flash_attention: mask"):
        flash_attention(q, k, v, mask=np.ones((3, 4, 5), bool))
    with pytest.raises(ValueError, match="block_size"):
        flash_attention(q, k, v, block_size=0)
    with pytest.raises(ValueError, match="flash_attention: mask must be boolean"):
        flash_attention(q, k, v, mask=np.full((4, 5), 0.5))
    with pytest.raises(ValueError, match="differ in length"):
        flash_attention(q, k, v[:, :3])
    with pytest.raises(ValueError, match="bias"):
        flash_attention(q, k, v, bias=np.zeros((4, 4)))


def test_flash_backends(backend):
    """The same code on CuPy (skips without a GPU): equal to SDPA on that device."""
    rng = np.random.default_rng(10)
    arrs = [rng.standard_normal(s) for s in ((2, 2, 9, 4), (2, 2, 11, 4), (2, 2, 11, 3))]
    q, k, v = (ta.tensor(a, requires_grad=True) for a in arrs)
    mask = rng.random((2, 1, 9, 11)) > 0.3
    bias = ta.tensor(rng.standard_normal((2, 9, 11)), requires_grad=True)
    gy = ta.tensor(rng.standard_normal((2, 2, 9, 3)))
    out = flash_attention(q, k, v, mask=mask, causal=True, bias=bias, block_size=4)
    assert out.device == q.device
    grads = ta.grad(out, [q, k, v, bias], gy)
    keep = mask & np.tril(np.ones((9, 11), bool))
    ref = _textbook(q, k, v, bias, ta.tensor(keep))
    grads_r = ta.grad(ref, [q, k, v, bias], gy)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), **TOL)
    for a, b in zip(grads, grads_r):
        np.testing.assert_allclose(a.numpy(), b.numpy(), **TOL)


@pytest.mark.parametrize("bshape", [(2, 3, 9, 11), (3, 1, 11)])
def test_flash_bias_equals_sdpa_bias(bshape):
    """Against the fused SDPA's own ``bias=`` (ALiBi / T5 style additive scores)."""
    rng = np.random.default_rng(11)
    q, k, v = _qkv(rng, (2, 3), 9, 11)
    bias = _t(rng, *bshape)
    mask = rng.random((2, 1, 9, 11)) > 0.3
    gy = rng.standard_normal((2, 3, 9, 3))
    _compare(lambda: flash_attention(q, k, v, mask=mask, causal=True, bias=bias, block_size=4),
             lambda: scaled_dot_product_attention(q, k, v, mask=mask, causal=True, bias=bias),
             [q, k, v, bias], gy)
