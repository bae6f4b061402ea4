"""The bad-input corpus: every way an input or an argument can be wrong, for every command.

Each case is a function that writes its broken input into a folder and returns the
command line and the words the one-line error must contain (the file, the tensor,
the problem). ``test_bad_input_corpus.py`` runs them all and checks the contract:
exit 2, one line on stderr, no traceback, nothing written, the input untouched.

Run as a script to write the corpus into a folder for a look by hand:
``python tests/bad_inputs.py /tmp/corpus``.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import sys

import ml_dtypes
import numpy as np
from safetensors.numpy import save_file

CORPUS = {"inspect": {}, "compress": {}, "expand": {}, "sample": {}, "dedup": {}, "calibrate": {}}


def case(command, name):
    def register(make):
        CORPUS[command][name] = make
        return make

    return register


def header_file(path, header, data=b"", raw_len=None):
    """A safetensors file with this header (any JSON value) and data section."""
    blob = header if isinstance(header, bytes) else json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob) if raw_len is None else raw_len))
        f.write(blob)
        f.write(data)
    return str(path)


def good_checkpoint(folder, name="m.safetensors", dtype=np.float32):
    rng = np.random.default_rng(0)
    path = os.path.join(folder, name)
    save_file(
        {
            "w": (rng.standard_normal((48, 8)) @ rng.standard_normal((8, 40))).astype(dtype),
            "b": rng.standard_normal(48).astype(dtype),
        },
        path,
    )
    return path


def compressed(folder):
    """A valid cond-lowrank/1 file, and its header and data section to tamper with."""
    from cond.commands.compress import compress

    src = good_checkpoint(folder, "src.safetensors")
    out = os.path.join(folder, "c.safetensors")
    compress(src, out, rank=4, min_size=1)
    os.unlink(src)
    raw = open(out, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    os.unlink(out)
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def tampered(folder, change, name="t.safetensors"):
    """A cond-lowrank/1 file whose manifest ``change(manifest)`` edited (or replaced: a string)."""
    header, data = compressed(folder)
    manifest = json.loads(header["__metadata__"]["cond.manifest"])
    edited = change(manifest)
    header["__metadata__"]["cond.manifest"] = edited if isinstance(edited, str) else json.dumps(manifest)
    return header_file(os.path.join(folder, name), header, data)


def _w(manifest):
    """The manifest's record of the low-rank matrix 'w' of :func:`compressed`."""
    return next(t for t in manifest["tensors"] if t["name"] == "w")


def design(folder, a, name="x.npy"):
    path = os.path.join(folder, name)
    np.save(path, a)
    return path


def text(folder, name, content):
    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    return path


def pickle_bomb(folder, name):
    """A pickle that would create a file named 'pwned' in ``folder`` if anything loaded it."""

    class Boom:
        def __reduce__(self):
            return (open, (os.path.join(folder, "pwned"), "w"))

    path = os.path.join(folder, name)
    with open(path, "wb") as f:
        f.write(pickle.dumps(Boom()))
    return path


# ------------------------------------------------------------------ every reader, through inspect

READ_CASES = {}


def read_case(name):
    """A broken input every command that reads this kind of file must refuse."""

    def register(make):
        READ_CASES[name] = make
        return make

    return register


@read_case("missing file")
def _(d):
    return os.path.join(d, "nope.safetensors"), ["nope.safetensors", "no such file"]


@read_case("empty safetensors")
def _(d):
    return text(d, "e.safetensors", b""), ["e.safetensors", "empty"]


@read_case("header length beyond the file")
def _(d):
    return header_file(os.path.join(d, "h.safetensors"), {}, raw_len=5000), ["h.safetensors", "exceeds the file"]


@read_case("header length beyond 100 MB")
def _(d):
    return header_file(os.path.join(d, "h.safetensors"), {}, raw_len=200 * 2**20), ["h.safetensors", "100 MB"]


@read_case("header not JSON")
def _(d):
    return header_file(os.path.join(d, "j.safetensors"), b"{not json}"), ["j.safetensors", "not valid JSON"]


@read_case("header JSON nested 100000 deep")
def _(d):
    return header_file(os.path.join(d, "deep.safetensors"), b"[" * 100000 + b"]" * 100000), [
        "deep.safetensors",
        "nested too deeply",
    ]


@read_case("header is a list")
def _(d):
    return header_file(os.path.join(d, "l.safetensors"), [1, 2]), ["l.safetensors", "not an object"]


@read_case("metadata not string to string")
def _(d):
    return header_file(
        os.path.join(d, "meta.safetensors"),
        {"__metadata__": {"epoch": 3}, "w": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}},
        b"\0" * 16,
    ), ["meta.safetensors", "strings to strings", "'epoch'"]


@read_case("shape not a list of integers")
def _(d):
    return header_file(
        os.path.join(d, "s.safetensors"), {"w": {"dtype": "F32", "shape": "2x2", "data_offsets": [0, 16]}}, b"\0" * 16
    ), ["s.safetensors", "tensor 'w'", "shape"]


@read_case("unknown dtype")
def _(d):
    return header_file(
        os.path.join(d, "u.safetensors"), {"w": {"dtype": "Q7", "shape": [2, 2], "data_offsets": [0, 16]}}, b"\0" * 16
    ), ["u.safetensors", "tensor 'w'", "unknown dtype 'Q7'"]


@read_case("offsets outside the data")
def _(d):
    return header_file(
        os.path.join(d, "o.safetensors"),
        {
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [400, 416]},
        },
        b"\0" * 32,
    ), ["o.safetensors", "tensor 'b'", "outside the data section"]


@read_case("overlapping offsets")
def _(d):
    return header_file(
        os.path.join(d, "v.safetensors"),
        {
            "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
            "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]},
        },
        b"\0" * 24,
    ), ["v.safetensors", "overlap"]


@read_case("offsets disagree with dtype and shape")
def _(d):
    return header_file(
        os.path.join(d, "d.safetensors"), {"a": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 48]}}, b"\0" * 48
    ), ["d.safetensors", "tensor 'a'", "needs 24"]


@read_case("huge shape")
def _(d):
    return header_file(
        os.path.join(d, "g.safetensors"),
        {"a": {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 16]}},
        b"\0" * 16,
    ), ["g.safetensors", "tensor 'a'", "needs"]


@read_case("truncated data section")
def _(d):
    path = good_checkpoint(d, "full.safetensors")
    cut = text(d, "cut.safetensors", open(path, "rb").read()[:-100])
    os.unlink(path)
    return cut, ["cut.safetensors", "truncated"]


@read_case("index without weight_map")
def _(d):
    good_checkpoint(d, "a.safetensors")
    return text(d, "model.safetensors.index.json", json.dumps({"metadata": {}})), [
        "model.safetensors.index.json",
        "weight_map",
    ]


@read_case("index naming a shard outside its folder")
def _(d):
    good_checkpoint(d, "a.safetensors")
    return text(d, "model.safetensors.index.json", json.dumps({"weight_map": {"w": "../a.safetensors"}})), [
        "model.safetensors.index.json",
        "not a file name",
    ]


@read_case("index naming a missing shard")
def _(d):
    return text(d, "model.safetensors.index.json", json.dumps({"weight_map": {"w": "m-1.safetensors"}})), [
        "m-1.safetensors",
        "no such file",
    ]


@read_case("index that disagrees with its shard")
def _(d):
    good_checkpoint(d, "a.safetensors")
    return text(
        d, "model.safetensors.index.json", json.dumps({"weight_map": {"w": "a.safetensors", "ghost": "a.safetensors"}})
    ), ["model.safetensors.index.json", "'ghost'", "lacks it"]


