"""Decoding a trained :class:`~tinyattn.seq2seq.Seq2Seq`: greedy, beam search, sampling.

Each starts the decoder from BOS, runs ``decoder.step`` under ``no_grad`` in eval mode, and returns a
:class:`DecodeResult` with, for every source sentence b:

    tokens      (B, L) int    the output, EOS included, then pad_id           L ≤ max_len
    log_probs   (B, L) float  log p(y_t | y_<t, x) of each output token under the model (0 after EOS)
    alignments  (B, L, S)     the attention weights of each output step (B, L, H, S) for H heads
    lengths     (B,)          number of tokens up to and including EOS (max_len if none)
    scores      (B,)          Σ log_probs (greedy, sample), or the length-normalised score (beam)

Beam search (``beam_search``) keeps K hypotheses per sentence, all B·K of them decoded in one batch.
Per step each hypothesis is extended by every token; of the K·V candidates the best 2K (by summed
log-probability) are considered: an EOS candidate ranked in the first K is *finished* (kept with its
score normalised by GNMT's length penalty, Wu et al. 2016)

    score(Y) = log p(Y | X) / lp(Y),    lp(Y) = ((5 + |Y|) / 6)^α          (|Y| counts EOS)

and the best K non-EOS candidates stay *alive*. A sentence is done once K hypotheses have finished;
at ``max_len`` the alive hypotheses are scored too, and the result is the best finished one. With
K = 1 this is exactly greedy decoding (an EOS finishes only when it is the best candidate).
"""
from contextlib import contextmanager

import numpy as np

from .. import backend
from .. import functions as F
from ..autograd import no_grad

__all__ = ["DecodeResult", "greedy_decode", "beam_search", "sample", "length_penalty"]


class DecodeResult:
    """tokens (B, L), log_probs (B, L), alignments (B, L, S) [or (B, L, H, S)], lengths (B,), scores (B,):
    NumPy arrays (see the module docstring). ``sequences()`` gives the token lists without EOS/padding."""

    def __init__(self, tokens, log_probs, alignments, lengths, scores, eos_id):
        self.tokens, self.log_probs, self.alignments = tokens, log_probs, alignments
        self.lengths, self.scores, self.eos_id = lengths, scores, eos_id

    def sequences(self, strip_eos=True):
        """List over sentences of token-id lists (the first ``lengths[b]`` tokens, EOS dropped)."""
        out = []
        for row, n in zip(self.tokens, self.lengths):
            seq = [int(x) for x in row[:int(n)]]
            if strip_eos and seq and seq[-1] == self.eos_id:
                seq = seq[:-1]
            out.append(seq)
        return out

    def __repr__(self):
        return (f"DecodeResult(tokens={self.tokens.shape}, alignments={self.alignments.shape}, "
                f"mean length={float(np.mean(self.lengths)):.2f})")


def length_penalty(n, alpha):
    """GNMT's lp = ((5 + n) / 6)^α for a hypothesis of n tokens (α = 0: no normalisation)."""
    return ((5.0 + n) / 6.0) ** alpha


_lp = length_penalty     # beam_search's argument of that name shadows the function


@contextmanager
def _inference(model):
    was = model.training
    model.eval()
    try:
        with no_grad():
            yield
    finally:
        model.train(was)


def _check(model, max_len, name):
    for attr in ("encode", "decoder", "bos_id", "eos_id", "pad_id"):
        if not hasattr(model, attr):
            raise TypeError(f"{name}: expected a Seq2Seq model, got {type(model).__name__}")
    if not isinstance(max_len, (int, np.integer)) or max_len < 1:
        raise ValueError(f"{name}: max_len must be a positive integer, got {max_len!r}")


def _stepwise(model, src, max_len, choose):
    """The shared loop of greedy decoding and sampling: ``choose(logits array (B, V), t)`` → ids (B,)."""
    dec = model.decoder
    with _inference(model):
        mem = model.encode(src)
        B = mem.states.shape[0]
        xp = backend.get_array_module(mem.states.data)
        state = dec.init_state(mem)
        token = xp.full((B,), model.bos_id, dtype=np.int64)
        done = xp.zeros((B,), dtype=bool)
        lengths = xp.zeros((B,), dtype=np.int64)
        toks, lps, alis = [], [], []
        for t in range(max_len):
            logits, state, w = dec.step(token, state, mem)
            logp = F.log_softmax(logits, axis=-1).data                          # (B, V)
            nxt = choose(logits.data, t)
            lp = xp.take_along_axis(logp, nxt[:, None], axis=1)[:, 0]
            nxt = xp.where(done, model.pad_id, nxt)
            lp = xp.where(done, 0.0, lp)
            wd = w.data * ~done.reshape((B,) + (1,) * (w.ndim - 1))
            lengths += ~done
            done = done | (nxt == model.eos_id)
            toks.append(nxt)
            lps.append(lp)
            alis.append(wd)
            token = nxt
            if bool(done.all()):
                break
        tokens = xp.stack(toks, axis=1)
        log_probs = xp.stack(lps, axis=1)
        return DecodeResult(backend.as_numpy(tokens), backend.as_numpy(log_probs),
                            backend.as_numpy(xp.stack(alis, axis=1)), backend.as_numpy(lengths),
                            backend.as_numpy(log_probs.sum(axis=1)), model.eos_id)


