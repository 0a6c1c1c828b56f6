"""The README's Python example runs, as written."""

import re
from pathlib import Path

from conftest import ROOT


def python_blocks():
    """The README's examples of this package: its ```python blocks that
    import vlad (others, such as exporting a PyTorch layer's weights, are
    fragments of someone else's program)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [b for b in blocks if "import vlad" in b]


def test_readme_has_a_python_example():
    blocks = python_blocks()
    assert blocks, "README.md has no ```python block"
    assert "import vlad" in blocks[0]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for block in python_blocks():
        exec(compile(block, str(ROOT / "README.md"), "exec"), {"__name__": "__readme__"})
