"""The invariant checkers: what README.md promises, asserted against an independent truth.

One module for every shared checker: ``check_inspect_row`` (the accuracy promise),
``assert_within_bound`` (compress -> expand), ``check_sample`` (a valid weighted
sample) and ``assert_one_line_error`` (the error contract of the CLI).

``check_inspect_row`` is the one judge of every (case, path) pair of the catalogue
(``test_catalogue.py``) and of the property tests. It states the promise of README's
"The numbers and when to trust them" exactly as it is tested:

With ``c = max(m, n)``, ``eps = 2**-52`` and ``e_i = c eps sigma_1 + 100 eps sigma_i``
(sigma the exact singular values of the stored matrix, widened exactly to float64; the
second term is the relative accuracy at which LAPACK's bidiagonal SVD stops, ``dbdsqr``'s
TOLMUL u ~ 49 eps, doubled: Hypothesis found a 22 x 22 near-orthogonal matrix where every
LAPACK driver is 29.5 eps off, beyond ``c eps``):

1. every reported singular value (sigma_max, sigma_min, the spectrum) is within its ``e_i``;
2. status ``ok`` means the computed kappa satisfies ``kappa c eps <= 0.1``, so by 1 the
   reported kappa lies in ``[(sigma_1 - e_1) / (sigma_n + e_n), (sigma_1 + e_1) / (sigma_n - e_n)]``;
3. status ``unresolved`` means ``kappa c eps > 0.1`` and ``kappa_lower_bound <= kappa_true``;
4. ``storage-limited`` (status, and the boolean) means ``kappa > 1 / u_storage``;
5. ``numerical_rank`` counts the sigma above ``rank_tolerance = c eps sigma_max``: it lies
   between the true counts above ``tol + e`` and above ``tol - e``;
6. ``frobenius_norm`` is within ``(m n + 2) eps`` relative (a float64 dot product);
   ``stable_rank``, ``effective_rank`` and the energy ranks are those of a spectrum within
   ``e`` and a norm within that bound (tolerances derived below, next to each check).

Rows computed by the Gram route (``route`` "gram", ``cond/linalg/gram.py``) promise their
own bound instead of ``e_i``: every singular value within the row's ``sigma_error`` and within
``GRAM_RTOL = 1e-9`` of itself, relative (the route is taken only where that is certified).
Every row states ``sigma_error``, and on the SVD routes it is at least every ``e_i``.

An oracle's own uncertainty (``case.sigma_err``) is added to every ``e_i``.
"""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from oracles import EPS

UNRESOLVED_THRESHOLD = 0.1
BIDIAGONAL_RTOL = 100 * EPS  # LAPACK dbdsqr: TOLMUL * u <= 100 * 2**-53; doubled
GRAM_RTOL = 1e-9  # what the Gram route promises for every value, relative (README)
ROUTES = ("gram", "cholqr2", "gesdd", "cusolver")


class Tally:
    """Counts of what the catalogue checked, printed at the end of the session (conftest)."""

    pairs = 0
    cases = set()
    paths = set()

    @classmethod
    def add(cls, case, path):
        cls.pairs += 1
        cls.cases.add(case)
        cls.paths.add(path)


