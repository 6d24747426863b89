"""Saliency, guided backpropagation and SmoothGrad against independent references."""
import warnings

import numpy as np
import pytest

import helpers as h
import keras
from tests.conftest import build_tiny_cnn


def build_float64_cnn(size=8, classes=5, seed=1):
    """A tiny float64 ReLU CNN, so central differences are exact to ~1e-9."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), dtype="float64", name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, dtype="float64", name="preprocess")(inputs)
    x = keras.layers.Conv2D(6, 3, padding="same", dtype="float64", name="conv1")(x)
    x = keras.layers.ReLU(dtype="float64", name="conv1_activation")(x)
    x = keras.layers.MaxPooling2D(2, dtype="float64", name="pool1")(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", dtype="float64",
                            name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(dtype="float64", name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, dtype="float64", name="predictions")(x)
    return keras.Model(inputs, outputs, name="float64_cnn")


def build_mlp_with_every_relu(seed=2):
    """Dense(relu) -> ReLU6 layer -> Activation('relu') -> logits, on a 2x2 RGB image."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((2, 2, 3), name="input_image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(6, activation="relu", name="dense1")(x)
    x = keras.layers.Dense(6, name="dense2")(x)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.Dense(5, name="dense3")(x)
    x = keras.layers.Activation("relu", name="relu")(x)
    outputs = keras.layers.Dense(4, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="mlp")
    rng = np.random.default_rng(seed)
    # Scales chosen so that every ReLU is partly on and partly off and some
    # ReLU6 inputs exceed 6 (checked in the test).
    scales = [0.02, 1.0, 0.25, 1.0, 1.0, 1.0, 1.0, 1.0]
    model.set_weights([rng.normal(0, scale, w.shape).astype(np.float32)
                       for scale, w in zip(scales, model.get_weights())])
    return model


def mlp_gradient_by_hand(model, image, class_index, guided):
    """Back-propagate through the MLP with numpy; guided keeps (z>0)(R>0)R at each ReLU."""
    w1, b1, w2, b2, w3, b3, w4, _ = [np.asarray(w, np.float64) for w in model.get_weights()]
    x = np.asarray(image, np.float64).reshape(-1)
    z1 = x @ w1 + b1
    z2 = np.maximum(z1, 0) @ w2 + b2
    z3 = np.clip(z2, 0, 6) @ w3 + b3

    def through(relu_derivative, upstream):
        gate = (upstream > 0) if guided else 1.0
        return relu_derivative * gate * upstream

    r = w4[:, class_index]
    r = through((z3 > 0).astype(float), r) @ w3.T
    r = through(((z2 > 0) & (z2 < 6)).astype(float), r) @ w2.T
    r = through((z1 > 0).astype(float), r) @ w1.T
    return r.reshape(image.shape), (z1, z2, z3)


@pytest.fixture(scope="module")
def float64_cnn():
    return build_float64_cnn()


@pytest.fixture(scope="module")
def mlp():
    return build_mlp_with_every_relu()


@pytest.fixture
def small_image():
    return np.random.default_rng(3).uniform(20, 235, (8, 8, 3)).astype(np.float32)


# --------------------------------------------------------------------------
# Vanilla gradient
# --------------------------------------------------------------------------

def test_saliency_equals_central_finite_differences(float64_cnn, small_image):
    class_index, step = 2, 1e-3
    gradient = h.saliency(float64_cnn, small_image, class_index, reduce=None, progress=False)
    base = small_image.astype(np.float64)
    count = base.size
    offsets = np.eye(count).reshape((count,) + base.shape) * step
    plus = np.asarray(float64_cnn(base + offsets))[:, class_index]
    minus = np.asarray(float64_cnn(base - offsets))[:, class_index]
    numeric = ((plus - minus) / (2 * step)).reshape(base.shape)
    assert gradient.shape == (8, 8, 3) and gradient.dtype == np.float32
    assert np.abs(numeric).max() > 1e-4
    np.testing.assert_allclose(gradient, numeric, rtol=1e-4, atol=1e-6 * np.abs(numeric).max())


