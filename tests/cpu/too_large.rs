//! Outputs that cannot fit are an error up front — how much was needed and
//! what to change — never an abort (SPEC §11). The shapes here are empty
//! arrays claiming absurd image counts, so nothing is really allocated and
//! the refusal is deterministic: 2^60 bytes exceeds every machine's address
//! space, and 2^64 does not even fit the arithmetic.

use ndarray::{Array2, Array3, ArrayView3};
use vlad::{Backend, Batch, Codebook, Encoder, VladError};

fn encoder(k: usize, f: usize) -> Encoder {
    let centroids = Array2::from_shape_fn((k, f), |(i, j)| (i + j) as f32);
    Encoder::builder(Codebook::new(centroids.view()).unwrap())
        .backend(Backend::Cpu)
        .build()
}

/// An empty `(T, 0, F)` array: any `T`, no memory.
fn empty_images(t: usize, f: usize) -> ArrayView3<'static, f32> {
    ArrayView3::from_shape((t, 0, f), &[]).unwrap()
}

#[test]
fn an_output_beyond_the_address_space_is_refused_with_its_size() {
    // T = 2^50 images × K = 2 × F = 128 × 4 bytes = 2^60 bytes.
    let err = encoder(2, 128)
        .encode(empty_images(1 << 50, 128))
        .unwrap_err();
    match &err {
        VladError::TooLarge { bytes, hint, .. } => {
            assert_eq!(*bytes, Some(1u64 << 60));
            assert!(hint.contains("fewer images"), "{hint}");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let message = err.to_string();
    assert!(
        message.contains("1152921504606846976 bytes") && message.contains("K·F"),
        "{message}"
    );
}

#[test]
fn an_output_size_that_overflows_is_refused() {
    // 2^60 × 1 × 4 × 4 bytes = 2^64: does not fit in 64 bits.
    let err = encoder(1, 4).encode(empty_images(1 << 60, 4)).unwrap_err();
    assert!(
        matches!(&err, VladError::TooLarge { bytes: None, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("more than 2^64 bytes"), "{err}");
}

#[test]
fn the_check_passes_what_fits_and_the_batch_refuses_absurd_offsets() {
    let encoder = encoder(2, 4);
    assert!(encoder.check_output_fits(1000).is_ok());
    let small = Array3::<f32>::zeros((3, 0, 4));
    assert_eq!(encoder.encode(small.view()).unwrap().dim(), (3, 8));
    // The offsets of 2^60 images (2^63 bytes) cannot be allocated either.
    let err = Batch::fixed(empty_images(1 << 60, 4)).unwrap_err();
    assert!(matches!(err, VladError::TooLarge { .. }), "{err:?}");
}
