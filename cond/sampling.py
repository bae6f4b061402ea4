"""``from cond.sampling import sample``, as README documents: the command lives in
:mod:`cond.commands.sample`."""

from cond.commands.sample import SampleResult, parse_size, sample

__all__ = ["SampleResult", "parse_size", "sample"]
