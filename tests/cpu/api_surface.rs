//! The library's surface as a user meets it: a builder, getters, `Debug`,
//! the re-exported ndarray, offsets in any integer type, a batch from a
//! list of images, `Encoded::verify`, a cloneable error that keeps its
//! source. CPU only: runs with `--no-default-features` too.

use std::error::Error as _;

use vlad::ndarray::{Array2, ArrayView2, array};
use vlad::{Backend, Batch, Codebook, Encoder, Normalization, VladError};

fn codebook() -> Codebook {
    Codebook::new(array![[0.0f32, 0.0], [10.0, 10.0]].view()).unwrap()
}

fn rows() -> Array2<f32> {
    array![
        [1.0f32, 0.0],
        [9.0, 10.0],
        [0.0, 2.0],
        [11.0, 9.0],
        [1.0, 1.0]
    ]
}

#[test]
fn builder_and_getters() {
    let encoder = Encoder::builder(codebook())
        .normalization(Normalization::none())
        .backend(Backend::Cpu)
        .gpu_max_binding_bytes(Some(1 << 20))
        .build();
    assert_eq!(encoder.backend(), Backend::Cpu);
    assert_eq!(encoder.normalization(), &Normalization::none());
    assert_eq!(encoder.gpu_max_binding_bytes(), Some(1 << 20));
    assert_eq!(encoder.codebook().clusters(), 2);
    let defaults = Encoder::new(codebook());
    assert_eq!(defaults.backend(), Backend::Auto);
    assert_eq!(defaults.normalization(), &Normalization::default());
    let debug = format!("{encoder:?}");
    assert!(
        debug.starts_with("Encoder") && debug.contains("Cpu"),
        "{debug}"
    );
}

#[test]
fn offsets_in_every_integer_type_give_the_same_encoding() {
    let encoder = Encoder::builder(codebook()).backend(Backend::Cpu).build();
    let rows = rows();
    let want = encoder.encode_ragged(rows.view(), &[0usize, 2, 5]).unwrap();
    assert_eq!(
        encoder.encode_ragged(rows.view(), &[0i64, 2, 5]).unwrap(),
        want
    );
    assert_eq!(
        encoder.encode_ragged(rows.view(), &[0u64, 2, 5]).unwrap(),
        want
    );
    assert_eq!(
        encoder.encode_ragged(rows.view(), &[0i32, 2, 5]).unwrap(),
        want
    );
    assert_eq!(
        encoder.encode_ragged(rows.view(), &[0u32, 2, 5]).unwrap(),
        want
    );
    let err = encoder
        .encode_ragged(rows.view(), &[0i64, -2, 5])
        .unwrap_err();
    assert!(
        matches!(&err, VladError::InvalidOffsets(m) if m.contains("offsets[1] = -2")),
        "{err}"
    );
}

#[test]
fn a_batch_from_a_list_of_images_equals_the_ragged_batch() {
    let encoder = Encoder::builder(codebook()).backend(Backend::Cpu).build();
    let rows = rows();
    let images: Vec<ArrayView2<'_, f32>> = vec![
        rows.slice(vlad::ndarray::s![0..2, ..]),
        rows.slice(vlad::ndarray::s![2..2, ..]),
        rows.slice(vlad::ndarray::s![2..5, ..]),
    ];
    let want = encoder
        .encode_ragged(rows.view(), &[0usize, 2, 2, 5])
        .unwrap();
    assert_eq!(encoder.encode_images(&images).unwrap(), want);
    let batch = Batch::from_images(&images).unwrap();
    assert_eq!(batch.offsets(), &[0, 2, 2, 5]);
    // Widths must agree; an empty list is refused.
    let narrow = array![[1.0f32]];
    let err = Batch::from_images(&[rows.view(), narrow.view()]).unwrap_err();
    assert!(matches!(err, VladError::DimensionMismatch(_)), "{err}");
    let none: [ArrayView2<'_, f32>; 0] = [];
    assert!(matches!(
        Batch::from_images(&none),
        Err(VladError::Empty(_))
    ));
}

#[test]
fn an_encoding_verifies_against_the_reference() {
    let encoder = Encoder::builder(codebook()).backend(Backend::Cpu).build();
    let rows = rows();
    let batch = Batch::ragged(rows.view(), &[0u64, 2, 5]).unwrap();
    let encoded = encoder.encode_batch(&batch).unwrap();
    let verification = encoded.verify(&encoder, &batch);
    assert!(verification.passed(), "{verification:?}");
    // A damaged encoding does not.
    let mut damaged = encoded.clone();
    damaged.vlad[[0, 0]] += 0.5;
    assert!(!damaged.verify(&encoder, &batch).passed());
    // Labels are u32 everywhere.
    let labels: Vec<u32> = encoder.assign(rows.view()).unwrap().to_vec();
    assert_eq!(labels, encoded.labels);
    assert_eq!(labels, vec![0, 1, 0, 1, 0]);
}

#[test]
fn cpu_reports_no_adapter_and_no_setup() {
    let encoder = Encoder::builder(codebook()).backend(Backend::Cpu).build();
    let rows = rows();
    let batch = Batch::single(rows.view()).unwrap();
    let report = encoder.encode_batch(&batch).unwrap().report;
    assert_eq!(report.backend, Backend::Cpu);
    assert_eq!((report.adapter, report.adapter_kind), (None, None));
    assert_eq!(report.setup_seconds, 0.0);
    assert_eq!(report.fallback_reason, None);
}

#[test]
fn errors_are_clone_send_sync_and_keep_their_source() {
    fn check<T: Clone + Send + Sync + std::error::Error + 'static>() {}
    check::<VladError>();
    let missing = std::env::temp_dir().join("vlad-no-such-file-for-api-test.npy");
    let err = vlad::io::read_centroids(&missing).unwrap_err();
    let copy = err.clone();
    let source = copy.source().expect("an I/O error keeps its source");
    // The I/O error is shared (the error is Clone): the source is the
    // Arc<io::Error>, whose own Display and kind are the io::Error's.
    let io = source
        .downcast_ref::<std::sync::Arc<std::io::Error>>()
        .expect("the source is the shared io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}
