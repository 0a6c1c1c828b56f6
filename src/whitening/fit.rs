//! From the accumulated rows or sums to the whitening: the f64 covariance
//! (or Gram) matrix, its eigendecomposition by faer (a well-kept
//! linear-algebra crate: no hand-written eigensolver), the top `D′`
//! eigenpairs with a fixed sign, and `ε`.

use faer::{Mat, Side};
use ndarray::{Array1, Array2};

use super::WhiteningParams;
use super::accumulate::{add_gram_of_columns, gram_of_rows, mirror_upper};
use crate::error::{Result, VladError};
use crate::whitening::Whitening;

/// The covariance form's running f64 sums: `n`, `Σx` (`D`) and the upper
/// block triangle of `Σxxᵀ` (`D × D`).
#[derive(Debug)]
pub(crate) struct Moments {
    dim: usize,
    n: usize,
    sum: Vec<f64>,
    squares: Vec<f64>,
}

impl Moments {
    pub(crate) fn new(dim: usize) -> Self {
        Moments {
            dim,
            n: 0,
            sum: vec![0.0; dim],
            squares: Vec::new(),
        }
    }

    /// Add `b` rows (`b × D` f32, row-major).
    pub(crate) fn add_block(&mut self, rows: &[f32], b: usize) {
        let dim = self.dim;
        if self.squares.is_empty() {
            self.squares = vec![0.0; dim * dim];
        }
        let block: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
        for row in block.chunks_exact(dim) {
            for (s, v) in self.sum.iter_mut().zip(row) {
                *s += v;
            }
        }
        add_gram_of_columns(&mut self.squares, &block, b, dim);
        self.n += b;
    }
}

/// What the eigendecomposition is taken of.
pub(crate) enum Problem {
    /// `n ≥ D`: the `D × D` covariance from the sums.
    Covariance(Moments),
    /// `n < D`: the `n` used rows (`n × D` f32); their `n × n` Gram matrix.
    Gram {
        rows: Vec<f32>,
        n: usize,
        dim: usize,
    },
}

/// `D × D` f64 values: refuse up front, with what to do, when they cannot
/// be allocated (the Gram form needs only `n × n`).
pub(crate) fn check_covariance_fits(dim: usize) -> Result<()> {
    let len = dim.checked_mul(dim);
    let mut probe: Vec<f64> = Vec::new();
    if len.is_none_or(|l| probe.try_reserve_exact(l).is_err()) {
        return Err(VladError::TooLarge {
            what: format!("the {dim} × {dim} float64 covariance of the encodings"),
            bytes: len.and_then(|l| (l as u64).checked_mul(8)),
            hint: format!(
                "learn from fewer than D = {dim} encodings (max_points / --max-points), which \
                 takes the n × n Gram form instead"
            ),
        });
    }
    Ok(())
}

/// The whitening of `problem` under `params`.
pub(crate) fn solve(params: &WhiteningParams, problem: Problem) -> Result<Whitening> {
    let want = params.n_components;
    let (mean, lambdas, vectors) = match problem {
        Problem::Covariance(moments) => covariance_eigen(moments, want)?,
        Problem::Gram { rows, n, dim } => gram_eigen(&rows, n, dim, want)?,
    };
    let dim = mean.len();
    let mut components = Array2::<f32>::zeros((want, dim));
    for (i, u) in vectors.iter().enumerate() {
        let sign = sign_of_largest(u);
        for (c, v) in components.row_mut(i).iter_mut().zip(u) {
            *c = (sign * v) as f32;
        }
    }
    let lambda0 = lambdas.first().copied().unwrap_or(0.0);
    let eps = params.eps.unwrap_or(1e-6 * lambda0);
    // p < 0 with λ + ε = 0 (every encoding the same) has no finite scale.
    let eps = if params.power < 0.0 && lambda0 + eps <= 0.0 {
        return Err(VladError::InvalidArgument(
            "every encoding used is the same: there is no variance to whiten (give eps > 0, \
             or learn from different encodings)"
                .to_string(),
        ));
    } else {
        eps
    };
    let mean32 = Array1::from_iter(mean.iter().map(|&m| m as f32));
    Whitening::from_parts(
        mean32.view(),
        components.view(),
        Array1::from(lambdas).view(),
        params.power,
        eps,
        params.post.clone(),
    )
}

