"""Plain SVD, Fisher-weighted SVD and whitening at equal parameter counts, end to end.

Trains a small MLP (64 -> 256 -> 256 -> 10, ReLU) on scikit-learn's bundled
digits data with numpy (full-batch Adam, fixed seed), accumulates on the
training split the per-sample empirical Fisher of every weight (the sum over
samples of the squared gradient of that sample's loss) and the Gram matrix
X^T X of every layer's inputs, writes them as safetensors files, then
compresses the checkpoint with ``cond.compress`` at several ``ratio`` values
(the same rank per matrix for every method, so equal parameter counts) with
``svd``, ``fisher`` (each axis) and ``whiten``, and prints the test loss and
accuracy of each compressed model.

    python examples/digits_mlp.py                 # the table in README.md
    python examples/digits_mlp.py --ratios 0.1 0.3 --out /tmp/digits

Nothing is downloaded: the digits data ships with scikit-learn.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import numpy as np

SEED = 7
SIZES = (64, 256, 256, 10)
RATIOS = (0.05, 0.1, 0.15, 0.2, 0.3)
METHODS = (("svd", None), ("fisher", "in"), ("fisher", "out"), ("fisher", "both"), ("whiten", None))


def load_data(seed=SEED):
    """Digits scaled to [0, 1], split 1400 train / 397 test by a seeded permutation."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    order = np.random.default_rng(seed).permutation(len(y))
    return x[order[:1400]], y[order[:1400]], x[order[1400:]], y[order[1400:]]


def forward(params, x):
    """Activations of every layer; the last entry holds the logits."""
    acts = [x]
    for i in range(0, len(params), 2):
        z = acts[-1] @ params[i].T + params[i + 1]
        acts.append(np.maximum(z, 0) if i + 2 < len(params) else z)
    return acts


def _deltas(params, acts, onehot):
    """d loss_k / d z_l for every sample k and layer l (loss = sum of per-sample cross-entropies)."""
    logits = acts[-1] - acts[-1].max(axis=1, keepdims=True)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    delta = probs - onehot
    deltas = [None] * (len(params) // 2)
    for layer in range(len(deltas) - 1, -1, -1):
        deltas[layer] = delta
        if layer:
            delta = (delta @ params[2 * layer]) * (acts[layer] > 0)
    return deltas


def train(x, y, seed=SEED, sizes=SIZES, steps=300, lr=0.005):
    """Full-batch Adam on the mean cross-entropy; weights are (out x in) as PyTorch stores them."""
    rng = np.random.default_rng(seed)
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append(rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in))
        params.append(np.zeros(fan_out))
    moments = [(np.zeros_like(p), np.zeros_like(p)) for p in params]
    onehot = np.eye(sizes[-1])[y]
    for step in range(1, steps + 1):
        acts = forward(params, x)
        grads = []
        for layer, delta in enumerate(_deltas(params, acts, onehot)):
            grads += [delta.T @ acts[layer] / len(x), delta.mean(axis=0)]
        for (m, v), p, g in zip(moments, params, grads):
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            p -= lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return params


def evaluate(params, x, y):
    """Mean cross-entropy and accuracy."""
    logits = forward(params, x)[-1]
    logits = logits - logits.max(axis=1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean()), float(np.mean(np.argmax(logits, axis=1) == y))


def calibration(params, x, y):
    """Per weight name: the empirical Fisher sum_k (g_k)^2 and the input Gram X^T X.

    The per-sample gradient of layer l is the outer product delta_k a_k^T, so
    the sum of its squares is (delta^2)^T (a^2) without forming any per-sample
    gradient.
    """
    acts = forward(params, x)
    onehot = np.eye(params[-1].shape[0])[y]
    fisher, grams = {}, {}
    for layer, delta in enumerate(_deltas(params, acts, onehot)):
        name = f"layers.{layer}.weight"
        fisher[name] = (delta**2).T @ (acts[layer] ** 2)
        grams[name] = acts[layer].T @ acts[layer]
    return fisher, grams


def tensors_of(params):
    out = {}
    for k in range(0, len(params), 2):
        out[f"layers.{k // 2}.weight"] = params[k].astype(np.float32)
        out[f"layers.{k // 2}.bias"] = params[k + 1].astype(np.float32)
    return out


def params_of(tensors, layers):
    return [tensors[f"layers.{k}.{part}"].astype(np.float64) for k in range(layers) for part in ("weight", "bias")]


def prepare(folder, seed=SEED):
    """Train, write the checkpoint, the Fisher and the Gram files into ``folder``; return what runs need."""
    from safetensors.numpy import save_file

    x_train, y_train, x_test, y_test = load_data(seed)
    params = train(x_train, y_train, seed)
    dense = params_of(tensors_of(params), len(SIZES) - 1)  # the float32 model, as stored
    fisher, grams = calibration(dense, x_train, y_train)
    paths = {k: os.path.join(folder, f"{k}.safetensors") for k in ("model", "fisher", "grams")}
    save_file(tensors_of(params), paths["model"])
    save_file({k: v.astype(np.float32) for k, v in fisher.items()}, paths["fisher"])
    save_file({k: v.astype(np.float32) for k, v in grams.items()}, paths["grams"])
    return dict(paths=paths, dense=dense, test=(x_test, y_test), folder=folder)


def run(setup, method, axis, ratio):
    """Compress at ``ratio`` with one method; return (test loss, accuracy, parameters after, report)."""
    import cond

    out = os.path.join(setup["folder"], f"{method}-{axis}-{ratio}.safetensors")
    kwargs = {}
    if method == "fisher":
        kwargs = dict(fisher=setup["paths"]["fisher"], fisher_axis=axis)
    elif method == "whiten":
        kwargs = dict(activations=setup["paths"]["grams"])
    report = cond.compress(setup["paths"]["model"], out, ratio=ratio, method=method, force=True, **kwargs)
    params = params_of(cond.load_compressed(out), len(SIZES) - 1)
    loss, accuracy = evaluate(params, *setup["test"])
    return loss, accuracy, report.params_after, report


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=list(RATIOS))
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--out", help="folder for the files (default: a temporary one)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or tmp
        os.makedirs(folder, exist_ok=True)
        setup = prepare(folder, args.seed)
        loss, accuracy = evaluate(setup["dense"], *setup["test"])
        print(
            f"uncompressed: test loss {loss:.4f}, accuracy {accuracy:.4f} "
            f"({sum(p.size for p in setup['dense'])} parameters)"
        )
        print("| ratio | parameters | method | test loss | accuracy |")
        print("|---|---|---|---|---|")
        for ratio in args.ratios:
            for method, axis in METHODS:
                loss, accuracy, params, _ = run(setup, method, axis, ratio)
                label = method if axis is None else f"{method} ({axis})"
                print(f"| {ratio:g} | {params} | {label} | {loss:.4f} | {accuracy:.4f} |")
                sys.stdout.flush()


if __name__ == "__main__":
    main()
