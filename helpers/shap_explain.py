"""SHAP's GradientExplainer (expected gradients) on the input pixels or an inner layer.

Shapley values (Shapley 1953; Lundberg & Lee 2017, *A Unified Approach to
Interpreting Model Predictions*) share a prediction among the features;
for a differentiable model, **expected gradients** (Erion, Janizek,
Sturmfels, Lundberg & Lee 2021, *Improving performance of deep learning
models with axiomatic attribution priors and expected gradients*) estimate
them by averaging integrated gradients (Sundararajan, Taly & Yan 2017)
over references x' drawn from a background set D::

    phi_i(x) = E_{x' ~ D, t ~ U(0,1)} [ (x_i - x'_i) * d f(x' + t (x - x')) / d x_i ]

and they are *complete*: ``sum_i phi_i(x) = f(x) - E_{x' ~ D}[f(x')]``,
up to Monte-Carlo noise that shrinks like ``1 / sqrt(samples)``.

The estimate itself is shap's ``GradientExplainer``; this module adds what a
lesson needs around it:

* the explained output is one logit, picked by a small selection layer, so
  shap differentiates a single output (never 1000 of them) and one traced
  gradient serves every class;
* inner layers through a two-part Keras 3 model, ``head`` (pixels -> layer)
  and ``tail`` (layer -> logits), see :func:`split_model`;
* a seeded background set cut from the course's photo collection (never
  from the photo being explained), :func:`background_set`;
* the completeness gap, measured here (shap's own additivity check does not
  work with ranked outputs), samples streamed in fixed-size chunks with a
  progress bar, and a plot in the course's signed colour map,
  :func:`show_shap`.

shap's DeepExplainer is not used: it patches TensorFlow's gradient registry,
which can break later gradients in the same kernel.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from .environment import choose, tf  # noqa: F401  (quiet TF import first)
import keras

from .images import SAMPLES, load_image, sample_names, target_size
from .photos import collection_photos, photo_collection
from .labels import NUM_CLASSES
from .models import feature_model, find_layer
from .plot import SIGNED_CMAP, show
from .pipeline import (call_classes, class_label, cached, check_bool, check_seed, explanation_call, holder, model_batch, model_spec,
                       positive_int, predict_logits)

__all__ = [
    "expected_gradients",
    "background_set",
    "split_model",
    "split_layers",
    "show_shap",
    "show_shap_map",
]

# Backgrounds kept per traced explainer (one explainer per model and layer).
_BACKGROUNDS_PER_LAYER = 3
MAX_BACKGROUND = 512  # background images, held in memory at the model's input size
MAX_SAMPLES = 100_000  # expected-gradients draws per image and class (each chunk's sum is kept)


# --------------------------------------------------------------------------
# Background set
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=64)
def _photo(name: str) -> np.ndarray:
    return load_image(name)


def background_set(model_or_size, size: int | None = None, *, seed: int = 0, photos=None,
                   exclude=(), crop=(0.3, 1.0), blur=(0.0, 6.0)) -> np.ndarray:
    """A seeded background set: random crops of real photos, flipped and blurred.

    The background is the distribution D that expected gradients integrate
    from: attributions explain ``f(x) - E_D[f]``, the difference between
    this photo and a "typical" photo. Typical photos come from the course's
    photo collection (:func:`helpers.photo_collection`), and never from the
    photo being explained: pass its name in ``exclude``.

    ``size``: number of images (default 32, 8 in fast mode). ``photos``:
    sample or collection names to cut from (default: the whole collection
    less ``exclude``). ``crop``: the crop's side as a fraction of the
    photo's shorter side (min, max); ``blur``: Gaussian blur radius in
    pixels (min, max). Returns float32 (size, H, W, 3) pixels in 0..255 for
    the model (or ``(H, W)`` size).
    """
    from PIL import Image, ImageFilter


    size = positive_int(choose(32, 8) if size is None else size, "size")
    if size > MAX_BACKGROUND:  # refused before the images are allocated
        raise ValueError(f"size must be at most {MAX_BACKGROUND} background images, got {size:,}")
    seed = check_seed(seed, allow_none=False)
    excluded = [exclude] if isinstance(exclude, str) else list(dict.fromkeys(exclude))
    if photos is None:
        names = collection_photos(exclude=excluded)
    else:
        names = [name for name in photos if name not in excluded]
    known = set(SAMPLES) | set(photo_collection())
    unknown = [name for name in names if not isinstance(name, str) or name not in known]
    if not names or unknown:
        raise ValueError(f"background photos must be sample names ({', '.join(sample_names())}) "
                         f"or names of h.photo_collection(); got {unknown or 'none'}")
    low, high = (float(v) for v in crop)
    if not 0 < low <= high <= 1:
        raise ValueError(f"crop must be (min, max) fractions with 0 < min <= max <= 1, not {crop}")
    blur_low, blur_high = (float(v) for v in blur)
    if not 0 <= blur_low <= blur_high:
        raise ValueError(f"blur must be (min, max) radii with 0 <= min <= max, not {blur}")
    height, width = target_size(model_or_size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    images = np.empty((size, height, width, 3), dtype=np.float32)
    for i in range(size):
        photo = _photo(names[order[i % len(names)]])
        side = max(1, int(round(min(photo.shape[:2]) * rng.uniform(low, high))))
        top = int(rng.integers(0, photo.shape[0] - side + 1))
        left = int(rng.integers(0, photo.shape[1] - side + 1))
        image = Image.fromarray(photo[top:top + side, left:left + side])
        image = image.resize((width, height), Image.BILINEAR)
        if rng.uniform() < 0.5:
            image = image.transpose(Image.FLIP_LEFT_RIGHT)
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(blur_low, blur_high)))
        images[i] = np.asarray(image, dtype=np.float32)
    return images


# --------------------------------------------------------------------------
# Splitting a model at an inner layer
# --------------------------------------------------------------------------

def _tensors(value):
    return list(value) if isinstance(value, (list, tuple)) else [value]


def split_layers(model: keras.Model, *, spatial: bool = True) -> list[str]:
    """Layers where ``model`` can be cut in two: every path from input to logits crosses them.

    A layer inside a residual block is not one of them: the skip connection
    carries information around it, so the logits are not a function of that
    layer's output alone. Found by tensor liveness along the (topologically
    ordered) functional graph: a layer is a cut when no tensor produced
    before it is still used after it. ``spatial=True`` keeps (H, W, C) maps.
    """
    check_bool(spatial, "spatial")
    layers = list(model.layers)
    producer, last_use = {}, {}
    for position, layer in enumerate(layers):
        try:
            inputs = [] if isinstance(layer, keras.layers.InputLayer) else _tensors(layer.input)
            outputs = _tensors(layer.output)
        except (AttributeError, ValueError):  # shared layers have no single input
            return []
        for tensor in inputs:
            last_use[id(tensor)] = position
        for tensor in outputs:
            producer[id(tensor)] = position
    for tensor in _tensors(model.outputs):
        last_use[id(tensor)] = len(layers)
    final = {id(tensor) for tensor in _tensors(model.outputs)}
    names = []
    for position, layer in enumerate(layers):
        if (isinstance(layer, (keras.layers.InputLayer, keras.Model))
                or id(layer.output) in final):
            continue
        bypassed = any(producer.get(key, len(layers)) < position < last
                       for key, last in last_use.items())
        if bypassed:
            continue
        shape = layer.output.shape
        if spatial and not (len(shape) == 4 and shape[1] and shape[1] > 1):
            continue
        names.append(layer.name)
    return names


def split_model(model: keras.Model, layer) -> tuple[keras.Model, keras.Model]:
    """``(head, tail)`` with ``tail(head(x)) == model(x)``: pixels -> ``layer`` -> logits.

    ``head`` is :func:`helpers.feature_model`; ``tail`` is a Keras 3
    functional model whose input is the layer's output tensor (Keras
    re-runs the graph from there). Only layers that cut the graph work
    (see :func:`split_layers`); others raise a ValueError naming them.
    """
    if layer is None:
        raise ValueError("split_model needs a layer name; h.split_layers(model) lists them")
    found = find_layer(model, layer)
    if not any(candidate is found for candidate in model.layers):
        raise ValueError(
            f"layer {found.name!r} is inside a nested model; expected gradients on an inner layer "
            f"need a layer of {model.name!r}'s own graph: {', '.join(split_layers(model)[-6:])}")
    if isinstance(found, keras.layers.InputLayer):
        raise ValueError(f"{found.name!r} is the input; use layer=None to explain the pixels")
    candidates = split_layers(model, spatial=False)
    if found.name not in candidates:
        spatial = split_layers(model)
        shown = spatial if len(spatial) <= 12 else spatial[:4] + ["..."] + spatial[-6:]
        raise ValueError(
            f"the model cannot be split at {found.name!r}: a skip connection bypasses it, so the "
            f"logits are not a function of its output alone. Layers where it can be split: "
            f"{', '.join(shown)} (h.split_layers(model) lists all {len(spatial)})")
    features = feature_model(model, found.name, include_output=False)
    inputs = features.inputs[0] if len(features.inputs) == 1 else features.inputs
    head = keras.Model(inputs, features.outputs[0], name=f"{model.name}_to_{found.name}")
    tail = keras.Model(found.output, model.outputs[0], name=f"{model.name}_from_{found.name}")
    return head, tail


# --------------------------------------------------------------------------
# The explainer: one selected logit, cached per (model, layer, background)
# --------------------------------------------------------------------------

class _SelectedLogit(keras.layers.Layer):
    """Output ``logits[:, class]`` for a class held in a variable (changed without retracing)."""

    def build(self, input_shape):
        self.class_index = self.add_weight(shape=(), dtype="int32", initializer="zeros",
                                           trainable=False, name="class_index")

    def call(self, logits):
        return keras.ops.take(logits, self.class_index, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape[:-1]


@dataclass
class _Explainer:
    """shap's explainer for one (model, layer), traced once, and its backgrounds."""

    logits: object  # a callable returning the logits model (held weakly if it is the user's)
    name: str
    layer: str | None
    head: keras.Model | None
    tail: keras.Model | None
    selector: _SelectedLogit
    shap_explainer: object
    layer_shape: tuple
    backgrounds: OrderedDict = field(default_factory=OrderedDict)
    traced: dict = field(default_factory=dict)  # "logits", "head", "tail" -> tf.function


