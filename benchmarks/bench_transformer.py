"""Transformer benchmark: tinyattn vs PyTorch side by side in one run, each library in its own worker
process, rounds interleaved (library A, B, C, then A, B, C again ...) so that background load on a
shared machine hits every library alike. Float32, CPU (``--device gpu``: CuPy for tinyattn, CUDA for
PyTorch). Prints medians, the min–max over all repeats, the ratio of medians to PyTorch and the
min–max of the per-round ratios, the median CPU (process) time and its ratio — on a shared,
oversubscribed machine, with ``--threads 1``, the steadiest measure of each library's work — and
the 1-minute load average seen by each round.

(a) One training step — forward, backward, Adam — of a pre-norm Transformer encoder block:
    x (B 32, T 128, d 256), 8 heads, FFN 1024 with GELU (exact, erf), dropout 0, loss ⟨y, g⟩:
      tinyattn.transformer.TransformerEncoderLayer(norm_first=True, activation="gelu") + tinyattn Adam
      (when tinyattn.transformer is absent: the same block from MultiHeadAttention +
      LayerNormalization + Dense)
      |  torch.nn.TransformerEncoderLayer(norm_first=True, batch_first=True, activation="gelu") + Adam
(b) Attention forward + backward, B 1, 8 heads, head dim 64, T = 1024, 2048, 4096 (no mask):
      naive   tinyattn scaled_dot_product_attention (one fused node; holds the (T, T) weights)
      flash   tinyattn flash_attention (tiles of block × block; holds O and the log-sum-exp)
      PyTorch torch.nn.functional.scaled_dot_product_attention (time only: reference)
    time, and peak memory: tracemalloc's peak during one forward+backward on NumPy (NumPy reports
    its buffers to tracemalloc), the memory pool's peak on CuPy.

    python benchmarks/bench_transformer.py [--only block|attention] [--rounds 3] [--repeats 5]
        [--T 1024,2048,4096] [--block-size 256] [--sweep-blocks 64,128,256,512] [--threads N]
        [--device cpu|gpu] [--profile block] [--keep-memory]

Page faults and system time per step are printed for each library (getrusage in its worker). NumPy
allocates every large array afresh, and with glibc's default heuristics freed blocks go back to the
OS, so each step would first-touch its memory again (page faults, zero-filling, system time).
tinyattn keeps freed host memory for reuse itself — ``tinyattn.set_host_memory_cache``, applied at
import (tinyattn/memory.py), opt-out ``TINYATTN_HOST_MEMORY_CACHE=0``, which reaches the workers
through the environment. That is a library feature, not a benchmark setting: each library runs in
its own process, and the PyTorch worker never imports tinyattn, so PyTorch runs with glibc's
defaults. Measured at 1 thread (BLAS and tinyattn's own pool), 5 rounds, load ~1 on 2 cores, per
step: tinyattn 0 faults and ~0.3 ms of system time, 0.93× PyTorch (per round 0.74–1.06, CPU time
0.93×); with the cache off ~2,000 faults and ~12 ms, 0.99× (CPU 0.99×); before the kernels'
temporaries were cut (and with no cache) ~3,100 faults, ~16 ms, 1.15× (CPU 1.17×); the PyTorch
worker 4,000–13,000 faults and 8–20 ms. ``--keep-memory`` gives *both* workers glibc's keep-memory
settings through its environment variables (MALLOC_MMAP_THRESHOLD_=32 MiB,
MALLOC_TRIM_THRESHOLD_=4 GiB): a comparison with the allocator taken out of both (then ~0 faults
each, 0.97×, CPU 0.98×: PyTorch gains too).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)                 # this checkout's tinyattn, not an installed one

B, T, D, H, FF = 32, 128, 256, 8, 1024
AB, AH, AD = 1, 8, 64


# ----------------------------------------------------------------------------- workers
def _np():
    import numpy as np
    return np


def _ta_device(device):
    import tinyattn as ta
    if device == "gpu":
        ta.use_backend("cupy")
    return ta


def block_tinyattn(device):
    np = _np()
    ta = _ta_device(device)
    from tinyattn.optim import Adam
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    g = ta.tensor(rng.standard_normal((B, T, D)).astype(np.float32))
    try:
        from tinyattn.transformer import TransformerEncoderLayer
        layer = TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", norm_first=True)
        fwd = layer
    except ImportError:            # before tinyattn.transformer: the same block by hand
        from tinyattn.attention import MultiHeadAttention
        from tinyattn.nn import LayerNormalization, Dense

        class Block(ta.nn.Module):
            def __init__(self):
                super().__init__()
                self.attn = MultiHeadAttention(num_heads=H, key_dim=D // H)
                self.ln1, self.ln2 = LayerNormalization(epsilon=1e-5), LayerNormalization(epsilon=1e-5)
                self.ff1 = Dense(FF, activation="gelu")
                self.ff2 = Dense(D)

            def forward(self, x):
                h = self.ln1(x)
                x = x + self.attn(h, h)
                return x + self.ff2(self.ff1(self.ln2(x)))
        layer = fwd = Block()
    fwd(x)                                                   # build
    opt = Adam(layer.parameters(), lr=1e-4)

    def run():
        opt.zero_grad()
        y = fwd(x)
        y.backward(g.data)
        opt.step()
    return run, (lambda: None)


def block_torch(device):
    import torch
    np = _np()
    dev = "cuda" if device == "gpu" else "cpu"
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.standard_normal((B, T, D)).astype(np.float32), device=dev)
    g = torch.tensor(rng.standard_normal((B, T, D)).astype(np.float32), device=dev)
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(D, H, FF, dropout=0.0, activation="gelu", norm_first=True,
                                             batch_first=True).to(dev)
    opt = torch.optim.Adam(layer.parameters(), lr=1e-4)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def run():
        opt.zero_grad()
        y = layer(x)
        y.backward(g)
        opt.step()
        sync()
    return run, sync


def _attn_data(t):
    np = _np()
    rng = np.random.default_rng(1)
    q, k, v, g = (rng.standard_normal((AB, AH, t, AD)).astype(np.float32) for _ in range(4))
    return q, k, v, g


def attn_tinyattn(device, t, kind, block_size):
    ta = _ta_device(device)
    from tinyattn.attention import scaled_dot_product_attention, flash_attention
    arrs = _attn_data(t)
    q, k, v = (ta.tensor(a, requires_grad=True) for a in arrs[:3])
    g = ta.tensor(arrs[3]).data
    if kind == "flash":
        f = lambda: flash_attention(q, k, v, block_size=block_size)     # noqa: E731
    else:
        f = lambda: scaled_dot_product_attention(q, k, v)               # noqa: E731
    sync = lambda: None                                                 # noqa: E731
    if device == "gpu":
        import cupy
        sync = cupy.cuda.Device().synchronize

    def run():
        for x in (q, k, v):
            x.grad = None
        f().backward(g)
        sync()
    return run, sync


def attn_torch(device, t):
    import torch
    dev = "cuda" if device == "gpu" else "cpu"
    q, k, v, g = (torch.tensor(a, device=dev) for a in _attn_data(t))
    for x in (q, k, v):
        x.requires_grad_(True)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def run():
        for x in (q, k, v):
            x.grad = None
        torch.nn.functional.scaled_dot_product_attention(q, k, v).backward(g)
        sync()
    return run, sync


def _peak_bytes(run, device, lib):
    """Peak bytes allocated during one run (tracemalloc on NumPy; CuPy's pool; torch CUDA stats)."""
    if lib == "torch":
        if device != "gpu":
            return None
        import torch
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        run()
        return torch.cuda.max_memory_allocated() - base
    if device == "gpu":
        import cupy
        pool = cupy.get_default_memory_pool()
        pool.free_all_blocks()
        base = pool.total_bytes()
        run()
        return pool.total_bytes() - base
    import gc
    import tracemalloc
    gc.collect()
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def worker(spec, repeats, device, threads):
    """Build one workload in this process, warm it up, time ``repeats`` runs; print one JSON line."""
    if threads:
        try:
            import torch
            torch.set_num_threads(threads)
        except ImportError:
            pass
    name, *rest = spec.split(":")
    if name == "block-tinyattn":
        run, _ = block_tinyattn(device)
        lib = "tinyattn"
    elif name == "block-torch":
        run, _ = block_torch(device)
        lib = "torch"
    elif name in ("naive", "flash"):
        run, _ = attn_tinyattn(device, int(rest[0]), name, int(rest[1]))
        lib = "tinyattn"
    elif name == "sdpa-torch":
        run, _ = attn_torch(device, int(rest[0]))
        lib = "torch"
    else:
        raise SystemExit(f"unknown worker {spec}")
    run()                                   # warm-up (allocator, BLAS threads, caches)
    peak = _peak_bytes(run, device, lib) if name not in ("block-tinyattn", "block-torch") else None
    import resource
    wall, cpu, faults, sys_t = [], [], [], []
    for _ in range(repeats):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), time.process_time()
        run()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        faults.append(r1.ru_minflt - r0.ru_minflt)
        sys_t.append(r1.ru_stime - r0.ru_stime)
    print(json.dumps({"wall": wall, "cpu": cpu, "faults": faults, "sys": sys_t, "peak": peak,
                      "load": os.getloadavg()[0]}))


