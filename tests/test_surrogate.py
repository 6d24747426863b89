"""KernelSHAP on superpixels against exact Shapley values, a known region and seeds."""
import itertools
import math

import numpy as np
import pytest

import helpers as h
import keras
from helpers.pipeline import predict_logits

SIZE = 16


class _RegionMean(keras.layers.Layer):
    """Scores of the mean pixel value m inside rows 0..7, columns 0..5: m, -m, m^2 / 100."""

    def call(self, inputs):
        inside = keras.ops.mean(inputs[:, :8, :6, :], axis=(1, 2, 3))
        return keras.ops.stack([inside, -inside, inside ** 2 / 100], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 3)


@pytest.fixture(scope="module")
def region_model():
    inputs = keras.Input((SIZE, SIZE, 3))
    return keras.Model(inputs, _RegionMean()(inputs), name="region_mean")


def grid_segments(cells=4):
    """Square superpixels: a cells x cells grid of 4 x 4 pixel blocks, labels row-major."""
    rows = np.arange(SIZE) // (SIZE // cells)
    return rows[:, None] * cells + rows[None, :]


@pytest.fixture
def photo():
    return np.random.default_rng(0).uniform(20, 235, (SIZE, SIZE, 3)).astype(np.float32)


def test_a_score_that_depends_on_one_region(region_model, photo):
    segments = grid_segments()
    result = h.kernel_shap(region_model, photo, 0, segments=segments, baseline="black",
                           samples=100, progress=False)
    # Hiding to black makes the score linear in the on/off vector, so each
    # superpixel's Shapley value is its own share of the region's sum.
    region = np.zeros((SIZE, SIZE), bool)
    region[:8, :6] = True
    shares = [photo[(segments == s) & region].sum() / (region.sum() * 3) for s in range(16)]
    np.testing.assert_allclose(result.values, shares, rtol=1e-4, atol=1e-5)
    outside = ~np.isin(segments, np.nonzero(np.asarray(shares) > 0)[0])
    assert np.abs(result.maps[outside]).max() < 1e-5 and result.maps[:8, :4].min() > 1
    assert result.maps.shape == (SIZE, SIZE) and result.maps.dtype == np.float32
    np.testing.assert_allclose(result.maps, np.asarray(result.values)[segments], rtol=1e-6)
    assert abs(float(result.gap)) < 1e-4 and result.baseline_logits == pytest.approx(0.0)
    assert result.logits == pytest.approx(photo[region].mean(), rel=1e-5)


def exact_shapley(model, image, hidden, segments, class_index):
    """Shapley values by their definition: every coalition of superpixels scored."""
    count = int(segments.max()) + 1
    coalitions = list(itertools.product([0, 1], repeat=count))
    masks = np.asarray(coalitions, np.float32)[:, segments][..., None]
    scores = predict_logits(model, masks * image + (1 - masks) * hidden)[:, class_index]
    value = {coalition: float(score) for coalition, score in zip(coalitions, scores)}
    phi = np.zeros(count)
    for s in range(count):
        for coalition in coalitions:
            if coalition[s]:
                continue
            size = sum(coalition)
            weight = math.factorial(size) * math.factorial(count - size - 1) / \
                math.factorial(count)
            joined = coalition[:s] + (1,) + coalition[s + 1:]
            phi[s] += weight * (value[joined] - value[coalition])
    return phi


