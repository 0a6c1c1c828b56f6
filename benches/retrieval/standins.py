"""The four steps after VLAD that the benchmark measures, each behind one
small function: PCA, whitening, several vocabularies (multivoc) and
vocabulary adaptation.

PCA and whitening are `vlad.Whitening`'s. Multivoc is still one
`vlad.Encoder` per codebook, concatenated here (the encoder does not hold
several codebooks yet), and the adaptation step is marked where it does
not yet use `vlad.KMeans(init=array)`.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import numpy as np

import vlad


def _l2_rows(y: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm; a zero row stays zero (SPEC §3's l2)."""
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return np.where(norms > 0.0, y / np.where(norms > 0.0, norms, 1.0), 0.0)


def fit_whitening(train: np.ndarray, n_components: int, power: float = -0.5) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whitening of ``train`` ``(n, D)`` by ``vlad.Whitening``: its mean
    ``μ`` ``(D,)``, the top ``n_components`` eigenvectors ``U`` ``(D, D′)``
    of its covariance (divisor n − 1) and the scale ``(λ + ε)^p`` ``(D′,)``,
    ``ε = 1e-6·λ₀``, as float64 arrays."""
    w = vlad.Whitening(n_components, power=power, post="none").fit(np.asarray(train, dtype=np.float32))
    scale = (w.explained_variance_ + w.eps_) ** power
    return w.mean_.astype(np.float64), w.components_.T.astype(np.float64), scale


def whiten(train: np.ndarray, apply_to: np.ndarray, n_components: int, power: float = -0.5) -> np.ndarray:
    """Fit a ``vlad.Whitening`` on ``train`` ``(n, D)`` and apply it to
    ``apply_to``: ``y = diag((λ + ε)^p)·Uᵀ(x − μ)``, then L2 (SPEC §14).
    ``power = 0`` is plain PCA, ``-0.5`` whitens. Returns ``(T,
    n_components)``."""
    w = vlad.Whitening(n_components, power=power).fit(np.asarray(train, dtype=np.float32))
    return w.transform(np.asarray(apply_to, dtype=np.float32)).astype(np.float64)


def pca(train: np.ndarray, apply_to: np.ndarray, n_components: int) -> np.ndarray:
    """Plain PCA (power 0) to ``n_components``, then L2."""
    return whiten(train, apply_to, n_components, power=0.0)


def multivoc_encode(codebooks: Sequence[np.ndarray], images: Sequence[np.ndarray], norm: str) -> np.ndarray:
    """The encodings of ``images`` with each codebook, each normalized on
    its own, side by side: ``(T, Σ K_i·F)`` (SPEC §14's multivoc)."""
    # With vlad's multivoc encoder (the lead's branch): one vlad.Encoder
    # holding every codebook, whose encode() returns this concatenation.
    # stand-in until vlad.Whitening lands (Multivoc comes with it): one
    # vlad.Encoder per codebook, the encodings concatenated here.
    return np.concatenate(
        [vlad.Encoder(c, norm=norm, backend="cpu").encode(list(images)) for c in codebooks], axis=1
    )


def adapt_vocabulary(codebook: np.ndarray, images: Sequence[np.ndarray]) -> np.ndarray:
    """One k-means (Lloyd) iteration started from ``codebook`` on the
    descriptors of ``images``: "All about VLAD"'s vocabulary adaptation.
    A centroid that no descriptor chooses stays where it was."""
    # With vlad.KMeans(init=array):
    #   km = vlad.KMeans(len(codebook), init=codebook, n_iter=1, max_points_per_centroid=None)
    #   return km.fit(list(images)).cluster_centers_
    # stand-in until vlad.KMeans(init=...) lands: vlad's own assignment,
    # then the mean of each cluster in f64 by hand.
    rows = np.concatenate([np.asarray(i, dtype=np.float64) for i in images], axis=0)
    labels = vlad.Encoder(codebook, norm="none", backend="cpu").assign(rows)
    k, f = codebook.shape
    sums = np.zeros((k, f))
    np.add.at(sums, labels, rows)
    counts = np.bincount(labels, minlength=k)
    adapted = np.asarray(codebook, dtype=np.float64).copy()
    chosen = counts > 0
    adapted[chosen] = sums[chosen] / counts[chosen, None]
    return adapted.astype(np.float32)
