"""Pictures of an inspect report (``cond inspect --plot DIR``), with matplotlib (``cond[plot]``).

Per matrix, one figure of two panels:

- the empirical spectral density of the squared singular values on log-log axes (a
  histogram over log-spaced bins, as WeightWatcher draws it), with the fitted power law
  from xmin when the report has one (``--alpha``);
- the singular values against their index (a scree plot, log scale), with the numerical
  rank tolerance and the 90% / 99% energy ranks marked.

And one overview figure: kappa, stable rank and (with ``--alpha``) alpha per matrix in file
order, so that a transformer's layers read as depth. File names come from tensor names,
made safe (:func:`safe_name`). Every function returns what it drew, so tests can compare
the pictures' data with the report's numbers.
"""

from __future__ import annotations

import os
import re

import numpy as np

from cond.errors import UsageError

PLOT_FORMATS = ("png", "svg", "pdf")


def require_matplotlib():
    """matplotlib with a non-interactive backend, or a one-line UsageError saying what to install."""
    try:
        import matplotlib
    except ImportError:
        raise UsageError("`--plot` needs matplotlib: pip install 'cond[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def check_plot_format(fmt="png"):
    """The picture format, before any work."""
    if fmt not in PLOT_FORMATS:
        raise UsageError(f"`--plot-format` must be one of {', '.join(PLOT_FORMATS)}; got {fmt!r}")


def safe_name(name, taken):
    """A file-name stem for a tensor name: letters, digits, '.', '_' and '-' only, never '..',
    and unique among ``taken`` (a suffix ``-2``, ``-3`` ... when two names map alike)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "matrix"
    stem = stem.replace("..", "_")[:120]
    out, k = stem, 2
    while out in taken:
        out, k = f"{stem}-{k}", k + 1
    taken.add(out)
    return out


def write_plots(report, folder, fmt="png", *, plan=None, paths=None):
    """Write the per-matrix figures and the overview into ``folder`` (created if missing; its
    parent must exist) through the run's output ``plan``. Returns ``{file: data drawn}``.

    ``paths``: the files planned for them (one per matrix, in order, then the overview), as
    ``cond.inspect(plot=...)`` plans them before the work. The report must hold every
    matrix's spectrum (``cond.inspect(..., keep_spectra=True)``).
    """
    from cond.formats.outputs import OutputPlan

    check_plot_format(fmt)
    plt = require_matplotlib()
    own = plan is None
    plan = OutputPlan(force=True) if own else plan
    try:
        if own:
            plan.folder(folder, "--plot")
        if paths is None:
            taken = set()
            paths = [
                os.path.join(folder, f"{safe_name(name, taken)}.{fmt}")
                for name in [m.name for m in report.matrices] + ["overview"]
            ]
        drawn = {}
        for m, path in zip(report.matrices, paths):
            if m.diagnostics.spectrum is not None:
                drawn[path] = _matrix_figure(plt, plan, m, path)
        if report.matrices:
            drawn[paths[-1]] = _overview(plt, plan, report, paths[-1])
    except BaseException:
        if own:
            plan.close(failed=True)  # the folder it made goes too
        raise
    if own:
        plan.close()
    return drawn


def _matrix_figure(plt, plan, m, path):
    d = m.diagnostics
    s = np.asarray(d.spectrum, dtype=np.float64)
    positive = s[s > 0]
    fig, (esd, scree) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    fig.suptitle(f"{_label(m.name)}  ({'x'.join(map(str, m.shape))}, {m.dtype}; kappa {_g(d.kappa)}, {d.status})")
    data = {"name": m.name, "singular_values": s}
    if len(positive) >= 2:
        ev = positive**2
        bins = np.geomspace(ev.min(), ev.max(), min(60, max(10, len(ev) // 4)) + 1)
        density, edges = np.histogram(ev, bins=bins, density=True)
        centres = np.sqrt(edges[:-1] * edges[1:])
        keep = density > 0
        esd.loglog(centres[keep], density[keep], "o-", ms=3, lw=1, label="ESD of sigma^2")
        data.update(esd_edges=edges, esd_density=density)  # every bin; the empty ones are not drawn
        if d.alpha is not None:
            xmin, alpha = d.alpha_xmin, d.alpha
            tail = ev[ev >= xmin]
            xs = np.geomspace(xmin, ev.max(), 50)
            # the fitted density on the tail, scaled to the tail's share of the mass
            ys = (alpha - 1) / xmin * (xs / xmin) ** (-alpha) * (len(tail) / len(ev))
            esd.loglog(xs, ys, "r--", lw=1.5, label=f"power law alpha {alpha:.2f} from xmin {xmin:.3g}")
            esd.axvline(xmin, color="r", lw=0.8, alpha=0.5)
            data.update(fit_x=xs, fit_density=ys, alpha=alpha, xmin=xmin)
        esd.legend(fontsize=8)
    esd.set_xlabel("squared singular value sigma^2 (log)")
    esd.set_ylabel("density (log)")
    esd.set_title("empirical spectral density")
    index = np.arange(1, len(s) + 1)
    scree.semilogy(index[s > 0], positive, "o-", ms=2, lw=1.2, label="sigma_i")
    tolerance = f"rank tolerance {d.rank_tolerance:.2g} (rank {d.numerical_rank})"
    if len(positive) and d.rank_tolerance >= positive.min() / 100:  # near the spectrum: draw it
        scree.axhline(d.rank_tolerance, color="gray", ls=":", label=tolerance)
    else:  # far below: a line there would flatten the spectrum; say it instead
        scree.plot([], [], " ", label=f"{tolerance}: below every sigma_i")
    if len(positive):
        lo = min(positive.min(), d.rank_tolerance if d.rank_tolerance >= positive.min() / 100 else np.inf)
        scree.set_ylim(lo / 2, positive.max() * 2)
    for r, style, label in ((d.energy_rank_90, "g--", "90%"), (d.energy_rank_99, "m--", "99%")):
        scree.axvline(r, color=style[0], ls="--", lw=1, label=f"{label} of sum sigma^2 at rank {r}")
    scree.set_xlabel("index i")
    scree.set_ylabel("singular value (log)")
    scree.set_title("singular values (scree)")
    scree.legend(fontsize=8)
    _save(plt, plan, fig, path)
    data.update(rank_tolerance=d.rank_tolerance, energy_rank_90=d.energy_rank_90, energy_rank_99=d.energy_rank_99)
    return data


def _overview(plt, plan, report, path):
    rows = report.matrices
    names = [m.name for m in rows]
    kappa = np.array([np.nan if m.diagnostics.kappa is None else m.diagnostics.kappa for m in rows], float)
    stable = np.array([np.nan if m.diagnostics.stable_rank is None else m.diagnostics.stable_rank for m in rows], float)
    alpha = np.array([np.nan if m.diagnostics.alpha is None else m.diagnostics.alpha for m in rows], float)
    panels = [("kappa (log)", kappa, True), ("stable rank", stable, False)]
    if np.any(np.isfinite(alpha)):
        panels.append(("power-law alpha", alpha, False))
    fig, axes = plt.subplots(
        len(panels), 1, figsize=(max(8, 0.22 * len(rows) + 3), 2.6 * len(panels)), sharex=True, constrained_layout=True
    )
    axes = np.atleast_1d(axes)
    x = np.arange(len(rows))
    for ax, (label, values, log) in zip(axes, panels):
        ax.plot(x, values, "o-", ms=3, lw=1)
        if log:
            ax.set_yscale("log")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[-1].set_xticks(x)
    axes[-1].set_xticklabels([_label(n) for n in names], rotation=90, fontsize=6 if len(rows) > 30 else 8)
    axes[-1].set_xlabel("matrix, in file order")
    fig.suptitle(f"cond inspect {_label(report.input)}: {len(rows)} matrices")
    _save(plt, plan, fig, path)
    return {"names": names, "kappa": kappa, "stable_rank": stable, "alpha": alpha}


def _save(plt, plan, fig, path):
    """Write a figure through the plan (a temporary file renamed into place): never half a picture."""
    try:
        with plan.writing(path) as tmp:
            fig.savefig(tmp, format=os.path.splitext(path)[1][1:])
    finally:
        plt.close(fig)


def _g(v):
    return "-" if v is None else f"{v:.4g}"


def _label(text):
    """A name for a figure: control characters as escapes (``\\x1b``), '$' not mathtext."""
    return re.sub(
        r"[\x00-\x1f\x7f-\x9f]", lambda m: m.group(0).encode("unicode_escape").decode("ascii"), str(text)
    ).replace("$", r"\$")


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(spectrum, width=16):
    """A spectrum as Unicode blocks on a log scale (empty for no positive value): sigma at
    ``width`` points evenly spread over the index, each mapped between log min and log max."""
    s = np.asarray(spectrum, dtype=np.float64)
    s = s[s > 0]
    if len(s) == 0:
        return ""
    picks = s[np.linspace(0, len(s) - 1, min(width, len(s))).round().astype(int)]
    lo, hi = np.log10(s[-1]), np.log10(s[0])
    if hi == lo:
        return SPARK[-1] * len(picks)
    levels = np.round((np.log10(picks) - lo) / (hi - lo) * (len(SPARK) - 1)).astype(int)
    return "".join(SPARK[k] for k in levels)
