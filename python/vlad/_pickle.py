"""How an :class:`vlad.Encoder` crosses a process boundary (pickle,
multiprocessing, joblib, Ray): as its configuration — centroids, norm,
backend and assignment (soft weights and bias, or the temperature) — from
which the receiving process builds the same encoder, giving the same bits.

The one place that decides the format: SPEC §15 routes pickles through the
model file (``.npz``); swapping to it changes ``state`` and ``rebuild``
only. ``KMeans`` and ``VLAD`` pickle as plain Python objects (their fitted
attributes are numpy arrays, numbers and an ``Encoder``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    from .encoder import Encoder

# Bumped when what ``state`` writes changes meaning.
FORMAT = 1


def state(encoder: "Encoder") -> Dict[str, Any]:
    """Everything that makes ``encoder`` what it is, as plain data."""
    native = encoder._native
    return {
        "format": FORMAT,
        "centroids": native.centroids,
        "norm": native.norm,
        "backend": native.backend,
        "assignment": "hard" if native.assignment == "hard" else "soft",
        "weights": native.weights,
        "bias": native.bias,
        "alpha": native.alpha,
    }


def rebuild(saved: Dict[str, Any]) -> "Encoder":
    """The encoder ``state`` described."""
    from ._vlad import InputError
    from .encoder import Encoder

    if saved.get("format") != FORMAT:
        raise InputError(
            f"this pickled vlad.Encoder has format {saved.get('format')!r}; this version of "
            f"vlad reads format {FORMAT}: unpickle it with the version that wrote it"
        )
    return Encoder(
        saved["centroids"],
        norm=saved["norm"],
        backend=saved["backend"],
        assignment=saved["assignment"],
        weights=saved["weights"],
        bias=saved["bias"],
        alpha=saved["alpha"],
    )
