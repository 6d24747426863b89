"""Feature visualisation: images a student can recognise, after Olah, Mordvintsev & Schubert.

C. Olah, A. Mordvintsev, L. Schubert (2017), *Feature Visualization*, Distill,
and their library Lucid, keep the idea of activation maximisation (climb the
gradient of a score ``S`` with respect to the image) and change three things
around it. Every piece is a small function here:

1. **The parameterisation.** The optimiser does not move pixels; it moves
   coefficients ``θ`` from which the image is made, ``x = σ(C · F⁻¹(s ⊙ θ))``:

   * ``F⁻¹`` the inverse 2-D real Fourier transform (orthonormal), one
     coefficient pair (real, imaginary) per frequency and colour;
   * ``s(f) = α / max(|f|, 1 / max(H, W))^d`` (``d`` = ``decay_power``, 1 by
     default) damps high frequencies: natural images have a power spectrum
     falling like ``1/|f|²``, so coefficients of equal size give an image with
     photo-like statistics. ``α`` normalises ``s`` to a root mean square of 1
     over all frequencies, so a coefficient step moves as much pixel energy as
     a pixel step does: only its distribution over frequencies changes;
   * ``C`` the square root of ImageNet's 3x3 colour covariance (Lucid's
     ``color_correlation_svd_sqrt``, scaled so its largest column has norm 1):
     the three coefficients of a pixel are decorrelated colours (brightness,
     then two colour opponents), mixed into correlated RGB;
   * ``σ`` a sigmoid, times 255: always valid pixels, no clipping.

   Why it matters (the preconditioning argument): for a linear ``x = Φ θ``,
   gradient ascent on ``θ`` moves the image by ``Δx = η Φ Φᵀ ∇ₓ S``; with the
   Fourier basis ``Φ Φᵀ`` multiplies the gradient's spectrum by ``s(f)²``, so
   the steps become low-frequency, decorrelated image changes instead of the
   pixel-level noise the raw gradient is made of. The optimum is the same
   (the map is onto every image); the path to it, and so what a finite
   number of steps reaches, is not. ``parameterization="pixel"`` is the same
   recipe with ``x = σ(θ)`` (optionally decorrelated), for comparison.

2. **Transformation robustness.** Before every step the network sees a
   randomly transformed copy of the image, ``S(T(x))``: padded with grey,
   shifted (jitter), scaled and rotated (:class:`Transforms`; Lucid's
   "standard transforms" are of this kind). A pattern that excites the
   network only at one exact alignment stops working, a real feature keeps
   working. The transformation is applied to the copy the network sees, not
   to the image being optimised, so nothing is blurred step after step.

3. **Adam** (Kingma & Ba 2015, *Adam: A Method for Stochastic Optimization*)
   on ``θ``, written out in :func:`adam_step`; every image of a batch has its
   own target and its own moments, so a batch gives the images one-at-a-time
   runs would give.

Seeded: the start coefficients and the transformations of every step are
drawn from ``seed`` (one per image, or one for all) before the run, so a
result repeats exactly and does not depend on what else is in the batch.
The objective is a class **logit** (softmax-ending models are explained on
their weight-sharing logit twin, :func:`helpers.pipeline.logits_model`) or
the mean of one **channel** of a layer, before its ReLU
(:func:`maximization_target`); :func:`class_score` and :func:`channel_score`
measure both objectives on an image as it is, untransformed.

Written here by hand, because it is what lesson 02 is about; tf-keras-vis'
``ActivationMaximization`` (pixel-space ascent) is the peer it is compared with
in ``benchmarks/feature_vis_benchmark.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .environment import choose, tf
import keras

from .architecture import layer_output_model, output_shape_of
from .images import load_image, resize_image
from .models import feature_model, find_layer, walk_layers
from .photos import collection_photos
from .pipeline import (LUMA_WEIGHTS, batches, cached, check_bool, check_choice, check_number,
                       check_seed, explanation_call, holder, model_batch, model_spec,
                       positive_int, predict_logits, progress_bar, resolve_classes,
                       resolve_for_model)

__all__ = [
    "visualize_class",
    "visualize_channel",
    "dataset_examples",
    "strongest_channels",
    "class_rank",
    "class_score",
    "channel_score",
    "Snapshots",
    "radial_power",
    "Transforms",
    "default_visualization_steps",
    "COLOUR_CORRELATION_SQRT",
]

FULL_STEPS = 128
FAST_STEPS = 32
MAX_STEPS = 100_000  # optimisation steps (a transform is drawn for each up front)
PARAMETERIZATIONS = ("fourier", "pixel")

# The square root of ImageNet's RGB colour covariance (pixels in 0..1), from its
# eigendecomposition Σ = U Λ Uᵀ as U Λ^½: column k is the k-th principal colour
# direction times its standard deviation (brightness first, then a red-blue and
# a green-magenta opponent). Values as published with Lucid (Olah et al. 2017;
# lucid/optvis/param/color.py, ``color_correlation_svd_sqrt``).
COLOUR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                    [0.27, 0.00, -0.05],
                                    [0.27, -0.09, 0.03]], dtype=np.float32)
# Scaled so the largest column has norm 1: a unit step in the brightness
# coordinate is a unit step in RGB.
COLOUR_MIX = COLOUR_CORRELATION_SQRT / np.linalg.norm(COLOUR_CORRELATION_SQRT, axis=0).max()


def default_visualization_steps() -> int:
    """Adam steps per image: :data:`FULL_STEPS`, or :data:`FAST_STEPS` in fast mode."""
    return choose(FULL_STEPS, FAST_STEPS)


# --------------------------------------------------------------------------
# Colour decorrelation
# --------------------------------------------------------------------------

def decorrelated_to_rgb(values):
    """Decorrelated colour coordinates (..., 3) to RGB: ``rgb = C · values`` per pixel."""
    return values @ tf.constant(COLOUR_MIX.T) if tf.is_tensor(values) else \
        np.asarray(values, np.float32) @ COLOUR_MIX.T


def rgb_to_decorrelated(values) -> np.ndarray:
    """The inverse of :func:`decorrelated_to_rgb` (numpy): ``values = C⁻¹ · rgb``."""
    return np.asarray(values, np.float32) @ np.linalg.inv(COLOUR_MIX).T.astype(np.float32)


# --------------------------------------------------------------------------
# The Fourier basis
# --------------------------------------------------------------------------

def fourier_frequencies(height: int, width: int) -> np.ndarray:
    """``|f|`` in cycles per pixel for each coefficient of a real 2-D FFT: (H, W // 2 + 1)."""
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    return np.sqrt(fx * fx + fy * fy)


def fourier_scale(height: int, width: int, decay_power: float = 1.0) -> np.ndarray:
    """``s(f) = α / max(|f|, 1 / max(H, W))^d``, with ``α`` giving ``s`` a root mean square of 1.

    The floor ``1 / max(H, W)`` (the lowest non-zero frequency) keeps the
    constant term from being infinite.
    """
    frequencies = fourier_frequencies(height, width)
    scale = 1.0 / np.maximum(frequencies, 1.0 / max(height, width)) ** decay_power
    return (scale / np.sqrt(np.mean(scale ** 2))).astype(np.float32)


class FourierImage:
    """``x = 255 σ(C · F⁻¹(s ⊙ θ))`` with θ: (N, 2, 3, H, W // 2 + 1) (see the module)."""

    name = "fourier"

    def __init__(self, size, *, decorrelate: bool = True, decay_power: float = 1.0):
        self.height, self.width = int(size[0]), int(size[1])
        self.decorrelate = decorrelate
        self.decay_power = float(decay_power)
        self.scale = fourier_scale(self.height, self.width, self.decay_power)

    @property
    def shape(self):
        return (2, 3, self.height, self.width // 2 + 1)

    def linear(self, coefficients):
        """``F⁻¹(s ⊙ θ)`` in decorrelated (or RGB) colour coordinates, (N, H, W, 3)."""
        coefficients = tf.convert_to_tensor(coefficients, tf.float32)
        spectrum = tf.complex(coefficients[:, 0], coefficients[:, 1]) * tf.cast(
            self.scale, tf.complex64)
        # irfft2d divides by H·W; the orthonormal transform divides by its square root.
        planes = tf.signal.irfft2d(spectrum, fft_length=[self.height, self.width])
        planes = planes * np.float32(np.sqrt(self.height * self.width))
        return tf.transpose(planes, (0, 2, 3, 1))

    def to_pixels(self, coefficients):
        """The image, float32 (N, H, W, 3) pixels in 0..255."""
        values = self.linear(coefficients)
        if self.decorrelate:
            values = decorrelated_to_rgb(values)
        return 255.0 * tf.sigmoid(values)

    def from_pixels(self, images) -> np.ndarray:
        """Coefficients θ whose image is ``images`` (pixels strictly inside 0..255)."""
        values = _logit(images)
        if self.decorrelate:
            values = rgb_to_decorrelated(values)
        spectrum = np.fft.rfft2(np.transpose(values, (0, 3, 1, 2)), norm="ortho") / self.scale
        return np.stack([spectrum.real, spectrum.imag], axis=1).astype(np.float32)


class PixelImage:
    """``x = 255 σ(θ)`` (or ``255 σ(C θ)`` decorrelated), θ: (N, H, W, 3): one value per pixel."""

    name = "pixel"

    def __init__(self, size, *, decorrelate: bool = False):
        self.height, self.width = int(size[0]), int(size[1])
        self.decorrelate = decorrelate

    @property
    def shape(self):
        return (self.height, self.width, 3)

    def to_pixels(self, values):
        values = tf.convert_to_tensor(values, tf.float32)
        if self.decorrelate:
            values = decorrelated_to_rgb(values)
        return 255.0 * tf.sigmoid(values)

    def from_pixels(self, images) -> np.ndarray:
        values = _logit(images)
        return rgb_to_decorrelated(values) if self.decorrelate else values


def _logit(images) -> np.ndarray:
    """The inverse of ``255 σ(·)``; pixels are kept a hair inside 0..255 so it is finite."""
    fraction = np.clip(np.asarray(images, np.float64) / 255.0, 1e-4, 1 - 1e-4)
    return np.log(fraction / (1 - fraction)).astype(np.float32)


def radial_power(images, bins: int = 24):
    """The power spectrum of images averaged over rings of equal ``|f|``: (frequencies, power).

    ``images`` (H, W, C) or (N, H, W, C), any real values (an image, a
    gradient, a step); the mean over images and channels of
    ``|FFT(x − mean x)|²`` (orthonormal), in ``bins`` rings between 0 and
    0.5 cycles per pixel. Natural photos fall roughly like ``1/|f|²``.
    """
    values = np.asarray(images, np.float64)
    if values.ndim == 3:
        values = values[None]
    if values.ndim != 4:
        raise ValueError(f"images must be (H, W, C) or (N, H, W, C); got shape {values.shape}")
    bins = positive_int(bins, "bins")
    planes = np.moveaxis(values - values.mean(axis=(1, 2), keepdims=True), -1, 1)
    power = (np.abs(np.fft.rfft2(planes, norm="ortho")) ** 2).mean(axis=(0, 1))
    frequencies = fourier_frequencies(*values.shape[1:3])
    edges = np.linspace(0.0, 0.5, bins + 1)
    ring = np.digitize(frequencies, edges) - 1
    centres, means = [], []
    for k in range(bins):
        inside = (ring == k) & (frequencies > 0)
        if inside.any():
            centres.append(frequencies[inside].mean())
            means.append(power[inside].mean())
    return np.array(centres), np.array(means)


PARAMETERIZATION_CLASSES = {"fourier": FourierImage, "pixel": PixelImage}


# --------------------------------------------------------------------------
# Transformation robustness
# --------------------------------------------------------------------------

def shift_matrix(dx, dy) -> np.ndarray:
    """(N, 3, 3) homogeneous matrices ``p -> p + (dx, dy)``."""
    dx, dy = np.broadcast_arrays(np.asarray(dx, np.float64), np.asarray(dy, np.float64))
    matrices = np.tile(np.eye(3), dx.shape + (1, 1))
    matrices[..., 0, 2], matrices[..., 1, 2] = dx, dy
    return matrices


def zoom_matrix(fx, fy=None) -> np.ndarray:
    """(N, 3, 3) matrices ``p -> (fx · x, fy · y)`` (``fy`` defaults to ``fx``)."""
    fx = np.asarray(fx, np.float64)
    fy = fx if fy is None else np.asarray(fy, np.float64)
    fx, fy = np.broadcast_arrays(fx, fy)
    matrices = np.tile(np.eye(3), fx.shape + (1, 1))
    matrices[..., 0, 0], matrices[..., 1, 1] = fx, fy
    return matrices


def rotation_matrix(degrees) -> np.ndarray:
    """(N, 3, 3) matrices rotating ``p`` by ``degrees``; with image axes (x right, y down)
    a positive angle turns clockwise on the screen."""
    radians = np.deg2rad(np.asarray(degrees, np.float64))
    cos, sin = np.cos(radians), np.sin(radians)
    matrices = np.tile(np.eye(3), radians.shape + (1, 1))
    matrices[..., 0, 0], matrices[..., 0, 1] = cos, -sin
    matrices[..., 1, 0], matrices[..., 1, 1] = sin, cos
    return matrices


class Transforms:
    """The random transformations the network sees the image through, drawn per step.

    For each step and image: ``pad`` pixels of grey around the image (the
    network's view is that much larger, then resized to the model's input),
    a shift of up to ± ``jitter`` whole pixels, a zoom by a factor drawn
    from ``scale`` = (low, high), a rotation of up to ± ``rotation``
    degrees. They are combined into one affine map and applied as one
    bilinear resampling, so the view has the image's shape and is blurred
    at most once. ``Transforms.none()`` is the identity.

    The defaults are wider than Lucid's standard transforms (pad 12, jitter
    8 then 4, scale 0.9..1.1, rotation ±10°). On EfficientNet-Lite0, 16
    class images judged by EfficientNet-Lite2
    (``benchmarks/feature_vis_benchmark.py``): with 128 steps of 0.1 both
    get the target ranked first for 14 of 16, the wider ranges drawing
    larger, more coherent objects; with 256 steps of 0.05 the wider ranges
    get 16 of 16, Lucid-like ones 12.
    """

    def __init__(self, *, pad: int = 12, jitter: int = 16, scale=(0.8, 1.2),
                 rotation: float = 15.0):
        self.pad = _non_negative_int(pad, "pad")
        self.jitter = _non_negative_int(jitter, "jitter")
        self.scale = _zoom_range(scale)
        self.rotation = check_number(rotation, "rotation", minimum=0.0, maximum=180.0,
                                     accepted="a number of degrees")

    @classmethod
    def none(cls) -> "Transforms":
        return cls(pad=0, jitter=0, scale=None, rotation=0.0)

    def __repr__(self):
        return (f"Transforms(pad={self.pad}, jitter={self.jitter}, scale={self.scale}, "
                f"rotation={self.rotation:g})")

    @property
    def identity(self) -> bool:
        return not (self.pad or self.jitter or self.rotation) and self.scale == (1.0, 1.0)

    def draw(self, steps: int, seed: int) -> np.ndarray:
        """(steps, 4): shift x, shift y (pixels), zoom, angle (degrees) for each step."""
        rng = np.random.default_rng([seed, 1])
        shifts = rng.integers(-self.jitter, self.jitter + 1, size=(steps, 2))
        zooms = rng.uniform(*self.scale, size=steps)
        angles = rng.uniform(-self.rotation, self.rotation, size=steps)
        return np.column_stack([shifts, zooms, angles]).astype(np.float64)

    def matrices(self, size, draws) -> np.ndarray:
        """(..., 3, 3) maps from a pixel of the network's view to the image it samples.

        ``view -> image = centre · shift⁻¹ · rotation · zoom⁻¹ · pad · centre⁻¹``:
        about the image centre, the view covers ``pad`` extra pixels per side,
        content appears ``zoom`` times larger, turned counter-clockwise by the
        angle (as ``scipy.ndimage.rotate`` and ``np.rot90`` turn), and shifted
        right and down by the shift.
        """
        height, width = size
        draws = np.asarray(draws, np.float64)
        centre = shift_matrix((width - 1) / 2, (height - 1) / 2)
        uncentre = shift_matrix(-(width - 1) / 2, -(height - 1) / 2)
        pad = zoom_matrix((width + 2 * self.pad) / width, (height + 2 * self.pad) / height)
        return (centre @ shift_matrix(-draws[..., 0], -draws[..., 1])
                @ rotation_matrix(draws[..., 3]) @ zoom_matrix(1.0 / draws[..., 2])
                @ pad @ uncentre)


def warp(images, matrices):
    """Resample ``images`` (N, H, W, C) through (N, 3, 3) view-to-image maps; grey outside."""
    matrices = tf.convert_to_tensor(matrices, tf.float32)
    flat = tf.reshape(matrices, (-1, 9))[:, :8] / matrices[:, 2:3, 2]
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=flat, output_shape=tf.shape(images)[1:3],
        fill_value=127.5, interpolation="BILINEAR", fill_mode="CONSTANT")


def _non_negative_int(value, name):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a whole number of pixels >= 0, not "
                        f"{type(value).__name__} ({value!r})")
    if value < 0:
        raise ValueError(f"{name} must be a whole number of pixels >= 0, got {value}")
    return int(value)


