"""Concepts: not only *where* the model looks, but *what* it looks for.

Every map of the earlier lessons answers "which pixels"; this module answers
"which human-meaningful concept" (stripes, dots, a watermark) a class
depends on, with two methods:

* **Concept activation vectors and TCAV** (Kim, Wattenberg, Gilmer, Cai,
  Wexler, Viegas & Sayres 2018, *Interpretability Beyond Feature Attribution:
  Quantitative Testing with Concept Activation Vectors (TCAV)*, ICML). A
  concept is a set of example images. At a layer l, with f_l(x) its
  activations, a linear classifier separates the concept's activations from
  those of random images; the **CAV** v_C^l is the unit normal of its
  decision boundary, pointing towards the concept. The **conceptual
  sensitivity** of class k is the directional derivative of the class logit
  h_{l,k} (the rest of the network after l) along the CAV,

      S_{C,k,l}(x) = lim_{e->0} (h_{l,k}(f_l(x) + e v_C^l) - h_{l,k}(f_l(x))) / e
                   = grad h_{l,k}(f_l(x)) . v_C^l,

  and the **TCAV score** is the share of the class's images whose logit
  grows along the CAV: TCAV_{C,k,l} = |{x in X_k : S_{C,k,l}(x) > 0}| / |X_k|.
  A score says nothing alone: a CAV of *random* images has one too. So, as
  in the paper, CAVs are trained against R random sets, the R scores of the
  concept are compared with R scores of random-vs-random CAVs by a two-sided
  t-test, and the p-values are corrected for the number of concepts and
  layers tested (Bonferroni, or Holm's step-down). A concept whose scores
  do not differ from random ones is reported as not significant, whatever
  its mean score.
* **Concept discovery, CRAFT** (Fel, Picard, Bethune, Boissin, Vigouroux,
  Colin, Cadene & Serre 2023, *CRAFT: Concept Recursive Activation
  FacTorization for Explainability*, CVPR). No concept is given: crops of a
  class's images are passed through the network, their (non-negative, after
  a ReLU) activations A at a layer, averaged over positions, are factorised
  by non-negative matrix factorisation, A ~ U W with U, W >= 0; each of the
  k rows of W is a concept, each crop's row of U says how much of each it
  holds. The crops with the largest coefficients show what a concept is;
  its importance for the class is the total-order Sobol index of its
  coefficient (perturb U by random masks, rebuild A' = (M * U) W, run the
  rest of the network, and measure the share of the logit's variance each
  concept's mask explains; Jansen's estimator on a Sobol sequence); and on
  a photo, the coefficients of every position (U of its activations at each
  cell) are the concept's map.

What comes from libraries and what is written here: the linear classifier
is scikit-learn's ``LogisticRegression``, the factorisation scikit-learn's
``NMF``, the t-test ``scipy.stats.ttest_ind`` and the quasi-random design
``scipy.stats.qmc.Sobol``. Written here, because they are the lesson: the
concept examples (procedural textures, photo crops, the watermark),
the batched gradients and directional derivatives, the test's design
(random counterparts, the random-vs-random null, the correction), the
Jansen estimator and the concept maps.

Concept examples are built offline from what ships with the course:
:func:`texture_images` (stripes, dots, checkerboard, zigzag, colour fields,
seeded), :func:`photo_crops` and :func:`random_images` (the photo
collection), :func:`watermark_images` (lesson 10's ImageNet-W watermark on
photos, beside the same photos without it). Images are float32 0..255 RGB
at the model's size, like every other image of the course.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field

import numpy as np

from .environment import choose, tf

from .architecture import Table
from .cam import upsample_map
from .images import load_image, resize_image, target_size
from .models import feature_model, find_layer, last_spatial_layer, spatial_layers
from .photos import collection_photos
from .pipeline import (batches, cached, check_bool, check_choice, check_number, check_seed,
                       class_label, explanation_call, logits_model, model_batch, model_spec,
                       positive_int, progress_bar)
from .shap_explain import split_model
from .shortcuts import add_watermark

__all__ = [
    "TEXTURES",
    "texture_images",
    "random_images",
    "concept_cavs",
    "tcav_test",
    "craft",
    "concept_maps",
]

TEXTURES = ("stripes", "dots", "checkerboard", "zigzag", "colour_field")
POOLINGS = ("flatten", "mean")
CORRECTIONS = ("bonferroni", "holm")
RANDOM = "random"  # the name of the random "concept" whose CAVs make the null distribution

MAX_CONCEPT_PIXELS = 2 ** 25  # count x height x width of the images one call returns at once
MAX_RANDOM_SETS = 50          # random counterparts of a test: one CAV per concept, layer, set
MAX_ACTIVATION_VALUES = 2 ** 27  # activations held for the CAVs (float32: 512 MB)
MAX_CRAFT_CROPS = 4096        # crops factorised by CRAFT (kept as 8-bit pixels)
MAX_CRAFT_CONCEPTS = 50       # NMF components
MAX_SOBOL_DESIGNS = 1024      # Sobol points per matrix; designs x (k + 2) passes per image
STRIPE_ANGLES = (0.0, 30.0, 45.0, 60.0, 90.0, 120.0, 135.0, 150.0)
MIN_CONTRAST = 80.0           # luma difference of a texture's two random colours (levels)


def _at_most(value: int, name: str, maximum: int, what: str) -> int:
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,} ({what}), got {value:,}")
    return value


def _check_count(count, height: int, width: int) -> int:
    count = positive_int(count, "count")
    if count * height * width > MAX_CONCEPT_PIXELS:
        raise ValueError(f"count x height x width must be at most {MAX_CONCEPT_PIXELS:,} (the "
                         f"images are returned at once), got {count:,} x {height} x {width}")
    return count


# --------------------------------------------------------------------------
# Part 1: concept examples, built offline
# --------------------------------------------------------------------------

def _luma(colour) -> float:
    return float(np.dot(colour, (0.299, 0.587, 0.114)))


def _check_colours(colours):
    if colours is None:
        return None
    try:
        array = np.asarray(colours, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError("colours must be None or a list of (r, g, b) colours in 0..255, not "
                        f"{type(colours).__name__}") from None
    if array.ndim != 2 or array.shape[1] != 3 or len(array) == 0:
        raise ValueError(f"colours must be a non-empty list of (r, g, b) colours; got shape "
                         f"{array.shape}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 255:
        raise ValueError("colours must hold (r, g, b) values in 0..255")
    return array


def _check_angles(angles) -> np.ndarray:
    values = np.atleast_1d(np.asarray(angles)) if not isinstance(angles, str) else None
    if values is None or values.dtype.kind not in "iuf" or values.ndim != 1 or not len(values):
        raise TypeError(f"angles must be a list of angles in degrees, not {angles!r}")
    if not np.all(np.isfinite(values)):
        raise ValueError("angles must be finite numbers (degrees)")
    return values.astype(np.float64)


def _colour_pair(rng, colours):
    """Two colours for a texture: random with a luma contrast of MIN_CONTRAST, or drawn from
    ``colours`` (two different ones where it has two or more)."""
    if colours is not None:
        if len(colours) == 1:
            return colours[0], colours[0]
        first, second = rng.choice(len(colours), 2, replace=False)
        return colours[first], colours[second]
    for _ in range(64):
        first, second = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        if abs(_luma(first) - _luma(second)) >= MIN_CONTRAST:
            return first, second
    return np.zeros(3), np.full(3, 255.0)


def _square_wave(phase):
    """A square wave of period 2 pi with soft (about one pixel wide) edges, in -1..1."""
    return np.clip(3.0 * np.sin(phase), -1.0, 1.0)


def _texture(kind: str, height: int, width: int, rng, colours, angles) -> np.ndarray:
    """One texture image, float64 (H, W, 3) in 0..255 before noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5
    side = min(height, width)
    angle = np.deg2rad(rng.choice(angles) + rng.uniform(-5.0, 5.0))
    u = x * np.cos(angle) + y * np.sin(angle)       # across the pattern
    w = -x * np.sin(angle) + y * np.cos(angle)      # along it
    period = max(4.0, side * rng.uniform(1 / 24, 1 / 8))
    phase = rng.uniform(0, 2 * np.pi)
    first, second = _colour_pair(rng, colours)
    if kind == "stripes":
        mix = (_square_wave(2 * np.pi * u / period + phase) + 1) / 2
    elif kind == "zigzag":
        swing = period * rng.uniform(0.5, 1.0)
        wavelength = period * rng.uniform(1.5, 3.0)
        triangle = 2 * np.abs(2 * ((w / wavelength) % 1.0) - 1) - 1
        mix = (_square_wave(2 * np.pi * (u + swing * triangle) / period + phase) + 1) / 2
    elif kind == "checkerboard":
        other = rng.uniform(0, 2 * np.pi)
        product = np.sin(np.pi * u / (period / 2) + phase) * np.sin(np.pi * w / (period / 2) + other)
        mix = (np.clip(6.0 * product, -1.0, 1.0) + 1) / 2
    elif kind == "dots":
        offset = rng.uniform(0, 1, 2)
        du = ((u / period + offset[0]) % 1.0 - 0.5) * period
        dw = ((w / period + offset[1]) % 1.0 - 0.5) * period
        radius = period * rng.uniform(0.2, 0.35)
        mix = np.clip(radius - np.hypot(du, dw) + 0.5, 0.0, 1.0)
    else:  # colour_field: one colour, shaded by a slow wave (no edges, no texture)
        slow = side * rng.uniform(1.5, 3.0)
        shade = rng.uniform(10.0, 25.0) * np.sin(2 * np.pi * u / slow + phase)
        return np.clip(first + shade[..., None], 0, 255)
    return mix[..., None] * first + (1 - mix[..., None]) * second