/// `+1` or `−1`: the sign that makes the largest-magnitude component (the
/// first of equal ones) positive, so a fit is the same bits every run.
fn sign_of_largest(u: &[f64]) -> f64 {
    let mut best = 0.0f64;
    let mut sign = 1.0;
    for &v in u {
        if v.abs() > best {
            best = v.abs();
            sign = if v < 0.0 { -1.0 } else { 1.0 };
        }
    }
    sign
}

type Eigen = (Vec<f64>, Vec<f64>, Vec<Vec<f64>>);

/// The top `want` eigenpairs of the symmetric `n × n` row-major `m`,
/// largest first: values, and vectors as `n`-long columns.
fn top_eigenpairs(m: &[f64], n: usize, want: usize) -> Result<(Vec<f64>, Vec<Vec<f64>>)> {
    let a = Mat::<f64>::from_fn(n, n, |i, j| m[i * n + j]);
    let evd = a.self_adjoint_eigen(Side::Lower).map_err(|e| {
        VladError::InvalidArgument(format!(
            "the eigendecomposition of the {n} × {n} covariance did not converge ({e:?})"
        ))
    })?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let mut values = Vec::with_capacity(want);
    let mut vectors = Vec::with_capacity(want);
    // faer sorts eigenvalues in nondecreasing order.
    for c in (n - want..n).rev() {
        values.push(s[c]);
        vectors.push((0..n).map(|r| u[(r, c)]).collect());
    }
    Ok((values, vectors))
}

/// The covariance form: `C = (Σxxᵀ − n μμᵀ) / (n − 1)`.
fn covariance_eigen(moments: Moments, want: usize) -> Result<Eigen> {
    let Moments {
        dim,
        n,
        sum,
        mut squares,
    } = moments;
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    mirror_upper(&mut squares, dim);
    let nf = n as f64;
    for i in 0..dim {
        for j in 0..dim {
            let c = &mut squares[i * dim + j];
            *c = (*c - nf * mean[i] * mean[j]) / (nf - 1.0);
        }
    }
    let (values, vectors) = top_eigenpairs(&squares, dim, want)?;
    Ok((
        mean,
        values.into_iter().map(|l| l.max(0.0)).collect(),
        vectors,
    ))
}

/// The Gram form: with `Xc` the centered rows, `Xc Xcᵀ = V Λ Vᵀ` gives the
/// covariance's eigenpairs `λ = Λ / (n − 1)`, `u = Xcᵀ v / √Λ`.
fn gram_eigen(rows: &[f32], n: usize, dim: usize, want: usize) -> Result<Eigen> {
    let mut mean = vec![0.0f64; dim];
    for row in rows.chunks_exact(dim) {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += *v as f64;
        }
    }
    for m in &mut mean {
        *m /= n as f64;
    }
    let centered: Vec<f64> = rows
        .chunks_exact(dim)
        .flat_map(|row| row.iter().zip(&mean).map(|(v, m)| *v as f64 - m))
        .collect();
    let mut gram = gram_of_rows(&centered, n, dim);
    mirror_upper(&mut gram, n);
    let (values, small) = top_eigenpairs(&gram, n, want)?;
    let top = values.first().copied().unwrap_or(0.0).max(0.0);
    let mut lambdas = Vec::with_capacity(want);
    let mut vectors = Vec::with_capacity(want);
    for (value, v) in values.into_iter().zip(small) {
        let value = value.max(0.0);
        lambdas.push(value / (n as f64 - 1.0));
        // A direction of no variance (rank < D′) is not unique: it is
        // given as zeros, so it contributes nothing.
        if value <= 1e-12 * top || value == 0.0 {
            vectors.push(vec![0.0; dim]);
            continue;
        }
        let mut u = vec![0.0f64; dim];
        for (row, vr) in centered.chunks_exact(dim).zip(&v) {
            for (ud, x) in u.iter_mut().zip(row) {
                *ud += x * vr;
            }
        }
        let norm = u.iter().map(|x| x * x).sum::<f64>().sqrt();
        for ud in &mut u {
            *ud /= norm;
        }
        vectors.push(u);
    }
    Ok((mean, lambdas, vectors))
}
