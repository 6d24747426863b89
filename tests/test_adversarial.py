"""FGSM, iterative FGSM, success rates and transfer, checked against hand-computed references.

A linear softmax model has an analytic input gradient,
``grad_x L = W (softmax(z) - onehot(y)) / 127.5``, so FGSM and the iterative
method can be recomputed in plain numpy and compared pixel for pixel.
"""
import warnings

import numpy as np
import pytest

import helpers as h
from helpers.adversarial import resize_batch
import keras

SIZE = 12
CLASSES = 5


@pytest.fixture(scope="module")
def linear_model():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(CLASSES, name="predictions",
                                 kernel_initializer=keras.initializers.RandomNormal(0, 0.05))(x)
    return keras.Model(inputs, outputs, name="linear")


@pytest.fixture
def mid_images():
    """Pixels in 30..225, so steps up to 16 levels are never clipped; off-integer values."""
    return np.random.default_rng(3).uniform(30, 225, (4, SIZE, SIZE, 3)).astype(np.float32)


def analytic_gradient(model, images, labels):
    kernel, bias = [np.asarray(w, dtype=np.float64) for w in model.get_layer("predictions").weights]
    flat = (images.astype(np.float64) / 127.5 - 1.0).reshape(len(images), -1)
    logits = flat @ kernel + bias
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(images)), labels] -= 1.0
    return (p @ kernel.T / 127.5).reshape(images.shape)


def reference_iterative(model, images, labels, epsilon, steps, step_size, targeted=False):
    adversarial = images.astype(np.float64)
    direction = -1.0 if targeted else 1.0
    for _ in range(steps):
        adversarial += direction * step_size * np.sign(analytic_gradient(model, adversarial, labels))
        adversarial = np.clip(adversarial, images - epsilon, images + epsilon)
        adversarial = np.clip(adversarial, 0, 255)
    return adversarial


def softmax_probability(model, images, index):
    return h.probabilities(h.predict_logits(model, images))[:, index]


# --- FGSM against the analytic reference ----------------------------------------------------

def test_fgsm_matches_analytic_gradient_sign(linear_model, mid_images):
    labels = h.predict_classes(linear_model, mid_images)
    expected = np.clip(mid_images + 3 * np.sign(analytic_gradient(linear_model, mid_images, labels)),
                       0, 255)
    adversarial = h.fgsm(linear_model, mid_images, epsilon=3, progress=False)
    np.testing.assert_allclose(adversarial, expected, atol=1e-4)


def test_loss_gradient_matches_analytic_gradient(linear_model, mid_images):
    labels = [0, 1, 2, 3]
    np.testing.assert_allclose(h.loss_gradient(linear_model, mid_images, labels, batch_size=3),
                               analytic_gradient(linear_model, mid_images, labels),
                               rtol=1e-3, atol=1e-9)
    single = h.loss_gradient(linear_model, mid_images[0])
    assert single.shape == (SIZE, SIZE, 3) and single.dtype == np.float32


def test_targeted_fgsm_matches_analytic_gradient_sign(linear_model, mid_images):
    expected = np.clip(mid_images - 5 * np.sign(analytic_gradient(linear_model, mid_images,
                                                                  [2] * 4)), 0, 255)
    adversarial = h.fgsm(linear_model, mid_images, target_class=2, epsilon=5, progress=False)
    np.testing.assert_allclose(adversarial, expected, atol=1e-4)


@pytest.mark.parametrize("targeted", [False, True])
def test_iterative_fgsm_matches_numpy_loop(linear_model, mid_images, targeted):
    labels = np.array([1, 3, 0, 4]) if targeted else h.predict_classes(linear_model, mid_images)
    expected = reference_iterative(linear_model, mid_images, labels, epsilon=6, steps=9,
                                   step_size=1.5, targeted=targeted)
    kwargs = {"target_class": labels.tolist()} if targeted else {"class_index": labels.tolist()}
    adversarial = h.iterative_fgsm(linear_model, mid_images, epsilon=6, steps=9, step_size=1.5,
                                   progress=False, **kwargs)
    np.testing.assert_allclose(adversarial, expected, atol=1e-3)


