"""Grad-CAM, Grad-CAM++, Score-CAM and guided Grad-CAM against independent references."""
import warnings

import numpy as np
import pytest
from PIL import Image

import helpers as h
import keras
import tensorflow as tf
from tests.conftest import build_tiny_cnn

TINY_CLASS = 8


def assert_close(actual, expected, rtol=1e-4):
    """Equal up to float32 rounding, which oneDNN may order differently per graph."""
    expected = np.asarray(expected)
    scale = float(np.abs(expected).max()) or 1.0
    assert np.asarray(actual).shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def tf_keras_vis_cam(model, batch, classes, *, layer, method="gradcam", max_n=None):
    """The raw low-resolution map straight from tf-keras-vis (no upsampling, no normalising)."""
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.gradcam_plus_plus import GradcamPlusPlus
    from tf_keras_vis.layercam import Layercam
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    explainer = {"gradcam": Gradcam, "gradcam++": GradcamPlusPlus, "scorecam": Scorecam,
                 "layercam": Layercam, "hirescam": Layercam}[method]
    options = {"max_N": max_n} if method == "scorecam" else {}
    if method == "hirescam":  # LayerCAM without its ReLU on the gradient is HiResCAM
        options = {"gradient_modifier": None}
    keras.config.disable_interactive_logging()  # Scorecam's model.predict prints a bar
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cam = explainer(model, clone=False)(
                CategoricalScore(list(classes)), batch, penultimate_layer=layer,
                seek_penultimate_conv_layer=False, expand_cam=False, normalize_cam=False,
                **options)
    finally:
        keras.config.enable_interactive_logging()
    return np.asarray(cam, dtype=np.float32)


def bilinear_by_pil(cam, size):
    """Half-pixel bilinear upsampling by PIL, independent of TensorFlow."""
    return np.asarray(Image.fromarray(np.asarray(cam, np.float32), mode="F")
                      .resize((size[1], size[0]), Image.BILINEAR))


def gradcam_by_hand(model, image, class_index, layer):
    """Selvaraju et al. 2017 with a tape and numpy: mean gradient, weighted sum, ReLU."""
    features = keras.Model(model.inputs, [model.get_layer(layer).output, model.outputs[0]])
    x = tf.constant(image[None], tf.float32)
    with tf.GradientTape() as tape:
        activations, logits = features(x)
        score = logits[0, class_index]
    gradients = tape.gradient(score, activations)[0].numpy().astype(np.float64)
    activations = activations[0].numpy().astype(np.float64)
    weights = gradients.mean(axis=(0, 1))
    weighted_sum = (activations * weights).sum(axis=-1)
    return weights, weighted_sum, np.maximum(weighted_sum, 0)


@pytest.fixture(scope="module")
def cat_and_coffee(lite0):
    return h.as_batch("cat_and_coffee", lite0)[0]


# --------------------------------------------------------------------------
# Grad-CAM equals the hand computation and tf-keras-vis
# --------------------------------------------------------------------------

def test_upsampling_is_bilinear_with_cell_centres_aligned():
    cam = np.random.default_rng(1).normal(size=(7, 7)).astype(np.float32)
    ours = h.upsample_map(cam, (224, 224))
    np.testing.assert_allclose(ours, bilinear_by_pil(cam, (224, 224)), atol=1e-5)
    # Cell (0, 0) covers pixels 0..31: its value sits at the patch centre, and
    # the map is held constant out to the edge.
    assert ours[15, 15] == pytest.approx(cam[0, 0], abs=1e-6)
    assert ours[0, 0] == pytest.approx(cam[0, 0], abs=1e-6)
    assert h.upsample_map(np.stack([cam, -cam]), 14).shape == (2, 14, 14)


def test_gradcam_equals_hand_computation_on_tiny_model(tiny_cnn, tiny_image):
    weights, weighted_sum, cam = gradcam_by_hand(tiny_cnn, tiny_image, TINY_CLASS,
                                                 "conv2_activation")
    # The class was chosen so that the ReLU matters: both signs before it.
    assert weighted_sum.min() < 0 < weighted_sum.max()
    parts = h.gradcam_parts(tiny_cnn, tiny_image, TINY_CLASS)
    assert parts.layer == "conv2_activation" and parts.class_index == TINY_CLASS
    assert_close(parts.channel_weights, weights)
    assert_close(parts.weighted_sum, weighted_sum)
    assert_close(parts.cam, cam)
    expected = bilinear_by_pil(cam, (32, 32))
    heatmap = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, progress=False)
    assert heatmap.shape == (32, 32) and heatmap.dtype == np.float32
    assert_close(heatmap, expected)
    assert_close(parts.heatmap, expected)


