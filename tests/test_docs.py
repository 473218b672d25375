"""Every ```python block of docs/*.md runs: the blocks of a page in order, in one fresh process, in a scratch
directory (so the examples in the documentation stay true)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = sorted((Path(__file__).parents[1] / "docs").glob("*.md"))
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize("page", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_documented_examples_run(page, tmp_path):
    script = "\n\n".join(f"# --- block {i + 1} of {page.name}\n{b}" for i, b in enumerate(python_blocks(page)))
    r = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                       env={**__import__("os").environ, "OMP_NUM_THREADS": "2"})
    assert r.returncode == 0, f"{page.name}:\n{r.stderr[-3000:]}"


def test_every_page_with_python_has_blocks_found():
    assert python_blocks(Path(__file__).parents[1] / "docs" / "api.md"), "docs/api.md lost its examples"
