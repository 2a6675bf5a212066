"""Run a script on the strict CuPy stand-in: ``python tests/strict_run.py SCRIPT [ARGS...]``.

The examples run in subprocesses, so ``pytest --backend=strict`` cannot plug the stand-in into them
directly; tests/test_examples.py starts them through this file instead. It installs
tests/strict_xp.py as tinyattn's device module, makes the device backend the default (as
``use_backend("cupy")`` on a GPU machine), runs SCRIPT as ``__main__`` and reports the number of
device->host syncs on stderr.
"""
import atexit
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import strict_xp  # noqa: E402
from tinyattn import backend  # noqa: E402

backend._set_device_module(strict_xp, strict_xp.ndarray, asnumpy=strict_xp.asnumpy,
                           scatter_add=strict_xp.scatter_add, special=strict_xp.special, name="strict_xp")
backend.use_backend("cupy")
atexit.register(lambda: print(f"strict_xp: {strict_xp.syncs} device->host syncs "
                              f"({dict(strict_xp.sync_counts)})", file=sys.stderr))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
