"""Parity with PyTorch: BahdanauDecoder against a PyTorch transcription of d2l's
``Seq2SeqAttentionDecoder`` (additive attention with valid lengths, torch ``nn.GRU``, a Linear over the
GRU outputs), and the bidirectional GRU Encoder against ``nn.GRU`` over packed padded sequences —
weights copied across, float64, outputs, attention weights and gradients compared."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import tinyattn as ta  # noqa: E402
from tinyattn.seq2seq import BahdanauDecoder, Encoder, EncoderOutput  # noqa: E402

TOL = dict(rtol=1e-9, atol=1e-10)


def _tensor(data, requires_grad=False):
    """A leaf on the pass's backend (NumPy, or the device: --backend=strict) keeping data's dtype."""
    return ta.tensor(data, dtype=np.asarray(data).dtype, requires_grad=requires_grad)


def _t(a):
    a = a.numpy() if isinstance(a, ta.Tensor) else ta.backend.as_numpy(a)     # an explicit device read
    return torch.tensor(a, dtype=torch.float64)


def _gru_to_torch(cell):
    """Keras GRUCell (gates z, r, h; bias (2, 3u)) → torch (W_ih, W_hh, b_ih, b_hh) (gates r, z, n)."""
    u = cell.units

    def reorder(m):                                     # last axis blocks z, r, h → r, z, h
        return np.concatenate([m[..., u:2 * u], m[..., :u], m[..., 2 * u:]], axis=-1)
    K, R, b = cell.kernel.numpy(), cell.recurrent_kernel.numpy(), cell.bias.numpy()
    return reorder(K).T, reorder(R).T, reorder(b[0]), reorder(b[1])


def _torch_grad_gru(cell_grads, u):
    """torch gradients (W_ih, W_hh, b_ih, b_hh) back to Keras layout (kernel, recurrent_kernel, bias)."""
    def back(m):                                        # r, z, h → z, r, h
        return np.concatenate([m[..., u:2 * u], m[..., :u], m[..., 2 * u:]], axis=-1)
    gih, ghh, gbi, gbh = cell_grads
    return back(gih.T), back(ghh.T), np.stack([back(gbi), back(gbh)])


class D2LAdditiveAttention(nn.Module):
    """score(q, k) = w_vᵀ tanh(W_q q + W_k k), softmax over valid keys (others set to −1e6)."""

    def __init__(self, key_size, query_size, hidden):
        super().__init__()
        self.W_k = nn.Linear(key_size, hidden, bias=False)
        self.W_q = nn.Linear(query_size, hidden, bias=False)
        self.w_v = nn.Linear(hidden, 1, bias=False)

    def forward(self, queries, keys, values, valid_lens):
        feats = torch.tanh(self.W_q(queries).unsqueeze(2) + self.W_k(keys).unsqueeze(1))   # (B, Q, S, h)
        scores = self.w_v(feats).squeeze(-1)                                               # (B, Q, S)
        keep = torch.arange(scores.shape[-1])[None, None, :] < valid_lens[:, None, None]
        weights = torch.softmax(scores.masked_fill(~keep, -1e6), dim=-1)
        return torch.bmm(weights, values), weights


class D2LAttentionDecoder(nn.Module):
    """d2l's Seq2SeqAttentionDecoder: query = previous top GRU state, GRU input [context; embedding]."""

    def __init__(self, vocab, embed, hidden, layers):
        super().__init__()
        self.attention = D2LAdditiveAttention(hidden, hidden, hidden)
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.GRU(embed + hidden, hidden, layers)
        self.dense = nn.Linear(hidden, vocab)

    def forward(self, X, enc_outputs, hidden_state, valid_lens):
        X = self.embedding(X).permute(1, 0, 2)                                # (T, B, E)
        outputs, weights = [], []
        for x in X:
            query = hidden_state[-1].unsqueeze(1)                             # (B, 1, h)
            context, w = self.attention(query, enc_outputs, enc_outputs, valid_lens)
            step_in = torch.cat([context, x.unsqueeze(1)], dim=-1)            # (B, 1, h + E)
            out, hidden_state = self.rnn(step_in.permute(1, 0, 2), hidden_state)
            outputs.append(out)
            weights.append(w[:, 0])
        return self.dense(torch.cat(outputs, dim=0)).permute(1, 0, 2), torch.stack(weights, dim=1)


