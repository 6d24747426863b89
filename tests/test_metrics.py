"""helpers.metrics: deletion/insertion, the randomisation sanity check, agreement with humans."""
import numpy as np
import pytest
import scipy.stats

import helpers as h
from helpers.metrics import _dissection_ranks, area_under_curve, map_ssim
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


# --------------------------------------------------------------------------
# ROAD: noisy linear imputation (Rong et al. 2022)
# --------------------------------------------------------------------------

NEIGHBOURS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) != (0, 0)]


def neighbour_weight(dr, dc):
    return 1 / 12 if dr and dc else 1 / 6  # the paper's: diagonal 1/12, direct 1/6


def dense_imputation(image, removed):
    """The reference: the same equations written pixel by pixel, solved densely."""
    height, width, channels = image.shape
    unknown = [(r, c) for r in range(height) for c in range(width) if removed[r, c]]
    number = {pixel: n for n, pixel in enumerate(unknown)}
    system = np.zeros((len(unknown), len(unknown)))
    right = np.zeros((len(unknown), channels))
    for n, (r, c) in enumerate(unknown):
        for dr, dc in NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if not (0 <= rr < height and 0 <= cc < width):
                continue
            weight = neighbour_weight(dr, dc)
            system[n, n] += weight
            if removed[rr, cc]:
                system[n, number[rr, cc]] -= weight
            else:
                right[n] += weight * image[rr, cc]
    solution = np.linalg.solve(system, right)
    result = image.astype(np.float64).copy()
    for n, (r, c) in enumerate(unknown):
        result[r, c] = solution[n]
    return result


@pytest.fixture
def small_image():
    return np.random.default_rng(4).uniform(0, 255, (7, 9, 3))


def removed_mask(shape, fraction, seed=0):
    return np.random.default_rng(seed).uniform(size=shape) < fraction


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_imputation_matches_a_dense_solve(small_image, fraction):
    removed = removed_mask(small_image.shape[:2], fraction, seed=int(fraction * 10))
    removed[0, 0] = removed[-1, 3] = True  # border pixels, whose mean has fewer neighbours
    assert 0 < removed.sum() < removed.size
    got = h.noisy_linear_imputation(small_image, removed, noise=0)
    expected = dense_imputation(small_image, removed)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(got[~removed], small_image[~removed].astype(np.float32))
    gray = h.noisy_linear_imputation(small_image[..., 1], removed, noise=0)  # (H, W) images
    assert gray.shape == removed.shape
    np.testing.assert_allclose(gray, expected[..., 1], rtol=1e-5, atol=1e-3)


def test_imputed_pixels_are_convex_combinations_of_their_neighbours():
    image = np.random.default_rng(2).uniform(0, 255, (24, 20, 3))
    removed = np.zeros(image.shape[:2], bool)
    removed[3:15, 4:12] = True  # a block with a large interior
    removed |= removed_mask(removed.shape, 0.4, seed=3)  # and scattered pixels
    filled = h.noisy_linear_imputation(image, removed, noise=0).astype(np.float64)
    for r, c in zip(*np.nonzero(removed)):
        values, weights = [], []
        for dr, dc in NEIGHBOURS:
            if 0 <= r + dr < image.shape[0] and 0 <= c + dc < image.shape[1]:
                values.append(filled[r + dr, c + dc])
                weights.append(neighbour_weight(dr, dc))
        values, weights = np.array(values), np.array(weights)
        np.testing.assert_allclose(filled[r, c], weights @ values / weights.sum(), atol=1e-3)
        assert np.all(values.min(axis=0) - 1e-3 <= filled[r, c])
        assert np.all(filled[r, c] <= values.max(axis=0) + 1e-3)
    kept = image[~removed]  # and so, overall, within the range of the kept pixels
    assert np.all(filled[removed] >= kept.min(axis=0) - 1e-3)
    assert np.all(filled[removed] <= kept.max(axis=0) + 1e-3)


