"""cond.torch: the factorised runtime against the expanded dense model, and its multiply-adds counted
by torch's own FlopCounterMode (an independent count of the report's compute figures)."""

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import cond

torch = pytest.importorskip("torch")


def _model(seed=0):
    """Linear layers whose weights come from two shared subspaces (so they cluster), plus a full-rank one."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Linear(40, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 64),
        torch.nn.Tanh(),
        torch.nn.Linear(64, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((64, 6)))[0]
    with torch.no_grad():
        for k in (0, 2, 4, 6):
            w = basis @ rng.standard_normal((6, model[k].in_features)) + 1e-3 * rng.standard_normal(
                (64, model[k].in_features)
            )
            model[k].weight.copy_(torch.from_numpy(w))
    return model


def _save(model, path):
    save_file({k: v.detach().numpy().copy() for k, v in model.state_dict().items()}, str(path))


@pytest.mark.parametrize(
    "options",
    [
        dict(max_error=0.05),
        dict(max_error=0.05, dtype="int8"),
        dict(rank=5, cluster=False),
        dict(budget=0.4, dtype="bf16"),
    ],
    ids=["clustered", "int8", "rank", "budget-bf16"],
)
@pytest.mark.parametrize("keep_int8", [False, True])
def test_factorised_model_equals_the_expanded_one(tmp_path, options, keep_int8):
    import cond.torch as ct

    _save(_model(), tmp_path / "m.safetensors")
    report = cond.compress(tmp_path / "m.safetensors", tmp_path / "c.safetensors", min_size=0, **options)
    assert any(t.storage in ("lowrank", "cluster") for t in report.tensors)
    expanded = load_file(cond.expand(str(tmp_path / "c.safetensors"), str(tmp_path / "e.safetensors")).files[0])
    dense = _model(1)
    dense.load_state_dict({k: torch.from_numpy(v) for k, v in expanded.items()})
    factorised = ct.load_factorised(_model(2), str(tmp_path / "c.safetensors"), keep_int8=keep_int8)
    layers = [m for m in factorised.modules() if isinstance(m, ct.LowRankLinear)]
    assert len(layers) == sum(t.storage in ("lowrank", "cluster") for t in report.tensors)
    x = torch.from_numpy(np.random.default_rng(3).standard_normal((16, 40)).astype(np.float32))
    with torch.no_grad():
        want, got = dense(x), factorised(x)
    # float32: the dense weight was rounded once, the factorised product rounds in two steps
    torch.testing.assert_close(got, want, rtol=2e-4, atol=2e-5)
    if report.clusters:  # a shared basis is one parameter held by every member
        shared = {
            id(m.u if report.clusters[0].axis == "cols" else m.v) for m in layers if m.rank == report.clusters[0].rank
        }
        assert len(shared) < len(layers)
    back = ct.to_dense(factorised)
    for k, v in back.state_dict().items():
        np.testing.assert_allclose(v.numpy(), expanded[k], rtol=1e-6, atol=1e-7)


def test_multiply_adds_match_torch_flop_counter(tmp_path):
    from torch.utils.flop_counter import FlopCounterMode

    import cond.torch as ct

    _save(_model(), tmp_path / "m.safetensors")
    report = cond.compress(
        tmp_path / "m.safetensors", tmp_path / "c.safetensors", max_error=0.05, min_size=0, allow_slower=True
    )
    totals = report.matrix_totals()
    x = torch.zeros((1, 40))
    for model, want in (
        (_model(), totals["macs_before"]),
        (ct.load_factorised(_model(), str(tmp_path / "c.safetensors")), totals["macs_after"]),
    ):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x)
        assert counter.get_total_flops() == 2 * want  # one multiply-add is two flops
    assert totals["macs_after"] < totals["macs_before"]


def test_names_with_a_wrapper_prefix_are_found_and_strays_refused(tmp_path):
    import cond.torch as ct

    model = _model()
    _save(model, tmp_path / "m.safetensors")
    cond.compress(tmp_path / "m.safetensors", tmp_path / "c.safetensors", rank=4, min_size=0)
    wrapper = torch.nn.Sequential(_model(5))  # its names are '0.<name>'
    ct.load_factorised(wrapper, str(tmp_path / "c.safetensors"))
    assert sum(isinstance(m, ct.LowRankLinear) for m in wrapper.modules()) == 5
    with pytest.raises(ValueError, match="no place for"):
        ct.load_factorised(torch.nn.Sequential(torch.nn.Linear(40, 64)), str(tmp_path / "c.safetensors"))
    other = torch.nn.Sequential(torch.nn.Linear(40, 32))  # '0.weight' of another shape
    with pytest.raises(ValueError, match=r"tensor '0\.(weight|bias)' has shape \[64(, 40)?\], the model's is \[32"):
        ct.load_factorised(other, str(tmp_path / "c.safetensors"), strict=False)
