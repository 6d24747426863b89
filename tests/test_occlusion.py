"""Occlusion, random masks and RISE: batched results against brute-force loops."""
import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.transform import resize

import helpers as h
from helpers.masks import patch_starts
from helpers.occlusion import perturbation_scores
import keras
from helpers.occlusion import _compiled_forward


def softmax(logits):
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def one_at_a_time(model, image, score="probability"):
    """The articles' way: one image, one call."""
    logits = np.asarray(model(image[None].astype(np.float32), training=False))[0]
    return softmax(logits.astype(np.float64)) if score == "probability" else logits


def brute_force_occlusion(model, image, class_index, starts, patch_size, fill_value,
                          score="probability"):
    """Hide each square by slicing, score it alone, average the drops per pixel."""
    height, width = image.shape[:2]
    base = one_at_a_time(model, image, score)[class_index]
    total = np.zeros((height, width))
    coverage = np.zeros((height, width))
    for top in starts:
        for left in starts:
            rows = slice(max(top, 0), top + patch_size)
            cols = slice(max(left, 0), left + patch_size)
            occluded = image.copy()
            occluded[rows, cols] = fill_value
            total[rows, cols] += base - one_at_a_time(model, occluded, score)[class_index]
            coverage[rows, cols] += 1
    assert coverage.min() > 0
    return total / coverage


@pytest.fixture(scope="module")
def quadrant_model():
    """Logits that only see the top-left 16x16 quadrant of a 32x32 image: class 0 = its
    mean brightness, class 1 = minus it."""
    inputs = keras.Input((32, 32, 3), name="input_image")
    x = keras.layers.Cropping2D(((0, 16), (0, 16)), name="top_left")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    dense = keras.layers.Dense(2, name="predictions")
    outputs = dense(x)
    model = keras.Model(inputs, outputs, name="quadrant")
    dense.set_weights([np.array([[1.0, -1.0]] * 3, np.float32) / 255.0, np.zeros(2, np.float32)])
    return model


# ---------------------------------------------------------------- positions

def test_patch_starts_by_hand():
    # 224 px, patch 32, stride 8: centred grid overhanging by 32/2 - 8 = 8 px: 27 positions.
    assert list(patch_starts(224, 32, 8)) == list(range(-8, 201, 8))
    assert list(patch_starts(32, 8, 4)) == [0, 4, 8, 12, 16, 20, 24]
    assert list(patch_starts(32, 12, 4)) == [-2, 2, 6, 10, 14, 18, 22]
    assert list(patch_starts(10, 4, 4)) == [-1, 3, 7]  # centred, leftover split
    assert list(patch_starts(32, 32, 32)) == [0]
    assert list(patch_starts(32, 32, 8)) == [-8, 0, 8]
    assert h.PatchMasks(224, 224, 32, 8).count == 729


def test_patch_masks_hide_the_right_squares():
    masks = h.PatchMasks(32, 32, 12, 4)
    visible = masks.chunk(0, masks.count)
    assert visible.shape == (49, 32, 32)
    expected = np.ones((32, 32), np.float32)
    expected[0:10, 2:14] = 0  # row start -2 is cut at the edge, column start 2
    np.testing.assert_array_equal(visible[1], expected)


# ---------------------------------------------------------------- occlusion

@pytest.mark.parametrize("patch_size, stride, fill, fill_value", [
    (8, 4, "grey", 127.5),
    (12, 4, "black", 0.0),
    (6, 6, 40.0, 40.0),
])
def test_occlusion_equals_brute_force_loop(tiny_cnn, tiny_image, patch_size, stride, fill,
                                           fill_value):
    expected = brute_force_occlusion(tiny_cnn, tiny_image, 3,
                                     patch_starts(32, patch_size, stride), patch_size,
                                     fill_value)
    result = h.occlusion_map(tiny_cnn, tiny_image, 3, patch_size=patch_size, stride=stride,
                             baseline=fill, batch_size=5, progress=False)
    assert result.shape == (32, 32) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, atol=1e-6)
    assert np.abs(expected).max() > 1e-4  # the comparison is not between zeros


