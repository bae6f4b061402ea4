"""Outputs that never fail at the end, and commands that say when they did nothing."""

import json
import os
import stat

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from typer.testing import CliRunner

from cond.cli.main import app

runner = CliRunner()


def checkpoint(path, n=3):
    rng = np.random.default_rng(0)
    save_file(
        {
            f"layer{i}.weight": (rng.standard_normal((64, 6)) @ rng.standard_normal((6, 48))).astype(np.float32)
            for i in range(n)
        },
        str(path),
    )
    return str(path)


def test_expand_force_replaces_an_earlier_sharded_expansion(tmp_path):
    src = checkpoint(tmp_path / "m.safetensors")
    small = tmp_path / "c.safetensors"
    assert runner.invoke(app, ["compress", src, "--rank", "6", "-o", str(small), "-q"]).exit_code == 0
    dense = tmp_path / "dense"
    sharded = runner.invoke(app, ["expand", str(small), "-o", str(dense), "--max-shard-size", "13000", "-q"])
    assert sharded.exit_code == 0, sharded.output
    shards = sorted(os.listdir(dense))
    assert "model.safetensors.index.json" in shards and len(shards) == 5 and ".cond-expand.json" in shards
    again = runner.invoke(app, ["expand", str(small), "-o", str(dense), "-q"])  # no --force
    assert again.exit_code == 2 and "earlier expansion" in again.stderr
    assert sorted(os.listdir(dense)) == shards
    (dense / "notes.txt").write_text("mine")  # not cond's: must survive
    forced = runner.invoke(app, ["expand", str(small), "-o", str(dense), "--force", "-q"])
    assert forced.exit_code == 0, forced.output
    assert sorted(os.listdir(dense)) == [".cond-expand.json", "model.safetensors", "notes.txt"]
    original = load_file(src)
    restored = load_file(str(dense / "model.safetensors"))
    assert set(restored) == set(original)


def test_outputs_get_the_users_umask(tmp_path):
    old = os.umask(0o027)
    try:
        src = checkpoint(tmp_path / "m.safetensors")
        out = tmp_path / "c.safetensors"
        assert runner.invoke(app, ["compress", src, "--rank", "4", "-o", str(out), "-q"]).exit_code == 0
        np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((50, 3)))
        rows = tmp_path / "s.tsv"
        assert runner.invoke(app, ["sample", str(tmp_path / "x.npy"), "--size", "5", "-o", str(rows)]).exit_code == 0
    finally:
        os.umask(old)
    for path in (out, rows):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o640, oct(os.stat(path).st_mode)  # 0666 & ~027


def test_sample_output_follows_force(tmp_path):
    np.save(tmp_path / "x.npy", np.random.default_rng(0).standard_normal((50, 3)))
    out = tmp_path / "s.tsv"
    out.write_text("keep me")
    refused = runner.invoke(app, ["sample", str(tmp_path / "x.npy"), "--size", "5", "-o", str(out)])
    assert refused.exit_code == 2 and out.read_text() == "keep me"
    done = runner.invoke(app, ["sample", str(tmp_path / "x.npy"), "--size", "5", "-o", str(out), "--force"])
    assert done.exit_code == 0 and out.read_text().startswith("# cond sample")
    to_stdout = runner.invoke(app, ["sample", str(tmp_path / "x.npy"), "--size", "5", "-o", "-"])
    assert to_stdout.exit_code == 0 and to_stdout.stdout.startswith("# cond sample")


@pytest.mark.parametrize(
    "args, why",
    [
        (["--include", "nothing-matches"], "3 not matched by --include"),
        (["--min-size", "100000"], "3 fewer than --min-size 100000 entries"),
    ],
)
def test_compress_that_changes_nothing_says_why(tmp_path, args, why):
    src = checkpoint(tmp_path / "m.safetensors")
    out = tmp_path / "c.safetensors"
    result = runner.invoke(app, ["compress", src, "--max-error", "0.1", "-o", str(out), "-f", "json", *args])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["totals"]["nothing_compressed"] == why
    assert result.stderr.strip() == f"cond: nothing compressed: {why}"


def test_inspect_filter_that_matches_nothing(tmp_path):
    src = checkpoint(tmp_path / "m.safetensors")
    said = runner.invoke(app, ["inspect", src, "--include", "zzz", "-f", "json"])
    assert said.exit_code == 0 and "no tensor matches `--include zzz`" in said.stderr
    alias = runner.invoke(app, ["inspect", src, "--filter", "layer1", "-f", "json"])  # the older name
    assert [m["name"] for m in json.loads(alias.stdout)["matrices"]] == ["layer1.weight"]
    assert json.loads(said.stdout)["matrices"] == []


def test_expand_json_is_its_schema_and_matches_the_files(tmp_path):
    src = checkpoint(tmp_path / "m.safetensors")
    small = tmp_path / "c.safetensors"
    assert runner.invoke(app, ["compress", src, "--rank", "6", "-o", str(small), "-q"]).exit_code == 0
    done = runner.invoke(
        app, ["expand", str(small), "-o", str(tmp_path / "d"), "--max-shard-size", "13000", "-q", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    doc = json.loads(done.stdout)
    assert doc["schema"] == "cond.expand/1" and doc["tensors"] == 3
    shards = [f for f in doc["files"] if f.endswith(".safetensors")]
    assert all(os.path.exists(f) for f in doc["files"]) and doc["files"][-1].endswith("index.json")
    # total_size counts tensor bytes, as the index's metadata.total_size does
    assert doc["total_size"] == sum(a.nbytes for f in shards for a in load_file(f).values())
    lines = runner.invoke(app, ["expand", str(small), "-o", str(tmp_path / "e"), "-q", "--format", "jsonl"])
    records = [json.loads(x) for x in lines.stdout.splitlines()]
    assert [r["record"] for r in records] == ["file", "summary"] and records[1]["tensors"] == 3
