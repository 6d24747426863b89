"""Counts, steps and sizes are bounded before any work: a runaway knob is refused at once.

Each count argument either streams its work in bounded memory or has a
documented maximum; asking for more raises a ValueError that names the
argument and the maximum, before anything is allocated (so each call here
returns in milliseconds, not after a MemoryError).
"""
import time

import numpy as np
import pytest

import helpers as h
from helpers.masks import RandomMasks
import keras

HUGE = 10 ** 9


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv1")(inputs)
    x = keras.layers.ReLU(name="conv1_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    return keras.Model(inputs, keras.layers.Dense(5, name="predictions")(x))


IMAGE = np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)
HEAT = np.random.default_rng(1).random((32, 32)).astype(np.float32)

CALLS = {  # name -> (call(model, value), the message's start)
    "integrated_gradients steps": (
        lambda m, v: h.integrated_gradients(m, IMAGE, 0, steps=v, progress=False),
        "steps must be at most 10,000"),
    "integration_points steps": (lambda m, v: h.integration_points(v),
                                 "steps must be at most 10,000"),
    "deletion_curve steps": (
        lambda m, v: h.deletion_curve(m, IMAGE, HEAT, 0, steps=v, progress=False),
        "steps must be at most 10,000"),
    "insertion_curve steps": (
        lambda m, v: h.insertion_curve(m, IMAGE, HEAT, 0, steps=v, progress=False),
        "steps must be at most 10,000"),
    "road_curve steps": (lambda m, v: h.road_curve(m, IMAGE, HEAT, 0, steps=v, progress=False),
                         "steps must be at most 10,000"),
    "mufidelity samples": (
        lambda m, v: h.mufidelity(m, IMAGE, HEAT, 0, samples=v, progress=False),
        "samples must be at most 10,000"),
    "mufidelity samples x grid": (
        lambda m, v: h.mufidelity(m, IMAGE, HEAT, 0, samples=10_000, grid_size=v,
                                  progress=False),
        r"samples x grid_size\^2 must be at most 33,554,432"),
    "compare_maps steps": (
        lambda m, v: h.compare_maps(m, IMAGE, {"a": HEAT}, 0, steps=v, progress=False),
        "steps must be at most 10,000"),
    "compare_maps samples": (
        lambda m, v: h.compare_maps(m, IMAGE, {"a": HEAT}, 0, samples=v,
                                    measures=("deletion", "mufidelity"), progress=False),
        "samples must be at most 10,000"),
    "layer_choice steps": (
        lambda m, v: h.layer_choice(m, IMAGE, 0, steps=v, progress=False),
        "steps must be at most 10,000"),
    "layer_choice layers": (
        lambda m, v: h.layer_choice(m, IMAGE, 0, layers=["conv1"] * min(v, 10 ** 6),
                                    progress=False),
        "layers must be at most 16"),
    "layer_choice images": (
        lambda m, v: h.layer_choice(m, [IMAGE] * min(v, 10 ** 6), 0, progress=False),
        "images must be at most 32"),
    "kernel_shap samples": (lambda m, v: h.kernel_shap(m, IMAGE, 0, samples=v, progress=False),
                            "samples must be at most 20,000"),
    "kernel_shap num_segments": (
        lambda m, v: h.kernel_shap(m, IMAGE, 0, num_segments=v, progress=False),
        "num_segments must be at most 1,000"),
    "superpixels num_segments": (lambda m, v: h.superpixels(IMAGE, v),
                                 "num_segments must be at most 1,000"),
    "visualize_class steps": (lambda m, v: h.visualize_class(m, 0, steps=v, progress=False),
                              "steps must be at most 100,000"),
    "visualize_channel steps": (
        lambda m, v: h.visualize_channel(m, "conv1", 0, steps=v, progress=False),
        "steps must be at most 100,000"),
    "rise num_masks": (lambda m, v: h.rise(m, IMAGE, 0, num_masks=v, progress=False),
                       "num_masks must be at most 20,000"),
    "random_mask_map num_masks": (
        lambda m, v: h.random_mask_map(m, IMAGE, 0, num_masks=v, progress=False),
        "num_masks must be at most 20,000"),
    "random_mask_scores num_masks": (
        lambda m, v: h.random_mask_scores(m, IMAGE, num_masks=v, progress=False),
        "num_masks must be at most 20,000"),
    "RandomMasks count x grid": (
        lambda m, v: RandomMasks(224, 224, 20_000, min(v, 224)),
        r"num_masks x grid_size\^2 must be at most 33,554,432"),
    "expected_gradients background_size": (
        lambda m, v: h.expected_gradients(m, IMAGE, 0, background_size=v, progress=False),
        "background_size must be at most 512"),
    "background_set size": (lambda m, v: h.background_set(32, v), "size must be at most 512"),
    "expected_gradients samples": (
        lambda m, v: h.expected_gradients(m, IMAGE, 0, samples=v, progress=False),
        "samples must be at most 100,000"),
    "perlin_noise count": (lambda m, v: h.perlin_noise(32, count=v),
                           "count x height x width must be at most 33,554,432"),
    "random_sign_noise count": (lambda m, v: h.random_sign_noise(32, count=v),
                                "count x height x width must be at most 33,554,432"),
    "texture_images count": (lambda m, v: h.texture_images("dots", 224, count=v),
                             "count x height x width must be at most 33,554,432"),
    "random_images count": (lambda m, v: h.random_images(224, count=v),
                            "count x height x width must be at most 33,554,432"),
    "concept_cavs random_sets": (
        lambda m, v: h.concept_cavs(m, {"a": IMAGE[None]}, "conv1_activation", random_sets=v),
        "random_sets must be at most 50"),
    "craft num_concepts": (lambda m, v: h.craft(m, IMAGE, 0, num_concepts=v, progress=False),
                           "num_concepts must be at most 50"),
    "craft designs": (lambda m, v: h.craft(m, IMAGE, 0, designs=v, progress=False),
                      "designs must be at most 1,024"),
}


