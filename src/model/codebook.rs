//! The codebook: `K` centroids of width `F`, with their squared norms cached
//! for the `‖c‖² − 2 v·c` form of nearest-centroid search.

use ndarray::{Array1, Array2, ArrayView2};

use crate::error::{Result, VladError};

/// `K × F` centroids in f32, row-major, validated (finite, `K > 0`, `F > 0`).
///
/// ```
/// use ndarray::array;
/// use vlad::Codebook;
///
/// let codebook = Codebook::new(array![[0.0f32, 1.0], [2.0, 2.0]].view())?;
/// assert_eq!((codebook.clusters(), codebook.dim()), (2, 2));
/// assert_eq!(codebook.squared_norms()[1], 8.0);
/// # Ok::<(), vlad::VladError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Codebook {
    centroids: Array2<f32>,
    squared_norms: Array1<f32>,
}

impl Codebook {
    /// Build from an f32 `(K, F)` view (any memory order; stored row-major).
    pub fn new(centroids: ArrayView2<'_, f32>) -> Result<Self> {
        Self::from_owned(centroids.as_standard_layout().into_owned())
    }

    /// Build from an f64 `(K, F)` view; values are rounded to f32 (SPEC §2).
    pub fn from_f64(centroids: ArrayView2<'_, f64>) -> Result<Self> {
        if let Some(((row, col), &value)) = centroids
            .indexed_iter()
            .find(|(_, v)| !(v.is_finite() && (**v as f32).is_finite()))
        {
            return Err(VladError::NonFinite {
                what: "centroids",
                row,
                image: None,
                col,
                value,
            });
        }
        Self::from_owned(centroids.mapv(|v| v as f32))
    }

    /// Build from an owned standard-layout or any-layout f32 array.
    pub fn from_owned(centroids: Array2<f32>) -> Result<Self> {
        let (k, f) = centroids.dim();
        if k == 0 {
            return Err(VladError::Empty(
                "the codebook has K = 0 centroids".to_string(),
            ));
        }
        if f == 0 {
            return Err(VladError::Empty(
                "the centroids have F = 0 dimensions".to_string(),
            ));
        }
        let centroids = if centroids.is_standard_layout() {
            centroids
        } else {
            centroids.as_standard_layout().into_owned()
        };
        for (row, c) in centroids.outer_iter().enumerate() {
            if let Some((col, &value)) = c.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(VladError::NonFinite {
                    what: "centroids",
                    row,
                    image: None,
                    col,
                    value: value as f64,
                });
            }
        }
        let squared_norms = centroids
            .outer_iter()
            .map(|c| c.iter().map(|&x| x * x).sum::<f32>())
            .collect();
        Ok(Codebook {
            centroids,
            squared_norms,
        })
    }

    /// Number of centroids `K`.
    pub fn clusters(&self) -> usize {
        self.centroids.nrows()
    }

    /// Descriptor width `F`.
    pub fn dim(&self) -> usize {
        self.centroids.ncols()
    }

    /// The `(K, F)` centroids, row-major.
    pub fn centroids(&self) -> ArrayView2<'_, f32> {
        self.centroids.view()
    }

    /// The centroids as one row-major slice of `K·F` values.
    pub fn as_slice(&self) -> &[f32] {
        self.centroids
            .as_slice()
            .expect("Codebook keeps its centroids in standard layout")
    }

    /// `‖c_k‖²` for each centroid, in f32.
    pub fn squared_norms(&self) -> &[f32] {
        self.squared_norms
            .as_slice()
            .expect("an owned Array1 is contiguous")
    }

    /// Consume and return the centroids.
    pub fn into_centroids(self) -> Array2<f32> {
        self.centroids
    }
}
