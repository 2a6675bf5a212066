"""Checkpoints: a Module's weights (and optionally an optimizer's state) in one ``.npz`` file.

File layout (a NumPy ``.npz``, i.e. a zip of ``.npy`` arrays; no pickled objects anywhere):

    __format__              "tinyattn-checkpoint"   (a 0-d unicode array)
    __version__             1                       (FORMAT_VERSION)
    param/<name>            one array per entry of ``module.state_dict()`` ("encoder.cell.kernel" ...)
    optim/__meta__          JSON: optimizer class name and param_groups (hyper-parameters)
    optim/<index>/<buffer>  the optimizer's per-parameter arrays (``exp_avg`` ...); ``step`` as int64

Saving is atomic: the file is written to a temporary file in the same directory as the target
(``.<name>.<pid>-<hex>.tinyattn-tmp``), flushed and fsync-ed, then renamed over the target with
``os.replace`` and the directory fsync-ed. A crash midway leaves the previous checkpoint untouched;
the temporary file is removed when the failure is a Python exception, and the temporary files that
killed saves left behind are removed by the next save to the same path (a temporary file that a
live save still holds locked is left alone). The temporary file is created with mode 0o666, so the
kernel applies the process's umask; a file that already exists keeps its mode. Saving through a
symbolic link writes the link's target (the link stays a link).

Loading never trusts the file: each entry's ``.npy`` header (dtype, shape, byte order) is read and
checked against the model and the optimizer *before* any array data is read or decompressed, so a
small file declaring a huge array is refused without allocating it; only real numeric dtypes (bool,
int, uint, float) are accepted (object, structured, complex, datetime, string entries are refused;
no pickle is ever run); everything (model and optimizer state) is checked before either is changed,
so a failed ``load`` leaves both exactly as they were. Every malformed file raises ``ValueError``
with a message starting ``load: <path>``.
"""
import json
import os
import re
import secrets
import stat
import zipfile

import numpy as np
from numpy.lib import format as npy_format

from . import backend
from .nn.module import state_problems

try:                                      # advisory locks mark a temporary file as in use (POSIX)
    import fcntl
except ImportError:                       # pragma: no cover  (Windows)
    fcntl = None

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
_MAGIC = "tinyattn-checkpoint"
_TMP_SUFFIX = ".tinyattn-tmp"
_MAX_META_CHARS = 1 << 20                 # optim/__meta__ JSON: at most 1 Mi characters
_MAX_HEADER = 10000                       # a .npy header longer than this is refused (NumPy's own limit)
_NUMERIC_KINDS = "biuf"                   # bool, signed/unsigned int, float


# ------------------------------------------------------------------------------------------------
# save
# ------------------------------------------------------------------------------------------------
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


def _tmp_pattern(base):
    return re.compile(r"\." + re.escape(base) + r"\.\d+-[0-9a-f]{8}" + re.escape(_TMP_SUFFIX) + r"\Z")


def _lock(fd, blocking):
    """Take an exclusive advisory lock on ``fd``; False when another live save holds it."""
    if fcntl is None:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        return True
    except OSError:
        return False


def _remove_stale_temps(directory, base, own):
    """Remove the temporary files of earlier, killed saves to ``directory/base``.

    A save holds an exclusive ``flock`` on its temporary file until it is renamed; a killed process
    loses its locks, so a temporary file whose lock can be taken is stale. (Without ``fcntl``, a
    temporary file is stale when the process id in its name is not running.)"""
    pattern = _tmp_pattern(base)
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        if name == own or not pattern.match(name):
            continue
        full = os.path.join(directory, name)
        if fcntl is None:                 # pragma: no cover  (Windows)
            pid = int(name[len(base) + 2:].split("-", 1)[0])
            try:
                os.kill(pid, 0)
                continue                  # that process is alive: its save may still be running
            except OSError:
                pass
            try:
                os.unlink(full)
            except OSError:
                pass
            continue
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            if _lock(fd, blocking=False) and stat.S_ISREG(os.fstat(fd).st_mode):
                try:
                    os.unlink(full)
                except OSError:
                    pass
        finally:
            os.close(fd)


