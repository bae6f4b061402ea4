"""Group-wise quantized forms of one matrix for ``cond compress``: codes at 2-8 bits, rounded to
nearest or by GPTQ, with an optional low-rank correction of what rounding lost.

A form is W_hat = Q + L R: Q the dequantised codes (:mod:`cond.linalg.groupwise`), L R
(m x r, r x n) the rank-r truncated SVD of the rounding residual E = W - Q in the
method's norm, mapped back (:func:`cond.linalg.weighted.weighted_factors`): with the
calibration Grams (``--method whiten``) that is QERA's closed form (Zhang et al. 2024),
[E S]_r S^-1 with S S^T = G, the rank-r correction that minimises the output error
||(E - L R) X^T||_F; with ``svd`` the plain SVD of E (LQER without activations); with
``fisher`` the Fisher-weighted one. Unless ``rotate`` is off, the codes are those of W R
(R a seeded block-Hadamard rotation, :class:`cond.linalg.groupwise.Rotation`; GPTQ then
uses R^T G R) and stand for Q R^T. The factors are stored at ``correction_dtype``
(fp16 by default, or int8 rows). With ``preserve`` the order is reversed ("preserve
then quantize"): the rank-r weighted SVD of W is kept first and the rest, W - L R, is
rounded.

The predicted loss of rank r is the discarded tail of the residual's weighted singular
values over ||A W B||_F^2 (exact before the factors are rounded); what is written is
measured again by the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cond.commands.compress.storage import Storage
from cond.linalg.gptq import gptq, hessian_factor
from cond.linalg.groupwise import GROUP_SIZES, GroupSpec, pack, quantize_nearest
from cond.linalg.rotation import Rotation
from cond.linalg.truncated import relative_error
from cond.linalg.weighted import weighted_factors

CORRECTION_RANKS = (0, 4, 8, 16, 24, 32, 48, 64, 96, 128)  # ranks the allocator and --max-error try


@dataclass(frozen=True)
class QuantSettings:
    """How group-wise forms are made (from the options; the same for every matrix).

    ``rounding`` is ``gptq`` or ``nearest`` after ``auto`` is resolved (GPTQ when Grams are given).
    """

    rounding: str = "nearest"
    act_order: bool = False
    damp: float = 0.01
    symmetric: bool = False
    correction_dtype: str = "F16"
    preserve: bool = False
    rotate: bool = True
    seed: int = 0


def gram_of(grams, name, shape, weighting=None):
    """The (jittered) input Gram L L^T of a weight from the ``--activations`` file, or None. With
    ``--method whiten`` the method's own ``weighting`` holds L already (the same file): no second
    read and Cholesky."""
    if grams is None or name not in grams:
        return None
    right = weighting.right if weighting is not None and weighting.kind == "whiten" else None
    if right is None:
        right = grams.weighting(name, shape).right
    return right @ right.T


class MatrixQuantizer:
    """Every group-wise form of one matrix, each computed once.

    Parameters
    ----------
    w : ndarray of shape (m, n), float64
    weighting : Weighting
        The method's weights: the norm the correction minimises and the error is measured in.
    gram : ndarray of shape (n, n) or None
        The input Gram for GPTQ (None: rounding to nearest).
    settings : QuantSettings
    expanded : callable
        The rounding ``cond expand`` applies (to the original dtype).
    """

    def __init__(self, w, weighting, gram, settings, expanded):
        self.w, self.weighting, self.gram, self.settings, self.expanded = w, weighting, gram, settings, expanded
        self.energy = float(np.sum(weighting.apply(w) ** 2))
        self._codes, self._residual, self._factor = {}, {}, None
        self.factor_storage = Storage(settings.correction_dtype)
        self.rotation = Rotation.for_columns(w.shape[1], settings.seed) if settings.rotate else None
        self._gram = None if gram is None or self.rotation is None else self.rotation.gram(gram)

    def dequantised(self, codes) -> np.ndarray:
        """What codes stand for in the original columns (the rotation undone)."""
        value = codes.value()
        return value if self.rotation is None else self.rotation.undo(value)

    @property
    def rounding(self) -> str:
        return "gptq" if self.settings.rounding == "gptq" and self.gram is not None else "nearest"

    def codes(self, spec: GroupSpec, base=None):
        """The codes of ``w - base`` (``base``: what is kept before rounding, or None)."""
        key = (spec, None if base is None else id(base))
        if key not in self._codes:
            target = self.w if base is None else self.w - base
            if self.rotation is not None:
                target = self.rotation.apply(target)
            if self.rounding == "gptq":
                gram = self.gram if self._gram is None else self._gram
                if self._factor is None:
                    self._factor = hessian_factor(gram, self.settings.damp, self.settings.act_order)
                self._codes[key] = gptq(
                    target, gram, spec, damp=self.settings.damp, act_order=self.settings.act_order, factor=self._factor
                )
            else:
                self._codes[key] = quantize_nearest(target, spec)
        return self._codes[key]

    def residual_factors(self, spec: GroupSpec, need: int = 0):
        """(left, right, s): the weighted SVD of E = W - Q, factors up to max(``need``, the largest
        correction rank the allocator tries)."""
        most = min(max(need, *CORRECTION_RANKS), *self.w.shape)
        if spec not in self._residual or self._residual[spec][0].shape[1] < most:
            residual = self.w - self.dequantised(self.codes(spec))
            self._residual[spec] = weighted_factors(residual, self.weighting, most)
        return self._residual[spec]

    def nbytes(self, spec: GroupSpec, rank: int) -> int:
        m, n = self.w.shape
        return spec.nbytes(m, n) + (self.factor_storage.lowrank_bytes(m, n, rank) if rank else 0)

    def predicted(self, spec: GroupSpec, ranks) -> list:
        """[(rank, bytes, predicted relative loss)]: the loss of rank r is the residual's weighted tail
        (before the correction's factors are rounded) over ||A W B||_F^2."""
        if not self.energy:
            return [(r, self.nbytes(spec, r), 0.0) for r in ranks]
        if max(ranks) == 0:
            residual = self.w - self.dequantised(self.codes(spec))
            return [(0, self.nbytes(spec, 0), float(np.sum(self.weighting.apply(residual) ** 2)) / self.energy)]
        squares = self._residual_squares(spec)
        tails = np.concatenate([np.cumsum(squares[::-1])[::-1], [0.0]])
        return [(r, self.nbytes(spec, r), float(tails[min(r, len(squares))]) / self.energy) for r in ranks]

    def _residual_squares(self, spec):
        """The squared singular values of A E B, largest first, from the eigenvalues of its smaller
        Gram (only their tail sums are used: absolute error about eps ||A E B||_F^2, not eps kappa)."""
        weighted = self.weighting.apply(self.w - self.dequantised(self.codes(spec)))
        small = weighted @ weighted.T if weighted.shape[0] <= weighted.shape[1] else weighted.T @ weighted
        return np.maximum(np.linalg.eigvalsh(small)[::-1], 0.0)

    def form(self, spec: GroupSpec, rank: int, name: str):
        """The arrays to write for this form, its approximation as ``cond expand`` rebuilds it, and
        the record of how it was made: (arrays, approx, quant, scale keys)."""
        m, n = self.w.shape
        arrays, scales = {}, [None]
        correction = None
        if rank and self.settings.preserve:
            left, right, _ = weighted_factors(self.w, self.weighting, rank)
            correction = self._stored_pair(left, right, name, arrays, scales)
            codes = self.codes(spec, base=correction)
        else:
            codes = self.codes(spec)
            if rank:
                left, right, _ = self.residual_factors(spec, rank)
                correction = self._stored_pair(left[:, :rank], right[:rank], name, arrays, scales)
        quantized = {f"{name}.codes": pack(codes.codes, spec.bits), f"{name}.scales": codes.scales}
        if codes.zeros is not None:
            quantized[f"{name}.zeros"] = pack(codes.zeros, spec.bits)
        value = self.dequantised(codes) if correction is None else self.dequantised(codes) + correction
        quant = dict(  # how this matrix was rounded: a matrix without a Gram entry is rounded to nearest
            bits=spec.bits,
            group=spec.group,
            symmetric=spec.symmetric,
            rounding=self.rounding,
            act_order=self.settings.act_order if self.rounding == "gptq" else None,
            correction=("preserve" if self.settings.preserve else "residual") if rank else None,
            scales=f"{name}.scales",
            zeros=f"{name}.zeros" if codes.zeros is not None else None,
            rotation=None if self.rotation is None else self.rotation.record(),
        )
        return {**quantized, **arrays}, self.expanded(value), quant, tuple(scales)

    def _stored_pair(self, left, right, name, arrays, scales):
        """Round the correction's factors to their storage; add them to ``arrays``; their product."""
        values = []
        for key, factor in ((f"{name}.L", left), (f"{name}.R", right)):
            stored, scale = self.factor_storage.store(factor)
            arrays[key] = stored
            if scale is not None:
                arrays[f"{key}.scale"] = scale
            scales.append(f"{key}.scale" if scale is not None else None)
            values.append(self.factor_storage.value(stored, scale))
        return values[0] @ values[1]

    def error(self, approx) -> tuple:
        """(error in the method's norm, plain error) of an approximation."""
        err = relative_error(self.w, approx, self.weighting)
        plain = err if self.weighting.kind == "none" else relative_error(self.w, approx)
        return err, plain


def macs(m, n, rank):
    """Multiply-adds of W_hat x: the dequantised matrix, and the correction's two factors."""
    return m * n + (rank or 0) * (m + n)


DEFAULT_GROUP = 128
ALLOCATOR_BITS = (2, 3, 4, 5, 6, 8)  # bit widths the budget allocator weighs (7 rarely pays between 6 and 8)


def _spec(opts, bits, group):
    return GroupSpec(bits, group, opts.quant.symmetric)


def quantizer_for(w, opts, weighting, grams, entry, expanded):
    gram = gram_of(grams, entry.name, entry.shape, weighting) if opts.quant.rounding == "gptq" else None
    return MatrixQuantizer(w, weighting, gram, opts.quant, expanded)


def groupwise_forms(w, opts, weighting, grams, entry, expanded, limit, plan, notes):
    """The group-wise form of one matrix (pass 1): the planned one, or at ``--dtype intN`` the
    smallest correction rank (from ``--correction-rank`` up) meeting ``--max-error``.

    Returns [] (with a note) when no form fits, else one form tuple
    (bytes, "groupwise", rank, arrays, error, plain error, approx, how).
    """
    m, n = w.shape
    name = entry.name
    bound = opts.max_error
    if plan is not None:
        _, bits, group, rank = plan
        candidates = [(_spec(opts, bits, group), rank)]
    else:
        spec = _spec(opts, opts.bits, opts.group_size or DEFAULT_GROUP)
        if not spec.fits(n):
            notes.append(f"dense: the group size {spec.group} does not divide its {n} input columns")
            return []
        first = opts.correction_rank or 0
        ranks = [first] + ([r for r in CORRECTION_RANKS if r > first] if bound is not None else [])
        candidates = [(spec, r) for r in ranks if r <= min(m, n)]
    quantizer = quantizer_for(w, opts, weighting, grams, entry, expanded)
    for spec, rank in candidates:
        size = quantizer.nbytes(spec, rank)
        if size > limit and plan is None:
            break
        try:
            arrays, approx, quant, scales = quantizer.form(spec, rank, name)
        except ValueError as exc:  # out of fp16's range (scales or correction factors)
            notes.append(f"dense: {spec.label()} would {exc}")
            return []
        err, plain = quantizer.error(approx)
        if not np.isfinite(err):
            notes.append(f"dense: the {spec.label()} form overflows {entry.dtype} when expanded")
            return []
        if bound is None or err <= bound:
            keys = (f"{name}.codes",) + ((f"{name}.L", f"{name}.R") if rank else ())
            how = dict(
                keys=keys,
                scales=scales,
                quant=quant,
                params=macs(m, n, rank),
                storage_dtype=quantizer.factor_storage.dtype if rank else None,
            )
            return [(size, "groupwise", rank or None, arrays, err, plain, approx, how)]
    return []


def groupwise_options(w, opts, weighting, grams, entry, expanded, limit):
    """The budget's group-wise options of one matrix: [(bytes, predicted relative loss, plan)] for
    every bit width (``--dtype intN``: that one), group size dividing its columns and correction
    rank (0 included) costing at most ``limit``; with ``--max-error``, only those predicted within it."""
    m, n = w.shape
    bits = (opts.bits,) if opts.bits is not None else ALLOCATOR_BITS
    groups = (opts.group_size,) if opts.group_size else GROUP_SIZES
    ranks = [r for r in CORRECTION_RANKS if r <= min(m, n)]
    quantizer = quantizer_for(w, opts, weighting, grams, entry, expanded)
    bound = opts.max_error
    options = []
    for b in bits:
        for g in groups:
            spec = _spec(opts, b, g)
            if not spec.fits(n):
                continue
            affordable = [r for r in ranks if quantizer.nbytes(spec, r) <= limit]
            if not affordable:
                continue
            try:
                predicted = quantizer.predicted(spec, affordable)
            except ValueError:  # out of fp16's range
                continue
            for rank, size, loss in predicted:
                if bound is None or loss <= bound * bound:
                    options.append((size, loss, ("groupwise", b, g, rank)))
    return options