def _zoom_range(scale):
    if scale is None:
        return (1.0, 1.0)
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise TypeError(f"scale must be None or a (low, high) zoom range, not {scale!r}")
    low = check_number(scale[0], "scale[0]", minimum=0.0, inclusive=(False, True),
                       accepted="a zoom factor")
    high = check_number(scale[1], "scale[1]", minimum=low, accepted="a zoom factor >= scale[0]")
    return (low, high)


# --------------------------------------------------------------------------
# Adam, and one compiled optimisation step
# --------------------------------------------------------------------------

ADAM_BETAS = (0.9, 0.999)
ADAM_EPSILON = 1e-8  # Kingma & Ba's default; far below the gradients of real objectives


def adam_step(theta, gradient, first, second, step, learning_rate):
    """One Adam step of gradient *ascent* (Kingma & Ba 2015); ``step`` counts from 1.

    ``m ← β₁ m + (1 − β₁) g``, ``v ← β₂ v + (1 − β₂) g²``,
    ``θ ← θ + η m̂ / (√v̂ + ε)`` with ``m̂ = m / (1 − β₁ᵗ)``, ``v̂ = v / (1 − β₂ᵗ)``:
    every coordinate moves by about ``η`` per step whatever its gradient's scale.
    """
    beta1, beta2 = ADAM_BETAS
    first = beta1 * first + (1 - beta1) * gradient
    second = beta2 * second + (1 - beta2) * tf.square(gradient)
    corrected_first = first / (1 - beta1 ** step)
    corrected_second = second / (1 - beta2 ** step)
    theta = theta + learning_rate * corrected_first / (tf.sqrt(corrected_second) + ADAM_EPSILON)
    return theta, first, second


