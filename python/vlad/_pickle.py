"""How an :class:`vlad.Encoder` crosses a process boundary (pickle,
multiprocessing, joblib, Ray): as the bytes of its model file (SPEC §15:
codebook, assignment with its soft parameters, normalization, whitening),
from which the receiving process builds the same encoder, giving the same
bits, plus the backend it was asked to run on.

The one place that decides the format. ``KMeans`` and ``VLAD`` pickle as
plain Python objects (their fitted attributes are numpy arrays, numbers
and an ``Encoder``); ``Whitening`` through its own model bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict

if TYPE_CHECKING:
    from .encoder import Encoder

# Bumped when what ``state`` writes changes meaning (1 was the
# configuration as arrays; 2 is the model file).
FORMAT = 2


def state(encoder: "Encoder") -> Dict[str, Any]:
    """Everything that makes ``encoder`` what it is: its model file's bytes
    and its backend."""
    native = encoder._native
    return {
        "format": FORMAT,
        "model": bytes(native.to_model_bytes()),
        "backend": native.backend,
    }


def rebuild(saved: Dict[str, Any]) -> "Encoder":
    """The encoder ``state`` described."""
    from ._vlad import Encoder as NativeEncoder
    from ._vlad import InputError
    from .encoder import Encoder

    if saved.get("format") != FORMAT:
        raise InputError(
            f"this pickled vlad.Encoder has format {saved.get('format')!r}; this version of "
            f"vlad reads format {FORMAT}: unpickle it with the version that wrote it"
        )
    return Encoder._from_native(NativeEncoder.from_model_bytes(saved["model"], saved["backend"]))
