"""Property tests (Hypothesis) where the inputs are open-ended: shapes, spectra, dtypes,
storage paths, bounds, designs, text fields and file headers.

Each property is judged by an independent oracle: mpmath for singular values (through
the catalogue's checker), the expanded file measured against the original in float64,
the hat-matrix diagonal from LAPACK's SVD, Python's ``float()`` for text. Found bugs are
pinned with ``@example``. Profiles (tests/conftest.py): ``ci`` by default (seeded, a few
dozen examples), ``long`` for a local hunt: ``pytest -m hypothesis --hypothesis-profile long``.
"""

import csv
import io
import json
import os
import struct
import tempfile

import naive
import numpy as np
from cases import STORAGE, Case
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from invariants import assert_within_bound, check_inspect_row, check_sample
from oracles import mp_singular_values
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.commands.sample import sample
from cond.errors import InputError, UsageError
from cond.formats import open_entries

runner = CliRunner()
U_OF = {"f64": 2.0**-53, "f32": 2.0**-24, "f16": 2.0**-11, "bf16": 2.0**-8}


def prescribed(m, n, log_kappa, seed):
    """U diag(s) V^T with s = geomspace(1, 10^-log_kappa) and random orthogonal U, V."""
    rng = np.random.default_rng(seed)
    k = min(m, n)
    u, _ = np.linalg.qr(rng.standard_normal((m, k)))
    v, _ = np.linalg.qr(rng.standard_normal((n, k)))
    return (u * np.geomspace(1.0, 10.0**-log_kappa, k)) @ v.T


# ------------------------------------------------------------------ inspect


@given(
    m=st.integers(1, 24),
    n=st.integers(1, 24),
    log_kappa=st.floats(0, 16),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from(sorted(STORAGE)),
    path=st.sampled_from(["api", "npy", "safetensors", "csv"]),
    scale=st.sampled_from([1.0, 2.0**-600, 2.0**600]),
)
@example(m=24, n=3, log_kappa=6, seed=0, dtype="f64", path="api", scale=1.0)  # tall, kappa 1e6: the overwrite bug
# found by the long profile: near-orthogonal, every LAPACK driver 29.5 eps off sigma_min (dbdsqr's tolerance)
@example(m=22, n=22, log_kappa=1e-10, seed=1982, dtype="f64", path="api", scale=1.0)
def test_inspect_keeps_its_promise(m, n, log_kappa, seed, dtype, path, scale):
    a = prescribed(m, n, log_kappa, seed) * scale
    stored = np.ascontiguousarray(a.astype(STORAGE[dtype]))
    exact = stored.astype(np.float64)
    assume(np.all(np.isfinite(exact)) and np.any(exact != 0))
    sigma = np.array([float(v) for v in mp_singular_values(exact)])
    case = Case("h", exact, dtype, sigma, 0.0, "mpmath", frozenset())
    with tempfile.TemporaryDirectory() as tmp:
        if path == "api":
            row, u = cond.inspect(stored).matrices[0].row(), U_OF[dtype]
        else:
            file = os.path.join(tmp, f"h.{path}")
            if path == "npy":
                np.save(file, stored if dtype != "bf16" else exact)
                u = U_OF[dtype if dtype != "bf16" else "f64"]
            elif path == "safetensors":
                save_file({"h": stored}, file)
                u = U_OF[dtype]
            else:
                with open(file, "w") as f:
                    f.write("\n".join(",".join(repr(float(v)) for v in r) for r in exact) + "\n")
                u = None
            row = cond.inspect(file, header=False if path == "csv" else None).matrices[0].row()
    assert check_inspect_row(case, row, u) == []


# ------------------------------------------------------------------ compress -> expand


@st.composite
def checkpoints(draw):
    """A few matrices of one dtype: low rank plus noise, some sharing a basis."""
    dtype = draw(st.sampled_from(["f32", "f16", "bf16"]))
    rows = draw(st.integers(16, 64))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((rows, 6)))[0]
    tensors = {}
    for i in range(draw(st.integers(1, 4))):
        cols = draw(st.integers(16, 64))
        shared = draw(st.booleans())
        left = basis if shared else np.linalg.qr(rng.standard_normal((rows, 6)))[0]
        w = left @ rng.standard_normal((6, cols)) + draw(st.sampled_from([0.0, 1e-3, 0.05])) * rng.standard_normal(
            (rows, cols)
        )
        tensors[f"layer{i}.weight"] = (w * draw(st.sampled_from([1.0, 1e-3, 30.0]))).astype(STORAGE[dtype])
    return tensors


