"""``vlad.ray.encode``: a Ray Dataset of images → their VLAD encodings, by a
pool of actors each holding one ``vlad.Encoder`` (Ray Data batch inference)."""

from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable, Dict, Optional

import numpy as np

from ..encoder import Encoder
from . import _images
from ._errors import surfacing


class _EncoderActor:
    """One ``vlad.Encoder``, built once per actor (one GPU device set up per
    actor), applied to each batch of image rows."""

    def __init__(
        self,
        centroids: np.ndarray,
        column: str,
        output_column: str,
        id_column: Optional[str],
        norm: str,
        backend: str,
        whitening: Any = None,
    ) -> None:
        # `whitening` arrives pickled (through the model file's bytes).
        self.encoder = Encoder(centroids, norm=norm, backend=backend, whitening=whitening)
        self.dim = int(np.asarray(centroids).shape[1])
        self.k = int(np.asarray(centroids).shape[0])
        self.column = column
        self.output_column = output_column
        self.id_column = id_column

    @surfacing
    def __call__(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        imgs, _ = _images.images(batch, self.column, self.dim, self.id_column)
        rows, offsets = _images.concatenate(imgs, self.dim)
        if len(imgs) == 0:
            encoded = np.empty((0, self.encoder.dims_out), dtype=np.float32)
        else:
            encoded = self.encoder.encode(rows, offsets=offsets)
        out = {name: values for name, values in batch.items() if name != self.column}
        out[self.output_column] = encoded
        return out


# Restarts of a dead actor, and retries of its batches, before the job
# fails: enough for a preempted node, not a loop forever on an actor that
# dies on every batch (Ray Data's own default is unbounded).
_RESTART_BOUND = {"max_restarts": 4, "max_task_retries": 4}


def _restart_bound(map_batches: Callable[..., Any]) -> Dict[str, Any]:
    """The restart bound as extra keyword arguments of ``map_batches``,
    where this Ray still takes them (``**ray_remote_args``: deprecated in Ray
    2.60, announced for removal in 2.64, with no named replacement for
    these two); ``{}`` where it does not, leaving Ray's default."""
    try:
        parameters = inspect.signature(map_batches).parameters.values()
    except (TypeError, ValueError):
        return {}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return dict(_RESTART_BOUND)
    return {}


def encode(
    dataset: Any,
    centroids: Any,
    column: str = "descriptors",
    norm: str = "ssr,l2",
    backend: str = "auto",
    concurrency: int = 1,
    num_gpus: Optional[float] = None,
    batch_size: int = 256,
    num_cpus: Optional[float] = None,
    id_column: Optional[str] = "id",
    output_column: str = "vlad",
    whitening: Any = None,
) -> Any:
    """Encode a Ray Dataset of images (SPEC §13).

    Each row is one image: ``column`` holds its descriptors, an ``(n, F)``
    array (a tensor column; ``n`` may be 0) or a flat list of ``n·F`` values
    (a Parquet ``list<float>`` column), float32, float64 or uint8. The
    result is a lazy Dataset with, per row, the other columns unchanged and
    ``output_column`` (default ``"vlad"``) holding the ``(K·F,)`` float32
    encoding: row for row and bit for bit what one ``vlad.Encoder`` with the
    same centroids, ``norm`` and ``backend`` gives (an image's encoding never
    depends on the batch it is in). The descriptors column is dropped.
    With ``whitening`` (a fitted ``vlad.Whitening``) each encoding is
    whitened to ``(D′,)`` as ``vlad.Encoder(..., whitening=w)`` does.

    ``concurrency`` actors (each one ``vlad.Encoder``) run the batches of
    ``batch_size`` images; with ``num_gpus`` (e.g. 1) each actor asks Ray
    for that share of a GPU, so they run on GPU workers (``backend="gpu"``
    or ``"auto"``). Each actor holds ``num_cpus`` CPUs (Ray's default, 1)
    for as long as the job runs: leave some to the tasks that read the
    input (``concurrency × num_cpus`` under the cluster's CPUs), or the
    job waits for CPUs forever. Actors that die are restarted and their batches
    retried. Bad input (NaN/Inf, a wrong F, a ragged flat list) fails the
    job with a ``vlad.InputError`` naming the row's shard and
    ``id_column`` when the dataset has them.
    """
    import ray  # noqa: F401  (vlad.ray needs Ray; vlad itself never imports it)

    centroids = np.asarray(centroids)
    if centroids.ndim != 2:
        from .._vlad import InputError

        raise InputError(f"centroids must be (K, F), got shape {centroids.shape}")
    # Fail here, on the driver, for a bad codebook or normalization rather
    # than in every actor.
    Encoder(centroids, norm=norm, backend="cpu", whitening=whitening)
    remote_args = _restart_bound(dataset.map_batches)
    with warnings.catch_warnings():
        # Passing the bound is our choice, not the caller's: the deprecation
        # of `ray_remote_args` is ours to follow (see _restart_bound).
        warnings.filterwarnings("ignore", message=r".*`ray_remote_args` is deprecated")
        return dataset.map_batches(
            _EncoderActor,
            fn_constructor_kwargs={
                "centroids": centroids,
                "column": column,
                "output_column": output_column,
                "id_column": id_column,
                "norm": norm,
                "backend": backend,
                "whitening": whitening,
            },
            batch_size=batch_size,
            batch_format="numpy",
            concurrency=concurrency,
            num_gpus=num_gpus,
            num_cpus=num_cpus,
            zero_copy_batch=True,
            **remote_args,
        )
