//! SPEC §10 cases shared by the cpu and gpu soft-assignment tests: ragged
//! images with random parameters, and the check of an encoding against the
//! f64 oracle `reference` within SPEC §4.

use ndarray::{Array1, Array2, ArrayView2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::{Assignment, Batch, Codebook, Element, Normalization, Step};

/// Every normalization the soft tests run: each step alone and in lists,
/// `rn` first and with the others after it.
pub const NORMS: [&str; 10] = [
    "none",
    "mass",
    "ssr,l2",
    "intra,l2",
    "mass,intra,l2",
    "rn",
    "rn,mass",
    "rn,ssr,l2",
    "rn,intra,l2",
    "rn,mass,ssr,intra,l2",
];

/// Offsets of `count` ragged images of 1..`max_len` rows, with empty ones
/// first, at `empty_at` and last, and one of `long` rows before the last
/// (long enough to span aggregation blocks, or chunks under a small cap).
pub fn ragged_offsets(
    rng: &mut ChaCha8Rng,
    count: usize,
    max_len: usize,
    empty_at: usize,
    long: usize,
) -> Vec<usize> {
    let mut sizes: Vec<usize> = (0..count).map(|_| rng.random_range(1..max_len)).collect();
    sizes[0] = 0;
    sizes[empty_at] = 0;
    sizes.push(long);
    sizes.push(0);
    super::cases::offsets_from_sizes(sizes)
}

pub struct Case<E> {
    pub rows: Array2<E>,
    pub offsets: Vec<usize>,
    pub codebook: Codebook,
    /// Learned-looking parameters for this data's scale.
    pub soft: Assignment,
    /// A temperature that gives neither one-hot nor uniform weights.
    pub alpha: Assignment,
}

/// A case of `F = f`, `K = k` with values `make(u)`, `u` uniform in
/// [0, 1), centroids of that `scale`, and image offsets drawn first by
/// `offsets`.
pub fn case<E: Element>(
    seed: u64,
    f: usize,
    k: usize,
    scale: f32,
    make: impl Fn(f32) -> E,
    offsets: impl FnOnce(&mut ChaCha8Rng) -> Vec<usize>,
) -> Case<E> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let offsets = offsets(&mut rng);
    let n = offsets[offsets.len() - 1];
    let rows = Array2::from_shape_fn((n, f), |_| make(rng.random::<f32>()));
    let centroids = Array2::from_shape_fn((k, f), |_| rng.random::<f32>() * scale);
    let codebook = Codebook::from_owned(centroids).expect("finite centroids");
    let weights = Array2::from_shape_fn((k, f), |_| (rng.random::<f32>() - 0.5) * 8.0 / scale);
    let bias = Array1::from_shape_fn(k, |_| rng.random::<f32>() - 0.5);
    let soft = Assignment::soft(weights.view(), bias.view()).expect("finite parameters");
    let alpha = Assignment::soft_alpha(3.0 / (scale * scale)).expect("α > 0");
    Case {
        rows,
        offsets,
        codebook,
        soft,
        alpha,
    }
}

/// SPEC §4 for weighted sums: 1e-5 absolute after `l2`/`intra`; per block
/// `1e-5 · Σ a·‖v − c‖∞` (÷ the soft count under `mass`) for raw sums and
/// means; 1e-4 relative after a power step.
pub fn check_against_reference<E: Element>(
    what: &str,
    case: &Case<E>,
    assignment: &Assignment,
    norm_text: &str,
    got: ArrayView2<'_, f32>,
) {
    let norm: Normalization = norm_text.parse().expect("valid normalization");
    let batch = Batch::ragged(case.rows.view(), &case.offsets).expect("valid batch");
    let (want, labels) =
        vlad::backend::reference::encode(&case.codebook, &batch, assignment, &norm);
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    let (k, f) = (case.codebook.clusters(), case.codebook.dim());
    let rn = norm.residual_normalized();
    if norm.ends_normalized() {
        for ((t, j), &y) in got.indexed_iter() {
            let r = want[[t, j]];
            assert!(
                ((y as f64) - r).abs() <= 1e-5,
                "{what} {norm_text}: [{t}, {j}] = {y}, reference {r}"
            );
        }
    } else if norm
        .steps()
        .iter()
        .all(|s| matches!(s, Step::Mass | Step::ResidualNorm))
    {
        let scale = vlad::backend::reference::residual_scale(
            &case.codebook,
            &batch,
            assignment,
            &labels,
            rn,
        );
        let (_, mass, _) =
            vlad::backend::reference::aggregate(&case.codebook, &batch, assignment, rn);
        for t in 0..batch.images() {
            for c in 0..k {
                let divide = if norm.needs_counts() && mass[[t, c]] > 0.0 {
                    mass[[t, c]]
                } else {
                    1.0
                };
                let bound = 1e-5 * scale[[t, c]] / divide;
                for j in c * f..(c + 1) * f {
                    let err = ((got[[t, j]] as f64) - want[[t, j]]).abs();
                    assert!(
                        err <= bound,
                        "{what} {norm_text}: image {t} block {c}: error {err:e} > {bound:e}"
                    );
                }
            }
        }
    } else {
        for ((t, j), &y) in got.indexed_iter() {
            let r = want[[t, j]];
            assert!(
                ((y as f64) - r).abs() <= 1e-4 * r.abs().max(1.0),
                "{what} {norm_text}: [{t}, {j}] = {y}, reference {r}"
            );
        }
    }
    // Empty images encode to exact zero rows.
    for t in 0..batch.images() {
        if batch.image_range(t).is_empty() {
            assert!(
                got.row(t).iter().all(|x| x.to_bits() == 0),
                "{what}: empty image {t}"
            );
        }
    }
}
