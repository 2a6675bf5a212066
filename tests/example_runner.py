"""Running an example script in a subprocess, as a reader would (shared by the example tests).

On ``--backend=strict`` the example runs on the strict CuPy stand-in (tests/strict_run.py)."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def run(script, *args, timeout=300):
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONPATH=ROOT)
    env.pop("DISPLAY", None)
    env.pop("WAYLAND_DISPLAY", None)
    # On ``--backend=strict`` the example runs on the strict CuPy stand-in (tests/strict_run.py).
    runner = [os.path.join(ROOT, "tests", "strict_run.py")] if _on_strict() else []
    proc = subprocess.run([sys.executable, *runner, os.path.join(EXAMPLES, script), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env, cwd=ROOT)
    return proc.returncode, proc.stdout + proc.stderr


def _on_strict():
    import strict_xp
    import tinyattn as ta
    return ta.backend.default_xp() is strict_xp


def has_matplotlib():
    try:
        import matplotlib  # noqa: F401
        return True
    except ImportError:
        return False
