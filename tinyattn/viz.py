"""Looking at attention: a heatmap of a weight matrix and a bar chart of a weight vector.

Both functions use matplotlib when it is installed and fall back to plain text when it is not, so a
script that plots never fails for want of a plotting library:

* ``path`` given and matplotlib importable  -> a PNG is written (Agg canvas, no window, no global
  pyplot state touched) and the path is returned;
* ``path`` is None, matplotlib importable and a display available -> the figure is shown
  (``pyplot.show()``) and None is returned;
* otherwise (no matplotlib, or no path and no display) -> a text rendering is printed and returned.

The text heatmap shades each cell with one of ``" ░▒▓█"`` (or ``" .:-=+*#%@"`` where the terminal
cannot print those), the text bar chart draws ``#`` bars with the values beside them.

Inputs may be NumPy/CuPy arrays, Tensors or nested lists.
"""
import os
import sys

import numpy as np

__all__ = ["plot_attention", "plot_attention_heads", "plot_attention_bars", "ascii_heatmap", "ascii_bars"]

_UNICODE_SHADES = " ░▒▓█"
_ASCII_SHADES = " .:-=+*#%@"


def _to_numpy(a, name):
    data = getattr(a, "data", a)                  # Tensor -> array (ndarray.data is a buffer: skip)
    if isinstance(a, np.ndarray):
        data = a
    if hasattr(data, "get") and not isinstance(data, np.ndarray):   # a CuPy array
        data = data.get()
    arr = np.asarray(data, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"{name}: got an empty array of shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: the values contain NaN or inf")
    return arr


def _as_matrix(weights):
    w = _to_numpy(weights, "plot_attention")
    while w.ndim > 2 and w.shape[0] == 1:         # (1, Tq, Tk), (1, 1, Tq, Tk): one example, one head
        w = w[0]
    if w.ndim == 1:
        w = w[None, :]
    if w.ndim != 2:
        raise ValueError(f"plot_attention: weights must be (Tq, Tk) (leading axes of size 1 are "
                         f"dropped), got shape {w.shape}; pick one example/head, e.g. weights[0, 0]")
    return w


def _as_vector(vector):
    v = _to_numpy(vector, "plot_attention_bars")
    v = np.squeeze(v) if v.ndim > 1 else v
    if v.ndim == 0:
        v = v.reshape(1)
    if v.ndim != 1:
        raise ValueError(f"plot_attention_bars: vector must be 1-D (T,), got shape {v.shape}; "
                         f"average over the other axes first, e.g. weights.mean(axis=0)")
    return v


def _labels(labels, n, name):
    if labels is None:
        return [str(i) for i in range(n)]
    labels = [str(s) for s in labels]
    if len(labels) != n:
        raise ValueError(f"{name}: {len(labels)} labels for {n} positions")
    return labels


def _matplotlib():
    """(Figure, FigureCanvasAgg) or None when matplotlib is not installed."""
    try:
        from matplotlib.figure import Figure
        from matplotlib.backends.backend_agg import FigureCanvasAgg
    except ImportError:
        return None
    return Figure, FigureCanvasAgg


def _has_display():
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _shades():
    enc = getattr(sys.stdout, "encoding", None) or "ascii"
    try:
        _UNICODE_SHADES.encode(enc)
        return _UNICODE_SHADES
    except (UnicodeEncodeError, LookupError):
        return _ASCII_SHADES


def ascii_heatmap(weights, x_labels=None, y_labels=None, title=None, shades=None):
    """A text heatmap of ``weights`` (Tq, Tk): one row per query, two characters per key.

    Cell shade k = round((w − lo) / (hi − lo) · (n − 1)), lo = min(0, min w), hi = max w, n shades.
    Row labels on the left, the row's largest weight on the right, key labels listed below.
    Returns the string (it does not print).
    """
    w = _as_matrix(weights)
    tq, tk = w.shape
    xl = _labels(x_labels, tk, "plot_attention x_labels")
    yl = _labels(y_labels, tq, "plot_attention y_labels")
    shades = shades or _shades()
    lo, hi = min(0.0, float(w.min())), float(w.max())
    span = hi - lo if hi > lo else 1.0
    idx = np.rint((w - lo) / span * (len(shades) - 1)).astype(int)
    ywidth = max(len(s) for s in yl)
    lines = [title] if title else []
    lines.append(" " * ywidth + " +" + "-" * (2 * tk) + "+")
    for i in range(tq):
        cells = "".join(shades[k] * 2 for k in idx[i])
        lines.append(f"{yl[i]:>{ywidth}} |{cells}| max {w[i].max():.3f}")
    lines.append(" " * ywidth + " +" + "-" * (2 * tk) + "+")
    if all(len(s) <= 2 for s in xl):
        lines.append(" " * ywidth + "  " + "".join(f"{s:<2}" for s in xl))
    else:
        lines.append("keys: " + ", ".join(f"{j}={s}" for j, s in enumerate(xl)))
    lines.append(f"scale: '{shades[0]}' = {lo:.3f} ... '{shades[-1]}' = {hi:.3f}")
    return "\n".join(lines)


