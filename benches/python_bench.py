#!/usr/bin/env python3
"""vlad's Python binding against the usual numpy VLAD, and against Rust.

    cargo xtask test --python                         # builds vlad into target/pyenv
    cargo build --release --example time_encode
    target/pyenv/bin/python benches/python_bench.py [--quick | --all] [--repeats N]

At each shape (T images × L descriptors × F, K centroids), on the same
seeded data in one process:

* vlad: ``vlad.Encoder(C, backend="cpu").encode(X)``, median of repeats
  after a warm-up;
* the binding's cost: per call, the Python call's wall time less the time
  the same call spent inside the library (``vlad._vlad._last_compute_seconds``:
  input checks and encoding, what ``Encoder::encode`` does in Rust); its
  median is to be within 5 % + 50 µs of the library's median;
* Rust alone: ``Encoder::encode`` on the same arrays in a Rust process,
  timed by ``examples/time_encode.rs`` (the data goes to it as .npy files);
  a separate run, so on a shared machine it is noisier than the above;
* three numpy implementations written here, each with the same BLAS
  assignment (‖c‖² − 2 x·c, argmin) and ssr,l2 normalization: a dense
  one-hot matmul, ``np.add.at``, and a per-cluster loop.

Every numpy result is compared with vlad's (labels and values), so the
table compares implementations of the same thing. A benchmark, not a test:
it asserts nothing; the machine it runs on should be idle.
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import vlad

ROOT = Path(__file__).resolve().parents[1]
# (T, L, F, K, vlad repeats, numpy repeats)
SHAPES = [
    (256, 128, 64, 16, 21, 5),
    (200, 500, 128, 64, 11, 3),
    (2000, 500, 128, 256, 5, 1),
]


def data(t, l, f, k, seed=1234):
    """Clustered descriptors (as vlad::synthetic makes them) and K of them,
    from distinct images, as centroids."""
    rng = np.random.default_rng(seed)
    means = rng.random((k, f), dtype=np.float32)
    which = rng.integers(0, k, size=t * l)
    x = means[which] + rng.normal(scale=0.1, size=(t * l, f)).astype(np.float32)
    x = x.reshape(t, l, f)
    c = x.reshape(-1, f)[[(i * l) % (t * l) for i in range(k)]].copy()
    return np.ascontiguousarray(x), c


def assign(rows, c):
    """The usual numpy assignment: one BLAS matmul, argmin."""
    d = (c * c).sum(1)[None, :] - 2.0 * (rows @ c.T)
    return d.argmin(1)


def ssr_l2(v):
    """(T, K, F) sums → (T, K·F) ssr,l2 rows (a zero row stays zero)."""
    v = v.reshape(v.shape[0], -1)
    v = np.sign(v) * np.sqrt(np.abs(v))
    n = np.linalg.norm(v, axis=1, keepdims=True)
    return v / np.where(n > 0, n, 1.0)


def numpy_onehot(x, c):
    t, l, f = x.shape
    k = len(c)
    labels = assign(x.reshape(-1, f), c).reshape(t, l)
    onehot = np.zeros((t, l, k), np.float32)
    np.put_along_axis(onehot, labels[..., None], 1.0, axis=2)
    sums = onehot.transpose(0, 2, 1) @ x  # (T, K, F)
    return ssr_l2(sums - onehot.sum(1)[..., None] * c[None])


def numpy_add_at(x, c):
    t, l, f = x.shape
    k = len(c)
    labels = assign(x.reshape(-1, f), c)
    index = (np.repeat(np.arange(t), l) * k + labels)
    sums = np.zeros((t * k, f), np.float32)
    np.add.at(sums, index, x.reshape(-1, f))
    counts = np.bincount(index, minlength=t * k).astype(np.float32)
    sums -= counts[:, None] * np.tile(c, (t, 1))
    return ssr_l2(sums.reshape(t, k, f))


def numpy_per_cluster(x, c):
    t, l, f = x.shape
    k = len(c)
    labels = assign(x.reshape(-1, f), c).reshape(t, l)
    sums = np.zeros((t, k, f), np.float32)
    for j in range(k):
        mask = labels == j
        sums[:, j] = ((x - c[j]) * mask[..., None]).sum(axis=1)
    return ssr_l2(sums)


def median_time(call, repeats, warm_up=True):
    if warm_up:
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return float(np.median(times)), times


def vlad_times(enc, x, repeats):
    """Medians of the Python call, of its time inside the library, and of
    the per-call difference (the binding's cost)."""
    enc.encode(x)
    walls, insides = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        enc.encode(x)
        walls.append(time.perf_counter() - start)
        insides.append(vlad._vlad._last_compute_seconds())
    costs = [w - i for w, i in zip(walls, insides)]
    return float(np.median(walls)), float(np.median(insides)), float(np.median(costs))


def rust_median(x, c, repeats, folder):
    binary = ROOT / "target" / "release" / "examples" / "time_encode"
    if not binary.exists():
        return None
    np.save(folder / "x.npy", x)
    np.save(folder / "c.npy", c)
    run = subprocess.run(
        [str(binary), str(folder / "x.npy"), str(folder / "c.npy"), str(repeats), "cpu"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(run.stdout)["median_seconds"]


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def fmt(seconds):
    if seconds is None:
        return "—"
    return f"{seconds * 1e3:.2f} ms" if seconds < 10 else f"{seconds:.1f} s"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="skip the N = 10⁶ shape's numpy runs")
    parser.add_argument("--all", action="store_true",
                        help="also the per-cluster loop at N = 10⁶ (minutes: K passes over 512 MB)")
    parser.add_argument("--repeats", type=int, default=None, help="override vlad's repeats")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON too")
    args = parser.parse_args()

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; vlad {vlad.__version__}, "
          f"numpy {np.__version__}, Python {platform.python_version()}", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for t, l, f, k, vlad_repeats, numpy_repeats in SHAPES:
            repeats = args.repeats or vlad_repeats
            x, c = data(t, l, f, k)
            enc = vlad.Encoder(c, norm="ssr,l2", backend="cpu")
            reference = enc.encode(x)
            labels = enc.assign(x)
            py, inside, cost = vlad_times(enc, x, repeats)
            rust = rust_median(x, c, repeats, Path(tmp))
            row = {"shape": f"{t}×{l}×{f}, K={k}", "vlad_python": py, "inside_library": inside,
                   "binding_cost": cost, "rust_alone": rust}
            big = t * l >= 10**6
            for name, impl in (("numpy_onehot", numpy_onehot), ("numpy_add_at", numpy_add_at),
                               ("numpy_per_cluster", numpy_per_cluster)):
                if big and (args.quick or (name == "numpy_per_cluster" and not args.all)):
                    row[name] = None
                    continue
                out = impl(x, c)
                # Same thing computed? (labels may differ on f32 near-ties)
                agree = float(np.mean(assign(x.reshape(-1, f), c) == labels))
                err = float(np.max(np.abs(out - reference)))
                row[name] = median_time(lambda: impl(x, c), numpy_repeats, warm_up=not big)[0]
                row[name + "_check"] = {"label_agreement": agree, "max_abs_diff": err}
            rows.append(row)
            print(f"done {row['shape']}", file=sys.stderr)

    print("| shape T×L×F, K | vlad from Python | of which in the library | binding cost | "
          "Rust alone (separate run) | numpy one-hot matmul | numpy `np.add.at` | "
          "numpy per-cluster loop |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        py, inside, cost = row["vlad_python"], row["inside_library"], row["binding_cost"]
        ok = "within" if py <= 1.05 * inside + 50e-6 else "OVER"
        cost_cell = f"{cost * 1e6:.0f} µs ({ok} 5 % + 50 µs)"
        cells = [fmt(row[n]) + (f" ({row[n] / py:.0f}× vlad)" if row[n] else "")
                 for n in ("numpy_onehot", "numpy_add_at", "numpy_per_cluster")]
        print(f"| {row['shape']} | {fmt(py)} | {fmt(inside)} | {cost_cell} | "
              f"{fmt(row['rust_alone'])} | " + " | ".join(cells) + " |")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
