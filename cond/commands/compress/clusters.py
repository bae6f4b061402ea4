"""Pass 2 of ``cond compress``: matrices that can share a basis (equal row count for a left
basis, equal column count for a right one, the same storage dtype and ``--group`` key) are
clustered pool by pool, in chunks of at most ``max_pool_bytes`` of float64, by
:func:`cond.linalg.clustering.greedy_clusters`; each cluster is checked exactly on what
is about to be written, and its members' records replace their own forms."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from cond.commands.compress.own_form import rounder
from cond.commands.compress.report import ClusterRecord, TensorRecord
from cond.errors import input_errors
from cond.formats.safetensors_file import numpy_dtype
from cond.linalg.clustering import greedy_clusters
from cond.linalg.truncated import relative_error


def cluster_pass(candidates, records, writer, opts, calibration, progress, client=None):
    """Cluster the candidates on each axis asked for; write the verified clusters and put their
    members' records into ``records`` (name -> TensorRecord). Returns the ClusterRecords."""
    clusters = []
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
        chunks = [chunk for pool in pools.values() for chunk in _chunks(pool, opts.max_pool_bytes)
                  if len(chunk) >= 2]
        if client is not None:  # one task per chunk; the worker reads the members itself
            from cond.distributed import ordered_map

            found = ordered_map(client, _cluster_chunk, chunks, axis=axis, opts=opts, calibration=calibration,
                                progress=(lambda done, total: progress("clustering", done, total))
                                if progress else None)
        else:
            found = (_cluster_chunk(chunk, axis, opts, calibration, progress) for chunk in chunks)
        for chunk, (computed, rejected) in zip(chunks, found):
            # ids are consecutive: each chunk starts after the clusters written so far
            for record in _write_clusters(chunk, axis, len(clusters), computed, writer, opts, records):
                clusters.append(record)
                clustered.update(record.members)
            for members, worst in rejected:  # said, not dropped silently
                names = [chunk[i].name for i in members]
                for name in names:
                    records[name] = _noted(records[name], f"a shared {axis} basis with {len(names) - 1} others "
                                                          f"failed the final check (worst error {worst:.4g}); "
                                                          "kept its own form")
    return clusters


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


def _cluster_chunk(chunk, axis, opts, calibration, progress=None):
    """Clusters of one chunk, verified: (a list of (members, rank, basis, factors, errors, plain
    errors), bases and factors in the storage dtype; a list of (members, worst error) of those
    the exact check refused). Runs here or as a Dask task.

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
    storage = chunk[0].storage_dtype
    np_dtype = numpy_dtype(storage)
    own = [c.own.params_after for c in chunk]
    # unweighted blocks are the matrices themselves: the driver measures what expand will write
    expanded = [rounder(c.dtype) if wt.kind == "none" else (lambda x: x) for c, wt in zip(chunk, weightings)]
    with input_errors(path=chunk[0].entry.source, tensor=f"{chunk[0].name} and {len(chunk) - 1} more"):
        found = greedy_clusters(blocks, own, opts.max_error, predictor=opts.estimator,
                                scope=opts.error_scope, patience=opts.patience, rounding=rounder(storage),
                                expanded=expanded, seed=opts.seed,
                                progress=(lambda k: progress("clustering", k, len(chunk))) if progress else None)
    computed, rejected = [], []
    for cl in found:
        basis = cl.basis.astype(np_dtype)
        basis64 = basis.astype(np.float64)
        factors, errors, plain = {}, {}, {}
        for k, i in enumerate(cl.members):
            if weightings[i].kind == "none":  # the driver measured this very product: its error is final
                block = blocks[i]
                factors[i] = (basis64.T @ block).astype(np_dtype)
                errors[i] = plain[i] = cl.errors[k]
                continue
            w = chunk[i].entry.load()  # the driver saw the weighted matrix: measure the plain one
            w = w.reshape(w.shape[0], -1)
            factors[i], errors[i], plain[i] = _member_factor(w, weightings[i], basis64, axis, np_dtype,
                                                             rounder(chunk[i].dtype))
        if not _verified(errors, blocks, cl.members, opts):  # e.g. the last rounding to the original dtype
            rejected.append((cl.members, max(errors.values())))
            continue
        computed.append((cl.members, cl.rank, basis, factors, errors, plain))
    return computed, rejected


def _write_clusters(chunk, axis, first_id, computed, writer, opts, records):
    """Write the verified clusters of a chunk; the members' records (in ``records``) point at them."""
    written = []
    for members, rank, basis, factors, errors, plain in computed:
        cid = first_id + len(written)
        shared_key = f"cond.cluster.{cid}.U" if axis == "cols" else f"cond.cluster.{cid}.V"
        writer.add_array(shared_key, basis if axis == "cols" else np.ascontiguousarray(basis.T))
        names = []
        for i in members:
            c = chunk[i]
            for key in c.own.keys:
                writer.discard(key)
            if axis == "cols":
                key = f"{c.name}.V"
                writer.add_array(key, factors[i])
                keys = (shared_key, key)
            else:
                key = f"{c.name}.U"
                writer.add_array(key, np.ascontiguousarray(factors[i].T))
                keys = (key, shared_key)
            width = c.n if axis == "cols" else c.m
            note = "the bound applies to the cluster (--error-scope cluster)" \
                if opts.error_scope == "cluster" else None
            note = "; ".join(filter(None, (note, c.weight_note))) or None
            records[c.name] = TensorRecord(
                name=c.name, shape=c.shape, dtype=c.dtype, storage="cluster", keys=keys, rank=rank,
                error=errors[i], bound=opts.max_error, cluster=cid, params_before=c.m * c.n,
                params_after=rank * width, note=note, plain_error=plain[i], weighting=c.weighting)
            names.append(c.name)
        m = basis.shape[0]
        written.append(ClusterRecord(id=cid, axis=axis, members=tuple(names), rank=rank, key=shared_key,
                                     params=m * rank))
    return written


def _member_factor(w, weighting, basis64, axis, np_dtype, expanded):
    """The factor of the member W (m x n) against the shared basis (r x n for cols, r x m for
    rows, in the storage dtype), its weighted error and its plain error, measured on what
    ``expanded`` (the rounding to the member's original dtype) makes of the product."""
    plain_block = w if axis == "cols" else w.T
    factor = (basis64.T @ plain_block).astype(np_dtype)
    approx = basis64 @ factor.astype(np.float64)
    approx = expanded(approx if axis == "cols" else approx.T)
    plain = relative_error(w, approx)
    return factor, plain if weighting.kind == "none" else relative_error(w, approx, weighting), plain


def _verified(errors, blocks, members, opts):
    """The exact check of what is about to be written: each member (or the cluster) within the bound."""
    if opts.error_scope == "matrix":
        return max(errors.values()) <= opts.max_error
    weights = {i: float(np.sum(blocks[i] ** 2)) for i in members}
    total = sum(weights.values())
    return math.sqrt(sum(weights[i] * errors[i] ** 2 for i in members) / total) <= opts.max_error