def test_kurakin_step_count():
    assert [h.kurakin_steps(e) for e in (1, 2, 4, 8, 16)] == [2, 3, 5, 10, 20]


# --- properties: the loss rises, the max-norm is epsilon, pixels stay valid ---------------

@pytest.mark.parametrize("method", ["fgsm", "iterative_fgsm"])
def test_loss_increases_on_a_cnn(tiny_cnn, method):
    images = np.random.default_rng(5).uniform(0, 255, (6, 32, 32, 3)).astype(np.float32)
    labels = h.predict_classes(tiny_cnn, images)
    before = h.cross_entropy(tiny_cnn, images, labels.tolist())
    adversarial = h.attack(tiny_cnn, images, method=method, epsilon=4, progress=False)
    after = h.cross_entropy(tiny_cnn, adversarial, labels.tolist())
    assert np.all(after > before)


@pytest.mark.parametrize("epsilon", [1, 4, 16, 2.5])
def test_max_norm_equals_epsilon_without_clipping(linear_model, mid_images, epsilon):
    adversarial = h.fgsm(linear_model, mid_images, epsilon=epsilon, progress=False)
    change = np.abs(adversarial - mid_images)
    assert change.max() == pytest.approx(epsilon, abs=1e-4)
    # FGSM moves every pixel by exactly epsilon (the gradient has no zeros here).
    np.testing.assert_allclose(change, epsilon, atol=1e-4)


def test_iterative_fgsm_stays_in_the_epsilon_box(tiny_cnn):
    images = np.random.default_rng(6).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    adversarial = h.iterative_fgsm(tiny_cnn, images, epsilon=3, steps=8, step_size=1,
                                   progress=False)
    assert np.abs(adversarial - images).max() <= 3 + 1e-4
    assert np.abs(adversarial - images).max() == pytest.approx(3, abs=1e-4)


def test_pixels_stay_in_range_and_images_stay_float(tiny_cnn):
    rng = np.random.default_rng(7)
    images = rng.choice(np.array([0.0, 1.5, 253.7, 255.0], np.float32), (4, 32, 32, 3))
    for method in h.ATTACK_METHODS:
        adversarial = h.attack(tiny_cnn, images, method=method, epsilon=8, progress=False)
        assert adversarial.dtype == np.float32 and adversarial.shape == images.shape
        assert adversarial.min() >= 0 and adversarial.max() <= 255
        assert np.abs(adversarial - images).max() <= 8 + 1e-4
    # Unrounded: pixels at 1.5 moved by whole levels keep their half.
    assert np.any(adversarial % 1 == 0.5)


def test_single_image_in_single_image_out(tiny_cnn, tiny_image):
    adversarial = h.fgsm(tiny_cnn, tiny_image, epsilon=2, progress=False)
    assert adversarial.shape == (32, 32, 3)
    assert isinstance(h.cross_entropy(tiny_cnn, tiny_image), float)


def test_targeted_fgsm_raises_target_probability(tiny_cnn):
    images = np.random.default_rng(8).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    before = softmax_probability(tiny_cnn, images, 7)
    adversarial = h.fgsm(tiny_cnn, images, target_class=7, epsilon=2, progress=False)
    assert np.all(softmax_probability(tiny_cnn, adversarial, 7) > before)


def test_deterministic(tiny_cnn, tiny_image):
    first = h.iterative_fgsm(tiny_cnn, tiny_image, epsilon=4, progress=False)
    second = h.iterative_fgsm(tiny_cnn, tiny_image, epsilon=4, progress=False)
    np.testing.assert_array_equal(first, second)


def test_batch_size_does_not_change_results(tiny_cnn):
    images = np.random.default_rng(9).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    whole = h.iterative_fgsm(tiny_cnn, images, epsilon=4, batch_size=16, progress=False)
    chunked = h.iterative_fgsm(tiny_cnn, images, epsilon=4, batch_size=2, progress=False)
    np.testing.assert_allclose(whole, chunked, atol=1e-4)


