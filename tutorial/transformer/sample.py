"""A few real layers of all-MiniLM-L6-v2, small enough to ship with the course: chapter 07's
fallback when the model's files are absent (`minilm_sample.npz`, package data, under 1 MB).

What it holds, all float32 and exactly as the model computes it on the course's sentences:

* `SAMPLE_LINEARS`: three Linears, each with a slice of its weight (its first 128 output
  channels, and `COLUMNS` input channels chosen to hold its input's loudest channel) and the
  same input channels of its activations for the first `TOKENS` tokens;
* the per-channel amax of each kind of Linear input in every layer, over all the sentences:
  what the outlier heat map draws.

Made by [`write_sample`][] from the installed model:

    python -c "from tutorial.transformer import sample; sample.write_sample()"
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np

from .minilm import LAYERS, MiniLM, encode

SAMPLE_FILE = "minilm_sample.npz"
# The Linears kept: the MLP's first one (input: the residual stream with its outlier channel
# 99), its second (input: GELU outputs, 1536 channels), and a query projection.
SAMPLE_LINEARS = ("encoder.layer.0.intermediate.dense", "encoder.layer.2.output.dense",
                  "encoder.layer.3.attention.self.query")
ROWS, COLUMNS, TOKENS = 128, 384, 64
# The distinct inputs of a layer's Linears (query, key and value share one), as the heat map names them.
INPUT_KINDS = {"attention.self.query": "attention input", "attention.output.dense": "attention output",
               "intermediate.dense": "MLP input", "output.dense": "MLP hidden (after GELU)"}


def channel_amax(model: MiniLM, sentences, batch: int = 32) -> dict:
    """Per layer and kind of Linear input (`INPUT_KINDS`): the amax of each input channel over
    every token of `sentences`, float32. Keys like "2.MLP input"."""
    amax: dict = {}

    def record(name, x):
        layer, part = name.split(".")[2], name.split(".", 3)[3]
        if part in INPUT_KINDS:
            key = f"{layer}.{INPUT_KINDS[part]}"
            m = np.abs(x).max(axis=0)
            amax[key] = m if key not in amax else np.maximum(amax[key], m)

    encode(model, list(sentences), batch=batch, record=record)
    return amax


def make_sample(model: MiniLM, sentences) -> dict:
    """The arrays `minilm_sample.npz` holds (see the module docstring)."""
    seen: dict = {}

    def record(name, x):
        if name in SAMPLE_LINEARS and name not in seen:
            seen[name] = x

    encode(model, list(sentences[:32]), record=record)
    arrays = {}
    for name in SAMPLE_LINEARS:
        x = seen[name]
        loudest = int(np.abs(x).max(axis=0).argmax())
        start = min(max(0, loudest - COLUMNS // 2), x.shape[1] - COLUMNS)
        cols = slice(start, start + COLUMNS)
        arrays[f"weight/{name}"] = np.ascontiguousarray(model.weights[name + ".weight"][:ROWS, cols])
        arrays[f"activations/{name}"] = np.ascontiguousarray(x[:TOKENS, cols])
        arrays[f"columns/{name}"] = np.array([start, start + COLUMNS])
    for key, m in channel_amax(model, sentences).items():
        arrays[f"channel_amax/{key}"] = m.astype(np.float32)
    return arrays


def write_sample(path: Path | str | None = None) -> Path:
    """Make the sample from the installed model and the course's sentences and save it (by
    default into the package, beside this module)."""
    from .evaluate import course_sentences

    path = Path(path) if path is not None else Path(__file__).with_name(SAMPLE_FILE)
    np.savez_compressed(path, **make_sample(MiniLM.load(), course_sentences()))
    return path


def load_sample() -> dict:
    """The shipped sample: {"weights": {name: w}, "activations": {name: x}, "columns": {name:
    (first, last + 1)}, "channel_amax": {"layer.kind": amax}}."""
    with resources.files(__package__).joinpath(SAMPLE_FILE).open("rb") as f, np.load(f) as data:
        out: dict = {"weights": {}, "activations": {}, "columns": {}, "channel_amax": {}}
        section = {"weight": "weights", "activations": "activations", "columns": "columns",
                   "channel_amax": "channel_amax"}
        for key in data.files:
            kind, name = key.split("/", 1)
            out[section[kind]][name] = data[key]
    return out


def amax_matrix(channel_amax_: dict, kind: str) -> np.ndarray:
    """(LAYERS, channels): the per-channel amax of one kind of input, layer by layer."""
    return np.stack([channel_amax_[f"{layer}.{kind}"] for layer in range(LAYERS)])


__all__ = ["SAMPLE_LINEARS", "INPUT_KINDS", "channel_amax", "make_sample", "write_sample", "load_sample",
           "amax_matrix"]
