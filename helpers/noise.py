"""Noise images and a universal adversarial perturbation.

Two kinds of irregular input a CNN was never trained on:

* **Perlin noise** (Perlin 1985, *An Image Synthesizer*; Perlin 2002,
  *Improving Noise*): smooth random textures. Co, Munoz-Gonzalez, de Maupeou
  & Lupu 2019 (*Procedural Noise Adversarial Examples for Black-Box Attacks
  on Deep Convolutional Networks*) showed such textures alone fool ImageNet
  CNNs, often with high confidence. Written here in vectorised numpy
  (no noise package needed): random unit gradients on a lattice,
  ``n(p) = lerp(fade(t), g_corner . (p - corner))`` with Perlin's fade
  ``6t^5 - 15t^4 + 10t^3``, summed over octaves
  ``sum_k persistence^k * n(lacunarity^k * frequency * p)``; Co et al.'s
  sine colour map ``sin(2 pi * sine_frequency * noise)`` turns the blobs
  into fine contour stripes, which the model finds far more convincing.
* A **universal adversarial perturbation** (Moosavi-Dezfooli, Fawzi, Fawzi
  & Frossard 2017, *Universal Adversarial Perturbations*): one image-agnostic
  pattern delta with ``max |delta| <= epsilon`` that changes the prediction
  on most images. Their algorithm visits the images one by one and adds a
  DeepFool step (Moosavi-Dezfooli, Fawzi & Frossard 2016, *DeepFool*) for
  each image not yet fooled, projecting after each. Here instead the
  gradient version later work uses (Shafahi, Najibi, Xu, Dickerson, Davis &
  Goldstein 2020, *Universal Adversarial Training*, "SGD-UAP"; Mummadi, Brox
  & Metzen 2019, *Defending Against Universal Perturbations With Shared
  Adversarial Training*), full-batch, written by hand: projected sign-gradient ascent
  ``delta <- clip_[-eps, eps](delta + alpha * sign(sum_i g_i / mean|g_i|))``
  with ``g_i = grad_x L(clip(x_i + delta), y_i)``; each photo's gradient is
  normalised so that every photo gets one equal vote (a confident photo's
  gradient is orders of magnitude smaller than a doubtful one's).

All magnitudes are in pixel levels of the 0..255 range, as in
:mod:`helpers.adversarial`.
"""

from __future__ import annotations

import numbers

import numpy as np

from .environment import choose
from .adversarial import check_batch_size, check_epsilon, loss_and_gradient
from .pipeline import (batches, check_number, check_seed, explanation_call, model_batch,
                       positive_int, predict_logits)

__all__ = [
    "perlin_noise",
    "random_sign_noise",
    "universal_perturbation",
    "apply_perturbation",
    "fooling_rate",
]


def _check_size(size) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        height = width = int(size)
    elif isinstance(size, (tuple, list)) and len(size) == 2 and all(
            isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in size):
        height, width = int(size[0]), int(size[1])
    else:
        raise TypeError(f"size must be an integer S or a pair (height, width), not {size!r}")
    if height < 1 or width < 1 or height * width > 4096 * 4096:
        raise ValueError(f"size must be between 1 and 4096 pixels a side; got {(height, width)}")
    return height, width


MAX_NOISE_PIXELS = 2 ** 25  # count x height x width of one call (the images are returned at once)


def _check_count(count, height: int, width: int):
    if count is None:
        return None
    count = positive_int(count, "count")
    if count * height * width > MAX_NOISE_PIXELS:  # refused before the images are drawn
        raise ValueError(f"count x height x width must be at most {MAX_NOISE_PIXELS:,} pixels "
                         f"(the images are returned as one array), got {count:,} x {height} x "
                         f"{width}")
    return count


def _check_seed(seed):
    return check_seed(seed, allow_none=False)


def _positive(value, name, minimum=0.0, inclusive=False):
    return check_number(value, name, minimum=minimum, inclusive=(inclusive, True),
                        accepted=f"a number {'>=' if inclusive else '>'} {minimum:g}")


