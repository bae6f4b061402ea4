"""Diagnostics against mpmath (60 digits), closed forms and statsmodels' Longley data."""

import math

import ml_dtypes
import numpy as np
import pytest
import scipy.linalg
from oracles import EPS, hilbert, kahan, kappa_rtol, lauchli, mp_kappa

from cond.linalg import diagnose
from cond.linalg.spectrum import EPS64

# DESIGN.md reference values (mpmath, 60 digits), given to 5 significant digits.
HILBERT_KAPPA = {4: 1.5514e4, 5: 4.7661e5, 6: 1.4951e7, 8: 1.5258e10, 10: 1.6026e13}
KAHAN_KAPPA = {10: 29.85, 20: 2300.2, 50: 3.947e8}


@pytest.mark.parametrize("n", sorted(HILBERT_KAPPA))
def test_hilbert_kappa_matches_mpmath(n):
    a = hilbert(n)
    d = diagnose(a)
    truth = mp_kappa(a)  # of the float64-rounded matrix that cond sees
    assert d.status == "ok"
    assert abs(d.kappa - truth) / truth <= kappa_rtol(a, truth)
    # the rounding of 1/(i+j+1) to float64 moves kappa by about eps * kappa relative;
    # the published values are rounded to 5 digits
    assert d.kappa == pytest.approx(HILBERT_KAPPA[n], rel=5e-5 + n * EPS * truth)


@pytest.mark.parametrize("n", sorted(KAHAN_KAPPA))
def test_kahan_kappa_matches_mpmath(n):
    a = kahan(n)
    d = diagnose(a)
    truth = mp_kappa(a)
    assert d.status == "ok"
    assert abs(d.kappa - truth) / truth <= kappa_rtol(a, truth)
    assert d.kappa == pytest.approx(KAHAN_KAPPA[n], rel=5e-4)


@pytest.mark.parametrize("n, eps", [(3, 1e-3), (5, 1e-5), (10, 1e-7)])
def test_lauchli_kappa_closed_form(n, eps):
    a = lauchli(n, eps)
    d = diagnose(a)
    truth = math.sqrt(n + eps**2) / eps  # sigma = sqrt(n + eps^2) and eps (n-1 times)
    assert d.status == "ok"
    assert abs(d.kappa - truth) / truth <= kappa_rtol(a, truth)


def test_numpy_reference_matrix():
    # numpy's own test of cond(): A = [[1,0,1],[0,-2,0],[0,0,3]]
    d = diagnose(np.array([[1.0, 0, 1], [0, -2, 0], [0, 0, 3]]))
    assert d.kappa == pytest.approx(3.3699240762154807, rel=1e-14)


def test_longley_with_intercept_matches_statsmodels_design():
    sm = pytest.importorskip("statsmodels.api")
    data = sm.datasets.longley.load_pandas()
    x = sm.add_constant(data.exog.to_numpy(dtype=np.float64))
    d = diagnose(x)
    truth = mp_kappa(x)
    assert d.status == "ok"
    assert abs(d.kappa - truth) / truth <= kappa_rtol(x, truth)
    assert d.kappa == pytest.approx(4.86e9, rel=5e-3)  # DESIGN.md, 3 digits


def test_float32_arithmetic_would_be_wrong_but_cond_is_right():
    # A float32-stored matrix with kappa ~ 1e8: float32 SVD cannot resolve sigma_min
    # (its error is ~ eps32 * sigma_max = 1e-7, the size of sigma_min itself).
    rng = np.random.default_rng(1)
    u, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    a32 = ((u * np.logspace(0, -8, 40)) @ v.T).astype(np.float32)
    truth = mp_kappa(a32.astype(np.float64))
    s32 = scipy.linalg.svd(a32, compute_uv=False)  # LAPACK sgesdd, float32 arithmetic
    assert s32.dtype == np.float32
    float32_kappa = float(s32[0]) / float(s32[-1])
    # float32 gets at most a couple of digits (here it is off by about 4%)
    assert abs(float32_kappa - truth) / truth > 1e-2, "the example must defeat float32 arithmetic"
    d = diagnose(a32.astype(np.float64), unit_roundoff=float(np.finfo(np.float32).eps) / 2)
    # float64 resolves it: kappa * eps * c = 1e8 * 2.2e-16 * 40 ~ 1e-6
    assert d.status in ("ok", "storage-limited")
    assert abs(d.kappa - truth) / truth <= kappa_rtol(a32, truth)
    # stored rounding (u = 6e-8) moves sigma_min by ~ u * sigma_max, i.e. kappa > 1/u: flagged
    assert d.storage_limited == (truth > 2**24)


