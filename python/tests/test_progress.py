"""Progress like the ecosystem's (issue 20): `verbose=` as scikit-learn has
it; a tqdm bar when tqdm is installed (verbose=1), plain lines otherwise or
at verbose>=2; always on stderr, never on stdout."""

import pytest

from conftest import run_python

FIT = """
import numpy as np, vlad
x = np.random.default_rng(0).normal(size=(300, 5))
vlad.{what}(n_clusters=3, n_iter=4, tol=0, backend="cpu", verbose={verbose}).fit(x)
"""

NO_TQDM = """
import sys
class NoTqdm:
    def find_spec(self, name, path=None, target=None):
        if name == "tqdm" or name.startswith("tqdm."):
            raise ImportError("no tqdm here")
sys.meta_path.insert(0, NoTqdm())
"""


def iteration_lines(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("kmeans: iteration ")]


@pytest.mark.parametrize("what", ["KMeans", "VLAD"])
def test_plain_lines_without_tqdm(what):
    run = run_python(NO_TQDM + FIT.format(what=what, verbose=1))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert len(iteration_lines(run.stderr)) == 4
    assert run.stderr.splitlines()[-1].startswith("kmeans: 4 iterations, inertia ")


def test_verbose_0_is_silent():
    run = run_python(FIT.format(what="KMeans", verbose=0))
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run.stderr


def test_a_tqdm_bar_when_tqdm_is_installed():
    pytest.importorskip("tqdm")  # in CI's requirements; optional for users
    run = run_python(FIT.format(what="VLAD", verbose=True))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "kmeans: 100%" in run.stderr and "4/4" in run.stderr and "iter" in run.stderr
    assert not iteration_lines(run.stderr)  # a bar, not lines
    assert run.stderr.rstrip().splitlines()[-1].startswith("kmeans: 4 iterations, inertia ")


# 600 ragged images, 600 k rows: the encode runs in a few groups of whole
# images (at least 2^18 rows each) and reports after each.
ENCODE = """
import numpy as np, vlad
rng = np.random.default_rng(1)
sizes = [(t * 7919) % 2001 for t in range(600)]
offsets = np.concatenate([[0], np.cumsum(sizes)])
x = rng.normal(size=(int(offsets[-1]), 4)).astype(np.float32)
enc = vlad.Encoder(rng.normal(size=(5, 4)), backend="{backend}")
quiet = enc.encode(x, offsets)
loud = enc.encode(x, offsets, verbose={verbose})
assert quiet.tobytes() == loud.tobytes(), "progress changed the bits"
out = np.full_like(quiet, np.nan)
assert enc.encode(x, offsets, out=out, verbose={verbose}) is out
assert out.tobytes() == quiet.tobytes(), "progress into out changed the bits"
"""


@pytest.mark.parametrize("backend", ["cpu", "gpu"])
def test_encode_progress_lines_and_the_same_bits(backend):
    # The GPU cuts only between its planned chunks: 1 MiB bindings make
    # ~65 k-row chunks of this input (one chunk under the default cap).
    env = {"VLAD_GPU_MAX_BINDING_BYTES": str(1 << 20)} if backend == "gpu" else None
    run = run_python(ENCODE.format(backend=backend, verbose=2), env=env)
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    lines = [ln for ln in run.stderr.splitlines() if ln.startswith("encode: ")]
    # Two encodes, each from 0/600 to 600/600 through at least one group.
    assert lines.count("encode: 0/600 images") == 2, run.stderr
    assert lines.count("encode: 600/600 images") == 2, run.stderr
    assert len(lines) >= 6, run.stderr


def test_encode_progress_is_a_tqdm_bar_at_verbose_1():
    pytest.importorskip("tqdm")
    run = run_python(ENCODE.format(backend="cpu", verbose=1))
    assert run.returncode == 0, run.stderr
    assert run.stdout == ""
    assert "encode: 100%" in run.stderr and "600/600" in run.stderr and "img" in run.stderr
    assert "encode: 0/600 images" not in run.stderr  # a bar, not lines


def test_encode_verbose_0_is_silent():
    run = run_python(ENCODE.format(backend="cpu", verbose=0))
    assert run.returncode == 0 and run.stdout == "" and run.stderr == "", run.stderr
