"""One batch of a Ray Dataset's image rows → ``(N, F)`` rows and CSR
offsets, checked image by image so that bad input is reported with the row's
id (and shard) instead of a position inside a batch nobody sees."""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._vlad import InputError

#: Descriptor dtypes the library reads in place; others are widened to f32.
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.uint8))


def row_name(batch: Dict[str, Any], i: int, id_column: Optional[str]) -> str:
    """How an error names row ``i`` of ``batch``: its shard (a ``path``
    column, as ``read_parquet(include_paths=True)`` adds) and its id."""
    def plain(value: Any) -> Any:  # numpy scalars print as 17, not np.int64(17)
        return value.item() if isinstance(value, np.generic) else value

    parts = []
    if "path" in batch:
        parts.append(f"shard {plain(batch['path'][i])}")
    if id_column is not None and id_column in batch:
        parts.append(f"{id_column} = {plain(batch[id_column][i])!r}")
    if not parts:
        parts.append(f"row {i} of a batch (name an id column to see which)")
    return ", ".join(parts)


def image(value: Any, dim: Optional[int]) -> np.ndarray:
    """One row's descriptors as an ``(n, F)`` array: an ``(n, F)`` array
    (a tensor column), or a flat list of ``n·F`` values when ``dim`` is
    known. Raises ``InputError`` (without the row's name)."""
    array = np.asarray(value)
    if array.dtype == object:
        # A list column of lists: one inner list per descriptor.
        array = np.asarray([np.asarray(v) for v in array]) if len(array) else np.empty((0,))
    if array.dtype not in _NATIVE:
        if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
            raise InputError(f"descriptors of dtype {array.dtype} are not numbers")
        array = array.astype(np.float32)
    if array.ndim == 1:
        if dim is None:
            if array.size == 0:
                return array.reshape(0, 0)
            raise InputError(
                f"a flat list of {array.size} values needs the descriptor width: pass dim=F"
            )
        if array.size % dim != 0:
            raise InputError(
                f"dimension mismatch: {array.size} values are not whole descriptors of F = {dim}"
            )
        return array.reshape(-1, dim)
    if array.ndim != 2:
        raise InputError(f"descriptors must be (n, F), got shape {array.shape}")
    if dim is not None and array.shape[1] != dim and array.shape[0] > 0:
        raise InputError(
            f"dimension mismatch: descriptors have F = {array.shape[1]}, expected F = {dim}"
        )
    return array


def check_finite(rows: np.ndarray) -> None:
    """``InputError`` with the library's wording for the first NaN/Inf."""
    if rows.dtype == np.uint8 or rows.size == 0:
        return
    bad = ~np.isfinite(rows)
    if bad.any():
        r, c = (int(x) for x in np.argwhere(bad)[0])
        raise InputError(
            f"non-finite value {rows[r, c]} in descriptors at descriptor {r}, column {c}"
        )


def images(
    batch: Dict[str, Any], column: str, dim: Optional[int], id_column: Optional[str]
) -> Tuple[List[np.ndarray], int]:
    """Every row's ``(n, F)`` descriptors, checked (shape, width, NaN/Inf),
    and F (``dim``, else the first non-empty image's width, else 0)."""
    if column not in batch:
        raise InputError(
            f"the dataset has no column {column!r} (columns: {', '.join(sorted(batch))})"
        )
    values: Sequence[Any] = batch[column]
    out: List[np.ndarray] = []
    for i, value in enumerate(values):
        try:
            arr = image(value, dim)
            if dim is None and arr.shape[0] > 0:
                dim = arr.shape[1]
            elif dim is not None and arr.shape[0] > 0 and arr.shape[1] != dim:
                raise InputError(
                    f"dimension mismatch: descriptors have F = {arr.shape[1]}, "
                    f"expected F = {dim} (as earlier rows)"
                )
            check_finite(arr)
        except InputError as error:
            raise InputError(f"{row_name(batch, i, id_column)}: {error}") from None
        out.append(arr)
    return out, dim or 0


def concatenate(imgs: List[np.ndarray], dim: int) -> Tuple[np.ndarray, np.ndarray]:
    """``(N, F)`` rows and ``(T+1,)`` int64 offsets of ``imgs``."""
    sizes = np.array([a.shape[0] for a in imgs], dtype=np.int64)
    offsets = np.zeros(len(imgs) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    nonempty = [a for a in imgs if a.shape[0] > 0]
    if not nonempty:
        dtype = imgs[0].dtype if imgs else np.float32
        return np.empty((0, dim), dtype=dtype if dtype in _NATIVE else np.float32), offsets
    dtypes = {a.dtype for a in nonempty}
    dtype = nonempty[0].dtype if len(dtypes) == 1 else np.dtype(np.float32)
    rows = np.concatenate([a.astype(dtype, copy=False) for a in nonempty], axis=0)
    return np.ascontiguousarray(rows), offsets
