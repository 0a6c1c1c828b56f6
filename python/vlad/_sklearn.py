"""scikit-learn's estimator protocol, with or without scikit-learn.

With scikit-learn (≥ 1.6, the ``scikit-learn`` extra) installed, the
estimators inherit its ``BaseEstimator`` and mixins, so ``clone``,
``Pipeline``, ``GridSearchCV``, ``set_output`` and ``check_estimator`` see
them as their own, and input checks are scikit-learn's ``validate_data``.
Without it, small stand-ins give the same parameters protocol
(``get_params``/``set_params``), ``fit_predict``/``fit_transform`` and the
same errors, so ``import vlad`` never needs scikit-learn.

Estimator input (both ways): ``(N, F)`` rows as scikit-learn takes them
(any array-like; integer dtypes become float32 as scikit-learn converts
them), plus two documented extensions: ``(T, L, F)`` arrays and lists of
per-image ``(n_t, F)`` arrays.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Callable, Dict, List, NamedTuple, Optional

import numpy as np

from . import _dlpack, _inputs

# The dtypes the library reads in place; scikit-learn converts any other
# to the first (float32).
_DTYPES = [np.float32, np.float64, np.uint8]


class _FallbackNotFittedError(ValueError, AttributeError):
    """An estimator used before ``fit`` (scikit-learn's ``NotFittedError``
    when scikit-learn is installed)."""


class _FallbackBaseEstimator:
    """``get_params``/``set_params`` from the constructor's signature, as
    scikit-learn's ``BaseEstimator`` has them."""

    # Set by ``fit`` (scikit-learn's validate_data, or descriptors() here).
    n_features_in_: int

    @classmethod
    def _get_param_names(cls) -> List[str]:
        signature = inspect.signature(cls.__init__)
        return sorted(
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        )

    def get_params(self, deep: bool = True) -> Dict[str, Any]:
        """The constructor's parameters by name."""
        del deep
        return {name: getattr(self, name) for name in self._get_param_names()}

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters by name; returns ``self``."""
        valid = self._get_param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(
                    f"Invalid parameter {name!r} for estimator {type(self).__name__}. "
                    f"Valid parameters are: {valid!r}."
                )
            setattr(self, name, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            p.name: p.default for p in inspect.signature(type(self).__init__).parameters.values()
        }
        changed = [
            f"{name}={value!r}"
            for name, value in self.get_params().items()
            if not _same(value, defaults.get(name, inspect.Parameter.empty))
        ]
        return f"{type(self).__name__}({', '.join(changed)})"


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a is b or a == b)
    except (TypeError, ValueError):
        return False


class _FallbackClusterMixin:
    """``fit_predict`` as scikit-learn's ``ClusterMixin`` has it."""

    labels_: np.ndarray

    def fit(self, X: Any, y: Any = None) -> Any:
        raise NotImplementedError

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """:meth:`fit`, then the training labels."""
        return np.asarray(self.fit(X, y).labels_)


class _FallbackTransformerMixin:
    """``fit_transform`` as scikit-learn's ``TransformerMixin`` has it."""

    def fit(self, X: Any, y: Any = None) -> Any:
        raise NotImplementedError

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """:meth:`fit`, then :meth:`transform` on the same ``X``."""
        return self.fit(X, y, **fit_params).transform(X)


def _fallback_check_is_fitted(estimator: Any, attributes: Optional[str] = None) -> None:
    fitted = hasattr(estimator, attributes) if attributes else any(
        name.endswith("_") and not name.startswith("__") for name in vars(estimator)
    )
    if not fitted:
        raise NotFittedError(
            f"This {type(estimator).__name__} instance is not fitted yet. Call 'fit' with "
            "appropriate arguments before using this estimator."
        )


if TYPE_CHECKING:
    # What mypy checks against: the stand-ins, which have the same methods
    # (scikit-learn ships no type information).
    BaseEstimator = _FallbackBaseEstimator
    ClusterMixin = _FallbackClusterMixin
    TransformerMixin = _FallbackTransformerMixin
    NotFittedError = _FallbackNotFittedError
    check_is_fitted = _fallback_check_is_fitted
    validate_data: Callable[..., Any]
    HAVE_SKLEARN = False
