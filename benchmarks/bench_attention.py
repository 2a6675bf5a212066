"""Attention benchmark: tinyattn vs PyTorch (and Keras, when installed), side by side in one run.

Two workloads, forward + backward with a random upstream gradient, float32, CPU; median ms over
``--repeats`` runs (after warm-up), and the ratio to PyTorch measured in the same run (the machine
may be shared: compare ratios, not absolute times across runs).

(a) Multi-head self-attention: x (B=16, T=128, d=256), 8 heads of key_dim 32, Q/K/V/output
    projections with biases; gradients w.r.t. x and every weight.
      tinyattn.attention.MultiHeadAttention  |  torch.nn.MultiheadAttention(batch_first=True)
      |  keras.layers.MultiHeadAttention under tf.function (GradientTape)
(b) Bahdanau score + context step: enc (32, 50, 128), query (32, 128), units 128:
      e_j = vᵀ tanh(W_q q + W_k h_j),  α = softmax_j(e),  c = Σ_j α_j h_j
    gradients w.r.t. enc, query, W_q, W_k, v. The same ops on both sides.

    python benchmarks/bench_attention.py [--repeats 20] [--threads N] [--only mha|bahdanau]
                                         [--profile mha|bahdanau]

``--threads N`` pins every library to N threads (OpenBLAS/OpenMP through the environment, set before
NumPy loads; ``torch.set_num_threads``; TF's thread pools). On a shared, oversubscribed machine,
``--threads 1`` gives the steadiest comparison, and the CPU-time column (process time, which does not
count time spent descheduled) is then the work each framework does.
"""
import argparse
import os
import statistics
import sys
import time

if "--threads" in sys.argv:            # must happen before NumPy / PyTorch load their BLAS
    _n = sys.argv[sys.argv.index("--threads") + 1]
    for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = _n

import numpy as np

import tinyattn as ta
from tinyattn.attention import MultiHeadAttention, additive_score, attend

try:
    import torch
except ImportError:  # PyTorch rows skipped
    torch = None
try:
    import tensorflow as tf
    import keras
except ImportError:  # Keras rows skipped
    tf = keras = None


def _set_threads(n):
    if torch is not None:
        torch.set_num_threads(n)
    if tf is not None:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(n)
            tf.config.threading.set_inter_op_parallelism_threads(n)
        except RuntimeError:      # TF already initialized its pools
            pass

B, T, D, H = 16, 128, 256, 8
BB, TE, DE, U = 32, 50, 128, 128


# ----------------------------------------------------------------------------- (a) MHA
def _mha_data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    gy = rng.standard_normal((B, T, D)).astype(np.float32)
    return x, gy


