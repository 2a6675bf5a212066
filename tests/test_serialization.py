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
    # load puts every array on its parameter's device (the device on --backend=strict), state too
    for p in fresh.parameters():
        assert type(p.data) is type(TinyNet().w1.data)
        assert id(p) in fresh_opt.state
        for v in fresh_opt.state[id(p)].values():
            assert not hasattr(v, "shape") or v.ndim == 0 or ta.backend.device_of(v) == p.device
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


# ------------------------------------------------------------------------------------------------
# Loading untrusted files: validation before anything changes, before anything large is allocated
# ------------------------------------------------------------------------------------------------
import io          # noqa: E402
import json        # noqa: E402
import stat        # noqa: E402
import tracemalloc  # noqa: E402

from numpy.lib import format as npy_format   # noqa: E402


def _entries(path):
    """The checkpoint's arrays, read with NumPy (the test's own view of the file)."""
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _write(path, arrays, raw=None, compression=zipfile.ZIP_STORED):
    """Write an .npz by hand: ``arrays`` as .npy members, ``raw`` as {member name: bytes}."""
    with zipfile.ZipFile(path, "w", compression=compression) as z:
        for k, a in arrays.items():
            buf = io.BytesIO()
            npy_format.write_array(buf, np.asanyarray(a), allow_pickle=True)
            z.writestr(k + ".npy", buf.getvalue())
        for name, data in (raw or {}).items():
            z.writestr(name, data)
    return path


def _snapshot(model, opt):
    """Everything a load could change, as independent copies (bytes, for bit-identity)."""
    params = {n: (p.data.dtype, p.numpy().tobytes(), id(p.data)) for n, p in model.named_parameters()}
    state = {k: {b: (ta.backend.as_numpy(v).tobytes() if hasattr(v, "shape") else v) for b, v in s.items()}
             for k, s in opt.state.items()}
    groups = [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups]
    return params, state, groups


@pytest.fixture
def saved(tmp_path, data):
    """A trained TinyNet + Adam checkpoint, and a *different* trained model/optimizer to load into."""
    x, y = data
    model = TinyNet(seed=1)
    opt = optim.Adam(model.parameters(), lr=0.01)
    _train(model, opt, x, y, 3)
    path = ta.save(model, tmp_path / "good.npz", optimizer=opt)
    target = TinyNet(seed=5)
    target_opt = optim.Adam(target.parameters(), lr=0.5)
    _train(target, target_opt, x, y, 2)
    return path, _entries(path), target, target_opt


def test_bad_optimizer_part_changes_neither_model_nor_optimizer(tmp_path, saved):
    path, arrays, model, opt = saved
    before = _snapshot(model, opt)
    arrays["optim/0/exp_avg"] = np.zeros((7, 7), np.float32)         # the wrong shape for parameter 0
    bad = _write(tmp_path / "badopt.npz", arrays)
    with pytest.raises(ValueError, match=r"^load: .*'optim/0/exp_avg' declares shape \(7, 7\)"):
        ta.load(model, bad, optimizer=opt)
    assert _snapshot(model, opt) == before
    # bad hyper-parameters in the metadata: also nothing changed
    meta = json.loads(str(arrays["optim/__meta__"]))
    meta["param_groups"][0]["lr"] = "fast"
    arrays = _entries(path)
    arrays["optim/__meta__"] = np.asarray(json.dumps(meta))
    with pytest.raises(ValueError, match=r"^load: .*hyper-parameter 'lr' is 'fast'"):
        ta.load(model, _write(tmp_path / "badlr.npz", arrays), optimizer=opt)
    assert _snapshot(model, opt) == before
    ta.load(model, path, optimizer=opt)                              # the good file still loads
    assert _snapshot(model, opt) != before and opt.param_groups[0]["lr"] == 0.01


