"""Argument rules every command shares, checked before any work (one recipe for errors:
the parameter, the rule, the observed value, what to do instead)."""

from __future__ import annotations

import numbers

from cond.errors import InputError, UsageError

MAX_SEED = 2**63 - 1


def check_choice(flag, value, allowed):
    """``value`` must be one of ``allowed``."""
    if value not in allowed:
        raise UsageError(f"`{flag}` must be one of {', '.join(allowed)}; got {value!r}")
    return value


def check_seed(seed, flag="--seed") -> int:
    """A seed is an integer in [0, 2**63 - 1] (checked before the work, not after it)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= int(seed) <= MAX_SEED:
        raise UsageError(f"`{flag}` must be an integer in [0, 2**63 - 1]; got {seed!r}")
    return int(seed)


def check_budgets(budget, budget_bytes):
    """``--budget`` (a share of the parameters) and ``--budget-bytes`` (of the bytes) are in (0, 1]."""
    for flag, value in (("--budget", budget), ("--budget-bytes", budget_bytes)):
        if value is not None and not 0 < value <= 1:
            raise UsageError(
                f"`{flag}` must be a share in (0, 1] of the selected matrices' "
                f"{'bytes' if flag == '--budget-bytes' else 'parameters'}; got {value}"
            )


def refuse_unused(given, reason):
    """Options that do nothing in the combination given are refused, not ignored.

    ``given`` maps each flag to whether the user set it; ``reason`` completes "... only
    apply ..." (e.g. "with `--collinearity`").
    """
    used = [flag for flag, is_set in given.items() if is_set]
    if used:
        verb = "applies" if len(used) == 1 else "apply"
        raise UsageError(f"{', '.join(f'`{f}`' for f in used)} {verb} {reason}")


def memory_bytes() -> int:
    """The machine's physical memory in bytes (0 when the system does not say)."""
    import os

    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - not POSIX
        return 0


def human_bytes(n) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


# the advice each design command gives when a design is too wide for memory
_ADVICE = {
    "sample": "sample fewer columns with --columns",
    "dedup": "deduplicate fewer columns at once with --columns",
    "collinearity": "choose fewer columns with --columns",
}


def check_design_memory(n, d, label, command, whole=False):
    """Refuse, before anything is allocated, a design whose working state cannot fit in memory:
    the streaming commands hold a few d x d float64 matrices (R factors, Grams, correlations);
    ``whole``: the command also holds the n x d design itself."""
    need = 4 * 8 * d * d + (3 * 8 * n * d if whole else 0)
    have = memory_bytes()
    if have and need > have:
        state = f"{n} x {d} design and " if whole else ""
        raise InputError(
            f"has {d} columns: the {state}{d} x {d} float64 working state need about "
            f"{human_bytes(need)}, more than this machine's {human_bytes(have)} of memory; "
            f"{_ADVICE[command]}",
            path=label,
        )
