//! `vlad pca`, `vlad model`, and `vlad encode --whitening` / `--model`
//! (SPEC §14, §15) as a user runs them: the whitening learned from
//! encodings equals the library's fit, learned from descriptors equals
//! learning from their encodings, the whitened encode equals the library's
//! encoder bit for bit, streamed in small batches too, and bad model files
//! exit 2 naming the entry.

use ndarray::{Array2, Array3};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vlad::{Backend, Codebook, Encoder, Whitening, WhiteningParams};

use crate::common::cases::{normal_matrix, random_matrix};
use crate::util::{Cmd, Folder, read, stderr, stdout};

struct Case {
    folder: Folder,
    descriptors: Array3<f32>,
    codebook: Codebook,
}

fn case() -> Case {
    let folder = Folder::new();
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let descriptors = normal_matrix(&mut rng, 40 * 12, 6)
        .into_shape_with_order((40, 12, 6))
        .unwrap();
    let centroids = random_matrix(&mut rng, 5, 6);
    folder.write("d.npy", &descriptors);
    folder.write("c.npy", &centroids);
    let codebook = Codebook::new(centroids.view()).unwrap();
    Case {
        folder,
        descriptors,
        codebook,
    }
}

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        stderr(out)
    );
}

#[test]
fn pca_from_encodings_is_the_librarys_fit_and_encode_applies_it() {
    let c = case();
    let raw = Encoder::builder(c.codebook.clone())
        .backend(Backend::Cpu)
        .build();
    let v = raw.encode(c.descriptors.view()).unwrap();
    c.folder.write("v.npy", &v);
    let out = Cmd::new("pca")
        .path_flag("--vlad", c.folder.path("v.npy"))
        .flag("--dims", 8)
        .out(c.folder.path("w.npz"))
        .json()
        .run();
    ok(&out);
    assert!(stdout(&out).contains("\"dims_out\":8"), "{}", stdout(&out));
    let w = Whitening::load(c.folder.path("w.npz")).unwrap();
    assert_eq!(w, WhiteningParams::new(8).fit(v.view()).unwrap());

    // Encode with it, streamed in tiny batches: the library's bits.
    let enc = Encoder::builder(c.codebook.clone())
        .backend(Backend::Cpu)
        .whitening(w.clone())
        .try_build()
        .unwrap();
    let want = enc.encode(c.descriptors.view()).unwrap();
    let out = Cmd::encode()
        .descriptors(c.folder.path("d.npy"))
        .centroids(c.folder.path("c.npy"))
        .path_flag("--whitening", c.folder.path("w.npz"))
        .backend("cpu")
        .memory_limit("4KiB")
        .out(c.folder.path("y.npy"))
        .json()
        .verify()
        .run();
    ok(&out);
    assert!(stdout(&out).contains("\"dims_out\":8"), "{}", stdout(&out));
    let got: Array2<f32> = read(&c.folder.path("y.npy"));
    assert_eq!(got, want);

    // Bundled into a model, encoded with --model: the same bits.
    let out = Cmd::new("model")
        .centroids(c.folder.path("c.npy"))
        .path_flag("--whitening", c.folder.path("w.npz"))
        .out(c.folder.path("m.npz"))
        .run();
    ok(&out);
    let out = Cmd::encode()
        .descriptors(c.folder.path("d.npy"))
        .path_flag("--model", c.folder.path("m.npz"))
        .backend("cpu")
        .out(c.folder.path("z.npy"))
        .run();
    ok(&out);
    let got: Array2<f32> = read(&c.folder.path("z.npy"));
    assert_eq!(got, want);
    let loaded = Encoder::load(c.folder.path("m.npz")).unwrap();
    assert_eq!(loaded.dims_out(), 8);
}

#[test]
fn pca_from_descriptors_equals_pca_from_their_encodings() {
    let c = case();
    let raw = Encoder::builder(c.codebook.clone())
        .backend(Backend::Cpu)
        .build();
    let v = raw.encode(c.descriptors.view()).unwrap();
    let out = Cmd::new("pca")
        .descriptors(c.folder.path("d.npy"))
        .centroids(c.folder.path("c.npy"))
        .backend("cpu")
        .flag("--dims", 5)
        .flag("--power", 0)
        .flag("--post", "none")
        .out(c.folder.path("w.npz"))
        .run();
    ok(&out);
    let w = Whitening::load(c.folder.path("w.npz")).unwrap();
    let want = WhiteningParams::new(5)
        .power(0.0)
        .post("none".parse().unwrap())
        .fit(v.view())
        .unwrap();
    assert_eq!(w, want);
    // No temporary file is left beside the output.
    assert_eq!(
        c.folder
            .listing()
            .iter()
            .filter(|n| n.starts_with(".vlad-pca"))
            .count(),
        0
    );
}

#[test]
fn bad_whitening_and_model_files_exit_2_naming_what_is_wrong() {
    let c = case();
    c.folder.write_bytes("junk.npz", b"not a zip file");
    let out = Cmd::encode()
        .descriptors(c.folder.path("d.npy"))
        .centroids(c.folder.path("c.npy"))
        .path_flag("--whitening", c.folder.path("junk.npz"))
        .out(c.folder.path("y.npy"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("junk.npz"), "{}", stderr(&out));
    assert!(!c.folder.path("y.npy").exists());
    // A whitening of another width than K·F.
    let w = WhiteningParams::new(2)
        .fit(normal_matrix(&mut ChaCha8Rng::seed_from_u64(1), 10, 7).view())
        .unwrap();
    w.save(c.folder.path("w7.npz")).unwrap();
    let out = Cmd::encode()
        .descriptors(c.folder.path("d.npy"))
        .centroids(c.folder.path("c.npy"))
        .path_flag("--whitening", c.folder.path("w7.npz"))
        .out(c.folder.path("y.npy"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("D = 7"), "{}", stderr(&out));
    // --model of a whitening alone has no codebook.
    let out = Cmd::encode()
        .descriptors(c.folder.path("d.npy"))
        .path_flag("--model", c.folder.path("w7.npz"))
        .out(c.folder.path("y.npy"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("codebook"), "{}", stderr(&out));
    // D′ larger than min(n, D).
    c.folder.write(
        "v.npy",
        &normal_matrix(&mut ChaCha8Rng::seed_from_u64(2), 4, 9),
    );
    let out = Cmd::new("pca")
        .path_flag("--vlad", c.folder.path("v.npy"))
        .flag("--dims", 5)
        .out(c.folder.path("w.npz"))
        .run();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("min(n, D) = 4"), "{}", stderr(&out));
    assert!(!c.folder.path("w.npz").exists());
}
