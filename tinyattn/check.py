"""Compare a gradient derived by hand with the engine's, one row at a time ("backprop ninja" style).

A derive-and-check walkthrough (``examples/derive_*.py``) builds a forward pass out of tinyattn ops,
keeps every intermediate tensor (``t.retain_grad()``), runs ``loss.backward()``, derives every
gradient again by hand in NumPy, and compares the two:

    rows = [compare("dA", dA, A), compare("dS", dS, S), ...]     # prints one row each
    compare_table(rows)                                            # prints a summary, raises if WRONG

Each row says, for one tensor:

    name      status   max|hand − engine|   shape
    dA        exact    0                    (2, 3, 5)

``exact``: the two arrays are equal bit for bit; ``close``: equal within the tolerance for the
dtype (float64: |a − b| ≤ 1e-8 + 1e-6·|b|; float32: 1e-6 + 1e-4·|b|), the usual outcome, since a
hand formula and the engine add the same numbers in a different order; ``WRONG``: anything else — a
different shape, a NaN on one side only, or a difference beyond the tolerance. :func:`compare_table`
raises :class:`CheckFailed` (an ``AssertionError``) when any row is WRONG, so a script that ends with
it exits non-zero and a test that runs it fails.

Layer: beside ``gradcheck`` (it only reads Tensors and arrays).
"""
from collections import namedtuple

import numpy as np

from . import backend
from .autograd import Tensor

__all__ = ["compare", "compare_table", "Row", "CheckFailed", "format_row", "HEADER"]


class CheckFailed(AssertionError):
    """At least one hand-derived quantity differs from the engine's."""


Row = namedtuple("Row", ["name", "status", "max_abs_diff", "shape"])
Row.__doc__ = """One comparison: ``name``, ``status`` ("exact", "close" or "WRONG"), ``max_abs_diff``
(float; inf when the shapes differ or NaNs disagree) and ``shape`` (the engine's shape)."""

HEADER = f"{'name':<30} {'status':<6} {'max abs diff':>13}  shape"

_TOL = {np.dtype(np.float64): (1e-6, 1e-8), np.dtype(np.float32): (1e-4, 1e-6),
        np.dtype(np.float16): (1e-2, 1e-3)}


def _engine_array(got, what, name):
    if isinstance(got, Tensor):
        if what == "grad":
            if got.grad is None:
                return None
            got = got.grad
        got = got.data
    return np.asarray(backend.as_numpy(got)) if hasattr(got, "shape") else np.asarray(got)


def format_row(row):
    """One line: name, status, max abs diff, shape."""
    d = "-" if row.max_abs_diff is None else f"{row.max_abs_diff:.3g}"
    return f"{row.name:<30} {row.status:<6} {d:>13}  {row.shape}"


def compare(name, hand, got, what="grad", rtol=None, atol=None, show=True):
    """Compare ``hand`` (an array derived by hand) with the engine's value; print and return a Row.

    name: the label printed (e.g. "dQ").
    hand: array-like (NumPy; a CuPy array or Tensor is brought to the host).
    got:  a Tensor — its ``.grad`` is compared (``what="grad"``, the default; a Tensor without a
          gradient gives a WRONG row saying to call ``retain_grad()`` before ``backward()``) or its
          value (``what="value"``) — or an array, compared as it is.
    rtol, atol: tolerances for ``close``; default by the engine array's dtype (see the module doc).
    show: print the row (default True).

    Returns ``Row(name, status, max_abs_diff, shape)`` with status "exact", "close" or "WRONG".
    """
    if what not in ("grad", "value"):
        raise ValueError(f"compare: what must be 'grad' or 'value', got {what!r}")
    h = np.asarray(backend.as_numpy(hand.data if isinstance(hand, Tensor) else hand))
    g = _engine_array(got, what, name)
    if g is None:
        row = Row(name, "WRONG", None, "no .grad (call retain_grad() on it before backward())")
    elif h.shape != g.shape:
        row = Row(name, "WRONG", float("inf"), f"{g.shape} (hand: {h.shape})")
    else:
        dflt = _TOL.get(g.dtype, _TOL[np.dtype(np.float64)])
        rt = dflt[0] if rtol is None else rtol
        at = dflt[1] if atol is None else atol
        hf, gf = h.astype(np.float64), g.astype(np.float64)
        nan_h, nan_g = np.isnan(hf), np.isnan(gf)
        if h.size == 0:
            row = Row(name, "exact", 0.0, g.shape)
        elif (nan_h != nan_g).any():
            row = Row(name, "WRONG", float("inf"), g.shape)
        else:
            ok = ~nan_h
            with np.errstate(invalid="ignore"):
                diff = np.abs(hf[ok] - gf[ok])
            same_inf = (hf[ok] == gf[ok])
            diff = np.where(same_inf, 0.0, diff)
            d = float(diff.max()) if diff.size else 0.0
            if np.array_equal(hf[ok], gf[ok]):
                status = "exact"
            elif np.isfinite(d) and (diff <= at + rt * np.abs(gf[ok])).all():
                status = "close"
            else:
                status = "WRONG"
            row = Row(name, status, d, g.shape)
    if show:
        print(format_row(row))
    return row


def compare_table(rows, title=None, show=True):
    """Print ``rows`` as a table (header, one line each, a summary) and return the text.

    Raises :class:`CheckFailed` naming the WRONG rows when there are any, so a script ending with
    ``compare_table(rows)`` exits non-zero on a wrong derivation. ``show=False`` returns the text
    without printing it (it still raises).
    """
    rows = list(rows)
    if not rows:
        raise ValueError("compare_table: no rows (call compare(...) for each quantity first)")
    counts = {s: sum(r.status == s for r in rows) for s in ("exact", "close", "WRONG")}
    lines = ([title] if title else []) + [HEADER, "-" * len(HEADER)] + [format_row(r) for r in rows]
    lines.append(f"{len(rows)} rows: {counts['exact']} exact, {counts['close']} close, "
                 f"{counts['WRONG']} WRONG")
    text = "\n".join(lines)
    if show:
        print(text)
    wrong = [r.name for r in rows if r.status == "WRONG"]
    if wrong:
        raise CheckFailed(f"compare_table: {len(wrong)} of {len(rows)} hand-derived quantities differ "
                          f"from the engine's: {', '.join(wrong)}")
    return text
