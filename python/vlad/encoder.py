"""``vlad.Encoder``: VLAD encodings of numpy arrays against one codebook."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from . import _inputs, _vlad


class Encoder:
    """Encodes images against one codebook (SPEC §12).

    Parameters
    ----------
    centroids : array_like, shape (K, F)
        The codebook, float32 or float64 (float64 is rounded to float32).
    norm : str, default "ssr,l2"
        Normalization steps applied in order after aggregation: ``mass``,
        ``ssr`` (= ``power=0.5``), ``power=α``, ``intra``, ``l2``, or ``none``;
        ``rn`` (first only) normalizes each residual before aggregation.
    backend : {"auto", "gpu", "cpu", "reference"}, default "auto"
        ``auto`` uses a working hardware GPU adapter, else the CPU (the
        report's ``fallback_reason`` says why; a software adapter such as
        lavapipe is never picked by ``auto``); ``gpu`` runs on any adapter,
        a software one included, and raises :class:`vlad.BackendUnavailable`
        only where there is no adapter at all (or none that ``VLAD_ADAPTER``
        names); ``reference`` is the slow f64 oracle.
    assignment : {"hard", "soft"}, default "hard"
        ``hard``: each descriptor to its nearest centroid. ``soft``:
        NetVLAD (SPEC §10), ``a_k(v) = softmax_k(w_k·v + b_k)`` and
        ``Σ a_k(v)·(v − c_k)`` per cluster, with ``weights`` ``(K, F)`` and
        ``bias`` ``(K,)``, or with ``alpha`` alone (``w_k = 2α·c_k``,
        ``b_k = −α‖c_k‖²``). Soft assignment runs on every backend, the
        GPU included, and ``auto`` chooses as it does for hard assignment.
    weights, bias : array_like, optional
        Soft assignment's learned parameters, float32 or float64.
    alpha : float, optional
        Soft assignment's temperature (> 0), instead of weights and bias.

    Descriptors are ``(T, L, F)`` fixed-size images, ``(N, F)`` rows split
    by CSR ``offsets`` (one image without them), or a list of per-image
    ``(n_t, F)`` arrays; float32, float64 or uint8 (float16 is widened to
    float32), any memory order. A C-contiguous array of one of those dtypes
    is read in place. Every call releases the GIL while it computes, and
    one encoder may be shared by many threads.
    """

    __slots__ = ("_native",)

    def __init__(
        self,
        centroids: Any,
        norm: str = "ssr,l2",
        backend: str = "auto",
        assignment: str = "hard",
        weights: Any = None,
        bias: Any = None,
        alpha: Optional[float] = None,
    ) -> None:
        self._native = _vlad.Encoder(
            _inputs.array(centroids),
            norm,
            backend,
            assignment,
            _inputs.integers(weights),
            _inputs.integers(bias),
            None if alpha is None else float(alpha),
        )

    def encode(
        self,
        descriptors: Any,
        offsets: Any = None,
        labels: Any = None,
        *,
        out: Optional[np.ndarray] = None,
    ) -> np.ndarray:
        """``(T, K·F)`` float32 encodings, cluster-major within each row.

        ``offsets``: CSR offsets ``(T+1,)`` of any integer dtype for
        ``(N, F)`` rows. ``labels``: ``(N,)`` labels in ``[0, K)`` to use
        instead of the nearest-centroid assignment. An image with no
        descriptors encodes to a zero row. ``out``: a C-contiguous,
        writeable float32 ``(T, K·F)`` array to write the encodings into
        (every element is written) and return, so that a loop reuses one
        buffer; any other array raises InputError.
        """
        rows, offsets = _inputs.images(descriptors, offsets, self._native.dim)
        if isinstance(out, np.ndarray) and isinstance(rows, np.ndarray) and np.may_share_memory(out, rows):
            raise _vlad.InputError("out must not share memory with the descriptors")
        return self._native.encode(rows, offsets, _inputs.integers(labels), out)

    def assign(self, descriptors: Any) -> np.ndarray:
        """``(N,)`` int64 nearest-centroid labels (image-major for
        ``(T, L, F)`` input; exact ties go to the lowest index)."""
        return self._native.assign(_inputs.rows(descriptors, self._native.dim))

    def encode_batch(
        self, descriptors: Any, offsets: Any = None, labels: Any = None
    ) -> _vlad.EncodeResult:
        """Encodings with their labels and a :class:`vlad.Report` (backend,
        adapter, seconds, stages). Same inputs as :meth:`encode`."""
        rows, offsets = _inputs.images(descriptors, offsets, self._native.dim)
        return self._native.encode_batch(rows, offsets, _inputs.integers(labels))

    def verify(
        self,
        descriptors: Any,
        vlad: Optional[np.ndarray] = None,
        offsets: Any = None,
        labels: Any = None,
    ) -> _vlad.Verification:
        """Check an encoding against the f64 reference under SPEC §4.

        Without ``vlad``, this encoder's own encoding of ``descriptors`` is
        checked; with it, that ``(T, K·F)`` float32 array (computed from
        ``labels`` when given, else from this encoder's assignment). Returns
        a :class:`vlad.Verification`; raises :class:`vlad.VerificationError`
        (with the same object as its ``verification`` attribute) when the
        encoding is outside the tolerance.
        """
        rows, offsets = _inputs.images(descriptors, offsets, self._native.dim)
        return self._native.verify(rows, vlad, offsets, _inputs.integers(labels))

    @property
    def n_clusters(self) -> int:
        """Number of centroids K."""
        return self._native.n_clusters

    @property
    def dim(self) -> int:
        """Descriptor width F."""
        return self._native.dim

    @property
    def norm(self) -> str:
        """The normalization steps, e.g. ``"ssr,l2"``."""
        return self._native.norm

    @property
    def backend(self) -> str:
        """The backend asked for (what ran is in ``encode_batch(...).report``)."""
        return self._native.backend

    @property
    def assignment(self) -> str:
        """``"hard"``, ``"soft"`` (weights and bias) or ``"soft-alpha"``."""
        return self._native.assignment

    @property
    def centroids(self) -> np.ndarray:
        """A float32 copy of the ``(K, F)`` centroids."""
        return self._native.centroids

    def __repr__(self) -> str:
        return (
            f"vlad.Encoder(<{self.n_clusters}×{self.dim} centroids>, "
            f"norm={self.norm!r}, backend={self.backend!r}, assignment={self.assignment!r})"
        )
