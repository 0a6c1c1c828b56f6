"""NetVLAD pooling as the usual PyTorch NetVLAD layer computes it, on the
CPU, at the shape of benches/netvlad.rs (L = 1200 features, F = 512,
K = 64, float32), for BENCHMARKS.md. Run:

    python3 benches/netvlad_torch.py [images] [repeats] [threads] [device]

threads 0 keeps torch's default; device is "cpu" (the default) or "cuda"
(the data then lives on the GPU: device-only times, synchronized).

The forward pass is the widely copied layer's (Arandjelovic et al.'s
NetVLAD as in the pytorch-NetVlad repository): a 1x1 convolution for the
logits, softmax over K, the broadcast residuals (N, K, F, L) weighted by
the soft assignment and summed over L, then intra-normalization and l2
(F.normalize). A second variant, "gemm", is the same pooling as
A^T X - (sum A) C with batched matmuls. Both run under torch.no_grad() on
torch's own CPU threads (default: all cores).

Prints the median seconds per repeat and the time per 1000 images. Exits 0
with a message, timing nothing, when torch is not installed (it is not a
dependency of vlad or of its tests).
"""
import sys
import time


def main():
    try:
        import torch
        import torch.nn.functional as F_
    except ImportError:
        print("netvlad_torch.py: torch is not installed; nothing timed "
              "(pip install torch --index-url https://download.pytorch.org/whl/cpu)")
        return 0
    L, F, K = 1200, 512, 64
    images = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if len(sys.argv) > 3 and int(sys.argv[3]) > 0:
        torch.set_num_threads(int(sys.argv[3]))
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    gen = torch.Generator().manual_seed(7)
    x = torch.rand((images, L, F), generator=gen) - 0.5
    x = F_.normalize(x, dim=2)
    c = torch.rand((K, F), generator=gen) - 0.5
    w = 60.0 * c + 0.1 * (torch.rand((K, F), generator=gen) - 0.5)
    b = torch.rand(K, generator=gen) - 0.5
    x, c, w, b = (t.to(device) for t in (x, c, w, b))
    conv = torch.nn.Conv2d(F, K, kernel_size=1, bias=True).to(device)
    with torch.no_grad():
        conv.weight.copy_(w[:, :, None, None])
        conv.bias.copy_(b)

    def sync():
        if device != "cpu":
            torch.cuda.synchronize()

    def layer(x):
        # The layer's input is a feature map (N, F, H, W); here W = 1.
        fmap = x.transpose(1, 2)[:, :, :, None]                 # (N, F, L, 1)
        n = fmap.shape[0]
        soft = F_.softmax(conv(fmap).view(n, K, -1), dim=1)    # (N, K, L)
        flat = fmap.view(n, F, -1)                              # (N, F, L)
        residual = flat.expand(K, -1, -1, -1).permute(1, 0, 2, 3) - \
            c.expand(flat.size(-1), -1, -1).permute(1, 2, 0).unsqueeze(0)
        residual = residual * soft.unsqueeze(2)                 # (N, K, F, L)
        vlad = residual.sum(dim=-1)                             # (N, K, F)
        vlad = F_.normalize(vlad, p=2, dim=2)
        return F_.normalize(vlad.view(n, -1), p=2, dim=1)

    def gemm(x):
        a = F_.softmax(x @ w.T + b, dim=2)                      # (N, L, K)
        vlad = a.transpose(1, 2) @ x - a.sum(dim=1)[:, :, None] * c
        vlad = F_.normalize(vlad, p=2, dim=2)
        return F_.normalize(vlad.reshape(x.shape[0], -1), p=2, dim=1)

    def per_image(fn):
        # One image at a time, as the layer runs on a batch that fits.
        return lambda: [fn(x[t:t + 1]) for t in range(images)]

    with torch.no_grad():
        assert torch.allclose(layer(x[:2]), gemm(x[:2]), atol=1e-5)
        print(f"torch {torch.__version__} on {device}, {torch.get_num_threads()} threads, "
              f"{images} images x {L} x F={F}, K={K}, median of {repeats}")
        for name, fn in (("layer", per_image(layer)), ("gemm", lambda: gemm(x))):
            fn()  # warm-up
            sync()
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                fn()
                sync()
                times.append(time.perf_counter() - start)
            s = sorted(times)[len(times) // 2]
            print(f"{name:6} {s:8.3f} s  {1e3 * s / images:8.2f} ms/image  "
                  f"{1000 * s / images:8.2f} s per 1000 images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
