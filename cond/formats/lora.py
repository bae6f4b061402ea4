"""LoRA adapters in factor form: PEFT folders and kohya / diffusers files.

Every module of an adapter is read as two factors and a scale, dW = s L R with
L (out x r) and R (r x in), never multiplied out here (:mod:`cond.linalg.factored`
works in factor space):

- **PEFT** (a folder with ``adapter_config.json`` and ``adapter_model.safetensors``):
  ``base_model.model.<module>.lora_A.weight`` (r x in) and ``.lora_B.weight``
  (out x r), so L = B, R = A; s = lora_alpha / r, or lora_alpha / sqrt(r) with
  ``use_rslora``; per module, r and alpha come from ``rank_pattern`` and
  ``alpha_pattern`` (a key p matches module name n when ``(.*\\.)?(p)$`` matches n,
  first key first, as PEFT matches them). Embedding LoRAs store
  ``lora_embedding_A`` (r x num_embeddings) and ``lora_embedding_B`` (dim x r):
  the weight (num_embeddings x dim) changes by s (B A)^T, so L = A^T, R = B^T.
  ``fan_in_fan_out`` (GPT-2's Conv1D) transposes the delta the same way. A pickled
  ``adapter_model.bin`` is refused, never loaded.
- **kohya / diffusers** (one safetensors file): ``<name>.lora_down.weight``
  (r x in, or r x in x kh x kw for a conv), ``<name>.lora_up.weight`` (out x r, or
  out x r x 1 x 1) and ``<name>.alpha``; dW = (alpha / r) up @ down, a conv's down
  reshaped to (r, in kh kw) as cond reshapes every N-D weight to (out, prod(rest)).
  A missing ``.alpha`` means alpha = r (scale 1), kohya's convention; a NaN one is
  refused.

Module names are those of the base model's weights without ``.weight`` (PEFT's
``base_model.model.`` prefix removed).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from cond.errors import InputError

PEFT_CONFIG = "adapter_config.json"
PEFT_WEIGHTS = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_PEFT_KEY = re.compile(r"(?P<module>.+)\.(?P<part>lora_A|lora_B|lora_embedding_A|lora_embedding_B)(?:\.weight)?$")
_KOHYA_KEY = re.compile(r"(?P<module>.+)\.(?P<part>lora_down|lora_up)\.weight$|(?P<amod>.+)\.alpha$")


@dataclass(frozen=True)
class LoraModule:
    """One module of an adapter: dW = scale * left @ right, read lazily.

    Attributes
    ----------
    name : str
        The base model's module (its weight is ``name + ".weight"``).
    shape : tuple of int
        The shape of dW as cond analyses it: (out, in), or (out, in kh kw) for a conv.
    rank : int
        The nominal rank r (the factors' inner dimension).
    alpha : float
    scale : float
        s = alpha / r (PEFT: alpha / sqrt(r) with rslora).
    kind : str
        ``linear``, ``embedding`` or ``conv``.
    keys : tuple of str
        The file's keys of the two factors.
    """

    name: str
    shape: tuple
    rank: int
    alpha: float
    scale: float
    kind: str
    keys: tuple
    dtype: str
    load: Callable[[], tuple] = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    def factors(self):
        """``(left, right)`` in float64, left (out x r) and right (r x in): dW = scale left right."""
        return self.load()


@dataclass(frozen=True)
class Adapter:
    """An adapter read in factor form: its modules, the tensors it saves whole, its own format."""

    path: str
    format: str  # "peft" or "kohya"
    modules: tuple
    saved: tuple = ()  # tensor keys stored whole (PEFT modules_to_save), not factored
    config: dict = field(default_factory=dict)
    notices: tuple = ()


def is_adapter(path) -> bool:
    """Whether ``path`` is a PEFT folder or a kohya / diffusers LoRA file (by its keys)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, PEFT_CONFIG))
    if not path.lower().endswith(".safetensors") or not os.path.isfile(path):
        return False
    from cond.formats.safetensors_file import read_header

    try:
        names = [t.name for t in read_header(path).tensors]
    except InputError:
        return False
    return any(n.endswith((".lora_down.weight", ".lora_A.weight")) for n in names)


def open_adapter(path) -> Adapter:
    """Read an adapter's structure (every header and shape checked); factors load on demand.

    Raises
    ------
    InputError
        A config without weights, a pickled ``adapter_model.bin``, ``r`` that disagrees with
        the tensors, a missing or non-finite alpha, one factor without the other, shapes
        that do not multiply, an unsupported adapter type.
    """
    path = os.fspath(path)
    if os.path.isdir(path):
        return _peft(path)
    return _kohya(path)


