"""NetVLAD's soft assignment and the `rn` step (SPEC §10) from Python,
against a numpy f64 oracle written here (it shares nothing with the
library): a = softmax(w·v + b), Σ a·(v − c) per cluster, then the
normalization; the α form is w = 2α·c, b = −α‖c‖²."""

import numpy as np
import pytest

import vlad
from conftest import require_gpu

K, F = 6, 8
RNG = np.random.default_rng(120)
C = RNG.normal(size=(K, F)).astype(np.float32)
W = RNG.normal(scale=0.7, size=(K, F)).astype(np.float32)
B = RNG.normal(scale=0.5, size=K).astype(np.float32)
ROWS = (C[RNG.integers(0, K, size=300)] + RNG.normal(scale=0.6, size=(300, F))).astype(
    np.float32
)
# Four images, one of them empty.
OFFSETS = np.array([0, 120, 120, 250, 300], np.int64)


def soft_oracle(rows, offsets, c, w, b, norm, hard=False):
    """(T, K·F) f64 encodings under soft (or, with hard=True, nearest-
    centroid) assignment, `rn` if it heads `norm`, then mass, power,
    intra and l2 as in SPEC §3."""
    rows, c = rows.astype(np.float64), c.astype(np.float64)
    steps = [s.strip() for s in norm.split(",") if s.strip() != "none"]
    rn = bool(steps) and steps[0] == "rn"
    steps = steps[1:] if rn else steps
    if hard:
        d = ((rows[:, None, :] - c[None, :, :]) ** 2).sum(-1)
        a = np.zeros((len(rows), len(c)))
        a[np.arange(len(rows)), d.argmin(1)] = 1.0
    else:
        logits = rows @ w.astype(np.float64).T + b.astype(np.float64)
        logits -= logits.max(axis=1, keepdims=True)
        e = np.exp(logits)
        a = e / e.sum(axis=1, keepdims=True)
    out = np.zeros((len(offsets) - 1, c.size))
    for t in range(len(offsets) - 1):
        v, at = rows[offsets[t]:offsets[t + 1]], a[offsets[t]:offsets[t + 1]]
        res = v[:, None, :] - c[None, :, :]  # (n, K, F)
        if rn:
            n = np.sqrt((res**2).sum(-1, keepdims=True))
            res = np.divide(res, n, out=np.zeros_like(res), where=n > 0)
        sums = (at[:, :, None] * res).sum(0)  # (K, F)
        mass = at.sum(0)
        for step in steps:
            if step == "mass":
                sums = np.divide(sums, mass[:, None], out=sums.copy(), where=mass[:, None] > 0)
            elif step == "ssr" or step.startswith("power="):
                p = 0.5 if step == "ssr" else float(step[len("power="):])
                sums = np.sign(sums) * np.abs(sums) ** p
            elif step == "intra":
                n = np.sqrt((sums**2).sum(1, keepdims=True))
                sums = np.divide(sums, n, out=sums.copy(), where=n > 0)
            elif step == "l2":
                n = np.sqrt((sums**2).sum())
                sums = sums / n if n > 0 else sums
            else:
                raise ValueError(step)
        out[t] = sums.reshape(-1)
    return out


def alpha_params(c, alpha):
    """w = 2α·c, b = −α‖c‖², in f64 and rounded once to float32 (as the
    library computes them)."""
    c = c.astype(np.float64)
    return (2 * alpha * c).astype(np.float32), (-alpha * (c**2).sum(1)).astype(np.float32)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
@pytest.mark.parametrize("norm", ["intra,l2", "ssr,l2", "none", "mass", "rn,intra,l2"])
def test_soft_weights_and_bias_match_the_oracle(backend, norm):
    enc = vlad.Encoder(C, norm=norm, backend=backend, assignment="soft", weights=W, bias=B)
    assert enc.assignment == "soft"
    got = enc.encode(ROWS, OFFSETS)
    want = soft_oracle(ROWS, OFFSETS, C, W, B, norm)
    assert got.dtype == np.float32 and got.shape == (4, K * F)
    assert np.all(got[1] == 0), "an empty image encodes to zeros"
    # §4: 1e-5 absolute after a normalization; raw sums relative to their size.
    scale = 1.0 if norm.endswith("l2") else max(1.0, np.abs(want).max())
    assert np.max(np.abs(got - want)) <= 1e-5 * scale
    # Soft blocks are in general all non-zero.
    assert np.count_nonzero(np.abs(got[0].reshape(K, F)).sum(1)) == K


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_soft_alpha_is_softmax_of_minus_alpha_distance(backend):
    alpha = 3.0
    enc = vlad.Encoder(C, norm="intra,l2", backend=backend, assignment="soft", alpha=alpha)
    assert enc.assignment == "soft-alpha"
    got = enc.encode(ROWS, OFFSETS)
    w, b = alpha_params(C, alpha)
    assert np.max(np.abs(got - soft_oracle(ROWS, OFFSETS, C, w, b, "intra,l2"))) <= 1e-5
    # The same as giving those parameters explicitly.
    explicit = vlad.Encoder(C, norm="intra,l2", backend=backend, assignment="soft",
                            weights=w, bias=b).encode(ROWS, OFFSETS)
    assert np.max(np.abs(got - explicit)) <= 1e-6


