"""Fisher-weighted SVD and whitening against their closed forms (cond.linalg.weighted).

Oracles: numpy's LAPACK SVD of the weighted matrix formed here, and the
output error computed from the calibration inputs X themselves.
"""

import numpy as np
import pytest

from cond.linalg.weighted import FISHER_FLOOR, JITTER_START, fisher_weighting, weighted_factors, whitening

EPS = np.finfo(np.float64).eps


def _matrix(rng, m=40, n=30):
    # a decaying spectrum, so that truncation errors are far from zero and from the whole
    u = np.linalg.qr(rng.standard_normal((m, m)))[0][:, :n]
    v = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (u * np.logspace(0, -2, n)) @ v.T


def _objective(w, w_hat, a, b):
    return np.linalg.norm(a[:, None] * (w - w_hat) * b[None, :])


@pytest.mark.parametrize("axis", ["in", "out", "both"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_weighted_objective_is_the_discarded_energy_and_perturbations_never_lower_it(axis, seed):
    rng = np.random.default_rng(seed)
    w = _matrix(rng)
    m, n = w.shape
    fisher = rng.gamma(0.5, size=(m, n))  # heavy-tailed importances
    r = 7
    weighting = fisher_weighting(fisher, m, n, axis)
    left, right, _ = weighted_factors(w, weighting, r)
    # the oracle forms A and B from the definition (DESIGN.md), independently of the code
    a = np.sqrt(fisher.sum(axis=1)) if axis in ("out", "both") else np.ones(m)
    b = np.sqrt(fisher.sum(axis=0)) if axis in ("in", "both") else np.ones(n)
    s = np.linalg.svd(a[:, None] * w * b[None, :], compute_uv=False)
    best = _objective(w, left @ right, a, b)
    # Eckart-Young on A W B; the tolerance is a few ulps of the largest singular value
    assert abs(best - np.sqrt(np.sum(s[r:] ** 2))) <= 50 * EPS * s[0]
    for _ in range(30):
        scale = 10.0 ** rng.uniform(-6, -2)
        dl = scale * rng.standard_normal(left.shape) * np.abs(left).max()
        dr = scale * rng.standard_normal(right.shape) * np.abs(right).max()
        assert _objective(w, (left + dl) @ (right + dr), a, b) >= best * (1 - 1e-12)
    # plain SVD at the same rank is never better in the weighted norm
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    assert _objective(w, (u[:, :r] * sv[:r]) @ vt[:r], a, b) >= best * (1 - 1e-12)


def test_whitened_output_error_is_sqrt_of_the_discarded_energy():
    rng = np.random.default_rng(3)
    n_in, m, samples = 24, 32, 500
    mixing = rng.standard_normal((n_in, n_in)) * np.logspace(0, -3, n_in)  # correlated inputs
    x = rng.standard_normal((samples, n_in)) @ mixing
    w = rng.standard_normal((m, n_in))
    weighting = whitening(x.T @ x)
    assert weighting.jitter == 0
    for r in (1, 5, 12):
        left, right, _ = weighted_factors(w, weighting, r)
        output_error = np.linalg.norm((w - left @ right) @ x.T)
        # oracle: the best rank-r approximation of the outputs W X^T is reached (X has full
        # column rank), so the error is the Eckart-Young tail of W X^T's own singular values
        s = np.linalg.svd(w @ x.T, compute_uv=False)
        assert output_error == pytest.approx(np.sqrt(np.sum(s[r:] ** 2)), rel=1e-8, abs=1e-10 * s[0])
        # and it beats plain SVD's output error at the same rank
        u, sv, vt = np.linalg.svd(w, full_matrices=False)
        assert output_error <= np.linalg.norm((w - (u[:, :r] * sv[:r]) @ vt[:r]) @ x.T) * (1 + 1e-12)


def test_fisher_scale_does_not_matter_and_vectors_equal_element_sums():
    rng = np.random.default_rng(4)
    w = _matrix(rng)
    m, n = w.shape
    fisher = rng.gamma(0.5, size=(m, n))
    for axis in ("in", "out", "both"):
        base = weighted_factors(w, fisher_weighting(fisher, m, n, axis), 6)
        scaled = weighted_factors(w, fisher_weighting(1e7 * fisher, m, n, axis), 6)
        for x, y in zip(base, scaled):
            np.testing.assert_allclose(x, y, rtol=1e-9, atol=1e-12 * np.abs(x).max())
    for axis, vector in (("in", fisher.sum(axis=0)), ("out", fisher.sum(axis=1))):
        left, right, _ = weighted_factors(w, fisher_weighting(vector, m, n, axis), 6)
        full_left, full_right, _ = weighted_factors(w, fisher_weighting(fisher, m, n, axis), 6)
        np.testing.assert_allclose(left @ right, full_left @ full_right, rtol=1e-10, atol=1e-13)


def test_zero_importances_are_clamped_and_stay_finite():
    rng = np.random.default_rng(5)
    w = _matrix(rng)
    m, n = w.shape
    fisher = rng.gamma(0.5, size=(m, n))
    fisher[:, :5] = 0.0  # five input features the loss never saw
    fisher[:3, :] = 0.0
    for axis in ("in", "out", "both"):
        weighting = fisher_weighting(fisher, m, n, axis)
        assert weighting.clamped == {"in": 5, "out": 3, "both": 8}[axis]
        for d, raw in ((weighting.left, fisher.sum(axis=1)), (weighting.right, fisher.sum(axis=0))):
            if d is not None:
                # the rule of DESIGN.md: d_i^2 >= FISHER_FLOOR * mean(d^2) of the raw importances
                expected = np.maximum(raw, FISHER_FLOOR * raw.mean()) / raw.mean()
                np.testing.assert_allclose(d**2, expected, rtol=1e-12)
        left, right, s = weighted_factors(w, weighting, 6)
        assert np.all(np.isfinite(left)) and np.all(np.isfinite(right)) and np.all(np.isfinite(s))
        # a clamped column is still approximated by a projection: no blow-up beyond ||W||
        assert np.linalg.norm(left @ right) <= 2 * np.linalg.norm(w)
    # an all-zero Fisher carries no information: the weights are uniform, plain SVD
    weighting = fisher_weighting(np.zeros((m, n)), m, n, "both")
    assert np.all(weighting.left == 1) and np.all(weighting.right == 1)


def test_singular_gram_gets_a_growing_jitter_and_bad_grams_are_refused():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((100, 10))
    x[:, 3] = 0.0  # a dead input
    gram = x.T @ x
    weighting = whitening(gram)
    assert weighting.jitter >= JITTER_START
    # the factor is the Cholesky factor of the jittered Gram (oracle: reconstruct it)
    shifted = gram + weighting.jitter * np.mean(np.diag(gram)) * np.eye(10)
    np.testing.assert_allclose(
        weighting.right @ weighting.right.T, shifted, rtol=1e-12, atol=1e-12 * np.abs(gram).max()
    )
    w = rng.standard_normal((8, 10))
    left, right, _ = weighted_factors(w, weighting, 4)
    assert np.all(np.isfinite(left @ right))
    bad = gram.copy()
    bad[2, 2] = -1.0
    with pytest.raises(ValueError, match="negative diagonal"):
        whitening(bad)
    with pytest.raises(ValueError, match="zero"):
        whitening(np.zeros((4, 4)))
    indefinite = np.diag([1.0, 1.0, -0.5]) + 0.0
    indefinite[2, 2] = 0.0
    indefinite[0, 2] = indefinite[2, 0] = 0.9  # diagonal >= 0 but far from PSD
    with pytest.raises(ValueError, match="not positive semidefinite"):
        whitening(indefinite)
