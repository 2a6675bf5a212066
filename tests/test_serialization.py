"""Checkpoints: round trip (bit-identical predictions), optimizer resume, atomic writes, bad files."""
import os
import zipfile

import numpy as np
import pytest

import tinyattn as ta
from tinyattn import optim, serialization
from tinyattn.nn import Module, Parameter


class TinyNet(Module):
    """y = tanh(x W1 + b1) W2 + b2 with a nested submodule (dotted parameter names)."""

    def __init__(self, d_in=3, hidden=5, d_out=2, seed=0, dtype=np.float32):
        super().__init__()
        r = np.random.default_rng(seed)
        self.w1 = Parameter(ta.tensor(r.standard_normal((d_in, hidden)).astype(dtype)).data)
        self.b1 = Parameter(ta.tensor(np.zeros(hidden, dtype)).data)
        self.head = Head(hidden, d_out, r, dtype)

    def forward(self, x):
        return self.head((x @ self.w1 + self.b1).tanh())


class Head(Module):
    def __init__(self, d_in, d_out, r, dtype):
        super().__init__()
        self.kernel = Parameter(ta.tensor(r.standard_normal((d_in, d_out)).astype(dtype)).data)
        self.bias = Parameter(ta.tensor(r.standard_normal(d_out).astype(dtype)).data)

    def forward(self, h):
        return h @ self.kernel + self.bias


def _train(model, opt, x, y, steps):
    for _ in range(steps):
        opt.zero_grad()
        ((model(ta.tensor(x)) - ta.tensor(y)) ** 2).mean().backward()
        opt.step()


@pytest.fixture
def data(rng):
    return rng.standard_normal((8, 3)).astype(np.float32), rng.standard_normal((8, 2)).astype(np.float32)


def test_round_trip_bit_identical(tmp_path, data):
    x, y = data
    model = TinyNet(seed=1)
    _train(model, optim.Adam(model.parameters(), lr=0.01), x, y, 3)
    path = tmp_path / "ckpt.npz"
    assert ta.save(model, path) == str(path)
    fresh = TinyNet(seed=2)
    assert not np.array_equal(fresh(ta.tensor(x)).numpy(), model(ta.tensor(x)).numpy())
    assert ta.load(fresh, path) is fresh
    np.testing.assert_array_equal(fresh(ta.tensor(x)).numpy(), model(ta.tensor(x)).numpy())
    for (n1, p1), (n2, p2) in zip(model.named_parameters(), fresh.named_parameters()):
        assert n1 == n2 and p1.dtype == p2.dtype
        np.testing.assert_array_equal(p1.numpy(), p2.numpy())
    with np.load(path, allow_pickle=False) as f:
        assert str(f["__format__"]) == "tinyattn-checkpoint"
        assert int(f["__version__"]) == serialization.FORMAT_VERSION
        assert sorted(k for k in f.files if k.startswith("param/")) == \
            sorted(["param/w1", "param/b1", "param/head.kernel", "param/head.bias"])


def test_optimizer_state_resumes_bit_identically(tmp_path, data):
    x, y = data
    model = TinyNet(seed=1)
    opt = optim.Adam(model.parameters(), lr=0.01, amsgrad=True)
    _train(model, opt, x, y, 4)
    ta.save(model, tmp_path / "c.npz", optimizer=opt)
    _train(model, opt, x, y, 5)
    straight = model.state_dict()

    fresh = TinyNet(seed=9)
    fresh_opt = optim.Adam(fresh.parameters(), lr=0.9)
    ta.load(fresh, tmp_path / "c.npz", optimizer=fresh_opt)
    assert fresh_opt.param_groups[0]["lr"] == 0.01 and fresh_opt.param_groups[0]["betas"] == (0.9, 0.999)
    _train(fresh, fresh_opt, x, y, 5)
    for k, v in straight.items():
        np.testing.assert_array_equal(ta.backend.as_numpy(fresh.state_dict()[k]), ta.backend.as_numpy(v))


def test_sgd_momentum_state_and_wrong_optimizer(tmp_path, data):
    x, y = data
    model = TinyNet()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train(model, opt, x, y, 2)
    ta.save(model, tmp_path / "s.npz", optimizer=opt)
    with pytest.raises(ValueError, match="holds SGD state, not Adam"):
        ta.load(TinyNet(), tmp_path / "s.npz", optimizer=optim.Adam(TinyNet().parameters()))
    ta.save(model, tmp_path / "noopt.npz")
    with pytest.raises(ValueError, match="has no optimizer state"):
        m = TinyNet()
        ta.load(m, tmp_path / "noopt.npz", optimizer=optim.SGD(m.parameters(), lr=0.1))


def test_atomic_save_keeps_old_checkpoint_on_failure(tmp_path, data, monkeypatch):
    x, _ = data
    path = tmp_path / "model.npz"
    old = TinyNet(seed=1)
    ta.save(old, path)
    old_bytes = path.read_bytes()

    real_savez = np.savez

    def savez_that_dies(file, **arrays):
        """Write part of a real archive, then fail like a crash or a full disk would."""
        real_savez(file, **dict(list(arrays.items())[:2]))
        file.write(b"partial garbage")
        raise OSError("simulated failure midway through writing")

    monkeypatch.setattr(np, "savez", savez_that_dies)
    with pytest.raises(OSError, match="simulated failure"):
        ta.save(TinyNet(seed=2), path)
    monkeypatch.undo()

    assert path.read_bytes() == old_bytes                       # the old checkpoint is intact
    assert sorted(os.listdir(tmp_path)) == ["model.npz"]         # and no temporary file is left
    fresh = TinyNet(seed=3)
    ta.load(fresh, path)
    np.testing.assert_array_equal(fresh(ta.tensor(x)).numpy(), old(ta.tensor(x)).numpy())


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "m.npz"
    ta.save(TinyNet(seed=1), path)
    new = TinyNet(seed=2)
    ta.save(new, path)
    fresh = TinyNet(seed=3)
    ta.load(fresh, path)
    np.testing.assert_array_equal(fresh.w1.numpy(), new.w1.numpy())
    assert os.listdir(tmp_path) == ["m.npz"]


