"""tinyattn.check: compare() tells exact from close from WRONG; compare_table() fails loudly."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.check import CheckFailed, Row, compare, compare_table


def _softmax_graph():
    rng = np.random.default_rng(0)
    x = ta.tensor(rng.standard_normal((3, 4)), dtype=np.float64, requires_grad=True)
    y = ta.softmax(x, axis=-1)
    y.retain_grad()
    G = rng.standard_normal((3, 4))
    (y * ta.tensor(G)).sum().backward()
    return x, y, G


def test_right_hand_gradient_is_exact_or_close(capsys):
    x, y, G = _softmax_graph()
    yv = y.numpy()
    assert compare("dy", G, y) == Row("dy", "exact", 0.0, (3, 4))
    row = compare("dx", yv * (G - (G * yv).sum(-1, keepdims=True)), x)
    assert row.status in ("exact", "close") and row.max_abs_diff < 1e-12 and row.shape == (3, 4)
    out = capsys.readouterr().out
    assert "dy" in out and "exact" in out and "(3, 4)" in out


def test_wrong_hand_gradient_is_reported_wrong():
    x, y, G = _softmax_graph()
    wrong = y.numpy() * G                                  # forgot the − Σ dy·y term
    row = compare("dx", wrong, x, show=False)
    assert row.status == "WRONG" and row.max_abs_diff > 1e-3
    with pytest.raises(CheckFailed, match="1 of 2 .*: dx"):
        compare_table([compare("dy", G, y, show=False), row], show=False)


def test_small_error_beyond_tolerance_is_wrong_and_within_is_close():
    a = np.linspace(-1, 1, 7)
    assert compare("a", a + 1e-12, a, show=False).status == "close"
    assert compare("a", a + 1e-5, a, show=False).status == "WRONG"
    a32 = a.astype(np.float32)
    assert compare("a32", a32 + np.float32(5e-7), a32, show=False).status == "close"   # float32 tolerance
    assert compare("a32", a32 + np.float32(1e-4), a32, show=False).status == "WRONG"


def test_shape_mismatch_nan_and_missing_grad_are_wrong():
    a = np.ones((2, 3))
    assert compare("s", np.ones((3, 2)), a, show=False).status == "WRONG"
    assert compare("n", np.array([np.nan, 1.0]), np.array([0.0, 1.0]), show=False).status == "WRONG"
    assert compare("n", np.array([np.nan, 1.0]), np.array([np.nan, 1.0]), show=False).status == "exact"
    t = ta.tensor(np.ones(3), dtype=np.float64, requires_grad=True)
    row = compare("t", np.ones(3), t, show=False)                 # never ran backward
    assert row.status == "WRONG" and "retain_grad" in row.shape
    assert compare("t", np.ones(3), t, what="value", show=False).status == "exact"


def test_table_text_and_summary():
    rows = [Row("a", "exact", 0.0, (2,)), Row("b", "close", 1e-17, (2,))]
    text = compare_table(rows, title="T", show=False)
    assert text.splitlines()[0] == "T" and text.endswith("2 rows: 1 exact, 1 close, 0 WRONG")
    with pytest.raises(ValueError):
        compare_table([])