def test_huge_declared_shape_refused_before_allocating(tmp_path):
    """A 2 MiB file whose entry declares a 2 GiB array is refused from its header alone."""
    model = TinyNet()
    good = ta.save(model, tmp_path / "good.npz")
    arrays = _entries(good)
    del arrays["param/w1"]
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (1 << 19, 1 << 10)})
    bomb = _write(tmp_path / "bomb.npz", arrays, raw={"param/w1.npy": header.getvalue() + bytes(2 << 20)})
    assert bomb.stat().st_size < 3 << 20
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"^load: .*w1: checkpoint \(524288, 1024\) vs model \(3, 5\)"):
            ta.load(model, bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"load allocated {peak} bytes before refusing the file"


def test_declared_size_must_match_member_size(tmp_path):
    """Right shape, but the member is shorter (or longer) than its header says: refused, unread."""
    model = TinyNet()
    arrays = _entries(ta.save(model, tmp_path / "good.npz"))
    del arrays["param/w1"]
    buf = io.BytesIO()
    npy_format.write_array(buf, np.zeros((3, 5), np.float32))
    short = _write(tmp_path / "short.npz", arrays, raw={"param/w1.npy": buf.getvalue()[:-8]})
    with pytest.raises(ValueError, match=r"^load: .*'param/w1' is damaged: its .npy member holds"):
        ta.load(model, short)
    long_ = _write(tmp_path / "long.npz", arrays, raw={"param/w1.npy": buf.getvalue() + bytes(1 << 16)})
    with pytest.raises(ValueError, match=r"^load: .*'param/w1' is damaged"):
        ta.load(model, long_)


@pytest.mark.parametrize("dtype", ["complex64", "datetime64[s]", "timedelta64[ms]", "<U3", "S2",
                                   [("a", "<f4"), ("b", "<f4")]])
def test_non_numeric_entries_refused(tmp_path, dtype):
    model = TinyNet()
    arrays = _entries(ta.save(model, tmp_path / "good.npz"))
    arrays["param/b1"] = np.zeros(5, dtype=dtype)
    before = model.b1.numpy()
    with pytest.raises(ValueError, match=r"^load: .*'param/b1'"):
        ta.load(model, _write(tmp_path / "odd.npz", arrays))
    np.testing.assert_array_equal(model.b1.numpy(), before)


def _corruptions(good, arrays, tmp_path):
    """(name, file) pairs: every way a checkpoint can be malformed that the fuzz test tries."""
    raw = open(good, "rb").read()
    rng = np.random.default_rng(0)
    out = []

    def file(name, data):
        p = tmp_path / f"{name}.npz"
        p.write_bytes(data)
        out.append((name, p))

    def npz(name, changes=None, drop=(), raw_members=None, **kw):
        a = {k: v for k, v in arrays.items() if k not in drop}
        a.update(changes or {})
        out.append((name, _write(tmp_path / f"{name}.npz", a, raw=raw_members, **kw)))

    for n in (0, 1, 4, 22, 30, 100, len(raw) // 3, len(raw) // 2, len(raw) - 22, len(raw) - 1):
        file(f"truncated{n}", raw[:n])
    file("random", rng.bytes(len(raw)))
    file("empty_zip", open(_write(tmp_path / "e.npz", {}), "rb").read())
    for i in range(40):                               # single-byte flips all over the archive
        b = bytearray(raw)
        pos = int(rng.integers(0, len(raw)))
        b[pos] ^= int(rng.integers(1, 256))
        file(f"flip{i}", bytes(b))
    npz("no_format", drop=["__format__"])
    npz("wrong_format", {"__format__": np.asarray("something-else")})
    npz("format_not_string", {"__format__": np.zeros(3)})
    npz("no_version", drop=["__version__"])
    npz("version_float", {"__version__": np.asarray(1.5)})
    npz("version_array", {"__version__": np.arange(3)})
    npz("meta_not_json", {"optim/__meta__": np.asarray("{not json")})
    npz("meta_list", {"optim/__meta__": np.asarray("[1, 2]")})
    npz("meta_no_groups", {"optim/__meta__": np.asarray('{"class": "Adam"}')})
    npz("meta_groups_not_dicts", {"optim/__meta__": np.asarray('{"class": "Adam", "param_groups": [3]}')})
    npz("meta_too_many_params", {"optim/__meta__": np.asarray(
        '{"class": "Adam", "param_groups": [{"params": [0, 1, 2, 3, 4]}]}')})
    npz("meta_unknown_option", {"optim/__meta__": np.asarray(
        '{"class": "Adam", "param_groups": [{"params": [0, 1, 2, 3], "warp": 9}]}')})
    npz("meta_numbers", {"optim/__meta__": np.arange(4)})
    npz("no_meta", drop=["optim/__meta__"])
    npz("optim_bad_index", {"optim/99/exp_avg": np.zeros(5, np.float32)})
    npz("optim_bad_name", {"optim/x/exp_avg": np.zeros(5, np.float32)})
    npz("optim_too_deep", {"optim/0/a/b": np.zeros(5, np.float32)})
    npz("optim_step_float", {"optim/0/step": np.asarray(2.0)})
    npz("optim_step_vector", {"optim/0/step": np.arange(2)})
    npz("optim_wrong_shape", {"optim/1/exp_avg_sq": np.zeros(6, np.float32)})
    npz("param_missing", drop=["param/b1"])
    npz("param_unknown", {"param/extra": np.zeros(2, np.float32)})
    npz("param_wrong_shape", {"param/head.bias": np.zeros((2, 1), np.float32)})
    npz("param_scalar", {"param/b1": np.asarray(1.0)})
    npz("param_object", {"param/b1": np.array([None] * 5, dtype=object)})
    npz("junk_entry", raw_members={"README.txt": b"hello"})
    npz("junk_npy_entry", {"other": np.zeros(2)})
    npz("directory_entry", raw_members={"param/": b""})
    npz("bad_npy_magic", raw_members={"param/zz.npy": b"NOTNUMPY" + bytes(100)}, drop=["param/b1"])
    header = io.BytesIO()
    npy_format.write_array_header_2_0(header, {"descr": "<f8", "fortran_order": False, "shape": (1 << 40,)})
    npz("huge_declared_v2", drop=["param/b1"], raw_members={"param/b1.npy": header.getvalue() + bytes(64)})
    header = io.BytesIO()
    npy_format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (5,)})
    npz("bad_header_dict", drop=["param/b1"],
        raw_members={"param/b1.npy": header.getvalue().replace(b"'<f4'", b"'<zz'") + bytes(20)})
    # a deflated member: 32 MiB of zeros compress to ~32 KiB, declared as the (5,) bias
    bomb = io.BytesIO()
    npy_format.write_array_header_1_0(bomb, {"descr": "<f4", "fortran_order": False, "shape": (5,)})
    npz("deflate_bomb", drop=["param/b1"], compression=zipfile.ZIP_DEFLATED,
        raw_members={"param/b1.npy": bomb.getvalue() + bytes(32 << 20)})
    return out


