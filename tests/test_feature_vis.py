"""Feature visualisation (helpers.feature_vis): each piece against an independent reference.

The Fourier parameterisation against numpy's FFT and the formula of its
scale, the colour matrix against its own algebra and the bundled photos'
colour statistics, the transformations against exact pixel moves and
scipy's rotation (the one tf-keras-vis' ``Rotate2D`` uses), the optimiser
against models whose best input is known analytically.
"""
import numpy as np
import pytest
import scipy.ndimage

import helpers as h
import helpers.feature_vis as fv
import keras

SIZE = 16


def build_colour_cnn():
    """Channel 0 of 'colour' = red − blue, channel 1 = blue; logit 0 = mean(channel 0), 1 = mean(channel 1)."""
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name="preprocess")(inputs)
    x = keras.layers.Conv2D(2, 1, name="colour")(x)
    x = keras.layers.ReLU(name="colour_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="colour_cnn")
    kernel = np.array([[[[1.0, 0.0], [0.0, 0.0], [-1.0, 1.0]]]], np.float32)  # (1, 1, 3, 2)
    model.get_layer("colour").set_weights([kernel, np.zeros(2, np.float32)])
    model.get_layer("predictions").set_weights([np.eye(2, dtype=np.float32),
                                                np.zeros(2, np.float32)])
    return model


@pytest.fixture(scope="module")
def colour_cnn():
    return build_colour_cnn()


def _smooth_image(height, width, seed=0):
    """A smooth random image strictly inside 0..255 (a blurred noise field)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(height, width, 3))
    smooth = scipy.ndimage.gaussian_filter(noise, sigma=(3, 3, 0), mode="wrap")
    smooth = (smooth - smooth.mean()) / smooth.std()
    return (127.5 + 50 * np.tanh(smooth)).astype(np.float32)


# --------------------------------------------------------------------------
# The Fourier parameterisation
# --------------------------------------------------------------------------

@pytest.mark.parametrize("size", [(16, 16), (15, 21), (20, 9)])
@pytest.mark.parametrize("decorrelate", [True, False])
def test_fourier_image_round_trips(size, decorrelate):
    image = np.stack([_smooth_image(*size, seed=1), _smooth_image(*size, seed=2)])
    param = fv.FourierImage(size, decorrelate=decorrelate)
    coefficients = param.from_pixels(image)
    assert coefficients.shape == (2,) + param.shape == (2, 2, 3, size[0], size[1] // 2 + 1)
    np.testing.assert_allclose(np.asarray(param.to_pixels(coefficients)), image, atol=2e-3)


def test_the_fourier_map_is_linear_before_the_sigmoid():
    param = fv.FourierImage((12, 10), decorrelate=True)
    rng = np.random.default_rng(0)
    a, b = (rng.normal(size=(1,) + param.shape).astype(np.float32) for _ in range(2))
    combined = np.asarray(param.linear(2.0 * a - 3.0 * b))
    np.testing.assert_allclose(combined, 2.0 * np.asarray(param.linear(a))
                               - 3.0 * np.asarray(param.linear(b)), atol=1e-4)
    # The linear part is numpy's orthonormal inverse FFT of the scaled spectrum.
    spectrum = (a[0, 0] + 1j * a[0, 1]) * param.scale
    reference = np.fft.irfft2(spectrum, s=(12, 10), norm="ortho").transpose(1, 2, 0)
    np.testing.assert_allclose(np.asarray(param.linear(a))[0], reference, atol=1e-5)


def test_the_spectrum_scale_follows_the_formula():
    height, width = 32, 24
    frequencies = fv.fourier_frequencies(height, width)
    np.testing.assert_allclose(frequencies[3, 5], np.hypot(3 / height, 5 / width))
    np.testing.assert_allclose(frequencies[-3, 5], np.hypot(3 / height, 5 / width))
    scale = fv.fourier_scale(height, width, decay_power=1.0)
    assert scale.shape == (height, width // 2 + 1)
    np.testing.assert_allclose(np.sqrt(np.mean(scale ** 2)), 1.0, rtol=1e-5)   # RMS 1
    # 1/|f|: doubling the frequency halves the scale; the constant term is capped at 1/max(H, W).
    np.testing.assert_allclose(scale[4, 6] / scale[2, 3], 0.5, rtol=1e-5)
    np.testing.assert_allclose(scale[0, 0], scale[0, 1] * frequencies[0, 1] * max(height, width),
                               rtol=1e-5)
    squared = fv.fourier_scale(height, width, decay_power=2.0)
    np.testing.assert_allclose(squared[4, 6] / squared[2, 3], 0.25, rtol=1e-5)
    np.testing.assert_allclose(fv.fourier_scale(height, width, decay_power=0.0), 1.0)


def test_one_coefficient_makes_one_cosine_of_the_scaled_amplitude():
    height, width, ky, kx = 16, 16, 2, 3
    param = fv.FourierImage((height, width), decorrelate=False)
    coefficients = np.zeros((1,) + param.shape, np.float32)
    coefficients[0, 0, 1, ky, kx] = 1.0                    # real part, green channel
    plane = np.asarray(param.linear(coefficients))[0, ..., 1]
    y, x = np.mgrid[:height, :width]
    # Orthonormal inverse real FFT: a coefficient c at (ky, kx) with 0 < kx < W/2 gives
    # (2 c s(f) / sqrt(HW)) cos(2π (ky y / H + kx x / W)).
    amplitude = 2 * param.scale[ky, kx] / np.sqrt(height * width)
    np.testing.assert_allclose(plane, amplitude * np.cos(2 * np.pi * (ky * y / height
                                                                       + kx * x / width)),
                               atol=1e-6)
    assert np.abs(np.asarray(param.linear(coefficients))[0, ..., [0, 2]]).max() == 0.0


def test_random_coefficients_give_a_spectrum_shaped_like_the_scale():
    # White coefficients -> an image whose power at frequency f is s(f)^2: low frequencies dominate.
    param = fv.FourierImage((32, 32), decorrelate=False)
    coefficients = np.random.default_rng(0).normal(size=(64,) + param.shape).astype(np.float32)
    planes = np.asarray(param.linear(coefficients)).transpose(0, 3, 1, 2)
    power = (np.abs(np.fft.rfft2(planes, norm="ortho")) ** 2).mean(axis=(0, 1))
    # Re and Im each of variance 1: expected power 2 s^2 (1 s^2 at the self-conjugate bins).
    interior = (slice(1, 16), slice(1, 16))
    np.testing.assert_allclose(power[interior] / (2 * param.scale[interior] ** 2), 1.0, atol=0.35)


def test_radial_power_finds_a_cosine_and_a_photo_falls_off():
    y, x = np.mgrid[:64, :64]
    wave = np.cos(2 * np.pi * 8 * x / 64)[..., None]               # 0.125 cycles per pixel
    frequencies, power = fv.radial_power(wave, bins=16)
    assert abs(frequencies[np.argmax(power)] - 0.125) < 0.02
    photo_frequencies, photo_power = fv.radial_power(h.load_image("chelsea").astype(float))
    low, high = photo_power[photo_frequencies < 0.05].mean(), photo_power[
        photo_frequencies > 0.3].mean()
    assert low > 100 * high                         # natural images: power falls with |f|
    with pytest.raises(ValueError, match="images must be"):
        fv.radial_power(np.zeros(5))


def test_pixel_image_round_trips():
    image = _smooth_image(SIZE, SIZE)[None]
    for decorrelate in (False, True):
        param = fv.PixelImage((SIZE, SIZE), decorrelate=decorrelate)
        np.testing.assert_allclose(np.asarray(param.to_pixels(param.from_pixels(image))), image,
                                   atol=2e-3)


# --------------------------------------------------------------------------
# Colour decorrelation
# --------------------------------------------------------------------------

def test_the_colour_matrix_is_a_square_root_of_a_covariance():
    root = fv.COLOUR_CORRELATION_SQRT
    covariance = root @ root.T
    np.testing.assert_allclose(covariance, covariance.T)
    assert np.all(np.linalg.eigvalsh(covariance) > 0)          # positive definite
    # An SVD square root U Λ^½: orthogonal columns (up to the two-decimal rounding of the
    # published values), of decreasing norm (the standard deviations).
    norms = np.linalg.norm(root, axis=0)
    cosines = (root.T @ root) / np.outer(norms, norms)
    assert np.abs(cosines - np.eye(3)).max() < 0.15
    assert norms[0] > 3 * norms[1] and norms[1] > 1.5 * norms[2]
    np.testing.assert_allclose(np.sort(np.linalg.svd(root, compute_uv=False))[::-1], norms,
                               rtol=0.01)
    # The main direction is brightness: equal parts of R, G and B.
    assert root[:, 0].min() > 0.9 * root[:, 0].max()
    np.testing.assert_allclose(np.linalg.norm(fv.COLOUR_MIX, axis=0).max(), 1.0, rtol=1e-6)


def test_decorrelation_round_trips_and_matches_the_photos():
    rgb = np.random.default_rng(0).normal(size=(5, 7, 3)).astype(np.float32)
    np.testing.assert_allclose(fv.decorrelated_to_rgb(fv.rgb_to_decorrelated(rgb)), rgb,
                               atol=1e-4)
    # The bundled photos' main colour direction is ImageNet's: brightness, within a few degrees.
    pixels = np.concatenate([h.load_image(name).reshape(-1, 3) / 255.0
                             for name in h.sample_names()])
    _, vectors = np.linalg.eigh(np.cov(pixels.T))
    main = fv.COLOUR_CORRELATION_SQRT[:, 0] / np.linalg.norm(fv.COLOUR_CORRELATION_SQRT[:, 0])
    assert abs(vectors[:, -1] @ main) > 0.98


# --------------------------------------------------------------------------
# Transformations
# --------------------------------------------------------------------------

def _apply(transforms, image, draws):
    matrices = transforms.matrices(image.shape[1:3], draws).astype(np.float32)
    return np.asarray(fv.warp(image, matrices))


def test_transforms_are_seeded_and_within_their_ranges():
    transforms = fv.Transforms(pad=4, jitter=3, scale=(0.8, 1.2), rotation=7.0)
    first, again, other = (transforms.draw(200, seed) for seed in (1, 1, 2))
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.1
    assert first.shape == (200, 4)
    assert set(np.unique(first[:, :2])) <= set(range(-3, 4)) and np.abs(first[:, :2]).max() == 3
    assert 0.8 <= first[:, 2].min() and first[:, 2].max() <= 1.2
    assert np.abs(first[:, 3]).max() <= 7.0 and np.abs(first[:, 3]).max() > 6.0


def test_transforms_keep_the_shape_and_the_identity_is_exact():
    image = _smooth_image(SIZE, 20)[None]
    standard = fv.Transforms()
    moved = _apply(standard, image, standard.draw(1, 0))
    assert moved.shape == image.shape
    identity = fv.Transforms.none()
    assert identity.identity and not standard.identity
    np.testing.assert_array_equal(_apply(identity, image, identity.draw(3, 0)[:1]), image)


def test_a_jitter_is_a_whole_pixel_shift_with_grey_coming_in():
    image = _smooth_image(SIZE, SIZE)[None]
    shifted = _apply(fv.Transforms.none(), image, np.array([[3.0, -2.0, 1.0, 0.0]]))
    expected = np.full_like(image, 127.5)
    expected[:, :-2, 3:] = image[:, 2:, :-3]          # right by 3, up by 2
    np.testing.assert_allclose(shifted, expected, atol=1e-3)


def test_padding_shrinks_the_view_about_the_centre():
    image = np.full((1, 20, 20, 3), 200.0, np.float32)
    padded = _apply(fv.Transforms(pad=5, jitter=0, scale=None, rotation=0), image,
                    np.array([[0.0, 0.0, 1.0, 0.0]]))
    # The view covers 30 pixels in 20: the image fills the middle 2/3, grey around it.
    np.testing.assert_allclose(padded[0, 10, :2], 127.5, atol=1e-3)
    np.testing.assert_allclose(padded[0, 5:15, 5:15], 200.0, atol=1e-3)


def test_rotation_and_zoom_match_scipy_and_tf_keras_vis():
    # scipy.ndimage (the resampler tf-keras-vis' Rotate2D and Scale call) as the reference.
    image = _smooth_image(32, 32)[None]
    none = fv.Transforms.none()
    rotated = _apply(none, image, np.array([[0.0, 0.0, 1.0, 20.0]]))
    reference = scipy.ndimage.rotate(image[0], 20.0, reshape=False, order=1,
                                     mode="constant", cval=127.5)
    inner = (slice(8, 24), slice(8, 24))
    np.testing.assert_allclose(rotated[0][inner], reference[inner], atol=0.05)
    # tf-keras-vis' own Rotate2D (reflecting at the border) agrees inside the image.
    from tf_keras_vis.activation_maximization.input_modifiers import Rotate2D

    class Fixed:
        def uniform(self, low, high):
            return 20.0

    modifier = Rotate2D(degree=20.0)
    modifier.random_generator = Fixed()
    np.testing.assert_allclose(rotated[0][inner], np.asarray(modifier(image))[0][inner],
                               atol=0.05)
    np.testing.assert_allclose(_apply(none, image, np.array([[0.0, 0.0, 1.0, 90.0]]))[0],
                               np.rot90(image[0], k=1), atol=1e-2)
    zoomed = _apply(none, image, np.array([[0.0, 0.0, 2.0, 0.0]]))
    centre = 15.5
    matrix = np.array([[0.5, 0, 0], [0, 0.5, 0], [0, 0, 1]])
    reference = scipy.ndimage.affine_transform(image[0], matrix, offset=(centre * 0.5,
                                                                         centre * 0.5, 0),
                                               order=1, mode="constant", cval=127.5)
    np.testing.assert_allclose(zoomed[0], reference, atol=0.05)


# --------------------------------------------------------------------------
# The optimiser
# --------------------------------------------------------------------------

def test_adam_step_matches_keras_adam():
    theta = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    gradients = [np.random.default_rng(i).normal(size=(4, 3)).astype(np.float32)
                 for i in range(1, 6)]
    variable = keras.Variable(theta)
    optimizer = keras.optimizers.Adam(learning_rate=0.1, beta_1=0.9, beta_2=0.999,
                                      epsilon=fv.ADAM_EPSILON)
    mine, first, second = theta, np.zeros_like(theta), np.zeros_like(theta)
    for step, gradient in enumerate(gradients, start=1):
        optimizer.apply_gradients([(-gradient, variable)])        # Keras descends: ascend on -g
        mine, first, second = fv.adam_step(mine, gradient, first, second, float(step), 0.1)
    np.testing.assert_allclose(np.asarray(mine), np.asarray(variable), atol=1e-5)


QUIET = dict(progress=False)


def _warm():
    """A start where red > blue everywhere: the colour model's ReLU passes every gradient."""
    return np.broadcast_to(np.array([150.0, 128.0, 100.0], np.float32), (SIZE, SIZE, 3)).copy()


@pytest.mark.parametrize("parameterization", ["fourier", "pixel"])
def test_a_colour_logit_is_maximised_by_its_colour(colour_cnn, parameterization):
    # logit 0 = mean(ReLU(red - blue)) on -1..1 pixels: the best input is pure red (green free).
    # A flat colour is one Fourier coefficient per channel, scaled like 1/max(H, W): it moves
    # slowly, hence the many steps.
    image = fv.visualize_class(colour_cnn, 0, parameterization=parameterization, steps=150,
                               learning_rate=0.3, transforms=None, start=_warm(), **QUIET)
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32
    # Most pixels, not all: Adam scales each coefficient's step by its own gradient history, so
    # rounding noise on a coefficient a flat image should not move (~1e-9) can still take steps
    # of full size; where that turns a spot blue, its ReLU closes and it stays blue (seen on one
    # core with AVX2 kernels: 14 pixels of 256). Such spots are true local optima of this logit.
    assert np.mean(image[..., 0] > 200) >= 0.9 and np.mean(image[..., 2] < 55) >= 0.9
    assert h.class_score(colour_cnn, image, 0) > 1.4
    blue = fv.visualize_channel(colour_cnn, "colour_activation", 1,
                                parameterization=parameterization, steps=150, learning_rate=0.3,
                                **QUIET)
    assert blue[..., 2].mean() > 200


def build_template_model(size=24):
    """logit 0 = <w, x> / n, logit 1 = -logit 0, for a smooth grey template w.

    Pixels are rescaled to -1..1, so logit 0 is at most mean|w|, reached by
    the image that is 255 where w > 0 and 0 where w < 0.
    """
    template = np.repeat(_smooth_image(size, size, seed=7)[..., :1] - 127.5, 3, axis=-1)
    inputs = keras.Input((size, size, 3))
    flat = keras.layers.Flatten()(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs))
    outputs = keras.layers.Dense(2, name="predictions")(flat)
    model = keras.Model(inputs, outputs, name="template")
    weights = np.stack([template.reshape(-1), -template.reshape(-1)], axis=1) / template.size
    model.get_layer("predictions").set_weights([weights.astype(np.float32), np.zeros(2)])
    return model, template


