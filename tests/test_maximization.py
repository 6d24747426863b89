"""Activation maximisation: the optimised input must beat grey and random inputs by a clear margin.

A tiny model with hand-set weights has a known best input (a logit that
sums the red channel and subtracts the blue one is maximised by pure red),
so the ascent is checked against the analytic optimum; the random tiny CNN
and, with a few steps, the real model check the margins.
"""
import numpy as np
import pytest

import helpers as h
from helpers.maximization import FAST_STEPS, FULL_STEPS, maximization_target
import keras

SIZE = 16


def build_colour_cnn():
    """Channel 0 of 'colour' = red − blue, channel 1 = blue; logit 0 = mean(channel 0), 1 = mean(channel 1)."""
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(2, 1, name="colour")(x)
    x = keras.layers.ReLU(name="colour_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="colour_cnn")
    kernel = np.array([[[[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]]], np.float32)  # (1, 1, 3, 2)
    model.get_layer("colour").set_weights([kernel, np.zeros(2, np.float32)])
    model.get_layer("predictions").set_weights([np.eye(2, dtype=np.float32),
                                                np.zeros(2, np.float32)])
    return model


PLAIN = dict(tv_weight=0.0, norm_weight=0.0, jitter=0, rotation=0.0, progress=False)


@pytest.fixture(scope="module")
def colour_cnn():
    return build_colour_cnn()


def _grey(size):
    return np.full((size, size, 3), 127.5, np.float32)


def _noise(size, count=8):
    return np.random.default_rng(5).uniform(0, 255, (count, size, size, 3)).astype(np.float32)


def _warm():
    """A start where red > blue everywhere: the ReLU passes gradients at every pixel."""
    return np.broadcast_to(np.array([150.0, 128.0, 100.0], np.float32), (SIZE, SIZE, 3)).copy()


def test_class_ascent_finds_the_known_optimum(colour_cnn):
    image = h.maximize_class(colour_cnn, 0, steps=40, start=_warm(), **PLAIN)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 255.0
    # The logit grows with red and falls with blue: the best input is pure red (green is free).
    assert image[..., 0].mean() > 240 and image[..., 2].mean() < 15
    np.testing.assert_allclose(h.class_score(colour_cnn, image, 0), 2.0, atol=0.1)


def test_channel_ascent_finds_the_known_optimum(colour_cnn):
    images = h.maximize_channel(colour_cnn, "colour_activation", [0, 1], steps=40, **PLAIN)
    assert images.shape == (2, SIZE, SIZE, 3)
    assert images[0, ..., 0].mean() > 240 and images[0, ..., 2].mean() < 15   # red − blue
    assert images[1, ..., 2].mean() > 240                                      # blue
    scores = h.channel_score(colour_cnn, images, "colour_activation", [0, 1])
    np.testing.assert_allclose(scores, [2.0, 1.0], atol=0.1)


def test_regularisers_and_jitter_still_reach_near_the_optimum(colour_cnn):
    image = h.maximize_class(colour_cnn, 0, steps=60, start=_warm(), progress=False)  # defaults
    assert h.class_score(colour_cnn, image, 0) > 1.5


def test_pre_activation_target(colour_cnn, tiny_cnn):
    assert maximization_target(colour_cnn, "colour_activation") == "colour"
    assert maximization_target(colour_cnn, "colour_activation", pre_activation=False) == (
        "colour_activation")
    assert maximization_target(colour_cnn, "colour") == "colour"
    # The optimised quantity is the ReLU's input: it can be negative, the ReLU's output cannot.
    black = np.zeros((SIZE, SIZE, 3), np.float32)
    assert h.channel_score(colour_cnn, black, "colour_activation", 1) == pytest.approx(-1.0)
    assert h.channel_score(colour_cnn, black, "colour_activation", 1,
                           pre_activation=False) == pytest.approx(0.0)
    assert maximization_target(tiny_cnn, "conv2_activation") == "conv2"


def test_tiny_cnn_scores_rise_clearly_above_grey_and_random(tiny_cnn):
    # A random tiny CNN likes pixel-level patterns, which total variation forbids: ascend unregularised.
    size = h.input_size(tiny_cnn)[0]
    unregularised = dict(tv_weight=0.0, norm_weight=0.0, progress=False)
    classes = [3, 7]
    images = h.maximize_class(tiny_cnn, classes, steps=40, **unregularised)
    optimised = h.class_score(tiny_cnn, images, classes)
    for index, score in zip(classes, optimised):
        grey = h.class_score(tiny_cnn, _grey(size), index)
        noise = h.class_score(tiny_cnn, _noise(size), index)
        margin = max(0.2, 5 * float(noise.std()))
        assert score > max(grey, noise.max()) + margin, (index, score, grey, noise)
    channels = [2, 9]
    maximised = h.maximize_channel(tiny_cnn, "conv2_activation", channels, steps=40,
                                   **unregularised)
    for channel, image in zip(channels, maximised):
        score = h.channel_score(tiny_cnn, image, "conv2_activation", channel)
        grey = h.channel_score(tiny_cnn, _grey(size), "conv2_activation", channel)
        noise = h.channel_score(tiny_cnn, _noise(size), "conv2_activation", channel)
        margin = max(0.2, 5 * float(noise.std()))
        assert score > max(grey, noise.max()) + margin, (channel, score, grey, noise)


def test_seeded_runs_repeat_and_seeds_differ(tiny_cnn):
    kwargs = dict(steps=6, progress=False, rotation=5.0, scale=(0.9, 1.1))
    first = h.maximize_class(tiny_cnn, 1, seed=3, **kwargs)
    again = h.maximize_class(tiny_cnn, 1, seed=3, **kwargs)
    other = h.maximize_class(tiny_cnn, 1, seed=4, **kwargs)
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).mean() > 1.0
    state = np.random.get_state()[1].copy()
    h.maximize_class(tiny_cnn, 1, seed=3, steps=2, progress=False)
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # global numpy RNG restored


def test_start_images_and_snapshots(tiny_cnn):
    size = h.input_size(tiny_cnn)[0]
    snapshots = h.Snapshots(at=(1, 4))
    photo = h.prepare("chelsea", tiny_cnn)
    image = h.maximize_class(tiny_cnn, 2, steps=4, start=photo, callbacks=[snapshots],
                             learning_rate=0.5, **PLAIN)
    assert sorted(snapshots.images) == [1, 4] and snapshots.scores.shape == (4, 1)
    np.testing.assert_allclose(snapshots.images[4][0], image, atol=1e-4)
    # Four small steps from the photo stay close to it (a few pixel levels per step).
    assert np.abs(image - photo[0]).max() < 4 * 0.5 * 32
    assert snapshots.scores[-1, 0] > snapshots.scores[0, 0]
    np.testing.assert_allclose(snapshots.scores[0, 0], h.class_score(tiny_cnn, photo[0], 2),
                               rtol=1e-5)
    grey = h.maximize_class(tiny_cnn, 2, steps=1, start="grey", **PLAIN)
    assert grey.shape == (size, size, 3)


def test_weight_changes_rebuild_the_cached_optimiser():
    model = build_colour_cnn()
    red = h.maximize_class(model, 0, steps=20, start=_warm(), **PLAIN)
    kernel = np.array([[[[-1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]]], np.float32)  # now blue − red
    model.get_layer("colour").set_weights([kernel, np.zeros(2, np.float32)])
    blue = h.maximize_class(model, 0, steps=20, start=_warm()[..., ::-1].copy(), **PLAIN)
    assert red[..., 0].mean() > 200 and blue[..., 2].mean() > 200


def test_progress_bar_runs(tiny_cnn, capsys):
    h.maximize_class(tiny_cnn, 0, steps=3, progress=True)
    assert "maximising class 0" in capsys.readouterr().err


def test_fast_mode_lowers_the_default_steps(monkeypatch):
    monkeypatch.setenv("UNMASKING_CNNS_FAST", "0")
    assert h.default_steps() == FULL_STEPS
    monkeypatch.setenv("UNMASKING_CNNS_FAST", "1")
    assert h.default_steps() == FAST_STEPS < FULL_STEPS


def test_real_model_few_steps_beat_grey_and_noise(lite0):
    # Default regularisation; a few steps already lift the logit by several units (e^3 = 20x odds).
    image = h.maximize_class(lite0, "espresso", steps=20, progress=False)
    score = h.class_score(lite0, image, "espresso")
    grey = h.class_score(lite0, _grey(224), "espresso")
    noise = h.class_score(lite0, _noise(224, count=2), "espresso")
    assert score > max(grey, noise.max()) + 3.0, (score, grey, noise)
    # A shallow channel's favourite is a fine texture, which total variation damps: leave it out.
    channel = h.maximize_channel(lite0, "block2b_expand_activation", 0, steps=10, tv_weight=0.0,
                                 progress=False)
    score = h.channel_score(lite0, channel, "block2b_expand_activation", 0)
    grey = h.channel_score(lite0, _grey(224), "block2b_expand_activation", 0)
    noise = h.channel_score(lite0, _noise(224, count=2), "block2b_expand_activation", 0)
    assert score > max(grey, noise.max()) + 1.0, (score, grey, noise)


def test_errors_name_the_problem(colour_cnn, tiny_cnn):
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        h.maximize_class(colour_cnn, 0, steps=0, progress=False)
    with pytest.raises(TypeError, match="steps must be a positive integer"):  # as everywhere
        h.maximize_channel(colour_cnn, "colour", 0, steps=2.5, progress=False)
    with pytest.raises(ValueError, match="steps must be a positive integer of at most 100,000"):
        h.maximize_class(colour_cnn, 0, steps=100_001, progress=False)
    with pytest.raises(ValueError, match="channel 2 is out of range: layer 'colour' has 2 "
                                         "channels, 0..1"):
        h.maximize_channel(colour_cnn, "colour_activation", 2, steps=1, progress=False)
    with pytest.raises(TypeError, match="a channel is an integer index"):
        h.maximize_channel(colour_cnn, "colour", "red", steps=1, progress=False)
    with pytest.raises(ValueError, match="no layer named 'colours'.*Did you mean: colour"):
        h.maximize_channel(colour_cnn, "colours", 0, steps=1, progress=False)
    with pytest.raises(ValueError, match="'avg_pool' outputs shape \\(2,\\), not a spatial map"):
        h.maximize_channel(colour_cnn, "avg_pool", 0, steps=1, progress=False)
    with pytest.raises(ValueError, match="'espresso' is an ImageNet class name, but the model has 10 classes"):
        h.maximize_class(tiny_cnn, "espresso", steps=1, progress=False)
    with pytest.raises(ValueError, match="start must be 'noise', 'grey' or an image"):
        h.maximize_class(colour_cnn, 0, steps=1, start="gray noise", progress=False)
    with pytest.raises(ValueError, match="start holds 2 images for 1 targets"):
        h.maximize_class(colour_cnn, 0, steps=1, start=np.zeros((2, SIZE, SIZE, 3)),
                         progress=False)
    with pytest.raises(ValueError, match="learning_rate must be a positive step size"):
        h.maximize_class(colour_cnn, 0, steps=1, learning_rate=0, progress=False)
    with pytest.raises(ValueError, match="tv_weight must be a number >= 0"):
        h.maximize_class(colour_cnn, 0, steps=1, tv_weight=-1, progress=False)
    with pytest.raises(ValueError, match="jitter must be a number >= 0"):
        h.maximize_class(colour_cnn, 0, steps=1, jitter=-2, progress=False)
    with pytest.raises(ValueError, match="scale is a \\(low, high\\) zoom range"):
        h.maximize_class(colour_cnn, 0, steps=1, scale=(1.2, 0.8), progress=False)
    with pytest.raises(ValueError, match="snapshot steps count from 1"):
        h.Snapshots(at=(0, 5))