def test_fuzz_malformed_files_all_give_load_value_error(tmp_path, saved):
    path, arrays, model, opt = saved
    before = _snapshot(model, opt)
    cases = _corruptions(path, arrays, tmp_path)
    assert len(cases) > 70
    loaded = []
    for name, bad in cases:
        try:
            ta.load(model, bad, optimizer=opt)
        except ValueError as e:
            assert str(e).startswith(f"load: {str(bad)!r}"), (name, e)
            assert _snapshot(model, opt) == before, name
        except Exception as e:      # KeyError, JSONDecodeError's cousins, MemoryError, BadZipFile, EOFError ...
            pytest.fail(f"{name}: {type(e).__name__}: {e}")
        else:
            # only a flip in bytes that carry no data (zip timestamps, attributes) may load, and then
            # it must load exactly what the good file holds
            loaded.append(name)
            got = _snapshot(model, opt)
            ta.load(model, path, optimizer=opt)
            before = _snapshot(model, opt)
            assert got[0].keys() == before[0].keys()
            assert all(got[0][k][:2] == before[0][k][:2] for k in got[0]) and got[1:] == before[1:], name
    assert all(n.startswith("flip") for n in loaded), loaded


# ------------------------------------------------------------------------------------------------
# Saving: permissions, symlinks, temporary files
# ------------------------------------------------------------------------------------------------
def test_save_never_touches_the_process_umask(tmp_path, monkeypatch):
    def no_umask(*a):
        raise AssertionError("save must not call os.umask (it races between threads)")
    old = os.umask(0o027)
    try:
        monkeypatch.setattr(os, "umask", no_umask)
        ta.save(TinyNet(), tmp_path / "m.npz")
    finally:
        monkeypatch.undo()
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "m.npz").stat().st_mode) == 0o640          # 0o666 & ~0o027


