"""``cond.inspect``: read every matrix of an input, one at a time, and diagnose it.

Matrices are analysed side by side by a pool of ``workers`` forked processes
(threads where fork is not available, or for ``--device cuda``): many small
LAPACK calls do not scale on threads even though NumPy releases the GIL for
them (``cond/threads.py`` gives the figures; ``tests/test_parallel.py`` measures
the overlap). Each task reads its own tensor, so at most ``workers`` tensors are
in memory at once whatever the checkpoint's size. BLAS runs on one thread per
task so that the cores are not oversubscribed; a matrix whose smaller side is
at least ``LARGE_SIDE`` is analysed first, alone, with BLAS on every idle core
inside its one factorisation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from cond.commands.choices import regex_option
from cond.commands.inspect_report import InspectReport, MatrixReport, SkippedTensor, Summary
from cond.commands.validate import refuse_unused
from cond.errors import InputError, UsageError, input_errors
from cond.formats import TensorEntry, open_entries
from cond.formats.entry import skip_reason_for_ndim, unit_roundoff
from cond.formats.outputs import OutputPlan, write_npz
from cond.linalg.spectrum import diagnose
from cond.threads import busy_aware_blas

LARGE_SIDE = 2048  # min(m, n) from which a matrix gets every idle core inside its factorisation


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
    gram: bool = True
    fail_above: Optional[float] = None

    def record(self) -> dict:
        return dataclasses.asdict(self)


def inspect(
    source,
    *,
    alpha=False,
    normality=False,
    include=None,
    input_format=None,
    columns=None,
    name=None,
    workers=None,
    keep_spectra=False,
    scheduler=None,
    device="cpu",
    progress=None,
    header=None,
    notice=None,
    gram=True,
    spectra=None,
    plot=None,
    plot_format="png",
    fail_above=None,
    force=False,
    base=None,
) -> InspectReport:
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
        Matrices analysed at once, by forked processes (threads where fork is not
        available, or on the GPU), BLAS on one thread each (default: the number of
        CPUs, at most 8); 1 analyses them in this process with BLAS on the idle cores
        (:func:`cond.threads.blas_threads`).
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
    gram : bool
        Allow the certified Gram route for clearly tall or wide matrices (every
        singular value certified to 1e-9 relative, else an SVD); ``False``: an SVD always.
    spectra : str, optional
        Also write every matrix's singular values to this ``.npz`` (one array per name).
    plot : str, optional
        Write pictures into this folder (needs matplotlib): per matrix its spectral
        density and scree plot, and an overview (:mod:`cond.commands.plots`).
    plot_format : {"png", "svg", "pdf"}
    fail_above : float, optional
        The gate: ``report.gate_failed`` is true when a kappa exceeds it (non-finite or
        all-zero matrices count as exceeding); a gate over no matrix is refused.
    force : bool
        Replace existing ``spectra`` and plot files (never an input).
    base : str, optional
        For a LoRA adapter: its base checkpoint (each delta's norm relative to its weight).

    Returns
    -------
    InspectReport
        Or, for a LoRA adapter (a PEFT folder or a kohya file), an
        :class:`~cond.commands.adapter_report.AdapterReport` (schema ``cond.adapter/1``).

    Raises
    ------
    cond.errors.InputError
        The input cannot be read, or a matrix has a zero-size dimension.
    cond.errors.UsageError
        An argument breaks its rule.
    """
    from cond.backends import check_device
    from cond.distributed import scheduler_from
    from cond.formats.sources import source_kind

    kind = source_kind(source, "inspect")
    if kind == "path" and _is_adapter(source):
        refuse_unused(
            {
                "--alpha": alpha,
                "--normality": normality,
                "--spectra": spectra is not None,
                "--plot": plot is not None,
                "--fail-above": fail_above is not None,
                "--columns": columns is not None,
                "--header": header is not None,
                "--input-format": input_format is not None,
                "--scheduler": scheduler is not None,
                "--device": device != "cpu",
                "--no-gram": not gram,
            },
            "to checkpoints and designs, not to a LoRA adapter",
        )
        from cond.commands.adapter_report import inspect_adapter

        return inspect_adapter(source, base=base, include=include, keep_spectra=keep_spectra, progress=progress)
    if base is not None:
        if kind != "path":
            raise UsageError(
                "`--base` compares two checkpoints on disk (or an adapter with its base); this source is not a path"
            )
        from cond.commands.adapter_report import inspect_delta

        return inspect_delta(source, base, include=include, keep_spectra=keep_spectra, progress=progress)
    workers = _check_workers(workers)
    pattern = regex_option("--include", include)
    if fail_above is not None and not (isinstance(fail_above, (int, float)) and fail_above > 0):
        raise UsageError(f"`--fail-above` must be a positive number; got {fail_above!r}")
    refuse_unused({"--plot-format": plot is None and plot_format != "png"}, "with `--plot`; add it")
    if plot is not None:
        from cond.commands.plots import check_plot_format, require_matplotlib

        check_plot_format(plot_format)
        require_matplotlib()
    options = InspectOptions(
        alpha=bool(alpha),
        normality=bool(normality),
        include=include,
        workers=workers,
        keep_spectra=bool(keep_spectra or spectra is not None or plot is not None),
        scheduler=scheduler_from(scheduler),
        device=check_device(device),
        gram=bool(gram),
        fail_above=fail_above,
    )
    if options.scheduler is not None:
        _check_distributable(source, input_format)
    paths = [os.fspath(source)] if kind == "path" else []
    with OutputPlan(paths, force=force) as plan:
        if spectra is not None:
            plan.file(spectra, "--spectra")
        if plot is not None:
            plan.folder(plot, "--plot")
        with _entries(source, kind, input_format, columns, header, notice, name, options) as (label, entries, options):
            entries = [e for e in entries if pattern is None or pattern.search(e.name)]
            pictures = None if plot is None else _plan_pictures(plan, plot, plot_format, entries)
            with busy_aware_blas():
                report = _run(label, entries, options, progress)
        report = _finish(report, source, kind, plan, spectra, plot, plot_format, pictures, include)
    return report


