"""Encoder–decoder benchmark: the dates model (examples/seq2seq_dates.py) in tinyattn and in PyTorch.

The model (the same weights on both sides, copied from tinyattn's Keras layout into PyTorch's):

    Encoder     Embedding(62, 32) → bidirectional GRU(64) over the source, padding masked
                (PyTorch: pack_padded_sequence); bridge s₀ = tanh([→h; ←h] W + b)        states (B, S, 128)
    Decoder     Bahdanau / d2l, GRU(128), attention units 128, vocabulary 14:
                e_tj = vᵀ tanh(W_q s_{t−1} + W_k h_j) (W_k h_j once per batch), α = masked softmax,
                c_t = α·h,  s_t = GRUCell([c_t; embed(y_{t−1})], s_{t−1}),  logits = W_o s_t

Two workloads, float32, CPU, batch 64 of source length 30 (random lengths 10…30, padded):

(a) train   one training step: forward over a target of length 10 (teacher forcing), masked
            cross-entropy, backward, Adam update.
(b) beam    one beam search, width 4, max_len 11, GNMT length penalty α = 0.6 over the 64 sources
            (tinyattn.seq2seq.beam_search; the PyTorch side is the same algorithm, written with torch
            ops: the 2K best candidates per step, EOS candidates in the first K finish, the best K
            others stay alive).

Each library runs in its own worker process and the workers take turns in blocks of ``--block``
calls (A×n, B×n, A×n, …, with a pause so that the previous worker's BLAS threads stop spinning), so
background load hits both alike. Printed: the median wall time per call of each library, the ratio
of the medians (tinyattn / PyTorch), the min–max of the per-round ratios (each round's median over
its block), and the median CPU time (process time: it leaves out the time spent waiting for a core)
with its ratio — on a shared machine read the ratios, not the absolute times.

``--check`` first verifies that the two models are the same: equal loss at the copied weights, equal
gradients of a few weights, the same beam-search tokens. ``--profile`` prints a cProfile of tinyattn's
(a) and (b) (``--profile-lines`` lines, by internal time).

    python benchmarks/bench_seq2seq.py [--rounds 6] [--block 5] [--threads 1] [--check] [--profile]
"""
import argparse
import json
import os
import subprocess
import sys
import time

