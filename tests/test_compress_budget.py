"""The budget, int8 storage, the form chooser and compute accounting of cond compress.

Oracles: brute force over every allocation (small cases), Eckart-Young tails from
LAPACK's SVD, the file read back with only the safetensors package
(``checkpoints.reconstruct``), and absmax int8 rounding written out here.
"""

import itertools
import json

import numpy as np
import pytest
from checkpoints import planted_checkpoint, reconstruct
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import cond
from cond.linalg.allocation import allocate
from cond.linalg.cluster_proof import no_cluster_can_save
from cond.linalg.clustering import cluster_params
from cond.linalg.quantize import dequantize_rows, quantize_rows


def brute_force(options, budget):
    """The least summed loss over every allocation costing at most ``budget``."""
    best = np.inf
    for combo in itertools.product(*options):
        if sum(c for c, _ in combo) <= budget + 1e-9:
            best = min(best, sum(loss for _, loss in combo))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_allocation_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    options = []
    for _ in range(rng.integers(2, 5)):
        k = rng.integers(1, 6)
        costs = rng.integers(1, 30, size=k).astype(float)
        losses = rng.random(k)
        options.append(list(zip(costs, losses)))
    least = sum(min(c for c, _ in opts) for opts in options)
    most = sum(max(c for c, _ in opts) for opts in options)
    budget = least + rng.random() * (most - least)
    got = allocate(options, budget)
    chosen = [options[i][k] for i, k in enumerate(got.choice)]
    assert sum(c for c, _ in chosen) == pytest.approx(got.cost) and got.cost <= budget + 1e-9
    assert sum(lo for _, lo in chosen) == pytest.approx(got.loss)
    # Everett: the Lagrangian allocation is optimal for what it costs; the fill only lowers the loss
    assert got.loss <= brute_force(options, got.lagrangian_cost) + 1e-12
    # the dual bound: no allocation within the budget beats it by more than slope * (unspent at the Lagrangian point)
    optimum = brute_force(options, budget)
    assert optimum <= got.loss + 1e-12
    if np.isfinite(got.slope):
        assert got.loss - optimum <= got.slope * (budget - got.lagrangian_cost) + 1e-12


def test_allocation_refuses_a_budget_below_the_least_cost():
    with pytest.raises(ValueError, match="least cost of any allocation is 3"):
        allocate([[(1, 0.5), (4, 0.0)], [(2, 0.1)]], 2.5)


def _spectra_checkpoint(path):
    """Float64 matrices with very different spectra (so the budget should rank them differently)."""
    rng = np.random.default_rng(3)
    tensors = {}
    for i, decay in enumerate((0.5, 0.8, 0.95)):
        m, n = 24, 16
        u = np.linalg.qr(rng.standard_normal((m, n)))[0]
        v = np.linalg.qr(rng.standard_normal((n, n)))[0]
        tensors[f"w{i}"] = (u * decay ** np.arange(n)) @ v.T
    save_file(tensors, str(path))
    return tensors


def test_budget_allocation_is_optimal_for_what_it_spends(tmp_path):
    tensors = _spectra_checkpoint(tmp_path / "m.safetensors")
    report = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "c.safetensors", budget=0.4, min_size=0, min_saving=0.05, cluster=False
    )
    options = []
    for w in tensors.values():  # oracle options: untouched, or rank r saving >= 5%, loss = Eckart-Young tail
        m, n = w.shape
        s = np.linalg.svd(w, compute_uv=False)
        tail = [float(np.sum(s[r:] ** 2) / np.sum(s**2)) for r in range(len(s) + 1)]
        options.append(
            [(m * n, 0.0)] + [(r * (m + n), tail[r]) for r in range(1, n + 1) if r * (m + n) <= 0.95 * m * n]
        )
    whole = sum(w.size for w in tensors.values())
    _, _, rebuilt = reconstruct(tmp_path / "c.safetensors")
    loss = sum(np.linalg.norm(w - rebuilt[k]) ** 2 / np.linalg.norm(w) ** 2 for k, w in tensors.items())
    spent = sum(t.params_after for t in report.tensors if t.macs_before is not None)
    assert spent <= 0.4 * whole and report.budget["spent"] == pytest.approx(spent / whole)
    assert loss <= brute_force(options, report.budget["lagrangian"] * whole) * (1 + 1e-9) + 1e-15
    ranks = [t.rank for t in report.tensors]
    assert len(set(ranks)) > 1  # the fast-decaying matrix needs fewer directions than the slow one
    uniform = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "u.safetensors", ratio=0.4, min_size=0, cluster=False
    )
    _, _, flat = reconstruct(tmp_path / "u.safetensors")
    uniform_loss = sum(np.linalg.norm(w - flat[k]) ** 2 / np.linalg.norm(w) ** 2 for k, w in tensors.items())
    assert sum(t.params_after for t in uniform.tensors) <= spent + 40  # equal size, up to one rank
    assert loss < uniform_loss


