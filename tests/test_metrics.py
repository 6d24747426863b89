"""helpers.metrics: deletion/insertion, the randomisation sanity check, agreement with humans."""
import numpy as np
import pytest
import scipy.stats

import helpers as h
from helpers.metrics import area_under_curve, map_ssim
import keras
import tensorflow as tf

SIZE = 32
REGION = (slice(8, 20), slice(8, 20))  # the only pixels the synthetic model looks at


@keras.saving.register_keras_serializable(package="tests")
class RegionMean(keras.layers.Layer):
    """The mean pixel value (0..1) inside a fixed region; everything else is ignored."""

    def __init__(self, rows=(8, 20), cols=(8, 20), size=SIZE, **kwargs):
        super().__init__(**kwargs)
        self.rows, self.cols, self.size = tuple(rows), tuple(cols), int(size)
        mask = np.zeros((size, size, 1), dtype="float32")
        mask[rows[0]:rows[1], cols[0]:cols[1]] = 1.0
        self.mask = mask / (mask.sum() * 3 * 255.0)

    def call(self, inputs):
        return keras.ops.sum(inputs * self.mask, axis=(1, 2, 3))[:, None]

    def get_config(self):
        return {**super().get_config(), "rows": list(self.rows), "cols": list(self.cols),
                "size": self.size}


def region_model(steepness=6.0):
    """Two classes; p(class 0) = sigmoid(2 a (m - 0.5)) with m the region's mean brightness."""
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    region = RegionMean(name="region_mean")(inputs)
    outputs = keras.layers.Dense(2, name="predictions")(region)
    model = keras.Model(inputs, outputs, name="region_model")
    model.get_layer("predictions").set_weights(
        [np.array([[steepness, -steepness]], "float32"),
         np.array([-steepness / 2, steepness / 2], "float32")])
    return model


@pytest.fixture(scope="module")
def looker():
    return region_model()


@pytest.fixture
def bright_region_image():
    rng = np.random.default_rng(1)
    image = rng.uniform(0, 100, (SIZE, SIZE, 3)).astype("float32")
    image[REGION] = 255.0
    return image


def true_mask():
    mask = np.zeros((SIZE, SIZE), "float32")
    mask[REGION] = 1.0
    return mask


def random_map(seed=0):
    return np.random.default_rng(seed).uniform(size=(SIZE, SIZE)).astype("float32")


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


# --------------------------------------------------------------------------
# Deletion and insertion
# --------------------------------------------------------------------------

def test_perfect_map_beats_random_map_on_deletion(looker, bright_region_image):
    perfect = h.deletion_curve(looker, bright_region_image, true_mask(), 0, steps=16,
                               progress=False)
    chance = h.deletion_curve(looker, bright_region_image, random_map(), 0, steps=16,
                              progress=False)
    assert perfect.scores[0] == pytest.approx(chance.scores[0]) and perfect.scores[0] > 0.99
    assert perfect.auc < 0.2 < 0.4 < chance.auc
    assert perfect.scores[-1] == pytest.approx(chance.scores[-1])  # everything deleted


def test_perfect_map_beats_random_map_on_insertion(looker, bright_region_image):
    perfect = h.insertion_curve(looker, bright_region_image, true_mask(), 0, steps=16,
                                progress=False)
    chance = h.insertion_curve(looker, bright_region_image, random_map(), 0, steps=16,
                               progress=False)
    assert perfect.scores[0] < 0.2  # the blurred photo hides the bright region
    assert perfect.auc > 0.9 > chance.auc
    assert perfect.auc - chance.auc > 0.2


def test_deletion_matches_a_brute_force_loop(looker, bright_region_image):
    heat = random_map(3)
    steps = 5
    curve = h.deletion_curve(looker, bright_region_image, heat, 0, steps=steps, batch_size=4,
                             progress=False)
    order = np.argsort(-heat.ravel(), kind="stable")
    expected = []
    for k in range(steps + 1):
        count = int(round(k * heat.size / steps))
        image = bright_region_image.copy().reshape(-1, 3)
        image[order[:count]] = 0.0
        logits = np.asarray(looker(image.reshape(1, SIZE, SIZE, 3)))
        expected.append(softmax(logits.astype(np.float64))[0, 0])
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-6)
    fractions = np.round(np.linspace(0, heat.size, steps + 1)) / heat.size  # pixels changed
    np.testing.assert_allclose(curve.fractions, fractions)
    assert curve.auc == pytest.approx(np.trapezoid(expected, fractions))