@pytest.mark.parametrize("score", ["probability", "logit"])
def test_readable_reference_equals_the_batched_map(tiny_cnn, tiny_image, score):
    reference = h.occlusion_reference(tiny_cnn, tiny_image, 4, patch_size=8, stride=4,
                                      baseline="blur", score=score)
    batched = h.occlusion_map(tiny_cnn, tiny_image, 4, patch_size=8, stride=4, baseline="blur",
                              score=score, batch_size=7, progress=False)
    assert np.abs(reference).max() > 1e-4  # not comparing zeros
    np.testing.assert_allclose(batched, reference, rtol=1e-4, atol=1e-4 * np.abs(reference).max())


def test_occlusion_logit_scores_equal_brute_force(tiny_cnn, tiny_image):
    expected = brute_force_occlusion(tiny_cnn, tiny_image, 7, patch_starts(32, 8, 8), 8,
                                     tiny_image.mean(axis=(0, 1)), score="logit")
    result = h.occlusion_map(tiny_cnn, tiny_image, 7, patch_size=8, stride=8, baseline="mean",
                             score="logit", progress=False)
    np.testing.assert_allclose(result, expected, atol=1e-4)


def test_batch_size_does_not_change_the_result(tiny_cnn, tiny_image):
    maps = [h.occlusion_map(tiny_cnn, tiny_image, 1, patch_size=8, stride=4, batch_size=size,
                            progress=False) for size in (1, 7, 64)]
    np.testing.assert_allclose(maps[0], maps[1], atol=1e-6)
    np.testing.assert_allclose(maps[0], maps[2], atol=1e-6)


def test_every_class_from_one_pass(tiny_cnn, tiny_image):
    scores = h.occlusion_scores(tiny_cnn, tiny_image, patch_size=8, stride=4, progress=False)
    assert scores.scores.shape == (49, 10)
    several = scores.map([2, 5, 9])
    for row, class_index in zip(several, (2, 5, 9)):
        alone = h.occlusion_map(tiny_cnn, tiny_image, class_index, patch_size=8, stride=4,
                                progress=False)
        np.testing.assert_allclose(row, alone, atol=1e-6)
    assert not np.allclose(several[0], several[1])
    baseline = softmax(np.asarray(tiny_cnn(tiny_image[None]))[0].astype(np.float64))
    np.testing.assert_allclose(scores.clean, baseline, atol=1e-6)
    np.testing.assert_allclose(scores.map(), scores.map(int(np.argmax(baseline))))
    grid = scores.drop_grid(2)
    assert grid.shape == (7, 7)
    np.testing.assert_allclose(grid[0, 0], scores.clean[2] - scores.scores[0, 2], atol=1e-7)


def test_batch_of_images_gets_one_map_each(tiny_cnn, tiny_image):
    other = tiny_image[::-1].copy()
    maps = h.occlusion_map(tiny_cnn, np.stack([tiny_image, other]), [1, 4], patch_size=8,
                           stride=8, progress=False)
    assert maps.shape == (2, 32, 32)
    np.testing.assert_allclose(maps[1], h.occlusion_map(tiny_cnn, other, 4, patch_size=8,
                                                        stride=8, progress=False), atol=1e-6)


def test_one_quadrant_model_gets_its_map_in_that_quadrant(quadrant_model):
    image = np.full((32, 32, 3), 200.0, np.float32)
    heat = h.occlusion_map(quadrant_model, image, 0, patch_size=8, stride=4, baseline="black",
                           score="logit", progress=False)
    assert np.all(heat[:16, :16] > 0)
    # Every patch that covers these pixels lies outside the quadrant: the occluded logit is
    # the clean one (about 2.4), computed again in another batch. oneDNN picks its kernels by
    # instruction set, so the last digits differ between CPUs (-6e-8 on AVX2): zero up to
    # float32 round-off, far below the 0.33 or more of every pixel in the quadrant.
    np.testing.assert_allclose(heat[20:, :], 0, atol=1e-5)
    np.testing.assert_allclose(heat[:, 20:], 0, atol=1e-5)
    opposite = h.occlusion_map(quadrant_model, image, 1, patch_size=8, stride=4, baseline="black",
                               score="logit", progress=False)
    np.testing.assert_allclose(opposite, -heat, atol=1e-6)


# ---------------------------------------------------------------- random masks

