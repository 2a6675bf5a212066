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

from . import backend
from .autograd import array_of

__all__ = ["plot_attention", "plot_heads", "plot_attention_bars", "ascii_heatmap", "ascii_bars", "draw_graph",
           "graph_to_dot"]

_UNICODE_SHADES = " ░▒▓█"
_ASCII_SHADES = " .:-=+*#%@"


def _to_numpy(a, name):
    arr = backend.as_numpy(array_of(a)).astype(np.float64)   # Tensor, NumPy, CuPy or list: explicit copy
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
        raise ValueError(f"plot_attention_bars: vector must be 1-D (T,) or (N, T) samples, got shape "
                         f"{v.shape}; average over the other axes first, e.g. weights.mean(axis=0)")
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


def ascii_bars(vector, labels=None, title=None, width=40, expected=None, std=None):
    """Text bar chart of a vector (T,): one line per entry, ``#`` × round(width · |v| / max |v|),
    then the value (± ``std`` when given), ``<- expected`` on the expected entry and ``<- largest``
    on the largest. Returns the string (it does not print)."""
    v = _as_vector(vector)
    labels = _labels(labels, v.size, "plot_attention_bars labels")
    top = float(np.abs(v).max()) or 1.0
    lw = max(len(s) for s in labels)
    big = int(np.argmax(v))
    lines = [title] if title else []
    for i, (s, x) in enumerate(zip(labels, v)):
        n = int(round(width * abs(x) / top))
        pm = f" ± {std[i]:.4f}" if std is not None else ""
        marks = [m for m, on in (("expected", expected is not None and i == expected), ("largest", i == big)) if on]
        mark = f"  <- {', '.join(marks)}" if marks and (expected is not None or std is not None) else ""
        lines.append(f"{s:>{lw}} | {('#' * n):<{width}} {x:.4f}{pm}{mark}")
    return "\n".join(lines)


def _format(path, name):
    """The image format from ``path``'s suffix: png (also when there is none), svg or pdf."""
    fmt = os.path.splitext(str(path))[1].lstrip(".").lower() or "png"
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"{name}: cannot write {path!r}: use a .png, .svg or .pdf path")
    return fmt


def _save_or_show(draw, figsize, path, name):
    """Draw with ``draw(fig)`` into a new figure; save to ``path`` (format by suffix) or show it."""
    if path is None:                             # interactive: let pyplot own the figure
        import matplotlib.pyplot as plt
        fig = plt.figure(figsize=figsize)
        draw(fig)
        plt.show()
        return None
    fmt = _format(path, name)
    Figure, Canvas = _matplotlib()
    fig = Figure(figsize=figsize)
    Canvas(fig)
    draw(fig)
    fig.savefig(path, format=fmt, dpi=110)
    return str(path)


def plot_attention(weights, x_labels=None, y_labels=None, path=None, title=None, cmap="viridis",
                   x_label="keys", y_label="queries", colorbar_label="attention weight", annotate=None,
                   xlabel=None, ylabel=None):
    """Heatmap of attention weights ``weights`` (Tq, Tk): rows = queries, columns = keys.

    weights: array/Tensor (Tq, Tk), or (1, Tq, Tk) / (1, 1, Tq, Tk) (leading 1-axes are dropped);
    a 1-D (Tk,) vector is drawn as one row. x_labels: Tk key labels (tokens) for the ticks;
    y_labels: Tq query labels. x_label / y_label: the axis names; colorbar_label: the colour bar's
    name; annotate: write each weight in its cell (default: when there are at most 144 cells).
    ``xlabel`` / ``ylabel`` are accepted as Matplotlib-style aliases of ``x_label`` / ``y_label``.
    With matplotlib and ``path``: saves an image there — PNG, SVG or PDF by the path's suffix — and
    returns ``path``. Without matplotlib, or with neither ``path`` nor a display: prints the text
    heatmap (:func:`ascii_heatmap`) and returns it.
    """
    x_label = x_label if xlabel is None else xlabel
    y_label = y_label if ylabel is None else ylabel
    w = _as_matrix(weights)
    if _matplotlib() is None or (path is None and not _has_display()):
        text = ascii_heatmap(w, x_labels, y_labels, title)
        print(text)
        return text
    tq, tk = w.shape
    xl = _labels(x_labels, tk, "plot_attention x_labels")
    yl = _labels(y_labels, tq, "plot_attention y_labels")
    if path is not None:
        _format(path, "plot_attention")

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        im = _heatmap(ax, w, xl, yl, cmap, min(0.0, float(w.min())), float(w.max()), annotate)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if title:
            ax.set_title(title)
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        cb.set_label(colorbar_label)
        fig.tight_layout()
    size = (max(3.8, 2.0 + 0.5 * tk), max(2.8, 1.5 + 0.45 * tq))
    return _save_or_show(draw, size, path, "plot_attention")


