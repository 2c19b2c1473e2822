"""Every chapter notebook runs top to bottom without an error.

Each notebook runs in a fresh Jupyter kernel ("python3") started in the notebook's own
folder, as `jupyter lab` would open it. The kernel inherits this process's environment, so
it imports `tutorial` from wherever this process does (an installed package, or PYTHONPATH).
"""

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="running notebooks needs nbformat, nbclient and ipykernel")
nbclient = pytest.importorskip("nbclient", reason="running notebooks needs nbformat, nbclient and ipykernel")
from nbclient.exceptions import CellExecutionError  # noqa: E402

CHAPTERS = Path(__file__).resolve().parents[1] / "chapters"
NOTEBOOKS = sorted(CHAPTERS.glob("*/*.ipynb"))


def test_there_are_notebooks_to_run():
    assert NOTEBOOKS, f"no notebooks found under {CHAPTERS}/*/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_notebook_runs_top_to_bottom(path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")  # figures are drawn but never shown
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,  # per cell
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.parent.name}/{path.name}: a cell raised\n{error}", pytrace=False)