# --- the real model ---------------------------------------------------------------------

def test_real_model_fgsm_and_targeted_iterative(lite0):
    cat = h.prepare("chelsea", lite0)
    clean_class = int(h.predict_classes(lite0, cat)[0])
    adversarial = h.fgsm(lite0, cat, epsilon=4, progress=False)
    assert np.abs(adversarial - cat).max() == pytest.approx(4, abs=1e-4)
    assert h.cross_entropy(lite0, adversarial, clean_class) > h.cross_entropy(lite0, cat,
                                                                              clean_class)
    espresso = h.class_index("espresso")
    before = softmax_probability(lite0, cat, espresso)[0]
    targeted = h.iterative_fgsm(lite0, cat, target_class="espresso", epsilon=4, progress=False)
    assert softmax_probability(lite0, targeted, espresso)[0] > max(10 * before, 0.05)


# --- success rates over images x epsilons ----------------------------------------------------

@pytest.mark.parametrize("method", h.ATTACK_METHODS)
def test_success_rates_match_a_brute_force_loop(tiny_cnn, method):
    images = np.random.default_rng(10).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    epsilons = (0, 1, 3, 8)
    result = h.success_rates(tiny_cnn, images, epsilons=epsilons, method=method, batch_size=3,
                             progress=False)
    clean = h.predict_classes(tiny_cnn, images)
    np.testing.assert_array_equal(result.clean_classes, clean)
    for column, epsilon in enumerate(epsilons):
        adversarial = h.attack(tiny_cnn, images, method=method, epsilon=epsilon,
                               progress=False)
        expected = h.predict_classes(tiny_cnn, adversarial)
        np.testing.assert_array_equal(result.adversarial_classes[:, column], expected)
    np.testing.assert_allclose(result.rates, (result.adversarial_classes != clean[:, None])
                               .mean(axis=0))
    assert result.rates[0] == 0  # epsilon 0 changes nothing
    assert "eps=8" in str(result) and "<table>" in result._repr_html_()


def test_targeted_success_rates(tiny_cnn):
    images = np.random.default_rng(11).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    result = h.success_rates(tiny_cnn, images, epsilons=(2, 64), target_class=3,
                             method="iterative_fgsm", progress=False)
    np.testing.assert_array_equal(result.success, result.adversarial_classes == 3)
    assert result.rates[1] >= result.rates[0]


# --- transfer ---------------------------------------------------------------------------

def test_transfer_to_itself_equals_white_box(tiny_cnn):
    images = np.random.default_rng(12).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    table = h.transfer_rates(tiny_cnn, {"copy": tiny_cnn}, images, epsilons=(1, 8),
                             noise_control=False, progress=False)
    assert table.rows == ["tiny_cnn (white-box)", "copy (transfer)"]  # same size: no round trip
    np.testing.assert_array_equal(table.rates[0], table.rates[1])
    white_box = h.success_rates(tiny_cnn, images, epsilons=(1, 8), progress=False)
    np.testing.assert_allclose(table.rates[0], white_box.rates)


