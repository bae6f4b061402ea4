"""Writing LoRA adapters that other tools load: PEFT folders and kohya files.

Every module is written with its scale folded into the factors (scale 1: PEFT's alpha
equals the module's rank, kohya's ``.alpha`` equals r), split evenly (L = U sqrt(S),
R = sqrt(S) V^T) so that both factors keep the same dynamic range in a narrow dtype.

PEFT: ``adapter_config.json`` with ``r`` and ``lora_alpha`` the most common rank,
``rank_pattern`` and ``alpha_pattern`` for the others (keys are the module names,
regex-escaped, so that PEFT's suffix match hits exactly that module),
``target_modules`` the factored modules, ``modules_to_save`` the modules stored whole,
``bias`` ``lora_only`` when a factored module's bias is saved; and
``adapter_model.safetensors`` with ``base_model.model.<module>.lora_A.weight`` (r x in)
and ``.lora_B.weight`` (out x r). kohya: ``<name>.lora_down.weight`` (r x in, reshaped
back to r x in x kh x kw for a conv), ``<name>.lora_up.weight``, ``<name>.alpha``.
"""

from __future__ import annotations

import json
import re
from collections import Counter

import numpy as np

from cond.formats.lora import PEFT_CONFIG, PEFT_PREFIX, PEFT_WEIGHTS


def write_peft(plan, folder, modules, whole=None, config=None):
    """A PEFT adapter folder through the run's output ``plan`` (which has planned ``folder``).

    Parameters
    ----------
    plan : cond.formats.outputs.OutputPlan
    folder : str
    modules : list of (name, left, right) or (name, left, right, kind)
        left (out x r) and right (r x in) in the dtype to store; dW = left @ right. ``kind``
        ``embedding`` writes ``lora_embedding_A`` = left^T and ``lora_embedding_B`` = right^T
        (PEFT's embedding delta is (B A)^T); ``transposed`` (a ``fan_in_fan_out`` layer, whose
        config must say so) writes lora_A = left^T, lora_B = right^T.
    whole : dict, optional
        ``{key: array}`` stored as they are (keys already ``base_model.model.``-prefixed):
        modules saved whole and the biases of factored modules.
    config : dict, optional
        Extra fields of ``adapter_config.json`` (``base_model_name_or_path``, ``modules_to_save``).
    """
    from safetensors.numpy import save_file

    whole = dict(whole or {})
    modules = [(*m, "linear") if len(m) == 3 else tuple(m) for m in modules]
    ranks = {name: int(left.shape[1]) for name, left, _, _ in modules}
    default = Counter(ranks.values()).most_common(1)[0][0] if ranks else 1
    pattern = {re.escape(name): r for name, r in ranks.items() if r != default}
    doc = {
        "peft_type": "LORA",
        "r": default,
        "lora_alpha": default,
        "rank_pattern": pattern,
        "alpha_pattern": dict(pattern),
        "use_rslora": False,
        "use_dora": False,
        "fan_in_fan_out": False,
        "lora_dropout": 0.0,
        "bias": "lora_only" if any(".base_layer." in k for k in whole) else "none",
        "target_modules": sorted(ranks),
        "modules_to_save": None,
        "init_lora_weights": True,
        "inference_mode": True,
        "task_type": None,
        **(config or {}),
    }
    tensors = {}
    for name, left, right, kind in modules:
        if kind == "embedding":
            tensors[f"{PEFT_PREFIX}{name}.lora_embedding_A"] = np.ascontiguousarray(left.T)
            tensors[f"{PEFT_PREFIX}{name}.lora_embedding_B"] = np.ascontiguousarray(right.T)
        elif kind == "transposed":
            tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(left.T)
            tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(right.T)
        else:
            tensors[f"{PEFT_PREFIX}{name}.lora_A.weight"] = np.ascontiguousarray(right)
            tensors[f"{PEFT_PREFIX}{name}.lora_B.weight"] = np.ascontiguousarray(left)
    tensors.update({k: np.ascontiguousarray(v) for k, v in whole.items()})
    config_path = plan.member(folder, PEFT_CONFIG)
    weights_path = plan.member(folder, PEFT_WEIGHTS)
    with plan.writing(weights_path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})
    with plan.writing(config_path) as tmp, open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
    return [weights_path, config_path]


def write_kohya(plan, path, modules, conv_shapes=None, whole=None, without_alpha=()):
    """A kohya / diffusers LoRA file: ``modules`` as (name, left, right) with scale 1 (alpha = r);
    ``conv_shapes`` maps a conv module's name to its down factor's trailing (in, kh, kw); modules in
    ``without_alpha`` get no ``.alpha`` key (their input had none: scale 1 by kohya's convention)."""
    from safetensors.numpy import save_file

    tensors = dict(whole or {})
    for name, left, right, *_ in modules:
        r = int(left.shape[1])
        down = right
        up = left
        if conv_shapes and name in conv_shapes:
            down = right.reshape(r, *conv_shapes[name])
            up = left.reshape(left.shape[0], r, 1, 1)
        tensors[f"{name}.lora_down.weight"] = np.ascontiguousarray(down)
        tensors[f"{name}.lora_up.weight"] = np.ascontiguousarray(up)
        if name not in without_alpha:
            tensors[f"{name}.alpha"] = np.array(float(r), dtype=right.dtype if right.dtype.kind == "f" else np.float32)
    with plan.writing(path) as tmp:
        save_file(tensors, tmp)
    return [path]
