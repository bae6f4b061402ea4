"""Delimited-text parsing kernel: bytes in, a float64 matrix out.

Every field's value equals Python's ``float(text)`` (correctly rounded):

- Clinger's fast path (1990): a mantissa below 2**53 and a decimal exponent
  within +-22 is m * 10**e or m / 10**-e with both operands exact doubles, so
  one correctly rounded operation gives the correctly rounded value.
- Up to 19 significant digits (the mantissa in a uint64: 17-digit ``repr``
  output and numpy's default ``%.18e`` alike) and exponents within +-290: the
  product m * 10**e in double-double arithmetic (Dekker), with 10**e from a
  table of double-double powers made exactly from integers at import, good to
  about 2**-103 relative; its rounding to a double is taken only when the exact
  value is provably farther than 2**-96 relative from a rounding midpoint.
- More than 19 digits: the first 19 give m, and the value lies in
  [m, m + 1) * 10**e; when both ends round to the same double, that is it.
- Everything else (huge or tiny exponents, the rare near-midpoint, nan/inf
  spellings, subnormal results) is flagged for Python's ``float()``.
"""

from __future__ import annotations

from fractions import Fraction

import numba
import numba.extending
import numpy as np
from numba import njit

from cond.kernels import JIT_OPTIONS

OK, RAGGED, NOT_A_NUMBER = 0, 1, 2

_POW10 = np.array([10.0**k for k in range(23)])
DD_RANGE = 290  # exponents with a double-double power of ten in the table


def _dd_powers(limit):
    """hi + lo = 10**k to about 2**-106 relative, for k = -limit .. limit (exact integer arithmetic)."""
    hi, lo = np.empty(2 * limit + 1), np.empty(2 * limit + 1)
    for k in range(-limit, limit + 1):
        exact = Fraction(10) ** k
        h = float(exact)  # correctly rounded
        hi[k + limit], lo[k + limit] = h, float(exact - Fraction(h))
    return hi, lo


_DD_HI, _DD_LO = _dd_powers(DD_RANGE)
_U10 = np.uint64(10)


# The helpers below take the buffer's address, not the array: passing an array to a
# compiled function that is called once a field costs reference counting (atomic
# operations, measured here at about 8 ns a call), more than parsing the field's digits.
if numba.config.DISABLE_JIT:
    import ctypes

    def _byte(address, i):
        """The byte at address + i (plain Python, for NUMBA_DISABLE_JIT=1)."""
        return ctypes.c_uint8.from_address(address + i).value
else:
    from llvmlite import ir

    @numba.extending.intrinsic
    def _byte(typingctx, address, i):
        """The byte at address + i, as int64 (the caller keeps i inside the buffer)."""

        def codegen(context, builder, signature, args):
            pointer = builder.inttoptr(builder.add(args[0], args[1]), ir.IntType(8).as_pointer())
            return builder.zext(builder.load(pointer), ir.IntType(64))

        return numba.types.int64(address, i), codegen


@njit(**JIT_OPTIONS)
def _digit_run(address, i, n, mant, digits, dropped, inexact):
    """Append the decimal digits starting at i to the uint64 mant while it holds fewer than 19;
    count the rest as dropped. Returns (mant, digits, dropped, inexact, end).

    (Eight digits at a time with SWAR was tried: one ns a field faster at 17 digits,
    three slower at 6, so not kept.)
    """
    while i < n:
        b = _byte(address, i)
        if b < 48 or b > 57:  # not a digit (two comparisons: a wrapping uint64 subtraction warns without JIT)
            break
        c = np.uint64(b - 48)
        if digits < 19:
            mant = mant * _U10 + c
            digits += 1
        else:
            dropped += 1
            inexact = inexact or c != 0
        i += 1
    return mant, digits, dropped, inexact, i