def _compiled_step(model, objective_key, network, objective, parameterization):
    """The step ``θ -> θ'`` (transform, forward, gradient, Adam) as one graph, cached per model."""
    gray = model_spec(model).channels == 1
    key = ("feature_vis", objective_key, parameterization.name,
           getattr(parameterization, "decorrelate", None),
           getattr(parameterization, "decay_power", None))

    def build():
        held = holder(network, model)
        shape = (None,) + parameterization.shape

        @tf.function(autograph=False, input_signature=[
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec(shape, tf.float32),
            tf.TensorSpec(shape, tf.float32), tf.TensorSpec((), tf.float32),
            tf.TensorSpec((None, 3, 3), tf.float32), tf.TensorSpec((None,), tf.int32),
            tf.TensorSpec((), tf.float32), tf.TensorSpec((), tf.float32)])
        def step(theta, first, second, count, matrices, targets, sign, learning_rate):
            with tf.GradientTape() as tape:
                tape.watch(theta)
                view = warp(parameterization.to_pixels(theta), matrices)
                if gray:
                    view = tf.reduce_sum(view * LUMA_WEIGHTS, axis=-1, keepdims=True)
                scores = objective(held()(view, training=False), targets)
                total = tf.reduce_sum(sign * scores)
            gradient = tape.gradient(total, theta)
            theta, first, second = adam_step(theta, gradient, first, second, count,
                                             learning_rate)
            return theta, first, second, scores

        return step

    return cached(model, key, build)


