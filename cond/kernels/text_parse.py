"""Delimited-text parsing kernel: bytes in, a float64 matrix out.

Fast path (Clinger 1990): a field with at most 15 significant digits and a
decimal exponent within +-22 is m * 10**e or m / 10**-e with both operands
exact doubles, so one correctly rounded operation gives the correctly rounded
value. With 16 to 18 digits (m < 10**18, as Python's repr writes) the product
or quotient is formed in double-double arithmetic (Dekker), good to about
2**-100 relative; its rounding to a double is taken only when the exact value
is provably not within that distance of a rounding midpoint. Every other
numeric-looking field (more digits, large exponents, the rare near-midpoint,
nan/inf spellings) is flagged for Python's ``float()``, which is correctly
rounded too; the result equals ``float(text)`` for every field.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from cond.kernels import JIT_OPTIONS

OK, RAGGED, NOT_A_NUMBER = 0, 1, 2

_POW10 = np.array([10.0**k for k in range(23)])
_INV_POW10 = np.array([1.0 / 10.0**k for k in range(23)])  # inexact; only used inside error bounds


@njit(**JIT_OPTIONS)
def _digit_run(buf, i, n, mant, digits):
    """Append the decimal digits starting at i to mant; (mant, digits, end)."""
    while i < n:
        c = np.int64(buf[i])
        if c < 48 or c > 57:
            break
        mant = mant * 10 + (c - 48)
        digits += 1
        i += 1
    return mant, digits, i


@njit(**JIT_OPTIONS)
def _parse_number(buf, i, n, delim, pow10):
    """Parse one field starting at i; returns (value, status, end) with end at the delimiter,
    newline or n. status 0 parsed, 1 needs the slow path, 2 not a number.

    Significant digits are counted from the first non-zero one: a field with more than 18
    goes to the slow path, so the int64 mantissa never overflows where it is used.
    """
    while i < n and (buf[i] == 32 or buf[i] == 34):  # spaces, an opening quote
        i += 1
    neg = False
    if i < n and (buf[i] == 45 or buf[i] == 43):  # - +
        neg = buf[i] == 45
        i += 1
    mant = 0
    digits = 0
    exp10 = 0
    seen = False
    while i < n and buf[i] == 48:  # leading zeros
        seen = True
        i += 1
    mant, digits, i = _digit_run(buf, i, n, mant, digits)
    if i < n and buf[i] == 46:  # .
        i += 1
        if digits == 0:
            while i < n and buf[i] == 48:  # zeros right after the point
                seen = True
                exp10 -= 1
                i += 1
        before = digits
        mant, digits, i = _digit_run(buf, i, n, mant, digits)
        exp10 -= digits - before
    status = 0
    seen = seen or digits > 0
    if not seen:
        status = 2
        if i < n and (buf[i] | 32 == 110 or buf[i] | 32 == 105):  # nan, inf: Python decides
            status = 1
    elif i < n and (buf[i] == 101 or buf[i] == 69):  # e E
        i += 1
        eneg = False
        if i < n and (buf[i] == 45 or buf[i] == 43):
            eneg = buf[i] == 45
            i += 1
        if i >= n or buf[i] < 48 or buf[i] > 57:
            status = 2
        e = 0
        while i < n:
            c = np.int64(buf[i])
            if c < 48 or c > 57:
                break
            if e < 100000:
                e = e * 10 + (c - 48)
            i += 1
        exp10 += -e if eneg else e
    # the rest of the field may only be spaces, a closing quote or a carriage return
    while i < n and buf[i] != delim and buf[i] != 10:
        c = np.int64(buf[i])
        if c != 32 and c != 34 and c != 13:
            if status == 0:
                status = 2
            elif status == 1 and not ((65 <= c <= 90) or (97 <= c <= 122)):
                status = 2
        i += 1
    if status != 0:
        return 0.0, status, i
    if digits > 18 or exp10 > 22 or exp10 < -22:
        return 0.0, 1, i
    if mant == 0:
        return (-0.0 if neg else 0.0), 0, i
    if mant < 9007199254740992:  # 2**53: the mantissa is an exact double (Clinger)
        value = float(mant)
        value = value * pow10[exp10] if exp10 >= 0 else value / pow10[-exp10]
        return (-value if neg else value), 0, i
    value, ok = _double_double_scale(mant, exp10, pow10)
    if not ok:
        return 0.0, 1, i
    return (-value if neg else value), 0, i


@njit(**JIT_OPTIONS)
def _split(a):
    c = 134217729.0 * a  # 2**27 + 1 (Veltkamp)
    hi = c - (c - a)
    return hi, a - hi


@njit(**JIT_OPTIONS)
def _two_prod(a, b):
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    return p, ((ah * bh - p) + ah * bl + al * bh) + al * bl


@njit(**JIT_OPTIONS)
def _double_double_scale(mant, exp10, pow10):
    """mant * 10**exp10 correctly rounded, or ok = False when too close to a midpoint to tell.

    x = (hi + lo) * 10**e with hi + lo = mant exactly. For e < 0 the quotient's first
    approximation p = hi * 10**-e (an inexact reciprocal is fine) is corrected by the exact
    remainder hi - p * 10**e (Dekker's product), so no division is needed; the tail is good
    to about 2**-104 |x|, well inside the 2**-96 |x| margin of the midpoint test.
    """
    hi = float(mant)
    lo = float(mant - np.int64(hi))  # exact: mant < 10**18 < 2**60, so |mant - hi| <= 2**6
    scale = pow10[abs(exp10)]
    if exp10 >= 0:
        p, pe = _two_prod(hi, scale)
        tail = pe + lo * scale
    else:
        inv = _INV_POW10[-exp10]
        p = hi * inv
        q, qe = _two_prod(p, scale)
        tail = ((hi - q) - qe + lo) * inv
    s = p + tail
    err = tail - (s - p)  # s + err == p + tail exactly (fast two-sum, |p| >= |tail|)
    _, e = math.frexp(s)
    half_ulp = math.ldexp(1.0, e - 54)
    margin = math.ldexp(abs(s), -96)
    return s, half_ulp - abs(err) > margin


@njit(**JIT_OPTIONS)
def _grow(slow, used):
    bigger = np.empty((2 * max(used, 8), 4), dtype=np.int64)
    bigger[:used] = slow[:used]
    return bigger


@njit(**JIT_OPTIONS)
def parse_delimited(buf, delim, ncols, rows):
    """Parse up to ``rows`` non-blank lines of ``ncols`` fields each, in one pass over the bytes.

    Returns
    -------
    values : (parsed rows, ncols) float64
    slow : (k, 4) int64
        (row, col, start, end) of fields for Python's float().
    status, bad_row, bad_col, bad_fields : int
        status 0 ok, 1 ragged (bad_fields = fields found), 2 not a number.
    """
    values = np.empty((rows, ncols))
    flat = values.reshape(-1)
    slow = np.empty((16, 4), dtype=np.int64)
    nslow = 0
    r = 0
    i = 0
    n = buf.shape[0]
    while i < n and r < rows:
        # skip a blank line
        j = i
        while j < n and (buf[j] == 32 or buf[j] == 9 or buf[j] == 13):
            j += 1
        if j >= n:
            break
        if buf[j] == 10:
            i = j + 1
            continue
        col = 0
        base = r * ncols
        while True:
            start = i
            v, st, i = _parse_number(buf, i, n, delim, _POW10)
            if col >= ncols:
                fields = col + 1
                while i < n and buf[i] != 10:
                    if buf[i] == delim:
                        fields += 1
                    i += 1
                return values[:r], slow[:nslow], RAGGED, r, col, fields
            if st != 0:
                if st == 2:
                    return values[:r], slow[:nslow], NOT_A_NUMBER, r, col, 0
                if nslow == slow.shape[0]:
                    slow = _grow(slow, nslow)
                slow[nslow, 0] = r
                slow[nslow, 1] = col
                slow[nslow, 2] = start
                slow[nslow, 3] = i
                nslow += 1
            flat[base + col] = v
            col += 1
            if i < n and buf[i] == delim:
                i += 1
            else:
                break
        if col != ncols:
            return values[:r], slow[:nslow], RAGGED, r, col, col
        r += 1
        i += 1  # past the newline
    return values[:r], slow[:nslow], OK, -1, -1, 0
