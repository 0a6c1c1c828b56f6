"""``vlad.VLAD``: codebook training and encoding as one scikit-learn
transformer (SPEC §15)."""

from __future__ import annotations

import copy
from typing import Any, List, Optional

import numpy as np

from . import _sklearn
from .encoder import Encoder
from .kmeans import KMeans


class VLAD(_sklearn.TransformerMixin, _sklearn.BaseEstimator):
    """VLAD encodings as a scikit-learn transformer: :meth:`fit` learns
    the codebook with :class:`vlad.KMeans` (and the whitening, when one is
    given), :meth:`transform` encodes.

    What ``X`` is:

    - ``(N, F)`` rows (scikit-learn's 2-D ``X``): **each row is one image
      of one descriptor**, so ``transform`` returns ``(N, K·F)``, one row
      per row, as every scikit-learn transformer does. ``fit`` trains the
      codebook on the rows.
    - Extensions, for real images of many descriptors: a list of
      per-image ``(n_t, F)`` arrays (ragged) or a ``(T, L, F)`` array;
      ``fit`` trains on all their descriptors and ``transform`` returns
      ``(T, K·F)``, one row per image.

    Arrays may be anything numpy reads or CPU DLPack tensors (PyTorch,
    JAX, CuPy); float32, float64 and uint8 are read in place.

    Parameters
    ----------
    n_clusters : int, default 64
        Codebook size K.
    norm : str, default "ssr,l2"
        The normalization steps, as :class:`vlad.Encoder` takes them.
    assignment : {"hard", "soft"}, default "hard"
        ``soft``: NetVLAD's soft assignment from the temperature ``alpha``
        (learned weights and bias: build a :class:`vlad.Encoder`).
    alpha : float or None, default None
        Soft assignment's temperature (> 0); only with ``assignment="soft"``.
    whitening : object or None, default None
        Anything with ``fit`` and ``transform`` (``vlad.Whitening``, or
        e.g. scikit-learn's ``PCA(whiten=True)``): a copy is fitted on the
        training encodings, and applied after encoding.
    backend : {"auto", "gpu", "cpu", "reference"}, default "auto"
        Where encoding runs (k-means takes ``auto``, ``gpu`` or ``cpu``;
        with ``reference`` the codebook is trained on the CPU).
    n_iter, seed, init, max_points_per_centroid, tol, verbose
        :class:`vlad.KMeans`' parameters of the codebook training;
        ``verbose`` also shows the progress of the encodes (as
        :meth:`vlad.Encoder.encode` does, with the same bits).

    Attributes (after :meth:`fit`)
    ------------------------------
    cluster_centers_ : ndarray, shape (K, F), float32
    kmeans_ : vlad.KMeans
        The fitted k-means (without ``labels_``: VLAD does not need them).
    encoder_ : vlad.Encoder
    whitening_ : object or None
        The fitted copy of ``whitening``.
    n_features_in_ : int
        Descriptor width F.
    """

    def __init__(
        self,
        n_clusters: int = 64,
        norm: str = "ssr,l2",
        assignment: str = "hard",
        alpha: Optional[float] = None,
        whitening: Any = None,
        backend: str = "auto",
        n_iter: int = 25,
        seed: int = 1234,
        init: Any = "k-means++",
        max_points_per_centroid: Optional[int] = 256,
        tol: float = 1e-4,
        verbose: Any = 0,
    ) -> None:
        self.n_clusters = n_clusters
        self.norm = norm
        self.assignment = assignment
        self.alpha = alpha
        self.whitening = whitening
        self.backend = backend
        self.n_iter = n_iter
        self.seed = seed
        self.init = init
        self.max_points_per_centroid = max_points_per_centroid
        self.tol = tol
        self.verbose = verbose

    def fit(self, X: Any, y: Any = None) -> "VLAD":
        """Learn the codebook from every descriptor of ``X`` (and the
        whitening from ``X``'s encodings); returns ``self``."""
        del y  # scikit-learn's signature; VLAD is unsupervised
        data = _sklearn.descriptors(self, X, reset=True)
        kmeans_backend = "cpu" if self.backend == "reference" else self.backend
        self.kmeans_: KMeans = KMeans(
            n_clusters=self.n_clusters,
            n_iter=self.n_iter,
            seed=self.seed,
            init=self.init,
            max_points_per_centroid=self.max_points_per_centroid,
            tol=self.tol,
            backend=kmeans_backend,
            verbose=self.verbose,
            compute_labels=False,
        ).fit(data.data)
        self.cluster_centers_: np.ndarray = self.kmeans_.cluster_centers_
        self.encoder_: Encoder = Encoder(
            self.cluster_centers_,
            norm=self.norm,
            backend=self.backend,
            assignment=self.assignment,
            alpha=self.alpha,
        )
        self.whitening_: Any = None
        if self.whitening is not None:
            whitening = _clone(self.whitening)
            whitening.fit(self._encode(data))
            self.whitening_ = whitening
        return self

    def transform(self, X: Any) -> Any:
        """``(T, K·F)`` float32 encodings of ``X``'s images (one per row of
        a 2-D ``X``), whitened when a whitening was fitted."""
        _sklearn.check_is_fitted(self, "encoder_")
        V = self._encode(_sklearn.descriptors(self, X, reset=False))
        if self.whitening_ is not None:
            return self.whitening_.transform(V)
        return V

    def _encode(self, data: _sklearn.Descriptors) -> np.ndarray:
        if data.kind == "rows":
            # Each row one image of one descriptor: (N, 1, F), a view.
            return self.encoder_.encode(data.data[:, np.newaxis, :], verbose=self.verbose)
        return self.encoder_.encode(data.data, offsets=data.offsets, verbose=self.verbose)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """``c{k}_{feature}`` for cluster k and input feature (cluster-major,
        as the encodings are laid out); the whitening's names when it has
        ``get_feature_names_out``."""
        _sklearn.check_is_fitted(self, "encoder_")
        names = self._input_names(input_features)
        out = np.asarray(
            [f"c{k}_{name}" for k in range(self.encoder_.n_clusters) for name in names],
            dtype=object,
        )
        if self.whitening_ is not None and hasattr(self.whitening_, "get_feature_names_out"):
            return np.asarray(self.whitening_.get_feature_names_out(out), dtype=object)
        return out

    def _input_names(self, input_features: Any) -> List[str]:
        fitted = getattr(self, "feature_names_in_", None)
        if input_features is None:
            if fitted is not None:
                return [str(n) for n in fitted]
            return [f"x{i}" for i in range(self.n_features_in_)]
        names = [str(n) for n in input_features]
        if len(names) != self.n_features_in_:
            raise ValueError(
                f"input_features should have length equal to number of features "
                f"({self.n_features_in_}), got {len(names)}"
            )
        if fitted is not None and list(fitted) != names:
            raise ValueError("input_features is not equal to feature_names_in_")
        return names

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        # The encodings are float32 whatever the input's float type.
        tags.transformer_tags.preserves_dtype = ["float32"]
        return tags


def _clone(estimator: Any) -> Any:
    """An unfitted copy of ``estimator`` (scikit-learn's ``clone`` when it
    is an estimator of scikit-learn's; a deep copy otherwise), so that
    ``fit`` never changes the ``whitening`` parameter."""
    if _sklearn.HAVE_SKLEARN and hasattr(estimator, "get_params"):
        from sklearn.base import clone

        return clone(estimator)
    return copy.deepcopy(estimator)
