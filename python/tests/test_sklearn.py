"""scikit-learn compatibility (SPEC §15): vlad.KMeans and vlad.VLAD pass
scikit-learn's own check_estimator, work in Pipeline with scikit-learn's
steps, and keep the documented extensions (3-D and ragged input)."""

import os
import sys

import numpy as np
import pytest

import vlad
from conftest import IN_CI, codebook, descriptors_near, run_python


def require_sklearn():
    """scikit-learn is in CI's requirements: missing there is a failure."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("CI is set but scikit-learn is not installed (PYTHON_REQUIREMENTS)")
        pytest.skip("scikit-learn is not installed (pip install 'vlad-gpu[sklearn]')")


def run_checks(estimator):
    """Every check scikit-learn runs on this estimator, one result each."""
    from sklearn.utils.estimator_checks import check_estimator

    results = check_estimator(estimator, on_fail=None, on_skip=None)
    lines = [f"{r['status']:8} {r['check_name']}" for r in results]
    summary = {}
    for r in results:
        summary[r["status"]] = summary.get(r["status"], 0) + 1
    # Shown with `pytest -s` (and in the issue note): what ran, what was skipped.
    sys.stderr.write(f"\n{estimator!r}: {summary}\n" + "\n".join(lines) + "\n")
    failed = [(r["check_name"], repr(r["exception"])) for r in results if r["status"] == "failed"]
    return results, failed


def skipped_reasons(results):
    return {r["check_name"]: str(r["exception"]) for r in results if r["status"] == "skipped"}


# Checks scikit-learn skips for want of an optional package, never because
# of the estimator: pandas/polars/pyarrow dataframes, the array API.
OPTIONAL = ("pandas", "polars", "pyarrow", "array_api", "array-api")


def assert_only_optional_skips(results):
    for name, reason in skipped_reasons(results).items():
        assert any(word in reason.lower() or word in name for word in OPTIONAL), (name, reason)


def test_kmeans_passes_check_estimator():
    require_sklearn()
    results, failed = run_checks(vlad.KMeans(n_clusters=3))
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) >= 40
    assert_only_optional_skips(results)


def test_vlad_passes_check_estimator():
    require_sklearn()
    results, failed = run_checks(vlad.VLAD(n_clusters=3))
    assert not failed, failed
    assert sum(r["status"] == "passed" for r in results) >= 40
    assert_only_optional_skips(results)


def test_clone_get_params_round_trip_and_not_fitted():
    require_sklearn()
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    km = vlad.KMeans(n_clusters=5, seed=3, init="random", backend="cpu")
    again = clone(km)
    assert again is not km and again.get_params() == km.get_params()
    assert vlad.KMeans(**km.get_params()).get_params() == km.get_params()
    with pytest.raises(NotFittedError, match="not fitted"):
        km.predict(np.zeros((2, 3), np.float32))
    with pytest.raises(NotFittedError):
        vlad.VLAD().transform(np.zeros((2, 3), np.float32))
    with pytest.raises(ValueError, match="Invalid parameter"):
        km.set_params(max_iter=3)


def test_kmeans_labels_and_fit_predict():
    x = descriptors_near(codebook(k=4, f=3, seed=1), 300, seed=2)
    km = vlad.KMeans(n_clusters=4, backend="cpu").fit(x)
    assert km.labels_.dtype == np.int64 and km.labels_.shape == (300,)
    np.testing.assert_array_equal(km.labels_, km.predict(x))
    np.testing.assert_array_equal(vlad.KMeans(n_clusters=4, backend="cpu").fit_predict(x), km.labels_)
    assert not hasattr(vlad.KMeans(4, backend="cpu", compute_labels=False).fit(x), "labels_")
    # Integers become float32, as scikit-learn converts them.
    ints = np.round(x).astype(np.int64)
    a = vlad.KMeans(4, backend="cpu").fit(ints).cluster_centers_
    b = vlad.KMeans(4, backend="cpu").fit(ints.astype(np.float32)).cluster_centers_
    assert a.tobytes() == b.tobytes()
    with pytest.raises(ValueError, match="X has 2 features, but KMeans is expecting 3"):
        km.predict(x[:, :2])
    with pytest.raises(vlad.InputError, match="n_samples=3 should be >= n_clusters=4"):
        vlad.KMeans(4).fit(x[:3])


def test_vlad_rows_are_one_descriptor_images_and_extensions_are_images():
    c = codebook(k=4, f=3, seed=3)
    images = [descriptors_near(c, n, seed=10 + n) for n in (30, 1, 50, 7)]
    rows = np.concatenate(images)
    model = vlad.VLAD(n_clusters=4, backend="cpu").fit(images)
    enc = vlad.Encoder(model.cluster_centers_, norm="ssr,l2", backend="cpu")
    # The codebook is KMeans' on every descriptor.
    assert model.cluster_centers_.tobytes() == vlad.KMeans(4, backend="cpu").fit(rows).cluster_centers_.tobytes()
    # Ragged: one row per image.
    assert model.transform(images).tobytes() == enc.encode(images).tobytes()
    # (T, L, F): one row per image.
    fixed = rows[:80].reshape(8, 10, 3)
    assert model.transform(fixed).tobytes() == enc.encode(fixed).tobytes()
    # 2-D: each row one image of one descriptor.
    V = model.transform(rows)
    assert V.shape == (len(rows), 12) and V.dtype == np.float32
    assert V.tobytes() == enc.encode(rows[:, None, :]).tobytes()
    assert list(model.get_feature_names_out()[:4]) == ["c0_x0", "c0_x1", "c0_x2", "c1_x0"]


def test_vlad_in_a_pipeline_with_sklearn_steps_and_set_output():
    require_sklearn()
    pd = pytest.importorskip("pandas")
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = descriptors_near(codebook(k=4, f=3, seed=4), 200, seed=5)
    pipe = make_pipeline(StandardScaler(), vlad.VLAD(n_clusters=4, backend="cpu"), PCA(n_components=3))
    out = pipe.fit_transform(x)
    assert out.shape == (200, 3)
    frame = make_pipeline(StandardScaler(), vlad.VLAD(n_clusters=4, backend="cpu")).set_output(
        transform="pandas"
    ).fit_transform(pd.DataFrame(x, columns=["a", "b", "c"]))
    assert isinstance(frame, pd.DataFrame) and list(frame.columns[:3]) == ["c0_a", "c0_b", "c0_c"]


class Whitening:
    """A duck-typed whitening (vlad.Whitening's interface): fit, transform."""

    def fit(self, V):
        self.mean_ = V.mean(axis=0)
        return self

    def transform(self, V):
        return V - self.mean_


def test_whitening_is_fitted_on_copies_and_applied_after_encoding():
    x = descriptors_near(codebook(k=3, f=3, seed=6), 120, seed=7)
    given = Whitening()
    model = vlad.VLAD(n_clusters=3, backend="cpu", whitening=given).fit(x)
    assert not hasattr(given, "mean_") and model.whitening_ is not given
    raw = vlad.VLAD(n_clusters=3, backend="cpu").fit(x).transform(x)
    np.testing.assert_array_equal(model.transform(x), raw - raw.mean(axis=0))


def test_import_vlad_does_not_need_sklearn():
    # A finder that refuses scikit-learn, as if it were not installed.
    code = """
import sys
class NoSklearn:
    def find_spec(self, name, path=None, target=None):
        if name == "sklearn" or name.startswith("sklearn."):
            raise ImportError("no scikit-learn here")
sys.meta_path.insert(0, NoSklearn())
import numpy as np, vlad
import vlad._sklearn as compat
assert not compat.HAVE_SKLEARN
x = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
km = vlad.KMeans(n_clusters=3, backend="cpu")
assert km.get_params()["n_clusters"] == 3 and "n_clusters=3" in repr(km)
try:
    km.predict(x)
except compat.NotFittedError as e:
    assert isinstance(e, ValueError) and isinstance(e, AttributeError)
else:
    raise AssertionError("predict before fit")
labels = km.fit_predict(x)
assert labels.shape == (200,) and (labels == km.predict(x)).all()
V = vlad.VLAD(n_clusters=3, backend="cpu").fit_transform(x)
assert V.shape == (200, 9)
try:
    km.predict(x[:, :2])
except ValueError as e:
    assert "X has 2 features, but KMeans is expecting 3" in str(e)
else:
    raise AssertionError("wrong width")
print("ok")
"""
    run = run_python(code)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr
