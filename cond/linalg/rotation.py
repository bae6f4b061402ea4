"""Incoherence before rounding (QuIP, Chee et al., NeurIPS 2023; QuaRot, Ashkboos et al. 2024).

W x = (W R)(R^T x) for any orthogonal R, so W R can be quantized instead of W (GPTQ then
with the Gram R^T G R of the rotated inputs) and read back as W_hat = Q R^T. Here
R = diag(signs) blockdiag(H_b, ..., H_b), H_b the Sylvester-Hadamard matrix of order b
divided by sqrt(b), b the largest power of two dividing n (at most ``ROTATION_BLOCK``),
and the signs drawn from the keyed generator (:func:`cond.kernels.keyed.keyed_uniforms`)
with a recorded seed, so a file stores only (b, seed). A rotation spreads a row's few
large entries over a block, which shrinks the range each group's scale must cover: on
all-MiniLM-L6-v2 it lowered GPTQ's output error at 4-6 bits on all 12 matrices tried
(README, "Quantized forms").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

ROTATION_BLOCK = 512  # the largest Hadamard block of a rotation
ROTATION_MIN = 16  # no rotation when n has no power-of-two factor this large


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
