"""``vlad.ray.kmeans``: codebook training over a Ray Dataset.

Determinism comes from the data, never from Ray's blocks:

1. the training sample is chosen by a seeded hash of each descriptor's
   f32 values (the ``K × max_points_per_centroid`` smallest hashes), so it
   depends on neither how Ray splits the dataset into blocks, nor the row
   order, nor the number of workers;
2. the sample is ordered by that hash and cut into blocks of
   ``block_rows`` rows: the blocks of every Lloyd iteration, fixed;
3. k-means++ (the library's, as ``vlad.KMeans`` runs it) seeds the
   centroids on the driver over the sample;
4. each iteration broadcasts the centroids (``ray.put``), maps every block
   to per-cluster f64 sums, counts and inertia on a pool of actors (the
   library's Lloyd step), adds them in block order in f64, and moves the
   centroids with ``vlad.KMeans``' own update, empty-cluster split and
   stopping rule.

So the codebook is bitwise the same for any ``concurrency`` and any
scheduling; with one block it is bitwise ``vlad.KMeans`` trained on the
sample (in hash order) with every point.
"""

from __future__ import annotations

import time
import uuid
import warnings
from typing import Any, Dict, List, Optional

import numpy as np

from .. import _vlad
from ..kmeans import KMeans
from . import _images
from ._errors import surfacing, unwrapped

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finalizer, elementwise on uint64 (wrapping)."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        out: np.ndarray = x ^ (x >> np.uint64(31))
        return out


