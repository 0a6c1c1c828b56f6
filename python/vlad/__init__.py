"""vlad: VLAD image encodings on any GPU, a fast CPU path and an f64 oracle.

    import numpy as np, vlad

    centroids = vlad.KMeans(n_clusters=16).fit(descriptors).cluster_centers_
    enc = vlad.Encoder(centroids, norm="ssr,l2", backend="auto")
    V = enc.encode(descriptors)          # (T, L, F) -> (T, K·F) float32

    # scikit-learn: fit learns the codebook, transform encodes
    V = vlad.VLAD(n_clusters=16).fit(images).transform(images)

See ``help(vlad.Encoder)``, ``help(vlad.KMeans)`` and ``help(vlad.VLAD)``; the contract is the
project's SPEC.md (§12 and §15 for Python).
"""

from typing import TYPE_CHECKING, Any, List

from ._quiet import quiet_mesa as _quiet_mesa

_quiet_mesa()  # before the native module can probe an adapter

from ._vlad import (  # noqa: E402
    BackendUnavailable,
    EncodeResult,
    InputError,
    Report,
    Verification,
    VerificationError,
    __version__,
    adapters,
)
from .encoder import Encoder, load  # noqa: E402
from .whitening import Whitening  # noqa: E402

if TYPE_CHECKING:
    from .kmeans import KMeans
    from .transformer import VLAD

# The estimators are loaded on first use: with scikit-learn installed they
# import it (and it pandas, scipy...: seconds), which `import vlad` for an
# Encoder alone should not pay.
_LAZY = {"KMeans": ".kmeans", "VLAD": ".transformer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlad' has no attribute {name!r}")


def __dir__() -> List[str]:
    return sorted(set(globals()) | set(_LAZY))

__all__ = [
    "BackendUnavailable",
    "EncodeResult",
    "Encoder",
    "InputError",
    "KMeans",
    "Report",
    "VLAD",
    "Verification",
    "VerificationError",
    "Whitening",
    "__version__",
    "adapters",
    "load",
]
