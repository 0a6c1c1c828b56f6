"""NetVLAD pooling written the usual ways in numpy, at the shape of
benches/netvlad.rs (L = 1200 features, F = 512, K = 64, float32), for
BENCHMARKS.md. Run: python3 benches/netvlad_numpy.py [images] [repeats]

* "layer": the PyTorch NetVLAD layer's forward pass, literally: 1x1 conv
  (a matmul), softmax over K, the broadcast residuals (L, K, F) weighted and
  summed, intra then l2 (F.normalize's max(norm, 1e-12));
* "gemm": the same pooling with the residual sum as A^T X - (sum A) C, all
  images at once (batched matmul, numpy's BLAS).

Prints the median seconds per repeat and the per-image time; the Rust
benchmark's 1000-image figure compares with images x per-image time.
"""
import sys
import time

import numpy as np

L, F, K = 1200, 512, 64


def normalize(x, axis):
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def layer(x, w, b, c):
    out = np.empty((x.shape[0], K * F), dtype=np.float32)
    for t in range(x.shape[0]):
        a = softmax(x[t] @ w.T + b)                      # (L, K)
        residual = x[t][:, None, :] - c[None, :, :]      # (L, K, F)
        vlad = (residual * a[:, :, None]).sum(axis=0)    # (K, F)
        out[t] = normalize(normalize(vlad, 1).reshape(-1), 0)
    return out


def gemm(x, w, b, c):
    a = softmax(x @ w.T + b)                             # (T, L, K)
    vlad = np.matmul(a.transpose(0, 2, 1), x) - a.sum(axis=1)[:, :, None] * c
    vlad = normalize(vlad, 2).reshape(x.shape[0], -1)
    return normalize(vlad, 1)


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    rng = np.random.default_rng(7)
    x = rng.random((images, L, F), dtype=np.float32) - 0.5
    x /= np.linalg.norm(x, axis=2, keepdims=True)
    c = rng.random((K, F), dtype=np.float32) - 0.5
    w = (60.0 * c + 0.1 * (rng.random((K, F), dtype=np.float32) - 0.5)).astype(np.float32)
    b = (rng.random(K, dtype=np.float32) - 0.5).astype(np.float32)
    ref = layer(x, w, b, c)
    assert np.allclose(ref, gemm(x, w, b, c), atol=1e-5)
    print(f"numpy {np.__version__}, {images} images x {L} x F={F}, K={K}, median of {repeats}")
    for name, fn in (("layer", layer), ("gemm", gemm)):
        s = median_time(lambda: fn(x, w, b, c), repeats)
        print(f"{name:6} {s:8.3f} s  {1e3 * s / images:8.2f} ms/image  "
              f"{1000 * s / images:8.2f} s per 1000 images")


if __name__ == "__main__":
    main()