def _heatmap(ax, w, xl, yl, cmap, vmin, vmax, annotate):
    tq, tk = w.shape
    im = ax.imshow(w, cmap=cmap, aspect="auto", vmin=vmin, vmax=vmax)
    ax.set_xticks(range(tk))
    ax.set_xticklabels(xl, rotation=90 if max(len(s) for s in xl) > 3 else 0)
    ax.set_yticks(range(tq))
    ax.set_yticklabels(yl)
    if annotate if annotate is not None else tq * tk <= 144:
        mid = (vmin + vmax) / 2
        for i in range(tq):
            for j in range(tk):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if w[i, j] > mid else "white")
    return im


def plot_heads(weights, path=None, x_labels=None, y_labels=None, titles=None, title=None,
               x_label="keys", y_label="queries", cmap="viridis", colorbar_label="attention weight",
               annotate=False):
    """A grid of attention heatmaps (d2l's ``show_heatmaps``): one panel per head (and layer).

    weights: (rows, cols, Tq, Tk) — e.g. (layers, heads, Tq, Tk) — or (heads, Tq, Tk) for one row
    (a (1, H, Tq, Tk) batch of one from ``MultiHeadAttention(..., return_attention_scores=True)``
    is one row of H heads). All panels share one colour scale and one labelled colour bar.
    titles: one title per panel (a flat list of rows·cols, or a list of rows lists); default
    "head j" (and "layer i, head j" with several rows). x_labels / y_labels: token tick labels,
    shared by the panels; x_label / y_label: the axis names (on the bottom row / left column).
    title: a title over the grid. With matplotlib and ``path``: an image (PNG, SVG or PDF by the
    suffix) and ``path`` is returned; otherwise the text heatmaps are printed and returned.
    """
    w = _to_numpy(weights, "plot_heads")
    if w.ndim == 3:
        w = w[None]
    if w.ndim != 4:
        raise ValueError(f"plot_heads: weights must be (rows, cols, Tq, Tk) or (heads, Tq, Tk), got "
                         f"shape {w.shape}; pick one example first, e.g. scores[0]")
    R, C, tq, tk = w.shape
    xl = _labels(x_labels, tk, "plot_heads x_labels")
    yl = _labels(y_labels, tq, "plot_heads y_labels")
    if titles is None:
        names = [[(f"layer {i}, head {j}" if R > 1 else f"head {j}") for j in range(C)] for i in range(R)]
    else:
        flat = [t for row in titles for t in row] if titles and isinstance(titles[0], (list, tuple)) else list(titles)
        if len(flat) != R * C:
            raise ValueError(f"plot_heads: {len(flat)} titles for {R} x {C} = {R * C} panels")
        names = [[str(flat[i * C + j]) for j in range(C)] for i in range(R)]
    if _matplotlib() is None or (path is None and not _has_display()):
        parts = [title] if title else []
        for i in range(R):
            for j in range(C):
                parts.append(ascii_heatmap(w[i, j], xl, yl, names[i][j]))
        text = "\n\n".join(parts)
        print(text)
        return text
    if path is not None:
        _format(path, "plot_heads")
    vmin, vmax = min(0.0, float(w.min())), float(w.max())

    def draw(fig):
        axes = fig.subplots(R, C, squeeze=False, sharex=True, sharey=True)
        im = None
        for i in range(R):
            for j in range(C):
                ax = axes[i][j]
                im = _heatmap(ax, w[i, j], xl, yl, cmap, vmin, vmax, annotate)
                ax.set_title(names[i][j], fontsize=9)
                if i == R - 1:
                    ax.set_xlabel(x_label)
                if j == 0:
                    ax.set_ylabel(y_label)
        if title:
            fig.suptitle(title)
        fig.tight_layout(rect=(0, 0, 0.9, 1))
        cax = fig.add_axes([0.91, 0.15, 0.02, 0.7])
        cb = fig.colorbar(im, cax=cax)
        cb.set_label(colorbar_label)
    size = (1.2 + C * max(2.0, 0.35 * tk + 1.0), 0.6 + R * max(1.8, 0.3 * tq + 1.0))
    return _save_or_show(draw, size, path, "plot_heads")