def texture_images(kind: str = "stripes", model_or_size=224, *, count: int = 20, colours=None,
                   angles=STRIPE_ANGLES, noise: float = 4.0, seed: int = 0) -> np.ndarray:
    """``count`` procedural texture images of one kind: float32 (count, H, W, 3), 0..255.

    ``kind``: one of :data:`TEXTURES`: "stripes" (a square wave across the
    image), "zigzag" (stripes displaced by a triangle wave along them),
    "checkerboard", "dots" (discs on a lattice) or "colour_field" (one colour
    shaded by a slow wave: a concept without edges). Each image draws its own
    angle (one of ``angles``, in degrees, +-5; 0 = the pattern varies from
    left to right, vertical stripes; 90 = horizontal stripes), period (1/24 to
    1/8 of the side, at least 4 pixels), phase and two colours of luma
    contrast >= 80 levels, from ``seed``; ``colours``: a list of (r, g, b)
    colours to draw them from instead (e.g. black and white for zebra-like
    stripes; one colour for colour fields of that colour). ``noise``: the
    standard deviation of Gaussian pixel noise (levels) added before clipping
    to 0..255. ``model_or_size``: a model (its input size) or a size.
    """
    check_choice(kind, "kind", TEXTURES)
    height, width = target_size(model_or_size)
    count = _check_count(count, height, width)
    colours = _check_colours(colours)
    angles = _check_angles(angles)
    noise = check_number(noise, "noise", minimum=0.0, accepted="a noise level in pixel levels")
    rng = np.random.default_rng(check_seed(seed, allow_none=False))
    images = np.empty((count, height, width, 3), dtype=np.float32)
    for i in range(count):
        image = _texture(kind, height, width, rng, colours, angles)
        if noise:
            image = image + rng.normal(0.0, noise, image.shape)
        images[i] = np.clip(image, 0, 255)
    return images


@functools.lru_cache(maxsize=1)
def _collection_pixels() -> dict:
    """The photo collection as uint8 arrays, read once (46 small photos, about 16 MB)."""
    return {name: load_image(name) for name in collection_photos()}


def _photo_sources(photos, exclude):
    """(names, uint8 images) of the photos to crop: the collection, or those given."""
    if photos is None:
        names = collection_photos(exclude=exclude)
        pixels = _collection_pixels()
        return names, [pixels[name] for name in names]
    if isinstance(photos, (str, np.ndarray)):
        photos = [photos]
    if not isinstance(photos, (list, tuple)) or not photos:
        raise TypeError("photos must be None (the photo collection) or a non-empty list of "
                        f"images or photo names, not {type(photos).__name__}")
    names = [item if isinstance(item, str) else f"photo {i}" for i, item in enumerate(photos)]
    return names, [load_image(item) for item in photos]


def photo_crops(model_or_size=224, *, count: int = 20, photos=None,
                min_fraction: float = 0.25, max_fraction: float = 0.75, seed: int = 0,
                exclude=()) -> np.ndarray:
    """``count`` random crops of photos, resized to the model's size: float32 (count, H, W, 3).

    Each crop picks a photo (the collection's, ``h.collection_photos()``
    without ``exclude``, or ``photos``: names or images), a side of
    ``min_fraction`` to ``max_fraction`` of the photo's shorter side (the
    target's aspect ratio), a position, and is resized (bilinear) to the size,
    all from ``seed``. ``max_fraction=1`` allows whole photos.
    """
    height, width = target_size(model_or_size)
    count = _check_count(count, height, width)
    low = check_number(min_fraction, "min_fraction", minimum=0.0, maximum=1.0,
                       inclusive=(False, True), accepted="a fraction of the photo's side")
    high = check_number(max_fraction, "max_fraction", minimum=0.0, maximum=1.0,
                        inclusive=(False, True), accepted="a fraction of the photo's side")
    if high < low:
        raise ValueError(f"max_fraction ({high}) must be at least min_fraction ({low})")
    rng = np.random.default_rng(check_seed(seed, allow_none=False))
    _, sources = _photo_sources(photos, exclude)
    chosen = rng.choice(len(sources), count, replace=count > len(sources))
    images = np.empty((count, height, width, 3), dtype=np.float32)
    for i, source in enumerate(chosen):
        photo = sources[source]
        rows, cols = photo.shape[:2]
        scale = rng.uniform(low, high) * min(rows, cols / (width / height))
        crop_rows = int(np.clip(round(scale), 1, rows))
        crop_cols = int(np.clip(round(scale * width / height), 1, cols))
        top = int(rng.integers(0, rows - crop_rows + 1))
        left = int(rng.integers(0, cols - crop_cols + 1))
        crop = np.ascontiguousarray(photo[top:top + crop_rows, left:left + crop_cols])
        images[i] = resize_image(crop, (height, width), fit="squash")
    return images


