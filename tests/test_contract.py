"""The call contract every explainer shares (helpers.pipeline).

Every explainer x {the course model, a user model nested in a Sequential, a
model ending in a softmax and its logit twin, a grayscale model}: maps of the
documented shape, the same explanation with and without the softmax head,
and the same exception type for the same bad value in every module.
"""
import numpy as np
import pytest

import helpers as h
from helpers.pipeline import model_batch
import keras

CLASSES = 5


def _tiny_layers(channels, size, head_activation=None, seed=0):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, channels), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", name="conv1")(x)
    x = keras.layers.ReLU(name="conv1_activation")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="conv2")(x)
    x = keras.layers.ReLU(name="conv2_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(CLASSES, activation=head_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"tiny_{channels}ch_{head_activation or 'logits'}")


@pytest.fixture(scope="module")
def logit_model():
    return _tiny_layers(3, 32)


@pytest.fixture(scope="module")
def softmax_model(logit_model):
    """The same weights with ``Dense(..., activation="softmax")``: the usual user model."""
    model = _tiny_layers(3, 32, head_activation="softmax", seed=1)
    model.set_weights(logit_model.get_weights())
    return model


@pytest.fixture(scope="module")
def softmax_layer_model(logit_model):
    """The logit model followed by a separate ``Softmax`` layer (shares its layers)."""
    return keras.Model(logit_model.inputs[0], keras.layers.Softmax(name="softmax")(
        logit_model.outputs[0]), name="tiny_with_softmax_layer")


@pytest.fixture(scope="module")
def nested_model():
    """A pretrained base inside a Sequential with a new softmax head, as in fine-tuning."""
    keras.utils.set_random_seed(3)
    base_in = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="base_preprocess")(base_in)
    x = keras.layers.Conv2D(8, 3, padding="same", name="base_conv")(x)
    x = keras.layers.ReLU(name="base_activation")(x)
    base = keras.Model(base_in, x, name="base")
    return keras.Sequential([keras.Input((32, 32, 3)), base,
                             keras.layers.GlobalAveragePooling2D(name="pool"),
                             keras.layers.Dense(CLASSES, activation="softmax", name="head")],
                            name="fine_tuned")


@pytest.fixture(scope="module")
def gray_model():
    return _tiny_layers(1, 28)


def _image(size, channels, seed=0):
    shape = (size, size) if channels == 1 else (size, size, 3)
    return np.random.default_rng(seed).uniform(0, 255, shape).astype(np.float32)


def _heat(model, image, c):
    return h.saliency(model, image, c, progress=False)