def test_rise_masks_match_a_skimage_resize():
    masks = h.RandomMasks(32, 32, 6, grid_size=4, method="rise", seed=3)
    cell = 8  # ceil(32 / 4)
    built = masks.chunk(0, 6)
    for i in range(6):
        upsampled = resize(masks.grids[i].astype(float), (5 * cell, 5 * cell), order=1,
                           mode="edge", anti_aliasing=False)
        top, left = masks.shifts[i]
        np.testing.assert_allclose(built[i], upsampled[top:top + 32, left:left + 32], atol=1e-6)
    assert 0 <= masks.shifts.min() and masks.shifts.max() < cell


def test_binary_masks_are_upsampled_grids():
    masks = h.RandomMasks(32, 32, 200, grid_size=4, method="binary", seed=1)
    built = masks.chunk(0, 200)
    expected = np.kron(masks.grids.astype(np.float32), np.ones((1, 8, 8), np.float32))
    np.testing.assert_array_equal(built, expected)
    assert abs(built.mean() - 0.5) < 0.05  # half hidden on average


def brute_force_random_map(model, image, masks, class_index, fill_value, method):
    """RISE: score-weighted masks over the coverage; binary: the mean score of the copies
    that showed each pixel minus that of the copies that hid it, pixel by pixel."""
    shown, hidden = [], []
    for mask in masks.chunk(0, masks.count):
        masked = mask[..., None] * image + (1 - mask[..., None]) * fill_value
        score = one_at_a_time(model, masked)[class_index]
        shown.append(score * mask)
        hidden.append(score * (1 - mask))
    all_masks = masks.chunk(0, masks.count)
    mean_shown = np.sum(shown, axis=0) / all_masks.sum(axis=0)
    if method == "rise":
        return mean_shown
    return mean_shown - np.sum(hidden, axis=0) / (1 - all_masks).sum(axis=0)


@pytest.mark.parametrize("method, function", [("rise", h.rise), ("binary", h.random_mask_map)])
def test_random_mask_maps_equal_brute_force_loop(tiny_cnn, tiny_image, method, function):
    masks = h.RandomMasks(32, 32, 40, grid_size=5, keep_probability=0.4, method=method, seed=7)
    expected = brute_force_random_map(tiny_cnn, tiny_image, masks, 6, 127.5, method)
    result = function(tiny_cnn, tiny_image, 6, num_masks=40, grid_size=5, keep_probability=0.4,
                      seed=7, batch_size=16, progress=False)
    assert result.shape == (32, 32) and result.dtype == np.float32
    np.testing.assert_allclose(result, expected, rtol=1e-4, atol=1e-6)


def test_maps_as_masks_accumulate(tiny_cnn, tiny_image):
    scores = h.random_mask_scores(tiny_cnn, tiny_image, num_masks=50, progress=False)
    snapshots = scores.maps_at(1, [10, 50, 25])
    assert snapshots.shape == (3, 32, 32)
    np.testing.assert_allclose(snapshots[1], scores.map(1), atol=1e-6)
    masks = scores.masks.chunk(0, 10)
    by_hand = np.tensordot(scores.scores[:10, 1], masks, axes=1) / masks.sum(axis=0)
    np.testing.assert_allclose(snapshots[0], by_hand, atol=1e-5)
    np.testing.assert_allclose(scores.map(1, num_masks=25), snapshots[2], atol=1e-6)
    assert scores.map([1, 2]).shape == (2, 32, 32)