def test_imputation_noise_is_seeded_and_touches_only_removed_pixels():
    image = np.random.default_rng(5).uniform(60, 190, (40, 40, 3))
    removed = removed_mask(image.shape[:2], 0.5)
    clean = h.noisy_linear_imputation(image, removed, noise=0)
    noisy = h.noisy_linear_imputation(image, removed, noise=2.0, seed=7)
    np.testing.assert_array_equal(noisy[~removed], clean[~removed])
    assert (noisy[removed] - clean[removed]).std() == pytest.approx(2.0, rel=0.1)
    np.testing.assert_array_equal(noisy, h.noisy_linear_imputation(image, removed, noise=2.0,
                                                                   seed=7))
    assert not np.array_equal(noisy, h.noisy_linear_imputation(image, removed, noise=2.0,
                                                               seed=8))


def test_imputation_edge_cases_and_errors(small_image):
    nothing = np.zeros(small_image.shape[:2], bool)
    np.testing.assert_allclose(h.noisy_linear_imputation(small_image, nothing), small_image,
                               rtol=1e-6)
    everything = h.noisy_linear_imputation(small_image, ~nothing, noise=0)
    np.testing.assert_array_equal(everything, 127.5)  # nothing left to impute from
    with pytest.raises(TypeError, match="removed must be a boolean"):
        h.noisy_linear_imputation(small_image, nothing.astype(int))
    with pytest.raises(ValueError, match=r"removed has shape \(3, 3\)"):
        h.noisy_linear_imputation(small_image, np.zeros((3, 3), bool))
    with pytest.raises(ValueError, match="noise must be a standard deviation"):
        h.noisy_linear_imputation(small_image, nothing, noise=-1)
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        h.noisy_linear_imputation(small_image, nothing, seed=-2)


def test_dissection_order_is_a_permutation_that_ends_with_the_middle_separator():
    ranks = _dissection_ranks(30, 22).reshape(30, 22)
    assert sorted(ranks.ravel()) == list(range(30 * 22))
    assert ranks[15].min() == 30 * 22 - 22  # the first cut (the middle row) comes last
    assert ranks[:15].max() < ranks[16:].min()  # one half, then the other


# --------------------------------------------------------------------------
# ROAD curves
# --------------------------------------------------------------------------

def brute_force_road(model, image, heat, class_index, steps, order):
    """ROAD written as a plain loop over steps, without noise."""
    ranking = np.argsort(-heat.ravel() if order == "morf" else heat.ravel(), kind="stable")
    scores = []
    for k in range(steps + 1):
        removed = np.zeros(heat.size, bool)
        removed[ranking[:int(round(k * heat.size / steps))]] = True
        filled = h.noisy_linear_imputation(image, removed.reshape(heat.shape), noise=0)
        logits = np.asarray(model(filled[None]), np.float64)
        scores.append(softmax(logits)[0, class_index])
    return np.array(scores)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_curve_matches_a_brute_force_loop(looker, bright_region_image, order):
    heat = random_map(6)
    curve = h.road_curve(looker, bright_region_image, heat, 0, order=order, steps=4, noise=0,
                         batch_size=3, progress=False)
    expected = brute_force_road(looker, bright_region_image, heat, 0, 4, order)
    np.testing.assert_allclose(curve.scores, expected, rtol=1e-5, atol=1e-6)
    assert curve.auc == pytest.approx(np.trapezoid(expected, curve.fractions))
    assert curve.kind == {"morf": "ROAD MoRF", "lerf": "ROAD LeRF"}[order]
    assert curve.order == order and "RoadCurve(order=" in repr(curve)


def test_morf_removes_the_most_relevant_pixels_first_and_lerf_the_least(looker,
                                                                        bright_region_image):
    # The model reads only the region; the map ranks it first. MoRF imputes the region
    # from the darker pixels around it at once; LeRF keeps it until the last steps.
    heat = true_mask() + 0.01 * random_map(2)
    morf = h.road_curve(looker, bright_region_image, heat, 0, order="morf", steps=7,
                        progress=False)
    lerf = h.road_curve(looker, bright_region_image, heat, 0, order="lerf", steps=7,
                        progress=False)
    original = morf.scores[0]
    assert original > 0.99 and lerf.scores[0] == pytest.approx(original)
    assert morf.scores[1] < 0.1  # the first step (146 pixels) removes the region's 144
    # LeRF: the region is untouched while 6 steps remove up to 878 of the other 880 pixels
    np.testing.assert_allclose(lerf.scores[:7], original, rtol=1e-6)
    assert morf.auc < 0.2 < 0.8 < lerf.auc