@read_case("index JSON nested too deeply")
def _(d):
    return text(d, "model.safetensors.index.json", "[" * 100000 + "]" * 100000), [
        "model.safetensors.index.json",
        "nested too deeply",
    ]


@read_case("one tensor name in two shards")
def _(d):
    folder = os.path.join(d, "ckpt")
    os.mkdir(folder)
    good_checkpoint(folder, "a.safetensors")
    good_checkpoint(folder, "b.safetensors")
    return folder, ["ckpt", "is in both a.safetensors and b.safetensors"]


@read_case("directory with no checkpoint")
def _(d):
    folder = os.path.join(d, "empty")
    os.mkdir(folder)
    return folder, ["empty", "no .safetensors"]


@read_case("a pickle")
def _(d):
    return pickle_bomb(d, "model.pkl"), ["model.pkl", "pickle"]


@read_case("a pickle named .safetensors")
def _(d):
    return pickle_bomb(d, "model.safetensors"), ["model.safetensors"]


def _as(command_args):
    """A read case (path, expect) as the command line of one command."""
    return lambda make: lambda d: (lambda made: (command_args(d, made[0]), made[1]))(make(d))


for _name, _make in READ_CASES.items():
    CORPUS["inspect"][_name] = _as(lambda d, path: [path])(_make)


@case("inspect", "object .npy (a pickle)")
def _(d):
    path = os.path.join(d, "obj.npy")
    np.save(path, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    return [path], ["obj.npy", "pickle"]


@case("inspect", "truncated .npy")
def _(d):
    path = design(d, np.ones((50, 4)), "t.npy")
    data = open(path, "rb").read()
    return [text(d, "t.npy", data[:200])], ["t.npy", "truncated"]


@case("inspect", "corrupt .npy header")
def _(d):
    return [text(d, "h.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': <f8, }\n")], ["h.npy", "not a valid .npy"]


@case("inspect", "corrupt .npz")
def _(d):
    return [text(d, "z.npz", b"PK\x03\x04 not a zip")], ["z.npz", "not a valid"]


@case("inspect", "zero-size matrix")
def _(d):
    return [design(d, np.zeros((0, 3)), "z.npy")], ["z.npy", "zero-size"]


@case("inspect", "ragged CSV")
def _(d):
    return [text(d, "r.csv", "a,b,c\n1,2,3\n4,5\n")], ["r.csv", "ragged", "line 3"]


@case("inspect", "gzip that ends early")
def _(d):
    return [text(d, "g.csv.gz", b"\x1f\x8b\x08\x00garbage")], ["g.csv.gz", "cannot read"]


@case("inspect", "Matrix Market hex value")
def _(d):
    return [text(d, "m.mtx", "%%MatrixMarket matrix array real general\n2 1\n0x10\n1\n")], ["m.mtx", "line 3"]


@case("inspect", "unknown format")
def _(d):
    return [text(d, "blob.xyz", b"hello world, not a matrix")], ["blob.xyz", "--input-format"]


@case("inspect", "--columns that match nothing")
def _(d):
    return [text(d, "c.csv", "a,b\n1,2\n3,4\n"), "--columns", "zz*"], ["c.csv", "matches no column"]


@case("inspect", "--include (or --filter) not a regular expression")
def _(d):
    return [good_checkpoint(d), "--filter", "(["], ["--include", "regular expression"]


@case("inspect", "--fail-above over no matrix")
def _(d):
    return [good_checkpoint(d), "--filter", "zzz", "--fail-above", "10"], ["m.safetensors", "nothing to check"]


@case("inspect", "--sort alpha without --alpha")
def _(d):
    return [good_checkpoint(d), "--sort", "alpha"], ["--sort alpha", "--alpha"]


@case("inspect", "--spectra into a folder that does not exist")
def _(d):
    return [good_checkpoint(d), "--spectra", os.path.join(d, "no", "s.npz")], ["s.npz", "folder does not exist"]


@case("inspect", "--spectra over the input")
def _(d):
    path = good_checkpoint(d)
    return [path, "--spectra", path], ["m.safetensors", "overwrite the input"]


@case("inspect", "--plot-format that is not one")
def _(d):
    return [good_checkpoint(d), "--plot", os.path.join(d, "p"), "--plot-format", "gif"], ["--plot-format", "gif"]


@case("inspect", "--plot into a folder whose parent is missing")
def _(d):
    return [good_checkpoint(d), "--plot", os.path.join(d, "no", "p")], ["p", "folder does not exist"]


@case("inspect", "--plot onto a file")
def _(d):
    return [good_checkpoint(d), "--plot", text(d, "p.png", b"x")], ["p.png", "not a directory"]


@case("inspect", "unknown option")
def _(d):
    return [good_checkpoint(d), "--nope"], ["--nope"]


@case("inspect", "--collinearity: fewer rows than columns")
def _(d):
    return [design(d, np.ones((3, 5))), "--collinearity"], ["x.npy", "fewer rows (3) than columns (5)"]


@case("inspect", "--collinearity: a zero column")
def _(d):
    return [design(d, np.column_stack([np.arange(6.0), np.zeros(6)])), "--collinearity"], ["x.npy", "column 1 is zero"]


@case("inspect", "--collinearity --add-intercept with a constant column")
def _(d):
    return [text(d, "c.csv", "k,x\n1,1\n1,2\n1,4\n"), "--collinearity", "--add-intercept", "-q"], [
        "c.csv",
        "column 'k' is already constant",
    ]


@case("inspect", "--collinearity of a checkpoint")
def _(d):
    return [good_checkpoint(d), "--collinearity"], ["m.safetensors", "weights, not a design"]


@case("inspect", "--collinearity with NaN")
def _(d):
    return [design(d, np.array([[1.0, np.nan], [2, 3], [4, 5]])), "--collinearity"], ["x.npy", "NaN"]


@case("inspect", "--collinearity of an archive with two arrays")
def _(d):
    path = os.path.join(d, "two.npz")
    np.savez(path, a=np.ones((5, 2)), b=np.ones((5, 2)))
    return [path, "--collinearity"], ["two.npz", "holds 2 matrices"]


@case("inspect", "--ci-threshold without --collinearity")
def _(d):
    return [design(d, np.ones((6, 2))), "--ci-threshold", "10"], ["--collinearity"]


# ------------------------------------------------------------------ compress

for _name, _make in READ_CASES.items():
    CORPUS["compress"][_name] = _as(lambda d, path: _compress(d, source=path))(_make)


def _compress(d, *extra, source=None):
    source = source or good_checkpoint(d)
    return [source, "--rank", "4", "-o", os.path.join(d, "out.safetensors"), *extra]


@case("compress", "NaN in a matrix")
def _(d):
    w = np.ones((64, 64), np.float32)  # at least --min-size entries: a matrix compress works on
    w[3, 4] = np.nan
    path = os.path.join(d, "nan.safetensors")
    save_file({"layer.weight": w}, path)
    return _compress(d, source=path), ["nan.safetensors", "tensor 'layer.weight'", "NaN"]


@case("compress", "f16 factors that overflow")
def _(d):
    rng = np.random.default_rng(1)
    w = (rng.standard_normal((64, 8)) @ rng.standard_normal((8, 64)) * 1e9).astype(np.float32)
    path = os.path.join(d, "big.safetensors")
    save_file({"w": w}, path)
    return _compress(d, "--dtype", "f16", source=path), ["big.safetensors", "tensor 'w'", "overflow F16"]


@case("compress", "a factor name that collides")
def _(d):
    rng = np.random.default_rng(2)
    path = os.path.join(d, "c.safetensors")
    save_file(
        {"w": rng.standard_normal((64, 64)).astype(np.float32), "w.U": rng.standard_normal((4, 4)).astype(np.float32)},
        path,
    )
    return _compress(d, source=path), ["c.safetensors", "'w.U'", "collide"]


@case("compress", "already compressed")
def _(d):
    header, data = compressed(d)
    return _compress(d, source=header_file(os.path.join(d, "c.safetensors"), header, data)), [
        "c.safetensors",
        "already a cond-lowrank",
    ]


@case("compress", "not a checkpoint")
def _(d):
    return _compress(d, source=design(d, np.ones((64, 64)))), ["x.npy", "safetensors checkpoints"]


@case("compress", "--max-error out of range")
def _(d):
    return [good_checkpoint(d), "--max-error", "1.5", "-o", os.path.join(d, "o.safetensors")], [
        "--max-error",
        "(0, 1)",
        "1.5",
    ]


@case("compress", "two targets")
def _(d):
    return [good_checkpoint(d), "--max-error", "0.1", "--rank", "3", "-o", os.path.join(d, "o.safetensors")], [
        "exactly one"
    ]


@case("compress", "--dtype int4")
def _(d):
    return _compress(d, "--dtype", "int4"), ["--dtype", "int4"]


@case("compress", "output is a folder")
def _(d):
    os.mkdir(os.path.join(d, "out"))
    return [good_checkpoint(d), "--rank", "4", "-o", os.path.join(d, "out")], ["out", "is a directory"]


@case("compress", "output folder missing")
def _(d):
    return [good_checkpoint(d), "--rank", "4", "-o", os.path.join(d, "no", "o.safetensors")], [
        "o.safetensors",
        "folder does not exist",
    ]


@case("compress", "output is the input")
def _(d):
    path = good_checkpoint(d)
    return [path, "--rank", "4", "-o", path], ["m.safetensors", "overwrite the input"]


@case("compress", "output exists without --force")
def _(d):
    out = text(d, "old.safetensors", b"earlier")
    return [good_checkpoint(d), "--rank", "4", "-o", out], ["old.safetensors", "--force"]


@case("compress", "output to stdout")
def _(d):
    return [good_checkpoint(d), "--rank", "4", "-o", "-"], ["give a path"]


@case("compress", "Fisher file that is not safetensors")
def _(d):
    return _compress(d, "--method", "fisher", "--fisher", text(d, "f.txt", "1 2 3\n")), ["f.txt"]


@case("compress", "--group not a regular expression")
def _(d):
    return [good_checkpoint(d), "--max-error", "0.1", "--group", "(", "-o", os.path.join(d, "o.safetensors")], [
        "--group",
        "regular expression",
    ]


@case("compress", "missing -o")
def _(d):
    return [good_checkpoint(d), "--rank", "4"], ["--output"]


# ------------------------------------------------------------------ expand


def _expand(d, source):
    return [source, "-o", os.path.join(d, "dense")]


for _name in (
    "missing file",
    "empty safetensors",
    "header not JSON",
    "header JSON nested 100000 deep",
    "metadata not string to string",
    "truncated data section",
    "a pickle named .safetensors",
):
    CORPUS["expand"][_name] = _as(_expand)(READ_CASES[_name])


@case("expand", "an ordinary checkpoint")
def _(d):
    return _expand(d, good_checkpoint(d)), ["m.safetensors", "not a cond-lowrank/1, /2 or /3 file"]


@case("expand", "manifest not JSON")
def _(d):
    return _expand(d, tampered(d, lambda m: "not json")), ["t.safetensors", "not valid JSON"]


@case("expand", "manifest nested too deeply")
def _(d):
    return _expand(d, tampered(d, lambda m: "[" * 100000 + "]" * 100000)), ["t.safetensors", "nested too deeply"]


@case("expand", "manifest is a list")
def _(d):
    return _expand(d, tampered(d, lambda m: "[1]")), ["t.safetensors", "JSON object"]


@case("expand", "manifest tensors not a list")
def _(d):
    return _expand(d, tampered(d, lambda m: m.__setitem__("tensors", {"a": 1}))), ["t.safetensors", "`tensors`"]


@case("expand", "manifest record not an object")
def _(d):
    return _expand(d, tampered(d, lambda m: m["tensors"].__setitem__(0, [1, 2]))), ["t.safetensors", "record 0"]


@case("expand", "manifest dtype unknown")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).__setitem__("dtype", "Q9"))), ["t.safetensors", "tensor 'w'", "'Q9'"]