def test_random_masks_are_seeded(tiny_cnn, tiny_image):
    first = h.rise(tiny_cnn, tiny_image, 0, num_masks=20, seed=5, progress=False)
    again = h.rise(tiny_cnn, tiny_image, 0, num_masks=20, seed=5, progress=False)
    other = h.rise(tiny_cnn, tiny_image, 0, num_masks=20, seed=6, progress=False)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def offset_quadrant_model():
    """One logit near 10 that the top-left quadrant moves only a little (0.01 per level)."""
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Cropping2D(((0, 16), (0, 16)))(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    dense = keras.layers.Dense(1)
    model = keras.Model(inputs, dense(x))
    dense.set_weights([np.full((3, 1), 0.01 / 3, np.float32), np.full(1, 10.0, np.float32)])
    return model


def test_rise_agrees_between_seeds_where_the_papers_estimator_does_not():
    """Randomised methods are judged by agreement between seeds. A logit near 10 that the
    top-left quadrant moves only a little: the paper's 1/(N p) estimator then mostly maps
    how many masks happened to cover each pixel; dividing by that coverage does not."""
    model = offset_quadrant_model()
    image = np.full((32, 32, 3), 200.0, np.float32)
    ours, papers = [], []
    for seed in (0, 1):
        result = h.random_mask_scores(model, image, num_masks=300, grid_size=4, seed=seed,
                                      baseline="black", score="logit", progress=False)
        masks = result.masks.chunk(0, result.masks.count)
        ours.append(result.map(0).ravel())
        papers.append((np.tensordot(result.scores[:, 0], masks, axes=1) / (300 * 0.5)).ravel())
    agreement = np.corrcoef(*ours)[0, 1]
    assert agreement > 0.9
    assert agreement > np.corrcoef(*papers)[0, 1] + 0.3
    heat = ours[0].reshape(32, 32)
    assert heat[:12, :12].mean() > heat[20:, 20:].mean()  # and it finds the quadrant


def test_binary_masks_agree_between_seeds_where_the_vote_does_not():
    """The +score/-score vote 1/N sum s_i (2 M_i - 1) also counts how far each pixel's
    coverage strayed from N/2, times the mean score; the difference of means does not."""
    model = offset_quadrant_model()
    image = np.full((32, 32, 3), 200.0, np.float32)
    ours, votes = [], []
    for seed in (0, 1):
        result = h.random_mask_scores(model, image, method="binary", num_masks=300, grid_size=4,
                                      seed=seed, baseline="black", score="logit",
                                      progress=False)
        masks = result.masks.chunk(0, result.masks.count)
        ours.append(result.map(0).ravel())
        votes.append((np.tensordot(result.scores[:, 0], 2 * masks - 1, axes=1) / 300).ravel())
    agreement = np.corrcoef(*ours)[0, 1]
    assert agreement > 0.9
    assert agreement > np.corrcoef(*votes)[0, 1] + 0.3
    heat = ours[0].reshape(32, 32)
    assert heat[:16, :16].min() > heat[16:, 16:].max()  # and it finds the quadrant


def test_binary_pixels_always_shown_have_no_estimate(tiny_cnn, tiny_image):
    scores = h.random_mask_scores(tiny_cnn, tiny_image, method="binary", num_masks=1,
                                  grid_size=4, progress=False)
    np.testing.assert_array_equal(scores.map(3), 0.0)  # one mask: every pixel shown or hidden


@pytest.mark.parametrize("method", ["rise", "binary"])
def test_random_masks_find_the_quadrant(quadrant_model, method):
    image = np.full((32, 32, 3), 200.0, np.float32)
    heat = h.random_mask_scores(quadrant_model, image, method=method, num_masks=400,
                                grid_size=4, baseline="black", score="logit",
                                progress=False).map(0)
    # Smooth RISE masks blur the edge, so compare the quadrant's core with the far corner.
    assert heat[2:14, 2:14].min() > heat[24:, 24:].max() + 0.1
    row, col = np.unravel_index(np.argmax(heat), heat.shape)
    assert row < 16 and col < 16


# ---------------------------------------------------------------- engine

class CountingMasks:
    """Records the chunks the engine asks for."""

    def __init__(self, count, size=32):
        self.count, self.size, self.requests = count, size, []

    def chunk(self, start, stop):
        self.requests.append((start, stop))
        return np.ones((stop - start, self.size, self.size), np.float32)


def test_engine_streams_fixed_batches_through_one_traced_function(tiny_cnn, tiny_image):
    masks = CountingMasks(100)
    baseline, scores = perturbation_scores(tiny_cnn, tiny_image, masks, batch_size=16,
                                             progress=False)
    assert scores.shape == (100, 10) and baseline.shape == (10,)
    assert max(stop - start for start, stop in masks.requests) <= 16
    assert sum(stop - start for start, stop in masks.requests) == 100
    np.testing.assert_allclose(scores, np.broadcast_to(baseline, scores.shape), atol=1e-6)
    perturbation_scores(tiny_cnn, tiny_image, CountingMasks(37), batch_size=16, progress=False)
    assert _compiled_forward(tiny_cnn, 16, "probability").experimental_get_tracing_count() == 1


def test_baselines():
    image = np.random.default_rng(2).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    np.testing.assert_array_equal(h.baseline_image(image, "grey"), np.full_like(image, 127.5))
    np.testing.assert_array_equal(h.baseline_image(image, "black"), np.zeros_like(image))
    np.testing.assert_allclose(h.baseline_image(image, "mean")[5, 7], image.mean(axis=(0, 1)),
                               rtol=1e-6)
    np.testing.assert_allclose(h.baseline_image(image, "blur"),
                               gaussian_filter(image, (1.5, 1.5, 0), mode="nearest"), atol=1e-4)
    np.testing.assert_array_equal(h.baseline_image(image, (10, 20, 30))[0, 0], [10, 20, 30])
    np.testing.assert_array_equal(h.baseline_image(image, image[::-1]), image[::-1])


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize("kwargs, error, match", [
    ({"patch_size": 40}, ValueError, "larger than the image"),
    ({"stride": 0}, ValueError, "stride must be a positive integer .*, got 0"),
    ({"stride": 2.5}, TypeError, "stride must be a positive integer"),
    ({"patch_size": 8, "stride": 9}, ValueError, "larger than patch_size"),
    ({"baseline": "pink"}, ValueError, "baseline must be one of 'grey', 'black', 'mean', 'blur'"),
    ({"baseline": np.zeros((5, 5, 3))}, ValueError, "baseline: .* shape"),
    ({"baseline": True}, TypeError, "baseline must be one of"),
    ({"baseline": 300}, ValueError, "baseline: values .* 0..255"),
    ({"score": "prob"}, ValueError, "score must be one of 'probability', 'logit'"),
    ({"batch_size": 0}, ValueError, "batch_size"),
])
def test_occlusion_rejects_bad_parameters(tiny_cnn, tiny_image, kwargs, error, match):
    with pytest.raises(error, match=match):
        h.occlusion_map(tiny_cnn, tiny_image, 0, progress=False, **kwargs)


@pytest.mark.parametrize("class_index, match", [
    (10, "class_index: class index 10 is out of range: the model has classes 0..9"),
    ("tabby", "class_index: 'tabby' is an ImageNet class name, but the model has 10 classes"),
    (-1, "out of range"),
])
def test_class_out_of_range(tiny_cnn, tiny_image, class_index, match):
    with pytest.raises(ValueError, match=match):
        h.occlusion_map(tiny_cnn, tiny_image, class_index, patch_size=8, progress=False)
    scores = h.occlusion_scores(tiny_cnn, tiny_image, patch_size=16, stride=16, progress=False)
    with pytest.raises(ValueError, match=match):
        scores.map(class_index)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"num_masks": 0}, ValueError, "num_masks must be a positive integer .*got 0"),
    ({"keep_probability": 1.0}, ValueError, "strictly between 0 and 1"),
    ({"grid_size": 0}, ValueError, "grid_size must be a positive integer .*got 0"),
    ({"grid_size": 33}, ValueError, "more cells than the image has pixels"),
    ({"baseline": "white"}, ValueError, "baseline must be one of"),
])
def test_random_masks_reject_bad_parameters(tiny_cnn, tiny_image, kwargs, error, match):
    for function in (h.rise, h.random_mask_map):
        with pytest.raises(error, match=match):
            function(tiny_cnn, tiny_image, 0, progress=False, **kwargs)


