//! One error type for everything SPEC §6 calls bad input, plus the few
//! failures that are not the user's fault. The command line maps each
//! variant to an exit status with [`VladError::exit_code`].

use std::path::PathBuf;

/// Everything the library can refuse or fail at.
#[derive(Debug, thiserror::Error)]
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
    /// An unreadable input or unwritable output path.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
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
    /// The command line's exit status for this error (SPEC §8):
    /// 1 internal failure, 2 bad input or usage, 3 backend unavailable,
    /// 4 verification failed.
    pub fn exit_code(&self) -> i32 {
        match self {
            VladError::BackendUnavailable(_) => 3,
            VladError::VerificationFailed(_) => 4,
            VladError::Gpu(_) => 1,
            _ => 2,
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = VladError> = std::result::Result<T, E>;
