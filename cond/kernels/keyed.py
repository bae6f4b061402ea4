"""Keyed random numbers: ``u(seed, i)`` a pure function of (seed, i), in NumPy.

A sample or a sketch therefore does not depend on how rows are chunked, on threads or on
the machine. splitmix64 (Steele, Lea & Flood, OOPSLA 2014) on uint64 arrays, whose
arithmetic wraps modulo 2**64 as the generator needs; NumPy rather than numba because
these are the only kernels an exact leverage sample needs, and loading numba costs a
process about 0.5 s (its import and cache). The sketch's hash kernel
(:func:`cond.kernels.sketching.embedding_hashes`) draws the same numbers inside numba,
where it needs them 20 times faster; a test keeps the two equal bit for bit.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 20  # values per step: bounds the temporaries


def _splitmix64(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


def keyed_uniforms(seed, start, count):
    """u_i in [0, 1) for i = start .. start + count - 1, a pure function of (seed, i).

    Parameters
    ----------
    seed : int
    start, count : int

    Returns
    -------
    ndarray of shape (count,)
        53 random bits each.
    """
    count = int(count)
    out = np.empty(count)
    with np.errstate(over="ignore"):
        key = _splitmix64(np.array([int(seed) % (1 << 64)], dtype=np.uint64))[0]
        for first in range(0, count, _CHUNK):
            i = np.arange(start + first, start + min(first + _CHUNK, count), dtype=np.uint64)
            bits = _splitmix64(key ^ _splitmix64(i))
            out[first : first + len(i)] = (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)
    return out


def bernoulli_keep(probs, seed, start):
    """Indices (local to the block) kept by independent Bernoulli(probs[i]) draws keyed by
    (seed, start + i), ascending.

    Parameters
    ----------
    probs : ndarray of shape (b,)
    seed, start : int

    Returns
    -------
    ndarray of shape (k,), int64
    """
    return np.flatnonzero(keyed_uniforms(seed, start, probs.shape[0]) < probs).astype(np.int64)