@pytest.mark.parametrize("name", list(CALLS))
def test_a_runaway_count_is_refused_before_any_work(name, tiny):
    call, message = CALLS[name]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        call(tiny, HUGE)
    assert time.perf_counter() - start < 0.5, name  # refused, not attempted


def test_the_largest_accepted_count_is_the_documented_maximum():
    from helpers.integrated_gradients import MAX_STEPS

    assert len(h.integration_points(MAX_STEPS)[0]) == MAX_STEPS + 1
    with pytest.raises(ValueError, match="steps must be at most 10,000.*got 10,001"):
        h.integration_points(MAX_STEPS + 1)


# ---------------------------------------------------------------- messages name the argument

def _answers():
    from helpers.attention import AttentionAnnotation

    return [AttentionAnnotation.create("chelsea", "tabby", cells, grid_size=2, annotator=name)
            for name, cells in (("A", [[0, 0]]), ("B", [[0, 0], [1, 1]]))]


MESSAGES = {  # name -> (call(model), error, match)
    "expected_gradients background_size=0": (
        lambda m: h.expected_gradients(m, IMAGE, 0, background_size=0, progress=False),
        ValueError, "background_size must be a positive integer"),
    "expected_gradients background_size=2.5": (
        lambda m: h.expected_gradients(m, IMAGE, 0, background_size=2.5, progress=False),
        TypeError, "background_size must be a positive integer"),
    "prepare with a model name": (
        lambda m: h.prepare(IMAGE, "efficientnet_lite0"), TypeError,
        r"model_or_size must be a Keras model or an input size .*not the string "
        r"'efficientnet_lite0'.*h\.load_model\('efficientnet_lite0'\)"),
    "prepare with None": (lambda m: h.prepare(IMAGE, None), TypeError,
                          "model_or_size must be a Keras model or an input size"),
    "prepare with size 0": (lambda m: h.prepare(IMAGE, 0), ValueError,
                            "model_or_size: an input size must be positive"),
    "activations batch_size=2.5": (
        lambda m: h.activations(m, IMAGE, "conv1", batch_size=2.5), TypeError,
        "batch_size must be a positive integer"),
    "top_channels count=2.5": (lambda m: h.top_channels(np.ones((2, 2, 3)), 2.5), TypeError,
                               "count must be a positive integer"),
    "panel_layout count=2.5": (lambda m: h.panel_layout(2.5, 3, 1.0), TypeError,
                               "count must be a positive integer"),
    "panel_layout ncols=0": (lambda m: h.panel_layout(3, 0, 1.0), ValueError,
                             "ncols must be a positive integer"),
    "visualize_class steps=2.5": (
        lambda m: h.visualize_class(m, 0, steps=2.5, progress=False), TypeError,
        "steps must be a positive integer"),
    "compare_maps heatmaps={}": (lambda m: h.compare_maps(m, IMAGE, {}, 0), ValueError,
                                 "heatmaps is empty"),
    "compare_maps heatmaps=[]": (lambda m: h.compare_maps(m, IMAGE, [], 0), TypeError,
                                 "heatmaps must be a dict"),
    "compare_maps measures=()": (
        lambda m: h.compare_maps(m, IMAGE, {"a": HEAT}, 0, measures=()), ValueError,
        "measures must be a non-empty list"),
    "layer_choice layers=[]": (lambda m: h.layer_choice(m, IMAGE, 0, layers=[]), ValueError,
                               "layers is empty"),
    "layer_choice layers='conv1'": (lambda m: h.layer_choice(m, IMAGE, 0, layers="conv1"),
                                    TypeError, "layers must be None or a list"),
    "compare_with_class maps={}": (lambda m: h.compare_with_class({}, _answers()), ValueError,
                                   "maps is empty"),
    "compare_with_class maps=[]": (lambda m: h.compare_with_class([], _answers()), TypeError,
                                   "maps must be a dict"),
    "incremental_patch_scores positions=[0.5]": (
        lambda m: _incremental(m, [0.5]), TypeError, "positions must be a list of integer"),
    "incremental_patch_scores positions=[99]": (
        lambda m: _incremental(m, [99]), ValueError, "positions must be a list of position"),
}


