"""tinyattn.seq2seq: gradients (float64 gradcheck through decoder steps and the whole loss), padding,
decoding (greedy = beam-1 = top-1 sampling, beam = exhaustive search on a tiny problem), the TF legacy
decoder against a NumPy transcription of its equations, the loss, BLEU."""
import itertools

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import additive_score, attend, concat_score, general_score, masked_softmax
from tinyattn.seq2seq.fused import additive_attention
from tinyattn.seq2seq import (Encoder, EncoderOutput, BahdanauDecoder, LuongDecoder, AttentionDecoder, Seq2Seq,
                              greedy_decode, beam_search, sample, bleu, exact_match, sequence_cross_entropy,
                              length_penalty)

F64 = np.float64
PAD, BOS, EOS = 0, 1, 2


# -- helpers ------------------------------------------------------------------------------------------
def _tensor(data, requires_grad=False):
    """A leaf on the pass's backend (NumPy, or the device: --backend=strict) keeping data's dtype."""
    return ta.tensor(data, dtype=np.asarray(data).dtype, requires_grad=requires_grad)


def memory(B=3, S=5, D=6, u=4, layers=1, cell="lstm", seed=0, grad=True, pad=True):
    """A random float64 memory: states (B, S, D), final states per layer, and a padding mask (row 1 has
    2 real tokens, row 2 has 4). Padded states are NOT zero, so a leak through them would show."""
    rng = np.random.default_rng(seed)
    states = _tensor(rng.standard_normal((B, S, D)), requires_grad=grad)
    mask = np.ones((B, S), bool)
    if pad:
        mask[1, 2:] = False
        mask[2, 4:] = False
    final = []
    for _ in range(layers):
        h = _tensor(rng.standard_normal((B, u)) * 0.5, requires_grad=grad)
        final.append((h, _tensor(rng.standard_normal((B, u)) * 0.5, requires_grad=grad)) if cell == "lstm" else h)
    return EncoderOutput(states, final, mask)


def flat_final(mem):
    out = []
    for s in mem.final:
        out.extend(s if isinstance(s, tuple) else [s])
    return out


def rebuild(mem, states, finals):
    it = iter(finals)
    final = [(next(it), next(it)) if isinstance(s, tuple) else next(it) for s in mem.final]
    return EncoderOutput(states, final, mem.mask)


BAHDANAU = [dict(cell="gru"), dict(cell="lstm"), dict(cell="gru", num_layers=2, attention_units=3),
            dict(cell="lstm", num_layers=2)]
LUONG = [dict(score=s, local=l, input_feeding=f, cell=c)
         for (s, l, f, c) in [("dot", None, True, "lstm"), ("general", None, False, "lstm"),
                              ("concat", None, True, "gru"), ("dot", "m", True, "lstm"),
                              ("general", "m", False, "gru"), ("concat", "m", True, "lstm"),
                              ("dot", "p", False, "lstm"), ("general", "p", True, "lstm"),
                              ("concat", "p", True, "gru")]] + [dict(score="general", num_layers=2)]
LEGACY = [dict(num_heads=h, initial_state_attention=i, output_projection=o, feed_previous=f, cell=c)
          for (h, i, o, f, c) in [(1, False, True, False, "lstm"), (1, True, True, False, "lstm"),
                                  (2, False, True, False, "lstm"), (2, True, False, False, "gru"),
                                  (1, False, False, True, "lstm"), (2, True, True, True, "lstm")]] + \
         [dict(num_heads=2, num_layers=2, attention_vec_size=5)]


def make_decoder(kind, kw, V=7, E=5, u=4, D=6, dtype="float64"):
    kw = dict(kw)
    if kind == "luong" and kw.get("score", "dot") == "dot":
        D = u
    kw.setdefault("memory_dim", D)
    cls = {"bahdanau": BahdanauDecoder, "luong": LuongDecoder, "legacy": AttentionDecoder}[kind]
    if kind == "luong" and kw.get("local"):
        kw.setdefault("window", 1)
    dec = cls(V, E, u, **kw, dtype=dtype)
    return dec, D


CASES = ([("bahdanau", kw) for kw in BAHDANAU] + [("luong", kw) for kw in LUONG]
         + [("legacy", kw) for kw in LEGACY])
IDS = [f"{k}-" + "-".join(f"{a}={b}" for a, b in kw.items()) for k, kw in CASES]


