"""benches/retrieval on a tiny subset, so the benchmark cannot rot: its
photographs and SIFT pipeline, its mAP, its stand-ins for the steps after
VLAD, and one fold of its protocol end to end."""

import sys

import numpy as np
import pytest

import vlad
from conftest import IN_CI, ROOT

try:
    import skimage  # noqa: F401
except ImportError:
    # scikit-image is in xtask's PYTHON_REQUIREMENTS, so CI always has it.
    if IN_CI:
        raise
    pytest.skip(
        "scikit-image is not installed: the retrieval benchmark's test needs it "
        "(`pip install scikit-image`, or run `cargo xtask test --python`)",
        allow_module_level=True,
    )

sys.path.insert(0, str(ROOT / "benches" / "retrieval"))

import retrieval  # noqa: E402
from mean_average_precision import average_precision, mean_average_precision  # noqa: E402
from photographs import build_collection  # noqa: E402
from standins import adapt_vocabulary, fit_whitening, multivoc_encode, whiten  # noqa: E402


def test_average_precision_by_hand():
    assert average_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([False, True, False, True]) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert average_precision([True, True]) == 1.0
    with pytest.raises(ValueError):
        average_precision([False, False])


def test_mean_average_precision_leaves_the_query_out_and_breaks_ties_against_it():
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.0, 0.0]])
    family = np.array([0, 0, 1, 1])
    # Queries 0 and 1 find each other first (AP 1). Query 2 ranks 1 (score
    # 0.1), then 0 and 3 tie at 0 and its relevant 3 goes last: AP 1/3.
    # Query 3 (no descriptors) ties everywhere: its relevant 2 goes last.
    assert mean_average_precision(x, family) == pytest.approx((1 + 1 + 1 / 3 + 1 / 3) / 4)
    with pytest.raises(ValueError):
        mean_average_precision(x, np.array([0, 1, 2, 3]))


@pytest.mark.parametrize("n, d", [(40, 6), (8, 30)], ids=["covariance", "gram"])
def test_vlad_whitening_whitens_its_training_set(n, d):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(n, d)) * np.linspace(3.0, 0.5, d)
    dims = min(n - 1, d, 4)
    mean, u, scale = fit_whitening(x, dims)
    assert np.allclose(u.T @ u, np.eye(dims), atol=1e-5)
    assert np.all(u[np.argmax(np.abs(u), axis=0), np.arange(dims)] > 0)
    # The numpy oracle: eigh of the full covariance, same top eigenvalues.
    values = np.linalg.eigvalsh(np.cov(x.astype(np.float32).astype(np.float64).T))[::-1][:dims]
    assert np.allclose((1 / scale) ** 2, values + 1e-6 * values[0], rtol=1e-5)
    y = (x - mean) @ u * scale
    assert np.allclose(y.T @ y / (n - 1), np.eye(dims), atol=1e-3)
    out = whiten(x, x[:3], dims)
    assert out.shape == (3, dims) and np.allclose(np.linalg.norm(out, axis=1), 1.0)
    with pytest.raises(ValueError):
        fit_whitening(x, min(n, d) + 1)


def test_adaptation_standin_is_one_lloyd_step():
    codebook = np.array([[0.0, 0.0], [10.0, 10.0], [100.0, -100.0]], dtype=np.float32)
    rows = np.array([[1.0, 0.0], [0.0, 3.0], [9.0, 11.0]])
    adapted = adapt_vocabulary(codebook, [rows[:2], rows[2:]])
    # Each centroid moves to the mean of its rows; the unchosen one stays.
    assert np.array_equal(adapted, np.array([[0.5, 1.5], [9.0, 11.0], [100.0, -100.0]], dtype=np.float32))


def test_photographs_and_one_fold_of_the_protocol():
    collection = build_collection(
        ("camera", "coins", "astronaut", "chelsea"), ("rotate 10°", "jpeg q10"), max_side=128, max_keypoints=60, seed=3
    )
    assert len(collection.descriptors) == 12
    assert collection.family.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3]
    assert collection.transformation[:3] == ["original", "rotate 10°", "jpeg q10"]
    for d in collection.descriptors:
        assert d.dtype == np.uint8 and d.ndim == 2 and d.shape[1] == 128 and len(d) <= 60
    assert all(len(d) > 0 for d in collection.descriptors), "SIFT found nothing in a 128 px photograph"

    books = [retrieval.codebook(collection.descriptors, 4, seed) for seed in (1, 2)]
    side_by_side = multivoc_encode(books, collection.descriptors, "ssr,l2")
    assert side_by_side.shape == (12, 2 * 4 * 128)
    assert np.array_equal(side_by_side[:, : 4 * 128], retrieval.encode(books[0], collection.descriptors, "ssr,l2"))

    train, evaluate = collection.subset([0, 1]), collection.subset([3, 2])
    assert evaluate.family.tolist() == [2, 2, 2, 3, 3, 3]
    table = {}
    protocol = retrieval.Protocol(clusters=4, dims=(2, 8), vocabularies=2, seed=1)
    retrieval.run_fold(table, train, evaluate, protocol)
    # D′ = 8 is refused: 6 fitting images (rank 5) cannot support it.
    expected = set()
    for base, raw_dims in (("VLAD K=4", 512), ("multivoc 2×K=4", 1024), ("adapted VLAD K=4", 512)):
        expected |= {(base, raw_dims), (f"{base} + PCA", 2), (f"{base} + whitening", 2)}
    assert set(table) == expected
    for cells in table.values():
        assert set(cells) == {(norm, column) for norm in retrieval.NORMS for column in ("fair", "own")}
        for cell in cells.values():
            assert len(cell.folds) == 1 and 0.0 < cell.folds[0] <= 1.0
    assert "| VLAD K=4 | 512 |" in retrieval.markdown(table, ["header"])