@given(
    tensors=checkpoints(),
    bound=st.floats(0.005, 0.6),
    cluster=st.booleans(),
    factor_dtype=st.sampled_from([None, "f32", "bf16", "f16", "int8"]),
    budget=st.sampled_from([None, None, 0.6, 1.0]),
)
def test_every_expanded_matrix_is_within_its_bound(tensors, bound, cluster, factor_dtype, budget):
    with tempfile.TemporaryDirectory() as tmp:
        src, small, dense = (os.path.join(tmp, f) for f in ("m.safetensors", "c.safetensors", "d.safetensors"))
        save_file(tensors, src)
        try:
            cond.compress(src, small, max_error=bound, cluster=cluster, min_size=1, dtype=factor_dtype, budget=budget)
        except InputError as exc:  # the one refusal allowed: factors that overflow the chosen dtype
            assert "overflow" in str(exc)
            return
        except UsageError as exc:  # and a budget below what the bound allows
            assert budget is not None and "below the least share" in str(exc)
            return
        cond.expand(small, dense)
        assert_within_bound(tensors, load_file(dense), bound)


@given(
    tensors=checkpoints(),
    bound=st.floats(0.005, 0.6),
    bits=st.sampled_from([None, 2, 3, 4, 6, 8]),
    group=st.sampled_from([32, 64]),
    symmetric=st.booleans(),
    correction=st.sampled_from([None, 0, 2]),
    factor_dtype=st.sampled_from([None, "int8", "bf16"]),
    budget=st.sampled_from([None, 0.3, 0.6]),
)
@settings(max_examples=40)
def test_every_group_quantized_matrix_is_within_its_bound(
    tensors, bound, bits, group, symmetric, correction, factor_dtype, budget
):
    """Group-wise forms (uniform widths with the smallest correction meeting the bound, or every form
    under a byte budget) keep the bound on what ``cond expand`` writes."""
    options = dict(symmetric=symmetric, correction_dtype=factor_dtype)
    if bits is None or budget is not None:
        options.update(budget_bytes=budget or 0.6)  # every form competes
    if bits is not None:
        options.update(dtype=f"int{bits}", group_size=group)
        if budget is None:
            options.update(correction_rank=correction)
    with tempfile.TemporaryDirectory() as tmp:
        src, small, dense = (os.path.join(tmp, f) for f in ("m.safetensors", "c.safetensors", "d.safetensors"))
        save_file(tensors, src)
        try:
            cond.compress(src, small, max_error=bound, min_size=1, **options)
        except UsageError as exc:  # the one refusal allowed: a budget below what the bound allows
            assert "below the least share" in str(exc)
            return
        cond.expand(small, dense)
        assert_within_bound(tensors, load_file(dense), bound)


# ------------------------------------------------------------------ sample


@given(
    n=st.integers(8, 300),
    d=st.integers(1, 6),
    log_kappa=st.floats(0, 6),
    seed=st.integers(0, 2**16),
    size=st.integers(1, 60),
    method=st.sampled_from(["leverage", "root-leverage", "uniform"]),
)
def test_sample_scores_and_weights(n, d, log_kappa, seed, size, method):
    assume(d <= n)
    size = min(size, n)
    a = prescribed(n, d, log_kappa, seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "a.npy")
        np.save(path, a)
        result = sample(path, size=size, method=method, seed=seed)
    hat = naive.hat_diagonal(a)
    expected = {"leverage": hat, "root-leverage": np.sqrt(hat), "uniform": np.ones(n)}[method]
    # leverage from a backward-stable QR: error about n eps kappa^2 relative to the largest score
    np.testing.assert_allclose(result.scores, expected, rtol=0, atol=1e-9 * 10 ** (2 * log_kappa) * expected.max())
    check_sample(result, size)


# ------------------------------------------------------------------ text


def _float_texts():
    finite = st.floats(allow_nan=False, allow_infinity=False)
    return st.one_of(
        finite.map(repr),
        finite.map(lambda v: f"{v:.6g}"),
        finite.map(lambda v: f"{v:.18e}"),
        finite.map(lambda v: f"{v:+.3E}"),
        st.integers(-(10**25), 10**25).map(str),
        st.tuples(finite, st.sampled_from(["", " ", "  "])).map(lambda t: f"{t[1]}{t[0]!r}{t[1]}"),
        finite.map(lambda v: f'"{v!r}"'),
    )


def _read(text, delimiter=","):
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "t.csv" if delimiter == "," else "t.tsv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        with open_entries(path, header=False) as entries:
            return next(iter(entries)).load()


