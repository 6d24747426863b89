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
    "maximize_class steps": (lambda m, v: h.maximize_class(m, 0, steps=v),
                             "steps must be a positive integer of at most 100,000"),
    "maximize_channel steps": (lambda m, v: h.maximize_channel(m, "conv1", 0, steps=v),
                               "steps must be a positive integer of at most 100,000"),
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
    "perlin_noise count": (lambda m, v: h.perlin_noise(32, count=v),
                           "count x height x width must be at most 33,554,432"),
    "random_sign_noise count": (lambda m, v: h.random_sign_noise(32, count=v),
                                "count x height x width must be at most 33,554,432"),
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