def check_inspect_row(case, row, unit_roundoff, spectrum=None):
    """Assertion messages (empty when every promise holds) for one analysed row.

    Parameters
    ----------
    case : cases.Case
    row : dict
        A ``cond.inspect/1`` matrix row (JSON, or ``MatrixReport.row()``).
    unit_roundoff : float or None
        Unit roundoff of the dtype the path stored the values in (None for text).
    spectrum : ndarray, optional
        Every computed singular value, when the path returns them.
    """
    missing = [
        k
        for k in (
            "sigma_max",
            "sigma_min",
            "frobenius_norm",
            "stable_rank",
            "effective_rank",
            "numerical_rank",
            "rank_tolerance",
            "energy_rank_90",
            "energy_rank_99",
        )
        if row.get(k) is None and "zero" not in case.tags
    ]
    if missing:
        return [f"{', '.join(missing)} missing (null) for status {row.get('status')}"]
    bad = []
    m, n = case.a.shape
    if list(row["matrix_shape"]) != [m, n]:
        return [f"shape {row['matrix_shape']} != {[m, n]}"]
    zero_fraction = float(np.count_nonzero(case.a == 0)) / case.a.size
    if row["zero_fraction"] != zero_fraction:
        bad.append(f"zero_fraction {row['zero_fraction']} != {zero_fraction}")
    if row["nonfinite_count"] != 0:
        bad.append(f"nonfinite_count {row['nonfinite_count']} != 0")
    if "zero" in case.tags:
        if row["status"] != "zero" or row["sigma_max"] != 0.0 or row["numerical_rank"] != 0:
            bad.append(f"zero matrix reported as {row['status']}, sigma_max {row['sigma_max']}")
        return bad
    c = max(m, n)
    s = case.sigma
    route, stated = row.get("route"), row.get("sigma_error")
    if route not in ROUTES or stated is None or not stated >= 0:
        return [f"route {route!r} / sigma_error {stated!r} not stated"]
    e = c * EPS * s[0] + case.sigma_err  # the backward-error part, the same for every sigma_i
    ei = e + (BIDIAGONAL_RTOL + EPS) * s  # per value: LAPACK's relative tolerance, the truth's rounding
    if route == "gram":  # the certified bound, absolute and relative, replaces e_i
        ei = np.minimum(stated, GRAM_RTOL * s * (1 + GRAM_RTOL)) + case.sigma_err + EPS * s
    elif not stated >= (c * EPS + BIDIAGONAL_RTOL) * (s[0] - ei[0]) * (1 - 4 * EPS):
        bad.append(f"sigma_error {stated!r} below the SVD route's (c + 100) eps sigma_1")
    # 1. singular values within e_i
    for label, got, k in (("sigma_max", row["sigma_max"], 0), ("sigma_min", row["sigma_min"], -1)):
        if got is None or not abs(got - s[k]) <= ei[k]:
            bad.append(f"{label} {got!r} not within {ei[k]:.3g} of {s[k]!r}")
    if spectrum is not None:
        miss = np.abs(np.asarray(spectrum) - s) - ei
        if np.any(miss > 0):
            k = int(np.argmax(miss))
            bad.append(f"sigma_{k + 1} is {abs(spectrum[k] - s[k]):.3g} from the truth (allowed {ei[k]:.3g})")
    if bad:
        return bad
    lo = (s[0] - ei[0]) / (s[-1] + ei[-1])
    hi = (s[0] + ei[0]) / (s[-1] - ei[-1]) if s[-1] > ei[-1] else math.inf
    kappa = row["kappa"]  # None in JSON means infinite
    kappa = math.inf if kappa is None else kappa
    resolved = kappa * EPS * c <= UNRESOLVED_THRESHOLD
    status = row["status"]
    # 2.-4. the status and what it promises
    if status == "ok" or status == "storage-limited":
        if not resolved:
            bad.append(f"status {status} with kappa {kappa:.6g} beyond c eps kappa <= 0.1")
        if not lo * (1 - 2 * EPS) <= kappa <= hi * (1 + 2 * EPS):
            bad.append(f"status {status}: kappa {kappa!r} outside [{lo!r}, {hi!r}] (truth {s[0] / s[-1]!r})")
        if row["kappa_lower_bound"] is not None:
            bad.append("a resolved kappa carries a lower bound")
    elif status == "unresolved":
        if resolved:
            bad.append(f"unresolved with kappa {kappa:.6g}, which c eps kappa <= 0.1 resolves")
        bound = row["kappa_lower_bound"]
        if bound is None or not bound <= hi * (1 + 2 * EPS):
            bad.append(f"kappa_lower_bound {bound!r} above the largest true kappa {hi!r}")
        if hi * EPS * c <= UNRESOLVED_THRESHOLD * (1 - 1e-6):  # 'unresolved only where float64 cannot'
            bad.append(f"unresolved although every kappa consistent with the truth (<= {hi:.4g}) is resolvable")
    else:
        bad.append(f"status {status!r} for a finite non-zero matrix")
    limited = unit_roundoff is not None and kappa > 1.0 / unit_roundoff
    if bool(row["storage_limited"]) != limited:
        bad.append(f"storage_limited {row['storage_limited']} but kappa {kappa:.4g}, u {unit_roundoff}")
    if status in ("ok", "storage-limited") and (status == "storage-limited") != limited:
        bad.append(f"status {status} but storage_limited should be {limited}")
    # 5. numerical rank between the counts the perturbation e allows
    tol = row["rank_tolerance"]
    if not abs(tol - c * EPS * s[0]) <= c * EPS * ei[0] + EPS * tol:
        bad.append(f"rank_tolerance {tol!r} != c eps sigma_max = {c * EPS * s[0]!r}")
    rank_lo, rank_hi = int(np.sum(s > tol + ei)), int(np.sum(s > tol - ei))
    if not rank_lo <= row["numerical_rank"] <= rank_hi:
        bad.append(f"numerical_rank {row['numerical_rank']} outside [{rank_lo}, {rank_hi}]")
    # 6. norms and ranks derived from the spectrum, in units of sigma_1 (no over- or underflow
    # for the cases near the float64 limits)
    frob = naive.frobenius(case.a)
    frob_tol = (m * n + 2) * EPS  # gamma_{mn}: a float64 sum of m n squares
    if not abs(row["frobenius_norm"] - frob) <= frob_tol * frob:
        bad.append(f"frobenius_norm {row['frobenius_norm']!r} != {frob!r}")
    u, eu = s / s[0], float(np.max(ei)) / s[0]  # eu: the largest e_i, in units of sigma_1
    stable = (frob / s[0]) ** 2
    stable_tol = 2 * frob_tol + 2 * eu + 4 * EPS  # relative: ||.||_F^2 / sigma_1^2
    if not abs(row["stable_rank"] - stable) <= stable_tol * stable * 1.01:
        bad.append(f"stable_rank {row['stable_rank']!r} != {stable!r}")
    # p_i = sigma_i / sum(sigma) moves by at most delta = 2 k e / sum(sigma) (k values); the
    # entropy term -p log p has modulus of continuity |x - y| (1 + |log |x - y||) for |x - y| <= 1/e.
    k = len(u)
    delta = min(2 * k * eu / float(np.sum(u)), 1 / math.e)
    d_entropy = k * delta * (1 + abs(math.log(delta))) if delta > 0 else 0.0
    eff = naive.effective_rank(u)
    if not abs(row["effective_rank"] - eff) <= eff * math.expm1(d_entropy + 8 * k * EPS) + 8 * EPS * eff:
        bad.append(f"effective_rank {row['effective_rank']!r} != {eff!r}")
    # energy ranks: sigma_i^2 moves by at most 2 sigma_i e + e^2; the code keeps 4 ulps of slack
    total = float(np.sum(u * u))
    slack = float(np.sum(2 * u * eu + eu * eu)) + 8 * k * EPS * total
    cumulative = np.cumsum(u * u)
    for level, key in ((0.90, "energy_rank_90"), (0.99, "energy_rank_99")):
        r = row[key]
        enough = cumulative[r - 1] >= level * total - slack
        minimal = r == 1 or cumulative[r - 2] < level * total + slack
        if not (enough and minimal):
            bad.append(f"{key} {r} does not keep the {level:.0%} energy minimally")
    return bad


