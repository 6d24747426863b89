"""Expected gradients (shap's GradientExplainer): exactness, completeness, splits, errors."""
import numpy as np
import pytest

import helpers as h
from helpers.images import resize_image
from helpers.models import feature_model
from helpers.shap_explain import sample_chunks
import keras
import tensorflow as tf
from tensorflow.python.framework import ops as tf_ops


def build_linear_model(size=8, classes=4, seed=1):
    """Pixels -> logits through one Dense layer: every gradient is constant."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="linear")


def build_residual_model(size=16, classes=5, seed=2):
    """A tiny CNN with one skip connection, to test where a model can be split."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="conv1")(x)
    y = keras.layers.Conv2D(6, 3, padding="same", activation="relu", name="res_conv_a")(x)
    y = keras.layers.Conv2D(6, 3, padding="same", name="res_conv_b")(y)
    x = keras.layers.Add(name="res_add")([x, y])
    x = keras.layers.ReLU(name="res_activation")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="residual")


@pytest.fixture(scope="module")
def tiny_background():
    return h.background_set(32, 6, seed=3)


def riemann_expected_gradients(model, image, background, class_index, steps=128):
    """Brute-force reference: the mean over the background of integrated gradients."""
    total = np.zeros(image.shape[:2])
    alphas = (np.arange(steps, dtype=np.float32) + 0.5) / steps
    for reference in background:
        path = tf.constant(reference + alphas[:, None, None, None] * (image - reference))
        with tf.GradientTape() as tape:
            tape.watch(path)
            out = model(path, training=False)[:, class_index]
        gradient = tape.gradient(out, path).numpy().mean(axis=0)
        total += (gradient * (image - reference)).sum(axis=-1)
    return total / len(background)


# --------------------------------------------------------------------------
# Exactness and completeness
# --------------------------------------------------------------------------

def test_linear_model_attributions_are_exact():
    model = build_linear_model()
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    reference = rng.uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    result = h.expected_gradients(model, image, class_index=2, background=reference, samples=5,
                                  progress=False)
    weights = model.get_layer("predictions").get_weights()[0][:, 2].reshape(8, 8, 3) / 255.0
    expected_map = (weights * (image - reference[0])).sum(axis=-1)
    assert result.maps.shape == (1, 8, 8) and result.maps.dtype == np.float32
    np.testing.assert_allclose(result.maps[0], expected_map, rtol=1e-4, atol=1e-5)
    assert result.classes.tolist() == [2]
    assert abs(result.gap[0]) < 1e-3


def test_completeness_gap_small_on_tiny_cnn_with_many_samples(tiny_cnn, tiny_image, tiny_background):
    result = h.expected_gradients(tiny_cnn, tiny_image, ranks=1, background=tiny_background,
                                  samples=3000, batch_size=300, progress=False)
    target = float(result.logits[0] - result.expected_value[0])
    assert abs(target) > 0.05  # the check below would be empty otherwise
    assert result.relative_gap[0] < 0.05, result.table()
    assert np.isfinite(result.standard_error[0]) and abs(result.gap[0]) < 4 * result.standard_error[0] + 1e-3
    # The maps themselves converge to the brute-force Riemann reference.
    reference = riemann_expected_gradients(tiny_cnn, tiny_image, tiny_background,
                                           int(result.classes[0]))
    np.testing.assert_allclose(reference.sum(), target, rtol=0.01)
    correlation = np.corrcoef(reference.ravel(), result.maps[0].ravel())[0, 1]
    assert correlation > 0.9


def test_expected_value_is_mean_over_background(tiny_cnn, tiny_image, tiny_background):
    result = h.expected_gradients(tiny_cnn, tiny_image, ranks=3, background=tiny_background,
                                  samples=8, progress=False)
    logits = np.asarray(tiny_cnn(tiny_background)).mean(axis=0)
    np.testing.assert_allclose(result.expected_value, logits[result.classes], rtol=1e-5, atol=1e-6)
    own = np.asarray(tiny_cnn(tiny_image[None]))[0]
    np.testing.assert_allclose(result.logits, own[result.classes], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.classes, np.argsort(-own)[:3])
    np.testing.assert_array_equal(result.ranks, [1, 2, 3])


