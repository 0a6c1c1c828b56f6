//! `vlad encode`'s soft-assignment options (SPEC §10): `--soft-weights
//! W.npy --soft-bias b.npy` (a trained NetVLAD layer's parameters) or
//! `--soft-alpha α`, and how they become an [`Assignment`].

use std::fs::File;
use std::path::{Path, PathBuf};

use clap::Args;
use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};
use ndarray_npy::{ReadNpyExt, ReadableElement};
use vlad::io::{self, NpyDtype};
use vlad::{Assignment, Codebook, VladError};

use super::failure::{Failure, in_file};

/// Soft (NetVLAD) assignment instead of the nearest centroid.
#[derive(Debug, Args)]
pub struct SoftArgs {
    /// Soft-assignment weights W (K, F), float32 or float64: a NetVLAD
    /// layer's 1×1 convolution weight (K, F, 1, 1) reshaped. Needs
    /// --soft-bias.
    #[arg(long, value_name = "W.npy", requires = "soft_bias", conflicts_with_all = ["soft_alpha", "labels"])]
    pub soft_weights: Option<PathBuf>,
    /// Soft-assignment bias b (K,), float32 or float64: the convolution's
    /// bias. Needs --soft-weights.
    #[arg(long, value_name = "b.npy", requires = "soft_weights")]
    pub soft_bias: Option<PathBuf>,
    /// Soft assignment from a temperature α > 0 alone:
    /// softmax_k(−α‖v − c_k‖²), NetVLAD's initialisation.
    #[arg(long, value_name = "α", value_parser = parse_alpha, conflicts_with = "labels", allow_negative_numbers = true)]
    pub soft_alpha: Option<f32>,
}

fn parse_alpha(s: &str) -> Result<f32, String> {
    let alpha: f32 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number"))?;
    Assignment::soft_alpha(alpha)
        .map(|_| alpha)
        .map_err(|e| e.to_string())
}

impl SoftArgs {
    /// The assignment these options ask for, its parameters read and
    /// checked against `codebook` (`W` must be `(K, F)`, `b` `(K,)`).
    pub fn assignment(&self, codebook: &Codebook) -> Result<Assignment, Failure> {
        let assignment = match (&self.soft_weights, &self.soft_bias, self.soft_alpha) {
            (Some(w), Some(b), _) => {
                let weights: Array2<f32> = read_floats::<Ix2>(w, "soft-assignment weights (K, F)")?;
                let bias: Array1<f32> = read_floats::<Ix1>(b, "soft-assignment bias (K,)")?;
                let (k, f) = (codebook.clusters(), codebook.dim());
                if weights.dim() != (k, f) {
                    return Err(in_file(w)(VladError::DimensionMismatch(format!(
                        "soft-assignment weights are {:?}, the centroids are (K, F) = ({k}, {f})",
                        weights.dim()
                    ))));
                }
                if bias.len() != k {
                    return Err(in_file(b)(VladError::DimensionMismatch(format!(
                        "soft-assignment bias has shape ({},), the centroids have K = {k}",
                        bias.len()
                    ))));
                }
                Assignment::soft(weights.view(), bias.view()).map_err(in_file(w))?
            }
            (None, None, Some(alpha)) => Assignment::soft_alpha(alpha)?,
            (None, None, None) => Assignment::Hard,
            // clap's `requires` rules these out; say so rather than panic.
            _ => {
                return Err(VladError::InvalidArgument(
                    "--soft-weights and --soft-bias go together".to_string(),
                )
                .into());
            }
        };
        // Values (W finite, α·C within f32) are checked here, once.
        assignment.soft_params(codebook)?;
        Ok(assignment)
    }
}

/// A float32 or float64 `.npy` of dimension `D`, as f32 (f64 values that
/// overflow f32 are refused as non-finite by [`Assignment::soft`]).
fn read_floats<D: ndarray::Dimension>(
    path: &Path,
    what: &str,
) -> Result<ndarray::Array<f32, D>, Failure> {
    let info = io::inspect(path)?;
    let wrong_shape = || {
        VladError::Unsupported {
            path: path.to_path_buf(),
            message: format!("{what}: got shape {}", info.shape_string()),
        }
        .into()
    };
    if Some(info.shape.len()) != D::NDIM {
        return Err(wrong_shape());
    }
    let array: ArrayD<f32> = match info.dtype {
        Some(NpyDtype::F32) => read::<f32>(path)?,
        Some(NpyDtype::F64) => read::<f64>(path)?.mapv(|v| v as f32),
        _ => {
            return Err(VladError::Unsupported {
                path: path.to_path_buf(),
                message: format!("{what}: dtype {} (expected float32 or float64)", info.descr),
            }
            .into());
        }
    };
    array.into_dimensionality::<D>().map_err(|_| wrong_shape())
}

fn read<T: ReadableElement>(path: &Path) -> Result<ArrayD<T>, Failure> {
    let file = File::open(path).map_err(|source| VladError::Io {
        action: "cannot open",
        path: path.to_path_buf(),
        source: source.into(),
    })?;
    ArrayD::<T>::read_npy(file).map_err(|e| {
        VladError::Npy {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
        .into()
    })
}
