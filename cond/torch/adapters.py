"""Loading a LoRA adapter onto a model through ``peft`` (the optional extra): a PEFT folder as it
is, or one adapter of a ``cond-lora-collection/1`` file by name (written out as PEFT would save
it, into a temporary folder that is removed once peft has read it)."""

from __future__ import annotations

import os
import tempfile


def load_adapter(model, path, name=None):
    """``peft.PeftModel`` of ``model`` with the adapter at ``path`` (``name``: which adapter of a
    collection; for a collection it is required, and it names the loaded adapter too).

    Raises
    ------
    cond.errors.UsageError
        A collection without ``name``, or peft missing.
    """
    from cond.errors import UsageError
    from cond.formats.lora_collection import is_collection, write_adapters
    from cond.formats.outputs import OutputPlan

    try:
        import peft
    except ImportError:
        raise UsageError("loading an adapter needs peft: pip install 'cond[torch]'") from None
    if not is_collection(path):
        return peft.PeftModel.from_pretrained(model, os.fspath(path))
    if name is None:
        raise UsageError("a LoRA collection holds several adapters: give `name`", path=os.fspath(path))
    with tempfile.TemporaryDirectory(prefix="cond-adapter-") as folder:
        target = os.path.join(folder, "out")
        with OutputPlan([path]) as plan:
            plan.folder(target, "--output")
            write_adapters(plan, path, target, adapter=name)
        return peft.PeftModel.from_pretrained(model, os.path.join(target, name), adapter_name=name)