# --------------------------------------------------------------------------
# Inner layers
# --------------------------------------------------------------------------

def test_linear_tail_layer_attributions_are_exact(tiny_cnn, tiny_image, tiny_background):
    # After conv2_activation the tiny CNN is average pooling + Dense: linear.
    reference = tiny_background[:1]
    result = h.expected_gradients(tiny_cnn, tiny_image, class_index=4, layer="conv2_activation",
                                  background=reference, samples=4, upsample=False, progress=False)
    features = feature_model(tiny_cnn, "conv2_activation", include_output=False)
    inside, outside = (np.asarray(features(x[None] if x.ndim == 3 else x)[0])
                       for x in (tiny_image, reference))
    weights = tiny_cnn.get_layer("predictions").get_weights()[0][:, 4]
    hand = ((inside - outside) * weights / (inside.shape[0] * inside.shape[1])).sum(axis=-1)
    assert result.maps.shape == (1,) + inside.shape[:2] and not result.at_input_size
    np.testing.assert_allclose(result.maps[0], hand, rtol=1e-4, atol=1e-6)
    assert abs(result.gap[0]) < 1e-4


def test_inner_layer_upsampling_keeps_the_sum(tiny_cnn, tiny_image, tiny_background):
    kwargs = dict(layer="pool1", background=tiny_background, samples=32, progress=False)
    small = h.expected_gradients(tiny_cnn, tiny_image, upsample=False, **kwargs)
    large = h.expected_gradients(tiny_cnn, tiny_image, **kwargs)
    assert small.maps.shape == (2, 16, 16) and large.maps.shape == (2, 32, 32)
    assert large.at_input_size and large.layer == "pool1" and large.layer_shape == (16, 16, 8)
    np.testing.assert_allclose(large.maps.sum(axis=(1, 2)), small.maps.sum(axis=(1, 2)), rtol=1e-3)
    np.testing.assert_allclose(small.maps.sum(axis=(1, 2)), small.attribution_sum, rtol=1e-4)


def test_split_layers_match_brute_force_on_a_residual_model():
    model = build_residual_model()
    found = h.split_layers(model, spatial=False)
    brute = []
    for layer in model.layers[1:]:
        try:
            keras.Model(layer.output, model.outputs[0])
        except ValueError:
            continue
        brute.append(layer.name)
    assert found == brute
    assert "res_conv_a" not in found and "res_add" in found and "conv1" in found


def test_split_model_reproduces_the_logits(lite0):
    images = np.concatenate([h.prepare(name, lite0) for name in ("chelsea", "coffee")])
    direct = np.asarray(lite0(images))
    layers = h.split_layers(lite0)
    assert "block2b_add" in layers and "block2b_expand_activation" not in layers
    assert "block2a_expand_activation" in layers and layers[-1] == "top_activation"
    for name in ("stem_activation", "block2b_add", "block4a_project_bn", "top_activation"):
        head, tail = h.split_model(lite0, name)
        inside = head(images)
        inside = inside[0] if isinstance(inside, (list, tuple)) else inside
        assert inside.shape[1:] == lite0.get_layer(name).output.shape[1:]
        np.testing.assert_allclose(np.asarray(tail(inside)), direct, atol=1e-3, rtol=1e-4)


@pytest.mark.filterwarnings("ignore:The structure of `inputs`")  # keras.applications' own input
def test_split_model_on_a_keras_application(small_untrained_application):
    model = small_untrained_application("mobilenet_v2")
    size = h.input_size(model)
    image = np.random.default_rng(1).uniform(0, 255, (1,) + size + (3,)).astype(np.float32)
    head, tail = h.split_model(model, "block_2_add")
    inside = head(image)
    inside = inside[0] if isinstance(inside, (list, tuple)) else inside
    np.testing.assert_allclose(np.asarray(tail(inside)), np.asarray(model(image)), atol=1e-4)
    with pytest.raises(ValueError, match="skip connection"):
        h.split_model(model, "block_2_expand")


