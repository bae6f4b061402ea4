"""Pass 2 of ``cond compress``: matrices that can share a basis (equal row count for a left
basis, equal column count for a right one, the same storage dtype and ``--group`` key) are
clustered pool by pool, in chunks of at most ``max_pool_bytes`` of float64, by
:func:`cond.linalg.clustering.greedy_clusters`; each cluster is checked exactly on what
is about to be written, and its members' records replace their own forms."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from cond.commands.compress.own_form import output_error, rounder
from cond.commands.compress.report import ClusterRecord
from cond.commands.compress.storage import Storage
from cond.errors import input_errors
from cond.linalg.cluster_proof import no_cluster_can_save, pair_ranks
from cond.linalg.clustering import greedy_clusters
from cond.linalg.truncated import relative_error


def cluster_pass(candidates, records, writer, opts, calibration, progress, client=None, grams=None):
    """Cluster the candidates on each axis asked for; write the verified clusters and put their
    members' records into ``records`` (name -> TensorRecord). Returns the ClusterRecords and a
    summary (seconds, chunks clustered, chunks proven to hold no saving cluster)."""
    started = time.perf_counter()
    clusters, summary, slower = [], dict(seconds=0.0, chunks=0, proven=0), set()
    axes = ["cols", "rows"] if opts.axis == "auto" else [opts.axis]
    clustered = set()
    for axis in axes:
        pools = {}
        for c in candidates:
            if c.name in clustered or c.group is None:
                continue
            if c.weight_sides[0 if axis == "cols" else 1]:
                continue  # row weights change a shared left basis (column weights a right one)
            key = (c.m if axis == "cols" else c.n, c.storage_dtype, c.group)
            pools.setdefault(key, []).append(c)
        chunks = []
        for pool in pools.values():
            for chunk in _chunks(pool, opts.max_pool_bytes):
                chunk, left_out = _joinable(chunk, axis, opts)
                slower.update(left_out)
                if len(chunk) >= 2:
                    chunks.append(chunk)
        summary["chunks"] += len(chunks)
        if client is not None:  # one task per chunk; the worker reads the members itself
            from cond.distributed import ordered_map

            found = ordered_map(
                client,
                _cluster_chunk,
                chunks,
                axis=axis,
                opts=opts,
                calibration=calibration,
                grams=grams,
                progress=(lambda done, total: progress("clustering", done, total, "")) if progress else None,
            )
        else:
            found = (_cluster_chunk(chunk, axis, opts, calibration, progress, grams) for chunk in chunks)
        for chunk, (computed, rejected, proven) in zip(chunks, found):
            summary["proven"] += proven
            # ids are consecutive: each chunk starts after the clusters written so far
            for record in _write_clusters(chunk, axis, len(clusters), computed, writer, opts, records):
                clusters.append(record)
                clustered.update(record.members)
            for members, worst in rejected:  # said, not dropped silently
                names = [chunk[i].name for i in members]
                for name in names:
                    records[name] = _noted(
                        records[name],
                        f"a shared {axis} basis with {len(names) - 1} others "
                        f"failed the final check (worst error {worst:.4g}); "
                        "kept its own form",
                    )
    summary["slower"] = len(slower - clustered)
    summary["seconds"] = time.perf_counter() - started
    return clusters, summary


def _sides(c, axis):
    """(rows the shared basis has, the member's width) on this axis."""
    return (c.m, c.n) if axis == "cols" else (c.n, c.m)


def _rank_cap(c, axis, opts):
    """The largest shared rank at which the member's multiply-adds r (m + n) stay within m n."""
    rows, width = _sides(c, axis)
    return rows if opts.allow_slower else (rows * width) // (rows + width)


def _joinable(chunk, axis, opts):
    """The members that could join a cluster without raising their compute (all with
    ``--allow-slower``), and the names of those that could not (their own rank at the bound is
    above the cap)."""
    if opts.error_scope != "matrix" or opts.allow_slower:
        return chunk, ()
    kept = [c for c in chunk if c.rank_needed is None or c.rank_needed <= _rank_cap(c, axis, opts)]
    return kept, {c.name for c in chunk} - {c.name for c in kept}


def _proven_alone(chunk, blocks, axis, opts):
    """Scope ``matrix``: the pool provably holds no cluster that saves (then the search is skipped)."""
    if opts.error_scope != "matrix" or any(c.rank_needed is None for c in chunk):
        return False
    rows = _sides(chunk[0], axis)[0]
    args = (
        rows,
        [c.rank_needed for c in chunk],
        [_sides(c, axis)[1] for c in chunk],
        [c.own.params_after for c in chunk],
        [_rank_cap(c, axis, opts) for c in chunk],
    )
    if no_cluster_can_save(*args):
        return True
    pairs = pair_ranks(blocks, opts.max_error)
    return pairs is not None and no_cluster_can_save(*args, pairs=pairs)


def _noted(record, note):
    return dataclasses.replace(record, note="; ".join(filter(None, (record.note, note))))


def _chunks(pool, max_bytes):
    chunk, size = [], 0
    for c in pool:
        nbytes = c.m * c.n * 8
        if chunk and size + nbytes > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(c)
        size += nbytes
    if chunk:
        yield chunk


def _cluster_chunk(chunk, axis, opts, calibration, progress=None, grams=None):
    """Clusters of one chunk, verified: (a list of (members, rank, basis, factors, errors, plain
    errors, output errors), bases and factors as written; a list of (members, worst error) of
    those the exact check refused; 1 when the chunk was proven to hold no saving cluster, else 0).
    Runs here or as a Dask task.

    The driver sees the weighted blocks W_i B_i (cols) or (A_i W_i)^T (rows); the member
    factors are the plain projections U^T W_i, optimal in the weighted norm too.
    """
    blocks, weightings = [], [c.weights for c in chunk]  # pass 1's weights: no Cholesky factor twice
    for c, weighting in zip(chunk, weightings):
        w = c.entry.load()
        w = w.reshape(w.shape[0], -1)
        if weighting.kind != "none":
            w = weighting.apply(w)
        blocks.append(w if axis == "cols" else np.ascontiguousarray(w.T))
    if _proven_alone(chunk, blocks, axis, opts):
        return [], [], 1
    storage = Storage(chunk[0].storage_dtype)
    store = storage.store if axis == "cols" else (lambda x: storage.store(np.asarray(x).T))
    value = storage.value if axis == "cols" else (lambda a, sc: storage.value(a, sc).T)
    own = [c.own.params_after for c in chunk]
    # unweighted blocks are the matrices themselves: the driver measures what expand will write
    expanded = [rounder(c.dtype) if wt.kind == "none" else (lambda x: x) for c, wt in zip(chunk, weightings)]
    with input_errors(path=chunk[0].entry.source, tensor=f"{chunk[0].name} and {len(chunk) - 1} more"):
        found = greedy_clusters(
            blocks,
            own,
            opts.max_error,
            predictor=opts.estimator,
            scope=opts.error_scope,
            patience=opts.patience,
            rounding=storage.round if axis == "cols" else storage.round_columns,
            expanded=expanded,
            seed=opts.seed,
            max_ranks=[_rank_cap(c, axis, opts) for c in chunk],
            progress=(lambda k: progress("clustering", k, len(chunk), "")) if progress else None,
        )
    computed, rejected = [], []
    for cl in found:
        basis = store(cl.basis)  # as written: (array, scales) in the stored orientation
        basis64 = value(*basis)
        factors, errors, plain, outputs = {}, {}, {}, {}
        for i in cl.members:
            if weightings[i].kind == "none":  # the block is the matrix itself (transposed for rows)
                w = blocks[i] if axis == "cols" else blocks[i].T
            else:  # the driver saw the weighted matrix: the plain one is read again
                w = chunk[i].entry.load()
                w = w.reshape(w.shape[0], -1)
            factor = store(basis64.T @ (w if axis == "cols" else w.T))
            approx = basis64 @ value(*factor)
            approx = rounder(chunk[i].dtype)(approx if axis == "cols" else approx.T)
            factors[i] = factor
            plain[i] = relative_error(w, approx)
            errors[i] = plain[i] if weightings[i].kind == "none" else relative_error(w, approx, weightings[i])
            outputs[i] = output_error(grams, chunk[i].name, chunk[i].shape, w, approx, weightings[i], errors[i])
        if not _verified(errors, blocks, cl.members, opts):  # e.g. the last rounding to the original dtype
            rejected.append((cl.members, max(errors.values())))
            continue
        computed.append((cl.members, cl.rank, basis, factors, errors, plain, outputs))
    return computed, rejected, 0


def _write_clusters(chunk, axis, first_id, computed, writer, opts, records):
    """Write the verified clusters of a chunk; the members' records (in ``records``) point at them.
    Bases and factors arrive as (array, int8 scales or None) in the orientation they are written."""
    written = []
    for members, rank, basis, factors, errors, plain, outputs in computed:
        cid = first_id + len(written)
        shared_key = f"cond.cluster.{cid}.U" if axis == "cols" else f"cond.cluster.{cid}.V"
        shared_scale = _add(writer, shared_key, *basis)
        storage = Storage(chunk[0].storage_dtype)
        names = []
        for i in members:
            c = chunk[i]
            for key in c.own.keys + tuple(k for k in c.own.scales if k):
                writer.discard(key)
            key = f"{c.name}.V" if axis == "cols" else f"{c.name}.U"
            scale = _add(writer, key, *factors[i])
            keys, scales = (
                ((shared_key, key), (shared_scale, scale))
                if axis == "cols"
                else ((key, shared_key), (scale, shared_scale))
            )
            width = _sides(c, axis)[1]
            note = "the bound applies to the cluster (--error-scope cluster)" if opts.error_scope == "cluster" else None
            note = "; ".join(filter(None, (note, c.weight_note))) or None
            records[c.name] = dataclasses.replace(
                c.own,
                storage="cluster",
                keys=keys,
                scales=scales,
                rank=rank,
                error=errors[i],
                cluster=cid,
                params_after=rank * width,
                note=note,
                plain_error=plain[i],
                storage_dtype=storage.dtype,
                bytes_after=storage.nbytes(*factors[i][0].shape),
                macs_after=rank * (c.m + c.n),
                output_error=outputs[i],
            )
            names.append(c.name)
        rows = _sides(chunk[0], axis)[0]
        written.append(
            ClusterRecord(
                id=cid,
                axis=axis,
                members=tuple(names),
                rank=rank,
                key=shared_key,
                params=rows * rank,
                bytes=storage.nbytes(*basis[0].shape),
                scale=shared_scale,
            )
        )
    return written


def _add(writer, key, array, scale):
    """Write a factor (and its int8 scales); the scales' key or None."""
    writer.add_array(key, np.ascontiguousarray(array))
    if scale is None:
        return None
    writer.add_array(f"{key}.scale", scale)
    return f"{key}.scale"


def _verified(errors, blocks, members, opts):
    """The exact check of what is about to be written: each member (or the cluster) within the bound."""
    if opts.error_scope == "matrix":
        return max(errors.values()) <= opts.max_error
    weights = {i: float(np.sum(blocks[i] ** 2)) for i in members}
    total = sum(weights.values())
    return math.sqrt(sum(weights[i] * errors[i] ** 2 for i in members) / total) <= opts.max_error
