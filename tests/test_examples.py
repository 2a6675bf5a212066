"""The examples run end to end (in a subprocess, with small settings) and report what they should."""
import os
import subprocess
import sys

import pytest

from example_runner import EXAMPLES, ROOT, has_matplotlib, run  # noqa: F401



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


# -- the encoder-decoder examples (tinyattn.seq2seq) --------------------------------------------------
@pytest.mark.parametrize("decoder,beam", [("bahdanau", 1), ("luong", 1), ("legacy", 2)])
def test_seq2seq_dates_quick(tmp_path, decoder, beam):
    # --quick trains far too little to read dates; with the thresholds at 0 the run must get
    # through training, decoding, the alignment check and the heatmap, and exit 0.
    code, out = run("seq2seq_dates.py", "--quick", "--decoder", decoder, "--beam", beam,
                    "--min-exact", 0, "--min-aligned", 0, "--plot", tmp_path / "dates")
    assert code == 0, out
    assert "epoch 1/1" in out and "training took" in out
    assert "held-out exact match:" in out
    for field in ("year", "month", "day"):
        assert f"{field:<5} read from the source {field}:" in out and f"every single {field} token:" in out
    assert "alignment check: year, month and day all read from the right source characters" in out
    assert "largest attention weight on source padding: 0.0e+00" in out
    assert "PASS:" in out
    if beam > 1:
        assert "beam search, width 2" in out
    if has_matplotlib():
        assert (tmp_path / "dates_1.png").read_bytes().startswith(b"\x89PNG")
        assert f"heatmaps written: {tmp_path / 'dates_1.png'}" in out


def test_seq2seq_dates_quick_fails_its_own_checks():
    # One epoch on 1000 examples cannot read dates: both checks must say so and the exit code be 1.
    code, out = run("seq2seq_dates.py", "--quick", "--plot", "")
    assert code == 1, out
    assert "FAIL: exact match" in out
    assert "FAIL: only" in out and "attend to the right fields" in out
    assert "scale:" in out and "| max " in out                        # the text heatmap was printed


