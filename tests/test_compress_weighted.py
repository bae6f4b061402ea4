"""cond compress --method fisher|whiten end to end: bounds, reports, clustering, bad input.

Every error is recomputed here from the written file (through the safetensors
package and the manifest) and the calibration data, never taken from cond.
"""

import importlib.util
import json
import os
import sys

import numpy as np
import pytest
from checkpoints import planted_checkpoint, reconstruct
from invariants import assert_one_line_error
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app

runner = CliRunner()
HERE = os.path.dirname(os.path.abspath(__file__))


def _calibration(tensors, seed=0, skip=()):
    """Element-wise Fisher and input samples X (hence Grams) for every float weight."""
    rng = np.random.default_rng(seed)
    fisher, inputs = {}, {}
    for name, w in tensors.items():
        if not name.endswith(".weight") or w.dtype.kind != "f" or name in skip:
            continue
        m, n = w.shape
        fisher[name] = rng.gamma(0.5, size=(m, n)) * rng.gamma(1.0, size=n)[None, :]
        inputs[name] = rng.standard_normal((300, n)) @ (rng.standard_normal((n, n)) * np.logspace(0, -2, n))
    return fisher, inputs


def _weighted_error(w, w_hat, axis, fisher):
    a = np.sqrt(fisher.sum(axis=1)) if axis in ("out", "both") else np.ones(w.shape[0])
    b = np.sqrt(fisher.sum(axis=0)) if axis in ("in", "both") else np.ones(w.shape[1])
    return np.linalg.norm(a[:, None] * (w - w_hat) * b) / np.linalg.norm(a[:, None] * w * b)


@pytest.mark.parametrize("axis", ["in", "out", "both"])
def test_fisher_bounds_the_weighted_error_and_reports_the_plain_one(tmp_path, axis):
    # planted shared bases: left ones (cols) for `in`, right ones (rows, transposed) for `out`
    tensors = planted_checkpoint(tmp_path / "m.safetensors", transpose=axis == "out")
    fisher, _ = _calibration(tensors, skip=("layers.3.weight",))
    save_file({k: v.astype(np.float32) for k, v in fisher.items()}, str(tmp_path / "f.safetensors"))
    out = tmp_path / "out.safetensors"
    result = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            "--method",
            "fisher",
            "--fisher",
            str(tmp_path / "f.safetensors"),
            "--fisher-axis",
            axis,
            "--max-error",
            "0.1",
            "--min-size",
            "0",
            "-o",
            str(out),
            "--format",
            "json",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    manifest, _, dense = reconstruct(out)
    assert manifest["method"] == "fisher" and doc["method"] == "fisher"
    assert doc["unweighted"] == ["layers.3.weight"]
    rows = {t["name"]: t for t in doc["tensors"]}
    compressed = [n for n, t in rows.items() if t["storage"] != "dense" and t["error"] is not None]
    assert len(compressed) >= 10
    for name in compressed:
        w = tensors[name].astype(np.float64)
        plain = np.linalg.norm(w - dense[name]) / np.linalg.norm(w)
        assert rows[name]["plain_error"] == pytest.approx(plain, rel=1e-9, abs=1e-12)
        if name == "layers.3.weight":
            assert rows[name]["weighting"] == "none" and "plain SVD" in rows[name]["note"]
            assert plain <= 0.1
            continue
        assert rows[name]["weighting"] == f"fisher-{axis}"
        weighted = _weighted_error(w, dense[name], axis, fisher[name].astype(np.float32).astype(np.float64))
        assert rows[name]["error"] == pytest.approx(weighted, rel=1e-6)
        assert weighted <= 0.1
    # the rule of README.md: input-side weights share only left bases, output-side only right
    # ones, two-sided weights none
    assert len(doc["clusters"]) >= (0 if axis == "both" else 1)
    for c in doc["clusters"]:
        weighted_members = [m for m in c["members"] if rows[m]["weighting"] != "none"]
        if weighted_members:
            assert axis != "both"
            assert c["axis"] == ("cols" if axis == "in" else "rows")


