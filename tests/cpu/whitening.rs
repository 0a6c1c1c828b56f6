//! Whitening (SPEC §14) on the CPU: the fit against the covariance computed
//! here in f64 (an independent check of faer's eigenpairs), its determinism
//! over threads and runs, the stream's accumulator against the fit in
//! memory, the encoder's whitened output against the f64 reference, and
//! every bad parameter.

use ndarray::{Array2, ArrayView2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::{Backend, Encoder, Normalization, VladError, Whitening, WhiteningParams};

use crate::common::cases::{in_pool, normal_matrix, random_codebook, random_matrix};

/// `n` rows of width `d` with a decaying spectrum (column j scaled by
/// 1/(1+j)), so the top eigenpairs are well separated.
fn spectrum_rows(seed: u64, n: usize, d: usize) -> Array2<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut x = normal_matrix(&mut rng, n, d);
    // A random rotation would be nicer; a fixed mixing keeps it simple:
    // each column j scaled by 1/(1 + j), then a shift.
    for ((_, j), v) in x.indexed_iter_mut() {
        *v = *v / (1.0 + j as f32) + 0.25;
    }
    x
}

/// The f64 covariance (divisor n − 1) of `x`, computed plainly.
fn covariance(x: ArrayView2<'_, f32>) -> Array2<f64> {
    let x = x.mapv(|v| v as f64);
    let n = x.nrows() as f64;
    let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
    let c = &x - &mean;
    c.t().dot(&c) / (n - 1.0)
}

fn check_eigenpairs(w: &Whitening, x: ArrayView2<'_, f32>) {
    let c = covariance(x);
    let lambda0 = w.eigenvalues()[0];
    for (i, u) in w.components().outer_iter().enumerate() {
        let u = u.mapv(|v| v as f64);
        let norm = u.dot(&u).sqrt();
        assert!((norm - 1.0).abs() < 1e-6, "component {i} has norm {norm}");
        let cu = c.dot(&u);
        let lambda = w.eigenvalues()[i];
        let residual = (&cu - &(&u * lambda)).mapv(|v| v * v).sum().sqrt();
        assert!(
            residual < 1e-5 * lambda0,
            "component {i}: ‖Cu − λu‖ = {residual}, λ0 = {lambda0}"
        );
        if i > 0 {
            assert!(lambda <= w.eigenvalues()[i - 1], "eigenvalues not sorted");
        }
        // The sign rule: the largest-magnitude component is positive.
        let big = u
            .iter()
            .cloned()
            .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
        assert!(big > 0.0, "component {i}'s largest entry is {big}");
    }
}

#[test]
fn covariance_form_gives_the_covariances_top_eigenpairs() {
    let x = spectrum_rows(1, 300, 24);
    let w = WhiteningParams::new(6).fit(x.view()).unwrap();
    assert_eq!((w.dims_in(), w.dims_out()), (24, 6));
    check_eigenpairs(&w, x.view());
    let mean = x.mean_axis(ndarray::Axis(0)).unwrap();
    for (a, b) in w.mean().iter().zip(mean.iter()) {
        assert!((a - b).abs() < 1e-5);
    }
}

#[test]
fn gram_form_gives_the_covariances_top_eigenpairs() {
    // n < D: the n × n Gram matrix is decomposed instead.
    let x = spectrum_rows(2, 20, 64);
    let acc = WhiteningParams::new(5).accumulator(20, 64).unwrap();
    assert!(acc.uses_gram());
    let w = WhiteningParams::new(5).fit(x.view()).unwrap();
    check_eigenpairs(&w, x.view());
}

#[test]
fn a_fit_is_the_same_bits_over_runs_and_thread_counts() {
    for (n, d) in [(300, 24), (40, 96)] {
        let x = spectrum_rows(3, n, d);
        let params = WhiteningParams::new(8).power(-0.5);
        let one = in_pool(1, || params.fit(x.view()).unwrap());
        let two = in_pool(2, || params.fit(x.view()).unwrap());
        let again = params.fit(x.view()).unwrap();
        assert_eq!(one, two, "n = {n}: 1 vs 2 threads");
        assert_eq!(one, again, "n = {n}: two runs");
    }
}

#[test]
fn the_accumulator_fed_in_batches_gives_the_bits_of_the_fit() {
    for (n, d, cap) in [(700, 16, None), (60, 80, None), (900, 12, Some(300))] {
        let x = spectrum_rows(4, n, d);
        let params = WhiteningParams::new(4).max_points(cap).seed(9);
        let whole = params.fit(x.view()).unwrap();
        for cuts in [vec![1, 2, 255, 256, 257], vec![333], vec![7; 200]] {
            let mut acc = params.accumulator(n, d).unwrap();
            let mut at = 0;
            let mut sizes = cuts.iter().cycle();
            while at < n {
                let take = (*sizes.next().unwrap()).min(n - at);
                acc.add(at, x.slice(s![at..at + take, ..])).unwrap();
                at += take;
            }
            assert_eq!(acc.finish().unwrap(), whole, "n = {n}, cuts {cuts:?}");
        }
    }
}

#[test]
fn the_sample_cap_draws_a_seeded_subset() {
    let x = spectrum_rows(5, 500, 10);
    let capped = WhiteningParams::new(3).max_points(Some(100));
    let a = capped.clone().seed(1).fit(x.view()).unwrap();
    let b = capped.clone().seed(1).fit(x.view()).unwrap();
    let c = capped.seed(2).fit(x.view()).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.mean(), c.mean(), "another seed draws other rows");
    assert_eq!(WhiteningParams::new(3).sample_cap(), 3000);
}