# ----------------------------------------------------------------------------- driver
KEEP_MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(1 << 32)}


def _spawn(spec, repeats, device, threads, keep_memory=False):
    env = dict(os.environ)
    if keep_memory:
        env.update(KEEP_MEMORY_ENV)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if threads:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYATTN_NUM_THREADS"):
            env[var] = str(threads)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", spec, "--repeats", str(repeats),
           "--device", device] + (["--threads", str(threads)] if threads else [])
    load = os.getloadavg()[0]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError(f"worker {spec} failed:\n{p.stderr[-3000:]}")
    res = json.loads(p.stdout.strip().splitlines()[-1])
    res["load_before"] = load
    return res


def _mib(b):
    return "-" if b is None else f"{b / 2**20:.1f}"


def compare(title, specs, ref, rounds, repeats, device, threads, keep_memory=False):
    """Run every spec in its own process, ``rounds`` times interleaved; print one row per spec."""
    res = {s: [] for s, _ in specs}
    for r in range(rounds):
        for spec, _ in specs:
            res[spec].append(_spawn(spec, repeats, device, threads, keep_memory))
    rows = []
    for spec, label in specs:
        wall = [w for rr in res[spec] for w in rr["wall"]]
        med = statistics.median(wall)
        cpu = statistics.median([c for rr in res[spec] for c in rr["cpu"]])
        round_meds = [statistics.median(rr["wall"]) for rr in res[spec]]
        peaks = [rr["peak"] for rr in res[spec] if rr["peak"] is not None]
        loads = [rr["load_before"] for rr in res[spec]] + [rr["load"] for rr in res[spec]]
        faults = statistics.median([f for rr in res[spec] for f in rr["faults"]])
        sys_t = statistics.median([t for rr in res[spec] for t in rr["sys"]])
        rows.append((spec, label, med, min(wall), max(wall), round_meds, max(peaks) if peaks else None, loads,
                     cpu, faults, sys_t))
    refrow = next((r for r in rows if r[0] == ref), None)
    print(f"\n{title}")
    print(f"{'':<28} {'median ms':>10} {'min–max ms':>17} {'× ' + (refrow[1] if refrow else '-'):>12} "
          f"{'per-round ×':>13} {'CPU ms':>9} {'CPU ×':>6} {'faults':>7} {'sys ms':>7} {'peak MiB':>9} {'load 1m':>11}")
    for spec, label, med, lo, hi, rmeds, peak, loads, cpu, faults, sys_t in rows:
        if refrow:
            ratio = f"{med / refrow[2]:.2f}"
            rr = [a / b for a, b in zip(rmeds, refrow[5])]
            rrs = f"{min(rr):.2f}–{max(rr):.2f}"
            cr = f"{cpu / refrow[8]:.2f}"
        else:
            ratio = rrs = cr = "-"
        print(f"{label:<28} {1e3 * med:>10.1f} {1e3 * lo:>8.1f}–{1e3 * hi:<8.1f} {ratio:>12} {rrs:>13} "
              f"{1e3 * cpu:>9.1f} {cr:>6} {faults:>7.0f} {1e3 * sys_t:>7.1f} {_mib(peak):>9} "
              f"{min(loads):>5.2f}–{max(loads):<5.2f}")
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["block", "attention"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--T", default="1024,2048,4096")
    ap.add_argument("--block-size", type=int, default=None)
    ap.add_argument("--sweep-blocks", default=None, help="comma-separated block sizes to compare at the largest T")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--profile", choices=["block"])
    ap.add_argument("--keep-memory", action="store_true",
                    help="run every worker (both libraries) with glibc's malloc keeping freed memory "
                         "(MALLOC_MMAP_THRESHOLD_=32 MiB, MALLOC_TRIM_THRESHOLD_=4 GiB): no page faults "
                         "on re-allocation")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.repeats, args.device, args.threads)
    if args.profile:
        import cProfile
        import pstats
        run, _ = block_tinyattn(args.device)
        run()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(5):
            run()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(25)
        return
    from tinyattn.attention.flash import DEFAULT_BLOCK_SIZE
    bs = args.block_size or DEFAULT_BLOCK_SIZE
    print(f"device {args.device}, {os.cpu_count()} CPUs, threads {args.threads or 'default'}, "
          f"rounds {args.rounds} × repeats {args.repeats}{', glibc malloc keeps freed memory' if args.keep_memory else ''}; "
          f"load average at start {tuple(round(x, 2) for x in os.getloadavg())}")
    if args.only in (None, "block"):
        compare(f"(a) pre-norm encoder block B={B} T={T} d={D} h={H} ff={FF} GELU: one train step "
                f"(fwd, bwd, Adam)",
                [("block-tinyattn", "tinyattn"), ("block-torch", "PyTorch")], "block-torch",
                args.rounds, args.repeats, args.device, args.threads, args.keep_memory)
    if args.only in (None, "attention"):
        ts = [int(t) for t in args.T.split(",")]
        for t in ts:
            rows = compare(f"(b) attention fwd+bwd B={AB} h={AH} d={AD} T={t} (flash block {bs})",
                           [(f"naive:{t}:0", "naive (tinyattn SDPA)"), (f"flash:{t}:{bs}", "flash (tinyattn)"),
                            (f"sdpa-torch:{t}", "PyTorch SDPA")], f"naive:{t}:0",
                           args.rounds, max(1, args.repeats // (1 if t <= 1024 else 2)), args.device,
                           args.threads)
            naive, flash = rows[0], rows[1]
            if naive[6] and flash[6]:
                print(f"    flash / naive: time {flash[2] / naive[2]:.2f}×, peak memory "
                      f"1/{naive[6] / flash[6]:.1f}")
        if args.sweep_blocks:
            t = ts[-1]
            specs = [(f"naive:{t}:0", "naive")] + [(f"flash:{t}:{b}", f"flash block {b}")
                                                   for b in map(int, args.sweep_blocks.split(","))]
            compare(f"(b') block-size sweep at T={t}", specs, f"naive:{t}:0", args.rounds,
                    max(1, args.repeats // 2), args.device, args.threads)


if __name__ == "__main__":
    main()
