"""Walking and drawing the graph: Tensor.creator, Function.input_tensors, walk_graph, draw_graph."""
import gc
import re
import shutil
import weakref

import numpy as np
import pytest

import tinyattn as ta
from tinyattn.autograd import Function, ReleasedTensor, Tensor, node_id, walk_graph
from tinyattn.viz import draw_graph

PNG = b"\x89PNG\r\n\x1a\n"


def _small():
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal((3, 4)), dtype=np.float64, requires_grad=True)
    w = ta.tensor(rng.standard_normal((4, 5)), dtype=np.float64, requires_grad=True)
    x.name, w.name = "x", "W"
    h = (x @ w).tanh()
    loss = (h * h).sum()
    return x, w, h, loss


def test_walk_graph_topological_order_and_public_links():
    x, w, h, loss = _small()
    nodes = list(walk_graph(loss))
    ops = [type(n).__name__ for n in nodes if isinstance(n, Function)]
    assert ops == ["MatMul", "Tanh", "Mul", "Sum"]
    assert nodes[-1] is loss and loss.creator is nodes[-2]
    pos = {node_id(n): i for i, n in enumerate(nodes)}
    for n in nodes:                                   # every node after everything it comes from
        parents = n.input_tensors if isinstance(n, Function) else ([n.creator] if n.creator else [])
        assert all(pos[node_id(p)] < pos[node_id(n)] for p in parents)
    assert h.creator.input_tensors[0].creator.input_tensors == (x, w)
    mul = loss.creator.input_tensors[0].creator
    assert mul.input_tensors == (h, h)                # h feeds Mul twice: one node, two edges
    assert sum(1 for n in nodes if n is h) == 1


def test_walk_after_backward_keeps_a_skeleton_without_arrays():
    x, w, h, loss = _small()
    xw = h.creator.input_tensors[0]                   # x @ w: only the graph holds it
    ref = weakref.ref(xw)
    del xw
    loss.backward()
    gc.collect()
    assert ref() is None                              # the intermediate array is freed, as before
    nodes = list(walk_graph(loss))
    assert [type(n).__name__ for n in nodes if isinstance(n, Function)] == ["MatMul", "Tanh", "Mul", "Sum"]
    stand_in = h.creator.input_tensors[0]
    assert isinstance(stand_in, ReleasedTensor) and stand_in.shape == (3, 5) and stand_in.dtype == np.float64
    assert stand_in.creator is h.creator.input_tensors[0].creator and stand_in.grad is None
    with pytest.raises(RuntimeError, match="freed by backward"):
        stand_in.data
    assert h.creator.input_tensors[0].creator.input_tensors == (x, w)   # live tensors come back as themselves
    assert loss.creator.input_tensors[0].creator.input_tensors == (h, h)
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()                               # the buffers really are gone


def test_release_drops_arrays_a_function_saved():
    x = ta.tensor(np.random.default_rng(1).standard_normal((4, 6)), dtype=np.float64, requires_grad=True)
    y = ta.dropout(x, 0.5)
    fn = y.creator
    assert isinstance(fn.mask, type(x.data))           # an array on x's device
    y.sum().backward()
    assert fn.mask is None and fn.p == 0.5            # saved arrays dropped, small settings kept


def test_shared_freed_tensor_is_one_node():
    x = ta.tensor(np.ones(3), dtype=np.float64, requires_grad=True)
    a = x * 2.0
    loss = (a.exp() + a.tanh()).sum()
    del a
    loss.backward()
    nodes = list(walk_graph(loss))
    shapes_from_mul = [n for n in nodes if not isinstance(n, Function) and n.creator is not None
                       and type(n.creator).__name__ == "Mul"]
    assert len(shapes_from_mul) == 1                  # two stand-ins, one node_id


def test_long_chain_walk_no_recursion():
    x = ta.tensor(np.array(1.0), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = -y
    y.backward()
    assert sum(1 for n in walk_graph(y) if isinstance(n, Function)) == 20_000


def test_dot_text_has_the_expected_nodes_and_edges():
    x, w, h, loss = _small()
    dot = draw_graph(loss)
    assert dot.startswith("digraph tinyattn {") and dot.rstrip().endswith("}")
    labels = dict(re.findall(r'^  (n\d+) \[.*label="(.*)"\];$', dot, flags=re.M))
    assert len(labels) == 10                          # x, W, MatMul, xw, Tanh, h, Mul, hh, Sum, loss
    by_label = {v.split("\\n")[0]: k for k, v in labels.items()}
    edges = set(re.findall(r"^  (n\d+) -> (n\d+);$", dot, flags=re.M))
    assert (by_label["x"], by_label["MatMul"]) in edges and (by_label["W"], by_label["MatMul"]) in edges
    assert labels[by_label["x"]] == "x\\n(3, 4) float64"
    assert len(edges) == 9 and "|grad|" not in dot     # h -> Mul drawn twice (h * h), one pair
    assert dot.count(f"  {by_label['x']} -> ") == 1
    loss.backward()
    dot = draw_graph(loss)
    gx = float(np.sqrt((x.grad.numpy() ** 2).sum()))
    assert f"x\\n(3, 4) float64\\n|grad| = {gx:.3g}" in dot
    assert "(freed by backward)" in dot


@pytest.fixture
def no_dot(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)


def test_png_and_svg_without_graphviz(no_dot, tmp_path):
    pytest.importorskip("matplotlib")
    x, w, h, loss = _small()
    loss.backward()
    png, svg = tmp_path / "g.png", tmp_path / "g.svg"
    assert draw_graph(loss, png, title="small graph").startswith("digraph")
    assert png.read_bytes().startswith(PNG) and png.stat().st_size > 5000
    draw_graph(loss, str(svg))
    text = svg.read_text()
    assert "<svg" in text and "MatMul" in text
    with pytest.raises(RuntimeError, match="not on the PATH"):
        draw_graph(loss, tmp_path / "g2.png", engine="dot")
    with pytest.raises(ValueError, match="format 'gif'"):
        draw_graph(loss, tmp_path / "g.gif")


@pytest.mark.skipif(shutil.which("dot") is None, reason="the Graphviz `dot` program is not installed")
def test_png_with_graphviz(tmp_path):
    x, w, h, loss = _small()
    png = tmp_path / "g.png"
    dot = draw_graph(loss, png, engine="dot")
    assert png.read_bytes().startswith(PNG) and "MatMul" in dot


def test_draw_graph_rejects_non_tensors():
    with pytest.raises(TypeError, match="expected a Tensor"):
        draw_graph(np.ones(3))


def test_the_skeleton_keeps_parameters_and_frees_other_leaves():
    """After backward the graph keeps its parameters (leaves that require grad) as themselves, as
    PyTorch's AccumulateGrad nodes do, while a data leaf and intermediates are freed to stand-ins."""
    rng = np.random.default_rng(0)
    w = ta.tensor(rng.standard_normal((5, 2)), requires_grad=True)
    x = ta.tensor(rng.standard_normal((3, 5)))                  # data: no gradient
    loss = (x @ w).tanh().sum()
    refs = weakref.ref(w), weakref.ref(x)
    del w, x
    loss.backward()
    gc.collect()
    mm = loss.creator.input_tensors[0].creator.input_tensors[0].creator
    kept_w, data_x = refs[0](), refs[1]()
    assert kept_w is not None and data_x is None
    stand_in, param = mm.input_tensors
    assert param is kept_w and param.grad is not None
    assert isinstance(stand_in, ReleasedTensor) and stand_in.shape == (3, 5) and stand_in.creator is None
    assert mm.input_tensors[0] is stand_in                     # one stand-in object, made once