def _incremental(model, positions):
    from helpers.incremental import incremental_patch_scores
    from helpers.masks import PatchMasks

    return incremental_patch_scores(model, IMAGE, PatchMasks(32, 32, 8, 8), positions,
                                    progress=False)


@pytest.mark.parametrize("name", list(MESSAGES))
def test_a_bad_value_is_named_with_the_rule_for_its_kind(name, tiny):
    call, error, match = MESSAGES[name]
    with pytest.raises(error, match=match):
        call(tiny)


# ---------------------------------------------------------------- batch sizes

@pytest.mark.parametrize("name", ["saliency", "smoothgrad", "integrated gradients",
                                  "kernel shap", "gradcam", "occlusion", "rise",
                                  "expected gradients", "fgsm", "deletion curve",
                                  "universal perturbation"])
def test_a_runaway_batch_size_is_refused_before_any_work(name, tiny):
    from tests.test_contract import CALLS as EXPLAIN

    start = time.perf_counter()
    with pytest.raises(ValueError, match="batch_size must be at most 1,024 .*got 1,000,000,000"):
        EXPLAIN[name](tiny, IMAGE, batch_size=HUGE)
    assert time.perf_counter() - start < 0.5, name


@pytest.mark.parametrize("call", [
    lambda: h.upsample_map(np.ones((2, 2), np.float32), HUGE),
    lambda: h.attention.cells_to_mask([[0, 0]], 2, HUGE),
    lambda: h.attention_map(_answers(), size=(HUGE, 2)),
], ids=["upsample_map", "cells_to_mask", "attention_map"])
def test_a_runaway_map_size_is_refused_before_any_work(call):
    with pytest.raises(ValueError, match="size must be at most 64,000,000 pixels"):
        call()