def _digest(array: np.ndarray) -> str:
    return hashlib.sha1(np.ascontiguousarray(array).view(np.uint8)).hexdigest()


def _traced(entry: _Explainer, part: str):
    """The explainer's logits model, head or tail as one traced function (any batch size).

    An eager Keras call keeps TensorFlow's buffers of every layer at the batch's size:
    eight photos through EfficientNet-Lite0 left 0.67 GB more resident memory behind, the
    traced function 0.12 GB. Built once per explainer; the logits model is held as
    ``entry.logits`` holds it (weakly when it is the user's model).
    """
    if part not in entry.traced:
        if part == "logits":
            held = entry.logits
            shape = tuple(held().inputs[0].shape[1:])
        else:
            part_model = getattr(entry, part)
            held = lambda: part_model  # noqa: E731  (a derived model, held by the entry)
            shape = tuple(part_model.inputs[0].shape[1:])
        entry.traced[part] = tf.function(
            lambda batch: held()(batch, training=False), autograph=False,
            input_signature=[tf.TensorSpec((None,) + shape, tf.float32)])
    return entry.traced[part]


def _run_in_chunks(entry: _Explainer, part: str, batch, batch_size):
    """``part`` ("logits", "head" or "tail") of the explainer on ``batch``, in chunks."""
    forward = _traced(entry, part)
    parts = []
    for start in range(0, len(batch), batch_size):
        out = forward(tf.constant(batch[start:start + batch_size], dtype=tf.float32))
        parts.append(np.asarray(out[0] if isinstance(out, (list, tuple)) else out))
    return np.concatenate(parts)


