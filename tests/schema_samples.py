"""Result objects of every command, made from the fixtures, for the JSON Schemas in docs/schemas/.

``python tests/schema_samples.py --write`` drafts docs/schemas/<id>.json from these samples
(types inferred, every key seen required unless some sample lacks it, no other key allowed);
the drafts are then read and committed as the contract. tests/test_schemas.py validates fresh
samples against the committed files, so a field added, removed or retyped fails until the
schema, the schema id and CHANGELOG.md move with it.
"""

import json
import os
import sys
import tempfile

import numpy as np
from safetensors.numpy import save_file

import cond

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCHEMAS = os.path.join(ROOT, "docs", "schemas")


def _adapters(folder, count=3):
    rng = np.random.default_rng(5)
    paths = []
    for i in range(count):
        tensors = {}
        for module, (out, inp) in {"query": (24, 16), "out": (16, 24)}.items():
            tensors[f"base_model.model.{module}.lora_A.weight"] = rng.standard_normal((4, inp)).astype(np.float32)
            tensors[f"base_model.model.{module}.lora_B.weight"] = rng.standard_normal((out, 4)).astype(np.float32)
        path = os.path.join(folder, f"a{i}")
        os.makedirs(path)
        save_file(tensors, os.path.join(path, "adapter_model.safetensors"))
        with open(os.path.join(path, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": ["out", "query"]}, f)
        paths.append(path)
    return paths


def samples(tmp):
    """{schema id: [result dicts]} from the fixtures and a few planted adapters."""
    fx = os.path.join(ROOT, "fixtures")
    mlp = os.path.join(fx, "digits_mlp.safetensors")
    out = {}

    def add(result):
        doc = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        out.setdefault(doc["schema"], []).append(doc)
        return result

    add(cond.inspect(mlp))
    add(cond.inspect(mlp, fail_above=5.0, spectra=os.path.join(tmp, "s.npz")))
    small = os.path.join(tmp, "c.safetensors")
    add(cond.compress(mlp, small, max_error=0.3, min_size=100))
    add(cond.compress(mlp, os.path.join(tmp, "q.safetensors"), dtype="int4", group_size=32, min_size=100))
    add(cond.compress(mlp, os.path.join(tmp, "b.safetensors"), budget_bytes=0.3, min_size=100))
    add(cond.inspect(small))
    add(cond.expand(small, os.path.join(tmp, "dense")))
    design = os.path.join(fx, "design.csv")
    add(cond.sample(design, method="leverage", size=20, seed=1, notice=None))
    from cond.commands.collinearity import collinearity
    from cond.commands.dedup import dedup

    add(collinearity(os.path.join(fx, "stack72.csv"), notice=None))
    add(dedup(design, notice=None))
    adapters = _adapters(tmp)
    add(cond.inspect(adapters[0]))
    add(cond.compress(adapters[0], os.path.join(tmp, "resized"), max_error=0.3))
    add(cond.compress(adapters, os.path.join(tmp, "collection.safetensors"), max_error=0.3))
    try:  # calibrate runs a model: only with torch and transformers
        import transformers  # noqa: F401

        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from test_calibrate import _corpus, _tiny_bert

        from cond.commands.calibrate import calibrate

        model = os.path.join(tmp, "bert")
        os.makedirs(model)
        _tiny_bert(model)
        import pathlib

        _corpus(pathlib.Path(tmp) / "text.txt", 40)
        add(calibrate(model, os.path.join(tmp, "text.txt"), os.path.join(tmp, "g.safetensors")))
    except ImportError:
        pass
    return out


def infer(values):
    """A JSON Schema for every value in ``values`` (the samples of one place in the documents)."""
    types = set()
    objects, arrays = [], []
    for v in values:
        if v is None:
            types.add("null")
        elif isinstance(v, bool):
            types.add("boolean")
        elif isinstance(v, (int, float)):
            types.add("number")
        elif isinstance(v, str):
            types.add("string")
        elif isinstance(v, list):
            types.add("array")
            arrays.append(v)
        else:
            types.add("object")
            objects.append(v)
    schema = {"type": sorted(types) if len(types) > 1 else next(iter(types))}
    if objects:
        keys = sorted(set().union(*objects))
        schema["properties"] = {k: infer([o[k] for o in objects if k in o]) for k in keys}
        schema["required"] = [k for k in keys if all(k in o for o in objects)]
        schema["additionalProperties"] = False
    if arrays:
        items = [x for a in arrays for x in a]
        if items:
            schema["items"] = infer(items)
    return schema


# Places whose keys come from the input, or which another document defines: left open.
OPEN = {
    "cond.inspect/1": {
        "compressed": {
            "type": ["object", "null"],
            "description": "the manifest of a cond-lowrank file: see File formats",
        }
    },
}


def write():
    os.makedirs(SCHEMAS, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        found = samples(tmp)
    for schema_id, docs in sorted(found.items()):
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", "$id": schema_id,
                  "title": f"{schema_id}: the object `--format json` prints", **infer(docs)}  # fmt: skip
        schema["properties"]["schema"] = {"const": schema_id}
        schema["properties"].update(OPEN.get(schema_id, {}))
        path = os.path.join(SCHEMAS, schema_id.replace("/", "-") + ".json")
        with open(path, "w") as f:
            json.dump(schema, f, indent=1)
            f.write("\n")
        print(path)


if __name__ == "__main__" and "--write" in sys.argv:
    write()