def test_float64_parameters_are_rounded_to_float32():
    got = vlad.Encoder(C, backend="cpu", assignment="soft",
                       weights=W.astype(np.float64), bias=B.astype(np.float64)).encode(ROWS)
    same = vlad.Encoder(C, backend="cpu", assignment="soft", weights=W, bias=B).encode(ROWS)
    assert np.array_equal(got, same)


@pytest.mark.parametrize("backend", ["cpu", "reference"])
def test_rn_with_hard_assignment(backend):
    got = vlad.Encoder(C, norm="rn,ssr,l2", backend=backend).encode(ROWS, OFFSETS)
    want = soft_oracle(ROWS, OFFSETS, C, None, None, "rn,ssr,l2", hard=True)
    assert np.max(np.abs(got - want)) <= 1e-5


def test_verify_checks_soft_encodings():
    enc = vlad.Encoder(C, norm="intra,l2", backend="cpu", assignment="soft", weights=W, bias=B)
    assert enc.verify(ROWS, offsets=OFFSETS).passed
    bad = enc.encode(ROWS, OFFSETS)
    bad[0, 3] += 1e-3
    with pytest.raises(vlad.VerificationError) as info:
        enc.verify(ROWS, vlad=bad, offsets=OFFSETS)
    assert info.value.verification.violations >= 1


def test_gpu_runs_soft_assignment_and_rn():
    require_gpu()
    x = ROWS[:50].reshape(5, 10, F)
    for kwargs in [dict(assignment="soft", alpha=2.0), dict(assignment="soft", weights=W, bias=B)]:
        for norm in ["intra,l2", "rn,mass,intra,l2"]:
            gpu = vlad.Encoder(C, norm=norm, backend="gpu", **kwargs).encode_batch(x)
            assert gpu.report.backend == "gpu"
            cpu = vlad.Encoder(C, norm=norm, backend="cpu", **kwargs).encode(x)
            assert np.max(np.abs(gpu.vlad - cpu)) <= 2e-5, (kwargs, norm)
    gpu = vlad.Encoder(C, norm="rn,l2", backend="gpu").encode(x)
    cpu = vlad.Encoder(C, norm="rn,l2", backend="cpu").encode(x)
    assert np.max(np.abs(gpu - cpu)) <= 2e-5


def test_auto_runs_cpu_on_a_software_adapter():
    x = ROWS[:50].reshape(5, 10, F)
    out = vlad.Encoder(C, backend="auto", assignment="soft", alpha=2.0).encode_batch(x)
    cpu = vlad.Encoder(C, backend="cpu", assignment="soft", alpha=2.0).encode(x)
    if out.report.backend == "cpu":
        assert np.array_equal(out.vlad, cpu)
    else:
        assert np.max(np.abs(out.vlad - cpu)) <= 2e-5


@pytest.mark.parametrize(
    "kwargs, words",
    [
        (dict(weights=W, bias=B), 'assignment="hard" takes no weights'),
        (dict(alpha=1.0), 'assignment="hard" takes no weights'),
        (dict(assignment="soft"), "needs weights (K, F) and bias (K,), or alpha"),
        (dict(assignment="soft", weights=W), "needs bias too"),
        (dict(assignment="soft", bias=B), "needs weights too"),
        (dict(assignment="soft", weights=W, bias=B, alpha=1.0), "not both"),
        (dict(assignment="fuzzy", alpha=1.0), 'must be "hard" or "soft"'),
        (dict(assignment="soft", alpha=0.0), "α must be a finite number > 0"),
        (dict(assignment="soft", alpha=float("nan")), "α must be a finite number > 0"),
        (dict(assignment="soft", weights=W[:, :5], bias=B), "dimension mismatch"),
        (dict(assignment="soft", weights=W, bias=B[:5]), "bias has 5 entries"),
        (dict(assignment="soft", weights=W, bias=B[:, None]), "bias must be (K,)"),
        (dict(assignment="soft", weights=W.astype(np.int32), bias=B), "float32 or float64"),
        (dict(assignment="soft", weights=np.where(np.eye(K, F) > 0, np.inf, W), bias=B),
         "non-finite value inf at row 0"),
    ],
)
def test_bad_assignment_arguments_are_input_errors(kwargs, words):
    with pytest.raises(vlad.InputError) as info:
        vlad.Encoder(C, backend="cpu", **kwargs)
    assert isinstance(info.value, ValueError)
    assert words in str(info.value), str(info.value)
