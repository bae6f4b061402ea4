"""Running cond's work on a Dask cluster: ``--scheduler ADDRESS`` or ``--scheduler local:N``.

Dask is optional (``pip install 'cond[dask]'``) and imported only here, only
when a scheduler is asked for. The unit of work is the same function the
single-process path calls (one tensor for ``inspect``, one tensor or one pool
of matrices for ``compress``, one group of row blocks for ``sample``), so
results are the same floats; tasks carry file paths and offsets, never the
tensors, and the workers read the files themselves (shared storage). Results
come back in input order, at most ``window`` tasks ahead of the one being
consumed, so the client holds a bounded amount.
"""

from __future__ import annotations

import contextlib
import os
import re

from cond.errors import UsageError

ENV = "COND_SCHEDULER"
TIMEOUT_ENV = "COND_SCHEDULER_TIMEOUT"


def scheduler_from(option):
    """The scheduler to use: the option, else ``$COND_SCHEDULER``, else None (in-process)."""
    spec = option if option is not None else os.environ.get(ENV) or None
    if spec is None:
        return None
    spec = str(spec).strip()
    if spec.startswith("local"):
        if not re.fullmatch(r"local:[1-9]\d*", spec):
            raise UsageError(f"`--scheduler` local clusters are written local:N with N >= 1 workers; got {spec!r}")
    elif not re.fullmatch(r"(tcp|tls|inproc|ucx|ws|wss)://\S+|[\w.-]+:\d+", spec):
        raise UsageError(f"`--scheduler` must be a scheduler address (tcp://host:8786) or local:N; got {spec!r}")
    return spec


@contextlib.contextmanager
def dask_client(spec):
    """A ``distributed.Client`` for ``spec`` (``local:N`` starts and stops a LocalCluster of
    N single-threaded worker processes)."""
    try:
        import distributed
    except ImportError:
        raise UsageError("`--scheduler` needs Dask: pip install 'cond[dask]'") from None
    import logging

    if spec.startswith("local:"):
        cluster = distributed.LocalCluster(
            n_workers=int(spec.split(":")[1]),
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        try:
            with distributed.Client(cluster) as client:
                yield client
        finally:
            cluster.close()
        return
    timeout = connect_timeout()
    try:
        client = distributed.Client(spec, timeout=timeout)
    except OSError as exc:
        raise UsageError(
            f"cannot reach the Dask scheduler at {spec} within {timeout:g} s "
            f"(${TIMEOUT_ENV}); {str(exc).splitlines()[0]}"
        ) from None
    with client:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except (TimeoutError, OSError):
            raise UsageError(
                f"the Dask scheduler at {spec} has no workers (waited {timeout:g} s, "
                f"${TIMEOUT_ENV}); start some with dask worker {spec}"
            ) from None
        yield client


def connect_timeout() -> float:
    """Seconds to wait for a remote scheduler and for its first worker: ``$COND_SCHEDULER_TIMEOUT``,
    default 20."""
    text = os.environ.get(TIMEOUT_ENV, "20")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise UsageError(f"${TIMEOUT_ENV} must be a positive number of seconds; got {text!r}")
    return value


def ordered_map(client, fn, items, *, window=None, progress=None, **kwargs):
    """``fn(item, **kwargs)`` for every item on the cluster; results yielded in item order.

    At most ``window`` tasks (default: twice the workers) are submitted beyond the
    result being waited for. ``progress(done, total)`` after each result.
    """
    items = list(items)
    if window is None:
        window = 2 * max(1, len(client.scheduler_info().get("workers", {})))

    def submit(k):
        return client.submit(fn, items[k], pure=False, key=f"cond-{fn.__name__}-{k}-{os.getpid()}", **kwargs)

    pending = [submit(k) for k in range(min(window, len(items)))]
    for done in range(1, len(items) + 1):
        future = pending.pop(0)
        result = future.result()
        future.release()
        if progress is not None:
            progress(done, len(items))
        if done - 1 + window < len(items):
            pending.append(submit(done - 1 + window))
        yield result