def _coefficients(seed: int, dim: int) -> np.ndarray:
    """Odd 64-bit multipliers of the row hash, from the seed alone."""
    base = np.uint64(seed & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        steps = np.arange(1, dim + 2, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        out: np.ndarray = _splitmix(steps ^ base) | np.uint64(1)
        return out


def row_keys(rows: np.ndarray, seed: int) -> np.ndarray:
    """A seeded 64-bit hash of each row's f32 values (``-0.0`` as ``0.0``,
    as training sees them): the sampling key."""
    n, dim = rows.shape
    if n == 0:
        return np.empty(0, dtype=np.uint64)
    bits = (rows.astype(np.float32) + np.float32(0.0)).view(np.uint32).astype(np.uint64)
    c = _coefficients(seed, dim)
    with np.errstate(over="ignore"):
        h = (bits * c[:dim]).sum(axis=1, dtype=np.uint64)
    return _splitmix(h ^ c[dim])


@surfacing
def _count(batch: Dict[str, Any], column: str, dim: Optional[int], id_column: Optional[str]) -> Dict[str, Any]:
    """Descriptors and width of a batch, every image checked."""
    imgs, width = _images.images(batch, column, dim, id_column)
    n = sum(a.shape[0] for a in imgs)
    return {"n": np.array([n], dtype=np.int64), "dim": np.array([width], dtype=np.int64)}


@surfacing
def _sample(
    batch: Dict[str, Any], column: str, dim: int, id_column: Optional[str], seed: int,
    threshold: Optional[int],
) -> Dict[str, Any]:
    """The descriptors of a batch whose key is under the threshold."""
    imgs, _ = _images.images(batch, column, dim, id_column)
    rows, _ = _images.concatenate(imgs, dim)
    keys = row_keys(rows, seed)
    if threshold is not None:
        keep = keys < np.uint64(threshold)
        rows, keys = rows[keep], keys[keep]
    return {"key": keys, "row": rows}


def _order(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Indices sorting the sample by key, equal keys by their values (so
    the order depends on the values alone)."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    same = np.flatnonzero(sorted_keys[1:] == sorted_keys[:-1])
    if same.size:
        # Rare (identical descriptors, or a 64-bit collision): order each
        # run of equal keys by the rows' bytes.
        runs = np.split(np.arange(len(order)), np.flatnonzero(sorted_keys[1:] != sorted_keys[:-1]) + 1)
        for run in runs:
            if len(run) > 1:
                chunk = order[run]
                order[run] = chunk[sorted(range(len(chunk)), key=lambda i: rows[chunk[i]].tobytes())]
    return order


def sample(
    dataset: Any,
    n_clusters: int,
    column: str = "descriptors",
    dim: Optional[int] = None,
    seed: int = 1234,
    max_points_per_centroid: Optional[int] = 256,
    id_column: Optional[str] = "id",
) -> np.ndarray:
    """The training sample of :func:`kmeans`, ``(n, F)``, in its order."""
    with unwrapped():
        counts = dataset.map_batches(
            _count, fn_kwargs={"column": column, "dim": dim, "id_column": id_column},
            batch_format="numpy",
        ).take_all()
    total = int(sum(int(c["n"]) for c in counts))
    dims = sorted({int(c["dim"]) for c in counts if int(c["n"]) > 0})
    if total == 0:
        raise _vlad.InputError("empty input: no descriptors to train on (N = 0)")
    if len(dims) != 1 or (dim is not None and dims[0] != dim):
        raise _vlad.InputError(
            f"dimension mismatch: the dataset's descriptors have widths {dims}"
        )
    dim = dims[0]
    cap = None if not max_points_per_centroid else n_clusters * int(max_points_per_centroid)
    slack = 8.0
    while True:
        if cap is None or total <= cap:
            threshold = None
        else:
            expected = cap + slack * np.sqrt(cap) + 64
            threshold = int(min(1.0, expected / total) * 2.0**64) if expected < total else None
            if threshold is not None and threshold >= 2**64:
                threshold = None
        with unwrapped():
            batches = list(
                dataset.map_batches(
                    _sample,
                    fn_kwargs={
                        "column": column, "dim": dim, "id_column": id_column,
                        "seed": seed, "threshold": threshold,
                    },
                    batch_format="numpy",
                ).iter_batches(batch_format="numpy", batch_size=None)
            )
        keys = np.concatenate([b["key"] for b in batches]) if batches else np.empty(0, np.uint64)
        rows = (
            np.concatenate([np.asarray(b["row"]).reshape(-1, dim) for b in batches])
            if batches else np.empty((0, dim), np.float32)
        )
        if cap is None or len(keys) >= min(cap, total):
            break
        slack *= 4  # fewer than cap under the threshold: rare; widen it
    order = _order(keys, rows)
    if cap is not None:
        order = order[:cap]
    return np.ascontiguousarray(rows[order])


def _lloyd_actor_class() -> Any:
    import ray

    @ray.remote(max_restarts=4, max_task_retries=4)
    class LloydActor:
        """One ``LloydWorker`` (the GPU device, when it runs there)."""

        def __init__(self, backend: str) -> None:
            self.worker = _vlad.LloydWorker(backend)

        def backend(self) -> str:
            return self.worker.backend

        def step(self, rows: np.ndarray, centroids: np.ndarray) -> Dict[str, Any]:
            return self.worker.step(rows, centroids)

    return LloydActor


def kmeans(
    dataset: Any,
    n_clusters: int,
    column: str = "descriptors",
    n_iter: int = 25,
    seed: int = 1234,
    init: str = "k-means++",
    max_points_per_centroid: Optional[int] = 256,
    tol: float = 1e-4,
    concurrency: int = 1,
    backend: str = "auto",
    num_gpus: Optional[float] = None,
    num_cpus: float = 1,
    dim: Optional[int] = None,
    id_column: Optional[str] = "id",
    block_rows: int = 65536,
    verbose: bool = False,
) -> KMeans:
    """Train a codebook on the descriptors of a Ray Dataset of images
    (SPEC §13); returns a fitted ``vlad.KMeans`` (``cluster_centers_``,
    ``inertia_``, ``n_iter_``, ``inertia_history_``, ``training_points_``…).

    The rows are images as for :func:`vlad.ray.encode` (``dim`` is needed
    only when every row is a flat list). ``n_iter``, ``seed``, ``init``,
    ``max_points_per_centroid`` and ``tol`` mean what they mean for
    ``vlad.KMeans``; the sample is the ``K × max_points_per_centroid``
    descriptors of smallest seeded hash (all with ``None``) and must fit in
    the driver's memory (k-means++ runs there). The Lloyd steps run on
    ``concurrency`` actors (``num_cpus`` and ``num_gpus`` each, backend
    ``backend``; Ray schedules an actor only where its CPUs are free, so
    ``concurrency × num_cpus`` must fit in the cluster). The
    codebook depends on the data, the settings and ``block_rows``, never on
    ``concurrency``, the dataset's blocks or its row order.
    """
    import ray

    start = time.perf_counter()
    if int(concurrency) < 1:
        raise _vlad.InputError(f"concurrency = {concurrency}: expected at least 1")
    if int(block_rows) < 1:
        raise _vlad.InputError(f"block_rows = {block_rows}: expected at least 1")
    if n_clusters < 1:
        raise _vlad.InputError("n_clusters = 0: k-means needs at least one cluster")
    train = sample(dataset, n_clusters, column, dim, seed, max_points_per_centroid, id_column)
    seeding = time.perf_counter()
    seeded = _vlad.kmeans_seed(train, int(n_clusters), seed=int(seed), init=str(init))
    lloyd = _vlad.Lloyd(seeded, n_iter=int(n_iter), seed=int(seed), tol=float(tol))
    if verbose:
        import sys

        print(
            f"kmeans: {n_clusters} centroids from {len(train)} points ({train.shape[1]} dims), "
            f"init {init}, seeded in {time.perf_counter() - seeding:.3f} s",
            file=sys.stderr,
        )
    blocks: List[Any] = [
        ray.put(np.ascontiguousarray(train[i : i + block_rows]))
        for i in range(0, len(train), int(block_rows))
    ]
    total_cpus = ray.cluster_resources().get("CPU", 0)  # type: ignore[no-untyped-call]
    if int(concurrency) * num_cpus > total_cpus:
        warnings.warn(
            f"{concurrency} actors of num_cpus = {num_cpus} need more than the cluster's "
            f"{total_cpus:g} CPUs: the job waits until the cluster grows (lower num_cpus?)",
            stacklevel=2,
        )
    actor_class = _lloyd_actor_class()
    tag = uuid.uuid4().hex[:12]
    actors = [
        actor_class.options(
            name=f"vlad-lloyd-{tag}-{i}", num_cpus=num_cpus, num_gpus=num_gpus or 0
        ).remote(backend)
        for i in range(int(concurrency))
    ]
    try:
        ran_on = ray.get(actors[0].backend.remote())

        def map_blocks(centroids: np.ndarray) -> List[Dict[str, Any]]:
            ref = ray.put(centroids)
            futures = [actors[b % len(actors)].step.remote(block, ref) for b, block in enumerate(blocks)]
            with unwrapped():
                return ray.get(futures)

        go_on = int(n_iter) > 0
        while go_on:
            steps = map_blocks(lloyd.centroids)
            sums = steps[0]["sums"].copy()
            counts = steps[0]["counts"].copy()
            errors = steps[0]["errors"].copy()
            inertia = float(steps[0]["inertia"])
            for s in steps[1:]:  # block order, in f64
                sums += s["sums"]
                counts += s["counts"]
                errors += s["errors"]
                inertia += float(s["inertia"])
            go_on = lloyd.update(sums, counts, errors, inertia)
            if verbose:
                import sys

                history = lloyd.inertia_history
                print(f"kmeans: iteration {len(history)}/{n_iter}: inertia {history[-1]:.6e}", file=sys.stderr)
        centroids = lloyd.centroids
        final = map_blocks(centroids)
        exact = float(final[0]["exact_inertia"])
        for s in final[1:]:
            exact += float(s["exact_inertia"])
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)

    result = KMeans(
        n_clusters=n_clusters, n_iter=n_iter, seed=seed, init=init,
        max_points_per_centroid=max_points_per_centroid, tol=tol, backend=backend,
    )
    result.cluster_centers_ = centroids
    result.inertia_ = exact
    result.inertia_history_ = list(lloyd.inertia_history)
    result.n_iter_ = len(result.inertia_history_)
    result.n_features_in_ = int(centroids.shape[1])
    result.backend_ = ran_on
    result.adapter_ = None
    result.adapter_kind_ = None
    result.fallback_reason_ = None
    result.training_points_ = int(len(train))
    result.seconds_ = time.perf_counter() - start
    result.setup_seconds_ = 0.0
    # Only a distributed fit knows its block count: an attribute vlad.KMeans
    # itself never has, set by name so the type checker sees that on purpose.
    setattr(result, "blocks_", len(blocks))
    return result
