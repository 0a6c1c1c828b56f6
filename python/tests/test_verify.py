"""Encoder.verify: SPEC §4 against the f64 reference, VerificationError
(the command line's exit status 4) when an encoding is off."""

import numpy as np
import pytest

import vlad
from conftest import codebook, descriptors_near

C = codebook(k=6, f=10, seed=60)


def images():
    return descriptors_near(C, 8 * 20, seed=61).astype(np.float32).reshape(8, 20, 10)


@pytest.mark.parametrize("norm", ["none", "ssr,l2", "mass,ssr,intra,l2"])
def test_own_encoding_passes(backend, norm):
    v = vlad.Encoder(C, norm=norm, backend=backend).verify(images())
    assert v.passed and v.bad_labels == 0 and v.violations == 0
    assert v.label_agreement == 1.0
    assert v.max_abs_error < 1e-5 or norm == "none"
    assert "passed=True" in repr(v)


def test_a_wrong_encoding_raises_verification_error():
    enc = vlad.Encoder(C, backend="cpu")
    x = images()
    good = enc.encode(x)
    assert enc.verify(x, vlad=good).passed
    bad = good.copy()
    bad[3, 7] += 1e-3
    with pytest.raises(vlad.VerificationError) as caught:
        enc.verify(x, vlad=bad)
    assert isinstance(caught.value, RuntimeError)
    message = str(caught.value)
    assert message.startswith("verification failed: 0 of 160 labels beyond a near-tie, 1 values")
    details = caught.value.verification
    assert not details.passed and details.violations == 1
    assert details.max_abs_error == pytest.approx(1e-3, rel=1e-2)


def test_a_numpy_implementation_checked_against_the_reference():
    """verify() checks any (T, K·F) encoding: here a dense one-hot numpy
    VLAD computed from the same labels."""
    enc = vlad.Encoder(C, norm="ssr,l2", backend="cpu")
    x = images()
    labels = enc.assign(x).reshape(8, 20)
    c = enc.centroids
    onehot = np.eye(len(c), dtype=np.float32)[labels]  # (T, L, K)
    v = np.einsum("tlk,tlf->tkf", onehot, x) - onehot.sum(1)[:, :, None] * c[None]
    v = np.sign(v) * np.sqrt(np.abs(v))
    v = v.reshape(8, -1)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert enc.verify(x, vlad=v.astype(np.float32)).passed


def test_wrong_shape_of_the_encoding():
    enc = vlad.Encoder(C, backend="cpu")
    with pytest.raises(vlad.InputError, match="expected"):
        enc.verify(images(), vlad=np.zeros((8, 5), np.float32))
