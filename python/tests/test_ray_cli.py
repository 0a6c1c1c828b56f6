"""``python -m vlad.ray``: Parquet shards (and .npy/offsets pairs) in,
Parquet shards out, joining the tests' cluster through RAY_ADDRESS; a bad
shard fails naming it and leaves nothing behind."""

import os
import subprocess
import sys

import numpy as np
import pytest

import vlad
from conftest import ROOT

ray = pytest.importorskip("ray")
pa = pytest.importorskip("pyarrow")
import pyarrow.parquet as pq  # noqa: E402

import vlad.ray  # noqa: E402  (needs Ray)

F = 8


def write_shards(folder, count=3, per_shard=12, nan_at=None):
    """Parquet shards of ragged images (flat list<float32>, one empty image
    per shard); returns {id: image}."""
    rng = np.random.default_rng(11)
    images = {}
    for s in range(count):
        ids = list(range(100 * s, 100 * s + per_shard))
        sizes = rng.integers(1, 30, size=per_shard)
        sizes[3] = 0
        shard = [rng.standard_normal((int(n), F)).astype(np.float32) for n in sizes]
        for i, image in zip(ids, shard):
            if i == nan_at:
                image[1, 2] = np.nan
            images[i] = image
        table = pa.table(
            {
                "id": pa.array(ids, type=pa.int64()),
                "descriptors": pa.array([a.reshape(-1) for a in shard], type=pa.list_(pa.float32())),
            }
        )
        pq.write_table(table, folder / f"shard{s}.parquet")
    return images


def run(address, *args):
    env = dict(os.environ, RAY_ADDRESS=address)
    env["PYTHONPATH"] = str(ROOT / "python") + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run(
        [sys.executable, "-m", "vlad.ray", *map(str, args)],
        capture_output=True, text=True, env=env, timeout=600,
    )


def test_encode_round_trips_parquet_shards(ray_cluster, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    images = write_shards(shards)
    centroids = np.random.default_rng(3).standard_normal((5, F)).astype(np.float32)
    np.save(tmp_path / "C.npy", centroids)
    out = tmp_path / "encoded"
    done = run(
        ray_cluster, "encode", "--input", shards / "*.parquet", "--centroids", tmp_path / "C.npy",
        "--out", out, "--backend", "cpu", "--concurrency", "1", "--batch-size", "5",
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(out)
    assert table.column_names == ["id", "vlad"]
    assert table.schema.field("vlad").type == pa.list_(pa.float32(), 5 * F)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == sorted(images)
    got = np.stack(table.column("vlad").to_numpy(zero_copy_only=False))[np.argsort(ids)]
    encoder = vlad.Encoder(centroids, backend="cpu")
    expected = encoder.encode([images[i] for i in sorted(images)])
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C.npy", "encoded", "shards"]

    # k-means from the command line is vlad.ray.kmeans in process.
    done = run(
        ray_cluster, "kmeans", "--input", shards / "*.parquet", "-k", "4", "--dim", F,
        "--n-iter", "5", "--out", tmp_path / "K.npy", "--backend", "cpu", "--concurrency", "1",
    )
    assert done.returncode == 0, done.stderr
    trained = np.load(tmp_path / "K.npy")
    ds = ray.data.read_parquet(str(shards), include_paths=True)
    expected = vlad.ray.kmeans(ds, 4, dim=F, n_iter=5, backend="cpu", concurrency=1)
    assert np.array_equal(trained, expected.cluster_centers_)


def test_a_nan_shard_fails_naming_it_and_writes_nothing(ray_cluster, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shards(shards, nan_at=105)
    np.save(tmp_path / "C.npy", np.ones((3, F), np.float32) * np.arange(3)[:, None])
    done = run(
        ray_cluster, "encode", "--input", shards / "*.parquet", "--centroids", tmp_path / "C.npy",
        "--out", tmp_path / "encoded", "--backend", "cpu", "--concurrency", "1",
    )
    assert done.returncode == 2, done.stderr
    assert "shard1.parquet" in done.stderr and "id = 105" in done.stderr, done.stderr
    assert "non-finite value nan" in done.stderr
    # Nothing partial: no output folder, no temporary one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["C.npy", "shards"]


def test_npy_shards_with_bad_offsets_fail_naming_the_shard(ray_cluster, tmp_path):
    rng = np.random.default_rng(5)
    good = rng.standard_normal((10, F)).astype(np.float32)
    np.save(tmp_path / "a.npy", good)
    np.save(tmp_path / "a.offsets.npy", np.array([0, 4, 4, 10]))
    np.save(tmp_path / "b.npy", good)
    np.save(tmp_path / "b.offsets.npy", np.array([0, 6, 3, 10]))
    np.save(tmp_path / "C.npy", good[:3])
    before = sorted(p.name for p in tmp_path.iterdir())
    done = run(
        ray_cluster, "encode", "--input", tmp_path / "[ab].npy", "--centroids", tmp_path / "C.npy",
        "--out", tmp_path / "encoded", "--backend", "cpu", "--concurrency", "1",
    )
    assert done.returncode == 2, done.stderr
    assert "b.npy: invalid offsets: offsets[2] = 3 < offsets[1] = 6" in done.stderr, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before

    # The good shard alone encodes, ids NAME:t.
    done = run(
        ray_cluster, "encode", "--input", tmp_path / "a.npy", "--centroids", tmp_path / "C.npy",
        "--out", tmp_path / "encoded", "--backend", "cpu", "--concurrency", "1",
    )
    assert done.returncode == 0, done.stderr
    table = pq.read_table(tmp_path / "encoded")
    assert sorted(table.column("id").to_pylist()) == ["a:0", "a:1", "a:2"]
    order = np.argsort(table.column("id").to_pylist())
    got = np.stack(table.column("vlad").to_numpy(zero_copy_only=False))[order]
    expected = vlad.Encoder(good[:3], backend="cpu").encode(good, offsets=np.array([0, 4, 4, 10]))
    assert np.array_equal(got, expected)
