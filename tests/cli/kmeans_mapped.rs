//! `vlad kmeans` on a memory-mapped input: the sample gathered from the map
//! in small windows gives the codebook the library trains in memory.

use ndarray::{Array2, ShapeBuilder};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::Backend;
use vlad::kmeans::KMeans;

use crate::common::cases::normal_matrix;
use crate::util::{Cmd, Folder, read, stderr};

#[test]
fn sampled_kmeans_from_the_map_is_the_in_memory_codebook() {
    let (n, f, k) = (20_000usize, 8usize, 6usize);
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let rows = normal_matrix(&mut rng, n, f);
    let folder = Folder::new();
    // Fortran order: converted window by window.
    let mut fortran = Array2::<f32>::zeros((n, f).f());
    fortran.assign(&rows);
    for (name, array) in [("c.npy", &rows), ("f.npy", &fortran)] {
        let input = folder.write(name, array);
        let out = folder.path("centroids.npy");
        let run = Cmd::kmeans()
            .descriptors(&input)
            .k(6)
            .out(&out)
            .backend("cpu")
            .flag("--max-points-per-centroid", 100)
            .flag("--iters", 5)
            .memory_limit("64KiB")
            .run();
        assert!(run.status.success(), "{}", stderr(&run));
        let streamed: Array2<f32> = read(&out);
        let in_memory = KMeans::new(k)
            .iterations(5)
            .max_points_per_centroid(Some(100))
            .backend(Backend::Cpu)
            .fit(rows.view())
            .unwrap();
        let want = in_memory.codebook.centroids();
        assert_eq!(streamed.dim(), want.dim());
        for (a, b) in streamed.iter().zip(want.iter()) {
            assert_eq!(a.to_bits(), b.to_bits(), "{name}");
        }
    }
}

#[test]
fn a_nan_outside_the_sample_is_still_refused() {
    let (n, f) = (5_000usize, 4usize);
    let mut rows = Array2::from_shape_fn((n, f), |(i, j)| ((i * 7 + j) % 13) as f32);
    rows[[n - 2, 1]] = f32::NAN;
    let folder = Folder::new();
    let input = folder.write("d.npy", &rows);
    let out = folder.path("c.npy");
    let run = Cmd::kmeans()
        .descriptors(&input)
        .k(2)
        .out(&out)
        .backend("cpu")
        .flag("--max-points-per-centroid", 10)
        .memory_limit("16KiB")
        .run();
    assert_eq!(run.status.code(), Some(2), "{}", stderr(&run));
    assert!(
        stderr(&run).contains(&format!("row {}", n - 2)),
        "{}",
        stderr(&run)
    );
    assert!(!out.exists());
}
