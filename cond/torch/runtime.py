"""``cond.torch``: run a compressed file with factorised layers (torch is optional, imported here only).

>>> import cond.torch                                                     # doctest: +SKIP
>>> model = cond.torch.load_factorised(model, "small.safetensors")        # doctest: +SKIP
>>> dense = cond.torch.to_dense(model)                                    # doctest: +SKIP

Every ``torch.nn.Linear`` whose weight the file stores factored (``lowrank`` or
``cluster``) becomes a :class:`LowRankLinear`, x -> V x -> U (V x) + b: r (m + n)
multiply-adds per input vector instead of m n. A cluster's shared basis is one
``nn.Parameter`` held by every member (tied: trained or moved once). int8 factors
are dequantised once to the layer's dtype, or, with ``keep_int8=True``, kept as
int8 buffers with their row scales and applied as s_U * (Q_U (s_V * (Q_V x))).
A group-wise weight (``groupwise``: 2-8 bit codes, and a low-rank correction L R) is
dequantised once into the Linear's weight (the array ``cond expand`` writes), or, with
``keep_packed=True``, becomes a :class:`GroupwiseLinear` that keeps the codes (one byte
each, unpacked once), the fp16 scales and zero points, and dequantises on every call:
y = (s (q - z)) x + L (R x) + b.
Every other tensor of the file (untouched, or stored whole at a narrower dtype) is
loaded into the model as the dense array ``cond expand`` would write. Names may
differ from the model's by a prefix (a wrapper's), found by
:func:`cond.torch.names.align`.
"""

from __future__ import annotations

import numpy as np
import torch

from cond.formats.lowrank_format import CompressedCheckpoint
from cond.torch.names import align, mapper

FACTORED = ("lowrank", "cluster")


class LowRankLinear(torch.nn.Module):
    """y = U (V x) + b, with U (out x r) and V (r x in); int8 factors optionally kept with their scales.

    Parameters
    ----------
    u, v : torch.Tensor or torch.nn.Parameter
        The factors (a Parameter is used as given, so that shared bases stay tied), or
        int8 tensors with ``u_scale`` / ``v_scale`` (one float per row).
    bias : torch.nn.Parameter or None
    """

    def __init__(self, u, v, bias=None, u_scale=None, v_scale=None):
        super().__init__()
        for name, factor, scale in (("u", u, u_scale), ("v", v, v_scale)):
            if scale is None:
                setattr(self, name, factor if isinstance(factor, torch.nn.Parameter) else torch.nn.Parameter(factor))
                setattr(self, f"{name}_scale", None)
            else:
                self.register_buffer(name, factor)
                self.register_buffer(f"{name}_scale", scale)
        self.bias = bias
        self.in_features, self.out_features, self.rank = v.shape[1], u.shape[0], v.shape[0]

    def forward(self, x):
        dtype = x.dtype
        if self.v_scale is None:
            return torch.nn.functional.linear(torch.nn.functional.linear(x, self.v), self.u, self.bias)
        h = torch.nn.functional.linear(x, self.v.to(dtype)) * self.v_scale.to(dtype)
        y = torch.nn.functional.linear(h, self.u.to(dtype)) * self.u_scale.to(dtype)
        return y if self.bias is None else y + self.bias

    def weight64(self):
        """U V in float64 (scales applied): the dense weight this layer stands for."""
        u, v = self.u.double(), self.v.double()
        if self.u_scale is not None:
            u, v = u * self.u_scale.double()[:, None], v * self.v_scale.double()[:, None]
        return u @ v

    def extra_repr(self):
        kept = ", int8" if self.v_scale is not None else ""
        return f"in_features={self.in_features}, out_features={self.out_features}, rank={self.rank}{kept}"


