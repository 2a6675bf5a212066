"""LSTM training-step benchmark: tinyattn vs PyTorch vs Keras, side by side in one process.

Task: LSTM(128) over T=50 steps, batch 32, 32 input features, float32, return_sequences=True;
one step = forward + backward of loss = Σ output ⊙ G (G a fixed random upstream gradient), i.e. the
gradients w.r.t. the input and every weight (all three libraries start from the same weights).
The table reports the median of ``--runs`` steps per library and the ratio to PyTorch; rows whose
library is not installed are skipped.

    python benchmarks/bench_layers.py [--runs 30] [--block 5] [--threads N] [--profile]

The libraries take turns in blocks of ``--block`` consecutive steps (A×5, B×5, C×5, A×5, …): load
from other processes hits them alike, and a library's idle worker threads (which spin for a while
after each parallel region) disturb the others less than with strict alternation.
``--threads N`` caps the BLAS / intra-op threads of every library (set before NumPy is imported);
on a small, shared machine ``--threads 1`` gives the steadiest ratios.
``--profile`` prints a cProfile of the tinyattn step.
"""
import argparse
import os
import sys
import time

B, T, D, U = 32, 50, 32, 128


def parse():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=30)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--block", type=int, default=5, help="consecutive runs of one library per turn")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--profile", action="store_true")
    return p.parse_args()


def main():
    args = parse()
    if args.threads:
        for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[v] = str(args.threads)
    import numpy as np
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    import tinyattn as ta
    from tinyattn import nn

    rng = np.random.default_rng(0)
    x_np = rng.standard_normal((B, T, D)).astype(np.float32)
    g_np = rng.standard_normal((B, T, U)).astype(np.float32)
    steps = {}

    ta.manual_seed(0)
    ours = nn.LSTM(U, return_sequences=True)
    x_ta = ta.tensor(x_np, requires_grad=True)
    ours(x_ta)

    def step_tinyattn():
        ours.zero_grad()
        x_ta.grad = None
        ours(x_ta).backward(g_np)
    steps["tinyattn"] = step_tinyattn
    weights = ours.get_weights()

    try:
        import torch
        if args.threads:
            torch.set_num_threads(args.threads)
        lt = torch.nn.LSTM(D, U, batch_first=True)
        with torch.no_grad():                          # the same weights (Keras layout -> PyTorch)
            lt.weight_ih_l0.copy_(torch.from_numpy(weights[0].T.copy()))
            lt.weight_hh_l0.copy_(torch.from_numpy(weights[1].T.copy()))
            lt.bias_ih_l0.copy_(torch.from_numpy(weights[2]))
            lt.bias_hh_l0.zero_()
        x_t = torch.from_numpy(x_np).requires_grad_(True)
        g_t = torch.from_numpy(g_np)

        def step_torch():
            lt.zero_grad()
            x_t.grad = None
            out, _ = lt(x_t)
            (out * g_t).sum().backward()
        steps["pytorch"] = step_torch
    except ImportError:
        print("(PyTorch not installed: row skipped)")

    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf
        import keras
        if args.threads:
            tf.config.threading.set_intra_op_parallelism_threads(args.threads)
            tf.config.threading.set_inter_op_parallelism_threads(args.threads)
        lk = keras.layers.LSTM(U, return_sequences=True)
        x_k = tf.constant(x_np)
        g_k = tf.constant(g_np)
        lk(x_k)
        lk.set_weights(weights)

        @tf.function
        def keras_step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_sum(lk(x) * g_k)
            return tape.gradient(loss, [x] + lk.trainable_weights)

        def step_keras():
            [g.numpy() for g in keras_step(x_k)]
        steps["keras (tf.function)"] = step_keras
    except ImportError:
        print("(TensorFlow/Keras not installed: row skipped)")

    for f in steps.values():
        for _ in range(args.warmup):
            f()
    times = {k: [] for k in steps}
    for _ in range(max(1, args.runs // args.block)):   # rounds of blocks: A×n, B×n, C×n, A×n, …
        for k, f in steps.items():
            for _ in range(args.block):
                t0 = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t0)

    med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
    ref = med.get("pytorch")
    print(f"LSTM({U}), T={T}, batch {B}, input {D}, float32, forward + backward of sum(out*G); "
          f"median of {args.runs} runs, threads={args.threads or 'default'}")
    print(f"{'library':<22}{'ms':>9}{'vs PyTorch':>12}")
    for k, v in med.items():
        ratio = f"{v / ref:.2f}x" if ref else "-"
        print(f"{k:<22}{v:>9.2f}{ratio:>12}")

    if args.profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(10):
            step_tinyattn()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