def _explainer(model, layer_name) -> _Explainer:
    """shap's explainer of ``model``'s logits at ``layer_name``, built once per (model, layer)."""
    return cached(model, ("shap", layer_name), lambda: _build_explainer(model, layer_name))


def _build_explainer(model, layer_name) -> _Explainer:
    import shap

    logits = model_spec(model).logits
    if layer_name is None:
        head, tail = None, None
        inputs, outputs = logits.inputs[0], logits.outputs[0]
    else:
        head, tail = split_model(logits, layer_name)
        inputs, outputs = tail.inputs[0], tail.outputs[0]
    selector = _SelectedLogit(name="selected_logit")
    wrapped = keras.Model(inputs, selector(outputs), name=f"{model.name}_selected_logit")
    layer_shape = tuple(int(d) for d in inputs.shape[1:])
    # The background is set per call (_use_background); samples arrive in
    # chunks no larger than batch_size, so shap's own batching never splits them.
    placeholder = np.zeros((1,) + layer_shape, dtype=np.float32)
    explainer = shap.GradientExplainer(wrapped, placeholder, batch_size=1 << 20)
    if not isinstance(getattr(explainer.explainer, "data", None), list):
        raise RuntimeError("this shap version keeps the background elsewhere; "
                           "helpers.shap_explain needs shap==0.51")
    return _Explainer(holder(logits, model), model.name, layer_name, head, tail, selector,
                      explainer, layer_shape)