def test_road_ranks_a_map_of_the_region_above_a_random_map(looker, bright_region_image):
    perfect, chance = true_mask() + 0.01 * random_map(2), random_map(0)
    road = {name: {order: h.road_curve(looker, bright_region_image, heat, 0, order=order,
                                       steps=8, progress=False).auc for order in ("morf", "lerf")}
            for name, heat in (("perfect", perfect), ("random", chance))}
    assert road["perfect"]["morf"] < road["random"]["morf"] - 0.2
    # Scattered removal is filled from the region's own bright neighbours, so the random map
    # loses little under LeRF either: imputation, unlike black, is no attack.
    assert road["perfect"]["lerf"] > road["random"]["lerf"] > 0.9
    gap = {name: auc["lerf"] - auc["morf"] for name, auc in road.items()}
    assert gap["perfect"] > gap["random"] + 0.2


def test_road_is_seeded_and_independent_of_batching(looker, bright_region_image):
    heat = random_map(1)
    first = h.road_curve(looker, bright_region_image, heat, 0, steps=4, seed=3, noise=20,
                         batch_size=2, progress=False)
    again = h.road_curve(looker, bright_region_image, heat, 0, steps=4, seed=3, noise=20,
                         batch_size=32, progress=False)
    other = h.road_curve(looker, bright_region_image, heat, 0, steps=4, seed=4, noise=20,
                         progress=False)
    # Batches of 2 and of 5 images: oneDNN picks its kernels by instruction set and batch
    # shape, so the last digits may differ between them (and between CPUs).
    np.testing.assert_allclose(first.scores, again.scores, rtol=1e-6, atol=1e-7)
    assert np.abs(first.scores - other.scores).max() > 1e-5  # another seed: other noise
    np.testing.assert_allclose(first.scores, other.scores, atol=0.05)  # only the noise differs
    fresh = h.road_curve(looker, bright_region_image, heat, 0, steps=4, seed=None, noise=20,
                         progress=False)
    assert fresh.seed is None and np.all((fresh.scores >= 0) & (fresh.scores <= 1))
    # a batch of images gives each image its own curve
    images = np.stack([bright_region_image, bright_region_image[::-1]])
    maps = np.stack([heat, true_mask()])
    batched = h.road_curve(looker, images, maps, [0, 1], steps=4, noise=0, progress=False)
    assert batched.scores.shape == (2, 5) and batched.auc.shape == (2,)
    for i in range(2):
        single = h.road_curve(looker, images[i], maps[i], [0, 1][i], steps=4, noise=0,
                              progress=False)
        np.testing.assert_allclose(batched.scores[i], single.scores, rtol=1e-6)


def test_road_error_paths(looker, bright_region_image):
    with pytest.raises(ValueError, match="order must be one of 'morf', 'lerf'"):
        h.road_curve(looker, bright_region_image, true_mask(), 0, order="random")
    with pytest.raises(ValueError, match="noise must be a standard deviation"):
        h.road_curve(looker, bright_region_image, true_mask(), 0, noise=-0.5)
    with pytest.raises(TypeError, match="steps must be a positive integer"):
        h.road_curve(looker, bright_region_image, true_mask(), 0, steps=2.5)
    with pytest.raises(ValueError, match="heatmap shape"):
        h.road_curve(looker, bright_region_image, np.ones((8, 8)), 0)


# --------------------------------------------------------------------------
# MuFidelity (Bhatt et al. 2020)
# --------------------------------------------------------------------------