def _fade(t):
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _gradient_noise(height, width, cells_y, cells_x, rng):
    """One octave of Perlin gradient noise, about -0.7..0.7, for all pixels at once."""
    angles = rng.uniform(0.0, 2.0 * np.pi, (int(np.ceil(cells_y)) + 1, int(np.ceil(cells_x)) + 1))
    grad_x, grad_y = np.cos(angles), np.sin(angles)
    ys = (np.arange(height) + 0.5) * (cells_y / height)
    xs = (np.arange(width) + 0.5) * (cells_x / width)
    y0, x0 = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    ty, tx = (ys - y0)[:, None], (xs - x0)[None, :]
    y0, x0 = y0[:, None], x0[None, :]

    def corner(dy, dx):  # dot(gradient at corner, offset from corner)
        return grad_x[y0 + dy, x0 + dx] * (tx - dx) + grad_y[y0 + dy, x0 + dx] * (ty - dy)

    fy, fx = _fade(ty), _fade(tx)
    top = corner(0, 0) + fx * (corner(0, 1) - corner(0, 0))
    bottom = corner(1, 0) + fx * (corner(1, 1) - corner(1, 0))
    return top + fy * (bottom - top)


def _fractal_noise(height, width, frequency, octaves, persistence, lacunarity, rng):
    total = np.zeros((height, width))
    for octave in range(octaves):
        cells_x = frequency * lacunarity ** octave
        total += persistence ** octave * _gradient_noise(
            height, width, cells_x * height / width, cells_x, rng)
    return total


def perlin_noise(size=224, *, frequency: float = 4.0, octaves: int = 4, persistence: float = 0.5,
                 lacunarity: float = 2.0, sine_frequency: float = 0.0, colour=True,
                 seed: int = 0, count: int | None = None) -> np.ndarray:
    """Perlin noise image(s): float32 RGB pixels 0..255, (H, W, 3) or (count, H, W, 3).

    ``size``: S or (height, width) pixels. ``frequency``: lattice cells
    across the width in the first octave (low = large blobs). ``octaves``
    layers of finer noise, each ``lacunarity`` times the frequency and
    ``persistence`` times the amplitude of the one before. ``sine_frequency``
    phi > 0 maps the noise n through ``sin(2 pi phi n)`` (Co et al. 2019's
    colour map: stripes along the noise's contour lines); 0 keeps n. ``colour``: True
    = an independent noise field per RGB channel, False = grey, or a
    matplotlib colour map name (e.g. "twilight") applied to one field.
    Each image is stretched to the full 0..255 range. The same ``seed``
    always gives the same images.
    """
    height, width = _check_size(size)
    frequency = _positive(frequency, "frequency")
    persistence = _positive(persistence, "persistence")
    lacunarity = _positive(lacunarity, "lacunarity", 1.0, inclusive=True)
    if positive_int(octaves, "octaves") > 12:
        raise ValueError(f"octaves must be an integer from 1 to 12, not {octaves!r}")
    sine_frequency = _positive(sine_frequency, "sine_frequency", 0.0, inclusive=True)
    count_value = _check_count(count, height, width)
    colour_map = None
    if isinstance(colour, str):
        import matplotlib

        if colour not in matplotlib.colormaps:
            raise ValueError(f"colour {colour!r} is not a matplotlib colour map; use True "
                             "(RGB noise), False (grey) or a name like 'twilight' or 'viridis'")
        colour_map = matplotlib.colormaps[colour]
    elif not isinstance(colour, (bool, np.bool_)):
        raise TypeError(f"colour must be True, False or a colour map name, not {colour!r}")
    rng = np.random.default_rng(_check_seed(seed))
    images = []
    for _ in range(count_value or 1):
        fields = 3 if colour_map is None and bool(colour) else 1
        noise = np.stack([_fractal_noise(height, width, frequency, int(octaves), persistence,
                                         lacunarity, rng) for _ in range(fields)], axis=-1)
        if sine_frequency > 0:
            noise = np.sin(2.0 * np.pi * sine_frequency * noise)
        low, high = noise.min(), noise.max()
        unit = (noise - low) / (high - low) if high > low else np.full_like(noise, 0.5)
        if colour_map is not None:
            rgb = colour_map(unit[..., 0])[..., :3]
        else:
            rgb = np.broadcast_to(unit, (height, width, 3))
        images.append((rgb * 255.0).astype(np.float32))
    return images[0] if count_value is None else np.stack(images)


def random_sign_noise(size=224, epsilon: float = 8.0, *, seed: int = 0,
                      count: int | None = None) -> np.ndarray:
    """Random +-epsilon per pixel and channel: float32 (H, W, 3) or (count, H, W, 3).

    The baseline a universal perturbation is compared with: the same max-norm
    ``epsilon`` (pixel levels of 0..255), and the largest L2 norm that
    max-norm allows, but no direction chosen by the model's gradient.
    """
    height, width = _check_size(size)
    epsilon = check_epsilon(epsilon)
    count_value = _check_count(count, height, width)
    rng = np.random.default_rng(_check_seed(seed))
    shape = (count_value or 1, height, width, 3)
    noise = (rng.integers(0, 2, shape) * 2 - 1).astype(np.float32) * np.float32(epsilon)
    return noise[0] if count_value is None else noise


