"""cond calibrate on a tiny BERT built here (no download): the checkpoint's names, padding masked,
row counts recorded and checked by compress. Oracle: each passage run alone, unpadded, with its
layer inputs captured by a plain forward hook."""

import json
import os

import numpy as np
import pytest
from invariants import assert_one_line_error
from safetensors import safe_open
from safetensors.numpy import load_file
from typer.testing import CliRunner

import cond
from cond.cli.main import app

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
runner = CliRunner()

WORDS = "the a model layer weight matrix rank error bound text token small large cond runs fast slow".split()


def _tiny_bert(folder):
    """A BertForMaskedLM (its checkpoint names start with 'bert.'), a word-level tokenizer, saved."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {w: i for i, w in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    fast.save_pretrained(folder)
    config = transformers.BertConfig(
        vocab_size=len(vocab),
        hidden_size=24,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=40,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    transformers.BertForMaskedLM(config).save_pretrained(folder)
    return fast


def _corpus(path, count, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(2, 14))) for _ in range(count)]
    path.write_text("\n".join(lines) + "\n\n")
    return lines


def _checkpoint_names(folder):
    with safe_open(os.path.join(folder, "model.safetensors"), framework="np") as f:
        return set(f.keys())


def test_grams_use_the_checkpoint_names_mask_padding_and_count_rows(tmp_path):
    model_dir = tmp_path / "bert"
    tokenizer = _tiny_bert(model_dir)
    lines = _corpus(tmp_path / "t.txt", 30)
    result = runner.invoke(
        app,
        [
            "calibrate",
            str(model_dir),
            "--text",
            str(tmp_path / "t.txt"),
            "-o",
            str(tmp_path / "g.safetensors"),
            "--batch-size",
            "7",
            "-f",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    grams = load_file(str(tmp_path / "g.safetensors"))
    names = _checkpoint_names(model_dir)
    assert set(grams) <= names and all(k.startswith("bert.") for k in grams)  # the checkpoint's own names
    assert "bert.encoder.layer.0.attention.self.query.weight" in grams
    # oracle: each passage alone, no padding, the query layer's inputs captured
    base = transformers.AutoModel.from_pretrained(model_dir, local_files_only=True).eval()
    seen = []
    hook = base.encoder.layer[1].intermediate.dense.register_forward_hook(
        lambda m, i, o: seen.append(i[0].detach().double().reshape(-1, m.in_features))
    )
    with torch.no_grad():
        for line in lines:
            base(**tokenizer([line], return_tensors="pt"))
    hook.remove()
    x = torch.cat(seen).numpy()
    want = x.T @ x
    got = grams["bert.encoder.layer.1.intermediate.dense.weight"].astype(np.float64)
    np.testing.assert_allclose(got, want, rtol=2e-4, atol=2e-4 * np.abs(want).max())
    with safe_open(str(tmp_path / "g.safetensors"), framework="np") as f:
        meta = f.metadata()
    rows = json.loads(meta["cond.rows"])
    assert rows["bert.encoder.layer.1.intermediate.dense.weight"] == x.shape[0] == int(meta["cond.tokens"])
    assert doc["tokens"] == x.shape[0] and doc["sequences"] == len(lines) == int(meta["cond.sequences"])
    # the file feeds compress directly, under the checkpoint's names
    report = cond.compress(
        str(model_dir / "model.safetensors"),
        str(tmp_path / "c.safetensors"),
        ratio=0.5,
        min_size=0,
        method="whiten",
        activations=str(tmp_path / "g.safetensors"),
        include=r"encoder",
    )
    assert {t.weighting for t in report.tensors if t.storage == "lowrank"} == {"whiten"}


def test_fisher_is_written_and_too_little_text_is_refused_by_compress(tmp_path):
    import stat

    model_dir = tmp_path / "bert"
    _tiny_bert(model_dir)
    (tmp_path / "short.txt").write_text("the model\nrank\n")
    old = os.umask(0o027)
    try:
        result = runner.invoke(
            app,
            [
                "calibrate",
                str(model_dir),
                "--text",
                str(tmp_path / "short.txt"),
                "-o",
                str(tmp_path / "g.safetensors"),
                "--fisher",
                str(tmp_path / "f.safetensors"),
            ],
        )
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    assert "refuses a Gram with fewer rows" in result.stderr and "add at least 37 tokens" in result.stderr
    for written in ("g.safetensors", "f.safetensors"):  # the user's umask, not mkstemp's 0600
        assert stat.S_IMODE(os.stat(tmp_path / written).st_mode) == 0o640
    fisher = load_file(str(tmp_path / "f.safetensors"))
    weight = load_file(str(model_dir / "model.safetensors"))["bert.encoder.layer.0.output.dense.weight"]
    f = fisher["bert.encoder.layer.0.output.dense.weight"]
    assert f.shape == weight.shape and np.all(f >= 0) and f.sum() > 0
    result = runner.invoke(
        app,
        [
            "compress",
            str(model_dir / "model.safetensors"),
            "--method",
            "whiten",
            "--activations",
            str(tmp_path / "g.safetensors"),
            "--ratio",
            "0.5",
            "--min-size",
            "0",
            "-o",
            str(tmp_path / "c.safetensors"),
        ],
    )
    assert_one_line_error(result, ["g.safetensors", "input rows for", "more tokens of text"])
    assert not (tmp_path / "c.safetensors").exists()


def test_a_pooler_is_short_of_passages_not_tokens():
    """A layer that sees one row per passage (a pooler) needs more passages: more tokens in the
    same passages would not add a row."""
    from cond.formats.calibration_file import row_unit

    assert row_unit(12, tokens="340", sequences="12") == "passages"
    assert row_unit(340, tokens="340", sequences="12") == "tokens"
    assert row_unit(12, tokens="12", sequences="12") == "tokens"  # one token a passage: either reading
    assert row_unit(12, tokens=None, sequences=None) == "tokens"
