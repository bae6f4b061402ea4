"""Greedy clustering of blocks that share a left basis (concatenated SVD), with an exact check.

Blocks A_i (m x n_i) in a cluster are stored as one shared basis U (m x r) and
per-member factors V_i = U^T A_i (r x n_i): m r + r sum n_i parameters instead
of each block's own cost. The driver follows the reference code of Shamrai
(arXiv 2601.11626) and improves on it:

1. anchor = the largest unassigned block (Frobenius norm);
2. candidates in order of their residual against the anchor's own basis
   (smallest first);
3. a candidate joins when the predictor says the cluster still meets the bound
   at some rank r <= max_rank and the cluster then costs fewer parameters than
   before plus the candidate on its own; a failing candidate is skipped, not a
   reason to stop; ``patience`` failures in a row end the cluster;
4. the rank is the smallest that meets the bound;
5. every cluster is then checked exactly, after rounding the factors to the
   storage precision: an SVD of the concatenation picks the smallest rank at
   which every member (scope ``matrix``) or the whole cluster (scope
   ``cluster``) meets the bound; the rank rises while that still saves
   parameters, otherwise the worst member leaves, until the check passes.

In scope ``matrix`` the blocks are normalised to unit Frobenius norm before
they are concatenated, so that the shared basis serves each member's
relative error rather than the largest members' energy, and the predictor's
error is the RMS of the members' errors. A provable predictor bounds each
member's error by sqrt(K) times that (K members); the incremental estimator
also checks the candidate's own error against its basis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.linalg

from cond.linalg.concat_bounds import PREDICTORS
from cond.linalg.truncated import rank_for_error


@dataclass(frozen=True)
class Cluster:
    """Members (indices into the blocks), the rank, the shared basis (m x rank, float64)
    and each member's error measured after rounding."""

    members: tuple
    rank: int
    basis: np.ndarray
    errors: tuple


def cluster_params(m: int, widths, r: int) -> int:
    """Parameters of a cluster: shared basis m x r plus r x n_i per member.

    Parameters
    ----------
    m : int
        The members' common row count (the basis's rows).
    widths : sequence of int
        Each member's column count n_i.
    r : int
        The shared rank.

    Returns
    -------
    int
        m r + r sum(n_i).
    """
    return m * r + r * int(sum(widths))


def greedy_clusters(
    blocks,
    own_params,
    max_error,
    *,
    predictor="incremental",
    scope="matrix",
    patience=8,
    rounding=None,
    expanded=None,
    seed=0,
    progress=None,
    max_ranks=None,
):
    """Cluster blocks with equal row counts; return the clusters with two or more members.

    Parameters
    ----------
    blocks : list of ndarray of shape (m, n_i)
        float64 blocks sharing m.
    own_params : sequence of int
        What each block costs stored on its own (its best low-rank form, or dense).
    max_error : float
        The bound on the relative Frobenius error, in (0, 1).
    predictor : {"incremental", "weyl", "residual", "exact"}
    scope : {"matrix", "cluster"}
        Bound every member's error, or the cluster's (the paper's scope).
    patience : int
        Failed candidates in a row that end a cluster.
    rounding : callable, optional
        Maps a float64 array to the float64 values of its storage rounding
        (for example through bfloat16); errors are measured after it.
    expanded : sequence of callable, optional
        Per block, the rounding of the product basis @ factor to what the user gets back
        (the block's original dtype); with it ``Cluster.errors`` are the errors of the
        written file, not only of the stored factors.
    seed : int
        Seed of the incremental estimator's randomized range finder.
    progress : callable, optional
        Called with the number of blocks settled so far.
    max_ranks : sequence of int, optional
        Per block, the largest shared rank it may be stored at (``cond compress`` uses
        it to keep a member's multiply-adds, r (m + n_i), within its dense m n_i).

    Returns
    -------
    list of Cluster
    """
    if not 0 < max_error < 1:
        raise ValueError(f"`max_error` must be in (0, 1); got {max_error}")
    if predictor not in PREDICTORS:
        raise ValueError(f"`predictor` must be one of {', '.join(PREDICTORS)}; got {predictor!r}")
    if scope not in ("matrix", "cluster"):
        raise ValueError(f"`scope` must be 'matrix' or 'cluster'; got {scope!r}")
    if len({b.shape[0] for b in blocks}) > 1:
        raise ValueError("`blocks` must share their row count")
    if int(patience) < 1:
        raise ValueError(f"`patience` must be a positive integer; got {patience}")
    if expanded is not None and len(expanded) != len(blocks):
        raise ValueError(f"`expanded` must have one rounding per block; got {len(expanded)} for {len(blocks)}")
    if max_ranks is not None and len(max_ranks) != len(blocks):
        raise ValueError(f"`max_ranks` must have one rank per block; got {len(max_ranks)} for {len(blocks)}")
    return _Driver(
        blocks,
        own_params,
        max_error,
        predictor,
        scope,
        int(patience),
        rounding or (lambda x: x),
        expanded,
        seed,
        progress,
        max_ranks,
    ).run()