@case("expand", "manifest without keys")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).pop("keys"))), ["t.safetensors", "tensor 'w'", "`keys`"]


@case("expand", "manifest names a missing factor")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).__setitem__("keys", ["w.U", "nope"]))), [
        "t.safetensors",
        "tensor 'w'",
        "'nope'",
    ]


@case("expand", "manifest shape that the factors do not make")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).__setitem__("shape", [3, 3]))), [
        "t.safetensors",
        "tensor 'w'",
        "do not make",
    ]


@case("expand", "manifest names a tensor twice")
def _(d):
    return _expand(d, tampered(d, lambda m: m["tensors"].append(dict(_w(m))))), ["t.safetensors", "tensor 'w'", "twice"]


@case("expand", "manifest storage unknown")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).__setitem__("storage", "magic"))), [
        "t.safetensors",
        "tensor 'w'",
        "'magic'",
    ]


@case("expand", "manifest name not a string")
def _(d):
    return _expand(d, tampered(d, lambda m: _w(m).__setitem__("name", 5))), ["t.safetensors", "`name`"]


@case("expand", "output is the input")
def _(d):
    path = tampered(d, lambda m: None, name="c.safetensors")
    return [path, "-o", path], ["c.safetensors", "overwrite the input"]


@case("expand", "output folder's parent missing")
def _(d):
    return [tampered(d, lambda m: None), "-o", os.path.join(d, "no", "dense")], ["dense", "folder does not exist"]


@case("expand", "output is a file where a folder is meant")
def _(d):
    return [tampered(d, lambda m: None), "-o", text(d, "dense", b"x")], ["dense", "not a directory"]


@case("expand", "earlier expansion without --force")
def _(d):
    os.mkdir(os.path.join(d, "dense"))
    text(d, os.path.join("dense", "model.safetensors"), b"earlier")
    text(d, os.path.join("dense", ".cond-expand.json"), json.dumps({"files": ["model.safetensors"]}))
    return [tampered(d, lambda m: None), "-o", os.path.join(d, "dense")], ["dense", "earlier expansion", "--force"]


@case("expand", "--force into a folder holding a checkpoint cond did not write")
def _(d):
    os.mkdir(os.path.join(d, "dense"))
    for name in ("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"):
        good_checkpoint(os.path.join(d, "dense"), name)
    text(d, os.path.join("dense", "model.safetensors.index.json"), json.dumps({"weight_map": {}}))
    return [tampered(d, lambda m: None), "-o", os.path.join(d, "dense"), "--force"], [
        "dense",
        "did not write",
        "model-00001-of-00002.safetensors",
    ]


@case("expand", "output to stdout")
def _(d):
    return [tampered(d, lambda m: None), "-o", "-"], ["give a path"]


@case("expand", "--max-shard-size not a size")
def _(d):
    return [tampered(d, lambda m: None), "-o", os.path.join(d, "dense"), "--max-shard-size", "10zb"], [
        "--max-shard-size",
        "10zb",
    ]


# ------------------------------------------------------------------ sample


def _sample(path, *extra):
    return [path, "--size", "10", *extra]


@case("sample", "all-zero design")
def _(d):
    return _sample(design(d, np.zeros((100, 3)))), ["x.npy", "numerically zero"]


@case("sample", "NaN in the design")
def _(d):
    a = np.ones((20, 2))
    a[7, 1] = np.nan
    return _sample(design(d, a)), ["x.npy", "row 7", "column '1'", "nan"]


