"""Group-wise integer quantization at 2-8 bits: rounding to nearest and GPTQ, codes bit-packed.

A matrix W (m x n) is cut along its input dimension into groups of ``g`` columns
(``g`` divides n). Each row of each group has a scale s (fp16) and, unless the
form is symmetric, a zero point z (an integer code); a b-bit code q stands for
s (q - z). With zero points (affine): the group's range [min(x, 0), max(x, 0)],
shrunk by a clip ratio c, is split into 2^b - 1 steps and z = round(-lo / s), so
0 is always representable. Symmetric: z = 2^(b-1) is implied and
s = c absmax / (2^(b-1) - 1), the codes 2^(b-1) +- (2^(b-1) - 1). The clip ratio
is searched per row and group over ``CLIP_RATIOS`` (1 included), keeping the
smallest squared error, so a clip never makes a group worse than its plain range.
A scale is never 0 (an all-zero group gets s = 1 and codes z); every error cond
reports is measured on the codes and fp16 scales as written.

Packing: row by row, code k of a row occupies bits [k b, (k + 1) b) of the row's
bit stream, little-endian (bit j of the stream is bit j mod 8 of byte j // 8);
a row takes ceil(n b / 8) bytes and unused bits at the end are 0. Zero points are
packed the same way, ceil(n/g * b / 8) bytes a row.

GPTQ (Frantar, Ashkboos, Hoefler, Alistarh, ICLR 2023, Algorithm 1): with the
layer's input Gram H = X^T X plus damping ``damp * mean(diag H)``, the columns are
quantized in order; each column's rounding error, divided by the diagonal of the
upper Cholesky factor U of H^-1, is spread over the columns not yet quantized
with U's row (the optimal update of Optimal Brain Surgeon, in the Cholesky form);
the updates are applied lazily in blocks of ``BLOCK`` columns. A group's scale and
zero point are set from the current (updated) values when its first column is
reached; with ``act_order`` the columns go by decreasing diag(H) and, so that the
groups stay contiguous in storage, every group's parameters are set before the
loop from the original values (AutoGPTQ's ``static_groups``). Columns whose input
is always zero (diag H = 0) are quantized as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import scipy.linalg

BITS = (2, 3, 4, 5, 6, 7, 8)
GROUP_SIZES = (32, 64, 128)
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
SCALE_BYTES = 2  # fp16
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)
FP16_MAX = float(np.finfo(np.float16).max)
BLOCK = 128  # GPTQ's lazy-update block (a multiple of every group size)
ROTATION_BLOCK = 512  # the largest Hadamard block of a rotation
ROTATION_MIN = 16  # no rotation when n has no power-of-two factor this large
DAMP = 0.01  # GPTQ's default damping, relative to the mean diagonal of H


@dataclass(frozen=True)
class GroupSpec:
    """How a matrix is quantized: bits per code, columns per group, with or without zero points."""

    bits: int
    group: int
    symmetric: bool = False

    def __post_init__(self):
        if not (isinstance(self.bits, int) and 2 <= self.bits <= 8):
            raise ValueError(f"`bits` must be an integer in [2, 8]; got {self.bits!r}")
        if not (isinstance(self.group, int) and self.group >= 1):
            raise ValueError(f"`group` must be a positive integer; got {self.group!r}")

    @property
    def top(self) -> int:
        """The largest code, 2^b - 1."""
        return (1 << self.bits) - 1

    @property
    def middle(self) -> int:
        """The implied zero point of a symmetric form, 2^(b-1)."""
        return 1 << (self.bits - 1)

    def fits(self, n: int) -> bool:
        """Whether the group size divides n columns."""
        return n % self.group == 0

    def packed_width(self, count: int) -> int:
        """Bytes a row of ``count`` packed codes takes."""
        return math.ceil(count * self.bits / 8)

    def nbytes(self, m: int, n: int) -> int:
        """Bytes of an m x n matrix in this form: codes, fp16 scales and packed zero points."""
        groups = n // self.group
        zeros = 0 if self.symmetric else m * self.packed_width(groups)
        return m * self.packed_width(n) + m * groups * SCALE_BYTES + zeros

    def label(self) -> str:
        return f"int{self.bits} g{self.group}{' sym' if self.symmetric else ''}"


@dataclass(frozen=True)
class GroupCodes:
    """A quantized matrix as written.

    Attributes
    ----------
    spec : GroupSpec
    codes : ndarray of shape (m, n), uint8
        Unpacked codes in [0, 2^b - 1].
    scales : ndarray of shape (m, n / g), float16
        Positive and finite.
    zeros : ndarray of shape (m, n / g), uint8, or None
        Zero points (codes); None for a symmetric form (2^(b-1) implied).
    """

    spec: GroupSpec
    codes: np.ndarray
    scales: np.ndarray
    zeros: Optional[np.ndarray]

    def value(self) -> np.ndarray:
        """What the codes stand for, in float64: s (q - z) per group."""
        return dequantize(self.codes, self.scales, self.zeros, self.spec)


def hadamard(order: int) -> np.ndarray:
    """The Sylvester-Hadamard matrix of a power-of-two order, divided by sqrt(order) (orthogonal)."""
    if order < 1 or order & (order - 1):
        raise ValueError(f"`order` must be a power of two; got {order}")
    h = np.ones((1, 1))
    while h.shape[0] < order:
        h = np.block([[h, h], [h, -h]])
    return h / math.sqrt(order)


@dataclass(frozen=True)
class Rotation:
    """R = diag(signs) blockdiag(H_b, ...): an orthogonal n x n matrix told by (n, block, seed).

    Attributes
    ----------
    n, block, seed : int
        ``block`` a power of two dividing n.
    """

    n: int
    block: int
    seed: int

    @classmethod
    def for_columns(cls, n: int, seed: int):
        """The rotation of n input columns (the largest power-of-two block dividing n, at most
        ``ROTATION_BLOCK``), or None when that block is below ``ROTATION_MIN``."""
        block = min(n & -n, ROTATION_BLOCK) if n > 0 else 0
        return cls(n, block, int(seed)) if block >= ROTATION_MIN else None

    def __post_init__(self):
        if self.block < 1 or self.block & (self.block - 1) or self.n % self.block:
            raise ValueError(f"a rotation block must be a power of two dividing {self.n}; got {self.block}")

    def signs(self) -> np.ndarray:
        from cond.kernels.keyed import keyed_uniforms

        return np.where(keyed_uniforms(self.seed, 0, self.n) < 0.5, -1.0, 1.0)

    def _blocks(self, x):
        """x blockdiag(H, ...): each run of ``block`` columns times H (H is symmetric)."""
        m = x.shape[0]
        return (x.reshape(m, self.n // self.block, self.block) @ hadamard(self.block)).reshape(m, self.n)

    def apply(self, w: np.ndarray) -> np.ndarray:
        """W R, for W of shape (m, n)."""
        return self._blocks(np.asarray(w, dtype=np.float64) * self.signs())

    def undo(self, q: np.ndarray) -> np.ndarray:
        """Q R^T, for Q of shape (m, n): back to the original columns."""
        return self._blocks(np.asarray(q, dtype=np.float64)) * self.signs()

    def gram(self, g: np.ndarray) -> np.ndarray:
        """R^T G R, the Gram of the rotated inputs R^T x."""
        rotated = self.apply(np.asarray(g, dtype=np.float64))  # G R
        return self.apply(rotated.T).T  # (G R)^T R = R^T G R (G symmetric)

    def record(self) -> dict:
        return dict(kind="hadamard", block=self.block, seed=self.seed)


def pack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Codes (m, n) of ``bits`` bits each into rows of ceil(n bits / 8) bytes, little-endian.

    Parameters
    ----------
    codes : ndarray of shape (m, n), integers in [0, 2^bits)
    bits : int in [1, 8]

    Returns
    -------
    ndarray of shape (m, ceil(n bits / 8)), uint8
    """
    codes = np.asarray(codes)
    m, n = codes.shape
    if bits == 8:
        return codes.astype(np.uint8, copy=True)
    shifts = np.arange(bits, dtype=np.uint8)
    width = math.ceil(n * bits / 8)
    out = np.empty((m, width), dtype=np.uint8)
    step = max(1, 2**22 // max(1, n * bits))  # rows per chunk: a few MB of bits at a time
    for i in range(0, m, step):
        chunk = codes[i:i + step].astype(np.uint8)
        stream = ((chunk[:, :, None] >> shifts) & 1).reshape(chunk.shape[0], n * bits)
        out[i:i + step] = np.packbits(stream, axis=1, bitorder="little")
    return out


def unpack(packed: np.ndarray, bits: int, n: int) -> np.ndarray:
    """The inverse of :func:`pack`: (m, n) uint8 codes from rows of packed bytes.

    Raises ``ValueError`` when a row is not ceil(n bits / 8) bytes or its unused
    trailing bits are not 0 (the bytes were not written by :func:`pack`).
    """
    packed = np.asarray(packed, dtype=np.uint8)
    m = packed.shape[0]
    width = math.ceil(n * bits / 8)
    if packed.ndim != 2 or packed.shape[1] != width:
        raise ValueError(f"packed codes must be {m} rows of {width} bytes for {n} codes of {bits} bits; "
                         f"got shape {list(packed.shape)}")
    if bits == 8:
        return packed.copy()
    spare = width * 8 - n * bits
    if spare and m and np.any(packed[:, -1] >> (8 - spare)):
        raise ValueError("packed codes have bits set past the last code of a row")
    weights = (1 << np.arange(bits)).astype(np.uint8)
    out = np.empty((m, n), dtype=np.uint8)
    step = max(1, 2**22 // max(1, n * bits))
    for i in range(0, m, step):
        bits_ = np.unpackbits(packed[i:i + step], axis=1, bitorder="little")[:, :n * bits]
        out[i:i + step] = (bits_.reshape(-1, n, bits) * weights).sum(axis=2, dtype=np.uint8)
    return out


def dequantize(codes, scales, zeros, spec: GroupSpec) -> np.ndarray:
    """s (q - z) per group in float64.

    Parameters
    ----------
    codes : ndarray of shape (m, n)
    scales : ndarray of shape (m, n / g)
    zeros : ndarray of shape (m, n / g) or None (symmetric: 2^(b-1))
    spec : GroupSpec
    """
    m, n = codes.shape
    g = spec.group
    q = np.asarray(codes, dtype=np.float64).reshape(m, n // g, g)
    z = float(spec.middle) if zeros is None else np.asarray(zeros, dtype=np.float64)[:, :, None]
    return ((q - z) * np.asarray(scales, dtype=np.float64)[:, :, None]).reshape(m, n)


def group_params(x: np.ndarray, spec: GroupSpec):
    """Scales and zero points of groups, the clip ratio searched per row and group.

    Parameters
    ----------
    x : ndarray of shape (m, k, g)
        k groups of g values per row, float64.

    Returns
    -------
    scales : ndarray of shape (m, k), float16 (positive)
    zeros : ndarray of shape (m, k), float64 holding integer codes
    """
    if spec.symmetric:
        peak = np.max(np.abs(x), axis=2)
        lo, hi = -peak, peak
    else:
        lo, hi = np.minimum(np.min(x, axis=2), 0.0), np.maximum(np.max(x, axis=2), 0.0)
    if np.max(hi - lo, initial=0.0) / (spec.top if not spec.symmetric else spec.middle - 1 or 1) > FP16_MAX:
        raise ValueError(f"overflow the fp16 scales of {spec.bits}-bit groups (largest range "
                         f"{float(np.max(hi - lo)):.3g})")
    best_s = np.ones(lo.shape, dtype=np.float16)
    best_z = np.full(lo.shape, float(spec.middle))
    best_err = np.full(lo.shape, np.inf)
    for ratio in CLIP_RATIOS:
        s, z = _params_at(lo * ratio, hi * ratio, spec)
        err = np.sum((_round_trip(x, s.astype(np.float64), z, spec) - x) ** 2, axis=2)
        better = err < best_err
        best_err[better], best_s[better], best_z[better] = err[better], s[better], z[better]
    return best_s, best_z


def _params_at(lo, hi, spec):
    if spec.symmetric:
        steps = max(spec.middle - 1, 1)
        raw = hi / steps
        z = np.full(lo.shape, float(spec.middle))
    else:
        raw = (hi - lo) / spec.top
        z = None
    s = raw.astype(np.float16)
    s = np.where(raw > 0, np.maximum(s, np.float16(FP16_TINY)), np.float16(1.0))  # never 0
    if z is None:
        z = np.clip(np.rint(-lo / s.astype(np.float64)), 0, spec.top)
    return s, z


def _codes(x, s, z, spec):
    """Codes of values x (..., g) with scales s (...) and zero points z (...) (float64)."""
    lo, hi = (1, spec.top) if spec.symmetric and spec.bits > 1 else (0, spec.top)
    return np.clip(np.rint(x / s[..., None]) + z[..., None], lo, hi)


def _round_trip(x, s, z, spec):
    return (_codes(x, s, z, spec) - z[..., None]) * s[..., None]


def _check(w, spec):
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"`w` must be 2-D; got {w.ndim}-D")
    if not spec.fits(w.shape[1]):
        raise ValueError(f"the group size {spec.group} does not divide the {w.shape[1]} columns")
    return w


def quantize_nearest(w: np.ndarray, spec: GroupSpec) -> GroupCodes:
    """Round to nearest with per-group scales (and zero points), the clip searched per group.

    Parameters
    ----------
    w : ndarray of shape (m, n), finite; ``spec.group`` divides n
    spec : GroupSpec

    Returns
    -------
    GroupCodes
    """
    w = _check(w, spec)
    m, n = w.shape
    x = w.reshape(m, n // spec.group, spec.group)
    s, z = group_params(x, spec)
    codes = _codes(x, s.astype(np.float64), z, spec).reshape(m, n).astype(np.uint8)
    return GroupCodes(spec, codes, s, None if spec.symmetric else z.astype(np.uint8))


def inverse_hessian_factor(gram: np.ndarray, damp: float = DAMP):
    """GPTQ's U: the upper Cholesky factor of (H + damp mean(diag H) I)^-1, and the dead columns.

    Parameters
    ----------
    gram : ndarray of shape (n, n)
        H = X^T X, symmetric positive semidefinite.
    damp : float
        Relative damping (GPTQ's ``percdamp``), > 0.

    Returns
    -------
    U : ndarray of shape (n, n), upper triangular
    dead : ndarray of shape (n,), bool
        Columns whose input is always zero (diag H = 0): quantized as zero.
    """
    h = np.array(gram, dtype=np.float64)
    dead = np.diag(h) <= 0
    h[dead, dead] = 1.0
    h[np.diag_indices_from(h)] += damp * float(np.mean(np.diag(h)))
    lower = np.linalg.cholesky(h)
    inverse = scipy.linalg.cho_solve((lower, True), np.eye(len(h)), check_finite=False)
    return scipy.linalg.cholesky((inverse + inverse.T) / 2, lower=False, check_finite=False), dead


def gptq(w: np.ndarray, gram: np.ndarray, spec: GroupSpec, *, damp: float = DAMP,
         act_order: bool = False, factor=None) -> GroupCodes:
    """GPTQ rounding of W (m x n) against the input Gram H (n x n) into group-wise codes.

    Parameters
    ----------
    w : ndarray of shape (m, n), finite; ``spec.group`` divides n
    gram : ndarray of shape (n, n)
        The layer's input Gram X^T X.
    spec : GroupSpec
    damp : float
        Damping relative to the mean diagonal of H (GPTQ's 0.01).
    act_order : bool
        Quantize columns by decreasing diag(H); group parameters then come from the
        original values (static groups).
    factor : tuple, optional
        :func:`hessian_factor` of (gram, damp, act_order), when several forms of one matrix
        share it (it costs more than the loop).

    Returns
    -------
    GroupCodes
        Minimises ||(W - W_hat) X^T||_F greedily, column by column (Frantar et al. 2023).
    """
    w = _check(w, spec)
    m, n = w.shape
    gram = np.asarray(gram, dtype=np.float64)
    if gram.shape != (n, n):
        raise ValueError(f"`gram` must be {n}x{n} for a matrix of {n} columns; got {list(gram.shape)}")
    if not damp > 0:
        raise ValueError(f"`damp` must be positive; got {damp}")
    order, upper, dead = factor if factor is not None else hessian_factor(gram, damp, act_order)
    work = w.copy()
    work[:, dead] = 0.0
    g = spec.group
    groups = n // g
    scales = np.ones((m, groups), dtype=np.float16)
    zeros = np.zeros((m, groups))
    if act_order:
        s_all, z_all = group_params(work.reshape(m, groups, g), spec)
        scales[:], zeros[:] = s_all, z_all
        work = work[:, order]
    from cond.kernels.gptq import quantize_columns

    lo, hi = float(1 if spec.symmetric else 0), float(spec.top)
    codes = np.zeros((m, n), dtype=np.uint8)
    for i1 in range(0, n, BLOCK):
        i2 = min(i1 + BLOCK, n)
        cols = order[i1:i2]
        block = np.ascontiguousarray(work[:, i1:i2])
        u = np.ascontiguousarray(upper[i1:i2, i1:i2])
        got = np.zeros_like(block)
        errors = np.zeros_like(block)
        if act_order:  # static groups: every column's parameters known, one call for the block
            for j in range(i2 - i1):
                _column(block, u, scales, zeros, cols[j] // g, j, j + 1, lo, hi, got, errors, quantize_columns)
        else:  # groups are contiguous and aligned with the block: set each from the current values
            for j in range(0, i2 - i1, g):
                k = cols[j] // g
                s, z = group_params(block[:, j:j + g][:, None, :], spec)
                scales[:, k], zeros[:, k] = s[:, 0], z[:, 0]
                _column(block, u, scales, zeros, k, j, j + g, lo, hi, got, errors, quantize_columns)
        codes[:, cols] = got.astype(np.uint8)
        work[:, i2:] -= errors @ upper[i1:i2, i2:]
    return GroupCodes(spec, codes, scales, None if spec.symmetric else zeros.astype(np.uint8))


def _column(block, u, scales, zeros, k, j0, j1, lo, hi, got, errors, kernel):
    kernel(block, u, scales[:, k].astype(np.float64), np.ascontiguousarray(zeros[:, k], dtype=np.float64),
           j0, j1, lo, hi, got, errors)


def hessian_factor(gram: np.ndarray, damp: float = DAMP, act_order: bool = False):
    """(column order, U, dead columns) for :func:`gptq`: U from :func:`inverse_hessian_factor` of H
    with its rows and columns in the order the columns are quantized."""
    gram = np.asarray(gram, dtype=np.float64)
    if not act_order:
        upper, dead = inverse_hessian_factor(gram, damp)
        return np.arange(len(gram)), upper, dead
    dead = np.diag(gram) <= 0
    order = np.argsort(-np.diag(gram), kind="stable")
    h = np.array(gram)
    h[dead, dead] = 1.0
    return order, inverse_hessian_factor(h[np.ix_(order, order)], damp)[0], dead
