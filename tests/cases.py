"""The case catalogue: named matrices with their true singular values.

In the spirit of NumPy's ``linalg/tests/test_linalg.py`` ``LinalgCase`` list: every
case is run through every reader and backend (``test_catalogue.py``) and judged by
one invariant checker (``invariants.check_inspect_row``).

A case holds the values exactly as stored (``a`` is float64 and widens the stored
dtype exactly) and the truth about *those* values:

- ``exact``: prescribed spectra built so that the float64 matrix *is* exactly
  ``L diag(s) V`` with L's columns orthogonal (Sylvester-Hadamard columns, entries
  +-1, norm sqrt(m)) and V orthogonal (blocks of H4 / 2 under signed permutations),
  s on a dyadic grid coarse enough that every entry (a sum of four terms +-s_k / 2)
  is exact in the storage dtype. Then sigma = sqrt(m) * s exactly, computed in
  mpmath. Scaling by a power of two keeps it exact (the ~1e-170 and ~1e160 cases).
- ``mpmath``: the SVD of the exact binary values at 60 digits (small matrices).
- ``lapack-gesvd``: float64 LAPACK ``gesvd`` (QR iteration; cond uses ``gesdd``,
  divide and conquer) where the values are rounded to a narrow dtype and the
  matrix is too large for mpmath. Its own error bound, max(m, n) eps sigma_max,
  is carried in ``sigma_err`` and added to the tolerance.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import ml_dtypes
import mpmath
import numpy as np
import scipy.linalg
from oracles import EPS, hilbert, kahan, lauchli, mp_singular_values

STORAGE = {"f64": np.float64, "f32": np.float32, "f16": np.float16, "bf16": ml_dtypes.bfloat16}
MANTISSA_BITS = {"f64": 53, "f32": 24, "f16": 11, "bf16": 8}
KAPPAS = (10.0, 1e3, 1e5, 1e7, 1e9, 1e12, 1e15)
SHAPES = {"square": (64, 64), "tall": (256, 32), "wide": (32, 256), "very-tall": (131072, 20)}


@dataclass(frozen=True)
class Case:
    """One matrix of the catalogue.

    Attributes
    ----------
    name : str
        Unique, usable as a tensor, file and column-free name.
    a : ndarray of shape (m, n), float64
        The stored values, widened exactly.
    storage : str
        The dtype it is stored in where a path can (``f64``, ``f32``, ``f16``, ``bf16``).
    sigma : ndarray of shape (min(m, n),)
        The true singular values of ``a``, descending, rounded to float64.
    sigma_err : float
        Absolute uncertainty of every entry of ``sigma`` (0 for exact and mpmath truth).
    oracle : str
        ``exact``, ``mpmath``, ``closed-form`` or ``lapack-gesvd``.
    tags : frozenset of str
        Shape and kind: ``square``, ``tall``, ``wide``, ``very-tall``, ``big``,
        ``singular``, ``zero``, ``tiny``, ``huge``, ``named``.
    """

    name: str
    a: np.ndarray
    storage: str
    sigma: np.ndarray
    sigma_err: float
    oracle: str
    tags: frozenset

    @property
    def stored(self) -> np.ndarray:
        """``a`` in its storage dtype (exact: ``a`` came from it), C-ordered: safetensors.numpy's
        save_file writes a Fortran-ordered array's bytes under its C shape, transposing it."""
        return np.ascontiguousarray(self.a.astype(STORAGE[self.storage]))


def _parity(x):
    p = np.zeros_like(x)
    while np.any(x):
        p ^= x & 1
        x = x >> 1
    return p


def hadamard_columns(m, cols):
    """Columns ``cols`` of the Sylvester-Hadamard matrix of order m (a power of two): +-1."""
    i = np.arange(m, dtype=np.int64)[:, None]
    return (1 - 2 * _parity(i & np.asarray(cols, dtype=np.int64)[None, :])).astype(np.float64)