#[test]
fn pca_power_zero_keeps_variances_and_whitening_makes_them_one() {
    let x = spectrum_rows(6, 400, 12);
    let none: Normalization = "none".parse().unwrap();
    for (power, expect_unit) in [(0.0, false), (-0.5, true)] {
        let w = WhiteningParams::new(4)
            .power(power)
            .post(none.clone())
            .fit(x.view())
            .unwrap();
        let enc = encoder_free_apply(&w, x.view());
        for i in 0..4 {
            let col = enc.column(i).mapv(|v| v as f64);
            let var = col.mapv(|v| v * v).sum() / (col.len() as f64 - 1.0);
            let want = if expect_unit { 1.0 } else { w.eigenvalues()[i] };
            assert!(
                (var - want).abs() < 1e-3 * want.max(1e-3),
                "p = {power}, {i}: {var} vs {want}"
            );
        }
    }
}

/// Apply `w` on the CPU backend's stage to rows that are already
/// encodings: through an encoder whose codebook is one centroid at zero
/// and whose rows are the "descriptors" (then K·F = F = D and, with no
/// normalization, the encoding of a one-descriptor image is the row).
fn encoder_free_apply(w: &Whitening, x: ArrayView2<'_, f32>) -> Array2<f32> {
    let d = x.ncols();
    let zero = vlad::Codebook::new(Array2::<f32>::zeros((1, d)).view()).unwrap();
    let enc = Encoder::builder(zero)
        .normalization(Normalization::none())
        .backend(Backend::Cpu)
        .whitening(w.clone())
        .try_build()
        .unwrap();
    let images = x
        .to_owned()
        .into_shape_with_order((x.nrows(), 1, d))
        .unwrap();
    enc.encode(images.view()).unwrap()
}

#[test]
fn the_encoder_whitens_on_the_cpu_as_the_reference_does() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let (t, l, f, k) = (60, 12, 8, 4);
    let codebook = random_codebook(&mut rng, k, f);
    let images = random_matrix(&mut rng, t * l, f)
        .into_shape_with_order((t, l, f))
        .unwrap();
    let raw = Encoder::builder(codebook.clone())
        .backend(Backend::Cpu)
        .build();
    let v = raw.encode(images.view()).unwrap();
    let w = WhiteningParams::new(10).fit(v.view()).unwrap();
    let mut outs = Vec::new();
    for backend in [Backend::Cpu, Backend::Reference] {
        let enc = Encoder::builder(codebook.clone())
            .backend(backend)
            .whitening(w.clone())
            .try_build()
            .unwrap();
        assert_eq!(enc.dims_out(), 10);
        let y = enc.encode(images.view()).unwrap();
        assert_eq!(y.dim(), (t, 10));
        for row in y.outer_iter() {
            let norm = row.dot(&row).sqrt();
            assert!((norm - 1.0).abs() < 1e-5, "post l2: row norm {norm}");
        }
        outs.push(y);
    }
    let worst = (&outs[0] - &outs[1])
        .mapv(f32::abs)
        .fold(0.0f32, |m, v| m.max(*v));
    assert!(worst < 1e-4, "cpu vs reference whitened: {worst}");
    // Rows are whitened one by one: any subset gives the same bits.
    let enc = Encoder::builder(codebook)
        .backend(Backend::Cpu)
        .whitening(w)
        .try_build()
        .unwrap();
    let part = enc.encode(images.slice(s![13..29, .., ..])).unwrap();
    assert_eq!(part, outs[0].slice(s![13..29, ..]));
}

#[test]
fn bad_parameters_are_clear_errors() {
    let x = spectrum_rows(8, 10, 6);
    let too_many = WhiteningParams::new(7).fit(x.view()).unwrap_err();
    assert!(too_many.to_string().contains("min(n, D) = 6"), "{too_many}");
    let one = WhiteningParams::new(1)
        .fit(x.slice(s![0..1, ..]))
        .unwrap_err();
    assert!(one.to_string().contains("at least 2 encodings"), "{one}");
    assert!(matches!(
        WhiteningParams::new(0).fit(x.view()),
        Err(VladError::InvalidArgument(_))
    ));
    assert!(
        WhiteningParams::new(2)
            .power(f64::NAN)
            .fit(x.view())
            .is_err()
    );
    assert!(
        WhiteningParams::new(2)
            .eps(Some(-1.0))
            .fit(x.view())
            .is_err()
    );
    let intra = WhiteningParams::new(2)
        .post("intra".parse().unwrap())
        .fit(x.view());
    assert!(intra.unwrap_err().to_string().contains("intra"));
    let mut bad = x.clone();
    bad[[3, 2]] = f32::NAN;
    let nan = WhiteningParams::new(2).fit(bad.view()).unwrap_err();
    assert!(
        matches!(nan, VladError::NonFinite { row: 3, col: 2, .. }),
        "{nan}"
    );
    // A whitening of another width than the encoding.
    let w = WhiteningParams::new(2).fit(x.view()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let wrong = Encoder::builder(random_codebook(&mut rng, 2, 4))
        .whitening(w)
        .try_build();
    assert!(matches!(wrong, Err(VladError::DimensionMismatch(_))));
}