def test_seq2seq_dates_data_and_alignment_check():
    import importlib.util
    spec = importlib.util.spec_from_file_location("seq2seq_dates", os.path.join(EXAMPLES, "seq2seq_dates.py"))
    dates = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(dates)
    import datetime
    import numpy as np
    d = datetime.date(2018, 5, 9)
    text, spans = dates.render(d, "{WEEKDAY} {D} {MONTH} {YYYY}")
    assert text == "wednesday 9 may 2018" and dates.iso(d) == "2018-05-09"
    assert {k: text[a:b] for k, (a, b) in spans.items()} == {"day": "9", "month": "may", "year": "2018"}
    text, spans = dates.render(d, "{M}/{D}/{YY}")
    assert text == "5/9/18" and text[slice(*spans["year"])] == "18"
    train, test = dates.split_dates(0)
    assert not set(train) & set(test) and len(train) + len(test) == 36525
    examples = dates.make_examples(test, 200, np.random.default_rng(0))
    for s, t, sp in examples:                                 # every field's span holds its value
        y, m, day = map(int, t.split("-"))
        assert s[slice(*sp["year"])] in (f"{y}", f"{y % 100:02d}")
        ds = s[slice(*sp["day"])].rstrip("stndrh")
        assert int(ds) == day
        ms = s[slice(*sp["month"])].lower()
        assert (ms.isdigit() and int(ms) == m) or dates.MONTHS[m - 1].startswith(ms)
    # the alignment check: attention on each field's middle character passes, shifted attention fails
    S = max(len(s) for s, _, _ in examples)
    al = np.zeros((len(examples), 11, S))
    for i, (_, _, sp) in enumerate(examples):
        for field, (t0, t1) in dates.OUTPUT_FIELDS.items():
            al[i, t0:t1, (sp[field][0] + sp[field][1] - 1) // 2] = 1.0
    spans = [sp for _, _, sp in examples]
    for mode in ("field", "token"):
        ok, _ = dates.field_alignment(al, spans, mode=mode)
        assert all(v.all() for v in ok.values())
    swapped = al.copy()
    swapped[:, 0:4], swapped[:, 8:10] = al[:, 8:10].mean(1, keepdims=True), al[:, 0:2]
    for mode in ("field", "token"):
        ok, _ = dates.field_alignment(swapped, spans, mode=mode)
        assert not ok["year"].any() and not ok["day"].any() and ok["month"].all()
    # the first day token looking one character beside the day (the separator): the field still
    # reads the day, but not every token does; a tolerance of one character forgives it
    stray = al.copy()
    for i, (_, _, sp) in enumerate(examples):
        a, b = sp["day"]
        stray[i, 8] = 0.0
        stray[i, 8, a - 1 if a > 0 else b] = 0.6
    ok, _ = dates.field_alignment(stray, spans, mode="field")
    assert ok["day"].all()
    ok, _ = dates.field_alignment(stray, spans, mode="token")
    assert not ok["day"].any() and ok["year"].all()
    ok, _ = dates.field_alignment(stray, spans, tolerance=1, mode="token")
    assert ok["day"].all()


@pytest.mark.parametrize("task", ["reverse", "sort"])
def test_seq2seq_reverse_quick(tmp_path, task):
    png = tmp_path / "rev.png"
    code, out = run("seq2seq_reverse.py", "--quick", "--task", task, "--min-accuracy", 0,
                    "--min-diagonal", 0, "--plot", png)
    assert code == 0, out
    assert f"task: {task}" in out and "held-out token accuracy" in out and "PASS:" in out
    assert ("outputs attending to the mirrored source position" in out) == (task == "reverse")
    if has_matplotlib():
        assert png.read_bytes().startswith(b"\x89PNG")


def test_seq2seq_reverse_quick_fails_its_own_check():
    code, out = run("seq2seq_reverse.py", "--quick", "--plot", "")
    assert code == 1 and "FAIL: token accuracy" in out, out


def test_keras_encoder_decoder_quick():
    code, out = run("keras_encoder_decoder.py", "--quick", "--min-exact", 0)
    assert code == 0, out
    for name in ("encoder.forward_layer.cell.kernel", "decoder.cell.kernel", "combine.kernel"):
        assert name in out
    assert "held-out exact match (greedy, step by step):" in out
    assert "largest attention on padding: 0.00e+00" in out and "PASS:" in out
    code, out = run("keras_encoder_decoder.py", "--quick")
    assert code == 1 and "FAIL: exact match" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("script", ["seq2seq_dates.py", "seq2seq_reverse.py", "keras_encoder_decoder.py"])
def test_seq2seq_examples_defaults(tmp_path, script):
    args = ["--plot", tmp_path / "p"] if script != "keras_encoder_decoder.py" else []
    code, out = run(script, *args, timeout=1800)


def _losses(out):
    vals = {}
    for key, label in (("unigram", "unigram baseline"), ("bigram", "bigram baseline"), ("gpt", "tiny GPT")):
        line = next(ln for ln in out.splitlines() if ln.strip().startswith(label))
        vals[key] = float(line.split()[2])
    return vals


def test_tiny_gpt_quick(tmp_path):
    """--quick: a 60-step model. Too small to beat the bigram (the script must then say FAIL and
    exit 1), but it learns past the unigram, samples through the KV cache identically to full
    recomputation, and draws the attention maps."""
    png = tmp_path / "attn.png"
    code, out = run("tiny_gpt.py", "--quick", "--plot", png, timeout=600)
    losses = _losses(out)
    assert losses["gpt"] < losses["unigram"], out
    assert "KV cache: greedy decoding of 28 characters identical with and without the cache" in out, out
    assert "sample (60 characters with the KV cache" in out
    passed = losses["gpt"] < losses["bigram"] - 0.2
    assert code == (0 if passed else 1), out
    assert ("PASS:" in out) == passed and ("FAIL:" in out) == (not passed)
    if has_matplotlib():
        written = tmp_path / "attn_layer0.png"
        assert written.read_bytes().startswith(b"\x89PNG")
        assert f"attention maps of layer 0 written to {written}" in out


@pytest.mark.slow
def test_tiny_gpt_defaults(tmp_path):
    code, out = run("tiny_gpt.py", "--plot", tmp_path / "attn.png", timeout=1200)
    assert code == 0, out
    assert "PASS:" in out
