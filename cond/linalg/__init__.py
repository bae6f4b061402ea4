"""Pure numerics: arrays in, arrays or frozen dataclasses out. No paths, no printing."""

from cond.linalg.powerlaw import PowerLawFit, fit_powerlaw
from cond.linalg.spectrum import MatrixDiagnostics, as_matrix, diagnose
from cond.linalg.tree import BLOCK_ROWS

__all__ = ["BLOCK_ROWS", "MatrixDiagnostics", "PowerLawFit", "as_matrix", "diagnose", "fit_powerlaw"]
