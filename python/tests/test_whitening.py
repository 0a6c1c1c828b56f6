"""vlad.Whitening (SPEC §14) and model files (SPEC §15): the fit against a
literal float64 numpy re-implementation (numpy's eigh) in the Gram-invariant
form of the spec, scikit-learn's PCA for p = 0, the encoder's whitened
output on every backend, save/load and pickle round trips (across
processes too), and every bad model file."""

import io
import json
import multiprocessing
import pickle
import zipfile

import numpy as np
import pytest

import vlad

from conftest import require_gpu


def spectrum(seed, n, d):
    """Rows with a decaying spectrum, L2-normalized like VLAD encodings."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)) / (1.0 + np.arange(d)) + 0.1
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def numpy_whitening(x, k, power=-0.5, eps=None):
    """SPEC §14 literally, in float64: the covariance (divisor n − 1), its
    eigh, the top k pairs with their largest entry positive, then
    diag((λ + ε)^p)·Uᵀ(x − μ) and l2."""
    x = x.astype(np.float64)
    mu = x.mean(axis=0)
    c = np.cov(x, rowvar=False)
    lam, u = np.linalg.eigh(c)
    lam, u = lam[::-1][:k], u[:, ::-1][:, :k]
    signs = np.sign(u[np.abs(u).argmax(axis=0), np.arange(k)])
    u = u * signs
    eps = 1e-6 * lam[0] if eps is None else eps
    y = ((x - mu) @ u) * (lam + eps) ** power
    return y / np.linalg.norm(y, axis=1, keepdims=True), lam, u


def gap_ok(x, k):
    lam = np.linalg.eigvalsh(np.cov(x.astype(np.float64), rowvar=False))[::-1]
    return lam[k - 1] - lam[k] > 1e-6 * lam[0]


@pytest.mark.parametrize("n,d,k", [(400, 24, 6), (30, 80, 10)])
def test_fit_matches_numpy_eigh_in_the_gram_invariant_form(n, d, k):
    x = spectrum(1, n, d)
    assert gap_ok(x, k)
    w = vlad.Whitening(k).fit(x)
    y = w.transform(x)
    want, lam, u = numpy_whitening(x, k)
    assert y.shape == (n, k) and y.dtype == np.float32
    assert np.abs(y.astype(np.float64) @ y.T - want @ want.T).max() < 1e-4
    np.testing.assert_allclose(w.explained_variance_, lam, rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(w.mean_, x.astype(np.float64).mean(axis=0), atol=1e-6)
    # The sign rule makes the components themselves comparable.
    assert np.abs(w.components_.T.astype(np.float64) - u).max() < 1e-4
    assert w.components_.shape == (k, d) and w.n_features_in_ == d


def test_power_zero_is_scikit_learns_pca():
    decomposition = pytest.importorskip("sklearn.decomposition")
    x = spectrum(2, 300, 16)
    w = vlad.Whitening(5, power=0.0, post="none").fit(x)
    pca = decomposition.PCA(n_components=5, svd_solver="full").fit(x.astype(np.float64))
    np.testing.assert_allclose(w.explained_variance_, pca.explained_variance_, rtol=1e-6)
    y, z = w.transform(x), pca.transform(x.astype(np.float64))
    # Signs may differ per component (scikit-learn flips by another rule).
    np.testing.assert_allclose(np.abs(y), np.abs(z), atol=1e-5)


def test_fit_is_deterministic_and_the_sample_cap_is_seeded():
    x = spectrum(3, 500, 12)
    a = vlad.Whitening(4, max_points=200, seed=5).fit(x)
    b = vlad.Whitening(4, max_points=200, seed=5).fit(x)
    c = vlad.Whitening(4, max_points=200, seed=6).fit(x)
    assert np.array_equal(a.components_, b.components_)
    assert np.array_equal(a.transform(x), b.transform(x))
    assert not np.array_equal(a.mean_, c.mean_)


@pytest.mark.parametrize("backend", ["cpu", "reference", "gpu"])
def test_the_encoder_whitens_on_every_backend(backend):
    if backend == "gpu":
        require_gpu()
    rng = np.random.default_rng(4)
    c = rng.standard_normal((8, 16)).astype(np.float32)
    d = rng.standard_normal((50, 30, 16)).astype(np.float32)
    raw = vlad.Encoder(c, backend="cpu").encode(d)
    w = vlad.Whitening(12).fit(raw)
    enc = vlad.Encoder(c, backend=backend, whitening=w)
    assert enc.dims_out == 12
    out = enc.encode_batch(d)
    assert out.vlad.shape == (50, 12)
    assert np.abs(out.vlad - w.transform(raw)).max() < 1e-4
    if backend == "cpu":
        # The same CPU stage, on the same raw encoding: the same bits.
        assert np.array_equal(out.vlad, w.transform(raw))
    enc.verify(d)  # raises VerificationError outside tolerance


def test_save_load_and_pickle_round_trip_bitwise(tmp_path):
    rng = np.random.default_rng(5)
    c = rng.standard_normal((4, 8)).astype(np.float32)
    d = rng.standard_normal((20, 10, 8)).astype(np.float32)
    w = vlad.Whitening(6, power=-0.5).fit(vlad.Encoder(c, backend="cpu").encode(d))
    enc = vlad.Encoder(c, norm="intra,l2", backend="cpu", whitening=w)
    want = enc.encode(d)
    enc.save(tmp_path / "m.npz")
    back = vlad.load(tmp_path / "m.npz", backend="cpu")
    assert isinstance(back, vlad.Encoder) and back.norm == "intra,l2"
    assert np.array_equal(back.encode(d), want)
    # numpy reads the file too.
    with np.load(tmp_path / "m.npz") as z:
        meta = json.loads(z["metadata"].tobytes())
        assert meta["format"] == "vlad-model" and meta["version"] == 1
        assert np.array_equal(z["centroids"], c)
    w.save(tmp_path / "w.npz")
    w2 = vlad.load(tmp_path / "w.npz")
    assert isinstance(w2, vlad.Whitening)
    assert np.array_equal(w2.components_, w.components_) and w2.eps_ == w.eps_
    for obj in (enc, w):
        clone = pickle.loads(pickle.dumps(obj))
        assert type(clone) is type(obj)
    assert np.array_equal(pickle.loads(pickle.dumps(enc)).encode(d), want)
    raw = vlad.Encoder(c, backend="cpu").encode(d)
    assert np.array_equal(pickle.loads(pickle.dumps(w)).transform(raw), w.transform(raw))


def _encode_in_child(args):
    enc, d = args
    return enc.encode(d)


def test_pickled_encoder_crosses_processes():
    rng = np.random.default_rng(6)
    c = rng.standard_normal((4, 8)).astype(np.float32)
    d = rng.standard_normal((10, 10, 8)).astype(np.float32)
    w = vlad.Whitening(5).fit(vlad.Encoder(c, backend="cpu").encode(d))
    enc = vlad.Encoder(c, backend="cpu", whitening=w)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.map(_encode_in_child, [(enc, d)])[0]
    assert np.array_equal(got, enc.encode(d))


def _rewrite(path, out, drop=None, replace=None):
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for item in src.infolist():
            if item.filename == drop:
                continue
            data = src.read(item.filename)
            if replace and item.filename in replace:
                data = replace[item.filename]
            dst.writestr(item, data)


def _npy_bytes(array):
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def test_bad_model_files_are_clear_errors(tmp_path):
    rng = np.random.default_rng(7)
    c = rng.standard_normal((4, 8)).astype(np.float32)
    d = rng.standard_normal((20, 10, 8)).astype(np.float32)
    w = vlad.Whitening(3).fit(vlad.Encoder(c, backend="cpu").encode(d))
    good = tmp_path / "good.npz"
    vlad.Encoder(c, backend="cpu", whitening=w).save(good)
    cases = {
        "missing.npz": dict(drop="whitening_components.npy"),
        "malformed.npz": dict(replace={"centroids.npy": b"not an npy file"}),
        "newer.npz": dict(
            replace={
                "metadata.npy": _npy_bytes(
                    np.frombuffer(
                        json.dumps(
                            {"format": "vlad-model", "version": 99, "normalization": "ssr,l2",
                             "assignment": {"kind": "hard"}, "vocabularies": 1, "whitening": None}
                        ).encode(),
                        dtype=np.uint8,
                    )
                )
            }
        ),
    }
    expect = {
        "missing.npz": "whitening_components",
        "malformed.npz": "centroids",
        "newer.npz": "newer",
    }
    for name, change in cases.items():
        _rewrite(good, tmp_path / name, **change)
        with pytest.raises(vlad.InputError, match=expect[name]):
            vlad.load(tmp_path / name)
    (tmp_path / "junk.npz").write_bytes(b"PK not really")
    with pytest.raises(vlad.InputError, match="junk.npz"):
        vlad.load(tmp_path / "junk.npz")
    with pytest.raises(ValueError):
        vlad.load(tmp_path / "absent.npz")


def test_bad_parameters_are_input_errors():
    x = spectrum(8, 10, 6)
    with pytest.raises(vlad.InputError, match="min"):
        vlad.Whitening(7).fit(x)
    with pytest.raises(vlad.InputError, match="at least 2"):
        vlad.Whitening(1).fit(x[:1])
    with pytest.raises(vlad.InputError):
        vlad.Whitening(2, post="intra").fit(x)
    with pytest.raises(vlad.InputError, match="D = "):
        vlad.Encoder(np.zeros((2, 4), np.float32) + np.arange(4), whitening=vlad.Whitening(2).fit(x))
    with pytest.raises(AttributeError, match="not fitted"):
        vlad.Whitening(2).transform(x)