@contextlib.contextmanager
def _entries(source, kind, input_format, columns, header, notice, name, options=None):
    """``(label, entries, options)`` of any source kind inspect takes (options moved to the GPU for
    a CuPy array)."""
    from cond.backends import check_device, is_cupy_array
    from cond.formats.sources import dataframe_matrix, dict_arrays

    if kind in ("path", "stdin"):
        with open_entries(source, input_format=input_format, columns=columns, header=header, notice=notice) as entries:
            yield os.fspath(source), entries, options
        return
    if kind != "array" and (input_format, columns, header) != (None, None, None):
        raise UsageError(
            "`input_format`, `columns` and `header` apply to files; select the columns of "
            "an array or DataFrame before passing it"
        )
    if kind == "dict":
        yield "<dict>", [_array_entry(n, a, "<dict>", checkpoint=True) for n, a in dict_arrays(source).items()], options
    elif kind == "dataframe":
        matrix, names = dataframe_matrix(source)
        yield (
            "<DataFrame>",
            [dataclasses.replace(_array_entry(name or "frame", matrix, "<DataFrame>"), columns=tuple(names))],
            options,
        )
    else:
        if is_cupy_array(source):  # the backend follows the array: a GPU array is analysed on the GPU
            options = dataclasses.replace(options, device=check_device("cuda")) if options else options
            source = source.get()
        yield "<array>", [_array_entry(name or "array", np.asarray(source), "<array>")], options


def _array_entry(name, array, label, checkpoint=False):
    """A tensor entry for an array in memory; integer and bool arrays are skipped in a
    checkpoint (ids, masks, codes) and widened as data otherwise (the rule of :mod:`cond.formats.sources`)."""
    from cond.formats.arrays import kind_reason

    if array.dtype.hasobject or array.dtype.kind not in "biufV" and array.dtype.name not in ("bfloat16",):
        raise InputError(f"has dtype {array.dtype}, not numeric", path=label, tensor=name, shape=array.shape)
    reason = kind_reason(array.dtype, checkpoint) or skip_reason_for_ndim(array.shape)
    return TensorEntry(
        name,
        tuple(array.shape),
        str(array.dtype),
        label,
        unit_roundoff(array.dtype),
        reason,
        lambda: np.array(array, dtype=np.float64, copy=True),
    )


def _plan_pictures(plan, folder, fmt, entries):
    """The picture files of ``--plot``, planned before the work: one per matrix, then the overview."""
    from cond.commands.plots import safe_name

    taken, paths = set(), []
    for e in entries:
        if e.skip_reason is None:
            paths.append(plan.member(folder, f"{safe_name(e.name, taken)}.{fmt}", "--plot"))
    paths.append(plan.member(folder, f"{safe_name('overview', taken)}.{fmt}", "--plot"))
    for path in paths:
        if os.path.lexists(path) and not plan.force:
            raise UsageError("exists; pass --force to replace it (`--plot`)", path=path)
    return paths


def _finish(report, source, kind, plan, spectra, plot, plot_format, pictures, include):
    """The manifest of a compressed input, the gate, and the files asked for."""
    options = report.options
    if kind == "path":
        manifest = _manifest_of(source)
        report = report if manifest is None else dataclasses.replace(report, compressed=manifest)
    if options["fail_above"] is not None:
        if not report.matrices:
            why = f"no tensor matches `--include {include}`" if include is not None else "no matrix to analyse"
            raise UsageError(f"{why}, so `--fail-above` has nothing to check", path=report.input)
        report = dataclasses.replace(report, exceeded=tuple(m.name for m in report.above(options["fail_above"])))
    if spectra is not None:
        write_npz(
            plan,
            spectra,
            {m.name: m.diagnostics.spectrum for m in report.matrices if m.diagnostics.spectrum is not None},
        )
    if plot is not None:
        from cond.commands.plots import write_plots

        write_plots(report, plot, plot_format, plan=plan, paths=pictures)
        report = dataclasses.replace(report, pictures=tuple(pictures if report.matrices else ()))
    return report


