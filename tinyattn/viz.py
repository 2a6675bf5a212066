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

__all__ = ["plot_attention", "plot_attention_bars", "ascii_heatmap", "ascii_bars", "draw_graph", "graph_to_dot"]

_UNICODE_SHADES = " ░▒▓█"
_ASCII_SHADES = " .:-=+*#%@"


def _to_numpy(a, name):
    data = backend.as_numpy(array_of(a)) if hasattr(array_of(a), "shape") else a  # Tensor, NumPy, CuPy
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
    for a, b in edges:
        ax.annotate("", xy=xy[b], xytext=xy[a],
                    arrowprops=dict(arrowstyle="-|>", color="#555555", lw=0.9, shrinkA=16, shrinkB=16))
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