def test_refuses_object_arrays(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, __format__=np.asarray("tinyattn-checkpoint"), __version__=np.asarray(1),
             **{"param/w1": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(ValueError, match=r"'param/w1' is an object array .*refusing"):
        ta.load(TinyNet(), path)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        ta.load(TinyNet(), tmp_path / "missing.npz")
    text = tmp_path / "notes.npz"
    text.write_text("this is not a zip archive")
    with pytest.raises(ValueError, match="is not a readable .npz checkpoint"):
        ta.load(TinyNet(), text)
    # a truncated checkpoint
    good = tmp_path / "good.npz"
    ta.save(TinyNet(), good)
    cut = tmp_path / "cut.npz"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="cut.npz"):
        ta.load(TinyNet(), cut)
    # a corrupted member (bytes flipped inside the zip)
    raw = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as z:
        info = z.getinfo("param/w1.npy")
    start = info.header_offset + 30 + len(info.filename) + 20
    raw[start:start + 40] = bytes(40)
    bad = tmp_path / "flipped.npz"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="flipped.npz"):
        ta.load(TinyNet(), bad)
    # a single .npy array, and a foreign .npz
    np.save(tmp_path / "arr.npy", np.zeros(3))
    with pytest.raises(ValueError, match=r"single array \(.npy\)"):
        ta.load(TinyNet(), tmp_path / "arr.npy")
    np.savez(tmp_path / "foreign.npz", w=np.zeros(3))
    with pytest.raises(ValueError, match="not a tinyattn checkpoint"):
        ta.load(TinyNet(), tmp_path / "foreign.npz")
    np.savez(tmp_path / "future.npz", __format__=np.asarray("tinyattn-checkpoint"), __version__=np.asarray(99))
    with pytest.raises(ValueError, match="format version 99"):
        ta.load(TinyNet(), tmp_path / "future.npz")


def test_name_and_shape_mismatch(tmp_path):
    ta.save(TinyNet(hidden=5), tmp_path / "h5.npz")
    with pytest.raises(ValueError, match=r"shape mismatch: \['w1: checkpoint \(3, 5\) vs model \(3, 6\)"):
        ta.load(TinyNet(hidden=6), tmp_path / "h5.npz")

    class Other(Module):
        def __init__(self):
            super().__init__()
            self.w1 = Parameter(ta.tensor(np.zeros((3, 5), np.float32)).data)
            self.extra = Parameter(ta.tensor(np.zeros(2, np.float32)).data)

    with pytest.raises(ValueError, match=r"missing keys: \['extra'\]; unexpected keys: \['b1'"):
        ta.load(Other(), tmp_path / "h5.npz")
    m = Other()
    ta.load(m, tmp_path / "h5.npz", strict=False)              # loads what matches
    with np.load(tmp_path / "h5.npz") as f:
        np.testing.assert_array_equal(m.w1.numpy(), f["param/w1"])


def test_unbuilt_model_hint(tmp_path):
    ta.save(TinyNet(), tmp_path / "m.npz")

    class Lazy(Module):
        def build(self, shape):
            self.w = Parameter(ta.tensor(np.zeros((shape[-1], 2), np.float32)).data)

        def forward(self, x):
            return x @ self.w

    with pytest.raises(ValueError, match="has no parameters yet.*call the model once"):
        ta.load(Lazy(), tmp_path / "m.npz")


def test_float64_and_dtype_cast(tmp_path, data):
    x, _ = data
    m64 = TinyNet(dtype=np.float64, seed=4)
    ta.save(m64, tmp_path / "m.npz")
    m32 = TinyNet(dtype=np.float32)
    ta.load(m32, tmp_path / "m.npz")                            # values cast to the model's dtype
    assert m32.w1.dtype == np.float32
    np.testing.assert_array_equal(m32.w1.numpy(), m64.w1.numpy().astype(np.float32))


def test_library_layers_round_trip(tmp_path, rng):
    """Embedding -> LSTM -> Dense (nested, lazily built): save, build a fresh copy, load, same outputs."""
    nn = ta.nn

    class Classifier(Module):
        def __init__(self):
            super().__init__()
            self.embedding = nn.Embedding(10, 4, mask_zero=True)
            self.lstm = nn.LSTM(6)
            self.head = nn.Dense(3)

        def forward(self, ids):
            return self.head(self.lstm(self.embedding(ids), mask=self.embedding.compute_mask(ids)))

    ids = rng.integers(0, 10, (5, 7))
    ta.manual_seed(1)
    model = Classifier()
    out = model(ta.tensor(ids)).numpy()
    ta.save(model, tmp_path / "c.npz")
    ta.manual_seed(2)
    fresh = Classifier()
    assert not np.array_equal(fresh(ta.tensor(ids)).numpy(), out)      # builds it, different weights
    ta.load(fresh, tmp_path / "c.npz")
    np.testing.assert_array_equal(fresh(ta.tensor(ids)).numpy(), out)
    assert "lstm.cell.recurrent_kernel" in dict(fresh.named_parameters())
