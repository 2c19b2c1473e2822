"""Chapter 07: what each quantization scheme does to all-MiniLM-L6-v2, measured.

* per Linear: the error of its weights and of its input activations (the seed's MAE and
  max-error columns, and SQNR), from [`tutorial.accuracy.error_metrics`][tutorial.accuracy.error_metrics];
* per sentence: the cosine of the quantized model's embedding with the float32 one;
* over the set: nearest-neighbour retrieval agreement, each sentence as a query against all
  the others, top-1 (the same nearest neighbour) and top-10 (the share of the float32 top 10
  that the quantized top 10 keeps). That is the honest meaning of an "inference accuracy"
  column for a sentence encoder: does the quantized model still find the same neighbours?

Sentences go through the model in batches of BATCH: each Linear sees the real tokens of a
batch as one matrix (no padding), which is what a per-tensor activation scale covers.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from ..accuracy import error_metrics
from .kernel_path import kernel_linear
from .minilm import MiniLM, encode, linear_names
from .schemes import Scheme, quantized_linear, roundtrip

BATCH = 32


def course_sentences() -> list[str]:
    """The sentences that ship with the course: its own prose, one per line (sentences.txt)."""
    text = resources.files(__package__).joinpath("sentences.txt").read_text(encoding="utf-8")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def embeddings(model: MiniLM, sentences, scheme: Scheme | None = None) -> np.ndarray:
    """Unit-length embeddings of `sentences`, float32 or with every Linear quantized by `scheme`."""
    kwargs = {} if scheme is None else {"linear": quantized_linear(scheme)}
    return encode(model, list(sentences), batch=BATCH, **kwargs)


def retrieval_agreement(reference: np.ndarray, other: np.ndarray, k: int = 10) -> dict:
    """Each row as a query against all the other rows (cosine; embeddings are unit length): the
    share of queries whose nearest neighbour is the same under `other` as under `reference`,
    and the mean share of the reference's top k that `other`'s top k keeps."""
    n = len(reference)
    if n < k + 2:
        raise ValueError(f"retrieval_agreement: {n} sentences are too few for top-{k}")

    def ranking(e):
        sims = e @ e.T
        np.fill_diagonal(sims, -np.inf)  # a query does not find itself
        return np.argsort(-sims, axis=1, kind="stable")

    ref_rank, other_rank = ranking(reference), ranking(other)
    top1 = float(np.mean(ref_rank[:, 0] == other_rank[:, 0]))
    topk = float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(ref_rank, other_rank)]))
    return {"top1": top1, f"top{k}": topk}


def recorded_activations(model: MiniLM, sentences) -> dict:
    """The input of every Linear in the float32 model, per batch: name -> list of (tokens, in)."""
    seen: dict = {name: [] for name in linear_names()}
    encode(model, list(sentences), batch=BATCH, record=lambda name, x: seen[name].append(x))
    return seen


def linear_weights(model: MiniLM) -> dict:
    """name -> weight (out x in) of each of the model's 36 Linears, in order."""
    return {name: model.weights[name + ".weight"] for name in linear_names()}


def layer_errors(weights: dict, scheme: Scheme, activations: dict) -> list[dict]:
    """Per Linear of `weights` (name -> out x in): the error metrics of its weight (`w_`), of its
    input activations (`a_`; batches as listed in `activations[name]`, each quantized on its
    own, as the quantized model sees them) and of its output `x @ w.T` (`y_`; the bias adds
    the same on both sides), under `scheme`. The Linears come from the model
    ([`linear_weights`][]) or the shipped sample (`tutorial.transformer.sample`)."""
    rows = []
    for name, w in weights.items():
        wq = roundtrip(w, scheme.weights, scheme.fmt, scheme.pow2)
        x = np.concatenate(activations[name])
        xq = x if scheme.activations is None else np.concatenate(
            [roundtrip(a, scheme.activations, scheme.fmt, scheme.pow2) for a in activations[name]])
        row = {"linear": name, **{f"w_{k}": v for k, v in error_metrics(w, wq).items()}}
        if scheme.activations is not None:
            row.update({f"a_{k}": v for k, v in error_metrics(x, xq).items()})
        row.update({f"y_{k}": v for k, v in error_metrics(x @ w.T, xq @ wq.T).items()})
        rows.append(row)
    return rows


def summary_row(scheme: Scheme, layers: list[dict], reference: np.ndarray, emb: np.ndarray) -> dict:
    """One scheme's row: the [`layer_errors`][] of its Linears averaged (MAE, SQNR) or maxed
    (max error) over them, for weights, activations and outputs; the cosine of its embeddings
    `emb` with the float32 ones `reference` (mean and worst); retrieval agreement top-1, top-10."""
    row = {"scheme": scheme.name}
    for prefix, what in (("w", "weight"), ("a", "act"), ("y", "output")):
        if f"{prefix}_mae" in layers[0]:
            row.update({f"{what} MAE": float(np.mean([r[f"{prefix}_mae"] for r in layers])),
                        f"{what} max err": float(max(r[f"{prefix}_max_abs"] for r in layers)),
                        f"{what} SQNR dB": float(np.mean([r[f"{prefix}_sqnr_db"] for r in layers]))})
    cos = (emb * reference).sum(axis=1)
    return {**row, "cosine mean": float(cos.mean()), "cosine min": float(cos.min()),
            **retrieval_agreement(reference, emb)}


def scheme_summary(model: MiniLM, schemes, sentences, activation_sentences: int = 16) -> list[dict]:
    """[`summary_row`][] of each scheme: activations from the first `activation_sentences`
    sentences, embeddings and retrieval over all of `sentences`."""
    reference = embeddings(model, sentences)
    acts = recorded_activations(model, sentences[:activation_sentences])
    weights = linear_weights(model)
    return [summary_row(s, layer_errors(weights, s, acts), reference, embeddings(model, sentences, s)) for s in schemes]


def kernel_agreement(model: MiniLM, sentences, schemes, names=None) -> list[dict]:
    """One row per scheme: the model with its Linears on the course's kernels
    ([`kernel_linear`][tutorial.transformer.kernel_path.kernel_linear]; only those in `names`,
    if given) against the numpy path of [`embeddings`][]: the largest difference of an
    embedding, the lowest cosine between the two, and each one's retrieval agreement with
    float32 (top-1 and top-10)."""
    reference = embeddings(model, sentences)
    rows = []
    for scheme in schemes:
        numpy_path = embeddings(model, sentences, scheme)
        kernels = encode(model, list(sentences), batch=BATCH, linear=kernel_linear(scheme, names=names))
        numpy_agreement = retrieval_agreement(reference, numpy_path)
        kernel_agreement_ = retrieval_agreement(reference, kernels)
        rows.append({"scheme": scheme.name, "max |difference|": float(np.abs(kernels - numpy_path).max()),
                     "cosine min": float((kernels * numpy_path).sum(axis=1).min()),
                     **{f"numpy {k}": v for k, v in numpy_agreement.items()},
                     **{f"kernels {k}": v for k, v in kernel_agreement_.items()}})
    return rows


__all__ = ["course_sentences", "embeddings", "retrieval_agreement", "recorded_activations", "linear_weights",
           "layer_errors",
           "summary_row", "scheme_summary", "kernel_agreement"]
