"""The output guard over every command x every input kind x every output flag.

For each command, each kind of input it reads (a file, a shard of an index, the index
itself, a checkpoint folder, a model folder, standard input) and each flag that writes a
file, the output is aimed at a file of the input, by its own name, through a symbolic
link, through a hard link and through ``..``: every run must exit 2 with one line saying
it refuses to overwrite the input, and every file of the input must keep its bytes.
Two outputs of one run on one path, and two runs on one path at once, are refused too.
"""

import fcntl
import hashlib
import json
import os

import numpy as np
import pytest
from invariants import assert_one_line_error
from safetensors.numpy import save_file
from typer.testing import CliRunner

from cond.cli.main import app

runner = CliRunner()
RNG = np.random.default_rng(0)


def _matrix(m=40, n=24):
    return (RNG.standard_normal((m, 5)) @ RNG.standard_normal((5, n))).astype(np.float32)


def _file(d):
    path = os.path.join(d, "m.safetensors")
    save_file({"a": _matrix(), "b": _matrix()}, path)
    return path, [path]


def _index(d, target="shard"):
    folder = os.path.join(d, "sh")
    os.makedirs(folder)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    save_file({"a": _matrix()}, os.path.join(folder, names[0]))
    save_file({"b": _matrix()}, os.path.join(folder, names[1]))
    index = os.path.join(folder, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {}, "weight_map": {"a": names[0], "b": names[1]}}, f)
    files = [os.path.join(folder, n) for n in names] + [index]
    return index, files


def _folder(d):
    index, files = _index(d)
    return os.path.dirname(index), files


def _model_folder(d):
    folder = os.path.join(d, "model")
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write('{"model_type": "bert"}')
    save_file({"w": np.ones((4, 4), np.float32)}, os.path.join(folder, "model.safetensors"))
    return folder, [os.path.join(folder, "config.json"), os.path.join(folder, "model.safetensors")]


def _compressed(d):
    src, _ = _file(d)
    out = os.path.join(d, "c.safetensors")
    assert runner.invoke(app, ["compress", src, "--rank", "2", "--min-size", "1", "-o", out, "-q"]).exit_code == 0
    os.unlink(src)
    return out, [out]


def _design(d):
    path = os.path.join(d, "x.npy")
    np.save(path, RNG.standard_normal((60, 4)))
    return path, [path]


# command -> (input kinds: name -> maker), the extra arguments, and the flags that write a file
COMMANDS = {
    "inspect": ({"file": _file, "index": _index, "shard": _index, "folder": _folder}, ["-q"], ["--spectra", "--plot"]),
    "compress": (
        {"file": _file, "index": _index, "shard": _index, "folder": _folder},
        ["--rank", "2", "--min-size", "1", "-q", "--force"],
        ["-o"],
    ),
    "expand": ({"file": _compressed}, ["-q", "--force"], ["-o"]),
    "sample": ({"file": _design}, ["--size", "5", "--force"], ["-o", "--scores-out"]),
    "dedup": ({"file": _design}, ["--force"], ["-o"]),
    "calibrate": ({"model folder": _model_folder}, ["--force"], ["-o", "--fisher"]),
}
ROUTES = ("name", "symlink", "hardlink", "dotdot")


def _cases():
    for command, (kinds, _, flags) in COMMANDS.items():
        for kind in kinds:
            for flag in flags:
                for route in ROUTES:
                    if flag == "--plot" and route in ("name", "dotdot"):
                        continue  # a picture's name comes from a tensor: only a link can alias an input
                    yield command, kind, flag, route


def _hashes(files):
    return {f: hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}


def _victim(files, kind):
    """The input file the output is aimed at: a shard for 'shard', the index for 'index'."""
    if kind == "shard":
        return files[1]
    if kind == "index":
        return files[-1]
    return files[-1] if kind == "folder" else files[0] if kind != "model folder" else files[1]


def _aim(d, victim, route):
    if route == "name":
        return victim
    ext = victim[victim.index(".", len(os.path.dirname(victim)) + 1) :]  # .npy, .safetensors.index.json
    if route == "symlink":
        link = os.path.join(d, "link" + ext)
        os.symlink(victim, link)
        return link
    if route == "hardlink":
        link = os.path.join(d, "hard" + ext)
        os.link(victim, link)
        return link
    folder, base = os.path.split(victim)
    return os.path.join(folder, "..", os.path.basename(folder), base)


