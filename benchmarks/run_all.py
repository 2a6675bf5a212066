"""Every benchmark in one table: tinyattn vs PyTorch (CPU), rounds interleaved, 1 thread and all threads.

    python benchmarks/run_all.py                 # the full table (~10-20 min on 2 busy cores)
    python benchmarks/run_all.py --quick         # few rounds, small sizes (a smoke test: tests/test_benchmarks.py)
    python benchmarks/run_all.py --only lstm,mha_warm --rounds 9 --threads 1

How it measures
* Each library runs in its OWN worker process (started with the thread count in the environment
  before NumPy / PyTorch load their BLAS), free of the other frameworks' imports: TensorFlow or
  PyTorch loaded next to the other library changes its speed (TF in the same process slows
  PyTorch's LSTM 2×). The tinyattn worker never imports torch; the torch worker never imports
  tinyattn. A worker holds one workload at a time (built and warmed up again when its turn comes,
  the previous one dropped and collected first), so no workload runs beside another's objects:
  tinyattn's Tensors are Python objects that the cyclic garbage collector tracks (PyTorch's are
  not), and wide_graph's 64,000 leaves, kept alive next to tiny_ops, made every full collection
  during tiny_ops walk them (15.2 µs/op measured so vs 6.8 alone).
* Rounds are interleaved: round r runs workload w on tinyattn then PyTorch (the order flips every
  round), so load from other processes hits both alike; the ratio tinyattn / PyTorch is taken per
  round and the table prints min – median – max of those ratios (below 1: tinyattn faster).
  The CPU-time ratio (process time: what each library computes, not counting time spent
  descheduled on a busy machine) is printed next to it.
* "cold" workloads (MHA's first 10 steps, attention at long T with its peak memory, the demo end to
  end) start a fresh process per round and library.
* Threads: "1" sets OPENBLAS/OMP/MKL_NUM_THREADS=1, TINYATTN_NUM_THREADS=1, tinyattn.set_num_threads(1)
  (its pool and NumPy's BLAS) and torch.set_num_threads(1); "all" leaves every library at its default
  (all cores this process may use).
* The header says what ran: the load average, the BLAS each library uses (NumPy's found and read
  through tinyattn.parallel.blas_info(), no threadpoolctl needed; its kernel set, e.g. core SkylakeX),
  NumPy's runtime SIMD dispatch (as numpy.show_runtime() prints it), the pool and BLAS thread counts
  of each thread setting, and the host variables that force a BLAS core type or thread count
  (OPENBLAS_CORETYPE, MKL_ENABLE_INSTRUCTIONS, ...). E.g. ``OPENBLAS_NUM_THREADS=1 python
  benchmarks/run_all.py --threads all``: tinyattn's pool on every core, NumPy's OpenBLAS on one
  (PyTorch's MKL is not OpenBLAS: unaffected); benchmarks/blas_threads.py compares those splits.

Workloads (float32, forward + backward unless said):
  tiny_ops     500 × {y = y·a; y = y + b} on (4, 4) leaves, sum, backward: µs per op (1001 ops)
  wide_graph   Σᵢ aᵢ·bᵢ over 32,000 scalar leaf pairs as a chain of adds (64,000 ops), backward
  lstm         LSTM(128), x (32, 50, 32), return_sequences, gradients for x and all weights
  gru          GRU(128), same
  bilstm       Bidirectional LSTM(64) (concat), same x
  mha_warm     MultiHeadAttention self-attn x (16, 128, 256), 8 heads × 32, after warm-up
  mha_cold     the same in a fresh process: the sum of its first 10 steps after the first call
               (which is each library's one-time lazy set-up: PyTorch's takes ~1 s)
  bahdanau     e = vᵀ tanh(W_q q + W_k h), α = softmax(e), c = α H: enc (32, 50, 128), units 128
  decoder20    20 steps of an attention decoder (tanh RNN cell on [y, context], additive attention
               over enc (32, 50, 128)), backward through the whole loop
  transformer  pre-norm TransformerEncoderLayer(256, 8 heads, ff 1024, GELU, dropout 0) on
               (16, 128, 256): forward, backward, AdamW step
  attn_T       softmax(q kᵀ/√d) v at T = 1024 / 2048 / 4096 (1 × 2 heads × T × 64): fresh process,
               time of one step after a warm-up and the peak resident memory it added (MiB)
  demo         examples/attention_focus.py end to end (imports, data, 2 epochs, evaluation) vs the
               same model and training in PyTorch, each in a fresh process
"""
import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
LIBS = ("tinyattn", "torch")

