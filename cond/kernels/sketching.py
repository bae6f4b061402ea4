"""Sketching and sampling kernels: sparse embeddings, the Walsh-Hadamard transform, inverse-CDF counts.

All random choices are inputs (hash buckets, signs) or derived from a counter:
the keyed uniform of (seed, i) (:mod:`cond.kernels.keyed`, whose NumPy version
the rest of cond uses; ``_keyed_uniforms`` here is the same function compiled,
for the hash kernel), so a sketch does not depend on how rows are chunked or on
threads.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from cond.kernels import JIT_OPTIONS

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)


@njit(**JIT_OPTIONS)
def _splitmix64(x):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * _MIX1
    x = (x ^ (x >> np.uint64(27))) * _MIX2
    return x ^ (x >> np.uint64(31))


@njit(**JIT_OPTIONS)
def _keyed_uniforms(seed, start, count):
    """u_i in [0, 1) for i = start .. start + count - 1, a pure function of (seed, i)."""
    out = np.empty(count)
    key = _splitmix64(np.uint64(seed))
    for j in range(count):
        bits = _splitmix64(key ^ _splitmix64(np.uint64(start + j)))
        out[j] = (bits >> np.uint64(11)) * (1.0 / 9007199254740992.0)  # 53 random bits
    return out


@njit(**JIT_OPTIONS)
def sparse_embed_accumulate(out, block, buckets, signs, lo, hi):
    """out[buckets[i, t]] += signs[i, t] * block[i] for every row i and each of its t hashes
    whose bucket is in [lo, hi).

    out: (s, d) accumulator; block: (b, d); buckets, signs: (b, t). With t = 1 this is
    CountSketch; t > 1 with signs scaled by 1/sqrt(t) is a sparse (OSNAP-style) embedding.
    Threads that take disjoint bucket ranges write disjoint rows of ``out``, and each
    entry still gets its terms in row order: the sum does not depend on the split.
    """
    b, d = block.shape
    t = buckets.shape[1]
    for i in range(b):
        for h in range(t):
            row = buckets[i, h]
            if row < lo or row >= hi:
                continue
            sg = signs[i, h]
            for j in range(d):
                out[row, j] += sg * block[i, j]
    return out


@njit(**JIT_OPTIONS)
def embedding_hashes(seed, start, count, nonzeros, rows):
    """Buckets (count x nonzeros, in [0, rows)) and signs (+-1/sqrt(nonzeros)) of rows
    ``start`` .. ``start + count - 1``, from the keyed uniforms of (seed, 2 nonzeros i + k)."""
    u = _keyed_uniforms(seed, start * 2 * nonzeros, 2 * nonzeros * count)
    buckets = np.empty((count, nonzeros), dtype=np.int64)
    signs = np.empty((count, nonzeros))
    scale = 1.0 / np.sqrt(nonzeros)
    for i in range(count):
        for h in range(nonzeros):
            buckets[i, h] = min(int(u[i * 2 * nonzeros + h] * rows), rows - 1)
            signs[i, h] = -scale if u[i * 2 * nonzeros + nonzeros + h] < 0.5 else scale
    return buckets, signs


@njit(**JIT_OPTIONS)
def fwht(a):
    """In-place unnormalised fast Walsh-Hadamard transform along axis 0 (length a power of 2)."""
    n = a.shape[0]
    h = 1
    while h < n:
        for i in range(0, n, 2 * h):
            for j in range(i, i + h):
                for k in range(a.shape[1]):
                    x = a[j, k]
                    y = a[j + h, k]
                    a[j, k] = x + y
                    a[j + h, k] = x - y
        h *= 2
    return a


@njit(**JIT_OPTIONS)
def counts_from_sorted_uniforms(masses, sorted_u, cursor, mass_before):
    """With-replacement sampling by inverse CDF, one block of rows at a time.

    ``sorted_u`` are the draws (ascending, in [0, 1)) scaled by the total mass;
    ``cursor`` is the first draw not yet placed and ``mass_before`` the mass of
    earlier blocks. Returns (counts for this block's rows, new cursor, new mass).
    """
    counts = np.zeros(masses.shape[0], dtype=np.int64)
    acc = mass_before
    k = cursor
    for i in range(masses.shape[0]):
        acc += masses[i]
        while k < sorted_u.shape[0] and sorted_u[k] < acc:
            counts[i] += 1
            k += 1
    return counts, k, acc
