"""Accumulate the inputs of ``cond compress --method fisher|whiten`` from a PyTorch model.

Imported only when used; torch is not a dependency of cond.

>>> from cond.integrations.torch import Calibrator                         # doctest: +SKIP
>>> with Calibrator(model) as cal:                                   # doctest: +SKIP
...     for x, y in loader:
...         model.zero_grad()
...         loss_fn(model(x), y).backward()
...         cal.step()          # adds every Linear weight's squared gradient
>>> cal.save(fisher="fisher.safetensors", grams="grams.safetensors")  # doctest: +SKIP

For every ``torch.nn.Linear`` the forward hook adds X^T X of the layer's inputs
(flattened to rows of length ``in_features``, in float64), and ``step()`` adds
the squared gradient of the weight: the empirical Fisher of the batches as the
public FWSVD implementations accumulate it (batches of one sample give the
per-sample Fisher). The names written are the model's own (``<module>.weight``),
which are the names in its ``state_dict`` and hence in the saved checkpoint.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np


class Calibrator:
    """Forward hooks (input Grams) and a gradient step (Fisher) on every Linear layer of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
    include : callable, optional
        ``include(name, module)`` chooses the Linear layers (default: all).
    """

    def __init__(self, model, include=None):
        import torch

        self.model = model
        self.layers = {name: module for name, module in model.named_modules()
                       if isinstance(module, torch.nn.Linear) and (include is None or include(name, module))}
        if not self.layers:
            raise ValueError("`model` has no torch.nn.Linear layer to calibrate")
        self.grams = {}
        self.fisher = {}
        self.rows = 0
        self.steps = 0
        self._handles = []

    def __enter__(self):
        for name, module in self.layers.items():
            self._handles.append(module.register_forward_hook(self._gram_hook(name)))
        return self

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles = []
        return False

    def _gram_hook(self, name):
        import torch

        def hook(module, inputs, output):
            with torch.no_grad():
                x = inputs[0].detach().reshape(-1, module.in_features).to(torch.float64)
                gram = (x.T @ x).cpu().numpy()
            self.grams[name] = self.grams.get(name, 0) + gram
            if name == next(iter(self.layers)):
                self.rows += x.shape[0]

        return hook

    def step(self):
        """Add the squared gradient of every calibrated weight (call after ``backward()``)."""
        import torch

        for name, module in self.layers.items():
            if module.weight.grad is None:
                continue
            with torch.no_grad():
                squared = (module.weight.grad.detach().to(torch.float64) ** 2).cpu().numpy()
            self.fisher[name] = self.fisher.get(name, 0) + squared
        self.steps += 1

    def save(self, fisher=None, grams=None):
        """Write the accumulated Fisher and/or Grams as float32 safetensors (atomically)."""
        if fisher is None and grams is None:
            raise ValueError("give `fisher`, `grams` or both")
        if fisher is not None:
            if not self.fisher:
                raise ValueError("no gradients were accumulated: call `step()` after each `backward()`")
            _write(fisher, self.fisher, dict(kind="fisher", steps=str(self.steps)))
        if grams is not None:
            if not self.grams:
                raise ValueError("no inputs were seen: run the model inside `with Calibrator(model)`")
            _write(grams, self.grams, dict(kind="gram", rows=str(self.rows)))


def _write(path, accumulated, metadata):
    from safetensors.numpy import save_file

    tensors = {f"{name}.weight": np.ascontiguousarray(value, dtype=np.float32)
               for name, value in accumulated.items()}
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".cond-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={f"cond.{k}": v for k, v in metadata.items()})
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
