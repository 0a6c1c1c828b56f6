//! One error type for everything SPEC §6 calls bad input, plus the few
//! failures that are not the user's fault. The error is `Clone` (an I/O
//! error is shared behind an [`Arc`]), so a failure to open the GPU can be
//! kept and reported again on every later call. Exit statuses are the
//! command line's business (`src/cli/exit.rs`), not the error type's.

use std::path::PathBuf;
use std::sync::Arc;

/// Everything the library can refuse or fail at. New variants may be added:
/// match with a wildcard arm.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VladError {
    /// NaN or ±Inf in an input array. `row` is the first offending row;
    /// for descriptors `image` names the image that row belongs to.
    #[error("{what}: non-finite value {value} at row {row}{}, column {col}", image.map(|t| format!(" (image {t})")).unwrap_or_default())]
    NonFinite {
        what: &'static str,
        row: usize,
        image: Option<usize>,
        col: usize,
        value: f64,
    },
    /// Shapes that do not fit together (descriptor width vs centroid width…).
    #[error("dimension mismatch: {0}")]
    DimensionMismatch(String),
    /// `K = 0` or `F = 0`, or another empty thing that cannot be used.
    #[error("empty input: {0}")]
    Empty(String),
    /// Offsets that are not valid CSR.
    #[error("invalid offsets: {0}")]
    InvalidOffsets(String),
    /// A given label outside `[0, K)`.
    #[error("label out of range at index {index}: {label} is not in [0, {clusters})")]
    LabelOutOfRange {
        index: usize,
        label: i128,
        clusters: usize,
    },
    /// A parameter that makes no sense (`--norm power=x`, `k = 0`…).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A shape or dtype the operation does not take.
    #[error("unsupported input {path}: {message}", path = path.display())]
    Unsupported { path: PathBuf, message: String },
    /// A `.npy` file that is truncated or malformed.
    #[error("cannot read {path} as .npy: {message}", path = path.display())]
    Npy { path: PathBuf, message: String },
    /// An unreadable input or unwritable output path. The `io::Error` is
    /// shared so that the error stays `Clone`; it is also the
    /// [`source`](std::error::Error::source) (as `Arc<io::Error>`).
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    /// An output or working buffer that cannot be allocated: `bytes` were
    /// needed (`None` when the size overflows 64 bits); `hint` says what to
    /// change.
    #[error("{what} needs {} of memory, which cannot be allocated: {hint}", bytes.map(format_bytes).unwrap_or_else(|| "more than 2^64 bytes".to_string()))]
    TooLarge {
        what: String,
        bytes: Option<u64>,
        hint: String,
    },
    /// An output written to disk batch by batch (the streamed path) that
    /// the free space of its folder cannot hold: checked before any work.
    #[error("{}: the output needs {}, but only {} are free there: {hint}", folder.display(), format_bytes(*bytes), format_bytes(*free))]
    NoSpace {
        folder: PathBuf,
        bytes: u64,
        free: u64,
        hint: String,
    },
    /// A model file (SPEC §15) that cannot be used: an entry missing or
    /// malformed (named in `message`), or a newer format version.
    #[error("model file {path}: {message}", path = path.display())]
    Model { path: PathBuf, message: String },
    /// The requested backend cannot run here (no GPU adapter, feature off).
    #[error("backend unavailable: {0}")]
    BackendUnavailable(String),
    /// A GPU failure during work (device lost, out of memory, validation).
    #[error("GPU error: {0}")]
    Gpu(String),
    /// `--verify` found a result outside SPEC §4.
    #[error("verification failed: {0}")]
    VerificationFailed(String),
}

impl VladError {
    /// For rows that are `(T, L, F)` images flattened, name the image a
    /// non-finite row belongs to (`per_image` = `L`), as the in-memory
    /// batch does; any other error is returned as it is.
    pub fn with_image(self, per_image: Option<usize>) -> Self {
        match (self, per_image) {
            (
                VladError::NonFinite {
                    what,
                    row,
                    image: None,
                    col,
                    value,
                },
                Some(l),
            ) if l > 0 => VladError::NonFinite {
                what,
                row,
                image: Some(row / l),
                col,
                value,
            },
            (error, _) => error,
        }
    }
}

/// `5.12 GB (5120000000 bytes)`.
fn format_bytes(bytes: u64) -> String {
    let b = bytes as f64;
    let (value, unit) = if b >= 1e12 {
        (b / 1e12, "TB")
    } else if b >= 1e9 {
        (b / 1e9, "GB")
    } else if b >= 1e6 {
        (b / 1e6, "MB")
    } else {
        (b / 1e3, "kB")
    };
    format!("{value:.2} {unit} ({bytes} bytes)")
}

/// Shorthand used across the crate.
pub type Result<T, E = VladError> = std::result::Result<T, E>;