# --------------------------------------------------------------------------
# The real model
# --------------------------------------------------------------------------

def test_real_model_top_classes_and_completeness(lite0):
    background = h.background_set(lite0, 8, seed=0)
    deep = h.expected_gradients(lite0, "chelsea", layer="top_activation", background=background,
                                samples=128, batch_size=32, progress=False)
    assert set(deep.classes.tolist()) <= {281, 282, 285}
    assert deep.maps.shape == (2, 224, 224)
    # The rest of the model after top_activation is linear: only the
    # sampling of references is left, so the gap is small.
    assert np.all(deep.relative_gap < 0.1), deep.table()
    pixels = h.expected_gradients(lite0, "coffee", ranks=1, background=background, samples=64,
                                  batch_size=16, progress=False)
    assert pixels.classes.tolist() == [967]
    assert pixels.relative_gap[0] < 0.5, pixels.table()
    assert abs(pixels.gap[0]) < 4 * pixels.standard_error[0], pixels.table()


def test_gradients_still_work_after_shap(lite0, tiny_cnn, tiny_image):
    registry = tf_ops._gradient_registry._registry
    before = {name: entry.get("type") for name, entry in registry.items()}
    h.expected_gradients(tiny_cnn, tiny_image, samples=4, progress=False)
    h.expected_gradients(lite0, "chelsea", ranks=1, layer="top_activation", samples=4,
                         background_size=2, progress=False)
    after = {name: entry.get("type") for name, entry in registry.items()}
    assert after == before
    # Grad-CAM by hand through the real model: connected, finite, not all zero.
    features = feature_model(lite0, "top_activation")
    image = tf.constant(h.prepare("chelsea", lite0))
    with tf.GradientTape() as tape:
        maps, logits = features(image)
        score = logits[:, 281]
    gradient = tape.gradient(score, maps)
    cam = tf.nn.relu(tf.reduce_sum(tf.reduce_mean(gradient, axis=(1, 2), keepdims=True) * maps,
                                   axis=-1)).numpy()
    assert np.all(np.isfinite(cam)) and cam.max() > 0
    if hasattr(h, "gradcam"):
        assert np.asarray(h.gradcam(lite0, "chelsea", class_index=281)).max() > 0
    # And a gradient on the tiny model still matches a finite difference.
    x = tf.constant(tiny_image[None])
    with tf.GradientTape() as tape:
        tape.watch(x)
        out = tiny_cnn(x)[0, 1]
    gradient = tape.gradient(out, x).numpy()[0, 5, 7, 1]
    step = np.zeros_like(tiny_image)
    step[5, 7, 1] = 0.5
    plus = np.asarray(tiny_cnn((tiny_image + step)[None]))[0, 1]
    minus = np.asarray(tiny_cnn((tiny_image - step)[None]))[0, 1]
    assert gradient == pytest.approx((plus - minus) / 1.0, rel=0.05, abs=1e-5)


# --------------------------------------------------------------------------
# Seeds, batches, classes
# --------------------------------------------------------------------------

def test_seeded_repeatability(tiny_cnn, tiny_image, tiny_background):
    kwargs = dict(background=tiny_background, samples=24, batch_size=8, progress=False)
    np.random.seed(123)
    first = h.expected_gradients(tiny_cnn, tiny_image, seed=5, **kwargs)
    after_first = np.random.random()
    np.random.seed(123)
    again = h.expected_gradients(tiny_cnn, tiny_image, seed=5, **kwargs)
    assert np.random.random() == after_first  # numpy's global state is left alone
    other = h.expected_gradients(tiny_cnn, tiny_image, seed=6, **kwargs)
    np.testing.assert_array_equal(first.maps, again.maps)
    assert not np.allclose(first.maps, other.maps)
    built = [h.background_set(32, 4, seed=s) for s in (0, 0, 1)]
    np.testing.assert_array_equal(built[0], built[1])
    assert not np.array_equal(built[0], built[2])