@pytest.mark.parametrize("parameterization", ["fourier", "pixel"])
def test_a_known_pattern_is_found(parameterization):
    model, template = build_template_model()
    optimum = np.abs(template).mean()
    images = fv.visualize_class(model, [0, 1], parameterization=parameterization, steps=200,
                                learning_rate=0.1, transforms=None, **QUIET)
    strong = np.abs(template) > 0.5 * template.std()
    for sign, image in zip((1, -1), images):
        agreement = np.mean(np.sign(image - 127.5)[strong] == np.sign(sign * template)[strong])
        assert agreement > 0.97, (sign, agreement)
    assert np.all(h.class_score(model, images, [0, 1]) > 0.9 * optimum)
    # Minimising logit 0 is maximising logit 1.
    negative = fv.visualize_class(model, 0, parameterization=parameterization, steps=200,
                                  learning_rate=0.1, transforms=None, negative=True, **QUIET)
    np.testing.assert_allclose(negative, images[1], atol=0.5)


def test_batched_equals_one_at_a_time(tiny_cnn):
    kwargs = dict(steps=12, seed=3, **QUIET)
    together = fv.visualize_class(tiny_cnn, [3, 7, 1], batch_size=2, **kwargs)
    alone = [fv.visualize_class(tiny_cnn, c, **kwargs) for c in (3, 7, 1)]
    np.testing.assert_allclose(together, np.stack(alone), atol=0.05)
    channels = fv.visualize_channel(tiny_cnn, "conv2_activation", [2, 5], batch_size=8, **kwargs)
    np.testing.assert_allclose(channels[1], fv.visualize_channel(
        tiny_cnn, "conv2_activation", 5, **kwargs), atol=0.05)


