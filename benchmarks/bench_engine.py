"""Engine overhead benchmark: tinyattn vs PyTorch (CPU) on graphs of tiny ops.

Two workloads, each timed for tinyattn and, when it is installed, PyTorch in the same run:

1. tiny ops: x, a, b are (4, 4) float32 leaves; ``y = x``, then 500 × {y = y * a; y = y + b},
   s = y.sum(), s.backward(). 1001 forward ops; reported as µs per op = (forward + backward) / 1001,
   median over ``--repeats`` runs. With arrays this small, this measures the per-op bookkeeping
   (Function call, Tensor creation, graph walk), not arithmetic.
2. wide graph: 32,000 pairs of scalar leaves (aᵢ, bᵢ); s = Σᵢ aᵢ·bᵢ built as a chain of adds
   (64,000 ops); s.backward(). Reported: build + backward, and backward alone (seconds, median).

    python benchmarks/bench_engine.py [--repeats 30] [--wide-repeats 5] [--profile]

``--profile`` prints the top of a cProfile of the tiny-op workload instead of the table.
"""
import argparse
import gc
import statistics
import time

import numpy as np

import tinyattn as ta

try:
    import torch
except ImportError:  # the PyTorch rows are skipped
    torch = None

N_STEPS = 500
N_OPS = 2 * N_STEPS + 1
N_WIDE = 32_000


def _leaves(rng):
    """x, b ~ N(0, 1) and a ~ U(0.4, 0.6): y stays bounded (no overflow, no denormals) over 500 steps."""
    x, b = rng.standard_normal((2, 4, 4)).astype(np.float32)
    a = rng.uniform(0.4, 0.6, (4, 4)).astype(np.float32)
    return x, a, b


def tiny_tinyattn(rng):
    x, a, b = (ta.tensor(v, requires_grad=True) for v in _leaves(rng))

    def run():
        y = x
        for _ in range(N_STEPS):
            y = y * a
            y = y + b
        s = y.sum()
        s.backward()
    return run


def tiny_torch(rng):
    x, a, b = (torch.tensor(v, requires_grad=True) for v in _leaves(rng))

    def run():
        y = x
        for _ in range(N_STEPS):
            y = y * a
            y = y + b
        s = y.sum()
        s.backward()
    return run


def wide(make_leaf):
    """Return (build_and_backward_seconds, backward_seconds) for the 32k-term wide graph."""
    a = [make_leaf() for _ in range(N_WIDE)]
    b = [make_leaf() for _ in range(N_WIDE)]
    t0 = time.perf_counter()
    s = a[0] * b[0]
    for i in range(1, N_WIDE):
        s = s + a[i] * b[i]
    t1 = time.perf_counter()
    s.backward()
    t2 = time.perf_counter()
    return t2 - t0, t2 - t1


def median_times(fns, repeats):
    """Median wall time of each zero-argument ``fn``; the fns take turns, so that load from other
    processes on the machine falls on all of them alike (the ratio stays meaningful)."""
    times = [[] for _ in fns]
    for f in fns:
        f()                                    # warm-up
    for _ in range(repeats):
        for f, ts in zip(fns, times):
            t0 = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t0)
    return [statistics.median(ts) for ts in times]


def median_wide(make_leaves, repeats):
    """[(build + backward, backward)] medians for each leaf maker, taking turns as above."""
    runs = [[] for _ in make_leaves]
    for _ in range(repeats):
        for make, rs in zip(make_leaves, runs):
            rs.append(wide(make))
            gc.collect()
    return [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for rs in runs]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--wide-repeats", type=int, default=5)
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    rng = np.random.default_rng(0)

    if args.profile:
        import cProfile
        import pstats
        run = tiny_tinyattn(rng)
        run()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(20):
            run()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return

    if torch:
        torch.set_num_threads(1)               # tinyattn's NumPy runs these tiny ops on one core too
    rows = []   # (workload, unit, tinyattn, torch or None)
    fns = [tiny_tinyattn(rng)] + ([tiny_torch(rng)] if torch else [])
    t, tt = (median_times(fns, args.repeats) + [None])[:2]
    rows.append((f"tiny ops (4,4) f32, {N_OPS} ops + backward", "µs/op", t / N_OPS * 1e6,
                 tt / N_OPS * 1e6 if tt else None))

    leaf_ta = lambda: ta.tensor(np.float32(rng.standard_normal()), requires_grad=True)  # noqa: E731
    leaf_torch = lambda: torch.tensor(float(rng.standard_normal()), requires_grad=True)  # noqa: E731
    wide_rows = median_wide([leaf_ta] + ([leaf_torch] if torch else []), args.wide_repeats)
    (wt, wb), (tw, tb) = (wide_rows + [(None, None)])[:2]
    rows.append((f"wide graph {N_WIDE} terms: build + backward", "s", wt, tw))
    rows.append((f"wide graph {N_WIDE} terms: backward alone", "s", wb, tb))

    print(f"{'workload':<46} {'unit':>6} {'tinyattn':>10} {'torch':>10} {'ta/torch':>9}")
    for name, unit, a, b in rows:
        bt = f"{b:10.4g}" if b is not None else f"{'skipped':>10}"
        ratio = f"{a / b:9.2f}" if b else f"{'-':>9}"
        print(f"{name:<46} {unit:>6} {a:10.4g} {bt} {ratio}")
    print(f"(medians; tiny ops over {args.repeats} repeats, wide graph over {args.wide_repeats}; "
          f"torch {torch.__version__ if torch else 'not installed'}, threads={torch.get_num_threads() if torch else '-'})")


if __name__ == "__main__":
    gc.collect()
    main()
