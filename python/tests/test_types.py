"""The shipped type information (SPEC §15): `mypy --strict` on the package
and `python -m mypy.stubtest vlad` (the stubs against the built module)
are clean. Run here so that CI fails when either fails."""

import subprocess
import sys

import pytest

from conftest import IN_CI, ROOT

CONFIG = ROOT / "python" / "pyproject.toml"


def require_mypy():
    try:
        import mypy  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("CI is set but mypy is not installed (PYTHON_REQUIREMENTS)")
        pytest.skip("mypy is not installed")


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT / "python",
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_mypy_strict_on_the_package():
    require_mypy()
    result = run("mypy", "--strict", "-p", "vlad", "--config-file", str(CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


def test_stubtest_on_the_package():
    require_mypy()
    allowlist = ROOT / "python" / "stubtest-allowlist.txt"
    result = run(
        "mypy.stubtest", "vlad", "--mypy-config-file", str(CONFIG), "--allowlist", str(allowlist)
    )
    assert result.returncode == 0, result.stdout + result.stderr