def random_images(model_or_size=224, *, count: int = 20, seed: int = 0, exclude=()) -> np.ndarray:
    """A random concept set: ``count`` random crops of the photo collection, 30 % of a photo's
    side up to the whole photo (:func:`photo_crops`), float32 (count, H, W, 3).

    TCAV's counterpart and null (Kim et al. 2018 drew random ImageNet images;
    the course's offline stand-in is its own photo collection, cropped at
    random so that two sets hardly ever share an image). Different seeds give
    different sets.
    """
    return photo_crops(model_or_size, count=count, min_fraction=0.3, max_fraction=1.0,
                       seed=seed, exclude=exclude)


def watermark_images(model_or_size=224, *, count: int = 20, photos=None, seed: int = 0,
                     exclude=()) -> tuple[np.ndarray, np.ndarray]:
    """The watermark concept: ``(marked, clean)``, the same photo crops with and without
    lesson 10's ImageNet-W watermark (:func:`helpers.shortcuts.add_watermark`).

    The crops (60 % of a photo's side up to the whole photo) come from
    :func:`photo_crops` with ``seed``; the two arrays differ only where the
    watermark is drawn, so a CAV trained on ``marked`` against ``clean`` can
    only find the watermark.
    """
    clean = photo_crops(model_or_size, count=count, photos=photos, min_fraction=0.6,
                        max_fraction=1.0, seed=seed, exclude=exclude)
    return add_watermark(clean), clean


# --------------------------------------------------------------------------
# Part 2: activations and gradients at layers, batched and compiled
# --------------------------------------------------------------------------

class _ConceptEngine:
    """One compiled pass per (model, layers): the activations f_l(x), and the gradients of
    a class logit with respect to them (the pre-softmax score, through the logit twin)."""

    def __init__(self, model, layers):
        self.layers = tuple(layers)
        self.features = feature_model(logits_model(model), list(self.layers))
        self.shapes = {name: tuple(int(d) for d in output.shape[1:])
                       for name, output in zip(self.layers, self.features.outputs[:-1])}
        image_spec = tf.TensorSpec((None,) + model_spec(model).input_shape, tf.float32)
        self.activations = tf.function(lambda x: self.features(x, training=False)[:-1],
                                       input_signature=[image_spec])
        self.gradients = tf.function(self._gradients, input_signature=[
            image_spec, tf.TensorSpec((None,), tf.int32)])

    def _gradients(self, images, classes):
        with tf.GradientTape() as tape:
            outputs = self.features(images, training=False)
            scores = tf.gather(outputs[-1], classes, axis=1, batch_dims=1)
        return tape.gradient(scores, outputs[:-1])


def _layer_names(model, layers) -> tuple[str, ...]:
    items = list(layers) if isinstance(layers, (list, tuple)) else [layers]
    if not items:
        raise ValueError("layers is empty: give a layer name or a list of them")
    names = tuple(dict.fromkeys(find_layer(model, item).name for item in items))
    return names


def _one_layer(model, layer) -> str:
    if isinstance(layer, (list, tuple)):
        raise TypeError(f"layer must be one layer name, not a {type(layer).__name__}")
    return _layer_names(model, layer)[0]


def _engine(model, layers) -> _ConceptEngine:
    return cached(model, ("concepts", tuple(layers)), lambda: _ConceptEngine(model, layers))


def _pool(values: np.ndarray, pooling: str, *, gradient: bool = False) -> np.ndarray:
    """(N, ...) -> (N, D). "flatten" keeps every value (as the paper); "mean" averages a
    spatial map over its positions (a gradient is summed instead: moving every position by
    v moves the mean by v, so the derivative along v is sum_p grad_p . v)."""
    values = np.asarray(values, dtype=np.float32)
    if pooling == "mean" and values.ndim == 4:
        return values.sum(axis=(1, 2)) if gradient else values.mean(axis=(1, 2))
    return values.reshape(len(values), -1)


def _pooled_size(shape: tuple, pooling: str) -> int:
    return shape[-1] if pooling == "mean" and len(shape) == 3 else int(np.prod(shape))


def _activations(engine, batch, pooling, batch_size, bar=None) -> dict:
    out = {name: np.empty((len(batch), _pooled_size(engine.shapes[name], pooling)), np.float32)
           for name in engine.layers}
    for start in range(0, len(batch), batch_size):
        stop = min(start + batch_size, len(batch))
        values = engine.activations(tf.constant(batch[start:stop]))
        for name, value in zip(engine.layers, values):
            out[name][start:stop] = _pool(value, pooling)
        if bar is not None:
            bar.update(stop - start)
    return out


def _gradients(engine, batch, classes, pooling, batch_size, progress) -> dict:
    out = {name: np.empty((len(batch), _pooled_size(engine.shapes[name], pooling)), np.float32)
           for name in engine.layers}
    for start, stop in batches(len(batch), batch_size, progress=progress,
                               description="gradients"):
        values = engine.gradients(tf.constant(batch[start:stop]),
                                  tf.constant(classes[start:stop], tf.int32))
        for name, value in zip(engine.layers, values):
            out[name][start:stop] = _pool(value, pooling, gradient=True)
    return out


def layer_activations(model, images, layer, *, pooling: str = "flatten",
                      batch_size: int = 32) -> np.ndarray:
    """f_l(x) of each image at ``layer``, as the CAVs see it: float32 (N, D).

    ``pooling="flatten"`` keeps every value of the layer's output (h x w x C
    for a spatial map; Kim et al. 2018 flatten), ``"mean"`` averages a
    spatial map over its positions (C values, blind to where a concept is).
    """
    check_choice(pooling, "pooling", POOLINGS)
    batch_size = positive_int(batch_size, "batch_size")
    name = _one_layer(model, layer)
    batch, _ = model_batch(model, images)
    return _activations(_engine(model, (name,)), batch, pooling, batch_size)[name]


# --------------------------------------------------------------------------
# Part 3: CAVs and TCAV scores
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class CAV:
    """A concept activation vector (:func:`cav`).

    ``vector``: the unit normal (D,) of the linear boundary between the
    concept's activations and its counterpart's, pointing towards the
    concept, in the space :func:`layer_activations` gives (``pooling``);
    ``accuracy``: the classifier's accuracy on held-out images (0.5: the
    layer does not separate them linearly; 1: perfectly); ``shape``: the
    layer's output shape per image.
    """

    vector: np.ndarray
    layer: str
    pooling: str
    shape: tuple
    accuracy: float
    concept: str = "concept"
    counterpart: str = RANDOM

    def __repr__(self) -> str:
        return (f"CAV({self.concept!r} vs {self.counterpart!r}, layer={self.layer!r}, "
                f"pooling={self.pooling!r}, {len(self.vector):,} values, held-out accuracy "
                f"{self.accuracy:.3f})")