# ---------------------------------------------------------------------------------- PEFT


def _peft(folder) -> Adapter:
    config_path = os.path.join(folder, PEFT_CONFIG)
    weights = os.path.join(folder, PEFT_WEIGHTS)
    config = _read_config(config_path)
    if not os.path.isfile(weights):
        pickled = os.path.isfile(os.path.join(folder, "adapter_model.bin"))
        raise InputError(
            "holds a pickled adapter_model.bin (cond never loads pickles): save the adapter with "
            "safe_serialization=True"
            if pickled
            else f"has {PEFT_CONFIG} but no {PEFT_WEIGHTS}",
            path=folder,
        )
    from cond.formats.safetensors_file import entries_of_file

    entries = {e.name: e for e in entries_of_file(weights)}
    pairs: dict = {}
    saved: list = []
    for key in entries:
        match = _PEFT_KEY.match(key)
        if match is None:
            saved.append(key)  # modules_to_save and other whole tensors
            continue
        module = match.group("module")
        module = module[len(PEFT_PREFIX) :] if module.startswith(PEFT_PREFIX) else module
        pairs.setdefault(module, {})[match.group("part")] = key
    modules = tuple(_peft_module(name, parts, entries, config, weights) for name, parts in sorted(pairs.items()))
    if not modules:
        raise InputError("holds no lora_A / lora_B tensors", path=weights)
    return Adapter(folder, "peft", modules, tuple(saved), config)


def _read_config(path):
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise InputError(f"is not a readable JSON config ({type(exc).__name__})", path=path) from None
    if not isinstance(config, dict):
        raise InputError("is not a JSON object", path=path)
    kind = config.get("peft_type", "LORA")
    if str(kind).upper() != "LORA":
        raise InputError(f"is a {kind} adapter; cond reads LoRA adapters", path=path)
    if config.get("use_dora"):
        raise InputError("is a DoRA adapter (use_dora): its delta is not scale * B A; cond reads plain LoRA", path=path)
    for key in ("r", "lora_alpha"):
        value = config.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
            raise InputError(f"`{key}` must be a positive number; got {value!r}", path=path)
    for key in ("rank_pattern", "alpha_pattern"):
        patterns = config.get(key) or {}
        if not isinstance(patterns, dict):
            raise InputError(f"`{key}` must be an object; got {type(patterns).__name__}", path=path)
        for name, value in patterns.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise InputError(
                    f"`{key}` must map module patterns to positive numbers; '{name}' maps to {value!r}", path=path
                )
    return config


def pattern_value(patterns, name, default):
    """PEFT's per-module value: the first pattern key p with ``(.*\\.)?(p)$`` matching ``name``."""
    for key, value in (patterns or {}).items():
        try:
            if re.match(rf"(.*\.)?({key})$", name):
                return value
        except re.error:
            continue
    return default


def _peft_module(name, parts, entries, config, weights):
    embedding = "lora_embedding_A" in parts or "lora_embedding_B" in parts
    a_key = parts.get("lora_embedding_A" if embedding else "lora_A")
    b_key = parts.get("lora_embedding_B" if embedding else "lora_B")
    if a_key is None or b_key is None:
        have, want = (a_key or b_key), ("B" if b_key is None else "A")
        raise InputError(
            f"module '{name}' has {have.rsplit('.', 2)[-2] if have.endswith('.weight') else have} "
            f"but no lora_{'embedding_' if embedding else ''}{want}",
            path=weights,
        )
    a, b = entries[a_key], entries[b_key]
    for e in (a, b):
        if len(e.shape) != 2:
            raise InputError(
                f"a LoRA factor is 2-D; got shape {'x'.join(map(str, e.shape))}",
                path=weights,
                tensor=e.name,
                shape=e.shape,
            )
    r = int(a.shape[0])
    if b.shape[1] != r:
        raise InputError(
            f"lora_A has {r} rows but lora_B {b.shape[1]} columns; they must agree",
            path=weights,
            tensor=b.name,
            shape=b.shape,
        )
    nominal = pattern_value(config.get("rank_pattern"), name, config["r"])
    if int(nominal) != r:
        raise InputError(
            f"the config gives module '{name}' rank {nominal} but its tensors have rank {r}",
            path=weights,
            tensor=a.name,
            shape=a.shape,
        )
    alpha = float(pattern_value(config.get("alpha_pattern"), name, config["lora_alpha"]))
    if not math.isfinite(alpha):
        raise InputError(f"alpha of module '{name}' is {alpha}", path=weights)
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    transpose = embedding or bool(config.get("fan_in_fan_out"))
    shape = (a.shape[1], b.shape[0]) if transpose else (b.shape[0], a.shape[1])

    def load(a=a, b=b, transpose=transpose):
        fa, fb = _finite(a), _finite(b)
        return (fa.T, fb.T) if transpose else (fb, fa)

    _same_dtype(name, a, b, weights)
    dtype = a.dtype
    return LoraModule(
        name,
        tuple(int(s) for s in shape),
        r,
        alpha,
        scale,
        "embedding" if embedding else "linear",
        (a.name, b.name),
        dtype,
        load,
    )


