"""``vlad.KMeans``: codebook training in scikit-learn's shape."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from . import _inputs, _vlad
from .encoder import Encoder

_PARAMS = (
    "n_clusters",
    "n_iter",
    "seed",
    "init",
    "max_points_per_centroid",
    "tol",
    "backend",
    "verbose",
)


class KMeans:
    """k-means (Lloyd) codebook training, as ``vlad kmeans`` runs it.

    Parameters
    ----------
    n_clusters : int
        Number of centroids K (at most the number of distinct training points).
    n_iter : int, default 25
        Most Lloyd iterations; training stops earlier at a fixed point or
        once the inertia changes by at most ``tol`` (relative).
    seed : int, default 1234
        Seed of every random draw: the same data and seed give bitwise
        identical centroids, whatever the thread count.
    init : {"k-means++", "random"} or array of shape (K, F), default "k-means++"
        Greedy k-means++ seeding, K distinct points drawn uniformly, or (as
        scikit-learn takes it) the starting centroids themselves, float32 or
        float64, with ``K == n_clusters``. From a codebook trained
        elsewhere, ``n_iter=1`` is vocabulary adaptation.
    max_points_per_centroid : int or None, default 256
        Train on at most ``K × max_points_per_centroid`` points drawn with
        the seed; ``None`` (or 0) trains on every point.
    tol : float, default 1e-4
        Relative inertia change under which training stops (0: never early).
    backend : {"auto", "gpu", "cpu"}, default "auto"
        Where the iterations run.
    verbose : bool, default False
        Report progress on stderr.

    Attributes (after :meth:`fit`)
    ------------------------------
    cluster_centers_ : ndarray, shape (K, F), float32
    inertia_ : float
        Sum of squared distances of the training points to their nearest
        final centroid (in float64).
    n_iter_ : int
        Lloyd iterations run.
    inertia_history_ : list of float
        The inertia of each iteration's assignment.
    n_features_in_ : int
    backend_ : str
        The backend that ran; ``adapter_`` the GPU adapter's name or None,
        ``adapter_kind_`` its kind ("discrete", "software" for lavapipe...) or
        None; ``fallback_reason_`` why ``auto`` did not use the GPU, or None.
    seconds_ : float
        Seconds of the fit; ``setup_seconds_`` the GPU's one-time setup.
    """

    def __init__(
        self,
        n_clusters: int,
        n_iter: int = 25,
        seed: int = 1234,
        init: str = "k-means++",
        max_points_per_centroid: Optional[int] = 256,
        tol: float = 1e-4,
        backend: str = "auto",
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.seed = seed
        self.init = init
        self.max_points_per_centroid = max_points_per_centroid
        self.tol = tol
        self.backend = backend
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> "KMeans":
        """Train on ``X``: ``(N, F)`` rows, ``(T, L, F)`` images (all ``T·L``
        rows) or a list of ``(n_t, F)`` arrays; float32, float64 or uint8.
        Returns ``self``."""
        del y  # scikit-learn's signature; k-means is unsupervised
        given = None if isinstance(self.init, str) else np.asarray(self.init)
        fit = _vlad.kmeans_fit(
            _inputs.rows(X, 0),
            int(self.n_clusters),
            n_iter=int(self.n_iter),
            seed=int(self.seed),
            init=str(self.init) if given is None else "k-means++",
            max_points_per_centroid=self.max_points_per_centroid,
            tol=float(self.tol),
            backend=str(self.backend),
            verbose=bool(self.verbose),
            init_centroids=given,
        )
        self.cluster_centers_: np.ndarray = fit["cluster_centers"]
        self.inertia_: float = fit["inertia"]
        self.n_iter_: int = fit["n_iter"]
        self.inertia_history_: List[float] = list(fit["inertia_history"])
        self.n_features_in_: int = int(self.cluster_centers_.shape[1])
        self.backend_: str = fit["backend"]
        self.adapter_: Optional[str] = fit["adapter"]
        self.adapter_kind_: Optional[str] = fit["adapter_kind"]
        self.fallback_reason_: Optional[str] = fit["fallback_reason"]
        self.training_points_: int = fit["training_points"]
        self.seconds_: float = fit["seconds"]
        self.setup_seconds_: float = fit["setup_seconds"]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """``(N,)`` int64 label of each row of ``X``: its nearest centroid."""
        return self._encoder().assign(X)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """:meth:`fit`, then :meth:`predict` on the same ``X``."""
        return self.fit(X, y).predict(X)

    def _encoder(self) -> Encoder:
        if not hasattr(self, "cluster_centers_"):
            raise AttributeError(
                "this KMeans is not fitted yet: call fit(X) before predict(X)"
            )
        return Encoder(self.cluster_centers_, norm="none", backend=self.backend)

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters (scikit-learn's protocol)."""
        del deep
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> "KMeans":
        """Set constructor parameters by name (scikit-learn's protocol)."""
        for name, value in params.items():
            if name not in _PARAMS:
                raise ValueError(f"KMeans has no parameter {name!r}")
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        changed = [
            f"{name}={getattr(self, name)!r}"
            for name, default in zip(_PARAMS, (None, 25, 1234, "k-means++", 256, 1e-4, "auto", False))
            if name == "n_clusters"
            or not isinstance(getattr(self, name), type(default))
            or getattr(self, name) != default
        ]
        return f"vlad.KMeans({', '.join(changed)})"