def test_compiled_gradients_equal_tf_keras_vis_saliency(tiny_cnn, tiny_image):
    """tf-keras-vis, eager and independent of the helpers' compiled function, as the oracle."""
    import warnings

    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    batch = np.stack([tiny_image, tiny_image[::-1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = np.asarray(Saliency(tiny_cnn, clone=False)(
            CategoricalScore([3, 7]), batch, keepdims=True, gradient_modifier=None,
            normalize_map=False))
    got = h.saliency(tiny_cnn, batch, [3, 7], reduce=None, batch_size=1, progress=False)
    assert np.abs(expected).max() > 1e-6
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_reductions_of_the_gradient(float64_cnn, small_image):
    gradient = h.saliency(float64_cnn, small_image, 1, reduce=None, progress=False)
    for reduce, expected in [("max_abs", np.abs(gradient).max(-1)),
                             ("abs_mean", np.abs(gradient).mean(-1)),
                             ("signed", gradient.sum(-1))]:
        result = h.saliency(float64_cnn, small_image, 1, reduce=reduce, progress=False)
        assert result.shape == (8, 8) and result.dtype == np.float32
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-9)
    assert (h.reduce_gradients(gradient, "signed") < 0).any()


def test_batch_in_chunks_equals_one_at_a_time(tiny_cnn):
    images = np.random.default_rng(4).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    classes = [0, 3, 9, 3, 1]
    batched = h.saliency(tiny_cnn, images, classes, batch_size=2, progress=False)
    assert batched.shape == (5, 32, 32)
    for image, class_index, expected in zip(images, classes, batched):
        single = h.saliency(tiny_cnn, image, class_index, progress=False)
        np.testing.assert_allclose(single, expected, rtol=1e-5, atol=1e-12)


def test_default_class_is_the_prediction(tiny_cnn, tiny_image):
    predicted = int(np.argmax(tiny_cnn(tiny_image[None])))
    np.testing.assert_array_equal(h.saliency(tiny_cnn, tiny_image, progress=False),
                                  h.saliency(tiny_cnn, tiny_image, predicted, progress=False))


# --------------------------------------------------------------------------
# Guided backpropagation
# --------------------------------------------------------------------------

def test_guided_backprop_equals_hand_computation(mlp):
    image = np.random.default_rng(5).uniform(0, 255, (2, 2, 3)).astype(np.float32)
    _, (z1, z2, z3) = mlp_gradient_by_hand(mlp, image, 0, guided=True)
    # The test means something only if every kind of ReLU is partly on and partly off.
    assert (z1 > 0).any() and (z1 < 0).any() and (z3 > 0).any() and (z3 < 0).any()
    assert (z2 > 6).any() and ((z2 > 0) & (z2 < 6)).any()
    assert sorted(h.relu_family_layers(mlp)) == ["dense1", "relu", "relu6"]
    for class_index in range(4):
        guided_by_hand, _ = mlp_gradient_by_hand(mlp, image, class_index, guided=True)
        vanilla_by_hand, _ = mlp_gradient_by_hand(mlp, image, class_index, guided=False)
        guided = h.saliency(mlp, image, class_index, method="guided", reduce=None,
                            progress=False)
        vanilla = h.saliency(mlp, image, class_index, reduce=None, progress=False)
        scale = np.abs(vanilla_by_hand).max()
        np.testing.assert_allclose(guided, guided_by_hand, atol=1e-5 * scale, rtol=1e-4)
        np.testing.assert_allclose(vanilla, vanilla_by_hand, atol=1e-5 * scale, rtol=1e-4)
    assert not np.allclose(guided_by_hand, vanilla_by_hand)


def test_guided_backprop_matches_tf_keras_vis_where_it_applies():
    """tf-keras-vis' modifier handles conv layers with activation='relu' (not ReLU layers)."""
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.model_modifiers import GuidedBackpropagation
    from tf_keras_vis.utils.scores import CategoricalScore

    keras.utils.set_random_seed(6)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", padding="same")(x)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu", padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(3)(x))
    image = np.random.default_rng(6).uniform(0, 255, (16, 16, 3)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = Saliency(model, model_modifier=GuidedBackpropagation(
            [keras.activations.relu]))(CategoricalScore([1]), image[None], keepdims=True,
                                       gradient_modifier=None, normalize_map=False)
    ours = h.saliency(model, image, 1, method="guided", reduce=None, progress=False)
    reference = np.asarray(reference)[0]
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())
    assert not np.allclose(ours, h.saliency(model, image, 1, reduce=None, progress=False))


def test_guided_backprop_leaves_the_model_unchanged(tiny_cnn, tiny_image):
    model = build_tiny_cnn(seed=7, name="untouched")
    layers_before = [(layer.name, type(layer).__name__) for layer in model.layers]
    weights_before = [w.copy() for w in model.get_weights()]
    output_before = np.asarray(model(tiny_image[None]))
    vanilla_before = h.saliency(model, tiny_image, 4, reduce=None, progress=False)
    guided = h.saliency(model, tiny_image, 4, method="guided", reduce=None, progress=False)
    h.smoothgrad(model, tiny_image, 4, method="guided", samples=2, progress=False)
    assert [(layer.name, type(layer).__name__) for layer in model.layers] == layers_before
    for before, after in zip(weights_before, model.get_weights()):
        np.testing.assert_array_equal(before, after)
    np.testing.assert_array_equal(np.asarray(model(tiny_image[None])), output_before)
    vanilla_after = h.saliency(model, tiny_image, 4, reduce=None, progress=False)
    np.testing.assert_array_equal(vanilla_after, vanilla_before)
    assert not np.allclose(guided, vanilla_after)
    copy = h.guided_backprop_model(model)
    assert copy is not model and len(copy.layers) == len(model.layers) + 2
    np.testing.assert_allclose(np.asarray(copy(tiny_image[None])), output_before, rtol=1e-6)


def test_guided_backprop_reaches_relus_inside_nested_models(tiny_cnn, tiny_image):
    outer = keras.Sequential([keras.Input((32, 32, 3)), tiny_cnn], name="wrapped")
    assert h.relu_family_layers(outer) == ["conv1_activation", "conv2_activation"]
    np.testing.assert_allclose(
        h.saliency(outer, tiny_image, 2, method="guided", reduce=None, progress=False),
        h.saliency(tiny_cnn, tiny_image, 2, method="guided", reduce=None, progress=False),
        rtol=1e-5, atol=1e-12)


def test_guided_backprop_warns_without_relus(tiny_image):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.warns(UserWarning, match="no ReLU-family layer"):
        h.guided_backprop_model(model)


# --------------------------------------------------------------------------
# DeconvNet
# --------------------------------------------------------------------------

def mlp_deconvnet_by_hand(model, class_index):
    """DeconvNet through the MLP with numpy: every ReLU passes ReLU(R), the input ignored."""
    w1, _, w2, _, w3, _, w4, _ = [np.asarray(w, np.float64) for w in model.get_weights()]
    r = w4[:, class_index]
    for weights in (w3, w2, w1):
        r = np.maximum(r, 0) @ weights.T
    return r


def test_deconvnet_equals_hand_computation(mlp):
    image = np.random.default_rng(5).uniform(0, 255, (2, 2, 3)).astype(np.float32)
    for class_index in range(4):
        expected = mlp_deconvnet_by_hand(mlp, class_index).reshape(image.shape)
        got = h.saliency(mlp, image, class_index, method="deconvnet", reduce=None,
                         progress=False)
        guided, _ = mlp_gradient_by_hand(mlp, image, class_index, guided=True)
        assert np.abs(expected).max() > 1e-4
        np.testing.assert_allclose(got, expected, atol=1e-5 * np.abs(expected).max(),
                                   rtol=1e-4)
    # The backward pass ignores the input: another image, the same reconstruction.
    other = h.saliency(mlp, image[::-1] * 0.5, 3, method="deconvnet", reduce=None,
                       progress=False)
    np.testing.assert_allclose(other, got, rtol=1e-6, atol=1e-9)
    assert not np.allclose(got, guided)


def deconvnet_by_layers(model, image, class_index):
    """DeconvNet of the float64 CNN, one layer at a time with its own gradient.

    Each linear layer (and max pooling, whose gradient routes through the
    switches) back-propagates with a tape on that layer alone; at a ReLU,
    and at conv2's fused ReLU, the signal is rectified by hand.
    """
    import tensorflow as tf

    layers = {layer.name: layer for layer in model.layers}
    conv2 = layers["conv2"]

    def conv2_linear(x):
        return tf.nn.conv2d(x, conv2.kernel, 1, "SAME") + conv2.bias

    stages = [layers["preprocess"], layers["conv1"], "relu", layers["pool1"], conv2_linear,
              "relu", layers["avg_pool"], layers["predictions"]]
    inputs, x = [], tf.constant(image[None], tf.float64)
    for stage in stages:
        inputs.append(x)
        x = tf.nn.relu(x) if stage == "relu" else stage(x)
    upstream = tf.one_hot([class_index], x.shape[-1], dtype=tf.float64)
    for stage, x in zip(reversed(stages), reversed(inputs)):
        if stage == "relu":
            upstream = tf.nn.relu(upstream)
            continue
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = stage(x)
        upstream = tape.gradient(y, x, output_gradients=upstream)
    return upstream.numpy()[0]


def test_deconvnet_on_a_cnn_equals_a_layer_by_layer_reconstruction(float64_cnn, small_image):
    for class_index in (0, 3):
        expected = deconvnet_by_layers(float64_cnn, small_image.astype(np.float64), class_index)
        got = h.saliency(float64_cnn, small_image, class_index, method="deconvnet",
                         reduce=None, progress=False)
        assert np.abs(expected).max() > 1e-6
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6 * np.abs(expected).max())
    vanilla = h.saliency(float64_cnn, small_image, 3, reduce=None, progress=False)
    assert not np.allclose(got, vanilla)


