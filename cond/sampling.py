"""``from cond.sampling import sample``, as README documents: the command lives in
:mod:`cond.commands.sample`."""

from cond.commands.sample import SampleResult, sample, sample_size

__all__ = ["SampleResult", "sample_size", "sample"]
