//! Whitening and compact encodings (SPEC §14): the step after VLAD that
//! every retrieval pipeline takes before it indexes — PCA to `D′`
//! dimensions, optionally whitened, then a post normalization.
//!
//! * [`WhiteningParams`] says what to learn (`D′`, the power `p`, `ε`, the
//!   sample cap and its seed, the post normalization);
//! * [`WhiteningParams::fit`] learns it from `(n, D)` encodings in memory,
//!   [`WhiteningParams::accumulator`] from rows fed batch by batch (the
//!   stream), with the same bits;
//! * [`Whitening`] is the learned step, applied by every backend after the
//!   normalization: `y = diag((λ_i + ε)^p) · Uᵀ (x − μ)`, then `post`.

mod accumulate;
mod fit;
mod sample;

use ndarray::{Array1, Array2, ArrayView1, ArrayView2};

pub use accumulate::WhiteningAccumulator;

use crate::error::{Result, VladError};
use crate::model::normalization::{Normalization, Step};

/// What to learn: `D′` components, the eigenvalue power `p` (`−0.5`
/// whitens, `0` is plain PCA), `ε` (default `1e-6 · λ_0`), the sample cap
/// (default `1000 · D′` rows) drawn with `seed`, and the normalization
/// applied to each projected row (default `l2`).
///
/// ```
/// use ndarray::Array2;
/// use vlad::WhiteningParams;
///
/// // 40 points on a tilted line in 3-D, plus a little noise in z.
/// let x = Array2::from_shape_fn((40, 3), |(i, j)| {
///     let t = i as f32 / 10.0;
///     [t, 2.0 * t, ((i * 7) % 5) as f32 * 0.01][j]
/// });
/// let w = WhiteningParams::new(1).power(0.0).post("none".parse()?).fit(x.view())?;
/// assert_eq!((w.dims_in(), w.dims_out()), (3, 1));
/// let u = w.components().row(0).to_vec(); // the line's direction, ±
/// assert!((u[1] - 2.0 * u[0]).abs() < 1e-3 && u[1] > 0.0);
/// # Ok::<(), vlad::VladError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct WhiteningParams {
    n_components: usize,
    power: f64,
    eps: Option<f64>,
    max_points: Option<usize>,
    seed: u64,
    post: Normalization,
}

impl WhiteningParams {
    /// Learn `n_components` (`D′`) components with the defaults: `p = −0.5`,
    /// `ε = 1e-6 · λ_0`, at most `1000 · D′` rows drawn with seed 1234,
    /// post normalization `l2`.
    pub fn new(n_components: usize) -> Self {
        WhiteningParams {
            n_components,
            power: -0.5,
            eps: None,
            max_points: None,
            seed: 1234,
            post: Normalization::new(vec![Step::L2])
                .unwrap_or_else(|_| unreachable!("l2 alone is a valid list")),
        }
    }

    /// The eigenvalue power `p`: `−0.5` whitens, `0` is plain PCA.
    pub fn power(mut self, power: f64) -> Self {
        self.power = power;
        self
    }

    /// `ε`, added to every eigenvalue before the power (`None`: `1e-6 · λ_0`).
    pub fn eps(mut self, eps: Option<f64>) -> Self {
        self.eps = eps;
        self
    }

    /// Learn from at most this many rows, drawn with the seed (`None`:
    /// `1000 · D′`).
    pub fn max_points(mut self, max_points: Option<usize>) -> Self {
        self.max_points = max_points;
        self
    }

    /// The seed of the sample draw.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// The normalization of each projected row: `none`, `l2`, or a signed
    /// power then `l2` (the steps that act on a whole vector).
    pub fn post(mut self, post: Normalization) -> Self {
        self.post = post;
        self
    }

    /// `D′`.
    pub fn n_components(&self) -> usize {
        self.n_components
    }

    /// The sample cap in effect: `max_points`, or `1000 · D′`.
    pub fn sample_cap(&self) -> usize {
        self.max_points
            .filter(|&m| m > 0)
            .unwrap_or_else(|| self.n_components.saturating_mul(1000))
    }

