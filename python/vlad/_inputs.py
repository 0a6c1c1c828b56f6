"""Turning what numpy users hand over into the arrays the native module reads.

Arrays of a dtype the library takes pass through untouched (the native
module reads them in place); float16 is widened to float32, a non-native
byte order is swapped, objects with ``__dlpack__`` (CPU tensors) become
numpy views of the same memory, array-likes go through ``np.asarray``, and a list of
per-image ``(n_t, F)`` arrays becomes ``(N, F)`` rows plus CSR offsets.
Everything else is left for the native module to refuse with the message
the command line would give.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from . import _dlpack
from ._vlad import InputError


def array(x: Any, what: str = "array") -> np.ndarray:
    """``x`` as an ndarray the native module can read: a DLPack tensor
    viewed in place, float16 widened to float32, other byte orders made
    native; never a copy otherwise. ``what`` names ``x`` in messages."""
    x = _dlpack.to_numpy(x, what)
    a = x if isinstance(x, np.ndarray) else np.asarray(x)
    if a.dtype == np.float16:
        return a.astype(np.float32)
    if not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a


def integers(x: Any, what: str = "array") -> Optional[np.ndarray]:
    """Offsets, labels or soft-assignment parameters: ``None`` stays
    ``None``; lists and tensors become arrays."""
    if x is None:
        return None
    return array(x, what)


def images(
    descriptors: Any, offsets: Any, dim: int
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Descriptors and offsets for ``encode``: a list (or tuple) of
    per-image ``(n_t, F)`` arrays is concatenated, its offsets made from
    the lengths; anything else is one array with the offsets given."""
    if not isinstance(descriptors, (list, tuple)):
        return array(descriptors, "descriptors"), integers(offsets, "offsets")
    if offsets is not None:
        raise InputError(
            "offsets come from the list of images: pass either a list of (n_t, F) "
            "arrays or (N, F) rows with offsets, not both"
        )
    parts = [array(image, f"images[{t}]") for t, image in enumerate(descriptors)]
    for t, part in enumerate(parts):
        if part.ndim != 2:
            raise InputError(
                f"images[{t}] must be an (n, F) array of descriptors, got shape {part.shape}"
            )
        if part.shape[1] != parts[0].shape[1]:
            raise InputError(
                f"images[{t}] has F = {part.shape[1]} but images[0] has F = {parts[0].shape[1]}"
            )
    lengths = [part.shape[0] for part in parts]
    offsets_out = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets_out[1:])
    if not parts:
        return np.empty((0, dim), dtype=np.float32), offsets_out
    rows = array(np.concatenate(parts, axis=0))
    return rows, offsets_out


def rows(descriptors: Any, dim: int) -> np.ndarray:
    """Descriptors for ``assign`` and k-means: one array (``(N, F)`` or
    ``(T, L, F)``), or a list of per-image ``(n_t, F)`` arrays, concatenated
    (an empty list is ``(0, dim)``)."""
    return images(descriptors, None, dim)[0]