def plot_attention_bars(vector, path=None, labels=None, title=None, xlabel=None, expected=None,
                        ylabel="attention weight", x_label=None):
    """Bar chart of attention weights per step, e.g. the mean attention per time step.

    vector: (T,) — or (N, T), N samples: the bars are the mean over samples and the error bars
    their standard deviation (the spread of the weights, not the standard error of the mean).
    Size-1 axes are squeezed. labels: T bar labels (default 0..T−1); xlabel (or x_label): the axis
    name under the bars (e.g. "time step"); ylabel: the axis name beside them.
    expected: the index of the step that *should* get the attention: its bar is outlined and
    hatched and labelled "expected", whatever the weights; the largest bar is drawn in orange, so
    a model that attends elsewhere is visible at a glance.
    With matplotlib and ``path``: saves an image (PNG, SVG or PDF by the suffix) and returns
    ``path``. Without matplotlib, or with neither ``path`` nor a display: prints the text bars
    (:func:`ascii_bars`) and returns them.
    """
    arr = _to_numpy(vector, "plot_attention_bars")
    std = None
    if arr.ndim == 2 and 1 not in arr.shape:
        v, std = arr.mean(axis=0), arr.std(axis=0)
    else:
        v = _as_vector(arr)
    if expected is not None and not (isinstance(expected, (int, np.integer)) and 0 <= expected < v.size):
        raise ValueError(f"plot_attention_bars: expected must be a step index in [0, {v.size}), got {expected!r}")
    xlabel = x_label if x_label is not None else xlabel
    if _matplotlib() is None or (path is None and not _has_display()):
        text = ascii_bars(v, labels, title, expected=expected, std=std)
        print(text)
        return text
    labels = _labels(labels, v.size, "plot_attention_bars labels")
    if path is not None:
        _format(path, "plot_attention_bars")

    def draw(fig):
        ax = fig.add_subplot(1, 1, 1)
        top = int(np.argmax(v))
        colors = ["tab:orange" if i == top else "tab:blue" for i in range(v.size)]
        bars = ax.bar(range(v.size), v, color=colors, yerr=std, capsize=3 if std is not None else 0,
                      error_kw=dict(ecolor="0.25", lw=1))
        handles = [bars[top]]
        names = ["largest"]
        if expected is not None:
            b = bars[expected]
            b.set_edgecolor("black")
            b.set_linewidth(2.0)
            b.set_hatch("//")
            handles.append(b)
            names.append("expected")
        ax.set_xticks(range(v.size))
        ax.set_xticklabels(labels)
        ax.set_ylabel(ylabel)
        if xlabel:
            ax.set_xlabel(xlabel)
        hi = v + (std if std is not None else 0)
        for i, x in enumerate(v):
            ax.text(i, hi[i], f"{x:.2f}", ha="center", va="bottom", fontsize=7)
        ax.set_ylim(min(0.0, float(v.min()) * 1.1), float(hi.max()) * 1.18 if hi.max() > 0 else 1.0)
        if expected is not None or std is not None:
            extra = ["error bars: ± 1 std over samples"] if std is not None else []
            if extra:
                from matplotlib.lines import Line2D
                handles.append(Line2D([], [], color="0.25", lw=1))
                names += extra
            ax.legend(handles, names, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                      borderaxespad=0.0)
        if title:
            ax.set_title(title)
        fig.tight_layout()
    legend_w = 2.2 if (expected is not None or std is not None) else 0.0
    return _save_or_show(draw, (max(4.0, 0.5 * v.size + 1.8) + legend_w, 3.4), path, "plot_attention_bars")


