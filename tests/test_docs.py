"""The course website builds in strict mode: no broken link, no unreadable docstring, and every
chapter notebook runs top to bottom (mkdocs-jupyter executes them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="building the site needs the docs extra: pip install '.[docs]'")
pytest.importorskip("mkdocs_jupyter", reason="building the site needs the docs extra: pip install '.[docs]'")

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(1500)  # it runs every notebook on the simulator
def test_site_builds_in_strict_mode(tmp_path):
    env = dict(os.environ, MPLBACKEND="Agg", NO_MKDOCS_2_WARNING="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(ROOT / "docs" / "mkdocs.yml"),
                           "-d", str(tmp_path / "site")], capture_output=True, text=True, env=env, timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    site = tmp_path / "site"
    assert (site / "index.html").exists() and (site / "api" / "index.html").exists()
    chapters = sorted(p.name for p in (site / "chapters").iterdir())
    assert len(chapters) == len(list(ROOT.glob("chapters/*/notebook.ipynb")))
    api = (site / "api" / "index.html").read_text()
    assert "quantize_blockwise" in api and "scaled_matmul" in api
