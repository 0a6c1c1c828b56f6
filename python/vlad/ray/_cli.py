"""``python -m vlad.ray encode|kmeans``: the Ray jobs on data on disk.

Input shards (``--input`` is a glob, expanded in sorted order):

* Parquet: one row per image, an id column (``--id-column``, default
  ``id``) and a descriptors column (``--column``, default ``descriptors``)
  holding the image's ``n·F`` values flattened row-major as
  ``list<float32>`` (``list<float64>``/``list<uint8>`` too; ``n`` may be 0),
  or a Ray tensor column of ``(n, F)`` arrays;
* ``NAME.npy`` ``(N, F)`` descriptors with ``NAME.offsets.npy`` ``(T+1,)``
  CSR offsets beside it: image ``t`` is rows ``offsets[t]:offsets[t+1]``,
  its id ``NAME:t``.

``encode`` writes Parquet shards (the id column and ``vlad``, a
``fixed_size_list<float32>[K·F]``) into a temporary folder beside ``--out``,
renamed to ``--out`` once every shard is written: a failed job leaves
nothing. ``kmeans`` writes the ``(K, F)`` float32 centroids to ``--out``
(``.npy``) the same way. Bad input fails naming the shard and the row id;
exit status 2 for bad input, 1 for other failures, as ``vlad``'s own command
line.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from .._vlad import BackendUnavailable, InputError
from ._errors import surfacing


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m vlad.ray",
        description="VLAD encoding and k-means on a Ray cluster (local, or RAY_ADDRESS's).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input", required=True, help="glob of .parquet shards, or of .npy shards with NAME.offsets.npy beside")
        p.add_argument("--out", required=True, type=Path)
        p.add_argument("--column", default="descriptors", help="descriptors column (Parquet)")
        p.add_argument("--id-column", default="id", help="id column (Parquet)")
        p.add_argument("--backend", default="auto", choices=["auto", "gpu", "cpu"])
        p.add_argument("--concurrency", type=int, default=None, help="actors (default: the cluster's CPUs less one, or its GPUs / --num-gpus)")
        p.add_argument("--num-gpus", type=float, default=None, help="GPU share per actor (GPU workers)")
        p.add_argument("--address", default=None, help="Ray cluster to join (default: RAY_ADDRESS, else a local cluster)")
        p.add_argument("--num-cpus", type=int, default=None, help="CPUs of a local cluster")

    enc = sub.add_parser("encode", help="encode every image into Parquet shards under --out")
    common(enc)
    enc.add_argument("--centroids", required=True, type=Path, help="(K, F) .npy codebook")
    enc.add_argument("--norm", default="ssr,l2")
    enc.add_argument("--batch-size", type=int, default=256, help="images per actor call")

    km = sub.add_parser("kmeans", help="train a (K, F) codebook into --out (.npy)")
    common(km)
    km.add_argument("-k", "--clusters", type=int, required=True)
    km.add_argument("--dim", type=int, default=None, help="F, needed when descriptors are flat lists")
    km.add_argument("--n-iter", type=int, default=25)
    km.add_argument("--seed", type=int, default=1234)
    km.add_argument("--init", default="k-means++", choices=["k-means++", "kmeans++", "random"])
    km.add_argument("--max-points-per-centroid", type=int, default=256, help="0: every point")
    km.add_argument("--tol", type=float, default=1e-4)
    km.add_argument("--block-rows", type=int, default=65536)
    return parser


def _shards(pattern: str) -> List[str]:
    paths = sorted(p for p in glob.glob(pattern) if not p.endswith(".offsets.npy"))
    if not paths:
        raise InputError(f"no input shard matches {pattern!r}")
    kinds = {Path(p).suffix for p in paths}
    if len(kinds) != 1 or kinds - {".parquet", ".npy"}:
        raise InputError(
            f"--input must match only .parquet or only .npy shards, got {', '.join(sorted(kinds))}"
        )
    return paths


@surfacing
def _read_npy(batch: Dict[str, Any], column: str, id_column: str) -> Dict[str, Any]:
    """Each ``.npy`` shard of the batch → its images, offsets checked."""
    ids: List[str] = []
    shards: List[str] = []
    images: List[np.ndarray] = []
    for path in batch["path"]:
        path = str(path)
        offsets_path = path[: -len(".npy")] + ".offsets.npy"
        try:
            rows = np.load(path, mmap_mode="r")
            offsets = np.load(offsets_path)
        except (OSError, ValueError) as error:
            raise InputError(f"shard {path}: {error}") from None
        if rows.ndim != 2:
            raise InputError(f"shard {path}: descriptors must be (N, F), got shape {rows.shape}")
        if offsets.ndim != 1 or offsets.size == 0 or not np.issubdtype(offsets.dtype, np.integer):
            raise InputError(f"shard {path}: invalid offsets: {offsets_path} must be (T+1,) integers")
        bad = None
        if offsets[0] != 0:
            bad = f"offsets[0] = {offsets[0]}, expected 0"
        elif offsets[-1] != rows.shape[0]:
            bad = f"offsets[{offsets.size - 1}] = {offsets[-1]}, expected N = {rows.shape[0]}"
        else:
            drop = np.flatnonzero(np.diff(offsets) < 0)
            if drop.size:
                t = int(drop[0])
                bad = f"offsets[{t + 1}] = {offsets[t + 1]} < offsets[{t}] = {offsets[t]}"
        if bad is not None:
            raise InputError(f"shard {path}: invalid offsets: {bad}")
        stem = Path(path).stem
        for t in range(offsets.size - 1):
            ids.append(f"{stem}:{t}")
            shards.append(path)
            images.append(np.asarray(rows[offsets[t] : offsets[t + 1]]))
    column_values = np.empty(len(images), dtype=object)
    column_values[:] = images
    return {id_column: np.array(ids, dtype=object), "path": np.array(shards, dtype=object), column: column_values}


def _dataset(paths: Sequence[str], column: str, id_column: str) -> Any:
    import ray

    if paths[0].endswith(".parquet"):
        return ray.data.read_parquet(list(paths), include_paths=True)
    return ray.data.from_items([{"path": p} for p in paths], override_num_blocks=len(paths)).map_batches(
        _read_npy, fn_kwargs={"column": column, "id_column": id_column}, batch_size=1, batch_format="numpy"
    )


def _to_table(batch: Dict[str, Any], id_column: str) -> Any:
    """The output shard's columns: the id and ``vlad`` as fixed-size lists."""
    import pyarrow as pa

    encoded = np.ascontiguousarray(batch["vlad"], dtype=np.float32)
    width = encoded.shape[1] if encoded.ndim == 2 else 0
    vlad = pa.FixedSizeListArray.from_arrays(pa.array(encoded.reshape(-1)), width)
    columns = {}
    if id_column in batch:
        columns[id_column] = pa.array(list(batch[id_column]))
    columns["vlad"] = vlad
    return pa.table(columns)