def test_gradcam_and_gradcam_plus_plus_equal_tf_keras_vis_on_lite0(lite0, cat_and_coffee):
    classes = [h.class_index("tabby")]
    reference = tf_keras_vis_cam(lite0, cat_and_coffee, classes, layer="top_activation")[0]
    parts = h.gradcam_parts(lite0, cat_and_coffee[0], "tabby")
    assert parts.layer == "top_activation" and parts.activations.shape == (7, 7, 1280)
    assert reference.max() > 0
    assert_close(parts.cam, reference)
    heatmap = h.gradcam(lite0, cat_and_coffee[0], "tabby")
    assert_close(heatmap, h.upsample_map(reference, (224, 224)), rtol=1e-5)
    # On "top_activation" the gradient of a logit is the dense weight / 49 in every cell.
    dense_kernel = lite0.get_layer("predictions").get_weights()[0]
    assert_close(parts.channel_weights, dense_kernel[:, classes[0]] / 49)

    plus_reference = tf_keras_vis_cam(lite0, cat_and_coffee, classes, layer="top_activation",
                                      method="gradcam++")[0]
    plus = h.gradcam(lite0, cat_and_coffee, "tabby", method="gradcam++")[0]
    assert_close(plus, h.upsample_map(plus_reference, (224, 224)), rtol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "layercam", "hirescam"])
@pytest.mark.parametrize("layer", ["conv1_activation", "conv2_activation"])
def test_compiled_cams_equal_tf_keras_vis_at_inner_layers(tiny_cnn, method, layer):
    """Where the gradient varies over the map, so Grad-CAM++'s per-cell weights matter."""
    batch = np.random.default_rng(4).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    classes = [1, 4, 7]
    reference = tf_keras_vis_cam(tiny_cnn, batch, classes, layer=layer, method=method)
    low_resolution = h.gradcam(tiny_cnn, batch, classes, layer=layer, method=method,
                               batch_size=2, progress=False)
    size = reference.shape[1:]
    assert reference.max() > 0
    assert_close(low_resolution, h.upsample_map(reference, (32, 32)), rtol=1e-4)
    assert size in ((32, 32), (16, 16))


def test_gradcam_discriminates_cat_from_espresso(lite0, cat_and_coffee):
    """cat_and_coffee has the cat on the left half, the espresso on the right half."""
    maps = h.gradcam(lite0, np.repeat(cat_and_coffee, 2, axis=0), ["tabby", "espresso"])
    assert maps.shape == (2, 224, 224)
    left, right = maps[:, :, :112].sum(axis=(1, 2)), maps[:, :, 112:].sum(axis=(1, 2))
    assert left[0] > 2 * right[0]   # tabby: on the cat
    assert right[1] > 2 * left[1]   # espresso: on the cup


# --------------------------------------------------------------------------
# Score-CAM, streamed, equals tf-keras-vis
# --------------------------------------------------------------------------

def test_scorecam_equals_tf_keras_vis_at_full_resolution(tiny_cnn, tiny_image):
    # conv1_activation is 32 x 32 like the input: no upsampling on either side.
    reference = tf_keras_vis_cam(tiny_cnn, tiny_image[None], [TINY_CLASS],
                                 layer="conv1_activation", method="scorecam")[0]
    ours = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, layer="conv1_activation",
                     method="scorecam", progress=False)
    assert reference.max() > 0
    assert_close(ours, reference)


def test_scorecam_masks_and_top_channels_equal_tf_keras_vis(tiny_cnn, tiny_image):
    reference = tf_keras_vis_cam(tiny_cnn, tiny_image[None], [TINY_CLASS],
                                 layer="conv2_activation", method="scorecam")[0]
    ours = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, method="scorecam", batch_size=3,
                     progress=False)
    assert_close(ours, h.upsample_map(reference, 32))
    top_reference = tf_keras_vis_cam(tiny_cnn, tiny_image[None], [TINY_CLASS],
                                     layer="conv2_activation", method="scorecam", max_n=4)[0]
    top = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, method="faster-scorecam", max_channels=4,
                    progress=False)
    assert_close(top, h.upsample_map(top_reference, 32))
    assert not np.allclose(top, ours)
    # "scorecam" with max_channels is the same top-N rule.
    assert_close(h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, method="scorecam", max_channels=4,
                           progress=False), top, rtol=1e-6)