def save(module, path, optimizer=None):
    """Write ``module``'s parameters (by name) — and ``optimizer``'s state, if given — to ``path``.

    module: a Module (its ``state_dict()``; arrays are stored as NumPy, from the GPU too);
    path: the file name (written exactly as given; ``.npz`` is the usual suffix). A symbolic link
    is followed: its target is (re)written and the link stays a link;
    optimizer: an ``tinyattn.optim`` optimizer over the module's parameters, or None.
    The write is atomic (temporary file + fsync + ``os.replace`` + fsync of the directory); an
    existing file keeps its permission bits, a new one gets 0o666 minus the umask. Temporary files
    left by killed saves to the same path are removed. Returns ``path``.
    """
    path = os.fspath(path)
    arrays = {"__format__": np.asarray(_MAGIC), "__version__": np.asarray(FORMAT_VERSION, dtype=np.int64)}
    for name, a in module.state_dict().items():
        arrays[f"param/{name}"] = backend.as_numpy(a)
    if optimizer is not None:
        arrays.update(_optimizer_arrays(optimizer))

    target = os.path.realpath(path)       # through symlinks: write the file the link points to
    directory, base = os.path.split(target)
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    flags = os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    while True:
        tmp_name = f".{base}.{os.getpid()}-{secrets.token_hex(4)}{_TMP_SUFFIX}"
        tmp = os.path.join(directory, tmp_name)
        try:
            fd = os.open(tmp, flags, 0o666)  # the kernel applies the umask (no os.umask race)
            break
        except FileExistsError:          # pragma: no cover  (a 32-bit random name collided)
            continue
    try:
        _lock(fd, blocking=True)          # marks the temporary file as in use (see _remove_stale_temps)
        _remove_stale_temps(directory, base, tmp_name)
        if mode is not None:
            os.chmod(tmp, mode)           # overwriting: keep the existing file's permissions
        with os.fdopen(fd, "wb") as f:
            fd = None
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, target)       # still locked until the file is closed
    except BaseException:
        if fd is not None:
            os.close(fd)
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


# ------------------------------------------------------------------------------------------------
# load: read headers, validate everything, then read data, then apply
# ------------------------------------------------------------------------------------------------
class _Entry:
    """One ``.npy`` member of the archive, known by its header only (nothing decompressed yet)."""

    def __init__(self, info, shape, fortran, dtype, offset):
        self.info, self.shape, self.fortran, self.dtype, self.offset = info, shape, fortran, dtype, offset

    @property
    def nbytes(self):
        return int(np.prod(self.shape, dtype=object)) * self.dtype.itemsize


def _fail(path, msg):
    return ValueError(f"load: {path!r} {msg}")


