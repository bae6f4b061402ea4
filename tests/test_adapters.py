"""LoRA adapters read in factor form, against independent truths: ``peft`` itself (the merged
weights of a model it built, less the base), a kohya file's product formed in the test, and
the dense SVD of every product (float64 LAPACK)."""

import json
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
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["query", "value", "out", "embed"],
        rank_pattern={"value": 2},
        alpha_pattern={"out": 3},
        use_rslora=rslora,
        modules_to_save=["head"],
        init_lora_weights=False,
    )
    model = peft.get_peft_model(base, config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.3)
    model.save_pretrained(str(folder), safe_serialization=True)
    merged = model.merge_and_unload()
    deltas = {
        k[: -len(".weight")]: v.detach().numpy().astype(np.float64) - base_weights[k].astype(np.float64)
        for k, v in merged.state_dict().items()
        if k.endswith(".weight") and k != "head.weight"
    }
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
        energy = np.cumsum(s**2) / np.sum(s**2)
        assert m.energy_rank_90 == int(np.searchsorted(energy, 0.9 * (1 - 1e-9))) + 1
        assert m.stable_rank == pytest.approx(np.sum(s**2) / s[0] ** 2, rel=1e-4)
        p = s[s > 1e-6 * s[0]] / s[s > 1e-6 * s[0]].sum()  # the values of the rank-r delta, as a distribution
        assert m.effective_rank == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-4)


def test_an_adapter_that_wastes_rank(tmp_path):
    """A kohya file whose rank-8 factors hold a rank-3 product: numerical rank 3, 5 wasted."""
    down = RNG.standard_normal((8, 20))
    up = RNG.standard_normal((30, 3)) @ RNG.standard_normal((3, 8))
    conv_down = RNG.standard_normal((4, 6, 3, 3))
    conv_up = RNG.standard_normal((5, 4, 1, 1))
    path = str(tmp_path / "k.safetensors")
    save_file(
        {
            "lora_unet_a.lora_down.weight": down,
            "lora_unet_a.lora_up.weight": up,
            "lora_unet_a.alpha": np.array(4.0),
            "lora_unet_c.lora_down.weight": conv_down,
            "lora_unet_c.lora_up.weight": conv_up,
        },
        path,
    )
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
    small = str(tmp_path / "small.safetensors")  # kohya's convention kept: no .alpha where the input had none
    cond.compress(path, small, rank=2)
    from safetensors.numpy import load_file

    keys = set(load_file(small))
    assert "lora_unet_a.alpha" in keys and "lora_unet_c.alpha" not in keys


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


transformers = pytest.importorskip("transformers")


def _bert_pair(folder, rank=3, seed=0):
    """A tiny BertModel (the base) and a 'fine-tune' of it: rank-``rank`` changes plus small noise
    on every Linear weight, a changed bias and LayerNorm; both saved as safetensors folders."""
    config = transformers.BertConfig(
        vocab_size=40,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=48,
        max_position_embeddings=32,
    )
    torch.manual_seed(seed)
    base = transformers.BertModel(config)
    base.save_pretrained(str(folder / "base"))
    ft = transformers.BertModel(config)
    ft.load_state_dict(base.state_dict())
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for _name, module in ft.named_modules():
            if isinstance(module, torch.nn.Linear):
                out, inp = module.weight.shape
                low = torch.randn(out, rank, generator=gen) @ torch.randn(rank, inp, generator=gen) * 0.05
                module.weight += low + 1e-4 * torch.randn(out, inp, generator=gen)
        ft.encoder.layer[0].attention.self.query.bias += 0.1
        ft.encoder.layer[1].output.LayerNorm.weight *= 1.1
    ft.save_pretrained(str(folder / "ft"))
    return folder / "base", folder / "ft"