else:
    try:
        from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
        from sklearn.exceptions import NotFittedError
        from sklearn.utils.validation import check_is_fitted, validate_data
    except ImportError:  # scikit-learn absent (or older than 1.6)
        BaseEstimator = _FallbackBaseEstimator
        ClusterMixin = _FallbackClusterMixin
        TransformerMixin = _FallbackTransformerMixin
        NotFittedError = _FallbackNotFittedError
        check_is_fitted = _fallback_check_is_fitted
        HAVE_SKLEARN = False
    else:
        HAVE_SKLEARN = True


class Descriptors(NamedTuple):
    """An estimator's input, ready for the native module: ``data`` is
    ``(N, F)`` rows, ``(T, L, F)`` images, or with ``offsets`` the
    ``(N, F)`` rows of a list of images."""

    data: np.ndarray
    offsets: Optional[np.ndarray]
    kind: str  # "rows", "fixed" or "ragged"

    @property
    def n_rows(self) -> int:
        """Descriptors in all."""
        shape = self.data.shape
        return int(shape[0] * shape[1]) if self.kind == "fixed" else int(shape[0])


def _is_image_list(X: Any) -> bool:
    """A list (or tuple) of 2-D arrays, the ragged extension; a list of
    rows (of 1-D sequences) is an ordinary scikit-learn ``X``."""
    if not isinstance(X, (list, tuple)):
        return False
    if not X:
        return False
    first = _dlpack.to_numpy(X[0], "X[0]")
    ndim = getattr(first, "ndim", None)
    if ndim is None:
        ndim = np.ndim(first)
    return int(ndim) == 2


def _float_dtype(a: np.ndarray) -> np.ndarray:
    """Integer, boolean and float16 data become float32, as scikit-learn
    converts them; the library's own dtypes pass untouched."""
    if a.dtype in (np.float32, np.float64, np.uint8):
        return a
    if a.dtype.kind in "biuf":
        return a.astype(np.float32)
    return a  # the native module refuses it with its own message


def _check_width(estimator: Any, width: int, reset: bool) -> None:
    if reset:
        estimator.n_features_in_ = width
        return
    expected = getattr(estimator, "n_features_in_", None)
    if expected is not None and width != expected:
        raise ValueError(
            f"X has {width} features, but {type(estimator).__name__} is expecting "
            f"{expected} features as input."
        )


def _validate_rows(estimator: Any, X: Any, reset: bool) -> np.ndarray:
    if HAVE_SKLEARN:
        # Finiteness is left to the library: its message names the row.
        rows: np.ndarray = validate_data(
            estimator, X, reset=reset, dtype=_DTYPES, ensure_all_finite=False
        )
        return rows
    a = np.asarray(X)
    if a.ndim != 2:
        raise ValueError(
            f"Expected 2D array, got {a.ndim}D array instead: pass (N, F) rows "
            "(reshape a single row with X.reshape(1, -1))"
        )
    if a.shape[0] == 0:
        raise ValueError(f"Found array with 0 sample(s) (shape={a.shape}) while a minimum of 1 is required.")
    a = _inputs.array(_float_dtype(a), "X")
    _check_width(estimator, int(a.shape[1]), reset)
    return a


def descriptors(estimator: Any, X: Any, reset: bool) -> Descriptors:
    """``X`` checked as scikit-learn checks input (``reset``: in ``fit``,
    recording ``n_features_in_``; else checking against it)."""
    X = _dlpack.to_numpy(X, "X")
    if _is_image_list(X):
        parts = [_float_dtype(_inputs.array(p, f"X[{t}]")) for t, p in enumerate(X)]
        rows, offsets = _inputs.images(parts, None, 0)
        _check_width(estimator, int(rows.shape[1]), reset)
        return Descriptors(rows, offsets, "ragged")
    if isinstance(X, np.ndarray) and X.ndim == 3:
        images = _float_dtype(_inputs.array(X, "X"))
        _check_width(estimator, int(images.shape[2]), reset)
        return Descriptors(images, None, "fixed")
    return Descriptors(_validate_rows(estimator, X, reset), None, "rows")
