"""Accumulate the inputs of ``cond compress --method fisher|whiten`` from a PyTorch model.

Imported only when used; torch is not a dependency of cond.

>>> from cond.torch.calibrator import Calibrator                         # doctest: +SKIP
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
or with ``save(..., checkpoint=...)`` the checkpoint's (a wrapper's prefix added
or stripped). Padding tokens are left out inside ``with cal.masked(mask):``.
"""

from __future__ import annotations

import contextlib
import json
import os

from cond.formats.calibration_file import write_calibration
from cond.torch.names import align, mapper


class Calibrator:
    """Forward hooks (input Grams) and a gradient step (Fisher) on every Linear layer of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
    include : callable, optional
        ``include(name, module)`` chooses the Linear layers (default: all).

    Padding: inside ``with cal.masked(attention_mask):`` a layer input whose leading
    dimensions are the mask's (batch, tokens) contributes only the rows where the mask
    is non-zero, so padding tokens add nothing to the Grams; ``rows`` counts, per
    layer, the rows that did contribute, and ``tokens`` the unmasked tokens seen.
    """

    def __init__(self, model, include=None):
        import torch

        self.model = model
        self.layers = {
            name: module
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and (include is None or include(name, module))
        }
        if not self.layers:
            raise ValueError("`model` has no torch.nn.Linear layer to calibrate")
        self.grams = {}
        self.fisher = {}
        self.rows = {}
        self.tokens = 0
        self.sequences = 0
        self.steps = 0
        self._mask = None
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

    @contextlib.contextmanager
    def masked(self, attention_mask):
        """Count only the unmasked tokens of the forward passes inside (mask: batch x tokens, 1 = real)."""
        mask = attention_mask.detach().bool()
        self._mask = mask
        self.tokens += int(mask.sum())
        self.sequences += int(mask.shape[0])
        try:
            yield self
        finally:
            self._mask = None

    def _gram_hook(self, name):
        import torch

        def hook(module, inputs, output):
            with torch.no_grad():
                x = inputs[0].detach()
                mask = self._mask
                if mask is not None and tuple(x.shape[:-1]) == tuple(mask.shape):
                    x = x[mask.to(x.device)]
                x = x.reshape(-1, module.in_features).to(torch.float64)
                gram = (x.T @ x).cpu().numpy()
            self.grams[name] = self.grams.get(name, 0) + gram
            self.rows[name] = self.rows.get(name, 0) + int(x.shape[0])

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

    def names(self, checkpoint=None, missing="error"):
        """Module name -> the weight's name in ``checkpoint`` (tensor names, or a path cond reads); the
        model's own ``<module>.weight`` without one. A wrapper's prefix is added or stripped
        (:func:`cond.torch.names.align`); a layer the checkpoint lacks is refused, or with
        ``missing="skip"`` left out (a head the loader added, say)."""
        ours = {name: f"{name}.weight" for name in self.layers}
        if checkpoint is None:
            return ours
        if isinstance(checkpoint, (str, os.PathLike)):
            from cond.formats import open_entries

            with open_entries(str(checkpoint)) as entries:
                checkpoint = [e.name for e in entries]
        theirs = set(checkpoint)
        to_theirs = mapper(*align(ours.values(), theirs))
        named = {name: to_theirs(weight) for name, weight in ours.items()}
        lost = [ours[n] for n, t in named.items() if t not in theirs]
        if missing == "skip":
            return {n: t for n, t in named.items() if t in theirs}
        if lost:
            raise ValueError(
                f"{len(lost)} calibrated weights have no tensor in the checkpoint "
                f"({', '.join(lost[:3])}{' ...' if len(lost) > 3 else ''}); pass `include` "
                "to calibrate only the checkpoint's layers"
            )
        return named

    def save(self, fisher=None, grams=None, checkpoint=None, missing="error", plan=None):
        """Write the accumulated Fisher and/or Grams as float32 safetensors (atomically), keyed by
        the checkpoint's tensor names (see :meth:`names`), with row and token counts in the metadata.
        ``plan``: the run's :class:`cond.formats.outputs.OutputPlan` (which has checked the paths)."""
        if fisher is None and grams is None:
            raise ValueError("give `fisher`, `grams` or both")
        names = self.names(checkpoint, missing)
        if not names:
            raise ValueError("no calibrated layer has a weight in the checkpoint")
        counts = dict(tokens=str(self.tokens), sequences=str(self.sequences), steps=str(self.steps))
        if fisher is not None:
            if not self.fisher:
                raise ValueError("no gradients were accumulated: call `step()` after each `backward()`")
            write_calibration(
                plan, fisher, {names[k]: v for k, v in self.fisher.items() if k in names}, dict(kind="fisher", **counts)
            )
        if grams is not None:
            if not self.grams:
                raise ValueError("no inputs were seen: run the model inside `with Calibrator(model)`")
            rows = json.dumps({names[k]: v for k, v in self.rows.items() if k in names})
            write_calibration(
                plan,
                grams,
                {names[k]: v for k, v in self.grams.items() if k in names},
                dict(kind="gram", rows=rows, **counts),
            )
