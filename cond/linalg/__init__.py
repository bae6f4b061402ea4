"""Pure numerics: arrays in, arrays or frozen dataclasses out. No paths, no printing."""

from cond.linalg.tree import BLOCK_ROWS
from cond.linalg.powerlaw import PowerLawFit, fit_powerlaw
from cond.linalg.spectrum import MatrixDiagnostics, as_matrix, diagnose

__all__ = ["BLOCK_ROWS", "MatrixDiagnostics", "PowerLawFit", "as_matrix", "diagnose", "fit_powerlaw"]
