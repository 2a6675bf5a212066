"""The LSTM/GRU buffer pool: a byte cap, an explicit release, and release when the last layer goes."""
import gc
import tracemalloc

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import nn, optim
from tinyattn.functions import rnn


@pytest.fixture(autouse=True)
def _host_backend():
    """The LSTM/GRU buffer pool is a host (NumPy) workspace, and tracemalloc sees host memory only:
    these tests run on NumPy in both passes (on the device CuPy's own memory pool takes its place).
    conftest's fixture restores the pass's backend afterwards."""
    ta.use_backend("numpy")
    yield


def _train(layer, x, steps=2):
    opt = optim.Adam(layer.parameters() or [], lr=1e-3) if layer.built else None
    for _ in range(steps):
        out = layer(ta.tensor(x))
        if opt is None:
            opt = optim.Adam(layer.parameters(), lr=1e-3)
        opt.zero_grad()
        (out * out).mean().backward()
        opt.step()
        del out


@pytest.mark.parametrize("cls", [nn.LSTM, nn.GRU])
def test_memory_returns_after_deleting_a_trained_layer(cls, rng):
    """Train an LSTM(256)/GRU(256) for a few steps on B=32, T=50, delete it: memory back to baseline."""
    x = rng.standard_normal((32, 50, 32)).astype(np.float32)
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        ta.manual_seed(0)
        layer = cls(256, return_sequences=True)
        _train(layer, x)
        trained = tracemalloc.get_traced_memory()[0] - base
        del layer
        gc.collect()
        left = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert trained > 8 << 20                       # the pool and the weights did take memory ...
    assert left < 256 << 10, f"{left} bytes still held after deleting the layer (was {trained})"


def test_pool_kept_while_another_layer_lives(rng):
    x = rng.standard_normal((4, 6, 3)).astype(np.float32)
    rnn.release_buffers()
    a, b = nn.LSTM(8), nn.LSTM(8)
    _train(a, x, 1)
    held = nn.buffer_pool_bytes()
    assert held > 0
    del a
    gc.collect()
    assert nn.buffer_pool_bytes() == held          # b still uses it
    _train(b, x, 1)
    del b
    gc.collect()
    assert nn.buffer_pool_bytes() == 0


def test_release_buffers_explicitly(rng):
    """The functional form (no module) fills the pool too; release_buffers() empties it."""
    assert nn.release_buffers is rnn.release_buffers
    T, B, d, u = 7, 3, 4, 5
    x = ta.tensor(rng.standard_normal((T, B, d)))
    h0 = c0 = ta.tensor(np.zeros((B, u)))
    K, R = ta.tensor(rng.standard_normal((d, 4 * u)), requires_grad=True), ta.tensor(rng.standard_normal((u, 4 * u)))
    out, h, c = ta.functions.rnn.lstm_sequence(x, h0, c0, K, R)
    out.sum().backward()
    held = rnn.buffer_pool_bytes()
    assert held > 0
    assert nn.release_buffers() == held
    assert nn.buffer_pool_bytes() == 0
    assert nn.release_buffers() == 0


def test_byte_cap_limits_the_pool_and_keeps_results(rng):
    x = rng.standard_normal((8, 20, 16)).astype(np.float32)
    g = rng.standard_normal((8, 20, 64)).astype(np.float32)

    def run():
        ta.manual_seed(3)
        layer = nn.LSTM(64, return_sequences=True)
        results = []
        for _ in range(2):
            xt = ta.tensor(x, requires_grad=True)
            out = layer(xt)
            (out * ta.tensor(g)).sum().backward()
            results += [out.numpy().copy(), xt.grad.numpy().copy()] + [p.grad.numpy().copy() for p in layer.parameters()]
        return layer, results

    nn.release_buffers()
    keep, free = run()
    assert nn.buffer_pool_bytes() > 100_000
    old = nn.set_buffer_pool_limit(100_000)
    try:
        assert old == 256 << 20
        assert nn.buffer_pool_bytes() <= 100_000       # lowering the cap drops buffers at once
        keep2, capped = run()
        assert 0 < nn.buffer_pool_bytes() <= 100_000
        nn.set_buffer_pool_limit(0)
        assert nn.buffer_pool_bytes() == 0
        keep3, off = run()
        assert nn.buffer_pool_bytes() == 0
    finally:
        nn.set_buffer_pool_limit(old)
    for a, b, c in zip(free, capped, off):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    for bad in (-1, 1.5, "1MB", True):
        with pytest.raises(ValueError, match="set_buffer_pool_limit: max_bytes"):
            nn.set_buffer_pool_limit(bad)
