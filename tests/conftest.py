"""Shared fixtures: tiny models with known structure, and the real model once per session."""
import numpy as np
import pytest

import helpers as h
import keras


def build_tiny_cnn(size=32, classes=10, seed=0, name="tiny_cnn"):
    """A small CNN of the course's contract: 0..255 RGB in, logits out."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = keras.layers.ReLU(name="conv1_activation")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(name="conv2_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="session")
def tiny_cnn():
    return build_tiny_cnn()


@pytest.fixture
def tiny_image():
    return np.random.default_rng(0).uniform(0, 255, (32, 32, 3)).astype(np.float32)


@pytest.fixture(scope="session")
def lite0():
    """The real EfficientNet-Lite0 with ImageNet weights (converted once, cached)."""
    return h.load_model("efficientnet_lite0")
