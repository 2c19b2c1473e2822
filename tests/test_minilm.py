"""Chapter 07: all-MiniLM-L6-v2's forward pass in numpy (tutorial.transformer.minilm) against the
embeddings sentence-transformers computes (tests/fixtures/minilm_reference.npz, made by
tests/fixtures/make_minilm_reference.py). Needs the model's files (see minilm.INSTALL_HINT);
the README's test command installs them."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from tutorial.transformer import minilm

FIXTURE = Path(__file__).parent / "fixtures" / "minilm_reference.npz"
HAVE_MODEL = (minilm.find_model_dir() is not None and importlib.util.find_spec("safetensors") is not None
              and importlib.util.find_spec("tokenizers") is not None)
pytestmark = pytest.mark.skipif(not HAVE_MODEL, reason=f"all-MiniLM-L6-v2 is not installed: {minilm.INSTALL_HINT}")


@pytest.fixture(scope="module")
def model():
    return minilm.MiniLM.load()


@pytest.fixture(scope="module")
def reference():
    data = np.load(FIXTURE)
    return [str(s) for s in data["sentences"]], data["embeddings"]


def test_forward_pass_matches_sentence_transformers(model, reference):
    sentences, want = reference
    got = minilm.encode(model, sentences, batch=7)  # batches of unequal padding: the mask must hide it
    assert got.shape == want.shape and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    cosine = (got * want).sum(axis=1)
    assert cosine.min() > 0.99999, f"cosine with sentence-transformers' embeddings: min {cosine.min()}"
    assert np.abs(got - want).max() < 1e-6  # (2.3e-7 measured)


def test_every_linear_goes_through_the_hook_in_order(model):
    seen = []

    def linear(name, x, w, b):
        seen.append((name, x.shape[-1], w.shape))
        return minilm.float32_linear(name, x, w, b)

    minilm.encode(model, ["one sentence"], linear=linear)
    assert [name for name, _, _ in seen] == minilm.linear_names()
    assert all(inputs == w[1] for _, inputs, w in seen)


def test_a_wrong_linear_changes_the_embeddings(model, reference):
    """The hook is really used: dropping the MLP's biases moves every embedding."""
    sentences, want = reference

    def no_bias(name, x, w, b):
        return minilm.float32_linear(name, x, w, 0 * b if "intermediate" in name else b)

    got = minilm.encode(model, sentences[:4], linear=no_bias)
    assert ((got * want[:4]).sum(axis=1) < 0.9999).all()


def test_tokenize_wants_a_list_of_strings(model):
    with pytest.raises(TypeError, match="list of strings"):
        model.tokenize("a string, not a list")