def test_deconvnet_leaves_the_model_unchanged_and_shares_its_weights(tiny_image):
    model = build_tiny_cnn(seed=8, name="untouched_by_deconvnet")
    layers_before = [(layer.name, type(layer).__name__) for layer in model.layers]
    output_before = np.asarray(model(tiny_image[None]))
    vanilla_before = h.saliency(model, tiny_image, 4, reduce=None, progress=False)
    deconvnet = h.saliency(model, tiny_image, 4, method="deconvnet", reduce=None,
                           progress=False)
    assert [(layer.name, type(layer).__name__) for layer in model.layers] == layers_before
    np.testing.assert_array_equal(h.saliency(model, tiny_image, 4, reduce=None, progress=False),
                                  vanilla_before)
    assert not np.allclose(deconvnet, vanilla_before)
    copy = h.deconvnet_model(model)
    assert copy is not model and len(copy.layers) == len(model.layers)
    np.testing.assert_allclose(np.asarray(copy(tiny_image[None])), output_before, rtol=1e-6)
    shared = {id(v) for v in model.weights}
    assert {id(v) for v in copy.weights} == shared  # no weights copied


def test_the_cached_deconvnet_copy_does_not_keep_the_model_alive(tiny_image):
    import gc
    import weakref

    model = build_tiny_cnn(seed=9, name="let_go")
    h.saliency(model, tiny_image, 1, method="deconvnet", progress=False)
    h.vargrad(model, tiny_image, 1, method="deconvnet", samples=2, progress=False)
    reference = weakref.ref(model)
    del model
    gc.collect()
    assert reference() is None


