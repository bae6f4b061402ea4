"""Predicting the error of a truncated SVD of a concatenation M = [A_1 ... A_K].

Shamrai, arXiv 2601.11626. Blocks share their row count m. Because
||M||_F^2 = sum ||A_i||_F^2 exactly, any lower bound L(r) on the top-r energy
sum_{i<=r} sigma_i(M)^2 gives the error bound
e_r(M) <= sqrt(max(0, 1 - L(r) / ||M||_F^2)).

Every predictor has the same interface, and is immutable: ``init(anchor)`` and
``add(block)`` return a new predictor, so a candidate can be tried and dropped.

- ``energy(r)``: L(r), for 1 <= r <= ``max_rank``.
- ``total``: ||M||_F^2, exact.
- ``error(r)``: sqrt(max(0, 1 - energy(r) / total)).
- ``provable``: whether ``energy`` is a proven lower bound.
- ``member_errors(block)``: the error of one block against the predictor's
  rank-r basis for r = 1 .. max_rank (an array), or None when the predictor
  keeps no basis.

WeylBound, ResidualBound: provable. IncrementalEstimator: an estimate (the
reference code's recommended mode). ExactEnergy: the exact top-r energy from
an SVD of the whole concatenation (slow; the baseline that the estimators are
measured against).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

EPS = float(np.finfo(np.float64).eps)


def _svd(a):
    return scipy.linalg.svd(a, full_matrices=False, check_finite=False, lapack_driver="gesdd")


def _svdvals(a):
    return scipy.linalg.svd(a, compute_uv=False, check_finite=False, lapack_driver="gesdd")


def _padded_cumsum(values, length):
    """cumsum of the values, padded with its last entry to ``length``."""
    c = np.cumsum(values)[:length]
    if len(c) < length:
        c = np.concatenate([c, np.full(length - len(c), c[-1] if len(c) else 0.0)])
    return c


class _Predictor:
    provable = False
    name = ""

    def __init__(self, max_rank: int):
        if int(max_rank) < 1:
            raise ValueError(f"`max_rank` must be a positive integer; got {max_rank}")
        self.max_rank = int(max_rank)
        self.total = 0.0
        self.count = 0

    def _copy(self):
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def energy(self, r: int) -> float:
        raise NotImplementedError

    def error(self, r: int) -> float:
        if self.total == 0:
            return 0.0
        return float(np.sqrt(max(0.0, 1.0 - self.energy(r) / self.total)))

    def member_errors(self, block):
        return None


class WeylBound(_Predictor):
    """L(r) = max over members B of sum_{i<=r} sigma_i(B)^2.

    Valid for every r by Weyl's (Cauchy's) interlacing: deleting columns never
    raises a singular value, so sigma_i(M) >= sigma_i(B) for any column subset B.
    It needs each member's own top-r singular values; the norm-only shortcut
    ||B||_F^2 is not a lower bound once B has more than r columns.
    """

    provable = True
    name = "weyl"

    def init(self, anchor):
        new = self._copy()
        new.total = float(np.sum(anchor * anchor))
        new.best = _padded_cumsum(_svdvals(anchor) ** 2, self.max_rank)
        new.count = 1
        return new

    def add(self, block):
        new = self._copy()
        new.total = self.total + float(np.sum(block * block))
        new.best = np.maximum(self.best, _padded_cumsum(_svdvals(block) ** 2, self.max_rank))
        new.count = self.count + 1
        return new

    def energy(self, r):
        return float(self.best[r - 1])


class ResidualBound(_Predictor):
    """L(r) = sum of the r largest s^2 over sigma(A_1) U sigma(R_2) U ... U sigma(R_K).

    R_k = (I - Q Q^T) A_k with Q an orthonormal basis of all previous columns.
    In that basis M is block upper triangular with diagonal blocks Q_k^T R_k, and
    the top-r energy of a block triangular matrix is at least that of its
    diagonal blocks (restrict to the r best of their singular directions).
    Loose when blocks share directions: the energy of A_k inside span(Q) is not
    counted. Q is kept to the numerical rank (directions below
    m * eps * ||A_k|| are dropped, with their negligible energy).
    """

    provable = True
    name = "residual"

    def init(self, anchor):
        new = self._copy()
        new.total = float(np.sum(anchor * anchor))
        new.basis = np.zeros((anchor.shape[0], 0))
        new.pool = np.zeros(0)
        new.count = 0
        return new._absorb(anchor)

    def add(self, block):
        return self._copy()._absorb(block)

    def _absorb(self, block):
        if self.count:
            self.total = self.total + float(np.sum(block * block))
        residual = block - self.basis @ (self.basis.T @ block) if self.basis.shape[1] else block
        u, s, _ = _svd(residual)
        keep = s > max(block.shape) * EPS * max(float(s[0]) if len(s) else 0.0, 1e-300)
        if self.basis.shape[1] < block.shape[0]:
            self.basis = np.hstack([self.basis, u[:, keep]])[:, : block.shape[0]]
        self.pool = np.sort(np.concatenate([self.pool, s * s]))[::-1][: self.max_rank]
        self.count += 1
        return self

    def energy(self, r):
        return float(np.sum(self.pool[:r]))


class IncrementalEstimator(_Predictor):
    """Brand-style incremental SVD tracking the top ``max_rank + oversample`` left directions.

    State: U (m x k) orthonormal and S (k). Adding B: P = U^T B, R = B - U P,
    Q_R an orthonormal basis of R's range (a seeded randomized range finder with
    k + 8 columns when R is wide), T = Q_R^T R, and the small matrix
    K = [[diag S, P], [0, T]] = [U Q_R]^T [U S V^T-part, B] is diagonalised
    through its Gram matrix K K^T. Never forms M. Energy outside the tracked
    directions is dropped, so the estimate errs low; it is not a proof (the
    exact final check in the driver is what guarantees the bound).

    When ``max_rank + oversample >= m`` the tracked directions would span the
    whole column space; the estimator then keeps the m x m Gram matrix
    sum_i A_i A_i^T itself and its eigen-decomposition, which is exact and cheaper.
    """

    name = "incremental"

    def __init__(self, max_rank, oversample=8, seed=0):
        super().__init__(max_rank)
        self.oversample = int(oversample)
        self.seed = int(seed)

    def init(self, anchor):
        new = self._copy()
        new.total = float(np.sum(anchor * anchor))
        new.count = 1
        new.gram = None
        if self.max_rank + self.oversample >= anchor.shape[0]:
            new.gram = anchor @ anchor.T
            return new._from_gram()
        u, s, _ = _svd(anchor)
        k = min(self.max_rank + self.oversample, len(s))
        new.u, new.s = u[:, :k], s[:k]
        return new

    def _from_gram(self):
        lam, vec = scipy.linalg.eigh(self.gram, check_finite=False)
        order = np.argsort(lam)[::-1]
        self.s = np.sqrt(np.maximum(lam[order], 0.0))
        self.u = vec[:, order]
        return self

    def add(self, block):
        new = self._copy()
        new.total = self.total + float(np.sum(block * block))
        new.count = self.count + 1
        if self.gram is not None:
            new.gram = self.gram + block @ block.T
            return new._from_gram()
        m, n = block.shape
        k = self.max_rank + self.oversample
        p = self.u.T @ block
        residual = block - self.u @ p
        width = min(n, m, k + 8)
        if n <= width:
            q, _ = np.linalg.qr(residual)
        else:
            rng = np.random.default_rng([self.seed, self.count])
            q, _ = np.linalg.qr(residual @ rng.standard_normal((n, width)))
        t = q.T @ residual
        top = np.hstack([np.diag(self.s), p])
        bottom = np.hstack([np.zeros((t.shape[0], len(self.s))), t])
        small = np.vstack([top, bottom])
        lam, vec = scipy.linalg.eigh(small @ small.T, check_finite=False)
        order = np.argsort(lam)[::-1][:k]
        new.s = np.sqrt(np.maximum(lam[order], 0.0))
        new.u = np.hstack([self.u, q]) @ vec[:, order]
        return new

    def energy(self, r):
        return float(np.sum(self.s[:r] ** 2))

    def member_errors(self, block):
        norm2 = float(np.sum(block * block))
        if norm2 == 0:
            return np.zeros(self.max_rank)
        captured = _padded_cumsum(np.sum((self.u.T @ block) ** 2, axis=1), self.max_rank)
        return np.sqrt(np.maximum(0.0, 1.0 - captured / norm2))


class ExactEnergy(_Predictor):
    """The exact top-r energy: an SVD of the whole concatenation at every step."""

    name = "exact"

    def init(self, anchor):
        new = self._copy()
        new.blocks = [anchor]
        return new._refresh()

    def add(self, block):
        new = self._copy()
        new.blocks = self.blocks + [block]
        return new._refresh()

    def _refresh(self):
        m = np.hstack(self.blocks)
        self.total = float(np.sum(m * m))
        u, s, _ = _svd(m)
        self.u, self.s = u[:, : self.max_rank], s[: self.max_rank]
        self.count = len(self.blocks)
        return self

    def energy(self, r):
        return float(np.sum(self.s[:r] ** 2))

    member_errors = IncrementalEstimator.member_errors


PREDICTORS = {"weyl": WeylBound, "residual": ResidualBound, "incremental": IncrementalEstimator, "exact": ExactEnergy}
