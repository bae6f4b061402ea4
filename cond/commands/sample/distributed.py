"""``cond sample --scheduler``: the score passes as Dask tasks, the same floats as in one process.

Exact: R by :class:`~cond.linalg.leverage.RTree` over the row blocks; sketched: S A by
:class:`~cond.linalg.sketch.SketchSum` over its leaves. Tasks take aligned runs of 2**k
leaves (blocks, or sketch leaves), so each returns a complete subtree of the in-process
tree (the last one a partial stack); pushed in order, they give the same R or S A, then
the same basis, and the score pass is row by row.
"""

from __future__ import annotations

import math

import numpy as np

from cond.linalg import leverage as lev
from cond.linalg import r_factor as gram
from cond.linalg import sketch


def distributed_scores(spec, locator, n, d, rcond, scores, seed, tick):
    """Leverage scores (exact or sketched) of the rows ``locator`` finds, on a Dask cluster."""
    from cond.distributed import dask_client, ordered_map
    from cond.formats.row_blocks import BLOCK_ROWS
    from cond.threads import one_thread_blas

    nblocks = -(-n // BLOCK_ROWS)
    leaf_blocks = 1 if scores == "exact" else sketch.leaf_rows(n, d) // BLOCK_ROWS
    # BLAS on one thread here and on the workers, as in the in-process path (cond.threads)
    with dask_client(spec) as client, one_thread_blas():
        groups = aligned_groups(nblocks, leaf_blocks, len(client.scheduler_info().get("workers", {})))
        if scores == "exact":
            grams = gram.GramTree(d)
            for stack, terms in ordered_map(client, _group_gram, groups, locator=locator, d=d):
                for node_level, node in stack:
                    grams.push(node_level, node, terms, leaves=2**node_level)
            r, rho = gram.certified_r(grams.result(), grams.terms, grams.leaves, d)
            detail = {"passes": 2, "route": "gram", "score_rtol": rho}
            if r is None:  # not certified: R by TSQR, as in one process
                tree, detail = lev.RTree(d), {"passes": 3, "route": "tsqr"}
                for stack in ordered_map(client, _group_r, groups, locator=locator, d=d):
                    for node_level, node in stack:
                        tree.push(node_level, node)
                r = tree.result()
            t, k = lev.rank_basis(r, n, rcond)
            tick("scores")
            values = np.concatenate(list(ordered_map(client, _group_leverage, groups, locator=locator, t=t)))
            return lev.Scores(values, k, {**detail, "r": r})
        total = sketch.SketchSum(n, d, seed)
        for stack in ordered_map(client, _group_sketch, groups, locator=locator, n=n, d=d, seed=seed):
            for node_level, node in stack:
                total.tree.push(node_level, node)
        tg, k, detail = sketch.sketch_basis(total.result(), n, d, seed, rcond, srht=scores == "sketch-srht")
        tick("scores")
        values = np.concatenate(list(ordered_map(client, _group_jl_scores, groups, locator=locator, tg=tg)))
        return lev.Scores(values, k, detail)


def aligned_groups(nblocks, leaf_blocks, workers):
    """Tasks as ``(first, last)`` block ranges: aligned runs of 2**k leaves of ``leaf_blocks``
    blocks (the last run shorter), about four per worker, so that each run is a complete
    subtree of the in-process reduction tree."""
    leaves = -(-nblocks // leaf_blocks)
    size = leaf_blocks * 2 ** max(0, int(math.floor(math.log2(max(1.0, leaves / (4 * max(1, workers)))))))
    return [(g, min(g + size, nblocks)) for g in range(0, nblocks, size)]


def _group_gram(group, locator, d):
    """The Gram stack of blocks ``group`` and its leaves' largest term count: one Dask task."""
    from cond.threads import one_thread_blas

    tree = gram.GramTree(d)
    with one_thread_blas():
        for _, x, _ in locator.blocks(*group):
            tree.push(0, *gram.leaf_gram(x))
    return tree.stack, tree.terms


def _group_r(group, locator, d):
    """The R stack of blocks ``group`` = (first, last): one Dask task."""
    from cond.threads import one_thread_blas

    tree = lev.RTree(d)
    with one_thread_blas():
        for _, x, _ in locator.blocks(*group):
            tree.add_block(x)
    return tree.stack


def _group_leverage(group, locator, t):
    """Leverage scores of the rows of blocks ``group``: one Dask task."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return np.concatenate([lev.block_leverage(x, t) for _, x, _ in locator.blocks(*group)])


def _group_sketch(group, locator, n, d, seed):
    """The S A stack of the sketch leaves in blocks ``group``: one Dask task."""
    total = sketch.SketchSum(n, d, seed)
    for start, x, _ in locator.blocks(*group):
        total.add(start, x)
    total.close_leaf()
    return total.tree.stack


def _group_jl_scores(group, locator, tg):
    """Sketched scores of the rows of blocks ``group``: one Dask task."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return np.concatenate([sketch.jl_scores(x, tg) for _, x, _ in locator.blocks(*group)])
