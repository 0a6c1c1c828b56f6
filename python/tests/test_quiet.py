"""No driver noise (issue 20): nothing from Mesa or any driver reaches the
user's stderr from the package, even with XDG_RUNTIME_DIR unset (where
Mesa prints "XDG_RUNTIME_DIR is invalid or not set" per instance)."""

import os
import subprocess
import sys

import pytest

from conftest import require_gpu

CODE = """
import numpy as np, vlad
rng = np.random.default_rng(0)
C = rng.normal(size=(4, 3)).astype(np.float32)
X = rng.normal(size=(2, 20, 3)).astype(np.float32)
V = vlad.Encoder(C, backend={backend!r}).encode(X)
vlad.adapters()
vlad.KMeans(n_clusters=3, backend={kmeans!r}).fit(X)
print(V.shape)
"""


def run_without_xdg(code, **extra):
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    env.update(extra)
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )


def test_auto_prints_nothing_on_stderr():
    run = run_without_xdg(CODE.format(backend="auto", kmeans="auto"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "(2, 12)"
    assert run.stderr == ""


def test_gpu_prints_nothing_on_stderr():
    require_gpu()
    run = run_without_xdg(CODE.format(backend="gpu", kmeans="gpu"))
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""


def test_a_value_the_user_set_is_kept(tmp_path):
    code = "import os, vlad; print(os.environ['XDG_RUNTIME_DIR'])"
    run = run_without_xdg(code, XDG_RUNTIME_DIR=str(tmp_path))
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(tmp_path)