def test_beyond_float64_is_unresolved_with_a_valid_lower_bound():
    a = hilbert(14)  # kappa ~ 1e17 after rounding to float64 (mpmath says)
    truth = mp_kappa(a, dps=80)
    d = diagnose(a)
    assert d.status == "unresolved"
    assert d.kappa_lower_bound is not None
    assert d.kappa_lower_bound <= truth
    # and the bound is not vacuous: within the float64 resolution limit
    assert d.kappa_lower_bound >= 0.1 / (max(a.shape) * EPS64) / 10


def test_exactly_singular_matrix_is_unresolved():
    a = np.outer(np.arange(1.0, 6.0), np.arange(1.0, 4.0))  # rank 1
    d = diagnose(a)
    assert d.status == "unresolved"
    assert d.numerical_rank == 1
    assert d.kappa_lower_bound > 1e12


def test_storage_limited_bf16():
    # bf16 unit roundoff 2^-8: kappa above 256 is flagged, kappa below is not
    for k, flagged in ((1e3, True), (100.0, False)):
        a = np.diag([1.0, 1.0 / k]).astype(ml_dtypes.bfloat16).astype(np.float64)
        d = diagnose(a, unit_roundoff=float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps) / 2)
        assert d.storage_limited is flagged
        assert d.status == ("storage-limited" if flagged else "ok")


def test_rank_measures_closed_forms():
    s = np.array([4.0, 3.0, 2.0, 1.0, 0.0])
    a = np.zeros((6, 5))
    a[np.arange(5), np.arange(5)] = s
    d = diagnose(a)
    assert d.sigma_max == 4.0 and d.sigma_min == 0.0
    assert d.numerical_rank == 4
    assert d.rank_tolerance == pytest.approx(4.0 * 6 * EPS)
    assert d.frobenius_norm == pytest.approx(math.sqrt(30.0), rel=1e-15)
    assert d.stable_rank == pytest.approx(30.0 / 16.0, rel=1e-15)
    p = s[:4] / s.sum()
    assert d.effective_rank == pytest.approx(math.exp(-np.sum(p * np.log(p))), rel=1e-14)
    # energies 16, 25, 29, 30 of 30: 90% needs 3 values (29 >= 27), 99% needs 4 (30 >= 29.7)
    assert (d.energy_rank_90, d.energy_rank_99) == (3, 4)
    assert d.zero_fraction == pytest.approx((30 - 4) / 30)


def test_energy_rank_exact_tie():
    # identity of size 10: exactly 9 values hold 90% of the energy
    d = diagnose(np.eye(10))
    assert d.energy_rank_90 == 9 and d.energy_rank_99 == 10
    assert d.effective_rank == pytest.approx(10.0, rel=1e-14)


def test_nonfinite_matrix_reported_not_analysed():
    a = np.ones((3, 4))
    a[0, 1] = np.nan
    a[2, 3] = np.inf
    d = diagnose(a)
    assert d.status == "non-finite" and d.nonfinite_count == 2
    assert d.kappa is None and d.sigma_max is None


def test_zero_matrix():
    d = diagnose(np.zeros((3, 3)))
    assert d.status == "zero" and d.kappa is None and d.numerical_rank == 0


def test_henrici_closed_forms():
    # normal (symmetric) matrix: departure 0
    rng = np.random.default_rng(2)
    b = rng.standard_normal((6, 6))
    assert diagnose(b + b.T, normality=True).henrici == pytest.approx(0.0, abs=1e-6)
    # triangular: eigenvalues are the diagonal, departure = ||strict upper||_F / ||T||_F
    t = np.triu(rng.standard_normal((6, 6)))
    expect = np.linalg.norm(np.triu(t, 1)) / np.linalg.norm(t)
    assert diagnose(t, normality=True).henrici == pytest.approx(expect, rel=1e-10)
    assert diagnose(rng.standard_normal((3, 5)), normality=True).henrici is None