def test_bahdanau_decoder_matches_d2l_in_pytorch():
    ta.manual_seed(0)
    V, E, h, L, B, S, T = 9, 5, 6, 2, 3, 5, 4
    dec = BahdanauDecoder(V, E, h, cell="gru", num_layers=L, dtype="float64")
    ref = D2LAttentionDecoder(V, E, h, L).double()
    with torch.no_grad():
        ref.embedding.weight.copy_(_t(dec.embedding.embeddings.numpy()))
        ref.attention.W_q.weight.copy_(_t(dec.W_q.kernel.numpy().T))
        ref.attention.W_k.weight.copy_(_t(dec.W_k.kernel.numpy().T))
        ref.attention.w_v.weight.copy_(_t(dec.v.numpy()[None, :]))
        for l, cell in enumerate(dec.cells):
            wih, whh, bih, bhh = _gru_to_torch(cell)
            for name, val in (("weight_ih", wih), ("weight_hh", whh), ("bias_ih", bih), ("bias_hh", bhh)):
                getattr(ref.rnn, f"{name}_l{l}").copy_(_t(val))
        ref.dense.weight.copy_(_t(dec.out.kernel.numpy().T))
        ref.dense.bias.copy_(_t(dec.out.bias.numpy()))
    rng = np.random.default_rng(1)
    states = rng.standard_normal((B, S, h))
    hidden = rng.standard_normal((L, B, h)) * 0.5
    valid = np.array([5, 2, 4])
    X = np.array([[1, 3, 4, 5], [1, 6, 2, 0], [1, 3, 3, 8]])
    mask = np.arange(S)[None, :] < valid[:, None]
    states_t = _tensor(states.copy(), requires_grad=True)
    mem = EncoderOutput(states_t, [_tensor(hidden[l].copy()) for l in range(L)], mask)
    logits, w = dec(X, mem)
    G = rng.standard_normal(logits.shape)
    (logits * _tensor(G)).sum().backward()

    enc_t = _t(states).requires_grad_(True)
    ref_logits, ref_w = ref(torch.tensor(X), enc_t, _t(hidden), torch.tensor(valid))
    (ref_logits * _t(G)).sum().backward()

    np.testing.assert_allclose(logits.numpy(), ref_logits.detach().numpy(), **TOL)
    np.testing.assert_allclose(w.numpy(), ref_w.detach().numpy(), **TOL)
    np.testing.assert_allclose(states_t.grad.numpy(), enc_t.grad.numpy(), **TOL)
    np.testing.assert_allclose(dec.embedding.embeddings.grad.numpy(), ref.embedding.weight.grad.numpy(), **TOL)
    np.testing.assert_allclose(dec.W_q.kernel.grad.numpy(), ref.attention.W_q.weight.grad.numpy().T, **TOL)
    np.testing.assert_allclose(dec.W_k.kernel.grad.numpy(), ref.attention.W_k.weight.grad.numpy().T, **TOL)
    np.testing.assert_allclose(dec.v.grad.numpy(), ref.attention.w_v.weight.grad.numpy()[0], **TOL)
    np.testing.assert_allclose(dec.out.kernel.grad.numpy(), ref.dense.weight.grad.numpy().T, **TOL)
    for l, cell in enumerate(dec.cells):
        gk, gr, gb = _torch_grad_gru([getattr(ref.rnn, f"{n}_l{l}").grad.numpy()
                                      for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")], h)
        np.testing.assert_allclose(cell.kernel.grad.numpy(), gk, **TOL)
        np.testing.assert_allclose(cell.recurrent_kernel.grad.numpy(), gr, **TOL)
        np.testing.assert_allclose(cell.bias.grad.numpy(), gb, **TOL)


def test_bidirectional_gru_encoder_matches_packed_torch_gru():
    ta.manual_seed(2)
    Vs, E, u, L = 12, 4, 5, 2
    enc = Encoder(Vs, E, u, cell="gru", bidirectional=True, num_layers=L, dtype="float64")
    ref = nn.GRU(E, u, L, batch_first=True, bidirectional=True).double()
    with torch.no_grad():
        for l, layer in enumerate(enc.layers):
            for suffix, rnn in (("", layer.forward_layer), ("_reverse", layer.backward_layer)):
                wih, whh, bih, bhh = _gru_to_torch(rnn.cell)
                for name, val in (("weight_ih", wih), ("weight_hh", whh), ("bias_ih", bih), ("bias_hh", bhh)):
                    getattr(ref, f"{name}_l{l}{suffix}").copy_(_t(val))
    src = np.array([[3, 4, 5, 6, 7], [3, 8, 0, 0, 0], [9, 10, 4, 3, 0]])
    mem = enc(src)
    x = _t(enc.embedding.embeddings.numpy()[src])
    lens = torch.tensor((src != 0).sum(1))
    packed = nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    out, h_n = ref(packed)
    out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
    np.testing.assert_allclose(mem.states.numpy(), out.detach().numpy(), **TOL)
    assert np.all(mem.states.numpy()[1, 2:] == 0) and np.array_equal(ta.backend.as_numpy(mem.mask), src != 0)
    for l in range(L):       # the bridge h₀ = tanh([→h; ←h] W + b) of torch's final states
        both = torch.cat([h_n[2 * l], h_n[2 * l + 1]], dim=-1).detach().numpy()
        want = np.tanh(both @ enc.bridge_h[l].kernel.numpy() + enc.bridge_h[l].bias.numpy())
        np.testing.assert_allclose(mem.final[l].numpy(), want, **TOL)
