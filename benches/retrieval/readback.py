"""The GPU read-back: what the raw encoding costs to bring back to the
host, and, once vlad has a whitening stage, what `T × D′` costs instead.

Measured through the Python report (`encode_batch(...).report.stages`,
whose "readback" entry is the copy into the staging buffers plus the
host's mapping and copy into the output). On lavapipe, Mesa's software
Vulkan driver, every figure is emulation on the CPU, never GPU speed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

import vlad


@dataclass
class Readback:
    """One configuration's read-back, medians over the repeats."""

    what: str
    adapter: str
    adapter_kind: str
    encoding_bytes: int  # T × (K·F or D′) × 4
    label_bytes: int  # N × 4: encode_batch reads the labels back too
    readback_seconds: float
    total_seconds: float


def images_from_pool(pool: np.ndarray, n_images: int, per_image: int, seed: int) -> np.ndarray:
    """``(T, L, F)`` images of real descriptors drawn from ``pool`` (so the
    assignment sees real SIFT statistics at a size the benchmark's own few
    hundred images do not reach)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(pool), size=n_images * per_image)
    return np.ascontiguousarray(pool[rows].reshape(n_images, per_image, pool.shape[1]))


def _measure(encoder: "vlad.Encoder", images: np.ndarray, what: str, width: int, repeats: int) -> Readback:
    encoder.encode_batch(images[:1])  # the session: device, shaders, buffers
    encoder.encode_batch(images)  # warm-up at the measured size
    readbacks: List[float] = []
    totals: List[float] = []
    report = None
    for _ in range(repeats):
        report = encoder.encode_batch(images).report
        readbacks.append(report.stages.get("readback", float("nan")))
        totals.append(report.seconds)
    assert report is not None
    t, l, _ = images.shape
    return Readback(
        what=what,
        adapter=str(report.adapter),
        adapter_kind=str(report.adapter_kind),
        encoding_bytes=t * width * 4,
        label_bytes=t * l * 4,
        readback_seconds=float(np.median(readbacks)),
        total_seconds=float(np.median(totals)),
    )


def measure_readback(
    centroids: np.ndarray,
    norm: str,
    images: np.ndarray,
    whitening_train: np.ndarray,
    n_components: int,
    repeats: int,
) -> Optional[List[Readback]]:
    """The raw encoding's read-back on the GPU backend, then, where this
    vlad has ``Whitening``, the whitened one's (fitted on
    ``whitening_train``, ``(n, K·F)`` encodings). ``None`` without any
    adapter."""
    if not vlad.adapters()["adapters"]:
        return None
    k, f = centroids.shape
    raw = vlad.Encoder(centroids, norm=norm, backend="gpu")
    results = [_measure(raw, images, f"raw, K·F = {k * f}", k * f, repeats)]
    if hasattr(vlad, "Whitening"):
        # The API of issue 19 item 7; not on this branch when this was
        # written, so this path has not run yet.
        whitening = vlad.Whitening(n_components).fit(whitening_train)
        whitened = vlad.Encoder(centroids, norm=norm, backend="gpu", whitening=whitening)
        results.append(_measure(whitened, images, f"whitened, D′ = {n_components}", n_components, repeats))
    return results
