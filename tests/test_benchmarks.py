"""benchmarks/run_all.py must keep running: its --quick mode (small sizes, one round, one thread) prints a
row with a ratio for every workload. Skipped when PyTorch is absent (every row is a ratio against it).

The default run checks a few rows that exercise every mechanism (the warm worker pair, fresh processes,
peak memory); the slow test (``-m slow``, ~45 s on a busy 2-core machine) runs every workload."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


ALL = ["tiny_ops", "wide_graph", "lstm", "gru", "bilstm", "mha_warm", "bahdanau", "decoder20", "transformer",
       "mha_cold", "attn T=256", "demo (end to end)"]


def _check(only, names):
    cmd = [sys.executable, os.path.join(ROOT, "benchmarks", "run_all.py"), "--quick", "--rounds", "1", "--threads", "1"]
    r = subprocess.run(cmd + (["--only", only] if only else []), capture_output=True, text=True, cwd=ROOT,
                       timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout
    assert "load average" in out and "NumPy" in out and "host variables" in out
    assert re.search(r"# threads=1: tinyattn pool 1, NumPy's BLAS (1|None);", out), out   # None: not controllable
    for name in names:
        row = next((line for line in out.splitlines() if line.startswith(f"| {name}")), None)
        assert row is not None, f"no row for {name}:\n{out}"
        ratio = re.search(r"(\d+\.\d+) – (\d+\.\d+) – (\d+\.\d+)", row)
        assert ratio and all(float(v) > 0 for v in ratio.groups()), row
    if "attn T=256" in names:
        mem = next(line for line in out.splitlines() if line.startswith("| attn T=256"))
        assert re.search(r"\d+ / \d+ \|$", mem), mem            # peak memory of both libraries


def test_run_all_quick_core_rows():
    _check("tiny_ops,transformer,mha_cold,attn_T", ["tiny_ops", "transformer", "mha_cold", "attn T=256"])


@pytest.mark.slow
def test_run_all_quick_prints_every_row():
    _check("", ALL)