def test_other_misuse(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="method must be one of 'rise', 'binary'"):
        h.random_mask_scores(tiny_cnn, tiny_image, method="lime", num_masks=4, progress=False)
    with pytest.raises(ValueError, match=r"one prepared image of shape \(32, 32, 3\)"):
        perturbation_scores(tiny_cnn, tiny_image[:16], CountingMasks(3), progress=False)
    with pytest.raises(ValueError, match="scores one image; got a batch of 2"):
        h.occlusion_scores(tiny_cnn, np.stack([tiny_image] * 2), progress=False)
    scores = h.random_mask_scores(tiny_cnn, tiny_image, num_masks=8, progress=False)
    with pytest.raises(ValueError, match="mask counts must lie in 1..8"):
        scores.maps_at(0, [4, 9])
    with pytest.raises(ValueError, match="one class"):
        scores.maps_at([0, 1], [4])


# ---------------------------------------------------------------- the real model

def test_espresso_map_lies_on_the_cup(lite0):
    scores = h.occlusion_scores(lite0, "coffee", patch_size=56, stride=28, progress=False)
    assert scores.scores.shape == (49, 1000)
    expected = h.probabilities(h.predict_logits(lite0, h.prepare("coffee", lite0)))[0]
    np.testing.assert_allclose(scores.clean, expected, atol=1e-4)
    heat = scores.map("espresso")
    centre = heat[56:168, 56:168].mean()
    border = (heat.sum() - heat[56:168, 56:168].sum()) / (224 * 224 - 112 * 112)
    assert centre > 2 * border and centre > 0.05