    /// Learn from `(n, D)` encodings in memory.
    pub fn fit(&self, encodings: ArrayView2<'_, f32>) -> Result<Whitening> {
        let (rows, dim) = encodings.dim();
        let mut acc = self.accumulator(rows, dim)?;
        acc.add(0, encodings)?;
        acc.finish()
    }

    /// Learn from `rows` rows of width `dim` fed in order, batch by batch
    /// ([`WhiteningAccumulator::add`]); the result has the bits of
    /// [`WhiteningParams::fit`] on the same rows.
    pub fn accumulator(&self, rows: usize, dim: usize) -> Result<WhiteningAccumulator> {
        self.check(rows, dim)?;
        WhiteningAccumulator::new(self.clone(), rows, dim)
    }

    /// The parameters against `rows × dim` inputs (SPEC §6).
    fn check(&self, rows: usize, dim: usize) -> Result<()> {
        check_values(self.power, self.eps, &self.post)?;
        if self.n_components == 0 {
            return Err(VladError::InvalidArgument(
                "whitening needs at least one component (D′ = 0)".to_string(),
            ));
        }
        if dim == 0 {
            return Err(VladError::Empty(
                "the encodings have D = 0 dimensions".to_string(),
            ));
        }
        let used = rows.min(self.sample_cap());
        if used < 2 {
            return Err(VladError::InvalidArgument(format!(
                "whitening is learned from the covariance of at least 2 encodings; got {rows}{}",
                if used < rows {
                    format!(" (sample cap {used})")
                } else {
                    String::new()
                }
            )));
        }
        let most = used.min(dim);
        if self.n_components > most {
            return Err(VladError::InvalidArgument(format!(
                "D′ = {} components asked for, but {used} encodings of D = {dim} have at most \
                 min(n, D) = {most}: ask for at most {most}, or learn from more encodings",
                self.n_components
            )));
        }
        Ok(())
    }
}

/// The power, `ε` and post normalization make sense (SPEC §6).
fn check_values(power: f64, eps: Option<f64>, post: &Normalization) -> Result<()> {
    if !power.is_finite() {
        return Err(VladError::InvalidArgument(format!(
            "whitening power must be finite (−0.5 whitens, 0 is PCA), got {power}"
        )));
    }
    if let Some(eps) = eps
        && !(eps.is_finite() && eps >= 0.0)
    {
        return Err(VladError::InvalidArgument(format!(
            "whitening eps must be a finite number ≥ 0, got {eps}"
        )));
    }
    if let Some(step) = post
        .steps()
        .iter()
        .find(|s| !matches!(s, Step::Power(_) | Step::L2))
    {
        return Err(VladError::InvalidArgument(format!(
            "whitening post normalization {post}: step {} acts on VLAD blocks, not on a \
             projected row; use none, l2, or ssr,l2",
            Normalization::new(vec![*step]).map_or_else(|_| "?".to_string(), |n| n.to_string())
        )));
    }
    Ok(())
}

/// A learned whitening: the mean `μ` (`D`), the top `D′` eigenpairs of the
/// covariance (`λ` in f64, unit eigenvectors `U` as rows `(D′, D)` in f32,
/// each with its largest-magnitude component positive), the power, `ε`
/// and the post normalization; and the projection `diag((λ + ε)^p) · Uᵀ`
/// every backend applies (rounded to f32 once, here).
#[derive(Clone, Debug, PartialEq)]
pub struct Whitening {
    mean: Array1<f32>,
    components: Array2<f32>,
    eigenvalues: Array1<f64>,
    power: f64,
    eps: f64,
    post: Normalization,
    projection: Array2<f32>,
    scales: Array1<f64>,
    /// `Pᵀ` (`D × W`, `W` = `D′` rounded up to [`TRANSPOSED_ALIGN`], the
    /// padding zeros): the layout the CPU kernel and the GPU shader read,
    /// the outputs of one input column contiguous. Made once, here.
    transposed: Vec<f32>,
}

/// The padded width of [`Whitening::transposed`] is a multiple of this.
pub(crate) const TRANSPOSED_ALIGN: usize = 64;

