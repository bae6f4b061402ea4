"""Sketched leverage scores on any array namespace: NumPy here, CuPy for ``--device cuda``.

The same algorithm and the same random numbers as
:func:`cond.linalg.sketch.sketched_leverage` (buckets and signs drawn on the host
by :func:`cond.kernels.sketching.embedding_hashes`, the JL matrix from the same
seeded generator), written with array operations instead of numba kernels so
that it runs where the array lives: each row block is moved to the device once per pass, the sketch, its QR,
the rank basis and the JL product stay there. Accumulation order differs from
the kernel's, so scores agree to rounding (tests: 1e-10 relative when BLAS runs the
float32 JL product on one thread as cond's CPU path does, 1e-6 otherwise), not bit for
bit. Accuracy policy (DESIGN.md): the sketch and its QR in float64, the JL
product in float32 as on the CPU.
"""

from __future__ import annotations

import numpy as np

from cond.linalg.leverage import DEFAULT_RCOND, Scores
from cond.linalg.sketch.sizes import sketch_sizes


def sketched_leverage_xp(xp, blocks, n, d, seed=0, rcond=DEFAULT_RCOND) -> Scores:
    """Approximate leverage scores (DMMW 2012) computed with the array module ``xp``; reached
    through :func:`cond.linalg.sketch.sketched_leverage` with ``xp=``.

    Parameters
    ----------
    xp : module
        ``numpy`` or ``cupy``.
    blocks : callable
        Returns a fresh iterator of ``(start, X)`` host blocks (one call per pass).
    n, d : int
    seed : int
    rcond : float, optional

    Returns
    -------
    Scores
        Values on the host (a NumPy array).
    """
    from cond.kernels.sketching import embedding_hashes

    rows, s, k = sketch_sizes(n, d)
    sketch = xp.zeros((rows, d))
    for start, x in blocks():
        b = len(x)
        host_buckets, host_signs = embedding_hashes(seed, start, b, s, rows)
        buckets, signs = xp.asarray(host_buckets), xp.asarray(host_signs)
        xd = xp.asarray(x, dtype=xp.float64)
        for h in range(s):
            xp.add.at(sketch, buckets[:, h], signs[:, h, None] * xd)  # ufunc.at: CuPy >= 12
    r = xp.linalg.qr(sketch, mode="r")[:d]
    if r.shape[0] < d:
        r = xp.concatenate([r, xp.zeros((d - r.shape[0], d))])
    _, sv, vt = xp.linalg.svd(xp.triu(r))
    tol = (max(n, d) * np.finfo(np.float64).eps if rcond is None else rcond) * float(sv[0])
    rank = int(xp.count_nonzero(sv > tol))
    if rank == 0:
        raise ValueError("the matrix is numerically zero: no row has any leverage")
    t = vt[:rank].T / sv[:rank]
    exact = 2 * rank <= k  # as sketch_basis: exact norms against T cost less than the projection
    if not exact:
        g = xp.asarray(np.random.default_rng([seed, 1]).standard_normal((rank, k)) / np.sqrt(k))
        tg = (t @ g).astype(xp.float32)
    out = np.empty(n)
    for start, x in blocks():
        if exact:
            values = xp.sum((xp.asarray(x, dtype=xp.float64) @ t) ** 2, axis=1)
        else:
            proj = xp.asarray(x, dtype=xp.float32) @ tg
            values = xp.sum(xp.square(proj, dtype=xp.float32), axis=1, dtype=xp.float64)
        out[start : start + len(x)] = values.get() if xp is not np else values
    return Scores(
        out, rank, {"passes": 2, "sketch_rows": rows, "nonzeros_per_column": s, "jl_dim": None if exact else k}
    )
