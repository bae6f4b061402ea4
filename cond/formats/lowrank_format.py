"""The compressed checkpoint format ``cond-lowrank/3`` (``/1`` and ``/2`` still read): safetensors
plus a JSON manifest.

``__metadata__["cond.format"] = "cond-lowrank/3"`` and
``__metadata__["cond.manifest"]`` = JSON with, per original tensor, its name,
shape, dtype, storage (``dense``, ``quantized``, ``lowrank``, ``cluster``), the
keys of its factors in multiplication order, the rank, the requested bound and
the measured error; per cluster its id, axis, members and rank; the method and
the tool version. A matrix W of shape (m, ...) is ``keys[0] @ keys[1]`` reshaped
to its shape; a dense tensor is stored under its own name, bytes unchanged; a
quantized one is the single key ``<name>.q`` of shape (m, prod(rest)).

``/2`` adds ``scales``: per key, None or the key of a float32 vector with one
scale per row of an int8 (``I8``) factor, which then stands for
``scale[:, None] * q``; and ``storage_dtype``, ``bytes``, ``macs`` per tensor. A
``/1`` file is a ``/2`` file without scales and without ``quantized``.

``/3`` adds the storage ``groupwise``: keys ``[<name>.codes]`` or, with a low-rank
correction, ``[<name>.codes, <name>.L, <name>.R]``, and ``quant`` = {bits (2-8),
group (columns per group, dividing the column count n), symmetric, rounding,
scales: the key of the fp16 (m, n / group) scales, zeros: the key of the packed
zero points or null when symmetric}. ``codes`` is uint8 (m, ceil(n bits / 8)): each
row's codes packed little-endian (:func:`cond.linalg.groupwise.pack`), unused bits 0;
``zeros`` is packed the same way, (m, ceil(n / group * bits / 8)). The matrix is
s (q - z) per group (z = 2^(bits-1) when symmetric), times R^T when ``quant.rotation``
= {kind: hadamard, block, seed} (:class:`cond.linalg.groupwise.Rotation`), plus L @ R; ``scales`` lists
the int8 row scales of L and R as for low-rank factors (null for the codes).
Scales must be finite and positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from cond.errors import InputError
from cond.formats.safetensors_file import _DTYPES, entries_of_file, numpy_dtype, parse_json, read_header
from cond.linalg.quantize import dequantize_rows

FORMAT = "cond-lowrank/3"
READABLE = ("cond-lowrank/1", "cond-lowrank/2", FORMAT)
STORAGES = ("dense", "quantized", "groupwise", "lowrank", "cluster")


def is_compressed(metadata: dict) -> bool:
    return metadata.get("cond.format") in READABLE


def _check_manifest(manifest, display):
    """The manifest's structure, checked before anything reads it: a tampered or foreign
    manifest is one InputError, never a KeyError deep inside expand."""

    def bad(rule, tensor=None):
        raise InputError(f"cond.manifest: {rule}", path=display, tensor=tensor)

    if not isinstance(manifest, dict):
        bad(f"must be a JSON object; got a {type(manifest).__name__}")
    tensors = manifest.get("tensors")
    if not isinstance(tensors, list):
        bad("`tensors` must be a list of tensor records")
    names = set()
    for k, t in enumerate(tensors):
        if not isinstance(t, dict):
            bad(f"tensor record {k} is not an object")
        name = t.get("name")
        if not isinstance(name, str):
            bad(f"tensor record {k} has no string `name`")
        if name in names:
            bad("names this tensor twice", name)
        names.add(name)
        shape = t.get("shape")
        if not (
            isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
        ):
            bad(f"`shape` must be a list of non-negative integers; got {shape!r}", name)
        dtype = t.get("dtype")
        if not isinstance(dtype, str) or dtype not in _DTYPES or _DTYPES[dtype][1] is None:
            bad(f"`dtype` {dtype!r} is not a safetensors dtype cond can restore", name)
        if t.get("storage") not in STORAGES:
            bad(f"`storage` {t.get('storage')!r} is not one of {', '.join(STORAGES)}", name)
        keys = t.get("keys")
        want = 1 if t["storage"] in ("dense", "quantized") else 2
        if t["storage"] == "groupwise":
            want = len(keys) if isinstance(keys, list) and len(keys) in (1, 3) else 1
            _check_quant(t.get("quant"), bad, name)
        if not (isinstance(keys, list) and len(keys) == want and all(isinstance(x, str) for x in keys)):
            bad(
                f"`keys` must list {want} stored tensor name{'s' if want > 1 else ''} for storage "
                f"{t['storage']}; got {keys!r}",
                name,
            )
        if t["storage"] != "dense" and len(shape) < 1:
            bad("a factored tensor must have at least one dimension", name)
        scales = t.get("scales")
        if scales is not None and not (
            isinstance(scales, list) and len(scales) == want and all(x is None or isinstance(x, str) for x in scales)
        ):
            bad(f"`scales` must list a scale key or null per key; got {scales!r}", name)
        if t["storage"] == "dense" and scales and scales[0] is not None:
            bad("an untouched tensor has no scales", name)


def _check_quant(quant, bad, name):
    if not isinstance(quant, dict):
        bad("a groupwise tensor needs a `quant` object (bits, group, symmetric, scales, zeros)", name)
    bits, group = quant.get("bits"), quant.get("group")
    if not (isinstance(bits, int) and not isinstance(bits, bool) and 2 <= bits <= 8):
        bad(f"`quant.bits` must be an integer in [2, 8]; got {bits!r}", name)
    if not (isinstance(group, int) and not isinstance(group, bool) and group >= 1):
        bad(f"`quant.group` must be a positive integer; got {group!r}", name)
    if not isinstance(quant.get("symmetric"), bool):
        bad(f"`quant.symmetric` must be true or false; got {quant.get('symmetric')!r}", name)
    if not isinstance(quant.get("scales"), str):
        bad("`quant.scales` must name the stored scales", name)
    zeros = quant.get("zeros")
    if quant["symmetric"] != (zeros is None) or not (zeros is None or isinstance(zeros, str)):
        bad("`quant.zeros` must name the stored zero points, or be null exactly when symmetric", name)
    rotation = quant.get("rotation")
    if rotation is not None:
        block, seed = (rotation.get("block"), rotation.get("seed")) if isinstance(rotation, dict) else (None, None)
        if not (
            isinstance(rotation, dict)
            and rotation.get("kind") == "hadamard"
            and isinstance(block, int)
            and not isinstance(block, bool)
            and block >= 1
            and not block & (block - 1)
            and isinstance(seed, int)
            and not isinstance(seed, bool)
            and 0 <= seed < 2**64
        ):
            bad("`quant.rotation` must be null or {kind: hadamard, block: a power of two, seed: an integer >= 0}", name)


class CompressedCheckpoint(Mapping):
    """A ``cond-lowrank`` file (``/1``, ``/2`` or ``/3``) opened lazily: a mapping from original tensor names to
    dense arrays in their original dtype, rebuilt on access (one at a time).

    Attributes
    ----------
    manifest : dict
        The parsed manifest.
    path : str
    """

    def __init__(self, path, display=None):
        self.path = str(path)
        display = display or self.path
        header = read_header(path, display)
        if not is_compressed(header.metadata):
            raise InputError(
                "not a cond-lowrank/1, /2 or /3 file (no cond.format metadata); it is an ordinary checkpoint",
                path=display,
            )
        self.manifest = parse_json(header.metadata.get("cond.manifest", ""), display, "cond.manifest")
        _check_manifest(self.manifest, display)
        self._display = display
        self._stored = {e.name: e for e in entries_of_file(path, display, header=header)}
        self._tensors = {}
        for t in self.manifest.get("tensors", []):
            self._check(t)
            self._tensors[t["name"]] = t

    def _check(self, t):
        name = t.get("name")
        quant = t.get("quant") if t["storage"] == "groupwise" else None
        extra = [quant["scales"]] + ([quant["zeros"]] if quant["zeros"] else []) if quant else []
        for key in t.get("keys", []) + [k for k in t.get("scales") or [] if k] + extra:
            if key not in self._stored:
                raise InputError(
                    f"manifest names factor '{key}', which the file lacks", path=self._display, tensor=name
                )
        for position, (key, scale) in enumerate(zip(t["keys"], t.get("scales") or [None] * len(t["keys"]))):
            stored = self._stored[key]
            if t["storage"] == "dense":
                break  # the original bytes, whatever their dtype
            if quant and position == 0:
                if scale is not None:
                    raise InputError(
                        "group-wise codes take their scales from `quant`, not `scales`", path=self._display, tensor=name
                    )
                continue
            if (stored.dtype == "I8") != (scale is not None):
                raise InputError(
                    f"factor '{key}' is {stored.dtype} with {'a' if scale else 'no'} scale; int8 "
                    "factors, and only they, have one",
                    path=self._display,
                    tensor=name,
                )
            if scale is not None and (
                self._stored[scale].dtype != "F32" or tuple(self._stored[scale].shape) != tuple(stored.shape[:1])
            ):
                raise InputError(
                    f"scale '{scale}' must be F32 with one entry per row of '{key}'", path=self._display, tensor=name
                )
        shape = tuple(t["shape"])
        rows, cols = (shape[0], math.prod(shape[1:])) if shape else (1, 1)
        if t["storage"] == "dense":
            if tuple(self._stored[t["keys"][0]].shape) != shape:
                raise InputError(
                    "stored shape differs from the manifest's", path=self._display, tensor=name, shape=shape
                )
            return
        if quant:
            self._check_groupwise(t, quant, rows, cols)
            if len(t["keys"]) == 1:
                return
            left, right = (self._stored[k].shape for k in t["keys"][1:])
            if len(left) != 2 or len(right) != 2 or left[0] != rows or right[1] != cols or left[1] != right[0]:
                raise InputError(
                    f"correction shapes {list(left)} x {list(right)} do not make {rows}x{cols}",
                    path=self._display,
                    tensor=name,
                    shape=shape,
                )
            return
        if t["storage"] == "quantized":
            if tuple(self._stored[t["keys"][0]].shape) != (rows, cols):
                raise InputError(
                    f"a quantized tensor must be stored as {rows}x{cols}", path=self._display, tensor=name, shape=shape
                )
            return
        left, right = (self._stored[k].shape for k in t["keys"])
        if len(left) != 2 or len(right) != 2 or left[0] != rows or right[1] != cols or left[1] != right[0]:
            raise InputError(
                f"factor shapes {list(left)} x {list(right)} do not make {list(shape)}",
                path=self._display,
                tensor=name,
                shape=shape,
            )

    def _check_groupwise(self, t, quant, rows, cols):
        """The packed codes, scales and zero points against the bit width, group size and shape."""
        name, bits, group = t["name"], quant["bits"], quant["group"]
        bad = lambda rule: InputError(rule, path=self._display, tensor=name, shape=tuple(t["shape"]))  # noqa: E731
        if cols % group:
            raise bad(f"group size {group} does not divide the {cols} columns")
        rotation = quant.get("rotation")
        if rotation and cols % rotation["block"]:
            raise bad(f"rotation block {rotation['block']} does not divide the {cols} columns")
        groups = cols // group
        expected = {t["keys"][0]: ("U8", (rows, math.ceil(cols * bits / 8))), quant["scales"]: ("F16", (rows, groups))}
        if quant["zeros"]:
            expected[quant["zeros"]] = ("U8", (rows, math.ceil(groups * bits / 8)))
        for key, (dtype, shape) in expected.items():
            stored = self._stored[key]
            if stored.dtype != dtype or tuple(stored.shape) != shape:
                raise bad(
                    f"'{key}' must be {dtype} of shape {list(shape)} for {bits}-bit codes in groups of "
                    f"{group}; got {stored.dtype} {list(stored.shape)}"
                )

    def group_codes(self, name):
        """The codes of a groupwise tensor as written, unpacked and checked (scales finite and positive,
        no stray padding bits): (GroupCodes, the Rotation they were taken in or None)."""
        from cond.linalg.groupwise import GroupCodes, GroupSpec, unpack
        from cond.linalg.rotation import Rotation

        t = self._tensors[name]
        quant = t["quant"]
        cols = math.prod(t["shape"][1:])
        spec = GroupSpec(quant["bits"], quant["group"], quant["symmetric"])
        where = dict(path=self._display, tensor=name, shape=tuple(t["shape"]))
        scales = np.frombuffer(self._stored[quant["scales"]].read_raw(), dtype="<f2").reshape(-1, cols // spec.group)
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise InputError("group scales must be finite and positive (a scale of 0, NaN or Inf was stored)", **where)
        try:
            codes = unpack(self.packed(t["keys"][0]), spec.bits, cols)
            zeros = unpack(self.packed(quant["zeros"]), spec.bits, cols // spec.group) if quant["zeros"] else None
        except ValueError as exc:
            raise InputError(str(exc), **where) from None
        rotation = quant.get("rotation")
        rotation = Rotation(cols, rotation["block"], rotation["seed"]) if rotation else None
        return GroupCodes(spec, codes, scales.astype(np.float16), zeros), rotation

    def _groupwise(self, t):
        """Dequantised codes of a groupwise tensor in float64, the rotation undone."""
        codes, rotation = self.group_codes(t["name"])
        value = codes.value()
        return value if rotation is None else rotation.undo(value)

    def packed(self, key) -> np.ndarray:
        """A stored uint8 array (packed codes or zero points) as written."""
        entry = self._stored[key]
        return np.frombuffer(entry.read_raw(), dtype=np.uint8).reshape(entry.shape)

    def __getitem__(self, name):
        t = self._tensors[name]
        dtype = numpy_dtype(t["dtype"])
        if t["storage"] == "dense":
            entry = self._stored[t["keys"][0]]
            return np.frombuffer(entry.read_raw(), dtype=dtype.newbyteorder("<")).reshape(t["shape"]).copy()
        return self.matrix64(name).reshape(t["shape"]).astype(dtype)

    def manifest_entry(self, name) -> dict:
        """The manifest's record of one original tensor."""
        return self._tensors[name]

    def matrix64(self, name) -> np.ndarray:
        """The stored approximation in float64, as a 2-D (shape[0], prod(rest)) matrix."""
        t = self._tensors[name]
        if t["storage"] == "dense":
            w = self._stored[t["keys"][0]].load()
            return w.reshape(w.shape[0], -1) if w.ndim > 1 else w
        if t["storage"] == "groupwise":
            value = self._groupwise(t)
            if len(t["keys"]) == 3:
                left, right = self.factors(name)
                value = value + left @ right
            return value
        factors = self.factors(name)
        return factors[0] if len(factors) == 1 else factors[0] @ factors[1]

    def factors(self, name) -> list:
        """The stored factors of a quantized or factored tensor in float64, int8 scales applied (for a
        groupwise tensor: its correction's two factors, or none)."""
        t = self._tensors[name]
        pairs = list(zip(t["keys"], t.get("scales") or [None] * len(t["keys"])))
        if t["storage"] == "groupwise":
            pairs = pairs[1:]
        return [self._value(k, s) for k, s in pairs]

    def stored(self, key, scale=None):
        """A stored factor as written: (array, its row scales or None); int8 stays int8."""
        entry = self._stored[key]
        if scale is None:
            return entry.load(), None
        return np.frombuffer(entry.read_raw(), dtype=np.int8).reshape(entry.shape), self._stored[scale].load()

    def _value(self, key, scale):
        entry = self._stored[key]
        if scale is None:
            return entry.load()
        q = np.frombuffer(entry.read_raw(), dtype=np.int8).reshape(entry.shape)
        return dequantize_rows(q, self._stored[scale].load())

    def __iter__(self):
        return iter(self._tensors)

    def __len__(self):
        return len(self._tensors)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def open_compressed(path) -> CompressedCheckpoint:
    """Open a ``cond-lowrank`` file lazily; tensors are rebuilt when indexed."""
    return CompressedCheckpoint(path)


def load_compressed(path) -> dict:
    """Every tensor of a ``cond-lowrank`` file, dense, in its original dtype and shape."""
    with CompressedCheckpoint(path) as ckpt:
        return {name: ckpt[name] for name in ckpt}