def test_seeds_repeat_and_differ(tiny_cnn):
    first = fv.visualize_class(tiny_cnn, 2, steps=6, seed=1, **QUIET)
    np.testing.assert_array_equal(first, fv.visualize_class(tiny_cnn, 2, steps=6, seed=1,
                                                            **QUIET))
    second = fv.visualize_class(tiny_cnn, [2, 2], steps=6, seed=[1, 2], **QUIET)
    np.testing.assert_allclose(second[0], first, atol=0.05)
    assert np.abs(second[1] - first).mean() > 0.5


def test_snapshots_record_the_climb():
    model, _ = build_template_model()
    snapshots = h.Snapshots(at=(1, 30))
    images = fv.visualize_class(model, [0, 1], steps=30, transforms=None, callbacks=[snapshots],
                                **QUIET)
    assert snapshots.scores.shape == (30, 2) and sorted(snapshots.images) == [1, 30]
    np.testing.assert_allclose(snapshots.images[30], images, atol=1e-4)
    assert np.all(snapshots.scores[-5:].mean(axis=0) > snapshots.scores[:5].mean(axis=0) + 1)


def test_start_from_an_image(tiny_cnn):
    photo = h.prepare("chelsea", tiny_cnn)
    for parameterization in ("fourier", "pixel"):
        image = fv.visualize_class(tiny_cnn, 0, steps=1, start=photo, learning_rate=1e-4,
                                   parameterization=parameterization, **QUIET)
        # One tiny step from the photo: the photo, up to the sigmoid's margin at 0 and 255.
        assert np.abs(image - photo[0]).mean() < 0.5


