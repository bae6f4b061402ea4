"""``cond.torch``: the optional bridge to PyTorch (``pip install 'cond[torch]'``), imported only
when used.

- :mod:`cond.torch.runtime`: run a compressed file with factorised layers
  (:func:`load_factorised`, :func:`to_dense`, :class:`LowRankLinear`);
- :mod:`cond.torch.calibrator`: the input Grams and Fisher of a model's Linear layers
  (:class:`Calibrator`), written in the calibration format of :mod:`cond.formats.calibration_file`;
- :mod:`cond.torch.adapters`: a LoRA adapter (a PEFT folder, or one adapter of a
  collection by name) loaded onto a model through peft (:func:`load_adapter`);
- :mod:`cond.torch.names`: aligning a model's names with a checkpoint's (wrapper prefixes).

>>> import cond.torch                                                     # doctest: +SKIP
>>> model = cond.torch.load_factorised(model, "small.safetensors")        # doctest: +SKIP
>>> dense = cond.torch.to_dense(model)                                    # doctest: +SKIP

Importing this package imports no torch; the names below load their module on first use.
"""

_LAZY = {
    "LowRankLinear": "runtime",
    "GroupwiseLinear": "runtime",
    "load_factorised": "runtime",
    "to_dense": "runtime",
    "load_adapter": "adapters",
    "Calibrator": "calibrator",
    "align": "names",
    "mapper": "names",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"cond.torch.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'cond.torch' has no attribute {name!r}")
