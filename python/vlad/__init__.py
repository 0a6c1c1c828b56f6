"""vlad: VLAD image encodings on any GPU, a fast CPU path and an f64 oracle.

    import numpy as np, vlad

    centroids = vlad.KMeans(n_clusters=16).fit(descriptors).cluster_centers_
    enc = vlad.Encoder(centroids, norm="ssr,l2", backend="auto")
    V = enc.encode(descriptors)          # (T, L, F) -> (T, K·F) float32

See ``help(vlad.Encoder)`` and ``help(vlad.KMeans)``; the contract is the
project's SPEC.md (§12 for Python).
"""

from ._vlad import (
    BackendUnavailable,
    EncodeResult,
    InputError,
    Report,
    Verification,
    VerificationError,
    __version__,
    adapters,
)
from .encoder import Encoder, load
from .kmeans import KMeans
from .whitening import Whitening

__all__ = [
    "BackendUnavailable",
    "EncodeResult",
    "Encoder",
    "InputError",
    "KMeans",
    "Report",
    "Verification",
    "VerificationError",
    "Whitening",
    "__version__",
    "adapters",
    "load",
]