def linear_model(seed=0, classes=3):
    """logits = W . x + b on the raw pixels: sum_S (W x) is exactly the drop to black."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(classes, name="predictions")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs, name="linear")
    rng = np.random.default_rng(seed)
    model.get_layer("predictions").set_weights(
        [rng.normal(0, 0.01, (SIZE * SIZE * 3, classes)).astype("float32"),
         rng.normal(0, 1, classes).astype("float32")])
    return model


def weight_times_input(model, image, class_index, reference=0.0):
    weights = model.get_layer("predictions").get_weights()[0][:, class_index]
    return (weights.reshape(SIZE, SIZE, 3) * (image - reference)).sum(axis=-1)


@pytest.mark.parametrize("grid_size", [4, SIZE])
def test_weight_times_input_has_mufidelity_one_on_a_linear_model(tiny_image, grid_size):
    model = linear_model()
    exact = weight_times_input(model, tiny_image, 1)
    result = h.mufidelity(model, tiny_image, exact, 1, samples=40, grid_size=grid_size,
                          progress=False)
    assert result.correlation == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(result.score_drops, result.attribution_sums, rtol=1e-3,
                               atol=1e-3 * np.abs(result.score_drops).max())
    noise = h.mufidelity(model, tiny_image, random_map(3), 1, samples=40, grid_size=grid_size,
                         progress=False)
    assert abs(noise.correlation) < 0.6
    # with a grey baseline the exact map is weight x (input - grey)
    grey = h.mufidelity(model, tiny_image, weight_times_input(model, tiny_image, 1, 127.5), 1,
                        samples=40, grid_size=grid_size, baseline="grey", progress=False)
    assert grey.correlation == pytest.approx(1.0, abs=1e-5)


def test_mufidelity_matches_a_brute_force_loop(tiny_cnn, tiny_image):
    heat = h.saliency(tiny_cnn, tiny_image, 4, progress=False)
    result = h.mufidelity(tiny_cnn, tiny_image, heat, 4, samples=12, grid_size=4, batch_size=5,
                          progress=False)
    cell = SIZE // 4
    clean = np.asarray(tiny_cnn(tiny_image[None]), np.float64)[0, 4]
    sums, drops = [], []
    for subset in result.subsets:
        assert subset.sum() == 3  # round(0.2 * 16) cells
        image, total = tiny_image.copy(), 0.0
        for r in range(SIZE):
            for c in range(SIZE):
                if subset[r // cell, c // cell]:
                    image[r, c] = 0.0
                    total += heat[r, c]
        sums.append(total)
        drops.append(clean - np.asarray(tiny_cnn(image[None]), np.float64)[0, 4])
    np.testing.assert_allclose(result.attribution_sums, sums, rtol=1e-5)
    np.testing.assert_allclose(result.score_drops, drops, rtol=1e-4, atol=1e-5)
    assert np.ptp(drops) > 0  # not comparing constants
    assert result.correlation == pytest.approx(np.corrcoef(sums, drops)[0, 1], abs=1e-4)


def test_mufidelity_is_seeded_and_shares_subsets_across_images(tiny_cnn, tiny_image):
    heat = random_map(4)
    first = h.mufidelity(tiny_cnn, tiny_image, heat, 2, samples=10, grid_size=5, seed=1,
                         progress=False)
    again = h.mufidelity(tiny_cnn, tiny_image, heat, 2, samples=10, grid_size=5, seed=1,
                         batch_size=3, progress=False)
    other = h.mufidelity(tiny_cnn, tiny_image, heat, 2, samples=10, grid_size=5, seed=2,
                         progress=False)
    np.testing.assert_array_equal(first.subsets, again.subsets)
    np.testing.assert_allclose(first.score_drops, again.score_drops, rtol=1e-5, atol=1e-6)
    assert not np.array_equal(first.subsets, other.subsets)
    assert first.subsets.shape == (10, 5, 5) and np.all(first.subsets.sum(axis=(1, 2)) == 5)
    images = np.stack([tiny_image, tiny_image[::-1]])
    maps = np.stack([heat, random_map(5)])
    batched = h.mufidelity(tiny_cnn, images, maps, [2, 3], samples=10, grid_size=5, seed=1,
                           progress=False)
    assert batched.correlation.shape == (2,) and batched.score_drops.shape == (2, 10)
    for i in range(2):
        single = h.mufidelity(tiny_cnn, images[i], maps[i], [2, 3][i], samples=10, grid_size=5,
                              seed=1, progress=False)
        assert batched.correlation[i] == pytest.approx(single.correlation, abs=1e-5)


def test_mufidelity_of_an_all_zero_map_is_undefined(tiny_cnn, tiny_image):
    result = h.mufidelity(tiny_cnn, tiny_image, np.zeros((SIZE, SIZE)), 0, samples=8,
                          progress=False)
    assert np.isnan(result.correlation)
    probability = h.mufidelity(tiny_cnn, tiny_image, random_map(), 0, samples=8,
                               score="probability", progress=False)
    assert -1 <= probability.correlation <= 1 and probability.score == "probability"


def test_mufidelity_error_paths(tiny_cnn, tiny_image):
    heat = random_map()
    with pytest.raises(ValueError, match="grid_size must be at most the image's side"):
        h.mufidelity(tiny_cnn, tiny_image, heat, 0, grid_size=40)
    with pytest.raises(ValueError, match="samples must be at least 2"):
        h.mufidelity(tiny_cnn, tiny_image, heat, 0, samples=1)
    with pytest.raises(ValueError, match="subset_fraction must be the fraction"):
        h.mufidelity(tiny_cnn, tiny_image, heat, 0, subset_fraction=1.0)
    with pytest.raises(ValueError, match="score must be one of 'logit', 'probability'"):
        h.mufidelity(tiny_cnn, tiny_image, heat, 0, score="loss")
    with pytest.raises(TypeError, match="seed must be a non-negative integer"):
        h.mufidelity(tiny_cnn, tiny_image, heat, 0, seed=0.5)


# --------------------------------------------------------------------------
# The measures side by side, and a softmax head changes nothing
# --------------------------------------------------------------------------

def test_compare_maps_with_road_and_mufidelity(looker, bright_region_image):
    maps = {"random": random_map(), "perfect": true_mask() + 0.01 * random_map(2)}
    table = h.compare_maps(looker, bright_region_image, maps, 0, steps=4, road_steps=4,
                           samples=16, measures=("deletion", "road", "mufidelity"),
                           progress=False)
    assert table.columns == ["deletion", "ROAD MoRF", "ROAD LeRF", "LeRF - MoRF", "MuFidelity"]
    for column in table.columns:
        assert table.sorted_by(column).rows[0][0] == "perfect", column
    assert set(table.curves["perfect"]) == {"deletion", "ROAD MoRF", "ROAD LeRF", "MuFidelity"}
    road = h.road_curve(looker, bright_region_image, maps["perfect"], 0, order="lerf", steps=4,
                        progress=False)
    assert table.column("ROAD LeRF")[1] == pytest.approx(road.auc)
    np.testing.assert_allclose(table.curves["perfect"]["ROAD LeRF"].scores, road.scores)
    fidelity = h.mufidelity(looker, bright_region_image, maps["perfect"], 0, samples=16,
                            progress=False)
    assert table.column("MuFidelity")[1] == pytest.approx(fidelity.correlation, abs=1e-6)
    with pytest.raises(ValueError, match="measures must be one of"):
        h.compare_maps(looker, bright_region_image, maps, 0, measures=("deletion", "speed"))
    with pytest.raises(TypeError, match="measures must be a non-empty list"):
        h.compare_maps(looker, bright_region_image, maps, 0, measures="road")


def softmax_region_model():
    logits = region_model()
    probabilities = keras.layers.Softmax(name="softmax")(logits.output)
    return keras.Model(logits.input, probabilities, name="region_softmax")


def test_a_softmax_head_gives_the_same_road_and_mufidelity(looker, bright_region_image):
    heat = random_map(8)
    softmax_model = softmax_region_model()
    for model in (looker, softmax_model):
        road = h.road_curve(model, bright_region_image, heat, 0, steps=3, progress=False)
        fidelity = h.mufidelity(model, bright_region_image, heat, 0, samples=8, progress=False)
        if model is looker:
            expected_road, expected_fidelity = road, fidelity
    np.testing.assert_allclose(road.scores, expected_road.scores, rtol=1e-5)
    np.testing.assert_allclose(fidelity.score_drops, expected_fidelity.score_drops, rtol=1e-4,
                               atol=1e-6)


def test_show_curves_labels_road(looker, bright_region_image):
    import matplotlib.pyplot as plt

    curve = h.road_curve(looker, bright_region_image, true_mask(), 0, steps=2, progress=False)
    ax = h.show_curves({"perfect": curve})
    assert "removed (imputed)" in ax.get_xlabel() and "lower AUC is better" in ax.get_title()
    plt.close(ax.figure)