# ---------------------------------------------------------------- coarse to fine

def test_passes_refine_to_exactly_the_full_map_without_repeating_work(tiny_cnn, tiny_image):
    full = h.occlusion_scores(tiny_cnn, tiny_image, patch_size=8, stride=2, progress=False)
    passes = list(h.occlusion_passes(tiny_cnn, tiny_image, patch_size=8, stride=2))
    assert len(passes) == 3  # steps of 8, 4, then 2 pixels
    scored = [int(p.computed.sum()) if p.computed is not None else p.masks.count
              for p in passes]
    assert scored[0] < scored[1] < scored[2] == full.masks.count
    np.testing.assert_allclose(passes[-1].map(3), full.map(3), rtol=1e-5, atol=1e-7)
    for partial in passes[:-1]:
        coarse = partial.map(3)
        assert np.isfinite(coarse).all()  # every pixel is covered by some scored patch
        rows, cols = partial.masks.grid_shape
        # the coarse pass equals a brute-force mean over the scored patches only
        expected = np.zeros((32, 32))
        coverage = np.zeros((32, 32))
        drops = partial.clean[3] - partial.scores[:, 3]
        for index in np.flatnonzero(partial.computed):
            hidden = 1 - partial.masks.masks_at([index])[0]
            expected += drops[index] * hidden
            coverage += hidden
        np.testing.assert_allclose(coarse, expected / coverage, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("patch_size, stride", [(8, 2), (8, 4), (12, 2), (8, 8), (6, 3), (16, 4),
                                                (16, 1)])
def test_pass_count_is_the_number_of_passes(tiny_cnn, tiny_image, patch_size, stride):
    """Lesson 03's explorer titles its maps "pass i of n"; the browser benchmark waits for n."""
    passes = list(h.occlusion_passes(tiny_cnn, tiny_image, patch_size=patch_size, stride=stride))
    assert h.occlusion_pass_count(patch_size, stride) == len(passes)
    assert [p.computed is None for p in passes] == [False] * (len(passes) - 1) + [True]


@pytest.mark.parametrize("patch_size, stride, error, match", [
    (8, 16, ValueError, "stride 16 is larger than patch_size 8"),
    (0, 1, ValueError, "patch_size"),
    (8, 2.5, TypeError, "stride"),
])
def test_pass_count_rejects_bad_sizes(patch_size, stride, error, match):
    with pytest.raises(error, match=match):
        h.occlusion_pass_count(patch_size, stride)


def test_one_pass_gives_both_scores(tiny_cnn, tiny_image):
    """The engine keeps the logits; the probabilities are their softmax, read on demand."""
    as_probability = h.occlusion_scores(tiny_cnn, tiny_image, patch_size=8, stride=4,
                                        progress=False)
    as_logit = h.occlusion_scores(tiny_cnn, tiny_image, patch_size=8, stride=4, score="logit",
                                  progress=False)
    np.testing.assert_allclose(as_probability.map(2, score="logit"), as_logit.map(2), atol=1e-6)
    np.testing.assert_allclose(as_logit.map(2, score="probability"), as_probability.map(2),
                               atol=1e-7)
    rise = h.random_mask_scores(tiny_cnn, tiny_image, num_masks=20, progress=False)
    logit_rise = h.random_mask_scores(tiny_cnn, tiny_image, num_masks=20, score="logit",
                                      progress=False)
    np.testing.assert_allclose(rise.map(2, score="logit"), logit_rise.map(2), rtol=1e-5)
    with pytest.raises(ValueError, match="score must be one of 'probability', 'logit'"):
        rise.map(2, score="softmax")
