"""The GIL is released while computing, one Encoder serves many threads,
and a Rust panic never takes the interpreter down."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vlad
from conftest import codebook, descriptors_near

C = codebook(k=64, f=128, seed=40)


class Counter:
    """A Python thread that counts and, every 100 counts, notes the time."""

    def __init__(self):
        self.stamps = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        n = 0
        while not self._stop.is_set():
            n += 1
            if n % 100 == 0:
                self.stamps.append(time.perf_counter())

    def __enter__(self):
        self._thread.start()
        time.sleep(0.02)
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def ran_inside(self, start, end):
        """Stamps in the middle half of [start, end]. Holding the GIL, the
        caller can lose it only at the bytecode boundaries before and after
        the native call, for one switch interval (5 ms) each: the middle of
        a call of 100 ms or more is the native code's alone."""
        quarter = (end - start) / 4
        return sum(start + quarter < s < end - quarter for s in self.stamps)


def timed_call(call):
    start = time.perf_counter()
    call()
    return start, time.perf_counter()


def long_enough(make_call, at_least=0.1):
    """(start, end) of the first call of growing size that lasts at_least s.

    Up to 1024 sizes: on a fast CPU (2 AVX-512 cores) the largest assign
    of 256 × 500 rows against K = 1024 can finish in under 0.1 s.
    """
    size = 1
    while size <= 1024:
        call = make_call(size)
        start, end = timed_call(call)
        if end - start >= at_least:
            return call
        size *= 2
    pytest.fail(f"no call lasted {at_least} s")


def test_a_python_thread_runs_while_another_encodes():
    """A counting thread advances during one long encode in this thread."""
    enc = vlad.Encoder(C, backend="reference")  # slow on purpose: long calls
    rng = np.random.default_rng(41)

    def make_call(size):
        x = rng.normal(size=(size, 200, 128)).astype(np.float32)
        return lambda: enc._native.encode(x)

    call = long_enough(make_call)
    with Counter() as counter:
        start, end = timed_call(call)
    assert counter.ran_inside(start, end) > 0, (
        f"no Python code ran during {end - start:.3f} s of encoding: the GIL was held"
    )


def test_the_cpu_backend_and_assign_release_the_gil_too():
    big = np.random.default_rng(44).normal(size=(1024, 128))  # K = 1024: long calls
    enc = vlad.Encoder(big, backend="cpu")
    rng = np.random.default_rng(42)
    for method in ("encode", "assign"):

        def make_call(size, method=method):
            x = rng.normal(size=(size, 500, 128)).astype(np.float32)
            return lambda: getattr(enc._native, method)(x)

        call = long_enough(make_call)
        with Counter() as counter:
            start, end = timed_call(call)
        assert counter.ran_inside(start, end) > 0, method


def test_kmeans_releases_the_gil_too():
    rng = np.random.default_rng(43)

    def make_call(size):
        x = rng.normal(size=(2000 * size, 64)).astype(np.float32)
        return lambda: vlad._vlad.kmeans_fit(
            x, 256, n_iter=10, tol=0.0, max_points_per_centroid=None, backend="cpu"
        )

    call = long_enough(make_call)
    with Counter() as counter:
        start, end = timed_call(call)
    assert counter.ran_inside(start, end) > 0


def test_one_encoder_shared_by_many_threads():
    enc = vlad.Encoder(C, norm="mass,ssr,intra,l2", backend="cpu")
    batches = [
        descriptors_near(C, 20 * 30, seed=s).astype(np.float32).reshape(20, 30, 128)
        for s in range(8)
    ]
    serial = [enc.encode(b) for b in batches]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(3):
            parallel = list(pool.map(enc.encode, batches))
            for a, b in zip(serial, parallel):
                np.testing.assert_array_equal(a, b)


def test_a_panic_is_an_exception_not_a_crash():
    with pytest.raises(RuntimeError, match="internal error in vlad"):
        vlad._vlad._panic_for_test()
    # The interpreter and the library go on.
    out = vlad.Encoder(np.eye(3, dtype=np.float32), backend="cpu").encode(np.ones((1, 2, 3)))
    assert out.shape == (1, 9)


def test_the_time_inside_the_library_is_part_of_the_call():
    """The benchmark's hook: the library's share of one call's wall time."""
    enc = vlad.Encoder(C, backend="cpu")
    x = descriptors_near(C, 50 * 100, seed=45).astype(np.float32).reshape(50, 100, 128)
    start = time.perf_counter()
    enc.encode(x)
    wall = time.perf_counter() - start
    inside = vlad._vlad._last_compute_seconds()
    assert 0 < inside <= wall
