"""tinyattn's pool threads × NumPy's BLAS threads: which split of the cores is fastest, here and now.

    python benchmarks/blas_threads.py                         # mha_warm, transformer; 7 rounds
    python benchmarks/blas_threads.py --only mha_warm --rounds 9 --reps 5
    python benchmarks/blas_threads.py --quick                 # small sizes, 2 rounds (a smoke test)

One process runs every setting (pool p, BLAS b) for p, b in {1, all cores}, switched with
``tinyattn.set_num_threads(p, blas=False)`` and ``tinyattn.parallel.set_blas_threads(b)``; rounds are
interleaved (round r runs every setting in turn, the order rotating each round) so that load from
other processes hits every setting alike. Each step is timed on its own: the table prints the
median step and the slowest step (a stall: a BLAS thread waiting for a busy core shows there
first), median over rounds, and each setting's median ratio to (pool all, BLAS all), the default.
The workloads are run_all.py's (same sizes, same code), tinyattn only.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))

import run_all  # noqa: E402  (the workload builders and sizes)
import tinyattn as ta  # noqa: E402
from tinyattn import parallel  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", default="mha_warm,transformer",
                    help=f"comma-separated subset of {','.join(run_all.BUILDERS)}")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 2)")
    ap.add_argument("--reps", type=int, default=3, help="timed steps per setting and round")
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    S = run_all.QUICK if args.quick else run_all.FULL
    rounds = args.rounds or (2 if args.quick else 7)
    info = parallel.blas_info()
    if not info["controllable"]:
        print(f"blas_threads.py: NumPy's BLAS threads are not controllable here ({info['summary']})")
        return 1
    n = ta.get_num_threads()
    pool0, blas0 = n, parallel.get_blas_threads()
    counts = sorted({1, n, blas0})
    settings = [(p, b) for p in counts for b in counts]
    names = [x for x in args.only.split(",") if x]
    load0 = run_all._loadavg()
    times = {}                                   # (name, setting) -> [(median step, max step) per round]
    try:
        for name in names:
            step, scale, unit = run_all.BUILDERS[name]("tinyattn", S)
            for _ in range(2):
                step()                           # warm-up
            for r in range(rounds):
                k = r % len(settings)
                for p, b in settings[k:] + settings[:k]:
                    ta.set_num_threads(p, blas=False)
                    parallel.set_blas_threads(b)
                    step()                       # one untimed step after the switch
                    ts = []
                    for _ in range(args.reps):
                        t0 = time.perf_counter()
                        step()
                        ts.append((time.perf_counter() - t0) * scale)
                    times.setdefault((name, (p, b)), []).append((statistics.median(ts), max(ts)))
                print(f"  {name}: round {r + 1}/{rounds} (load {run_all._loadavg()})", file=sys.stderr, flush=True)
    finally:
        ta.set_num_threads(pool0, blas=False)
        parallel.set_blas_threads(blas0)
    print(f"# tinyattn pool × NumPy BLAS threads — blas_threads.py{' --quick' if args.quick else ''}, "
          f"{rounds} rounds × {args.reps} steps, {time.strftime('%Y-%m-%d %H:%M')}")
    print(f"# {os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}; load average {load0} at start, "
          f"{run_all._loadavg()} at end; BLAS {info['summary']}")
    print(f"# defaults: pool {pool0}, BLAS {blas0}; ratio = median over rounds of (setting / default) per round")
    print()
    print(f"| {'workload':<12} | pool | BLAS | median step | slowest step | ratio to default (min – med – max) |")
    print(f"|{'-' * 14}|------|------|-------------|--------------|------------------------------------|")
    for name in names:
        base = times[(name, (pool0, blas0))]
        for p, b in settings:
            rs = times[(name, (p, b))]
            ratios = [a[0] / d[0] for a, d in zip(rs, base)]
            med = statistics.median(a for a, _ in rs)
            worst = statistics.median(m for _, m in rs)
            rr = f"{min(ratios):.2f} – {statistics.median(ratios):.2f} – {max(ratios):.2f}"
            print(f"| {name:<12} | {p:>4} | {b:>4} | {med:>8.1f} {unit:<2} | {worst:>9.1f} {unit:<2} | {rr:>34} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