def test_deconvnet_reaches_relus_inside_nested_models(tiny_cnn, tiny_image):
    outer = keras.Sequential([keras.Input((32, 32, 3)), tiny_cnn], name="wrapped_deconvnet")
    np.testing.assert_allclose(
        h.saliency(outer, tiny_image, 2, method="deconvnet", reduce=None, progress=False),
        h.saliency(tiny_cnn, tiny_image, 2, method="deconvnet", reduce=None, progress=False),
        rtol=1e-5, atol=1e-12)


def test_deconvnet_warns_without_relus():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.Flatten()(x)))
    with pytest.warns(UserWarning, match="no ReLU-family layer: DeconvNet"):
        h.deconvnet_model(model)


# --------------------------------------------------------------------------
# SmoothGrad
# --------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["vanilla", "guided"])
def test_smoothgrad_without_noise_equals_saliency(tiny_cnn, tiny_image, method):
    smooth = h.smoothgrad(tiny_cnn, tiny_image, 5, noise_level=0.0, samples=3, method=method,
                          reduce=None, progress=False)
    plain = h.saliency(tiny_cnn, tiny_image, 5, method=method, reduce=None, progress=False)
    assert smooth.shape == (32, 32, 3) and smooth.dtype == np.float32
    np.testing.assert_allclose(smooth, plain, rtol=1e-5, atol=1e-6 * np.abs(plain).max())


