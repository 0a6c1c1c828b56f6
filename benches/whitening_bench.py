"""Whitening's costs (issue 19's aims), measured from Python on this machine:

1. applying a D′ = 256 whitening against the encode it follows, on the cpu
   backend, at the N = 10⁶ shape (2000 × 500 × 128, K = 256, D = 32,768);
2. fitting on n encodings of D = 8,192 (the covariance form: n ≥ D);
3. the GPU read-back with and without whitening (lavapipe here: emulation).

Medians of repeats, interleaved. Run: target/pyenv/bin/python benches/whitening_bench.py
[--quick]. Prints a Markdown table; name the CPU (lscpu) beside it.
"""

import argparse
import statistics
import time

import numpy as np

import vlad


def median_seconds(fn, repeats):
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller shapes")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    t, l, f, k = (400, 500, 128, 256) if args.quick else (2000, 500, 128, 256)
    x = rng.standard_normal((t, l, f), dtype=np.float32)
    c = rng.standard_normal((k, f), dtype=np.float32)
    raw_enc = vlad.Encoder(c, backend="cpu")
    v = raw_enc.encode(x)
    w = vlad.Whitening(256).fit(v)
    white_enc = vlad.Encoder(c, backend="cpu", whitening=w)
    rows = []
    raw_s, white_s = [], []
    for _ in range(args.repeats):
        raw_s.append(median_seconds(lambda: raw_enc.encode(x), 1))
        white_s.append(median_seconds(lambda: white_enc.encode(x), 1))
    raw_m, white_m = statistics.median(raw_s), statistics.median(white_s)
    apply_m = median_seconds(lambda: w.transform(v), args.repeats)
    rows.append((f"cpu encode {t}×{l}×{f}, K={k} (D={k*f})", f"{raw_m*1e3:.1f} ms"))
    rows.append(("cpu encode + whitening D′=256", f"{white_m*1e3:.1f} ms ({(white_m/raw_m-1)*100:+.1f} %)"))
    rows.append(("whitening alone (transform)", f"{apply_m*1e3:.1f} ms ({apply_m/raw_m*100:.1f} % of the encode)"))
    # 2. the fit, covariance form.
    n, d = (2000, 1024) if args.quick else (10000, 8192)
    vv = rng.standard_normal((n, d), dtype=np.float32)
    start = time.perf_counter()
    vlad.Whitening(256, max_points=n).fit(vv)
    rows.append((f"fit {n} × {d} → 256 (covariance form)", f"{time.perf_counter()-start:.1f} s"))
    # 3. GPU read-back (lavapipe: emulation).
    try:
        tg, lg, fg, kg = 200, 100, 128, 64
        xg = rng.standard_normal((tg, lg, fg), dtype=np.float32)
        cg = rng.standard_normal((kg, fg), dtype=np.float32)
        vg = vlad.Encoder(cg, backend="cpu").encode(xg)
        wg = vlad.Whitening(128).fit(vg)
        plain = vlad.Encoder(cg, backend="gpu")
        white = vlad.Encoder(cg, backend="gpu", whitening=wg)
        plain.encode(xg), white.encode(xg)
        for name, e, width in (("raw", plain, kg * fg), ("whitened D′=128", white, 128)):
            stages = [e.encode_batch(xg).report.stages for _ in range(args.repeats)]
            rb = statistics.median(s.get("readback", float("nan")) for s in stages)
            rows.append((f"gpu read-back, {name} ({tg}×{width}×4 = {tg*width*4/1e6:.2f} MB)", f"{rb*1e3:.2f} ms"))
    except vlad.BackendUnavailable as e:
        rows.append(("gpu", f"unavailable: {e}"))
    print("| measure | median |\n| --- | --- |")
    for a, b in rows:
        print(f"| {a} | {b} |")


if __name__ == "__main__":
    main()