def _class_objective(logits, targets):
    return tf.gather(logits, targets, axis=1, batch_dims=1)


def _channel_objective(maps, targets):
    picked = tf.gather(maps, targets, axis=3, batch_dims=1)
    return tf.reduce_mean(picked, axis=[1, 2])


# --------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------

def _parameterization(model, parameterization, decorrelate, decay_power):
    check_choice(parameterization, "parameterization", PARAMETERIZATIONS)
    size = model_spec(model).size
    if parameterization == "fourier":
        decorrelate = True if decorrelate is None else check_bool(decorrelate, "decorrelate")
        decay_power = check_number(decay_power, "decay_power", minimum=0.0, maximum=4.0)
        return FourierImage(size, decorrelate=decorrelate, decay_power=decay_power)
    decorrelate = False if decorrelate is None else check_bool(decorrelate, "decorrelate")
    return PixelImage(size, decorrelate=decorrelate)


def _transforms(transforms):
    if transforms is None:
        return Transforms.none()
    if isinstance(transforms, Transforms):
        return transforms
    if transforms == "standard":
        return Transforms()
    raise TypeError(f"transforms must be 'standard', None or a h.Transforms(...), not "
                    f"{transforms!r}")


def _seeds(seed, count):
    if isinstance(seed, (list, tuple, np.ndarray)):
        seeds = [check_seed(value, f"seed[{i}]", allow_none=False) for i, value in enumerate(seed)]
        if len(seeds) != count:
            raise ValueError(f"seed: got {len(seeds)} seeds for {count} images; give one per "
                             "image, or one for all")
        return seeds
    return [check_seed(seed, "seed", allow_none=False)] * count