@njit(**JIT_OPTIONS)
def _parse_number(address, i, n, delim):
    """Parse one field starting at i; returns (value, status, end) with end at the delimiter,
    newline or n. status 0 parsed, 1 needs the slow path, 2 not a number.

    Significant digits are counted from the first non-zero one; the first 19 form the
    mantissa, and whether any later digit is non-zero is remembered.
    """
    quoted = False  # inside a quoted field a delimiter is text, not the end of the field
    while i < n and _byte(address, i) == 32:  # spaces
        i += 1
    if i < n and _byte(address, i) == 34:  # an opening quote
        quoted = True
        i += 1
    neg = False
    if i < n and (_byte(address, i) == 45 or _byte(address, i) == 43):  # - +
        neg = _byte(address, i) == 45
        i += 1
    mant = np.uint64(0)
    digits = 0
    dropped = 0
    inexact = False
    exp10 = 0
    seen = False
    while i < n and _byte(address, i) == 48:  # leading zeros
        seen = True
        i += 1
    mant, digits, dropped, inexact, i = _digit_run(address, i, n, mant, digits, dropped, inexact)
    exp10 += dropped  # integer digits beyond the 19th scale the mantissa up
    if i < n and _byte(address, i) == 46:  # .
        i += 1
        if digits == 0:
            while i < n and _byte(address, i) == 48:  # zeros right after the point
                seen = True
                exp10 -= 1
                i += 1
        before = digits
        mant, digits, dropped, inexact, i = _digit_run(address, i, n, mant, digits, dropped, inexact)
        exp10 -= digits - before  # only fraction digits kept in the mantissa move the point
    status = 0
    seen = seen or digits > 0
    if not seen:
        status = 2
        if i < n and (_byte(address, i) | 32 == 110 or _byte(address, i) | 32 == 105):  # nan, inf: Python decides
            status = 1
    elif i < n and (_byte(address, i) == 101 or _byte(address, i) == 69):  # e E
        e, ok, i = _exponent(address, i + 1, n)
        exp10 += e
        if not ok:
            status = 2
    status, i = _field_end(address, i, n, delim, quoted, status)
    if status != 0:
        return 0.0, status, i
    if mant == 0:  # all digits zero (a non-zero digit beyond the 19th is impossible here)
        return (-0.0 if neg else 0.0), 0, i
    if not inexact and mant < np.uint64(9007199254740992) and -22 <= exp10 <= 22:  # Clinger
        value = float(mant)
        value = value * _POW10[exp10] if exp10 >= 0 else value / _POW10[-exp10]
        return (-value if neg else value), 0, i
    if exp10 < -DD_RANGE or exp10 > DD_RANGE:
        return 0.0, 1, i
    value, ok = _dd_scale(mant, exp10)
    if ok and inexact:  # the exact value lies in [mant, mant + 1) * 10**exp10
        upper, ok_upper = _dd_scale(mant + np.uint64(1), exp10)
        ok = ok_upper and upper == value
    if not ok:
        return 0.0, 1, i
    return (-value if neg else value), 0, i


@njit(**JIT_OPTIONS)
def _exponent(address, i, n):
    """The signed decimal exponent after an 'e' at i: (value, at least one digit, end)."""
    eneg = False
    if i < n and (_byte(address, i) == 45 or _byte(address, i) == 43):
        eneg = _byte(address, i) == 45
        i += 1
    ok = i < n and 48 <= _byte(address, i) <= 57
    e = 0
    while i < n:
        c = np.int64(_byte(address, i))
        if c < 48 or c > 57:
            break
        if e < 100000:
            e = e * 10 + (c - 48)
        i += 1
    return (-e if eneg else e), ok, i


