//! Interop with a trained PyTorch NetVLAD layer (docs/netvlad.md).
//!
//! `netvlad_forward` below re-implements, literally and in f64, the forward
//! pass of the usual PyTorch layer (Arandjelović et al.'s NetVLAD as in
//! Nanne's `pytorch-NetVlad`, `netvlad.py`):
//!
//! ```python
//! soft_assign = self.conv(x).view(N, K, -1)          # 1×1 conv, (K, D, 1, 1) + bias
//! soft_assign = F.softmax(soft_assign, dim=1)        # over K
//! residual = x_flatten.expand(K, ...).permute(1, 0, 2, 3) \
//!     - self.centroids.expand(...).permute(1, 2, 0).unsqueeze(0)
//! residual *= soft_assign.unsqueeze(2)
//! vlad = residual.sum(dim=-1)                        # (N, K, D)
//! vlad = F.normalize(vlad, p=2, dim=2)               # intra
//! vlad = F.normalize(vlad.view(N, -1), p=2, dim=1)   # l2
//! ```
//!
//! on a feature map `x (N, D, H, W)` (already L2-normalized per location
//! when the layer has `normalize_input=True`: the caller's job in vlad too).
//! It shares nothing with the library. The library is then fed the same
//! parameters docs/netvlad.md maps: conv weight `(K, D, 1, 1)` → `W (K, D)`, conv
//! bias → `b (K,)`, `centroids (K, D)` → the codebook, each image's
//! descriptors `x[n].reshape(D, H·W).T`, normalization `intra,l2`.

use ndarray::{Array1, Array2, Array3, Array4, Axis};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vlad::{Assignment, Backend, Codebook, Encoder};

/// `F.normalize(v, p=2)`: `v / max(‖v‖, 1e-12)`.
fn torch_normalize(v: &mut [f64]) {
    let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

/// The layer's forward pass, `(N, K·D)`.
fn netvlad_forward(
    x: &Array4<f64>,
    conv_weight: &Array4<f64>,
    conv_bias: &Array1<f64>,
    centroids: &Array2<f64>,
) -> Array2<f64> {
    let (n, d, h, w) = x.dim();
    let k = conv_weight.dim().0;
    let positions = h * w;
    let mut out = Array2::<f64>::zeros((n, k * d));
    for image in 0..n {
        // conv1x1: soft_assign[k, p] = Σ_d weight[k, d, 0, 0]·x[d, p] + bias[k]
        let mut soft = Array2::<f64>::zeros((k, positions));
        for c in 0..k {
            for p in 0..positions {
                let (i, j) = (p / w, p % w);
                let mut z = conv_bias[c];
                for dd in 0..d {
                    z += conv_weight[[c, dd, 0, 0]] * x[[image, dd, i, j]];
                }
                soft[[c, p]] = z;
            }
        }
        // softmax over dim=1 (K) — torch subtracts the max too.
        for p in 0..positions {
            let max = (0..k)
                .map(|c| soft[[c, p]])
                .fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = (0..k).map(|c| (soft[[c, p]] - max).exp()).sum();
            for c in 0..k {
                soft[[c, p]] = (soft[[c, p]] - max).exp() / total;
            }
        }
        // residual (K, D, P) weighted, summed over P.
        let mut vlad = Array3::<f64>::zeros((1, k, d));
        for c in 0..k {
            for dd in 0..d {
                let mut s = 0.0;
                for p in 0..positions {
                    let (i, j) = (p / w, p % w);
                    s += (x[[image, dd, i, j]] - centroids[[c, dd]]) * soft[[c, p]];
                }
                vlad[[0, c, dd]] = s;
            }
        }
        for c in 0..k {
            let mut block: Vec<f64> = (0..d).map(|dd| vlad[[0, c, dd]]).collect();
            torch_normalize(&mut block);
            for dd in 0..d {
                out[[image, c * d + dd]] = block[dd];
            }
        }
        let mut row = out.row(image).to_vec();
        torch_normalize(&mut row);
        out.row_mut(image).assign(&Array1::from(row));
    }
    out
}

#[test]
fn matches_a_pytorch_netvlad_layer() {
    let (n, d, h, w, k) = (3, 24, 5, 7, 8);
    let mut rng = ChaCha8Rng::seed_from_u64(2024);
    // A feature map, L2-normalized per location (normalize_input=True).
    let mut x = Array4::from_shape_fn((n, d, h, w), |_| rng.random::<f64>() - 0.3);
    for image in 0..n {
        for i in 0..h {
            for j in 0..w {
                let mut v: Vec<f64> = (0..d).map(|dd| x[[image, dd, i, j]]).collect();
                torch_normalize(&mut v);
                for dd in 0..d {
                    x[[image, dd, i, j]] = v[dd];
                }
            }
        }
    }
    // "Trained" parameters: NetVLAD's init (2α·c, −α‖c‖) perturbed, so the
    // test does not depend on W and b being tied to the centroids.
    let centroids = Array2::from_shape_fn((k, d), |_| rng.random::<f64>() - 0.3);
    let alpha = 20.0;
    let conv_weight = Array4::from_shape_fn((k, d, 1, 1), |(c, dd, _, _)| {
        2.0 * alpha * centroids[[c, dd]] + rng.random::<f64>() - 0.5
    });
    let conv_bias = Array1::from_shape_fn(k, |c| {
        -alpha * centroids.row(c).dot(&centroids.row(c)).sqrt() + rng.random::<f64>()
    });
    let want = netvlad_forward(&x, &conv_weight, &conv_bias, &centroids);

    // The mapping of docs/netvlad.md.
    let weights = conv_weight
        .index_axis(Axis(3), 0)
        .index_axis(Axis(2), 0)
        .mapv(|v| v as f32);
    let bias = conv_bias.mapv(|v| v as f32);
    let codebook = Codebook::from_f64(centroids.view()).unwrap();
    // (N, D, H, W) → (N, H·W, D): descriptors[n] = x[n].reshape(D, H·W).T
    let descriptors = Array3::from_shape_fn((n, h * w, d), |(image, p, dd)| {
        x[[image, dd, p / w, p % w]] as f32
    });
    let assignment = Assignment::soft(weights.view(), bias.view()).unwrap();
    let mut backends = vec![Backend::Reference, Backend::Cpu];
    if cfg!(feature = "gpu") && std::env::var_os("VLAD_TEST_GPU_SOFT").is_some() {
        backends.push(Backend::Gpu);
    }
    for backend in backends {
        let got = Encoder::builder(codebook.clone())
            .assignment(assignment.clone())
            .normalization("intra,l2".parse().unwrap())
            .backend(backend)
            .build()
            .encode(descriptors.view())
            .unwrap();
        assert_eq!(got.dim(), (n, k * d));
        for ((i, j), &g) in got.indexed_iter() {
            let r = want[[i, j]];
            assert!(
                ((g as f64) - r).abs() <= 1e-5,
                "{backend}: [{i}, {j}] {g} vs {r}"
            );
        }
    }
}
