"""DLPack (SPEC §15): objects with __dlpack__/__dlpack_device__ (PyTorch,
JAX and CuPy CPU tensors; here numpy's own behind a wrapper that exposes
nothing else) are read in place wherever arrays are taken; a tensor on a
device is a clear InputError."""

import numpy as np
import pytest

import vlad
from vlad import _inputs
from conftest import codebook, descriptors_near

C = codebook(k=4, f=5, seed=40)
X = descriptors_near(C, 60, seed=41)


class Tensor:
    """Only the DLPack protocol: what numpy sees of a torch/JAX/CuPy tensor."""

    def __init__(self, array, device=(1, 0)):
        self._array = array
        self._device = device

    def __dlpack__(self, *args, **kwargs):
        return self._array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self._device


pytestmark = pytest.mark.skipif(not hasattr(np, "from_dlpack"), reason="numpy < 1.22 has no from_dlpack")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint8])
def test_descriptors_are_read_in_place(dtype):
    x = np.ascontiguousarray(X.astype(dtype))
    assert not hasattr(Tensor(x), "__array__") and np.asarray(Tensor(x)).shape == ()
    enc = vlad.Encoder(C, backend="cpu")
    viewed = _inputs.array(Tensor(x), "descriptors")
    assert enc._native._rows_address(viewed) == x.ctypes.data
    assert enc.encode(Tensor(x)).tobytes() == enc.encode(x).tobytes()
    assert enc.assign(Tensor(x)).tobytes() == enc.assign(x).tobytes()


def test_float16_is_taken_and_widened():
    x = X.astype(np.float16)
    enc = vlad.Encoder(C, backend="cpu")
    assert enc.encode(Tensor(x)).tobytes() == enc.encode(x.astype(np.float32)).tobytes()


def test_every_array_argument_takes_a_tensor():
    offsets = np.array([0, 10, 10, 60], np.int64)
    labels = vlad.Encoder(C, backend="cpu").assign(X)
    rng = np.random.default_rng(42)
    w, b = rng.normal(size=(4, 5)), rng.normal(size=4)
    plain = vlad.Encoder(C, backend="cpu", assignment="soft", weights=w, bias=b)
    tensors = vlad.Encoder(Tensor(C), backend="cpu", assignment="soft", weights=Tensor(w), bias=Tensor(b))
    assert tensors.encode(Tensor(X), offsets=Tensor(offsets)).tobytes() == plain.encode(X, offsets=offsets).tobytes()
    hard = vlad.Encoder(Tensor(C), backend="cpu")
    want = vlad.Encoder(C, backend="cpu").encode(X, offsets=offsets, labels=labels)
    assert hard.encode(Tensor(X), offsets=Tensor(offsets), labels=Tensor(labels)).tobytes() == want.tobytes()
    assert hard.verify(Tensor(X), vlad=Tensor(want), offsets=Tensor(offsets), labels=Tensor(labels)).passed
    images = [Tensor(X[:10]), Tensor(X[10:])]
    assert hard.encode(images).tobytes() == hard.encode([X[:10], X[10:]]).tobytes()


def test_estimators_take_tensors():
    x = X.astype(np.float32)
    km = vlad.KMeans(n_clusters=4, backend="cpu").fit(Tensor(x))
    assert km.cluster_centers_.tobytes() == vlad.KMeans(n_clusters=4, backend="cpu").fit(x).cluster_centers_.tobytes()
    assert km.predict(Tensor(x)).tobytes() == km.predict(x).tobytes()
    model = vlad.VLAD(n_clusters=4, backend="cpu").fit(Tensor(x.reshape(6, 10, 5)))
    assert model.transform(Tensor(x)).tobytes() == model.transform(x).tobytes()
    assert model.transform([Tensor(x[:7]), Tensor(x[7:])]).tobytes() == model.transform([x[:7], x[7:]]).tobytes()


@pytest.mark.parametrize("device, name", [((2, 0), "CUDA device 0"), ((8, 1), "Metal device 1"), ((99, 0), "DLPack device type 99")])
def test_a_tensor_on_a_device_is_an_input_error(device, name):
    enc = vlad.Encoder(C, backend="cpu")
    on_device = Tensor(X, device=device)
    with pytest.raises(vlad.InputError, match=f"descriptors is a .*Tensor on {name}.*move it to the CPU first"):
        enc.encode(on_device)
    with pytest.raises(vlad.InputError, match="centroids is a .* move it to the CPU first"):
        vlad.Encoder(on_device)
    with pytest.raises(vlad.InputError, match=r"X is a .*\.cpu\(\)"):
        vlad.KMeans(n_clusters=4).fit(on_device)


def test_pytorch_cpu_tensors():
    torch = pytest.importorskip("torch")  # not in CI's requirements: too large
    x = torch.from_numpy(X.astype(np.float32))
    enc = vlad.Encoder(C, backend="cpu")
    assert enc.encode(x).tobytes() == enc.encode(X.astype(np.float32)).tobytes()
    assert enc._native._rows_address(_inputs.array(x)) == x.data_ptr()
    with pytest.raises(vlad.InputError, match="detach"):
        enc.encode(x.clone().requires_grad_(True))