def _same_dtype(name, first, second, path):
    """A module's two factors share one dtype (a file whose factors differ was not written by a
    trainer: refused rather than guessed at)."""
    if first.dtype != second.dtype:
        raise InputError(
            f"module '{name}' stores its factors in two dtypes ({first.name} is {first.dtype}, "
            f"{second.name} is {second.dtype}); a LoRA module's factors share one",
            path=path,
        )


def _finite(entry):
    values = entry.load()
    if not np.all(np.isfinite(values)):
        raise InputError("holds NaN or Inf", path=entry.source, tensor=entry.name, shape=entry.shape)
    return values


# ---------------------------------------------------------------------------------- kohya


def _kohya(path) -> Adapter:
    from cond.formats.safetensors_file import entries_of_file

    entries = {e.name: e for e in entries_of_file(path)}
    groups: dict = {}
    saved: list = []
    for key in entries:
        match = _KOHYA_KEY.match(key)
        if match is None:
            saved.append(key)
            continue
        module = match.group("module") or match.group("amod")
        part = match.group("part") or "alpha"
        groups.setdefault(module, {})[part] = key
    modules, notices = [], []
    for name, parts in sorted(groups.items()):
        module, notice = _kohya_module(name, parts, entries, path)
        modules.append(module)
        if notice:
            notices.append(notice)
    if not modules:
        raise InputError(
            "holds no LoRA factors (lora_down / lora_up, or PEFT's lora_A / lora_B in a folder "
            "with adapter_config.json)",
            path=path,
        )
    return Adapter(path, "kohya", tuple(modules), tuple(saved), {}, tuple(notices))


def _kohya_module(name, parts, entries, path):
    down_key, up_key = parts.get("lora_down"), parts.get("lora_up")
    if down_key is None or up_key is None:
        raise InputError(
            f"module '{name}' has {'lora_down' if up_key is None else 'lora_up'} but no "
            f"{'lora_up' if up_key is None else 'lora_down'}",
            path=path,
        )
    down, up = entries[down_key], entries[up_key]
    r = int(down.shape[0])
    if len(up.shape) not in (2, 4) or up.shape[1] != r or any(int(s) != 1 for s in up.shape[2:]):
        raise InputError(
            f"lora_up must be out x {r} (or out x {r} x 1 x 1) to match lora_down's rank {r}; got "
            f"{'x'.join(map(str, up.shape))}",
            path=path,
            tensor=up.name,
            shape=up.shape,
        )
    if len(down.shape) not in (2, 4):
        raise InputError("lora_down must be r x in or r x in x kh x kw", path=path, tensor=down.name, shape=down.shape)
    notice = None
    if "alpha" in parts:
        values = np.asarray(entries[parts["alpha"]].load()).reshape(-1)
        if values.size != 1:
            raise InputError(
                f"alpha of module '{name}' must be one number; it holds {values.size}", path=path, tensor=parts["alpha"]
            )
        alpha = float(values[0])
        if not math.isfinite(alpha):
            raise InputError(f"alpha of module '{name}' is {alpha}", path=path, tensor=parts["alpha"])
    else:
        alpha, notice = float(r), f"{name}: no .alpha; alpha = r (scale 1), kohya's convention"
    fan_in = int(np.prod(down.shape[1:]))
    shape = (int(up.shape[0]), fan_in)

    def load(down=down, up=up):
        d, u = _finite(down), _finite(up)
        return u.reshape(u.shape[0], r), d.reshape(r, -1)

    kind = "conv" if len(down.shape) == 4 else "linear"
    _same_dtype(name, down, up, path)
    dtype = down.dtype
    return LoraModule(name, shape, r, alpha, alpha / r, kind, (down.name, up.name), dtype, load), notice