def test_budget_with_max_error_keeps_every_bound_and_says_when_it_cannot(tmp_path):
    tensors = _spectra_checkpoint(tmp_path / "m.safetensors")
    cond.compress(
        tmp_path / "m.safetensors", tmp_path / "c.safetensors", budget=0.85, max_error=0.2, min_size=0, cluster=False
    )
    _, _, rebuilt = reconstruct(tmp_path / "c.safetensors")
    for k, w in tensors.items():
        assert np.linalg.norm(w - rebuilt[k]) / np.linalg.norm(w) <= 0.2
    with pytest.raises(cond.errors.UsageError, match="below the least share"):
        cond.compress(tmp_path / "m.safetensors", tmp_path / "d.safetensors", budget=0.05, max_error=0.01, min_size=0)


def _absmax(x):
    scale = (np.abs(x).max(axis=1) / 127).astype(np.float32).astype(np.float64)
    return np.clip(np.rint(x / scale[:, None]), -127, 127) * scale[:, None]


def test_int8_rows_never_worse_than_absmax_and_better_when_the_top_is_crowded():
    rng = np.random.default_rng(0)
    x = rng.standard_t(2, size=(64, 256))
    # rows whose largest entries crowd just under the maximum: absmax rounds them all by up to half
    # a step, a scale 2% smaller represents them exactly and clips one entry by 0.02
    crowded = np.where(rng.random((8, 256)) < 0.5, 1.0, -1.0)
    crowded[:, 0] = 1.02
    x = np.vstack([x, crowded])
    q, scale = quantize_rows(x)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and np.abs(q).max() <= 127
    ours = np.sum((dequantize_rows(q, scale) - x) ** 2, axis=1)
    theirs = np.sum((_absmax(x) - x) ** 2, axis=1)
    assert np.all(ours <= theirs * (1 + 1e-12))
    assert np.all(ours[-8:] < 0.2 * theirs[-8:])


def test_int8_bound_holds_on_what_is_written_and_the_cheapest_form_is_taken(tmp_path):
    original = planted_checkpoint(tmp_path / "m.safetensors")  # low-rank layers and one full-rank 'odd'
    out = tmp_path / "c.safetensors"
    report = cond.compress(tmp_path / "m.safetensors", out, max_error=0.05, dtype="int8", min_size=100, cluster=False)
    with safe_open(str(out), framework="np") as f:  # any safetensors reader opens it
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    manifest, stored, rebuilt = reconstruct(out)
    assert manifest["format"] == "cond-lowrank/3"
    records = {t.name: t for t in report.tensors}
    for t in manifest["tensors"]:
        w = original[t["name"]]
        if t["storage"] == "dense":
            assert stored[t["name"]].tobytes() == w.tobytes()
            continue
        for key, scale in zip(t["keys"], t["scales"]):
            assert dtypes[key] == "I8" and dtypes[scale] == "F32" and stored[scale].shape == stored[key].shape[:1]
        err = np.linalg.norm(w.astype(np.float64) - rebuilt[t["name"]]) / np.linalg.norm(w.astype(np.float64))
        assert err <= 0.05 and err == pytest.approx(t["error"], rel=1e-9, abs=1e-12)
        assert records[t["name"]].bytes_after == sum(stored[k].nbytes for k in t["keys"] + t["scales"])
    assert records["odd.weight"].storage == "quantized"  # full rank: int8 whole is the cheapest within 0.05
    assert all(records[f"layers.{i}.weight"].storage == "lowrank" for i in range(12))
    expanded = cond.expand(str(out), str(tmp_path / "e.safetensors"))
    back = load_file(expanded.files[0])
    assert all(back[k].dtype == v.dtype and back[k].shape == v.shape for k, v in original.items())