def _is_adapter(source):
    from cond.formats.lora import is_adapter

    return is_adapter(source)


def _manifest_of(source):
    """The cond-lowrank manifest of a single safetensors file, or None."""
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

    fmt = (
        None
        if not isinstance(source, (str, os.PathLike)) or str(source) == "-"
        else format_of(str(source), str(source), input_format)
    )
    if fmt not in ("safetensors", "index", "directory"):
        what = "an array" if fmt is None else f"{source} ({fmt})"
        raise UsageError(
            f"`--scheduler` distributes safetensors checkpoints, whose tensors the workers "
            f"read themselves; {what} is not one: run without `--scheduler`"
        )


def _check_workers(workers):
    if workers is None:
        from cond.threads import default_threads

        return default_threads()
    if not isinstance(workers, int) or workers < 1:
        raise UsageError(f"`workers` must be a positive integer; got {workers!r}")
    return workers


def _run(label, entries, options, progress):
    """Every entry (already chosen by ``--include``) analysed, or listed as skipped with its reason."""
    started = time.perf_counter()
    todo = [e for e in entries if e.skip_reason is None]
    skipped = [
        SkippedTensor(e.name, e.source, e.shape, e.dtype, e.skip_reason) for e in entries if e.skip_reason is not None
    ]
    for e in todo:
        if 0 in e.shape:
            raise InputError("matrix has a zero-size dimension", path=e.source, tensor=e.name, shape=e.shape)
    results = []
    if options.scheduler is not None:
        from cond.distributed import dask_client, ordered_map

        with dask_client(options.scheduler) as client:
            for result in ordered_map(client, _analyse_task, todo, options=options):
                results.append(result)
                _tick(progress, len(results), len(todo), result.name)
    else:
        placed = [None] * len(todo)
        for index, result in _in_process(todo, options):
            placed[index] = result
            results.append(result)
            _tick(progress, len(results), len(todo), result.name)
        results = placed  # file order
    summary = Summary.of(results, skipped, time.perf_counter() - started)
    return InspectReport(label, tuple(results), tuple(skipped), summary, options.record())


def _in_process(todo, options):
    """(index in ``todo``, report) as they finish: large matrices one at a time with BLAS on
    every idle core, then the rest side by side on ``workers`` processes (or threads) with BLAS on
    one thread each. With one worker BLAS keeps the idle cores throughout."""
    from cond.threads import can_fork, forked_map, one_thread_blas, threaded_map

    analyse = lambda item: (item[0], _analyse(item[1], options))  # noqa: E731
    indexed = list(enumerate(todo))
    if options.workers == 1 or len(todo) <= 1:
        yield from map(analyse, indexed)
        return
    large = [item for item in indexed if min(_matrix_shape(item[1].shape)) >= LARGE_SIDE]
    small = [item for item in indexed if min(_matrix_shape(item[1].shape)) < LARGE_SIDE]
    yield from map(analyse, large)
    if options.device == "cpu" and can_fork() and len(small) > 1:
        yield from forked_map(analyse, small, options.workers)
        return
    with one_thread_blas():
        yield from threaded_map(analyse, small, options.workers)


def _matrix_shape(shape):
    rest = 1
    for d in shape[1:]:
        rest *= int(d)
    return (int(shape[0]), rest)


def _tick(progress, done, total, name):
    if progress is not None:
        progress(done, total, name)


def _analyse_task(entry, options) -> MatrixReport:
    """One tensor on a Dask worker: BLAS on one thread, as in the in-process pool."""
    from cond.threads import one_thread_blas

    with one_thread_blas():
        return _analyse(entry, options)


def _analyse(entry, options) -> MatrixReport:
    """One tensor's diagnostics (its spectrum kept when the run keeps spectra)."""
    t0 = time.perf_counter()
    values = entry.load()
    with input_errors(path=entry.source, tensor=entry.name, shape=entry.shape):  # linalg's ValueErrors
        d = diagnose(
            values,
            unit_roundoff=entry.unit_roundoff,
            alpha=options.alpha,
            normality=options.normality,
            keep_spectrum=options.keep_spectra,
            overwrite_a=values.flags.owndata and values.flags.writeable,
            device=options.device,
            gram=options.gram,
        )
    return MatrixReport(entry.name, entry.source, tuple(entry.shape), entry.dtype, d, time.perf_counter() - t0)
