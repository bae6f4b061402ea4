"""One budget spent over many matrices: each takes one of its options (a rank, a storage form),
so that the summed loss is small, greedily by loss removed per unit of cost (water-filling).

Each item has options (cost, loss); exactly one is taken per item. The greedy
walks each item's lower convex hull of (cost, loss) from its cheapest option,
taking hull segments in decreasing order of loss removed per unit cost, and
stops at the first segment that does not fit (the *Lagrangian* allocation:
every item sits at the option minimising loss + lambda * cost for one common
lambda, so by Everett's theorem no allocation of at most the same cost has a
smaller loss). It then fills what budget is left with any further segment that
fits, which can only lower the loss. This is how SVD-LLM v2 and ASVD give
matrices different ranks: truncated-SVD losses are the discarded energies, and
the hull of a spectrum's tail is the spectrum itself when it decreases.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Allocation:
    """The option taken per item, the cost and loss in total, and the common slope.

    Attributes
    ----------
    choice : tuple of int
        Per item, the index into its option list.
    cost, loss : float
    lagrangian_cost : float
        The cost at the Lagrangian allocation (before the fill); the loss there is
        the least of any allocation costing at most that much.
    slope : float
        Loss removed per unit cost of the last segment the Lagrangian allocation took
        (inf when it took none).
    """

    choice: tuple
    cost: float
    loss: float
    lagrangian_cost: float
    slope: float


def lower_hull(costs, losses) -> list:
    """Indices of the lower convex hull of (cost, loss), from the cheapest option on.

    Only options that lower the loss as the cost rises are kept; ties in cost keep
    the smaller loss.

    Parameters
    ----------
    costs, losses : sequence of float

    Returns
    -------
    list of int
        Increasing cost, decreasing loss, decreasing loss removed per unit cost.
    """
    order = sorted(range(len(costs)), key=lambda i: (costs[i], losses[i]))
    hull: list = []
    for i in order:
        if hull and costs[i] == costs[hull[-1]]:
            continue  # the same cost and a larger (or equal) loss
        if hull and losses[i] >= losses[hull[-1]]:
            continue  # costs more, removes nothing
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b is above the segment a -> i: drop it
            if (losses[b] - losses[a]) * (costs[i] - costs[a]) >= (losses[i] - losses[a]) * (costs[b] - costs[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def allocate(options, budget: float) -> Allocation:
    """Take one option per item within ``budget`` so that the summed loss is small.

    Parameters
    ----------
    options : sequence of sequence of (cost, loss)
        Per item its options; costs >= 0, losses finite.
    budget : float

    Returns
    -------
    Allocation

    Raises
    ------
    ValueError
        When even the cheapest option of every item together exceeds the budget
        (the message gives that least cost).
    """
    costs = [np.asarray([o[0] for o in opts], dtype=np.float64) for opts in options]
    losses = [np.asarray([o[1] for o in opts], dtype=np.float64) for opts in options]
    if any(len(c) == 0 for c in costs):
        raise ValueError("every item needs at least one option")
    hulls = [lower_hull(c, lo) for c, lo in zip(costs, losses)]
    at = [0] * len(hulls)  # position on each hull
    spent = float(sum(c[h[0]] for c, h in zip(costs, hulls)))
    if spent > budget:
        raise ValueError(f"the least cost of any allocation is {spent:.6g}, above the budget {budget:.6g}")
    heap: list = []

    def push(k):
        h = hulls[k]
        if at[k] + 1 < len(h):
            a, b = h[at[k]], h[at[k] + 1]
            dc, dl = costs[k][b] - costs[k][a], losses[k][a] - losses[k][b]
            heapq.heappush(heap, (-dl / dc if dc > 0 else -np.inf, k))

    for k in range(len(hulls)):
        push(k)
    slope, lagrangian, filling = np.inf, None, False
    while heap:
        neg_rate, k = heapq.heappop(heap)
        h = hulls[k]
        step = costs[k][h[at[k] + 1]] - costs[k][h[at[k]]]
        if spent + step > budget:
            if lagrangian is None:
                lagrangian, filling = spent, True
            continue  # this item's further hull points cost more still
        spent += step
        at[k] += 1
        if not filling:
            slope = -neg_rate
        push(k)
    choice = tuple(h[i] for h, i in zip(hulls, at))
    loss = float(sum(lo[c] for lo, c in zip(losses, choice)))
    return Allocation(choice, spent, loss, spent if lagrangian is None else lagrangian, slope)
