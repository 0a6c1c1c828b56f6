//! How descriptors are weighed onto centroids (SPEC §1 and §10): hard
//! nearest-centroid assignment (the default), or NetVLAD's soft assignment
//! `a_k(v) = softmax_k(w_k·v + b_k)`, given either its parameters `W`, `b`
//! or a temperature `α` (`w_k = 2α·c_k`, `b_k = −α‖c_k‖²`).
//!
//! Values are validated when the choice is made (finite, `α > 0`, `b` as
//! long as `W` has rows); shapes against the codebook when it is used
//! ([`Assignment::soft_params`]).

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

use crate::error::{Result, VladError};
use crate::model::codebook::Codebook;

/// Hard or soft assignment.
///
/// ```
/// use ndarray::array;
/// use vlad::{Assignment, Codebook};
///
/// let codebook = Codebook::new(array![[0.0f32, 0.0], [1.0, 2.0]].view())?;
/// let soft = Assignment::soft_alpha(10.0)?;
/// let params = soft.soft_params(&codebook)?.expect("soft");
/// assert_eq!(params.weights().row(1).to_vec(), vec![20.0, 40.0]); // 2α·c
/// assert_eq!(params.bias()[1], -50.0); // −α‖c‖²
/// assert!(Assignment::soft_alpha(0.0).is_err());
/// # Ok::<(), vlad::VladError>(())
/// ```
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Assignment {
    /// Each descriptor to its nearest centroid (SPEC §1).
    #[default]
    Hard,
    /// NetVLAD with learned parameters: `W (K, F)`, `b (K,)`.
    Soft {
        /// `(K, F)`, row `k` is `w_k`.
        weights: Array2<f32>,
        /// `(K,)`.
        bias: Array1<f32>,
    },
    /// NetVLAD's initialisation from a temperature alone:
    /// `a_k(v) = softmax_k(−α‖v − c_k‖²)`.
    SoftAlpha(f32),
}

/// The resolved soft parameters, `W (K, F)` row-major and `b (K,)`, checked
/// against a codebook.
#[derive(Clone, Debug, PartialEq)]
pub struct SoftParams {
    weights: Array2<f32>,
    bias: Array1<f32>,
}

impl SoftParams {
    /// `(K, F)`, standard layout.
    pub fn weights(&self) -> &Array2<f32> {
        &self.weights
    }

    /// `(K,)`.
    pub fn bias(&self) -> &Array1<f32> {
        &self.bias
    }

    /// `W` as a row-major `K·F` slice.
    pub fn weights_slice(&self) -> &[f32] {
        self.weights
            .as_slice()
            .unwrap_or_else(|| unreachable!("built in standard layout"))
    }

    /// `b` as a slice.
    pub fn bias_slice(&self) -> &[f32] {
        self.bias
            .as_slice()
            .unwrap_or_else(|| unreachable!("built in standard layout"))
    }
}

impl Assignment {
    /// Soft assignment with learned `W (K, F)` and `b (K,)`; every value
    /// must be finite and `b` must have one entry per row of `W`.
    pub fn soft(weights: ArrayView2<'_, f32>, bias: ArrayView1<'_, f32>) -> Result<Self> {
        let (k, f) = weights.dim();
        if k == 0 || f == 0 {
            return Err(VladError::Empty(format!(
                "soft-assignment weights have shape ({k}, {f})"
            )));
        }
        if bias.len() != k {
            return Err(VladError::DimensionMismatch(format!(
                "soft-assignment bias has {} entries, the weights have K = {k} rows",
                bias.len()
            )));
        }
        for ((row, col), &value) in weights.indexed_iter() {
            if !value.is_finite() {
                return Err(VladError::NonFinite {
                    what: "soft-assignment weights",
                    row,
                    image: None,
                    col,
                    value: value as f64,
                });
            }
        }
        if let Some((row, &value)) = bias.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(VladError::NonFinite {
                what: "soft-assignment bias",
                row,
                image: None,
                col: 0,
                value: value as f64,
            });
        }
        Ok(Assignment::Soft {
            weights: weights.as_standard_layout().into_owned(),
            bias: bias.to_owned(),
        })
    }

    /// Soft assignment from a temperature `α > 0` (finite).
    pub fn soft_alpha(alpha: f32) -> Result<Self> {
        if !(alpha.is_finite() && alpha > 0.0) {
            return Err(VladError::InvalidArgument(format!(
                "soft-assignment α must be a finite number > 0, got {alpha}"
            )));
        }
        Ok(Assignment::SoftAlpha(alpha))
    }

    /// Whether this is hard assignment.
    pub fn is_hard(&self) -> bool {
        matches!(self, Assignment::Hard)
    }

    /// The name the command line reports: `hard`, `soft` or `soft-alpha`.
    pub fn name(&self) -> &'static str {
        match self {
            Assignment::Hard => "hard",
            Assignment::Soft { .. } => "soft",
            Assignment::SoftAlpha(_) => "soft-alpha",
        }
    }

    /// `W` and `b` for `codebook` (`None` for hard assignment): learned
    /// weights are checked to be `(K, F)` of the codebook; a temperature
    /// gives `w_k = 2α·c_k`, `b_k = −α‖c_k‖²` (computed in f64, rounded once).
    pub fn soft_params(&self, codebook: &Codebook) -> Result<Option<SoftParams>> {
        let (k, f) = (codebook.clusters(), codebook.dim());
        match self {
            Assignment::Hard => Ok(None),
            Assignment::Soft { weights, bias } => {
                if weights.dim() != (k, f) {
                    return Err(VladError::DimensionMismatch(format!(
                        "soft-assignment weights are {:?}, the codebook is (K, F) = ({k}, {f})",
                        weights.dim()
                    )));
                }
                if bias.len() != k {
                    return Err(VladError::DimensionMismatch(format!(
                        "soft-assignment bias has {} entries, the codebook has K = {k}",
                        bias.len()
                    )));
                }
                Ok(Some(SoftParams {
                    weights: weights.clone(),
                    bias: bias.clone(),
                }))
            }
            &Assignment::SoftAlpha(alpha) => {
                let alpha = alpha as f64;
                let centroids = codebook.centroids();
                let weights = centroids.mapv(|c| (2.0 * alpha * c as f64) as f32);
                let bias = centroids
                    .outer_iter()
                    .map(|c| {
                        let norm2: f64 = c.iter().map(|&x| (x as f64) * (x as f64)).sum();
                        (-alpha * norm2) as f32
                    })
                    .collect();
                let params = SoftParams { weights, bias };
                let non_finite = params
                    .weights_slice()
                    .iter()
                    .chain(params.bias_slice())
                    .any(|v| !v.is_finite());
                if non_finite {
                    return Err(VladError::InvalidArgument(format!(
                        "soft-assignment α = {alpha} overflows f32 with these centroids"
                    )));
                }
                Ok(Some(params))
            }
        }
    }
}
