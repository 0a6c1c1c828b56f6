//! CPU twin of `shaders/assign.wgsl`: each row's nearest centroid as the
//! shader decides it — the dot product `v·c` summed over the features in
//! ascending order from zero with fused multiply-adds, the distance
//! `‖c‖² − 2 v·c` in f32 (the codebook's own squared norms), and a strict
//! `<` over the centroids in ascending order, so exact ties go to the
//! lowest label. The shader's tiling changes neither the order of any sum
//! nor the tie rule, so this is its algorithm without the tiles. u8 rows
//! are widened to f32 exactly, as the shader does.

use crate::model::codebook::Codebook;
use crate::model::element::Element;

/// The label of each `dim`-wide row of `rows`.
///
/// # Panics
///
/// If `dim` is not the codebook's width.
pub fn assign<E: Element>(codebook: &Codebook, rows: &[E], dim: usize) -> Vec<u32> {
    assert_eq!(dim, codebook.dim(), "rows must be as wide as the centroids");
    let centroids = codebook.as_slice();
    let norms = codebook.squared_norms();
    rows.chunks_exact(dim.max(1))
        .map(|v| {
            let mut best = (f32::INFINITY, 0u32);
            for (k, (c, &norm)) in centroids.chunks_exact(dim).zip(norms).enumerate() {
                let dot = v
                    .iter()
                    .zip(c)
                    .fold(0.0f32, |acc, (&x, &y)| x.to_f32().mul_add(y, acc));
                let d = norm - 2.0 * dot;
                if d < best.0 {
                    best = (d, k as u32);
                }
            }
            best.1
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn nearest_and_lowest_on_ties() {
        let codebook = Codebook::new(array![[0.0f32, 0.0], [2.0, 0.0], [0.0, 2.0]].view()).unwrap();
        // (1, 0) ties between centroids 0 and 1; (0, 1.9) is nearest 2.
        let rows = [1.0f32, 0.0, 0.0, 1.9, 3.0, 0.1];
        assert_eq!(assign(&codebook, &rows, 2), vec![0, 2, 1]);
        let bytes = [1u8, 0, 0, 2];
        assert_eq!(assign(&codebook, &bytes, 2), vec![0, 2]);
    }
}