def fit_cav(concept_activations, random_activations, *, test_fraction: float = 0.33,
            seed: int = 0) -> tuple[np.ndarray, float]:
    """``(unit normal, held-out accuracy)`` of a linear classifier, concept (1) vs random (0).

    scikit-learn's ``LogisticRegression`` (L2, C = 1, lbfgs) is fitted on a
    stratified ``1 - test_fraction`` of the rows (``train_test_split``,
    ``seed``) and scored on the rest, as the TCAV library does (solved to a
    tolerance of 1e-8). The
    activations are divided by one number (their root mean square), which
    keeps the regularisation comparable across layers and leaves the
    direction's meaning unchanged; the CAV is the normal w / |w| of the
    boundary, towards the concept. The fit runs in the span of the training
    rows (exact: an L2-regularised w never leaves it), so a layer of 60,000
    values costs about as much as one of 60.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    test_fraction = check_number(test_fraction, "test_fraction", minimum=0.0, maximum=1.0,
                                 inclusive=(False, False), accepted="a fraction of the images")
    seed = check_seed(seed, allow_none=False)
    positive = np.asarray(concept_activations, dtype=np.float64)
    negative = np.asarray(random_activations, dtype=np.float64)
    if positive.ndim != 2 or negative.ndim != 2 or positive.shape[1] != negative.shape[1]:
        raise ValueError(f"activations must be two (N, D) arrays of the same D; got shapes "
                         f"{positive.shape} and {negative.shape}")
    total = len(positive) + len(negative)
    held_out = int(np.ceil(test_fraction * total))
    if min(len(positive), len(negative)) < 3 or held_out < 2 or total - held_out < 2:
        raise ValueError(f"a CAV needs at least 3 images per side and, with test_fraction="
                         f"{test_fraction}, at least 2 to train on and 2 held out; got "
                         f"{len(positive)} concept and {len(negative)} random images")
    values = np.concatenate([positive, negative])
    labels = np.concatenate([np.ones(len(positive)), np.zeros(len(negative))])
    train_x, test_x, train_y, test_y = train_test_split(
        values, labels, test_size=test_fraction, stratify=labels, random_state=seed)
    scale = float(np.sqrt(np.mean(train_x ** 2)))
    scale = scale if scale > 0 else 1.0
    train, test = train_x / scale, test_x / scale
    # The L2-regularised w lies in the span of the training rows (the loss sees nothing
    # else, the penalty only grows outside it), so the classifier is fitted on coordinates
    # in an orthonormal basis V of that span: the same w, with n x n work instead of n x D.
    # With X = U S V^T: U and S^2 from the eigenvectors of X X^T, V = X^T U / S.
    values, vectors = np.linalg.eigh(train @ train.T)
    keep = values > 1e-10 * max(float(values.max()), 1e-300)
    if not keep.any():
        raise ValueError("the activations are all zero at this layer: nothing to separate")
    span = train.T @ (vectors[:, keep] / np.sqrt(values[keep]))      # V, (D, rank)
    classifier = LogisticRegression(C=1.0, tol=1e-8, max_iter=10_000)
    classifier.fit(train @ span, train_y)
    normal = span @ classifier.coef_[0]
    length = float(np.linalg.norm(normal))
    if length == 0.0:
        raise ValueError("the concept's and the random images' activations are identical at "
                         "this layer: no direction separates them")
    accuracy = float(classifier.score(test @ span, test_y))
    return (normal / length).astype(np.float32), accuracy


def cav(model, concept_images, random_set, layer, *, pooling: str = "flatten",
        test_fraction: float = 0.33, seed: int = 0, concept: str = "concept",
        counterpart: str = RANDOM, batch_size: int = 32) -> CAV:
    """The concept activation vector of one concept against one set of other images.

    v_C^l = w / |w|, w the normal of a linear classifier (scikit-learn's
    logistic regression, :func:`fit_cav`) separating f_l(concept images)
    from f_l(``random_set``) (e.g. :func:`random_images`) at ``layer``
    (Kim et al. 2018). Activations are
    flattened (the paper) or averaged over positions (``pooling="mean"``).
    The CAV reports the classifier's held-out accuracy.
    """
    check_choice(pooling, "pooling", POOLINGS)
    check_number(test_fraction, "test_fraction", minimum=0.0, maximum=1.0,
                 inclusive=(False, False), accepted="a fraction of the images")
    check_seed(seed, allow_none=False)
    batch_size = positive_int(batch_size, "batch_size")
    name = _one_layer(model, layer)
    engine = _engine(model, (name,))
    positive, _ = model_batch(model, concept_images, name="concept_images")
    negative, _ = model_batch(model, random_set, name="random_set")
    vector, accuracy = fit_cav(_activations(engine, positive, pooling, batch_size)[name],
                               _activations(engine, negative, pooling, batch_size)[name],
                               test_fraction=test_fraction, seed=seed)
    return CAV(vector, name, pooling, engine.shapes[name], accuracy, str(concept),
               str(counterpart))


def _one_target(call, name: str = "class_index") -> int:
    classes = np.unique(call.classes)
    if len(classes) != 1:
        raise ValueError(f"{name}: TCAV and CRAFT explain one class for all the images; got "
                         f"{len(classes)} different classes (give one class index or name)")
    return int(classes[0])


def _check_cav(model, value, engine_shapes) -> CAV:
    if not isinstance(value, CAV):
        raise TypeError(f"cav must be a CAV (from h.concepts.cav), not {type(value).__name__}")
    if engine_shapes[value.layer] != value.shape:
        raise ValueError(f"cav was trained on layer {value.layer!r} of output shape "
                         f"{value.shape}; in model {model.name!r} it has shape "
                         f"{engine_shapes[value.layer]}")
    return value


def directional_derivatives(model, images, class_index, cav, *, batch_size: int = 32,
                            progress: bool = True) -> np.ndarray:
    """S_{C,k,l}(x) = grad h_{l,k}(f_l(x)) . v_C^l for each image: float32 (N,).

    The gradient of the class logit (the score before any softmax, through
    the pipeline's logit twin; a contrast ``h.contrast(a, b)`` works too)
    with respect to the layer's activations, dotted with the CAV: how fast
    the logit grows when the activations move towards the concept. For a
    CAV of averaged activations (``pooling="mean"``) the move is v at every
    position, so S = sum_p grad_p . v. Gradients run ``batch_size`` images
    at a time through one compiled function.
    """
    batch_size = positive_int(batch_size, "batch_size")
    check_bool(progress, "progress")
    if not isinstance(cav, CAV):
        raise TypeError(f"cav must be a CAV (from h.concepts.cav), not {type(cav).__name__}")
    call = explanation_call(model, images, class_index, contrasts=True)
    name = _one_layer(call.model, cav.layer)
    engine = _engine(call.model, (name,))
    _check_cav(model, cav, engine.shapes)
    gradients = _gradients(engine, call.batch, call.classes, cav.pooling, batch_size, progress)
    return gradients[name] @ cav.vector


def tcav_score(model, images, class_index, cav, *, batch_size: int = 32,
               progress: bool = True) -> float:
    """TCAV_{C,k,l} = |{x : S_{C,k,l}(x) > 0}| / |X_k|: the share of the images whose class
    logit grows along the CAV (Kim et al. 2018; :func:`directional_derivatives`)."""
    derivatives = directional_derivatives(model, images, class_index, cav,
                                          batch_size=batch_size, progress=progress)
    return float(np.mean(derivatives > 0))


# --------------------------------------------------------------------------
# Part 4: the statistical test
# --------------------------------------------------------------------------

@dataclass
class ConceptCavs:
    """The CAVs of a test (:func:`concept_cavs`): every concept against each random set, and
    the random-vs-random CAVs of the null, at every layer.

    ``vectors[(concept, layer)]``: float32 (R, D), one unit CAV per random
    counterpart (``concept`` :data:`RANDOM` for the null: the first random
    set against each of the others); ``accuracies[(concept, layer)]``: (R,)
    held-out accuracies. ``print(cavs)`` or ``cavs.table()`` shows the mean
    accuracy per concept and layer: where a concept becomes linearly
    separable.
    """

    model_name: str
    concepts: list
    layers: list
    pooling: str
    shapes: dict
    vectors: dict
    accuracies: dict
    set_sizes: dict
    random_sets: int
    seed: int

    def cav(self, concept: str, layer: str | None = None, index: int = 0) -> CAV:
        """One of the CAVs: ``concept`` against random set ``index`` at ``layer``."""
        layer = self._layer(layer)
        if (concept, layer) not in self.vectors:
            raise ValueError(f"concept must be one of {', '.join(self.concepts + [RANDOM])}, "
                             f"not {concept!r}")
        index = int(index)
        if not 0 <= index < self.random_sets:
            raise ValueError(f"index must be in 0..{self.random_sets - 1}, got {index}")
        return CAV(self.vectors[concept, layer][index], layer, self.pooling, self.shapes[layer],
                   float(self.accuracies[concept, layer][index]), concept,
                   f"{RANDOM} set {index + 1}")

    def _layer(self, layer):
        if layer is None:
            if len(self.layers) > 1:
                raise ValueError(f"layer: these CAVs have {len(self.layers)} layers; name one "
                                 f"of {', '.join(self.layers)}")
            return self.layers[0]
        if layer not in self.layers:
            raise ValueError(f"layer must be one of {', '.join(self.layers)}, not {layer!r}")
        return layer

    def table(self) -> Table:
        """Held-out CAV accuracy (mean and spread over the random counterparts)."""
        rows = [(concept, layer, round(float(np.mean(self.accuracies[concept, layer])), 3),
                 round(float(np.std(self.accuracies[concept, layer])), 3))
                for concept in self.concepts + [RANDOM] for layer in self.layers]
        return Table(["concept", "layer", "CAV accuracy", "± sd"], rows,
                     title=f"CAVs of {self.model_name!r}: held-out accuracy against "
                           f"{self.random_sets} random sets ({self.pooling} activations; "
                           f"{RANDOM!r}: random vs random)")

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def _concept_sets(concepts) -> dict:
    if not isinstance(concepts, dict):
        raise TypeError("concepts must be a dict {name: images}, e.g. {'stripes': "
                        f"h.texture_images('stripes', model)}}, not {type(concepts).__name__}")
    if not concepts:
        raise ValueError("concepts is empty: give at least one {name: images}")
    for name in concepts:
        if not isinstance(name, str) or not name:
            raise TypeError(f"concepts: each name must be a non-empty string, not {name!r}")
        if name == RANDOM:
            raise ValueError(f"concepts: {RANDOM!r} names the random sets; call the concept "
                             "something else")
    return concepts


def concept_cavs(model, concepts, layers, *, random_sets=None, set_size: int | None = None,
                 pooling: str = "flatten", test_fraction: float = 0.33, seed: int = 0,
                 batch_size: int = 32, progress: bool = True) -> ConceptCavs:
    """Every CAV a TCAV test needs, as Kim et al. (2018) test a concept.

    For each concept ``{name: images}`` and each layer of ``layers``, one CAV
    (:func:`fit_cav`) against each of R random sets; and for the null, R
    CAVs of a random set against the others (random vs random), which any
    concept's scores are compared with (:func:`tcav_test`).
    ``random_sets``: R, the number of random counterparts (default 10, 4 in
    fast mode; 2..50): R + 1 sets of ``set_size`` images (default 20, 8 in
    fast mode) are drawn by :func:`random_images` with seeds ``seed``,
    ``seed + 1``, ...; or a list of R + 1 image sets of your own (the first
    one is the null's random concept). ``pooling``: "flatten" (the paper)
    or "mean" (see :func:`layer_activations`). All images pass through the
    network once, ``batch_size`` at a time; the activations of all sets are
    held in memory (at most 2^27 values).
    """
    concepts = _concept_sets(concepts)
    check_choice(pooling, "pooling", POOLINGS)
    batch_size = positive_int(batch_size, "batch_size")
    check_bool(progress, "progress")
    seed = check_seed(seed, allow_none=False)
    check_number(test_fraction, "test_fraction", minimum=0.0, maximum=1.0,
                 inclusive=(False, False), accepted="a fraction of the images")
    set_size = positive_int(choose(20, 8) if set_size is None else set_size, "set_size")
    if random_sets is None:
        random_sets = choose(10, 4)
    names = _layer_names(model, layers)
    spec = model_spec(model)
    if isinstance(random_sets, (list, tuple)):
        if not 3 <= len(random_sets) <= MAX_RANDOM_SETS + 1:
            raise ValueError(f"random_sets: a list must hold 3 to {MAX_RANDOM_SETS + 1} image "
                             f"sets (the null's random concept, then the counterparts); got "
                             f"{len(random_sets)}")
        given = [model_batch(model, images, name=f"random_sets[{i}]")[0]
                 for i, images in enumerate(random_sets)]
        counterparts = len(given) - 1
        sizes = [len(batch) for batch in given]

        def random_set(i):
            return given[i]
    else:
        counterparts = positive_int(random_sets, "random_sets")
        if counterparts < 2:
            raise ValueError("random_sets must be at least 2 (a t-test needs two scores per "
                             "side)")
        _at_most(counterparts, "random_sets", MAX_RANDOM_SETS,
                 "random counterparts, each one CAV per concept and layer")
        _check_count(set_size, *spec.size)
        sizes = [set_size] * (counterparts + 1)

        def random_set(i):
            return random_images(model, count=set_size, seed=seed + i)
    engine = _engine(model, names)
    concept_batches = {name: model_batch(model, images, name=f"concepts[{name!r}]")[0]
                       for name, images in concepts.items()}
    total = sum(len(b) for b in concept_batches.values()) + sum(sizes)
    values = total * sum(_pooled_size(engine.shapes[n], pooling) for n in names)
    _at_most(values, "the activations of all the images", MAX_ACTIVATION_VALUES,
             "values held for the CAVs; use pooling='mean', fewer layers or smaller sets")

    with progress_bar(total, progress, "activations", "img") as bar:
        activations = {name: _activations(engine, batch, pooling, batch_size, bar)
                       for name, batch in concept_batches.items()}
        randoms = [_activations(engine, random_set(i), pooling, batch_size, bar)
                   for i in range(counterparts + 1)]
    set_sizes = {name: len(batch) for name, batch in concept_batches.items()}
    set_sizes[RANDOM] = sizes[0]
    vectors, accuracies = {}, {}
    jobs = [(concept, layer) for concept in list(concepts) + [RANDOM] for layer in names]
    with progress_bar(len(jobs) * counterparts, progress, "CAVs", "CAV") as bar:
        for concept, layer in jobs:
            positive = randoms[0][layer] if concept == RANDOM else activations[concept][layer]
            fitted = []
            for i in range(1, counterparts + 1):
                fitted.append(fit_cav(positive, randoms[i][layer], test_fraction=test_fraction,
                                      seed=seed + i))
                bar.update(1)
            vectors[concept, layer] = np.stack([vector for vector, _ in fitted])
            accuracies[concept, layer] = np.array([accuracy for _, accuracy in fitted])
    return ConceptCavs(model.name, list(concepts), list(names), pooling,
                       {name: engine.shapes[name] for name in names}, vectors, accuracies,
                       set_sizes, counterparts, seed)


def adjust_p_values(p_values, method: str = "bonferroni") -> np.ndarray:
    """p-values corrected for testing m hypotheses at once (family-wise error rate).

    "bonferroni": min(1, m p_i). "holm" (Holm 1979): sort p ascending,
    p_(i) -> max_{j <= i} min(1, (m - j + 1) p_(j)); never larger than
    Bonferroni's, and as safe.
    """
    check_choice(method, "correction", CORRECTIONS)
    p = np.asarray(p_values, dtype=np.float64)
    m = p.size
    if method == "bonferroni":
        return np.minimum(1.0, p * m)
    order = np.argsort(p, kind="stable")
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * p[order]))
    adjusted = np.empty(m)
    adjusted[order] = stepped
    return adjusted


@dataclass
class TcavRow:
    """One concept at one layer in a :class:`TcavResult`.

    ``scores``: the TCAV score of each CAV against a random set (R,);
    ``random_scores``: the null's (random-vs-random CAVs, R,);
    ``derivatives``: S_{C,k,l}(x) per image and CAV (N, R); ``p_value``:
    the two-sided t-test of scores vs random scores; ``corrected_p``: after
    the correction; ``significant``: corrected_p < alpha.
    """

    concept: str
    layer: str
    scores: np.ndarray
    random_scores: np.ndarray
    derivatives: np.ndarray = field(repr=False)
    accuracy: float
    p_value: float
    corrected_p: float
    significant: bool

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        return float(np.std(self.scores))


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


@dataclass
class TcavResult:
    """The TCAV test of one class (:func:`tcav_test`): one :class:`TcavRow` per concept and
    layer. ``print(result)`` or ``result.table()`` shows scores, spread, p-values and
    significance; ``result.row("stripes", "block4c_add")`` one of them."""

    class_index: int
    class_label: str
    images: int
    rows: list
    alpha: float
    correction: str
    random_sets: int

    def row(self, concept: str, layer: str | None = None) -> TcavRow:
        found = [row for row in self.rows if row.concept == concept
                 and (layer is None or row.layer == layer)]
        if not found:
            concepts = ", ".join(dict.fromkeys(row.concept for row in self.rows))
            layers = ", ".join(dict.fromkeys(row.layer for row in self.rows))
            raise ValueError(f"no row for concept {concept!r} at layer {layer!r}; concepts: "
                             f"{concepts}; layers: {layers}")
        if len(found) > 1:
            raise ValueError(f"concept {concept!r} was tested at {len(found)} layers; name one")
        return found[0]

    def significant(self, concept: str, layer: str | None = None) -> bool:
        return self.row(concept, layer).significant

    def table(self) -> Table:
        rows = [(row.concept, row.layer, round(row.mean, 3), round(row.std, 3),
                 round(float(np.mean(row.random_scores)), 3),
                 round(float(np.std(row.random_scores)), 3), round(row.accuracy, 3),
                 _p_text(row.p_value), _p_text(row.corrected_p),
                 "yes" if row.significant else "no") for row in self.rows]
        title = (f"TCAV of {self.class_label!r} on {self.images} images: {self.random_sets} "
                 f"random counterparts; two-sided t-test against random-vs-random CAVs, "
                 f"{self.correction} correction over {len(self.rows)} "
                 f"test{'s' if len(self.rows) != 1 else ''}, alpha "
                 f"{self.alpha:g}")
        return Table(["concept", "layer", "TCAV", "± sd", "random", "± sd (random)",
                      "CAV accuracy", "p", "corrected p", "significant"], rows, title=title)

    def __str__(self) -> str:
        return str(self.table())

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


def tcav_test(model, images, class_index, cavs, *, alpha: float = 0.05,
              correction: str = "bonferroni", batch_size: int = 32,
              progress: bool = True) -> TcavResult:
    """TCAV with the paper's statistical test, for one class (Kim et al. 2018).

    ``images``: the class's images; ``class_index``: the class (index,
    ImageNet name or ``h.contrast(a, b)``); ``cavs``: from
    :func:`concept_cavs`. For each concept and layer, the R TCAV scores of
    its CAVs (one per random counterpart) are compared with the R scores of
    the random-vs-random CAVs by a two-sided t-test
    (``scipy.stats.ttest_ind``, equal variances as in the TCAV library; a
    test whose two sides are constant and equal gets p = 1). The p-values of
    the m = concepts x layers tests are corrected (:func:`adjust_p_values`:
    "bonferroni" or "holm"), and a concept is significant where the
    corrected p < ``alpha``. A score far from 0.5 can still fail the test
    when the CAVs against different random sets disagree. The gradients of
    the class logit are computed once per image and layer (batched), and
    dotted with every CAV.
    """
    from scipy import stats

    if not isinstance(cavs, ConceptCavs):
        raise TypeError(f"cavs must be the CAVs of h.concept_cavs(...), not "
                        f"{type(cavs).__name__}")
    alpha = check_number(alpha, "alpha", minimum=0.0, maximum=1.0, inclusive=(False, False),
                         accepted="a significance level")
    check_choice(correction, "correction", CORRECTIONS)
    batch_size = positive_int(batch_size, "batch_size")
    check_bool(progress, "progress")
    call = explanation_call(model, images, class_index, contrasts=True)
    target = _one_target(call)
    names = _layer_names(call.model, cavs.layers)
    engine = _engine(call.model, names)
    for name in names:
        if engine.shapes[name] != cavs.shapes[name]:
            raise ValueError(f"cavs: layer {name!r} has output shape {cavs.shapes[name]} in "
                             f"the CAVs' model and {engine.shapes[name]} in {model.name!r}")
    gradients = _gradients(engine, call.batch, call.classes, cavs.pooling, batch_size, progress)

    def scores(concept, layer):
        derivatives = gradients[layer] @ cavs.vectors[concept, layer].T   # (N, R)
        return derivatives, (derivatives > 0).mean(axis=0)

    null = {layer: scores(RANDOM, layer)[1] for layer in names}
    found = []
    for concept in cavs.concepts:
        for layer in names:
            derivatives, concept_scores = scores(concept, layer)
            if np.ptp(concept_scores) == 0 and np.ptp(null[layer]) == 0:
                p = 1.0 if concept_scores[0] == null[layer][0] else 0.0
            else:
                with warnings.catch_warnings():  # one side constant (all 1): a valid test
                    warnings.filterwarnings("ignore", message="Precision loss occurred")
                    p = float(stats.ttest_ind(concept_scores, null[layer]).pvalue)
            found.append((concept, layer, derivatives, concept_scores, p))
    corrected = adjust_p_values([p for *_, p in found], correction)
    rows = [TcavRow(concept, layer, concept_scores, null[layer], derivatives,
                    float(np.mean(cavs.accuracies[concept, layer])), p, float(q), bool(q < alpha))
            for (concept, layer, derivatives, concept_scores, p), q in zip(found, corrected)]
    label = class_label(target, call.spec.num_classes, call.spec.contrasts)
    return TcavResult(target, label, len(call.batch), rows, alpha, correction, cavs.random_sets)


# --------------------------------------------------------------------------
# Part 5: concept discovery (CRAFT)
# --------------------------------------------------------------------------

def sobol_masks(dimensions: int, designs: int, *, seed: int = 0) -> np.ndarray:
    """The masks of a total-order Sobol estimate: float32 (designs x (d + 2), d) in [0, 1].

    Two matrices A and B of ``designs`` points each, from one scrambled Sobol
    sequence of 2d dimensions (``scipy.stats.qmc.Sobol``, ``seed``), then
    for each i the matrix C_i: A with column i taken from B (Saltelli's
    design). Rows are in that order: A, B, C_1, ..., C_d.
    """
    from scipy.stats import qmc

    dimensions = positive_int(dimensions, "dimensions")
    designs = positive_int(designs, "designs")
    _at_most(designs, "designs", MAX_SOBOL_DESIGNS, "Sobol points per matrix")
    with warnings.catch_warnings():  # balance is best at powers of 2; any count is valid
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol")
        points = qmc.Sobol(2 * dimensions, scramble=True,
                           seed=check_seed(seed, allow_none=False)).random(designs)
    first, second = points[:, :dimensions], points[:, dimensions:]
    mixed = []
    for i in range(dimensions):
        matrix = first.copy()
        matrix[:, i] = second[:, i]
        mixed.append(matrix)
    return np.concatenate([first, second] + mixed).astype(np.float32)


def jansen_total_indices(outputs, designs: int) -> np.ndarray:
    """Total-order Sobol indices from the outputs on :func:`sobol_masks` (Jansen 1999).

    ST_i = sum_j (f(A_j) - f(C_i,j))^2 / (2 N Var f(A)), N = ``designs``: the
    share of the output's variance that involves variable i, alone or with
    others (0: it never matters). Var is the unbiased variance of f(A),
    floored at 1e-12 (as xplique does).
    """
    outputs = np.asarray(outputs, dtype=np.float64)
    designs = positive_int(designs, "designs")
    dimensions = len(outputs) // designs - 2
    if dimensions < 1 or len(outputs) != designs * (dimensions + 2):
        raise ValueError(f"outputs must hold designs x (d + 2) values; got {len(outputs)} for "
                         f"designs={designs}")
    first = outputs[:designs]
    mixed = outputs[2 * designs:].reshape(dimensions, designs)
    variance = max(float(np.var(first, ddof=1)) if designs > 1 else 0.0, 1e-12)
    return ((first[None] - mixed) ** 2).sum(axis=1) / (2 * designs * variance)


@dataclass
class CraftResult:
    """Concepts discovered by :func:`craft` for one class.

    ``crops``: uint8 (n, s, s, 3), the crops of the class's images;
    ``crop_sources``: (n, 3), image index, top and left of each;
    ``coefficients``: U (n, k) >= 0, how much of each concept each crop holds;
    ``basis``: W (k, C) >= 0, each concept as a direction of the layer's
    channels; ``importances``: (k,), the total-order Sobol indices (or
    gradient x input, see ``importance``); ``order``: concepts, most
    important first; ``reconstruction_error``: |A - U W| / |A| (Frobenius).
    """

    layer: str
    class_index: int
    class_label: str
    crops: np.ndarray = field(repr=False)
    crop_sources: np.ndarray = field(repr=False)
    coefficients: np.ndarray = field(repr=False)
    basis: np.ndarray = field(repr=False)
    importances: np.ndarray
    importance: str
    reconstruction_error: float
    factorization: object = field(repr=False)

    @property
    def order(self) -> np.ndarray:
        return np.argsort(-self.importances, kind="stable")

    def typical_crops(self, concept: int, count: int = 6) -> np.ndarray:
        """The ``count`` crops with the largest coefficient of ``concept``: uint8 (count, s, s, 3)."""
        concept = self._concept(concept)
        count = min(positive_int(count, "count"), len(self.crops))
        return self.crops[np.argsort(-self.coefficients[:, concept], kind="stable")[:count]]

    def _concept(self, concept) -> int:
        if isinstance(concept, (bool, np.bool_)) or not isinstance(concept, (int, np.integer)):
            raise TypeError(f"concept must be a concept index (integer), not {concept!r}")
        if not 0 <= concept < len(self.importances):
            raise ValueError(f"concept must be in 0..{len(self.importances) - 1}, got {concept}")
        return int(concept)

    def table(self) -> Table:
        share = self.importances / max(float(self.importances.sum()), 1e-12)
        rows = [(int(i), round(float(self.importances[i]), 3), round(float(share[i]), 3),
                 round(float(self.coefficients[:, i].mean()), 3)) for i in self.order]
        name = "Sobol total index" if self.importance == "sobol" else "gradient x input"
        return Table(["concept", name, "share", "mean coefficient"], rows,
                     title=f"CRAFT concepts of {self.class_label!r} at {self.layer!r}: "
                           f"{len(self.crops)} crops, reconstruction error "
                           f"{self.reconstruction_error:.3f}")

    def __str__(self) -> str:
        return str(self.table())

    def _repr_html_(self) -> str:
        return self.table()._repr_html_()


IMPORTANCES = ("sobol", "gradient")


def _spatial_layer_name(model, layer) -> str:
    if layer is None:
        return last_spatial_layer(model).name
    found = find_layer(model, layer)
    shape = tuple(found.output.shape)
    if len(shape) != 4:
        names = [item.name for item in spatial_layers(model)]
        raise ValueError(f"layer {found.name!r} outputs shape {shape}, not a spatial map; CRAFT "
                         f"needs one (e.g. {', '.join(names[-3:])})")
    return found.name


def _crop_grid(size: int, crop_size: int, stride: int) -> list[int]:
    starts = list(range(0, size - crop_size + 1, stride))
    if starts[-1] != size - crop_size:
        starts.append(size - crop_size)
    return starts


def _nonnegative(values: np.ndarray, layer: str) -> np.ndarray:
    low = float(values.min())
    if low < -1e-6 * max(float(np.abs(values).max()), 1.0):
        raise ValueError(f"layer {layer!r} has negative activations (down to {low:.3g}); CRAFT "
                         "factorises non-negative activations: choose a layer after a ReLU")
    return np.maximum(values, 0.0)


def craft(model, images, class_index, *, layer=None, num_concepts: int = 5,
          crop_size: int | None = None, stride: int | None = None, importance: str = "sobol",
          designs: int | None = None, seed: int = 0, batch_size: int = 32,
          progress: bool = True) -> CraftResult:
    """Discover a class's concepts by non-negative factorisation (CRAFT, Fel et al. 2023).

    1. **Crops**: every image of the class is cut into ``crop_size`` squares
       (default a third of its side) every ``stride`` pixels (default half a
       crop), each resized to the model's size, as xplique's ``Craft`` does.
    2. **Activations** at ``layer`` (default the last spatial layer; it must
       be non-negative, after a ReLU), averaged over positions: A (n, C).
    3. **Factorisation**: scikit-learn's ``NMF`` (``init="nndsvda"``, seeded,
       unregularised: xplique's small L2 term, ``alpha_W=0.01``, acts with a
       strength that depends on the activations' scale) into
       ``num_concepts`` concepts, A ~ U W, U (n, k) >= 0, W (k, C) >= 0.
    4. **Importance** of each concept for the class logit, over the class's
       whole images: their activations at every position are written in
       concept coefficients (U_x = NMF.transform, (h, w, k)), and
       ``importance="sobol"`` (the paper's): masks M from
       :func:`sobol_masks` scale each concept's coefficients at every
       position, A' = (M * U_x) W goes through the rest of the network
       (the model split at ``layer``, which must cut the graph), and the
       total-order Sobol index of each concept (:func:`jansen_total_indices`,
       ``designs`` points, default 32 or 8 in fast mode; designs x (k + 2)
       passes of the rest of the network per image) is averaged over
       images. ``importance="gradient"``: gradient x input on the
       coefficients, sum_p U_x(p, i) (grad_A z(p) . W_i), averaged; cheaper,
       and any layer works.

    ``images``: the class's images (a list or batch); ``class_index``: the
    class (one for all). Returns a :class:`CraftResult`;
    :func:`concept_maps` locates its concepts on a photo.
    """
    num_concepts = positive_int(num_concepts, "num_concepts")
    _at_most(num_concepts, "num_concepts", MAX_CRAFT_CONCEPTS, "NMF components")
    check_choice(importance, "importance", IMPORTANCES)
    designs = positive_int(choose(32, 8) if designs is None else designs, "designs")
    _at_most(designs, "designs", MAX_SOBOL_DESIGNS, "Sobol points per matrix")
    seed = check_seed(seed, allow_none=False)
    batch_size = positive_int(batch_size, "batch_size")
    check_bool(progress, "progress")
    if crop_size is not None:
        crop_size = positive_int(crop_size, "crop_size")
    if stride is not None:
        stride = positive_int(stride, "stride")
    call = explanation_call(model, images, class_index)
    target = _one_target(call)
    name = _spatial_layer_name(model, layer)
    height, width = call.spec.size
    crop_size = max(2, min(height, width) // 3) if crop_size is None else crop_size
    if crop_size > min(height, width):
        raise ValueError(f"crop_size must be at most the image's side ({min(height, width)}), "
                         f"got {crop_size}")
    stride = max(1, crop_size // 2) if stride is None else stride
    rows, cols = _crop_grid(height, crop_size, stride), _crop_grid(width, crop_size, stride)
    sources = np.array([(i, top, left) for i in range(len(call.batch)) for top in rows
                        for left in cols], dtype=np.int64)
    _at_most(len(sources), "the number of crops", MAX_CRAFT_CROPS,
             "crops factorised; use fewer images, a larger crop_size or stride")
    if len(sources) < num_concepts:
        raise ValueError(f"num_concepts ({num_concepts}) must be at most the number of crops "
                         f"({len(sources)})")
    tail = _tail(model, name) if importance == "sobol" else None   # fails early if no cut
    engine = _engine(model, (name,))
    crops = np.empty((len(sources), crop_size, crop_size, call.spec.channels), np.uint8)
    crop_activations = np.empty((len(sources), engine.shapes[name][-1]), np.float32)
    for start, stop in batches(len(sources), batch_size, progress=progress,
                               description="crops"):
        chunk = np.stack([call.batch[i, top:top + crop_size, left:left + crop_size]
                          for i, top, left in sources[start:stop]])
        crops[start:stop] = np.clip(np.rint(chunk), 0, 255)
        resized = tf.image.resize(chunk, (height, width), method="bilinear")
        crop_activations[start:stop] = _pool(engine.activations(resized)[0], "mean")
    activations = _nonnegative(crop_activations.astype(np.float64), name)
    factorization = _nmf(num_concepts, seed)
    coefficients = factorization.fit_transform(activations)
    basis = factorization.components_
    error = float(np.linalg.norm(activations - coefficients @ basis)
                  / max(float(np.linalg.norm(activations)), 1e-12))
    image_activations = _nonnegative(np.concatenate(
        [np.asarray(engine.activations(tf.constant(call.batch[i:i + batch_size]))[0])
         for i in range(0, len(call.batch), batch_size)]).astype(np.float64), name)
    spatial = factorization.transform(image_activations.reshape(-1, basis.shape[1])).reshape(
        image_activations.shape[:3] + (num_concepts,))
    if importance == "sobol":
        importances = _sobol_importances(tail, spatial, basis, target, designs, seed,
                                         batch_size, progress)
    else:
        gradient = np.asarray(_gradients(engine, call.batch, call.classes, "flatten",
                                         batch_size, False)[name], np.float64)
        gradient = gradient.reshape(image_activations.shape)
        importances = (spatial * (gradient @ basis.T)).sum(axis=(1, 2)).mean(axis=0)
    return CraftResult(name, target, class_label(target, call.spec.num_classes),
                       crops, sources, coefficients,
                       basis, np.asarray(importances, np.float64), importance, error,
                       factorization)


def _nmf(num_concepts: int, seed: int):
    from sklearn.decomposition import NMF

    return NMF(n_components=num_concepts, init="nndsvda", max_iter=1000, random_state=seed)


def _tail(model, layer: str):
    """The rest of the network after ``layer`` (on the logit twin), compiled once."""
    def build():
        _, tail = split_model(logits_model(model), layer)
        shape = tuple(int(d) for d in tail.inputs[0].shape[1:])
        return tf.function(lambda a: tail(a, training=False),
                           input_signature=[tf.TensorSpec((None,) + shape, tf.float32)])
    return cached(model, ("concepts-tail", layer), build)


def _sobol_importances(tail, spatial, basis, target, designs, seed, batch_size,
                       progress) -> np.ndarray:
    """The total-order Sobol index of each concept, averaged over the images."""
    masks = sobol_masks(basis.shape[0], designs, seed=seed)
    per_image = []
    with progress_bar(len(spatial) * len(masks), progress, "Sobol", "pass") as bar:
        for coefficients in spatial:
            scores = np.empty(len(masks))
            for start in range(0, len(masks), batch_size):
                chunk = masks[start:start + batch_size]
                perturbed = (coefficients[None] * chunk[:, None, None, :]) @ basis
                scores[start:start + len(chunk)] = np.asarray(
                    tail(tf.constant(perturbed, tf.float32)))[:, target]
                bar.update(len(chunk))
            per_image.append(jansen_total_indices(scores, designs))
    return np.mean(per_image, axis=0)


def concept_maps(model, images, found, *, batch_size: int = 32) -> np.ndarray:
    """Where each CRAFT concept is on a photo: float32 (k, H, W), or (N, k, H, W).

    The photo's activations at the concepts' layer, written in concept
    coefficients at every position (U = NMF.transform(A_p), W fixed: the
    non-negative least-squares fit of each cell's activation vector), and
    upsampled to the image (:func:`helpers.upsample_map`, bilinear, cell
    centres aligned). A value is in the units of the concept's coefficient
    (comparable with ``found.coefficients``).
    """
    if not isinstance(found, CraftResult):
        raise TypeError(f"found must be the result of h.craft(...), not {type(found).__name__}")
    batch_size = positive_int(batch_size, "batch_size")
    batch, single = model_batch(model, images)
    name = _one_layer(model, found.layer)
    engine = _engine(model, (name,))
    if engine.shapes[name][-1] != found.basis.shape[1]:
        raise ValueError(f"found: its concepts have {found.basis.shape[1]} channels, layer "
                         f"{name!r} of {model.name!r} has {engine.shapes[name][-1]}")
    activations = _nonnegative(np.concatenate(
        [np.asarray(engine.activations(tf.constant(batch[i:i + batch_size]))[0])
         for i in range(0, len(batch), batch_size)]).astype(np.float64), name)
    count, rows, cols, channels = activations.shape
    coefficients = found.factorization.transform(activations.reshape(-1, channels))
    coefficients = coefficients.reshape(count, rows, cols, -1).transpose(0, 3, 1, 2)
    maps = np.stack([upsample_map(item, batch.shape[1:3]) for item in coefficients])
    return maps[0] if single else maps