@pytest.mark.parametrize("method, reduce", [("vanilla", None), ("guided", None),
                                            ("vanilla", "max_abs"), ("guided", "abs_mean")])
def test_batched_smoothgrad_equals_a_loop_over_samples(tiny_cnn, method, reduce):
    images = np.random.default_rng(8).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    classes, samples, noise_level, seed = [1, 6], 5, 0.2, 11
    # batch_size 3 makes batches that hold samples of both images.
    batched = h.smoothgrad(tiny_cnn, images, classes, noise_level=noise_level, samples=samples,
                           method=method, reduce=reduce, batch_size=3, seed=seed,
                           progress=False)
    assert batched.shape == (2, 32, 32) + ((3,) if reduce is None else ())
    sigma = noise_level * 255
    for image, class_index, result in zip(images, classes, batched):
        noise = [sigma * np.random.default_rng((seed, k)).standard_normal(image.shape,
                                                                         dtype=np.float32)
                 for k in range(samples)]
        # Noisy pixels leave 0..255: pass each as a prepared batch of one.
        loop = np.mean([h.saliency(tiny_cnn, (image + noise[k])[None], class_index,
                                   method=method, reduce=reduce, progress=False)[0]
                        for k in range(samples)], axis=0)
        np.testing.assert_allclose(result, loop, rtol=1e-4, atol=1e-6 * np.abs(loop).max())
    single = h.smoothgrad(tiny_cnn, images[1], 6, noise_level=noise_level, samples=samples,
                          method=method, reduce=reduce, batch_size=1, seed=seed,
                          progress=False)
    np.testing.assert_allclose(single, batched[1], rtol=1e-4, atol=1e-12)


def test_smoothgrad_is_repeatable_with_a_seed(tiny_cnn, tiny_image):
    def run(seed):
        return h.smoothgrad(tiny_cnn, tiny_image, 0, samples=4, seed=seed, progress=False)

    np.testing.assert_array_equal(run(3), run(3))
    assert not np.allclose(run(3), run(4))
    assert not np.allclose(run(None), run(None))


def test_smoothgrad_reduces_each_sample_then_averages(tiny_cnn, tiny_image):
    raw = h.smoothgrad(tiny_cnn, tiny_image, 2, samples=4, reduce=None, progress=False)
    # "signed" is linear: averaging then reducing gives the same map.
    np.testing.assert_allclose(
        h.smoothgrad(tiny_cnn, tiny_image, 2, samples=4, reduce="signed", progress=False),
        h.reduce_gradients(raw, "signed"), rtol=1e-5, atol=1e-7 * np.abs(raw).max())
    # Magnitudes are averaged: at least the magnitude of the average (triangle inequality).
    magnitude = h.smoothgrad(tiny_cnn, tiny_image, 2, samples=4, reduce="abs_mean",
                             progress=False)
    assert (magnitude >= h.reduce_gradients(raw, "abs_mean") * (1 - 1e-5)).all()
    assert (magnitude > h.reduce_gradients(raw, "abs_mean") * 1.01).any()


@pytest.mark.parametrize("method, reduce", [("vanilla", None), ("vanilla", "max_abs"),
                                            ("deconvnet", "abs_mean")])