class _Driver:
    def __init__(
        self, blocks, own_params, eps, predictor, scope, patience, rounding, expanded, seed, progress, max_ranks=None
    ):
        self.blocks = blocks
        self.expanded = expanded
        self.own = [int(p) for p in own_params]
        self.eps = eps
        self.predictor = predictor
        self.scope = scope
        self.patience = patience
        self.rounding = rounding
        self.seed = seed
        self.progress = progress
        self.m = blocks[0].shape[0] if blocks else 0
        self.norms = [float(np.linalg.norm(b)) for b in blocks]
        self.work = _Scaled(blocks, self.norms) if scope == "matrix" else blocks
        self.caps = [self.m] * len(blocks) if max_ranks is None else [int(c) for c in max_ranks]

    def run(self):
        left = [i for i in sorted(range(len(self.blocks)), key=lambda i: -self.norms[i]) if self.norms[i] > 0]
        clusters, settled = [], 0
        while left:
            anchor = left.pop(0)
            members = self._grow(anchor, left)
            cluster = self._finalize(members) if len(members) > 1 else None
            joined = set(cluster.members) if cluster else {anchor}
            if cluster:
                clusters.append(cluster)
            left = [i for i in left if i not in joined]  # ejected members stay in `left`
            settled += len(joined)
            if self.progress:
                self.progress(settled)
        return clusters

    def _grow(self, anchor, left):
        a = self.work[anchor]
        u, s = _left_singular(a)
        r = max(1, rank_for_error(s, self.eps))
        max_rank = min(self.m, 2 * r + 16)
        est = self._make(max_rank).init(a)
        q = u[:, :r]
        residual = {i: 1.0 - float(np.sum((q.T @ self.blocks[i]) ** 2)) / max(self.norms[i] ** 2, 1e-300) for i in left}
        members, misses = [anchor], 0
        widths = [a.shape[1]]
        cap = self.caps[anchor]
        for c in sorted(left, key=lambda i: residual[i]):
            if misses >= self.patience:
                break
            if min(cap, self.caps[c]) < r:
                misses += 1
                continue
            width = self.blocks[c].shape[1]
            # the rank cannot fall, so this is the least the cluster could cost with c
            if cluster_params(self.m, widths + [width], r) >= cluster_params(self.m, widths, r) + self.own[c]:
                misses += 1
                continue
            trial = est.add(self.work[c])
            r_new = self._rank(trial, c, r)
            if r_new is not None and r_new <= min(cap, self.caps[c]):
                before = cluster_params(self.m, widths, r) + self.own[c]
                if cluster_params(self.m, widths + [width], r_new) < before:
                    est, r = trial, r_new
                    cap = min(cap, self.caps[c])
                    members.append(c)
                    widths.append(width)
                    misses = 0
                    continue
            misses += 1
        return members

    def _make(self, max_rank):
        cls = PREDICTORS[self.predictor]
        return cls(max_rank, seed=self.seed) if self.predictor == "incremental" else cls(max_rank)

    def _rank(self, trial, candidate, r_from):
        """Smallest r >= r_from at which the predictor accepts the cluster with the candidate."""
        ranks = np.arange(r_from, trial.max_rank + 1)
        errors = np.array([trial.error(r) for r in ranks])
        if self.scope == "cluster":
            ok = errors <= self.eps
        else:
            own = trial.member_errors(self.work[candidate])
            if own is None:  # provable: every member's error <= sqrt(K) * RMS error
                ok = np.sqrt(trial.count) * errors <= self.eps
            else:
                ok = (errors <= self.eps) & (own[ranks - 1] <= self.eps)
        hits = np.flatnonzero(ok)
        return int(ranks[hits[0]]) if len(hits) else None

    def _finalize(self, members):
        """Exact check after rounding; returns a Cluster of >= 2 members or None."""
        members = list(members)
        while len(members) > 1:
            widths = [self.blocks[i].shape[1] for i in members]
            own_total = sum(self.own[i] for i in members)
            # no rank beyond this one can save parameters, so no more vectors are needed
            top = max(1, own_total // (self.m + sum(widths)) + 1)
            u, s = _left_singular_of_blocks(self.work, members, top)
            total = sum(self.norms[i] ** 2 for i in members)  # ||concatenation||_F^2 (cluster scope)
            cap = min(self.caps[i] for i in members)
            affordable = [r for r in range(1, min(len(s), cap) + 1) if cluster_params(self.m, widths, r) < own_total]
            predicted = self._predicted_errors(u, s, members)  # shape (len(members), len(s))
            worst = None
            for r in affordable:
                if self.scope == "matrix" and predicted[:, r - 1].max() > self.eps:
                    continue
                if self.scope == "cluster" and _cluster_error(s, r, total) > self.eps:
                    continue
                errors = self._measured(u[:, :r], members)
                if self._meets(errors, members):
                    return Cluster(tuple(members), r, u[:, :r], tuple(errors))
                worst = int(np.argmax(errors))
            if worst is None:
                r_ref = affordable[-1] if affordable else 1
                worst = int(np.argmax(predicted[:, r_ref - 1]))
            members.pop(worst)
        return None

    def _predicted_errors(self, u, s, members):
        rows = []
        for i in members:
            w = self.work[i]
            captured = np.cumsum(np.sum((u.T @ w) ** 2, axis=1))
            rows.append(np.sqrt(np.maximum(0.0, 1.0 - captured / max(float(np.sum(w * w)), 1e-300))))
        return np.array(rows)

    def _measured(self, basis, members):
        stored = self.rounding(basis)
        errors = []
        for i in members:
            a = self.blocks[i]
            v = self.rounding(stored.T @ a)
            approx = stored @ v if self.expanded is None else self.expanded[i](stored @ v)
            errors.append(float(np.linalg.norm(a - approx) / self.norms[i]))
        return errors

    def _meets(self, errors, members):
        if self.scope == "matrix":
            return max(errors) <= self.eps
        weights = np.array([self.norms[i] ** 2 for i in members])
        return float(np.sqrt(np.sum(weights * np.square(errors)) / np.sum(weights))) <= self.eps


class _Scaled:
    """blocks[i] / norms[i] on access: normalised blocks without a second copy in memory."""

    def __init__(self, blocks, norms):
        self.blocks, self.norms = blocks, norms

    def __getitem__(self, i):
        n = self.norms[i]
        return self.blocks[i] / n if n > 0 else self.blocks[i]

    def __len__(self):
        return len(self.blocks)


def _left_singular_of_blocks(blocks, members, top=None):
    """Left singular vectors and values of [B_i for i in members] without forming it when it
    is wide: the m x m Gram matrix is accumulated block by block. ``top`` limits the
    vectors computed to the leading ones."""
    first = blocks[members[0]]
    m = first.shape[0]
    if sum(blocks[i].shape[1] for i in members) <= m:
        return _left_singular(np.hstack([blocks[i] for i in members]))
    gram = np.zeros((m, m))
    for i in members:
        b = blocks[i]
        gram += b @ b.T
    return _eigh_descending(gram, top)


def _eigh_descending(gram, top=None):
    m = gram.shape[0]
    if top is not None and top < m:
        lam, vec = scipy.linalg.eigh(gram, subset_by_index=[m - top, m - 1], check_finite=False)
    else:
        lam, vec = scipy.linalg.eigh(gram, check_finite=False)
    order = np.argsort(lam)[::-1]
    return vec[:, order], np.sqrt(np.maximum(lam[order], 0.0))


def _left_singular(a):
    """Left singular vectors and values of a (m x n), through the m x m Gram matrix when a is
    wide. The Gram route squares the condition number, which only blurs directions whose
    energy is below eps * ||a||^2: far below any bound a user can ask for, and every
    cluster's error is measured exactly afterwards anyway."""
    m, n = a.shape
    if m < n:
        return _eigh_descending(a @ a.T)
    u, s, _ = scipy.linalg.svd(a, full_matrices=False, check_finite=False)
    return u, s


def _cluster_error(s, r, total):
    return float(np.sqrt(max(0.0, 1.0 - float(np.sum(s[:r] ** 2)) / total))) if total else 0.0
