"""Chapter 07: quantization schemes on all-MiniLM-L6-v2's Linears, and the measures of what they
do (tutorial.transformer.schemes, tutorial.transformer.evaluate). The model-free parts run
everywhere; the rest needs the model's files, as tests/test_minilm.py does."""

import numpy as np
import pytest

from tutorial import reference
from tutorial.transformer import evaluate, minilm, schemes

from test_minilm import HAVE_MODEL

needs_model = pytest.mark.skipif(not HAVE_MODEL, reason=f"all-MiniLM-L6-v2 is not installed: {minilm.INSTALL_HINT}")
SCHEME = {s.name: s for s in schemes.SCHEMES}


def test_the_course_ships_at_least_200_distinct_sentences():
    sentences = evaluate.course_sentences()
    assert len(sentences) >= 200 and len(set(sentences)) == len(sentences)
    assert all(s.endswith(".") and len(s) >= 30 for s in sentences)


@pytest.mark.parametrize("granularity, block", [("tensor", (6, 256)), ("channel", (1, 256)), ("token", (1, 256)),
                                                ((1, 128), (1, 128)), ((128, 128), (128, 128))])
def test_a_granularity_is_a_block_and_roundtrip_is_the_reference(granularity, block):
    x = np.random.default_rng(0).standard_normal((6, 256)).astype(np.float32)
    assert schemes.block_of(granularity, x.shape) == block
    want = reference.blockwise_reference(x, block, "e5m2", pow2_scales=True).dequantize()
    np.testing.assert_array_equal(schemes.roundtrip(x, granularity, "e5m2", pow2=True), want)
    with pytest.raises(ValueError, match="granularity"):
        schemes.block_of("row", x.shape)


def test_retrieval_agreement_counts_shared_neighbours():
    rng = np.random.default_rng(1)
    e = rng.standard_normal((30, 8))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    assert evaluate.retrieval_agreement(e, e) == {"top1": 1.0, "top10": 1.0}
    other = rng.standard_normal((30, 8))
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    unrelated = evaluate.retrieval_agreement(e, other)
    assert unrelated["top1"] < 0.5 and unrelated["top10"] < 0.7  # unrelated embeddings share few neighbours
    with pytest.raises(ValueError, match="too few"):
        evaluate.retrieval_agreement(e[:5], e[:5])


@pytest.fixture(scope="module")
def model():
    return minilm.MiniLM.load()


@needs_model
def test_a_quantized_model_is_close_to_float32_but_not_equal(model):
    sentences = evaluate.course_sentences()[:6]
    exact = evaluate.embeddings(model, sentences)
    blocks = evaluate.embeddings(model, sentences, SCHEME["128x128 weights / 1x128 activations"])
    cos = (exact * blocks).sum(axis=1)
    assert (cos > 0.99).all() and (cos < 1 - 1e-7).all()


@needs_model
def test_layer_errors_cover_every_linear_and_e4m3_beats_e5m2_on_real_weights(model):
    acts = evaluate.recorded_activations(model, evaluate.course_sentences()[:2])
    weights = evaluate.linear_weights(model)
    e4 = evaluate.layer_errors(weights, SCHEME["per-tensor"], acts)
    e5 = evaluate.layer_errors(weights, SCHEME["per-tensor, E5M2"], acts)
    w_only = evaluate.layer_errors(weights, SCHEME["weights only, per-tensor"], acts)
    assert [r["linear"] for r in e4] == minilm.linear_names()
    assert all("a_mae" in r for r in e4) and not any("a_mae" in r for r in w_only)
    # The output error: weights only is smaller than weights and activations, Linear by Linear.
    assert all(a["y_mae"] > b["y_mae"] > 0 for a, b in zip(e4, w_only))
    gap = np.array([a["w_sqnr_db"] - b["w_sqnr_db"] for a, b in zip(e4, e5)])
    assert (gap > 3).all(), f"E4M3's extra mantissa bit should be worth about 6 dB: {gap.min():.2f}"


@needs_model
def test_the_shipped_sample_is_what_write_sample_makes_from_the_model(model, tmp_path):
    from tutorial.transformer import sample

    shipped = sample.load_sample()
    made = sample.make_sample(model, evaluate.course_sentences())
    assert sorted(shipped["weights"]) == sorted(sample.SAMPLE_LINEARS)
    for key, array in made.items():
        kind, name = key.split("/", 1)
        section = {"weight": "weights", "activations": "activations", "columns": "columns",
                   "channel_amax": "channel_amax"}[kind]
        np.testing.assert_array_equal(shipped[section][name], array, err_msg=key)
    assert len(shipped["channel_amax"]) == 24  # 6 layers x 4 kinds of Linear input
    w = shipped["weights"]["encoder.layer.2.output.dense"]
    first, last = shipped["columns"]["encoder.layer.2.output.dense"]
    np.testing.assert_array_equal(w, model.weights["encoder.layer.2.output.dense.weight"][:128, first:last])


@needs_model
def test_a_scheme_summary_row_has_the_seed_columns_and_the_retrieval_measures(model):
    sentences = evaluate.course_sentences()[:24]
    rows = evaluate.scheme_summary(model, [SCHEME["per-tensor"], SCHEME["weights only, per-tensor"]], sentences,
                                   activation_sentences=2)
    both, weights_only = rows
    for key in ("weight MAE", "act MAE", "act max err", "output MAE", "output max err", "output SQNR dB"):
        assert both[key] > 0, key
    assert "act MAE" not in weights_only and weights_only["output MAE"] < both["output MAE"]
    assert 0.99 < both["cosine mean"] < 1 and both["cosine min"] <= both["cosine mean"]
    assert 0 <= both["top1"] <= 1 and 0 <= both["top10"] <= 1