def test_softmax_ending_models_are_optimised_on_their_logits(colour_cnn):
    inputs = keras.Input((SIZE, SIZE, 3))
    probabilities = keras.layers.Softmax()(colour_cnn(inputs))
    softmax_model = keras.Model(inputs, probabilities)
    kwargs = dict(steps=10, **QUIET)
    np.testing.assert_allclose(fv.visualize_class(softmax_model, [0, 1], **kwargs),
                               fv.visualize_class(colour_cnn, [0, 1], **kwargs), atol=1e-3)


def test_grayscale_models_see_the_luminance():
    inputs = keras.Input((SIZE, SIZE, 1))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    model.layers[-1].set_weights([np.array([[1.0, -1.0]], np.float32), np.zeros(2, np.float32)])
    bright = fv.visualize_class(model, 0, parameterization="pixel", steps=60, learning_rate=0.1,
                                transforms=None, **QUIET)
    assert bright.shape == (SIZE, SIZE, 3)
    # logit 0 is the mean luminance on -1..1: from 0 (grey) close to its maximum 1.
    assert h.class_score(model, bright, 0) > 0.8


def test_progress_bar_and_fast_mode(tiny_cnn, capsys, monkeypatch):
    fv.visualize_class(tiny_cnn, 0, steps=3, progress=True)
    assert "visualising class 0" in capsys.readouterr().err
    monkeypatch.setenv("UNMASKING_CNNS_FAST", "0")
    assert h.default_visualization_steps() == fv.FULL_STEPS
    monkeypatch.setenv("UNMASKING_CNNS_FAST", "1")
    assert h.default_visualization_steps() == fv.FAST_STEPS < fv.FULL_STEPS