def _use_background(entry: _Explainer, background, batch_size) -> np.ndarray:
    """Give shap the background (in the layer's space); return E[logits] over it."""
    key = (background.shape, _digest(background))
    if key not in entry.backgrounds:
        if entry.head is None:
            layer_background = background
            expected = _run_in_chunks(entry, "logits", background, batch_size).mean(axis=0)
        else:
            layer_background = _run_in_chunks(entry, "head", background, batch_size)
            through = _run_in_chunks(entry, "tail", layer_background, batch_size)
            expected = through.mean(axis=0)
            # Guard: the two halves must reproduce the model (checked on two images).
            direct = _run_in_chunks(entry, "logits", background[:2], batch_size)
            scale = max(1.0, float(np.abs(direct).max()))
            if not np.allclose(through[:2], direct, atol=1e-3 * scale):
                raise RuntimeError(
                    f"splitting {entry.name!r} at {entry.layer!r} changed "
                    f"the logits (max difference {np.abs(through[:2] - direct).max():.3g})")
        entry.backgrounds[key] = (layer_background, expected.astype(np.float64))
        while len(entry.backgrounds) > _BACKGROUNDS_PER_LAYER:
            entry.backgrounds.popitem(last=False)
    layer_background, expected = entry.backgrounds[key]
    entry.shap_explainer.explainer.data = [layer_background]
    return expected


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------

