"""Parity with PyTorch: TransformerEncoderLayer / DecoderLayer / Encoder / Decoder loaded from torch's
state dicts (batch_first=True, norm_first both ways, relu and gelu, with and without biases) give the
same outputs and the same gradients for the inputs and every parameter (float64)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import tinyattn as ta  # noqa: E402
from tinyattn.transformer import (TransformerEncoderLayer, TransformerDecoderLayer, TransformerEncoder,  # noqa: E402
                                  TransformerDecoder)

TOL = dict(rtol=1e-9, atol=1e-10)
D, H, FF = 12, 3, 20


def _grads_torch(tmod, inputs, gy):
    out = tmod(*inputs)
    out.backward(torch.tensor(gy))
    return out.detach().numpy(), [x.grad.numpy() for x in inputs]


def _param_pairs(ours, tmod, kind):
    """(our gradient, torch gradient) for every torch parameter, mapped to our layout."""
    pairs = []
    for name, p in tmod.named_parameters():
        parts = name.split(".")
        prefix, leaf = ".".join(parts[:-1]), parts[-1]
        if parts[-2] in ("self_attn", "multihead_attn") or (len(parts) > 2 and parts[-3] in ("self_attn", "multihead_attn")):
            continue                                  # attention weights: compared below in Keras layout
        mod = ours
        for q in parts[:-1]:
            mod = mod[int(q)] if q.isdigit() else getattr(mod, q)
        if prefix.split(".")[-1].startswith("linear"):
            g = mod.kernel.grad.numpy().T if leaf == "weight" else mod.bias.grad.numpy()
        else:
            g = mod.gamma.grad.numpy() if leaf == "weight" else mod.beta.grad.numpy()
        pairs.append((name, g, p.grad.numpy()))
    return pairs


def _attn_grad_pairs(ours_mha, t_mha, E, H):
    hd = E // H
    W = t_mha.in_proj_weight.grad.numpy()
    out = [("q", ours_mha.query_kernel.grad.numpy(), W[:E].T.reshape(E, H, hd)),
           ("k", ours_mha.key_kernel.grad.numpy(), W[E:2 * E].T.reshape(E, H, hd)),
           ("v", ours_mha.value_kernel.grad.numpy(), W[2 * E:].T.reshape(E, H, hd)),
           ("o", ours_mha.output_kernel.grad.numpy(), t_mha.out_proj.weight.grad.numpy().T.reshape(H, hd, E))]
    if t_mha.in_proj_bias is not None:
        b = t_mha.in_proj_bias.grad.numpy()
        out += [("bq", ours_mha.query_bias.grad.numpy(), b[:E].reshape(H, hd)),
                ("bo", ours_mha.output_bias.grad.numpy(), t_mha.out_proj.bias.grad.numpy())]
    return out


def _check_all(ours, tmod, mhas):
    pairs = _param_pairs(ours, tmod, None)
    assert len(pairs) >= 4                             # linear1/2 and the norms were compared
    for name, a, b in pairs:
        np.testing.assert_allclose(a, b, err_msg=name, **TOL)
    for om, tm in mhas:
        for name, a, b in _attn_grad_pairs(om, tm, D, H):
            np.testing.assert_allclose(a, b, err_msg=name, **TOL)


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation,bias", [("relu", True), ("gelu", True), ("relu", False)])
def test_encoder_layer_matches_torch(norm_first, activation, bias):
    torch.manual_seed(0)
    t = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True,
                                         norm_first=norm_first, bias=bias).double()
    with torch.no_grad():                               # non-trivial norms
        for n, p in t.named_parameters():
            if n.startswith("norm"):
                p.add_(0.1 * torch.randn_like(p))
    ours = TransformerEncoderLayer(D, H, FF, dropout=0.0, activation=activation, norm_first=norm_first,
                                   bias=bias).astype(np.float64).load_torch_state_dict(t.state_dict())
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 5, D))
    keep = np.ones((2, 5), bool)
    keep[1, -2:] = False
    gy = rng.standard_normal((2, 5, D))
    tx = torch.tensor(x, requires_grad=True)
    tout = t(tx, src_key_padding_mask=torch.tensor(~keep))
    tout.backward(torch.tensor(gy))
    X = ta.tensor(x, dtype=np.float64, requires_grad=True)
    out = ours(X, src_key_mask=keep)
    out.backward(gy)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), **TOL)
    _check_all(ours, t, [(ours.self_attn, t.self_attn)])


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_decoder_layer_matches_torch(norm_first, activation):
    torch.manual_seed(1)
    t = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, activation=activation, batch_first=True,
                                         norm_first=norm_first).double()
    with torch.no_grad():
        for n, p in t.named_parameters():
            if n.startswith("norm") or n.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    ours = TransformerDecoderLayer(D, H, FF, dropout=0.0, activation=activation,
                                   norm_first=norm_first).astype(np.float64).load_torch_state_dict(t.state_dict())
    rng = np.random.default_rng(2)
    x, m = rng.standard_normal((2, 6, D)), rng.standard_normal((2, 4, D))
    mkeep = np.ones((2, 4), bool)
    mkeep[0, -1] = False
    gy = rng.standard_normal((2, 6, D))
    tx, tm = torch.tensor(x, requires_grad=True), torch.tensor(m, requires_grad=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(6, dtype=torch.float64)
    tout = t(tx, tm, tgt_mask=causal, memory_key_padding_mask=torch.tensor(~mkeep), tgt_is_causal=True)
    tout.backward(torch.tensor(gy))
    X, M = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (x, m))
    out = ours(X, M, memory_key_mask=mkeep)                      # causal by default
    out.backward(gy)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(X.grad.numpy(), tx.grad.numpy(), **TOL)
    np.testing.assert_allclose(M.grad.numpy(), tm.grad.numpy(), **TOL)
    _check_all(ours, t, [(ours.self_attn, t.self_attn), (ours.multihead_attn, t.multihead_attn)])


@pytest.mark.parametrize("norm_first", [False, True])
def test_stacks_match_torch(norm_first):
    torch.manual_seed(2)
    tel = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    tenc = torch.nn.TransformerEncoder(tel, 2, norm=torch.nn.LayerNorm(D), enable_nested_tensor=False).double()
    tdl = torch.nn.TransformerDecoderLayer(D, H, FF, dropout=0.0, batch_first=True, norm_first=norm_first)
    tdec = torch.nn.TransformerDecoder(tdl, 2, norm=torch.nn.LayerNorm(D)).double()
    with torch.no_grad():
        for p in list(tenc.parameters()) + list(tdec.parameters()):
            p.add_(0.05 * torch.randn_like(p))          # the layers differ from each other
    enc = TransformerEncoder(TransformerEncoderLayer(D, H, FF, 0.0, norm_first=norm_first), 2,
                             norm=ta.nn.LayerNormalization(epsilon=1e-5)).astype(np.float64)
    enc.norm.build((None, None, D))
    enc.load_torch_state_dict(tenc.state_dict())
    dec = TransformerDecoder(TransformerDecoderLayer(D, H, FF, 0.0, norm_first=norm_first), 2,
                             norm=ta.nn.LayerNormalization(epsilon=1e-5)).astype(np.float64)
    dec.norm.build((None, None, D))
    dec.load_torch_state_dict(tdec.state_dict())
    rng = np.random.default_rng(3)
    src, tgt = rng.standard_normal((2, 5, D)), rng.standard_normal((2, 4, D))
    gy = rng.standard_normal((2, 4, D))
    ts, tt = torch.tensor(src, requires_grad=True), torch.tensor(tgt, requires_grad=True)
    tout = tdec(tt, tenc(ts), tgt_mask=torch.nn.Transformer.generate_square_subsequent_mask(4, dtype=torch.float64))
    tout.backward(torch.tensor(gy))
    S, T_ = (ta.tensor(a, dtype=np.float64, requires_grad=True) for a in (src, tgt))
    out = dec(T_, enc(S))
    out.backward(gy)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), **TOL)
    np.testing.assert_allclose(S.grad.numpy(), ts.grad.numpy(), **TOL)
    np.testing.assert_allclose(T_.grad.numpy(), tt.grad.numpy(), **TOL)
    for name, p in tenc.named_parameters():
        if name.endswith("linear1.weight"):
            i = int(name.split(".")[1])
            np.testing.assert_allclose(enc.layers[i].linear1.kernel.grad.numpy().T, p.grad.numpy(), **TOL)
    np.testing.assert_allclose(dec.norm.gamma.grad.numpy(), tdec.norm.weight.grad.numpy(), **TOL)