@pytest.mark.parametrize("bound", [0.05, 0.2])
def test_extract_loads_in_peft_and_keeps_the_bound(tmp_path, bound):
    base_dir, ft_dir = _bert_pair(tmp_path)
    out = tmp_path / "adapter"
    result = runner.invoke(
        app, ["compress", str(ft_dir), "--base", str(base_dir), "--max-error", str(bound), "-o", str(out), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["schema"] == "cond.compress-adapter/1" and doc["mode"] == "extract"
    # through peft itself: base + written adapter, merged, against the fine-tune
    base = transformers.BertModel.from_pretrained(str(base_dir))
    merged = peft.PeftModel.from_pretrained(base, str(out)).merge_and_unload().state_dict()
    ft = transformers.BertModel.from_pretrained(str(ft_dir)).state_dict()
    ref = transformers.BertModel.from_pretrained(str(base_dir)).state_dict()
    factored = {m["name"] + ".weight": m for m in doc["modules"]}
    assert len(factored) == 13  # 2 layers x (q, k, v, attention output, intermediate, output), the pooler
    for name, value in ft.items():
        got, want = merged[name].double().numpy(), value.double().numpy()
        if name in factored:
            dw = want - ref[name].double().numpy()
            err = np.linalg.norm(got - want) / np.linalg.norm(dw)
            # peft merges in float32: its rounding of W (about 6e-8 ||W||) comes on top of the bound
            slack = 4 * np.finfo(np.float32).eps * np.linalg.norm(want) / np.linalg.norm(dw)
            assert err <= bound + slack, (name, err)
            assert abs(err - factored[name]["error"]) <= slack
        else:  # stored whole (the bias, the LayerNorm) or unchanged: exact
            assert np.array_equal(got, want), name
    ranks = [m["rank"] for m in doc["modules"]]
    assert max(ranks) <= 3 + 6 and (bound == 0.2 or min(ranks) >= 3)
    for m in doc["modules"]:  # float32 factors against the float32 dense weight
        rows, cols = m["shape"]
        assert m["bytes_after"] == 4 * m["rank"] * (rows + cols) and m["bytes_before"] == 4 * rows * cols


def test_resize_a_peft_adapter_in_factor_space(tmp_path):
    folder, _, deltas = _peft_adapter(tmp_path / "adapter")
    out = tmp_path / "small"
    report = cond.compress(folder, str(out), max_error=0.3)
    assert report.mode == "resize" and report.format == "peft"
    resized = {m.name: m for m in open_adapter(str(out)).modules}
    for record in report.modules:
        module = resized[record.name]
        left, right = module.factors()
        truth = deltas[record.name]
        err = np.linalg.norm(module.scale * left @ right - truth) / np.linalg.norm(truth)
        # the truth is peft's float32 merge: its rounding beside the bound
        assert err <= 0.3 + 1e-5 and abs(err - record.error) <= 1e-5
        s = np.linalg.svd(truth, compute_uv=False)
        tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / np.linalg.norm(truth)
        eckart_young = int(np.argmax(np.append(tails, 0.0)[1:] <= 0.3)) + 1
        # minimal: never below Eckart-Young (no rank-k matrix does better), above it only when the
        # float32 rounding of the written factors pushes the error past the bound
        assert eckart_young <= module.rank == record.rank <= eckart_young + 1


def test_resize_a_kohya_file_keeps_its_format(tmp_path):
    down = RNG.standard_normal((8, 20)).astype(np.float32)
    up = (RNG.standard_normal((30, 8)) * np.logspace(0, -4, 8)).astype(np.float32)
    src = str(tmp_path / "k.safetensors")
    save_file(
        {
            "lora_te_x.lora_down.weight": down,
            "lora_te_x.lora_up.weight": up,
            "lora_te_x.alpha": np.array(4.0, np.float32),
        },
        src,
    )
    out = str(tmp_path / "small.safetensors")
    report = cond.compress(src, out, rank=2)
    (module,) = open_adapter(out).modules
    truth = 0.5 * up.astype(np.float64) @ down.astype(np.float64)
    left, right = module.factors()
    err = np.linalg.norm(module.scale * left @ right - truth) / np.linalg.norm(truth)
    s = np.linalg.svd(truth, compute_uv=False)
    assert module.rank == 2 and err == pytest.approx(np.sqrt(np.sum(s[2:] ** 2)) / np.linalg.norm(truth), rel=1e-4)
    assert report.modules[0].error == pytest.approx(err, rel=1e-6)
    from safetensors.numpy import load_file

    assert sorted(load_file(out)) == ["lora_te_x.alpha", "lora_te_x.lora_down.weight", "lora_te_x.lora_up.weight"]


def test_the_randomized_route_is_certified(tmp_path):
    """A 1100 x 1200 delta takes the randomized range finder; the bound still holds exactly."""
    from cond.commands.adapter_compress import delta_svd, relative_error_of, truncate
    from cond.commands.compress.storage import Storage

    rng = np.random.default_rng(3)
    dw = rng.standard_normal((1100, 20)) @ rng.standard_normal((20, 1200)) + 0.01 * rng.standard_normal((1100, 1200))
    svd, route = delta_svd(dw, 0.1, None, seed=0)
    assert route == "randomized"
    norm = np.linalg.norm(dw)
    k, sl, sr, error = truncate(svd, norm, Storage("F32"), 0.1, None, relative_error_of(dw, norm))
    exact = np.linalg.norm(dw - sl.astype(np.float64) @ sr.astype(np.float64)) / norm
    assert error == pytest.approx(exact, rel=1e-12) and error <= 0.1
    s = np.linalg.svd(dw, compute_uv=False)
    tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / norm
    assert k <= int(np.argmax(np.append(tails, 0.0)[1:] <= 0.1)) + 1 + 2


def test_a_resized_peft_adapter_loads_in_peft(tmp_path):
    """Embedding and Linear LoRAs written back in PEFT's own keys: peft loads the resized adapter,
    and its merged weights differ from the original merge by at most the bound."""
    folder, base_weights, deltas = _peft_adapter(tmp_path / "adapter")
    out = tmp_path / "small"
    report = cond.compress(folder, str(out), max_error=0.2)
    torch.manual_seed(0)
    model = Tiny()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in base_weights.items()})
    merged = peft.PeftModel.from_pretrained(model, str(out)).merge_and_unload().state_dict()
    errors = {r.name: r.error for r in report.modules}
    for name, truth in deltas.items():
        got = merged[f"{name}.weight"].double().numpy() - base_weights[f"{name}.weight"].astype(np.float64)
        err = np.linalg.norm(got - truth) / np.linalg.norm(truth)
        assert err <= 0.2 + 1e-5 and abs(err - errors[name]) <= 1e-5, name


