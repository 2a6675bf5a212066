"""Parity with PyTorch: scaled_dot_product_attention vs torch.nn.functional's (outputs and gradients),
and MultiHeadAttention.load_torch_state_dict vs nn.MultiheadAttention (batch_first=True)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyattn as ta  # noqa: E402
from tinyattn.attention import scaled_dot_product_attention, MultiHeadAttention  # noqa: E402

TOL = dict(rtol=1e-5, atol=1e-5)


def _qkv(shape_q, shape_k, dv, seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(shape_q).astype(np.float32)
    k = rng.standard_normal(shape_k).astype(np.float32)
    v = rng.standard_normal(shape_k[:-1] + (dv,)).astype(np.float32)
    return q, k, v


@pytest.mark.parametrize("mask_kind,causal,scale", [
    (None, False, None), ("full", False, None), ("padding", False, 0.3), (None, True, None),
    ("full", True, 0.7), ("empty_row", False, None)])
def test_sdpa_matches_torch(mask_kind, causal, scale):
    B, H, tq, tk, d, dv = 2, 3, 5, 6, 4, 7
    if causal:
        tk = tq
    q, k, v = _qkv((B, H, tq, d), (B, H, tk, d), dv)
    rng = np.random.default_rng(1)
    mask = None
    if mask_kind == "full":
        mask = rng.random((B, H, tq, tk)) > 0.4
        mask[..., 0] = True                           # row 0 also survives the causal mask
    elif mask_kind == "padding":
        mask = np.ones((B, 1, 1, tk), bool)
        mask[0, ..., -2:] = False
    elif mask_kind == "empty_row":                    # a query with no key: zeros in both (torch ≥ 2.5)
        mask = np.ones((B, 1, tq, tk), bool)
        mask[1, 0, 2] = False
    gy = rng.standard_normal((B, H, tq, dv)).astype(np.float32)

    tq_, tk_, tv_ = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tmask = None if mask is None else torch.tensor(mask)
    if causal and tmask is not None:                  # torch takes one or the other: AND them by hand
        tmask = tmask & torch.ones(tq, tk, dtype=torch.bool).tril()
    tout = torch.nn.functional.scaled_dot_product_attention(
        tq_, tk_, tv_, attn_mask=tmask, is_causal=causal and tmask is None, scale=scale)
    tout.backward(torch.tensor(gy))

    Q, K, V = (ta.tensor(x, requires_grad=True) for x in (q, k, v))
    out = scaled_dot_product_attention(Q, K, V, mask=mask, causal=causal, scale=scale)
    assert out.dtype == np.float32
    gq, gk, gv = ta.grad(out, [Q, K, V], gy)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    for a, b in ((gq, tq_), (gk, tk_), (gv, tv_)):
        np.testing.assert_allclose(a.numpy(), b.grad.numpy(), **TOL)
    if mask_kind == "empty_row":
        assert np.all(out.numpy()[1, :, 2] == 0)


def test_sdpa_broadcast_kv_over_heads():
    """k, v shared by every head (B, 1, Tk, d): gradients summed over the broadcast axis."""
    q, k, v = _qkv((2, 4, 3, 5), (2, 1, 6, 5), 2, seed=3)
    tq_, tk_, tv_ = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tout = torch.nn.functional.scaled_dot_product_attention(tq_, tk_, tv_)
    gy = np.random.default_rng(2).standard_normal(tout.shape).astype(np.float32)
    tout.backward(torch.tensor(gy))
    Q, K, V = (ta.tensor(x, requires_grad=True) for x in (q, k, v))
    out = scaled_dot_product_attention(Q, K, V)
    grads = ta.grad(out, [Q, K, V], gy)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    for a, b in zip(grads, (tq_, tk_, tv_)):
        assert a.shape == tuple(b.shape)
        np.testing.assert_allclose(a.numpy(), b.grad.numpy(), **TOL)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("masked", [False, True])
def test_mha_load_torch_state_dict(bias, masked):
    E, H, B, tq, tk = 8, 2, 2, 4, 5
    torch.manual_seed(0)
    tm = torch.nn.MultiheadAttention(E, H, bias=bias, batch_first=True)
    with torch.no_grad():                             # non-zero biases so their layout is tested
        for n, p in tm.named_parameters():
            if "bias" in n:
                p.normal_()
    rng = np.random.default_rng(4)
    q = rng.standard_normal((B, tq, E)).astype(np.float32)
    k = rng.standard_normal((B, tk, E)).astype(np.float32)
    v = rng.standard_normal((B, tk, E)).astype(np.float32)
    kpm = None
    ours_mask = None
    if masked:
        keep = np.ones((B, tk), bool)
        keep[0, -2:] = False
        kpm = torch.tensor(~keep)                     # torch key_padding_mask: True = ignore
        ours_mask = keep
    tout, tw = tm(torch.tensor(q), torch.tensor(k), torch.tensor(v), key_padding_mask=kpm,
                  need_weights=True, average_attn_weights=True)

    mha = MultiHeadAttention(num_heads=H, key_dim=E // H, use_bias=bias)
    mha.load_torch_state_dict(tm.state_dict())
    out, w = mha(q, v, k, value_mask=ours_mask, return_attention_scores=True)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(w.numpy().mean(axis=1), tw.detach().numpy(), **TOL)


def test_load_torch_state_dict_rejects_wrong_head_size():
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    with pytest.raises(ValueError, match="key_dim"):
        MultiHeadAttention(num_heads=2, key_dim=3).load_torch_state_dict(tm.state_dict())
