"""Integrated Gradients and Gradient x Input against analytic integrals and brute-force loops."""
import numpy as np
import pytest

import helpers as h
import keras
from helpers.integrated_gradients import integration_points
from tests.test_saliency import build_float64_cnn


class _SineFeatures(keras.layers.Layer):
    """logits = sin(x / 50) @ A + c on the flattened pixels: each pixel's part is separable."""

    def __init__(self, weights, bias, **kwargs):
        super().__init__(**kwargs)
        self.matrix = keras.ops.convert_to_tensor(weights)
        self.offset = keras.ops.convert_to_tensor(bias)

    def call(self, inputs):
        flat = keras.ops.reshape(inputs, (-1, self.matrix.shape[0]))
        return keras.ops.matmul(keras.ops.sin(flat / 50.0), self.matrix) + self.offset

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.matrix.shape[1])


@pytest.fixture(scope="module")
def sine_model():
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 1, (4 * 4 * 3, 3)).astype(np.float32)
    inputs = keras.Input((4, 4, 3), name="input_image")
    layer = _SineFeatures(weights, np.float32([0.5, -1.0, 2.0]), name="predictions")
    model = keras.Model(inputs, layer(inputs), name="sine")
    model.sine_weights = weights
    return model


def exact_sine_attributions(model, image, baseline, class_index):
    """IG_i = A_ic (sin(x_i / 50) - sin(b_i / 50)): the path integral of a separable score."""
    weights = model.sine_weights[:, class_index].reshape(image.shape)
    return weights * (np.sin(image / 50.0) - np.sin(baseline / 50.0))


@pytest.fixture
def sine_image():
    return np.random.default_rng(1).uniform(0, 255, (4, 4, 3)).astype(np.float32)


# --------------------------------------------------------------------------
# Against the exact integral
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rule, order", [("trapezoid", 2), ("riemann_middle", 2),
                                         ("riemann_right", 1), ("riemann_left", 1)])
def test_attributions_converge_to_the_analytic_integral(sine_model, sine_image, rule, order):
    baseline = np.full_like(sine_image, 20.0)
    exact = exact_sine_attributions(sine_model, sine_image, baseline, 1)
    errors = []
    for steps in (8, 32):
        result = h.integrated_gradients(sine_model, sine_image, 1, baseline=20.0, steps=steps,
                                        rule=rule, reduce=None, progress=False)
        assert result.maps.shape == (4, 4, 3) and result.maps.dtype == np.float32
        errors.append(np.abs(result.maps - exact).max() / np.abs(exact).max())
    # Quadrupling the steps divides the error by about 4**order, not more.
    assert errors[0] / (4 ** order) / 1.5 < errors[1] < errors[0] / (4 ** order) * 1.5, errors
    assert errors[1] < (2e-3 if order == 2 else 0.15)


def test_completeness_of_the_exact_rules_on_the_sine_model(sine_model, sine_image):
    result = h.integrated_gradients(sine_model, sine_image, 2, baseline="black", steps=64,
                                    progress=False)
    total = exact_sine_attributions(sine_model, sine_image, np.zeros_like(sine_image), 2).sum()
    np.testing.assert_allclose(result.logits - result.baseline_logits, total, rtol=1e-5)
    assert abs(float(result.gap)) < 1e-3 * abs(total) and float(result.relative_gap) < 1e-3


def test_completeness_gap_shrinks_with_steps_on_a_relu_cnn():
    model = build_float64_cnn()
    image = np.random.default_rng(2).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    gaps = [float(h.integrated_gradients(model, image, 3, baseline="black", steps=steps,
                                         progress=False).relative_gap)
            for steps in (2, 16, 256)]
    assert gaps[0] > 0.005  # few steps miss the ReLU kinks: a visible gap to close
    # Along the path a ReLU network's gradient is piecewise constant: the
    # error of any rule falls like 1/steps, not faster.
    assert gaps[0] > gaps[1] > 4 * gaps[2] and gaps[2] < 0.01, gaps


# --------------------------------------------------------------------------
# Against a brute-force loop over the path
# --------------------------------------------------------------------------

