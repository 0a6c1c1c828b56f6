"""Type stubs of the native module ``vlad._vlad`` (Rust, PyO3).

Use the package ``vlad``: it wraps ``Encoder`` and adds ``KMeans``.
"""

from typing import Any, Callable, Dict, List, Optional, Tuple, final

import numpy as np
import numpy.typing as npt

__version__: str
__all__ = [
    "__version__",
    "InputError",
    "BackendUnavailable",
    "VerificationError",
    "Encoder",
    "Whitening",
    "Report",
    "EncodeResult",
    "Verification",
    "kmeans_fit",
    "kmeans_seed",
    "LloydWorker",
    "Lloyd",
    "adapters",
    "load_model",
    "save_encoder",
    "save_whitening",
    "_panic_for_test",
    "_last_compute_seconds",
]

class InputError(ValueError):
    """Bad input (SPEC §6): non-finite values, mismatched shapes, an
    unsupported dtype, invalid offsets or labels. The message is the command
    line's, less the file name."""

class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here: ``backend="gpu"`` without a
    GPU adapter (the command line's exit status 3)."""

class VerificationError(RuntimeError):
    """An encoding is outside SPEC §4's tolerance of the f64 reference (the
    command line's exit status 4)."""

    verification: Verification
    """The details of the failed check."""

# A native (PyO3) class: it cannot be subclassed.
@final
class Report:
    """What ran and how long it took."""

    @property
    def backend(self) -> str:
        """The backend that ran: "gpu", "cpu" or "reference" (never "auto")."""
    @property
    def adapter(self) -> Optional[str]:
        """The GPU adapter's name when the GPU ran, else None."""
    @property
    def adapter_kind(self) -> Optional[str]:
        """The GPU adapter's kind when the GPU ran ("discrete", "integrated",
        "virtual", "software" for a software rasterizer such as lavapipe,
        "other"), else None."""
    @property
    def seconds(self) -> float:
        """Compute seconds (input checks included; setup excluded)."""
    @property
    def setup_seconds(self) -> float:
        """Seconds of one-time setup in this call (opening the GPU,
        compiling its pipelines); 0 when nothing had to be set up."""
    @property
    def stages(self) -> Dict[str, float]:
        """Seconds per stage, in the order the stages ran."""
    @property
    def fallback_reason(self) -> Optional[str]:
        """Why backend="auto" fell back to the CPU, when it did."""

# A native (PyO3) class: it cannot be subclassed.
@final
class EncodeResult:
    """An encoding with the labels it was computed from and a report."""

    @property
    def vlad(self) -> npt.NDArray[np.float32]:
        """``(T, K·F)`` float32 encodings, cluster-major within each row."""
    @property
    def labels(self) -> npt.NDArray[np.int64]:
        """``(N,)`` int64 labels (given or computed)."""
    @property
    def report(self) -> Report:
        """What ran."""

# A native (PyO3) class: it cannot be subclassed.
@final
class Verification:
    """The outcome of ``Encoder.verify``: SPEC §4 against the f64 reference."""

    @property
    def passed(self) -> bool:
        """Whether SPEC §4 holds."""
    @property
    def label_agreement(self) -> float:
        """Fraction of labels equal to the exact f64 argmin (1.0 with given labels)."""
    @property
    def bad_labels(self) -> int:
        """Labels that differ from the exact argmin by more than a near-tie."""
    @property
    def max_abs_error(self) -> float:
        """Largest ``|output − reference|`` over all elements."""
    @property
    def violations(self) -> int:
        """Elements or blocks outside the tolerance that applies."""
    @property
    def rule(self) -> str:
        """Which tolerance was applied, in words."""

# A native (PyO3) class: it cannot be subclassed.
@final
class Encoder:
    """The native encoder behind ``vlad.Encoder``: numpy arrays of a native
    dtype only (float32, float64, uint8), no lists."""

    def __new__(
        cls,
        centroids: np.ndarray,
        norm: str = "ssr,l2",
        backend: str = "auto",
        assignment: str = "hard",
        weights: Optional[np.ndarray] = None,
        bias: Optional[np.ndarray] = None,
        alpha: Optional[float] = None,
        whitening: Optional[Whitening] = None,
    ) -> "Encoder":
        """``assignment="soft"`` takes ``weights`` ``(K, F)`` and ``bias``
        ``(K,)`` (float32 or float64), or ``alpha`` alone; ``"hard"`` takes
        none of them. Bad combinations raise InputError."""
    def encode(
        self,
        descriptors: np.ndarray,
        offsets: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
        out: Optional[npt.NDArray[np.float32]] = None,
        progress: Optional[Callable[[int, int], None]] = None,
    ) -> npt.NDArray[np.float32]:
        """``(T, K·F)`` float32 encodings (into ``out`` when given);
        ``progress(done, total)`` over the images when given."""
    def assign(self, descriptors: np.ndarray) -> npt.NDArray[np.int64]:
        """``(N,)`` int64 nearest-centroid labels."""
    def encode_batch(
        self,
        descriptors: np.ndarray,
        offsets: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
    ) -> EncodeResult:
        """Encodings, labels and a report."""
    def assign_batch(self, descriptors: np.ndarray) -> Tuple[npt.NDArray[np.int64], Report]:
        """Labels and a report."""
    def verify(
        self,
        descriptors: np.ndarray,
        vlad: Optional[np.ndarray] = None,
        offsets: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
    ) -> Verification:
        """SPEC §4 against the f64 reference; raises VerificationError when it fails."""
    @property
    def n_clusters(self) -> int:
        """Number of centroids K."""
    @property
    def dim(self) -> int:
        """Descriptor width F."""
    @property
    def norm(self) -> str:
        """The normalization steps, e.g. "ssr,l2"."""
    @property
    def backend(self) -> str:
        """The backend asked for."""
    @property
    def assignment(self) -> str:
        """"hard", "soft" (weights and bias) or "soft-alpha"."""
    @property
    def centroids(self) -> npt.NDArray[np.float32]:
        """A float32 copy of the ``(K, F)`` centroids."""
    @property
    def weights(self) -> Optional[npt.NDArray[np.float32]]:
        """Soft assignment's learned ``(K, F)`` weights (a float32 copy), or
        None for hard assignment and for a temperature."""
    @property
    def bias(self) -> Optional[npt.NDArray[np.float32]]:
        """Soft assignment's learned ``(K,)`` bias (a float32 copy), or None."""
    @property
    def alpha(self) -> Optional[float]:
        """Soft assignment's temperature α (as float32 holds it), or None."""
    def to_model_bytes(self) -> bytes:
        """The model-file bytes of this encoder (SPEC §15)."""
    @staticmethod
    def from_model_bytes(bytes: bytes, backend: str = "auto") -> Encoder:
        """The encoder of model-file bytes, on ``backend``."""
    @property
    def whitening(self) -> Optional[Whitening]:
        """The whitening applied after the normalization, if any."""
    @property
    def dims_out(self) -> int:
        """The width of one encoding: K·F, or the whitening's D′."""
    def _rows_address(self, descriptors: np.ndarray, offsets: Optional[np.ndarray] = None) -> int:
        """Test hook: the address of the first descriptor value the library
        reads (``descriptors.ctypes.data`` when read in place)."""

@final
class Whitening:
    """The native whitening behind ``vlad.Whitening`` (SPEC §14)."""
    @staticmethod
    def fit(
        x: npt.NDArray[np.float32],
        n_components: int,
        power: float = ...,
        eps: Optional[float] = None,
        max_points: Optional[int] = None,
        seed: int = 1234,
        post: str = "l2",
    ) -> Whitening:
        """Learn from ``(n, D)`` float32 encodings (``power`` defaults to
        -0.5)."""
    def transform(self, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """``(n, D′)`` float32: ``x`` whitened on the CPU backend."""
    def to_bytes(self) -> bytes:
        """The model-file bytes of this whitening alone."""
    @staticmethod
    def from_bytes(bytes: bytes) -> Whitening:
        """The whitening in model-file bytes."""
    @property
    def mean(self) -> npt.NDArray[np.float32]:
        """``μ``, ``(D,)`` float32."""
    @property
    def components(self) -> npt.NDArray[np.float32]:
        """Unit eigenvectors as rows, ``(D′, D)`` float32."""
    @property
    def eigenvalues(self) -> npt.NDArray[np.float64]:
        """``λ``, ``(D′,)`` float64, non-increasing."""
    @property
    def power(self) -> float:
        """The power ``p``."""
    @property
    def eps(self) -> float:
        """``ε``."""
    @property
    def post(self) -> str:
        """The post normalization, e.g. "l2"."""
    @property
    def dims_in(self) -> int:
        """``D``."""
    @property
    def dims_out(self) -> int:
        """``D′``."""

def load_model(path: str, backend: str = "auto") -> Tuple[str, Any]:
    """The model file at ``path``: ``("encoder", Encoder)`` or, for a
    whitening alone, ``("whitening", Whitening)``."""

def save_encoder(encoder: Encoder, path: str) -> None:
    """Write ``encoder``'s model to ``path``, atomically."""

def save_whitening(whitening: Whitening, path: str) -> None:
    """Write ``whitening`` alone to ``path``, atomically."""

def kmeans_fit(
    descriptors: np.ndarray,
    n_clusters: int,
    n_iter: int = 25,
    seed: int = 1234,
    init: str = "k-means++",
    max_points_per_centroid: Optional[int] = ...,  # 256 (a default PyO3 shows as ...)
    tol: float = 1e-4,
    backend: str = "auto",
    verbose: bool = False,
    progress: Optional[Callable[[str, int, int, str], object]] = None,
    init_centroids: Optional[np.ndarray] = None,
) -> Dict[str, Any]:
    """Train a codebook; the fit's outcome as a dict (cluster_centers,
    inertia, n_iter, inertia_history, backend, adapter, adapter_kind,
    fallback_reason, seconds, setup_seconds, training_points).
    ``verbose``: the command line's progress lines on the process's stderr;
    ``progress``: called instead with ``(stage, iteration, max_iterations,
    text)`` for each event (stage "started", "seeded", "iteration",
    "finished")."""

def kmeans_seed(
    sample: np.ndarray, n_clusters: int, seed: int = 1234, init: str = "k-means++"
) -> npt.NDArray[np.float32]:
    """The ``(K, F)`` centroids ``KMeans`` seeds from ``sample`` (every
    row of it: the sample is the training set)."""

# A native (PyO3) class: it cannot be subclassed.
@final
class LloydWorker:
    """One block's Lloyd step on one backend (``vlad.ray.kmeans``' map)."""
    def __new__(cls, backend: str = "auto") -> "LloydWorker": ...
    @property
    def backend(self) -> str:
        """The backend that runs: "cpu" or "gpu"."""
    def step(self, rows: np.ndarray, centroids: np.ndarray) -> Dict[str, Any]:
        """``(n, F)`` rows against ``(K, F)`` centroids: sums (K, F)
        float64, counts (K,) int64, errors (K,) float64 (each cluster's
        squared error), inertia and exact_inertia (floats)."""

# A native (PyO3) class: it cannot be subclassed.
@final
class Lloyd:
    """The driver's side of a distributed fit (``vlad.ray.kmeans``' reduce):
    ``KMeans``' mean update, empty-cluster split and stopping rule."""
    def __new__(
        cls, centroids: np.ndarray, n_iter: int = 25, seed: int = 1234, tol: float = 1e-4
    ) -> "Lloyd": ...
    @property
    def centroids(self) -> npt.NDArray[np.float32]:
        """The current ``(K, F)`` centroids."""
    @property
    def inertia_history(self) -> List[float]:
        """The inertia of each iteration so far."""
    def update(
        self,
        sums: npt.NDArray[np.float64],
        counts: npt.NDArray[np.int64],
        errors: npt.NDArray[np.float64],
        inertia: float,
    ) -> bool:
        """Apply one iteration's step, reduced in block order; whether
        another iteration should run."""

def adapters() -> Dict[str, Any]:
    """What ``vlad adapters --json`` prints: ``{"adapters": [...], "gpu":
    {...}, "auto": {...}}``. Each adapter: index, name, device_type
    ("discrete", "integrated", "virtual", "software", "other"), software (True
    for lavapipe and other CPU rasterizers, which ``auto`` never picks),
    api, driver, features (subgroups, timestamps, shader_f16,
    cooperative_matrix), max_binding_bytes. ``gpu`` and ``auto``: the
    adapter index each backend would take (or None), the backend that
    would run ("gpu", "cpu", "unavailable") and the reason."""

def _panic_for_test() -> None:
    """Test hook: panics inside a computation (raises RuntimeError)."""

def _last_compute_seconds() -> float:
    """Benchmark hook: wall seconds of this thread's last computation inside
    the library (the Python call's time less the binding's own work)."""