# ------------------------------------------------------------------------------------------------
# Sizes (full, quick)
# ------------------------------------------------------------------------------------------------
FULL = dict(tiny_steps=500, wide=32_000, rnn=(32, 50, 32, 128), mha=(16, 128, 256, 8), bahdanau=(32, 50, 128, 128),
            dec_steps=20, tf=(16, 128, 256, 8, 1024), attn_T=(1024, 2048, 4096), demo=(20000, 2), cold_steps=10)
QUICK = dict(tiny_steps=100, wide=2_000, rnn=(8, 10, 8, 16), mha=(4, 32, 64, 4), bahdanau=(8, 12, 32, 32),
             dec_steps=5, tf=(4, 32, 64, 4, 128), attn_T=(256,), demo=(500, 1), cold_steps=3)


# ================================================================================================
# Workload builders: build(lib, S) -> step() (each runs in the worker of its library only)
# ================================================================================================
def _np():
    import numpy as np
    return np


def _ta():
    sys.path.insert(0, ROOT)
    import tinyattn as ta
    return ta


def _rng(seed):
    return _np().random.default_rng(seed)


def build_tiny_ops(lib, S):
    np = _np()
    rng = _rng(0)
    x, b = rng.standard_normal((2, 4, 4)).astype(np.float32)
    a = rng.uniform(0.4, 0.6, (4, 4)).astype(np.float32)
    n = S["tiny_steps"]
    if lib == "tinyattn":
        ta = _ta()
        X, A, B = (ta.tensor(v, requires_grad=True) for v in (x, a, b))
    else:
        import torch
        X, A, B = (torch.tensor(v, requires_grad=True) for v in (x, a, b))

    def step():
        y = X
        for _ in range(n):
            y = y * A
            y = y + B
        y.sum().backward()
    return step, 1e6 / (2 * n + 1), "µs/op"


def build_wide_graph(lib, S):
    np = _np()
    n = S["wide"]
    vals = _rng(1).standard_normal((2, n)).astype(np.float32)
    if lib == "tinyattn":
        ta = _ta()
        leaves = [(ta.tensor(a, requires_grad=True), ta.tensor(b, requires_grad=True)) for a, b in vals.T]
    else:
        import torch
        leaves = [(torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)) for a, b in vals.T]

    def step():
        s = leaves[0][0] * leaves[0][1]
        for a, b in leaves[1:]:
            s = s + a * b
        s.backward()
    return step, 1e3, "ms"


def _rnn_data(S, units=None):
    np = _np()
    B, T, D, U = S["rnn"]
    U = units or U
    rng = _rng(2)
    return rng.standard_normal((B, T, D)).astype(np.float32), rng.standard_normal((B, T, U)).astype(np.float32)


def _build_rnn(lib, S, kind, bidir=False):
    np = _np()
    B, T, D, U = S["rnn"]
    if bidir:
        U = U // 2
    x, g = _rnn_data(S, U * (2 if bidir else 1))
    if lib == "tinyattn":
        ta = _ta()
        ta.manual_seed(0)
        cell = getattr(ta.nn, kind)(U, return_sequences=True)
        layer = ta.nn.Bidirectional(cell) if bidir else cell
        X = ta.tensor(x, requires_grad=True)
        layer(X)

        def step():
            layer.zero_grad()
            X.grad = None
            layer(X).backward(g)
        return step, 1e3, "ms"
    import torch
    layer = getattr(torch.nn, kind)(D, U, batch_first=True, bidirectional=bidir)
    X = torch.tensor(x, requires_grad=True)
    G = torch.tensor(g)

    def step():
        layer.zero_grad()
        X.grad = None
        out, _ = layer(X)
        out.backward(G)
    return step, 1e3, "ms"