def test_transfer_to_another_size_matches_manual_resizing(tiny_cnn):
    keras.utils.set_random_seed(4)
    inputs = keras.Input((40, 40, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Flatten()(keras.layers.MaxPooling2D(4)(x))
    other = keras.Model(inputs, keras.layers.Dense(10)(x), name="other")
    images = np.random.default_rng(13).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    table = h.transfer_rates(tiny_cnn, [other], images, epsilons=(8, 128), batch_size=2,
                             progress=False)
    assert table.rows == ["tiny_cnn (white-box)", "other (transfer)",
                          "tiny_cnn via 40 px and back", "tiny_cnn (random sign noise)",
                          "other (random sign noise)"]
    assert table.success.shape == (5, 5, 2)
    clean_tiny = h.predict_classes(tiny_cnn, images)
    clean_other = h.predict_classes(other, resize_batch(images, 40))
    clean_round_trip = h.predict_classes(tiny_cnn, resize_batch(resize_batch(images, 40), 32))
    signs = np.stack([np.sign(np.random.default_rng([0, i]).integers(0, 2, (32, 32, 3)) - 0.5)
                      for i in range(5)])
    for column, epsilon in enumerate((8, 128)):
        adversarial = h.fgsm(tiny_cnn, images, epsilon=epsilon, progress=False)
        transfer = h.predict_classes(other, resize_batch(adversarial, 40)) != clean_other
        round_trip = h.predict_classes(
            tiny_cnn, resize_batch(resize_batch(adversarial, 40), 32)) != clean_round_trip
        noisy = np.clip(images + epsilon * signs, 0, 255).astype(np.float32)
        noise_tiny = h.predict_classes(tiny_cnn, noisy) != clean_tiny
        noise_other = h.predict_classes(other, resize_batch(noisy, 40)) != clean_other
        np.testing.assert_array_equal(table.success[1, :, column], transfer)
        np.testing.assert_array_equal(table.success[2, :, column], round_trip)
        np.testing.assert_array_equal(table.success[3, :, column], noise_tiny)
        np.testing.assert_array_equal(table.success[4, :, column], noise_other)
    np.testing.assert_allclose(table.rates, table.success.mean(axis=1))
    assert table.success[:, :, 1].any(axis=1).all()  # every row has something to compare
    assert set(table.as_dict()) == set(table.rows)
    assert "via 40 px and back" in str(table) and "<table>" in table._repr_html_()


def test_resize_batch():
    flat = np.full((2, 10, 10, 3), 77.0, np.float32)
    np.testing.assert_allclose(resize_batch(flat, 17), 77.0, atol=1e-4)
    assert resize_batch(flat, (6, 9)).shape == (2, 6, 9, 3)
    ramp = np.random.default_rng(0).uniform(0, 255, (1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_array_equal(resize_batch(ramp, 8), ramp)
    with pytest.raises(ValueError, match="batch"):
        resize_batch(flat[0], 5)


# --- bad input --------------------------------------------------------------------------

def test_errors(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="0..255"):
        h.fgsm(tiny_cnn, tiny_image, epsilon=-1)
    with pytest.raises(ValueError, match="0..255"):
        h.fgsm(tiny_cnn, tiny_image, epsilon=300)
    with pytest.raises(TypeError, match="pixel levels"):
        h.fgsm(tiny_cnn, tiny_image, epsilon="4")
    with pytest.warns(UserWarning, match=r"means 4/255\)\. Did you mean epsilon=4\?"):
        h.fgsm(tiny_cnn, tiny_image, epsilon=4 / 255, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # half a level is a legitimate sub-level step
        h.fgsm(tiny_cnn, tiny_image, epsilon=0.5, progress=False)
    with pytest.raises(ValueError, match="not both"):
        h.fgsm(tiny_cnn, tiny_image, class_index=1, target_class=2)
    with pytest.raises(ValueError, match="method must be one of"):
        h.attack(tiny_cnn, tiny_image, method="pgd")
    with pytest.raises(ValueError, match="batch_size"):
        h.fgsm(tiny_cnn, tiny_image, batch_size=0)
    with pytest.raises(ValueError, match="steps"):
        h.iterative_fgsm(tiny_cnn, tiny_image, steps=0)
    with pytest.raises(ValueError, match="step_size"):
        h.iterative_fgsm(tiny_cnn, tiny_image, step_size=-1)
    with pytest.raises(ValueError, match="out of range"):
        h.fgsm(tiny_cnn, tiny_image, target_class=10)
    with pytest.raises(ValueError, match="epsilons is empty"):
        h.success_rates(tiny_cnn, tiny_image, epsilons=[])
    with pytest.raises(TypeError, match="target_models"):
        h.transfer_rates(tiny_cnn, "lite1", tiny_image)
    with pytest.raises(TypeError, match="must be a Keras model"):
        h.fgsm("model", tiny_image)