def assert_one_line_error(result, expect):
    """Exit 2, one line on stderr starting ``cond: error: ``, every word of ``expect`` in it, no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    err = result.stderr.strip()
    assert err.count("\n") == 0, f"more than one line: {err!r}"
    assert "Traceback" not in result.output
    assert err.startswith("cond: error: ")
    for needle in expect:
        assert needle in err, f"{needle!r} not in {err!r}"
    return err


def assert_within_bound(original, expanded, bound):
    """Every matrix of the expanded checkpoint has the original's dtype and shape and is within
    ``bound`` relative Frobenius error, measured in float64 on what the user gets back."""
    assert set(expanded) == set(original)
    for name, w in original.items():
        assert expanded[name].dtype == w.dtype and expanded[name].shape == w.shape, name
        w64, back = w.astype(np.float64), expanded[name].astype(np.float64)
        error = np.linalg.norm(w64 - back) / np.linalg.norm(w64)
        assert error <= bound, (name, error, bound)


def check_sample(result, size):
    """A valid weighted sample: probabilities in (0, 1], loss weight 1/q and scale w^(1/p), and
    q_i = min(1, c s_i) for one c with sum_i q_i equal to the size asked for."""
    q, w = result.probs, result.weights
    assert np.all((q > 0) & (q <= 1))
    np.testing.assert_allclose(w, 1 / q, rtol=1e-15)
    np.testing.assert_allclose(result.scales, w ** (1 / result.header["p"]), rtol=1e-15)
    free = q < 1
    if free.any():
        c = q[free] / result.scores[result.indices][free]
        np.testing.assert_allclose(c, c[0], rtol=1e-12)
        assert float(np.sum(np.minimum(1.0, c[0] * result.scores))) == pytest.approx(size, rel=1e-9)