B, S, T, E, U, V_SRC, V_TGT = 64, 30, 10, 32, 64, 62, 14      # U: encoder units per direction
DEC = 2 * U                                                   # decoder / attention units: 128
BEAM, MAX_LEN, ALPHA = 4, 11, 0.6
PAD, BOS, EOS = 0, 1, 2
LIBS = ["tinyattn", "pytorch"]
WORKLOADS = ["train", "beam"]


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--block", type=int, default=5, help="consecutive calls of one library per turn")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--pause", type=float, default=0.3, help="seconds between blocks")
    p.add_argument("--threads", type=int, default=None, help="BLAS / intra-op threads of every library")
    p.add_argument("--only", choices=WORKLOADS)
    p.add_argument("--check", action="store_true", help="verify both sides compute the same thing first")
    p.add_argument("--profile", action="store_true", help="cProfile tinyattn's workloads")
    p.add_argument("--profile-lines", type=int, default=25)
    p.add_argument("--worker", nargs=2, metavar=("LIB", "WORKLOAD"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


def set_threads(n):
    if n:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = str(n)


# ----------------------------------------------------------------------------- the data and models
def data():
    import numpy as np
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, S + 1, size=B)
    lengths[0] = S
    src = np.zeros((B, S), np.int64)
    for i, n in enumerate(lengths):
        src[i, :n] = rng.integers(3, V_SRC, size=n)
    tgt = rng.integers(3, V_TGT, size=(B, T))
    tgt_in = np.concatenate([np.full((B, 1), BOS), tgt[:, :-1]], axis=1)
    tgt_out = tgt
    return src, tgt_in, tgt_out


def tinyattn_model():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import tinyattn as ta
    from tinyattn.seq2seq import Encoder, BahdanauDecoder, Seq2Seq
    ta.manual_seed(0)
    enc = Encoder(V_SRC, E, U, cell="gru", bidirectional=True, pad_id=PAD, decoder_units=DEC)
    dec = BahdanauDecoder(V_TGT, E, DEC, cell="gru", memory_dim=enc.output_dim)
    return Seq2Seq(enc, dec, pad_id=PAD, bos_id=BOS, eos_id=EOS)


def _gru_to_torch(kernel, recurrent, bias):
    """Keras GRU (reset_after) weights, gate blocks z, r, h → PyTorch's r, z, n (transposed)."""
    import numpy as np
    u = recurrent.shape[0]

    def reorder(w):                                     # (..., 3u) blocks z, r, h → r, z, h
        return np.concatenate([w[..., u:2 * u], w[..., :u], w[..., 2 * u:]], axis=-1)
    return reorder(kernel).T.copy(), reorder(recurrent).T.copy(), reorder(bias[0]), reorder(bias[1])


def torch_model(ours):
    """The PyTorch twin of ``ours`` (a tinyattn Seq2Seq as built above), weights copied across."""
    import numpy as np
    import torch
    from torch import nn

    class TorchSeq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.src_embed = nn.Embedding(V_SRC, E)
            self.encoder = nn.GRU(E, U, batch_first=True, bidirectional=True)
            self.bridge = nn.Linear(2 * U, DEC)
            self.tgt_embed = nn.Embedding(V_TGT, E)
            self.W_q = nn.Linear(DEC, DEC, bias=False)
            self.W_k = nn.Linear(2 * U, DEC, bias=False)
            self.v = nn.Parameter(torch.zeros(DEC))
            self.cell = nn.GRUCell(2 * U + E, DEC)
            self.out = nn.Linear(DEC, V_TGT)

        def encode(self, src):
            mask = src != PAD
            lengths = mask.sum(1)
            packed = nn.utils.rnn.pack_padded_sequence(self.src_embed(src), lengths, batch_first=True,
                                                       enforce_sorted=False)
            out, h = self.encoder(packed)
            states, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
            s0 = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))
            return states, self.W_k(states), mask, s0

        def step(self, token, s, states, keys, mask):
            e = torch.tanh(self.W_q(s)[:, None, :] + keys) @ self.v          # (B, S)
            a = torch.softmax(e.masked_fill(~mask, float("-inf")), dim=-1)
            ctx = torch.bmm(a[:, None, :], states)[:, 0]                    # (B, 2U)
            s = self.cell(torch.cat([ctx, self.tgt_embed(token)], dim=-1), s)
            return s, a

        def forward(self, src, tgt_in):
            states, keys, mask, s = self.encode(src)
            hs = []
            for t in range(tgt_in.shape[1]):
                s, _ = self.step(tgt_in[:, t], s, states, keys, mask)
                hs.append(s)
            return self.out(torch.stack(hs, dim=1))                           # (B, T, V)

    m = TorchSeq2Seq()
    enc, dec = ours.encoder, ours.decoder
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a))                   # noqa: E731
    with torch.no_grad():
        m.src_embed.weight.copy_(t(enc.embedding.embeddings.data))
        bi = enc.layers[0]
        for suffix, layer in (("", bi.forward_layer), ("_reverse", bi.backward_layer)):
            c = layer.cell
            wi, wh, bi_, bh = _gru_to_torch(c.kernel.data, c.recurrent_kernel.data, c.bias.data)
            getattr(m.encoder, "weight_ih_l0" + suffix).copy_(t(wi))
            getattr(m.encoder, "weight_hh_l0" + suffix).copy_(t(wh))
            getattr(m.encoder, "bias_ih_l0" + suffix).copy_(t(bi_))
            getattr(m.encoder, "bias_hh_l0" + suffix).copy_(t(bh))
        m.bridge.weight.copy_(t(enc.bridge_h[0].kernel.data.T))
        m.bridge.bias.copy_(t(enc.bridge_h[0].bias.data))
        m.tgt_embed.weight.copy_(t(dec.embedding.embeddings.data))
        m.W_q.weight.copy_(t(dec.W_q.kernel.data.T))
        m.W_k.weight.copy_(t(dec.W_k.kernel.data.T))
        m.v.copy_(t(dec.v.data))
        c = dec.cells[0]
        wi, wh, bi_, bh = _gru_to_torch(c.kernel.data, c.recurrent_kernel.data, c.bias.data)
        m.cell.weight_ih.copy_(t(wi))
        m.cell.weight_hh.copy_(t(wh))
        m.cell.bias_ih.copy_(t(bi_))
        m.cell.bias_hh.copy_(t(bh))
        m.out.weight.copy_(t(dec.out.kernel.data.T))
        m.out.bias.copy_(t(dec.out.bias.data))
    return m


