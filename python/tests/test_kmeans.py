"""vlad.KMeans: scikit-learn's shape, deterministic for a seed whatever the
thread count, and bit for bit the `vlad kmeans` command line's output."""

import json
import subprocess

import numpy as np
import pytest

import oracle
import vlad
from conftest import codebook, descriptors_near, run_python, vlad_binary

CENTRES = codebook(k=12, f=8, seed=50)


def data(n=3000, seed=51, dtype=np.float32):
    x = descriptors_near(CENTRES, n, seed=seed, spread=10.0)
    return np.round(x).astype(dtype) if dtype == np.uint8 else x.astype(dtype)


def test_fit_returns_self_with_fitted_attributes():
    x = data()
    km = vlad.KMeans(n_clusters=12, seed=3, backend="cpu")
    assert not hasattr(km, "cluster_centers_")
    assert km.fit(x) is km
    assert km.cluster_centers_.shape == (12, 8) and km.cluster_centers_.dtype == np.float32
    assert 1 <= km.n_iter_ <= 25 and len(km.inertia_history_) == km.n_iter_
    assert all(b <= a * (1 + 1e-6) for a, b in zip(km.inertia_history_, km.inertia_history_[1:]))
    assert km.n_features_in_ == 8 and km.backend_ == "cpu"
    # inertia_: f64 sum over the training points (all 3000: 12 × 256 > 3000).
    assert km.training_points_ == 3000
    labels = oracle.assign(x, km.cluster_centers_)
    want = sum(np.sum((x[i].astype(np.float64) - km.cluster_centers_[l]) ** 2) for i, l in enumerate(labels))
    assert km.inertia_ == pytest.approx(want, rel=1e-9)


def test_predict_is_the_nearest_centroid():
    x = data()
    km = vlad.KMeans(12, seed=3, backend="cpu").fit(x)
    labels = km.predict(x)
    assert labels.dtype == np.int64 and labels.shape == (3000,)
    oracle.check_labels(labels, x.astype(np.float64), km.cluster_centers_.astype(np.float64))
    np.testing.assert_array_equal(km.fit_predict(x), labels)
    with pytest.raises(AttributeError, match="not fitted"):
        vlad.KMeans(3).predict(x)


def test_recovers_well_separated_clusters():
    x = data(seed=52)
    km = vlad.KMeans(12, seed=9, backend="cpu").fit(x)
    found = km.cluster_centers_.astype(np.float64)
    for c in CENTRES:
        assert np.min(np.linalg.norm(found - c, axis=1)) < 3.0


def test_same_seed_same_centroids_other_seed_others():
    x = data()
    a = vlad.KMeans(12, seed=5, backend="cpu").fit(x).cluster_centers_
    b = vlad.KMeans(12, seed=5, backend="cpu").fit(x).cluster_centers_
    c = vlad.KMeans(12, seed=6, init="random", backend="cpu").fit(x).cluster_centers_
    assert a.tobytes() == b.tobytes()
    assert a.tobytes() != c.tobytes()


def test_whatever_the_thread_count():
    code = """
import hashlib, numpy as np, vlad
rng = np.random.default_rng(53)
x = (rng.normal(size=(20000, 16)) + rng.integers(0, 8, size=(20000, 1)) * 4).astype(np.float32)
km = vlad.KMeans(16, seed=11, max_points_per_centroid=None, backend="cpu").fit(x)
print(hashlib.sha256(km.cluster_centers_.tobytes()).hexdigest(), repr(km.inertia_), km.n_iter_)
"""
    outs = []
    for threads in ("1", "2", "3"):
        run = run_python(code, env={"RAYON_NUM_THREADS": threads})
        assert run.returncode == 0, run.stderr
        outs.append(run.stdout)
    assert outs[0] == outs[1] == outs[2]