def _planted_collection(tmp_path, count=6, noise=1e-4, seed=5, prefix="task"):
    """``count`` PEFT adapters of one tiny base whose deltas share 3-dim column and row spaces per
    module (a different 3 x 3 core each) plus small noise: one shared basis fits them all."""
    rng = np.random.default_rng(seed)
    shapes = {"query": (24, 16), "value": (24, 16), "out": (16, 24)}
    bases = {
        m: (np.linalg.qr(rng.standard_normal((s[0], 3)))[0], np.linalg.qr(rng.standard_normal((s[1], 3)))[0])
        for m, s in shapes.items()
    }
    folders, deltas = [], []
    for i in range(count):
        tensors, truth = {}, {}
        for module, (out, inp) in shapes.items():
            u, v = bases[module]
            dw = u @ rng.standard_normal((3, 3)) @ v.T + noise * rng.standard_normal((out, inp))
            uu, s, vt = np.linalg.svd(dw)
            b, a = (uu[:, :4] * s[:4]).astype(np.float32), vt[:4].astype(np.float32)
            tensors[f"base_model.model.{module}.lora_A.weight"] = a
            tensors[f"base_model.model.{module}.lora_B.weight"] = b
            truth[module] = b.astype(np.float64) @ a.astype(np.float64)
        folder = tmp_path / f"{prefix}{i}"
        folder.mkdir()
        save_file(tensors, str(folder / "adapter_model.safetensors"))
        (folder / "adapter_config.json").write_text(
            json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 4, "target_modules": sorted(shapes)})
        )
        folders.append(str(folder))
        deltas.append(truth)
    return folders, deltas