# -- gradients ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_gradcheck_two_steps(kind, kw):
    ta.manual_seed(1)
    dec, D = make_decoder(kind, kw)
    mem = memory(D=D, layers=dec.num_layers, cell=dec.cell)
    tokens = [np.array([1, 3, 4]), np.array([5, 6, 2])]

    def two_steps(states, *finals):
        m = rebuild(mem, states, finals)
        state = dec.init_state(m)
        outs = []
        for tok in tokens:
            logits, state, w = dec.step(tok, state, m)
            outs += [logits, w]
        return outs
    assert ta.gradcheck(two_steps, [mem.states] + flat_final(mem), params=dec.parameters())


@pytest.mark.parametrize("kind,kw", CASES, ids=IDS)
def test_padding_gets_zero_attention_and_zero_gradient(kind, kw):
    ta.manual_seed(2)
    dec, D = make_decoder(kind, kw)
    mem = memory(D=D, layers=dec.num_layers, cell=dec.cell)
    tgt = np.array([[1, 3, 4, 5], [1, 6, 2, 0], [1, 3, 3, 3]])
    logits, w = dec(tgt, mem)
    assert logits.shape == (3, 4, 7)
    assert w.shape == (3, 4, 5) if dec.__dict__.get("num_heads", 1) == 1 else (3, 4, dec.num_heads, 5)
    wd = w.numpy() if w.ndim == 3 else np.moveaxis(w.numpy(), 2, 1)       # (B, [H,] T, S)
    pad = ~ta.backend.as_numpy(mem.mask)
    assert np.all(wd[1][..., pad[1]] == 0) and np.all(wd[2][..., pad[2]] == 0)
    assert np.all(wd.sum(axis=-1) > 0)                            # every step attends somewhere
    rng = np.random.default_rng(0)
    (logits * _tensor(rng.standard_normal(logits.shape))).sum().backward()
    g = mem.states.grad.numpy()
    assert np.all(g[1, 2:] == 0) and np.all(g[2, 4:] == 0)
    attended = wd[0].reshape(-1, 5).sum(axis=0) > 0                 # local windows skip some positions
    assert attended.sum() >= 3 and np.all(np.abs(g[0]).sum(axis=-1)[attended] > 0)


