"""vlad.ray (SPEC §13) on a local Ray cluster of 2 CPUs: encoding equals one
Encoder bit for bit, k-means is the same whatever the concurrency, a killed
actor changes nothing, bad input is named."""

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import vlad

ray = pytest.importorskip("ray")
import vlad.ray  # noqa: E402  (needs Ray)

F = 16


def ragged_images(count, seed=0, max_rows=40):
    """Ragged float32 images, every seventh one empty."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max_rows, size=count)
    sizes[::7] = 0
    return [rng.standard_normal((int(n), F)).astype(np.float32) for n in sizes]


def image_dataset(images, blocks):
    items = [
        {"id": i, "name": f"img{i}", "descriptors": image} for i, image in enumerate(images)
    ]
    return ray.data.from_items(items, override_num_blocks=blocks)


def test_import_vlad_does_not_import_ray():
    code = "import sys, vlad; assert 'ray' not in sys.modules, 'vlad imported ray'; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("concurrency", [1, 2])
def test_encode_equals_one_encoder_bit_for_bit(ray_cluster, concurrency):
    images = ragged_images(60)
    assert any(len(a) == 0 for a in images)
    rng = np.random.default_rng(1)
    centroids = rng.standard_normal((8, F)).astype(np.float32)
    ds = image_dataset(images, blocks=6)
    assert ds.materialize().num_blocks() >= 5
    rows = vlad.ray.encode(
        ds, centroids, norm="ssr,l2", backend="cpu", concurrency=concurrency, batch_size=7
    ).take_all()
    assert len(rows) == len(images)
    rows.sort(key=lambda r: r["id"])
    assert [r["name"] for r in rows] == [f"img{i}" for i in range(len(images))]
    assert all("descriptors" not in r for r in rows)
    got = np.stack([r["vlad"] for r in rows])
    expected = vlad.Encoder(centroids, norm="ssr,l2", backend="cpu").encode(images)
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    # An empty image encodes to a zero row.
    assert not got[0].any()


def test_encode_with_whitening_equals_one_encoder_bit_for_bit(ray_cluster):
    images = ragged_images(30, seed=5)
    rng = np.random.default_rng(2)
    centroids = rng.standard_normal((4, F)).astype(np.float32)
    raw = vlad.Encoder(centroids, backend="cpu").encode(images)
    w = vlad.Whitening(10).fit(raw)
    rows = vlad.ray.encode(
        image_dataset(images, blocks=3), centroids, backend="cpu", batch_size=8, whitening=w
    ).take_all()
    rows.sort(key=lambda r: r["id"])
    got = np.stack([r["vlad"] for r in rows])
    expected = vlad.Encoder(centroids, backend="cpu", whitening=w).encode(images)
    assert got.shape == (30, 10)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))


def kmeans_images():
    return ragged_images(120, seed=3, max_rows=60)


def test_kmeans_is_bitwise_identical_for_concurrency_1_2_4(ray_cluster):
    images = kmeans_images()
    fits = []
    # Ray's own blocks differ too (3 and 7): the sample and its blocks come
    # from the data, not from how Ray split it.
    for concurrency, blocks in [(1, 3), (2, 7), (4, 5)]:
        km = vlad.ray.kmeans(
            image_dataset(images, blocks), 12, n_iter=8, seed=5, max_points_per_centroid=200,
            concurrency=concurrency, backend="cpu", block_rows=300, tol=0, num_cpus=0.5,
        )
        fits.append(km)
    first = fits[0]
    assert isinstance(first, vlad.KMeans)
    assert first.cluster_centers_.shape == (12, F) and first.cluster_centers_.dtype == np.float32
    assert first.training_points_ == 12 * 200 and first.blocks_ == 8
    assert first.n_iter_ == 8
    for other in fits[1:]:
        assert np.array_equal(first.cluster_centers_.view(np.uint32), other.cluster_centers_.view(np.uint32))
        assert other.inertia_history_ == first.inertia_history_
        assert other.inertia_ == first.inertia_
    # The inertia never increases (Lloyd), and the result predicts.
    history = first.inertia_history_
    assert all(b <= a * (1 + 1e-12) for a, b in zip(history, history[1:]))
    assert first.predict(images[1]).shape == (len(images[1]),)


def test_kmeans_on_one_block_is_vlad_kmeans_on_the_sample(ray_cluster):
    images = kmeans_images()
    ds = image_dataset(images, 4)
    km = vlad.ray.kmeans(ds, 10, seed=9, max_points_per_centroid=None, backend="cpu", concurrency=2)
    sample = vlad.ray.sample(ds, 10, seed=9, max_points_per_centroid=None)
    assert sample.shape == (sum(len(a) for a in images), F)
    library = vlad.KMeans(10, seed=9, max_points_per_centroid=None, backend="cpu").fit(sample)
    assert np.array_equal(km.cluster_centers_, library.cluster_centers_)
    assert km.inertia_history_ == library.inertia_history_
    assert km.inertia_ == library.inertia_ and km.n_iter_ == library.n_iter_


def test_killing_an_actor_mid_job_changes_nothing(ray_cluster):
    images = ragged_images(400, seed=4, max_rows=80)
    settings = dict(
        n_iter=25, seed=2, max_points_per_centroid=None, concurrency=2, backend="cpu",
        block_rows=200, tol=0,
    )
    expected = vlad.ray.kmeans(image_dataset(images, 4), 16, **settings)

    outcome = {}

    def job():
        try:
            outcome["fit"] = vlad.ray.kmeans(image_dataset(images, 4), 16, **settings)
        except BaseException as error:  # reported by the assertions below
            outcome["error"] = error

    thread = threading.Thread(target=job)
    thread.start()
    killed = None
    deadline = time.monotonic() + 120
    while killed is None and thread.is_alive() and time.monotonic() < deadline:
        names = [n for n in ray.util.list_named_actors() if n.startswith("vlad-lloyd-")]
        if names:
            killed = sorted(names)[0]
            # Restarts allowed: Ray restarts the actor and retries its tasks.
            ray.kill(ray.get_actor(killed), no_restart=False)
            running_when_killed = thread.is_alive()
        else:
            time.sleep(0.01)
    thread.join(timeout=180)
    assert killed is not None, "the job ended before its actors could be seen"
    assert running_when_killed
    assert "error" not in outcome, outcome.get("error")
    fit = outcome["fit"]
    assert np.array_equal(fit.cluster_centers_, expected.cluster_centers_)
    assert fit.inertia_history_ == expected.inertia_history_ and fit.inertia_ == expected.inertia_


def test_a_nan_fails_naming_the_row(ray_cluster):
    images = ragged_images(30, seed=6)
    images[17][2, 5] = np.nan
    centroids = np.random.default_rng(2).standard_normal((4, F)).astype(np.float32)
    with pytest.raises(Exception) as caught:
        # num_cpus=0: Ray Data (2.60) keeps a failed job's actor pool, and
        # its CPU, until the driver exits; this session's later jobs need it.
        vlad.ray.encode(image_dataset(images, 5), centroids, backend="cpu", num_cpus=0).take_all()
    # Ray wraps the actor's exception; the InputError is in the chain.
    chain, error = [], caught.value
    while error is not None and len(chain) < 10:
        chain.append(error)
        error = error.__cause__ or getattr(error, "cause", None)
    named = [e for e in chain if isinstance(e, vlad.InputError)]
    assert named, chain
    assert "id = 17: non-finite value nan" in str(named[0].args[0])
    with pytest.raises(vlad.InputError, match=r"id = 17: non-finite value nan .* descriptor 2, column 5"):
        vlad.ray.kmeans(image_dataset(images, 5), 4, backend="cpu")


def test_a_wrong_width_fails_naming_the_row(ray_cluster):
    images = ragged_images(20, seed=7)
    images[9] = np.ones((3, F + 1), np.float32)
    with pytest.raises(vlad.InputError, match=r"id = 9: dimension mismatch"):
        vlad.ray.kmeans(image_dataset(images, 3), 4, backend="cpu")


def test_the_restart_bound_goes_only_where_ray_still_takes_it():
    from vlad.ray._encode import _restart_bound

    def with_remote_args(fn, *, batch_size=None, **ray_remote_args):
        pass

    def named_only(fn, *, batch_size=None, num_cpus=None):
        pass

    assert _restart_bound(with_remote_args) == {"max_restarts": 4, "max_task_retries": 4}
    assert _restart_bound(named_only) == {}


def test_encode_warns_the_caller_of_nothing(ray_cluster):
    import warnings

    centroids = np.random.default_rng(2).standard_normal((4, F)).astype(np.float32)
    ds = image_dataset(ragged_images(5), blocks=1)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vlad.ray.encode(ds, centroids, backend="cpu")
    assert [str(w.message) for w in caught if "ray_remote_args" in str(w.message)] == []