@pytest.mark.parametrize("rule", ["trapezoid", "riemann_middle"])
def test_batched_path_equals_a_loop_over_alphas(tiny_cnn, rule):
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    classes, steps = [2, 7], 5
    # batch_size 4 makes batches that hold path points of both images.
    result = h.integrated_gradients(tiny_cnn, images, classes, baseline="blur", steps=steps,
                                    rule=rule, reduce=None, batch_size=4, progress=False)
    alphas, weights = integration_points(steps, rule)
    for image, class_index, got, baseline in zip(images, classes, result.maps,
                                                 result.baselines):
        expected_baseline = h.baseline_image(image, "blur")
        np.testing.assert_allclose(baseline, expected_baseline, atol=1e-4)
        total = np.zeros(image.shape, dtype=np.float64)
        for alpha, weight in zip(alphas, weights):
            point = expected_baseline + alpha * (image - expected_baseline)
            total += weight * h.saliency(tiny_cnn, point[None], class_index, reduce=None,
                                         progress=False)[0]
        loop = (image - expected_baseline) * total
        assert np.abs(loop).max() > 1e-6
        np.testing.assert_allclose(got, loop, rtol=1e-4, atol=1e-5 * np.abs(loop).max())
    single = h.integrated_gradients(tiny_cnn, images[1], 7, baseline="blur", steps=steps,
                                    rule=rule, reduce=None, batch_size=1, progress=False)
    np.testing.assert_allclose(single.maps, result.maps[1], rtol=1e-4, atol=1e-9)
    assert float(single.logits) == pytest.approx(float(result.logits[1]), rel=1e-5)