def ascii_bars(vector, labels=None, title=None, width=40):
    """Text bar chart of a vector (T,): one line per entry, ``#`` × round(width · |v| / max |v|),
    then the value. Returns the string (it does not print)."""
    v = _as_vector(vector)
    labels = _labels(labels, v.size, "plot_attention_bars labels")
    top = float(np.abs(v).max()) or 1.0
    lw = max(len(s) for s in labels)
    lines = [title] if title else []
    for s, x in zip(labels, v):
        n = int(round(width * abs(x) / top))
        lines.append(f"{s:>{lw}} | {('#' * n):<{width}} {x:.4f}")
    return "\n".join(lines)


def plot_attention(weights, x_labels=None, y_labels=None, path=None, title=None, cmap="viridis"):
    """Heatmap of attention weights ``weights`` (Tq, Tk): rows = queries, columns = keys.

    weights: array/Tensor (Tq, Tk), or (1, Tq, Tk) / (1, 1, Tq, Tk) (leading 1-axes are dropped);
    a 1-D (Tk,) vector is drawn as one row. x_labels: Tk key labels; y_labels: Tq query labels.
    With matplotlib and ``path``: saves a PNG there and returns ``path``. Without matplotlib, or
    with neither ``path`` nor a display: prints the text heatmap (:func:`ascii_heatmap`) and returns it.
    """
    w = _as_matrix(weights)
    mpl = _matplotlib()
    if mpl is None or (path is None and not _has_display()):
        text = ascii_heatmap(w, x_labels, y_labels, title)
        print(text)
        return text
    tq, tk = w.shape
    xl = _labels(x_labels, tk, "plot_attention x_labels")
    yl = _labels(y_labels, tq, "plot_attention y_labels")
    if path is None:                             # interactive: let pyplot own the figure
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(1.2 + 0.45 * tk, 1.0 + 0.45 * tq))
        _draw_heatmap(fig, w, xl, yl, title, cmap)
        plt.show()
        return None
    Figure, Canvas = mpl
    fig = Figure(figsize=(max(3.5, 1.6 + 0.5 * tk), max(2.5, 1.3 + 0.45 * tq)))
    Canvas(fig)
    _draw_heatmap(fig, w, xl, yl, title, cmap)
    fig.savefig(path, dpi=110)
    return str(path)


def _draw_heatmap(fig, w, xl, yl, title, cmap):
    tq, tk = w.shape
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(w, cmap=cmap, aspect="auto", vmin=min(0.0, float(w.min())))
    ax.set_xticks(range(tk))
    ax.set_xticklabels(xl, rotation=90 if max(len(s) for s in xl) > 3 else 0)
    ax.set_yticks(range(tq))
    ax.set_yticklabels(yl)
    ax.set_xlabel("keys")
    ax.set_ylabel("queries")
    if tq * tk <= 144:                           # small maps: write the numbers in the cells
        mid = (float(w.min()) + float(w.max())) / 2
        for i in range(tq):
            for j in range(tk):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if w[i, j] > mid else "white")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    if title:
        ax.set_title(title)
    fig.tight_layout()