def test_cond_lowrank_1_files_still_expand(tmp_path):
    original = planted_checkpoint(tmp_path / "m.safetensors")
    cond.compress(tmp_path / "m.safetensors", tmp_path / "c.safetensors", max_error=0.05, min_size=100)
    with safe_open(str(tmp_path / "c.safetensors"), framework="np") as f:
        meta = f.metadata()
    manifest = json.loads(meta["cond.manifest"])
    for t in manifest["tensors"]:  # what /1 wrote: no scales, storage_dtype, bytes, macs
        for key in ("scales", "storage_dtype", "bytes", "macs", "output_error"):
            t.pop(key, None)
    manifest["format"] = "cond-lowrank/1"
    save_file(
        load_file(str(tmp_path / "c.safetensors")),
        str(tmp_path / "old.safetensors"),
        metadata={"cond.format": "cond-lowrank/1", "cond.manifest": json.dumps(manifest)},
    )
    a = load_file(cond.expand(str(tmp_path / "old.safetensors"), str(tmp_path / "a.safetensors")).files[0])
    b = load_file(cond.expand(str(tmp_path / "c.safetensors"), str(tmp_path / "b.safetensors")).files[0])
    assert set(a) == set(original) and all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("seed", range(60))
def test_the_no_cluster_proof_is_sound(seed):
    """When it says no cluster can save, no subset at any rank >= its members' own ranks saves."""
    rng = np.random.default_rng(seed)
    m, k = int(rng.integers(4, 20)), int(rng.integers(2, 6))
    widths = rng.integers(1, 12, size=k)
    ranks = [int(rng.integers(1, min(m, w) + 1)) for w in widths]
    own = [int(min(m * w, r * (m + w) + rng.integers(0, 20))) for r, w in zip(ranks, widths)]
    caps = [int(rng.integers(1, m + 1)) for _ in range(k)]
    pairs = np.array([[ranks[i] if i == j else 0 for j in range(k)] for i in range(k)])
    for i, j in itertools.combinations(range(k), 2):  # any pair rank at least both own ranks
        pairs[i, j] = pairs[j, i] = int(rng.integers(max(ranks[i], ranks[j]), m + 1))
    for given in (None, pairs):
        proven = no_cluster_can_save(m, ranks, widths, own, caps, pairs=given)
        low = (
            (lambda s: max(ranks[i] for i in s))
            if given is None
            else (lambda s: max(pairs[i, j] for i in s for j in s))
        )
        saving = any(
            cluster_params(m, [widths[i] for i in subset], r) < sum(own[i] for i in subset)
            for size in range(2, k + 1)
            for subset in itertools.combinations(range(k), size)
            for r in range(low(subset), min(caps[i] for i in subset) + 1)
        )
        assert not (proven and saving)


def test_pair_ranks_are_lower_bounds_of_any_shared_basis():
    """The best shared basis of two blocks (their concatenation's SVD) needs at least the pair rank
    to meet the bound on both; checked by trying every smaller rank with the exact optimum of each
    member's error for that basis (an SVD of the normalised concatenation, LAPACK)."""
    from cond.linalg.cluster_proof import pair_ranks

    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((20, 12)), rng.standard_normal((20, 9))
    p = pair_ranks([a, b], 0.3)
    both = np.hstack([a / np.linalg.norm(a), b / np.linalg.norm(b)])
    u = np.linalg.svd(both)[0]
    for r in range(1, p[0, 1]):
        q = u[:, :r]
        errs = [np.linalg.norm(x - q @ (q.T @ x)) / np.linalg.norm(x) for x in (a, b)]
        assert np.sqrt(np.mean(np.square(errs))) > 0.3  # so some member exceeds the bound


def test_clustering_refuses_to_raise_compute_and_gives_up_provably(tmp_path):
    rng = np.random.default_rng(0)
    basis = np.linalg.qr(rng.standard_normal((64, 8)))[0]
    # narrow blocks from one 8-dim subspace: sharing saves parameters, but a rank-8 member of
    # width 4 costs 8 * (64 + 4) = 544 multiply-adds against 256 dense
    tensors = {f"n{i}": basis @ rng.standard_normal((8, 4)) for i in range(10)}
    save_file(tensors, str(tmp_path / "m.safetensors"))
    kept = cond.compress(tmp_path / "m.safetensors", tmp_path / "a.safetensors", max_error=0.05, min_size=0)
    assert not kept.clusters and kept.cluster_summary["slower"] == 10
    assert all(t.macs_after <= t.macs_before for t in kept.tensors)
    slower = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "b.safetensors", max_error=0.05, min_size=0, allow_slower=True
    )
    assert slower.clusters and any(t.macs_after > t.macs_before for t in slower.tensors if t.cluster is not None)
    for t in slower.tensors:  # multiply-adds per input vector: r (m + n) for a member of a rank-r cluster
        if t.cluster is not None:
            assert t.macs_after == t.rank * (64 + 4)
    noise = {f"z{i}": rng.standard_normal((48, 48)) for i in range(6)}  # full rank: nothing can share at 0.1
    save_file(noise, str(tmp_path / "z.safetensors"))
    alone = cond.compress(
        tmp_path / "z.safetensors", tmp_path / "z.out.safetensors", max_error=0.1, min_size=0, allow_slower=True
    )
    assert alone.cluster_summary["proven"] == alone.cluster_summary["chunks"] >= 1