def test_integration_points():
    alphas, weights = integration_points(4, "trapezoid")
    np.testing.assert_allclose(alphas, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(weights, [0.125, 0.25, 0.25, 0.25, 0.125])
    np.testing.assert_allclose(integration_points(4, "riemann_right")[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(integration_points(4, "riemann_left")[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(integration_points(2, "riemann_middle")[0], [0.25, 0.75])
    for rule in h.INTEGRATION_RULES:
        assert integration_points(7, rule)[1].sum() == pytest.approx(1.0)


def test_a_linear_model_is_integrated_exactly_in_one_step():
    keras.utils.set_random_seed(4)
    inputs = keras.Input((3, 3, 3))
    model = keras.Model(inputs, keras.layers.Dense(4)(keras.layers.Flatten()(inputs)))
    image = np.random.default_rng(4).uniform(0, 255, (3, 3, 3)).astype(np.float32)
    kernel = np.asarray(model.layers[-1].kernel)[:, 2].reshape(image.shape)
    for rule in h.INTEGRATION_RULES:
        result = h.integrated_gradients(model, image, 2, baseline=(10, 20, 30), steps=1,
                                        rule=rule, reduce=None, progress=False)
        np.testing.assert_allclose(result.maps, (image - [10, 20, 30]) * kernel, rtol=1e-4,
                                   atol=1e-4)
        assert abs(float(result.gap)) < 1e-3


# --------------------------------------------------------------------------
# Gradient x Input
# --------------------------------------------------------------------------

def test_gradient_x_input_is_input_times_the_saliency_gradient(tiny_cnn, tiny_image):
    product = h.gradient_x_input(tiny_cnn, tiny_image, 4, reduce=None, progress=False)
    gradient = h.saliency(tiny_cnn, tiny_image, 4, reduce=None, progress=False)
    assert product.shape == (32, 32, 3) and product.dtype == np.float32
    np.testing.assert_allclose(product, tiny_image * gradient, rtol=1e-6,
                               atol=1e-7 * np.abs(product).max())
    summed = h.gradient_x_input(tiny_cnn, tiny_image, 4, progress=False)
    np.testing.assert_allclose(summed, (tiny_image * gradient).sum(-1), rtol=1e-5, atol=1e-7)
    one_step = h.integrated_gradients(tiny_cnn, tiny_image, 4, baseline="black", steps=1,
                                      rule="riemann_right", progress=False)
    np.testing.assert_allclose(summed, one_step.maps, rtol=1e-5, atol=1e-7)


def test_gradient_x_input_in_batches(tiny_cnn):
    images = np.random.default_rng(5).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    batched = h.gradient_x_input(tiny_cnn, images, [1, 2, 3], batch_size=2, progress=False)
    assert batched.shape == (3, 32, 32)
    for image, class_index, expected in zip(images, [1, 2, 3], batched):
        np.testing.assert_allclose(h.gradient_x_input(tiny_cnn, image, class_index,
                                                      progress=False), expected, rtol=1e-5,
                                   atol=1e-9)


# --------------------------------------------------------------------------
# Baselines and the result
# --------------------------------------------------------------------------

def test_baselines(tiny_cnn, tiny_image):
    def baseline_of(**knobs):
        return h.integrated_gradients(tiny_cnn, tiny_image, 0, steps=1, progress=False,
                                      **knobs).baselines[0]

    np.testing.assert_array_equal(baseline_of(), np.zeros_like(tiny_image))  # black default
    np.testing.assert_array_equal(baseline_of(baseline="grey"), np.full_like(tiny_image, 127.5))
    noise = baseline_of(baseline="noise", seed=3)
    np.testing.assert_array_equal(noise, h.baseline_image(tiny_image, "noise", seed=3))
    assert 0 <= noise.min() and noise.max() <= 255 and 100 < noise.mean() < 155
    assert not np.array_equal(noise, baseline_of(baseline="noise", seed=4))
    np.testing.assert_allclose(baseline_of(baseline="blur", blur_sigma=2.0),
                               h.baseline_image(tiny_image, "blur", blur_sigma=2.0))
    images = np.stack([tiny_image, tiny_image[::-1]])
    own = np.stack([np.full_like(tiny_image, 50.0), np.full_like(tiny_image, 200.0)])
    per_image = h.integrated_gradients(tiny_cnn, images, [0, 1], baseline=own, steps=2,
                                       progress=False)
    np.testing.assert_array_equal(per_image.baselines, own)
    second = h.integrated_gradients(tiny_cnn, images[1], 1, baseline=own[1], steps=2,
                                    progress=False)
    np.testing.assert_allclose(per_image.maps[1], second.maps, rtol=1e-5, atol=1e-9)


def test_the_result_reports_completeness(tiny_cnn, tiny_image):
    one = h.integrated_gradients(tiny_cnn, tiny_image, 5, steps=8, progress=False)
    assert one.single and np.ndim(one.logits) == 0 and one.maps.shape == (32, 32)
    np.testing.assert_allclose(float(one.attribution_sum), one.maps.sum(), rtol=1e-4)
    logits = np.asarray(tiny_cnn(np.stack([tiny_image, np.zeros_like(tiny_image)])))[:, 5]
    np.testing.assert_allclose([one.logits, one.baseline_logits], logits, rtol=1e-5,
                               atol=1e-6)
    assert float(one.gap) == pytest.approx(float(one.attribution_sum) - (logits[0] - logits[1]),
                                           abs=1e-6)
    text = str(one)
    assert "black baseline: 8 steps, trapezoid rule" in text and "sum IG" in text
    assert "class 5" in text
    two = h.integrated_gradients(tiny_cnn, [tiny_image, tiny_image], [5, 6], steps=8,
                                 progress=False)
    assert not two.single and two.logits.shape == (2,) and two.maps.shape == (2, 32, 32)
    assert two.class_names == ["class 5", "class 6"] and len(str(two).splitlines()) == 4


def test_noise_baseline_is_seeded_uniform():
    image = np.zeros((16, 16, 3), np.float32)
    noise = h.baseline_image(image, "noise", seed=7)
    assert noise.dtype == np.float32 and noise.shape == image.shape
    np.testing.assert_array_equal(noise, h.baseline_image(image, "noise", seed=7))
    np.testing.assert_array_equal(
        noise, np.random.default_rng(7).uniform(0, 255, image.shape).astype(np.float32))
    assert h.baseline_image(np.zeros((16, 16, 1), np.float32), "noise").shape == (16, 16, 1)


def test_clear_errors(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="rule must be one of 'trapezoid', 'riemann_right'"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, rule="simpson")
    with pytest.raises(ValueError, match="steps must be a positive integer .*got 0"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, steps=0)
    with pytest.raises(TypeError, match="steps must be a positive integer"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, steps=2.5)
    with pytest.raises(ValueError, match="baseline must be one of 'grey', 'black', 'mean', "
                                         "'blur', 'noise'"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, baseline="pink")
    with pytest.raises(ValueError, match=r"baseline: a batch of baselines must have the "
                                         r"images' shape \(1, 32, 32, 3\)"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, baseline=np.zeros((2, 32, 32, 3)))
    with pytest.raises(ValueError, match="reduce must be one of"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, reduce="sum")
    with pytest.raises(ValueError, match="reduce must be one of"):
        h.gradient_x_input(tiny_cnn, tiny_image, 0, reduce="sum")
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        h.integrated_gradients(tiny_cnn, tiny_image, 0, baseline="noise", seed=-1)


def test_efficientnet_lite0(lite0):
    result = h.integrated_gradients(lite0, "chelsea", "tabby", steps=8, batch_size=9,
                                    progress=False)
    assert result.maps.shape == (224, 224) and np.isfinite(result.maps).all()
    assert result.class_names == "tabby" and result.logits > result.baseline_logits
    product = h.gradient_x_input(lite0, "chelsea", "tabby", progress=False)
    assert product.shape == (224, 224) and np.isfinite(product).all()
