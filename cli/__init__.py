"""The ``cond`` command line (installed as ``cond.cli``). See :mod:`cond.cli.main`."""