def torch_beam_search(m, src, K=BEAM, max_len=MAX_LEN, alpha=ALPHA):
    """tinyattn.seq2seq.beam_search's algorithm with torch ops (tokens of the best hypothesis)."""
    import torch
    with torch.no_grad():
        states, keys, mask, s = m.encode(src)
        Bn = src.shape[0]
        states, keys, mask, s = (x.repeat_interleave(K, dim=0) for x in (states, keys, mask, s))
        rows = torch.arange(Bn)[:, None]
        score = torch.full((Bn, K), float("-inf"))
        score[:, 0] = 0
        seqs = torch.zeros((Bn, K, 0), dtype=torch.long)
        fin_score = torch.full((Bn, K), float("-inf"))
        fin_seq = torch.full((Bn, K, max_len), PAD, dtype=torch.long)
        n_fin = torch.zeros(Bn, dtype=torch.long)
        done = torch.zeros(Bn, dtype=torch.bool)
        token = torch.full((Bn * K,), BOS, dtype=torch.long)

        def merge(c_norm, c_seq):
            nonlocal fin_score, fin_seq
            c_seq = torch.cat([c_seq, torch.full(c_seq.shape[:2] + (max_len - c_seq.shape[2],), PAD)], dim=2)
            all_score = torch.cat([fin_score, c_norm], dim=1)
            keep = torch.argsort(-all_score, dim=1, stable=True)[:, :K]
            fin_score = torch.gather(all_score, 1, keep)
            fin_seq = torch.cat([fin_seq, c_seq], dim=1)[rows, keep]

        for t in range(max_len):
            s, _ = m.step(token, s, states, keys, mask)
            logp = torch.log_softmax(m.out(s), dim=-1)                         # (B·K, V)
            Vn = logp.shape[-1]
            cand = (score[:, :, None] + logp.reshape(Bn, K, Vn)).reshape(Bn, K * Vn)
            n_c = min(2 * K, K * Vn)
            idx = torch.argsort(-cand, dim=1, stable=True)[:, :n_c]
            c_score = torch.gather(cand, 1, idx)
            c_beam, c_tok = idx // Vn, idx % Vn
            c_seq = torch.cat([seqs[rows, c_beam], c_tok[:, :, None]], dim=2)
            is_eos = c_tok == EOS
            rank = torch.arange(n_c)[None, :]
            finish = is_eos & torch.isfinite(c_score) & (rank < K) & ~done[:, None]
            if bool(finish.any()):
                lp = ((5.0 + t + 1) / 6.0) ** alpha
                merge(torch.where(finish, c_score / lp, torch.tensor(float("-inf"))), c_seq)
                n_fin = n_fin + finish.sum(1)
                done = done | (n_fin >= K)
            sel = torch.argsort(torch.where(is_eos, n_c + rank, rank), dim=1, stable=True)[:, :K]
            score = torch.where(done[:, None], torch.tensor(float("-inf")), torch.gather(c_score, 1, sel))
            seqs = c_seq[rows, sel]
            beam = torch.gather(c_beam, 1, sel)
            token = torch.gather(c_tok, 1, sel).reshape(Bn * K)
            if bool(done.all()):
                break
            s = s[(rows * K + beam).reshape(Bn * K)]
        else:
            live = torch.isfinite(score) & ~done[:, None]
            if bool(live.any()):
                merge(torch.where(live, score / ((5.0 + max_len) / 6.0) ** alpha,
                                  torch.tensor(float("-inf"))), seqs)
        best = fin_score.argmax(1)[:, None]
        return fin_seq[rows, best][:, 0]


