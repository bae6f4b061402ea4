"""The allowed values of every option, in one place that imports nothing heavy: the
commands validate against them, and cli/ builds its choices from them (``cond --help``
imports no numpy)."""

from cond.formats.detect import FORMATS as INPUT_FORMATS  # noqa: F401 - the readers' own list, re-exported

OUTPUT_FORMATS = ("table", "json", "jsonl", "csv")
DEVICES = ("cpu", "cuda")

SORT_KEYS = (
    "file",
    "name",
    "kappa",
    "sigma_max",
    "sigma_min",
    "stable_rank",
    "effective_rank",
    "alpha",
    "frobenius_norm",
    "zero_fraction",
    "seconds",
)

ESTIMATORS = ("incremental", "weyl", "residual", "exact")
AXES = ("auto", "cols", "rows")
METHODS = ("svd", "fisher", "whiten")
FISHER_AXES = ("in", "out", "both")
ERROR_SCOPES = ("matrix", "cluster")
STORAGE_DTYPES = {
    "f64": "F64",
    "float64": "F64",
    "f32": "F32",
    "float32": "F32",
    "f16": "F16",
    "float16": "F16",
    "bf16": "BF16",
    "bfloat16": "BF16",
    "int8": "I8",
    "i8": "I8",
}

ROUNDINGS = ("auto", "gptq", "nearest")  # group-wise codes: GPTQ with Grams, or round to nearest

SAMPLE_METHODS = ("leverage", "root-leverage", "lewis", "sensitivity", "augmented", "uniform")
SCORE_MODES = ("exact", "sketch", "sketch-srht")
SAMPLE_FORMATS = ("tsv", "csv", "jsonl", "json", "npy")
EMITS = ("indices", "rows")


def regex_option(flag, value):
    """A regular-expression option compiled, or None; one UsageError recipe for every command."""
    import re

    from cond.errors import UsageError

    if value is None:
        return None
    try:
        return re.compile(value)
    except re.error as exc:
        raise UsageError(f"`{flag}` is not a valid regular expression ({exc}); got {value!r}") from None