def test_a_collection_shares_the_planted_bases_and_keeps_every_bound(tmp_path):
    folders, deltas = _planted_collection(tmp_path)
    out = str(tmp_path / "all.safetensors")
    report = cond.compress(folders, out, max_error=0.05)
    assert report.SCHEMA == "cond.compress-collection/1"
    for m in report.modules:
        assert [g["rank"] for g in m["groups"]] == [3] and len(m["groups"][0]["members"]) == 6  # one group
        assert m["worst_error"] <= 0.05
    # planted: U and V of rank 3 shared, a 3 x 3 core each, against 6 adapters of rank 3 alone
    planted = sum(3 * (o + i) + 6 * 9 for o, i in ((24, 16), (24, 16), (16, 24))) * 4

    def eckart_young(dw):
        s = np.linalg.svd(dw, compute_uv=False)
        tails = np.sqrt(np.cumsum((s**2)[::-1])[::-1]) / np.linalg.norm(dw)
        return int(np.argmax(np.append(tails, 0.0)[1:] <= 0.05)) + 1

    alone = sum(eckart_young(dw) * sum(dw.shape) * 4 for truth in deltas for dw in truth.values())
    assert report.bytes_collection == pytest.approx(planted, rel=0.10) and report.bytes_alone == alone
    # every adapter back as a PEFT folder, each within the bound of its own product (plus one float32 rounding)
    expanded = tmp_path / "back"
    result = runner.invoke(app, ["expand", out, "-o", str(expanded), "-q"])
    assert result.exit_code == 0, result.output
    for folder, truth in zip(folders, deltas):
        name = os.path.basename(folder)
        for module in open_adapter(str(expanded / name)).modules:
            left, right = module.factors()
            got = module.scale * left @ right
            err = np.linalg.norm(got - truth[module.name]) / np.linalg.norm(truth[module.name])
            assert err <= 0.05 + 1e-6, (name, module.name, err)


def test_one_adapter_of_a_collection_loads_onto_a_model(tmp_path):
    from cond.torch import load_adapter

    folders, deltas = _planted_collection(tmp_path, count=3)
    out = str(tmp_path / "all.safetensors")
    cond.compress(folders, out, max_error=0.05)
    torch.manual_seed(0)
    model = Tiny()
    before = {k: v.detach().double().numpy().copy() for k, v in model.state_dict().items()}
    merged = load_adapter(model, out, "task1").merge_and_unload().state_dict()
    for module, truth in deltas[1].items():
        got = merged[f"{module}.weight"].double().numpy() - before[f"{module}.weight"]
        assert np.linalg.norm(got - truth) <= (0.05 + 1e-5) * np.linalg.norm(truth)
    refused = runner.invoke(app, ["expand", out, "-o", str(tmp_path / "x"), "--adapter", "nope"])
    assert refused.exit_code == 2 and "task0, task1, task2" in refused.stderr


def test_two_families_make_two_groups(tmp_path):
    """Adapters from two unrelated planted subspaces: sharing across families costs more than it
    saves, so each module gets two groups of 3, each of rank 3; a folder of adapters is a collection too."""
    (tmp_path / "all").mkdir()
    first, _ = _planted_collection(tmp_path / "all", count=3, seed=1, prefix="a")
    second, _ = _planted_collection(tmp_path / "all", count=3, seed=2, prefix="b")
    report = cond.compress(str(tmp_path / "all"), str(tmp_path / "c.safetensors"), max_error=0.05)
    assert report.adapters == ("a0", "a1", "a2", "b0", "b1", "b2")
    for m in report.modules:
        groups = sorted(sorted(g["members"]) for g in m["groups"])
        assert groups == [["a0", "a1", "a2"], ["b0", "b1", "b2"]] and {g["rank"] for g in m["groups"]} == {3}
        assert m["worst_error"] <= 0.05


def test_an_untrained_module_is_left_out_of_a_resize(tmp_path):
    """PEFT initialises B to zero: a module training never reached has a zero product, and a
    resize leaves it out (saying so) instead of failing."""
    pair = {
        "base_model.model.q.lora_A.weight": RNG.standard_normal((4, 5)).astype(np.float32),
        "base_model.model.q.lora_B.weight": RNG.standard_normal((6, 4)).astype(np.float32),
        "base_model.model.k.lora_A.weight": RNG.standard_normal((4, 5)).astype(np.float32),
        "base_model.model.k.lora_B.weight": np.zeros((6, 4), np.float32),
    }
    folder = tmp_path / "a"
    folder.mkdir()
    save_file(pair, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 4, "lora_alpha": 4}))
    report = cond.compress(str(folder), str(tmp_path / "b"), max_error=0.1)
    assert [m.name for m in report.modules] == ["q"]
    assert report.left_out == (("k", "a zero delta (an untrained module): left out, the product is the same"),)
    assert [m.name for m in open_adapter(str(tmp_path / "b")).modules] == ["q"]