def greedy_decode(model, src, max_len):
    """Greedy decoding: y_t = argmax_k p(k | y_<t, x), until EOS or ``max_len`` tokens.

    model: a Seq2Seq; src (B, S) ids → :class:`DecodeResult` (tokens (B, L), log_probs (B, L),
    alignments (B, L, S), lengths (B,), scores = Σ log_probs (B,))."""
    _check(model, max_len, "greedy_decode")
    return _stepwise(model, src, max_len, lambda z, t: backend.get_array_module(z).argmax(z, axis=-1))


def sample(model, src, max_len, temperature=1.0, top_k=None, seed=None):
    """Ancestral sampling: y_t ~ softmax(z_t / temperature), restricted to the ``top_k`` most likely
    tokens when given (top_k=1 is greedy decoding). Sampling uses the Gumbel-max trick,
    y_t = argmax_k (z_k / T + g_k), g_k = −log(−log u_k), u ~ U(0, 1), with u drawn on the host from
    ``numpy.random.default_rng(seed)`` (or tinyattn's seeded generator when seed is None), so a seed
    gives the same samples on CPU and GPU. ``log_probs`` are under the model itself (T = 1, no top-k).
    Returns a :class:`DecodeResult`."""
    _check(model, max_len, "sample")
    if not temperature > 0:
        raise ValueError(f"sample: temperature must be > 0, got {temperature}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"sample: top_k must be None or a positive integer, got {top_k!r}")
    rng = np.random.default_rng(seed) if seed is not None else backend.rng(np)

    def choose(z, t):
        xp = backend.get_array_module(z)
        z = z / float(temperature)
        V = z.shape[-1]
        if top_k is not None and top_k < V:
            kth = -xp.partition(-z, top_k - 1, axis=-1)[:, top_k - 1:top_k]     # k-th largest (B, 1)
            z = xp.where(z >= kth, z, -np.inf)
        u = rng.random(z.shape)
        with np.errstate(divide="ignore"):
            g = -np.log(-np.log(u))
        return xp.argmax(z + xp.asarray(backend.to_device(g.astype(z.dtype), backend.device_of(z))), axis=-1)
    return _stepwise(model, src, max_len, choose)


def beam_search(model, src, beam_width=4, max_len=50, length_penalty=0.6):
    """Beam search with GNMT length normalisation (module docstring), batched over B·K hypotheses.

    model: a Seq2Seq; src (B, S) ids; beam_width K ≥ 1; max_len: the longest output (EOS included);
    length_penalty α ≥ 0. Returns the best finished hypothesis of each sentence as a
    :class:`DecodeResult` (scores = its normalised score)."""
    _check(model, max_len, "beam_search")
    if not isinstance(beam_width, (int, np.integer)) or beam_width < 1:
        raise ValueError(f"beam_search: beam_width must be a positive integer, got {beam_width!r}")
    if length_penalty < 0:
        raise ValueError(f"beam_search: length_penalty must be >= 0, got {length_penalty}")
    K, alpha, dec, eos = int(beam_width), float(length_penalty), model.decoder, model.eos_id
    with _inference(model):
        mem1 = model.encode(src)
        B, S = mem1.states.shape[:2]
        mem = mem1.repeat(K)                                            # row b·K + j: beam j of sentence b
        xp = backend.get_array_module(mem.states.data)
        dtype = mem.states.dtype
        state = dec.init_state(mem1).repeat(K)                          # the cache computed once per sentence
        token = xp.full((B * K,), model.bos_id, dtype=np.int64)
        rows = xp.arange(B)[:, None]
        score = xp.full((B, K), -np.inf, dtype=dtype)
        score[:, 0] = 0                                                 # one live hypothesis to start
        seqs = xp.zeros((B, K, 0), dtype=np.int64)
        lps = xp.zeros((B, K, 0), dtype=dtype)
        alis = None
        fin_score = xp.full((B, K), -np.inf, dtype=dtype)               # normalised scores
        fin_seq = xp.full((B, K, max_len), model.pad_id, dtype=np.int64)
        fin_lps = xp.zeros((B, K, max_len), dtype=dtype)
        fin_ali = None
        fin_len = xp.zeros((B, K), dtype=np.int64)
        n_fin = xp.zeros((B,), dtype=np.int64)
        done = xp.zeros((B,), dtype=bool)

        def merge(c_norm, c_seq, c_lps, c_ali, n):
            """Keep the K best of the finished hypotheses and the candidates (n tokens, scores c_norm)."""
            nonlocal fin_score, fin_seq, fin_lps, fin_ali, fin_len
            pad = max_len - n
            c_seq = xp.concatenate([c_seq, xp.full(c_seq.shape[:2] + (pad,), model.pad_id, np.int64)], axis=2)
            c_lps = xp.concatenate([c_lps, xp.zeros(c_lps.shape[:2] + (pad,), dtype)], axis=2)
            c_ali = xp.concatenate([c_ali, xp.zeros(c_ali.shape[:2] + (pad,) + c_ali.shape[3:], dtype)], axis=2)
            all_score = xp.concatenate([fin_score, c_norm], axis=1)
            keep = xp.argsort(-all_score, axis=1, kind="stable")[:, :K]
            fin_score = xp.take_along_axis(all_score, keep, axis=1)
            fin_seq = xp.concatenate([fin_seq, c_seq], axis=1)[rows, keep]
            fin_lps = xp.concatenate([fin_lps, c_lps], axis=1)[rows, keep]
            fin_ali = xp.concatenate([fin_ali, c_ali], axis=1)[rows, keep]
            fin_len = xp.concatenate([fin_len, xp.full(c_norm.shape, n, np.int64)], axis=1)[rows, keep]

        for t in range(max_len):
            logits, state, w = dec.step(token, state, mem)
            logp = F.log_softmax(logits, axis=-1).data                  # (B·K, V)
            V = logp.shape[-1]
            logp = logp.reshape(B, K * V)
            w = w.data.reshape((B, K) + w.shape[1:])                    # (B, K, S) or (B, K, H, S)
            if alis is None:
                alis = xp.zeros((B, K, 0) + w.shape[2:], dtype)
                fin_ali = xp.zeros((B, K, max_len) + w.shape[2:], dtype)
            cand = (score[:, :, None] + logp.reshape(B, K, V)).reshape(B, K * V)
            n_c = min(2 * K, K * V)
            idx = xp.argsort(-cand, axis=1, kind="stable")[:, :n_c]     # best 2K candidates, best first
            c_score = xp.take_along_axis(cand, idx, axis=1)
            c_lp = xp.take_along_axis(logp, idx, axis=1)
            c_beam, c_tok = idx // V, idx % V
            c_seq = xp.concatenate([seqs[rows, c_beam], c_tok[:, :, None]], axis=2)          # (B, n_c, t+1)
            c_lps = xp.concatenate([lps[rows, c_beam], c_lp[:, :, None]], axis=2)
            c_ali = xp.concatenate([alis[rows, c_beam], w[rows, c_beam][:, :, None]], axis=2)
            is_eos = c_tok == eos
            rank = xp.arange(n_c)[None, :]
            finish = is_eos & xp.isfinite(c_score) & (rank < K) & ~done[:, None]
            if bool(finish.any()):
                merge(xp.where(finish, c_score / _lp(t + 1, alpha), -np.inf), c_seq, c_lps, c_ali, t + 1)
                n_fin = n_fin + finish.sum(axis=1)
                done = done | (n_fin >= K)
            # the K best candidates that do not end in EOS stay alive
            sel = xp.argsort(xp.where(is_eos, n_c + rank, rank), axis=1, kind="stable")[:, :K]
            score = xp.where(done[:, None], -np.inf, xp.take_along_axis(c_score, sel, axis=1))
            seqs, lps, alis = c_seq[rows, sel], c_lps[rows, sel], c_ali[rows, sel]
            beam = xp.take_along_axis(c_beam, sel, axis=1)
            token = xp.take_along_axis(c_tok, sel, axis=1).reshape(B * K)
            if bool(done.all()):
                break
            state = state.reorder((rows * K + beam).reshape(B * K))
        else:   # max_len reached: unfinished sentences also score their alive (truncated) hypotheses
            live = xp.isfinite(score) & ~done[:, None]
            if bool(live.any()):
                merge(xp.where(live, score / _lp(max_len, alpha), -np.inf), seqs, lps, alis, max_len)
        best = fin_score.argmax(axis=1)[:, None]                        # (B, 1)
        pick = lambda a: a[rows, best][:, 0]                            # noqa: E731
        L = int(pick(fin_len).max())
        return DecodeResult(backend.as_numpy(pick(fin_seq)[:, :L]), backend.as_numpy(pick(fin_lps)[:, :L]),
                            backend.as_numpy(pick(fin_ali)[:, :L]), backend.as_numpy(pick(fin_len)),
                            backend.as_numpy(pick(fin_score)), eos)