def test_squaregrad_and_vargrad_equal_a_loop_over_the_same_noise(tiny_cnn, method, reduce):
    images = np.random.default_rng(9).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    classes, samples, noise_level, seed = [4, 8], 5, 0.2, 12
    knobs = dict(noise_level=noise_level, samples=samples, method=method, reduce=reduce,
                 seed=seed, progress=False)
    # batch_size 3 makes batches that hold samples of both images.
    square = h.squaregrad(tiny_cnn, images, classes, batch_size=3, **knobs)
    variance = h.vargrad(tiny_cnn, images, classes, batch_size=3, **knobs)
    sigma = noise_level * 255
    for index, (image, class_index) in enumerate(zip(images, classes)):
        maps = np.stack([h.saliency(tiny_cnn, (image + sigma * np.random.default_rng(
            (seed, k)).standard_normal(image.shape, dtype=np.float32))[None], class_index,
            method=method, reduce=reduce, progress=False)[0]
            for k in range(samples)]).astype(np.float64)
        scale = (maps ** 2).mean(axis=0).max()
        np.testing.assert_allclose(square[index], (maps ** 2).mean(axis=0), rtol=1e-4,
                                   atol=1e-6 * scale)
        np.testing.assert_allclose(variance[index], maps.var(axis=0), rtol=1e-3,
                                   atol=1e-6 * scale)
        assert variance[index].max() > 1e-3 * scale  # not comparing zeros


def test_vargrad_is_the_mean_of_squares_minus_the_square_of_the_mean(tiny_cnn, tiny_image):
    knobs = dict(samples=6, noise_level=0.1, batch_size=4, seed=2, progress=False)
    together = h.smoothgrad(tiny_cnn, tiny_image, 3, statistic=("mean", "square", "variance"),
                            **knobs)
    assert set(together) == {"mean", "square", "variance"}
    mean = h.smoothgrad(tiny_cnn, tiny_image, 3, **knobs)
    square = h.squaregrad(tiny_cnn, tiny_image, 3, **knobs)
    variance = h.vargrad(tiny_cnn, tiny_image, 3, **knobs)
    for name, alone in (("mean", mean), ("square", square), ("variance", variance)):
        assert alone.shape == (32, 32) and alone.dtype == np.float32
        np.testing.assert_array_equal(together[name], alone)  # the same noise, one pass
    np.testing.assert_allclose(variance, square - mean.astype(np.float64) ** 2, rtol=1e-3,
                               atol=1e-5 * square.max())
    assert (variance >= 0).all() and variance.max() > 0


def test_running_moments_merge_batches_like_one_pass():
    from helpers.saliency import _RunningMoments

    rng = np.random.default_rng(10)
    maps = 1e4 + rng.normal(0, 1e-2, (13, 4, 5))  # a large mean: naive sums would cancel
    running = _RunningMoments((2, 4, 5))
    for start, stop in [(0, 1), (1, 6), (6, 7), (7, 13)]:
        running.add(1, maps[start:stop])
    np.testing.assert_allclose(running.statistic("mean")[1], maps.mean(axis=0), rtol=1e-14)
    np.testing.assert_allclose(running.statistic("square")[1], (maps ** 2).mean(axis=0),
                               rtol=1e-12)
    np.testing.assert_allclose(running.statistic("variance")[1], maps.var(axis=0), rtol=1e-6)


def test_more_noise_gives_a_smoother_map(tiny_cnn, tiny_image):
    def roughness(heat):
        return np.abs(np.diff(heat, axis=0)).mean() / np.abs(heat).mean()

    plain = h.saliency(tiny_cnn, tiny_image, 3, reduce="signed", progress=False)
    smooth = h.smoothgrad(tiny_cnn, tiny_image, 3, noise_level=0.3, samples=32,
                          reduce="signed", progress=False)
    assert roughness(smooth) < roughness(plain)


# --------------------------------------------------------------------------
# Real architectures
# --------------------------------------------------------------------------

def test_efficientnet_lite0(lite0):
    assert len(h.relu_family_layers(lite0)) == 33
    vanilla = h.saliency(lite0, "chelsea", progress=False)
    guided = h.saliency(lite0, "chelsea", method="guided", progress=False)
    smooth = h.smoothgrad(lite0, "chelsea", samples=2, batch_size=2, progress=False)
    for heat in (vanilla, guided, smooth):
        assert heat.shape == (224, 224) and heat.dtype == np.float32
        assert np.isfinite(heat).all() and heat.max() > 0
    assert np.corrcoef(vanilla.ravel(), guided.ravel())[0, 1] < 0.99
    gradients = h.saliency(lite0, ["coffee", "chelsea"], ["espresso", "tabby"],
                           method="guided", reduce=None, progress=False)
    assert gradients.shape == (2, 224, 224, 3)


