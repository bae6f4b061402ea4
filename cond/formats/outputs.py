"""The one output layer: every file a command writes is planned here before any work starts.

>>> with OutputPlan(inputs=["model.safetensors"], force=False) as plan:   # doctest: +SKIP
...     out = plan.file("small.safetensors", "--output")      # checked and locked now
...     ...                                                   # the long work
...     with plan.writing(out) as tmp:                        # a temporary file beside it
...         write(tmp)                                        # renamed into place on success

What a plan guarantees, for every command alike:

- **No output lands on an input.** Inputs are known by identity (device and inode,
  so symbolic links, hard links and ``..`` all resolve to the same file): a single
  file, every shard named by an index and the index itself, every file of an input
  folder (a checkpoint directory, a Hugging Face model folder, a Zarr store).
- **No output lands on another output of the same run** (``-o`` and ``--scores-out``).
- **An existing file is replaced only with ``force``**, and a folder output never
  loses a file that cond did not write (``expand`` keeps a marker of its own files).
- **Two runs never write one path at once**: each planned path holds an advisory lock
  (``flock`` on ``.NAME.cond-lock`` beside it) until the plan closes.
- **Nothing half-written**: data goes to a temporary file beside the target, renamed
  over it at the end; a failure removes it, and a folder the plan created is removed
  again when the run fails. Space for memory-mapped outputs is allocated up front, so
  a full disk is an error, never SIGBUS.
- **OS errors are one line** (:class:`cond.errors.OutputError`, exit 2): no space, a
  read-only file system, permission denied, a file where a folder should be.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile

from cond.errors import OutputError, UsageError

#: OS errors that mean "this output cannot be written" rather than a bug of cond's
OUTPUT_ERRNOS = {
    errno.ENOSPC,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.EISDIR,
    errno.ENOTDIR,
    errno.EEXIST,
    errno.EDQUOT,
    errno.EFBIG,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.ENOENT,
}

_MAX_FOLDER_FILES = 200_000  # an input folder larger than this is protected by the folder itself


def _umask() -> int:
    """The process's umask: from /proc where Linux shows it (no other thread can see a change),
    else by setting it and putting it back."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _identity(path):
    """(device, inode) of what ``path`` names after every symbolic link, or None if nothing is there."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return st.st_dev, st.st_ino


def _index_shards(path):
    """The shard files an index JSON names (resolved beside it), or [] if it cannot be read."""
    try:
        with open(path, "rb") as f:
            weight_map = json.load(f).get("weight_map", {})
        names = set(weight_map.values()) if isinstance(weight_map, dict) else set()
    except (OSError, ValueError, AttributeError, TypeError, RecursionError):
        return []  # the reader says what is wrong with it
    folder = os.path.dirname(os.path.abspath(path))
    return [os.path.join(folder, n) for n in names if isinstance(n, str)]


def input_files(sources) -> dict:
    """Every file the ``sources`` of a run consist of, keyed by identity: ``{(dev, ino): how it is
    an input}`` (``the input X``, ``a shard of the input X``, ``a file of the input folder X``).

    A path that is not a file or folder (``-``, an array, None) contributes nothing; a
    ``*.safetensors.index.json`` brings its shards; a folder brings every file under it
    (and the folder itself).
    """
    found: dict = {}

    def add(path, relation):
        key = _identity(path)
        if key is not None:
            found.setdefault(key, relation)

    for source in sources:
        if not isinstance(source, (str, os.PathLike)) or os.fspath(source) in ("", "-"):
            continue
        source = os.fspath(source)
        add(source, f"the input {source}")
        if os.path.isdir(source):
            count = 0
            for root, _, files in os.walk(source):
                for name in files:
                    count += 1
                    if count > _MAX_FOLDER_FILES:
                        break
                    add(os.path.join(root, name), f"a file of the input folder {source}")
        elif source.lower().endswith(".index.json"):
            for shard in _index_shards(source):
                add(shard, f"a shard of the input {source}")
    return found


class OutputPlan:
    """Every output of one run, checked and locked before the work (a context manager).

    Parameters
    ----------
    inputs : iterable of str
        The run's sources (files, index JSONs, folders); nothing planned may be one of
        their files.
    force : bool
        Replace existing files (never an input, never a file cond did not write in a
        folder output).
    """

    def __init__(self, inputs=(), *, force=False):
        self.force = bool(force)
        self._sources = [
            os.fspath(s) for s in inputs if isinstance(s, (str, os.PathLike)) and os.fspath(s) not in ("", "-")
        ]
        self._inputs = input_files(self._sources)
        self._planned = {}  # real path -> the flag that asked for it
        self._locks = []  # (lock path, fd)
        self._created = []  # folders this plan made, removed again if the run fails

    # ------------------------------------------------------------------ planning

    def file(self, path, flag="--output") -> str:
        """Check and lock one output file; returns the path as given.

        Raises
        ------
        UsageError
            ``-``, an input, another output of this run, a folder, or an existing file without ``force``.
        OutputError
            The folder does not exist, is not writable, or another run holds the path.
        """
        path = self._checked_path(path, flag)
        if os.path.isdir(path):
            raise UsageError(f"is a directory; `{flag}` takes a file path", path=path)
        if os.path.lexists(path) and not self.force:
            raise UsageError(f"exists; pass --force to replace it (`{flag}`)", path=path)
        self._lock(path)
        return path

    def folder(self, path, flag="--output") -> str:
        """Check and lock an output folder (made at the first write if missing); returns the path."""
        path = self._checked_path(path, flag)
        if os.path.lexists(path) and not os.path.isdir(path):
            raise UsageError(f"exists and is not a directory; `{flag}` takes a folder here", path=path)
        self._lock(path)
        return path

    def member(self, folder, name, flag="--output") -> str:
        """A file inside a planned folder: checked against the inputs and the other outputs."""
        path = os.path.join(folder, name)
        self._refuse_input(path, flag)
        key = os.path.join(os.path.realpath(folder), name)
        if key in self._planned:
            raise UsageError(f"is also the {self._planned[key]} of this run; give each output its own path", path=path)
        self._planned[key] = flag
        return path

    def _checked_path(self, path, flag):
        if not isinstance(path, (str, os.PathLike)):
            raise UsageError(f"`{flag}` must be a path; got a {type(path).__name__}")
        path = os.fspath(path)
        if path == "-":
            raise UsageError(
                f"`{flag}` is a file: give a path (`-` for standard output applies to text output only)", path=path
            )
        if not path:
            raise UsageError(f"`{flag}` must not be empty")
        self._refuse_input(path, flag)
        key = self._key(path)
        if key in self._planned:
            raise UsageError(f"is also the {self._planned[key]} of this run; give each output its own path", path=path)
        parent = os.path.dirname(os.path.abspath(path.rstrip(os.sep) or path))
        if not os.path.isdir(parent):
            what = "is not a folder" if os.path.lexists(parent) else "does not exist"
            raise OutputError(f"the output's folder {what} (`{flag}`)", path=path)
        self._planned[key] = f"`{flag}`"
        return path

    def _refuse_input(self, path, flag):
        key = _identity(path)
        if key is not None and key in self._inputs:
            raise UsageError(
                f"is {self._inputs[key]}; refusing to overwrite the input: choose another `{flag}`", path=path
            )

    @staticmethod
    def _key(path):
        parent, base = os.path.split(os.path.abspath(path.rstrip(os.sep) or path))
        return os.path.join(os.path.realpath(parent), base)

    def _lock(self, path):
        import fcntl

        parent, base = os.path.split(os.path.abspath(path.rstrip(os.sep)))
        lock = os.path.join(parent, f".{base}.cond-lock")
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise _output_error(exc, path, "cannot write in the output's folder") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise OutputError(
                    "another cond run is writing this path; wait for it or choose another output", path=path
                ) from None
            if _identity(lock) == (lambda st: (st.st_dev, st.st_ino))(os.fstat(fd)):
                break  # the lock file we hold is the one at that name (not one a finishing run unlinked)
            os.close(fd)
        self._locks.append((lock, fd))

    # ------------------------------------------------------------------ writing

    @contextlib.contextmanager
    def writing(self, path, *, binary_size=None, replace=False):
        """Yield a temporary path beside ``path``; on success it is renamed over ``path`` with the
        user's umask applied. ``binary_size``: allocate that many bytes first (memory maps);
        ``replace``: a file of cond's own (a marker) is replaced without ``force``.

        Raises
        ------
        OutputError
            No space, read-only, permission denied (the temporary file is removed).
        """
        path = os.fspath(path)
        folder = os.path.dirname(os.path.abspath(path))
        self._make_folder(folder)
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
        except OSError as exc:
            raise _output_error(exc, path) from None
        mode = 0o666 & ~_umask()
        try:
            try:
                if binary_size:
                    allocate(fd, binary_size, path)
            finally:
                os.close(fd)
            yield tmp
            os.chmod(tmp, mode)  # after the body: a writer may have replaced the file (safetensors does)
            if not (self.force or replace) and os.path.lexists(path):
                raise OutputError(
                    "appeared while cond was writing it (another program?); nothing was "
                    "replaced: pass --force to replace it",
                    path=path,
                )
            os.replace(tmp, path)
        except OSError as exc:
            ours = exc.errno is None or exc.errno in OUTPUT_ERRNOS  # NumPy's tofile raises one without errno
            if ours and exc.filename in (None, tmp, path, folder):
                raise _output_error(exc, path) from None
            raise
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)

    def _make_folder(self, folder):
        """Make ``folder`` and any missing parents below the planned output, each recorded so that a
        failed run removes them again."""
        if os.path.isdir(folder):
            return
        self._make_folder(os.path.dirname(os.path.abspath(folder)))
        try:
            os.mkdir(folder)
        except OSError as exc:
            raise _output_error(exc, folder) from None
        self._created.append(folder)

    def remove(self, path):
        """Remove a file this run replaces (an earlier expansion's shard), as one-line errors."""
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _output_error(exc, path) from None

    # ------------------------------------------------------------------ closing

    def close(self, failed=False):
        """Release every lock; after a failure, remove the folders this plan created (if empty)."""
        if failed:
            for folder in reversed(self._created):
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        for lock, fd in self._locks:
            with contextlib.suppress(OSError):
                os.unlink(lock)
            os.close(fd)
        self._locks.clear()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        self.close(failed=kind is not None)
        return False


def allocate(fd, size, path):
    """Reserve ``size`` bytes for ``fd`` so that writing through a memory map cannot hit a full
    disk (which is SIGBUS, not an error); file systems without fallocate get zeros written."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, getattr(errno, "ENOTSUP", errno.EOPNOTSUPP)):
            raise _output_error(exc, path) from None
    except AttributeError:  # pragma: no cover - no posix_fallocate (macOS)
        pass
    zeros = bytes(1 << 20)
    os.lseek(fd, 0, os.SEEK_SET)
    left = size
    try:
        while left:
            left -= os.write(fd, zeros[: min(left, len(zeros))])
    except OSError as exc:
        raise _output_error(exc, path) from None
    os.lseek(fd, 0, os.SEEK_SET)


_WHY = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "not permitted",
    errno.EISDIR: "is a directory",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EEXIST: "already exists",
    errno.EFBIG: "file too large for the file system",
    errno.ENAMETOOLONG: "name too long",
    errno.ENOENT: "the folder disappeared",
}


def _output_error(exc, path, what="cannot write"):
    """An OSError while writing ``path`` as one line: what failed and why, nothing else."""
    why = _WHY.get(exc.errno, exc.strerror or str(exc) or type(exc).__name__)
    return OutputError(f"{what}: {why}; nothing was written", path=os.fspath(path))


def write_npz(plan, path, arrays: dict):
    """``{name: array}`` as an ``.npz`` (no pickles), through ``plan``."""
    import numpy as np

    with plan.writing(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
