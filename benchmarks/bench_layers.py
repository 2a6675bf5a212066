"""LSTM training-step benchmark: tinyattn vs PyTorch vs Keras, side by side in one run.

Task: LSTM(128) over T=50 steps, batch 32, 32 input features, float32, return_sequences=True;
one step = forward + backward of loss = Σ output ⊙ G (G a fixed random upstream gradient), i.e. the
gradients w.r.t. the input and every weight (all three libraries start from the same weights).
The table reports the median of ``--runs`` steps per library and the ratio to PyTorch; rows whose
library is not installed are skipped.

    python benchmarks/bench_layers.py [--runs 30] [--block 5] [--threads N] [--same-process] [--profile]

Each library runs in its own worker process (so that one library's idle BLAS/OpenMP threads, which
spin for a while after each parallel region, do not steal cores from another), and the workers
take turns in blocks of ``--block`` steps (A×5, B×5, C×5, A×5, …) so that load from other
processes hits them alike, with a ``--pause`` between blocks so that the previous library's worker
threads have stopped spinning (OpenBLAS threads busy-wait for ~0.1 s after their last job). ``--same-process`` runs all three in this process instead.
``--threads N`` caps the BLAS / intra-op threads of every library; on a small shared machine
``--threads 1`` gives the steadiest ratios. ``--profile`` prints a cProfile of the tinyattn step.
"""
import argparse
import json
import os
import subprocess
import sys
import time

B, T, D, U = 32, 50, 32, 128
LIBS = ["tinyattn", "pytorch", "keras (tf.function)"]


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block", type=int, default=5, help="consecutive steps of one library per turn")
    p.add_argument("--pause", type=float, default=0.3, help="seconds between blocks")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--same-process", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    return p.parse_args()


def set_threads(n):
    if n:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = str(n)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_step(lib, threads):
    """Build one library's training step; raise ImportError if the library is missing."""
    import numpy as np
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import tinyattn as ta
    from tinyattn import nn

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((B, T, D)).astype(np.float32)
    g_np = rng.standard_normal((B, T, U)).astype(np.float32)
    ta.manual_seed(0)
    ours = nn.LSTM(U, return_sequences=True)
    x_ta = ta.tensor(x_np, requires_grad=True)
    ours(x_ta)
    weights = ours.get_weights()                       # the same weights for every library

    if lib == "tinyattn":
        def step():
            ours.zero_grad()
            x_ta.grad = None
            ours(x_ta).backward(g_np)
        return step

    if lib == "pytorch":
        import torch
        if threads:
            torch.set_num_threads(threads)
        lt = torch.nn.LSTM(D, U, batch_first=True)
        with torch.no_grad():                          # Keras layout -> PyTorch layout
            lt.weight_ih_l0.copy_(torch.from_numpy(weights[0].T.copy()))
            lt.weight_hh_l0.copy_(torch.from_numpy(weights[1].T.copy()))
            lt.bias_ih_l0.copy_(torch.from_numpy(weights[2]))
            lt.bias_hh_l0.zero_()
        x_t = torch.from_numpy(x_np).requires_grad_(True)
        g_t = torch.from_numpy(g_np)

        def step():
            lt.zero_grad()
            x_t.grad = None
            out, _ = lt(x_t)
            (out * g_t).sum().backward()
        return step

    import tensorflow as tf
    import keras
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    lk = keras.layers.LSTM(U, return_sequences=True)
    x_k, g_k = tf.constant(x_np), tf.constant(g_np)
    lk(x_k)
    lk.set_weights(weights)

    @tf.function
    def keras_step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(lk(x) * g_k)
        return tape.gradient(loss, [x] + lk.trainable_weights)

    def step():
        [g.numpy() for g in keras_step(x_k)]
    return step


def timed(step, n):
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        out.append(time.perf_counter() - t0)
    return out


def worker(lib, threads):
    """Answer each line 'n' on stdin with the JSON list of n step times (seconds)."""
    try:
        step = make_step(lib, threads)
    except ImportError as e:
        print(json.dumps({"skip": str(e)}), flush=True)
        return
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(timed(step, int(line))), flush=True)


class Remote:
    """A worker process running one library's step on request."""

    def __init__(self, lib, threads):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", lib]
        if threads:
            cmd += ["--threads", str(threads)]
        self.p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL, text=True)
        self.hello = json.loads(self.p.stdout.readline() or '{"skip": "worker died"}')

    def __call__(self, n):
        self.p.stdin.write(f"{n}\n")
        self.p.stdin.flush()
        return json.loads(self.p.stdout.readline())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def main():
    args = parse()
    set_threads(args.threads)
    if args.worker:
        return worker(args.worker, args.threads)
    import numpy as np

    runners = {}
    for lib in LIBS:
        if args.same_process:
            try:
                step = make_step(lib, args.threads)
                runners[lib] = lambda n, step=step: timed(step, n)
            except ImportError as e:
                print(f"({lib} skipped: {e})")
        else:
            r = Remote(lib, args.threads)
            if "skip" in r.hello:
                print(f"({lib} skipped: {r.hello['skip']})")
                r.close()
            else:
                runners[lib] = r
    for run in runners.values():
        run(args.warmup)
    times = {k: [] for k in runners}
    for _ in range(max(1, args.runs // args.block)):   # rounds of blocks: A×n, B×n, C×n, A×n, …
        for k, run in runners.items():
            time.sleep(args.pause)                     # let the previous library's threads go idle
            times[k] += run(args.block)
    for run in runners.values():
        if isinstance(run, Remote):
            run.close()

    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    ref = med.get("pytorch")
    where = "one process" if args.same_process else "one worker process per library"
    print(f"LSTM({U}), T={T}, batch {B}, input {D}, float32, forward + backward of sum(out*G); median of "
          f"{len(next(iter(times.values())))} steps, threads={args.threads or 'default'}, {where}")
    print(f"{'library':<22}{'ms':>9}{'vs PyTorch':>12}")
    for k, v in med.items():
        ratio = f"{v / ref:.2f}x" if ref else "-"
        print(f"{k:<22}{v:>9.2f}{ratio:>12}")

    if args.profile:
        import cProfile
        import pstats
        step = make_step("tinyattn", args.threads)
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(10):
            step()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
