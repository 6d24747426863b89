"""Concepts: CAVs, TCAV with its statistical test, and CRAFT, on models with known answers.

The tiny models are built by hand, so what they look for is known:

* ``stripes_model`` (32 px): its layer "features_activation" holds the
  positive and negative parts of a Laplacian of the luma (edges and
  stripes, any angle: channels 0 and 1) and the red, green and blue
  excess of each pixel (channels 2-4). Class 0's logit grows with the
  Laplacian energy (through a softplus, so its gradient differs from image
  to image), class 1's falls with it, class 2's grows with redness. So
  stripes must matter to class 0 (positively) and to class 1
  (negatively), red colour fields only to class 2.
* ``orientation_model`` (48 px): channels 0-1 see horizontal stripes
  (a second derivative along y), channels 2-3 vertical ones; class 0's
  logit weighs horizontal stripes 3 and vertical stripes 1. CRAFT must
  find the two orientations as separate concepts, and rank horizontal first.
"""

from __future__ import annotations

import inspect
import time

import numpy as np
import pytest

import helpers as h
import keras
from helpers.environment import tf
from helpers import concepts as C
from helpers.shap_explain import split_model

LUMA = np.array([0.299, 0.587, 0.114], np.float32)
LAPLACIAN = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
RED = [(190.0, 60.0, 60.0)]
# Colours of this tiny world's random images, away from 0 and 255 (clipped noise has less energy)
PALETTE = np.random.default_rng(0).uniform(40, 215, (40, 3))