def build_lstm(lib, S):
    return _build_rnn(lib, S, "LSTM")


def build_gru(lib, S):
    return _build_rnn(lib, S, "GRU")


def build_bilstm(lib, S):
    return _build_rnn(lib, S, "LSTM", bidir=True)


def build_mha_warm(lib, S):
    np = _np()
    B, T, D, H = S["mha"]
    rng = _rng(3)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    g = rng.standard_normal((B, T, D)).astype(np.float32)
    if lib == "tinyattn":
        ta = _ta()
        layer = ta.attention.MultiHeadAttention(num_heads=H, key_dim=D // H)
        X = ta.tensor(x, requires_grad=True)
        layer(X, X)

        def step():
            layer.zero_grad()
            X.grad = None
            layer(X, X).backward(g)
        return step, 1e3, "ms"
    import torch
    m = torch.nn.MultiheadAttention(D, H, batch_first=True)
    X = torch.tensor(x, requires_grad=True)
    G = torch.tensor(g)

    def step():
        m.zero_grad()
        X.grad = None
        y, _ = m(X, X, X, need_weights=False)
        y.backward(G)
    return step, 1e3, "ms"


def build_bahdanau(lib, S):
    np = _np()
    B, Te, De, U = S["bahdanau"]
    rng = _rng(4)
    enc = rng.standard_normal((B, Te, De)).astype(np.float32)
    q = rng.standard_normal((B, De)).astype(np.float32)
    wq, wk = (rng.uniform(-0.15, 0.15, (De, U)).astype(np.float32) for _ in range(2))
    v = rng.uniform(-0.15, 0.15, (U,)).astype(np.float32)
    gc = rng.standard_normal((B, De)).astype(np.float32)
    if lib == "tinyattn":
        ta = _ta()
        from tinyattn.attention import additive_score, attend
        ts = [ta.tensor(a, requires_grad=True) for a in (enc, q, wq, wk, v)]
        E, Q, WQ, WK, V = ts
        g = gc[:, None, :]

        def step():
            for t in ts:
                t.grad = None
            e = additive_score(Q.reshape(B, 1, De), E, WQ, WK, V)
            attend(e.softmax(axis=-1), E).backward(g)
        return step, 1e3, "ms"
    import torch
    ts = [torch.tensor(a, requires_grad=True) for a in (enc, q, wq, wk, v)]
    E, Q, WQ, WK, V = ts
    G = torch.tensor(gc)

    def step():
        for t in ts:
            t.grad = None
        e = torch.tanh((Q @ WQ)[:, None, :] + E @ WK) @ V
        a = torch.softmax(e, dim=-1)
        torch.bmm(a[:, None, :], E)[:, 0].backward(G)
    return step, 1e3, "ms"


def build_decoder20(lib, S):
    """s_t = tanh([y_t, c_t] W + s_{t−1} U + b),  c_t = additive attention of s_{t−1} over enc."""
    np = _np()
    B, Te, De, A = S["bahdanau"]
    n = S["dec_steps"]
    rng = _rng(5)
    enc = rng.standard_normal((B, Te, De)).astype(np.float32)
    ys = rng.standard_normal((n, B, 32)).astype(np.float32)
    w = rng.uniform(-0.1, 0.1, (32 + De, De)).astype(np.float32)
    u = rng.uniform(-0.1, 0.1, (De, De)).astype(np.float32)
    bias = np.zeros(De, np.float32)
    wq, wk = (rng.uniform(-0.1, 0.1, (De, A)).astype(np.float32) for _ in range(2))
    v = rng.uniform(-0.1, 0.1, (A,)).astype(np.float32)
    if lib == "tinyattn":
        ta = _ta()
        from tinyattn.seq2seq import additive_attention
        P = [ta.tensor(a, requires_grad=True) for a in (enc, w, u, bias, wq, wk, v)]
        E, W, U_, Bi, WQ, WK, V = P
        Y = [ta.tensor(y) for y in ys]

        def step():
            for t in P:
                t.grad = None
            keys = E @ WK
            s = ta.zeros(B, De)
            loss = 0
            for y in Y:
                c, _ = additive_attention(s @ WQ, keys, E, V)
                s = (ta.concat([y, c], axis=-1) @ W + s @ U_ + Bi).tanh()
                loss = loss + s.sum()
            loss.backward()
        return step, 1e3, "ms"
    import torch
    P = [torch.tensor(a, requires_grad=True) for a in (enc, w, u, bias, wq, wk, v)]
    E, W, U_, Bi, WQ, WK, V = P
    Y = [torch.tensor(y) for y in ys]

    def step():
        for t in P:
            t.grad = None
        keys = E @ WK
        s = torch.zeros(B, De)
        loss = 0
        for y in Y:
            e = torch.tanh((s @ WQ)[:, None, :] + keys) @ V
            a = torch.softmax(e, dim=-1)
            c = torch.bmm(a[:, None, :], E)[:, 0]
            s = torch.tanh(torch.cat([y, c], dim=-1) @ W + s @ U_ + Bi)
            loss = loss + s.sum()
        loss.backward()
    return step, 1e3, "ms"


def build_transformer(lib, S):
    np = _np()
    B, T, D, H, F = S["tf"]
    rng = _rng(6)
    x = rng.standard_normal((B, T, D)).astype(np.float32)
    g = rng.standard_normal((B, T, D)).astype(np.float32)
    if lib == "tinyattn":
        ta = _ta()
        ta.manual_seed(0)
        layer = ta.transformer.TransformerEncoderLayer(D, H, dim_feedforward=F, dropout=0.0, activation="gelu",
                                                       norm_first=True)
        X = ta.tensor(x)
        layer(X)
        opt = ta.optim.AdamW(layer.parameters(), lr=1e-4)

        def step():
            opt.zero_grad()
            layer(X).backward(g)
            opt.step()
        return step, 1e3, "ms"
    import torch
    layer = torch.nn.TransformerEncoderLayer(D, H, dim_feedforward=F, dropout=0.0, activation="gelu",
                                             norm_first=True, batch_first=True)
    opt = torch.optim.AdamW(layer.parameters(), lr=1e-4)
    X, G = torch.tensor(x), torch.tensor(g)

    def step():
        opt.zero_grad()
        layer(X).backward(G)
        opt.step()
    return step, 1e3, "ms"


def build_attn(lib, S, T):
    np = _np()
    rng = _rng(7)
    q, k, v, g = (rng.standard_normal((1, 2, T, 64)).astype(np.float32) for _ in range(4))
    if lib == "tinyattn":
        ta = _ta()
        Q, K, V = (ta.tensor(a, requires_grad=True) for a in (q, k, v))

        def step():
            for t in (Q, K, V):
                t.grad = None
            ta.attention.scaled_dot_product_attention(Q, K, V).backward(g)
        return step, 1e3, "ms"
    import torch
    Q, K, V = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    G = torch.tensor(g)

    def step():                                  # the same naive maths (not torch's fused kernel)
        for t in (Q, K, V):
            t.grad = None
        p = torch.softmax((Q @ K.transpose(-1, -2)) * (1 / 8.0), dim=-1)
        (p @ V).backward(G)
    return step, 1e3, "ms"


def demo_torch(samples, epochs):
    """examples/attention_focus.py's model and training, in PyTorch (data from the same generator)."""
    import numpy as np
    import torch
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    T, d, U = 10, 2, 32
    x = rng.normal(0.0, 10.0, size=(samples, T, d)).astype(np.float32)
    y = rng.integers(0, 2, size=(samples, 1)).astype(np.float32)
    x[:, 2, :] = y

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(d, U, batch_first=True)
            self.att = torch.nn.Linear(T, T)
            self.out = torch.nn.Linear(T * U, 1)

        def forward(self, xb):
            h, _ = self.lstm(xb)                                        # (B, T, U)
            a = torch.softmax(self.att(h.transpose(1, 2)), dim=-1)      # (B, U, T)
            h = h * a.transpose(1, 2)
            return torch.sigmoid(self.out(h.flatten(1)))

    model = Model()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    n_val = samples // 10
    xt, yt = torch.tensor(x[:-n_val]), torch.tensor(y[:-n_val])
    xv, yv = torch.tensor(x[-n_val:]), torch.tensor(y[-n_val:])
    loss_fn = torch.nn.BCELoss()
    for _ in range(epochs):
        perm = torch.randperm(len(xt))
        for i in range(0, len(xt), 64):
            idx = perm[i:i + 64]
            opt.zero_grad()
            loss = loss_fn(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        with torch.no_grad():
            loss_fn(model(xv), yv)
    with torch.no_grad():
        model(torch.tensor(x[:300]))


BUILDERS = {"tiny_ops": build_tiny_ops, "wide_graph": build_wide_graph, "lstm": build_lstm, "gru": build_gru,
            "bilstm": build_bilstm, "mha_warm": build_mha_warm, "bahdanau": build_bahdanau,
            "decoder20": build_decoder20, "transformer": build_transformer}
WARM = list(BUILDERS)
COLD = ["mha_cold", "attn_T", "demo"]
ALL = WARM + COLD


# ================================================================================================
# Workers
# ================================================================================================
def _set_thread_env(threads):
    if threads == 1:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYATTN_NUM_THREADS"):
            os.environ[var] = "1"


def _apply_threads(lib, threads):
    if threads != 1:
        return
    if lib == "torch":
        import torch
        torch.set_num_threads(1)
        torch.set_num_interop_threads(1)
    else:
        _ta().set_num_threads(1)                 # the pool and NumPy's BLAS (TINYATTN_NUM_THREADS did too)


def _clocks():
    return time.perf_counter(), time.process_time()


# Host variables that change which kernels or how many threads a library uses: reported in the header.
HOST_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "OPENBLAS_VERBOSE",
             "GOTO_NUM_THREADS", "OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_WAIT_POLICY", "MKL_NUM_THREADS",
             "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "MKL_CBWR", "MKL_THREADING_LAYER",
             "BLIS_NUM_THREADS", "KMP_AFFINITY", "NPY_DISABLE_CPU_FEATURES", "NPY_ENABLE_CPU_FEATURES",
             "ATEN_CPU_CAPABILITY", "TINYATTN_NUM_THREADS")


def _numpy_runtime(np):
    """NumPy's runtime CPU dispatch (what numpy.show_runtime() prints as simd_extensions): baseline and
    the dispatched extensions this CPU has, e.g. 'baseline X86_V2; found X86_V3,X86_V4,AVX512_ICL'."""
    try:
        from numpy._core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
    except ImportError:                          # an older NumPy
        try:
            from numpy.core._multiarray_umath import __cpu_baseline__, __cpu_dispatch__, __cpu_features__
        except ImportError:
            return "?"
    found = [f for f in __cpu_dispatch__ if __cpu_features__.get(f)]
    return f"baseline {','.join(__cpu_baseline__) or '-'}; found {','.join(found) or '-'}"


def _torch_blas(torch):
    """PyTorch's BLAS and its thread count, from torch.__config__.parallel_info(): ('MKL 2024.2', '2')."""
    try:
        text = torch.__config__.parallel_info()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})", "?"
    name, threads = "?", "?"
    for line in text.splitlines():
        line = line.strip()
        if "Math Kernel Library Version" in line:
            name = "MKL " + line.split("Version", 1)[1].split()[0].split("-")[0]
        elif line.startswith(("mkl_get_max_threads()", "openblas_get_num_threads()")):
            threads = line.split(":")[-1].strip()
    return name, threads