def test_insertion_starts_from_the_baseline_and_ends_at_the_image(looker, bright_region_image):
    curve = h.insertion_curve(looker, bright_region_image, random_map(), 0, steps=3,
                              baseline="black", progress=False)
    black = softmax(np.asarray(looker(np.zeros((1, SIZE, SIZE, 3), "float32")), np.float64))
    full = softmax(np.asarray(looker(bright_region_image[None]), np.float64))
    assert curve.scores[0] == pytest.approx(black[0, 0], rel=1e-5)
    assert curve.scores[-1] == pytest.approx(full[0, 0], rel=1e-5)


def test_batched_curves_equal_single_ones(looker, bright_region_image):
    other = bright_region_image[::-1].copy()
    maps = np.stack([true_mask(), random_map(5)])
    batched = h.deletion_curve(looker, np.stack([bright_region_image, other]), maps, [0, 1],
                               steps=6, batch_size=5, progress=False)
    assert batched.scores.shape == (2, 7) and batched.auc.shape == (2,)
    for i, (image, heat, cls) in enumerate(zip([bright_region_image, other], maps, [0, 1])):
        single = h.deletion_curve(looker, image, heat, cls, steps=6, progress=False)
        np.testing.assert_allclose(batched.scores[i], single.scores, rtol=1e-5)


def test_baselines(looker, bright_region_image):
    for baseline in ("black", "gray", "mean", "blur", 30.0, np.zeros((SIZE, SIZE, 3))):
        curve = h.deletion_curve(looker, bright_region_image, true_mask(), 0, steps=2,
                                 baseline=baseline, progress=False)
        assert np.all((curve.scores >= 0) & (curve.scores <= 1))
    gray = h.deletion_curve(looker, bright_region_image, true_mask(), 0, steps=1,
                            baseline="gray", progress=False)
    expected = softmax(np.asarray(looker(np.full((1, SIZE, SIZE, 3), 127.5, "float32")),
                               np.float64))[0, 0]
    assert gray.scores[-1] == pytest.approx(expected, rel=1e-5)


def test_area_under_curve():
    assert area_under_curve([0, 0.5, 1], [1, 0.5, 0]) == pytest.approx(0.5)
    np.testing.assert_allclose(area_under_curve([0, 1], [[1, 1], [0, 1]]), [1.0, 0.5])
    with pytest.raises(ValueError, match="same last axis"):
        area_under_curve([0, 1], [1, 2, 3])


