"""mkdocs hook: put each chapter's notebook into the site's pages before the build.

The notebooks live in chapters/NN_name/ beside their exercises; the site renders copies at
pages/chapters/NN_name.ipynb (git-ignored, rewritten on every build), so there is one source.
Executed from pages/chapters/, a notebook still finds the repository's recorded results/ by
looking upwards from its folder, as it does from chapters/NN_name/.
"""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def on_pre_build(config, **kwargs):
    target = Path(config["docs_dir"]) / "chapters"
    target.mkdir(exist_ok=True)
    for notebook in sorted(ROOT.glob("chapters/*/notebook.ipynb")):
        shutil.copyfile(notebook, target / f"{notebook.parent.name}.ipynb")
