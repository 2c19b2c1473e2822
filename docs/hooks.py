"""mkdocs hooks: put each chapter's notebook into the site's pages before the build.

The notebooks live in chapters/NN_name/ beside their exercises; the site renders copies at
pages/chapters/NN_name.ipynb (git-ignored, rewritten on every build), so there is one source.
Executed from pages/chapters/, a notebook still finds the repository's recorded results/ by
looking upwards from its folder, as it does from chapters/NN_name/.

The instructor's section also shows chapter 01 as a student edition holds it (pages/
student-edition/, made by `fp8-tutorial release` at every build, git-ignored).

And after each page is rendered: drop nbconvert's Mermaid loader from the notebook pages. It
imports mermaid.js from cdnjs.cloudflare.com when a notebook holds a Mermaid diagram; none
does, and the site fetches nothing from the network (fonts and MathJax are local too).
"""

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


STUDENT_CHAPTER = "01"  # the chapter whose student edition the instructor's section shows


def on_pre_build(config, **kwargs):
    target = Path(config["docs_dir"]) / "chapters"
    target.mkdir(exist_ok=True)
    for notebook in sorted(ROOT.glob("chapters/*/notebook.ipynb")):
        shutil.copyfile(notebook, target / f"{notebook.parent.name}.ipynb")
    student = Path(config["docs_dir"]) / "student-edition"
    if student.parent.joinpath("instructors.md").exists():  # (a student edition's own docs have no such page)
        _student_view(student)


def _student_view(target: Path) -> None:
    """The notebook of chapter STUDENT_CHAPTER as a student edition holds it: exercise cells
    stubbed, run on the build machine before anything is written."""
    import tempfile

    from tutorial.course.chapters import chapter
    from tutorial.course.release import make_release

    target.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        edition = make_release(STUDENT_CHAPTER, Path(tmp) / "edition", ROOT)
        notebook = chapter(STUDENT_CHAPTER).folder(edition) / "notebook.ipynb"
        shutil.copyfile(notebook, target / f"chapter-{STUDENT_CHAPTER}.ipynb")


# nbconvert's template: <script type="module"> ... import("https://cdnjs.../mermaid.esm.min.mjs") ...
_MERMAID_LOADER = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>', re.S)


def on_post_page(output, page, config):
    return _MERMAID_LOADER.sub("", output)