def make_call(lib, workload, threads):
    """A zero-argument callable running one ``workload`` of ``lib``."""
    import numpy as np
    src, tgt_in, tgt_out = data()
    ours = tinyattn_model()
    if lib == "tinyattn":
        from tinyattn.optim import Adam
        from tinyattn.seq2seq import beam_search
        if workload == "beam":
            return lambda: beam_search(ours, src, beam_width=BEAM, max_len=MAX_LEN, length_penalty=ALPHA)
        opt = Adam(ours.parameters(), lr=1e-3)

        def train():
            opt.zero_grad()
            ours.loss(src, tgt_in, tgt_out).backward()
            opt.step()
        return train
    import torch
    if threads:
        torch.set_num_threads(threads)
    m = torch_model(ours)
    s_t, ti_t, to_t = (torch.from_numpy(a) for a in (src, tgt_in, tgt_out))
    if workload == "beam":
        return lambda: torch_beam_search(m, s_t)
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)

    def train():
        opt.zero_grad()
        logits = m(s_t, ti_t)
        torch.nn.functional.cross_entropy(logits.reshape(-1, V_TGT), to_t.reshape(-1)).backward()
        opt.step()
    return train


def check():
    """The two models compute the same loss, gradients and beam-search result."""
    import numpy as np
    import torch
    from tinyattn.seq2seq import beam_search
    src, tgt_in, tgt_out = data()
    ours = tinyattn_model()
    m = torch_model(ours)
    loss = ours.loss(src, tgt_in, tgt_out)
    loss.backward()
    s_t, ti_t, to_t = (torch.from_numpy(a) for a in (src, tgt_in, tgt_out))
    lt = torch.nn.functional.cross_entropy(m(s_t, ti_t).reshape(-1, V_TGT), to_t.reshape(-1))
    lt.backward()
    pairs = [("loss", float(loss.item()), float(lt.item())),
             ("grad out.kernel", ours.decoder.out.kernel.grad, m.out.weight.grad.numpy().T),
             ("grad v", ours.decoder.v.grad, m.v.grad.numpy()),
             ("grad W_k", ours.decoder.W_k.kernel.grad, m.W_k.weight.grad.numpy().T),
             ("grad src embedding", ours.encoder.embedding.embeddings.grad, m.src_embed.weight.grad.numpy())]
    ok = True
    for name, a, b in pairs:
        a = np.asarray(getattr(a, "data", a) if not isinstance(a, (float, np.ndarray)) else a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64)
        rel = float(np.max(np.abs(a - b))) / float(np.max(np.abs(b)))
        good = rel <= (1e-6 if name == "loss" else 1e-4)     # float32 sums in another order: ~1e-6
        ok &= good
        print(f"check {name:<20} max |tinyattn − PyTorch| / max |PyTorch| = {rel:.1e} "
              f"{'ok' if good else 'MISMATCH'}")
    res = beam_search(ours, src, beam_width=BEAM, max_len=MAX_LEN, length_penalty=ALPHA)
    tt = torch_beam_search(m, s_t).numpy()
    L = res.tokens.shape[1]
    same = float(np.mean(np.all(res.tokens == tt[:, :L], axis=1) & np.all(tt[:, L:] == PAD, axis=1)))
    ok &= same == 1.0
    print(f"check beam search: identical best hypothesis for {same:.0%} of the {B} sources "
          f"(output length {L})")
    return ok