@dataclass(repr=False)
class ShapExplanation:
    """Expected-gradients maps for K classes of each image, with their completeness check.

    For one image the leading image axis is dropped: ``maps`` is (K, H, W),
    ``classes`` (K,), and so on; for a batch ``maps`` is (N, K, H, W).

    * ``maps``: attributions summed over channels, float32, > 0 pushes
      towards the class; at the input's size when ``at_input_size`` (layer
      maps upsampled, sum preserved), otherwise at the layer's size,
    * ``classes``, ``ranks``: class indices and their 1-based rank in the prediction,
    * ``logits``: f(x); ``expected_value``: E[f(background)] for those classes,
    * ``attribution_sum``: the sum of all attributions (before upsampling),
      ``standard_error``: its Monte-Carlo standard error, estimated from
      the spread between chunks of samples (rough with few chunks, NaN
      with one),
    * ``samples``: draws per image and class, rounded up to whole chunks,
    * ``gap`` = attribution_sum - (logits - expected_value), ``relative_gap``
      = |gap| / |logits - expected_value|: zero for exact Shapley values.
    """

    maps: np.ndarray
    classes: np.ndarray
    ranks: np.ndarray
    logits: np.ndarray
    expected_value: np.ndarray
    attribution_sum: np.ndarray
    standard_error: np.ndarray
    images: np.ndarray
    layer: str | None = None
    layer_shape: tuple = ()
    samples: int = 0
    background_size: int = 0
    at_input_size: bool = True
    num_classes: int = NUM_CLASSES
    contrasts: tuple = ()  # the (a, b) pairs of scores past the model's classes

    @property
    def single(self) -> bool:
        return self.classes.ndim == 1

    @property
    def gap(self) -> np.ndarray:
        return self.attribution_sum - (self.logits - self.expected_value)

    @property
    def relative_gap(self) -> np.ndarray:
        target = np.abs(self.logits - self.expected_value)
        return np.abs(self.gap) / np.maximum(target, 1e-12)

    @property
    def class_names(self) -> list:
        names = [[class_label(c, self.num_classes, self.contrasts)
                  for c in row] for row in np.atleast_2d(self.classes)]
        return names[0] if self.single else names

    def table(self) -> str:
        """The completeness check as text: sum of attributions against f(x) - E[f(background)]."""
        where = f"layer {self.layer}" if self.layer else "input pixels"
        lines = [f"expected gradients on {where}: {self.samples} samples, "
                 f"{self.background_size} background images",
                 f"{'image':>5} {'rank':>4} {'class':<20} {'f(x)':>8} {'E[f(b)]':>8} "
                 f"{'f(x)-E':>8} {'sum phi':>8} {'+-s.e.':>7} {'gap':>8} {'rel.gap':>7}"]
        names = np.atleast_2d(np.asarray(self.class_names, dtype=object))
        rows = zip(*(np.atleast_2d(a) for a in (self.ranks, self.logits, self.expected_value,
                                                 self.attribution_sum, self.standard_error,
                                                 self.gap, self.relative_gap)), names)
        for image, (ranks, fx, ev, total, error, gap, rel, row_names) in enumerate(rows):
            for k in range(len(ranks)):
                lines.append(f"{image:>5} {ranks[k]:>4} {row_names[k][:20]:<20} {fx[k]:>8.3f} "
                             f"{ev[k]:>8.3f} {fx[k] - ev[k]:>8.3f} {total[k]:>8.3f} "
                             f"{error[k]:>7.3f} {gap[k]:>8.3f} {rel[k]:>7.1%}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__


# --------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------

def _ranks_to_explain(ranks, num_classes):
    if isinstance(ranks, bool):
        raise TypeError("ranks must be an integer (the top k) or a list of ranks, not a bool")
    if isinstance(ranks, (int, np.integer)):
        if not 1 <= ranks <= num_classes:
            raise ValueError(f"ranks={ranks}: the top k must be between 1 and {num_classes}")
        return np.arange(1, int(ranks) + 1)
    if not isinstance(ranks, (list, tuple, np.ndarray)) or len(ranks) == 0:
        raise TypeError(f"ranks must be an integer k (the top k classes) or a non-empty list of "
                        f"1-based ranks, not {ranks!r}")
    chosen = []
    for rank in ranks:
        if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)):
            raise TypeError(f"a rank must be an integer, not {type(rank).__name__}")
        if not 1 <= rank <= num_classes:
            raise ValueError(f"rank {rank} is out of range: ranks go from 1 (the top class) "
                             f"to {num_classes}")
        chosen.append(int(rank))
    return np.asarray(chosen)


def _sum_preserving_resize(maps, size):
    """Bilinear resize of (M, h, w) maps to ``size``, scaled so each map keeps its sum."""
    small = maps.shape[1] * maps.shape[2]
    resized = tf.image.resize(maps[..., None], size, method="bilinear")[..., 0].numpy()
    return resized * (small / float(size[0] * size[1]))


