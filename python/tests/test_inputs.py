"""Inputs as numpy users hand them over: every dtype, memory order and
integer type of offsets; C-contiguous arrays read in place, never copied."""

import numpy as np
import pytest

import oracle
import vlad
from vlad import _inputs
from conftest import codebook, descriptors_near

C = codebook()
C32 = C.astype(np.float32).astype(np.float64)
K, F = C.shape
T, L = 4, 6


def base_images(seed=20):
    return descriptors_near(C, T * L, seed=seed).reshape(T, L, F)


def as_dtype(x, dtype):
    return np.round(x).astype(dtype) if dtype == np.uint8 else x.astype(dtype)


def in_order(x, order):
    """The same logical array, laid out another way."""
    if order == "C":
        return np.ascontiguousarray(x)
    if order == "F":
        return np.asfortranarray(x)
    if order == "strided":  # every other element of a larger buffer, along F
        wide = np.zeros(x.shape[:-1] + (2 * x.shape[-1],), x.dtype)
        wide[..., ::2] = x
        return wide[..., ::2]
    if order == "reversed":  # negative strides
        return np.ascontiguousarray(x[::-1])[::-1]
    raise ValueError(order)


DTYPES = [np.float32, np.float64, np.uint8, np.float16]
ORDERS = ["C", "F", "strided", "reversed"]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("order", ORDERS)
def test_every_dtype_and_order_fixed_images(dtype, order):
    x = as_dtype(base_images(), dtype)
    laid_out = in_order(x, order)
    assert np.array_equal(laid_out, x)
    enc = vlad.Encoder(C, norm="ssr,l2", backend="cpu")
    out = enc.encode_batch(laid_out)
    rows = x.reshape(-1, F).astype(np.float64)
    oracle.check_labels(out.labels, rows, C32)
    oracle.check(out.vlad, rows, np.arange(0, T * L + 1, L), C32, out.labels, "ssr,l2")
    # Whatever the layout, the same values give bitwise the same encoding.
    np.testing.assert_array_equal(out.vlad, enc.encode(np.ascontiguousarray(x)))


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("order", ORDERS)
def test_every_dtype_and_order_ragged_rows(dtype, order):
    x = as_dtype(base_images(seed=21).reshape(-1, F), dtype)
    offsets = np.array([0, 5, 5, 17, 24])
    laid_out = in_order(x, order)
    enc = vlad.Encoder(C, norm="mass,ssr,intra,l2", backend="cpu")
    out = enc.encode_batch(laid_out, offsets=offsets)
    rows = x.astype(np.float64)
    oracle.check(out.vlad, rows, offsets, C32, out.labels, "mass,ssr,intra,l2")
    np.testing.assert_array_equal(out.vlad, enc.encode(np.ascontiguousarray(x), offsets=offsets))


@pytest.mark.parametrize(
    "dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64]
)
def test_offsets_and_labels_of_any_integer_dtype(dtype):
    rows = base_images(seed=22).reshape(-1, F).astype(np.float32)
    offsets = np.array([0, 5, 5, 17, 24])
    labels = np.arange(24) % K
    enc = vlad.Encoder(C, backend="cpu")
    want = enc.encode(rows, offsets=offsets.astype(np.int64), labels=labels)
    got = enc.encode(rows, offsets=offsets.astype(dtype), labels=labels.astype(dtype))
    np.testing.assert_array_equal(got, want)
    # Python lists too.
    np.testing.assert_array_equal(enc.encode(rows, offsets=list(offsets), labels=list(labels)), want)


def test_float64_centroids_are_rounded_to_float32():
    x = base_images(seed=23).astype(np.float32)
    a = vlad.Encoder(C, backend="cpu").encode(x)
    b = vlad.Encoder(C.astype(np.float32), backend="cpu").encode(x)
    np.testing.assert_array_equal(a, b)
    assert vlad.Encoder(C).centroids.dtype == np.float32
    c = vlad.Encoder(np.asfortranarray(C.astype(np.float16)), backend="cpu")
    assert c.centroids.dtype == np.float32


def test_array_likes_are_accepted():
    x = base_images(seed=24).astype(np.float32)
    enc = vlad.Encoder(C.tolist(), backend="cpu")
    np.testing.assert_array_equal(enc.encode(x.tolist()[0:1]), enc.encode(x[0:1]))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_c_contiguous_input_is_read_in_place(dtype):
    """The library reads numpy's own buffer: the first value it reads is at
    the array's data pointer (a copy would live elsewhere)."""
    enc = vlad.Encoder(C, backend="cpu")
    x = as_dtype(base_images(seed=25), dtype)
    assert x.flags.c_contiguous
    # The Python layer hands the very same object to the native module…
    assert _inputs.array(x) is x
    # …which reads it where it is: fixed images, rows with offsets, and a
    # C-contiguous slice of a larger array.
    assert enc._native._rows_address(x) == x.ctypes.data
    rows = x.reshape(-1, F)
    assert enc._native._rows_address(rows, np.array([0, 10, 24])) == rows.ctypes.data
    part = x[1:3]
    assert part.flags.c_contiguous and part.ctypes.data != x.ctypes.data
    assert enc._native._rows_address(part) == part.ctypes.data


def test_other_layouts_are_copied_not_misread():
    """The pointer check above can fail: a Fortran or strided array is
    copied into C order first, so its address differs."""
    enc = vlad.Encoder(C, backend="cpu")
    x = np.asfortranarray(base_images(seed=26).astype(np.float32))
    assert enc._native._rows_address(x) != x.ctypes.data
    strided = in_order(base_images(seed=26).astype(np.float32), "strided")
    assert enc._native._rows_address(strided) != strided.ctypes.data


def test_float16_and_byte_order_are_converted():
    x = base_images(seed=27)
    enc = vlad.Encoder(C, backend="cpu")
    half = x.astype(np.float16)
    np.testing.assert_array_equal(enc.encode(half), enc.encode(half.astype(np.float32)))
    big = x.astype(">f4")
    np.testing.assert_array_equal(enc.encode(big), enc.encode(x.astype(np.float32)))
