"""The strict CuPy stand-in (tests/strict_xp.py) is strict where CuPy is: if these checks did not
fail on host/device mixes, the ``--backend=strict`` pass could not find anything."""
import numpy as np
import pytest

import strict_xp as xp


@pytest.fixture
def a():
    return xp.asarray(np.arange(6.0, dtype=np.float32).reshape(2, 3))


def test_not_an_ndarray_and_no_implicit_host_conversion(a):
    assert not isinstance(a, np.ndarray)
    for convert in (np.asarray, np.array, lambda v: np.testing.assert_array_equal(v, v)):
        with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
            convert(a)


@pytest.mark.parametrize("host", [np.ones(3, np.float32), np.float32(2), np.float64(2), [1.0, 2.0, 3.0]],
                         ids=["ndarray", "float32-scalar", "float64-scalar", "list"])
def test_host_data_meeting_a_device_array_raises(a, host):
    for op in (lambda: a + host, lambda: host * a, lambda: np.add(a, host), lambda: xp.maximum(a, host)):
        with pytest.raises(TypeError, match="met a device array"):
            op()
    if isinstance(host, np.ndarray):
        with pytest.raises(TypeError, match="met a device array"):
            np.concatenate([a[0], host])
        with pytest.raises(TypeError, match="met a device array"):
            a[0] = host


def test_device_math_stays_on_the_device_and_keeps_dtype(a):
    for r in (a * 2.0, 1 - a, a @ a.T, np.exp(a), xp.exp(a), np.concatenate([a, a]), xp.where(a > 1, a, 0),
              a.sum(), a[0, 1], xp.linalg.norm(a), xp.random.default_rng(0).standard_normal(3),
              np.allclose(a, a), xp.array_equal(a, a), a.any()):
        assert isinstance(r, xp.ndarray), type(r)
    assert (a * 2.0).dtype == np.float32 and xp.where(a > 1, a, 0).dtype == np.float32
    t = xp.zeros(4)
    xp.scatter_add(t, np.array([1, 1, 3]), xp.asarray([1.0, 2.0, 5.0]))
    np.testing.assert_array_equal(xp.asnumpy(t), [0, 3, 0, 5])


def test_device_to_host_reads_are_explicit_and_counted(a):
    xp.reset_syncs()
    assert float(a.sum()) == 15.0 and int(a[0, 1]) == 1 and bool(a[1, 0]) and a[0, 2].item() == 2.0
    assert a[0].tolist() == [0.0, 1.0, 2.0]
    host = xp.asnumpy(a)
    assert isinstance(host, np.ndarray) and isinstance(a.get(), np.ndarray)
    host[0, 0] = 9                                     # a copy
    assert float(a[0, 0]) == 0.0
    assert xp.syncs == 8 and xp.sync_counts == {"float": 2, "int": 1, "bool": 1, "item": 1, "tolist": 1,
                                                "asnumpy": 1, "get": 1}