def _start(parameterization, start, seeds, model):
    if start is None or (isinstance(start, str) and start == "noise"):
        # Small random coefficients: the image starts as faint noise around grey.
        return np.stack([np.random.default_rng([seed, 0]).normal(
            0.0, 0.01, parameterization.shape).astype(np.float32) for seed in seeds])
    try:
        batch, _ = model_batch(model, start, name="start")
    except (TypeError, ValueError) as error:
        raise type(error)(f"start must be None ('noise') or an image ({error})") from None
    if batch.shape[-1] != 3:
        batch = np.repeat(batch, 3, axis=-1)
    if len(batch) == 1:
        batch = np.repeat(batch, len(seeds), axis=0)
    if len(batch) != len(seeds):
        raise ValueError(f"start holds {len(batch)} images for {len(seeds)} targets; give one "
                         f"or {len(seeds)}")
    return parameterization.from_pixels(batch)


def _optimise(model, objective_key, network, objective, targets, *, steps, seed, start,
              parameterization, decorrelate, decay_power, transforms, learning_rate,
              batch_size, negative, progress, callbacks, description):
    steps = default_visualization_steps() if steps is None else positive_int(steps, "steps")
    if steps > MAX_STEPS:  # refused before the transforms of every step are drawn
        raise ValueError(f"steps must be at most {MAX_STEPS:,} (optimisation steps), got {steps:,}")
    learning_rate = check_number(learning_rate, "learning_rate", minimum=0.0,
                                 inclusive=(False, True), accepted="a positive number")
    batch_size = positive_int(batch_size, "batch_size")
    negative = check_bool(negative, "negative")
    check_bool(progress, "progress")
    parameterization = _parameterization(model, parameterization, decorrelate, decay_power)
    transforms = _transforms(transforms)
    seeds = _seeds(seed, len(targets))
    theta_all = _start(parameterization, start, seeds, model)
    size = model_spec(model).size
    matrices = np.stack([transforms.matrices(size, transforms.draw(steps, s)) for s in seeds],
                        axis=1).astype(np.float32)                    # (steps, N, 3, 3)
    step_fn = _compiled_step(model, objective_key, network, objective, parameterization)
    to_pixels = _compiled_pixels(model, parameterization)
    callbacks = list(callbacks or [])
    sign = tf.constant(-1.0 if negative else 1.0)
    rate = tf.constant(learning_rate, tf.float32)
    # The chunks of ``batch_size`` images advance in lockstep, one step each in
    # turn, so a callback sees every image at every step.
    chunks = [dict(theta=tf.constant(theta_all[begin:end]), begin=begin, end=end,
                   targets=tf.constant(np.asarray(targets[begin:end], np.int32)))
              for begin, end in batches(len(targets), batch_size, progress=False)]
    for chunk in chunks:
        chunk["first"] = tf.zeros_like(chunk["theta"])
        chunk["second"] = tf.zeros_like(chunk["theta"])
    for callback in callbacks:
        callback.on_begin(steps=steps)
    with progress_bar(steps, progress, description, unit="step") as bar:
        for index in range(steps):
            count = tf.constant(index + 1, tf.float32)
            scores = []
            for chunk in chunks:
                chunk["theta"], chunk["first"], chunk["second"], chunk_scores = step_fn(
                    chunk["theta"], chunk["first"], chunk["second"], count,
                    tf.constant(matrices[index, chunk["begin"]:chunk["end"]]), chunk["targets"],
                    sign, rate)
                scores.append(chunk_scores.numpy())
            if callbacks:
                pixels = np.concatenate([to_pixels(chunk["theta"]).numpy() for chunk in chunks])
                for callback in callbacks:
                    callback(index, values=[pixels], grads=None, scores=[np.concatenate(scores)],
                             model_outputs=None)
            bar.update(1)
    for callback in callbacks:
        callback.on_end()
    return np.concatenate([to_pixels(chunk["theta"]).numpy() for chunk in chunks]
                          ).astype(np.float32)


