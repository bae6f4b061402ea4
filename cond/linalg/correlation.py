"""Column correlations of a tall matrix in one streaming pass, and greedy de-duplication.

The centred cross-product C = sum_i (a_i - mean)(a_i - mean)^T is accumulated block by
block with Chan, Golub & LeVeque's pairwise update (1979): merging (n_a, mean_a, C_a)
and (n_b, mean_b, C_b) adds delta delta^T n_a n_b / n, delta = mean_b - mean_a. Unlike
G - n mean mean^T from the raw Gram matrix, it does not cancel when a column's mean is
large against its spread.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Running count, column means (d,) and centred cross-product (d, d), all in units of
    ``scale`` (a power of two set by the first block's largest entry, so that squares of
    entries near 1e160 or 1e-170 neither overflow nor underflow; correlations and relative
    MSEs do not depend on it)."""

    n: int
    mean: np.ndarray
    cross: np.ndarray
    scale: float = 1.0

    @classmethod
    def empty(cls, d):
        return cls(0, np.zeros(d), np.zeros((d, d)))

    def add_block(self, x):
        """Merge the rows of one block, x of shape (b, d).

        The block is first shifted by the running mean (by its first row for the first block),
        so that its own mean is computed from small numbers: numpy's column means of a
        C-ordered block are a running sum, 5e-7 off for values near 1e8 (measured), and the
        merge term would multiply that error.
        """
        b = len(x)
        if b == 0:
            return
        if self.n == 0:
            peak = float(np.max(np.abs(x)))
            self.scale = float(np.ldexp(1.0, -np.frexp(peak)[1])) if peak > 0 and np.isfinite(peak) else 1.0
        x = x * self.scale  # exact: a power of two
        shift = self.mean if self.n else x[0]
        z = x - shift  # exact for values near the shift (Sterbenz)
        delta = z.mean(axis=0)  # the block's mean minus the running mean
        centred = z - delta
        cross_b = centred.T @ centred
        n = self.n + b
        self.cross = self.cross + cross_b + np.outer(delta, delta) * (self.n * b / n)
        self.mean = shift + delta * (b / n)
        self.n = n

    def relative_mse(self):
        """(d, d): mean((a_j - a_k)^2) / mean(a_j^2), from the moments (row j, column k).

        mean((a_j - a_k)^2) = (C_jj + C_kk - 2 C_jk) / n + (mean_j - mean_k)^2.
        """
        c = self.cross / max(self.n, 1)
        diag = np.diag(c)
        diff = diag[:, None] + diag[None, :] - 2 * c + (self.mean[:, None] - self.mean[None, :]) ** 2
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.maximum(diff, 0.0) / (diag + self.mean**2)[:, None]

    def correlations(self):
        """The (d, d) correlation matrix; NaN in rows and columns of constant columns."""
        sd = np.sqrt(np.diag(self.cross))
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.cross / np.outer(sd, sd)


def greedy_deduplication(corr, max_corr, order=None, rel_mse=None, max_rel_mse=None):
    """Keep columns in ``order``, dropping each whose |correlation| with an already kept column
    reaches ``max_corr`` (or, with ``max_rel_mse``, whose relative MSE against one is at most it).

    Parameters
    ----------
    corr : ndarray of shape (d, d)
        Correlations (NaN for a constant column: never a duplicate, always kept).
    max_corr : float
        In (0, 1].
    order : sequence of int, optional
        The order columns are considered in (default: 0 .. d-1): earlier ones are kept.
    rel_mse : ndarray of shape (d, d), optional
        :meth:`Moments.relative_mse`; with ``max_rel_mse``, a second reason to drop.
    max_rel_mse : float, optional

    Returns
    -------
    kept : list of int
        Ascending.
    dropped : list of (int, int, float)
        (column, the kept partner that made it a duplicate, their correlation), in ``order``.
        Every dropped column has a kept partner at or above ``max_corr`` (or within
        ``max_rel_mse``), and no two kept columns are.
    """
    d = corr.shape[0]
    order = list(range(d)) if order is None else [int(j) for j in order]
    kept, dropped = [], []
    for j in order:
        if kept:
            with np.errstate(invalid="ignore"):
                against = np.abs(corr[j, kept])
            best = int(np.nanargmax(against)) if not np.all(np.isnan(against)) else None
            if best is not None and against[best] >= max_corr:
                dropped.append((j, kept[best], float(corr[j, kept[best]])))
                continue
            if max_rel_mse is not None:
                close = rel_mse[j, kept]
                k = int(np.nanargmin(close)) if not np.all(np.isnan(close)) else None
                if k is not None and close[k] <= max_rel_mse:
                    dropped.append((j, kept[k], float(corr[j, kept[k]])))
                    continue
        kept.append(j)
    return sorted(kept), dropped