def test_whiten_reports_the_output_error_on_the_calibration_inputs(tmp_path):
    tensors = planted_checkpoint(tmp_path / "m.safetensors", n=32)
    _, inputs = _calibration(tensors)
    save_file({k: (x.T @ x).astype(np.float32) for k, x in inputs.items()}, str(tmp_path / "g.safetensors"))
    report = cond.compress(
        tmp_path / "m.safetensors",
        tmp_path / "out.safetensors",
        ratio=0.3,
        min_size=0,
        method="whiten",
        activations=str(tmp_path / "g.safetensors"),
    )
    _, _, dense = reconstruct(tmp_path / "out.safetensors")
    seen = 0
    for t in report.tensors:
        if t.weighting != "whiten" or t.storage == "dense":
            continue
        w, x = tensors[t.name].astype(np.float64), inputs[t.name]
        out_err = np.linalg.norm((w - dense[t.name]) @ x.T) / np.linalg.norm(w @ x.T)
        # the Gram was stored in float32: the whitened error matches to float32 accuracy
        assert t.error == pytest.approx(out_err, rel=1e-4)
        assert t.plain_error == pytest.approx(np.linalg.norm(w - dense[t.name]) / np.linalg.norm(w), rel=1e-9)
        # whitening minimises the output error: plain SVD at the same rank does no better
        u, s, vt = np.linalg.svd(w, full_matrices=False)
        svd_hat = (u[:, : t.rank] * s[: t.rank]) @ vt[: t.rank]
        assert out_err <= np.linalg.norm((w - svd_hat) @ x.T) / np.linalg.norm(w @ x.T) * (1 + 1e-4)
        seen += 1
    assert seen >= 10


def test_whiten_with_clustering_keeps_every_output_bound(tmp_path):
    tensors = planted_checkpoint(tmp_path / "m.safetensors")
    _, inputs = _calibration(tensors)
    grams = {k: x.T @ x for k, x in inputs.items()}
    save_file({k: v.astype(np.float64) for k, v in grams.items()}, str(tmp_path / "g.safetensors"))
    report = cond.compress(
        tmp_path / "m.safetensors",
        tmp_path / "out.safetensors",
        max_error=0.08,
        min_size=0,
        method="whiten",
        activations=str(tmp_path / "g.safetensors"),
    )
    _, _, dense = reconstruct(tmp_path / "out.safetensors")
    assert all(c.axis == "cols" for c in report.clusters)
    for t in report.tensors:
        if t.error is None or t.storage == "dense":
            continue
        w, x = tensors[t.name].astype(np.float64), inputs[t.name]
        assert np.linalg.norm((w - dense[t.name]) @ x.T) / np.linalg.norm(w @ x.T) <= 0.08 * (1 + 1e-9)


def test_weights_file_that_is_not_safetensors_or_is_truncated(tmp_path):
    planted_checkpoint(tmp_path / "m.safetensors")
    np.save(tmp_path / "f.npy", np.ones((64, 24)))
    save_file({"layers.0.weight": np.ones((64, 24), np.float32)}, str(tmp_path / "g.safetensors"))
    data = (tmp_path / "g.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) - 100])
    for path, expect in (
        (tmp_path / "f.npy", "must be a .safetensors file"),
        (tmp_path / "cut.safetensors", "cut.safetensors"),
    ):
        result = runner.invoke(
            app,
            [
                "compress",
                str(tmp_path / "m.safetensors"),
                "--method",
                "fisher",
                "--fisher",
                str(path),
                "--max-error",
                "0.1",
                "--min-size",
                "0",
                "-o",
                str(tmp_path / "o.safetensors"),
            ],
        )
        assert_one_line_error(result, [path.name, expect])
        assert not (tmp_path / "o.safetensors").exists()


def test_missing_weight_names_are_refused_not_silently_ignored(tmp_path):
    planted_checkpoint(tmp_path / "m.safetensors")
    save_file({"model.layers.0.weight": np.ones((64, 24), np.float32)}, str(tmp_path / "f.safetensors"))
    result = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            "--method",
            "fisher",
            "--fisher",
            str(tmp_path / "f.safetensors"),
            "--max-error",
            "0.1",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "o.safetensors"),
        ],
    )
    assert_one_line_error(result, ["f.safetensors", "no tensor name matches", "model.layers.0.weight"])
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize(
    "kind, tensor, expect",
    [
        ("fisher", np.ones((64, 25), np.float32), ["does not fit the weight of shape 64x24"]),
        ("fisher", -np.ones((64, 24), np.float32), ["negative entries"]),
        ("fisher", np.full((64, 24), np.nan, np.float32), ["NaN"]),
        ("fisher", np.ones(64, np.float32), ["vector of length 24"]),
        ("gram", np.ones((25, 25), np.float32), ["must be 24x24"]),
        ("gram", np.triu(np.ones((24, 24), np.float32)) + np.eye(24, dtype=np.float32), ["not symmetric"]),
        ("gram", np.full((24, 24), np.nan, np.float32), ["NaN"]),
        ("gram", -np.eye(24, dtype=np.float32), ["negative diagonal"]),
    ],
)
def test_bad_weight_files_get_one_line_naming_the_tensor(tmp_path, kind, tensor, expect):
    planted_checkpoint(tmp_path / "m.safetensors")
    save_file({"layers.2.weight": tensor}, str(tmp_path / "w.safetensors"))
    flags = ["--method", "fisher", "--fisher"] if kind == "fisher" else ["--method", "whiten", "--activations"]
    result = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            *flags,
            str(tmp_path / "w.safetensors"),
            "--max-error",
            "0.1",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "o.safetensors"),
        ],
    )
    assert_one_line_error(result, ["w.safetensors", "tensor 'layers.2.weight'", *expect])
    assert not (tmp_path / "o.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary left


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--method", "fisher"], ["`--method fisher` needs `--fisher FILE`"]),
        (["--method", "whiten"], ["`--method whiten` needs `--activations FILE`"]),
        (["--fisher", "x.safetensors"], ["`--fisher` is given but `--method` is svd"]),
        (["--method", "whiten", "--activations", "m.safetensors"], ["must not be the checkpoint"]),
        (["--fisher-axis", "out"], ["`--fisher-axis` applies to `--method fisher`"]),
    ],
)
def test_method_usage_errors(tmp_path, args, expect):
    planted_checkpoint(tmp_path / "m.safetensors")
    args = [str(tmp_path / a) if a.endswith(".safetensors") else a for a in args]
    result = runner.invoke(
        app,
        [
            "compress",
            str(tmp_path / "m.safetensors"),
            *args,
            "--max-error",
            "0.1",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "o.safetensors"),
        ],
    )
    assert_one_line_error(result, expect)