def _orthogonal_blocks(n, rng):
    """An exactly orthogonal n x n matrix (n divisible by 4): blocks H4 / 2 under signed permutations."""
    h4 = hadamard_columns(4, range(4)) / 2.0
    v = np.kron(np.eye(n // 4), h4)
    v = v[rng.permutation(n)][:, rng.permutation(n)]
    return v * rng.choice([-1.0, 1.0], size=n)


def prescribed(shape_name, kappa, storage="f64", scale_exp=0, seed=0):
    """A matrix of the given shape whose spectrum is ~geomspace(1, 1/kappa) times sqrt(m), exactly.

    ``scale_exp`` multiplies by 2**scale_exp (exact). When the storage dtype has too few bits
    for the grid that kappa needs, the values are rounded to it and the truth is LAPACK's.
    """
    m, n = SHAPES[shape_name]
    wide = m < n
    if wide:
        m, n = n, m
    rng = np.random.default_rng(seed + int(math.log10(kappa)) * 101 + 7 * len(shape_name))
    bits = MANTISSA_BITS[storage]
    grid = bits - 2  # entries are sums of four terms +-s_k / 2 of magnitude <= 1 each
    exact = kappa <= 2.0 ** (grid + 1)
    if not exact:
        grid = MANTISSA_BITS["f64"] - 2
    t = np.geomspace(1.0, 1.0 / kappa, n)
    s = np.round(t * 2.0**grid) / 2.0**grid
    cols = rng.choice(m, size=n, replace=False)
    left = hadamard_columns(m, cols)[rng.permutation(m)]
    a = (left * s) @ _orthogonal_blocks(n, rng) * 2.0**scale_exp
    a = a.T.copy() if wide else a
    tags = {"wide" if wide else shape_name}
    if shape_name == "very-tall":
        tags |= {"tall"}
    if scale_exp < -300:
        tags.add("tiny")
    if scale_exp > 300:
        tags.add("huge")
    name = f"{shape_name}-k{kappa:.0e}".replace("+", "") + (f"-p2^{scale_exp}" if scale_exp else "")
    name = f"{name}-{storage}".replace("^", "")
    if exact:
        with mpmath.workdps(40):
            root_m = mpmath.sqrt(m)
            sigma = np.array(
                [float(root_m * mpmath.mpf(float(v)) * mpmath.mpf(2) ** scale_exp) for v in np.sort(s)[::-1]]
            )
        stored = a.astype(STORAGE[storage]).astype(np.float64)
        assert np.array_equal(stored, a), "the grid must make the matrix exact in its dtype"
        return Case(name, a, storage, sigma, 0.0, "exact", frozenset(tags))
    return lapack_case(name, a.astype(STORAGE[storage]).astype(np.float64), storage, tags)


def lapack_case(name, a, storage, tags):
    """Truth from float64 LAPACK gesvd, with its error bound max(m, n) eps sigma_max."""
    sigma = scipy.linalg.svd(a, compute_uv=False, lapack_driver="gesvd")
    return Case(name, a, storage, sigma, max(a.shape) * EPS * float(sigma[0]), "lapack-gesvd", frozenset(tags))


def mp_case(name, a, storage="f64", tags=()):
    """Truth from mpmath at 60 digits on the exact stored values."""
    a = np.ascontiguousarray(a, dtype=np.float64)
    stored = a.astype(STORAGE[storage]).astype(np.float64)
    m, n = stored.shape
    shape_tags = {"square"} if m == n else {"tall"} if m > n else {"wide"}
    sigma = np.array([float(v) for v in mp_singular_values(stored)])
    return Case(name, stored, storage, sigma, 0.0, "mpmath", frozenset(shape_tags | set(tags) | {"named"}))


def _longley():
    import statsmodels.api as sm

    data = sm.datasets.longley.load_pandas()
    return sm.add_constant(data.exog.to_numpy(dtype=np.float64))


def _integer_product(m, k, n, seed):
    """An m x n integer matrix of rank k (exactly representable, so its rank is exact)."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-5, 6, (m, k)) @ rng.integers(-5, 6, (k, n))).astype(np.float64)


def _named():
    rng = np.random.default_rng(3)
    cases = [mp_case(f"hilbert{n}", hilbert(n)) for n in (4, 6, 8, 10)]
    cases.append(mp_case("hilbert6-f32", hilbert(6), "f32"))
    cases += [mp_case(f"kahan{n}", kahan(n)) for n in (10, 20, 50)]
    cases += [mp_case("lauchli5-e1e-3", lauchli(5, 1e-3)), mp_case("lauchli10-e1e-7", lauchli(10, 1e-7))]
    x = np.linspace(0.0, 1.0, 50)
    cases.append(mp_case("vandermonde50x9", np.vander(x, 9, increasing=True)))
    years = np.arange(1947.0, 2047.0)
    cases.append(mp_case("poly-design100x4", np.vander(years, 4, increasing=True)))
    cases.append(mp_case("longley", _longley()))
    cases.append(mp_case("rank7-60x10", _integer_product(60, 7, 10, 1), tags={"singular"}))
    singular = _integer_product(8, 8, 8, 2)
    singular[5] = singular[2]
    cases.append(mp_case("singular8", singular, tags={"singular"}))
    graded = rng.standard_normal((40, 6)) * np.logspace(-6, 6, 6)
    cases.append(mp_case("scaled-columns40x6", graded))
    dup = rng.standard_normal((30, 5))
    cases.append(mp_case("duplicated-column30x6", np.column_stack([dup, dup[:, 1]]), tags={"singular"}))
    cases.append(mp_case("random-f16-12x5", rng.standard_normal((12, 5)), "f16"))
    cases.append(mp_case("random-bf16-5x12", rng.standard_normal((5, 12)), "bf16"))
    zero = np.zeros((5, 7))
    cases.append(Case("zero5x7", zero, "f64", np.zeros(5), 0.0, "closed-form", frozenset({"wide", "zero", "named"})))
    return cases


def _issue_cases():
    """The two tall matrices of the trust issue, prescribed exactly: kappa 2000 at 200000 x 100
    (here 131072 x 100: a power of two keeps the truth exact, and CholeskyQR2 declines it as it
    declined the original) and kappa 1e6 at 2000 x 50 (here 2048 x 52)."""
    out = []
    for (m, n), kappa, tags in (((131072, 100), 2e3, {"tall", "big"}), ((2048, 52), 1e6, {"tall"})):
        rng = np.random.default_rng(int(kappa))
        s = np.round(np.geomspace(1.0, 1.0 / kappa, n) * 2.0**51) / 2.0**51
        left = hadamard_columns(m, rng.choice(m, size=n, replace=False))[rng.permutation(m)]
        a = (left * s) @ _orthogonal_blocks(n, rng)
        with mpmath.workdps(40):
            sigma = np.array([float(mpmath.sqrt(m) * mpmath.mpf(float(v))) for v in np.sort(s)[::-1]])
        out.append(
            Case(f"issue-tall{m}x{n}-k{kappa:.0e}".replace("+", ""), a, "f64", sigma, 0.0, "exact", frozenset(tags))
        )
    return out


@functools.lru_cache(maxsize=None)
def catalogue():
    """Every case, built once per test session."""
    cases = []
    for shape in ("square", "tall", "wide"):
        cases += [prescribed(shape, k) for k in KAPPAS]
    cases += [prescribed("very-tall", k) for k in (10.0, 1e5, 1e12)]
    for shape in ("square", "tall"):
        cases += [prescribed(shape, k, "f32") for k in (10.0, 1e5, 1e7)]
        cases += [prescribed(shape, k, "f16") for k in (10.0, 1e3)]
        cases += [prescribed(shape, k, "bf16") for k in (10.0, 1e3)]
    cases += [prescribed("wide", 1e5, "f32"), prescribed("wide", 10.0, "bf16")]
    for exp in (-565, 531):  # 2**-565 ~ 1.5e-170, 2**531 ~ 1.1e160
        cases += [
            prescribed("tall", 1e3, scale_exp=exp),
            prescribed("square", 1e5, scale_exp=exp),
            prescribed("wide", 1e9, scale_exp=exp),
        ]
    cases += _named() + _issue_cases()
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "case names must be unique"
    return tuple(cases)


def select(*, exclude=(), dtypes=None, tags_any=None):
    """Cases without any tag in ``exclude``, stored in ``dtypes`` (all when None), having one of
    ``tags_any`` (all when None)."""
    return [
        c
        for c in catalogue()
        if not (c.tags & set(exclude))
        and (dtypes is None or c.storage in dtypes)
        and (tags_any is None or c.tags & set(tags_any))
    ]
