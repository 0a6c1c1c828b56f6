"""Encodings against the f64 oracle (oracle.py, plain numpy loops): fixed
and ragged images, empty images, lists of arrays, every normalization,
given labels, on every backend."""

from functools import lru_cache

import numpy as np
import pytest

import oracle
import vlad
from conftest import codebook, descriptors_near

C = codebook()  # (5, 6) float64
C32 = C.astype(np.float32).astype(np.float64)  # what the library computes with
K, F = C.shape
NORMS = ["none", "ssr,l2", "mass", "intra", "power=0.3", "mass,ssr,intra,l2"]


@lru_cache(maxsize=None)
def encoder(backend, norm="ssr,l2"):
    """One encoder per (backend, norm): a GPU session is made once."""
    return vlad.Encoder(C, norm=norm, backend=backend)


def fixed_images(t=6, l=9, seed=1):
    return descriptors_near(C, t * l, seed=seed).astype(np.float32).reshape(t, l, F)


@pytest.mark.parametrize("norm", NORMS)
def test_fixed_images_every_normalization(backend, norm):
    x = fixed_images()
    rows = x.reshape(-1, F).astype(np.float64)
    offsets = np.arange(0, x.shape[0] * x.shape[1] + 1, x.shape[1])
    out = encoder(backend, norm).encode_batch(x)
    assert out.vlad.shape == (x.shape[0], K * F) and out.vlad.dtype == np.float32
    assert out.labels.shape == (rows.shape[0],) and out.labels.dtype == np.int64
    oracle.check_labels(out.labels, rows, C32)
    oracle.check(out.vlad, rows, offsets, C32, out.labels, norm)
    # encode() is the same computation: bitwise the same on one backend.
    np.testing.assert_array_equal(encoder(backend, norm).encode(x), out.vlad)


@pytest.mark.parametrize("norm", NORMS)
def test_ragged_images_with_empty_ones(backend, norm):
    offsets = np.array([0, 3, 3, 10, 10, 16, 16])  # images 1, 3 and 5 are empty
    rows = descriptors_near(C, 16, seed=2).astype(np.float32)
    out = encoder(backend, norm).encode_batch(rows, offsets=offsets)
    assert out.vlad.shape == (6, K * F)
    for empty in (1, 3, 5):
        assert np.all(out.vlad[empty] == 0.0), "an empty image encodes to a zero row"
    assert not np.isnan(out.vlad).any()
    oracle.check_labels(out.labels, rows, C32)
    oracle.check(out.vlad, rows, offsets, C32, out.labels, norm)


def test_rows_without_offsets_are_one_image(backend):
    rows = descriptors_near(C, 20, seed=3).astype(np.float32)
    v = encoder(backend).encode(rows)
    assert v.shape == (1, K * F)
    oracle.check(v, rows, [0, 20], C32, oracle.assign(rows, C32), "ssr,l2")


def test_list_of_images_equals_rows_with_offsets(backend):
    rng = np.random.default_rng(4)
    images = [
        descriptors_near(C, n, seed=s).astype(np.float32)
        for s, n in zip(range(10, 15), (3, 0, 7, 1, 0))
    ]
    assert images[1].shape == (0, F)
    enc = encoder(backend, "mass,ssr,intra,l2")
    from_list = enc.encode(images)
    offsets = np.concatenate([[0], np.cumsum([len(a) for a in images])])
    rows = np.concatenate(images)
    np.testing.assert_array_equal(from_list, enc.encode(rows, offsets=offsets))
    np.testing.assert_array_equal(enc.encode(tuple(images)), from_list)
    oracle.check(from_list, rows, offsets, C32, oracle.assign(rows, C32), "mass,ssr,intra,l2")
    assert np.all(from_list[1] == 0) and np.all(from_list[4] == 0)
    del rng


def test_no_images_at_all(backend):
    enc = encoder(backend)
    assert enc.encode([]).shape == (0, K * F)
    assert enc.encode(np.zeros((0, 4, F), np.float32)).shape == (0, K * F)
    empty = enc.encode(np.zeros((3, 0, F), np.float32))
    assert empty.shape == (3, K * F) and np.all(empty == 0)