def test_layer_sensitivities_from_the_fisher_move_the_budget_to_the_sensitive_layer(tmp_path):
    """Two copies of one matrix with the same Gram: the budget splits them evenly; a Fisher that says
    the second layer's output matters 100x more gives it more of the rank (and the loss it reports
    is the closed form trace(F) / (m trace(G)) ||W L||^2 e^2)."""
    rng = np.random.default_rng(4)
    w = (rng.standard_normal((32, 32)) * 0.8 ** np.arange(32)) @ np.linalg.qr(rng.standard_normal((32, 32)))[0]
    save_file({"a": w, "b": w.copy()}, str(tmp_path / "m.safetensors"))
    x = rng.standard_normal((500, 32))
    save_file({"a": x.T @ x, "b": x.T @ x}, str(tmp_path / "g.safetensors"))
    common = dict(method="whiten", activations=str(tmp_path / "g.safetensors"), budget=0.5, min_size=0, cluster=False)
    even = cond.compress(tmp_path / "m.safetensors", tmp_path / "e.safetensors", **common)
    assert even.tensors[0].rank == even.tensors[1].rank
    save_file({"a": np.ones((32, 32)), "b": 100 * np.ones((32, 32))}, str(tmp_path / "f.safetensors"))
    tilted = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "t.safetensors", fisher=str(tmp_path / "f.safetensors"), **common
    )
    ranks = {t.name: t.rank or 32 for t in tilted.tensors}
    assert ranks["b"] > ranks["a"]
    assert tilted.budget["loss"] == "sensitivity-weighted output error"
    chol = np.linalg.cholesky(x.T @ x)
    sv = np.linalg.svd(w @ chol, compute_uv=False)  # LAPACK: the whitened spectrum
    closed = 0.0
    for name, trace_f in (("a", 32 * 32), ("b", 100 * 32 * 32)):
        tail = np.sum(sv[ranks[name] :] ** 2) / np.sum(sv**2)
        closed += trace_f / (32 * np.trace(x.T @ x)) * np.sum(sv**2) * tail
    assert tilted.budget["predicted_loss"] == pytest.approx(closed, rel=1e-6)
    with pytest.raises(cond.errors.UsageError, match="layer sensitivities of a budget"):
        cond.compress(
            tmp_path / "m.safetensors",
            tmp_path / "x.safetensors",
            method="whiten",
            ratio=0.5,
            activations=str(tmp_path / "g.safetensors"),
            fisher=str(tmp_path / "f.safetensors"),
        )


def test_output_error_of_plain_svd_on_the_calibration_inputs(tmp_path):
    """--activations with --method svd: each matrix's output error ||(W - W_hat) X^T|| / ||W X^T||, against
    the file read back independently and the inputs X themselves (no Cholesky on either side)."""
    original = planted_checkpoint(tmp_path / "m.safetensors")
    rng = np.random.default_rng(8)
    inputs = {
        k: rng.standard_normal((300, v.shape[1])) * np.linspace(0.1, 3, v.shape[1])
        for k, v in original.items()
        if k.endswith(".weight")
    }
    save_file({k: x.T @ x for k, x in inputs.items()}, str(tmp_path / "g.safetensors"))
    report = cond.compress(
        tmp_path / "m.safetensors",
        tmp_path / "c.safetensors",
        max_error=0.05,
        min_size=100,
        activations=str(tmp_path / "g.safetensors"),
        dtype="int8",
    )
    _, _, rebuilt = reconstruct(tmp_path / "c.safetensors")
    checked = 0
    for t in report.tensors:
        if t.output_error is None:
            continue
        w, x = original[t.name].astype(np.float64), inputs[t.name]
        want = np.linalg.norm((w - rebuilt[t.name].astype(np.float64)) @ x.T) / np.linalg.norm(w @ x.T)
        assert t.output_error == pytest.approx(want, rel=1e-6, abs=1e-12)
        checked += 1
    assert checked == 13
    errors = [t.output_error for t in report.tensors if t.output_error is not None]
    assert report.matrix_totals()["mean_output_error"] == pytest.approx(np.mean(errors))