class GroupwiseLinear(torch.nn.Module):
    """y = W_q x + L (R x) + b with W_q = s (q - z) per group of ``group`` input columns, dequantised per call.

    Parameters
    ----------
    codes : torch.Tensor of shape (out, in), uint8
    scales, zeros : torch.Tensor of shape (out, in / group)
        Float scales and zero points (as floats).
    group : int
    left, right : torch.Tensor or None
        The correction's factors (out x r, r x in), in the layer's dtype.
    bias : torch.nn.Parameter or None
    """

    def __init__(self, codes, scales, zeros, group, left=None, right=None, bias=None, rotation=None):
        super().__init__()
        if rotation is not None:  # W = Q R^T with R = diag(signs) blockdiag(H): kept as signs and one block
            from cond.linalg.rotation import hadamard

            self.register_buffer("signs", torch.from_numpy(rotation.signs()).to(scales.device))
            self.register_buffer("hadamard", torch.from_numpy(hadamard(rotation.block)).to(scales.device))
        else:
            self.signs = self.hadamard = None
        self.register_buffer("codes", codes)
        self.register_buffer("scales", scales)
        self.register_buffer("zeros", zeros)
        self.group = group
        self.left = None if left is None else torch.nn.Parameter(left)
        self.right = None if right is None else torch.nn.Parameter(right)
        self.bias = bias
        self.out_features, self.in_features = codes.shape

    def dequantised(self, dtype):
        q = self.codes.to(dtype).view(self.out_features, -1, self.group)
        w = (q - self.zeros.to(dtype)[:, :, None]) * self.scales.to(dtype)[:, :, None]
        w = w.reshape(self.out_features, self.in_features)
        if self.signs is not None:
            block = self.hadamard.shape[0]
            w = (w.view(self.out_features, -1, block) @ self.hadamard.to(dtype)).reshape(w.shape) * self.signs.to(dtype)
        return w

    def forward(self, x):
        y = torch.nn.functional.linear(x, self.dequantised(x.dtype), self.bias)
        if self.left is not None:
            y = y + torch.nn.functional.linear(
                torch.nn.functional.linear(x, self.right.to(x.dtype)), self.left.to(x.dtype)
            )
        return y

    def weight64(self):
        """The dense weight this layer stands for, in float64."""
        w = self.dequantised(torch.float64)
        return w if self.left is None else w + self.left.double() @ self.right.double()

    def extra_repr(self):
        rank = 0 if self.left is None else self.left.shape[1]
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group={self.group}, "
            f"correction_rank={rank}"
        )


def load_factorised(model, path, *, keep_int8=False, keep_packed=False, strict=True):
    """Load a ``cond-lowrank`` file into ``model``, factored Linear weights as :class:`LowRankLinear`.

    Parameters
    ----------
    model : torch.nn.Module
        The architecture the checkpoint was saved from (its weights are replaced).
    path : str
        A ``cond-lowrank`` file (``/1``, ``/2`` or ``/3``).
    keep_int8 : bool
        Keep int8 factors as int8 with their scales (less memory, a dequantisation per call).
    keep_packed : bool
        Run group-wise weights as :class:`GroupwiseLinear` (codes kept, dequantised per call)
        instead of dequantising them once into the Linear's weight.
    strict : bool
        Refuse a file tensor the model has no place for.

    Returns
    -------
    torch.nn.Module
        ``model``, changed in place.
    """
    ckpt = CompressedCheckpoint(path)
    state = model.state_dict()
    to_model = mapper(*align(ckpt, state))
    modules = dict(model.named_modules())
    shared = {}
    missing = []
    with torch.no_grad():
        for name in ckpt:
            t = ckpt.manifest_entry(name)
            ours = to_model(name)
            module = modules.get(ours[: -len(".weight")]) if ours and ours.endswith(".weight") else None
            if t["storage"] in FACTORED and isinstance(module, torch.nn.Linear):
                _same_shape(name, t["shape"], module.weight.shape, path)
                _replace(model, ours[: -len(".weight")], _factorised(ckpt, t, module, shared, keep_int8))
            elif t["storage"] == "groupwise" and keep_packed and isinstance(module, torch.nn.Linear):
                _same_shape(name, t["shape"], module.weight.shape, path)
                _replace(model, ours[: -len(".weight")], _groupwise(ckpt, t, module))
            elif ours in state or _buffer(model, ours) is not None:  # a non-persistent buffer too
                target = state[ours] if ours in state else _buffer(model, ours)
                _same_shape(name, t["shape"], target.shape, path)
                target.copy_(torch.from_numpy(np.ascontiguousarray(ckpt[name])).to(target.dtype))
            else:
                missing.append(name)
    if strict and missing:
        raise ValueError(
            f"the model has no place for {len(missing)} tensors of {path} "
            f"({', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"
        )
    return model