# name -> explain(model, images, class_index) returning an array with one map per image
EXPLAINERS = {
    "saliency": lambda m, x, c: h.saliency(m, x, c, progress=False),
    "guided saliency": lambda m, x, c: h.saliency(m, x, c, method="guided", progress=False),
    "smoothgrad": lambda m, x, c: h.smoothgrad(m, x, c, samples=3, progress=False),
    "deconvnet saliency": lambda m, x, c: h.saliency(m, x, c, method="deconvnet", progress=False),
    "squaregrad": lambda m, x, c: h.squaregrad(m, x, c, samples=3, progress=False),
    "vargrad": lambda m, x, c: h.vargrad(m, x, c, samples=3, progress=False),
    "integrated gradients": lambda m, x, c: h.integrated_gradients(m, x, c, steps=4,
                                                                   progress=False).maps,
    "gradient x input": lambda m, x, c: h.gradient_x_input(m, x, c, progress=False),
    "kernel shap": lambda m, x, c: h.kernel_shap(m, x, c, num_segments=8, samples=24,
                                                 progress=False).maps,
    "gradcam": lambda m, x, c: h.gradcam(m, x, c, progress=False),
    "gradcam++": lambda m, x, c: h.gradcam(m, x, c, method="gradcam++", progress=False),
    "layercam": lambda m, x, c: h.gradcam(m, x, c, method="layercam", progress=False),
    "hirescam": lambda m, x, c: h.gradcam(m, x, c, method="hirescam", progress=False),
    "scorecam": lambda m, x, c: h.gradcam(m, x, c, method="scorecam", batch_size=4,
                                          progress=False),
    "faster-scorecam": lambda m, x, c: h.gradcam(m, x, c, method="faster-scorecam",
                                                 max_channels=2, progress=False),
    "guided gradcam": lambda m, x, c: h.guided_gradcam(m, x, c, progress=False),
    "gradcam parts": lambda m, x, c: h.gradcam_parts(m, x, c).heatmap,
    "occlusion": lambda m, x, c: h.occlusion_map(m, x, c, patch_size=8, stride=8,
                                                 progress=False),
    "occlusion (logit)": lambda m, x, c: h.occlusion_map(m, x, c, patch_size=8, stride=8,
                                                         score="logit", progress=False),
    "rise": lambda m, x, c: h.rise(m, x, c, num_masks=12, progress=False),
    "binary masks": lambda m, x, c: h.random_mask_map(m, x, c, num_masks=12, progress=False),
    "expected gradients": lambda m, x, c: h.expected_gradients(
        m, x, c, samples=4, background=np.full((2,) + m.inputs[0].shape[1:], 100, np.float32),
        progress=False).maps[..., 0, :, :],
    "loss gradient": lambda m, x, c: h.loss_gradient(m, x, c)[..., 0],
    "fgsm": lambda m, x, c: h.fgsm(m, x, c, epsilon=8, progress=False)[..., 0],
    "iterative fgsm": lambda m, x, c: h.iterative_fgsm(m, x, c, epsilon=4, progress=False)[..., 0],
    "deletion curve": lambda m, x, c: h.deletion_curve(
        m, x, _heat(m, x, c), c, steps=4, progress=False).scores,
    "insertion curve": lambda m, x, c: h.insertion_curve(
        m, x, _heat(m, x, c), c, steps=4, progress=False).scores,
}
SPATIAL = {"deletion curve", "insertion curve"}  # the others return maps of the image's size


@pytest.mark.parametrize("name", list(EXPLAINERS))
def test_a_softmax_head_gives_the_logit_models_explanation(name, logit_model, softmax_model,
                                                           softmax_layer_model):
    image = _image(32, 3)
    expected = np.asarray(EXPLAINERS[name](logit_model, image, 2), dtype=np.float64)
    assert np.abs(expected).max() > 0  # not comparing zeros
    for model in (softmax_model, softmax_layer_model):
        got = np.asarray(EXPLAINERS[name](model, image, 2), dtype=np.float64)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=2e-4,
                                   atol=2e-5 * np.abs(expected).max(), err_msg=model.name)


def test_the_softmax_is_found_once_and_the_model_is_untouched(logit_model, softmax_model,
                                                              softmax_layer_model, nested_model):
    assert h.model_spec(logit_model).softmax is None
    assert "Dense layer 'predictions'" in h.model_spec(softmax_model).softmax
    assert "Softmax layer 'softmax'" in h.model_spec(softmax_layer_model).softmax
    assert "inside 'fine_tuned'" not in h.model_spec(nested_model).softmax  # the top-level head
    assert softmax_model.layers[-1].activation is keras.activations.softmax
    image = _image(32, 3)[None]
    probabilities = np.asarray(softmax_model(image))
    np.testing.assert_allclose(h.probabilities(h.predict_logits(softmax_model, image)),
                               probabilities, atol=1e-6)
    np.testing.assert_allclose(h.predict_logits(softmax_model, image),
                               h.predict_logits(logit_model, image), atol=1e-5)


@pytest.mark.parametrize("name", list(EXPLAINERS))
@pytest.mark.parametrize("kind", ["nested", "gray"])
def test_user_models_get_maps_of_the_documented_shape(name, kind, nested_model, gray_model):
    model, size, channels = ((nested_model, 32, 3) if kind == "nested" else
                             (gray_model, 28, 1))
    explain = EXPLAINERS[name]
    one = np.asarray(explain(model, _image(size, channels), 1))
    two = np.asarray(explain(model, [_image(size, channels, 0), _image(size, channels, 1)],
                             [1, 3]))
    if name in SPATIAL:
        assert one.ndim == 1 and two.shape == (2,) + one.shape
    else:
        assert one.shape == (size, size) and two.shape == (2, size, size)
    assert np.isfinite(two).all()
    np.testing.assert_allclose(two[0], one, rtol=1e-4, atol=1e-5 * (np.abs(one).max() + 1e-12))


