#!/usr/bin/env python3
"""The usual hand-rolled PyTorch VLAD, timed the way `vlad bench` times vlad.

What users write when they move the numpy version to CUDA: one matmul for the
distances, an argmin for the labels, `index_add_` to scatter-add descriptors
into (image, cluster) rows, a `bincount` for the counts, then the centroid
subtraction and `ssr,l2` normalization. It is the baseline the device check
(benches/device-check.sh) puts beside vlad's gpu backend.

For each shape T,L,F,K it reports, as the median of --repeats timed runs after
a warm-up:
  * device_seconds: the work on data already on the GPU (CUDA events);
  * host_seconds: numpy in, numpy out (upload, work, read-back), the
    comparable figure to vlad's end-to-end `total`;
and whether two runs give bitwise identical output (`index_add_` on CUDA
uses floating-point atomics, so usually not).

The data are Gaussian blobs like vlad's synthetic ones (seeded numpy, not
the same bits). With --save DIR, one shape's (--save-shape, default the last) descriptors, centroids and
torch encoding are written as DIR/d.npy, DIR/c.npy, DIR/t.npy, so vlad can
encode the very same data and be compared with it.
"""

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np


def blobs(t, l, f, k, seed=1234):
    rng = np.random.default_rng(seed)
    centres = rng.random((k, f), dtype=np.float32)
    which = rng.integers(0, k, size=t * l)
    x = centres[which] + rng.normal(0, 0.1, size=(t * l, f)).astype(np.float32)
    # The codebook: k of the descriptors, as a k-means++ seed would start.
    c = x[rng.choice(t * l, size=k, replace=False)].copy()
    return x.reshape(t, l, f), c


def torch_vlad(torch, x, c):
    """x (T, L, F) and c (K, F) float32 CUDA tensors → (T, K·F) ssr,l2 VLAD."""
    t, l, f = x.shape
    k = c.shape[0]
    flat = x.reshape(-1, f)
    # ‖v − c‖² = ‖v‖² − 2 v·c + ‖c‖²; ‖v‖² does not change the argmin.
    d = (c * c).sum(1)[None, :] - 2.0 * flat @ c.T
    labels = d.argmin(1)
    image = torch.arange(t, device=x.device).repeat_interleave(l)
    key = image * k + labels
    sums = torch.zeros(t * k, f, device=x.device, dtype=x.dtype)
    sums.index_add_(0, key, flat)
    counts = torch.bincount(key, minlength=t * k).to(x.dtype)
    resid = sums - counts[:, None] * c.repeat(t, 1)
    v = resid.reshape(t, k * f)
    v = torch.sign(v) * torch.sqrt(torch.abs(v))
    norm = torch.linalg.vector_norm(v, dim=1, keepdim=True)
    return torch.where(norm > 0, v / torch.clamp(norm, min=1e-30), v)


def time_shape(torch, shape, repeats, save_dir):
    t, l, f, k = shape
    x_np, c_np = blobs(t, l, f, k)
    dev = torch.device("cuda")
    x = torch.from_numpy(x_np).to(dev)
    c = torch.from_numpy(c_np).to(dev)
    torch_vlad(torch, x, c)  # warm-up: kernels, allocator
    torch.cuda.synchronize()

    device_times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        torch_vlad(torch, x, c)
        end.record()
        torch.cuda.synchronize()
        device_times.append(start.elapsed_time(end) / 1e3)

    host_times = []
    out = None
    for _ in range(repeats):
        s = time.perf_counter()
        xd = torch.from_numpy(x_np).to(dev)
        cd = torch.from_numpy(c_np).to(dev)
        out = torch_vlad(torch, xd, cd).cpu().numpy()
        host_times.append(time.perf_counter() - s)

    a = torch_vlad(torch, x, c).cpu().numpy()
    b = torch_vlad(torch, x, c).cpu().numpy()
    repeatable = bool(np.array_equal(a.view(np.uint32), b.view(np.uint32)))
    if save_dir:
        os.makedirs(save_dir, exist_ok=True)
        np.save(os.path.join(save_dir, "d.npy"), x_np)
        np.save(os.path.join(save_dir, "c.npy"), c_np)
        np.save(os.path.join(save_dir, "t.npy"), out)
    n = t * l
    dev_med = statistics.median(device_times)
    host_med = statistics.median(host_times)
    return {
        "images": t, "per_image": l, "dim": f, "clusters": k,
        "repeats": repeats,
        "device_seconds": dev_med,
        "device_min_seconds": min(device_times),
        "host_seconds": host_med,
        "host_min_seconds": min(host_times),
        "descriptors_per_second_device": n / dev_med,
        "descriptors_per_second_host": n / host_med,
        "bitwise_repeatable": repeatable,
        "max_abs_diff_between_two_runs": float(np.abs(a - b).max()),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", nargs="+", default=["256,128,64,16", "200,500,128,64", "2000,500,128,256"],
                   help="T,L,F,K shapes")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--save", default=None, help="write one shape's d.npy, c.npy, t.npy here")
    p.add_argument("--save-shape", default=None,
                   help="the T,L,F,K shape to save (default: the last one)")
    p.add_argument("--json", default=None, help="write the results here as JSON")
    args = p.parse_args()
    try:
        import torch
    except ImportError:
        print("torch_vlad: PyTorch is not installed; nothing to compare", file=sys.stderr)
        return 0
    if not torch.cuda.is_available():
        print("torch_vlad: no CUDA device; nothing to compare", file=sys.stderr)
        return 0
    shapes = [tuple(int(v) for v in s.split(",")) for s in args.shapes]
    results = []
    keep = tuple(int(v) for v in args.save_shape.split(",")) if args.save_shape else shapes[-1]
    for shape in shapes:
        save = args.save if shape == keep else None
        r = time_shape(torch, shape, args.repeats, save)
        results.append(r)
        print(f"torch {shape}: device {r['device_seconds']*1e3:.3f} ms, host-to-host "
              f"{r['host_seconds']*1e3:.3f} ms, bitwise repeatable: {r['bitwise_repeatable']}")
    doc = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "shapes": results}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