@case("sample", "Inf in the target")
def _(d):
    a = np.random.default_rng(0).standard_normal((20, 3))
    a[4, 2] = np.inf
    return _sample(design(d, a), "--target", "2"), ["x.npy", "row 4", "target", "inf"]


@case("sample", "empty design")
def _(d):
    return _sample(design(d, np.zeros((0, 3)))), ["x.npy", "no rows"]


@case("sample", "a vector")
def _(d):
    return _sample(design(d, np.arange(5.0))), ["x.npy", "2-D"]


@case("sample", "complex dtype")
def _(d):
    return _sample(design(d, np.ones((5, 2), complex))), ["x.npy", "complex"]


@case("sample", "strings in a .npy")
def _(d):
    return _sample(design(d, np.array([["a", "b"]]))), ["x.npy", "not numeric"]


@case("sample", "object .npy (a pickle)")
def _(d):
    path = os.path.join(d, "obj.npy")
    np.save(path, np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    return _sample(path), ["obj.npy", "pickle"]


@case("sample", "truncated .npy")
def _(d):
    path = design(d, np.ones((50, 4)))
    data = open(path, "rb").read()
    return _sample(text(d, "x.npy", data[:200])), ["x.npy", "truncated"]


@case("sample", "a pickle")
def _(d):
    return _sample(pickle_bomb(d, "x.pkl")), ["x.pkl", "pickle"]


@case("sample", "a checkpoint")
def _(d):
    return _sample(good_checkpoint(d)), ["m.safetensors", "cond sample reads"]


@case("sample", "a missing value in the first row")
def _(d):
    return _sample(text(d, "na.csv", "1,NA\n2,3\n4,5\n")), ["na.csv", "missing value 'NA'", "line 1"]


@case("sample", "a quoted delimiter")
def _(d):
    return _sample(text(d, "q.csv", 'a,b\n"1,000",2\n3,4\n')), ["q.csv", "'1,000'", "line 2"]


@case("sample", "a Parquet string column")
def _(d):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(d, "s.parquet")
    pq.write_table(pa.table({"id": ["a", "b", "c"], "x": [1.0, 2.0, 3.0]}), path)
    return _sample(path), ["s.parquet", "column 'id'", "not numeric"]


@case("sample", "--size beyond the rows")
def _(d):
    return [design(d, np.random.default_rng(0).standard_normal((50, 2))), "--size", "200%"], [
        "--size",
        "at most the 50 rows",
    ]


@case("sample", "--size not a size")
def _(d):
    return [design(d, np.ones((5, 2))), "--size", "lots"], ["--size", "'lots'"]


@case("sample", "--rcond out of range")
def _(d):
    return _sample(design(d, np.random.default_rng(0).standard_normal((50, 2))), "--rcond", "2"), ["--rcond", "[0, 1)"]


@case("sample", "--rcond negative")
def _(d):
    return _sample(design(d, np.random.default_rng(0).standard_normal((50, 2))), "--rcond", "-1"), ["--rcond", "[0, 1)"]


@case("sample", "-p for Lewis weights at 4")
def _(d):
    return _sample(design(d, np.ones((5, 2))), "--method", "lewis", "-p", "4"), ["-p", "below 4"]


@case("sample", "--target naming two columns")
def _(d):
    return _sample(design(d, np.ones((5, 3))), "--target", "0,1"), ["x.npy", "--target", "one column"]


@case("sample", "output is a folder")
def _(d):
    os.mkdir(os.path.join(d, "out"))
    return _sample(design(d, np.ones((5, 2))), "-o", os.path.join(d, "out")), ["out", "is a directory"]


@case("sample", "output exists without --force")
def _(d):
    return _sample(design(d, np.ones((5, 2))), "-o", text(d, "old.tsv", "earlier")), ["old.tsv", "--force"]


@case("sample", "--scores-out into a missing folder")
def _(d):
    return _sample(design(d, np.ones((5, 2))), "--scores-out", os.path.join(d, "no", "s.npy")), [
        "s.npy",
        "folder does not exist",
    ]


@case("sample", "output is the input")
def _(d):
    path = design(d, np.ones((5, 2)))
    return _sample(path, "-o", path, "--force"), ["x.npy", "overwrite the input"]


@case("sample", "bf16 .npy")
def _(d):
    return _sample(design(d, np.ones((5, 2), dtype=ml_dtypes.bfloat16))), ["x.npy", "not numeric"]


# ------------------------------------------------------------------ dedup

for _name in (
    "empty design",
    "NaN in the design",
    "a checkpoint",
    "a missing value in the first row",
    "a Parquet string column",
    "object .npy (a pickle)",
    "a pickle",
):
    CORPUS.setdefault("dedup", {})[_name] = (
        lambda make: lambda d: (lambda r: ([a for a in r[0] if a not in ("--size", "10")], r[1]))(make(d))
    )(CORPUS["sample"][_name])


@case("dedup", "--max-corr out of range")
def _(d):
    return [design(d, np.ones((5, 2))), "--max-corr", "1.5"], ["--max-corr", "(0, 1]"]


@case("dedup", "--max-rel-mse negative")
def _(d):
    return [design(d, np.ones((5, 2))), "--max-rel-mse", "-1"], ["--max-rel-mse", ">= 0"]


@case("dedup", "--prefer not a regular expression")
def _(d):
    return [design(d, np.ones((5, 2))), "--prefer", "(["], ["--prefer", "regular expression"]


@case("dedup", "an output it cannot write")
def _(d):
    return [design(d, np.ones((5, 2))), "-o", os.path.join(d, "kept.xlsx")], ["kept.xlsx", "--output"]


@case("dedup", "output exists without --force")
def _(d):
    return [design(d, np.random.default_rng(0).standard_normal((9, 2))), "-o", text(d, "k.csv", "old")], [
        "k.csv",
        "--force",
    ]


@case("dedup", "a missing file")
def _(d):
    return [os.path.join(d, "nope.csv")], ["nope.csv", "no such file"]


@case("dedup", "ragged CSV")
def _(d):
    return [text(d, "r.csv", "a,b,c\n1,2,3\n4,5\n")], ["r.csv", "ragged", "line 3"]


@case("dedup", "--header on a .npy")
def _(d):
    return [design(d, np.ones((5, 2))), "--header"], ["--header", "csv and tsv"]


@case("dedup", "output is the input")
def _(d):
    path = text(d, "x.csv", "a,b\n1,2\n3,5\n")
    return [path, "-o", path, "--force"], ["x.csv", "overwrite the input"]


@case("compress", "--budget 0")
def _(d):
    return [good_checkpoint(d), "--budget", "0", "-o", os.path.join(d, "o.safetensors")], ["--budget", "(0, 1]"]


@case("compress", "--budget-bytes 1.5")
def _(d):
    return [good_checkpoint(d), "--budget-bytes", "1.5", "-o", os.path.join(d, "o.safetensors")], [
        "--budget-bytes",
        "bytes",
        "1.5",
    ]


@case("compress", "--budget with --ratio")
def _(d):
    return [good_checkpoint(d), "--budget", "0.5", "--ratio", "0.5", "-o", os.path.join(d, "o.safetensors")], [
        "--ratio",
        "--budget",
    ]


@case("compress", "--min-saving 1")
def _(d):
    return _compress(d, "--min-saving", "1"), ["--min-saving", "[0, 1)"]


@case("compress", "a budget below what --max-error allows")
def _(d):
    return [
        good_checkpoint(d),
        "--budget",
        "0.01",
        "--max-error",
        "0.001",
        "--min-size",
        "0",
        "-o",
        os.path.join(d, "o.safetensors"),
    ], ["--budget", "below the least share"]


@case("compress", "a Gram from fewer rows than inputs")
def _(d):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 40))  # 12 rows for 40 inputs: singular
    grams = os.path.join(d, "g.safetensors")
    save_file({"w": (x.T @ x).astype(np.float32)}, grams, metadata={"cond.rows": json.dumps({"w": 12})})
    return [
        good_checkpoint(d),
        "--method",
        "whiten",
        "--activations",
        grams,
        "--ratio",
        "0.5",
        "--min-size",
        "0",
        "-o",
        os.path.join(d, "o.safetensors"),
    ], ["g.safetensors", "tensor 'w'", "12 input rows for 40", "28 more"]