impl Whitening {
    /// A whitening from its parts (a model file, another library's PCA):
    /// `mean (D,)`, `components (D′, D)` with unit rows, `eigenvalues
    /// (D′,)` ≥ 0 and non-increasing, the power, `ε` and the post
    /// normalization. Checked (SPEC §6).
    pub fn from_parts(
        mean: ArrayView1<'_, f32>,
        components: ArrayView2<'_, f32>,
        eigenvalues: ArrayView1<'_, f64>,
        power: f64,
        eps: f64,
        post: Normalization,
    ) -> Result<Self> {
        check_values(power, Some(eps), &post)?;
        let (out, dim) = components.dim();
        if out == 0 || dim == 0 {
            return Err(VladError::Empty(format!(
                "whitening components are ({out}, {dim}): need at least one component of D ≥ 1"
            )));
        }
        if mean.len() != dim {
            return Err(VladError::DimensionMismatch(format!(
                "whitening mean has {} values but the components have D = {dim}",
                mean.len()
            )));
        }
        if eigenvalues.len() != out {
            return Err(VladError::DimensionMismatch(format!(
                "whitening has {} eigenvalues for D′ = {out} components",
                eigenvalues.len()
            )));
        }
        for (what, values) in [
            (
                "whitening mean",
                mean.iter().map(|v| *v as f64).collect::<Vec<_>>(),
            ),
            (
                "whitening components",
                components.iter().map(|v| *v as f64).collect(),
            ),
            ("whitening eigenvalues", eigenvalues.to_vec()),
        ] {
            if let Some((i, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                let width = if what == "whitening components" {
                    dim
                } else {
                    values.len().max(1)
                };
                return Err(VladError::NonFinite {
                    what,
                    row: i / width,
                    image: None,
                    col: i % width,
                    value,
                });
            }
        }
        if let Some((i, &l)) = eigenvalues.iter().enumerate().find(|(_, l)| **l < 0.0) {
            return Err(VladError::InvalidArgument(format!(
                "whitening eigenvalue {i} is {l}: a covariance has no negative eigenvalues"
            )));
        }
        let scales = eigenvalues.mapv(|l| scale(l, eps, power));
        if let Some((i, s)) = scales.iter().enumerate().find(|(_, s)| !s.is_finite()) {
            return Err(VladError::InvalidArgument(format!(
                "whitening component {i}: (λ + ε)^p = {s} (λ = {}, ε = {eps}, p = {power}); \
                 use ε > 0 with a negative power",
                eigenvalues[i]
            )));
        }
        let projection = Array2::from_shape_fn((out, dim), |(i, j)| {
            (scales[i] * components[[i, j]] as f64) as f32
        });
        let width = out.div_ceil(TRANSPOSED_ALIGN) * TRANSPOSED_ALIGN;
        let mut transposed = vec![0.0f32; dim * width];
        for ((i, j), v) in projection.indexed_iter() {
            transposed[j * width + i] = *v;
        }
        Ok(Whitening {
            transposed,
            mean: mean.to_owned(),
            components: components.as_standard_layout().into_owned(),
            eigenvalues: eigenvalues.to_owned(),
            power,
            eps,
            post,
            projection,
            scales,
        })
    }

    /// `D`, the width of the encodings it takes.
    pub fn dims_in(&self) -> usize {
        self.mean.len()
    }

    /// `D′`, the width of what it gives.
    pub fn dims_out(&self) -> usize {
        self.components.nrows()
    }

    /// `μ`, `(D,)`.
    pub fn mean(&self) -> &Array1<f32> {
        &self.mean
    }

    /// The unit eigenvectors as rows, `(D′, D)`, largest eigenvalue first.
    pub fn components(&self) -> &Array2<f32> {
        &self.components
    }

    /// `λ`, `(D′,)`, non-increasing: the variance along each component.
    pub fn eigenvalues(&self) -> &Array1<f64> {
        &self.eigenvalues
    }

    /// The power `p`.
    pub fn power(&self) -> f64 {
        self.power
    }

    /// `ε`.
    pub fn eps(&self) -> f64 {
        self.eps
    }

    /// The normalization of each projected row.
    pub fn post(&self) -> &Normalization {
        &self.post
    }

    /// `diag((λ + ε)^p) · Uᵀ` as `(D′, D)` f32 rows: what the backends
    /// multiply by.
    pub fn projection(&self) -> &Array2<f32> {
        &self.projection
    }

    /// `(λ_i + ε)^p` in f64 (the reference applies these to `U` itself).
    pub fn scales(&self) -> &Array1<f64> {
        &self.scales
    }

    /// `Pᵀ`, `D × W` row-major, and its padded width `W ≥ D′`.
    pub(crate) fn transposed(&self) -> (&[f32], usize) {
        (&self.transposed, self.transposed.len() / self.dims_in())
    }

    /// The post normalization of one projected row, as the fast backends
    /// apply it: signed powers, then L2 (the norm summed in f64; a zero
    /// row stays zero).
    pub(crate) fn post_normalize_row(&self, row: &mut [f32]) {
        for step in self.post.steps() {
            match *step {
                Step::Power(alpha) => {
                    for v in row.iter_mut() {
                        *v = v.signum() * v.abs().powf(alpha);
                    }
                }
                Step::L2 => {
                    let norm = row
                        .iter()
                        .map(|&v| (v as f64) * (v as f64))
                        .sum::<f64>()
                        .sqrt();
                    if norm > 0.0 {
                        let inv = (1.0 / norm) as f32;
                        for v in row.iter_mut() {
                            *v *= inv;
                        }
                    }
                }
                // `check_values` admits only powers and l2 here.
                _ => {}
            }
        }
    }

    /// Whiten `(n, D)` encodings on the CPU backend: `(n, D′)` rows, each
    /// with the bits an encoder with this whitening gives on the CPU.
    pub fn transform(&self, encodings: ArrayView2<'_, f32>) -> Result<Array2<f32>> {
        use crate::backend::Compute;
        let (n, dim) = encodings.dim();
        self.check_dims_in(dim)?;
        check_finite(encodings, 0)?;
        let rows = encodings.as_standard_layout();
        let flat = rows
            .as_slice()
            .unwrap_or_else(|| unreachable!("standard layout"));
        let mut out = Array2::<f32>::zeros((n, self.dims_out()));
        let dst = out
            .as_slice_mut()
            .unwrap_or_else(|| unreachable!("a fresh array"));
        crate::backend::cpu::CpuBackend.whiten(self, flat, dst)?;
        Ok(out)
    }

    /// Write this whitening alone to a model file (SPEC §15), atomically.
    pub fn save(&self, path: impl AsRef<std::path::Path>) -> Result<()> {
        crate::io::model_file::write(
            path.as_ref(),
            &crate::io::model_file::ModelParts {
                codebooks: Vec::new(),
                assignment: crate::model::assignment::Assignment::Hard,
                normalization: Normalization::none(),
                whitening: Some(std::sync::Arc::new(self.clone())),
            },
        )
    }

    /// The whitening of the model file at `path` (a whitening alone, or a
    /// whole model's).
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<Whitening> {
        let path = path.as_ref();
        let parts = crate::io::model_file::read(path)?;
        match parts.whitening {
            Some(w) => Ok(std::sync::Arc::unwrap_or_clone(w)),
            None => Err(VladError::Model {
                path: path.to_path_buf(),
                message: "it holds no whitening (entry \"whitening_components\" and the                           metadata's \"whitening\")"
                    .to_string(),
            }),
        }
    }

    /// Width check of an encoding against this whitening.
    pub(crate) fn check_dims_in(&self, dim: usize) -> Result<()> {
        if dim != self.dims_in() {
            return Err(VladError::DimensionMismatch(format!(
                "the whitening takes encodings of D = {} values, these have {dim} \
                 (K·F of the codebook, summed over vocabularies)",
                self.dims_in()
            )));
        }
        Ok(())
    }
}

/// Encodings `first_row ..` hold no NaN or ±Inf (SPEC §6): the first one
/// found is named by its row (counted from the input's start) and column.
pub(crate) fn check_finite(rows: ArrayView2<'_, f32>, first_row: usize) -> Result<()> {
    match rows.indexed_iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some(((row, col), &value)) => Err(VladError::NonFinite {
            what: "encodings",
            row: first_row + row,
            image: None,
            col,
            value: value as f64,
        }),
    }
}

/// `(λ + ε)^p`, where `p = 0` is exactly 1 (PCA) whatever `λ + ε`.
fn scale(lambda: f64, eps: f64, power: f64) -> f64 {
    if power == 0.0 {
        1.0
    } else {
        (lambda + eps).powf(power)
    }
}
