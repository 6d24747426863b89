"""Perlin noise, random sign noise and the universal adversarial perturbation."""
import numpy as np
import pytest

import helpers as h
from helpers.noise import _fade, _gradient_noise


class FixedAngles:
    """Stands in for a numpy Generator: every lattice gradient points the same way."""

    def __init__(self, angle):
        self.angle = angle

    def uniform(self, low, high, shape):
        return np.full(shape, self.angle)


# --- Perlin noise ---------------------------------------------------------------------------

def test_gradient_noise_matches_hand_computation():
    # All gradients (1, 0): each corner contributes (x - corner_x), and the blend of
    # x and x - 1 with Perlin's fade gives n = t - fade(t), t = the offset in the cell.
    noise = _gradient_noise(8, 16, 2, 4, FixedAngles(0.0))
    t = ((np.arange(16) + 0.5) * 4 / 16) % 1.0
    np.testing.assert_allclose(noise, np.broadcast_to(t - _fade(t), (8, 16)), atol=1e-12)
    # Gradients (0, 1): the same along the vertical axis.
    noise = _gradient_noise(8, 16, 2, 4, FixedAngles(np.pi / 2))
    t = ((np.arange(8) + 0.5) * 2 / 8) % 1.0
    np.testing.assert_allclose(noise, np.broadcast_to((t - _fade(t))[:, None], (8, 16)),
                               atol=1e-12)


def test_fade_is_perlins_quintic():
    t = np.linspace(0, 1, 11)
    np.testing.assert_allclose(_fade(t), 6 * t**5 - 15 * t**4 + 10 * t**3)
    assert _fade(0.0) == 0 and _fade(1.0) == 1


def test_perlin_shapes_ranges_and_seed():
    image = h.perlin_noise(64, seed=3)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert image.min() == 0 and image.max() == 255
    np.testing.assert_array_equal(image, h.perlin_noise(64, seed=3))
    assert not np.array_equal(image, h.perlin_noise(64, seed=4))
    batch = h.perlin_noise((30, 50), count=3, seed=3)
    assert batch.shape == (3, 30, 50, 3)
    assert not np.array_equal(batch[0], batch[1])
    np.testing.assert_array_equal(batch, h.perlin_noise((30, 50), count=3, seed=3))


def test_perlin_colour_options():
    grey = h.perlin_noise(48, colour=False, seed=1)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 1])
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    rgb = h.perlin_noise(48, colour=True, seed=1)
    assert not np.array_equal(rgb[..., 0], rgb[..., 1])
    mapped = h.perlin_noise(48, colour="viridis", seed=1)
    assert mapped.shape == (48, 48, 3) and 0 <= mapped.min() and mapped.max() <= 255
    stripes = h.perlin_noise(48, colour=False, sine_frequency=8, seed=1)
    assert stripes.min() == 0 and stripes.max() == 255
    assert not np.array_equal(stripes, grey)


def test_perlin_frequency_controls_smoothness():
    def roughness(image):
        return np.abs(np.diff(image, axis=1)).mean()

    smooth = h.perlin_noise(96, frequency=2, octaves=1, seed=0)
    rough = h.perlin_noise(96, frequency=16, octaves=1, seed=0)
    white = np.random.default_rng(0).uniform(0, 255, (96, 96, 3))
    assert roughness(smooth) < roughness(rough) < roughness(white) / 3


def test_perlin_errors():
    with pytest.raises(TypeError, match="size"):
        h.perlin_noise("big")
    with pytest.raises(ValueError, match="size"):
        h.perlin_noise(0)
    with pytest.raises(ValueError, match="octaves"):
        h.perlin_noise(32, octaves=0)
    with pytest.raises(ValueError, match="frequency"):
        h.perlin_noise(32, frequency=-1)
    with pytest.raises(ValueError, match="colour map"):
        h.perlin_noise(32, colour="rainbowish")
    with pytest.raises(TypeError, match="seed"):
        h.perlin_noise(32, seed=1.5)
    with pytest.raises(ValueError, match="count"):
        h.perlin_noise(32, count=0)


