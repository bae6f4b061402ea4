"""LoRA adapters read in factor form, against independent truths: ``peft`` itself (the merged
weights of a model it built, less the base), a kohya file's product formed in the test, and
the dense SVD of every product (float64 LAPACK)."""

import json
import math
import os

import numpy as np
import pytest
from safetensors.numpy import save_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app
from cond.formats.lora import open_adapter, pattern_value
from cond.linalg.factored import factored_svd

runner = CliRunner()
RNG = np.random.default_rng(11)


@pytest.mark.parametrize("m, n, r", [(40, 30, 4), (30, 40, 6), (8, 50, 12), (50, 8, 12), (64, 64, 1)])
def test_factored_svd_against_the_dense_svd(m, n, r):
    left = RNG.standard_normal((m, r)) * np.logspace(0, -3, r)
    right = RNG.standard_normal((r, n))
    scale = 0.37
    dense = scale * left @ right
    s = np.linalg.svd(dense, compute_uv=False)
    f = factored_svd(left, right, scale)
    k = len(f.s)
    # both backward stable: values within c eps sigma_max of each other
    assert np.max(np.abs(f.s - s[:k])) <= 10 * max(m, n) * np.finfo(float).eps * s[0]
    assert np.all(s[k:] <= 10 * max(m, n) * np.finfo(float).eps * s[0])
    assert np.linalg.norm(f.u * f.s @ f.vt - dense) <= 10 * max(m, n) * np.finfo(float).eps * np.linalg.norm(dense)
    assert np.allclose(f.u.T @ f.u, np.eye(k), atol=1e-12) and np.allclose(f.vt @ f.vt.T, np.eye(k), atol=1e-12)


def test_pattern_keys_match_as_peft_matches_them():
    patterns = {"layer.0.query": 8, "value": 2}
    assert pattern_value(patterns, "encoder.layer.0.query", 4) == 8
    assert pattern_value(patterns, "encoder.layer.1.query", 4) == 4
    assert pattern_value(patterns, "encoder.layer.1.value", 4) == 2
    assert pattern_value(patterns, "encoder.layer.1.xvalue", 4) == 4  # a whole name segment, not a suffix


torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(30, 16)
        self.query = torch.nn.Linear(16, 24)
        self.value = torch.nn.Linear(16, 24)
        self.out = torch.nn.Linear(24, 16)
        self.head = torch.nn.Linear(16, 3)

    def forward(self, ids):
        h = self.embed(ids)
        return self.head(self.out(self.query(h) + self.value(h)))


def _peft_adapter(folder, rslora=False):
    """A PEFT adapter of a tiny model: rank and alpha patterns, an embedding LoRA, a saved head.
    Returns (adapter folder, base weights, true deltas from peft's own merge)."""
    torch.manual_seed(0)
    base = Tiny()
    base_weights = {k: v.detach().numpy().copy() for k, v in base.state_dict().items()}
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value", "out", "embed"],
                             rank_pattern={"value": 2}, alpha_pattern={"out": 3}, use_rslora=rslora,
                             modules_to_save=["head"], init_lora_weights=False)
    model = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    model.save_pretrained(str(folder), safe_serialization=True)
    merged = model.merge_and_unload()
    deltas = {k[:-len(".weight")]: v.detach().numpy().astype(np.float64) - base_weights[k].astype(np.float64)
              for k, v in merged.state_dict().items() if k.endswith(".weight") and k != "head.weight"}
    save_file({k: np.ascontiguousarray(v) for k, v in base_weights.items()}, str(folder.parent / "base.safetensors"))
    return str(folder), base_weights, deltas


@pytest.mark.parametrize("rslora", [False, True])
def test_peft_adapter_factors_equal_peft_merge(tmp_path, rslora):
    folder, _, deltas = _peft_adapter(tmp_path / "adapter", rslora)
    adapter = open_adapter(folder)
    got = {m.name: m for m in adapter.modules}
    assert set(got) == set(deltas) == {"embed", "query", "value", "out"}
    assert got["value"].rank == 2 and got["out"].alpha == 3 and got["embed"].kind == "embedding"
    assert any("head" in k for k in adapter.saved)
    for name, module in got.items():
        left, right = module.factors()
        product = module.scale * left @ right
        truth = deltas[name]
        # peft merges in float32: the two agree to float32 rounding of the merged weight
        assert product.shape == truth.shape
        assert np.linalg.norm(product - truth) <= 1e-5 * max(1.0, np.linalg.norm(truth)), name