@pytest.mark.parametrize(
    "command, kind, flag, route", list(_cases()), ids=["-".join(c).replace(" ", "_") for c in _cases()]
)
def test_no_output_lands_on_an_input(tmp_path, command, kind, flag, route):
    kinds, extra, _ = COMMANDS[command]
    source, files = kinds[kind](str(tmp_path))
    victim = _victim(files, kind)
    target = _aim(str(tmp_path), victim, route)
    args = [command, source, *extra]
    if command == "calibrate":
        text = tmp_path / "t.txt"
        text.write_text("a b c\n")
        args += ["--text", str(text)]
        if flag == "--fisher":
            args += ["-o", str(tmp_path / "g.safetensors")]
    if flag == "--plot":  # the picture of tensor 'a' would be pics/a.png, a link to an input file
        pics = tmp_path / "pics"
        pics.mkdir()
        os.replace(target, pics / "a.png")
        args, flag, target = args + ["--include", "^a$", "--force"], "--plot", str(pics)
    before = _hashes(files)
    result = runner.invoke(app, args + [flag, target])
    assert_one_line_error(result, ["refusing to overwrite the input"])
    assert _hashes(files) == before


def test_a_picture_named_like_an_input_is_refused(tmp_path):
    """--plot into the input's folder where a picture would replace an input file of that name."""
    folder = tmp_path / "ck"
    folder.mkdir()
    save_file({"overview": _matrix()}, str(folder / "m.safetensors"))
    victim = folder / "m.png"  # an input of this run (inspect reads the folder), named as a picture would be
    np.save(folder / "m.npy", np.eye(3))
    os.rename(folder / "m.npy", victim)
    before = _hashes([str(victim)])
    result = runner.invoke(app, ["inspect", str(folder), "--plot", str(folder), "--force", "-q"])
    assert_one_line_error(result, ["refusing to overwrite the input"])
    assert _hashes([str(victim)]) == before


def test_two_outputs_of_one_run_on_one_path(tmp_path):
    x, _ = _design(str(tmp_path))
    same = str(tmp_path / "same.tsv")
    result = runner.invoke(app, ["sample", x, "--size", "5", "--force", "-o", same, "--scores-out", same])
    assert_one_line_error(result, ["same.tsv", "of this run"])
    assert not os.path.exists(same)


def test_standard_input_with_two_outputs_on_one_path(tmp_path):
    data = "a,b\n" + "".join(f"{i},{i * i % 7}\n" for i in range(30))
    same = str(tmp_path / "s.npy")
    result = runner.invoke(
        app, ["sample", "-", "--input-format", "csv", "--size", "5", "-o", same, "--scores-out", same], input=data
    )
    assert_one_line_error(result, ["s.npy", "of this run"])


def test_a_second_run_on_the_same_path_is_refused(tmp_path):
    """A run holds each planned path's lock until it ends: a second run aimed there fails at once."""
    src, _ = _file(str(tmp_path))
    out = tmp_path / "c.safetensors"
    lock = tmp_path / ".c.safetensors.cond-lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a first run holds while it works
    try:
        result = runner.invoke(app, ["compress", src, "--rank", "2", "--min-size", "1", "-o", str(out), "-q"])
        assert_one_line_error(result, ["c.safetensors", "another cond run"])
        assert not out.exists()
    finally:
        os.close(fd)
    ok = runner.invoke(app, ["compress", src, "--rank", "2", "--min-size", "1", "-o", str(out), "-q"])
    assert ok.exit_code == 0, ok.output
    assert out.exists() and not lock.exists()


STDIN_FLAGS = [
    ("inspect", ["--input-format", "csv", "-q"], "--spectra", "s.npz"),
    ("sample", ["--input-format", "csv", "--size", "5"], "-o", "s.tsv"),
    ("sample", ["--input-format", "csv", "--size", "5"], "--scores-out", "s.txt"),
    ("dedup", ["--input-format", "csv", "-q"], "-o", "d.csv"),
]


@pytest.mark.parametrize(
    "command, extra, flag, name", STDIN_FLAGS, ids=[f"{c}-stdin-{f}" for c, _, f, _ in STDIN_FLAGS]
)
def test_standard_input_outputs_follow_the_same_guard(tmp_path, command, extra, flag, name):
    """Standard input has no file to protect, but its outputs keep every other rule: an existing
    file needs --force (and is left as it was without it), and with it the output is written."""
    data = "a,b,c\n" + "".join(f"{i},{(i * i) % 7},{(3 * i) % 5}\n" for i in range(40))
    target = tmp_path / name
    target.write_text("mine")
    refused = runner.invoke(app, [command, "-", *extra, flag, str(target)], input=data)
    assert_one_line_error(refused, [name, "--force"])
    assert target.read_text() == "mine"
    forced = runner.invoke(app, [command, "-", *extra, flag, str(target), "--force"], input=data)
    assert forced.exit_code == 0, forced.output
    assert target.read_bytes() != b"mine" and not [f for f in os.listdir(tmp_path) if f.startswith(".")]