def _expected(text, delimiter):
    """The oracle: the CSV reading of the text (quotes honoured, spaces before a quote allowed),
    then Python's float() of each field; ValueError where float() refuses a field."""
    rows = [
        r
        for r in csv.reader(io.StringIO(text), delimiter=delimiter, skipinitialspace=True)
        if any(f.strip() for f in r)
    ]
    return np.array([[float(f.strip()) for f in r] for r in rows])


@given(
    st.lists(st.lists(_float_texts(), min_size=3, max_size=3), min_size=1, max_size=20),
    st.sampled_from([",", "\t"]),
    st.sampled_from(["\n", "\r\n"]),
)
def test_text_of_numbers_reads_as_python_floats(rows, delimiter, newline):
    text = newline.join(delimiter.join(r) for r in rows) + newline
    got = _read(text, delimiter)
    np.testing.assert_array_equal(got, _expected(text, delimiter))  # bit for bit: float() is the oracle


@given(
    st.lists(
        st.lists(st.text(alphabet='0123456789.eE+- "xna_,\t', max_size=8), min_size=1, max_size=4),
        min_size=1,
        max_size=6,
    )
)
@example([["1_000"]])  # float() takes the underscore; cond refuses it with a clear error
@example([['"1,000"', "2"]])
@example([['0"']])  # found by the long profile: a stray quote was read as 0
@example([['"1.5']])
def test_any_text_is_python_floats_or_one_clear_error(rows):
    text = "\n".join(",".join(r) for r in rows) + "\n"
    try:
        expected = _expected(text, ",")
    except ValueError:  # float() refuses a field (or the rows are ragged): cond must refuse too
        expected = None
    try:
        got = _read(text)
    except InputError as exc:
        assert "\n" not in exc.one_line() and "t.csv" in exc.one_line()
        return
    assert expected is not None, f"cond read {text!r}, which float() refuses, as {got!r}"
    np.testing.assert_array_equal(got, expected)


# ------------------------------------------------------------------ file headers


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=20,
)
tensor_specs = st.fixed_dictionaries(
    {},
    optional={
        "dtype": st.sampled_from(["F32", "F16", "BF16", "F64", "I8", "Q7", 5, None]),
        "shape": st.one_of(st.lists(st.integers(-2, 2**40), max_size=3), json_values),
        "data_offsets": st.one_of(st.lists(st.integers(-8, 2**40), min_size=2, max_size=2), json_values),
    },
)
headers = st.one_of(json_values, st.dictionaries(st.text(max_size=4), st.one_of(tensor_specs, json_values), max_size=4))


def _run(args):
    result = runner.invoke(app, args)
    assert result.exit_code in (0, 1, 2), (result.exit_code, result.output[-500:])
    assert "Traceback" not in result.output and "internal error" not in result.output
    return result


@given(header=headers, data=st.binary(max_size=64), raw_len=st.none() | st.integers(0, 2**64 - 1))
def test_generated_safetensors_headers_never_crash(header, data, raw_len):
    blob = json.dumps(header).encode()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "g.safetensors")
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(blob) if raw_len is None else raw_len) + blob + data)
        for args in (
            ["inspect", path],
            ["compress", path, "--rank", "1", "-o", os.path.join(tmp, "o.safetensors")],
            ["expand", path, "-o", os.path.join(tmp, "dense")],
        ):
            _run(args)


@given(
    descr=st.one_of(
        st.sampled_from(["<f8", "<f4", "<f2", ">f8", "|b1", "<i4", "|O", "<c16", "<U3", "|V2"]), st.text(max_size=6)
    ),
    shape=st.one_of(st.lists(st.integers(0, 40), max_size=3).map(tuple), json_values.map(repr)),
    fortran=st.booleans(),
    body=st.binary(max_size=2048),
    version=st.sampled_from([1, 2]),
)
def test_generated_npy_headers_never_crash(descr, shape, fortran, body, version):
    text = "{" + f"'descr': {descr!r}, 'fortran_order': {fortran}, 'shape': {shape}, " + "}"
    text = text.encode("latin1", errors="replace")
    pad = (-(len(text) + 1 + (10 if version == 1 else 12))) % 64
    header = text + b" " * pad + b"\n"
    length = len(header).to_bytes(2 if version == 1 else 4, "little")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "g.npy")
        with open(path, "wb") as f:
            f.write(b"\x93NUMPY" + bytes([version, 0]) + length + header + body)
        _run(["inspect", path])
        _run(["sample", path, "--size", "1"])
