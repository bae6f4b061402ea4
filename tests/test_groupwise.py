"""Group-wise quantized forms: packing, rounding, GPTQ, the low-rank correction, the file, the budget.

Oracles: GPTQ as Optimal Brain Quantization with the inverse Hessian eliminated column by
column (``naive.gptq_textbook``: no Cholesky, no blocks); Python-integer bit unpacking of
the written file (``checkpoints.naive_groupwise``); brute-force rounding over every code;
the correction's closed form from ``scipy.linalg.sqrtm`` and a full LAPACK SVD; brute force
over every allocation.
"""

import itertools
import json
import math

import numpy as np
import pytest
import scipy.linalg
from checkpoints import reconstruct
from hypothesis import given, settings
from hypothesis import strategies as st
from naive import gptq_textbook
from safetensors.numpy import load_file, save_file

import cond
from cond.errors import InputError
from cond.linalg.allocation import allocate
from cond.linalg.gptq import gptq
from cond.linalg.groupwise import CLIP_RATIOS, GroupSpec, group_params, pack, quantize_nearest, unpack


def gram_of(rng, n, rows=None):
    """X^T X of correlated inputs with uneven scales (as activations are)."""
    x = rng.standard_normal((rows or 4 * n, n)) @ (np.eye(n) + 0.3 * rng.standard_normal((n, n)))
    x *= np.linspace(0.2, 3.0, n)
    return x.T @ x


# ------------------------------------------------------------------ packing


@given(bits=st.integers(2, 8), m=st.integers(0, 5), n=st.integers(1, 70), seed=st.integers(0, 2**16))
def test_packing_round_trips_and_matches_python_integers(bits, m, n, seed):
    codes = np.random.default_rng(seed).integers(0, 2**bits, size=(m, n)).astype(np.uint8)
    packed = pack(codes, bits)
    assert packed.dtype == np.uint8 and packed.shape == (m, math.ceil(n * bits / 8))
    np.testing.assert_array_equal(unpack(packed, bits, n), codes)
    for i in range(m):  # the layout: one little-endian integer per row, code k at bits [k b, (k+1) b)
        stream = sum(int(c) << (k * bits) for k, c in enumerate(codes[i]))
        assert bytes(packed[i]) == stream.to_bytes(packed.shape[1], "little")


def test_unpacking_refuses_stray_padding_bits_and_wrong_widths():
    packed = pack(np.ones((2, 3), dtype=np.uint8), 3)  # 9 bits in 2 bytes: 7 spare bits
    bad = packed.copy()
    bad[1, -1] |= 0x80
    with pytest.raises(ValueError, match="bits set past the last code"):
        unpack(bad, 3, 3)
    with pytest.raises(ValueError, match="2 rows of 2 bytes"):
        unpack(packed[:, :1], 3, 3)


# ------------------------------------------------------------------ rounding to nearest


