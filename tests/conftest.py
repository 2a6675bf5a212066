"""Test configuration. ``pytest --backend=strict`` runs the whole suite a second time on the device
path: tests/strict_xp.py (a strict CuPy stand-in) is plugged in as tinyattn's device module and
``use_backend("cupy")`` is the default for every test."""
import os
import sys

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import backend as _backend

sys.path.insert(0, os.path.dirname(__file__))
import strict_xp  # noqa: E402

BACKENDS = ["numpy"] + (["cupy"] if ta.gpu_available() else [])
_REAL_GPU = ta.gpu_available()


def pytest_addoption(parser):
    parser.addoption("--backend", choices=("numpy", "strict"), default="numpy",
                     help="numpy: the default; strict: run every test on the strict CuPy stand-in "
                          "(tests/strict_xp.py) as the default backend")


def install_strict():
    """Plug strict_xp in as the device module; returns the previous setting (for restoring)."""
    return _backend._set_device_module(strict_xp, strict_xp.ndarray, asnumpy=strict_xp.asnumpy,
                                       scatter_add=strict_xp.scatter_add,
                                       special=strict_xp.special, name="strict_xp")


def pytest_configure(config):
    config.addinivalue_line("markers", "not_strict(reason): needs host NumPy arrays by nature; "
                                       "skipped with --backend=strict")
    if config.getoption("--backend") == "strict":
        install_strict()
        ta.use_backend("cupy")


def on_strict(config):
    return config.getoption("--backend") == "strict"


def pytest_collection_modifyitems(config, items):
    if not on_strict(config):
        return
    for item in items:
        m = item.get_closest_marker("not_strict")
        if m is not None:
            item.add_marker(pytest.mark.skip(reason="not on --backend=strict: " + (m.args[0] if m.args else "")))


@pytest.fixture(autouse=True)
def _default_backend(request):
    """Every test starts on the pass's default backend (tests may switch; they are reset)."""
    name = "cupy" if on_strict(request.config) else "numpy"
    ta.use_backend(name)
    yield
    ta.use_backend(name)


@pytest.fixture(params=["numpy", pytest.param("cupy", marks=pytest.mark.gpu)])
def backend(request):
    """Run a test once per backend. "cupy" is real CuPy on a GPU, else the strict stand-in."""
    old = None
    if request.param == "cupy" and not ta.gpu_available():
        old = install_strict()
    ta.use_backend(request.param)
    yield request.param
    if old is not None:
        _backend._set_device_module(**old)
    ta.use_backend("cupy" if on_strict(request.config) else "numpy")


@pytest.fixture
def rng():
    return np.random.default_rng(0)
