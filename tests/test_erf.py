"""erf written in NumPy (fdlibm's rational approximations): accuracy against math.erf over a dense
sweep (float64 and float32), special values, dtype, gradients, and that SciPy is never needed."""
import math
import pathlib
import re
import sys

import numpy as np
import pytest

import tinyattn as ta
import tinyattn.functions as F
import importlib

E = importlib.import_module("tinyattn.functions.elementwise")


def _sweep():
    """1e5 points: a dense linear sweep of [-7, 7] (every range boundary inside), log-spaced tails
    down to the smallest subnormal and up to 1e300, and the range boundaries themselves."""
    lin = np.linspace(-7.0, 7.0, 60001)
    tiny = np.geomspace(5e-324, 1.0, 10000)
    big = np.geomspace(1.0, 1e300, 9995)
    edges = np.array([0.84375, 1.25, 1 / 0.35, 6.0, 28.0])
    edges = np.concatenate([edges, np.nextafter(edges, 0), np.nextafter(edges, 10)])
    pos = np.concatenate([tiny, big, edges])
    return np.concatenate([lin, pos, -pos])


def test_erf_float64_matches_math_erf():
    x = _sweep()
    assert x.size >= 100_000
    y = F.erf(ta.tensor(x)).numpy()
    ref = np.array([math.erf(v) for v in x])
    err = np.abs(y - ref)
    assert err.max() <= 1e-15, f"max abs error {err.max():.3g} at x = {x[err.argmax()]!r}"
    rel = err / np.maximum(np.abs(ref), np.finfo(np.float64).tiny)
    assert rel.max() <= 1e-15, f"max rel error {rel.max():.3g} at x = {x[rel.argmax()]!r}"


def test_erf_special_values():
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 1e-300])
    y = E._erf_numpy(x)
    assert y[0] == 0 and not np.signbit(y[0])
    assert y[1] == 0 and np.signbit(y[1])               # erf(−0) = −0
    assert y[2] == 1.0 and y[3] == -1.0
    assert np.isnan(y[4])
    np.testing.assert_array_equal(y[5:], [math.erf(v) for v in x[5:]])
    # 0-d arrays and NumPy scalars keep their shape
    assert E._erf_array(np.float64(0.5)).shape == ()
    assert float(E._erf_array(np.array(0.5))) == pytest.approx(math.erf(0.5), abs=1e-16)


def test_erf_float32_dtype_and_accuracy():
    x64 = _sweep()
    x = np.where(np.abs(x64) < 1e38, x64, np.sign(x64) * 1e38).astype(np.float32)
    t = ta.tensor(x)
    y = F.erf(t)
    assert y.dtype == np.float32
    ref = np.array([math.erf(float(v)) for v in x])
    err = np.abs(y.numpy().astype(np.float64) - ref)
    ulp = np.spacing(np.maximum(np.abs(ref), np.finfo(np.float32).tiny).astype(np.float32)).astype(np.float64)
    assert (err <= 2 * ulp).all(), f"error {np.max(err / ulp):.2f} float32 ulps"
    assert F.gelu(t).dtype == np.float32