def test_real_model_a_few_steps_climb(lite0):
    grey = np.full((224, 224, 3), 127.5, np.float32)
    image = fv.visualize_class(lite0, "espresso", steps=16, **QUIET)
    assert h.class_score(lite0, image, "espresso") > h.class_score(lite0, grey, "espresso") + 3
    # The image starts almost grey and its contrast grows step by step: a channel's mean
    # climbs by about 0.8 in 24 steps (from 0.24).
    channel = fv.visualize_channel(lite0, "block2b_expand_activation", 0, steps=24, **QUIET)
    assert h.channel_score(lite0, channel, "block2b_expand_activation", 0) > \
        h.channel_score(lite0, grey, "block2b_expand_activation", 0) + 0.5


def build_red_detector(size=64):
    """One channel = how red a pixel is (red minus the mean of green and blue), pooled by 4."""
    inputs = keras.Input((size, size, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(2, 1, name="detect")(x)
    x = keras.layers.ReLU(name="detect_activation")(x)
    x = keras.layers.AveragePooling2D(4, name="pool")(x)
    outputs = keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    kernel = np.array([[[[1.0, -1.0], [-0.5, 1.0], [-0.5, 0.0]]]], np.float32)   # ch 1: green
    model.get_layer("detect").set_weights([kernel, np.zeros(2, np.float32)])
    return model


def test_dataset_examples_find_the_crop_that_excites_the_channel():
    model = build_red_detector()
    grey = np.full((64, 64, 3), 128, np.uint8)
    red = grey.copy()
    red[36:48, 8:20] = (230, 20, 20)                                # a red patch, lower left
    green = grey.copy()
    green[4:12, 40:60] = (20, 230, 20)
    found = fv.dataset_examples(model, "pool", [0, 1], images=[grey, red, green], count=2)
    assert [example.channel for example in found] == [0, 1]
    reddest, greenest = found
    assert reddest.sources[0].startswith("image 1") and greenest.sources[0].startswith("image 2")
    assert reddest.crops.shape == (2, 32, 32, 3)                    # 4 strides of 4 -> 32 px
    crop = reddest.crops[0]
    assert np.mean((crop[..., 0] > 200) & (crop[..., 1] < 50)) > 0.1   # the patch is inside
    assert reddest.scores[0] > reddest.scores[1]
    assert len({source.split(" ×")[0] for source in reddest.sources}) == 2   # one per photo
    with pytest.raises(ValueError, match="layer: got 2 layers for 1 channels"):
        fv.dataset_examples(model, ["pool", "pool"], [0], images=[grey])
    with pytest.raises(ValueError, match="count must be a positive integer"):
        fv.dataset_examples(model, "pool", 0, images=[grey], count=0)



def test_dataset_examples_come_from_the_photo_collection_by_default():
    model = build_red_detector()
    found = fv.dataset_examples(model, "pool", 0, count=3)
    collection = set(h.photo_collection())
    assert len(found.crops) == 3
    assert {source.split(" ×")[0] for source in found.sources} <= collection
    strongest = fv.strongest_channels(model, "pool", 1)
    assert strongest.shape == (1,)

# --------------------------------------------------------------------------
# Targets and scores, on images whose scores are known
# --------------------------------------------------------------------------

def _plain(rgb):
    return np.broadcast_to(np.array(rgb, np.float32), (SIZE, SIZE, 3)).copy()


def test_pre_activation_target(colour_cnn, tiny_cnn):
    assert fv.maximization_target(colour_cnn, "colour_activation") == "colour"
    assert fv.maximization_target(colour_cnn, "colour_activation", pre_activation=False) == (
        "colour_activation")
    assert fv.maximization_target(colour_cnn, "colour") == "colour"
    # The optimised quantity is the ReLU's input: it can be negative, the ReLU's output cannot.
    black = np.zeros((SIZE, SIZE, 3), np.float32)
    assert h.channel_score(colour_cnn, black, "colour_activation", 1) == pytest.approx(-1.0)
    assert h.channel_score(colour_cnn, black, "colour_activation", 1,
                           pre_activation=False) == pytest.approx(0.0)
    assert fv.maximization_target(tiny_cnn, "conv2_activation") == "conv2"


def test_class_and_channel_scores_of_known_images(colour_cnn):
    # Pixels -1..1 after the model's rescaling: red is (1, -1, -1), blue (-1, -1, 1).
    red, blue = _plain([255, 0, 0]), _plain([0, 0, 255])
    both = np.stack([red, blue])
    score = h.class_score(colour_cnn, red, 0)
    assert isinstance(score, float) and score == pytest.approx(2.0, abs=1e-5)  # red − blue
    np.testing.assert_allclose(h.class_score(colour_cnn, both, [0, 1]), [2.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(h.class_score(colour_cnn, both, 1), [0.0, 1.0], atol=1e-5)
    np.testing.assert_allclose(h.channel_score(colour_cnn, both, "colour_activation", [0, 1]),
                               [2.0, 1.0], atol=1e-5)
    # One channel for every image; before the ReLU, red's blue channel is -1.
    np.testing.assert_allclose(h.channel_score(colour_cnn, both, "colour_activation", 1),
                               [-1.0, 1.0], atol=1e-5)
    assert fv.channels_of(colour_cnn, "colour", 1) == ([1], True)
    assert fv.channels_of(colour_cnn, "colour", np.array([0, 1])) == ([0, 1], False)


def test_score_errors_name_the_problem(colour_cnn, tiny_cnn):
    red = _plain([255, 0, 0])
    with pytest.raises(ValueError, match="channel 2 is out of range: layer 'colour' has 2 "
                                         "channels, 0..1"):
        h.channel_score(colour_cnn, red, "colour_activation", 2)
    with pytest.raises(TypeError, match="a channel is an integer index"):
        h.channel_score(colour_cnn, red, "colour", "red")
    with pytest.raises(ValueError, match="no layer named 'colours'.*Did you mean: colour"):
        h.channel_score(colour_cnn, red, "colours", 0)
    with pytest.raises(ValueError, match="'avg_pool' outputs shape \\(2,\\), not a spatial map"):
        fv.maximization_target(colour_cnn, "avg_pool")
    with pytest.raises(ValueError, match="got 2 channels for 1 images"):
        h.channel_score(colour_cnn, red, "colour", [0, 1])
    with pytest.raises(ValueError, match="'espresso' is an ImageNet class name, but the model "
                                         "has 10 classes"):
        h.class_score(tiny_cnn, np.zeros((32, 32, 3), np.float32), "espresso")
    with pytest.raises(ValueError, match="snapshot steps count from 1"):
        h.Snapshots(at=(0, 5))


def test_errors_name_the_argument(colour_cnn):
    def call(**kwargs):
        return fv.visualize_class(colour_cnn, 0, **{"steps": 1, **QUIET, **kwargs})

    cases = [
        (dict(steps=0), ValueError, "steps must be a positive integer"),
        (dict(steps=2.5), TypeError, "steps must be a positive integer"),
        (dict(learning_rate=0), ValueError, "learning_rate must be a positive number"),
        (dict(learning_rate="fast"), TypeError, "learning_rate must be a positive number"),
        (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
        (dict(parameterization="wavelet"), ValueError, "parameterization must be one of"),
        (dict(transforms="fancy"), TypeError, "transforms must be 'standard', None or"),
        (dict(seed=-1), ValueError, "seed must be a non-negative integer"),
        (dict(seed=[1, 2]), ValueError, "seed: got 2 seeds for 1 images"),
        (dict(decorrelate="yes"), TypeError, "decorrelate must be True or False"),
        (dict(decay_power=-1.0), ValueError, "decay_power must be a number in"),
        (dict(negative=1), TypeError, "negative must be True or False"),
        (dict(start="gray noise"), ValueError, "start must be None \\('noise'\\) or an image"),
        (dict(start=np.zeros((2, SIZE, SIZE, 3))), ValueError, "start holds 2 images for 1"),
    ]
    for kwargs, error, message in cases:
        with pytest.raises(error, match=message):
            call(**kwargs)
    with pytest.raises(ValueError, match="pad must be a whole number of pixels >= 0"):
        fv.Transforms(pad=-1)
    with pytest.raises(TypeError, match="jitter must be a whole number of pixels"):
        fv.Transforms(jitter=2.5)
    with pytest.raises(ValueError, match="scale\\[1\\] must be a zoom factor >= scale\\[0\\]"):
        fv.Transforms(scale=(1.2, 0.8))
    with pytest.raises(TypeError, match="scale must be None or a \\(low, high\\) zoom range"):
        fv.Transforms(scale=1.1)
    with pytest.raises(TypeError, match="rotation must be a number of degrees"):
        fv.Transforms(rotation="10")
    with pytest.raises(ValueError, match="channel 2 is out of range"):
        fv.visualize_channel(colour_cnn, "colour_activation", 2, steps=1, **QUIET)
    with pytest.raises(ValueError, match="give at least one target"):
        fv.visualize_class(colour_cnn, [], steps=1, **QUIET)
    with pytest.raises(TypeError, match="model must be a Keras model"):
        fv.visualize_class("efficientnet_lite0", 0, steps=1, **QUIET)
