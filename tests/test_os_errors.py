"""Full disks and read-only folders are the user's environment, not internal errors.

A full disk is made real, not mocked: each command runs in a child process whose file-size
limit (RLIMIT_FSIZE) is a few kilobytes, so every write past it fails in the kernel
(EFBIG, the same path through cond as ENOSPC); SIGXFSZ is ignored so the write returns the
error. A read-only folder is ``/sys`` (EACCES even for root). Each run must exit 2 with
one line naming the output, leave no temporary file and no folder it made, and a
memory-mapped output (dedup's ``.npy``) must fail as an error, never SIGBUS.
"""

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest
from safetensors.numpy import save_file

RNG = np.random.default_rng(1)


def _run(args, cwd, limit=None, stdin=None):
    def preexec():
        if limit is not None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "cond.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        preexec_fn=preexec,
        input=stdin,
        timeout=300,
    )


def _inputs(d):
    w = (RNG.standard_normal((300, 8)) @ RNG.standard_normal((8, 200))).astype(np.float32)
    save_file({"w": w, "v": w[:200, :100].copy()}, os.path.join(d, "m.safetensors"))
    np.save(os.path.join(d, "x.npy"), RNG.standard_normal((20000, 6)))
    os.mkdir(os.path.join(d, "model"))  # a model folder for calibrate (its outputs are planned before torch loads)
    with open(os.path.join(d, "model", "config.json"), "w") as f:
        f.write('{"model_type": "bert"}')
    save_file({"w": np.ones((4, 4), np.float32)}, os.path.join(d, "model", "model.safetensors"))
    with open(os.path.join(d, "t.txt"), "w") as f:
        f.write("a b c\n")
    return d


def _compressed(d):
    out = _run(["compress", "m.safetensors", "--rank", "4", "-o", "c.safetensors", "-q"], d)
    assert out.returncode == 0, out.stderr
    return "c.safetensors"


CASES = {  # name -> (arguments, the output named in the error); every input is at most 300 KB
    "compress": (["compress", "m.safetensors", "--rank", "4", "-o", "out/c.safetensors", "-q"], "out/c.safetensors"),
    "expand": (["expand", "c.safetensors", "-o", "out/dense", "-q"], "out/dense"),
    "inspect --spectra": (["inspect", "m.safetensors", "--spectra", "out/s.npz", "-q"], "out/s.npz"),
    "inspect --plot": (["inspect", "m.safetensors", "--plot", "out/plots", "-q"], "out/plots"),
    "sample -o": (["sample", "x.npy", "--size", "2000", "-o", "out/s.tsv"], "out/s.tsv"),
    "sample --scores-out": (["sample", "x.npy", "--size", "5", "--scores-out", "out/s.txt"], "out/s.txt"),
    "dedup -o .npy (memory-mapped)": (["dedup", "x.npy", "-o", "out/k.npy", "-q"], "out/k.npy"),
    "dedup -o .csv": (["dedup", "x.npy", "-o", "out/k.csv", "-q"], "out/k.csv"),
}


def _leftovers(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("name", list(CASES))
def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, name):
    d = _inputs(str(tmp_path))
    if name == "expand":
        _compressed(d)
    args, output = CASES[name]
    os.mkdir(tmp_path / "out")
    result = _run(args, d, limit=1024)
    assert result.returncode == 2, (result.returncode, result.stderr)
    err = result.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("cond: error: "), err
    # NumPy's text tofile reports a failed write without its errno: "cannot write" is all it can say
    assert output in err and ("too large" in err or "cannot write" in err), err
    assert _leftovers(tmp_path / "out") == []  # no temporary file, no lock, not even the folder the run made


def test_dedup_npy_reserves_its_space_before_mapping(tmp_path):
    """Without the reservation a memory-mapped write past the limit is SIGBUS (exit -7)."""
    d = _inputs(str(tmp_path))
    result = _run(["dedup", "x.npy", "-o", "k.npy", "-q"], d, limit=500_000)
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "k.npy" in result.stderr and not os.path.exists(tmp_path / "k.npy")
    assert [f for f in os.listdir(tmp_path) if f.startswith(".k.npy")] == []


def _read_only_folder():
    probe = "/sys/cond-probe"
    try:
        open(probe, "w").close()
    except OSError:
        return "/sys"
    os.unlink(probe)  # pragma: no cover - a writable /sys: no read-only folder to test with
    return None


@pytest.mark.skipif(_read_only_folder() is None, reason="no read-only folder on this machine")
@pytest.mark.parametrize(
    "args",
    [
        ["compress", "m.safetensors", "--rank", "4", "-o", "/sys/c.safetensors"],
        ["expand", "c.safetensors", "-o", "/sys/dense"],
        ["inspect", "m.safetensors", "--spectra", "/sys/s.npz"],
        ["inspect", "m.safetensors", "--plot", "/sys/plots"],
        ["sample", "x.npy", "--size", "5", "-o", "/sys/s.tsv"],
        ["sample", "x.npy", "--size", "5", "--scores-out", "/sys/s.npy"],
        ["dedup", "x.npy", "-o", "/sys/k.npy"],
        ["calibrate", "model", "--text", "t.txt", "-o", "/sys/g.safetensors"],
        ["calibrate", "model", "--text", "t.txt", "-o", "g.safetensors", "--fisher", "/sys/f.safetensors"],
    ],
    ids=lambda a: " ".join(a[:1] + a[-2:-1]),
)
def test_a_read_only_folder_is_one_line_before_the_work(tmp_path, args):
    d = _inputs(str(tmp_path))
    if args[0] == "expand":
        _compressed(d)
    result = _run(args, d)
    assert result.returncode == 2, (result.returncode, result.stderr)
    err = result.stderr.strip()
    assert err.count("\n") == 0 and err.startswith("cond: error: /sys/"), err
    assert "permission denied" in err or "read-only" in err, err
