"""An f64 VLAD oracle in plain numpy loops, for the tests only.

It shares nothing with vlad (it must not import it): SPEC §1 and §3 written
out directly, one image, one descriptor, one cluster at a time.
"""

import numpy as np


def assign(rows, centroids):
    """Exact nearest-centroid labels in f64; exact ties go to the lowest k."""
    rows = np.asarray(rows, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    labels = np.empty(len(rows), dtype=np.int64)
    for i, v in enumerate(rows):
        best, best_d = 0, None
        for k, c in enumerate(centroids):
            d = float(np.sum((v - c) ** 2))
            if best_d is None or d < best_d:
                best, best_d = k, d
        labels[i] = best
    return labels


def is_near_tie(v, centroids, got, want, tol=1e-5):
    """SPEC §4: a fast path's label may differ from the exact argmin only
    where the two exact squared distances are within tol·(‖v‖² + max‖c‖²)."""
    v = np.asarray(v, dtype=np.float64)
    c = np.asarray(centroids, dtype=np.float64)
    d_got = np.sum((v - c[got]) ** 2)
    d_want = np.sum((v - c[want]) ** 2)
    scale = np.sum(v * v) + max(np.sum(ck * ck) for ck in c)
    return abs(d_got - d_want) <= tol * scale


def parse_norm(norm):
    """'ssr,l2' → [('power', 0.5), ('l2', None)]."""
    steps = []
    for step in norm.split(","):
        step = step.strip()
        if step == "none":
            continue
        if step == "ssr":
            steps.append(("power", 0.5))
        elif step.startswith("power="):
            steps.append(("power", float(step[len("power="):])))
        else:
            steps.append((step, None))
    return steps


def encode(rows, offsets, centroids, labels, norm):
    """(T, K·F) f64 encodings of rows split by offsets, from the given labels.

    Returns (vlad, scale) where scale[t, k] = Σ_l ‖v_l − c_k‖∞ over the
    descriptors of image t in cluster k (SPEC §4's bound for raw sums).
    """
    rows = np.asarray(rows, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    k_count, dim = centroids.shape
    images = len(offsets) - 1
    out = np.zeros((images, k_count * dim))
    scale = np.zeros((images, k_count))
    steps = parse_norm(norm)
    for t in range(images):
        sums = np.zeros((k_count, dim))
        counts = np.zeros(k_count)
        for i in range(offsets[t], offsets[t + 1]):
            k = labels[i]
            residual = rows[i] - centroids[k]
            sums[k] += residual
            counts[k] += 1
            scale[t, k] += np.max(np.abs(residual))
        for name, alpha in steps:
            if name == "mass":
                for k in range(k_count):
                    if counts[k] > 0:
                        sums[k] /= counts[k]
            elif name == "power":
                sums = np.sign(sums) * np.abs(sums) ** alpha
            elif name == "intra":
                for k in range(k_count):
                    n = np.sqrt(np.sum(sums[k] ** 2))
                    if n > 0:
                        sums[k] /= n
            elif name == "l2":
                n = np.sqrt(np.sum(sums**2))
                if n > 0:
                    sums /= n
            else:
                raise ValueError(f"unknown step {name}")
        out[t] = sums.reshape(-1)
    return out, scale


def check(got, rows, offsets, centroids, labels, norm):
    """Assert SPEC §4 for an encoding `got` computed from `labels`."""
    want, scale = encode(rows, offsets, centroids, labels, norm)
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    steps = parse_norm(norm)
    last = steps[-1][0] if steps else None
    if last in ("l2", "intra"):
        err = np.max(np.abs(got - want), initial=0.0)
        assert err <= 1e-5, f"max abs error {err} > 1e-5 ({norm})"
    elif last == "power":
        bad = np.abs(got - want) > 1e-4 * np.maximum(np.abs(want), 1.0)
        assert not bad.any(), f"{bad.sum()} values off by more than 1e-4 relative ({norm})"
    else:
        # Raw sums (or means): each block within 1e-5 · Σ‖v − c‖∞ (÷ n for means).
        k_count, dim = np.asarray(centroids).shape
        mass = any(name == "mass" for name, _ in steps)
        for t in range(len(offsets) - 1):
            counts = np.bincount(labels[offsets[t]:offsets[t + 1]], minlength=k_count)
            for k in range(k_count):
                block = slice(k * dim, (k + 1) * dim)
                bound = 1e-5 * scale[t, k] / (max(counts[k], 1) if mass else 1)
                err = np.max(np.abs(got[t, block] - want[t, block]))
                assert err <= bound, f"image {t} cluster {k}: {err} > {bound} ({norm})"
    return want


def check_labels(got, rows, centroids):
    """Assert every label is the exact argmin or a near tie of it."""
    want = assign(rows, centroids)
    assert len(got) == len(want)
    for i in np.flatnonzero(np.asarray(got) != want):
        assert is_near_tie(rows[i], centroids, got[i], want[i]), (
            f"label {got[i]} of row {i} is not the nearest centroid {want[i]}"
        )