def test_efficientnet_lite0_deconvnet_and_vargrad(lite0):
    deconvnet = h.saliency(lite0, "chelsea", "tabby", method="deconvnet", progress=False)
    guided = h.saliency(lite0, "chelsea", "tabby", method="guided", progress=False)
    assert deconvnet.shape == (224, 224) and np.isfinite(deconvnet).all()
    assert deconvnet.max() > 0 and np.corrcoef(deconvnet.ravel(), guided.ravel())[0, 1] < 0.99
    family = h.smoothgrad(lite0, "chelsea", "tabby", samples=2, batch_size=2,
                          statistic=("square", "variance"), progress=False)
    assert all(m.shape == (224, 224) and np.isfinite(m).all() for m in family.values())


@pytest.mark.parametrize("name, relus", [("vgg16", 15), ("mobilenet_v2", 35)])
def test_untrained_keras_applications(name, relus, small_untrained_application):
    model = small_untrained_application(name)
    assert len(h.relu_family_layers(model)) == relus
    size = h.input_size(model)
    image = np.random.default_rng(9).uniform(0, 255, size + (3,)).astype(np.float32)
    for method in ("vanilla", "guided"):
        heat = h.saliency(model, image, 7, method=method, progress=False)
        assert heat.shape == size and np.isfinite(heat).all() and heat.max() > 0
    smooth = h.smoothgrad(model, image, 7, method="guided", samples=1, progress=False)
    assert smooth.shape == size and np.isfinite(smooth).all()


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------

def test_clear_errors(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="out of range"):
        h.saliency(tiny_cnn, tiny_image, 10)
    with pytest.raises(ValueError, match="out of range"):
        h.smoothgrad(tiny_cnn, tiny_image, -1, samples=1)
    with pytest.raises(ValueError, match="method must be one of 'vanilla', 'guided', "
                                         "'deconvnet', not 'smooth'"):
        h.saliency(tiny_cnn, tiny_image, 0, method="smooth")
    with pytest.raises(ValueError, match="method must be one of"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, method="integrated")
    with pytest.raises(ValueError, match="reduce must be one of 'max_abs'.*not 'max'"):
        h.saliency(tiny_cnn, tiny_image, 0, reduce="max")
    with pytest.raises(ValueError, match="reduce must be one of"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, reduce="sum")
    with pytest.raises(ValueError, match=r"noise_level must be a fraction .* in \[0, inf\], got -0.1"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, noise_level=-0.1)
    with pytest.raises(TypeError, match="noise_level must be a fraction"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, noise_level="high")
    with pytest.raises(ValueError, match="samples must be a positive integer .*got 0"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, samples=0)
    with pytest.raises(TypeError, match="samples must be a positive integer"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, samples=2.5)
    with pytest.raises(ValueError, match="batch_size must be a positive integer .*got 0"):
        h.saliency(tiny_cnn, tiny_image, 0, batch_size=0)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, seed=-1)
    with pytest.raises(ValueError, match="reduce must be one of"):
        h.reduce_gradients(np.zeros((2, 2, 3)), "median")


def test_clear_errors_of_the_smoothgrad_family(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="statistic must be one of 'mean', 'square', "
                                         "'variance', not 'median'"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, samples=1, statistic="median")
    with pytest.raises(ValueError, match="statistic must be one of"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, samples=1, statistic=("mean", "max"))
    with pytest.raises(TypeError, match="statistic must be one of"):
        h.smoothgrad(tiny_cnn, tiny_image, 0, samples=1, statistic=2)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        h.vargrad(tiny_cnn, tiny_image, 0, samples=0)
    with pytest.raises(ValueError, match="method must be one of"):
        h.squaregrad(tiny_cnn, tiny_image, 0, method="deconv")