def test_digits_example_whitening_keeps_the_loss_closer_than_svd(tmp_path):
    """The paper's claim on examples/digits_mlp.py (seeded): at ratio 0.2 (equal parameter
    counts), whitening's test-loss excess over the uncompressed model is under half of plain
    SVD's. Measured: 0.10 against 0.86 (README.md). The Fisher variants are not asserted to
    beat SVD: on this model they do not (README.md gives the table and the reason)."""
    sys.path.insert(0, os.path.join(HERE, "..", "examples"))
    try:
        import digits_mlp
    finally:
        sys.path.pop(0)
    setup = digits_mlp.prepare(str(tmp_path))
    base, _ = digits_mlp.evaluate(setup["dense"], *setup["test"])
    svd_loss, _, svd_params, _ = digits_mlp.run(setup, "svd", None, 0.2)
    whiten_loss, whiten_acc, whiten_params, _ = digits_mlp.run(setup, "whiten", None, 0.2)
    assert svd_params == whiten_params
    assert whiten_loss - base < 0.5 * (svd_loss - base)
    fisher_loss, _, fisher_params, report = digits_mlp.run(setup, "fisher", "in", 0.2)
    assert fisher_params == svd_params and np.isfinite(fisher_loss)
    assert {t.weighting for t in report.tensors if t.storage == "lowrank"} == {"fisher-in"}


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")
def test_torch_calibrator_accumulates_grams_and_squared_gradients(tmp_path):
    import torch

    from cond.torch.calibrator import Calibrator

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 8)), rng.standard_normal((8, 4))) for _ in range(3)]  # 24 rows >= 16 inputs
    with Calibrator(model) as cal:
        for x, y in batches:
            model.zero_grad()
            loss = ((model(torch.tensor(x, dtype=torch.float32)) - torch.tensor(y, dtype=torch.float32)) ** 2).sum()
            loss.backward()
            cal.step()
    cal.save(fisher=str(tmp_path / "f.safetensors"), grams=str(tmp_path / "g.safetensors"))
    # oracle: the same network in numpy, with the closed-form gradient of the last layer
    w1, b1 = model[0].weight.detach().double().numpy(), model[0].bias.detach().double().numpy()
    w2, b2 = model[2].weight.detach().double().numpy(), model[2].bias.detach().double().numpy()
    gram0, gram2, fisher2 = 0, 0, 0
    for x, y in batches:
        x = x.astype(np.float32).astype(np.float64)
        h = np.maximum(x @ w1.T + b1, 0)
        gram0 = gram0 + x.T @ x
        gram2 = gram2 + h.T @ h
        fisher2 = fisher2 + (2 * (h @ w2.T + b2 - y.astype(np.float32)).T @ h) ** 2
    from safetensors.numpy import load_file

    grams, fisher = load_file(str(tmp_path / "g.safetensors")), load_file(str(tmp_path / "f.safetensors"))
    assert set(grams) == set(fisher) == {"0.weight", "2.weight"} == {k for k in model.state_dict() if "weight" in k}
    np.testing.assert_allclose(grams["0.weight"], gram0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grams["2.weight"], gram2, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(fisher["2.weight"], fisher2, rtol=1e-3, atol=1e-5)
    # the files feed cond compress directly
    save_file({k: v.detach().numpy() for k, v in model.state_dict().items()}, str(tmp_path / "m.safetensors"))
    report = cond.compress(
        tmp_path / "m.safetensors",
        tmp_path / "o.safetensors",
        rank=2,
        min_size=0,
        method="whiten",
        activations=str(tmp_path / "g.safetensors"),
    )
    assert {t.weighting for t in report.tensors if t.storage == "lowrank"} == {"whiten"}
