"""The package itself: version, exports, type information."""

import re
from pathlib import Path

import vlad
from conftest import ROOT


def test_version_is_the_crates():
    cargo = (ROOT / "Cargo.toml").read_text(encoding="utf-8")
    version = re.search(r'^version = "([^"]+)"', cargo, flags=re.M).group(1)
    assert vlad.__version__ == version


def test_exports_and_exception_classes():
    for name in vlad.__all__:
        assert hasattr(vlad, name), name
    assert issubclass(vlad.InputError, ValueError)
    assert issubclass(vlad.BackendUnavailable, RuntimeError)
    assert issubclass(vlad.VerificationError, RuntimeError)
    assert vlad.InputError.__module__ == "vlad"


def test_typed_package():
    package = Path(vlad.__file__).parent
    assert (package / "py.typed").exists()
    stub = (package / "_vlad.pyi").read_text(encoding="utf-8")
    for name in ("class Encoder", "def kmeans_fit", "def adapters", "class Report"):
        assert name in stub
    assert vlad.Encoder.__doc__ and vlad.KMeans.__doc__ and vlad.Encoder.encode.__doc__
