"""``cond.inspect``: read every matrix of an input, one at a time, and diagnose it.

Matrices are analysed by a small pool of threads (LAPACK releases the GIL);
each task reads its own tensor, so at most ``workers`` tensors are in memory
at once whatever the checkpoint's size. While the pool runs, BLAS is limited
to one thread per task so that the cores are not oversubscribed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional
import os
import re
import time

import numpy as np

from cond.errors import InputError, UsageError, input_errors
from cond.formats import TensorEntry, open_entries
from cond.formats.entry import skip_reason_for_ndim, unit_roundoff
from cond.linalg.spectrum import diagnose
from cond.commands.inspect_report import InspectReport, MatrixReport, SkippedTensor, Summary


@dataclass(frozen=True)
class InspectOptions:
    """A checked inspect request; ``record()`` is the ``options`` object of ``cond.inspect/1``."""

    alpha: bool
    normality: bool
    include: Optional[str]
    workers: int
    keep_spectra: bool
    scheduler: Optional[str]
    device: str

    def record(self) -> dict:
        return dataclasses.asdict(self)


def inspect(source, *, alpha=False, normality=False, include=None, input_format=None,
            columns=None, name=None, workers=None, keep_spectra=False, scheduler=None, device="cpu",
            progress=None, header=None, notice=None) -> InspectReport:
    """Diagnose every matrix in ``source``.

    Parameters
    ----------
    source : str, os.PathLike or array_like
        A safetensors file, a ``*.safetensors.index.json``, a checkpoint
        directory, a ``.npy`` / ``.npz`` / ``.csv`` / ``.tsv`` / ``.mtx`` /
        ``.parquet`` file, ``-`` for standard input, or an array (a CuPy
        array is analysed on its GPU).
    alpha : bool
        Add the power-law exponent of the squared singular values.
    normality : bool
        Add Henrici's departure from normality for square matrices.
    include : str, optional
        Regular expression; only tensors whose name it matches (``re.search``) are analysed.
    input_format : str, optional
        Format of ``source`` when its name does not tell (standard input).
    columns : str, optional
        Columns of a table to use (names, globs, indices, ranges).
    name : str, optional
        Name of an array ``source`` in the report (default ``array``).
    workers : int, optional
        Threads analysing matrices concurrently (default: the number of CPUs, at most 8).
    keep_spectra : bool
        Keep every matrix's singular values in ``diagnostics.spectrum``.
    scheduler : str, optional
        A Dask scheduler address or ``local:N`` (default ``$COND_SCHEDULER``, else
        in-process): one task per tensor, read by the worker from the checkpoint's
        files (safetensors inputs only).
    device : {"cpu", "cuda"}
        Where the singular values are computed (``cuda`` needs CuPy and a GPU).
    progress : callable, optional
        Called as ``progress(done, total, name)`` after each matrix.
    header : bool, optional
        CSV / TSV: whether the first line is a header (default: decided by its fields).
    notice : callable, optional
        ``notice(line)`` hears what cond decided on the caller's behalf (a header line).

    Returns
    -------
    InspectReport

    Raises
    ------
    cond.errors.InputError
        The input cannot be read, or a matrix has a zero-size dimension.
    cond.errors.UsageError
        An argument breaks its rule.
    """
    from cond.backends import check_device, is_cupy_array
    from cond.distributed import scheduler_from

    workers = _check_workers(workers)
    pattern = _compile(include)
    options = InspectOptions(alpha=bool(alpha), normality=bool(normality), include=include, workers=workers,
                             keep_spectra=bool(keep_spectra), scheduler=scheduler_from(scheduler),
                             device=check_device(device))
    if options.scheduler is not None:
        _check_distributable(source, input_format)
    if isinstance(source, (str, os.PathLike)):
        with open_entries(source, input_format=input_format, columns=columns, header=header,
                          notice=notice) as entries:
            report = _run(str(source), entries, pattern, options, progress)
        manifest = _manifest_of(source)
        return report if manifest is None else dataclasses.replace(report, compressed=manifest)
    if is_cupy_array(source):  # the backend follows the array: a GPU array is analysed on the GPU
        options = dataclasses.replace(options, device=check_device("cuda"))
        source = source.get()
    array = np.asarray(source)
    entry = TensorEntry(name or "array", array.shape, str(array.dtype), "<array>",
                        unit_roundoff(array.dtype), skip_reason_for_ndim(array.shape),
                        lambda: np.array(array, dtype=np.float64, copy=True))
    return _run("<array>", iter([entry]), pattern, options, progress)


def _manifest_of(source):
    """The cond-lowrank/1 manifest of a single safetensors file, or None."""
    source = str(source)
    if source == "-" or not os.path.isfile(source) or not source.endswith(".safetensors"):
        return None
    from cond.formats.lowrank_format import CompressedCheckpoint, is_compressed
    from cond.formats.safetensors_file import read_header

    if not is_compressed(read_header(source).metadata):
        return None
    return CompressedCheckpoint(source).manifest


def _check_distributable(source, input_format):
    from cond.formats.detect import format_of

    fmt = None if not isinstance(source, (str, os.PathLike)) or str(source) == "-" else \
        format_of(str(source), str(source), input_format)
    if fmt not in ("safetensors", "index", "directory"):
        what = "an array" if fmt is None else f"{source} ({fmt})"
        raise UsageError(f"`--scheduler` distributes safetensors checkpoints, whose tensors the workers "
                         f"read themselves; {what} is not one: run without `--scheduler`")


def _check_workers(workers):
    if workers is None:
        from cond.threads import default_threads

        return default_threads()
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"`workers` must be a positive integer; got {workers!r}")
    return workers


def _compile(include):
    if include is None:
        return None
    try:
        return re.compile(include)
    except re.error as exc:
        raise UsageError(f"`--include` is not a valid regular expression ({exc}); got {include!r}") from None


def _run(label, entries, pattern, options, progress):
    started = time.perf_counter()
    entries = [e for e in entries if pattern is None or pattern.search(e.name)]
    todo = [e for e in entries if e.skip_reason is None]
    skipped = [SkippedTensor(e.name, e.source, e.shape, e.dtype, e.skip_reason)
               for e in entries if e.skip_reason is not None]
    for e in todo:
        if 0 in e.shape:
            raise InputError("matrix has a zero-size dimension", path=e.source, tensor=e.name,
                             shape=e.shape)
    analyse = lambda e: _analyse(e, options.alpha, options.normality,  # noqa: E731
                                 options.keep_spectra, options.device)
    results = []
    if options.scheduler is not None:
        from cond.distributed import dask_client, ordered_map

        with dask_client(options.scheduler) as client:
            for result in ordered_map(client, _analyse_task, todo, alpha=options.alpha,
                                      normality=options.normality, keep_spectra=options.keep_spectra,
                                      device=options.device):
                results.append(result)
                _tick(progress, len(results), len(todo), result.name)
    elif options.workers == 1 or len(todo) <= 1:
        for e in todo:
            results.append(analyse(e))
            _tick(progress, len(results), len(todo), e.name)
    else:
        from cond.threads import one_thread_blas, threaded_map

        with one_thread_blas():
            # file order; at most `workers` tensors in flight beyond the one being consumed,
            # because each task loads its own tensor.
            for result in threaded_map(analyse, todo, options.workers):
                results.append(result)
                _tick(progress, len(results), len(todo), result.name)
    summary = Summary.of(results, skipped, time.perf_counter() - started)
    return InspectReport(label, tuple(results), tuple(skipped), summary, options.record())


def _tick(progress, done, total, name):
    if progress is not None:
        progress(done, total, name)


def _analyse_task(entry, alpha, normality, keep_spectra, device="cpu") -> MatrixReport:
    """One tensor on a Dask worker: BLAS on one thread, as in the in-process pool."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return _analyse(entry, alpha, normality, keep_spectra, device)


def _analyse(entry, alpha, normality, keep_spectra, device="cpu") -> MatrixReport:
    """One tensor's diagnostics (its spectrum kept when the run keeps spectra)."""
    t0 = time.perf_counter()
    values = entry.load()
    with input_errors(path=entry.source, tensor=entry.name, shape=entry.shape):  # linalg's ValueErrors
        d = diagnose(values, unit_roundoff=entry.unit_roundoff,
                     alpha=alpha, normality=normality, keep_spectrum=keep_spectra,
                     overwrite_a=values.flags.owndata and values.flags.writeable, device=device)
    return MatrixReport(entry.name, entry.source, tuple(entry.shape), entry.dtype, d,
                        time.perf_counter() - t0)
