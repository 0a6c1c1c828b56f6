//! `vlad bench --descriptors D.npy --centroids C.npy [--offsets O.npy]`:
//! the benchmark on the user's files (issue 9, item 5).

use ndarray::{Array1, Array2};

use crate::util::{Cmd, Folder, p, stderr, stdout};

#[test]
fn bench_runs_on_the_users_files() {
    let folder = Folder::new();
    let (n, f, k) = (300usize, 8usize, 4usize);
    let d = folder.write(
        "d.npy",
        &Array2::from_shape_fn((n, f), |(i, j)| ((i * 13 + j * 7) % 17) as f64 / 17.0),
    );
    let c = folder.write(
        "c.npy",
        &Array2::from_shape_fn((k, f), |(i, j)| ((i * 5 + j) % 11) as f32 / 11.0),
    );
    let o = folder.write("o.npy", &Array1::from(vec![0u32, 100, 100, 300]));
    let run = Cmd::new("bench")
        .descriptors(&d)
        .centroids(&c)
        .offsets(&o)
        .backend("cpu")
        .backend("reference")
        .repeats(3)
        .json()
        .run();
    assert!(run.status.success(), "{}", stderr(&run));
    let v: serde_json::Value = serde_json::from_str(&stdout(&run)).unwrap();
    assert_eq!(v["images"], 3);
    assert_eq!(v["clusters"], k);
    assert_eq!(v["dim"], f);
    let rows = v["rows"].as_array().unwrap();
    for backend in ["cpu", "reference"] {
        let total = rows
            .iter()
            .find(|r| r["backend"] == backend && r["stage"] == "total")
            .unwrap_or_else(|| panic!("{backend} total in {v}"));
        assert!(total["median_seconds"].as_f64().unwrap() > 0.0);
    }
    assert!(stderr(&run).contains(p(&d)), "{}", stderr(&run));

    // A width mismatch is bad input, naming both files.
    let wide = folder.write("wide.npy", &Array2::<f32>::zeros((k, f + 1)));
    let bad = Cmd::new("bench")
        .descriptors(&d)
        .centroids(&wide)
        .backend("cpu")
        .run();
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    // --descriptors without --centroids is a usage error.
    let usage = Cmd::new("bench").descriptors(&d).run();
    assert_eq!(usage.status.code(), Some(2));
}