@pytest.mark.parametrize("kind,kw", [CASES[1], CASES[6], CASES[10], CASES[18], CASES[15]], ids=lambda x: str(x))
def test_teacher_forcing_equals_stepping(kind, kw):
    ta.manual_seed(3)
    dec, D = make_decoder(kind, kw)
    mem = memory(D=D, layers=dec.num_layers, cell=dec.cell, grad=False)
    tgt = np.array([[1, 3, 4, 5], [1, 6, 2, 0], [1, 3, 3, 3]])
    logits, w = dec(tgt, mem)
    state = dec.init_state(mem)
    for t in range(4):
        tok = np.argmax(lg.numpy(), axis=1) if getattr(dec, "feed_previous", False) and t else tgt[:, t]
        lg, state, wt = dec.step(tok, state, mem)
        np.testing.assert_allclose(lg.numpy(), logits.numpy()[:, t], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(wt.numpy(), w.numpy()[:, t], rtol=1e-12, atol=1e-12)


def small_model(kind="bahdanau", V=9, src_V=11, cell="lstm", bidirectional=True, num_layers=2, dtype="float32",
                label_smoothing=0.0, **kw):
    u = 5
    enc = Encoder(src_V, 4, u, cell=cell, bidirectional=bidirectional, num_layers=num_layers, dtype=dtype)
    D = enc.output_dim
    if kind == "bahdanau":
        dec = BahdanauDecoder(V, 3, u, cell=kw.pop("dcell", "gru"), num_layers=num_layers, memory_dim=D,
                              dtype=dtype, **kw)
    elif kind == "luong":
        dec = LuongDecoder(V, 3, u, score=kw.pop("score", "general"), num_layers=num_layers, memory_dim=D,
                           dtype=dtype, **kw)
    else:
        dec = AttentionDecoder(V, 3, u, num_layers=num_layers, memory_dim=D, dtype=dtype, **kw)
    return Seq2Seq(enc, dec, PAD, BOS, EOS, label_smoothing=label_smoothing)


SRC = np.array([[3, 4, 5, 6, 7], [3, 8, 0, 0, 0], [9, 10, 4, 3, 0]])
TGT_IN = np.array([[1, 3, 4, 5], [1, 6, 0, 0], [1, 7, 8, 3]])
TGT_OUT = np.array([[3, 4, 5, 2], [6, 2, 0, 0], [7, 8, 3, 2]])


@pytest.mark.parametrize("kind,kw", [("bahdanau", {}), ("bahdanau", dict(dcell="lstm")),
                                     ("luong", dict(local="p", window=1)), ("luong", dict(score="concat")),
                                     ("legacy", dict(num_heads=2, initial_state_attention=True))])
def test_gradcheck_whole_loss(kind, kw):
    ta.manual_seed(4)
    model = small_model(kind, dtype="float64", label_smoothing=0.1, cell="lstm" if kind != "luong" else "gru", **kw)
    assert ta.gradcheck(lambda: model.loss(SRC, TGT_IN, TGT_OUT), [], params=model.parameters())


def test_source_padding_is_invisible():
    """A padded row decodes exactly as the same row without padding; pad embeddings get no gradient."""
    ta.manual_seed(5)
    for kind in ("bahdanau", "luong", "legacy"):
        model = small_model(kind, dtype="float64")
        full = model(SRC, TGT_IN).numpy()
        alone = model(SRC[1:2, :2], TGT_IN[1:2]).numpy()
        np.testing.assert_allclose(full[1], alone[0], rtol=1e-10, atol=1e-12)
        model.zero_grad()
        model.loss(SRC, TGT_IN, TGT_OUT).backward()
        assert np.all(model.encoder.embedding.embeddings.grad.numpy()[PAD] == 0)
        assert np.any(model.encoder.embedding.embeddings.grad.numpy()[3] != 0)


# -- attention pieces agree with tinyattn.attention ----------------------------------------------------
def _fused_inputs(seed=0, B=4, S=6, A=5, D=3):
    rng = np.random.default_rng(seed)
    t = lambda *shape: _tensor(rng.standard_normal(shape), requires_grad=True)      # noqa: E731
    mask = np.ones((B, S), bool)
    mask[1, 3:] = False
    mask[3, :] = False                                   # a row with nothing to attend to
    return t(B, A), t(B, S, A), t(B, S, D), t(A), mask


def test_fused_additive_attention_equals_the_composed_ops():
    qp, k, x, v, mask = _fused_inputs()
    c, a = additive_attention(qp, k, x, v, mask)
    I = _tensor(np.eye(5))
    e = additive_score(qp.reshape(4, 1, 5), k, I, I, v)                 # vᵀ tanh(qp + k_j)
    a2 = masked_softmax(e, mask[:, None, :])
    c2 = attend(a2, x)
    np.testing.assert_allclose(a.numpy(), a2.numpy()[:, 0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(c.numpy(), c2.numpy()[:, 0], rtol=1e-12, atol=1e-15)
    assert np.all(a.numpy()[3] == 0) and np.all(c.numpy()[3] == 0) and np.all(a.numpy()[1, 3:] == 0)
    rng = np.random.default_rng(1)
    gc, ga = rng.standard_normal(c.shape), rng.standard_normal(a.shape)
    got = ta.grad([c, a], [qp, k, x, v], [gc, ga])
    want = ta.grad([c2, a2], [qp, k, x, v], [gc[:, None], ga[:, None]])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-10, atol=1e-13)
    assert np.all(got[1].numpy()[1, 3:] == 0) and np.all(got[2].numpy()[1, 3:] == 0) and np.all(got[1].numpy()[3] == 0)


def test_fused_additive_attention_gradcheck():
    qp, k, x, v, mask = _fused_inputs(2)
    assert ta.gradcheck(lambda *ts: additive_attention(*ts, mask), [qp, k, x, v])
    assert ta.gradcheck(lambda *ts: additive_attention(*ts, mask)[0], [qp, k, x, v])   # weights unused
    assert ta.gradcheck(lambda *ts: additive_attention(*ts, mask)[1], [qp, k, x, v])   # context unused


def test_bahdanau_weights_are_additive_attention():
    ta.manual_seed(6)
    dec, D = make_decoder("bahdanau", dict(cell="gru", attention_units=3))
    mem = memory(D=D, cell="gru", grad=False)
    state = dec.init_state(mem)
    _, _, w = dec.step(np.array([1, 1, 1]), state, mem)
    q = state.top.reshape(3, 1, 4)
    e = additive_score(q, mem.states, dec.W_q.kernel, dec.W_k.kernel, dec.v)
    np.testing.assert_allclose(w.numpy(), masked_softmax(e, mem.mask[:, None, :]).numpy()[:, 0], rtol=1e-12)


@pytest.mark.parametrize("score", ["general", "concat"])
def test_luong_scores_are_the_attention_scores(score):
    ta.manual_seed(7)
    dec, D = make_decoder("luong", dict(score=score))
    mem = memory(D=D, grad=False)
    state = dec.init_state(mem)
    h = _tensor(np.random.default_rng(0).standard_normal((3, 4)))
    got = dec.scores(h, state, mem).numpy()
    q = h.reshape(3, 1, 4)
    want = general_score(q, mem.states, dec.W_a) if score == "general" else concat_score(q, mem.states, dec.W_a, dec.v_a)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-12)


@pytest.mark.parametrize("local", ["m", "p"])
def test_luong_local_window(local):
    ta.manual_seed(8)
    dec, D = make_decoder("luong", dict(score="general", local=local, window=1))
    mem = memory(S=8, D=D, grad=False, pad=False)
    state = dec.init_state(mem)
    for t in range(4):
        _, state, w = dec.step(np.array([3, 4, 5]), state, mem)
        nz = w.numpy() != 0
        for b in range(3):
            pos = np.flatnonzero(nz[b])
            assert pos.size and pos.max() - pos.min() <= 2          # inside a window of half-width 1
            if local == "m":
                assert set(pos) <= {t - 1, t, t + 1}
        assert np.all(w.numpy().sum(-1) <= 1 + 1e-12)


# -- the TF legacy decoder, equation by equation --------------------------------------------------------
def _sig(x):
    return 1 / (1 + np.exp(-x))


def _np_cell(cell, x, s):
    if isinstance(s, tuple):                          # Keras LSTM: gates i, f, c, o
        h, c = s
        z = x @ cell.kernel.numpy() + h @ cell.recurrent_kernel.numpy() + cell.bias.numpy()
        i, f, g, o = np.split(z, 4, axis=-1)
        c = _sig(f) * c + _sig(i) * np.tanh(g)
        h = _sig(o) * np.tanh(c)
        return h, (h, c)
    b = cell.bias.numpy()                                # Keras GRU, reset_after: gates z, r, h
    xk, rk = x @ cell.kernel.numpy() + b[0], s @ cell.recurrent_kernel.numpy() + b[1]
    u = s.shape[-1]
    z, r = _sig(xk[:, :u] + rk[:, :u]), _sig(xk[:, u:2 * u] + rk[:, u:2 * u])
    h = z * s + (1 - z) * np.tanh(xk[:, 2 * u:] + r * rk[:, 2 * u:])
    return h, h


def tf_attention_decoder(dec, mem, tokens):
    """The loop of tf.contrib.legacy_seq2seq.attention_decoder, in NumPy, with dec's weights."""
    H = dec.num_heads
    hidden = mem.states.numpy()                                                     # (B, S, D)
    feats = [hidden @ dec.W1[a].kernel.numpy() for a in range(H)]                   # 1x1 conv, no bias
    state = [tuple(t.numpy() for t in s) if isinstance(s, tuple) else s.numpy() for s in mem.final]

    def attention(st):
        q = np.concatenate([p for s in st for p in ((s[1], s[0]) if isinstance(s, tuple) else (s,))], axis=1)
        ds, ws = [], []
        for a in range(H):
            y = q @ dec.W2[a].kernel.numpy() + dec.W2[a].bias.numpy()
            s = np.sum(dec.v[a].numpy() * np.tanh(feats[a] + y[:, None, :]), axis=2)
            e = np.exp(s - s.max(axis=1, keepdims=True))
            w = e / e.sum(axis=1, keepdims=True)
            ds.append(np.sum(w[:, :, None] * hidden, axis=1))
            ws.append(w)
        return ds, ws

    B = hidden.shape[0]
    attns = attention(state)[0] if dec.initial_state_attention else [np.zeros((B, hidden.shape[2]))] * H
    prev, outs, weights = None, [], []
    for i, tok in enumerate(tokens):
        if dec.feed_previous and prev is not None:
            tok = np.argmax(prev, axis=1)                                        # loop_function
        inp = dec.embedding.embeddings.numpy()[tok]
        x = np.concatenate([inp] + attns, axis=1) @ dec.W_in.kernel.numpy() + dec.W_in.bias.numpy()
        new = []
        for cell, s in zip(dec.cells, state):
            x, s = _np_cell(cell, x, s)
            new.append(s)
        state, cell_output = new, x
        attns, ws = attention(state)
        if not dec.output_projection:
            cell_output = cell_output @ dec.W_w.kernel.numpy() + dec.W_w.bias.numpy()     # OutputProjectionWrapper
        output = np.concatenate([cell_output] + attns, axis=1) @ dec.W_o.kernel.numpy() + dec.W_o.bias.numpy()
        logits = output @ dec.proj.kernel.numpy() + dec.proj.bias.numpy() if dec.output_projection else output
        prev = logits
        outs.append(logits)
        weights.append(ws[0] if H == 1 else np.stack(ws, axis=1))
    return outs, weights


@pytest.mark.parametrize("kw", LEGACY, ids=[str(k) for k in LEGACY])
def test_legacy_decoder_equals_tf_equations(kw):
    ta.manual_seed(9)
    dec, D = make_decoder("legacy", kw)
    for a in range(dec.num_heads):                      # make the heads' attention visibly peaked
        dec.v[a].data *= 4
    mem = memory(D=D, layers=dec.num_layers, cell=dec.cell, grad=False, pad=False)
    tokens = [np.array([1, 1, 1]), np.array([3, 4, 5]), np.array([6, 2, 3])]
    want, want_w = tf_attention_decoder(dec, mem, tokens)
    state = dec.init_state(mem)
    for t, tok in enumerate(tokens):
        if dec.feed_previous and t > 0:            # step reads the token it is given: give the argmax
            tok = np.argmax(logits.numpy(), axis=1)
        logits, state, w = dec.step(tok, state, mem)
        np.testing.assert_allclose(logits.numpy(), want[t], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(w.numpy(), want_w[t], rtol=1e-10, atol=1e-12)
    logits, w = dec(np.stack(tokens, axis=1), mem)
    np.testing.assert_allclose(logits.numpy(), np.stack(want, axis=1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(w.numpy(), np.stack(want_w, axis=1), rtol=1e-10, atol=1e-12)
    if dec.feed_previous:                          # the loop function did change the inputs
        dec.feed_previous = False
        teacher, _ = dec(np.stack(tokens, axis=1), mem)
        assert not np.allclose(teacher.numpy(), logits.numpy())


def test_legacy_feed_previous_ignores_later_inputs():
    ta.manual_seed(10)
    dec, D = make_decoder("legacy", dict(feed_previous=True))
    mem = memory(D=D, grad=False)
    a, _ = dec(np.array([[1, 3, 4], [1, 5, 6], [1, 2, 2]]), mem)
    b, _ = dec(np.array([[1, 6, 6], [1, 3, 3], [1, 4, 5]]), mem)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


# -- decoding -----------------------------------------------------------------------------------------
def randomize(model, seed, emb=3.0, other=0.6):
    """Redraw every weight (embeddings large) so a random model's outputs depend on the source and
    the previous token, and some outputs end early while others run to max_len."""
    rng = np.random.default_rng(seed)
    for n, p in model.named_parameters():
        w = (rng.standard_normal(p.shape) * (emb if "embedding" in n else other)).astype(p.dtype)
        p.data = ta.get_array_module(p.data).asarray(w)
    return model


DECODE_MODELS = [("bahdanau", 7, {}), ("luong", 1, dict(score="concat", local="p", window=1)),
                 ("legacy", 1, dict(num_heads=2, feed_previous=True))]
DECODE_SRC = np.array([[3, 4, 5, 6, 7], [3, 8, 0, 0, 0], [9, 10, 4, 3, 0], [5, 5, 0, 0, 0], [4, 3, 6, 0, 0],
                       [7, 7, 7, 7, 7]])


@pytest.mark.parametrize("kind,seed,kw", DECODE_MODELS, ids=[k for k, _, _ in DECODE_MODELS])
@pytest.mark.parametrize("alpha", [0.0, 0.6])
def test_beam_width_one_is_greedy(kind, seed, kw, alpha):
    ta.manual_seed(11)
    model = randomize(small_model(kind, V=5, **kw), seed)
    src = DECODE_SRC
    g = greedy_decode(model, src, 7)
    b = beam_search(model, src, beam_width=1, max_len=7, length_penalty=alpha)
    assert (g.lengths < 7).any() and (g.lengths == 7).any()      # some outputs end early, some do not
    assert len({tuple(r) for r in g.tokens}) >= 2
    np.testing.assert_array_equal(b.tokens, g.tokens)
    np.testing.assert_array_equal(b.lengths, g.lengths)
    np.testing.assert_allclose(b.log_probs, g.log_probs, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.alignments, g.alignments, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(b.scores, g.scores / length_penalty(g.lengths, alpha), rtol=1e-5)


def exhaustive_best(model, src_row, V, max_len, alpha):
    """Score every hypothesis (ending in EOS within max_len, or max_len tokens without EOS)."""
    mem1 = model.encode(src_row[None])
    others = [t for t in range(V) if t != EOS]
    best = (-np.inf, None)
    with ta.no_grad():
        for n in range(1, max_len + 1):
            hyps = [p + (EOS,) for p in itertools.product(others, repeat=n - 1)]
            if n == max_len:
                hyps += list(itertools.product(others, repeat=n))
            y = np.array(hyps)
            tgt_in = np.concatenate([np.full((len(y), 1), BOS), y[:, :-1]], axis=1)
            mem = mem1.repeat(len(y))                  # step by step: the decoder reads each hypothesis
            state, steps = model.decoder.init_state(mem), []
            for t in range(n):
                lg, state, _ = model.decoder.step(tgt_in[:, t], state, mem)
                steps.append(lg.numpy())
            logp = ta.log_softmax(_tensor(np.stack(steps, axis=1)), axis=-1).numpy()
            total = np.take_along_axis(logp, y[:, :, None], axis=2)[:, :, 0].sum(axis=1)
            norm = total / length_penalty(n, alpha)
            i = int(np.argmax(norm))
            if norm[i] > best[0]:
                best = (float(norm[i]), list(y[i]))
    return best


@pytest.mark.parametrize("kind,seed,kw", DECODE_MODELS, ids=[k for k, _, _ in DECODE_MODELS])
@pytest.mark.parametrize("alpha,max_len", [(0.0, 3), (0.6, 4), (1.0, 4)])
def test_wide_beam_finds_the_exhaustive_best(kind, seed, kw, alpha, max_len):
    ta.manual_seed(12)
    V = 4
    model = randomize(small_model(kind, V=V, dtype="float64", **kw), seed, emb=1.0, other=0.8).eval()
    src = DECODE_SRC
    res = beam_search(model, src, beam_width=64, max_len=max_len, length_penalty=alpha)
    narrow = beam_search(model, src, beam_width=2, max_len=max_len, length_penalty=alpha)
    for b in range(len(src)):
        score, seq = exhaustive_best(model, src[b], V, max_len, alpha)
        assert res.tokens[b, :res.lengths[b]].tolist() == seq
        np.testing.assert_allclose(res.scores[b], score, rtol=1e-9)
        np.testing.assert_allclose(res.log_probs[b].sum() / length_penalty(res.lengths[b], alpha), score, rtol=1e-9)
        assert narrow.scores[b] <= score + 1e-12


def test_sampling():
    ta.manual_seed(13)
    model = randomize(small_model("bahdanau", V=6), 7, emb=1.0)
    src = SRC
    g = greedy_decode(model, src, 6)
    s1 = sample(model, src, 6, top_k=1, seed=3, temperature=2.0)
    np.testing.assert_array_equal(s1.tokens, g.tokens)
    np.testing.assert_allclose(s1.log_probs, g.log_probs, rtol=1e-6)
    a = sample(model, np.repeat(src, 20, axis=0), 6, temperature=3.0, seed=7)
    b = sample(model, np.repeat(src, 20, axis=0), 6, temperature=3.0, seed=7)
    c = sample(model, np.repeat(src, 20, axis=0), 6, temperature=3.0, seed=8)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    assert not np.array_equal(a.tokens, c.tokens)
    k2 = sample(model, np.repeat(src, 20, axis=0), 6, top_k=2, temperature=5.0, seed=1)
    # with top_k=2 the first token is one of the two most likely first tokens
    with ta.no_grad():
        mem = model.encode(np.repeat(src, 20, axis=0))
        lg, _, _ = model.decoder.step(np.full(60, BOS), model.decoder.init_state(mem), mem)
    top2 = np.argsort(-lg.numpy(), axis=1)[:, :2]
    assert all(k2.tokens[i, 0] in top2[i] for i in range(60))
    assert len({tuple(r) for r in k2.tokens[:20, :1]}) == 2                  # and both occur


def test_decode_result_fields():
    ta.manual_seed(14)
    model = randomize(small_model("luong", V=5), 1)
    for res in (greedy_decode(model, SRC, 6), beam_search(model, SRC, 3, 6)):
        B, L = res.tokens.shape
        assert res.log_probs.shape == (B, L) and res.alignments.shape == (B, L, SRC.shape[1])
        for b in range(B):
            n = res.lengths[b]
            assert np.all(res.tokens[b, n:] == PAD) and np.all(res.log_probs[b, n:] == 0)
            assert np.all(res.alignments[b, :, SRC[b] == PAD] == 0)
            if n < 6:
                assert res.tokens[b, n - 1] == EOS
        seqs = res.sequences()
        assert all(EOS not in s[-1:] for s in seqs)


# -- loss and training ------------------------------------------------------------------------------------
def test_label_smoothing_matches_hand_computation():
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 3, 5))
    y = np.array([[1, 4, 0], [2, 0, 0]])
    eps = 0.2
    got = sequence_cross_entropy(_tensor(z), y, pad_id=0, label_smoothing=eps).item()
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    terms = []
    for b in range(2):
        for t in range(3):
            if y[b, t] == 0:
                continue
            q = np.full(5, eps / 5)
            q[y[b, t]] += 1 - eps
            terms.append(-(q * logp[b, t]).sum())
    assert abs(got - np.mean(terms)) < 1e-12
    plain = sequence_cross_entropy(_tensor(z), y, pad_id=0).item()
    assert abs(plain - np.mean([-logp[0, 0, 1], -logp[0, 1, 4], -logp[1, 0, 2]])) < 1e-12


def test_fit_trains_a_seq2seq_model():
    ta.manual_seed(15)
    model = small_model("bahdanau", bidirectional=False, num_layers=1)
    opt = ta.optim.Adam(model.parameters(), lr=0.02)
    src = np.tile(SRC, (4, 1))
    tin, tout = np.tile(TGT_IN, (4, 1)), np.tile(TGT_OUT, (4, 1))
    hist = ta.train.fit(model, model.loss_fn, opt, (src, tin), tout, epochs=30, batch_size=6, verbose=0)
    assert hist["loss"][-1] < 0.5 * hist["loss"][0]
    assert abs(ta.train.evaluate(model, model.loss_fn, (src, tin), tout) - model.loss(src, tin, tout).item()) < 1e-5


def test_errors_name_the_problem():
    enc = Encoder(11, 4, 5, bidirectional=True)
    with pytest.raises(ValueError, match="memory_dim=10"):
        Seq2Seq(enc, BahdanauDecoder(8, 3, 5))
    with pytest.raises(ValueError, match="score='dot' needs memory_dim == units"):
        LuongDecoder(8, 3, 5, memory_dim=10)
    with pytest.raises(ValueError, match="cell must be"):
        Encoder(10, 4, 5, cell="rnn")
    dec = BahdanauDecoder(8, 3, 5, memory_dim=10, num_layers=2)
    with pytest.raises(ValueError, match="num_layers"):
        dec.init_state(enc(SRC))


# -- metrics ---------------------------------------------------------------------------------------------
def test_bleu_matches_d2l():
    # d2l's translations of "go .", "i lost .", "he's calm .", "i'm home ." (k=2)
    assert bleu("va !", "va !", k=2) == 1.0
    assert bleu("j'ai perdu .", "j'ai perdu .", k=2) == 1.0
    assert round(bleu("il est riche .", "il est calme .", k=2), 3) == 0.658
    assert bleu("je suis chez moi .", "je suis chez moi .", k=2) == 1.0
    assert abs(bleu("il est", "il est calme .", k=2) - np.exp(-1)) < 1e-12          # brevity: exp(1 − 4/2)
    assert bleu("the the the", "the cat", k=2) == 0.0                                 # no matching bigram
    assert abs(bleu([5, 5, 7], [5, 7, 9], k=1) - (2 / 3) ** 0.5) < 1e-12             # clipped unigram counts
    assert bleu("a", "a b", k=2) == 0.0                                               # no bigram at all


def test_exact_match():
    assert exact_match([[1, 2], [3], [4, 5]], [[1, 2], [3, 4], [4, 5]]) == pytest.approx(2 / 3)
    assert exact_match(["a b", "c"], ["a b", "c"]) == 1.0


# -- checkpoints and devices -----------------------------------------------------------------------------
def test_checkpoint_roundtrip(tmp_path):
    ta.manual_seed(16)
    a = small_model("legacy", num_heads=2)
    ta.manual_seed(17)
    b = small_model("legacy", num_heads=2)
    assert not np.allclose(a(SRC, TGT_IN).numpy(), b(SRC, TGT_IN).numpy())
    ta.save(a, tmp_path / "s2s.npz")
    ta.load(b, tmp_path / "s2s.npz")
    np.testing.assert_array_equal(a(SRC, TGT_IN).numpy(), b(SRC, TGT_IN).numpy())
    np.testing.assert_array_equal(beam_search(a, SRC, 3, 6).tokens, beam_search(b, SRC, 3, 6).tokens)


@pytest.mark.gpu
@pytest.mark.parametrize("kind,kw", [("bahdanau", {}), ("luong", dict(local="p", window=1)),
                                     ("legacy", dict(num_heads=2, feed_previous=True))])
def test_gpu_matches_cpu(kind, kw):
    if not ta.gpu_available():
        pytest.skip("CuPy or a GPU is not available")
    ta.use_backend("numpy")                             # the CPU model first (reset after the test)
    ta.manual_seed(18)
    model = randomize(small_model(kind, dtype="float64", label_smoothing=0.1, **kw), 3)
    cpu_loss = model.loss(SRC, TGT_IN, TGT_OUT)
    cpu_loss.backward()
    cpu_grads = [None if p.grad is None else p.grad.numpy() for p in model.parameters()]
    cpu = [f(model) for f in (lambda m: greedy_decode(m, SRC, 6), lambda m: beam_search(m, SRC, 3, 6),
                              lambda m: sample(m, SRC, 6, top_k=3, seed=4))]
    model.zero_grad()
    model.to("gpu")
    gpu_loss = model.loss(SRC, TGT_IN, TGT_OUT)          # NumPy ids move to the device by themselves
    gpu_loss.backward()
    assert gpu_loss.device == "gpu"
    np.testing.assert_allclose(gpu_loss.item(), cpu_loss.item(), rtol=1e-10)
    for p, g in zip(model.parameters(), cpu_grads):
        assert (p.grad is None) == (g is None)                  # the same parameters are unused
        if g is not None:
            np.testing.assert_allclose(p.grad.numpy(), g, rtol=1e-8, atol=1e-10)
    gpu = [f(model) for f in (lambda m: greedy_decode(m, SRC, 6), lambda m: beam_search(m, SRC, 3, 6),
                              lambda m: sample(m, SRC, 6, top_k=3, seed=4))]
    for c, g in zip(cpu, gpu):
        np.testing.assert_array_equal(c.tokens, g.tokens)
        np.testing.assert_allclose(c.log_probs, g.log_probs, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(c.alignments, g.alignments, rtol=1e-8, atol=1e-10)


def test_dropout_only_in_training():
    ta.manual_seed(19)
    for kind, kw in (("bahdanau", dict(dropout=0.5)), ("luong", dict(dropout=0.5, num_layers=2))):
        model = small_model(kind, **kw)
        model.encoder.dropout = 0.5
        model.eval()
        a, b = model(SRC, TGT_IN).numpy(), model(SRC, TGT_IN).numpy()
        np.testing.assert_array_equal(a, b)
        model.train()
        c = model(SRC, TGT_IN).numpy()
        assert not np.allclose(a, c)
        model.loss(SRC, TGT_IN, TGT_OUT).backward()
        g1 = greedy_decode(model, SRC, 5).tokens                 # decoding runs in eval mode
        np.testing.assert_array_equal(g1, greedy_decode(model, SRC, 5).tokens)
        assert model.training                                    # and restores the mode