def test_faster_scorecam_equals_tf_keras_vis_on_lite0(lite0, cat_and_coffee):
    reference = tf_keras_vis_cam(lite0, cat_and_coffee, [h.class_index("espresso")],
                                 layer="top_activation", method="scorecam", max_n=8)[0]
    ours = h.gradcam(lite0, cat_and_coffee[0], "espresso", method="faster-scorecam",
                     max_channels=8, batch_size=5, progress=False)
    assert reference.max() > 0
    assert_close(ours, h.upsample_map(reference, 224))


# --------------------------------------------------------------------------
# Batches, normalising, guided Grad-CAM, softmax models
# --------------------------------------------------------------------------

def test_batch_equals_single_images_and_normalise(tiny_cnn, tiny_image):
    other = np.flipud(tiny_image).copy()
    for method in h.CAM_METHODS:
        maps = h.gradcam(tiny_cnn, np.stack([tiny_image, other]), [TINY_CLASS, 5], method=method,
                         batch_size=1, progress=False)
        assert maps.shape == (2, 32, 32) and maps.dtype == np.float32
        assert_close(maps[1], h.gradcam(tiny_cnn, other, 5, method=method, progress=False))
        assert maps.min() >= 0
    unit = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS, normalise=True)
    raw = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS)
    assert unit.min() == pytest.approx(0) and unit.max() == pytest.approx(1)
    assert_close(unit, (raw - raw.min()) / (raw.max() - raw.min()))


def test_guided_gradcam_is_guided_backprop_times_gradcam(tiny_cnn, tiny_image):
    cam = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS)
    guided = h.saliency(tiny_cnn, tiny_image, TINY_CLASS, method="guided", reduce=None)
    product = h.guided_gradcam(tiny_cnn, tiny_image, TINY_CLASS, reduce=None, progress=False)
    assert product.shape == (32, 32, 3)
    assert_close(product, guided * cam[..., None], rtol=1e-5)
    reduced = h.guided_gradcam(tiny_cnn, tiny_image, TINY_CLASS, progress=False)
    assert_close(reduced, np.abs(guided).max(axis=-1) * cam, rtol=1e-5)
    assert np.all(reduced[cam == 0] == 0) and reduced.max() > 0


def test_softmax_output_is_explained_through_the_logit(tiny_cnn, tiny_image):
    softmax_head = keras.layers.Dense(10, activation="softmax", name="predictions")
    features = keras.Model(tiny_cnn.inputs, tiny_cnn.get_layer("avg_pool").output)
    inputs = keras.Input((32, 32, 3))
    softmax_model = keras.Model(inputs, softmax_head(features(inputs)), name="softmax_cnn")
    softmax_head.set_weights(tiny_cnn.get_layer("predictions").get_weights())
    expected = h.gradcam(tiny_cnn, tiny_image, TINY_CLASS)
    got = h.gradcam(softmax_model, tiny_image, TINY_CLASS, layer="conv2_activation")
    assert_close(got, expected)
    assert softmax_head.activation is keras.activations.softmax  # the user's model is untouched


# --------------------------------------------------------------------------
# Layers: defaults on the zoo, nested models, caching
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("vgg16", "block5_conv3"),
    ("resnet50", "conv5_block3_out"),
    ("inception_v3", "mixed10"),
    ("xception", "block14_sepconv2_act"),
    ("mobilenet_v2", "out_relu"),
])
def test_default_layer_on_untrained_zoo_models(name, expected, small_untrained_application):
    model = small_untrained_application(name)
    assert h.cam_layer(model) == expected
    size = h.input_size(model)
    image = np.random.default_rng(0).uniform(0, 255, size + (3,)).astype(np.float32)
    heatmap = h.gradcam(model, image, 7, progress=False)
    assert heatmap.shape == size and heatmap.dtype == np.float32
    assert np.all(np.isfinite(heatmap)) and heatmap.min() >= 0


def test_default_layer_on_lite0(lite0):
    assert h.cam_layer(lite0) == "top_activation"