def test_gradcam_reaches_a_layer_inside_the_nested_base(nested_model):
    heat = h.gradcam(nested_model, _image(32, 3), 0, layer="base_activation", progress=False)
    parts = h.gradcam_parts(nested_model, _image(32, 3), 0, layer="base_activation")
    assert heat.shape == (32, 32) and parts.activations.shape == (32, 32, 8)
    np.testing.assert_allclose(heat, parts.heatmap, rtol=1e-4, atol=1e-6)


def test_gray_images_in_every_form(gray_model):
    gray = _image(28, 1)
    batch, single = model_batch(gray_model, gray)
    assert single and batch.shape == (1, 28, 28, 1)
    np.testing.assert_array_equal(batch[0, ..., 0], gray)  # a float image keeps its values
    rgb = np.stack([gray.astype(np.uint8)] * 3, axis=-1)
    np.testing.assert_array_equal(model_batch(gray_model, rgb)[0][0, ..., 0],
                                  gray.astype(np.uint8))
    photo, _ = model_batch(gray_model, "coffee")  # a colour photo becomes its luminance
    assert photo.shape == (1, 28, 28, 1) and 0 <= photo.min() < photo.max() <= 255
    prepared, single = model_batch(gray_model, np.zeros((3, 28, 28, 1), np.float32))
    assert not single and prepared.shape == (3, 28, 28, 1)


# The tiny models' 8-pixel patches would be 28 x 28 = 784 passes of the course model; the same
# 4 x 4 grid of patches, 56 pixels wide, checks the same contract in 16.
COURSE_MODEL_EXPLAINERS = {
    **EXPLAINERS,
    "occlusion": lambda m, x, c: h.occlusion_map(m, x, c, patch_size=56, stride=56,
                                                 progress=False),
    "occlusion (logit)": lambda m, x, c: h.occlusion_map(m, x, c, patch_size=56, stride=56,
                                                         score="logit", progress=False),
}


@pytest.mark.cpu_independent  # shapes and finiteness: the same verdict on every CPU
def test_the_course_model(lite0):
    for name, explain in COURSE_MODEL_EXPLAINERS.items():
        if name in ("scorecam",):  # 1280 forward passes; covered on the tiny models
            continue
        result = np.asarray(explain(lite0, "chelsea", "tabby"))
        expected = (5,) if name in SPATIAL else (224, 224)  # curves: 4 steps, 5 points
        assert result.shape == expected and np.isfinite(result).all(), name


# ---------------------------------------------------------------- one rule for errors

CALLS = {  # name -> call(model, image, **bad_knob)
    "saliency": lambda m, x, **k: h.saliency(m, x, 0, progress=False, **k),
    "smoothgrad": lambda m, x, **k: h.smoothgrad(m, x, 0, samples=2, progress=False, **k),
    "integrated gradients": lambda m, x, **k: h.integrated_gradients(m, x, 0, steps=2,
                                                                     progress=False, **k),
    "gradient x input": lambda m, x, **k: h.gradient_x_input(m, x, 0, progress=False, **k),
    "kernel shap": lambda m, x, **k: h.kernel_shap(m, x, 0, num_segments=4, samples=8,
                                                   progress=False, **k),
    "gradcam": lambda m, x, **k: h.gradcam(m, x, 0, progress=False, **k),
    "guided gradcam": lambda m, x, **k: h.guided_gradcam(m, x, 0, progress=False, **k),
    "occlusion": lambda m, x, **k: h.occlusion_map(m, x, 0, patch_size=8, progress=False, **k),
    "rise": lambda m, x, **k: h.rise(m, x, 0, num_masks=4, progress=False, **k),
    "binary masks": lambda m, x, **k: h.random_mask_map(m, x, 0, num_masks=4, progress=False,
                                                        **k),
    "expected gradients": lambda m, x, **k: h.expected_gradients(m, x, 0, samples=2,
                                                                 progress=False, **k),
    "fgsm": lambda m, x, **k: h.fgsm(m, x, 0, progress=False, **k),
    "iterative fgsm": lambda m, x, **k: h.iterative_fgsm(m, x, 0, progress=False, **k),
    "success rates": lambda m, x, **k: h.success_rates(m, [x], 0, epsilons=[1], progress=False,
                                                       **k),
    "loss gradient": lambda m, x, **k: h.loss_gradient(m, x, 0, **k),
    "deletion curve": lambda m, x, **k: h.deletion_curve(m, x, np.zeros(x.shape[:2]), 0,
                                                         steps=2, progress=False, **k),
    "universal perturbation": lambda m, x, **k: h.universal_perturbation(
        m, [x], 0, steps=1, progress=False, **k),
}
SEEDED = {"smoothgrad", "rise", "binary masks", "expected gradients", "integrated gradients",
          "kernel shap"}
