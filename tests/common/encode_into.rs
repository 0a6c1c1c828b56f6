//! Shared by tests/cpu/encode_into.rs and tests/gpu/encode_into.rs:
//! `Encoder::encode_batch_into` writes exactly what `encode_batch` returns,
//! into a caller's array whatever it held, contiguous or not.

use super::cases::{random_codebook, random_matrix};
use ndarray::{Array2, s};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::{Backend, Batch, Codebook, Encoder, Normalization, VladError};

/// Ragged images (two of them empty) and a codebook.
pub fn data(seed: u64) -> (Codebook, Array2<f32>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (k, f) = (7, 12);
    let codebook = random_codebook(&mut rng, k, f);
    let rows = random_matrix(&mut rng, 230, f);
    let offsets = vec![0, 40, 40, 150, 151, 151, 230];
    (codebook, rows, offsets)
}

/// `encode_batch_into` on `backend` against `encode_batch`, bit for bit,
/// into NaN-filled memory (standard layout and not), for each list of
/// normalization steps; and `builder` adjusts the encoder (binding caps).
pub fn check_backend(
    backend: Backend,
    norms: &[&str],
    builder: fn(vlad::EncoderBuilder) -> vlad::EncoderBuilder,
) {
    let (codebook, rows, offsets) = data(11);
    let batch = Batch::ragged(rows.view(), &offsets).unwrap();
    let shape = (batch.images(), codebook.clusters() * codebook.dim());
    for norm in norms {
        let norm: Normalization = norm.parse().unwrap();
        let encoder = builder(
            Encoder::builder(codebook.clone())
                .normalization(norm.clone())
                .backend(backend),
        )
        .build();
        let want = encoder.encode_batch(&batch).unwrap();
        assert_eq!(want.report.backend, backend, "{norm}");

        let mut out = Array2::from_elem(shape, f32::NAN);
        let report = encoder.encode_batch_into(&batch, out.view_mut()).unwrap();
        assert_eq!(report.backend, backend, "{norm}");
        assert_bits_eq(&out, &want.vlad, &format!("{backend:?} {norm}"));
        // Into the same memory again: the same bits.
        encoder.encode_batch_into(&batch, out.view_mut()).unwrap();
        assert_bits_eq(&out, &want.vlad, &format!("{backend:?} {norm} again"));

        // A column-major array (no contiguous row-major slice).
        let mut t = Array2::from_elem((shape.1, shape.0), f32::NAN);
        let mut view = t.view_mut().reversed_axes();
        encoder.encode_batch_into(&batch, view.view_mut()).unwrap();
        assert_bits_eq(
            &view.to_owned(),
            &want.vlad,
            &format!("{backend:?} {norm} F-order"),
        );
    }

    // A wrong shape is an error before anything is written.
    let encoder = Encoder::builder(codebook.clone()).backend(backend).build();
    for bad in [(shape.0 + 1, shape.1), (shape.0, shape.1 - 1), (0, 0)] {
        let mut out = Array2::from_elem(bad, 7.0f32);
        let err = encoder
            .encode_batch_into(&batch, out.view_mut())
            .unwrap_err();
        assert!(
            matches!(err, VladError::DimensionMismatch(_)),
            "{bad:?}: {err}"
        );
        assert!(err.to_string().contains("output"), "{err}");
        assert!(out.iter().all(|&x| x == 7.0), "{bad:?}: output was written");
    }
    // A slice of a larger array (rows strided) works too.
    let mut big = Array2::from_elem((shape.0 * 2, shape.1), f32::NAN);
    let want = encoder.encode_batch(&batch).unwrap();
    encoder
        .encode_batch_into(&batch, big.slice_mut(s![..;2, ..]))
        .unwrap();
    assert_bits_eq(
        &big.slice(s![..;2, ..]).to_owned(),
        &want.vlad,
        "strided rows",
    );
}

fn assert_bits_eq(got: &Array2<f32>, want: &Array2<f32>, what: &str) {
    assert_eq!(got.dim(), want.dim(), "{what}");
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}

/// `encode_batch_into_with_progress` on `backend` against `encode_batch`,
/// bit for bit: on [`data`] (one group; with `builder`'s binding caps the
/// GPU splits images) and on 600 ragged images of 600 k rows in all (a
/// few groups); the progress starts at `(0, T)`, grows, ends at `(T, T)`.
pub fn check_progress(
    backend: Backend,
    builder: fn(vlad::EncoderBuilder) -> vlad::EncoderBuilder,
    large: Option<fn(vlad::EncoderBuilder) -> vlad::EncoderBuilder>,
) {
    let (codebook, rows, offsets) = data(12);
    check_progress_on(backend, builder, &codebook, &rows, &offsets, 2);
    let Some(large_builder) = large else {
        return;
    };

    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let (k, f) = (5, 4);
    let codebook = random_codebook(&mut rng, k, f);
    let sizes: Vec<usize> = (0..600).map(|t| (t * 7919) % 2001).collect();
    let offsets = super::cases::offsets_from_sizes(sizes);
    let n = offsets[offsets.len() - 1];
    assert!(n > 2 * (1 << 18), "{n} rows: more than two groups' worth");
    let rows = random_matrix(&mut rng, n, f);
    check_progress_on(backend, large_builder, &codebook, &rows, &offsets, 3);
}

fn check_progress_on(
    backend: Backend,
    builder: fn(vlad::EncoderBuilder) -> vlad::EncoderBuilder,
    codebook: &Codebook,
    rows: &Array2<f32>,
    offsets: &[usize],
    least_calls: usize,
) {
    let batch = Batch::ragged(rows.view(), offsets).unwrap();
    let t = batch.images();
    let encoder = builder(Encoder::builder(codebook.clone()).backend(backend)).build();
    let want = encoder.encode_batch(&batch).unwrap();
    let mut out = Array2::from_elem(want.vlad.dim(), f32::NAN);
    let mut calls: Vec<(usize, usize)> = Vec::new();
    let report = encoder
        .encode_batch_into_with_progress(&batch, out.view_mut(), &mut |done, total| {
            calls.push((done, total))
        })
        .unwrap();
    assert_eq!(report.backend, backend);
    assert_bits_eq(&out, &want.vlad, &format!("{backend:?} with progress"));
    assert!(calls.len() >= least_calls, "{backend:?}: {calls:?}");
    assert_eq!(calls.first(), Some(&(0, t)), "{calls:?}");
    assert_eq!(calls.last(), Some(&(t, t)), "{calls:?}");
    assert!(
        calls.windows(2).all(|w| w[0].0 < w[1].0 && w[1].1 == t),
        "{calls:?}"
    );
}
