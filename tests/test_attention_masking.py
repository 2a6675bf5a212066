"""masked_softmax and the mask helpers: values against NumPy, gradients (first and second order),
fully masked rows (finite zeros, zero gradient), heads, valid lengths, other axes, bad masks."""
import numpy as np
import pytest

import tinyattn as ta
from tinyattn.attention import masked_softmax, causal_mask, valid_lens_to_mask, combine_masks


def np_masked_softmax(x, keep, axis=-1):
    """Independent reference (d2l-style replace by -inf, then zero rows that have no key)."""
    z = np.where(keep, x, -np.inf)
    m = np.max(z, axis=axis, keepdims=True)
    e = np.exp(z - np.where(np.isfinite(m), m, 0))
    s = e.sum(axis=axis, keepdims=True)
    return np.where(s > 0, e / np.where(s > 0, s, 1), 0.0)


def test_boolean_mask_values_and_gradients(backend, rng):
    x = ta.tensor(rng.standard_normal((2, 3, 5)), requires_grad=True)
    keep = rng.random((2, 3, 5)) > 0.4
    keep[0, 1] = False                                   # a fully masked row
    y = masked_softmax(x, keep)
    np.testing.assert_allclose(y.numpy(), np_masked_softmax(x.numpy(), keep), rtol=1e-12, atol=1e-15)
    assert np.isfinite(y.numpy()).all() and (y.numpy()[0, 1] == 0).all()
    ta.gradcheck(lambda x: masked_softmax(x, keep), [x])
    ta.gradgradcheck(lambda x: masked_softmax(x, keep), [x])


def test_fully_masked_row_has_zero_gradient(rng):
    x = ta.tensor(rng.standard_normal((1, 2, 4)), requires_grad=True)
    keep = np.array([[[True, True, False, False], [False] * 4]])
    g = ta.grad(masked_softmax(x, keep), [x], [rng.standard_normal((1, 2, 4))])[0].numpy()
    assert (g[0, 1] == 0).all() and (g[0, 0, 2:] == 0).all() and np.abs(g[0, 0, :2]).sum() > 0


@pytest.mark.parametrize("vl_shape", ["1d", "2d"])
def test_valid_lens_broadcast_over_heads(rng, vl_shape):
    B, H, Tq, Tk = 2, 3, 4, 6
    x = ta.tensor(rng.standard_normal((B, H, Tq, Tk)), requires_grad=True)
    vl = np.array([2, 0]) if vl_shape == "1d" else rng.integers(0, Tk + 1, (B, Tq))
    y = masked_softmax(x, valid_lens=vl)
    lens = (vl[:, None, None, None] if vl.ndim == 1 else vl[:, None, :, None])
    keep = np.arange(Tk) < lens
    np.testing.assert_allclose(y.numpy(), np_masked_softmax(x.numpy(), np.broadcast_to(keep, x.shape)),
                               rtol=1e-12, atol=1e-15)
    ta.gradcheck(lambda x: masked_softmax(x, valid_lens=vl), [x])
    ta.gradgradcheck(lambda x: masked_softmax(x, valid_lens=vl), [x])


def test_mask_and_valid_lens_are_anded_and_lists_work(rng):
    x = ta.tensor(rng.standard_normal((2, 1, 4)))
    mask = [[[True, False, True, True]], [[True, True, True, True]]]      # a plain Python list
    y = masked_softmax(x, mask, valid_lens=[3, 1]).numpy()
    keep = np.array(mask) & (np.arange(4) < np.array([3, 1])[:, None, None])
    np.testing.assert_allclose(y, np_masked_softmax(x.numpy(), keep), rtol=1e-6)


def test_other_axis(rng):
    x = ta.tensor(rng.standard_normal((5, 3)), requires_grad=True)
    keep = rng.random((5, 3)) > 0.3
    y = masked_softmax(x, keep, axis=0)
    np.testing.assert_allclose(y.numpy(), np_masked_softmax(x.numpy(), keep, axis=0), rtol=1e-12, atol=1e-15)
    ta.gradcheck(lambda x: masked_softmax(x, keep, axis=0), [x])
    with pytest.raises(ValueError, match="last axis"):
        masked_softmax(x, valid_lens=[1, 2, 3, 4, 5], axis=0)


def test_float32_stays_float32_and_extreme_scores(rng):
    x = ta.tensor((rng.standard_normal((2, 6)) * 1e4).astype(np.float32))
    y = masked_softmax(x, np.array([True, True, False, True, False, True]))
    assert y.dtype == np.float32 and np.isfinite(y.numpy()).all()
    np.testing.assert_allclose(y.numpy().sum(-1), 1, rtol=1e-6)


def test_helpers_and_errors():
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(3)), np.tril(np.ones((3, 3), bool)))
    np.testing.assert_array_equal(ta.backend.as_numpy(causal_mask(2, 4)), [[1, 0, 0, 0], [1, 1, 0, 0]])   # top-left
    np.testing.assert_array_equal(ta.backend.as_numpy(valid_lens_to_mask(np.array([1, 3]), 3, ndim=3)[:, 0]),
                                  [[1, 0, 0], [1, 1, 1]])
    a, b = np.array([True, False, True]), np.array([True, True, False])
    np.testing.assert_array_equal(combine_masks(a, None, b), [True, False, False])
    assert combine_masks(None, None) is None
    with pytest.raises(ValueError, match=r"mask of shape \(4,\) does not broadcast"):
        masked_softmax(ta.tensor(np.zeros((2, 3))), np.ones(4, bool))
    with pytest.raises(ValueError, match="valid_lens must be"):
        valid_lens_to_mask(np.zeros((1, 1, 1), int), 3)