def test_erf_large_arrays_chunked():
    """Arrays above the chunk size go through in chunks: same values as one block."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, E._ERF_CHUNK + 123)) * 3
    np.testing.assert_array_equal(E._erf_numpy(x), E._erf_block(x))
    xt = x.T                                            # non-contiguous input
    np.testing.assert_array_equal(E._erf_numpy(xt), E._erf_block(np.ascontiguousarray(xt)))


def test_erf_gradient():
    rng = np.random.default_rng(1)
    x = ta.tensor(rng.standard_normal((4, 5)) * 2, requires_grad=True)
    gy = rng.standard_normal((4, 5))
    F.erf(x).backward(gy)
    np.testing.assert_allclose(x.grad.numpy(), gy * 2 / math.sqrt(math.pi) * np.exp(-x.numpy() ** 2),
                               rtol=1e-14, atol=1e-15)
    ta.gradcheck(F.erf, [x])
    ta.gradgradcheck(F.erf, [x])


def test_gelu_gradcheck_and_double_backward():
    rng = np.random.default_rng(2)
    x = ta.tensor(rng.standard_normal((3, 7)) * 2, requires_grad=True)
    ta.gradcheck(F.gelu, [x])
    ta.gradgradcheck(F.gelu, [x])


@pytest.mark.parametrize("n", [20001, 2 * E._ERF_CHUNK + 7])      # one block, and chunked
def test_gelu_matches_torch_exact(n):
    torch = pytest.importorskip("torch")
    x = np.concatenate([np.linspace(-10, 10, n), [0.0, -0.0, 40.0, -40.0]])
    gy = np.random.default_rng(3).standard_normal(x.shape)
    t = ta.tensor(x, requires_grad=True)
    y = F.gelu(t)
    y.backward(gy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.gelu(tx, approximate="none")
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(y.numpy(), ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(t.grad.numpy(), tx.grad.numpy(), rtol=1e-12, atol=1e-12)


def test_no_scipy_needed(monkeypatch):
    """The library source never imports SciPy or falls back to np.vectorize, and erf runs with
    SciPy made unimportable."""
    root = pathlib.Path(ta.__file__).parent
    pat = re.compile(r"np\.vectorize|import scipy|from scipy")
    hits = [str(p) for p in root.rglob("*.py") if pat.search(p.read_text())]
    assert not hits, hits
    monkeypatch.setitem(sys.modules, "scipy", None)
    monkeypatch.setitem(sys.modules, "scipy.special", None)
    assert float(F.erf(ta.tensor(np.array([1.0]), device="cpu")).numpy()[0]) == pytest.approx(math.erf(1.0), abs=1e-16)


def test_erf_fdlibm_on_the_device(backend, monkeypatch):
    """Without a device scipy.special (CuPy lacking cupyx.scipy) the fdlibm code itself runs on the
    device arrays, with the same values as on the host."""
    from tinyattn import backend as B
    monkeypatch.setitem(B._device, "special", None)
    x = _sweep()
    for dt in (np.float64, np.float32):
        xd = x.astype(dt) if dt is np.float64 else np.clip(x, -1e38, 1e38).astype(dt)
        t = ta.tensor(xd)
        y = F.erf(t)
        assert y.device == t.device and y.dtype == dt
        np.testing.assert_array_equal(y.numpy(), E._erf_numpy(xd))
        g = F.gelu(t)
        if dt is np.float32 and type(t.data) is np.ndarray:     # host float32: GELU's float32 Φ
            want = xd * E._phi_float32(xd, np.empty_like(xd))
        else:
            want = xd * ((E._erf_numpy(xd * (1 / math.sqrt(2))) + 1) * 0.5)
        np.testing.assert_array_equal(g.numpy(), want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_gelu_chunked_kernels_equal_whole_array_bits(dtype):
    """GELU's NumPy kernels run contiguous blocks in cache-sized chunks written into the output (no
    block-sized temporaries); strided blocks take whole-array operations. Same bits either way, and
    the forward equals the textbook x (erf(x/√2) + 1) ½."""
    rng = np.random.default_rng(7)
    n = 2 * E._ERF_CHUNK + 13
    x = (rng.standard_normal(n) * 3).astype(dtype)
    x[:6] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 40.0]
    g = rng.standard_normal(n).astype(dtype)
    wide = np.zeros((n, 2), dtype)          # strided copies: column 0 of a (n, 2) array
    xs, gs = wide.copy(), wide.copy()
    xs[:, 0], gs[:, 0] = x, g
    xs, gs = xs[:, 0], gs[:, 0]
    assert not xs.flags.c_contiguous
    with np.errstate(invalid="ignore"):
        y, ys, gx, gxs = (np.empty(n, dtype) for _ in range(4))
        E._gelu(x, y)
        E._gelu(xs, ys)
        E._gelu_grad(g, x, gx)
        E._gelu_grad(gs, xs, gxs)
        if dtype is np.float32:        # float32: Φ from the float32 rational (whole array at once)
            cdf = E._phi_float32(x, np.empty_like(x))
            textbook = x * cdf
        else:
            cdf = (E._erf_numpy(x * (1 / math.sqrt(2))) + 1) * 0.5
            textbook = x * ((E._erf_numpy(x * (1 / math.sqrt(2))) + 1) * 0.5)
    assert y.tobytes() == ys.tobytes() and gx.tobytes() == gxs.tobytes()
    np.testing.assert_array_equal(y, textbook)
    # forward keeping GELU'(x) for backward (what GELU does when gradients are on): same y, same gx,
    # and the kept derivative is the backward's Φ + x φ(x) (its gradient for gy = 1)
    with np.errstate(invalid="ignore"):
        y2, d, gx2, d1 = (np.empty(n, dtype) for _ in range(4))
        E._gelu(x, y2, d)
        E._gelu_grad(g, x, gx2, d)
        E._gelu_grad(np.ones(n, dtype), x, d1)
        ds = np.empty(n, dtype)
        E._gelu(xs, np.empty(n, dtype), ds)                # strided blocks: the same bits
    assert y2.tobytes() == y.tobytes() and gx2.tobytes() == gx.tobytes()
    assert d.tobytes() == d1.tobytes() == ds.tobytes()
    with np.errstate(over="ignore", invalid="ignore"):
        pdf = np.exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi)) * x
    np.testing.assert_array_equal(d, pdf + cdf)


def test_gelu_keeps_its_derivative_only_when_gradients_are_on():
    x = ta.tensor(np.linspace(-3, 3, 1000).astype(np.float32), requires_grad=True, device="cpu")  # (NumPy kernel)
    fn = E.GELU()
    fn(x)
    assert fn.deriv is not None and fn.deriv.shape == x.shape
    with ta.no_grad():
        fn = E.GELU()
        fn(x)
    assert fn.deriv is None


def test_gelu_float32_phi_accuracy():
    """float32 GELU takes Φ from one rational function (E._phi_float32): |Φ error| < 2.5e-7 against
    the exact Φ (float64 math.erf) everywhere, Φ = 0 / 1 exactly beyond |x| = 6, NaN stays NaN; GELU
    forward and backward within 2.5e-7 · max(1, |x|) of the exact float64 values."""
    x = np.concatenate([np.linspace(-12, 12, 240001), [0.0, -0.0, 5.7, -5.7, 6.0, -6.0, 40.0, -40.0, 1e30,
                                                       -1e30, 1e-30, -1e-30]]).astype(np.float32)
    x64 = x.astype(np.float64)
    exact = np.array([0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x64])
    phi = E._phi_float32(x, np.empty_like(x))
    assert phi.dtype == np.float32
    assert np.abs(phi - exact).max() < 2.5e-7
    assert (phi[x >= 6] == 1).all() and (phi[x <= -6] == 0).all()
    assert np.isnan(E._phi_float32(np.array([np.nan], np.float32), np.empty(1, np.float32)))[0]
    g = np.random.default_rng(8).standard_normal(x.shape).astype(np.float32)
    t = ta.tensor(x, requires_grad=True)
    y = F.gelu(t)
    with np.errstate(over="ignore"):            # x² of ±1e30 in φ(x) (→ φ = 0, the exact value)
        y.backward(ta.tensor(g))
    tol = 2.5e-7 * np.maximum(1, np.abs(x64))
    assert y.dtype == np.float32 and (np.abs(y.numpy() - x64 * exact) <= tol).all()
    gexact = g * (exact + x64 * np.exp(-x64 ** 2 / 2) / math.sqrt(2 * math.pi))
    assert (np.abs(t.grad.numpy() - gexact) <= 2 * tol * np.maximum(1, np.abs(g))).all()
    assert F.gelu(ta.tensor(np.array([-40.0], np.float32))).numpy()[0] == 0
