"""``--budget`` / ``--budget-bytes``: one share of the selected matrices' parameters (or bytes)
spent across all of them, where the method's error falls most per unit spent.

Phase A (here) reads every selected matrix once for its spectrum in the method's norm
(the whitened one with ``--activations``, the Fisher-weighted one with ``--fisher``,
the plain one otherwise) and lists its options with their cost and predicted loss:

- untouched: cost the whole matrix, loss 0;
- quantized: the whole matrix at the storage dtype (``--dtype``), loss its measured
  squared relative error;
- rank r: cost r (m + n) parameters (or the factors' bytes), loss the Eckart-Young tail
  e(r)^2 plus, when the storage dtype rounds, twice the matrix's own rounding loss
  (two factors rounded; a prediction, the written error is measured in phase B).

The loss is the squared *relative* error, so that every matrix counts alike whatever
its scale; with ``--method whiten --fisher FILE`` it is instead each layer's output
error weighted by how much that output moves the model's function (its
*sensitivity*). For y = W x with the output's Jacobian J taken as isotropic,
J^T J ~ s I, a perturbation costs s ||dW X^T||_F^2 / N; the label-free Fisher of
``cond calibrate`` has trace(F) = E ||J^T z||^2 ||x||^2 ~ s m trace(G) / N, so
s ~ N trace(F) / (m trace(G)) and the loss of a rank is
trace(F) / (m trace(G)) * ||W L||_F^2 * e(r)^2 (N and the Fisher's scale are the
same for every layer). On MiniLM the plain relative loss spent the budget badly
(it cut the FFN output projections, whose whitened spectra fall fast, to ranks
4-15, and the embeddings suffered); the sensitivity-weighted one beat uniform
``--ratio`` (README). Options that save less than ``--min-saving`` of the untouched cost are
dropped, and with ``--max-error`` so are those predicted above the bound.
:func:`cond.linalg.allocation.allocate` then takes one option per matrix. Phase B is
pass 1 with each matrix's form fixed (:func:`~cond.commands.compress.own_form.first_pass`);
a rank raised there to meet ``--max-error`` after rounding is reported in the spent share.
"""

from __future__ import annotations

import numpy as np

from cond.commands.compress.groupwise_form import groupwise_options
from cond.commands.compress.own_form import finite_matrix, rounder, weighting_of
from cond.commands.compress.storage import Storage, dtype_bytes
from cond.errors import InputError, UsageError, input_errors
from cond.linalg.allocation import allocate
from cond.linalg.truncated import relative_error, tail_errors


def plan_budget(entries, opts, calibration, client=None, progress=None, sensitivities=None, grams=None):
    """The form of every selected matrix under the budget: ({name: plan}, summary dict)."""
    if client is not None:
        from cond.distributed import ordered_map

        listed = list(
            ordered_map(
                client,
                matrix_options,
                entries,
                opts=opts,
                calibration=calibration,
                sensitivities=sensitivities,
                grams=grams,
            )
        )
    else:
        listed = []
        for done, entry in enumerate(entries):
            if progress:
                progress("budget", done, len(entries), entry.name)
            listed.append(matrix_options(entry, opts, calibration, sensitivities, grams))
        if progress and entries:
            progress("budget", len(entries), len(entries), "")
    known = [w for _, _, w in listed if w is not None]
    fill = float(np.mean(known)) if known else 1.0  # a layer the Fisher file lacks: the mean sensitivity
    listed = [
        (untouched, [(c, loss * (fill if w is None else w), plan) for c, loss, plan in options])
        for untouched, options, w in listed
    ]
    whole = float(sum(untouched for untouched, _ in listed))
    target = opts.budget * whole
    try:
        allocation = allocate([[(cost, loss) for cost, loss, _ in options] for _, options in listed], target)
    except ValueError:
        least = sum(min(cost for cost, _, _ in options) for _, options in listed)
        within = " within `--max-error`" if opts.max_error is not None else ""
        flag = "--budget-bytes" if opts.budget_unit == "bytes" else "--budget"
        raise UsageError(
            f"`{flag}` {opts.budget:g} is below the least share this selection can be "
            f"stored in{within}: {least / whole:.4f} of its {opts.budget_unit}"
        ) from None
    plans = {entry.name: options[k][2] for entry, (_, options), k in zip(entries, listed, allocation.choice)}
    share = lambda cost: cost / whole if whole else 0.0
    summary = dict(
        unit=opts.budget_unit,
        share=opts.budget,
        planned=share(allocation.cost),
        loss="sensitivity-weighted output error" if sensitivities is not None else "relative error",
        lagrangian=share(allocation.lagrangian_cost),
        predicted_loss=allocation.loss,
        slope=allocation.slope * whole,
    )
    return plans, summary


