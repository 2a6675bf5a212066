"""The examples run end to end (in a subprocess, with small settings) and report what they should."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run(script, *args, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=ROOT)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    # On ``--backend=strict`` the example runs on the strict CuPy stand-in (tests/strict_run.py).
    runner = [os.path.join(ROOT, "tests", "strict_run.py")] if _on_strict() else []
    proc = subprocess.run([sys.executable, *runner, os.path.join(EXAMPLES, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def _on_strict():
    import strict_xp
    import tinyattn as ta
    return ta.backend.default_xp() is strict_xp


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False


def test_attention_focus_small(tmp_path):
    png = tmp_path / "focus.png"
    code, out = run("attention_focus.py", "--samples", 5000, "--epochs", 2, "--verbose", 2, "--plot", png)
    assert code == 0, out
    assert "Epoch 2/2" in out
    assert "test accuracy on 300 fresh samples" in out
    assert "step 2:" in out and "<- the label" in out
    assert "PASS: time step 2 gets the most attention" in out
    if has_matplotlib():
        assert png.read_bytes().startswith(b"\x89PNG")
        assert f"bar chart written to {png}" in out


def test_attention_focus_fails_loudly_when_the_check_fails():
    # An impossible margin: the script must say FAIL and exit non-zero (no PNG: text bars instead).
    code, out = run("attention_focus.py", "--samples", 300, "--epochs", 1, "--verbose", 0,
                    "--min-ratio", 1e6, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out
    assert "| " in out and "#" in out                      # the text bar chart was printed


@pytest.mark.slow
def test_attention_focus_defaults(tmp_path):
    code, out = run("attention_focus.py", "--plot", tmp_path / "focus.png", timeout=600)
    assert code == 0, out
    assert "PASS: time step 2 gets the most attention" in out


@pytest.mark.parametrize("score", ["luong", "bahdanau"])
def test_lstm_attention_regression_save_reload(tmp_path, score):
    ckpt = tmp_path / "model.npz"
    code, out = run("lstm_attention_regression.py", "--samples", 1000, "--epochs", 8, "--lstm-units", 32,
                    "--attention-units", 8, "--score", score, "--verbose", 2, "--checkpoint", ckpt)
    assert code == 0, out
    assert "Epoch 8/8" in out
    assert "reloaded model: identical predictions on 500 samples" in out
    assert "attention peaks at the marked step for" in out
    assert "Success." in out
    assert ckpt.exists()
    names = ["luong_w", "attention_vector"] if score == "luong" else ["w1", "w2", "v ", "attention_vector"]
    assert all(f"attention/{n}" in out for n in names), out


def test_lstm_attention_regression_reports_no_learning():
    # One tiny epoch cannot beat the "predict the mean" baseline: the script must say so and exit 1
    # (after checking save/reload, which holds for any weights).
    code, out = run("lstm_attention_regression.py", "--samples", 300, "--epochs", 1, "--lstm-units", 8,
                    "--attention-units", 4, "--score", "bahdanau", "--verbose", 0)
    assert "reloaded model: identical predictions" in out, out
    assert code == 1 and "FAIL: the model did not learn" in out, out


def test_keras_style_attention_shapes(tmp_path):
    png = tmp_path / "heat.png"
    code, out = run("keras_style_attention.py", "--plot", png)
    assert code == 0, out
    assert "encoder_out                 (50, 80, 30)" in out
    assert "decoder_out                 (50, 1, 30)" in out
    assert "Attention()([decoder_out, encoder_out]) -> (50, 1, 30)" in out
    assert "bilinear_weights            (50, 1, 80)" in out
    assert "OK: all shapes as expected" in out
    if has_matplotlib():
        assert png.read_bytes().startswith(b"\x89PNG")


def test_keras_style_attention_text_heatmap():
    code, out = run("keras_style_attention.py", "--batch", 4, "--source-len", 9, "--plot", "")
    assert code == 0, out
    assert "encoder_out                 (4, 9, 30)" in out
    assert "scale:" in out and "t4 |" in out                # the text heatmap, 5 decoder rows


# -- derive-and-check walkthroughs (issue 10): every row exact or close, the script exits 0 ----------
DERIVE = {"derive_softmax.py": 19, "derive_attention.py": 13, "derive_multihead.py": 31,
          "derive_additive.py": 22, "derive_lstm.py": 44}


@pytest.mark.parametrize("script", sorted(DERIVE))
def test_derive_walkthrough(script):
    import re
    code, out = run(script)
    assert code == 0, out
    rows = re.findall(r"^(.{30}) (exact|close|WRONG) +(\S+)  \(", out, flags=re.M)
    assert len(rows) == DERIVE[script], out             # the table lists every intermediate
    assert all(status in ("exact", "close") for _, status, _ in rows), out
    assert f"{DERIVE[script]} rows: " in out and ", 0 WRONG" in out
    assert "gradcheck passed" in out and "OK: every hand-derived gradient matches the engine" in out


def test_derive_walkthroughs_are_percent_notebooks():
    for script in DERIVE:
        text = open(os.path.join(EXAMPLES, script)).read()
        assert text.count("# %% [markdown]") >= 3 and text.count("\n# %%\n") >= 3, script


# -- the bug gallery (issue 10): every classic attention bug is caught, and every check can fail -----
def test_attention_bugs_all_caught():
    code, out = run("attention_bugs.py")
    assert code == 0, out
    assert out.count("wrong variant: CAUGHT") == 7 and "NOT caught" not in out, out
    assert out.count("right variant: passes") == 7, out
    assert "OK: all 7 bugs caught" in out


def _load_bugs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("attention_bugs", os.path.join(EXAMPLES, "attention_bugs.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("n", range(1, 8))
def test_attention_bugs_disarmed_bug_is_not_caught(n, capsys):
    # Replacing bug n's wrong variant by the right one must make its check say "NOT caught" and the
    # script fail: each of the seven checks can fail.
    mod = _load_bugs()
    assert mod.main(["--disarm", str(n)]) == 1
    out = capsys.readouterr().out
    assert out.count("NOT caught") == 1 and out.count("CAUGHT") == 6, out
    block = out.split(f"[{n}] ")[1]
    assert "wrong variant: NOT caught" in block.split("\n[")[0]


# -- every example opens as a notebook (jupytext "percent" format) --------------------------------
ALL_EXAMPLES = sorted(f for f in os.listdir(EXAMPLES) if f.endswith(".py"))


@pytest.mark.parametrize("script", ALL_EXAMPLES)
def test_example_is_a_percent_notebook(script):
    text = open(os.path.join(EXAMPLES, script)).read()
    assert "\n# %%\n" in text and "# %% [markdown]" in text, f"{script}: add # %% cells and a markdown cell"
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(os.path.join(EXAMPLES, script))
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("markdown") >= 1 and kinds.count("code") >= 2, (script, kinds)


def test_derive_softmax_runs_cell_by_cell_as_a_notebook(tmp_path):
    # The code cells, run in order in one namespace without __file__ (as a kernel would, from examples/).
    jupytext = pytest.importorskip("jupytext")
    nb = jupytext.read(os.path.join(EXAMPLES, "derive_softmax.py"))
    code = "\n\n".join(c.source for c in nb.cells if c.cell_type == "code")
    cells = tmp_path / "cells.py"
    cells.write_text(code)
    run_cells = f"ns = {{'__name__': '__main__'}}; exec(compile(open({str(cells)!r}).read(), 'cells', 'exec'), ns)"
    env = dict(os.environ, MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    proc = subprocess.run([sys.executable, "-c", run_cells], capture_output=True, text=True, timeout=300,
                          env=env, cwd=EXAMPLES)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "19 rows: " in proc.stdout and ", 0 WRONG" in proc.stdout


def test_derive_attention_draws_its_graph(tmp_path):
    png = tmp_path / "graph.png"
    code, out = run("derive_attention.py", png)
    assert code == 0, out
    assert "ops in the graph, inputs first: SwapAxes -> MatMul -> Mul -> Where -> Softmax -> MatMul -> Mul -> Sum" in out
    if has_matplotlib() or __import__("shutil").which("dot"):
        assert png.read_bytes().startswith(b"\x89PNG") and f"graph written to {png}" in out
