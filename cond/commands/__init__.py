"""What each subcommand does, mirroring cli/: one module (or package) per command.

Each validates its arguments once into frozen options, computes, and returns a frozen
result with a schema id (``cond.inspect/1``, ``cond.compress/3``, ``cond.calibrate/2``, ``cond.expand/1``,
``cond.sample/1``). Nothing here prints or imports typer or rich.
"""