@given(
    bits=st.integers(2, 8),
    group=st.sampled_from([4, 8, 16]),
    symmetric=st.booleans(),
    seed=st.integers(0, 2**16),
    scale=st.sampled_from([1e-4, 1.0, 300.0]),
)
@settings(max_examples=60)
def test_rounding_to_nearest_is_the_best_code_for_its_scale_and_never_worse_than_the_plain_range(
    bits, group, symmetric, seed, scale
):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3, 2 * group)) * scale
    spec = GroupSpec(bits, group, symmetric)
    got = quantize_nearest(w, spec)
    value = got.value()
    assert got.scales.dtype == np.float16 and np.all(got.scales > 0) and np.all(np.isfinite(got.scales))
    assert got.codes.max() <= 2**bits - 1
    s = np.repeat(got.scales.astype(np.float64), group, axis=1)
    z = np.repeat(
        np.full(got.scales.shape, 2.0 ** (bits - 1)) if got.zeros is None else got.zeros.astype(float), group, axis=1
    )
    np.testing.assert_array_equal(value, s * (got.codes.astype(float) - z))
    # brute force: no code in range is nearer to any entry for the scale and zero chosen
    lo = 1 if symmetric else 0
    every = s[..., None] * (np.arange(lo, 2**bits)[None, None, :] - z[..., None])
    np.testing.assert_allclose(
        np.abs(value - w), np.min(np.abs(every - w[..., None]), axis=2), rtol=0, atol=1e-12 * scale
    )
    # the clip search includes the plain range (ratio 1): never worse than it, group by group
    plain = GroupSpec(bits, group, symmetric)
    x = w.reshape(3, 2, group)
    lo_, hi_ = (
        (-np.abs(x).max(2), np.abs(x).max(2)) if symmetric else (np.minimum(x.min(2), 0), np.maximum(x.max(2), 0))
    )
    from cond.linalg.groupwise import _params_at, _round_trip

    s1, z1 = _params_at(lo_, hi_, plain)
    plain_err = np.sum((_round_trip(x, s1.astype(np.float64), z1, plain) - x) ** 2, axis=2)
    got_err = np.sum((value.reshape(3, 2, group) - x) ** 2, axis=2)
    assert np.all(got_err <= plain_err * (1 + 1e-12))
    assert CLIP_RATIOS[0] == 1.0


def test_zero_and_constant_groups_are_exact_and_scales_never_zero():
    w = np.zeros((2, 8))
    w[1, 4:] = 0.75
    for symmetric in (False, True):
        got = quantize_nearest(w, GroupSpec(4, 4, symmetric))
        assert np.all(got.scales > 0)
        np.testing.assert_allclose(got.value(), w, atol=1e-3 * 0.75)
        assert np.all(got.value()[0] == 0)


# ------------------------------------------------------------------ GPTQ


