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


def test_device_arrays_are_read_explicitly(backend):
    """A GPU Tensor or a raw device (CuPy) array plots as its NumPy copy."""
    w = ta.tensor(np.array([[0.25, 0.75], [1.0, 0.0]], np.float32))
    want = viz.ascii_heatmap(w.numpy())
    assert viz.ascii_heatmap(w) == want and viz.ascii_heatmap(w.data) == want
    assert viz.ascii_bars(w[0]) == viz.ascii_bars(w.numpy()[0])


def test_bad_inputs():
    with pytest.raises(ValueError, match="plot_attention: weights must be \\(Tq, Tk\\)"):
        viz.plot_attention(np.ones((2, 3, 4)))
    with pytest.raises(ValueError, match="3 labels for 4 positions"):
        viz.plot_attention_bars(np.ones(4), labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="NaN"):
        viz.plot_attention_bars(np.array([np.nan, 1.0]))
    with pytest.raises(ValueError, match="plot_attention_bars: vector must be 1-D"):
        viz.plot_attention_bars(np.ones((2, 3, 4)))     # (N, T) is samples (error bars); 3-D is refused


# -- plots a reader can read (issue 10) -----------------------------------------------------------
SVG_MARK = b"<svg"


def _mpl_texts(monkeypatch):
    """Record the text matplotlib draws (labels, titles, tick labels) by wrapping Figure.savefig."""
    from matplotlib.figure import Figure
    seen = {}
    orig = Figure.savefig

    def savefig(self, *a, **k):
        texts = []
        for ax in self.axes:
            texts += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
            texts += [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
            leg = ax.get_legend()
            if leg is not None:
                texts += [t.get_text() for t in leg.get_texts()]
        if self._suptitle is not None:
            texts.append(self._suptitle.get_text())
        seen["texts"] = texts
        seen["axes"] = len(self.axes)
        return orig(self, *a, **k)
    monkeypatch.setattr(Figure, "savefig", savefig)
    return seen


def test_heatmap_labels_colorbar_and_svg(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = _mpl_texts(monkeypatch)
    w = np.random.default_rng(0).dirichlet(np.ones(4), size=3)
    path = tmp_path / "heat.svg"
    got = viz.plot_attention(w, x_labels=["the", "cat", "sat", "."], y_labels=["le", "chat", "<eos>"],
                             x_label="source token", y_label="target token", title="alignment",
                             colorbar_label="weight α", path=path)
    assert got == str(path) and path.read_bytes().lstrip().startswith((b"<?xml", SVG_MARK))
    t = seen["texts"]
    assert {"source token", "target token", "alignment", "weight α", "cat", "<eos>"} <= set(t)
    assert seen["axes"] == 2                                        # the heatmap and its colour bar
    with pytest.raises(ValueError, match="use a .png, .svg or .pdf path"):
        viz.plot_attention(w, path=tmp_path / "heat.jpg")


def test_plot_heads_grid_png_and_svg(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = _mpl_texts(monkeypatch)
    w = np.random.default_rng(1).dirichlet(np.ones(5), size=(2, 3, 4))   # 2 layers x 3 heads, (4, 5)
    png = tmp_path / "heads.png"
    assert viz.plot_heads(ta.tensor(w), path=png, x_labels=list("abcde"), title="all heads") == str(png)
    assert png.read_bytes().startswith(PNG_MAGIC)
    assert seen["axes"] == 2 * 3 + 1                                # six panels, one shared colour bar
    assert {"layer 0, head 0", "layer 1, head 2", "all heads", "attention weight", "keys", "queries", "e"} <= set(seen["texts"])
    svg = tmp_path / "heads.svg"
    viz.plot_heads(w[0], path=svg, titles=["h0", "h1", "h2"])     # (H, Tq, Tk): one row
    assert SVG_MARK in svg.read_bytes()[:400] and {"h0", "h2"} <= set(seen["texts"])
    with pytest.raises(ValueError, match="2 titles for 1 x 3"):
        viz.plot_heads(w[0], path=svg, titles=["a", "b"])
    with pytest.raises(ValueError, match=r"plot_heads: weights must be \(rows, cols, Tq, Tk\)"):
        viz.plot_heads(np.ones((4, 5)))


def test_plot_heads_ascii_without_matplotlib(no_matplotlib, capsys):
    w = np.zeros((2, 3, 3))
    w[0] = np.eye(3)
    w[1] = np.eye(3)[::-1]
    text = viz.plot_heads(w, titles=["diag", "anti"])
    assert text.splitlines()[0] == "diag" and "\nanti\n" in text
    assert text.count("max 1.000") == 6 and text in capsys.readouterr().out


def test_bars_mark_expected_and_error_bars(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure
    seen = _mpl_texts(monkeypatch)
    bars = {}
    orig_bar = None
    import matplotlib.axes
    orig_bar = matplotlib.axes.Axes.bar

    def bar(self, *a, **k):
        res = orig_bar(self, *a, **k)
        bars["yerr"], bars["patches"] = k.get("yerr"), list(res)
        return res
    monkeypatch.setattr(matplotlib.axes.Axes, "bar", bar)
    samples = np.random.default_rng(2).dirichlet([1, 1, 8, 1], size=50)   # (N=50, T=4)
    path = tmp_path / "bars.png"
    viz.plot_attention_bars(samples, path=path, expected=1, xlabel="time step", title="t")
    assert path.read_bytes().startswith(PNG_MAGIC)
    np.testing.assert_allclose(bars["yerr"], samples.std(axis=0))
    p = bars["patches"]
    np.testing.assert_allclose([b.get_height() for b in p], samples.mean(axis=0))
    assert p[1].get_hatch() == "//" and p[2].get_hatch() in (None, "")      # expected step 1 marked
    assert p[2].get_facecolor() != p[1].get_facecolor()                     # the largest (2) in orange
    assert {"expected", "largest", "time step", "attention weight"} <= set(seen["texts"])
    svg = tmp_path / "bars.svg"
    viz.plot_attention_bars(samples.mean(axis=0), path=svg, expected=2)
    assert SVG_MARK in svg.read_bytes()[:400]
    with pytest.raises(ValueError, match="expected must be a step index"):
        viz.plot_attention_bars(samples, path=path, expected=4)


def test_bars_ascii_marks_expected_and_std(no_matplotlib, capsys):
    samples = np.array([[0.1, 0.2, 0.7], [0.3, 0.2, 0.5]])
    text = viz.plot_attention_bars(samples, labels=["a", "b", "c"], expected=0)
    lines = text.splitlines()
    assert lines[0].startswith("a |") and lines[0].endswith("0.2000 ± 0.1000  <- expected")
    assert lines[2].endswith("0.6000 ± 0.1000  <- largest")
    assert text in capsys.readouterr().out


def test_heatmap_matplotlib_style_label_aliases(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    seen = _mpl_texts(monkeypatch)
    w = np.random.default_rng(1).dirichlet(np.ones(5), size=3)
    path = viz.plot_attention(w, x_labels=list("abcde"), path=tmp_path / "h.png", xlabel="source character",
                              ylabel="output token", colorbar_label="α", title="dates")
    assert (tmp_path / "h.png").read_bytes().startswith(PNG_MAGIC) and path == str(tmp_path / "h.png")
    assert {"source character", "output token", "α", "dates", "c"} <= set(seen["texts"])
