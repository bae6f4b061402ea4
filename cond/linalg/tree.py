"""A reduction by a fixed binary tree, and the row blocks every streaming pass sees.

The tree depends only on the number of leaves, so the floats of a reduction (TSQR's R
factors, a Gram matrix's sums) do not depend on threads, chunking or a Dask cluster.
"""

from __future__ import annotations

BLOCK_ROWS = 4096  # the row blocks of every streaming pass: TSQR leaves, sketch leaves, Dask tasks


class PairTree:
    """A reduction by a binary tree over leaves that arrive in order (a binary counter).

    A node merges two equal-level neighbours, ``merge(left, right)``, as soon as both
    exist, so the stack holds O(log leaves) values. The tree depends only on the
    number of leaves: any run that feeds the same leaves in the same order, or
    complete subtrees of 2**k aligned leaves computed elsewhere (:meth:`push`), gets
    the same floats. That is what lets a Dask cluster reproduce the in-process result.
    """

    def __init__(self, merge):
        self.merge = merge
        self.stack = []

    def push(self, level, value):
        while self.stack and self.stack[-1][0] == level:
            _, left = self.stack.pop()
            value = self.merge(left, value)
            level += 1
        self.stack.append((level, value))

    def result(self):
        """The merge of every leaf (None when there were none)."""
        out = None
        for _, node in reversed(self.stack):  # fold from the latest subtree down
            out = node if out is None else self.merge(node, out)
        return out