@pytest.mark.parametrize("act_order", [False, True])
@pytest.mark.parametrize("bits,group,symmetric", [(2, 8, False), (3, 16, True), (4, 32, False), (8, 16, False)])
@pytest.mark.parametrize("seed", range(3))
def test_gptq_equals_the_textbook_obq_loop(bits, group, symmetric, act_order, seed):
    rng = np.random.default_rng(seed)
    m, n = 12, 160  # two lazy-update blocks (128 + 32)
    w = rng.standard_normal((m, n))
    gram = gram_of(rng, n)
    gram[:, 7] = gram[7, :] = 0  # an input that is always zero
    spec = GroupSpec(bits, group, symmetric)
    got = gptq(w, gram, spec, act_order=act_order)

    def params(x):
        s, z = group_params(x[:, None, :], spec)
        return s[:, 0].astype(np.float64), z[:, 0]

    lo = 1 if symmetric else 0
    rnd = lambda x, s, z: np.clip(np.rint(x / s) + z, lo, 2**bits - 1)  # noqa: E731
    order = np.argsort(-np.diag(gram), kind="stable") if act_order else None
    static = None
    if act_order:
        w0 = w.copy()
        w0[:, 7] = 0
        s, z = group_params(w0.reshape(m, n // group, group), spec)
        static = (s.astype(np.float64), z)
    want = gptq_textbook(w, gram, rnd, params, group, order=order, static=static)
    np.testing.assert_array_equal(got.codes, want)
    assert np.all(got.value()[:, 7] == 0)


@pytest.mark.parametrize("seed", range(4))
def test_gptq_lowers_the_output_error_of_rounding_to_nearest(seed):
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((48, 128)) * 0.05
    gram = gram_of(rng, 128)
    root = np.linalg.cholesky(gram)
    spec = GroupSpec(3, 32)
    err = lambda q: np.linalg.norm((w - q.value()) @ root) / np.linalg.norm(w @ root)  # noqa: E731
    assert err(gptq(w, gram, spec)) < 0.9 * err(quantize_nearest(w, spec))


# ------------------------------------------------------------------ the written file


def planted(tmp_path, rng, shapes=((64, 128), (96, 64)), dtype=np.float32):
    tensors = {}
    for i, (m, n) in enumerate(shapes):
        low = rng.standard_normal((m, 6)) @ rng.standard_normal((6, n))
        tensors[f"l{i}.weight"] = (0.05 * low + 0.02 * rng.standard_normal((m, n))).astype(dtype)
    tensors["l0.bias"] = np.ones(shapes[0][0], dtype=dtype)
    src = tmp_path / "m.safetensors"
    save_file(tensors, str(src))
    return src, tensors


def grams_file(tmp_path, rng, tensors):
    grams = {name: gram_of(rng, w.shape[1]).astype(np.float32) for name, w in tensors.items() if w.ndim == 2}
    path = tmp_path / "grams.safetensors"
    save_file(grams, str(path))
    return path, {k: v.astype(np.float64) for k, v in grams.items()}


@pytest.mark.parametrize(
    "options",
    [
        dict(dtype="int4"),
        dict(dtype="int3", group_size=32, symmetric=True),
        dict(dtype="int2", group_size=64, correction_rank=8),
        dict(dtype="int8", group_size=32),
        dict(dtype="int5", correction_rank=4, correction_dtype="int8", group_size=64),
        dict(dtype="int3", correction_rank=8, preserve=True, group_size=32),
    ],
)
def test_errors_are_measured_on_an_independent_unpacking_of_the_file(tmp_path, options):
    src, tensors = planted(tmp_path, np.random.default_rng(1))
    out = tmp_path / "q.safetensors"
    report = cond.compress(src, out, min_size=1, **options)
    manifest, stored, rebuilt = reconstruct(out)
    assert manifest["format"] == "cond-lowrank/3"
    bits = int(options["dtype"][3:])
    for t in report.tensors:
        if t.storage == "dense":
            continue
        assert t.storage == "groupwise" and t.quant["bits"] == bits
        w = tensors[t.name].astype(np.float64)
        err = np.linalg.norm(w - rebuilt[t.name].astype(np.float64)) / np.linalg.norm(w)
        assert abs(err - t.error) <= 1e-12 + 1e-9 * err
        m, n = w.shape
        spec = GroupSpec(bits, t.quant["group"], t.quant["symmetric"])
        codes_bytes = m * math.ceil(n * bits / 8)
        assert stored[f"{t.name}.codes"].nbytes == codes_bytes
        total = sum(stored[k].nbytes for k in stored if k.startswith(t.name + "."))
        assert (
            t.bytes_after
            == total
            == spec.nbytes(m, n)
            + sum(stored[k].nbytes for k in stored if k.startswith(t.name + ".L") or k.startswith(t.name + ".R"))
        )
    expanded = tmp_path / "d"
    cond.expand(out, expanded)
    dense = load_file(str(expanded / "model.safetensors"))
    for name in tensors:  # equal but for the order of float64 sums in the rotation: one fp32 rounding apart
        scale = float(np.abs(tensors[name]).max())
        np.testing.assert_allclose(dense[name], rebuilt[name], rtol=2**-23, atol=1e-12 * scale)


def test_the_bound_holds_with_the_smallest_correction_rank(tmp_path):
    src, tensors = planted(tmp_path, np.random.default_rng(2))
    out = tmp_path / "q.safetensors"
    report = cond.compress(src, out, dtype="int2", group_size=32, max_error=0.1, min_size=1)
    _, _, rebuilt = reconstruct(out)
    from cond.commands.compress.groupwise_form import CORRECTION_RANKS

    for t in report.tensors:
        if t.name.endswith("bias"):
            continue
        w = tensors[t.name].astype(np.float64)
        assert np.linalg.norm(w - rebuilt[t.name]) / np.linalg.norm(w) <= 0.1
        assert t.storage == "groupwise" and t.rank is not None
        lower = [r for r in CORRECTION_RANKS if r < t.rank]
        if lower:  # the next smaller rank tried misses the bound
            smaller = cond.compress(
                src,
                tmp_path / "s.safetensors",
                dtype="int2",
                group_size=32,
                min_size=1,
                correction_rank=lower[-1],
                include=t.name,
                force=True,
            )
            assert smaller.tensors[[x.name for x in smaller.tensors].index(t.name)].error > 0.1


def test_the_correction_is_qeras_closed_form_and_minimises_the_output_error(tmp_path):
    rng = np.random.default_rng(3)
    src, tensors = planted(tmp_path, rng, shapes=((48, 64),))
    grams, g64 = grams_file(tmp_path, rng, {"l0.weight": tensors["l0.weight"]})
    out = tmp_path / "q.safetensors"
    rank = 6
    report = cond.compress(
        src,
        out,
        dtype="int3",
        group_size=32,
        correction_rank=rank,
        correction_dtype="f64",
        method="whiten",
        activations=grams,
        rounding="nearest",
        include="weight",
        min_size=1,
    )
    manifest, stored, _ = reconstruct(out)
    w = tensors["l0.weight"].astype(np.float64)
    t = next(x for x in manifest["tensors"] if x["name"] == "l0.weight")
    from checkpoints import naive_groupwise

    residual = w - naive_groupwise(stored, t)
    root = np.real(scipy.linalg.sqrtm(g64["l0.weight"]))  # S S^T = G with S symmetric: not the Cholesky cond uses
    u, s, vt = np.linalg.svd(residual @ root)
    closed = (u[:, :rank] * s[:rank]) @ vt[:rank] @ np.linalg.inv(root)
    got = stored["l0.weight.L"] @ stored["l0.weight.R"]
    np.testing.assert_allclose(got, closed, rtol=0, atol=1e-8 * np.abs(closed).max())
    out_err = lambda m: np.linalg.norm((residual - m) @ root)  # noqa: E731
    plain = np.linalg.svd(residual)
    unweighted = (plain[0][:, :rank] * plain[1][:rank]) @ plain[2][:rank]
    assert out_err(got) < out_err(unweighted)
    left, right = stored["l0.weight.L"], stored["l0.weight.R"]
    for _ in range(20):  # no nearby rank-r correction does better (it is the minimum over rank r)
        dl, dr = (1e-3 * np.abs(f).max() * rng.standard_normal(f.shape) for f in (left, right))
        assert out_err(got) <= out_err((left + dl) @ (right + dr))
    rec = next(x for x in report.tensors if x.name == "l0.weight")
    whitened = np.linalg.cholesky(g64["l0.weight"])
    approx = w - residual + got
    want = np.linalg.norm((w - approx) @ whitened) / np.linalg.norm(w @ whitened)
    assert abs(rec.error - want) <= 1e-6 * want and rec.output_error == rec.error


def test_gptq_through_compress_uses_the_grams_and_reports_the_output_error(tmp_path):
    rng = np.random.default_rng(4)
    src, tensors = planted(tmp_path, rng)
    weights = {k: v for k, v in tensors.items() if v.ndim == 2}
    grams, g64 = grams_file(tmp_path, rng, weights)
    runs = {}
    for rounding in ("gptq", "nearest"):
        out = tmp_path / f"{rounding}.safetensors"
        runs[rounding] = cond.compress(
            src, out, dtype="int3", group_size=32, activations=grams, rounding=rounding, include="weight", min_size=1
        )
        _, _, rebuilt = reconstruct(out)
        for t in (t for t in runs[rounding].tensors if t.name in weights):
            w = weights[t.name].astype(np.float64)
            root = np.linalg.cholesky(g64[t.name])
            want = np.linalg.norm((w - rebuilt[t.name]) @ root) / np.linalg.norm(w @ root)
            assert abs(t.output_error - want) <= 1e-6 * want
            assert t.quant["rounding"] == rounding
    for a, b in zip(runs["gptq"].tensors, runs["nearest"].tensors):
        if a.name in weights:
            assert a.output_error < b.output_error


# ------------------------------------------------------------------ the budget


def test_the_budget_over_every_form_against_brute_force(tmp_path):
    from cond.commands.compress.budget import matrix_options
    from cond.commands.compress.options import compress_options
    from cond.formats import open_entries

    rng = np.random.default_rng(5)
    src, tensors = planted(tmp_path, rng, shapes=((32, 64), (64, 32), (32, 32)))
    opts = compress_options(budget_bytes=0.2, min_size=1)
    with open_entries(str(src)) as entries:
        entries = [e for e in entries if e.name.endswith("weight")]
    listed = [matrix_options(e, opts, None) for e in entries]
    kinds = {plan[0] for _, options, _ in listed for _, _, plan in options}
    assert {"untouched", "quantized", "groupwise", "lowrank"} <= kinds
    whole = sum(u for u, _, _ in listed)
    for share in (0.12, 0.2, 0.3):
        # every k-th option of each item by cost (about 6 each) so brute force stays small; allocate over those
        options = [
            sorted([(c, loss) for c, loss, _ in opts_], key=lambda o: o[0])[:: max(1, len(opts_) // 6)]
            for _, opts_, _ in listed
        ]
        got = allocate(options, share * whole)
        assert got.cost <= share * whole
        best = np.inf
        for combo in itertools.product(*options):
            if sum(c for c, _ in combo) <= got.lagrangian_cost + 1e-9:
                best = min(best, sum(loss for _, loss in combo))
        assert got.loss <= best + 1e-12
    # the predicted loss of a group-wise option is what is written (fp16 correction factors aside)
    report = cond.compress(src, tmp_path / "b.safetensors", budget_bytes=0.2, include="weight", min_size=1)
    by_name = dict(zip([e.name for e in entries], listed))
    for t in report.tensors:
        if t.storage == "groupwise":
            options = by_name[t.name][1]
            plan = ("groupwise", t.quant["bits"], t.quant["group"], t.rank or 0)
            predicted = next(loss for c, loss, p in options if p == plan)
            assert abs(t.error**2 - predicted) <= 1e-3 * predicted + 1e-12
    assert report.budget["spent"] <= 0.2 + 1e-12


def test_a_budget_with_max_error_keeps_every_bound(tmp_path):
    src, tensors = planted(tmp_path, np.random.default_rng(6))
    out = tmp_path / "b.safetensors"
    report = cond.compress(src, out, budget_bytes=0.2, max_error=0.08, include="weight", min_size=1)
    _, _, rebuilt = reconstruct(out)
    for t in (t for t in report.tensors if t.name.endswith("weight")):
        w = tensors[t.name].astype(np.float64)
        assert np.linalg.norm(w - rebuilt[t.name]) / np.linalg.norm(w) <= 0.08
    assert report.budget["spent"] <= 0.2 + 1e-12


# ------------------------------------------------------------------ tampered files


def test_tampered_group_files_are_one_input_error(tmp_path):
    src, _ = planted(tmp_path, np.random.default_rng(7))
    out = tmp_path / "q.safetensors"
    cond.compress(src, out, dtype="int3", min_size=1, group_size=32)
    from safetensors import safe_open

    with safe_open(str(out), framework="np") as f:
        meta = f.metadata()
    stored = load_file(str(out))

    def tampered(change, manifest_change=None):
        arrays = {k: v.copy() for k, v in stored.items()}
        manifest = json.loads(meta["cond.manifest"])
        change(arrays)
        if manifest_change:
            manifest_change(next(t for t in manifest["tensors"] if t["name"] == "l0.weight"))
        path = tmp_path / "t.safetensors"
        save_file(arrays, str(path), metadata={**meta, "cond.manifest": json.dumps(manifest)})
        return path

    def zero_scale(a):
        a["l0.weight.scales"][0, 0] = 0

    def nan_scale(a):
        a["l0.weight.scales"][1, 1] = np.nan

    def padding(a):  # 128 codes of 3 bits fill 48 bytes exactly; use the zero points (4 x 3 bits: 2 bytes)
        a["l0.weight.zeros"][0, -1] |= 0x80

    def short(a):
        a["l0.weight.codes"] = a["l0.weight.codes"][:, :-1].copy()

    def group48(t):
        t["quant"]["group"] = 48

    cases = [
        (zero_scale, None, "finite and positive"),
        (nan_scale, None, "finite and positive"),
        (padding, None, "bits set past"),
        (short, None, "must be U8 of shape"),
        (lambda a: None, group48, "does not divide"),
    ]
    for change, manifest_change, message in cases:
        path = tampered(change, manifest_change)
        with pytest.raises(InputError, match=message):
            with cond.open_compressed(path) as ckpt:
                ckpt.matrix64("l0.weight")


# ------------------------------------------------------------------ cond.torch


@pytest.mark.parametrize("keep_packed", [False, True])
def test_cond_torch_runs_group_wise_layers_as_the_expanded_weights(tmp_path, keep_packed):
    torch = pytest.importorskip("torch")
    import cond.torch as ct

    torch.manual_seed(0)
    make = lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 64))  # noqa: E731
    model = make()
    src = tmp_path / "m.safetensors"
    save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, str(src))
    out = tmp_path / "q.safetensors"
    cond.compress(src, out, dtype="int3", group_size=32, correction_rank=4, min_size=1, include="weight")
    _, _, rebuilt = reconstruct(out)  # the oracle: weights unpacked independently, as expand writes them
    oracle = make()
    oracle.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in rebuilt.items()})
    loaded = ct.load_factorised(make(), out, keep_packed=keep_packed)
    assert isinstance(loaded[0], ct.GroupwiseLinear) == keep_packed
    x = torch.randn(7, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), oracle(x), rtol=1e-5, atol=1e-6)
        if keep_packed:
            np.testing.assert_allclose(loaded[0].weight64().numpy(), rebuilt["0.weight"], rtol=0, atol=1e-6)
            dense = ct.to_dense(loaded)
            assert isinstance(dense[0], torch.nn.Linear)
            torch.testing.assert_close(dense(x), oracle(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ rotation (incoherence)


@pytest.mark.parametrize("n,block", [(384, 128), (1536, 512), (64, 64), (48, 16), (100, None), (24, None)])
def test_the_rotation_is_the_dense_block_hadamard_it_records(n, block):
    from cond.kernels.keyed import keyed_uniforms
    from cond.linalg.rotation import Rotation

    rot = Rotation.for_columns(n, 11)
    if block is None:
        assert rot is None
        return
    assert rot.block == block
    signs = np.where(keyed_uniforms(11, 0, n) < 0.5, -1.0, 1.0)
    dense = np.kron(np.eye(n // block), scipy.linalg.hadamard(block) / np.sqrt(block)) * signs[:, None]
    np.testing.assert_allclose(dense @ dense.T, np.eye(n), atol=1e-13)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, n))
    g = gram_of(rng, n)
    np.testing.assert_allclose(rot.apply(w), w @ dense, atol=1e-12)
    np.testing.assert_allclose(rot.undo(w), w @ dense.T, atol=1e-12)
    np.testing.assert_allclose(rot.gram(g), dense.T @ g @ dense, rtol=0, atol=1e-12 * np.abs(g).max())


def test_rotation_spreads_an_outlier_and_lowers_the_error_of_what_is_written(tmp_path):
    rng = np.random.default_rng(8)
    w = 0.02 * rng.standard_normal((64, 128))
    w[:, 5] *= 40  # one input feature with large weights, as trained transformers have
    src = tmp_path / "m.safetensors"
    save_file({"w": w.astype(np.float32)}, str(src))
    errors = {}
    for rotate in (True, False):
        out = tmp_path / f"{rotate}.safetensors"
        report = cond.compress(src, out, dtype="int4", group_size=32, rotate=rotate, min_size=1)
        t = report.tensors[0]
        _, _, rebuilt = reconstruct(out)
        errors[rotate] = np.linalg.norm(w - rebuilt["w"]) / np.linalg.norm(w)
        assert abs(errors[rotate] - t.error) <= 1e-9 * errors[rotate] + 1e-7  # f32 rounding of w aside
        assert (t.quant["rotation"] is not None) == rotate
    assert errors[True] < 0.7 * errors[False]


# ------------------------------------------------------------------ progress and the report's notes


def test_compress_reports_progress_per_matrix_by_name_and_summarises_notes(tmp_path):
    src, tensors = planted(tmp_path, np.random.default_rng(9), shapes=((64, 128), (96, 64), (32, 64)))
    calls = []
    cond.compress(
        src, tmp_path / "b.safetensors", budget_bytes=0.3, min_size=1, include="weight",
        progress=lambda *args: calls.append(args),
    )  # fmt: skip
    weights = sorted(n for n in tensors if n.endswith("weight"))
    for stage in ("budget", "matrices"):
        seen = [c for c in calls if c[0] == stage]
        # before each selected matrix, by name and with what is done so far; then the end
        assert [c[3] for c in seen] == weights + [""]
        assert [c[1] for c in seen] == list(range(len(weights) + 1))
        assert all(c[2] == len(weights) for c in seen)  # the untouched bias is not counted
    from cond.cli.compress_cmd import note_lines

    rows = [dict(name=f"m{i}", note="dense: nothing saves", error=0.0, storage="dense") for i in range(37)]
    rows.append(dict(name="x", note="another", error=0.0, storage="dense"))
    assert note_lines(rows, False) == ["37 matrices: dense: nothing saves (m0, m1, m2 and 34 more)", "x: another"]


def test_a_matrix_without_a_gram_entry_is_recorded_as_rounded_to_nearest(tmp_path):
    rng = np.random.default_rng(10)
    src, tensors = planted(tmp_path, rng)
    grams, _ = grams_file(tmp_path, rng, {"l0.weight": tensors["l0.weight"]})  # none for l1.weight
    out = tmp_path / "q.safetensors"
    report = cond.compress(src, out, dtype="int4", group_size=32, activations=grams, include="weight", min_size=1)
    by_name = {t.name: t.quant for t in report.tensors}
    assert by_name["l0.weight"]["rounding"] == "gptq" and by_name["l0.weight"]["act_order"] is True
    assert by_name["l1.weight"]["rounding"] == "nearest" and by_name["l1.weight"]["act_order"] is None
    manifest, _, _ = reconstruct(out)
    assert {t["name"]: t.get("quant") for t in manifest["tensors"]}["l1.weight"] == by_name["l1.weight"]


def test_the_command_line_counts_group_wise_matrices_as_the_file_holds_them(tmp_path):
    from typer.testing import CliRunner

    from cond.cli.main import app

    src, _ = planted(tmp_path, np.random.default_rng(11), shapes=((64, 128), (96, 64), (32, 48)))
    out = tmp_path / "q.safetensors"
    result = CliRunner().invoke(app, ["compress", str(src), "--dtype", "int4", "--group-size", "32",
                                      "--min-size", "1", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest, _, _ = reconstruct(out)  # read with the safetensors package only
    storages = [t["storage"] for t in manifest["tensors"]]
    grouped = storages.count("groupwise")
    assert grouped == 2 and f"{grouped} group-wise" in result.stdout  # 48 columns take no group of 32
    assert "does not divide its 48 input columns" in result.stdout
    shown = CliRunner().invoke(app, ["inspect", str(out)])
    assert f"{grouped} group-wise, {storages.count('dense')} dense" in shown.stdout
