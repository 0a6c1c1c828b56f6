#!/usr/bin/env python3
"""Retrieval benchmark: mAP of raw VLAD against PCA, whitening, several
vocabularies and an adapted vocabulary, on real photographs under known
transformations; plus the GPU read-back of the raw encoding.

    cargo xtask test --python -- -k retrieval      # builds vlad into target/pyenv
    target/pyenv/bin/python benches/retrieval/retrieval.py [--quick] [--markdown FILE]

A benchmark, run by hand (not in CI); it asserts nothing. What it shows
and what it cannot: README.md beside this file.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import skimage

sys.path.insert(0, str(Path(__file__).resolve().parent))

import vlad  # noqa: E402
from mean_average_precision import mean_average_precision  # noqa: E402
from photographs import PHOTOGRAPHS, TRANSFORMATIONS, Collection, build_collection  # noqa: E402
from readback import images_from_pool, measure_readback  # noqa: E402
from standins import adapt_vocabulary, multivoc_encode, pca, whiten  # noqa: E402

NORMS = ("ssr,l2", "intra,l2")


@dataclass
class Protocol:
    """How codebooks and whitenings are learned and where mAP is taken."""

    clusters: int
    dims: Tuple[int, ...]
    vocabularies: int
    seed: int


def split_families(n_families: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Two disjoint halves of the families, drawn with the seed."""
    order = np.random.default_rng(seed).permutation(n_families)
    half = (n_families + 1) // 2
    return np.sort(order[:half]), np.sort(order[half:])


def codebook(images: Sequence[np.ndarray], k: int, seed: int) -> np.ndarray:
    """A K-word vocabulary learned by vlad's k-means on these images."""
    return vlad.KMeans(n_clusters=k, seed=seed, backend="cpu").fit(list(images)).cluster_centers_


def encode(centroids: np.ndarray, images: Sequence[np.ndarray], norm: str) -> np.ndarray:
    return vlad.Encoder(centroids, norm=norm, backend="cpu").encode(list(images))


@dataclass
class Cell:
    """One mAP per fold (fold i evaluates half i)."""

    folds: List[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return float(np.mean(self.folds))


# (method, dims) → (norm, column) → Cell; column is "fair" or "own".
Table = Dict[Tuple[str, int], Dict[Tuple[str, str], Cell]]


def reductions(
    table: Table,
    method: str,
    fit: np.ndarray,
    evaluate: np.ndarray,
    family: np.ndarray,
    key: Tuple[str, str],
    dims: Sequence[int],
) -> None:
    """mAP of the raw encodings, then of PCA and whitening to each D′ that
    the fitting set can support (D′ < n: centred data has rank n − 1)."""
    table.setdefault((method, evaluate.shape[1]), {}).setdefault(key, Cell()).folds.append(
        mean_average_precision(evaluate, family)
    )
    for d in dims:
        if d >= len(fit):
            continue
        for name, reduce in (("PCA", pca), ("whitening", whiten)):
            y = reduce(fit, evaluate, d)
            table.setdefault((f"{method} + {name}", d), {}).setdefault(key, Cell()).folds.append(
                mean_average_precision(y, family)
            )


def run_fold(table: Table, train: Collection, evaluate: Collection, protocol: Protocol) -> None:
    """Fill ``table`` with one fold: learned on ``train`` ("fair"), or on
    ``evaluate`` itself ("own": the over-fitted number), mAP on ``evaluate``."""
    k, seed = protocol.clusters, protocol.seed
    family = evaluate.family
    learned = {
        "fair": [codebook(train.descriptors, k, seed + i) for i in range(protocol.vocabularies)],
        "own": [codebook(evaluate.descriptors, k, seed + i) for i in range(protocol.vocabularies)],
    }
    fitting = {"fair": train.descriptors, "own": evaluate.descriptors}
    for norm in NORMS:
        for column in ("fair", "own"):
            books, fit_images = learned[column], fitting[column]
            key = (norm, column)
            reductions(
                table,
                f"VLAD K={k}",
                encode(books[0], fit_images, norm),
                encode(books[0], evaluate.descriptors, norm),
                family,
                key,
                protocol.dims,
            )
            reductions(
                table,
                f"multivoc {protocol.vocabularies}×K={k}",
                multivoc_encode(books, fit_images, norm),
                multivoc_encode(books, evaluate.descriptors, norm),
                family,
                key,
                protocol.dims,
            )
            # The adapted vocabulary starts from the codebook learned on
            # the other half (a different image set) and takes one Lloyd
            # step on the evaluated images' descriptors; its "own" column
            # fits the whitening on the evaluated images too.
            adapted = adapt_vocabulary(learned["fair"][0], evaluate.descriptors)
            reductions(
                table,
                f"adapted VLAD K={k}",
                encode(adapted, fit_images, norm),
                encode(adapted, evaluate.descriptors, norm),
                family,
                key,
                protocol.dims,
            )


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "unknown CPU").strip()
    family = fields.get("CPU family", "?").strip()
    cores = fields.get("CPU(s)", "?").strip()
    return f"{name} (family {family}), {cores} CPUs"


