"""The four steps after VLAD that the benchmark measures, each behind one
small function: PCA, whitening, several vocabularies (multivoc) and
vocabulary adaptation.

Each is written against vlad's API as SPEC §14 and issue 19 define it
(`vlad.Whitening(n_components, power=-0.5, eps=None, max_points=None,
seed=1234)`, `vlad.KMeans(init=array)`); until that API is on this
branch, each function body is a plain numpy stand-in, marked
`# stand-in until vlad.Whitening lands` (or `vlad.KMeans(init=...)`),
with the call that replaces it written beside it. Swapping the body must
not change the function's signature or meaning, so retrieval.py needs no
change.
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
    """The whitening of ``train`` ``(n, D)``: its mean ``μ`` ``(D,)``, the top
    ``n_components`` eigenvectors ``U`` ``(D, D′)`` of its covariance (divided
    by n) and the scale ``(λ + ε)^p`` ``(D′,)``, ``ε = 1e-6·λ₀``."""
    # stand-in until vlad.Whitening lands: numpy's eigh on the f64
    # covariance, or on the n × n Gram matrix when n < D (SPEC §14).
    x = np.asarray(train, dtype=np.float64)
    n, d = x.shape
    if not 1 <= n_components <= min(n, d):
        raise ValueError(f"n_components = {n_components} must be in [1, min(n, D) = {min(n, d)}]")
    mean = x.mean(axis=0)
    centred = x - mean
    if n < d:
        # Covariance eigenpairs from the Gram matrix: G v = λ v with
        # G = X Xᵀ / n gives u = Xᵀ v / ‖Xᵀ v‖ for the same λ.
        values, vectors = np.linalg.eigh(centred @ centred.T / n)
        top = np.argsort(values)[::-1][:n_components]
        values = values[top]
        components = centred.T @ vectors[:, top]
        components /= np.linalg.norm(components, axis=0, keepdims=True)
    else:
        values, vectors = np.linalg.eigh(centred.T @ centred / n)
        top = np.argsort(values)[::-1][:n_components]
        values, components = values[top], vectors[:, top]
    # The sign rule: each eigenvector's component of largest magnitude is
    # positive, so a fit has one answer.
    largest = np.argmax(np.abs(components), axis=0)
    components *= np.sign(components[largest, np.arange(n_components)])
    values = np.maximum(values, 0.0)
    return mean, components, (values + 1e-6 * values[0]) ** power


def whiten(train: np.ndarray, apply_to: np.ndarray, n_components: int, power: float = -0.5) -> np.ndarray:
    """Fit a whitening on ``train`` ``(n, D)`` and apply it to ``apply_to``:
    ``y = diag((λ + ε)^p)·Uᵀ(x − μ)``, then L2 (SPEC §14). ``power = 0`` is
    plain PCA, ``-0.5`` whitens. Returns ``(T, n_components)`` float64."""
    # With vlad.Whitening:
    #   return vlad.Whitening(n_components, power=power).fit(train).transform(apply_to)
    mean, components, scale = fit_whitening(train, n_components, power)  # stand-in until vlad.Whitening lands
    return _l2_rows((np.asarray(apply_to, dtype=np.float64) - mean) @ components * scale)


def pca(train: np.ndarray, apply_to: np.ndarray, n_components: int) -> np.ndarray:
    """Plain PCA (power 0) to ``n_components``, then L2."""
    # With vlad.Whitening: vlad.Whitening(n_components, power=0.0).fit(train).transform(apply_to)
    return whiten(train, apply_to, n_components, power=0.0)  # stand-in until vlad.Whitening lands


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