def test_all_coalitions_give_the_exact_shapley_values(tiny_cnn):
    image = np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)
    segments = (np.arange(32)[:, None] // 16) * 3 + np.arange(32)[None, :] // 11  # 6 blocks
    # 2^6 - 2 = 62 coalitions: shap enumerates them all, so the estimate is exact.
    result = h.kernel_shap(tiny_cnn, image, 4, segments=segments, baseline="grey",
                           samples=62, batch_size=7, progress=False)
    expected = exact_shapley(tiny_cnn, image, np.full_like(image, 127.5), segments, 4)
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(result.values, expected, rtol=1e-3,
                               atol=1e-4 * np.abs(expected).max())


def test_seeds_agree_on_a_score_with_interactions(region_model, photo):
    """Score (sum_s a_s z_s)^2 / 100: superpixels interact, phi_s = a_s sum_t a_t / 100."""
    segments = grid_segments()  # 16 superpixels: 400 of the 65534 coalitions are sampled

    def run(seed, batch_size=32):
        return np.asarray(h.kernel_shap(region_model, photo, 2, segments=segments,
                                        baseline="black", samples=400, seed=seed,
                                        batch_size=batch_size, progress=False).values)

    region = np.zeros((SIZE, SIZE), bool)
    region[:8, :6] = True
    shares = np.array([photo[(segments == s) & region].sum() / (region.sum() * 3)
                       for s in range(16)])
    exact = shares * shares.sum() / 100
    state = np.random.get_state()
    first = run(0)
    assert np.array_equal(np.random.get_state()[1], state[1])  # numpy's state restored
    # Another batch size: oneDNN picks its kernels by instruction set and batch shape, so the
    # last digits of the scores, and of the values fitted to them, may differ.
    np.testing.assert_allclose(run(0, batch_size=5), first, rtol=1e-5,
                               atol=1e-6 * np.abs(first).max())
    other = run(1)
    assert not np.array_equal(first, other)
    assert np.corrcoef(first, other)[0, 1] > 0.98
    for values in (first, other):
        assert np.abs(values - exact).max() < 0.1 * exact.max()


def test_a_batch_equals_one_image_at_a_time(tiny_cnn):
    images = np.random.default_rng(3).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    result = h.kernel_shap(tiny_cnn, images, [2, 5], num_segments=10, samples=40,
                           progress=False)
    assert result.maps.shape == (2, 32, 32) and len(result.values) == 2
    assert result.segments.shape == (2, 32, 32) and result.logits.shape == (2,)
    for index, class_index in enumerate([2, 5]):
        one = h.kernel_shap(tiny_cnn, images[index], class_index, num_segments=10,
                            samples=40, progress=False)
        np.testing.assert_allclose(one.maps, result.maps[index], rtol=1e-6, atol=1e-9)
        np.testing.assert_array_equal(one.segments, result.segments[index])
    assert np.abs(result.gap).max() < 1e-4 * np.abs(result.logits).max() + 1e-6
    text = str(result)
    assert "KernelSHAP on superpixels" in text and len(text.splitlines()) == 4


def test_superpixels():
    photo = h.load_image("chelsea")[:120, :160]
    labels = h.superpixels(photo, 30)
    assert labels.shape == (120, 160) and labels.dtype == np.int64
    assert labels.min() == 0 and set(np.unique(labels)) == set(range(labels.max() + 1))
    assert 15 <= labels.max() + 1 <= 45
    quick = h.superpixels(photo, method="quickshift")
    assert quick.shape == (120, 160) and quick.max() + 1 > 5
    gray = h.superpixels(photo.mean(axis=-1), 20)
    assert gray.shape == (120, 160) and gray.max() >= 5
    # Arbitrary labels are renumbered 0..M-1 for every image.
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    result = h.kernel_shap(model, np.ones((4, 4, 3), np.float32), 0,
                           segments=np.repeat([[7, 7, 42, 42]], 4, axis=0), samples=4,
                           progress=False)
    assert result.segments.max() == 1 and len(result.values) == 2


def test_clear_errors(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match=r"segments must have shape \(32, 32\)"):
        h.kernel_shap(tiny_cnn, tiny_image, 0, segments=np.zeros((16, 16), int))
    with pytest.raises(TypeError, match="segments must be integer labels"):
        h.kernel_shap(tiny_cnn, tiny_image, 0, segments=np.zeros((32, 32)))
    with pytest.raises(ValueError, match="num_segments must be a positive integer"):
        h.kernel_shap(tiny_cnn, tiny_image, 0, num_segments=0)
    with pytest.raises(ValueError, match="samples must be a positive integer"):
        h.kernel_shap(tiny_cnn, tiny_image, 0, samples=0)
    with pytest.raises(ValueError, match="baseline must be one of"):
        h.kernel_shap(tiny_cnn, tiny_image, 0, baseline="pink", num_segments=4, samples=4)
    with pytest.raises(ValueError, match="method must be one of 'slic', 'quickshift'"):
        h.superpixels(tiny_image, method="watershed")
    with pytest.raises(ValueError, match="compactness must be a positive number"):
        h.superpixels(tiny_image, compactness=0)


def test_efficientnet_lite0(lite0):
    result = h.kernel_shap(lite0, "coffee", "espresso", num_segments=16, samples=32,
                           progress=False)
    assert result.maps.shape == (224, 224) and np.isfinite(result.maps).all()
    assert result.class_names == "espresso" and abs(float(result.gap)) < 1e-3
