"""``vlad.KMeans``: codebook training in scikit-learn's shape."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from . import _progress, _sklearn, _vlad
from ._vlad import InputError
from .encoder import Encoder


class KMeans(_sklearn.ClusterMixin, _sklearn.BaseEstimator):
    """k-means (Lloyd) codebook training, as ``vlad kmeans`` runs it; a
    scikit-learn clusterer (``clone``, ``Pipeline``, ``GridSearchCV`` and
    ``check_estimator`` take it when scikit-learn is installed).

    Parameters
    ----------
    n_clusters : int, default 8
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
    verbose : int or bool, default 0
        Progress on stderr (never stdout), as scikit-learn's ``verbose``:
        1 a tqdm bar over the iterations when tqdm is installed (plain
        lines without it), 2 or more one line per iteration.
    compute_labels : bool, default True
        Whether :meth:`fit` labels every training point (``labels_``, one
        assignment pass over all of ``X``); ``vlad.VLAD`` turns it off.

    ``X`` is ``(N, F)`` rows (any array-like or CPU DLPack tensor; float32,
    float64 and uint8 are read in place, other numeric dtypes become
    float32), or, as extensions of scikit-learn's interface, ``(T, L, F)``
    images (all ``T·L`` rows) or a list of ``(n_t, F)`` arrays.

    Attributes (after :meth:`fit`)
    ------------------------------
    cluster_centers_ : ndarray, shape (K, F), float32
    labels_ : ndarray, shape (N,), int64
        Each training row's nearest final centroid (when ``compute_labels``).
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
        n_clusters: int = 8,
        n_iter: int = 25,
        seed: int = 1234,
        init: Any = "k-means++",
        max_points_per_centroid: Optional[int] = 256,
        tol: float = 1e-4,
        backend: str = "auto",
        verbose: Any = 0,
        compute_labels: bool = True,
    ) -> None:
        self.n_clusters = n_clusters
        self.n_iter = n_iter
        self.seed = seed
        self.init = init
        self.max_points_per_centroid = max_points_per_centroid
        self.tol = tol
        self.backend = backend
        self.verbose = verbose
        self.compute_labels = compute_labels

    def fit(self, X: Any, y: Any = None) -> "KMeans":
        """Train on ``X`` (see the class docstring); returns ``self``."""
        del y  # scikit-learn's signature; k-means is unsupervised
        data = _sklearn.descriptors(self, X, reset=True)
        n_clusters = int(self.n_clusters)
        if 0 < data.n_rows < n_clusters:
            raise InputError(
                f"n_samples={data.n_rows} should be >= n_clusters={n_clusters}: "
                "k-means needs at least one training point per centroid"
            )
        progress = _progress.kmeans_progress(self.verbose)
        try:
            fit = self._fit_native(data.data, n_clusters, progress)
        finally:
            if progress is not None:
                progress.close()
        self.cluster_centers_: np.ndarray = fit["cluster_centers"]
        self.inertia_: float = fit["inertia"]
        self.n_iter_: int = fit["n_iter"]
        self.inertia_history_: List[float] = list(fit["inertia_history"])
        self.backend_: str = fit["backend"]
        self.adapter_: Optional[str] = fit["adapter"]
        self.adapter_kind_: Optional[str] = fit["adapter_kind"]
        self.fallback_reason_: Optional[str] = fit["fallback_reason"]
        self.training_points_: int = fit["training_points"]
        self.seconds_: float = fit["seconds"]
        self.setup_seconds_: float = fit["setup_seconds"]
        if self.compute_labels:
            self.labels_: np.ndarray = self._encoder().assign(data.data)
        return self

    def _fit_native(
        self, data: np.ndarray, n_clusters: int, progress: Optional[_progress.KMeansProgress]
    ) -> Dict[str, Any]:
        # scikit-learn's init: a string, or the (K, F) starting centroids
        # (vocabulary adaptation: SPEC §14).
        given = None if isinstance(self.init, str) else np.asarray(self.init)
        return _vlad.kmeans_fit(
            data,
            n_clusters,
            n_iter=int(self.n_iter),
            seed=int(self.seed),
            init=str(self.init) if given is None else "k-means++",
            init_centroids=given,
            max_points_per_centroid=self.max_points_per_centroid,
            tol=float(self.tol),
            backend=str(self.backend),
            progress=progress,
        )

    def predict(self, X: Any) -> np.ndarray:
        """``(N,)`` int64 label of each row of ``X``: its nearest centroid."""
        _sklearn.check_is_fitted(self, "cluster_centers_")
        return self._encoder().assign(_sklearn.descriptors(self, X, reset=False).data)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """:meth:`fit`, then the label of each training row (``labels_``)."""
        self.fit(X, y)
        if not self.compute_labels:
            return self.predict(X)
        return self.labels_

    def _encoder(self) -> Encoder:
        _sklearn.check_is_fitted(self, "cluster_centers_")
        return Encoder(self.cluster_centers_, norm="none", backend=self.backend)