def _temporary(out: Path) -> Path:
    return out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"


def _encode(args: argparse.Namespace, paths: List[str], concurrency: int) -> None:
    from . import encode
    from ._errors import unwrapped

    try:
        centroids = np.load(args.centroids)
    except (OSError, ValueError) as error:
        raise InputError(f"{args.centroids}: {error}") from None
    temporary = _temporary(args.out)
    try:
        ds = encode(
            _dataset(paths, args.column, args.id_column), centroids, column=args.column,
            norm=args.norm, backend=args.backend, concurrency=concurrency,
            num_gpus=args.num_gpus, batch_size=args.batch_size, id_column=args.id_column,
        )
        ds = ds.map_batches(_to_table, fn_kwargs={"id_column": args.id_column}, batch_format="numpy")
        with unwrapped():
            ds.write_parquet(str(temporary))
        if not temporary.exists():  # no image at all: still one folder
            temporary.mkdir()
        os.rename(temporary, args.out)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)


def _kmeans(args: argparse.Namespace, paths: List[str], concurrency: int) -> None:
    from . import kmeans

    km = kmeans(
        _dataset(paths, args.column, args.id_column), args.clusters, column=args.column,
        n_iter=args.n_iter, seed=args.seed, init=args.init,
        max_points_per_centroid=args.max_points_per_centroid or None, tol=args.tol,
        concurrency=concurrency, backend=args.backend, num_gpus=args.num_gpus,
        dim=args.dim, id_column=args.id_column, block_rows=args.block_rows,
    )
    temporary = _temporary(args.out)
    try:
        with open(temporary, "wb") as f:
            np.save(f, km.cluster_centers_)
        os.replace(temporary, args.out)
    finally:
        if temporary.exists():
            temporary.unlink()
    print(
        f"kmeans: {args.clusters} centroids from {km.training_points_} points, "
        f"{km.n_iter_} iterations, inertia {km.inertia_:.6e}, backend {km.backend_}",
        file=sys.stderr,
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "encode" and args.out.exists():
            raise InputError(f"{args.out} exists: choose a new output folder")
        if not args.out.parent.is_dir():
            raise InputError(f"{args.out.parent} is not a folder")
        paths = _shards(args.input)
        import ray

        if args.address or os.environ.get("RAY_ADDRESS"):
            ray.init(address=args.address, log_to_driver=False)
        else:  # a local cluster, for this job alone
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, log_to_driver=False)
        ray.data.DataContext.get_current().enable_progress_bars = False
        concurrency = args.concurrency
        if concurrency is None:
            resources = ray.cluster_resources()  # type: ignore[no-untyped-call]
            if args.num_gpus:
                concurrency = max(1, int(resources.get("GPU", 1) / args.num_gpus))
            else:
                # One CPU stays free for the tasks that read the shards.
                concurrency = max(1, int(resources.get("CPU", 2)) - 1)
        if args.command == "encode":
            _encode(args, paths, concurrency)
        else:
            _kmeans(args, paths, concurrency)
    except InputError as error:
        print(f"vlad.ray: error: {error}", file=sys.stderr)
        return 2
    except BackendUnavailable as error:
        print(f"vlad.ray: error: {error}", file=sys.stderr)
        return 3
    return 0