def load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.2f} (1 min), {five:.2f} (5 min)"
    except OSError:
        return "load unknown"


def markdown(table: Table, header: List[str], skipped: str = "") -> str:
    lines = list(header)
    lines.append("")
    lines.append(
        "| method | D | "
        + " | ".join(f"{norm} fair | {norm} own" for norm in NORMS)
        + " |"
    )
    lines.append("| --- | ---: |" + " ---: | ---: |" * len(NORMS))

    def order(item: Tuple[Tuple[str, int], object]) -> Tuple[int, int, int]:
        (method, d), _ = item
        base = 0 if method.startswith("VLAD") else 1 if method.startswith("multivoc") else 2
        kind = 0 if "+" not in method else 1 if method.endswith("PCA") else 2
        return base, kind, d

    for (method, d), cells in sorted(table.items(), key=order):
        values = []
        for norm in NORMS:
            for column in ("fair", "own"):
                cell = cells.get((norm, column))
                values.append(f"{cell.mean:.3f}" if cell else "—")
        lines.append(f"| {method} | {d} | " + " | ".join(values) + " |")
    spread = max(
        (abs(c.folds[0] - c.folds[1]) for cells in table.values() for c in cells.values() if len(c.folds) == 2),
        default=0.0,
    )
    lines.append("")
    lines.append(
        f"mAP, mean of the two folds (each half of the families evaluated once; "
        f"the two folds differ by up to {spread:.3f}). *fair*: codebooks and "
        f"whitening learned on the other half's images; *own*: learned on the "
        f"evaluated images themselves (over-fitted). The adapted vocabulary is "
        f"the fair codebook after one Lloyd step on the evaluated images' "
        f"descriptors in both columns. D′ < n of the fitting set only{skipped}."
    )
    return "\n".join(lines)