def matrix_options(entry, opts, calibration, sensitivities=None, grams=None):
    """(the untouched cost, [(cost, predicted relative loss, plan), ...], the weight of its loss or None)
    of one matrix; the weight is its sensitivity with ``sensitivities`` (else 1).

    With ``--dtype int2`` .. ``int7`` only group-wise forms at that width compete with
    untouched; with ``--budget-bytes`` and no ``--dtype`` every form does (int8 rows whole,
    low rank in fp16, group-wise at every width and group size with each correction rank).
    """
    w = finite_matrix(entry)
    m, n = w.shape
    where = dict(path=entry.source, tensor=entry.name, shape=entry.shape)
    weighting, _ = weighting_of(calibration, entry.name, entry.shape)
    by_bytes = opts.budget_unit == "bytes"
    untouched = dtype_bytes(entry.dtype, m * n) if by_bytes else m * n
    limit = untouched * (1 - opts.min_saving)
    bound = opts.max_error
    options = [(untouched, 0.0, ("untouched",))]
    if opts.bits is not None or opts.all_forms:
        options += groupwise_options(w, opts, weighting, grams, entry, rounder(entry.dtype), limit)
    energy = float(np.sum(weighting.apply(w) ** 2))  # ||A W B||_F^2, what the sensitivity scales
    if opts.bits is None:  # low rank competes: its losses are the spectrum's tails
        with input_errors(**where):
            s = np.linalg.svd(weighting.apply(w), compute_uv=False)
        whole = Storage("I8" if opts.all_forms else opts.dtype or entry.dtype)
        factors = Storage("F16" if opts.all_forms else whole.dtype)
        if whole.dtype != entry.dtype:
            loss = _rounding_loss(w, whole, entry, weighting)
            cost = whole.nbytes(m, n) if by_bytes else m * n
            if loss is not None and cost <= limit and (bound is None or loss <= bound * bound):
                options.append((cost, loss, ("quantized", whole.dtype)))
        rounding = (_rounding_loss(w, factors, entry, weighting) or 0.0) if factors.dtype != entry.dtype else 0.0
        tail = tail_errors(s) ** 2
        for r in range(1, min(m, n) + 1):
            cost = factors.lowrank_bytes(m, n, r) if by_bytes else r * (m + n)
            if cost > limit:
                break
            if bound is not None and tail[r] > bound * bound:
                continue
            options.append((cost, float(tail[r] + 2 * rounding * (1 - tail[r])), ("lowrank", r, factors.dtype)))
    return untouched, options, sensitivity(sensitivities, entry, weighting, energy)


def _rounding_loss(w, storage, entry, weighting):
    """The squared relative error of the whole matrix stored at ``storage`` (None: out of its range)."""
    try:
        rounded = storage.round(w)
    except ValueError:
        return None
    err = relative_error(w, rounder(entry.dtype)(rounded), weighting)
    return err * err


def sensitivity(fisher, entry, weighting, energy):
    """trace(F) / (m trace(G)) * ||W L||_F^2: the weight of this layer's relative output error, or
    1 without a Fisher file, None when the file has no entry for it."""
    if fisher is None:
        return 1.0
    if entry.name not in fisher or weighting.kind != "whiten":
        return None
    values = fisher.entries[entry.name].load()
    if not np.all(np.isfinite(values)) or (values.size and values.min() < 0):
        raise InputError(
            "must hold finite, non-negative squared gradients", path=fisher.path, tensor=entry.name, shape=values.shape
        )
    trace_g = float(np.sum(weighting.right**2))  # ||L||_F^2 = trace(L L^T) = trace(G + jitter)
    return float(np.sum(values, dtype=np.float64)) / (entry.shape[0] * trace_g) * energy