def _factorised(ckpt, t, linear, shared, keep_int8):
    dtype = linear.weight.dtype
    device = linear.weight.device
    factors, scales = [], []
    for key, scale in zip(t["keys"], t.get("scales") or [None, None]):
        if key not in shared:
            q, s = ckpt.stored(key, scale)
            if s is not None and keep_int8:
                shared[key] = (torch.from_numpy(q.copy()).to(device), torch.from_numpy(s.copy()).to(device))
            else:
                value = q if s is None else q.astype(np.float64) * s.astype(np.float64)[:, None]
                shared[key] = (
                    torch.nn.Parameter(
                        torch.from_numpy(np.asarray(value, dtype=np.float64)).to(device=device, dtype=dtype)
                    ),
                    None,
                )
        factor, scale_tensor = shared[key]
        factors.append(factor)
        scales.append(scale_tensor)
    return LowRankLinear(factors[0], factors[1], linear.bias, scales[0], scales[1])


def _groupwise(ckpt, t, linear):
    """A :class:`GroupwiseLinear` from a groupwise record (codes and zero points unpacked once)."""
    group, rotation = ckpt.group_codes(t["name"])  # unpacked and checked once
    zeros = group.zeros if group.zeros is not None else np.full(group.scales.shape, group.spec.middle, np.uint8)
    device, dtype = linear.weight.device, linear.weight.dtype
    tensor = lambda a, kind: torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=kind)  # noqa: E731
    factors = ckpt.factors(t["name"])
    left, right = (tensor(f, dtype) for f in factors) if factors else (None, None)
    return GroupwiseLinear(
        tensor(group.codes, torch.uint8),
        tensor(group.scales, torch.float32),
        tensor(zeros, torch.float32),
        group.spec.group,
        left,
        right,
        linear.bias,
        rotation,
    )


def _same_shape(name, stored, ours, path):
    if tuple(stored) != tuple(ours):
        raise ValueError(
            f"{path}: tensor '{name}' has shape {list(stored)}, the model's is {list(ours)}; "
            "the file was written for another architecture"
        )


def _buffer(model, name):
    try:
        return model.get_buffer(name) if name else None
    except AttributeError:
        return None


def _replace(model, name, new):
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def to_dense(model):
    """Replace every :class:`LowRankLinear` of ``model`` by a ``torch.nn.Linear`` of weight U V
    (multiplied in float64, rounded once to the layer's dtype). Returns ``model``."""
    for name, module in list(model.named_modules()):
        if isinstance(module, (LowRankLinear, GroupwiseLinear)):
            dtype = (
                module.bias.dtype
                if module.bias is not None
                else torch.float32
                if isinstance(module, GroupwiseLinear) or module.u_scale is not None
                else module.u.dtype
            )
            device = module.codes.device if isinstance(module, GroupwiseLinear) else module.u.device
            dense = torch.nn.Linear(
                module.in_features, module.out_features, bias=module.bias is not None, device=device, dtype=dtype
            )
            with torch.no_grad():
                dense.weight.copy_(module.weight64().to(dtype))
                if module.bias is not None:
                    dense.bias = module.bias
            _replace(model, name, dense)
    return model