@pytest.mark.parametrize("norm", ["none", "ssr,l2", "mass,ssr,intra,l2"])
def test_given_labels_are_used(backend, norm):
    rng = np.random.default_rng(5)
    offsets = np.array([0, 4, 4, 12])
    rows = descriptors_near(C, 12, seed=6).astype(np.float32)
    labels = rng.integers(0, K, size=12)  # deliberately not the nearest centroids
    assert not np.array_equal(labels, oracle.assign(rows, C32))
    out = encoder(backend, norm).encode_batch(rows, offsets=offsets, labels=labels)
    np.testing.assert_array_equal(out.labels, labels)
    oracle.check(out.vlad, rows, offsets, C32, labels, norm)
    # The same labels in another integer dtype, and on fixed-size images.
    same = encoder(backend, norm).encode(rows, offsets=offsets, labels=labels.astype(np.uint8))
    np.testing.assert_array_equal(same, out.vlad)
    x = rows.reshape(3, 4, F)
    fixed = encoder(backend, norm).encode(x, labels=labels.astype(np.int32))
    oracle.check(fixed, rows, [0, 4, 8, 12], C32, labels, norm)


def test_assign_is_the_nearest_centroid(backend):
    x = fixed_images(t=4, l=5, seed=7)
    labels = encoder(backend).assign(x)
    assert labels.dtype == np.int64 and labels.shape == (20,)
    oracle.check_labels(labels, x.reshape(-1, F), C32)
    rows = x.reshape(-1, F)
    np.testing.assert_array_equal(encoder(backend).assign(rows), labels)
    np.testing.assert_array_equal(encoder(backend).assign([rows[:7], rows[7:]]), labels)


def test_exact_ties_go_to_the_lowest_centroid():
    centroids = np.array([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], np.float32)
    rows = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)  # equidistant
    for backend in ("cpu", "reference"):
        labels = vlad.Encoder(centroids, backend=backend).assign(rows)
        np.testing.assert_array_equal(labels, [0, 0, 0])


def test_out_receives_the_encoding_and_is_returned():
    enc = vlad.Encoder(C, backend="cpu")
    x = fixed_images(t=6, l=9)
    want = enc.encode(x)
    out = np.full((6, want.shape[1]), np.nan, dtype=np.float32)
    got = enc.encode(x, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    # Reused: every element is written again (ragged, an empty image).
    rows = x.reshape(-1, x.shape[2])
    offsets = np.array([0, 9, 9, 20, 30, 40, 54])
    out[:] = np.nan
    enc.encode(rows, offsets, out=out)
    np.testing.assert_array_equal(out, enc.encode(rows, offsets))
    assert not out[1].any()


def test_out_of_the_wrong_shape_dtype_or_layout_is_an_input_error():
    enc = vlad.Encoder(C, backend="cpu")
    x = fixed_images(t=6, l=9)
    width = enc.n_clusters * enc.dim
    bad = [
        np.zeros((5, width), np.float32),  # T
        np.zeros((6, width + 1), np.float32),  # K·F
        np.zeros((6, width), np.float64),  # dtype
        np.zeros((6 * width,), np.float32),  # rank
        np.zeros((width, 6), np.float32).T,  # F order
        np.zeros((6, 2 * width), np.float32)[:, ::2],  # strided
        [[0.0] * width] * 6,  # not an array
    ]
    for out in bad:
        with pytest.raises(vlad.InputError):
            enc.encode(x, out=out)
    shared = np.zeros((6, width), np.float32)
    with pytest.raises(vlad.InputError, match="share memory"):
        enc.encode(shared.reshape(6, -1, enc.dim), out=shared)
    frozen = np.zeros((6, width), np.float32)
    frozen.setflags(write=False)
    with pytest.raises(vlad.InputError):
        enc.encode(x, out=frozen)