@njit(**JIT_OPTIONS)
def _field_end(address, i, n, delim, quoted, status):
    """Scan to the field's end: (status, end). The rest may only be spaces, a closing quote or a
    carriage return; a quoted field ("1,000") runs to its closing quote, delimiters included,
    and is then not a number (status 2); nan/inf spellings (status 1) may continue in letters."""
    while i < n and _byte(address, i) != 10 and (quoted or _byte(address, i) != delim):
        c = np.int64(_byte(address, i))
        if c == 34 and quoted:  # the closing quote
            quoted = False
        elif c != 32 and c != 13:  # anything else, a stray quote too, makes it no number
            if status == 0:
                status = 2
            elif status == 1 and not ((65 <= c <= 90) or (97 <= c <= 122)):
                status = 2
        i += 1
    if quoted and status == 0:  # a quote opened and never closed
        status = 2
    return status, i


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
def _dd_scale(mant, exp10):
    """mant * 10**exp10 correctly rounded, or ok = False when it is too close to a rounding
    midpoint to tell (or outside 2**-800 .. 2**1023, left to Python).

    mant = hi + lo exactly (mant < 2**64, |lo| <= 2**10); 10**e = ph + pl to 2**-106. The
    product (hi + lo)(ph + pl) is hi * ph exactly (Dekker) plus the cross terms, each
    rounded once: good to about 2**-103 |x|, well inside the 2**-96 |x| margin.
    """
    hi = float(mant)
    top = np.uint64(hi)
    lo = float(mant - top) if mant >= top else -float(top - mant)
    ph = _DD_HI[exp10 + DD_RANGE]
    pl = _DD_LO[exp10 + DD_RANGE]
    p, pe = _two_prod(hi, ph)
    tail = pe + (hi * pl + lo * ph)
    s = p + tail
    err = tail - (s - p)  # s + err == p + tail exactly (fast two-sum, |p| >= |tail|)
    t = abs(s)
    if not (1.5e-241 < t < 1.7e308):  # (2**-800, below overflow): else Python decides
        return s, False
    # ulp(t) without libm: t * 2**-53 lies in (ulp / 2, ulp) unless t is a power of two, so
    # t + t * 2**-53 rounds to t + ulp exactly; for a power of two the tie rounds to t (0:
    # the midpoints below and above differ, left to Python)
    ulp = (t + t * 1.1102230246251565e-16) - t
    margin = t * 1.2621774483536189e-29  # 2**-96
    return s, ulp > 0 and 0.5 * ulp - abs(err) > margin


@njit(**JIT_OPTIONS)
def _grow(slow, used):
    bigger = np.empty((2 * max(used, 8), 4), dtype=np.int64)
    bigger[:used] = slow[:used]
    return bigger


@njit(**JIT_OPTIONS)
def count_lines(buf):
    """Line ends in ``buf``, plus one for a last line without one: an upper bound on rows."""
    count = 0
    for k in range(buf.shape[0]):
        count += buf[k] == 10
    return count + (1 if buf.shape[0] and buf[buf.shape[0] - 1] != 10 else 0)


@njit(**JIT_OPTIONS)
def parse_delimited(buf, delim, ncols, values):
    """Parse the lines of ``ncols`` fields each into ``values``, in one pass; blank lines and
    comment lines (first non-blank character ``#``) are skipped. A quoted field runs to its
    closing quote (a delimiter inside is part of it).

    Parameters
    ----------
    buf : uint8 array
    delim : int
    ncols : int
    values : (rows, ncols) float64, C-contiguous
        Written in place; ``rows`` must be at least the number of non-blank lines
        (:func:`count_lines` gives a bound).

    Returns
    -------
    values : (parsed rows, ncols) float64, a view of the argument
    slow : (k, 4) int64
        (row, col, start, end) of fields for Python's float().
    status, bad_row, bad_col, bad_fields : int
        status 0 ok, 1 ragged (bad_fields = fields found), 2 not a number.
    newlines : int
        Line ends passed (blank lines included), so that callers need no counting pass.
    """
    rows = values.shape[0]
    flat = values.reshape(-1)
    address = buf.ctypes.data
    slow = np.empty((16, 4), dtype=np.int64)
    nslow = 0
    r = 0
    i = 0
    newlines = 0
    n = buf.shape[0]
    while i < n and r < rows:
        # skip a blank line, or a comment line (its first non-blank character '#')
        j = i
        while j < n and (buf[j] == 32 or buf[j] == 9 or buf[j] == 13):
            j += 1
        if j >= n:
            break
        if buf[j] == 35:
            while j < n and buf[j] != 10:
                j += 1
            if j >= n:
                break
        if buf[j] == 10:
            i = j + 1
            newlines += 1
            continue
        col = 0
        base = r * ncols
        while True:
            start = i
            v, st, i = _parse_number(address, i, n, delim)
            if col >= ncols:
                fields = col + 1
                while i < n and buf[i] != 10:
                    if buf[i] == delim:
                        fields += 1
                    i += 1
                return values[:r], slow[:nslow], RAGGED, r, col, fields, newlines
            if st != 0:
                if st == 2:
                    return values[:r], slow[:nslow], NOT_A_NUMBER, r, col, 0, newlines
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
            return values[:r], slow[:nslow], RAGGED, r, col, col, newlines
        r += 1
        if i < n:
            newlines += 1
        i += 1  # past the newline
    return values[:r], slow[:nslow], OK, -1, -1, 0, newlines
