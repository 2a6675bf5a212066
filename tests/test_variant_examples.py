"""The attention-variant examples (issue 10, item 6) run end to end with --quick, pass their own
check (exit 0, "PASS:"), and write their plot; each runs in a subprocess."""
import pytest

from example_runner import has_matplotlib, run


def check_png(png, out):
    if has_matplotlib():
        assert png.read_bytes().startswith(b"\x89PNG"), out


def test_local_attention_quick(tmp_path):
    png = tmp_path / "local.png"
    code, out = run("local_attention.py", "--quick", "--plot", png)
    assert code == 0, out
    assert "PASS: local-m aligns output t with source t + 2" in out, out
    assert "local-p aligns output t with source t + 2" in out, out
    check_png(png, out)


def test_local_attention_fails_loudly():
    # One tiny epoch cannot learn the offset: the check must say FAIL and exit 1 (text heatmaps).
    code, out = run("local_attention.py", "--samples", 64, "--epochs", 1, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out


def test_hierarchical_docs_quick(tmp_path):
    png = tmp_path / "han.png"
    code, out = run("hierarchical_docs.py", "--quick", "--plot", png)
    assert code == 0, out
    assert "PASS: the sentence weights pick the key sentence" in out, out
    check_png(png, out)


def test_hierarchical_docs_fails_loudly():
    # No training: near-uniform attention must fail the check (exit 1), text rendering printed.
    code, out = run("hierarchical_docs.py", "--samples", 32, "--epochs", 1, "--lr", 1e-6, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out


def test_self_attention_quick(tmp_path):
    png = tmp_path / "self.png"
    code, out = run("self_attention.py", "--quick", "--plot", png)
    assert code == 0, out
    assert "reads the slot whose key matches the query" in out and "PASS:" in out, out
    check_png(png, out)


def test_self_attention_fails_loudly():
    code, out = run("self_attention.py", "--samples", 64, "--epochs", 1, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out


def test_hard_vs_soft_quick(tmp_path):
    png = tmp_path / "hard.png"
    code, out = run("hard_vs_soft.py", "--quick", "--plot", png)
    assert code == 0, out
    assert "PASS: soft, REINFORCE and Gumbel-softmax attention all find the marked item" in out, out
    check_png(png, out)


def test_hard_vs_soft_fails_loudly():
    code, out = run("hard_vs_soft.py", "--samples", 32, "--epochs", 1, "--lr", 1e-6, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out


def test_cnn_attention_quick(tmp_path):
    png = tmp_path / "abcnn.png"
    code, out = run("cnn_attention.py", "--quick", "--plot", png)
    assert code == 0, out
    assert "PASS: ABCNN-1 classifies" in out and "peaks on the paraphrased word" in out, out
    check_png(png, out)


def test_cnn_attention_fails_loudly():
    code, out = run("cnn_attention.py", "--samples", 64, "--epochs", 1, "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out