BAD_VALUES = [
    ({"batch_size": 2.5}, TypeError, "batch_size must be a positive integer"),
    ({"batch_size": "8"}, TypeError, "batch_size must be a positive integer"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ({"batch_size": True}, TypeError, "batch_size must be a positive integer"),
]
BAD_SEEDS = [
    ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
    ({"seed": 1.5}, TypeError, "seed must be a non-negative integer"),
]


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("knob, error, match", BAD_VALUES + BAD_SEEDS)
def test_the_same_bad_knob_gives_the_same_error_everywhere(name, knob, error, match, logit_model):
    if "seed" in knob and name not in SEEDED:
        pytest.skip("no seed")
    with pytest.raises(error, match=match):
        CALLS[name](logit_model, _image(32, 3), **knob)


@pytest.mark.parametrize("name", list(CALLS))
def test_a_model_name_instead_of_a_model(name):
    with pytest.raises(TypeError, match=r"model must be a Keras model, not the string "
                                        r"'efficientnet_lite0'.*h.load_model"):
        CALLS[name]("efficientnet_lite0", _image(32, 3))


@pytest.mark.parametrize("name", list(EXPLAINERS))
@pytest.mark.parametrize("class_index, error, match", [
    (CLASSES, ValueError, r"class_index: class index 5 is out of range: the model has classes "
                          r"0..4"),
    ("tabby", ValueError, "'tabby' is an ImageNet class name, but the model has 5 classes"),
    (2.5, TypeError, "class_index must be a class index"),
    ([0, 1, 2], ValueError, "class_index: got 3 classes for 1 images"),
])
def test_classes_are_checked_against_the_models_own_outputs(name, class_index, error, match,
                                                            softmax_model):
    with pytest.raises(error, match=match):
        EXPLAINERS[name](softmax_model, _image(32, 3), class_index)


@pytest.mark.parametrize("images, error, match", [
    (object(), TypeError, "cannot read an image from object"),
    (np.zeros((2, 16, 16, 3), np.float32), ValueError, r"images: a batch must have shape "
                                                       r"\(N, 32, 32, 3\)"),
    (np.full((1, 32, 32, 3), np.nan, np.float32), ValueError, "NaN"),
])
def test_bad_images_are_refused_before_any_work(images, error, match, logit_model):
    for name in ("saliency", "gradcam", "occlusion", "rise", "fgsm", "deletion curve"):
        with pytest.raises(error, match=match):
            EXPLAINERS[name](logit_model, images, 0)


def test_models_the_course_cannot_explain_get_a_clear_error():
    flat = keras.Sequential([keras.Input((10,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"input shape \(None, 10\).*\(batch, height, width, 1 "
                                         r"or 3 channels\)"):
        h.saliency(flat, np.zeros((10, 10, 3)), 0)
    maps = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3)])
    with pytest.raises(ValueError, match=r"one output of shape \(batch, classes\)"):
        h.occlusion_map(maps, np.zeros((8, 8, 3)), 0)


def test_caches_do_not_keep_a_model_alive():
    import gc
    import weakref

    model = _tiny_layers(3, 32, head_activation="softmax", seed=5)
    image = _image(32, 3)
    for explain in (EXPLAINERS["saliency"], EXPLAINERS["guided saliency"],
                    EXPLAINERS["gradcam"], EXPLAINERS["occlusion"], EXPLAINERS["fgsm"],
                    EXPLAINERS["expected gradients"]):
        explain(model, image, 1)
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None
