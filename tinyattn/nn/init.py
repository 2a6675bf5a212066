"""Weight initializers with Keras's names and formulas. Each returns an array on the current backend
drawn from tinyattn's seeded generator (``tinyattn.manual_seed``).
"""
import numpy as np

from .. import backend


def _fans(shape):
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive = int(np.prod(shape[:-2]))          # conv kernels (k, in, out): Keras's convention
    return shape[-2] * receptive, shape[-1] * receptive


def glorot_uniform(shape, dtype=np.float32):
    """U(−l, l), l = √(6 / (fan_in + fan_out)) (Keras's default kernel initializer)."""
    fan_in, fan_out = _fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return uniform(shape, -limit, limit, dtype)


def uniform(shape, low=-0.05, high=0.05, dtype=np.float32):
    xp = backend.default_xp()
    return xp.asarray(backend.rng(xp).uniform(low, high, size=shape)).astype(dtype)


def normal(shape, mean=0.0, std=0.05, dtype=np.float32):
    xp = backend.default_xp()
    return xp.asarray(backend.rng(xp).standard_normal(size=shape) * std + mean).astype(dtype)


def orthogonal(shape, gain=1.0, dtype=np.float32):
    """A (semi-)orthogonal matrix from the QR of a normal draw (Keras's recurrent initializer)."""
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    a = backend.rng(np).standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return backend.default_xp().asarray((gain * q[:rows, :cols]).reshape(shape)).astype(dtype)


def zeros(shape, dtype=np.float32):
    return backend.default_xp().zeros(shape, dtype=dtype)


def ones(shape, dtype=np.float32):
    return backend.default_xp().ones(shape, dtype=dtype)


def get(name):
    """An initializer by Keras name ('glorot_uniform', 'orthogonal', 'zeros', 'ones', ...)."""
    table = {"glorot_uniform": glorot_uniform, "orthogonal": orthogonal, "zeros": zeros, "ones": ones,
             "uniform": uniform, "random_uniform": uniform, "normal": normal, "random_normal": normal}
    if callable(name):
        return name
    if name not in table:
        raise ValueError(f"unknown initializer {name!r}; known: {sorted(table)}")
    return table[name]