def test_layer_inside_a_nested_model(tiny_image):
    keras.utils.set_random_seed(3)
    base_input = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="base_conv1")(base_input)
    x = keras.layers.MaxPooling2D(2, name="base_pool")(x)
    x = keras.layers.Conv2D(12, 3, padding="same", name="base_conv2")(x)
    x = keras.layers.ReLU(name="base_conv2_activation")(x)
    base = keras.Model(base_input, x, name="tiny_base")
    pooling = keras.layers.GlobalAveragePooling2D(name="avg_pool")
    head = keras.layers.Dense(6, name="predictions")
    nested = keras.Sequential([keras.Input((32, 32, 3)), base, pooling, head], name="nested")
    flat = keras.Model(base.inputs, head(pooling(base.outputs[0])), name="flat")
    assert h.cam_layer(nested) == "base_conv2_activation"
    for layer in ("base_conv2_activation", "base_conv1"):
        for method in ("gradcam", "scorecam"):
            got = h.gradcam(nested, tiny_image, 2, layer=layer, method=method, progress=False)
            expected = h.gradcam(flat, tiny_image, 2, layer=layer, method=method, progress=False)
            assert expected.max() > 0
            assert_close(got, expected)
    _, _, cam = gradcam_by_hand(flat, tiny_image, 2, "base_conv2_activation")
    assert_close(h.gradcam_parts(nested, tiny_image, 2).cam, cam)


def test_engine_is_cached_per_model_and_layer(tiny_cnn):
    from helpers import cam

    first = cam._engine(tiny_cnn, "conv2_activation")
    assert cam._engine(tiny_cnn, "conv2_activation") is first
    assert cam._engine(tiny_cnn, "conv1_activation") is not first
    other = build_tiny_cnn(seed=5)
    assert cam._engine(other, "conv2_activation") is not first


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_clear_errors(tiny_cnn, tiny_image):
    with pytest.raises(ValueError,
                       match=r"'avg_pool'.*not a spatial feature map.*conv2_activation"):
        h.gradcam(tiny_cnn, tiny_image, 1, layer="avg_pool")
    with pytest.raises(ValueError, match=r"no layer named 'conv9'.*conv2"):
        h.gradcam(tiny_cnn, tiny_image, 1, layer="conv9")
    with pytest.raises(ValueError, match=r"class index 10 is out of range.*0\.\.9"):
        h.gradcam(tiny_cnn, tiny_image, 10)
    with pytest.raises(ValueError, match=r"method must be one of 'gradcam', 'gradcam\+\+'.*not 'gradcam\+'"):
        h.gradcam(tiny_cnn, tiny_image, 1, method="gradcam+")
    with pytest.raises(ValueError, match="max_channels applies to Score-CAM only"):
        h.gradcam(tiny_cnn, tiny_image, 1, max_channels=4)
    with pytest.raises(ValueError, match="between 1 and the layer's 16 channels"):
        h.gradcam(tiny_cnn, tiny_image, 1, method="faster-scorecam", max_channels=17)
    with pytest.raises(ValueError, match="batch_size must be a positive integer .*got 0"):
        h.gradcam(tiny_cnn, tiny_image, 1, batch_size=0)
    with pytest.raises(TypeError, match="must be a Keras model"):
        h.gradcam("efficientnet_lite0", tiny_image)
    with pytest.raises(ValueError, match="not a spatial feature map"):
        h.gradcam_parts(tiny_cnn, tiny_image, 1, layer="predictions")


def test_hirescam_is_each_cells_contribution_to_the_logit(tiny_cnn, tiny_image):
    """Before global average pooling and a dense layer, sum_k g_k A_k of a cell is that cell's
    share of the logit (minus the bias): the cells of HiResCAM's map before the ReLU add up to it."""
    parts = h.gradcam_parts(tiny_cnn, tiny_image, 5, layer="conv2_activation")
    contributions = (parts.gradients * parts.activations).sum(axis=-1)
    bias = tiny_cnn.get_layer("predictions").get_weights()[1][5]
    np.testing.assert_allclose(contributions.sum(), parts.score - bias, rtol=1e-4, atol=1e-5)
    low = h.gradcam(tiny_cnn, tiny_image, 5, layer="conv2_activation", method="hirescam",
                    progress=False)
    expected = h.upsample_map(np.maximum(contributions, 0), (32, 32))
    np.testing.assert_allclose(low, expected, rtol=1e-4, atol=1e-6)