@case("compress", "--fisher with whiten and no budget")
def _(d):
    grams = os.path.join(d, "g.safetensors")
    save_file({"w": np.eye(40, dtype=np.float32)}, grams)
    return [
        good_checkpoint(d),
        "--method",
        "whiten",
        "--activations",
        grams,
        "--fisher",
        grams,
        "--ratio",
        "0.5",
        "-o",
        os.path.join(d, "o.safetensors"),
    ], ["--fisher", "--budget"]


def _model_folder(d):
    folder = os.path.join(d, "model")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        f.write('{"model_type": "bert"}')
    save_file({"w": np.ones((4, 4), np.float32)}, os.path.join(folder, "model.safetensors"))
    return folder


@case("calibrate", "not a model folder")
def _(d):
    return [d, "--text", text(d, "t.txt", "a b c\n"), "-o", os.path.join(d, "g.safetensors")], [
        "not a Hugging Face model folder"
    ]


@case("calibrate", "text missing")
def _(d):
    return [_model_folder(d), "--text", os.path.join(d, "none.txt"), "-o", os.path.join(d, "g.safetensors")], [
        "none.txt",
        "cannot be read",
    ]


@case("calibrate", "text empty")
def _(d):
    return [_model_folder(d), "--text", text(d, "t.txt", "\n   \n"), "-o", os.path.join(d, "g.safetensors")], [
        "t.txt",
        "holds no text",
    ]


@case("calibrate", "text not UTF-8")
def _(d):
    path = os.path.join(d, "t.txt")
    with open(path, "wb") as f:
        f.write("caf\xe9 au lait\n".encode("latin-1"))
    return [_model_folder(d), "--text", path, "-o", os.path.join(d, "g.safetensors")], ["t.txt", "not UTF-8"]


@case("calibrate", "--include not a regex")
def _(d):
    return [
        _model_folder(d),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--include",
        "(",
    ], ["--include", "regular expression"]


@case("calibrate", "--fisher is the output")
def _(d):
    out = os.path.join(d, "g.safetensors")
    return [_model_folder(d), "--text", text(d, "t.txt", "a b\n"), "-o", out, "--fisher", out], [
        "g.safetensors",
        "also the `--output`",
    ]


@case("calibrate", "output is the text")
def _(d):
    path = text(d, "t.txt", "a b\n")
    return [_model_folder(d), "--text", path, "-o", path, "--force"], ["t.txt", "overwrite the input"]


@case("calibrate", "weights corrupt")
def _(d):
    folder = _model_folder(d)
    with open(os.path.join(folder, "model.safetensors"), "wb") as f:
        f.write(os.urandom(100))
    return [folder, "--text", text(d, "t.txt", "a b\n"), "-o", os.path.join(d, "g.safetensors")], ["model.safetensors"]


@case("calibrate", "pickled weights only")
def _(d):
    folder = _model_folder(d)
    os.unlink(os.path.join(folder, "model.safetensors"))
    with open(os.path.join(folder, "pytorch_model.bin"), "wb") as f:
        pickle.dump({"w": [1.0]}, f)
    return [folder, "--text", text(d, "t.txt", "a b\n"), "-o", os.path.join(d, "g.safetensors")], [
        "model",
        "no .safetensors weights",
        "pickled",
    ]


@case("calibrate", "text is a folder")
def _(d):
    return [_model_folder(d), "--text", d, "-o", os.path.join(d, "g.safetensors")], ["cannot be read"]


@case("calibrate", "output folder missing")
def _(d):
    return [_model_folder(d), "--text", text(d, "t.txt", "a b\n"), "-o", os.path.join(d, "no", "g.safetensors")], [
        "g.safetensors",
        "folder",
    ]


@case("calibrate", "output exists")
def _(d):
    out = text(d, "g.safetensors", "x")
    return [_model_folder(d), "--text", text(d, "t.txt", "a b\n"), "-o", out], ["g.safetensors", "--force"]


@case("calibrate", "--fisher exists")
def _(d):
    fisher = text(d, "f.safetensors", "x")
    return [
        _model_folder(d),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--fisher",
        fisher,
    ], ["f.safetensors", "--force"]


@case("calibrate", "model is a file")
def _(d):
    return [
        text(d, "config.json", "{}"),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
    ], ["config.json", "not a Hugging Face model folder"]


@case("calibrate", "--batch-size 0")
def _(d):
    return [
        _model_folder(d),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--batch-size",
        "0",
    ], ["--batch-size"]


@case("calibrate", "--max-length 1")
def _(d):
    return [
        _model_folder(d),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--max-length",
        "1",
    ], ["--max-length"]


@case("calibrate", "empty stdin")
def _(d):
    return [_model_folder(d), "--text", "-", "-o", os.path.join(d, "g.safetensors")], ["holds no text"]


# ------------------------------------------------------------------ the edges (issue "safe at the edges")


def sharded(folder):
    """A checkpoint of two shards and its index in ``folder/sh``; returns (index, shard paths)."""
    sh = os.path.join(folder, "sh")
    os.makedirs(sh, exist_ok=True)
    names = ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
    rng = np.random.default_rng(3)
    for i, name in enumerate(names):
        save_file(
            {f"w{i}": (rng.standard_normal((48, 6)) @ rng.standard_normal((6, 40))).astype(np.float32)},
            os.path.join(sh, name),
        )
    index = os.path.join(sh, "model.safetensors.index.json")
    with open(index, "w") as f:
        json.dump({"metadata": {}, "weight_map": {"w0": names[0], "w1": names[1]}}, f)
    return index, [os.path.join(sh, n) for n in names]


def wide_design(folder, name="wide.npy"):
    """A 2 x 400000 design (bool: 800 KB): its d x d working state would need terabytes."""
    return design(folder, np.zeros((2, 400_000), dtype=bool), name)


@case("inspect", "--spectra onto a shard of the index")
def _(d):
    index, shards = sharded(d)
    return [index, "--spectra", shards[1]], ["model-00002-of-00002", "a shard of the input", "refusing"]


@case("inspect", "--spectra onto the index of a folder input")
def _(d):
    index, _ = sharded(d)
    return [os.path.dirname(index), "--spectra", index, "--force"], ["index.json", "input folder", "refusing"]


@case("inspect", "--spectra onto an existing file without --force")
def _(d):
    return [good_checkpoint(d), "--spectra", text(d, "notes.txt", "mine")], ["notes.txt", "--force"]


@case("inspect", "--plot over an existing picture without --force")
def _(d):
    os.mkdir(os.path.join(d, "plots"))
    text(d, os.path.join("plots", "overview.png"), b"mine")
    return [good_checkpoint(d), "--plot", os.path.join(d, "plots")], ["overview.png", "--force"]


@case("inspect", "--collinearity with --spectra")
def _(d):
    return [
        design(d, np.random.default_rng(0).standard_normal((30, 3))),
        "--collinearity",
        "--spectra",
        os.path.join(d, "s.npz"),
    ], ["--spectra", "--collinearity"]


