"""The prepared GPU check: CuPy tests, then GPU/CPU time ratios, in one short run.

    python benchmarks/gpu_check.py            # needs pip install -e '.[test,gpu]' and a CUDA GPU

Offline, where CuPy and the rest are already installed (a lent GPU machine):

    python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . && python3 benchmarks/gpu_check.py

1. runs the CuPy tests (tests/test_distributed.py -k cuda): they fail here
   instead of skipping, because this script is only run where a GPU is;
2. times ``cond.inspect`` of a stack of four 4096 x 4096 float32 matrices on
   the CPU and with ``device="cuda"`` (after a warm-up on a small matrix);
3. times sketched leverage scores of a 10^6 x 100 float64 matrix on the CPU
   (numba kernels) and on the GPU (CuPy), and compares the scores;
4. prints the card and every ratio (GPU time / CPU time, lower is better).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(0)
    card = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"GPU: {card}, CuPy {cupy.__version__}, {os.cpu_count()} CPU cores")
    env = dict(os.environ, COND_REQUIRE_GPU="1")
    tests = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rs",
            "-k",
            "cuda",
            os.path.join(HERE, "..", "tests", "test_distributed.py"),
        ],
        env=env,
    )
    print(f"CuPy tests: exit code {tests.returncode}")

    import cond
    from cond.linalg.leverage_device import sketched_leverage_xp
    from cond.linalg.sketch import sketched_leverage

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stack.safetensors")
        save_file({f"w{i}": rng.standard_normal((4096, 4096)).astype(np.float32) for i in range(4)}, path)
        cond.inspect(rng.standard_normal((64, 64)), device="cuda")  # CUDA context, cuSOLVER handles
        t0 = time.perf_counter()
        cpu = cond.inspect(path)
        t_cpu = time.perf_counter() - t0
        t0 = time.perf_counter()
        gpu = cond.inspect(path, device="cuda")
        t_gpu = time.perf_counter() - t0
        worst = max(
            abs(a.diagnostics.kappa - b.diagnostics.kappa) / a.diagnostics.kappa
            for a, b in zip(cpu.matrices, gpu.matrices)
        )
        print(
            f"inspect 4 x 4096^2 float32: CPU {t_cpu:.2f} s, GPU {t_gpu:.2f} s: ratio {t_gpu / t_cpu:.3f}; "
            f"kappa agrees to {worst:.1e}"
        )

    a = rng.standard_normal((1_000_000, 100))
    blocks = lambda: ((s, a[s : s + 4096]) for s in range(0, len(a), 4096))  # noqa: E731
    sketched_leverage_xp(cupy, lambda: iter([(0, a[:8192])]), 8192, 100, seed=1)  # warm-up
    t0 = time.perf_counter()
    on_cpu = sketched_leverage(blocks, len(a), 100, seed=1)
    t_cpu = time.perf_counter() - t0
    t0 = time.perf_counter()
    on_gpu = sketched_leverage_xp(cupy, blocks, len(a), 100, seed=1)
    t_gpu = time.perf_counter() - t0
    rel = np.max(np.abs(on_gpu.values - on_cpu.values) / on_cpu.values)
    print(
        f"sketched leverage 10^6 x 100: CPU {t_cpu:.2f} s, GPU {t_gpu:.2f} s: ratio {t_gpu / t_cpu:.3f}; "
        f"scores agree to {rel:.1e} relative"
    )


if __name__ == "__main__":
    main()