def _compiled_pixels(model, parameterization):
    key = ("feature_vis_pixels", parameterization.name,
           getattr(parameterization, "decorrelate", None),
           getattr(parameterization, "decay_power", None))
    return cached(model, key, lambda: tf.function(
        parameterization.to_pixels, autograph=False,
        input_signature=[tf.TensorSpec((None,) + parameterization.shape, tf.float32)]))


class Snapshots:
    """A callback that keeps copies of the images at chosen steps, and every step's scores.

    ``Snapshots(at=(8, 32, 128))``, passed as ``callbacks=[snapshots]`` to
    :func:`visualize_class` or :func:`visualize_channel`; after the run
    ``snapshots.images[32]`` is the float32 batch ``(N, H, W, 3)`` after 32
    steps, and ``snapshots.scores`` a ``(steps, N)`` array: each image's
    score at each step (measured on the transformed copy the step climbed
    from).
    """

    def __init__(self, at=()):
        self.at = sorted({int(step) for step in at})
        if any(step < 1 for step in self.at):
            raise ValueError(f"snapshot steps count from 1; got {self.at}")
        self.images: dict[int, np.ndarray] = {}
        self._scores: list[np.ndarray] = []

    def on_begin(self, **kwargs) -> None:
        self.images, self._scores = {}, []

    def __call__(self, i, values, grads, scores, model_outputs, **kwargs) -> None:
        self._scores.append(np.asarray(scores[0], dtype=np.float32).reshape(-1))
        if i + 1 in self.at:
            self.images[i + 1] = np.array(values[0], dtype=np.float32)

    def on_end(self) -> None:
        pass

    @property
    def scores(self) -> np.ndarray:
        return np.stack(self._scores) if self._scores else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------
# Targets: a class logit, or a channel of a layer
# --------------------------------------------------------------------------

def maximization_target(model: keras.Model, layer, *, pre_activation: bool = True) -> str:
    """The layer whose output a channel objective maximises.

    With ``pre_activation`` (the default), a separate activation layer
    (ReLU, ReLU6, Activation) is replaced by the layer feeding it: like
    tf-keras-vis' ``ReplaceToLinear`` for a layer's built-in activation, this
    keeps the gradient alive where the activation is flat (below 0, or above
    6 for ReLU6). Other layers are returned as they are.
    """
    found = find_layer(model, layer)
    if len(output_shape_of(found)) != 3:
        names = [candidate.name for _, candidate in walk_layers(model)
                 if len(output_shape_of(candidate)) == 3 and not isinstance(candidate, keras.Model)]
        raise ValueError(
            f"layer {found.name!r} outputs shape {output_shape_of(found)}, not a spatial map "
            f"(h, w, channels); channel maximisation needs a convolutional layer such as "
            f"{', '.join(names[2:5])} ... {names[-1] if names else ''}")
    if pre_activation and isinstance(found, (keras.layers.ReLU, keras.layers.Activation)):
        history = getattr(found.input, "_keras_history", None)
        feeding = getattr(history, "operation", None)
        if feeding is not None and any(candidate is feeding for candidate in model.layers):
            return feeding.name
    return found.name


def channels_of(model, layer_name, channel):
    """``channel`` (an index or a list) as a list of checked indices, and whether it was one."""
    channels, single = _as_list(channel)
    count = int(output_shape_of(find_layer(model, layer_name))[-1])
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"a channel is an integer index, not {type(c).__name__}")
        if not 0 <= int(c) < count:
            raise ValueError(f"channel {int(c)} is out of range: layer {layer_name!r} has "
                             f"{count} channels, 0..{count - 1}")
    return [int(c) for c in channels], single


def class_score(model: keras.Model, images, class_index) -> np.ndarray | float:
    """The logit of ``class_index`` for one image (a float) or a batch (an array)."""
    batch, single = model_batch(model, images)
    indices = resolve_for_model(model, class_index, batch)
    logits = predict_logits(model, batch)
    scores = logits[np.arange(len(batch)), indices]
    return float(scores[0]) if single else scores


def channel_score(model: keras.Model, images, layer, channel, *,
                  pre_activation: bool = True) -> np.ndarray | float:
    """The objective of :func:`visualize_channel` on the image as it is: a channel's mean
    activation, per image (``channel``: one for all images, or one per image)."""
    target = maximization_target(model, layer, pre_activation=pre_activation)
    batch, single = model_batch(model, images)
    channels, _ = channels_of(model, target, channel)
    if len(channels) not in (1, len(batch)):
        raise ValueError(f"got {len(channels)} channels for {len(batch)} images; give one or "
                         "one per image")
    maps = np.asarray(layer_output_model(model, target)(batch, training=False), dtype=np.float32)
    picked = maps[np.arange(len(batch)), ..., np.broadcast_to(channels, (len(batch),))]
    scores = picked.reshape(len(batch), -1).mean(axis=1)
    return float(scores[0]) if single else scores


# --------------------------------------------------------------------------
# Visualisations: a class logit, or a channel of a layer
# --------------------------------------------------------------------------