def readback_markdown(results, images: np.ndarray, planned_dims: int) -> str:
    t, l, f = images.shape
    if results is None:
        return "GPU read-back: no adapter here (install mesa-vulkan-drivers for lavapipe)."
    first = results[0]
    label = "emulation on the CPU, not GPU speed" if first.adapter_kind == "software" else first.adapter_kind
    lines = [
        f"GPU read-back on {first.adapter} ({label}), T = {t} images × L = {l} "
        f"real SIFT descriptors drawn from the collection, medians of the repeats:",
        "",
        "| encoding | read back (encodings) | + labels | readback stage | encode end to end |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r.what} | {r.encoding_bytes / 1e6:.2f} MB | {r.label_bytes / 1e6:.2f} MB | "
            f"{r.readback_seconds * 1e3:.1f} ms | {r.total_seconds * 1e3:.1f} ms |"
        )
    if not hasattr(vlad, "Whitening"):
        lines.append(
            f"| whitened, D′ = {planned_dims} | {t * planned_dims * 4 / 1e6:.2f} MB "
            f"(T·D′·4, not measured) | | | |"
        )
        lines.append("")
        lines.append(
            "The whitened read-back is measured once vlad.Whitening is in this build; "
            "this one has none."
        )
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-k", "--clusters", type=int, default=32)
    parser.add_argument("--dims", default="16,32,64,128", help="D′ of PCA and whitening (comma-separated)")
    parser.add_argument("--vocabularies", type=int, default=3, help="codebooks of the multivoc encoding")
    parser.add_argument("--max-side", type=int, default=320, help="photographs shrunk to this longer side")
    parser.add_argument("--max-keypoints", type=int, default=400, help="SIFT descriptors kept per image")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--readback-images", type=int, default=2000)
    parser.add_argument("--readback-per-image", type=int, default=256)
    parser.add_argument("--readback-dims", type=int, default=128, help="D′ of the whitened read-back")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of each read-back measurement")
    parser.add_argument("--no-gpu", action="store_true", help="skip the read-back measurement")
    parser.add_argument("--quick", action="store_true", help="8 photographs, 4 transformations (a smoke run)")
    parser.add_argument("--markdown", type=Path, help="also write the tables to this file")
    args = parser.parse_args(argv)

    originals: Sequence[str] = PHOTOGRAPHS
    transformations: Sequence[str] = tuple(TRANSFORMATIONS)
    if args.quick:
        originals, transformations = PHOTOGRAPHS[:8], tuple(TRANSFORMATIONS)[:4]
    protocol = Protocol(
        clusters=args.clusters,
        dims=tuple(int(d) for d in args.dims.split(",") if d.strip()),
        vocabularies=args.vocabularies,
        seed=args.seed,
    )

    # Wall and CPU seconds of each part (on a shared machine the CPU time is
    # the steadier figure; vlad's own threads count in it too).
    started, started_cpu = time.perf_counter(), time.process_time()
    collection = build_collection(originals, transformations, args.max_side, args.max_keypoints, args.seed)
    sift_seconds = time.perf_counter() - started
    sift_cpu = time.process_time() - started_cpu
    counts = np.array([len(d) for d in collection.descriptors])
    halves = split_families(len(originals), args.seed)

    header = [
        f"CPU: {cpu_name()}; {load()} at the start",
        f"vlad {vlad.__version__}, scikit-image {skimage.__version__}, numpy {np.__version__}, "
        f"Python {platform.python_version()}",
        f"{len(collection.descriptors)} images: {len(originals)} photographs × "
        f"(original + {len(transformations)} transformations), longer side ≤ {args.max_side} px; "
        f"{collection.n_descriptors} SIFT descriptors (F = 128, uint8), per image "
        f"min {counts.min()}, median {int(np.median(counts))}, max {counts.max()} "
        f"(at most {args.max_keypoints} kept); SIFT took {sift_seconds:.0f} s "
        f"({sift_cpu:.0f} s of CPU time)",
        f"folds: families {halves[0].tolist()} and {halves[1].tolist()} "
        f"({', '.join(originals)} by index)",
    ]

    # Every half fits a whitening in some fold, so a D′ is measured only if
    # both halves can support it (each cell is then a mean of two folds).
    fitting_sizes = sorted(len(collection.subset(h).descriptors) for h in halves)
    skipped = [d for d in protocol.dims if d >= fitting_sizes[0]]
    protocol.dims = tuple(d for d in protocol.dims if d < fitting_sizes[0])
    note = f" (n = {' and '.join(map(str, fitting_sizes))} here" + (
        f": D′ = {', '.join(map(str, skipped))} not measured)" if skipped else ")"
    )

    table: Table = {}
    started, started_cpu = time.perf_counter(), time.process_time()
    for train, evaluate in ((halves[0], halves[1]), (halves[1], halves[0])):
        run_fold(table, collection.subset(train), collection.subset(evaluate), protocol)
    map_seconds = time.perf_counter() - started
    map_cpu = time.process_time() - started_cpu
    header.append(
        f"codebooks, encodings, reductions and mAP took {map_seconds:.0f} s ({map_cpu:.0f} s of CPU time)"
    )
    text = markdown(table, header, note)

    if not args.no_gpu:
        pool = np.concatenate(collection.descriptors, axis=0)
        images = images_from_pool(pool, args.readback_images, args.readback_per_image, args.seed)
        centroids = codebook(collection.descriptors, args.clusters, args.seed)
        whitening_train = encode(centroids, collection.descriptors, NORMS[0])
        n_components = min(args.readback_dims, len(whitening_train) - 1)
        results = measure_readback(centroids, NORMS[0], images, whitening_train, n_components, args.repeats)
        text += "\n\n" + readback_markdown(results, images, n_components)

    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
