import numpy as np
import pytest

import tinyattn as ta

BACKENDS = ["numpy"] + (["cupy"] if ta.gpu_available() else [])


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Run a test once per available backend; the CuPy case skips cleanly without CuPy or a GPU."""
    if request.param == "cupy" and not ta.gpu_available():
        pytest.skip("CuPy or a GPU is not available")
    ta.use_backend(request.param)
    yield request.param
    ta.use_backend("numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
