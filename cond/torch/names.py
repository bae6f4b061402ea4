"""Matching tensor names between a model and a checkpoint that differ by a prefix.

Wrappers add prefixes (``0.auto_model.`` in sentence-transformers, ``bert.`` in a
task head, ``model.`` in many loaders); the same weights then have names that
differ only in front. :func:`align` finds the one prefix to add or strip that
matches the most names, so that files cond writes carry the checkpoint's own names.
"""

from __future__ import annotations

from collections import Counter


def align(ours, theirs):
    """The prefix rule that maps most of ``ours`` onto ``theirs``: (add, strip) with
    ``theirs_name = add + ours_name[len(strip):]``.

    Parameters
    ----------
    ours : iterable of str
        Names on our side (the model's parameters, say).
    theirs : iterable of str
        Names to map onto (the checkpoint's tensors).

    Returns
    -------
    (str, str)
        ``("", "")`` when the names already agree (or nothing matches at all).
    """
    ours, theirs = list(ours), set(theirs)
    votes = Counter()
    for name in ours:
        if name in theirs:
            votes[("", "")] += 1
    for name in ours:
        for other in theirs:
            if other == name:
                continue
            if other.endswith(name) and other[-len(name) - 1] == ".":
                votes[(other[: -len(name)], "")] += 1
            elif name.endswith(other) and name[-len(other) - 1] == ".":
                votes[("", name[: -len(other)])] += 1
    if not votes:
        return "", ""
    return max(votes.items(), key=lambda kv: (kv[1], -len(kv[0][0]) - len(kv[0][1])))[0]


def mapper(add, strip):
    """The function ``name -> add + name[len(strip):]`` (names without ``strip`` map to None)."""

    def apply(name):
        if not name.startswith(strip):
            return None
        return add + name[len(strip) :]

    return apply
