//! Small encodings worked out by hand, on the cpu and reference backends.

use crate::common::NORMALIZATIONS;
use ndarray::{Array2, Array3, array};
use vlad::{Backend, Codebook, Encoder};

const BACKENDS: [Backend; 2] = [Backend::Cpu, Backend::Reference];

fn encoder(centroids: Array2<f32>, norm: &str, backend: Backend) -> Encoder {
    let codebook = Codebook::new(centroids.view()).expect("valid centroids");
    Encoder::builder(codebook)
        .normalization(norm.parse().expect("valid normalization"))
        .backend(backend)
        .build()
}

fn encode(centroids: Array2<f32>, norm: &str, backend: Backend, images: &[&[f32]]) -> Vec<f32> {
    let (t, l) = (images.len(), images[0].len() / 3);
    let flat: Vec<f32> = images.concat();
    let images = Array3::from_shape_vec((t, l, 3), flat).expect("whole images");
    let vlad = encoder(centroids, norm, backend)
        .encode(images.view())
        .expect("valid input");
    vlad.iter().copied().collect()
}

#[test]
fn one_descriptor_gives_its_residual_and_an_exact_zero_block() {
    for backend in BACKENDS {
        let out = encode(
            array![[0.0, 1.0, 2.0], [9.0, 9.0, 9.0]],
            "none",
            backend,
            &[&[1.0, 2.0, 3.0]],
        );
        // Block 0: [1,2,3] − [0,1,2]; block 1 received nothing: +0.0 exactly.
        let bits: Vec<u32> = out.iter().map(|x| x.to_bits()).collect();
        let want: Vec<u32> = [1.0f32, 1.0, 1.0, 0.0, 0.0, 0.0]
            .iter()
            .map(|x| x.to_bits())
            .collect();
        assert_eq!(bits, want, "{backend}");
    }
}

#[test]
fn mass_divides_each_block_by_its_count() {
    // Two descriptors in cluster 0, one in cluster 1, none in cluster 2.
    let centroids = array![[0.0, 1.0, 2.0], [10.0, 10.0, 10.0], [-50.0, 0.0, 0.0]];
    let image: &[f32] = &[1.0, 2.0, 3.0, 3.0, 4.0, 5.0, 11.0, 12.0, 10.0];
    for backend in BACKENDS {
        let none = encode(centroids.clone(), "none", backend, &[image]);
        let mass = encode(centroids.clone(), "mass", backend, &[image]);
        assert_eq!(
            none,
            [4.0, 4.0, 4.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0],
            "{backend}"
        );
        assert_eq!(
            mass,
            [2.0, 2.0, 2.0, 1.0, 2.0, 0.0, 0.0, 0.0, 0.0],
            "{backend}"
        );
    }
}

#[test]
fn power_half_then_l2_by_hand() {
    // Residual sums [4, −9, 36] in block 0 (block 1 empty): the signed square
    // root gives [2, −3, 6], whose norm is 7, so the result is [2, −3, 6]/7.
    for backend in BACKENDS {
        let out = encode(
            array![[0.0, 0.0, 0.0], [100.0, 100.0, 100.0]],
            "power=0.5,l2",
            backend,
            &[&[4.0, -9.0, 36.0]],
        );
        let want = [2.0 / 7.0, -3.0 / 7.0, 6.0 / 7.0, 0.0, 0.0, 0.0];
        for (got, want) in out.iter().zip(want) {
            assert!((*got as f64 - want).abs() <= 1e-7, "{backend}: {out:?}");
        }
        assert!(out[3..].iter().all(|x| x.to_bits() == 0), "{backend}");
    }
}

#[test]
fn intra_normalizes_each_block_on_its_own() {
    // Block 0 sum [3, 4, 0] (norm 5), block 1 sum [0, 0, −2] (norm 2).
    let centroids = array![[0.0, 0.0, 0.0], [10.0, 10.0, 10.0]];
    for backend in BACKENDS {
        let out = encode(
            centroids.clone(),
            "intra",
            backend,
            &[&[3.0, 4.0, 0.0, 10.0, 10.0, 8.0]],
        );
        assert_eq!(out, [0.6, 0.8, 0.0, 0.0, 0.0, -1.0], "{backend}");
    }
}

#[test]
fn images_without_descriptors_encode_to_zero_rows_under_every_list() {
    let centroids = array![[0.0f32, 1.0, 2.0], [5.0, 5.0, 5.0]];
    // Three images: empty, two descriptors, empty.
    let rows = array![[1.0f32, 2.0, 3.0], [4.0, 6.0, 5.0]];
    let offsets = [0usize, 0, 2, 2];
    for &norm in NORMALIZATIONS {
        for backend in BACKENDS {
            let vlad = encoder(centroids.clone(), norm, backend)
                .encode_ragged(rows.view(), &offsets)
                .expect("valid input");
            assert_eq!(vlad.dim(), (3, 6));
            for t in [0, 2] {
                assert!(
                    vlad.row(t).iter().all(|x| x.to_bits() == 0),
                    "{backend} {norm}: image {t} = {:?}",
                    vlad.row(t)
                );
            }
            assert!(
                vlad.row(1).iter().any(|&x| x != 0.0),
                "{backend} {norm}: the non-empty image must not be zero"
            );
            assert!(vlad.iter().all(|x| x.is_finite()), "{backend} {norm}");
        }
    }
}

#[test]
fn no_images_at_all_is_an_empty_encoding() {
    let rows = Array2::<f32>::zeros((0, 3));
    let vlad = encoder(array![[0.0f32, 1.0, 2.0]], "ssr,l2", Backend::Cpu)
        .encode_ragged(rows.view(), &[0])
        .expect("valid input");
    assert_eq!(vlad.dim(), (0, 3));
}
