"""Every Python snippet of the README and of docs/ runs as written, in a fresh interpreter
(a page's snippets one after the other, as a reader would paste them)."""

import glob
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs",
                                                                          "*.md")))


def _snippets(path):
  return re.findall(r"^```python\n(.*?)^```", open(path, encoding="utf-8").read(),
                    re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("page", [p for p in PAGES if _snippets(p)],
                         ids=lambda p: os.path.relpath(p, REPO))
def test_python_snippets_run_as_written(page, tmp_path):
  code = "\n".join(_snippets(page))
  result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=600, check=False,
                          env=dict(os.environ, JAX_PLATFORMS="cpu"))
  assert result.returncode == 0, f"{page}:\n{result.stderr[-3000:]}"
