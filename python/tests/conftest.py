"""Shared fixtures: the backends to test, the command-line binary, data."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vlad

ROOT = Path(__file__).resolve().parents[2]
IN_CI = bool(os.environ.get("CI"))


def gpu_adapters():
    """Adapters wgpu finds here (lavapipe counts: it runs the shaders)."""
    return vlad.adapters()["adapters"]


def require_gpu():
    """Skip without an adapter, except in CI, where lavapipe is installed
    and a missing adapter is a failure, never a skip."""
    if gpu_adapters():
        return
    if IN_CI:
        pytest.fail("CI is set but no GPU adapter was found (is mesa-vulkan-drivers installed?)")
    pytest.skip("no GPU adapter here (install mesa-vulkan-drivers for lavapipe)")


@pytest.fixture(params=["cpu", "reference", "gpu", "auto"])
def backend(request):
    """Every backend: cpu and reference everywhere, gpu and auto where an
    adapter is (always in CI)."""
    if request.param in ("gpu", "auto"):
        require_gpu()
    return request.param


def vlad_binary():
    """The release command line, built by `cargo xtask test` (VLAD_BIN)."""
    path = Path(os.environ.get("VLAD_BIN", ROOT / "target" / "release" / "vlad"))
    if not path.exists():
        if IN_CI:
            pytest.fail(f"{path} is missing: run the tests with `cargo xtask test`")
        pytest.skip(f"{path} is missing: `cargo build --release` first")
    return path


def run_python(code, env=None, timeout=300):
    """Run `code` in a fresh interpreter (its own rayon pool and GPU
    state); returns the CompletedProcess."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", code],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def codebook(k=5, f=6, seed=0):
    """K centroids in [20, 235]^F (so uint8 descriptors fit around them)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(20, 235, size=(k, f))


def descriptors_near(centroids, n, seed=1, spread=15.0):
    """n descriptors near random centroids, float64 in [0, 255]."""
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centroids), size=n)
    x = centroids[which] + rng.normal(scale=spread, size=(n, centroids.shape[1]))
    return np.clip(x, 0, 255)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for every vlad.ray test (starting one
    costs seconds); its address, for command lines that join it."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
