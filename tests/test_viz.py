"""tinyattn.viz: PNGs through matplotlib, and the text fallback when matplotlib is missing."""
import io
import sys

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import viz

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def no_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


@pytest.fixture
def headless(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(sys, "platform", "linux")


def test_heatmap_png(tmp_path):
    pytest.importorskip("matplotlib")
    w = np.random.default_rng(0).dirichlet(np.ones(6), size=4)
    path = tmp_path / "heat.png"
    got = viz.plot_attention(ta.tensor(w[None]), x_labels=list("abcdef"), y_labels=["q0", "q1", "q2", "q3"],
                             path=path, title="attention")
    assert got == str(path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 2000


def test_bars_png(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "bars.png"
    got = viz.plot_attention_bars(np.array([0.1, 0.6, 0.3]), path=str(path), title="mean attention")
    assert got == str(path)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_heatmap_ascii_without_matplotlib(no_matplotlib, tmp_path, capsys):
    with pytest.raises(ImportError):
        import matplotlib  # noqa: F401
    path = tmp_path / "never.png"
    text = viz.plot_attention(np.eye(3), y_labels=["a", "b", "c"], path=path, title="eye")
    assert not path.exists()
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    assert lines[0] == "eye"
    rows = [ln for ln in lines if ln.lstrip()[:1] in "abc" and "|" in ln]
    assert len(rows) == 3
    shades = viz._shades()
    full, blank = shades[-1] * 2, shades[0] * 2
    for i, row in enumerate(rows):
        cells = row.split("|")[1]
        assert [cells[2 * j:2 * j + 2] for j in range(3)] == [full if j == i else blank for j in range(3)]
        assert row.endswith("max 1.000")


def test_bars_ascii_without_matplotlib(no_matplotlib, capsys):
    text = viz.plot_attention_bars(ta.tensor(np.array([0.1, 0.5, 0.4])), labels=["x", "y", "z"])
    assert capsys.readouterr().out.strip() == text.strip()
    lines = text.splitlines()
    assert [ln.count("#") for ln in lines] == [8, 40, 32]
    assert lines[1].startswith("y |") and lines[1].endswith("0.5000")


def test_no_path_and_no_display_prints_text(headless, capsys):
    text = viz.plot_attention_bars([0.25, 0.75])
    assert "0.7500" in text and text in capsys.readouterr().out
    text = viz.plot_attention([[0.2, 0.8]])
    assert "max 0.800" in text


def test_ascii_shades_on_a_plain_ascii_terminal(monkeypatch):
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert viz._shades() == viz._ASCII_SHADES
    text = viz.ascii_heatmap(np.array([[0.0, 1.0]]))
    text.encode("ascii")                       # printable on that terminal


def test_bad_inputs():
    with pytest.raises(ValueError, match="plot_attention: weights must be \\(Tq, Tk\\)"):
        viz.plot_attention(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="3 labels for 4 positions"):
        viz.plot_attention_bars(np.ones(4), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_attention_bars(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="plot_attention_bars: vector must be 1-D"):
        viz.plot_attention_bars(np.ones((2, 3)))


def test_attention_heads_png_and_text(tmp_path, no_matplotlib, capsys):
    """plot_attention_heads: one text heatmap per head without matplotlib; errors name the function."""
    w = np.random.default_rng(0).random((1, 3, 4, 5))
    text = viz.plot_attention_heads(w, list("abcde"), list("wxyz"), path=tmp_path / "h.png", title="t")
    assert text.count("head ") == 3 and "t: head 0" in text
    with pytest.raises(ValueError, match="plot_attention_heads"):
        viz.plot_attention_heads(w[0, 0], list("abcde"), list("wxyz"))
    with pytest.raises(ValueError, match="x_labels"):
        viz.plot_attention_heads(w, list("abc"), list("wxyz"))


def test_attention_heads_png(tmp_path):
    pytest.importorskip("matplotlib")
    w = np.random.default_rng(1).random((2, 4, 4))
    path = viz.plot_attention_heads(w, list("abcd"), list("abcd"), path=tmp_path / "heads.png",
                                    title="two heads", head_titles=["h0", "h1"])
    assert path == str(tmp_path / "heads.png")
    assert (tmp_path / "heads.png").read_bytes().startswith(PNG_MAGIC)
