#!/usr/bin/env python3
"""The Python binding's own cost per ``Encoder.encode`` call, in µs.

    cargo xtask test --python -- -k out        # builds vlad into target/pyenv
    target/pyenv/bin/python benches/binding_cost.py [--repeats N]

At each shape (T images × L descriptors × F, K centroids), on seeded data
in one process, interleaved call by call: ``encode(X)`` (a fresh output
each call) and ``encode(X, out=buf)`` (one reused output). For each call,
the binding's cost is the Python call's wall time less the time the same
call spent inside the library (``vlad._vlad._last_compute_seconds``: input
checks and encoding). Medians over the repeats. A benchmark, not a test:
it asserts nothing.
"""

import argparse
import platform
import subprocess
import time

import numpy as np

import vlad
from vlad import _vlad

SHAPES = [(256, 128, 64, 16, 41), (200, 500, 128, 64, 21), (2000, 500, 128, 256, 7)]


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=0, help="calls per variant (0: per shape)")
    args = parser.parse_args()
    print(f"CPU: {cpu_name()}; load: {open('/proc/loadavg').read().split()[:3]}")
    print("| shape T×L×F, K | compute (ms) | binding, fresh output (µs) | binding, out= (µs) | wall/compute, out= |")
    print("| --- | --- | --- | --- | --- |")
    for t, l, f, k, repeats in SHAPES:
        repeats = args.repeats or repeats
        rng = np.random.default_rng(1234)
        x = rng.random((t, l, f), dtype=np.float32)
        c = x.reshape(-1, f)[rng.integers(0, t * l, size=k)].copy()
        enc = vlad.Encoder(c, backend="cpu")
        buf = np.empty((t, k * f), np.float32)
        enc.encode(x)
        enc.encode(x, out=buf)
        fresh, into, compute, ratio = [], [], [], []
        for _ in range(repeats):
            start = time.perf_counter()
            enc.encode(x)
            wall = time.perf_counter() - start
            fresh.append(wall - _vlad._last_compute_seconds())
            start = time.perf_counter()
            enc.encode(x, out=buf)
            wall = time.perf_counter() - start
            inside = _vlad._last_compute_seconds()
            into.append(wall - inside)
            compute.append(inside)
            ratio.append(wall / inside)
        print(
            f"| {t}×{l}×{f}, {k} | {np.median(compute) * 1e3:.2f} | {np.median(fresh) * 1e6:.0f} "
            f"| {np.median(into) * 1e6:.0f} | {np.median(ratio):.3f} |"
        )


if __name__ == "__main__":
    main()