# (data kwargs, KMeans kwargs, CLI arguments)
CLI_CASES = [
    ({}, dict(n_clusters=12, seed=7), ["-k", "12", "--seed", "7"]),
    (
        dict(n=5000, seed=54),
        dict(n_clusters=10, n_iter=7, seed=8, init="random", max_points_per_centroid=100, tol=0.0),
        ["-k", "10", "--iters", "7", "--seed", "8", "--init", "random",
         "--max-points-per-centroid", "100", "--tolerance", "0"],
    ),
    (
        dict(dtype=np.uint8, seed=55),
        dict(n_clusters=6, seed=9, max_points_per_centroid=None),
        ["-k", "6", "--seed", "9", "--max-points-per-centroid", "0"],
    ),
    (
        dict(dtype=np.float64, seed=56),
        dict(n_clusters=12, seed=10, tol=1e-2),
        ["-k", "12", "--seed", "10", "--tolerance", "0.01"],
    ),
]


@pytest.mark.parametrize("case", CLI_CASES, ids=["defaults", "random-subsample", "uint8-all", "f64-tol"])
def test_bit_identical_to_the_command_line(tmp_path, case):
    data_kwargs, km_kwargs, cli_args = case
    x = data(**data_kwargs)
    if data_kwargs.get("dtype") == np.uint8:
        x = x.reshape(30, 100, 8)  # (T, L, F) images: all T·L rows, as the CLI reads them
    np.save(tmp_path / "x.npy", x)
    run = subprocess.run(
        [str(vlad_binary()), "kmeans", "--descriptors", str(tmp_path / "x.npy"),
         "--out", str(tmp_path / "c.npy"), "--backend", "cpu", "--json", *cli_args],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    cli = json.loads(run.stdout)
    theirs = np.load(tmp_path / "c.npy")
    km = vlad.KMeans(backend="cpu", **km_kwargs).fit(x)
    assert km.cluster_centers_.dtype == theirs.dtype == np.float32
    assert km.cluster_centers_.tobytes() == theirs.tobytes()
    assert km.inertia_ == cli["inertia"]
    assert km.n_iter_ == cli["iterations"]
    assert km.inertia_history_ == cli["inertia_history"]
    assert km.training_points_ == cli["training_points"]


def test_lists_and_orders_train_the_same():
    x = data(n=1200, seed=57)
    a = vlad.KMeans(12, seed=1, backend="cpu").fit(x).cluster_centers_
    b = vlad.KMeans(12, seed=1, backend="cpu").fit([x[:500], x[500:]]).cluster_centers_
    c = vlad.KMeans(12, seed=1, backend="cpu").fit(np.asfortranarray(x)).cluster_centers_
    assert a.tobytes() == b.tobytes() == c.tobytes()


def test_bad_input_and_parameters():
    x = data(n=100)
    with pytest.raises(vlad.InputError, match="non-finite value NaN at row 3"):
        y = x.copy()
        y[3, 2] = np.nan
        vlad.KMeans(4, backend="cpu").fit(y)
    with pytest.raises(vlad.InputError, match=r"non-finite value inf at row 7 \(image 1\)"):
        y = x.copy().reshape(20, 5, 8)
        y[1, 2, 0] = np.inf
        vlad.KMeans(4, backend="cpu").fit(y)
    with pytest.raises(vlad.InputError, match="at least one cluster"):
        vlad.KMeans(0).fit(x)
    with pytest.raises(vlad.InputError, match="distinct"):
        vlad.KMeans(5, backend="cpu").fit(np.ones((50, 8), np.float32))
    with pytest.raises(vlad.InputError, match="no reference backend"):
        vlad.KMeans(4, backend="reference").fit(x)
    with pytest.raises(vlad.InputError, match="unknown k-means init"):
        vlad.KMeans(4, init="forgy").fit(x)
    with pytest.raises(vlad.InputError, match="tol = -1"):
        vlad.KMeans(4, tol=-1).fit(x)
    # As scikit-learn's estimators do, integers are converted (to float32;
    # test_sklearn.py), while anything else numeric or not is refused.
    with pytest.raises(vlad.InputError, match="must be float32, float64 or uint8"):
        vlad.KMeans(4).fit(x.astype(np.complex64).reshape(20, 5, 8))


def test_gpu_kmeans_on_lavapipe():
    from conftest import require_gpu

    require_gpu()
    x = data(seed=58)
    km = vlad.KMeans(12, seed=2, backend="gpu").fit(x)
    assert km.backend_ == "gpu" and km.adapter_
    again = vlad.KMeans(12, seed=2, backend="gpu").fit(x)
    assert km.cluster_centers_.tobytes() == again.cluster_centers_.tobytes()
    cpu = vlad.KMeans(12, seed=2, backend="cpu").fit(x)
    assert km.inertia_ == pytest.approx(cpu.inertia_, rel=1e-3)


def test_sklearn_protocol():
    km = vlad.KMeans(7, seed=3)
    assert km.get_params()["n_clusters"] == 7
    assert km.set_params(n_iter=3) is km and km.n_iter == 3
    assert "n_clusters=7" in repr(km)
    with pytest.raises(ValueError):
        km.set_params(max_iter=3)


def test_report_attributes_and_auto_never_takes_a_software_adapter():
    x = descriptors_near(codebook(k=4, f=6, seed=60), 400, seed=61)
    km = vlad.KMeans(4, backend="cpu").fit(x)
    assert km.backend_ == "cpu" and km.adapter_ is None and km.adapter_kind_ is None
    assert km.fallback_reason_ is None and km.setup_seconds_ == 0 and km.seconds_ > 0
    auto = vlad.KMeans(4, backend="auto").fit(x)
    assert auto.backend_ == vlad.adapters()["auto"]["backend"]
    if auto.backend_ == "cpu":
        assert auto.fallback_reason_
        assert np.array_equal(auto.cluster_centers_, km.cluster_centers_)
    else:
        assert auto.adapter_kind_ != "software"


def test_verbose_prints_progress_lines_on_stderr():
    code = """
import numpy as np, vlad
x = np.random.default_rng(0).normal(size=(300, 5))
vlad.KMeans(3, n_iter=4, tol=0, backend="cpu", verbose=2).fit(x)
vlad.KMeans(3, n_iter=4, tol=0, backend="cpu").fit(x)
"""
    run = run_python(code)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    lines = run.stderr.splitlines()
    assert lines[0].startswith("kmeans: 3 centroids from 300 of 300 points (5 dims)")
    iterations = [ln for ln in lines if ln.startswith("kmeans: iteration ")]
    assert [ln.split(":")[1] for ln in iterations] == [f" iteration {i}/4" for i in (1, 2, 3, 4)]
    assert all(": inertia " in ln for ln in iterations)
    assert lines[-1].startswith("kmeans: 4 iterations, inertia ")


def test_init_array_one_iteration_is_one_lloyd_step_by_hand():
    """Vocabulary adaptation: from a codebook trained elsewhere, n_iter=1 is
    one Lloyd step (nearest given centroid, then each cluster's mean),
    computed here in numpy (f64)."""
    x = data(n=2000, seed=60)
    given = (CENTRES + 0.7).astype(np.float32)
    km = vlad.KMeans(12, n_iter=1, init=given, max_points_per_centroid=None, backend="cpu").fit(x)
    assert km.n_iter_ == 1
    labels = oracle.assign(x, given)
    want = np.stack([x[labels == c].astype(np.float64).mean(axis=0) for c in range(12)])
    assert not np.allclose(want, given)
    np.testing.assert_allclose(km.cluster_centers_, want, rtol=1e-6, atol=1e-5)
    # float64 given centroids are rounded to float32, as an Encoder does.
    again = vlad.KMeans(12, n_iter=1, init=given.astype(np.float64), max_points_per_centroid=None,
                        backend="cpu").fit(x)
    np.testing.assert_array_equal(again.cluster_centers_, km.cluster_centers_)
    assert "init=" in repr(km)


def test_init_array_must_match_n_clusters_width_and_be_finite():
    x = data(n=500)
    for bad in [CENTRES[:5], CENTRES[:, :3], np.zeros(8)]:
        with pytest.raises(vlad.InputError):
            vlad.KMeans(12, init=bad.astype(np.float32), backend="cpu").fit(x)
    nan = CENTRES.astype(np.float32)
    nan[3, 2] = np.nan
    with pytest.raises(vlad.InputError):
        vlad.KMeans(12, init=nan, backend="cpu").fit(x)
