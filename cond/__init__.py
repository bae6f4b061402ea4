"""cond: condition numbers, spectra and compression of matrices you can trust.

>>> import cond
>>> report = cond.inspect("model.safetensors", alpha=True)    # doctest: +SKIP
>>> report.summary.worst_kappa                                 # doctest: +SKIP

Heavy modules (numpy, scipy, numba) load on first use, so that ``cond --help``
starts fast.
"""

from cond._version import __version__

__all__ = [
    "__version__",
    "inspect",
    "InspectReport",
    "compress",
    "expand",
    "sample",
    "collinearity",
    "dedup",
    "calibrate",
    "load_compressed",
    "open_compressed",
]

_LAZY = {
    "compress": ("cond.commands.compress", "compress"),
    "expand": ("cond.commands.expand", "expand"),
    "sample": ("cond.commands.sample", "sample"),
    "collinearity": ("cond.commands.collinearity", "collinearity"),
    "dedup": ("cond.commands.dedup", "dedup"),
    "calibrate": ("cond.commands.calibrate", "calibrate"),
    "load_compressed": ("cond.formats.lowrank_format", "load_compressed"),
    "open_compressed": ("cond.formats.lowrank_format", "open_compressed"),
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    if name == "inspect":
        from cond.commands.inspect import inspect

        return inspect
    if name == "InspectReport":
        from cond.commands.inspect_report import InspectReport

        return InspectReport
    raise AttributeError(f"module 'cond' has no attribute {name!r}")