@case("inspect", "--collinearity with --alpha")
def _(d):
    return [design(d, np.random.default_rng(0).standard_normal((30, 3))), "--collinearity", "--alpha"], [
        "--alpha",
        "--collinearity",
    ]


@case("inspect", "a .npy read as CSV")
def _(d):
    return [design(d, np.eye(3)), "--input-format", "csv"], ["x.npy", "is not text"]


@case("inspect", "a .csv holding binary bytes")
def _(d):
    return [text(d, "b.csv", b"\x00\x01\x02\xff\xfe binary\n" * 4)], ["b.csv", "is not text"]


@case("inspect", "--input-format zarr on a CSV")
def _(d):
    return [text(d, "a.csv", "1,2\n3,4\n"), "--input-format", "zarr"], ["a.csv", "not a Zarr store"]


@case("inspect", "duplicate column names")
def _(d):
    return [text(d, "dup.csv", "a,a,b\n1,2,3\n4,5,7\n")], ["dup.csv", "'a' appears more than once"]


@case("inspect", "a Parquet null")
def _(d):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(d, "n.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0], "b": [1.0, None, 3.0]}), path)
    return [path], ["n.parquet", "row 1 column 'b'", "missing value"]


@case("inspect", "--fail-above 0")
def _(d):
    return [good_checkpoint(d), "--fail-above", "0"], ["--fail-above", "positive"]


@case("compress", "-o onto the index of a folder input, with --force")
def _(d):
    index, _ = sharded(d)
    return [os.path.dirname(index), "--rank", "2", "-o", index, "--force"], ["index.json", "refusing"]


@case("compress", "-o onto a shard of an index input, with --force")
def _(d):
    index, shards = sharded(d)
    return [index, "--rank", "2", "-o", shards[0], "--force"], ["model-00001", "a shard of the input"]


@case("compress", "--rank with --cluster")
def _(d):
    return [good_checkpoint(d), "--rank", "2", "--cluster", "-o", os.path.join(d, "c.safetensors")], [
        "--cluster",
        "--max-error",
    ]


@case("compress", "a clustering option without clustering")
def _(d):
    return [good_checkpoint(d), "--rank", "2", "--estimator", "exact", "-o", os.path.join(d, "c.safetensors")], [
        "--estimator",
        "clustering",
    ]


@case("compress", "--seed -5")
def _(d):
    return [good_checkpoint(d), "--rank", "2", "--seed", "-5", "-o", os.path.join(d, "c.safetensors")], ["--seed", "-5"]


@case("compress", "-o onto the input through a symbolic link")
def _(d):
    path = good_checkpoint(d)
    os.symlink(path, os.path.join(d, "link.safetensors"))
    return [path, "--rank", "2", "-o", os.path.join(d, "link.safetensors"), "--force"], ["link.safetensors", "refusing"]


@case("expand", "a folder named .safetensors")
def _(d):
    os.mkdir(os.path.join(d, "x.safetensors"))
    return [os.path.join(d, "x.safetensors"), "-o", os.path.join(d, "dense")], ["x.safetensors", "is a directory"]


@case("expand", "--force onto the input through ..")
def _(d):
    path = tampered(d, lambda m: None)
    return [path, "-o", os.path.join(d, "..", os.path.basename(d), "t.safetensors"), "--force"], ["refusing"]


@case("sample", "-o and --scores-out on one path")
def _(d):
    out = os.path.join(d, "same.tsv")
    return _sample(design(d, np.random.default_rng(0).standard_normal((40, 3))), "-o", out, "--scores-out", out), [
        "same.tsv",
        "of this run",
    ]


@case("sample", "-o and --scores-out on one existing path, with --force")
def _(d):
    out = text(d, "same.tsv", "mine")
    return _sample(
        design(d, np.random.default_rng(0).standard_normal((40, 3))), "-o", out, "--scores-out", out, "--force"
    ), ["same.tsv", "of this run"]


@case("sample", "a .npy read as TSV")
def _(d):
    return _sample(design(d, np.eye(3)), "--input-format", "tsv"), ["x.npy", "is not text"]


@case("sample", "--seed -5")
def _(d):
    return _sample(design(d, np.eye(12)), "--seed", "-5"), ["--seed", "-5"]


@case("sample", "a design too wide for memory")
def _(d):
    return _sample(wide_design(d)), ["wide.npy", "400000 columns", "--columns"]


@case("sample", "duplicate column names")
def _(d):
    return _sample(text(d, "dup.csv", "a,a,b\n" + "1,2,3\n4,5,7\n" * 8), "--columns", "a"), [
        "dup.csv",
        "more than once",
    ]


@case("sample", "a Parquet null")
def _(d):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = os.path.join(d, "n.parquet")
    pq.write_table(pa.table({"a": [1.0, 2.0, 3.0] * 5, "b": [1.0, None, 3.0] * 5}), path)
    return _sample(path), ["n.parquet", "column 'b'", "missing value"]


@case("dedup", "a .npy read as CSV")
def _(d):
    return [design(d, np.eye(3)), "--input-format", "csv"], ["x.npy", "is not text"]


@case("dedup", "a design too wide for memory")
def _(d):
    return [wide_design(d)], ["wide.npy", "400000 columns", "--columns"]


@case("dedup", "output onto the input through a hard link, with --force")
def _(d):
    path = design(d, np.random.default_rng(0).standard_normal((40, 3)))
    os.link(path, os.path.join(d, "hard.npy"))
    return [path, "-o", os.path.join(d, "hard.npy"), "--force"], ["hard.npy", "refusing"]


@case("dedup", "duplicate column names")
def _(d):
    return [text(d, "dup.csv", "a,a,b\n" + "1,2,3\n4,5,7\n" * 8)], ["dup.csv", "more than once"]


@case("calibrate", "-o onto the model's weights, with --force")
def _(d):
    folder = _model_folder(d)
    return [folder, "--text", text(d, "t.txt", "a b\n"), "-o", os.path.join(folder, "model.safetensors"), "--force"], [
        "model.safetensors",
        "input folder",
        "refusing",
    ]


@case("calibrate", "--fisher onto the model's weights, with --force")
def _(d):
    folder = _model_folder(d)
    return [
        folder,
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--fisher",
        os.path.join(folder, "model.safetensors"),
        "--force",
    ], ["model.safetensors", "refusing"]


@case("calibrate", "--seed -1")
def _(d):
    return [
        _model_folder(d),
        "--text",
        text(d, "t.txt", "a b\n"),
        "-o",
        os.path.join(d, "g.safetensors"),
        "--seed",
        "-1",
    ], ["--seed", "-1"]


# ------------------------------------------------------------------ LoRA adapters (through inspect)


def peft_folder(folder, config=None, tensors=None, name="adapter"):
    """A PEFT adapter folder: ``config`` (a dict, or raw bytes) and ``tensors`` (None: no weights file)."""
    path = os.path.join(folder, name)
    os.makedirs(path, exist_ok=True)
    config = {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q"]} if config is None else config
    with open(os.path.join(path, "adapter_config.json"), "wb") as f:
        f.write(config if isinstance(config, bytes) else json.dumps(config).encode())
    if tensors is not None:
        save_file(tensors, os.path.join(path, "adapter_model.safetensors"))
    return path


def lora_pair(r=4, out=6, inp=5):
    rng = np.random.default_rng(2)
    return {
        "base_model.model.q.lora_A.weight": rng.standard_normal((r, inp)).astype(np.float32),
        "base_model.model.q.lora_B.weight": rng.standard_normal((out, r)).astype(np.float32),
    }


@case("inspect", "an adapter config without weights")
def _(d):
    return [peft_folder(d)], ["adapter", "no adapter_model.safetensors"]


@case("inspect", "a pickled adapter_model.bin")
def _(d):
    folder = peft_folder(d)
    pickle_bomb(folder, "adapter_model.bin")
    return [folder], ["adapter", "pickled adapter_model.bin"]


@case("inspect", "an adapter whose r disagrees with its tensors")
def _(d):
    return [peft_folder(d, {"peft_type": "LORA", "r": 8, "lora_alpha": 8}, lora_pair(r=4))], [
        "adapter_model.safetensors",
        "rank 8",
        "rank 4",
    ]


@case("inspect", "an adapter config without lora_alpha")
def _(d):
    return [peft_folder(d, {"peft_type": "LORA", "r": 4}, lora_pair())], ["adapter_config.json", "lora_alpha"]


@case("inspect", "an adapter with lora_A but no lora_B")
def _(d):
    pair = lora_pair()
    del pair["base_model.model.q.lora_B.weight"]
    return [peft_folder(d, None, pair)], ["adapter_model.safetensors", "'q'", "no lora_B"]


@case("inspect", "an adapter whose factors do not multiply")
def _(d):
    pair = lora_pair()
    pair["base_model.model.q.lora_B.weight"] = np.ones((6, 3), np.float32)
    return [peft_folder(d, None, pair)], ["adapter_model.safetensors", "must agree"]


@case("inspect", "a kohya file with a NaN alpha")
def _(d):
    path = os.path.join(d, "k.safetensors")
    rng = np.random.default_rng(0)
    save_file(
        {
            "m.lora_down.weight": rng.standard_normal((2, 5)),
            "m.lora_up.weight": rng.standard_normal((6, 2)),
            "m.alpha": np.array(np.nan),
        },
        path,
    )
    return [path], ["k.safetensors", "alpha", "nan"]


@case("inspect", "an adapter with NaN in a factor")
def _(d):
    pair = lora_pair()
    pair["base_model.model.q.lora_A.weight"][0, 0] = np.nan
    return [peft_folder(d, None, pair)], ["lora_A", "NaN"]


@case("inspect", "an adapter with a base of another architecture")
def _(d):
    folder = peft_folder(d, None, lora_pair())
    base = os.path.join(d, "base.safetensors")
    save_file({"q.weight": np.zeros((7, 7), np.float32)}, base)
    return [folder, "--base", base], ["base.safetensors", "another architecture"]


@case("inspect", "an adapter with a base that lacks its modules")
def _(d):
    folder = peft_folder(d, None, lora_pair())
    base = os.path.join(d, "base.safetensors")
    save_file({"other.weight": np.zeros((6, 5), np.float32)}, base)
    return [folder, "--base", base], ["base.safetensors", "no weight for the adapter's module 'q'"]


@case("inspect", "a fine-tune with a base of another architecture")
def _(d):
    base = os.path.join(d, "b.safetensors")
    save_file({"other.weight": np.zeros((3, 3), np.float32)}, base)
    return [good_checkpoint(d), "--base", base], ["m.safetensors", "another architecture"]


@case("inspect", "a DoRA adapter")
def _(d):
    return [peft_folder(d, {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "use_dora": True}, lora_pair())], [
        "adapter_config.json",
        "DoRA",
    ]


@case("compress", "an adapter with --cluster")
def _(d):
    return [peft_folder(d, None, lora_pair()), "--max-error", "0.1", "--cluster", "-o", os.path.join(d, "o")], [
        "--cluster",
        "adapter",
    ]


@case("compress", "an adapter with --method whiten")
def _(d):
    grams = os.path.join(d, "g.safetensors")
    save_file({"q.weight": np.eye(5, dtype=np.float32)}, grams)
    return [
        peft_folder(d, None, lora_pair()),
        "--max-error",
        "0.1",
        "--method",
        "whiten",
        "--activations",
        grams,
        "-o",
        os.path.join(d, "o"),
    ], ["--activations", "checkpoints"]


@case("compress", "a whitened extraction with a budget")
def _(d):
    grams = os.path.join(d, "g.safetensors")
    save_file({"w": np.eye(40, dtype=np.float32)}, grams)
    return [
        good_checkpoint(d),
        "--base",
        good_checkpoint(d, "b.safetensors"),
        "--budget",
        "0.5",
        "--method",
        "whiten",
        "--activations",
        grams,
        "-o",
        os.path.join(d, "o"),
    ], ["--method whiten", "budget"]


@case("compress", "a collection with --budget")
def _(d):
    one = peft_folder(d, None, lora_pair(), name="one")
    two = peft_folder(d, None, lora_pair(), name="two")
    return [one, two, "--budget", "0.5", "-o", os.path.join(d, "c.safetensors")], ["collection", "budget"]


@case("compress", "a fine-tune whose base is another architecture")
def _(d):
    base = os.path.join(d, "b.safetensors")
    save_file({"other.weight": np.zeros((3, 3), np.float32)}, base)
    return [good_checkpoint(d), "--base", base, "--max-error", "0.1", "-o", os.path.join(d, "o")], [
        "m.safetensors",
        "another architecture",
    ]


@case("compress", "a fine-tune equal to its base")
def _(d):
    return [
        good_checkpoint(d),
        "--base",
        good_checkpoint(d, "b.safetensors"),
        "--max-error",
        "0.1",
        "-o",
        os.path.join(d, "o"),
    ], ["m.safetensors", "equals its base"]


@case("compress", "an adapter output onto the adapter")
def _(d):
    folder = peft_folder(d, None, lora_pair())
    return [folder, "--max-error", "0.1", "-o", folder, "--force"], ["adapter", "refusing to overwrite the input"]


@case("compress", "an adapter with --max-error and --rank")
def _(d):
    return [peft_folder(d, None, lora_pair()), "--max-error", "0.1", "--rank", "2", "-o", os.path.join(d, "o")], [
        "--max-error",
        "--rank",
    ]


@case("inspect", "an adapter whose factors have two dtypes")
def _(d):
    pair = lora_pair()
    pair["base_model.model.q.lora_B.weight"] = pair["base_model.model.q.lora_B.weight"].astype(np.float16)
    return [peft_folder(d, None, pair)], ["adapter_model.safetensors", "'q'", "two dtypes"]


def collection(folder, change):
    """A cond-lora-collection/1 file of two adapters whose manifest ``change(manifest)`` edited."""
    from cond.commands.adapter_collection import compress_collection

    one = peft_folder(folder, None, lora_pair(), name="one")
    two = peft_folder(folder, None, lora_pair(), name="two")
    path = os.path.join(folder, "c.safetensors")
    compress_collection([one, two], path, max_error=0.1)
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    manifest = json.loads(header["__metadata__"]["cond.manifest"])
    change(manifest)
    header["__metadata__"]["cond.manifest"] = json.dumps(manifest)
    os.unlink(path)
    return header_file(path, header, raw[8 + n :])


@case("expand", "a collection manifest whose members are a list")
def _(d):
    def change(m):
        m["modules"][0]["members"] = []

    return [collection(d, change), "-o", os.path.join(d, "out")], ["c.safetensors", "cond.manifest", "members"]


@case("expand", "a collection manifest naming a missing core")
def _(d):
    def change(m):
        member = next(iter(m["modules"][0]["members"].values()))
        member["core"] = "nope"

    return [collection(d, change), "-o", os.path.join(d, "out")], ["c.safetensors", "'nope'"]


@case("expand", "a collection group whose U has another rank")
def _(d):
    def change(m):
        m["modules"][0]["groups"][0]["rank"] += 1

    return [collection(d, change), "-o", os.path.join(d, "out")], ["c.safetensors", "group 0's U"]


@case("expand", "a collection adapter named with a slash")
def _(d):
    def change(m):
        m["adapters"][0]["name"] = "../escape"

    return [collection(d, change), "-o", os.path.join(d, "out")], ["c.safetensors", "not a plain name"]


@case("expand", "--adapter that is not in the collection")
def _(d):
    return [collection(d, lambda m: None), "-o", os.path.join(d, "out"), "--adapter", "three"], [
        "c.safetensors",
        "one, two",
    ]


@case("compress", "a collection output onto an input adapter's weights")
def _(d):
    one = peft_folder(d, None, lora_pair(), name="one")
    two = peft_folder(d, None, lora_pair(), name="two")
    return [one, two, "--max-error", "0.1", "-o", os.path.join(one, "adapter_model.safetensors"), "--force"], [
        "adapter_model.safetensors",
        "refusing to overwrite the input",
    ]


@case("inspect", "an adapter whose rank_pattern maps to a string")
def _(d):
    return [
        peft_folder(d, {"peft_type": "LORA", "r": 4, "lora_alpha": 8, "rank_pattern": {"q": "four"}}, lora_pair())
    ], ["adapter_config.json", "rank_pattern", "'four'"]


@case("inspect", "a kohya alpha holding two numbers")
def _(d):
    path = os.path.join(d, "k.safetensors")
    rng = np.random.default_rng(0)
    save_file(
        {
            "m.lora_down.weight": rng.standard_normal((2, 5)),
            "m.lora_up.weight": rng.standard_normal((6, 2)),
            "m.alpha": np.array([1.0, 2.0]),
        },
        path,
    )
    return [path], ["k.safetensors", "one number"]


def main(folder):
    """Write every case into its own subfolder of ``folder`` and print its command line."""
    for command, cases in CORPUS.items():
        for name, make in cases.items():
            sub = os.path.join(folder, command, name.replace(" ", "_").replace("/", "-"))
            os.makedirs(sub, exist_ok=True)
            args, expect = make(sub)
            args = [args] if isinstance(args, str) else args
            print(f"cond {command} {' '.join(args)}    # {name}: {expect}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bad-input-corpus")


# ------------------------------------------------------------------ group-wise forms (cond-lowrank/3)


def _grouped(d, change=None, manifest_change=None):
    """A cond-lowrank/3 file with 'w' (48 x 64) as 3-bit codes in groups of 32, its arrays or manifest
    then edited."""
    from safetensors import safe_open
    from safetensors.numpy import load_file

    from cond.commands.compress import compress

    rng = np.random.default_rng(3)
    src = os.path.join(d, "gsrc.safetensors")
    save_file({"w": rng.standard_normal((48, 64)).astype(np.float32)}, src)
    out = os.path.join(d, "g.safetensors")
    compress(src, out, dtype="int3", group_size=32, min_size=1)
    with safe_open(out, framework="np") as f:
        meta = f.metadata()
    arrays = load_file(out)
    os.unlink(src)
    os.unlink(out)
    manifest = json.loads(meta["cond.manifest"])
    if change:
        change(arrays)
    if manifest_change:
        manifest_change(_w(manifest))
    path = os.path.join(d, "t.safetensors")
    save_file(arrays, path, metadata={**meta, "cond.manifest": json.dumps(manifest)})
    return path


def _set(key, index, value):
    def change(arrays):
        arrays[key][index] = value

    return change


for _label, _change, _manifest, _message in [
    ("group scale of zero", _set("w.scales", (0, 0), 0), None, "finite and positive"),
    ("group scale of NaN", _set("w.scales", (2, 1), np.nan), None, "finite and positive"),
    ("group scale negative", _set("w.scales", (1, 0), -1), None, "finite and positive"),
    ("packed zero points with stray padding bits", _set("w.zeros", (0, 0), 0xC0), None, "bits set past"),
    (
        "packed codes cut short",
        lambda a: a.update({"w.codes": a["w.codes"][:, :-1].copy()}),
        None,
        "must be U8 of shape",
    ),
    (
        "packed codes of another dtype",
        lambda a: a.update({"w.codes": a["w.codes"].astype(np.int8)}),
        None,
        "must be U8 of shape",
    ),
    (
        "scales of another dtype",
        lambda a: a.update({"w.scales": a["w.scales"].astype(np.float32)}),
        None,
        "must be F16 of shape",
    ),
    ("a group size that does not divide", None, lambda t: t["quant"].update(group=48), "does not divide"),
    (
        "a group size that disagrees with the scales",
        None,
        lambda t: t["quant"].update(group=16),
        "must be F16 of shape",
    ),
    ("bits beyond 8", None, lambda t: t["quant"].update(bits=9), "`quant.bits` must be an integer in [2, 8]"),
    ("groupwise without quant", None, lambda t: t.pop("quant"), "needs a `quant` object"),
    (
        "a rotation of an unknown kind",
        None,
        lambda t: t["quant"].update(rotation={"kind": "givens"}),
        "`quant.rotation` must be null or",
    ),
    (
        "a rotation block that does not divide",
        None,
        lambda t: t["quant"].update(rotation={"kind": "hadamard", "block": 128, "seed": 0}),
        "rotation block 128 does not divide",
    ),
    ("symmetric with zero points", None, lambda t: t["quant"].update(symmetric=True), "`quant.zeros`"),
    ("zero points the file lacks", None, lambda t: t["quant"].update(zeros="w.nothing"), "'w.nothing'"),
    (
        "a correction without its factors",
        None,
        lambda t: t.update(keys=["w.codes", "w.L", "w.R"], scales=[None] * 3),
        "'w.L'",
    ),
]:

    def _make(d, change=_change, manifest_change=_manifest, message=_message):
        return _expand(d, _grouped(d, change, manifest_change)), [
            "t.safetensors",
            "tensor 'w'",
            message,
        ] if "tensor" not in message else ["t.safetensors", message]

    CORPUS["expand"][_label] = _make


for _label, _extra, _message in [
    ("--dtype int9", ["--dtype", "int9"], "`--dtype` must be one of"),
    ("--group-size 48", ["--dtype", "int4", "--group-size", "48"], "`--group-size` must be one of 32, 64, 128"),
    ("--rounding gptq without Grams", ["--dtype", "int4", "--rounding", "gptq"], "needs the layers' input Grams"),
    ("--act-order without GPTQ", ["--dtype", "int4", "--act-order"], "`--act-order` orders GPTQ's columns"),
    ("--damp 0", ["--dtype", "int4", "--damp", "0"], "`--damp` must be in (0, 1]"),
    ("--correction-rank -1", ["--dtype", "int4", "--correction-rank", "-1"], "non-negative integer"),
    ("--correction-dtype int3", ["--dtype", "int4", "--correction-dtype", "int3"], "`--correction-dtype`"),
    ("--symmetric without group-wise forms", ["--symmetric"], "applies to group-wise forms"),
    ("--preserve without a rank", ["--dtype", "int4", "--preserve"], "give `--correction-rank` > 0"),
    ("--dtype int4 with --rank", ["--dtype", "int4"], "`--rank` does not apply"),
    ("--cluster with group-wise forms", ["--dtype", "int4", "--cluster"], "do not cluster"),
    ("--preserve under a byte budget", ["--budget-bytes", "0.2", "--preserve"], "applies at a uniform width"),
    (
        "--correction-rank under a byte budget",
        ["--budget-bytes", "0.2", "--correction-rank", "4"],
        "the allocator chooses each matrix's rank",
    ),
]:

    def _make(d, extra=_extra, message=_message):
        source = good_checkpoint(d)
        args = [source, "-o", os.path.join(d, "out.safetensors"), *extra]
        if extra[0] in ("--symmetric",) or "--rank" in message:
            args += ["--rank", "4"]
        if "--cluster" in extra:
            args += ["--max-error", "0.1"]
        return args, [message]

    CORPUS["compress"][_label] = _make