def mha_tinyattn():
    x, gy = _mha_data()
    layer = MultiHeadAttention(num_heads=H, key_dim=D // H)
    xt = ta.tensor(x, requires_grad=True)
    layer(xt, xt)

    def run():
        layer.zero_grad()
        xt.grad = None
        y = layer(xt, xt)
        y.backward(gy)
    return run


def mha_torch():
    x, gy = _mha_data()
    m = torch.nn.MultiheadAttention(D, H, batch_first=True)
    xt = torch.tensor(x, requires_grad=True)
    g = torch.tensor(gy)

    def run():
        m.zero_grad()
        xt.grad = None
        y, _ = m(xt, xt, xt, need_weights=False)
        y.backward(g)
    return run


def mha_keras():
    x, gy = _mha_data()
    layer = keras.layers.MultiHeadAttention(num_heads=H, key_dim=D // H)
    xt, g = tf.constant(x), tf.constant(gy)
    layer(xt, xt)

    @tf.function
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x, x)
            loss = tf.reduce_sum(y * g)
        return tape.gradient(loss, [x] + layer.trainable_weights)

    def run():
        [t.numpy() for t in step(xt)]
    return run


# ----------------------------------------------------------------------------- (b) Bahdanau
def _bahdanau_data():
    rng = np.random.default_rng(1)
    enc = rng.standard_normal((BB, TE, DE)).astype(np.float32)
    q = rng.standard_normal((BB, DE)).astype(np.float32)
    wq, wk = (rng.uniform(-0.15, 0.15, (DE, U)).astype(np.float32) for _ in range(2))
    v = rng.uniform(-0.15, 0.15, (U,)).astype(np.float32)
    gc = rng.standard_normal((BB, DE)).astype(np.float32)
    return enc, q, wq, wk, v, gc


def bahdanau_tinyattn():
    enc, q, wq, wk, v, gc = _bahdanau_data()
    ts = [ta.tensor(a, requires_grad=True) for a in (enc, q, wq, wk, v)]
    E, Q, WQ, WK, V = ts
    g = gc[:, None, :]

    def run():
        for t in ts:
            t.grad = None
        e = additive_score(Q.reshape(BB, 1, DE), E, WQ, WK, V)    # (B, 1, Te)
        a = e.softmax(axis=-1)
        c = attend(a, E)                                            # (B, 1, De)
        c.backward(g)
    return run


def bahdanau_torch():
    enc, q, wq, wk, v, gc = _bahdanau_data()
    ts = [torch.tensor(a, requires_grad=True) for a in (enc, q, wq, wk, v)]
    E, Q, WQ, WK, V = ts
    g = torch.tensor(gc)

    def run():
        for t in ts:
            t.grad = None
        e = torch.tanh((Q @ WQ)[:, None, :] + E @ WK) @ V           # (B, Te)
        a = torch.softmax(e, dim=-1)
        c = torch.bmm(a[:, None, :], E)[:, 0]                       # (B, De)
        c.backward(g)
    return run


WORKLOADS = {
    "mha": ("(a) MHA self-attn B=16 T=128 d=256 h=8, fwd+bwd",
            [("tinyattn", mha_tinyattn, True), ("PyTorch", mha_torch, torch is not None),
             ("Keras (tf.function)", mha_keras, keras is not None)]),
    "bahdanau": ("(b) Bahdanau score+context (32,50,128) u=128, fwd+bwd",
                 [("tinyattn", bahdanau_tinyattn, True), ("PyTorch", bahdanau_torch, torch is not None)]),
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--only", choices=sorted(WORKLOADS))
    ap.add_argument("--profile", choices=sorted(WORKLOADS))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        _set_threads(args.threads)
    if args.profile:
        import cProfile
        import pstats
        run = WORKLOADS[args.profile][1][0][1]()
        run()
        pr = cProfile.Profile()
        pr.enable()
        for _ in range(10):
            run()
        pr.disable()
        pstats.Stats(pr).sort_stats("tottime").print_stats(20)
        return
    print(f"{'workload':<55} {'framework':<20} {'wall ms':>9} {'× PyTorch':>9} {'CPU ms':>9} {'× PyTorch':>9}")
    for key, (title, rows) in WORKLOADS.items():
        if args.only and key != args.only:
            continue
        # Frameworks run in blocks (not one call each in turn: the idle worker threads of one
        # library spin for a while after its call and would steal the cores from the next one),
        # and the blocks alternate over 3 rounds so that background load hits every framework alike.
        runs = [(name, make()) for name, make, ok in rows if ok]
        wall = {name: [] for name, _ in runs}
        cpu = {name: [] for name, _ in runs}
        n = max(1, args.repeats * (10 if key == "bahdanau" else 1) // 3)   # (b) is ~20x shorter
        for _ in range(3):
            for name, run in runs:
                for _ in range(2):
                    run()                                   # warm-up, and let others' threads settle
                for _ in range(n):
                    t0, c0 = time.perf_counter(), time.process_time()
                    run()
                    wall[name].append(time.perf_counter() - t0)
                    cpu[name].append(time.process_time() - c0)
        mw = {n: 1e3 * statistics.median(ts) for n, ts in wall.items()}
        mc = {n: 1e3 * statistics.median(ts) for n, ts in cpu.items()}
        rw, rc = mw.get("PyTorch"), mc.get("PyTorch")
        for name, _ in runs:
            a = f"{mw[name] / rw:.2f}" if rw else "-"
            b = f"{mc[name] / rc:.2f}" if rc else "-"
            print(f"{title:<55} {name:<20} {mw[name]:>9.2f} {a:>9} {mc[name]:>9.2f} {b:>9}")
        for name, _, ok in rows:
            if not ok:
                print(f"{title:<55} {name:<20} skipped (not installed)")


if __name__ == "__main__":
    main()
