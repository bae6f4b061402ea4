"""The power-law fit on classic Pareto samples of known exponent, and its KS scan."""

import naive
import numpy as np
import pytest

from cond.linalg import fit_powerlaw
from cond.linalg.powerlaw import ks_scan


@pytest.mark.parametrize("alpha", [1.8, 2.5, 3.5, 5.0])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_exponent_recovered(alpha, seed):
    # numpy's pareto(a) + 1 is the classic Pareto with xmin = 1 and density ~ x^-(a+1)
    x = np.random.default_rng(seed).pareto(alpha - 1.0, 4000) + 1.0
    fit = fit_powerlaw(x)
    # the MLE's standard error is (alpha - 1)/sqrt(n_tail); 4 sigma keeps the test
    # from failing by chance (p ~ 6e-5 per case) while still catching a biased estimator
    assert abs(fit.alpha - alpha) <= 4 * fit.sigma
    assert fit.n_tail >= 1000  # xmin found near 1, not deep in the tail


def test_xmin_found_above_a_non_power_law_body():
    rng = np.random.default_rng(5)
    tail = rng.pareto(1.5, 3000) * 2.0 + 2.0  # alpha = 2.5 above xmin = 2
    body = rng.uniform(0.1, 2.0, 3000)  # flat body below it
    fit = fit_powerlaw(np.concatenate([body, tail]))
    assert 1.6 <= fit.xmin <= 2.6
    assert abs(fit.alpha - 2.5) <= 4 * fit.sigma


def test_too_few_samples_gives_none():
    assert fit_powerlaw(np.arange(1.0, 6.0)) is None
    assert fit_powerlaw(np.ones(50)) is None
    with pytest.raises(ValueError, match="min_tail"):
        fit_powerlaw(np.arange(1.0, 60.0), min_tail=1)


@pytest.mark.parametrize("chunk", [1, 37, 1 << 22])
def test_scan_matches_naive_reference(chunk):
    # the vectorised scan, in chunks of any size, against the per-candidate loop of tests/naive.py
    rng = np.random.default_rng(6)
    x = np.sort(np.concatenate([rng.pareto(2.0, 300) + 1.0, [1.5, 1.5, 2.0]]))  # with ties
    a, d = ks_scan(x, 10, chunk_entries=chunk * len(x))
    ra, rd = naive.powerlaw_ks_scan(x, 10)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(ra))
    np.testing.assert_allclose(a, ra, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d, rd, rtol=1e-10, atol=1e-14, equal_nan=True)
    assert np.count_nonzero(~np.isnan(a)) == len(np.unique(x[:-9]))  # every distinct candidate
