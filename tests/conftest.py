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


# Input sizes at which the untrained keras.applications models keep every layer name the tests
# check: the last feature map (block5_conv3, conv5_block3_out, mixed10, block14_sepconv2_act,
# out_relu) is still at least 2 x 2, so it stays the default CAM layer.
SMALL_APPLICATION_SIZES = {"vgg16": 64, "resnet50": 64, "inception_v3": 107, "xception": 71,
                           "mobilenet_v2": 64}


@pytest.fixture(scope="session")
def small_untrained_application():
    """``build(name)``: the zoo's untrained keras.applications model at a small input size,
    built by ``h.load_model(name, weights=None)`` once per session.

    The tests of these models check layer names, the ReLUs, where a model splits and that
    maps come out, which do not depend on the size; at 224 or 299 pixels they cost seconds
    more to build and run (VGG16's first dense layer alone has 103 M weights at 224).
    """
    from helpers import models

    built = {}

    def build(name):
        if name not in built:
            constructor, preprocessing, _ = models._APPLICATIONS[name]
            with pytest.MonkeyPatch.context() as patch:
                patch.setitem(models._APPLICATIONS, name,
                              (constructor, preprocessing, SMALL_APPLICATION_SIZES[name]))
                built[name] = h.load_model(name, weights=None)
        return built[name]

    return build


# Test modules that compare no floating-point result of a model: lesson text, files, packaging,
# hosted installs, import layers, error paths and limits. Their verdict is the same on every
# CPU, so CI's emulated-CPU pass deselects them (-m "not cpu_independent").
CPU_INDEPENDENT_MODULES = {
    "test_attention", "test_environment", "test_error_rule", "test_exercises", "test_hosted",
    "test_layers", "test_lesson_text", "test_limits", "test_packaging", "test_photos",
    "test_site", "test_teaching",
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if getattr(item, "module", None) is not None and \
                item.module.__name__.rpartition(".")[2] in CPU_INDEPENDENT_MODULES:
            item.add_marker(pytest.mark.cpu_independent)