def test_batch_equals_single_images(tiny_cnn, tiny_background):
    rng = np.random.default_rng(4)
    batch = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    kwargs = dict(background=tiny_background, samples=16, progress=False)
    together = h.expected_gradients(tiny_cnn, batch, **kwargs)
    assert together.maps.shape == (2, 2, 32, 32) and together.classes.shape == (2, 2)
    for i in range(2):
        alone = h.expected_gradients(tiny_cnn, batch[i], **kwargs)
        np.testing.assert_allclose(together.maps[i], alone.maps, rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(together.classes[i], alone.classes)


def test_class_index_and_chosen_ranks(tiny_cnn, tiny_image, tiny_background):
    own = np.asarray(tiny_cnn(tiny_image[None]))[0]
    order = np.argsort(-own)
    kwargs = dict(background=tiny_background, samples=8, progress=False)
    second = h.expected_gradients(tiny_cnn, tiny_image, ranks=[2], **kwargs)
    assert second.classes.tolist() == [order[1]] and second.ranks.tolist() == [2]
    chosen = h.expected_gradients(tiny_cnn, tiny_image, class_index=int(order[4]), **kwargs)
    assert chosen.classes.tolist() == [order[4]] and chosen.ranks.tolist() == [5]
    assert chosen.class_names == [f"class {order[4]}"]
    assert "rel.gap" in str(chosen) and "class" in repr(chosen)


def test_background_set_is_made_of_photos():
    background = h.background_set((40, 50), 5, seed=2)
    assert background.shape == (5, 40, 50, 3) and background.dtype == np.float32
    assert background.min() >= 0 and background.max() <= 255 and background.std() > 10
    sharp = h.background_set(40, 3, photos=["coffee"], blur=(0, 0), crop=(1, 1), seed=0)
    photo = resize_image(h.load_image("coffee"), 40, fit="crop").astype(np.float32)
    assert any(np.abs(image - candidate).mean() < 8
               for image in sharp for candidate in (photo, photo[:, ::-1]))


def test_background_set_comes_from_the_collection_without_the_explained_photo():
    names = h.photo_collection()
    assert len(names) >= 40
    only_first = h.background_set(24, 3, exclude=names[1:], seed=1)
    np.testing.assert_array_equal(only_first, h.background_set(24, 3, photos=[names[0]], seed=1))
    with pytest.raises(ValueError, match="got none"):
        h.background_set(24, 2, photos=[names[0]], exclude=names[0])


def test_default_background_never_holds_the_explained_photos(tiny_cnn, monkeypatch):
    import helpers.shap_explain as shap_explain

    seen = []
    real = shap_explain.background_set

    def spy(*args, exclude=(), **kwargs):
        seen.append(list(exclude))
        return real(*args, exclude=exclude, **kwargs)

    monkeypatch.setattr(shap_explain, "background_set", spy)
    names = h.photo_collection()[:2]
    h.expected_gradients(tiny_cnn, names, background_size=2, samples=2, progress=False)
    h.expected_gradients(tiny_cnn, names[0], background_size=2, samples=2, progress=False)
    assert seen == [names, names[:1]]


def test_sample_chunks_are_equal_powers_of_two(tiny_cnn, tiny_image, tiny_background):
    for samples, batch_size in [(1, 16), (3, 16), (16, 16), (96, 16), (100, 16), (1024, 16),
                                (3000, 300), (24, 8)]:
        chunk, count = sample_chunks(samples, batch_size)
        assert chunk & (chunk - 1) == 0 and chunk <= batch_size
        assert samples <= chunk * count < samples + chunk
        if samples >= 64 and batch_size >= 8:
            assert count >= 8  # enough chunks for a standard error
    result = h.expected_gradients(tiny_cnn, tiny_image, background=tiny_background, samples=100,
                                  progress=False)
    assert result.samples == 104  # 13 chunks of 8


def test_show_shap_draws_one_row_per_image(tiny_cnn, tiny_background):
    import matplotlib.pyplot as plt

    batch = np.random.default_rng(5).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    result = h.expected_gradients(tiny_cnn, batch, background=tiny_background, samples=4,
                                  progress=False)
    fig = h.show_shap(result, titles=["first", "second"])
    titles = [ax.get_title() for ax in fig.axes]
    assert "first" in titles and f"#1 class {result.classes[0, 0]}" in titles
    heat = [image for ax in fig.axes for image in ax.get_images() if image.get_cmap().name != "gray"]
    import matplotlib

    red = heat[-1].get_cmap()(1.0)
    assert red[0] > 2 * red[2]  # positive evidence is red
    assert heat[-1].get_cmap()(0.5)[3] < 0.1  # zero is transparent
    signed = matplotlib.colormaps[h.SIGNED_CMAP]
    for value in (0.0, 0.2, 0.9):  # the course's signed colour map, only with opacity |v|
        np.testing.assert_allclose(heat[-1].get_cmap()(value)[:3], signed(value)[:3], atol=0.01)
    plt.close(fig)
    ax = h.show_shap_map(batch[0], result.maps[0, 0], limit=2.0, title="one map")
    assert ax.get_images()[-1].get_clim() == (-2.0, 2.0) and ax.get_title() == "one map"
    plt.close(ax.figure)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_error_paths(tiny_cnn, tiny_image, tiny_background):
    run = dict(background=tiny_background, samples=2, progress=False)
    with pytest.raises(ValueError, match="no layer named"):
        h.expected_gradients(tiny_cnn, tiny_image, layer="conv9", **run)
    with pytest.raises(ValueError, match="skip connection"):
        h.split_model(build_residual_model(), "res_conv_a")
    with pytest.raises(ValueError, match="at least 1"):
        h.expected_gradients(tiny_cnn, tiny_image, background_size=0, samples=2)
    with pytest.raises(ValueError, match="at least 1"):
        h.background_set(32, 0)
    with pytest.raises(ValueError, match="out of range"):
        h.expected_gradients(tiny_cnn, tiny_image, ranks=[11], **run)
    with pytest.raises(ValueError, match="between 1 and 10"):
        h.expected_gradients(tiny_cnn, tiny_image, ranks=0, **run)
    with pytest.raises(TypeError, match="ranks must be"):
        h.expected_gradients(tiny_cnn, tiny_image, ranks="top", **run)
    with pytest.raises(ValueError, match="not both"):
        h.expected_gradients(tiny_cnn, tiny_image, class_index=1, ranks=2, **run)
    with pytest.raises(ValueError, match="not both"):
        h.expected_gradients(tiny_cnn, tiny_image, background_size=4, **run)
    with pytest.raises(ValueError, match="out of range"):
        h.expected_gradients(tiny_cnn, tiny_image, class_index=12, **run)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        h.expected_gradients(tiny_cnn, tiny_image, background=tiny_background, samples=0)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        h.expected_gradients(tiny_cnn, tiny_image, batch_size=0, **run)
    with pytest.raises(ValueError, match="seed"):
        h.expected_gradients(tiny_cnn, tiny_image, seed=-1, **run)
    with pytest.raises(TypeError, match="Keras model"):
        h.expected_gradients("vgg16", tiny_image, **run)
    with pytest.raises(ValueError, match="sample names"):
        h.background_set(32, 2, photos=["dog"])
    with pytest.raises(ValueError, match="crop"):
        h.background_set(32, 2, crop=(0, 1))
    with pytest.raises(ValueError, match="layer=None"):
        h.split_model(tiny_cnn, "input_image")
    with pytest.raises(TypeError, match="expected_gradients"):
        h.show_shap(np.zeros((2, 32, 32)))
    small = h.expected_gradients(tiny_cnn, tiny_image, layer="pool1", upsample=False, **run)
    with pytest.raises(ValueError, match="upsample=True"):
        h.show_shap(small)
