"""What each kernel in ``tinyattn.kernels`` buys: fused kernel vs its textbook form, same run.

For every kernel, one step = forward + backward (gradients w.r.t. every input) of Σ out ⊙ G, float32,
measured in process CPU time (``time.process_time``; insensitive to other processes on a shared
machine) with one BLAS thread, median of ``--runs`` steps after a warm-up. Prints the medians and the
speed-up (textbook / fused). The numbers quoted in ``tinyattn/kernels/__init__.py`` come from here.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/bench_kernels.py [--runs 20]
"""
import argparse
import os
import statistics
import sys
import time

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

import tinyattn as ta  # noqa: E402
from tinyattn import kernels, nn  # noqa: E402
from tinyattn.attention import masked_softmax  # noqa: E402


def _t(rng, *shape, grad=True):
    return ta.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=grad)


def _step(fn, ins, G):
    outs = fn(*ins)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    ta.grad(outs[:len(G)], ins, G[:len(outs)])


def _time(fn, ins, runs, warmup=2):
    rng = np.random.default_rng(1)
    outs = fn(*ins)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    G = [ta.tensor(rng.standard_normal(o.shape).astype(np.float32)) for o in outs]
    for _ in range(warmup):
        _step(fn, ins, G)
    ts = []
    for _ in range(runs):
        t0 = time.process_time()
        _step(fn, ins, G)
        ts.append(time.process_time() - t0)
    return statistics.median(ts)


def cases():
    rng = np.random.default_rng(0)
    out = []

    B, T, D, U = 32, 50, 32, 128
    x = _t(rng, B, T, D)
    for name, cls, kw in (("LSTM layer (B 32, T 50, d 32, u 128)", nn.LSTM, {}),
                          ("GRU layer (same sizes, reset_after)", nn.GRU, {})):
        fast = cls(U, return_sequences=True, **kw)
        slow = cls(U, return_sequences=True, fused=False, **kw)
        fast(x)
        slow(x)
        slow.set_weights(fast.get_weights())
        out.append((name, lambda x, *p, L=fast: L(x), lambda x, *p, L=slow: L(x), [x] + fast.parameters(),
                    [x] + slow.parameters()))

    q, k, v = _t(rng, 8, 4, 128, 32), _t(rng, 8, 4, 128, 32), _t(rng, 8, 4, 128, 32)
    keep = rng.random((8, 1, 128, 128)) > 0.2

    def sdpa_slow(q, k, v):
        p = masked_softmax((q @ k.swapaxes(-1, -2)) * (1 / np.sqrt(32)), keep)
        return p @ v

    out.append(("scaled dot-product attention (B 8, H 4, T 128, d 32, masked)",
                lambda q, k, v: kernels.ScaledDotProductAttention(1 / np.sqrt(32), keep)(q, k, v)[0],
                sdpa_slow, [q, k, v], [q, k, v]))

    qp, kp, w = _t(rng, 16, 32, 64), _t(rng, 16, 40, 64), _t(rng, 64)
    out.append(("additive score vᵀtanh(qp_i + kp_j) (B 16, Tq 32, Tk 40, h 64)",
                lambda a, b, c: kernels.AdditiveScore()(a, b, c),
                lambda a, b, c: (a.expand_dims(-2) + b.expand_dims(-3)).tanh() @ c, [qp, kp, w], [qp, kp, w]))

    qp1, keys, vals, w1 = _t(rng, 32, 64), _t(rng, 32, 40, 64), _t(rng, 32, 40, 128), _t(rng, 64)
    m = rng.random((32, 40)) > 0.1

    def step_slow(qp, keys, vals, w):
        e = (qp.expand_dims(1) + keys).tanh() @ w
        a = masked_softmax(e, m)
        return (a.expand_dims(1) @ vals).squeeze(1), a

    out.append(("seq2seq additive attention step (B 32, S 40, A 64, D 128)",
                lambda *a: kernels.additive_attention(*a, m), step_slow, [qp1, keys, vals, w1],
                [qp1, keys, vals, w1]))

    xl, g, b = _t(rng, 64, 128, 256), _t(rng, 1, 1, 256), _t(rng, 1, 1, 256)

    def ln_slow(x, g, b):
        mu = x.mean(axis=-1, keepdims=True)
        xc = x - mu
        return xc / ((xc * xc).mean(axis=-1, keepdims=True) + 1e-3).sqrt() * g + b

    out.append(("LayerNormalization (64 × 128 × 256, last axis)",
                lambda *a: kernels.LayerNormFn((2,), 1e-3)(*a), ln_slow, [xl, g, b], [xl, g, b]))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    print(f"{'kernel':66s} {'fused ms':>9s} {'textbook ms':>12s} {'speed-up':>9s}")
    for name, fast, slow, fin, sin in cases():
        tf_ = _time(fast, fin, args.runs)
        ts = _time(slow, sin, args.runs)
        print(f"{name:66s} {tf_ * 1e3:9.2f} {ts * 1e3:12.2f} {ts / tf_:8.1f}×", flush=True)
    # the buffer pool: the fused LSTM with and without it
    rng = np.random.default_rng(2)
    x = _t(rng, 32, 50, 32)
    L = nn.LSTM(128, return_sequences=True)
    L(x)
    with_pool = _time(lambda x, *p: L(x), [x] + L.parameters(), args.runs)
    old = nn.set_buffer_pool_limit(0)
    try:
        without = _time(lambda x, *p: L(x), [x] + L.parameters(), args.runs)
    finally:
        nn.set_buffer_pool_limit(old)
    print(f"{'LSTM buffer pool (fused LSTM step, pool on vs off)':66s} {with_pool * 1e3:9.2f} "
          f"{without * 1e3:12.2f} {without / with_pool:8.1f}×")


if __name__ == "__main__":
    main()