def test_save_keeps_an_existing_files_mode(tmp_path):
    path = tmp_path / "m.npz"
    ta.save(TinyNet(seed=1), path)
    os.chmod(path, 0o600)
    ta.save(TinyNet(seed=2), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    os.chmod(path, 0o644)
    ta.save(TinyNet(seed=3), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_save_through_symlink_writes_the_target(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "weights.npz"
    ta.save(TinyNet(seed=1), target)
    link = tmp_path / "latest.npz"
    link.symlink_to(target)
    new = TinyNet(seed=2)
    ta.save(new, link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    fresh = TinyNet(seed=3)
    ta.load(fresh, target)
    np.testing.assert_array_equal(fresh.w1.numpy(), new.w1.numpy())
    assert sorted(os.listdir(tmp_path)) == ["latest.npz", "real"]
    assert os.listdir(tmp_path / "real") == ["weights.npz"]
    dangling = tmp_path / "dangling.npz"                      # a link to a file not written yet
    dangling.symlink_to(tmp_path / "real" / "later.npz")
    ta.save(new, dangling)
    assert dangling.is_symlink() and (tmp_path / "real" / "later.npz").is_file()


def test_next_save_removes_temp_files_of_killed_saves(tmp_path):
    path = tmp_path / "m.npz"
    stale = tmp_path / ".m.npz.12345-0123abcd.tinyattn-tmp"   # what a save killed midway leaves
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".other.npz.12345-0123abcd.tinyattn-tmp"   # another file's: not ours to remove
    other.write_bytes(b"x")
    unrelated = tmp_path / ".m.npz.notes"
    unrelated.write_bytes(b"y")
    ta.save(TinyNet(), path)
    assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", other.name, unrelated.name])


def test_temp_file_of_a_running_save_is_left_alone(tmp_path):
    fcntl = pytest.importorskip("fcntl")
    path = tmp_path / "m.npz"
    busy = tmp_path / ".m.npz.999-00ff00ff.tinyattn-tmp"       # another thread/process mid-save
    busy.write_bytes(b"in progress")
    with open(busy, "rb") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        ta.save(TinyNet(), path)
        assert busy.exists()
    ta.save(TinyNet(), path)                                    # now unlocked, i.e. stale
    assert sorted(os.listdir(tmp_path)) == ["m.npz"]


def test_fortran_order_and_int_entries_load(tmp_path):
    """Valid variants another writer may produce: Fortran order, float64, ints (cast to the model)."""
    model = TinyNet()
    arrays = _entries(ta.save(model, tmp_path / "good.npz"))
    w1 = np.asfortranarray(np.arange(15, dtype=np.float64).reshape(3, 5))
    arrays["param/w1"] = w1
    arrays["param/b1"] = np.arange(5, dtype=np.int16)
    ta.load(model, _write(tmp_path / "f.npz", arrays))
    np.testing.assert_array_equal(model.w1.numpy(), w1.astype(np.float32))
    np.testing.assert_array_equal(model.b1.numpy(), np.arange(5, dtype=np.float32))
    assert model.w1.dtype == np.float32