def plot_attention_bars(vector, path=None, labels=None, title=None, xlabel=None):
    """Bar chart of a vector of attention weights (T,), e.g. the mean attention per time step.

    vector: array/Tensor (T,) (size-1 axes are squeezed); labels: T bar labels (default 0..T−1);
    xlabel: the axis name under the bars (e.g. "time step"). The largest bar is drawn in orange.
    With matplotlib and ``path``: saves a PNG there and returns ``path``. Without matplotlib, or with
    neither ``path`` nor a display: prints the text bars (:func:`ascii_bars`) and returns them.
    """
    v = _as_vector(vector)
    mpl = _matplotlib()
    if mpl is None or (path is None and not _has_display()):
        text = ascii_bars(v, labels, title)
        print(text)
        return text
    labels = _labels(labels, v.size, "plot_attention_bars labels")
    if path is None:
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=(max(4.0, 0.5 * v.size + 1.5), 3.2))
        _draw_bars(fig, v, labels, title, xlabel)
        plt.show()
        return None
    Figure, Canvas = mpl
    fig = Figure(figsize=(max(4.0, 0.5 * v.size + 1.5), 3.2))
    Canvas(fig)
    _draw_bars(fig, v, labels, title, xlabel)
    fig.savefig(path, dpi=110)
    return str(path)


def _draw_bars(fig, v, labels, title, xlabel):
    ax = fig.add_subplot(1, 1, 1)
    top = int(np.argmax(v))
    colors = ["tab:orange" if i == top else "tab:blue" for i in range(v.size)]
    ax.bar(range(v.size), v, color=colors)
    ax.set_xticks(range(v.size))
    ax.set_xticklabels(labels)
    ax.set_ylabel("attention")
    if xlabel:
        ax.set_xlabel(xlabel)
    for i, x in enumerate(v):
        ax.text(i, x, f"{x:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_ylim(min(0.0, float(v.min()) * 1.1), float(v.max()) * 1.15 if v.max() > 0 else 1.0)
    if title:
        ax.set_title(title)
    fig.tight_layout()


def plot_attention_heads(weights, x_labels=None, y_labels=None, path=None, title=None, head_titles=None,
                         cmap="viridis", colorbar_label="attention weight"):
    """Several attention maps side by side, e.g. the heads of one layer on one sample.

    weights: (n, Tq, Tk) array/Tensor (a leading 1-axis is dropped: (1, n, Tq, Tk) works); x_labels:
    Tk key labels (e.g. the characters), y_labels: Tq query labels; head_titles: n panel titles
    (default "head 0", ...). All panels share one colour scale and one labelled colour bar. Falls
    back to one text heatmap per panel, like :func:`plot_attention`.
    """
    w = _to_numpy(weights, "plot_attention_heads weights").astype(np.float64)
    while w.ndim > 3 and w.shape[0] == 1:
        w = w[0]
    if w.ndim != 3:
        raise ValueError(f"plot_attention_heads: weights must be (n, Tq, Tk), got shape {w.shape}")
    n, tq, tk = w.shape
    xl = _labels(x_labels, tk, "plot_attention_heads x_labels")
    yl = _labels(y_labels, tq, "plot_attention_heads y_labels")
    ht = _labels(head_titles, n, "plot_attention_heads head_titles") if head_titles is not None else \
        [f"head {i}" for i in range(n)]
    mpl = _matplotlib()
    if mpl is None or (path is None and not _has_display()):
        text = "\n\n".join(ascii_heatmap(w[i], xl, yl, f"{title + ': ' if title else ''}{ht[i]}")
                            for i in range(n))
        print(text)
        return text
    size = (1.5 + n * (0.8 + 0.16 * tk), 1.6 + 0.17 * tq)
    if path is None:
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=size)
    else:
        Figure, Canvas = mpl
        fig = Figure(figsize=size)
        Canvas(fig)
    axes = fig.subplots(1, n, squeeze=False)[0]
    vmax = float(w.max())
    im = None
    for i, ax in enumerate(axes):
        im = ax.imshow(w[i], cmap=cmap, aspect="equal", vmin=0.0, vmax=vmax)
        ax.set_xticks(range(tk))
        ax.set_xticklabels(xl, fontsize=7, family="monospace")
        ax.set_yticks(range(tq))
        ax.set_yticklabels(yl if i == 0 else [], fontsize=7, family="monospace")
        ax.set_xlabel("keys (attended to)")
        if i == 0:
            ax.set_ylabel("queries")
        ax.set_title(ht[i], fontsize=9)
    cb = fig.colorbar(im, ax=list(axes), fraction=0.02, pad=0.02)
    cb.set_label(colorbar_label)
    if title:
        fig.suptitle(title)
    if path is None:
        import matplotlib.pyplot as plt
        plt.show()
        return None
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return str(path)
