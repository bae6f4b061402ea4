"""Per-matrix spectral diagnostics and a condition number with a trust status.

All quantities are computed in float64 from the exact stored values. The
singular values come from a backward-stable SVD, so each computed sigma_i is
within ``c * eps * sigma_max`` of the true one (Weyl), with ``c = max(m, n)``
used here as the constant, plus the relative tolerance at which LAPACK's
bidiagonal SVD stops (``dbdsqr``: ``TOLMUL * u``, ``TOLMUL = max(10, min(100,
u**-1/8))``, about 49 eps; cond allows ``BIDIAGONAL_RTOL = 100 eps`` times
sigma_i, and the test suite measured up to 51 eps on near-orthogonal matrices).
sigma_min's relative error is therefore about ``c * eps * kappa``, which gives
the status:

``ok``
    ``kappa * eps * c <= 0.1``: kappa is good to about that relative error.
``unresolved``
    ``kappa * eps * c > 0.1``: float64 cannot resolve sigma_min. ``kappa`` is
    what was computed and ``kappa_lower_bound = (sigma_max (1 - 100 eps) - err) /
    (sigma_min (1 + 100 eps) + err)``, ``err = c * eps * sigma_max``, is guaranteed.
``storage-limited``
    resolved, but ``kappa > 1 / u_storage`` (u the unit roundoff of the stored
    dtype, 2**-8 for bf16): rounding the weights to storage alone can move
    sigma_min by that much, so kappa says more about the rounding than about
    the matrix that was meant.
``non-finite``
    the matrix holds NaN or Inf; only the counts are reported.
``zero``
    every entry is zero; kappa is undefined.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from cond.backends import backend_of

EPS64 = float(np.finfo(np.float64).eps)
UNRESOLVED_THRESHOLD = 0.1
BIDIAGONAL_RTOL = 100 * EPS64  # relative accuracy of each sigma_i beyond c eps sigma_max (LAPACK dbdsqr)
ENERGY_LEVELS = (0.90, 0.99)


@dataclass(frozen=True)
class MatrixDiagnostics:
    """What ``cond inspect`` reports for one matrix. ``None`` marks "not computed"."""

    shape: tuple
    status: str
    sigma_max: Optional[float]
    sigma_min: Optional[float]
    kappa: Optional[float]
    kappa_lower_bound: Optional[float]
    storage_limited: bool
    numerical_rank: Optional[int]
    rank_tolerance: Optional[float]
    stable_rank: Optional[float]
    effective_rank: Optional[float]
    energy_rank_90: Optional[int]
    energy_rank_99: Optional[int]
    frobenius_norm: Optional[float]
    zero_fraction: float
    nonfinite_count: int
    alpha: Optional[float] = None
    alpha_sigma: Optional[float] = None
    alpha_xmin: Optional[float] = None
    alpha_ks_distance: Optional[float] = None
    alpha_n_tail: Optional[int] = None
    henrici: Optional[float] = None
    route: Optional[str] = None
    sigma_error: Optional[float] = None
    spectrum: Optional[np.ndarray] = field(default=None, repr=False, compare=False)


def as_matrix(a: np.ndarray) -> np.ndarray:
    """2-D view of an N-D array: (shape[0], prod(shape[1:])), as for a conv weight (out, in*k*k).

    Parameters
    ----------
    a : array_like of shape (m, ...)
        At least 2-D.

    Returns
    -------
    ndarray of shape (m, prod(shape[1:]))

    Raises
    ------
    ValueError
        For fewer than 2 dimensions.
    """
    a = np.asarray(a)
    if a.ndim < 2:
        raise ValueError(f"`a` must have at least 2 dimensions; got shape {a.shape}")
    return a.reshape(a.shape[0], int(np.prod(a.shape[1:])))


def diagnose(
    a,
    *,
    unit_roundoff=None,
    alpha=False,
    normality=False,
    keep_spectrum=False,
    overwrite_a=False,
    device="cpu",
    gram=True,
) -> MatrixDiagnostics:
    """Diagnostics of one matrix.

    Parameters
    ----------
    a : ndarray of shape (m, n)
        The matrix, already widened to float64 (N-D arrays are reshaped by
        :func:`as_matrix`). m and n must be positive.
    unit_roundoff : float, optional
        Unit roundoff of the dtype the matrix was stored in; enables the
        ``storage-limited`` status.
    alpha : bool
        Fit a power law to the squared singular values (see :mod:`cond.linalg.powerlaw`).
    normality : bool
        Henrici's departure from normality, relative to ||A||_F, for square matrices:
        sqrt(||A||_F^2 - sum |lambda_i|^2) / ||A||_F (0 for a normal matrix).
    keep_spectrum : bool
        Keep all singular values (descending, shape (min(m, n),)) in ``spectrum``.
    overwrite_a : bool
        Allow the SVD to use ``a`` as workspace. Kept for callers: no route writes to
        ``a`` now (NumPy's ``gesdd``, which releases the GIL, always works on a copy).
    device : {"cpu", "cuda"}
        Where the singular values are computed: ``cuda`` copies the matrix to the GPU
        (CuPy) and the backend follows that array; the cheap statistics stay on the host.
    gram : bool
        Allow the certified Gram route for clearly non-square matrices
        (:mod:`cond.linalg.gram`); ``False`` insists on a backward-stable SVD.

    Returns
    -------
    MatrixDiagnostics
    """
    a = as_matrix(a)
    if a.dtype != np.float64:
        raise TypeError(f"`a` must be float64 (widen exactly before calling); got {a.dtype}")
    if 0 in a.shape:
        raise ValueError(f"`a` must have no zero-size dimension; got shape {a.shape}")
    if unit_roundoff is not None and not 0 < unit_roundoff < 1:
        raise ValueError(f"`unit_roundoff` must be in (0, 1); got {unit_roundoff}")
    return _diagnose(a, unit_roundoff, alpha, normality, keep_spectrum, overwrite_a, device, gram)


def _diagnose(a, unit_roundoff, alpha, normality, keep_spectrum, overwrite_a, device="cpu", gram=True):
    m, n = a.shape
    frob, nonfinite = _frobenius(a)
    zero_fraction = float(a.size - np.count_nonzero(a)) / a.size  # NaN counts as non-zero
    empty = dict(
        sigma_max=None,
        sigma_min=None,
        kappa=None,
        kappa_lower_bound=None,
        storage_limited=False,
        numerical_rank=None,
        rank_tolerance=None,
        stable_rank=None,
        effective_rank=None,
        energy_rank_90=None,
        energy_rank_99=None,
    )
    if nonfinite:
        return MatrixDiagnostics(
            (m, n), "non-finite", frobenius_norm=None, zero_fraction=zero_fraction, nonfinite_count=nonfinite, **empty
        )
    if zero_fraction == 1.0:
        return MatrixDiagnostics(
            (m, n),
            "zero",
            frobenius_norm=0.0,
            zero_fraction=1.0,
            nonfinite_count=0,
            **{**empty, "sigma_max": 0.0, "sigma_min": 0.0, "numerical_rank": 0, "rank_tolerance": 0.0},
        )
    henrici = _henrici(a, frob) if normality and m == n else None  # before a may be overwritten
    s, route, sigma_error = _singular_values(a, frob, overwrite_a, device, gram)
    c = max(m, n)
    smax, smin = float(s[0]), float(s[-1])
    err = c * EPS64 * smax
    if sigma_error is None:  # a backward-stable SVD: e_i = c eps sigma_1 + 100 eps sigma_i, at most
        sigma_error = err + BIDIAGONAL_RTOL * smax
    kappa = smax / smin if smin > 0 else float("inf")
    unresolved = kappa * EPS64 * c > UNRESOLVED_THRESHOLD
    storage_limited = unit_roundoff is not None and kappa > 1.0 / unit_roundoff
    status = "unresolved" if unresolved else "storage-limited" if storage_limited else "ok"
    ranks = rank_measures(s)
    fit = _alpha(s, err) if alpha else None
    return MatrixDiagnostics(
        shape=(m, n),
        status=status,
        sigma_max=smax,
        sigma_min=smin,
        kappa=kappa,
        kappa_lower_bound=_kappa_lower_bound(smax, smin, err, route, sigma_error) if unresolved else None,
        storage_limited=bool(storage_limited),
        numerical_rank=int(np.count_nonzero(s > err)),
        rank_tolerance=err,
        stable_rank=(frob / smax) ** 2,
        effective_rank=ranks["effective_rank"],
        energy_rank_90=ranks["energy_rank_90"],
        energy_rank_99=ranks["energy_rank_99"],
        frobenius_norm=frob,
        zero_fraction=zero_fraction,
        nonfinite_count=0,
        alpha=None if fit is None else fit.alpha,
        alpha_sigma=None if fit is None else fit.sigma,
        alpha_xmin=None if fit is None else fit.xmin,
        alpha_ks_distance=None if fit is None else fit.ks_distance,
        alpha_n_tail=None if fit is None else fit.n_tail,
        henrici=henrici,
        route=route,
        sigma_error=sigma_error,
        spectrum=s if keep_spectrum else None,
    )


def _singular_values(a, frob, overwrite_a, device, gram):
    """(values descending, route, certified bound or None): the Gram route where its bound
    holds, else a backward-stable SVD on the original values."""
    if device == "cuda":
        from cond.backends.cupy_backend import to_device

        work = to_device(a)
        return backend_of(work).svdvals(work, overwrite_a=True), "cusolver", None
    from cond.backends import numpy_backend
    from cond.linalg.gram import gram_eligible, gram_spectrum

    formed = None
    if gram and gram_eligible(a.shape, frob):
        result = gram_spectrum(a, frob)
        if result.accepted:
            return result.values, "gram", result.bound
        formed = result.gram
    s, route = numpy_backend.svdvals_route(a, gram=formed)
    return s, route, None


def _kappa_lower_bound(smax, smin, err, route, sigma_error):
    """A guaranteed lower bound on kappa from the values' error bounds (route-dependent)."""
    if route == "gram":
        return max(smax - sigma_error, 0.0) / (smin + sigma_error)
    return max(smax * (1 - BIDIAGONAL_RTOL) - err, 0.0) / (smin * (1 + BIDIAGONAL_RTOL) + err)


def rank_measures(s) -> dict:
    """``effective_rank`` exp(H(p)) with p_i = sigma_i / sum sigma (Roy & Vetterli 2007) and the energy
    ranks ``energy_rank_90`` / ``_99`` of singular values ``s`` (descending, s[0] > 0): the one place
    both inspect and the adapter report compute them. Shares come from s / sigma_max, whose squares
    never under- or overflow (s * s does near the float64 limits)."""
    scaled = np.asarray(s, dtype=np.float64) / s[0]
    energy = np.cumsum(scaled * scaled)
    p = scaled / scaled.sum()
    p = p[p > 0]
    return dict(
        effective_rank=float(np.exp(-np.sum(p * np.log(p)))),
        energy_rank_90=_energy_rank(energy, ENERGY_LEVELS[0]),
        energy_rank_99=_energy_rank(energy, ENERGY_LEVELS[1]),
    )


def _energy_rank(cumulative, level):
    """Smallest r with sum_{i<=r} sigma_i^2 >= level * sum sigma^2 (a few ulps of slack for ties)."""
    target = level * cumulative[-1] * (1.0 - 4 * EPS64)
    return int(np.searchsorted(cumulative, target, side="left")) + 1


def _alpha(s, err):
    """The power-law fit of sigma^2, computed on (sigma / sigma_max)^2 (alpha is scale-free) so that
    the squares never under- or overflow; xmin is scaled back."""
    import dataclasses

    from cond.linalg.powerlaw import fit_powerlaw

    fit = fit_powerlaw((s[s > err] / s[0]) ** 2)
    if fit is None or fit.xmin is None:
        return fit
    return dataclasses.replace(fit, xmin=fit.xmin * s[0] * s[0])


def _frobenius(a):
    """(||a||_F, count of non-finite entries) in one BLAS pass when the squares stay finite.

    Finite entries whose squares overflow (or underflow) are rescaled by a power of two
    (exact), and the norm, not its square, is scaled back: ||a||_F of entries ~1e160 is finite.
    """
    flat = a.reshape(-1)
    with np.errstate(over="ignore", invalid="ignore"):
        sumsq = float(np.dot(flat, flat))
    if np.isfinite(sumsq) and sumsq > 1e-290:
        return float(np.sqrt(sumsq)), 0
    nonfinite = int(a.size - np.count_nonzero(np.isfinite(a)))
    if nonfinite:
        return None, nonfinite
    peak = float(np.max(np.abs(flat)))
    if peak == 0.0:
        return 0.0, 0
    shift = -np.frexp(peak)[1]
    scaled = np.ldexp(flat, shift)
    return float(np.ldexp(np.sqrt(np.dot(scaled, scaled)), -shift)), 0


def _henrici(a, frob):
    """sqrt(||A||_F^2 - sum |lambda_i|^2) / ||A||_F, formed from |lambda_i| / ||A||_F (no overflow)."""
    lam = backend_of(a).eigvals(a)
    gap = 1.0 - float(np.sum((np.abs(lam) / frob) ** 2))
    return float(np.sqrt(max(gap, 0.0)))