# ------------------------------------------------------------------------------------------------
# The computation graph
# ------------------------------------------------------------------------------------------------
def _graph(tensor):
    """Nodes and edges of the graph behind ``tensor``: (nodes, edges, order) with nodes a dict
    node_id -> (kind, label, object), edges a list of (src id, dst id), order the ids in topological
    order (inputs first)."""
    from .autograd import Function, Tensor, walk_graph, node_id
    if not isinstance(tensor, Tensor):
        raise TypeError(f"draw_graph: expected a Tensor, got {type(tensor).__name__}")
    nodes, edges, order = {}, [], []
    for node in walk_graph(tensor):
        key = node_id(node)
        order.append(key)
        if isinstance(node, Function):
            nodes[key] = ("op", _op_label(node), node)
            for x in node.input_tensors:
                edges.append((node_id(x), key))
        else:
            nodes[key] = ("tensor", _tensor_label(node, node is tensor), node)
            if node.creator is not None:
                edges.append((node_id(node.creator), key))
    return nodes, edges, order


def _op_label(f):
    name = type(f).__name__
    extras = []
    for attr in ("axis", "axes", "shape", "scale", "p"):
        v = f.__dict__.get(attr)
        if v is not None and isinstance(v, (int, float, tuple)) and not isinstance(v, bool):
            extras.append(f"{attr}={round(v, 4) if isinstance(v, float) else v}")
    return name + (f"\n{', '.join(extras)}" if extras and len(", ".join(extras)) <= 28 else "")


def _tensor_label(t, is_root):
    from .autograd import ReleasedTensor
    lines = []
    if t.name:
        lines.append(str(t.name))
    elif is_root:
        lines.append("output")
    elif t.creator is None:
        lines.append("leaf" if t.requires_grad else "constant")
    lines.append(f"{tuple(t.shape)} {t.dtype}")
    g = t.grad
    if g is not None:
        ga = backend.as_numpy(g.data)
        lines.append(f"|grad| = {float(np.sqrt((ga.astype(np.float64) ** 2).sum())):.3g}")
    elif type(t) is ReleasedTensor:
        lines.append("(freed by backward)")
    return "\n".join(lines)


def _dot_escape(s):
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def graph_to_dot(tensor):
    """Graphviz DOT text of the graph behind ``tensor`` (see :func:`draw_graph`)."""
    nodes, edges, order = _graph(tensor)
    idx = {k: i for i, k in enumerate(order)}
    lines = ["digraph tinyattn {", '  rankdir="TB";',
             '  node [fontname="Helvetica", fontsize=10];']
    for k in order:
        kind, label, _ = nodes[k]
        if kind == "op":
            style = 'shape=ellipse, style=filled, fillcolor="#cfe2f3"'
        else:
            style = 'shape=box, style="rounded,filled", fillcolor="#fff2cc"'
        lines.append(f'  n{idx[k]} [{style}, label="{_dot_escape(label)}"];')
    for a, b in edges:
        lines.append(f"  n{idx[a]} -> n{idx[b]};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _layers(nodes, edges, order):
    """Longest-path layering (a node sits one layer below its deepest parent; inputs on layer 0),
    then one top-down barycentre sweep to order each layer (fewer edge crossings)."""
    parents = {k: [] for k in order}
    for a, b in edges:
        parents[b].append(a)
    children = {k: [] for k in order}
    for a, b in edges:
        children[a].append(b)
    layer = {}
    for k in order:                                # topological: parents come first
        layer[k] = 1 + max((layer[p] for p in parents[k]), default=-1)
    for k in order:                                # an input sits just above its first consumer
        if not parents[k] and children[k]:
            layer[k] = min(layer[c] for c in children[k]) - 1
    rows = {}
    for k in order:
        rows.setdefault(layer[k], []).append(k)
    pos = {}
    for li in sorted(rows):
        row = rows[li]
        if li > 0:
            row.sort(key=lambda k: sum(pos[p] for p in parents[k]) / max(1, len(parents[k])))
        for i, k in enumerate(row):
            pos[k] = i - (len(row) - 1) / 2.0
    return layer, pos, rows


def _draw_graph_matplotlib(nodes, edges, order, path, fmt, title):
    mpl = _matplotlib()
    if mpl is None:
        raise RuntimeError("draw_graph: writing an image needs the Graphviz `dot` program or matplotlib; "
                           "install one (python3 -m pip install matplotlib), or call "
                           "draw_graph(t) without path= for the DOT text")
    Figure, Canvas = mpl
    layer, pos, rows = _layers(nodes, edges, order)
    width = max(len(r) for r in rows.values())
    depth = len(rows)
    fig = Figure(figsize=(max(4.0, 2.3 * width), max(3.0, 1.05 * depth + 0.6)))
    Canvas(fig)
    ax = fig.add_axes([0.01, 0.01, 0.98, 0.94 if title else 0.98])
    ax.set_xlim(-width / 2.0 - 0.1, width / 2.0 + 0.1)
    ax.set_ylim(-depth + 0.4, 0.6)
    ax.axis("off")
    xy = {k: (pos[k], -layer[k]) for k in order}
    def shrink(k):                                 # points from a node's centre to its border
        return 6.0 + 5.0 * (nodes[k][1].count("\n") + 1)
    for a, b in edges:
        ax.annotate("", xy=xy[b], xytext=xy[a],
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.9, shrinkA=shrink(a),
                                    shrinkB=shrink(b)))
    for k in order:
        kind, label, _ = nodes[k]
        box = (dict(boxstyle="ellipse,pad=0.3", fc="#cfe2f3", ec="#3d85c6") if kind == "op"
               else dict(boxstyle="round,pad=0.35", fc="#fff2cc", ec="#bf9000"))
        ax.text(xy[k][0], xy[k][1], label, ha="center", va="center", fontsize=7.5, bbox=box, zorder=3,
                fontweight="bold" if kind == "op" else "normal")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, format=fmt, dpi=110)