def visualize_class(model: keras.Model, class_index, *, parameterization: str = "fourier",
                    steps: int | None = None, seed=0, learning_rate: float = 0.1,
                    transforms="standard", decorrelate: bool | None = None,
                    decay_power: float = 1.0, start=None, batch_size: int = 8,
                    negative: bool = False, progress: bool = True,
                    callbacks=None) -> np.ndarray:
    """The image that maximises a class logit ``z_c(T(x))``: float32 (H, W, 3) pixels 0..255.

    ``class_index``: an index or ImageNet name, or a list (one image each,
    ``(N, H, W, 3)`` back), optimised ``batch_size`` at a time as one batch.
    ``parameterization``: "fourier" (decorrelated colours unless
    ``decorrelate=False``; ``decay_power`` d of ``1/|f|^d``) or "pixel"
    (plain RGB unless ``decorrelate=True``). ``steps``: Adam steps (default
    :func:`default_visualization_steps`: 128, 32 in fast mode) of size
    ``learning_rate``. ``transforms``: "standard" (:class:`Transforms`
    defaults), a :class:`Transforms`, or None. ``seed``: one for all images
    or one per image (the start and every step's transformation).
    ``start``: None (faint noise around grey) or an image to start from.
    ``negative=True`` minimises the logit instead. ``callbacks``: e.g.
    :class:`Snapshots` (images at chosen steps, every step's scores).
    A softmax-ending model is optimised on its logits.
    """
    spec = model_spec(model)
    classes, single = _as_list(class_index)
    indices = resolve_classes(classes, len(classes), num_classes=spec.num_classes)
    images = _optimise(model, ("class",), spec.logits, _class_objective, indices, steps=steps,
                       seed=seed, start=start, parameterization=parameterization,
                       decorrelate=decorrelate, decay_power=decay_power,
                       transforms=transforms, learning_rate=learning_rate,
                       batch_size=batch_size, negative=negative, progress=progress,
                       callbacks=callbacks,
                       description=f"visualising class {', '.join(str(c) for c in classes)}")
    return images[0] if single else images


def visualize_channel(model: keras.Model, layer, channel, *, pre_activation: bool = True,
                      parameterization: str = "fourier", steps: int | None = None, seed=0,
                      learning_rate: float = 0.1, transforms="standard",
                      decorrelate: bool | None = None, decay_power: float = 1.0, start=None,
                      batch_size: int = 8, negative: bool = False, progress: bool = True,
                      callbacks=None) -> np.ndarray:
    """The image that maximises a channel's mean ``(1/hw) Σᵢⱼ A^l(T(x))[i, j, k]``.

    The "channel objective" of Olah et al. (2017). ``channel``: an index or a
    list (one image each). ``pre_activation``: maximise the input of the
    layer's ReLU (see :func:`maximization_target`).
    Only the network up to ``layer`` runs, so shallow channels are cheap.
    Other arguments as in :func:`visualize_class`.
    """
    target = maximization_target(model, layer, pre_activation=check_bool(
        pre_activation, "pre_activation"))
    channels, single = channels_of(model, target, channel)
    images = _optimise(model, ("channel", target), layer_output_model(model, target),
                       _channel_objective, channels, steps=steps, seed=seed, start=start,
                       parameterization=parameterization, decorrelate=decorrelate,
                       decay_power=decay_power, transforms=transforms,
                       learning_rate=learning_rate, batch_size=batch_size, negative=negative,
                       progress=progress, callbacks=callbacks,
                       description=f"visualising {target} channel "
                                   f"{', '.join(map(str, channels))}")
    return images[0] if single else images


