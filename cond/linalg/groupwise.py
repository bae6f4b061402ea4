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

GPTQ rounding is :mod:`cond.linalg.gptq`; the rotation that may be taken before rounding
(incoherence) is :mod:`cond.linalg.rotation`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

BITS = (2, 3, 4, 5, 6, 7, 8)
GROUP_SIZES = (32, 64, 128)
CLIP_RATIOS = (1.0, 0.95, 0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.55, 0.5)
SCALE_BYTES = 2  # fp16
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)
FP16_MAX = float(np.finfo(np.float16).max)


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
        chunk = codes[i : i + step].astype(np.uint8)
        stream = ((chunk[:, :, None] >> shifts) & 1).reshape(chunk.shape[0], n * bits)
        out[i : i + step] = np.packbits(stream, axis=1, bitorder="little")
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
        raise ValueError(
            f"packed codes must be {m} rows of {width} bytes for {n} codes of {bits} bits; "
            f"got shape {list(packed.shape)}"
        )
    if bits == 8:
        return packed.copy()
    spare = width * 8 - n * bits
    if spare and m and np.any(packed[:, -1] >> (8 - spare)):
        raise ValueError("packed codes have bits set past the last code of a row")
    weights = (1 << np.arange(bits)).astype(np.uint8)
    out = np.empty((m, n), dtype=np.uint8)
    step = max(1, 2**22 // max(1, n * bits))
    for i in range(0, m, step):
        bits_ = np.unpackbits(packed[i : i + step], axis=1, bitorder="little")[:, : n * bits]
        out[i : i + step] = (bits_.reshape(-1, n, bits) * weights).sum(axis=2, dtype=np.uint8)
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
        raise ValueError(
            f"overflow the fp16 scales of {spec.bits}-bit groups (largest range {float(np.max(hi - lo)):.3g})"
        )
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
