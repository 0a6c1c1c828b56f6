"""``vlad.Encoder``: VLAD encodings of numpy arrays against one codebook."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

import os

from . import _inputs, _pickle, _progress, _vlad

from .whitening import Whitening


def _native_whitening(whitening: Any) -> Optional[_vlad.Whitening]:
    if whitening is None:
        return None
    if isinstance(whitening, Whitening):
        return whitening._fitted()
    if isinstance(whitening, _vlad.Whitening):
        return whitening
    raise _vlad.InputError(
        f"whitening must be a fitted vlad.Whitening, got {type(whitening).__name__}"
    )


def load(path: "str | os.PathLike[str]", backend: str = "auto") -> "Encoder | Whitening":
    """Read a model file (SPEC §15): an :class:`Encoder`, or a
    :class:`Whitening` when the file holds a whitening alone
    (``vlad pca --out``, ``Whitening.save``)."""
    kind, native = _vlad.load_model(os.fspath(path), backend)
    if kind == "whitening":
        return Whitening._from_native(native)
    return Encoder._from_native(native)


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
    whitening : vlad.Whitening, optional
        A fitted whitening (SPEC §14) applied after the normalization: the
        encoder then gives ``(T, D′)`` rows (``dims_out``) instead of
        ``(T, K·F)``; on the GPU only those are read back.

    An encoder is saved with :meth:`save` and read back with
    :func:`vlad.load` (one ``.npz`` model file, SPEC §15), and it pickles
    through the same bytes, so it crosses processes unchanged.

    Descriptors are ``(T, L, F)`` fixed-size images, ``(N, F)`` rows split
    by CSR ``offsets`` (one image without them), or a list of per-image
    ``(n_t, F)`` arrays; float32, float64 or uint8 (float16 is widened to
    float32), any memory order. A C-contiguous array of one of those dtypes
    is read in place. Every array argument may also be a CPU tensor with
    ``__dlpack__`` (PyTorch, JAX, CuPy), read in place the same way; a
    tensor on a device is an :class:`vlad.InputError`. Every call releases
    the GIL while it computes, and one encoder may be shared by many
    threads. An encoder pickles (as its configuration) and unpickles, in
    this process or another, to one that gives the same bits.
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
        whitening: Any = None,
    ) -> None:
        self._native = _vlad.Encoder(
            _inputs.array(centroids, "centroids"),
            norm,
            backend,
            assignment,
            _inputs.integers(weights, "weights"),
            _inputs.integers(bias, "bias"),
            None if alpha is None else float(alpha),
            _native_whitening(whitening),
        )

    @classmethod
    def _from_native(cls, native: _vlad.Encoder) -> "Encoder":
        encoder = cls.__new__(cls)
        encoder._native = native
        return encoder

    def save(self, path: "str | os.PathLike[str]") -> None:
        """Write this encoder's model (codebook, assignment, normalization,
        whitening) to one ``.npz`` file, atomically (SPEC §15)."""
        _vlad.save_encoder(self._native, os.fspath(path))

    def encode(
        self,
        descriptors: Any,
        offsets: Any = None,
        labels: Any = None,
        *,
        out: Optional[np.ndarray] = None,
        verbose: Any = 0,
    ) -> np.ndarray:
        """``(T, K·F)`` float32 encodings, cluster-major within each row
        (``(T, D′)`` with a whitening).

        ``offsets``: CSR offsets ``(T+1,)`` of any integer dtype for
        ``(N, F)`` rows. ``labels``: ``(N,)`` labels in ``[0, K)`` to use
        instead of the nearest-centroid assignment. An image with no
        descriptors encodes to a zero row. ``out``: a C-contiguous,
        writeable float32 ``(T, K·F)`` array to write the encodings into
        (every element is written) and return, so that a loop reuses one
        buffer; any other array raises InputError. ``verbose``: progress
        over the images on stderr, as scikit-learn's (1: a tqdm bar when
        tqdm is installed, else lines; 2: lines); the encode then runs in
        groups of whole images cut only where the backend's bits allow, so
        the result is the same to the bit.
        """
        rows, offsets = _inputs.images(descriptors, offsets, self._native.dim)
        if isinstance(out, np.ndarray) and isinstance(rows, np.ndarray) and np.may_share_memory(out, rows):
            raise _vlad.InputError("out must not share memory with the descriptors")
        progress = _progress.encode_progress(verbose)
        try:
            return self._native.encode(
                rows, offsets, _inputs.integers(labels, "labels"), out, progress
            )
        finally:
            if progress is not None:
                progress.close()

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
        return self._native.encode_batch(rows, offsets, _inputs.integers(labels, "labels"))

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
        return self._native.verify(
            rows, _inputs.integers(vlad, "vlad"), offsets, _inputs.integers(labels, "labels")
        )

    @property
    def dims_out(self) -> int:
        """The width of one encoding: ``K·F``, or the whitening's ``D′``."""
        return self._native.dims_out

    @property
    def whitening(self) -> Optional[Whitening]:
        """The whitening applied after the normalization, if any."""
        native = self._native.whitening
        return None if native is None else Whitening._from_native(native)

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

    def __reduce__(
        self,
    ) -> Tuple[Callable[[Dict[str, Any]], "Encoder"], Tuple[Dict[str, Any]]]:
        # Pickled as its configuration (the one place: vlad/_pickle.py).
        return (_pickle.rebuild, (_pickle.state(self),))

    def __repr__(self) -> str:
        return (
            f"vlad.Encoder(<{self.n_clusters}×{self.dim} centroids>, "
            f"norm={self.norm!r}, backend={self.backend!r}, assignment={self.assignment!r})"
        )