def _info(lib):
    """What this worker runs on: versions, BLAS (library, kernel set, threads), threads."""
    d = {"python": platform.python_version()}
    np = _np()
    d["numpy"] = np.__version__
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        d["numpy_blas"] = f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception as e:  # noqa: BLE001  (an older NumPy)
        d["numpy_blas"] = f"? ({e})"
    d["numpy_simd"] = _numpy_runtime(np)
    try:
        import threadpoolctl                     # (optional: numpy.show_runtime() uses it when present)
        d["threadpools"] = [f"{p['internal_api']} {p.get('version')} {p.get('threading_layer', '')} "
                            f"{p.get('architecture', '')} threads={p['num_threads']}"
                            for p in threadpoolctl.threadpool_info()]
    except ImportError:
        d["threadpools"] = None
    if lib == "tinyattn":
        ta = _ta()
        d["tinyattn_threads"] = ta.get_num_threads()
        info = ta.parallel.blas_info()           # NumPy's BLAS found and read through ctypes
        d["blas_lib"] = (f"{info['vendor']} {info['version']} ({info['threading']}, core {info['core']}; "
                         f"{os.path.basename(info['path'])})" if info["controllable"] else info["summary"])
        d["blas_config"] = info["config"]
        d["blas_threads"] = info["threads"]
    else:
        import torch
        d["torch"] = torch.__version__
        d["torch_threads"] = torch.get_num_threads()
        d["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        d["torch_blas"], d["torch_blas_threads"] = _torch_blas(torch)
    return d


def worker(lib, threads, S):
    """Serve 'run <workload> <reps>' lines on stdin with one JSON line each on stdout."""
    _apply_threads(lib, threads)
    built = {}
    out = sys.stdout
    sys.stdout = sys.stderr                      # library prints must not corrupt the protocol
    out.write(json.dumps(_info(lib)) + "\n")
    out.flush()
    for line in sys.stdin:
        cmd = line.split()
        if not cmd or cmd[0] == "quit":
            break
        name, reps = cmd[1], int(cmd[2])
        if name not in built:
            built.clear()                        # one workload alive at a time (see "How it measures")
            gc.collect()
            step, scale, unit = BUILDERS[name](lib, S)
            for _ in range(2):
                step()                           # warm-up (lazy builds, caches, page faults)
            built[name] = (step, scale, unit)
        step, scale, unit = built[name]
        w0, c0 = _clocks()
        for _ in range(reps):
            step()
        w1, c1 = _clocks()
        out.write(json.dumps({"wall": (w1 - w0) / reps * scale, "cpu": (c1 - c0) / reps * scale,
                              "unit": unit}) + "\n")
        out.flush()


def _rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20


def once(lib, name, threads, S, arg):
    """One fresh-process measurement, printed as one JSON line."""
    _apply_threads(lib, threads)
    import resource
    if name == "mha_cold":
        step, scale, unit = build_mha_warm(lib, S)
        step()                                   # the first call: the library's own lazy set-up
        w0, c0 = _clocks()
        for _ in range(S["cold_steps"]):
            step()
        w1, c1 = _clocks()
        res = {"wall": (w1 - w0) * 1e3, "cpu": (c1 - c0) * 1e3, "unit": "ms"}
    elif name == "attn_T":
        step, scale, unit = build_attn(lib, S, int(arg))
        base = _rss_mib()
        step()
        w0, c0 = _clocks()
        step()
        w1, c1 = _clocks()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        res = {"wall": (w1 - w0) * 1e3, "cpu": (c1 - c0) * 1e3, "unit": "ms", "mem": peak - base}
    else:
        raise SystemExit(f"run_all: unknown fresh-process workload {name!r}")
    print(json.dumps(res))


class Worker:
    def __init__(self, lib, threads, quick):
        env = dict(os.environ)
        self.proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--worker", lib, "--threads",
                                      "1" if threads == 1 else "all"] + (["--quick"] if quick else []),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        self.info = self._read()

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"run_all: a worker died (exit code {self.proc.wait()})")
        return json.loads(line)

    def run(self, name, reps):
        self.proc.stdin.write(f"run {name} {reps}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        except OSError:
            pass
        self.proc.wait(timeout=60)


def _fresh(lib, name, threads, quick, arg=""):
    cmd = [sys.executable, os.path.abspath(__file__), "--once", lib, name, "--threads",
           "1" if threads == 1 else "all"]
    if arg:
        cmd += ["--arg", str(arg)]
    if quick:
        cmd.append("--quick")
    env = dict(os.environ)
    if threads == 1:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYATTN_NUM_THREADS"):
            env[var] = "1"
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    if r.returncode:
        raise RuntimeError(f"run_all: {lib} {name} failed:\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def _demo(lib, threads, S, quick):
    samples, epochs = S["demo"]
    env = dict(os.environ, MPLBACKEND="Agg")
    if threads == 1:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYATTN_NUM_THREADS"):
            env[var] = "1"
    if lib == "tinyattn":
        cmd = [sys.executable, os.path.join(ROOT, "examples", "attention_focus.py"), "--samples", str(samples),
               "--epochs", str(epochs), "--plot", "", "--verbose", "0", "--min-ratio", "0"]
    else:
        code = (f"import sys; sys.path.insert(0, {HERE!r}); import run_all, torch; "
                + ("torch.set_num_threads(1); " if threads == 1 else "")
                + f"run_all.demo_torch({samples}, {epochs})")
        cmd = [sys.executable, "-c", code]
    w0 = time.perf_counter()
    r0 = os.times()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env)
    w1 = time.perf_counter()
    r1 = os.times()
    if p.returncode not in (0, 1) or (lib == "torch" and p.returncode):    # demo exit 1 = its own claim failed
        raise RuntimeError(f"run_all: demo ({lib}) failed:\n{p.stderr[-2000:]}")
    cpu = (r1.children_user - r0.children_user) + (r1.children_system - r0.children_system)
    return {"wall": (w1 - w0) * 1e3, "cpu": cpu * 1e3, "unit": "ms"}


# ================================================================================================
# The table
# ================================================================================================
def _loadavg():
    try:
        return "/".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _fmt_ratios(rs):
    if not rs:
        return "-"
    return f"{min(rs):.2f} – {statistics.median(rs):.2f} – {max(rs):.2f}"


def run_config(threads, names, rounds, quick, S, rows):
    workers = {lib: Worker(lib, threads, quick) for lib in LIBS}
    infos = {lib: w.info for lib, w in workers.items()}
    reps = {"tiny_ops": 20, "wide_graph": 1}   # tiny_ops: ~7 ms a step; 20 average over GC passes
    try:
        for r in range(rounds):
            order = LIBS if r % 2 == 0 else LIBS[::-1]
            for name in names:
                if name in BUILDERS:
                    res = {lib: workers[lib].run(name, reps.get(name, 1 if quick else 3)) for lib in order}
                    rows.setdefault((threads, name), []).append(res)
                elif name == "mha_cold":
                    res = {lib: _fresh(lib, name, threads, quick) for lib in order}
                    rows.setdefault((threads, f"mha_cold ({S['cold_steps']} steps)"), []).append(res)
                elif name == "attn_T":
                    for T in S["attn_T"]:
                        res = {lib: _fresh(lib, name, threads, quick, T) for lib in order}
                        rows.setdefault((threads, f"attn T={T}"), []).append(res)
                elif name == "demo":
                    res = {lib: _demo(lib, threads, S, quick) for lib in order}
                    rows.setdefault((threads, "demo (end to end)"), []).append(res)
            print(f"  threads={threads}: round {r + 1}/{rounds} done (load {_loadavg()})", file=sys.stderr,
                  flush=True)
    finally:
        for w in workers.values():
            w.close()
    return infos


def print_table(rows, infos, load0, args):
    """The table; ``infos`` maps each thread setting (1, 0 = all) to its workers' _info dicts."""
    out = []
    first = next(iter(infos.values()), {})
    ta_info, t_info = first.get("tinyattn", {}), first.get("torch", {})
    out.append(f"# tinyattn vs PyTorch {t_info.get('torch', '?')} (CPU) — run_all.py"
               f"{' --quick' if args.quick else ''}, {args.rounds} rounds interleaved, "
               f"{time.strftime('%Y-%m-%d %H:%M')}")
    out.append(f"# host: {platform.machine()}, {os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}; "
               f"Python {ta_info.get('python')}; load average (1/5/15 min) {load0} at start, {_loadavg()} at end")
    out.append(f"# NumPy {ta_info.get('numpy')} (built with {ta_info.get('numpy_blas')}): "
               f"BLAS {ta_info.get('blas_lib', '?')}; SIMD {ta_info.get('numpy_simd')}")
    if ta_info.get("blas_config"):
        out.append(f"# NumPy's BLAS config: {ta_info['blas_config']}")
    out.append("# threadpoolctl: " + ("; ".join(ta_info["threadpools"]) if ta_info.get("threadpools") else
                                       "not installed (numpy.show_runtime() only warns; the BLAS line above is "
                                       "tinyattn.parallel.blas_info())"))
    out.append(f"# torch: CPU capability {t_info.get('torch_cpu_capability')}, BLAS {t_info.get('torch_blas')}")
    for threads, inf in infos.items():
        ta_i, t_i = inf.get("tinyattn", {}), inf.get("torch", {})
        out.append(f"# threads={'1' if threads == 1 else 'all'}: tinyattn pool {ta_i.get('tinyattn_threads')}, "
                   f"NumPy's BLAS {ta_i.get('blas_threads', '?')}; torch intra-op {t_i.get('torch_threads')}, "
                   f"its BLAS {t_i.get('torch_blas_threads')}")
    hv = {k: os.environ[k] for k in HOST_VARS if k in os.environ}
    out.append(f"# host variables: {hv or 'none set'} (the threads=1 rows add *_NUM_THREADS=1 to their workers)")
    out.append("# ratio = tinyattn / PyTorch per round (< 1: tinyattn faster); min – median – max; "
               "times are medians (wall); cpu = process-time ratio, median")
    out.append("")
    head = (f"| {'workload':<24} | thr | {'tinyattn':>13} | {'PyTorch':>13} | {'ratio min – med – max':>22} "
            f"| cpu ratio | peak MiB (ta / torch) |")
    out.append(head)
    out.append("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|")
    for (threads, name), res in rows.items():
        ta_w = [r["tinyattn"]["wall"] for r in res]
        t_w = [r["torch"]["wall"] for r in res]
        ratios = [a / b for a, b in zip(ta_w, t_w)]
        cpu = [r["tinyattn"]["cpu"] / r["torch"]["cpu"] for r in res if r["torch"]["cpu"] > 0]
        unit = res[0]["tinyattn"]["unit"]
        mem = ""
        if "mem" in res[0]["tinyattn"]:
            mem = (f"{statistics.median(r['tinyattn']['mem'] for r in res):.0f} / "
                   f"{statistics.median(r['torch']['mem'] for r in res):.0f}")
        tlabel = "1" if threads == 1 else "all"
        out.append(f"| {name:<24} | {tlabel:>3} | {statistics.median(ta_w):>7.4g} {unit:<5} | "
                   f"{statistics.median(t_w):>7.4g} {unit:<5} | {_fmt_ratios(ratios):>22} | "
                   f"{statistics.median(cpu) if cpu else float('nan'):>9.2f} | {mem:>21} |")
    return "\n".join(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few rounds, small sizes (a smoke test)")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7; --quick 2)")
    ap.add_argument("--threads", choices=("1", "all", "both"), default="both")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(ALL)}")
    ap.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    ap.add_argument("--once", nargs=2, metavar=("LIB", "NAME"), help=argparse.SUPPRESS)
    ap.add_argument("--arg", default="", help=argparse.SUPPRESS)
    args, _ = ap.parse_known_args(argv)
    S = QUICK if args.quick else FULL
    if args.worker or args.once:
        threads = 1 if args.threads == "1" else 0
        _set_thread_env(threads)
        if args.worker:
            return worker(args.worker, threads, S)
        return once(args.once[0], args.once[1], threads, S, args.arg)
    if args.rounds is None:
        args.rounds = 2 if args.quick else 7
    names = [n for n in (args.only.split(",") if args.only else ALL) if n]
    bad = [n for n in names if n not in ALL]
    if bad:
        ap.error(f"--only: unknown workload(s) {bad}; choose from {ALL}")
    import importlib.util
    if importlib.util.find_spec("torch") is None:      # (the workers import it, never this process)
        ap.error("run_all: PyTorch is not installed; every row is a ratio against it")
    load0 = _loadavg()
    rows, infos = {}, {}
    configs = {"1": [1], "all": [0], "both": [1, 0]}[args.threads]
    for threads in configs:
        infos[threads] = run_config(threads, names, args.rounds, args.quick, S, rows)
    print(print_table(rows, infos, load0, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