def _read_header(z, info, path, key):
    """The (shape, fortran_order, dtype) an entry declares, reading only its header."""
    with z.open(info) as f:
        version = npy_format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(f, max_header_size=_MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(f, max_header_size=_MAX_HEADER)
        else:
            raise _fail(path, f"entry {key!r} has .npy format version {version}, which tinyattn does not "
                              f"read (version 3.0 is only used for structured arrays)")
        offset = f.tell()
    return shape, fortran, dtype, offset


def _index(path):
    """Open the archive and read every entry's header: ``(zipfile, {key: _Entry})``."""
    try:
        z = zipfile.ZipFile(path)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as e:
        with open(path, "rb") as f:
            head = f.read(6)
        if head == b"\x93NUMPY":
            raise _fail(path, "holds a single array (.npy), not a tinyattn .npz checkpoint") from None
        raise _fail(path, f"is not a readable .npz checkpoint ({type(e).__name__}: {e})") from None
    entries = {}
    try:
        for info in z.infolist():
            name = info.filename
            if info.is_dir() or not name.endswith(".npy"):
                raise _fail(path, f"has an entry {name!r} that is not a .npy array; a tinyattn checkpoint "
                                  f"holds only .npy entries")
            key = name[:-len(".npy")]
            if key in entries:
                raise _fail(path, f"has the entry {key!r} twice")
            try:
                shape, fortran, dtype, offset = _read_header(z, info, path, key)
            except ValueError as e:
                if str(e).startswith("load: "):
                    raise
                raise _fail(path, f"entry {key!r} has a damaged .npy header ({e})") from None
            except Exception as e:
                raise _fail(path, f"entry {key!r} is damaged ({type(e).__name__}: {e})") from None
            entries[key] = _Entry(info, tuple(int(n) for n in shape), bool(fortran), dtype, offset)
    except BaseException:
        z.close()
        raise
    return z, entries


def _check_dtype(path, key, e, kinds):
    dt = e.dtype
    if dt.hasobject:
        raise _fail(path, f"entry {key!r} is an object array (pickled Python objects); refusing to load it "
                          f"(no pickle is ever run)")
    if dt.fields is not None or dt.subdtype is not None or dt.kind not in kinds:
        what = {"c": "complex", "M": "datetime", "m": "timedelta", "V": "structured/void", "S": "bytes",
                "U": "string", "f": "float", "i": "integer", "u": "unsigned integer", "b": "bool"}
        raise _fail(path, f"entry {key!r} has dtype {dt} ({what.get(dt.kind, dt.kind)}); expected "
                          f"{' or '.join(what[k] for k in kinds)}")


def _check_entry(path, key, e, kinds, shape):
    _check_dtype(path, key, e, kinds)
    if e.shape != tuple(shape):
        raise _fail(path, f"entry {key!r} declares shape {e.shape}, expected {tuple(shape)}")
    expected = e.offset + e.nbytes
    if e.info.file_size != expected:
        raise _fail(path, f"entry {key!r} is damaged: its .npy member holds {e.info.file_size} bytes, "
                          f"but its header declares {expected} (shape {e.shape}, dtype {e.dtype})")


def _read_data(z, path, key, e):
    """The array of one validated entry (exactly ``nbytes`` read; the zip CRC checked)."""
    try:
        with z.open(e.info) as f:
            f.read(e.offset)
            raw = f.read(e.nbytes)
            rest = f.read(1)              # reaching the end makes zipfile check the CRC
    except Exception as err:
        raise _fail(path, f"entry {key!r} is damaged ({type(err).__name__}: {err})") from None
    if len(raw) != e.nbytes or rest:
        raise _fail(path, f"entry {key!r} is damaged: {len(raw) + len(rest)} data bytes, header declares {e.nbytes}")
    a = np.frombuffer(raw, dtype=e.dtype)
    return a.reshape(e.shape[::-1]).T.copy() if e.fortran else a.reshape(e.shape).copy()


def _read_string(z, path, key, entries, max_chars):
    e = entries[key]
    _check_dtype(path, key, e, "U")
    if e.shape != () or e.dtype.itemsize > 4 * max_chars:
        raise _fail(path, f"entry {key!r} must be one string of at most {max_chars} characters, got shape "
                          f"{e.shape} and dtype {e.dtype}")
    _check_entry(path, key, e, "U", ())
    return str(_read_data(z, path, key, e)[()])


def _plan_optimizer(path, z, entries, optimizer):
    """Validate the optimizer part (headers and metadata only); returns (meta, {key: (i, name, entry)})."""
    if "optim/__meta__" not in entries:
        raise _fail(path, "has no optimizer state (it was saved without optimizer=)")
    text = _read_string(z, path, "optim/__meta__", entries, _MAX_META_CHARS)
    try:
        meta = json.loads(text)
    except ValueError as e:
        raise _fail(path, f"has damaged optimizer metadata (optim/__meta__ is not JSON: {e})") from None
    name = type(optimizer).__name__
    if not isinstance(meta, dict) or not isinstance(meta.get("class"), str) \
            or not isinstance(meta.get("param_groups"), list):
        raise _fail(path, "has damaged optimizer metadata (optim/__meta__ must be a JSON object with "
                          "'class' (a string) and 'param_groups' (a list))")
    if meta["class"] != name:
        raise _fail(path, f"holds {meta['class']} state, not {name}")
    groups = meta["param_groups"]
    if len(groups) != len(optimizer.param_groups):
        raise _fail(path, f"has {len(groups)} optimizer parameter groups; {name} has {len(optimizer.param_groups)}")
    for g, (mine, theirs) in enumerate(zip(optimizer.param_groups, groups)):
        if not isinstance(theirs, dict) or not isinstance(theirs.get("params"), list):
            raise _fail(path, f"has damaged optimizer metadata (param_groups[{g}] must be an object with 'params')")
        if len(theirs["params"]) != len(mine["params"]):
            raise _fail(path, f"optimizer group {g} has {len(theirs['params'])} parameters in the file, "
                              f"{len(mine['params'])} in {name}")
        for k, v in theirs.items():
            if k == "params":
                continue
            if k not in mine:
                raise _fail(path, f"optimizer group {g} has an unknown hyper-parameter {k!r} for {name} "
                                  f"(known: {sorted(x for x in mine if x != 'params')})")
            if not _same_kind(mine[k], v):
                raise _fail(path, f"optimizer group {g} hyper-parameter {k!r} is {v!r}; {name} expects a value "
                                  f"like {mine[k]!r}")
    params = optimizer.params()
    plan = {}
    for key, e in entries.items():
        if not key.startswith("optim/") or key == "optim/__meta__":
            continue
        parts = key.split("/")
        if len(parts) != 3 or not parts[1].isdigit() or not re.fullmatch(r"[A-Za-z_]\w*", parts[2]):
            raise _fail(path, f"has an unexpected optimizer entry {key!r} (expected optim/<index>/<buffer>)")
        i = int(parts[1])
        if i >= len(params):
            raise _fail(path, f"has optimizer state for parameter {i}, but {name} has {len(params)} parameters")
        if parts[2] == "step":
            _check_entry(path, key, e, "iu", ())
        else:
            _check_entry(path, key, e, "biuf", params[i].shape)
        plan[key] = (i, parts[2], e)
    return meta, plan


def _same_kind(mine, theirs):
    """Whether a hyper-parameter read from JSON can stand for the optimizer's own value."""
    def number(x):
        return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, (bool, np.bool_))
    if isinstance(mine, (bool, np.bool_)):
        return isinstance(theirs, bool)
    if number(mine):
        return number(theirs)
    if mine is None:
        return theirs is None or number(theirs)
    if isinstance(mine, (tuple, list)):
        return isinstance(theirs, list) and len(theirs) == len(mine) and \
            all(_same_kind(a, b) for a, b in zip(mine, theirs))
    if isinstance(mine, str):
        return isinstance(theirs, str)
    return True