def _as_list(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        if len(value) == 0:
            raise ValueError("give at least one target (a class or a channel)")
        return list(value), False
    return [value], True


# --------------------------------------------------------------------------
# Dataset examples: the photo crops that excite a channel most
# --------------------------------------------------------------------------

@dataclass
class DatasetExamples:
    """The crops of photos where one channel is most active, strongest first.

    ``crops`` float32 (K, s, s, 3) pixels; ``scores`` (K,) the channel's
    value at the crop's centre; ``sources`` (K,) "photo" or "photo ×2" (the
    photo at twice the model's size, so smaller details fill a crop).
    """

    layer: str
    channel: int
    crops: np.ndarray
    scores: np.ndarray
    sources: list


def _photo_views(model, images):
    """Each photo at the model's size, and at twice it as four quarter views."""
    height, width = model_spec(model).size
    views, names = [], []
    for index, image in enumerate(images):
        name = image if isinstance(image, str) else f"image {index}"
        photo = load_image(image)
        views.append(resize_image(photo, (height, width), "crop"))
        names.append(name)
        large = resize_image(photo, (2 * height, 2 * width), "crop")
        for top in (0, height):
            for left in (0, width):
                views.append(large[top:top + height, left:left + width])
                names.append(f"{name} ×2")
    return np.stack(views).astype(np.float32), names


def _layer_maps(model, layers, views, batch_size=16):
    """Every layer's maps for the views, from one compiled multi-output forward pass."""
    shape = (None,) + model_spec(model).input_shape

    def build():
        cut = feature_model(model, list(layers), include_output=False)
        return tf.function(lambda batch: cut(batch, training=False), autograph=False,
                           input_signature=[tf.TensorSpec(shape, tf.float32)])

    forward = cached(model, ("dataset_examples", tuple(layers)), build)
    outputs = [forward(tf.constant(views[i:i + batch_size]))
               for i in range(0, len(views), batch_size)]
    outputs = [output if isinstance(output, (list, tuple)) else [output] for output in outputs]
    return {layer: np.concatenate([np.asarray(output[k]) for output in outputs])
            for k, layer in enumerate(layers)}


def dataset_examples(model: keras.Model, layer, channel, *, images=None, count: int = 4,
                     crop_size: int | None = None, pre_activation: bool = True,
                     negative: bool = False):
    """Where a channel fires most on real photos: Olah et al.'s (2017) "dataset examples".

    ``images``: photos (default: the course's photo collection,
    ``h.collection_photos()``),
    each seen whole at the model's size and, at twice that size, in four
    quarters. For every photo the position of the channel's largest value
    (before its ReLU, as :func:`visualize_channel` maximises) is cut out,
    ``crop_size`` pixels wide (default: four strides of the layer, at least
    32, at most the input), and the ``count`` best photos are returned, one
    crop each. ``channel``: an index (one :class:`DatasetExamples`) or a
    list (a list of them); ``layer``: a name, or a list of one name per
    channel. The photos run through the network once for all of them.
    ``negative=True`` finds the crops where the channel is lowest instead
    (the counterpart of ``visualize_channel(..., negative=True)``).
    """
    count = positive_int(count, "count")
    pre_activation = check_bool(pre_activation, "pre_activation")
    sign = -1.0 if check_bool(negative, "negative") else 1.0
    channels, single = _as_list(channel)
    layers = list(layer) if isinstance(layer, (list, tuple)) else [layer] * len(channels)
    if len(layers) != len(channels):
        raise ValueError(f"layer: got {len(layers)} layers for {len(channels)} channels; give "
                         "one layer, or one per channel")
    targets = [maximization_target(model, name, pre_activation=pre_activation)
               for name in layers]
    for target, c in zip(targets, channels):
        channels_of(model, target, c)
    views, sources = _photo_views(model, _collection() if images is None else list(images))
    maps = _layer_maps(model, tuple(dict.fromkeys(targets)), views)
    height, width = views.shape[1:3]
    photo_of_view = [source.replace(" ×2", "") for source in sources]
    results = []
    for target, c in zip(targets, channels):
        layer_maps = maps[target]
        stride = height / layer_maps.shape[1]
        size = crop_size if crop_size is not None else int(np.clip(4 * stride, 32, height))
        size = min(positive_int(size, "crop_size"), height, width)
        values = sign * layer_maps[..., c].reshape(len(views), -1)
        best_position, best_value = values.argmax(axis=1), values.max(axis=1)
        chosen = []
        for view in np.argsort(-best_value, kind="stable"):
            if photo_of_view[view] not in {photo_of_view[v] for v in chosen}:   # one per photo
                chosen.append(int(view))
            if len(chosen) == count:
                break
        crops = []
        for view in chosen:
            row, column = divmod(int(best_position[view]), layer_maps.shape[2])
            top = int(np.clip((row + 0.5) * stride - size / 2, 0, height - size))
            left = int(np.clip((column + 0.5) * stride - size / 2, 0, width - size))
            crops.append(views[view, top:top + size, left:left + size])
        results.append(DatasetExamples(target, int(c), np.stack(crops),
                                       sign * best_value[chosen],
                                       [sources[view] for view in chosen]))
    return results[0] if single else results


def strongest_channels(model: keras.Model, layer, count: int = 4, *, images=None,
                       pre_activation: bool = True):
    """The ``count`` channels of a layer that the photos excite most, compared with grey.

    A channel's strength is its largest value over the views of the photos
    (as in :func:`dataset_examples`) minus its value on a plain grey image,
    so a channel that is on everywhere, even on grey, does not win.
    ``layer``: a name (an int array back) or a list of names (a dict of
    them; the photos run through the network once).
    """
    count = positive_int(count, "count")
    pre_activation = check_bool(pre_activation, "pre_activation")
    names = list(layer) if isinstance(layer, (list, tuple)) else [layer]
    targets = [maximization_target(model, name, pre_activation=pre_activation)
               for name in names]
    views, _ = _photo_views(model, _collection() if images is None else list(images))
    grey = np.full((1,) + views.shape[1:], 127.5, np.float32)
    maps = _layer_maps(model, tuple(dict.fromkeys(targets)), np.concatenate([views, grey]))
    chosen = {}
    for name, target in zip(names, targets):
        layer_maps = maps[target]
        strength = layer_maps[:-1].max(axis=(0, 1, 2)) - layer_maps[-1].mean(axis=(0, 1))
        chosen[name] = np.argsort(-strength, kind="stable")[:count]
    return chosen if isinstance(layer, (list, tuple)) else chosen[names[0]]


def class_rank(model: keras.Model, images, class_index) -> np.ndarray | int:
    """The rank (1 = top) of ``class_index`` among ``model``'s logits, per image.

    The images are made the model's size the way a photo is (rounded to
    8-bit pixels and resized, ``h.as_batch``), so an image optimised on one
    model can be judged by another with another input size: lesson 02's
    honest measure of whether an image shows a class or only fools the
    model it was optimised on.
    """
    call = explanation_call(model, images, class_index)
    logits = predict_logits(model, call.batch)
    own = logits[np.arange(len(call.batch)), call.classes]
    ranks = 1 + (logits > own[:, None]).sum(axis=1)
    return int(ranks[0]) if call.single else ranks


def _collection():
    return collection_photos()