def draw_graph(tensor, path=None, format=None, engine=None, title=None):
    """The computation graph behind ``tensor``, as Graphviz DOT text, optionally drawn to a file.

    One node per Function (its op name, and settings such as the axis) and one per Tensor (its name
    if it has one, shape and dtype; after ``backward()``, ‖grad‖ for the tensors that kept a
    gradient: leaves, and intermediates with ``retain_grad()``). Edges run from inputs to the op to
    its output. The graph is walked with :func:`tinyattn.autograd.walk_graph`, so it can be drawn
    after ``backward()`` too (freed intermediates show their shape and "(freed by backward)").

    path: where to write an image; its suffix (``.png``, ``.svg``, ``.pdf``) or ``format`` picks the
    format. engine: "dot" (the Graphviz program, needed on the PATH), "matplotlib" (a layered layout
    computed here: longest-path layers, inputs at the top, no system install), or None — ``dot`` when
    ``shutil.which("dot")`` finds it, matplotlib otherwise. Returns the DOT text (always).
    """
    import shutil
    import subprocess
    dot_text = graph_to_dot(tensor)
    if path is None:
        return dot_text
    fmt = (format or os.path.splitext(str(path))[1].lstrip(".") or "png").lower()
    if fmt not in ("png", "svg", "pdf"):
        raise ValueError(f"draw_graph: cannot write format {fmt!r} (path {path}); use .png, .svg or .pdf")
    if engine not in (None, "dot", "matplotlib"):
        raise ValueError(f"draw_graph: engine must be None, 'dot' or 'matplotlib', got {engine!r}")
    dot = shutil.which("dot") if engine in (None, "dot") else None
    if engine == "dot" and dot is None:
        raise RuntimeError("draw_graph: engine='dot' but the Graphviz `dot` program is not on the PATH "
                           "(apt-get install graphviz / brew install graphviz), or use engine='matplotlib'")
    if dot is not None:
        src = dot_text if title is None else dot_text.replace(
            "digraph tinyattn {\n", f'digraph tinyattn {{\n  label="{_dot_escape(title)}"; labelloc="t";\n', 1)
        subprocess.run([dot, f"-T{fmt}", "-o", str(path)], input=src, text=True, check=True,
                       capture_output=True)
    else:
        nodes, edges, order = _graph(tensor)
        _draw_graph_matplotlib(nodes, edges, order, path, fmt, title)
    return dot_text