# --- random sign noise and applying a perturbation --------------------------------------------

def test_random_sign_noise():
    noise = h.random_sign_noise(40, 6, seed=2)
    assert noise.shape == (40, 40, 3) and noise.dtype == np.float32
    assert set(np.unique(noise)) == {-6.0, 6.0}
    assert abs((noise > 0).mean() - 0.5) < 0.05
    np.testing.assert_array_equal(noise, h.random_sign_noise(40, 6, seed=2))
    assert h.random_sign_noise(8, 2, count=3, seed=0).shape == (3, 8, 8, 3)
    with pytest.raises(ValueError, match="0..255"):
        h.random_sign_noise(8, 500)


def test_apply_perturbation_clips_and_keeps_floats(tiny_cnn):
    images = np.full((2, 32, 32, 3), 250.25, np.float32)
    delta = np.zeros((32, 32, 3), np.float32)
    delta[0, 0] = [10, -10, 0.5]
    result = h.apply_perturbation(tiny_cnn, images, delta)
    np.testing.assert_allclose(result[:, 0, 0], [[255, 240.25, 250.75]] * 2)
    assert result.dtype == np.float32
    per_image = np.stack([delta, -delta])
    np.testing.assert_allclose(h.apply_perturbation(tiny_cnn, images, per_image)[1, 0, 0],
                               [240.25, 255, 249.75])
    with pytest.raises(ValueError, match="perturbation must have shape"):
        h.apply_perturbation(tiny_cnn, images, np.zeros((8, 8, 3)))


def test_fooling_rate_of_nothing_is_zero(tiny_cnn):
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    assert h.fooling_rate(tiny_cnn, images, np.zeros((32, 32, 3))) == 0.0
    clean = h.predict_classes(tiny_cnn, images)
    delta = h.random_sign_noise(32, 60, seed=1)
    expected = np.mean(h.predict_classes(tiny_cnn, np.clip(images + delta, 0, 255)) != clean)
    assert h.fooling_rate(tiny_cnn, images, delta) == pytest.approx(expected)


# --- the universal perturbation --------------------------------------------------------------

def test_universal_perturbation_respects_budget_and_repeats(tiny_cnn):
    images = np.random.default_rng(1).uniform(0, 255, (5, 32, 32, 3)).astype(np.float32)
    delta = h.universal_perturbation(tiny_cnn, images, epsilon=5, steps=6, batch_size=2,
                                     progress=False)
    assert delta.shape == (32, 32, 3) and delta.dtype == np.float32
    assert np.abs(delta).max() == pytest.approx(5)
    # Other batches give gradients that differ in their last digits (oneDNN picks its kernels
    # by instruction set and batch shape), but delta is a sum of steps of +-step_size: exact
    # unless a vote lies within round-off of zero, and the smallest is 4e-5 of the largest here.
    np.testing.assert_array_equal(delta, h.universal_perturbation(
        tiny_cnn, images, epsilon=5, steps=6, batch_size=5, progress=False))
    with pytest.raises(ValueError, match="steps"):
        h.universal_perturbation(tiny_cnn, images, steps=0)
    with pytest.raises(TypeError, match="must be a Keras model"):
        h.universal_perturbation(None, images)


def test_universal_perturbation_beats_random_noise_on_the_real_model(lite0):
    photos = h.sample_names()
    # Four steps of epsilon / 4 reach the budget; they already fool all eight photos.
    delta = h.universal_perturbation(lite0, photos, epsilon=8, steps=4, progress=False)
    assert np.abs(delta).max() == pytest.approx(8)
    universal = h.fooling_rate(lite0, photos, delta)
    random = [h.fooling_rate(lite0, photos, h.random_sign_noise(224, 8, seed=seed))
              for seed in range(3)]
    print(f"fooling rate at epsilon 8/255: universal {universal:.3f}, random sign noise "
          f"{np.round(random, 3).tolist()}")
    assert universal >= 0.75
    assert universal > max(random)