@contextlib.contextmanager
def _quiet_input_structure():
    """shap and feature models pass a model's one input bare or in a list; Keras warns, harmlessly."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*structure of `inputs`")
        yield


def sample_chunks(samples: int, batch_size: int) -> tuple[int, int]:
    """``(chunk, count)``: how expected gradients split ``samples`` draws into equal chunks.

    The chunk is a power of two, at most ``batch_size``, aiming at 8 or more
    chunks (for the standard error) but not below 4 samples (smaller
    batches waste time). Equal powers of two keep the number of batch
    shapes, each a retrace of shap's gradient function, small.
    ``samples`` is rounded up to ``chunk * count``.
    """
    limit = min(batch_size, samples, max(4, samples // 8))
    chunk = 1
    while chunk * 2 <= limit:
        chunk *= 2
    return chunk, -(-samples // chunk)


def _attributions(entry, layer_inputs, classes, samples, seed, batch_size, progress, desc):
    """shap's estimate summed over channels, (N, K, h, w), and the standard error of its total.

    Each chunk of samples (:func:`sample_chunks`) is an independent estimate,
    so the spread of the chunk totals estimates the Monte-Carlo standard
    error of the total (NaN with a single chunk).
    """
    from tqdm.auto import tqdm

    chunk_size, chunk_count = sample_chunks(samples, batch_size)
    samples = chunk_size * chunk_count
    sizes = np.full(chunk_count, chunk_size)
    count, per_image = classes.shape
    totals = np.zeros((count, per_image) + entry.layer_shape[:-1], dtype=np.float64)
    chunk_totals = np.zeros((count, per_image, len(sizes)), dtype=np.float64)
    bar = tqdm(total=count * per_image * len(sizes), disable=not progress, desc=desc,
               leave=False)
    saved_state = np.random.get_state()  # shap reseeds numpy's global generator
    try:
        for image in range(count):
            for k in range(per_image):
                entry.selector.class_index.assign(int(classes[image, k]))
                for chunk, chunk_samples in enumerate(sizes):
                    # The same draws for every image and class: results do not
                    # depend on an image's place in the batch.
                    values = np.asarray(entry.shap_explainer.shap_values(
                        layer_inputs[image:image + 1], nsamples=int(chunk_samples),
                        rseed=(seed * 7919 + chunk) % (2**32)))
                    if values.ndim > layer_inputs.ndim:  # shap adds an axis of outputs
                        values = values[..., 0]
                    chunk_map = values[0].sum(axis=-1)
                    totals[image, k] += chunk_map * chunk_samples
                    chunk_totals[image, k, chunk] = chunk_map.sum()
                    bar.update()
    finally:
        np.random.set_state(saved_state)
        bar.close()
    totals /= samples
    if len(sizes) < 2:
        return totals, np.full((count, per_image), np.nan), samples
    # var(chunk total) = sigma^2 / size: pool the chunks to estimate sigma^2.
    mean = totals.reshape(count, per_image, -1).sum(axis=-1)[..., None]
    sigma2 = (sizes * (chunk_totals - mean) ** 2).sum(axis=-1) / (len(sizes) - 1)
    return totals, np.sqrt(sigma2 / samples), samples


def expected_gradients(model: keras.Model, images, class_index=None, *, ranks=None, layer=None,
                       background=None, background_size: int | None = None,
                       samples: int | None = None, seed: int = 0, upsample: bool = True,
                       batch_size: int = 16, progress: bool = True) -> ShapExplanation:
    """SHAP values by expected gradients (shap's GradientExplainer) for the top classes.

    Erion et al. 2021, *Improving performance of deep learning models with
    axiomatic attribution priors and expected gradients*; Lundberg & Lee
    2017, *A Unified Approach to Interpreting Model Predictions*::

        phi_i = E_{x'~D, t~U(0,1)} [(x_i - x'_i) * d f_c(x' + t (x - x')) / d x_i]
        sum_i phi_i ~ f_c(x) - E_{x'~D}[f_c(x')]        (completeness)

    ``f_c`` is the logit of class c; with ``layer``, x is that layer's output
    and f the rest of the model (:func:`split_model`).

    ``class_index``: None explains the classes at ``ranks`` of each image's
    prediction; an index or name (or one per image) explains that class.
    ``ranks``: k for the top k (default 2), or a list of 1-based ranks such
    as ``[2]``. ``background``: reference images (any form
    :func:`helpers.as_batch` takes); default :func:`background_set` of
    ``background_size`` collection photos, never the photos explained
    when they are given by name. ``samples``: (reference, t) draws per image
    and class (default 200, 32 in fast mode, at most ``MAX_SAMPLES`` = 100,000),
    run in equal chunks of at
    most ``batch_size`` (:func:`sample_chunks`; rounded up to whole chunks).
    ``seed`` fixes the draws (the same for every image and class; numpy's
    global random state is restored afterwards).
    ``upsample``: layer maps resized to the input's size, sum preserved.

    Returns a :class:`ShapExplanation` with raw float32 maps (K, H, W) for
    one image or (N, K, H, W) for a batch, the classes, and the
    completeness gap.
    """
    num_classes = model_spec(model).num_classes
    samples = positive_int(choose(200, 32) if samples is None else samples, "samples")
    if samples > MAX_SAMPLES:  # refused before the chunks' sums are allocated
        raise ValueError(f"samples must be at most {MAX_SAMPLES:,} (draws per image and "
                         f"class), got {samples:,}")
    batch_size = positive_int(batch_size, "batch_size")
    seed = check_seed(seed, allow_none=False)
    check_bool(upsample, "upsample")
    check_bool(progress, "progress")
    if background_size is not None:  # checked here, named as the caller knows it
        background_size = positive_int(background_size, "background_size")
        if background_size > MAX_BACKGROUND:
            raise ValueError(f"background_size must be at most {MAX_BACKGROUND} images, got "
                             f"{background_size:,}")
    if background is not None and background_size is not None:
        raise ValueError("give either background (the images) or background_size (to build "
                         "h.background_set), not both")
    if class_index is not None and ranks is not None:
        raise ValueError("give class_index (explain that class) or ranks (explain the top "
                         "classes), not both")
    call = explanation_call(model, images, resolve=False)
    batch, single = call.batch, call.single
    if background is None:
        explained = [images] if isinstance(images, str) else (
            [item for item in images if isinstance(item, str)]
            if isinstance(images, (list, tuple)) else [])
        background = background_set(model, background_size, seed=seed, exclude=explained)
    background, _ = model_batch(model, background, name="background")
    layer_name = None
    if layer is not None and not isinstance(find_layer(model, layer), keras.layers.InputLayer):
        layer_name = find_layer(model, layer).name

    if class_index is not None:  # a contrast is a score of the model's contrast twin
        model, chosen = call_classes(model, class_index, batch)
    logits = predict_logits(model, batch, batch_size).astype(np.float64)
    order = np.argsort(-logits, axis=-1, kind="stable")
    if class_index is None:
        chosen_ranks = _ranks_to_explain(2 if ranks is None else ranks, num_classes)
        classes = order[:, chosen_ranks - 1]
    else:
        classes = chosen[:, None]
    rank_of = np.argsort(order, axis=-1)
    class_ranks = np.take_along_axis(rank_of, classes, axis=-1) + 1

    with _quiet_input_structure():
        entry = _explainer(model, layer_name)
        expected_logits = _use_background(entry, background, batch_size)
        layer_inputs = batch if entry.head is None else _run_in_chunks(entry, "head", batch,
                                                                         batch_size)
        totals, standard_error, samples = _attributions(entry, layer_inputs, classes, samples, seed, batch_size, progress,
                               desc=f"expected gradients ({layer_name or 'pixels'})")
    count, per_image = classes.shape
    attribution_sum = totals.reshape(count, per_image, -1).sum(axis=-1)
    maps = totals
    at_input_size = maps.shape[2:] == batch.shape[1:3]
    if upsample and not at_input_size:
        flat = maps.reshape((-1,) + maps.shape[2:]).astype(np.float32)
        maps = _sum_preserving_resize(flat, batch.shape[1:3]).reshape(
            (count, per_image) + batch.shape[1:3])
        at_input_size = True
    picked_logits = np.take_along_axis(logits, classes, axis=-1)
    expected = expected_logits[classes]

    def out(array, dtype=np.float32):
        array = np.asarray(array, dtype=dtype)
        return array[0] if single else array

    return ShapExplanation(
        maps=out(maps), classes=out(classes, np.int64), ranks=out(class_ranks, np.int64),
        logits=out(picked_logits, np.float64), expected_value=out(expected, np.float64),
        attribution_sum=out(attribution_sum, np.float64),
        standard_error=out(standard_error, np.float64), images=batch, layer=layer_name,
        layer_shape=entry.layer_shape, samples=samples, background_size=len(background),
        at_input_size=at_input_size, num_classes=model_spec(model).num_classes,
        contrasts=model_spec(model).contrasts)


# --------------------------------------------------------------------------
# Plot
# --------------------------------------------------------------------------

def _faint_grey(image) -> np.ndarray:
    photo = np.asarray(image, dtype=np.float32)
    photo = photo / 255.0 if photo.max() > 1.0 else photo
    grey = photo[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return np.repeat((0.55 + 0.45 * grey)[..., None], 3, axis=-1)


@functools.lru_cache(maxsize=4)
def _transparent_at_zero(name: str):
    """The diverging colour map ``name`` with opacity |v|: zero lets the photo show through."""
    import matplotlib
    from matplotlib.colors import ListedColormap

    colours = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))
    colours[:, 3] = np.abs(np.linspace(-1.0, 1.0, 256))
    return ListedColormap(colours, name=f"{name}_transparent_at_zero")


def show_shap_map(image, shap_map, *, ax=None, limit: float | None = None,
                  percentile: float = 99.5, title: str | None = None, colorbar: bool = True):
    """One SHAP map over a faint grey copy of the photo, in the course's signed colours.

    ``helpers.SIGNED_CMAP``, with zero transparent: red pushes towards the
    class, blue away from it. The symmetric colour scale runs to
    ``limit``, by default the ``percentile`` of |values|, so that a few
    extreme pixels do not wash out the rest. Returns the axes.
    """
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile}")
    shap_map = np.asarray(shap_map, dtype=np.float32)
    if limit is None:
        limit = float(np.percentile(np.abs(shap_map), percentile)) or 1.0
    if ax is None:
        _, ax = plt.subplots(figsize=(4, 4))
    show(_faint_grey(image), shap_map, ax=ax, cmap=_transparent_at_zero(SIGNED_CMAP), alpha=1.0,
         vmin=-limit, vmax=limit, colorbar=False, title=title)
    if colorbar:
        # An opaque bar: the map's own colours fade to transparent at zero.
        bar = ax.figure.colorbar(ScalarMappable(Normalize(-limit, limit), SIGNED_CMAP), ax=ax,
                                 fraction=0.046, pad=0.04)
        bar.set_label("SHAP value")
    return ax


def show_shap(explanation: ShapExplanation, *, size: float = 3.0, titles=None, suptitle=None,
              scale: str = "row", percentile: float = 99.5, smooth: float = 0.0):
    """The photo, then one map per class, in the signed colour map: red pushes towards the class.

    One row per image, class names (and their rank) as titles, drawn by
    :func:`show_shap_map` on a symmetric scale shared along the row
    (``scale="row"``, as shap's ``image_plot``) or per map
    (``scale="map"``), set by the ``percentile`` of |values|. ``smooth`` > 0
    blurs the maps for display only (Gaussian sigma in pixels): pixel-level
    expected gradients are speckled. Returns the figure.
    """
    import matplotlib.pyplot as plt
    from scipy.ndimage import gaussian_filter

    if not isinstance(explanation, ShapExplanation):
        raise TypeError(f"show_shap takes the result of h.expected_gradients, not "
                        f"{type(explanation).__name__}")
    if scale not in ("row", "map"):
        raise ValueError(f"scale must be 'row' or 'map', not {scale!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], not {percentile}")
    if not explanation.at_input_size:
        raise ValueError("show_shap draws maps over the photo; compute them with upsample=True")
    maps = explanation.maps[None] if explanation.single else explanation.maps
    if smooth > 0:
        maps = gaussian_filter(maps, sigma=(0, 0, smooth, smooth))
    ranks = np.atleast_2d(explanation.ranks)
    names = [explanation.class_names] if explanation.single else explanation.class_names
    count, per_image = ranks.shape
    if titles is not None and len(titles) != count:
        raise ValueError(f"got {len(titles)} titles for {count} images")
    fig, axes = plt.subplots(count, per_image + 1, squeeze=False,
                             figsize=(size * (per_image + 1) + 0.8, size * count + 0.4))
    for image in range(count):
        photo = explanation.images[image]
        show(photo, title=titles[image] if titles is not None else f"image {image}",
             ax=axes[image, 0])
        row_limit = float(np.percentile(np.abs(maps[image]), percentile)) or 1.0
        for k in range(per_image):
            show_shap_map(photo, maps[image, k], ax=axes[image, k + 1],
                          limit=row_limit if scale == "row" else None, percentile=percentile,
                          colorbar=scale == "map" or k == per_image - 1,
                          title=f"#{ranks[image, k]} {names[image][k]}")
    where = f"layer {explanation.layer}" if explanation.layer else "input pixels"
    fig.suptitle(suptitle or f"Expected gradients on {where} "
                             f"(red: towards the class, blue: away from it)")
    fig.tight_layout()
    return fig