def test_inspect_a_fine_tune_against_its_base(tmp_path):
    """FINETUNED --base BASE: every changed Linear weight's delta, against LAPACK on W_ft - W_base."""
    base_dir, ft_dir = _bert_pair(tmp_path)
    report = cond.inspect(str(ft_dir), base=str(base_dir))
    assert report.format == "delta" and len(report.modules) == 13
    from safetensors.numpy import load_file

    base = load_file(str(base_dir / "model.safetensors"))
    ft = load_file(str(ft_dir / "model.safetensors"))
    for m in report.modules:
        w = base[m.name + ".weight"].astype(np.float64)
        dw = ft[m.name + ".weight"].astype(np.float64) - w
        s = np.linalg.svd(dw, compute_uv=False)
        assert m.sigma_max == pytest.approx(s[0], rel=1e-12)
        assert m.relative_norm == pytest.approx(np.linalg.norm(dw) / np.linalg.norm(w), rel=1e-12)
        assert m.rank == min(dw.shape) and m.energy_rank_99 <= 3 + min(dw.shape) // 2
    assert any("LayerNorm" in n for n in report.notices) and any("query.bias" in n for n in report.notices)
    table = runner.invoke(app, ["inspect", str(ft_dir), "--base", str(base_dir)])
    assert table.exit_code == 0 and "its change from" in table.stdout


def test_a_budget_is_spent_where_the_error_falls_most(tmp_path):
    """--budget over an adapter's modules: the ranks are the allocator's (checked against brute force
    over every rank combination of the predicted losses), the budget is kept, and with --max-error
    every module also meets the bound."""
    import itertools

    folder, _, deltas = _peft_adapter(tmp_path / "adapter")
    adapter = open_adapter(folder)
    report = cond.compress(folder, str(tmp_path / "b"), budget=0.5)
    ranks = {m.name: m.rank for m in report.modules}
    spent = sum(ranks.get(m.name, 0) * sum(m.shape) for m in adapter.modules)
    total = sum(m.rank * sum(m.shape) for m in adapter.modules)
    assert spent <= 0.5 * total
    spectra = {m.name: np.linalg.svd(deltas[m.name], compute_uv=False) for m in adapter.modules}

    def loss(name, k):
        s = spectra[name]
        return float(np.sum(s[k:] ** 2) / np.sum(s**2))

    names = [m.name for m in adapter.modules]
    widths = {m.name: sum(m.shape) for m in adapter.modules}
    best = min(
        sum(loss(n, k) for n, k in zip(names, combo))
        for combo in itertools.product(*[range(len(spectra[n]) + 1) for n in names])
        if sum(k * widths[n] for n, k in zip(names, combo)) <= 0.5 * total
    )
    got = sum(loss(n, ranks.get(n, 0)) for n in names)
    assert got <= best + 0.05  # the Lagrangian allocation with its fill: near the brute-force optimum
    bounded = cond.compress(folder, str(tmp_path / "c"), budget=1.0, max_error=0.3)
    assert all(m.error <= 0.3 for m in bounded.modules)


