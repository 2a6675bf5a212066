"""Checkpoints: a Module's weights (and optionally an optimizer's state) in one ``.npz`` file.

File layout (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays; no pickled objects anywhere):

    __format__              "tinyattn-checkpoint"   (a 0-d unicode array)
    __version__             1                       (FORMAT_VERSION)
    param/<name>            one array per entry of ``module.state_dict()`` ("encoder.cell.kernel" ...)
    optim/__meta__          JSON: optimizer class name and param_groups (hyper-parameters)
    optim/<index>/<buffer>  the optimizer's per-parameter arrays (``exp_avg`` ...); ``step`` as int64

Saving is atomic: the file is written to a temporary file in the same directory, flushed and
fsync-ed, then renamed over ``path`` with ``os.replace``. A crash midway leaves the previous
checkpoint untouched (and the temporary file is removed when the failure is a Python exception).

Loading uses ``np.load(allow_pickle=False)``: a file that holds object arrays (which could run code
when unpickled) is refused.
"""
import json
import os
import tempfile
import zipfile

import numpy as np

from . import backend

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "tinyattn-checkpoint"


def _optimizer_arrays(optimizer):
    sd = optimizer.state_dict()
    arrays = {}
    for i, s in sd["state"].items():
        for k, v in s.items():
            arrays[f"optim/{i}/{k}"] = np.asarray(v, dtype=np.int64) if k == "step" else backend.as_numpy(v)
    meta = {"class": type(optimizer).__name__, "param_groups": sd["param_groups"]}
    as_json = json.dumps(meta, default=lambda o: o.item() if hasattr(o, "item") else str(o))   # NumPy scalars
    arrays["optim/__meta__"] = np.asarray(as_json)
    return arrays


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save(module, path, optimizer=None):
    """Write ``module``'s parameters (by name) — and ``optimizer``'s state, if given — to ``path``.

    module: a Module (its ``state_dict()``; arrays are stored as NumPy, from the GPU too);
    path: the file name (written exactly as given; ``.npz`` is the usual suffix);
    optimizer: an ``tinyattn.optim`` optimizer over the module's parameters, or None.
    The write is atomic (temporary file + fsync + ``os.replace``). Returns ``path``.
    """
    path = os.fspath(path)
    arrays = {"__format__": np.asarray(_MAGIC), "__version__": np.asarray(FORMAT_VERSION, dtype=np.int64)}
    for name, a in module.state_dict().items():
        arrays[f"param/{name}"] = backend.as_numpy(a)
    if optimizer is not None:
        arrays.update(_optimizer_arrays(optimizer))
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())     # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:                                   # make the rename itself durable (POSIX)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def _read(path):
    """All arrays of a checkpoint, as a dict, with clear errors for foreign or damaged files."""
    try:
        npz = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise ValueError(f"load: {path!r} is not a readable .npz checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):
        raise ValueError(f"load: {path!r} holds a single array (.npy), not a tinyattn .npz checkpoint")
    arrays = {}
    with npz:
        for key in npz.files:
            try:
                arrays[key] = npz[key]
            except ValueError as e:
                if "allow_pickle" in str(e) or "Object arrays" in str(e):
                    raise ValueError(f"load: {path!r} entry {key!r} is an object array (pickled Python "
                                     f"objects); refusing to load it (allow_pickle=False)") from None
                raise ValueError(f"load: {path!r} entry {key!r} is damaged ({e})") from None
            except (OSError, zipfile.BadZipFile, EOFError) as e:
                raise ValueError(f"load: {path!r} entry {key!r} is damaged ({type(e).__name__}: {e})") from None
    if arrays.get("__format__") is None or str(arrays["__format__"]) != _MAGIC:
        raise ValueError(f"load: {path!r} is an .npz file but not a tinyattn checkpoint "
                         f"(no '__format__' = {_MAGIC!r} entry)")
    version = int(arrays["__version__"])
    if version > FORMAT_VERSION:
        raise ValueError(f"load: {path!r} has checkpoint format version {version}; this tinyattn reads "
                         f"versions up to {FORMAT_VERSION} (upgrade tinyattn)")
    return arrays


def load(module, path, optimizer=None, strict=True):
    """Load the weights saved by :func:`save` into ``module`` (and the state into ``optimizer``).

    The module must already have its parameters (a lazily built model: call it once on a sample
    input first). Names and shapes are checked by ``module.load_state_dict(strict=strict)``; values
    are cast to each parameter's dtype and device. Returns ``module``.
    Errors: ``FileNotFoundError``; ``ValueError`` for a non-npz, damaged, foreign or pickled file, a
    name/shape mismatch, or an optimizer requested from a file that has none.
    """
    path = os.fspath(path)
    arrays = _read(path)
    state = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
    if state and not module.parameters():
        raise ValueError(f"load: {type(module).__name__} has no parameters yet (lazily built layers create "
                         f"them on their first call): call the model once on a sample input, then load")
    opt_state = meta = None
    if optimizer is not None:              # check the optimizer state before the model is touched
        if "optim/__meta__" not in arrays:
            raise ValueError(f"load: {path!r} has no optimizer state (it was saved without optimizer=)")
        meta = json.loads(str(arrays["optim/__meta__"]))
        if meta["class"] != type(optimizer).__name__:
            raise ValueError(f"load: {path!r} holds {meta['class']} state, not {type(optimizer).__name__}")
        opt_state = {}
        for key, v in arrays.items():
            parts = key.split("/")
            if len(parts) == 3 and parts[0] == "optim" and parts[1] != "__meta__":
                opt_state.setdefault(int(parts[1]), {})[parts[2]] = v
    module.load_state_dict(state, strict=strict)
    if optimizer is not None:
        optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    return module