def _check_perturbation(perturbation, batch) -> np.ndarray:
    try:
        perturbation = np.asarray(perturbation, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"perturbation must be an array of pixel levels, not "
                        f"{type(perturbation).__name__}") from None
    shape = batch.shape[1:]
    if perturbation.shape != shape and perturbation.shape != batch.shape:
        raise ValueError(f"perturbation must have shape {shape} (one for all images) or "
                         f"{batch.shape} (one per image); got {perturbation.shape}")
    if not np.all(np.isfinite(perturbation)):
        raise ValueError("perturbation contains NaN or infinite values")
    return perturbation


def apply_perturbation(model, images, perturbation, *, fit: str = "crop") -> np.ndarray:
    """``clip_0..255(x + delta)`` for images prepared for ``model``: float32, unrounded.

    ``perturbation`` (pixel levels): (H, W, 3) for every image, or (N, H, W, 3).
    Returns (H, W, 3) for one image, (N, H, W, 3) for a batch.
    """
    batch, single = model_batch(model, images, fit=fit)
    perturbed = np.clip(batch + _check_perturbation(perturbation, batch), 0.0, 255.0)
    perturbed = perturbed.astype(np.float32)
    return perturbed[0] if single else perturbed


def fooling_rate(model, images, perturbation, *, fit: str = "crop",
                 batch_size: int = 32) -> float:
    """The share of images whose top-1 class changes when ``perturbation`` is added.

    Moosavi-Dezfooli et al.'s measure: ``mean_i [argmax f(clip(x_i + delta)) !=
    argmax f(x_i)]``; ``perturbation`` is (H, W, 3) or one per image (N, H, W, 3).
    """
    check_batch_size(batch_size)
    batch, _ = model_batch(model, images, fit=fit)
    perturbed = np.clip(batch + _check_perturbation(perturbation, batch), 0.0, 255.0)
    clean = np.argmax(predict_logits(model, batch, batch_size), axis=-1)
    attacked = np.argmax(predict_logits(model, perturbed.astype(np.float32), batch_size), axis=-1)
    return float(np.mean(clean != attacked))


def universal_perturbation(model, images, class_index=None, *, epsilon: float = 10.0,
                           steps: int | None = None, step_size: float | None = None,
                           fit: str = "crop", batch_size: int = 16,
                           progress: bool = True) -> np.ndarray:
    """One perturbation delta, ``max |delta| <= epsilon``, that fools ``model`` on most images.

    Projected sign-gradient ascent on the summed loss of all images, the
    gradient method of Shafahi et al. 2020 (*Universal Adversarial Training*,
    SGD-UAP) with the full batch, not the DeepFool-based algorithm of
    Moosavi-Dezfooli et al. 2017 (*Universal Adversarial Perturbations*):
    ``delta <- clip_[-eps, eps](delta + alpha * sign(sum_i g_i / mean|g_i|))``
    with ``g_i = grad_x L(clip_0..255(x_i + delta), y_i)``, y_i =
    ``class_index`` (None = the clean prediction), starting from delta = 0,
    so it is deterministic. ``epsilon`` and ``step_size`` alpha are pixel
    levels of 0..255 (alpha None = epsilon / 4); ``steps`` None = 40 (12 in
    fast mode). Returns float32 (H, W, 3) at the model's input size.
    """
    check_batch_size(batch_size)
    epsilon = check_epsilon(epsilon)
    steps = positive_int(choose(40, 12) if steps is None else steps, "steps")
    step_size = epsilon / 4 if step_size is None else _positive(step_size, "step_size")
    call = explanation_call(model, images, class_index, fit=fit)
    batch, labels = call.batch, call.classes
    perturbation = np.zeros(batch.shape[1:], dtype=np.float32)
    for _ in batches(steps, 1, progress=progress, description="universal perturbation",
                     unit="step"):
        votes = np.zeros_like(perturbation, dtype=np.float64)
        for start in range(0, len(batch), batch_size):
            perturbed = np.clip(batch[start:start + batch_size] + perturbation, 0.0, 255.0)
            _, gradient = loss_and_gradient(model, perturbed, labels[start:start + batch_size])
            gradient = gradient.astype(np.float64)
            scale = np.mean(np.abs(gradient), axis=(1, 2, 3), keepdims=True)
            votes += np.sum(gradient / np.maximum(scale, 1e-30), axis=0)
        perturbation = np.clip(perturbation + step_size * np.sign(votes), -epsilon, epsilon)
        perturbation = perturbation.astype(np.float32)
    return perturbation
