"""Checkpoints for the compress tests, and a reader of cond-lowrank/1 and /2 independent of cond's.

``reconstruct`` rebuilds every matrix from the file with only the safetensors package
and the manifest: int8 factors times their float32 row scales, the factors multiplied
in float64 and rounded once to the original dtype, which is what a user of the dense
checkpoint holds.
"""

import json

import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}


def planted_checkpoint(path, dtype=np.float32, seed=0, k=12, m=64, n=24, transpose=False):
    """Matrices from 2 planted 4-dim subspaces (they can share bases), biases and an int tensor."""
    rng = np.random.default_rng(seed)
    bases = [np.linalg.qr(rng.standard_normal((m, 4)))[0] for _ in range(2)]
    tensors = {}
    for i in range(k):
        w = bases[i % 2] @ rng.standard_normal((4, n)) + 0.003 * rng.standard_normal((m, n))
        w *= np.exp(0.3 * rng.standard_normal())
        tensors[f"layers.{i}.weight"] = np.ascontiguousarray((w.T if transpose else w).astype(dtype))
        tensors[f"layers.{i}.bias"] = rng.standard_normal(m).astype(dtype)
    tensors["position_ids"] = np.arange(8, dtype=np.int64)
    tensors["odd.weight"] = rng.standard_normal((m, n)).astype(dtype)  # full rank: stays dense
    save_file(tensors, str(path), metadata={"format": "pt", "origin": "test"})
    return tensors


def naive_groupwise(stored, t):
    """The dequantised codes of a groupwise record, unpacked bit by bit with Python integers
    (row bytes -> one little-endian integer -> code k is bits [k b, (k + 1) b))."""
    q = t["quant"]
    bits, group = q["bits"], q["group"]
    rows, cols = t["shape"][0], int(np.prod(t["shape"][1:]))

    def codes(packed, count):
        out = np.zeros((rows, count))
        for i in range(rows):
            stream = int.from_bytes(bytes(packed[i]), "little")
            for k in range(count):
                out[i, k] = (stream >> (k * bits)) & ((1 << bits) - 1)
        return out

    c = codes(stored[t["keys"][0]], cols)
    z = codes(stored[q["zeros"]], cols // group) if q["zeros"] else np.full((rows, cols // group), 2 ** (bits - 1))
    s = stored[q["scales"]].astype(np.float64)
    value = np.empty((rows, cols))
    for k in range(cols // group):
        block = slice(k * group, (k + 1) * group)
        value[:, block] = s[:, k : k + 1] * (c[:, block] - z[:, k : k + 1])
    rotation = q.get("rotation")
    if rotation:  # W_hat = Q R^T with R = diag(signs) blockdiag(H / sqrt(b)), built densely here
        import scipy.linalg

        from cond.kernels.keyed import keyed_uniforms

        b = rotation["block"]
        signs = np.where(keyed_uniforms(rotation["seed"], 0, cols) < 0.5, -1.0, 1.0)
        r = np.kron(np.eye(cols // b), scipy.linalg.hadamard(b) / np.sqrt(b)) * signs[:, None]
        value = value @ r.T
    return value


def reconstruct(path):
    """Dense float64 matrices from the file, using only the safetensors package and the manifest."""
    with safe_open(str(path), framework="np") as f:
        meta = f.metadata()
    manifest = json.loads(meta["cond.manifest"])
    stored = load_file(str(path))
    out = {}
    for t in manifest["tensors"]:
        keys = t["keys"]
        scales = t.get("scales") or [None] * len(keys)
        factors = [
            stored[k].astype(np.float64) * (1.0 if s is None else stored[s].astype(np.float64)[:, None])
            for k, s in zip(keys, scales)
        ]
        if t["storage"] == "dense":
            out[t["name"]] = stored[keys[0]]
        elif t["storage"] == "groupwise":
            value = naive_groupwise(stored, t)
            if len(keys) == 3:
                value = value + factors[1] @ factors[2]
            out[t["name"]] = value.reshape(t["shape"]).astype(DTYPES[t["dtype"]])
        elif t["storage"] == "quantized":
            out[t["name"]] = factors[0].reshape(t["shape"]).astype(DTYPES[t["dtype"]])
        else:  # multiplied out in float64 and rounded once to the original dtype, as a user would
            product = factors[0] @ factors[1]
            out[t["name"]] = product.reshape(t["shape"]).astype(DTYPES[t["dtype"]])
    return manifest, stored, out
