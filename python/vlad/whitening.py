"""``vlad.Whitening``: PCA and PCA-whitening of encodings (SPEC §14), in
scikit-learn's shape."""

from __future__ import annotations

import os
from typing import Any, Optional

import numpy as np

from . import _vlad

_PARAMS = ("n_components", "power", "eps", "max_points", "seed", "post")


class Whitening:
    """Learns ``y = diag((λ + ε)^p) · Uᵀ (x − μ)``, then ``post``, from encodings.

    The mean ``μ`` and the top ``n_components`` eigenpairs ``(λ, u)`` of the
    encodings' covariance are computed in float64 (from the ``n × n`` Gram
    matrix when there are fewer encodings than dimensions), with each
    eigenvector's largest-magnitude entry positive, so a fit is the same
    bits on every run and thread count. Give it to an encoder
    (``vlad.Encoder(..., whitening=w)``) to get ``(T, n_components)`` rows
    straight from the encoder — on the GPU only those are read back.

    Parameters
    ----------
    n_components : int
        ``D′``, the number of components kept (at most ``min(n, D)``).
    power : float, default -0.5
        Eigenvalue power ``p``: ``-0.5`` whitens (faiss's ``eigen_power``),
        ``0`` is plain PCA (scikit-learn's ``PCA.transform``).
    eps : float or None, default None
        Added to every eigenvalue before the power; ``None``: ``1e-6 · λ₀``.
    max_points : int or None, default None
        Learn from at most this many encodings, drawn with ``seed``;
        ``None``: ``1000 · n_components``.
    seed : int, default 1234
        Seed of that draw.
    post : str, default "l2"
        Normalization of each whitened row: ``"none"``, ``"l2"`` or
        ``"ssr,l2"``.

    Attributes (after :meth:`fit`)
    ------------------------------
    mean_ : ndarray, shape (D,), float32
    components_ : ndarray, shape (n_components, D), float32
        Unit eigenvectors as rows, largest eigenvalue first.
    explained_variance_ : ndarray, shape (n_components,), float64
        The eigenvalues ``λ`` (covariance with divisor ``n − 1``, as
        scikit-learn's ``PCA``).
    eps_ : float
        The ``ε`` in effect.
    n_features_in_ : int
    """

    def __init__(
        self,
        n_components: int,
        power: float = -0.5,
        eps: Optional[float] = None,
        max_points: Optional[int] = None,
        seed: int = 1234,
        post: str = "l2",
    ) -> None:
        self.n_components = n_components
        self.power = power
        self.eps = eps
        self.max_points = max_points
        self.seed = seed
        self.post = post
        self._native: Optional[_vlad.Whitening] = None

    # scikit-learn's parameter protocol.
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {name: getattr(self, name) for name in _PARAMS}

    def set_params(self, **params: Any) -> "Whitening":
        for name, value in params.items():
            if name not in _PARAMS:
                raise ValueError(f"unknown parameter {name!r} for Whitening")
            setattr(self, name, value)
        return self

    def fit(self, X: Any, y: Any = None) -> "Whitening":
        """Learn from ``(n, D)`` encodings (float32; others are converted)."""
        x = _encodings(X)
        self._native = _vlad.Whitening.fit(
            x,
            int(self.n_components),
            float(self.power),
            None if self.eps is None else float(self.eps),
            None if self.max_points is None else int(self.max_points),
            int(self.seed),
            str(self.post),
        )
        return self

    def transform(self, X: Any) -> np.ndarray:
        """``(n, n_components)`` float32: ``X`` whitened (on the CPU)."""
        return self._fitted().transform(_encodings(X))

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        return self.fit(X).transform(X)

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Write this whitening to a model file (``.npz``, SPEC §15)."""
        _vlad.save_whitening(self._fitted(), os.fspath(path))

    @property
    def mean_(self) -> np.ndarray:
        return self._fitted().mean

    @property
    def components_(self) -> np.ndarray:
        return self._fitted().components

    @property
    def explained_variance_(self) -> np.ndarray:
        return self._fitted().eigenvalues

    @property
    def eps_(self) -> float:
        return self._fitted().eps

    @property
    def n_features_in_(self) -> int:
        return self._fitted().dims_in

    def _fitted(self) -> _vlad.Whitening:
        if self._native is None:
            raise AttributeError("this Whitening is not fitted yet: call fit(X) first")
        return self._native

    @classmethod
    def _from_native(cls, native: _vlad.Whitening, seed: int = 1234, max_points: Optional[int] = None) -> "Whitening":
        w = cls(native.dims_out, native.power, native.eps, max_points, seed, native.post)
        w._native = native
        return w

    # Pickled through the model file's bytes (SPEC §15).
    def __getstate__(self) -> dict[str, Any]:
        state = self.get_params()
        state["_model"] = None if self._native is None else bytes(self._native.to_bytes())
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        model = state.pop("_model", None)
        self.__init__(**state)  # type: ignore[misc]
        self._native = None if model is None else _vlad.Whitening.from_bytes(model)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"vlad.Whitening({args})"


def _encodings(X: Any) -> np.ndarray:
    x = np.asarray(X)
    if x.ndim != 2:
        raise _vlad.InputError(f"encodings must be a 2-D (n, D) array, got shape {x.shape}")
    return np.ascontiguousarray(x, dtype=np.float32)
