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
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


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
