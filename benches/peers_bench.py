#!/usr/bin/env python3
"""vlad against its peers in one run: the encoding from Python against
numpy's fastest correct variant and faiss's assignment alone, and
vlad.KMeans against faiss's k-means.

    cargo xtask test --python -- -k out            # builds vlad into target/pyenv
    target/pyenv/bin/pip install faiss-cpu
    OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE \
        target/pyenv/bin/python benches/peers_bench.py [--kmeans-n N]

faiss-cpu's bundled OpenBLAS does not know Zen 5 and falls back to an SSE
kernel unless ``OPENBLAS_CORETYPE=SkylakeX`` is set (FACTS.md): set it so
faiss runs at its best; on a machine shared with other work, also
``OMP_WAIT_POLICY=PASSIVE``, or faiss's OpenMP threads spin at their
barriers while the cores are taken (24× slower in one run). Each pair runs
interleaved A B A B so that drift on a shared machine falls on both; the
table gives the medians and the ratio per pair. numpy's VLAD is
benches/python_bench.py's dense one-hot matmul (its ``np.add.at`` variant
was faster at the SIFT-like shape in BENCHMARKS.md's earlier table; both
are correct). A benchmark, not a test.
"""

import argparse
import importlib.util
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

import vlad
from vlad import _vlad

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("python_bench", HERE / "python_bench.py")
python_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(python_bench)


def cpu_name():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def interleaved(a, b, repeats):
    """Medians of A and B timed alternately after one warm-up each."""
    a()
    b()
    ta, tb = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        a()
        ta.append(time.perf_counter() - start)
        start = time.perf_counter()
        b()
        tb.append(time.perf_counter() - start)
    return float(np.median(ta)), float(np.median(tb))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--kmeans-n", type=int, default=10**6, help="k-means training rows")
    parser.add_argument("--kmeans-repeats", type=int, default=3)
    parser.add_argument("--skip-numpy-big", action="store_true", help="no numpy at N = 10⁶")
    args = parser.parse_args()
    import faiss  # after the environment is set

    print(f"CPU: {cpu_name()}, {os.cpu_count()} logical CPUs; load {open('/proc/loadavg').read().split()[:3]}; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}; faiss {faiss.__version__}, "
          f"numpy {np.__version__}, faiss threads {faiss.omp_get_max_threads()}")
    print("| pair (shape T×L×F, K) | A | B | B / A |")
    print("| --- | --- | --- | --- |")
    for t, l, f, k in [(200, 500, 128, 64), (2000, 500, 128, 256)]:
        x, c = python_bench.data(t, l, f, k)
        rows = x.reshape(-1, f)
        enc = vlad.Encoder(c, norm="ssr,l2", backend="cpu")
        out = np.empty((t, k * f), np.float32)
        index = faiss.IndexFlatL2(f)
        index.add(c)
        shape = f"{t}×{l}×{f}, {k}"
        encode = lambda: enc.encode(x, out=out)  # noqa: E731
        search = lambda: index.search(rows, 1)  # noqa: E731
        a, b = interleaved(search, encode, args.repeats)
        compute = _vlad._last_compute_seconds()
        print(f"| faiss assignment alone (A) vs vlad encode from Python (B), {shape} | "
              f"{a * 1e3:.1f} ms | {b * 1e3:.1f} ms (last call's compute {compute * 1e3:.1f}) | {b / a:.2f} |")
        if not (args.skip_numpy_big and t * l >= 10**6):
            reps = 1 if t * l >= 10**6 else 3
            want = enc.encode(x)
            err = float(np.max(np.abs(python_bench.numpy_onehot(x, c) - want)))
            a, b = interleaved(lambda: python_bench.numpy_onehot(x, c), encode, reps)
            print(f"| numpy one-hot (A, max |diff| {err:.1e}) vs vlad (B), {shape} | "
                  f"{a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {b / a:.3f} |")

    n, d, k = args.kmeans_n, 128, 256
    x, _ = python_bench.data(n // 500, 500, d, k)
    x = x.reshape(-1, d)
    fits = {}

    def faiss_fit():
        km = faiss.Kmeans(d, k, niter=25, max_points_per_centroid=256, seed=1234)
        km.train(x)
        fits["faiss"] = km.centroids

    def vlad_fit():
        km = vlad.KMeans(k, n_iter=25, max_points_per_centroid=256, tol=0.0, backend="cpu").fit(x)
        fits["vlad"] = km.cluster_centers_

    a, b = interleaved(faiss_fit, vlad_fit, args.kmeans_repeats)

    def inertia(centroids):
        """Σ ‖x − c‖² over all rows in f64, labels by vlad's assignment."""
        labels = vlad.Encoder(centroids, norm="none", backend="cpu").assign(x)
        total = 0.0
        for s in range(0, n, 65536):
            diff = x[s:s + 65536].astype(np.float64) - centroids[labels[s:s + 65536]]
            total += float(np.sum(diff * diff))
        return total
    fi, vi = inertia(fits["faiss"]), inertia(fits["vlad"])
    print(f"| faiss k-means (A) vs vlad.KMeans (B), {n}×{d}→{k}, 25 iterations, 256 points/centroid | "
          f"{a:.2f} s | {b:.2f} s | {b / a:.2f} |")
    print(f"inertia over all {n} rows: faiss {fi:.6e}, vlad {vi:.6e} (vlad/faiss {vi / fi:.4f})")


if __name__ == "__main__":
    main()
