"""Run a command under GNU time and read its peak resident memory (shared by the memory benchmarks)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time


def run_with_peak(cmd):
    """(peak RSS in bytes, wall seconds, stdout) of ``cmd``; exits with its stderr if it fails."""
    if not os.path.exists("/usr/bin/time"):
        sys.exit("needs GNU time: apt-get install time")
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"failed ({out.returncode}): {out.stderr[-2000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr).group(1)) * 1024
    return peak, wall, out.stdout