def load(module, path, optimizer=None, strict=True):
    """Load the weights saved by :func:`save` into ``module`` (and the state into ``optimizer``).

    The module must already have its parameters (a lazily built model: call it once on a sample
    input first). Names and shapes are checked (``strict=False`` skips missing and unexpected names;
    shapes must always match); values are cast to each parameter's dtype and device. Returns ``module``.

    Everything is checked before anything changes: first every entry's ``.npy`` header (dtype,
    shape, size — no array data is read and nothing large is allocated for a file that does not fit),
    then the data; only then are the module and the optimizer updated. On any error both are left
    exactly as they were.

    Errors: ``FileNotFoundError``; ``ValueError("load: <path> ...")`` for a non-npz, truncated,
    damaged, foreign or pickled file, an unexpected entry, a non-numeric (object, structured,
    complex, datetime, string) array, a name/shape mismatch, bad optimizer metadata, or an optimizer
    requested from a file that has none.
    """
    path = os.fspath(path)
    try:
        z, entries = _index(path)
        with z:
            return _load(module, path, optimizer, strict, z, entries)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except ValueError as e:
        if str(e).startswith("load: "):
            raise
        raise _fail(path, f"is damaged ({type(e).__name__}: {e})") from None
    except Exception as e:                # a damaged archive can fail anywhere in zipfile/NumPy parsing
        raise _fail(path, f"is damaged ({type(e).__name__}: {e})") from None


