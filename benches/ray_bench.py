"""vlad.ray against one in-process vlad.Encoder (issue 11, SPEC §13).

    target/pyenv/bin/python benches/ray_bench.py [--images 2000] [--repeats 2]

The 1M-descriptor shape (T = 2000 images × L = 500 × F = 128 float32,
K = 256): one in-process ``Encoder`` (backend cpu) against
``vlad.ray.encode`` on a local Ray cluster of this machine's CPUs, and one
k-means iteration (assign + per-cluster f64 sums over all 10⁶ points) in
process (one ``LloydWorker``) against ``vlad.ray.kmeans``' map and reduce
over blocks of 65,536 rows on an actor pool. Ray's startup (``ray.init``)
and the first job (actor start-up) are reported apart from the warm
figures. Prints one table; JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import vlad
from vlad import _vlad


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--per-image", type=int, default=500)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--clusters", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    T, L, F, K = args.images, args.per_image, args.dim, args.clusters
    rng = np.random.default_rng(0)
    X = rng.standard_normal((T, L, F), dtype=np.float32)
    C = X.reshape(-1, F)[rng.choice(T * L, K, replace=False)].copy()
    n = T * L
    results = {"cpu": cpu_name(), "load_before": os.getloadavg(), "shape": [T, L, F, K]}

    encoder = vlad.Encoder(C, norm="ssr,l2", backend="cpu")
    encoder.encode(X[:10])
    results["encode_in_process_s"], _ = timed(lambda: encoder.encode(X), args.repeats)
    worker = _vlad.LloydWorker("cpu")
    rows = X.reshape(-1, F)
    results["lloyd_in_process_s"], _ = timed(lambda: worker.step(rows, C), args.repeats)

    import ray

    from vlad.ray import encode as ray_encode_dataset
    from vlad.ray._kmeans import _lloyd_actor_class

    start = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    results["ray_init_s"] = time.perf_counter() - start
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_numpy(X).materialize()  # the input in the object store, not timed
    # Actors hold one CPU each; the reading side here is the object store.
    concurrency = args.concurrency

    def ray_encode():
        return ray_encode_dataset(
            ds, C, column="data", backend="cpu", concurrency=concurrency, batch_size=250,
            num_cpus=1,
        ).materialize()

    start = time.perf_counter()
    out = ray_encode()
    results["ray_encode_first_s"] = time.perf_counter() - start
    results["ray_encode_s"], _ = timed(ray_encode, args.repeats)

    block_rows = 65536
    blocks = [ray.put(np.ascontiguousarray(rows[i : i + block_rows])) for i in range(0, n, block_rows)]
    actor_class = _lloyd_actor_class()
    start = time.perf_counter()
    actors = [actor_class.options(num_cpus=1).remote("cpu") for _ in range(concurrency)]
    ray.get([a.backend.remote() for a in actors])
    results["ray_lloyd_actor_start_s"] = time.perf_counter() - start

    def ray_iteration():
        ref = ray.put(C)
        steps = ray.get([actors[b % len(actors)].step.remote(blk, ref) for b, blk in enumerate(blocks)])
        sums = steps[0]["sums"].copy()
        for s in steps[1:]:
            sums += s["sums"]
        return sums

    ray_iteration()
    results["ray_lloyd_iteration_s"], _ = timed(ray_iteration, args.repeats)
    results["concurrency"] = concurrency
    results["load_after"] = os.getloadavg()
    ray.shutdown()

    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"CPU: {results['cpu']}, {os.cpu_count()} cores; load {results['load_before'][0]:.1f} → {results['load_after'][0]:.1f}")
    print(f"ray.init: {results['ray_init_s']:.2f} s; first encode job (actor start-up included): {results['ray_encode_first_s']:.2f} s; Lloyd actors start: {results['ray_lloyd_actor_start_s']:.2f} s")
    print("| what | in process | vlad.ray (local cluster, %d actors) | ray / in process |" % concurrency)
    print("| --- | --- | --- | --- |")
    for name, a, b in [
        ("encode, 10⁶ descriptors", results["encode_in_process_s"], results["ray_encode_s"]),
        ("one k-means iteration, 10⁶ points", results["lloyd_in_process_s"], results["ray_lloyd_iteration_s"]),
    ]:
        print(f"| {name} | {a:.3f} s ({n / a / 1e6:.2f} M desc/s) | {b:.3f} s ({n / b / 1e6:.2f} M desc/s) | {b / a:.2f}× |")


if __name__ == "__main__":
    main()