def stripes_model(activation=None, name="stripes_model"):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
    features = keras.layers.Conv2D(5, 3, name="features")  # valid: no border edges
    x = keras.layers.ReLU(name="features_activation")(features(x))
    detectors = keras.layers.Conv2D(2, 1, name="detectors")
    x = keras.layers.Activation("softplus", name="detector_activation")(detectors(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    dense = keras.layers.Dense(3, activation=activation, name="predictions")
    model = keras.Model(inputs, dense(x), name=name)
    kernel = np.zeros((3, 3, 3, 5), np.float32)
    kernel[..., 0] = LAPLACIAN[..., None] * LUMA
    kernel[..., 1] = -kernel[..., 0]
    for channel in range(3):  # redness, greenness, blueness of the centre pixel
        kernel[1, 1, :, 2 + channel] = -0.5
        kernel[1, 1, channel, 2 + channel] = 1.0
    features.set_weights([kernel, np.zeros(5, np.float32)])
    detector = np.zeros((1, 1, 5, 2), np.float32)
    detector[0, 0, :2, 0] = 10.0   # Laplacian energy, sharp enough to vary the gradient
    detector[0, 0, 2, 1] = 10.0    # redness
    detectors.set_weights([detector, np.array([-4.0, -4.0], np.float32)])
    dense.set_weights([np.array([[4.0, -4.0, 0.0], [0.0, 0.0, 4.0]], np.float32),
                       np.zeros(3, np.float32)])
    return model


def orientation_model():
    inputs = keras.Input((48, 48, 3))
    x = keras.layers.Rescaling(1 / 255, name="preprocess")(inputs)
    features = keras.layers.Conv2D(4, 3, name="features")
    x = keras.layers.ReLU(name="features_activation")(features(x))
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    dense = keras.layers.Dense(2, name="predictions")
    model = keras.Model(inputs, dense(x), name="orientation_model")
    along_y = np.array([[0, 1, 0], [0, -2, 0], [0, 1, 0]], np.float32)   # horizontal stripes
    kernel = np.zeros((3, 3, 3, 4), np.float32)
    kernel[..., 0] = along_y[..., None] * LUMA
    kernel[..., 1] = -kernel[..., 0]
    kernel[..., 2] = along_y.T[..., None] * LUMA                           # vertical stripes
    kernel[..., 3] = -kernel[..., 2]
    features.set_weights([kernel, np.zeros(4, np.float32)])
    dense.set_weights([np.array([[3.0, 0.0], [3.0, 0.0], [1.0, 0.0], [1.0, 0.0]], np.float32),
                       np.zeros(2, np.float32)])
    return model


@pytest.fixture(scope="module")
def stripes():
    return stripes_model()


def random_fields(count=20, sets=16, seed=100):
    """Random sets of this tiny world: colour fields of random colours, with pixel noise."""
    return [C.texture_images("colour_field", 32, count=count, colours=PALETTE, seed=seed + i)
            for i in range(sets)]


@pytest.fixture(scope="module")
def known_cavs(stripes):
    concepts = {"stripes": C.texture_images("stripes", 32, count=20, seed=1),
                "red": C.texture_images("colour_field", 32, count=20, colours=RED, seed=2)}
    return C.concept_cavs(stripes, concepts, "features_activation",
                          random_sets=random_fields(), progress=False)


@pytest.fixture(scope="module")
def class_images():
    return C.texture_images("stripes", 32, count=16, seed=50)


# ---------------------------------------------------------------- concept examples

@pytest.mark.parametrize("kind", C.TEXTURES)
def test_textures_are_seeded_pixels_at_the_models_size(kind, stripes):
    images = C.texture_images(kind, stripes, count=3, seed=7)
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 255
    np.testing.assert_array_equal(images, C.texture_images(kind, 32, count=3, seed=7))
    assert not np.array_equal(images, C.texture_images(kind, 32, count=3, seed=8))
    assert not np.array_equal(images[0], images[1])   # each image varies


def test_stripes_have_edges_and_colour_fields_do_not():
    def edge_energy(images):
        luma = images @ LUMA
        return np.abs(np.diff(luma, axis=1)).mean() + np.abs(np.diff(luma, axis=2)).mean()

    stripes = C.texture_images("stripes", 64, count=4, noise=0.0)
    fields = C.texture_images("colour_field", 64, count=4, noise=0.0)
    assert edge_energy(stripes) > 20 * edge_energy(fields)
    black_white = C.texture_images("stripes", 64, count=2, colours=[(0, 0, 0), (255, 255, 255)],
                                   noise=0.0)
    assert set(np.unique(black_white[:, 32, :, 0])) >= {0.0, 255.0}
    assert np.ptp(black_white, axis=-1).max() == 0   # grey levels only
    horizontal = C.texture_images("stripes", 64, count=1, angles=[90], noise=0.0)[0]
    assert np.abs(np.diff(horizontal, axis=0)).sum() > 5 * np.abs(np.diff(horizontal, axis=1)).sum()


def test_photo_crops_random_sets_and_the_watermark_concept():
    crops = C.photo_crops(48, count=5, seed=0)
    assert crops.shape == (5, 48, 48, 3) and 0 <= crops.min() and crops.max() <= 255
    first, second = C.random_images(48, count=6, seed=0), C.random_images(48, count=6, seed=1)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, C.random_images(48, count=6, seed=0))
    own = C.photo_crops((40, 60), count=2, photos=["chelsea", h.load_image("coffee")], seed=3)
    assert own.shape == (2, 40, 60, 3)
    marked, clean = C.watermark_images(64, count=3, seed=2)
    changed = np.abs(marked - clean).max(axis=-1) > 0
    assert changed.any(axis=(1, 2)).all()
    # only the watermark's rows change (ImageNet-W draws it at 40 % of the height)
    rows = np.flatnonzero(changed.any(axis=(0, 2)))
    assert rows.min() >= 0.35 * 64 and rows.max() <= 0.75 * 64


# ---------------------------------------------------------------- CAVs and TCAV: known answers

def test_the_stripes_cav_separates_and_points_at_the_stripe_channels(stripes, known_cavs):
    accuracy = known_cavs.accuracies["stripes", "features_activation"]
    assert accuracy.mean() >= 0.95 and accuracy.min() >= 0.85
    vector = known_cavs.cav("stripes").vector.reshape(30, 30, 5)
    assert vector[..., :2].sum() > 0   # towards more Laplacian energy
    # random vs random: the sets are alike, the classifier guesses
    assert 0.3 <= known_cavs.accuracies[C.RANDOM, "features_activation"].mean() <= 0.75
    assert "CAV accuracy" in str(known_cavs) and "<table>" in known_cavs._repr_html_()


def test_tcav_known_answers(stripes, known_cavs, class_images):
    result = C.tcav_test(stripes, class_images, 0, known_cavs, progress=False)
    stripes_row, red_row = result.row("stripes"), result.row("red")
    assert stripes_row.mean == 1.0 and stripes_row.significant
    assert stripes_row.corrected_p < 0.01
    assert not red_row.significant and red_row.corrected_p > 0.05
    null = stripes_row.random_scores
    assert 0.3 <= null.mean() <= 0.7 and null.std() > 0.1    # random vs random: about 0.5
    assert 0 < red_row.mean < 1
    # class 1 falls with stripes: TCAV 0, significant; class 2 is redness: red significant
    against = C.tcav_test(stripes, class_images, 1, known_cavs, progress=False)
    assert against.row("stripes").mean == 0.0 and against.significant("stripes")
    red_images = C.texture_images("colour_field", 32, count=12, colours=RED, seed=60)
    redness = C.tcav_test(stripes, red_images, 2, known_cavs, progress=False)
    assert redness.row("red").mean == 1.0 and redness.significant("red")
    text = str(result)
    assert "significant" in text and "bonferroni" in text and "stripes" in text


def test_a_random_concept_can_score_high_and_still_fail_the_test(stripes, class_images):
    """A 'concept' drawn from the random sets' own distribution: its CAVs separate nothing
    (accuracy near chance) and, whatever its mean score, the test finds no effect: the
    scores of CAVs against different random sets disagree as much as random ones do."""
    fields = random_fields(sets=9, seed=300)
    cavs = C.concept_cavs(stripes, {"more fields": random_fields(sets=1, seed=900)[0]},
                          "features_activation", random_sets=fields, progress=False)
    assert cavs.accuracies["more fields", "features_activation"].mean() < 0.75
    result = C.tcav_test(stripes, class_images, 0, cavs, progress=False)
    row = result.row("more fields")
    assert not row.significant and row.p_value > 0.05
    assert row.std > 0.1   # the CAVs disagree


def test_directional_derivative_equals_a_finite_difference_along_the_cav(tiny_cnn):
    # After "pool1" the logit is smooth almost everywhere (one ReLU; a max-pool right after a
    # ReLU is not: ties of zeros make its one-sided derivatives differ).
    images = np.random.default_rng(3).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    head, tail = split_model(tiny_cnn, "pool1")
    activations = np.asarray(head(images), np.float64)
    with tf.GradientTape() as tape:   # a direction the logit is sensitive to, plus noise
        start = tf.constant(activations[:1], tf.float32)
        tape.watch(start)
        score = tail(start)[:, 3]
    gradient = tape.gradient(score, start).numpy()[0]
    noise = np.random.default_rng(4).normal(size=gradient.shape) * np.abs(gradient).mean()
    for pooling in ("flatten", "mean"):
        vector = (gradient + noise).ravel() if pooling == "flatten" else \
            (gradient + noise).sum(axis=(0, 1))
        vector = (vector / np.linalg.norm(vector)).astype(np.float32)
        cav = C.CAV(vector, "pool1", pooling, activations.shape[1:], 1.0)
        derivatives = C.directional_derivatives(tiny_cnn, images, 3, cav, progress=False)
        step = np.broadcast_to(vector.reshape(activations.shape[1:]) if pooling == "flatten"
                               else vector, activations.shape[1:])
        epsilon = 1e-3
        up = np.asarray(tail((activations + epsilon * step).astype(np.float32)))[:, 3]
        down = np.asarray(tail((activations - epsilon * step).astype(np.float32)))[:, 3]
        finite = (up - down) / (2 * epsilon)
        assert np.abs(finite).max() > 1e-3   # not comparing zeros
        np.testing.assert_allclose(derivatives, finite, rtol=1e-2, atol=1e-4)
    assert C.tcav_score(tiny_cnn, images, 3, cav, progress=False) == np.mean(derivatives > 0)


def test_tcav_explains_the_logit_of_a_softmax_model(stripes, known_cavs, class_images):
    softmax = stripes_model("softmax", name="stripes_softmax")
    softmax.set_weights(stripes.get_weights())
    plain = C.tcav_test(stripes, class_images, 0, known_cavs, progress=False)
    twin = C.tcav_test(softmax, class_images, 0, known_cavs, progress=False)
    for concept in ("stripes", "red"):
        np.testing.assert_allclose(twin.row(concept).derivatives, plain.row(concept).derivatives,
                                   rtol=1e-4, atol=1e-6)
        np.testing.assert_array_equal(twin.row(concept).scores, plain.row(concept).scores)
    cav = known_cavs.cav("stripes")
    assert C.tcav_score(softmax, class_images, 0, cav, progress=False) == 1.0


def test_a_single_cav_and_mean_pooling(stripes, class_images):
    concept = C.texture_images("stripes", 32, count=20, seed=11)
    other = random_fields(sets=1, seed=12)[0]
    for pooling in ("flatten", "mean"):
        found = C.cav(stripes, concept, other, "features_activation", pooling=pooling,
                      concept="stripes")
        assert found.accuracy >= 0.9 and np.isclose(np.linalg.norm(found.vector), 1.0)
        assert len(found.vector) == (30 * 30 * 5 if pooling == "flatten" else 5)
        assert C.tcav_score(stripes, class_images, 0, found, progress=False) == 1.0
        assert "stripes" in repr(found)
    values = C.layer_activations(stripes, concept, "features_activation", pooling="mean")
    assert values.shape == (20, 5) and values.min() >= 0


def test_the_cav_is_the_normal_of_scikit_learns_fit_in_the_full_space():
    """fit_cav solves in the span of the training rows; the direct fit gives the same w."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(0)
    concept = np.maximum(rng.normal(0.3, 1, (15, 3000)), 0)
    other = np.maximum(rng.normal(0.0, 1, (15, 3000)), 0)
    vector, accuracy = C.fit_cav(concept, other, seed=4)
    values = np.concatenate([concept, other])
    labels = np.r_[np.ones(15), np.zeros(15)]
    train, test, train_y, test_y = train_test_split(values, labels, test_size=0.33,
                                                    stratify=labels, random_state=4)
    scale = np.sqrt(np.mean(train ** 2))
    direct = LogisticRegression(C=1.0, tol=1e-12, max_iter=100_000).fit(train / scale, train_y)
    normal = direct.coef_[0] / np.linalg.norm(direct.coef_[0])
    assert normal @ vector > 0.99999
    assert accuracy == direct.score(test / scale, test_y)


def test_the_corrections():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    np.testing.assert_allclose(C.adjust_p_values(p, "bonferroni"), [0.04, 0.16, 0.12, 1.0])
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 -> 0.04, 0.09, 0.09 (monotone), 0.5
    np.testing.assert_allclose(C.adjust_p_values(p, "holm"), [0.04, 0.09, 0.09, 0.5])
    assert (C.adjust_p_values(p, "holm") <= C.adjust_p_values(p, "bonferroni")).all()


def test_the_test_is_corrected_over_concepts_and_layers(stripes, class_images):
    concepts = {"stripes": C.texture_images("stripes", 32, count=8, seed=1),
                "red": C.texture_images("colour_field", 32, count=8, colours=RED, seed=2)}
    cavs = C.concept_cavs(stripes, concepts, ["features", "features_activation"],
                          random_sets=random_fields(count=8, sets=5), progress=False)
    result = C.tcav_test(stripes, class_images, 0, cavs, correction="holm", progress=False)
    assert len(result.rows) == 4
    raw = np.array([row.p_value for row in result.rows])
    np.testing.assert_allclose([row.corrected_p for row in result.rows],
                               C.adjust_p_values(raw, "holm"))
    assert result.row("stripes", "features_activation").mean == 1.0
    assert cavs.table()["layer"].count("features") == 3   # stripes, red, random


# ---------------------------------------------------------------- CRAFT

def half_and_half(count=6, seed=0):
    """Horizontal stripes on one half, vertical on the other (sides drawn per image)."""
    rng = np.random.default_rng(seed)
    horizontal = C.texture_images("stripes", 48, count=count, angles=[90], seed=seed + 1)
    vertical = C.texture_images("stripes", 48, count=count, angles=[0], seed=seed + 2)
    images, sides = horizontal.copy(), rng.integers(0, 2, count)
    for image, source, side in zip(images, vertical, sides):
        columns = slice(24, 48) if side == 0 else slice(0, 24)
        image[:, columns] = source[:, columns]
    return images, sides   # side 0: horizontal stripes on the left


def test_nmf_reconstructs_with_non_negative_factors():
    values = np.random.default_rng(0).uniform(0, 1, (40, 3)) @ np.random.default_rng(1).uniform(
        0, 1, (3, 12))
    factorization = C._nmf(3, 0)
    coefficients = factorization.fit_transform(values)
    assert coefficients.min() >= 0 and factorization.components_.min() >= 0
    reconstruction = coefficients @ factorization.components_
    assert np.linalg.norm(values - reconstruction) / np.linalg.norm(values) < 0.02


def test_craft_recovers_two_planted_textures():
    model = orientation_model()
    images, sides = half_and_half()
    found = C.craft(model, images, 0, layer="features_activation", num_concepts=2, designs=64,
                    seed=0, progress=False)
    assert found.coefficients.min() >= 0 and found.basis.min() >= 0
    assert found.reconstruction_error < 0.2
    share = found.basis / found.basis.sum(axis=1, keepdims=True)
    horizontal = int(np.argmax(share[:, :2].sum(axis=1)))
    vertical = 1 - horizontal
    assert share[horizontal, :2].sum() > 0.9 and share[vertical, 2:].sum() > 0.9
    # the typical crops of each concept come from the half with its stripes
    image, _, left = found.crop_sources.T
    on_left = left + 16 <= 24
    on_right = left >= 24
    horizontal_crop = np.where(sides[image] == 0, on_left, on_right)
    vertical_crop = np.where(sides[image] == 0, on_right, on_left)
    for concept, wanted in ((horizontal, horizontal_crop), (vertical, vertical_crop)):
        best = np.argsort(-found.coefficients[:, concept])[:12]
        assert wanted[best].all(), concept
    assert found.typical_crops(horizontal, 4).shape == (4, 16, 16, 3)
    # horizontal stripes weigh 3 in the logit, vertical 1: Sobol and gradient x input agree
    assert found.order[0] == horizontal
    assert found.importances[horizontal] > 2 * found.importances[vertical]
    assert found.importances.sum() > 0.8   # an additive tail: total indices add up to ~1
    gradient = C.craft(model, images, 0, layer="features_activation", num_concepts=2,
                       importance="gradient", progress=False)
    assert gradient.order[0] == horizontal
    assert "Sobol total index" in str(found)
    # the map of a concept lies on its half
    maps = C.concept_maps(model, images[:2], found)
    assert maps.shape == (2, 2, 48, 48)
    for image_maps, side in zip(maps, sides[:2]):
        left_half, right_half = image_maps[..., 4:20].mean(axis=(1, 2)), \
            image_maps[..., 28:44].mean(axis=(1, 2))
        here = left_half if side == 0 else right_half
        there = right_half if side == 0 else left_half
        assert here[horizontal] > 3 * there[horizontal]
        assert there[vertical] > 3 * here[vertical]
    assert C.concept_maps(model, images[0], found).shape == (2, 48, 48)


def test_sobol_masks_and_the_jansen_estimator():
    masks = C.sobol_masks(3, 64, seed=0)
    assert masks.shape == (64 * 5, 3) and masks.min() >= 0 and masks.max() <= 1
    first, second = masks[:64], masks[64:128]
    np.testing.assert_array_equal(masks[128:192][:, 1:], first[:, 1:])   # C_1: A but column 0
    np.testing.assert_array_equal(masks[128:192][:, 0], second[:, 0])
    # f = 4 x0 + 2 x1 (x2 unused): total indices 16/20, 4/20, 0 for uniform inputs
    outputs = masks @ np.array([4.0, 2.0, 0.0])
    indices = C.jansen_total_indices(outputs, 64)
    np.testing.assert_allclose(indices, [0.8, 0.2, 0.0], atol=0.08)
    assert indices[2] == 0.0


# ---------------------------------------------------------------- errors and bounds

def test_bad_arguments_are_named(stripes, known_cavs, class_images):
    with pytest.raises(ValueError, match="kind must be one of"):
        C.texture_images("waves", 32)
    with pytest.raises(TypeError, match="colours must be"):
        C.texture_images("stripes", 32, colours="red")
    with pytest.raises(ValueError, match="colours must hold"):
        C.texture_images("stripes", 32, colours=[(300, 0, 0)])
    with pytest.raises(TypeError, match="angles"):
        C.texture_images("stripes", 32, angles="up")
    with pytest.raises(ValueError, match="max_fraction"):
        C.photo_crops(32, min_fraction=0.8, max_fraction=0.5)
    with pytest.raises(TypeError, match="concepts must be a dict"):
        C.concept_cavs(stripes, [class_images], "features_activation")
    with pytest.raises(ValueError, match="concepts is empty"):
        C.concept_cavs(stripes, {}, "features_activation")
    with pytest.raises(ValueError, match="'random' names the random sets"):
        C.concept_cavs(stripes, {"random": class_images}, "features_activation")
    with pytest.raises(ValueError, match="no layer named"):
        C.concept_cavs(stripes, {"a": class_images}, "nowhere", random_sets=2, set_size=3)
    with pytest.raises(ValueError, match="random_sets must be at least 2"):
        C.concept_cavs(stripes, {"a": class_images}, "features_activation", random_sets=1)
    with pytest.raises(ValueError, match="a list must hold 3"):
        C.concept_cavs(stripes, {"a": class_images}, "features_activation",
                       random_sets=[class_images] * 2)
    with pytest.raises(ValueError, match="at least 3 images per side"):
        C.fit_cav(np.ones((2, 4)), np.zeros((5, 4)))
    with pytest.raises(TypeError, match="cavs must be"):
        C.tcav_test(stripes, class_images, 0, {"stripes": class_images})
    with pytest.raises(ValueError, match="correction must be one of"):
        C.tcav_test(stripes, class_images, 0, known_cavs, correction="none")
    with pytest.raises(ValueError, match="alpha must be"):
        C.tcav_test(stripes, class_images, 0, known_cavs, alpha=1.5)
    with pytest.raises(ValueError, match="one class for all the images"):
        C.tcav_test(stripes, class_images[:2], [0, 1], known_cavs)
    with pytest.raises(TypeError, match="cav must be a CAV"):
        C.tcav_score(stripes, class_images, 0, np.ones(5))
    with pytest.raises(TypeError, match="layer must be one layer name"):
        C.layer_activations(stripes, class_images, ["features", "features_activation"])
    with pytest.raises(ValueError, match="negative activations"):
        C.craft(stripes, class_images[:2], 0, layer="features", progress=False)
    with pytest.raises(ValueError, match="crop_size must be at most"):
        C.craft(stripes, class_images[:2], 0, crop_size=64, progress=False)
    with pytest.raises(TypeError, match="found must be"):
        C.concept_maps(stripes, class_images[0], known_cavs)
    with pytest.raises(ValueError, match="concept must be one of"):
        known_cavs.cav("dots")
    with pytest.raises(ValueError, match="no row for concept"):
        C.tcav_test(stripes, class_images, 0, known_cavs, progress=False).row("dots")


def test_craft_on_a_layer_that_does_not_cut_the_graph_names_the_gradient_importance(tiny_cnn):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    relu = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.Add(name="skip")([relu, x])
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    images = C.texture_images("dots", 32, count=2)
    with pytest.raises(ValueError, match="cannot be split"):
        C.craft(model, images, 0, layer="relu", num_concepts=2, progress=False)
    found = C.craft(model, images, 0, layer="relu", num_concepts=2, importance="gradient",
                    progress=False)
    assert found.importances.shape == (2,)


HUGE = 10 ** 9
LIMITS = {
    "texture_images count": (lambda m: C.texture_images("dots", 224, count=HUGE),
                             "count x height x width must be at most 33,554,432"),
    "photo_crops count": (lambda m: C.photo_crops(224, count=HUGE),
                          "count x height x width must be at most"),
    "concept_cavs random_sets": (
        lambda m: C.concept_cavs(m, {"a": np.zeros((4, 32, 32, 3))}, "features_activation",
                                 random_sets=HUGE), "random_sets must be at most 50"),
    "concept_cavs set_size": (
        lambda m: C.concept_cavs(m, {"a": np.zeros((4, 32, 32, 3))}, "features_activation",
                                 set_size=HUGE), "count x height x width must be at most"),
    "concept_cavs activations": (
        lambda m: C.concept_cavs(m, {"a": np.zeros((4, 32, 32, 3))}, "features_activation",
                                 random_sets=50, set_size=30_000),
        "the activations of all the images must be at most 134,217,728"),
    "craft num_concepts": (lambda m: C.craft(m, np.zeros((2, 32, 32, 3)), 0, num_concepts=HUGE),
                           "num_concepts must be at most 50"),
    "craft designs": (lambda m: C.craft(m, np.zeros((2, 32, 32, 3)), 0, designs=HUGE),
                      "designs must be at most 1,024"),
    "craft crops": (lambda m: C.craft(m, np.zeros((100, 32, 32, 3)), 0, crop_size=2, stride=1),
                    "the number of crops must be at most 4,096"),
    "sobol_masks designs": (lambda m: C.sobol_masks(3, HUGE), "designs must be at most 1,024"),
    "batch_size": (lambda m: C.tcav_score(m, np.zeros((2, 32, 32, 3)), 0, None,
                                          batch_size=HUGE), "batch_size must be at most 1,024"),
}


@pytest.mark.parametrize("name", list(LIMITS))
def test_a_runaway_count_is_refused_before_any_work(name, stripes):
    call, message = LIMITS[name]
    start = time.perf_counter()
    with pytest.raises(ValueError, match=message):
        call(stripes)
    assert time.perf_counter() - start < 1.0, name


def _probes():
    """Every numeric or True/False keyword of the module's public functions (the error rule
    of tests/test_error_rule.py, which sees only the names exported at the top level)."""
    for name in sorted(dir(C)):
        function = getattr(C, name)
        if name.startswith("_") or not inspect.isfunction(function) or \
                function.__module__ != C.__name__:
            continue
        for parameter in inspect.signature(function).parameters.values():
            if isinstance(parameter.default, bool):
                yield name, parameter.name, "yes"
            elif isinstance(parameter.default, (int, float)):
                yield name, parameter.name, "many"


PROBES = list(_probes())


@pytest.mark.parametrize("name,argument,wrong", PROBES, ids=[f"{n}-{a}" for n, a, _ in PROBES])
def test_a_wrong_type_is_a_type_error_that_names_the_argument(name, argument, wrong, stripes,
                                                              known_cavs, class_images):
    found = C.craft(orientation_model(), half_and_half(2)[0], 0, num_concepts=2, designs=4,
                    progress=False) if name == "concept_maps" else None
    known = {"model": stripes, "images": class_images, "class_index": 0, "cavs": known_cavs,
             "cav": known_cavs.cav("stripes"), "concepts": {"s": class_images},
             "layer": "features_activation", "layers": "features_activation",
             "concept_images": class_images[:8], "random_set": class_images[8:],
             "concept_activations": np.ones((5, 3)), "random_activations": np.zeros((5, 3)),
             "found": found, "outputs": np.ones(12), "designs": 4, "dimensions": 2}
    function = getattr(C, name)
    kwargs = {p.name: known[p.name] for p in inspect.signature(function).parameters.values()
              if p.default is inspect.Parameter.empty}
    if name == "concept_maps":
        kwargs.update(model=orientation_model(), images=half_and_half(1)[0])
    kwargs[argument] = wrong
    with pytest.raises(TypeError) as caught:
        function(**kwargs)
    assert argument in str(caught.value), f"{name}({argument}={wrong!r}): {caught.value}"


def test_the_top_level_names_are_few_and_the_module_is_reachable():
    assert set(C.__all__) <= set(dir(h))
    assert len(C.__all__) <= 8
    assert h.concepts.cav is C.cav


# ---------------------------------------------------------------- the real model

def test_tcav_on_lite0_at_one_layer(lite0):
    start = time.perf_counter()
    concepts = {"stripes": C.texture_images("stripes", lite0, count=6, seed=0)}
    cavs = C.concept_cavs(lite0, concepts, "top_activation", random_sets=2, set_size=6,
                          pooling="mean", progress=False)
    assert cavs.accuracies["stripes", "top_activation"].min() >= 0.75
    result = C.tcav_test(lite0, ["chelsea", "coffee"], "tabby", cavs, progress=False)
    row = result.row("stripes")
    assert row.scores.shape == (2,) and 0 <= row.mean <= 1 and 0 <= row.p_value <= 1
    assert time.perf_counter() - start < 30
