"""The attention-variant examples (issue 10, item 6) run end to end with --quick, pass their own
check (exit 0, "PASS:"), and write their plot; each runs in a subprocess."""
import pytest

from example_runner import has_matplotlib, run


def check_png(png, out):
    if has_matplotlib():
        assert png.read_bytes().startswith(b"\x89PNG"), out


# script -> the lines its --quick run must print (each example checks its own claim and says PASS)
QUICK = {
    "local_attention.py": ["PASS: local-m aligns output t with source t + 2",
                           "local-p aligns output t with source t + 2"],
    "hierarchical_docs.py": ["PASS: the sentence weights pick the key sentence"],
    "self_attention.py": ["reads the slot whose key matches the query", "PASS:"],
    "hard_vs_soft.py": ["PASS: soft, REINFORCE and Gumbel-softmax attention all find the marked item"],
    "cnn_attention.py": ["PASS: ABCNN-1 classifies", "peaks on the paraphrased word"],
}

# script -> settings too small to learn (tiny data, one epoch, or a vanishing learning rate): the
# check must say FAIL and exit 1, so every example's check can fail (text heatmaps: --plot "")
UNTRAINED = {
    "local_attention.py": ["--samples", 64, "--epochs", 1],
    "hierarchical_docs.py": ["--samples", 32, "--epochs", 1, "--lr", 1e-6],
    "self_attention.py": ["--samples", 64, "--epochs", 1],
    "hard_vs_soft.py": ["--samples", 32, "--epochs", 1, "--lr", 1e-6],
    "cnn_attention.py": ["--samples", 64, "--epochs", 1],
}


@pytest.mark.parametrize("script", sorted(QUICK))
def test_example_quick_passes_its_check(script, tmp_path):
    png = tmp_path / (script[:-3] + ".png")
    code, out = run(script, "--quick", "--plot", png)
    assert code == 0, out
    for line in QUICK[script]:
        assert line in out, out
    check_png(png, out)


@pytest.mark.parametrize("script", sorted(UNTRAINED))
def test_example_fails_loudly_untrained(script):
    code, out = run(script, *UNTRAINED[script], "--plot", "")
    assert code == 1, out
    assert "FAIL:" in out