# ----------------------------------------------------------------------------- timing plumbing
def timed(call, n):
    """n calls → [[wall seconds, CPU seconds of this process], ...] (CPU time does not count the time
    spent waiting for a core, so on a loaded machine it is the steadier measure of the work done)."""
    out = []
    for _ in range(n):
        t0, c0 = time.perf_counter(), time.process_time()
        call()
        out.append([time.perf_counter() - t0, time.process_time() - c0])
    return out


def worker(lib, workload, threads):
    try:
        call = make_call(lib, workload, threads)
    except ImportError as e:
        print(json.dumps({"skip": str(e)}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(timed(call, int(line))), flush=True)


class Remote:
    """A worker process running one library's workload on request."""

    def __init__(self, lib, workload, threads):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib, workload]
        if threads:
            cmd += ["--threads", str(threads)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.hello = json.loads(self.p.stdout.readline() or '{"skip": "worker died"}')

    def __call__(self, n):
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def profile(workload, lines):
    import cProfile
    import pstats
    call = make_call("tinyattn", workload, None)
    for _ in range(2):
        call()
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(10):
        call()
    pr.disable()
    print(f"\n=== cProfile of tinyattn, {workload}, 10 calls (by internal time) ===")
    pstats.Stats(pr).sort_stats("tottime").print_stats(lines)


def main(argv=None):
    args = parse(argv)
    set_threads(args.threads)
    if args.worker:
        return worker(*args.worker, args.threads)
    import numpy as np
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    if args.check:
        try:
            import torch  # noqa: F401
        except ImportError:
            print("(check skipped: PyTorch is not installed)")
        else:
            if not check():
                print("FAIL: the two models differ; the timings would not compare like with like")
                return 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"dates model: batch {B}, source {S}, target {T}, embed {E}, BiGRU {U}+{U}, Bahdanau GRU {DEC}; "
          f"beam {BEAM}, max_len {MAX_LEN}; threads={args.threads or 'default'}; "
          f"{args.rounds} rounds × {args.block} calls per library; load average {load:.2f}")
    print(f"{'workload':<10}{'library':<10}{'wall ms':>10}{'× PyTorch':>11}{'per-round ×':>13}"
          f"{'CPU ms':>10}{'× PyTorch':>11}")
    for workload in WORKLOADS:
        if args.only and workload != args.only:
            continue
        runners = {}
        for lib in LIBS:
            r = Remote(lib, workload, args.threads)
            if "skip" in r.hello:
                print(f"{workload:<10}{lib:<10} skipped ({r.hello['skip']})")
                r.close()
            else:
                runners[lib] = r
        for r in runners.values():
            r(args.warmup)
        rounds = {k: [] for k in runners}
        for _ in range(args.rounds):
            for k, r in runners.items():
                time.sleep(args.pause)
                rounds[k].append(np.array(r(args.block)))        # (block, 2): wall, CPU
        for r in runners.values():
            r.close()
        allt = {k: np.concatenate(v) for k, v in rounds.items()}
        wall = {k: 1e3 * float(np.median(a[:, 0])) for k, a in allt.items()}
        cpu = {k: 1e3 * float(np.median(a[:, 1])) for k, a in allt.items()}
        per_round = {k: [float(np.median(b[:, 0])) for b in v] for k, v in rounds.items()}
        ref = "pytorch" if "pytorch" in runners else None
        for k in runners:
            if ref and k != ref:
                rr = [a / b for a, b in zip(per_round[k], per_round[ref])]
                spread = f"{min(rr):.2f}–{max(rr):.2f}"
                ratio, cratio = f"{wall[k] / wall[ref]:.2f}", f"{cpu[k] / cpu[ref]:.2f}"
            else:
                spread, ratio, cratio = "", "1.00" if ref else "-", "1.00" if ref else "-"
            print(f"{workload:<10}{k:<10}{wall[k]:>10.2f}{ratio:>11}{spread:>13}{cpu[k]:>10.2f}{cratio:>11}")
    if args.profile:
        for workload in WORKLOADS:
            if not args.only or workload == args.only:
                profile(workload, args.profile_lines)
    return 0


if __name__ == "__main__":
    sys.exit(main())
