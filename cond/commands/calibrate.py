"""``cond calibrate``: input Grams (and Fisher) of a Hugging Face checkpoint's Linear layers from text.

Needs the optional extra ``cond[torch]`` (torch and transformers); nothing here imports
them until the command runs. The model and tokenizer are read from ``MODEL_DIR``
only (``local_files_only``: never a download). The text is one passage per
non-empty line, tokenised in batches with padding and truncation; the attention
mask keeps padding tokens out of every Gram (:meth:`Calibrator.masked`).

Fisher without labels (``fisher``): the model's output is taken as the mean of
its last hidden states over the real tokens, f(x), and given a Gaussian
likelihood N(f(x), I). A label sampled from the model's own prediction,
y = f(x) + z with z ~ N(0, I), gives the loss 0.5 ||y - f(x)||^2 whose gradient
is -J^T z; its square has expectation diag(J^T J), the model's true Fisher for
that likelihood (not the "empirical" Fisher of fixed labels). One z per sequence
per batch: the cross terms between sequences vanish in expectation. Seeded.

The files are keyed by the checkpoint's own tensor names (a wrapper's prefix such as
``bert.`` added or stripped, every layer checked against the checkpoint) and record
per layer the rows (real tokens) each Gram was built from, which
``cond compress`` checks against the layer's input dimension.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from cond.commands.choices import regex_option
from cond.commands.result import Result
from cond.commands.validate import check_seed
from cond.errors import InputError, UsageError
from cond.formats.outputs import OutputPlan

SCHEMA = "cond.calibrate/2"


@dataclass(frozen=True)
class CalibrateResult(Result):
    """What ``cond calibrate`` wrote; schema ``cond.calibrate/2`` (``input`` is the model folder,
    ``output`` the Gram file; ``/1`` called them ``model`` and ``grams``)."""

    SCHEMA = SCHEMA
    input: str
    output: str
    fisher: object
    sequences: int
    tokens: int
    layers: int
    fewest_rows: int
    widest_input: int
    seconds: float
    skipped: tuple = ()  # Linear modules of the loaded model with no weight in the checkpoint
    options: dict = field(default_factory=dict)
    short: tuple = ()  # (layer, rows, inputs, row unit) of singular Grams, worst first

    def to_dict(self) -> dict:
        return self.document(
            output=self.output,
            fisher=self.fisher,
            sequences=self.sequences,
            tokens=self.tokens,
            layers=self.layers,
            fewest_rows=self.fewest_rows,
            widest_input=self.widest_input,
            skipped=list(self.skipped),
            short=[dict(layer=n, rows=r, inputs=i, unit=u) for n, r, i, u in self.short],
        )


def read_passages(path):
    """The non-empty lines of a UTF-8 text file (``-``: standard input), stripped."""
    import sys

    try:
        if path == "-":
            text = sys.stdin.read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except UnicodeDecodeError as exc:
        raise InputError(f"is not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror})", path=path) from None
    passages = [line.strip() for line in text.splitlines() if line.strip()]
    if not passages:
        raise InputError("holds no text (one passage per non-empty line)", path=path)
    return passages


def calibrate(
    model_dir,
    text,
    output,
    *,
    fisher=None,
    batch_size=16,
    max_length=128,
    include=None,
    seed=0,
    force=False,
    progress=None,
) -> CalibrateResult:
    """Accumulate input Grams (and, with ``fisher``, a label-free Fisher) over ``text``.

    Parameters
    ----------
    model_dir : str
        A Hugging Face model folder (config.json, weights, tokenizer files).
    text : str
        A UTF-8 file, one passage per non-empty line (``-``: standard input).
    output : str
        The Gram file to write (safetensors).
    fisher : str, optional
        Also write the Fisher file here.
    batch_size, max_length : int
        Passages per forward pass; tokens per passage (longer ones are truncated).
    include : str, optional
        Regular expression on Linear module names (``re.search``).
    seed : int
        Seed of the sampled labels of the Fisher.
    force : bool
    progress : callable, optional
        ``progress(done, total)`` per batch.

    Returns
    -------
    CalibrateResult
    """
    started = time.perf_counter()
    if batch_size < 1 or max_length < 2:
        raise UsageError(f"`--batch-size` must be >= 1 and `--max-length` >= 2; got {batch_size}, {max_length}")
    from cond.formats.sources import source_kind

    source_kind(model_dir, "calibrate")
    model_dir = os.fspath(model_dir)
    if not os.path.isfile(os.path.join(model_dir, "config.json")):
        raise InputError("is not a Hugging Face model folder (no config.json)", path=model_dir)
    _check_weights(model_dir)
    pattern = regex_option("--include", include)
    seed = check_seed(seed)
    with OutputPlan([model_dir, text], force=force) as plan:
        output = plan.file(output, "--output")
        fisher = None if fisher is None else plan.file(fisher, "--fisher")
        return _calibrate(
            plan, model_dir, text, output, fisher, pattern, batch_size, max_length, seed, progress, started
        )


def _calibrate(plan, model_dir, text, output, fisher, pattern, batch_size, max_length, seed, progress, started):
    passages = read_passages(text)
    torch, transformers = _extra()
    from cond.torch.calibrator import Calibrator

    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot be loaded by transformers ({str(exc).splitlines()[0]})", path=model_dir) from None
    model.eval()
    cal = Calibrator(model, include=(lambda name, m: bool(pattern.search(name))) if pattern else None)
    generator = torch.Generator().manual_seed(int(seed))
    batches = [passages[i : i + batch_size] for i in range(0, len(passages), batch_size)]
    with cal:
        for done, batch in enumerate(batches, 1):
            enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            with cal.masked(enc["attention_mask"]):
                _forward(torch, model, enc, cal, generator if fisher is not None else None)
            if progress:
                progress(done, len(batches))
    try:  # layers the loader added (a pooler a masked-LM checkpoint lacks) are not the checkpoint's
        names = cal.names(model_dir, missing="skip")
        cal.save(fisher=fisher, grams=str(output), checkpoint=model_dir, missing="skip", plan=plan)
    except ValueError as exc:
        raise InputError(str(exc), path=model_dir) from None
    widest = max(cal.layers[k].in_features for k in names)
    short = _short_layers(cal, names)
    skipped = tuple(sorted(set(cal.layers) - set(names)))
    return CalibrateResult(
        model_dir,
        str(output),
        fisher,
        cal.sequences,
        cal.tokens,
        len(names),
        min(cal.rows[k] for k in names),
        widest,
        time.perf_counter() - started,
        skipped,
        dict(batch_size=batch_size, max_length=max_length, include=pattern and pattern.pattern, seed=seed),
        short,
    )


def _short_layers(cal, names):
    """Layers whose Gram has fewer rows than inputs (singular), worst shortfall first: (checkpoint
    name, rows, inputs, what a row is: tokens, or passages for a pooler)."""
    from cond.formats.calibration_file import row_unit

    short = [
        (names[k], cal.rows[k], cal.layers[k].in_features, row_unit(cal.rows[k], cal.tokens, cal.sequences))
        for k in names
        if cal.rows[k] < cal.layers[k].in_features
    ]
    return tuple(sorted(short, key=lambda t: t[1] - t[2]))


def _check_weights(model_dir):
    """The folder's safetensors weights, every header checked by cond's reader (a corrupt or
    truncated file is one line naming it); pickled weights alone are refused, never loaded."""
    from cond.formats import open_entries

    if not any(name.endswith(".safetensors") for name in os.listdir(model_dir)):
        raise InputError("holds no .safetensors weights (cond never loads pickled pytorch_model.bin)", path=model_dir)
    with open_entries(model_dir) as entries:
        for _ in entries:
            pass


def _forward(torch, model, enc, cal, generator):
    if generator is None:
        with torch.no_grad():
            model(**enc)
        return
    model.zero_grad()
    hidden = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
    z = torch.randn(pooled.shape, generator=generator, dtype=pooled.dtype)
    (pooled * z).sum().backward()  # gradient J^T z: a label sampled from the model's Gaussian output
    cal.step()


def _extra():
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise UsageError(
            f"cond calibrate needs torch and transformers ({exc.name} is missing): pip install 'cond[torch]'"
        ) from None
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    return torch, transformers
