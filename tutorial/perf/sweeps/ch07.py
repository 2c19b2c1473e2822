"""Chapter 07: all-MiniLM-L6-v2 with every Linear on the course's kernels, against the numpy path.

Not a timing: an accuracy record of a GPU run. Each row is a scheme: how far the embeddings
of the model on the kernels (quantizers of chapters 02-04, `scaled_matmul` of chapter 05) are
from the numpy path's, and the retrieval agreement of each with float32, over the course's
sentences."""

from __future__ import annotations

from pathlib import Path

from ...transformer import evaluate, minilm, schemes
from .. import timing


def chapter07_minilm(out_dir=None) -> Path:
    """Record `results/<device>/ch07_minilm_kernels.json`: one row per scheme (see module)."""
    model = minilm.MiniLM.load()
    sentences = evaluate.course_sentences()
    rows = [{"label": row.pop("scheme"), "shape": [len(sentences), minilm.HIDDEN], "peer": None, **row}
            for row in evaluate.kernel_agreement(model, sentences, schemes.SCHEMES)]
    return timing.record_results("ch07_minilm_kernels", rows, shapes=[[len(sentences), minilm.HIDDEN]],
                                 out_dir=out_dir)