def test_curve_error_paths(looker, bright_region_image):
    with pytest.raises(ValueError, match="heatmap shape"):
        h.deletion_curve(looker, bright_region_image, np.ones((16, 16)), 0, progress=False)
    with pytest.raises(ValueError, match="heatmap shape"):
        h.insertion_curve(looker, np.stack([bright_region_image] * 2), np.ones((3, SIZE, SIZE)),
                          0, progress=False)
    with pytest.raises(ValueError, match="NaN"):
        h.deletion_curve(looker, bright_region_image, np.full((SIZE, SIZE), np.nan), 0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        h.deletion_curve(looker, bright_region_image, true_mask(), 0, baseline="white")
    with pytest.raises(ValueError, match="0..255"):
        h.deletion_curve(looker, bright_region_image, true_mask(), 0, baseline=300)
    with pytest.raises(ValueError, match="steps must be a positive integer .*got 0"):
        h.deletion_curve(looker, bright_region_image, true_mask(), 0, steps=0)
    with pytest.raises(TypeError, match="array of numbers"):
        h.deletion_curve(looker, bright_region_image, "map", 0)


def test_compare_maps_ranks_the_perfect_map_first(looker, bright_region_image):
    table = h.compare_maps(looker, bright_region_image,
                           {"random": random_map(), "perfect": true_mask()}, 0,
                           human=true_mask() > 0, steps=8, progress=False)
    best = table.sorted_by("ins - del")
    assert best.rows[0][0] == "perfect"
    assert table.sorted_by("deletion").rows[0][0] == "perfect"  # lower is better
    assert best.rows[0][1][best.columns.index("IoU")] == pytest.approx(1.0)
    assert "perfect" in str(table) and "<table>" in table._repr_html_()
    assert set(table.curves["perfect"]) == {"deletion", "insertion"}
    with pytest.raises(ValueError, match="no column"):
        table.column("speed")
    relative = h.compare_maps(looker, bright_region_image, {"perfect": true_mask()}, 0, steps=8,
                              relative=True, progress=False)
    original = table.curves["perfect"]["deletion"].scores[0]
    np.testing.assert_allclose(relative.column("insertion"),
                               table.column("insertion")[1:] / original, rtol=1e-6)
    gray = h.compare_maps(looker, bright_region_image, {"perfect": true_mask()}, 0, steps=8,
                          deletion_baseline="gray", insertion_baseline="black", progress=False)
    expected = h.deletion_curve(looker, bright_region_image, true_mask(), 0, steps=8,
                                baseline="gray", progress=False)
    assert gray.column("deletion")[0] == pytest.approx(expected.auc)
    assert gray.curves["perfect"]["insertion"].baseline == "black"


# --------------------------------------------------------------------------
# Map similarity and the randomisation sanity check
# --------------------------------------------------------------------------

def test_rank_correlation_and_ssim_of_a_map_with_itself_and_with_noise():
    heat = random_map(0).repeat(2, 0).repeat(2, 1)  # 64 x 64
    assert h.rank_correlation(heat, heat) == pytest.approx(1.0)
    assert map_ssim(heat, heat) == pytest.approx(1.0)
    noise = random_map(1).repeat(2, 0).repeat(2, 1)
    assert abs(h.rank_correlation(heat, noise)) < 0.05
    assert map_ssim(heat, noise) < 0.2
    assert h.rank_correlation(heat, -heat) == pytest.approx(-1.0)
    assert h.rank_correlation(heat, -heat, absolute=True) == pytest.approx(1.0)
    # A monotone transform keeps the ranks.
    assert h.rank_correlation(heat, np.exp(5 * heat)) == pytest.approx(1.0)


def test_rank_correlation_matches_scipy_with_ties():
    rng = np.random.default_rng(2)
    first = rng.integers(0, 4, (10, 10)).astype(float)
    second = first + rng.normal(0, 1, (10, 10))
    expected = scipy.stats.spearmanr(first.ravel(), second.ravel()).statistic
    assert h.rank_correlation(first, second) == pytest.approx(expected)
    assert np.isnan(h.rank_correlation(np.ones((4, 4)), first[:4, :4]))
    with pytest.raises(ValueError, match="shape"):
        h.rank_correlation(first, first[:5])
    with pytest.raises(ValueError, match="7x7"):
        map_ssim(np.ones((5, 5)), np.ones((5, 5)))


def gradient_map(model, images, class_index):
    """|d logit / d pixel| summed over colour channels: an independent simple explanation."""
    batch = tf.constant(np.asarray(images, "float32"))
    classes = np.atleast_1d(class_index)
    with tf.GradientTape() as tape:
        tape.watch(batch)
        logits = model(batch, training=False)
        chosen = tf.gather(logits, classes, axis=1, batch_dims=0)
        score = tf.reduce_sum(tf.linalg.diag_part(chosen)) if len(classes) > 1 \
            else tf.reduce_sum(chosen)
    return np.abs(tape.gradient(score, batch).numpy()).sum(-1)


def edge_map(model, images, class_index):
    """A map that ignores the model entirely: it must fail the sanity check."""
    return np.asarray(images, "float32").mean(-1)


def all_weights(model):
    return [w.copy() for w in model.get_weights()]


def test_model_independent_map_fails_the_check(tiny_cnn, tiny_image):
    check = h.cascading_randomization(tiny_cnn, edge_map, tiny_image, 3, progress=False)
    assert check.stages == ["predictions", "conv2", "conv1"]
    np.testing.assert_allclose(check.spearman, 1.0)
    np.testing.assert_allclose(check.ssim, 1.0)
    assert check.maps.shape == (4, 32, 32)


def test_gradient_map_changes_as_layers_are_randomised(tiny_cnn, tiny_image):
    before = all_weights(tiny_cnn)
    check = h.cascading_randomization(tiny_cnn, gradient_map, tiny_image, 3, progress=False)
    np.testing.assert_allclose(check.maps[0], gradient_map(tiny_cnn, tiny_image[None], 3)[0],
                               rtol=1e-4, atol=1e-6)
    assert check.spearman.shape == (3,) and check.ssim.shape == (3,)
    assert check.spearman[-1] < 0.9
    assert check.class_index == 3
    # The user's model is unchanged, weights and predictions.
    for old, new in zip(before, tiny_cnn.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_the_cascade_randomises_from_the_top_on_a_copy(tiny_cnn, tiny_image):
    seen = []

    def recording_explain(model, images, class_index):
        assert model is not tiny_cnn
        seen.append({name: model.get_layer(name).get_weights()[0].copy()
                     for name in ("conv1", "conv2", "predictions")})
        return edge_map(model, images, class_index)

    original = {name: tiny_cnn.get_layer(name).get_weights()[0]
                for name in ("conv1", "conv2", "predictions")}
    h.cascading_randomization(tiny_cnn, recording_explain, tiny_image, 0, progress=False)
    assert len(seen) == 4
    randomised_after = {0: set(), 1: {"predictions"}, 2: {"predictions", "conv2"},
                        3: {"predictions", "conv2", "conv1"}}
    for stage, weights in enumerate(seen):
        for name, value in weights.items():
            same = np.array_equal(value, original[name])
            assert same == (name not in randomised_after[stage]), (stage, name)
    # Seeded: the same random weights again.
    first_random = seen[-1]["conv1"].copy()
    seen.clear()
    h.cascading_randomization(tiny_cnn, recording_explain, tiny_image, 0, progress=False)
    np.testing.assert_array_equal(seen[-1]["conv1"], first_random)


def test_stage_selection_and_errors(tiny_cnn, tiny_image):
    check = h.cascading_randomization(tiny_cnn, edge_map, tiny_image, 0, stages=1,
                                      progress=False)
    assert check.stages == ["predictions"]
    check = h.cascading_randomization(tiny_cnn, edge_map, np.stack([tiny_image] * 2), [0, 1],
                                      stages=["predictions", "conv1"], progress=False)
    assert check.maps.shape == (2, 3, 32, 32) and check.spearman.shape == (2, 2)
    with pytest.raises(ValueError, match="neither a stage nor a layer"):
        h.cascading_randomization(tiny_cnn, edge_map, tiny_image, 0, stages=["dense_9"])
    with pytest.raises(ValueError, match="stages=9"):
        h.cascading_randomization(tiny_cnn, edge_map, tiny_image, 0, stages=9)
    with pytest.raises(TypeError, match="explain must be a function"):
        h.cascading_randomization(tiny_cnn, "saliency", tiny_image, 0)
    with pytest.raises(ValueError, match="returned shape"):
        h.cascading_randomization(tiny_cnn, lambda m, x, c: np.ones((8, 8)), tiny_image, 0,
                                  progress=False)
    with pytest.raises(ValueError, match="'block' or 'layer'"):
        h.randomization_stages(tiny_cnn, by="group")


def test_block_grouping():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(2, 3, name="block1a_conv")(inputs)
    x = keras.layers.BatchNormalization(name="block1a_bn")(x)
    x = keras.layers.Conv2D(2, 1, name="conv2d_1")(x)
    x = keras.layers.Conv2D(2, 1, name="conv2d_2")(x)
    x = keras.layers.Conv2D(2, 1, name="top_conv")(x)
    model = keras.Model(inputs, x)
    assert h.randomization_stages(model) == [
        ("top", ["top_conv"]), ("conv2d_2", ["conv2d_2"]), ("conv2d_1", ["conv2d_1"]),
        ("block1a", ["block1a_bn", "block1a_conv"])]
    assert [stage for stage, _ in h.randomization_stages(model, by="layer")] == [
        "top_conv", "conv2d_2", "conv2d_1", "block1a_bn", "block1a_conv"]


def test_sanity_check_on_the_real_model_leaves_it_unchanged(lite0):
    stages = h.randomization_stages(lite0)
    assert [name for name, _ in stages[:3]] == ["predictions", "top", "block7a"]
    assert stages[-1][0] == "stem"
    before = lite0.get_layer("predictions").get_weights()[0].copy()
    top_before = lite0.get_layer("top_conv").get_weights()[0].copy()
    logits = []

    def logit_map(model, images, class_index):
        logits.append(float(np.asarray(model(images))[0, class_index]))
        return edge_map(model, images, class_index)

    h.cascading_randomization(lite0, logit_map, "coffee", "espresso", stages=2, progress=False)
    assert logits[0] == pytest.approx(float(h.predict_logits(lite0, h.prepare("coffee", lite0))
                                            [0, 967]), rel=1e-4)
    assert logits[1] != pytest.approx(logits[0], rel=1e-2)
    np.testing.assert_array_equal(lite0.get_layer("predictions").get_weights()[0], before)
    np.testing.assert_array_equal(lite0.get_layer("top_conv").get_weights()[0], top_before)


# --------------------------------------------------------------------------
# Agreement with human attention
# --------------------------------------------------------------------------

def hand_map():
    heat = np.zeros((10, 10))
    heat[0:2, 0:5] = 3.0   # the 10 best pixels
    heat[2:4, 0:5] = 2.0   # the next 10
    heat[9, 9] = 1.0
    return heat


def test_top_k_mask_counts_exactly():
    heat = hand_map()
    assert h.top_k_mask(heat, 10).sum() == 10 and h.top_k_mask(heat, 10)[0:2, 0:5].all()
    assert h.top_k_mask(heat, 20)[0:4, 0:5].all()
    assert h.top_k_mask(heat, 100).all()
    assert h.top_k_mask(heat, 0.1).sum() == 1  # at least one pixel
    for bad in (0, -5, 100.5, 150):
        with pytest.raises(ValueError, match=r"\(0, 100\]"):
            h.top_k_mask(heat, bad)
    with pytest.raises(TypeError, match="percentage"):
        h.top_k_mask(heat, "10")


def test_iou_on_hand_made_cases():
    heat = hand_map()
    human = np.zeros((10, 10), bool)
    human[0:4, 0:5] = True                      # 20 pixels
    assert h.top_k_iou(heat, human, 20) == pytest.approx(1.0)
    assert h.top_k_iou(heat, human, 10) == pytest.approx(10 / 20)
    assert h.top_k_iou(heat, human) == pytest.approx(1.0)  # k = the mask's size
    human_right = np.zeros((10, 10), bool)
    human_right[0:2, 3:8] = True                # overlaps the top 10 in 4 pixels
    assert h.top_k_iou(heat, human_right, 10) == pytest.approx(4 / 16)
    # A merged human map: half the annotators marked the right block.
    fractions = np.where(human, 1.0, 0.0) + np.where(human_right & ~human, 0.5, 0.0)
    assert h.top_k_iou(heat, fractions, 20, human_threshold=1.0) == pytest.approx(1.0)
    assert h.top_k_iou(heat, fractions, 20, human_threshold=0.5) == pytest.approx(20 / 26)
    for bad in (0, 101):
        with pytest.raises(ValueError, match=r"\(0, 100\]"):
            h.top_k_iou(heat, human, bad)
    with pytest.raises(ValueError, match="shape"):
        h.top_k_iou(heat, human[:5])
    with pytest.raises(ValueError, match="empty"):
        h.top_k_iou(heat, np.zeros((10, 10), bool))


def test_pointing_game_on_hand_made_cases():
    heat = np.zeros((50, 50))
    heat[10, 40] = 1.0
    human = np.zeros((50, 50), bool)
    human[5:15, 35:45] = True
    assert h.pointing_game(heat, human)
    far = np.zeros((50, 50), bool)
    far[40:50, 0:10] = True
    assert not h.pointing_game(heat, far)
    near = np.zeros((50, 50), bool)
    near[20:30, 40:45] = True                   # 10 pixels below the peak
    assert h.pointing_game(heat, near, tolerance=10)
    assert not h.pointing_game(heat, near, tolerance=9)
    with pytest.raises(ValueError, match="tolerance"):
        h.pointing_game(heat, human, tolerance=-1)
    agreement = h.human_agreement(heat, human)
    assert set(agreement) == {"iou", "pointing", "spearman"} and agreement["pointing"]