@pytest.mark.parametrize("shape", [(3000, 40), (40, 3000), (500, 200), (200, 500), (60, 60)])
def test_singular_values_match_lapack_for_every_path(shape):
    # tall and wide matrices take the CholeskyQR2 path when well-conditioned; its values
    # must agree with LAPACK gesvd (a different driver) to the backward-error level
    from cond.backends.numpy_backend import svdvals

    rng = np.random.default_rng(3)
    k = min(shape)
    a = (
        rng.standard_normal(shape) @ np.diag(np.logspace(0, -2, shape[1]))
        if shape[0] > shape[1]
        else np.diag(np.logspace(0, -2, shape[0])) @ rng.standard_normal(shape)
    )
    got = svdvals(a)
    ref = scipy.linalg.svd(a, compute_uv=False, lapack_driver="gesvd")
    assert got.shape == (k,)
    assert np.max(np.abs(got - ref)) <= 10 * max(shape) * EPS * ref[0]


def test_cholqr_path_falls_back_when_ill_conditioned():
    from cond.backends.numpy_backend import svdvals

    rng = np.random.default_rng(4)
    a = rng.standard_normal((2000, 30)) @ np.diag(np.logspace(0, -12, 30))
    ref = scipy.linalg.svd(a, compute_uv=False, lapack_driver="gesvd")
    got = svdvals(a)
    # Gram-based QR would lose sigma_min entirely (kappa^2 = 1e24 >> 1/eps)
    assert abs(got[-1] - ref[-1]) <= 10 * 2000 * EPS * ref[0]
    assert got[-1] == pytest.approx(ref[-1], rel=1e-3)


def test_input_validation_messages():
    with pytest.raises(TypeError, match="float64"):
        diagnose(np.ones((2, 2), dtype=np.float32))
    with pytest.raises(ValueError, match="zero-size"):
        diagnose(np.ones((0, 3)))
    with pytest.raises(ValueError, match="unit_roundoff"):
        diagnose(np.eye(2), unit_roundoff=2.0)


@pytest.mark.parametrize(
    "shape, kappa, order", [((2000, 50), 1e6, "C"), ((300, 2000), 1e7, "F"), ((4000, 30), 10.0, "C")]
)
def test_declined_fast_path_leaves_the_input_to_gesdd(shape, kappa, order):
    # A tall (or Fortran-held wide) matrix whose kappa fails the CholeskyQR2 test was once
    # handed to gesdd after the first pass had overwritten it with Q: kappa ~ 1, status ok.
    from cond.backends.numpy_backend import svdvals

    rng = np.random.default_rng(11)
    m, n = shape
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    s_true = np.geomspace(1.0, 1.0 / kappa, k)
    a = np.array((u * s_true) @ v.T, order=order)
    original = a.copy()
    truth = scipy.linalg.svdvals(original)  # float64 LAPACK on a copy
    s = svdvals(a, overwrite_a=True)
    # backward stable: each sigma within c * eps * sigma_max of LAPACK's (Weyl, c = max(m, n))
    assert np.max(np.abs(s - truth)) <= 4 * max(m, n) * EPS * truth[0]
    d = diagnose(original.copy(order=order), overwrite_a=True)
    assert abs(d.kappa - kappa) / kappa <= kappa_rtol(original, kappa) + 1e-9  # spectrum prescribed to ~1e-12


@pytest.mark.parametrize(
    "shape, kappa", [((3000, 300), 20.0), ((3000, 300), 300.0), ((1400, 1040), 5.0), ((300, 2500), 50.0)]
)
def test_gram_route_values_within_their_certified_bound(shape, kappa):
    # planted spectra (orthonormal factors from QR: truth known to a few eps); whatever the
    # route decides, an accepted result is within its stated bound and within 1e-9 relative
    from cond.linalg.gram import GRAM_RTOL, gram_spectrum

    rng = np.random.default_rng(int(kappa) + shape[1])
    m, n = shape
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    truth = np.geomspace(1.0, 1.0 / kappa, k)
    a = (u * truth) @ v.T
    g = gram_spectrum(a, np.linalg.norm(a))
    d = diagnose(a)
    oracle = 8 * max(m, n) * EPS  # the planted matrix's own rounding, relative to sigma_1
    if g.accepted:
        assert np.max(np.abs(g.values - truth)) <= g.bound + oracle
        assert np.all(np.abs(g.values - truth) <= GRAM_RTOL * truth + oracle)
        assert d.route == "gram" and d.sigma_error == g.bound
    else:
        assert d.route in ("cholqr2", "gesdd")
    assert abs(d.sigma_min - truth[-1]) <= d.sigma_error + oracle
    if kappa <= 20:  # well conditioned: the route is taken
        assert g.accepted, g.bound
