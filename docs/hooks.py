"""mkdocs hooks: put each chapter's notebook into the site's pages before the build.

The notebooks live in chapters/NN_name/ beside their exercises; the site renders copies at
pages/chapters/NN_name.ipynb (git-ignored, rewritten on every build), so there is one source.
Executed from pages/chapters/, a notebook still finds the repository's recorded results/ by
looking upwards from its folder, as it does from chapters/NN_name/.

And after each page is rendered: drop nbconvert's Mermaid loader from the notebook pages. It
imports mermaid.js from cdnjs.cloudflare.com when a notebook holds a Mermaid diagram; none
does, and the site fetches nothing from the network (fonts and MathJax are local too).
"""

import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def on_pre_build(config, **kwargs):
    target = Path(config["docs_dir"]) / "chapters"
    target.mkdir(exist_ok=True)
    for notebook in sorted(ROOT.glob("chapters/*/notebook.ipynb")):
        shutil.copyfile(notebook, target / f"{notebook.parent.name}.ipynb")


# nbconvert's template: <script type="module"> ... import("https://cdnjs.../mermaid.esm.min.mjs") ...
_MERMAID_LOADER = re.compile(r'<script type="module">(?:(?!</script>).)*?mermaid(?:(?!</script>).)*</script>', re.S)


def on_post_page(output, page, config):
    return _MERMAID_LOADER.sub("", output)