def _load(module, path, optimizer, strict, z, entries):
    if "__format__" not in entries:
        raise _fail(path, f"is an .npz file but not a tinyattn checkpoint (no '__format__' = {_MAGIC!r} entry)")
    if _read_string(z, path, "__format__", entries, 64) != _MAGIC:
        raise _fail(path, f"is an .npz file but not a tinyattn checkpoint (its '__format__' is not {_MAGIC!r})")
    if "__version__" not in entries:
        raise _fail(path, "has no '__version__' entry (damaged checkpoint)")
    _check_entry(path, "__version__", entries["__version__"], "iu", ())
    version = int(_read_data(z, path, "__version__", entries["__version__"])[()])
    if version > FORMAT_VERSION:
        raise _fail(path, f"has checkpoint format version {version}; this tinyattn reads versions up to "
                          f"{FORMAT_VERSION} (upgrade tinyattn)")
    for key in entries:
        if key not in ("__format__", "__version__") and not key.startswith(("param/", "optim/")):
            raise _fail(path, f"has an unexpected entry {key!r} (a tinyattn checkpoint holds __format__, "
                              f"__version__, param/<name> and optim/... entries)")
        _check_dtype(path, key, entries[key], "U" if key in ("__format__", "optim/__meta__") else _NUMERIC_KINDS)

    # 1. the model part: names, dtypes, shapes, sizes -- headers only
    params = {k[len("param/"):]: e for k, e in entries.items() if k.startswith("param/")}
    own = dict(module.named_state())            # parameters and buffers (state_dict()'s names)
    if params and not own:
        raise _fail(path, f"holds weights but {type(module).__name__} has no parameters yet (lazily built "
                          f"layers create them on their first call): call the model once on a sample input, "
                          f"then load")
    problems = state_problems({n: t.shape for n, t in own.items()},
                              {n: e.shape for n, e in params.items()}, strict)
    if problems:
        raise _fail(path, f"does not fit {type(module).__name__}: " + "; ".join(problems))
    for n in own:
        if n in params:
            _check_entry(path, f"param/{n}", params[n], _NUMERIC_KINDS, own[n].shape)

    # 2. the optimizer part -- headers and metadata only
    meta = plan = None
    if optimizer is not None:
        meta, plan = _plan_optimizer(path, z, entries, optimizer)

    # 3. read the data (CRC-checked); nothing has been changed yet
    state = {n: _read_data(z, path, f"param/{n}", params[n]) for n in own if n in params}
    opt_state = {}
    if optimizer is not None:
        for key, (i, buf, e) in plan.items():
            opt_state.setdefault(i, {})[buf] = _read_data(z, path, key, e)

    # 4. apply, keeping what is needed to undo (the steps above make a failure here unexpected)
    old_data = [(p, p.data) for p in own.values()]
    if optimizer is not None:
        old_opt_state = optimizer.state
        old_groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
    try:
        module.load_state_dict(state, strict=strict)
        if optimizer is not None:
            optimizer.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
    except BaseException as e:
        for p, d in old_data:
            p.data = d
        if optimizer is not None:
            optimizer.state = old_opt_state
            for g, old in zip(optimizer.param_groups, old_groups):
                for k in [k for k in g if k != "params"]:
                    del g[k]
                g.update(old)
        if isinstance(e, ValueError) and not str(e).startswith("load: "):
            raise _fail(path, f"could not be applied ({e}); nothing was changed") from None
        raise
    return module