def test_inspect_an_adapter_against_lapack(tmp_path):
    folder, base_weights, deltas = _peft_adapter(tmp_path / "adapter")
    report = cond.inspect(folder, base=str(tmp_path / "base.safetensors"))
    assert report.SCHEMA == "cond.adapter/1" and report.format == "peft"
    for m in report.modules:
        truth = deltas[m.name]
        s = np.linalg.svd(truth, compute_uv=False)
        tol = 1e-5 * s[0]  # the truth is a float32 merge
        assert abs(m.sigma_max - s[0]) <= tol
        assert abs(m.frobenius_norm - np.linalg.norm(truth)) <= 1e-5 * np.linalg.norm(truth)
        assert m.numerical_rank == m.rank == np.linalg.matrix_rank(truth, tol=1e-4 * s[0])
        w = base_weights[f"{m.name}.weight"].astype(np.float64)
        assert m.relative_norm == pytest.approx(np.linalg.norm(truth) / np.linalg.norm(w), rel=1e-5)
        energy = np.cumsum(s ** 2) / np.sum(s ** 2)
        assert m.energy_rank_90 == int(np.searchsorted(energy, 0.9 * (1 - 1e-9))) + 1


def test_an_adapter_that_wastes_rank(tmp_path):
    """A kohya file whose rank-8 factors hold a rank-3 product: numerical rank 3, 5 wasted."""
    down = RNG.standard_normal((8, 20))
    up = RNG.standard_normal((30, 3)) @ RNG.standard_normal((3, 8))
    conv_down = RNG.standard_normal((4, 6, 3, 3))
    conv_up = RNG.standard_normal((5, 4, 1, 1))
    path = str(tmp_path / "k.safetensors")
    save_file({"lora_unet_a.lora_down.weight": down, "lora_unet_a.lora_up.weight": up,
               "lora_unet_a.alpha": np.array(4.0),
               "lora_unet_c.lora_down.weight": conv_down, "lora_unet_c.lora_up.weight": conv_up}, path)
    report = cond.inspect(path)
    rows = {m.name: m for m in report.modules}
    a = rows["lora_unet_a"]
    truth = 0.5 * up @ down
    assert (a.rank, a.numerical_rank, a.wasted_rank) == (8, 3, 5)
    assert a.sigma_max == pytest.approx(np.linalg.svd(truth, compute_uv=False)[0], rel=1e-12)
    c = rows["lora_unet_c"]  # no alpha: scale 1; the conv's down as (r, in kh kw)
    truth_c = conv_up.reshape(5, 4) @ conv_down.reshape(4, -1)
    assert c.shape == (5, 54) and c.scale == 1.0
    assert c.frobenius_norm == pytest.approx(np.linalg.norm(truth_c), rel=1e-12)
    assert any("no .alpha" in n for n in report.notices)


def test_the_command_line_shows_an_adapter(tmp_path):
    folder, _, _ = _peft_adapter(tmp_path / "adapter")
    table = runner.invoke(app, ["inspect", folder, "--base", str(tmp_path / "base.safetensors")])
    assert table.exit_code == 0, table.output
    assert "LoRA adapter" in table.stdout and "wasted" in table.stdout
    doc = json.loads(runner.invoke(app, ["inspect", folder, "-f", "json"]).stdout)
    assert doc["schema"] == "cond.adapter/1" and len(doc["modules"]) == 4
    assert doc["summary"]["nominal_rank"] == 4 + 2 + 4 + 4
    refused = runner.invoke(app, ["inspect", folder, "--alpha"])
    assert refused.exit_code == 2 and "not to a LoRA adapter" in refused.stderr


def test_a_wrong_base_is_refused(tmp_path):
    folder, _, _ = _peft_adapter(tmp_path / "adapter")
    other = str(tmp_path / "other.safetensors")
    save_file({"query.weight": np.zeros((5, 5), np.float32)}, other)
    result = runner.invoke(app, ["inspect", folder, "--base", other])
    assert result.exit_code == 2, result.stderr
    assert "another architecture" in result.stderr or "base model" in result.stderr, result.stderr

