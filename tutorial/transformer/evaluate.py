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
from .minilm import MiniLM, encode, linear_names

BATCH = 32
from .schemes import Scheme, quantized_linear, roundtrip


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


def layer_errors(model: MiniLM, scheme: Scheme, activations: dict) -> list[dict]:
    """Per Linear: its weight's and its activations' error metrics under `scheme` (activations
    quantized per batch, as the quantized model sees them)."""
    rows = []
    for name in linear_names():
        w = model.weights[name + ".weight"]
        row = {"linear": name, **{f"w_{k}": v for k, v in error_metrics(w, roundtrip(w, scheme.weights, scheme.fmt,
                                                                                       scheme.pow2)).items()}}
        if scheme.activations is not None:
            x = np.concatenate(activations[name])
            xq = np.concatenate([roundtrip(a, scheme.activations, scheme.fmt, scheme.pow2) for a in activations[name]])
            row.update({f"a_{k}": v for k, v in error_metrics(x, xq).items()})
        rows.append(row)
    return rows


def scheme_summary(model: MiniLM, schemes, sentences, activation_sentences: int = 16) -> list[dict]:
    """One row per scheme: weight and activation MAE, max error and SQNR over all Linears,
    embedding cosine with float32 (mean and worst), retrieval agreement top-1 and top-10."""
    reference = embeddings(model, sentences)
    acts = recorded_activations(model, sentences[:activation_sentences])
    rows = []
    for scheme in schemes:
        layers = layer_errors(model, scheme, acts)
        emb = embeddings(model, sentences, scheme)
        cos = (emb * reference).sum(axis=1)
        row = {"scheme": scheme.name, "weight MAE": np.mean([r["w_mae"] for r in layers]),
               "weight max err": max(r["w_max_abs"] for r in layers),
               "weight SQNR dB": np.mean([r["w_sqnr_db"] for r in layers])}
        if scheme.activations is not None:
            row.update({"act MAE": np.mean([r["a_mae"] for r in layers]),
                        "act max err": max(r["a_max_abs"] for r in layers),
                        "act SQNR dB": np.mean([r["a_sqnr_db"] for r in layers])})
        row.update({"cosine mean": float(cos.mean()), "cosine min": float(cos.min()),
                    **retrieval_agreement(reference, emb)})
        rows.append(row)
    return rows


__all__ = ["course_sentences", "embeddings", "retrieval_agreement", "recorded_activations", "layer_errors",
           "scheme_summary"]