def test_a_budget_for_an_extracted_adapter_loads_in_peft(tmp_path):
    base_dir, ft_dir = _bert_pair(tmp_path)
    out = tmp_path / "adapter"
    result = runner.invoke(
        app, ["compress", str(ft_dir), "--base", str(base_dir), "--budget-bytes", "0.2", "-o", str(out), "-f", "json"]
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    base = transformers.BertModel.from_pretrained(str(base_dir))
    linear = [m for m in base.modules() if isinstance(m, torch.nn.Linear)]
    dense = sum(4 * m.weight.numel() for m in linear)  # every changed Linear weight, float32
    assert len(linear) == 13 and sum(m["bytes_after"] for m in doc["modules"]) <= 0.2 * dense
    merged = peft.PeftModel.from_pretrained(base, str(out)).merge_and_unload().state_dict()
    ft = transformers.BertModel.from_pretrained(str(ft_dir)).state_dict()
    ref = transformers.BertModel.from_pretrained(str(base_dir)).state_dict()
    for m in doc["modules"]:
        name = m["name"] + ".weight"
        want, dw = ft[name].double().numpy(), ft[name].double().numpy() - ref[name].double().numpy()
        err = np.linalg.norm(merged[name].double().numpy() - want) / np.linalg.norm(dw)
        assert abs(err - m["error"]) <= 4 * np.finfo(np.float32).eps * np.linalg.norm(want) / np.linalg.norm(dw)


def test_a_whitened_extraction_bounds_the_output_error(tmp_path):
    """--method whiten --activations: every module's output error on the calibration inputs,
    ||(W_ft - W_merged) X^T|| / ||dW X^T|| with X itself (not its Gram's Cholesky factor), is within
    the bound after peft's merge, and the reported error is that one."""
    from cond.formats.calibration_file import write_calibration

    base_dir, ft_dir = _bert_pair(tmp_path)
    base = transformers.BertModel.from_pretrained(str(base_dir))
    rng = np.random.default_rng(8)
    inputs = {}
    for name, module in base.named_modules():
        if isinstance(module, torch.nn.Linear):
            n = module.in_features
            inputs[name] = rng.standard_normal((400, n)) * np.logspace(0, -2, n)  # anisotropic inputs
    write_calibration(
        None,
        str(tmp_path / "grams.safetensors"),
        {f"{k}.weight": x.T @ x for k, x in inputs.items()},
        {
            "kind": "gram",
            "rows": json.dumps({f"{k}.weight": 400 for k in inputs}),
            "tokens": "400",
            "sequences": "400",
            "steps": "0",
        },
    )
    out = tmp_path / "adapter"
    result = runner.invoke(
        app,
        [
            "compress",
            str(ft_dir),
            "--base",
            str(base_dir),
            "--max-error",
            "0.1",
            "--method",
            "whiten",
            "--activations",
            str(tmp_path / "grams.safetensors"),
            "-o",
            str(out),
            "-f",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert {m["route"] for m in doc["modules"]} == {"whiten"}
    merged = peft.PeftModel.from_pretrained(base, str(out)).merge_and_unload().state_dict()
    ft = transformers.BertModel.from_pretrained(str(ft_dir)).state_dict()
    ref = transformers.BertModel.from_pretrained(str(base_dir)).state_dict()
    for m in doc["modules"]:
        name = m["name"] + ".weight"
        x = inputs[m["name"]]
        dw = ft[name].double().numpy() - ref[name].double().numpy()
        miss = ft[name].double().numpy() - merged[name].double().numpy()
        err = np.linalg.norm(miss @ x.T) / np.linalg.norm(dw @ x.T)
        slack = (
            8 * np.finfo(np.float32).eps * np.linalg.norm(ft[name].double().numpy() @ x.T) / np.linalg.norm(dw @ x.T)
        )
        assert err <= 0.1 + slack, (name, err)
        assert abs(err - m["error"]) <= slack


def test_a_collection_never_costs_more_than_resizing_alone(tmp_path):
    """Unrelated adapters make groups of one, which store their own resized factors: the collection's
    bytes equal resizing each alone, every adapter within the bound after expanding."""
    folders = []
    for i in range(3):
        pair = {
            "base_model.model.q.lora_A.weight": RNG.standard_normal((6, 30)).astype(np.float32),
            "base_model.model.q.lora_B.weight": RNG.standard_normal((40, 6)).astype(np.float32),
        }
        folders.append(peft_like(tmp_path / f"u{i}", pair))
    report = cond.compress(folders, str(tmp_path / "c.safetensors"), max_error=0.2)
    assert all(len(g["members"]) == 1 for m in report.modules for g in m["groups"])
    assert report.bytes_collection <= report.bytes_alone
    result = runner.invoke(app, ["expand", str(tmp_path / "c.safetensors"), "-o", str(tmp_path / "back"), "-q"])
    assert result.exit_code == 0, result.output
    for folder in folders:
        (module,) = open_adapter(str(tmp_path / "back" / os.path.basename(folder))).modules
        (orig,) = open_adapter(folder).modules
        left, right = module.factors()
        ol, orr = orig.factors()
        truth = orig.scale * ol @ orr
        assert np.linalg.norm(module.scale * left @ right - truth) <= (0.2 + 1e-6) * np.linalg.norm(truth)


def peft_like(folder, tensors, r=6):
    folder.mkdir()
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": r, "lora_alpha": r}))
    return str(folder)
