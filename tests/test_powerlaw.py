"""The power-law fit on classic Pareto samples of known exponent, and its kernel."""

import os
import subprocess
import sys

import numpy as np
import pytest

import naive
from cond.kernels.powerlaw_scan import powerlaw_ks_scan
from cond.linalg import fit_powerlaw


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
    tail = rng.pareto(1.5, 3000) * 2.0 + 2.0          # alpha = 2.5 above xmin = 2
    body = rng.uniform(0.1, 2.0, 3000)                 # flat body below it
    fit = fit_powerlaw(np.concatenate([body, tail]))
    assert 1.6 <= fit.xmin <= 2.6
    assert abs(fit.alpha - 2.5) <= 4 * fit.sigma


def test_too_few_samples_gives_none():
    assert fit_powerlaw(np.arange(1.0, 6.0)) is None
    assert fit_powerlaw(np.ones(50)) is None
    with pytest.raises(ValueError, match="min_tail"):
        fit_powerlaw(np.arange(1.0, 60.0), min_tail=1)


def test_kernel_matches_naive_reference():
    rng = np.random.default_rng(6)
    x = np.sort(np.concatenate([rng.pareto(2.0, 300) + 1.0, [1.5, 1.5, 2.0]]))  # with ties
    a, d = powerlaw_ks_scan(x, 10)
    ra, rd = naive.powerlaw_ks_scan(x, 10)
    np.testing.assert_array_equal(np.isnan(a), np.isnan(ra))
    np.testing.assert_allclose(a, ra, rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(d, rd, rtol=1e-10, atol=1e-14, equal_nan=True)


def test_kernel_runs_with_jit_disabled():
    code = ("import numpy as np, naive;"
            "from cond.kernels.powerlaw_scan import powerlaw_ks_scan;"
            "x = np.sort(np.random.default_rng(7).pareto(2.0, 200) + 1.0);"
            "a, d = powerlaw_ks_scan(x, 10); ra, rd = naive.powerlaw_ks_scan(x, 10);"
            "np.testing.assert_allclose(d, rd, rtol=1e-10, equal_nan=True); print('ok')")
    env = dict(os.environ, NUMBA_DISABLE_JIT="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=os.path.dirname(os.path.abspath(__file__)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
