"""Activation maximisation: the input that a class or a channel of the network likes best.

Instead of asking what a unit does for a given photo, ask which image makes
it fire most (Erhan, Bengio, Courville & Vincent 2009, *Visualizing
Higher-Layer Features of a Deep Network*; Simonyan, Vedaldi & Zisserman 2014,
*Deep Inside Convolutional Networks*). Start from noise and climb the
gradient of the score ``S`` with respect to the pixels:

    x* = argmax_x  S(x) − g · (λ_TV · TV(x) + λ_N · ‖x‖_p / n^(1/p)),    x ∈ [0, 255]^(H×W×3)

``S`` is a class logit (before the softmax, so the image must raise the
class itself rather than push the others down) or the mean activation of
one channel of a layer. ``TV(x) = Σ |x[i+1, j] − x[i, j]| + |x[i, j+1] −
x[i, j]|`` (total variation, divided by the number of values ``n``)
penalises pixel-level noise; the norm keeps pixels from drifting to
extremes. ``g = n · mean|∂S/∂x|`` at the start image puts the regularisers
on the objective's own scale: a class logit's gradient is ~100 times a
shallow channel's, and without ``g`` no single ``λ`` would suit both.
Unregularised, the ascent finds high-frequency patterns no photo contains
(and the highest score); regularisers and random transformations of the
image at every step (jitter, rotation, scaling: "transformation
robustness") make the result readable (Olah, Mordvintsev & Schubert 2017,
*Feature Visualization*, Distill).

The optimisation is tf-keras-vis' ``ActivationMaximization`` with
``ReplaceToLinear``, its regularisers ``TotalVariation2D`` and ``Norm``, its
input modifiers ``Jitter``, ``Rotate2D`` and ``Scale``, and its callback
interface. Written here: the choice of target, the scale ``g``, seeding every
random source, keeping the image in the model's input range, a compiled
forward pass (about 3x faster on a CPU than tf-keras-vis' eager calls), a
tqdm progress bar and a snapshot callback.

tf-keras-vis applies the input modifiers to the image itself, so their
effects add up over the steps: jitter (a lossless shift) is on by default;
rotation and scaling resample the image every step, which blurs it, and are
off unless asked for.

This is the pixel-space method lesson 02 used before it adopted Olah et
al.'s full recipe (:mod:`helpers.feature_vis`: a decorrelated Fourier
parameterisation, transformations of the copy the network sees, Adam); it
stays as the method that recipe is compared with
(``benchmarks/feature_vis_benchmark.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import weakref
from collections import OrderedDict

import numpy as np

from .environment import choose, tf
import keras

from tf_keras_vis.activation_maximization import ActivationMaximization
from tf_keras_vis.activation_maximization.callbacks import Callback
from tf_keras_vis.activation_maximization.input_modifiers import Jitter, Rotate2D, Scale
from tf_keras_vis.activation_maximization.regularizers import Norm, Regularizer, TotalVariation2D
from tf_keras_vis.utils import get_num_of_steps_allowed
from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
from tf_keras_vis.utils.scores import CategoricalScore

from .architecture import layer_output_model, output_shape_of
from .checks import check_bool, check_number, check_seed, is_integer
from .pipeline import model_batch, model_spec, resolve_classes, resolve_for_model
from .models import walk_layers, find_layer, input_size, predict_logits

__all__ = [
    "default_steps",
    "maximize_class",
    "maximize_channel",
    "class_score",
    "channel_score",
    "Snapshots",
]

FULL_STEPS = 128
FAST_STEPS = 32
MAX_STEPS = 100_000  # ascent steps (each step's scores are kept)
STARTS = ("noise", "grey")


def default_steps() -> int:
    """The number of ascent steps: :data:`FULL_STEPS`, or :data:`FAST_STEPS` in fast mode."""
    return choose(FULL_STEPS, FAST_STEPS)


# --------------------------------------------------------------------------
# tf-keras-vis callbacks
# --------------------------------------------------------------------------

class TqdmProgress(Callback):
    """A tqdm progress bar over the ascent steps, showing the current mean score."""

    def __init__(self, description: str = "activation maximisation"):
        self.description = description
        self.bar = None

    def on_begin(self, steps=None, **kwargs) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=get_num_of_steps_allowed(steps), desc=self.description,
                        unit="step", leave=False)

    def __call__(self, i, values, grads, scores, model_outputs, **kwargs) -> None:
        score = float(np.mean([np.mean(np.asarray(s)) for s in scores]))
        self.bar.set_postfix(score=f"{score:.3g}", refresh=False)
        self.bar.update(1)

    def on_end(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class Snapshots(Callback):
    """Keeps copies of the images at chosen steps, and every step's scores.

    ``Snapshots(at=(8, 32, 128))``; after the run ``snapshots.images[32]`` is
    the float32 batch ``(N, H, W, 3)`` after 32 steps, and
    ``snapshots.scores`` a ``(steps, N)`` array: each image's score at each
    step (measured on the jittered image the step climbed from).
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

    @property
    def scores(self) -> np.ndarray:
        return np.stack(self._scores) if self._scores else np.zeros((0, 0), np.float32)


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------

def _check_steps(steps):
    if steps is None:
        return default_steps()
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be a positive integer (the number of ascent steps), "
                        f"not {type(steps).__name__} ({steps!r})")
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"steps must be a positive integer of at most {MAX_STEPS:,} (the "
                         f"number of ascent steps), got {steps:,}")
    return int(steps)


def input_modifiers(*, jitter: int = 8, rotation: float = 3.0, scale=None, seed: int = 0) -> list:
    """tf-keras-vis input modifiers, applied to the image before every step, seeded.

    ``jitter``: random shift of up to ± that many pixels (``Jitter``);
    ``rotation``: random rotation of up to ± that many degrees
    (``Rotate2D``); ``scale``: None or a (low, high) zoom range (``Scale``).
    0 or None leaves a modifier out. ``Jitter`` draws from numpy's global
    generator, which :func:`maximize_class` seeds for the run.
    """
    modifiers = []
    if jitter:
        if jitter < 0:
            raise ValueError(f"jitter is a number of pixels >= 0, not {jitter!r}")
        modifiers.append(Jitter(jitter=int(jitter)))
    if rotation:
        if rotation < 0:
            raise ValueError(f"rotation is a number of degrees >= 0, not {rotation!r}")
        modifiers.append(Rotate2D(degree=float(rotation)))
    if scale:
        low, high = scale
        if not 0 < low <= high:
            raise ValueError(f"scale is a (low, high) zoom range with 0 < low <= high, not {scale!r}")
        modifiers.append(Scale(low=float(low), high=float(high)))
    for offset, modifier in enumerate(modifiers):
        if hasattr(modifier, "random_generator"):  # tf-keras-vis leaves these unseeded
            modifier.random_generator = np.random.default_rng(seed + 1 + offset)
    return modifiers


def regularizers(*, tv_weight: float = 4.0, norm_weight: float = 0.05, norm_p: int = 1) -> list:
    """tf-keras-vis regularisers ``TotalVariation2D`` and ``Norm`` with these weights.

    A weight of 0 leaves one out. :func:`maximize_class` and
    :func:`maximize_channel` further multiply them by the objective's
    gradient scale ``g`` (see the module's docstring).
    """
    if tv_weight < 0 or norm_weight < 0:
        raise ValueError(f"regulariser weights must be >= 0; got tv_weight={tv_weight!r}, "
                         f"norm_weight={norm_weight!r}")
    chosen = []
    if tv_weight:
        chosen.append(TotalVariation2D(weight=float(tv_weight)))
    if norm_weight:
        chosen.append(Norm(weight=float(norm_weight), p=int(norm_p)))
    return chosen


def _keep_in_range(images):
    """The model sees only valid pixels: the variable is clipped to 0..255 before every step."""
    return tf.clip_by_value(images, 0.0, 255.0)


class _CompiledForward:
    """A model whose forward pass runs as one TensorFlow graph.

    tf-keras-vis calls the model eagerly, layer by layer; wrapping the call
    in ``tf.function`` keeps its gradients and is several times faster on a
    CPU. Every other attribute (inputs, outputs, layers) is the model's own.
    """

    def __init__(self, model):
        self._model = model
        self._forward = tf.function(lambda images: model(images, training=False),
                                    reduce_retracing=True)

    def __call__(self, inputs, training=False):
        if training:
            raise ValueError("activation maximisation runs the model in inference mode")
        if isinstance(inputs, (list, tuple)) and len(inputs) == 1:
            inputs = inputs[0]
        return self._forward(inputs)

    def __getattr__(self, name):
        return getattr(self._model, name)


_VISUALIZERS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_CACHED_TARGETS = 4


def _weights_fingerprint(model) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for weights in model.get_weights():
        digest.update(np.ascontiguousarray(weights).tobytes())
    return digest.hexdigest()


def _visualizer(model, target_model, key):
    """One ActivationMaximization per (model, target), kept while the model and its weights last.

    Building it clones the model (``ReplaceToLinear`` must not edit the
    user's model) and the first call compiles the graph; both take seconds,
    which an interactive slider should not pay on every move. A change of
    the model's weights builds a fresh one; the last few targets are kept.
    """
    try:
        cache = _VISUALIZERS.setdefault(model, OrderedDict())
    except TypeError:
        cache = OrderedDict()
    fingerprint = _weights_fingerprint(target_model)
    if key not in cache or cache[key][0] != fingerprint:
        visualizer = ActivationMaximization(target_model, model_modifier=ReplaceToLinear(),
                                            clone=True)
        visualizer.model = _CompiledForward(visualizer.model)
        cache[key] = (fingerprint, visualizer)
    cache.move_to_end(key)
    while len(cache) > _CACHED_TARGETS:  # each holds a copy of (part of) the model's weights
        cache.popitem(last=False)
    return cache[key][1]


@contextlib.contextmanager
def _seeded_numpy(seed):
    """Seed numpy's global generator (tf-keras-vis' Jitter draws from it), then restore it."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _start_images(start, count, model, seed):
    height, width = input_size(model)
    if isinstance(start, str) and start in STARTS:
        if start == "grey":
            return np.full((count, height, width, 3), 127.5, dtype=np.float32)
        rng = np.random.default_rng(seed)
        # Low-contrast noise around grey: the ascent, not the start, makes the pattern.
        return rng.uniform(127.5 - 32, 127.5 + 32, (count, height, width, 3)).astype(np.float32)
    try:
        batch, _ = model_batch(model, start, name="start")
    except (TypeError, ValueError) as error:
        raise type(error)(f"start must be 'noise', 'grey' or an image ({error})") from None
    if len(batch) == 1 and count > 1:
        batch = np.repeat(batch, count, axis=0)
    if len(batch) != count:
        raise ValueError(f"start holds {len(batch)} images for {count} targets; give one or "
                         f"{count}")
    return batch


class _RelativeWeight(Regularizer):
    """A tf-keras-vis regulariser scaled per image by the objective's gradient scale."""

    def __init__(self, regularizer, scale):
        super().__init__(regularizer.name)
        self.regularizer = regularizer
        self.scale = tf.constant(scale, dtype=tf.float32)

    def __call__(self, input_value):
        return self.regularizer(input_value) * self.scale


def _gradient_scale(visualizer, score, seeds):
    """``n · mean|∂S/∂x|`` at the start image, one value per image.

    The gradient of a class logit and of a shallow channel's mean differ by
    a factor of about 100 on EfficientNet-Lite0; scaling the regularisers by
    it lets one set of weights work for every target.
    """
    images = tf.constant(seeds)
    with tf.GradientTape() as tape:
        tape.watch(images)
        total = tf.reduce_sum(score(visualizer.model(images)))
    gradient = np.abs(np.asarray(tape.gradient(total, images)))
    scale = gradient.reshape(len(seeds), -1).mean(axis=1) * gradient[0].size
    return np.where(scale > 0, scale, 1.0).astype(np.float32)


def _run(model, target_model, key, targets, *, steps, seed, start, tv_weight, norm_weight,
         norm_p, jitter, rotation, scale, learning_rate, progress, callbacks, description):
    steps = _check_steps(steps)
    seed = check_seed(seed, allow_none=False)
    for name, value, low in (("tv_weight", tv_weight, 0), ("norm_weight", norm_weight, 0),
                             ("jitter", jitter, 0), ("rotation", rotation, 0)):
        check_number(value, name, minimum=low, accepted="a number >= 0")
    if not is_integer(norm_p) or norm_p < 1:
        raise (ValueError if is_integer(norm_p) else TypeError)(
            f"norm_p must be a positive integer (the p of the p-norm), not {norm_p!r}")
    check_number(learning_rate, "learning_rate", minimum=0, inclusive=(False, True),
                 accepted="a positive step size")
    check_bool(progress, "progress")
    targets = [int(t) for t in targets]
    seeds = _start_images(start, len(targets), model, seed)
    modifiers = input_modifiers(jitter=jitter, rotation=rotation, scale=scale, seed=seed)
    modifiers.append(_keep_in_range)
    chosen_regularizers = regularizers(tv_weight=tv_weight, norm_weight=norm_weight,
                                       norm_p=norm_p)
    chosen_callbacks = ([TqdmProgress(description)] if progress else []) + list(callbacks or [])
    visualizer = _visualizer(model, target_model, key)
    score = CategoricalScore(targets)
    gradient_scale = _gradient_scale(visualizer, score, seeds)
    relative = [_RelativeWeight(regularizer, gradient_scale) for regularizer in chosen_regularizers]
    with _seeded_numpy(seed):
        result = visualizer(
            score,
            seed_input=tf.constant(seeds),
            input_range=(0.0, 255.0),
            input_modifiers=modifiers,
            regularizers=relative,
            steps=steps,
            # tf-keras-vis' optimiser, with an epsilon far below the smallest gradients
            # (a shallow channel's are ~1e-7 per pixel), so the step does not shrink with them.
            optimizer=keras.optimizers.RMSprop(learning_rate=learning_rate, rho=0.999,
                                               epsilon=1e-12),
            callbacks=chosen_callbacks,
        )
    return np.asarray(result, dtype=np.float32)


# --------------------------------------------------------------------------
# Targets: a class logit, or a channel of a layer
# --------------------------------------------------------------------------

def _as_list(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value), False
    return [value], True


def maximize_class(model: keras.Model, class_index, *, steps: int | None = None, seed: int = 0,
                   start="noise", tv_weight: float = 4.0, norm_weight: float = 0.05,
                   norm_p: int = 1, jitter: int = 8, rotation: float = 0.0, scale=None,
                   learning_rate: float = 2.0, progress: bool = True, callbacks=None) -> np.ndarray:
    """The input that maximises a class logit: float32 ``(H, W, 3)`` pixels in 0..255.

    ``class_index``: an index or ImageNet name ("espresso", "tabby"), or a
    list of them, optimised together as a batch (one image each; returns
    ``(N, H, W, 3)``). ``steps``: ascent steps (default
    :func:`default_steps`, fewer in fast mode). ``seed``: seeds the start
    noise and every random transformation, so a run repeats exactly.
    ``start``: "noise" (low-contrast noise around grey), "grey", or an image
    or batch to start from. ``tv_weight``, ``norm_weight`` (``norm_p``: the
    norm's order): the regularisers, relative to the objective's gradient
    scale (0 turns one off). ``jitter`` (pixels), ``rotation`` (degrees),
    ``scale`` ((low, high) zoom or None): random transformations at every
    step. ``learning_rate``: of tf-keras-vis' RMSprop optimiser, in pixel
    units. ``progress``: a tqdm bar. ``callbacks``: more tf-keras-vis
    callbacks (e.g. :class:`Snapshots`).
    """
    classes, single = _as_list(class_index)
    indices = resolve_classes(classes, len(classes), num_classes=model_spec(model).num_classes)
    images = _run(model, model, ("class",), indices, steps=steps, seed=seed, start=start,
                  tv_weight=tv_weight, norm_weight=norm_weight, norm_p=norm_p, jitter=jitter,
                  rotation=rotation, scale=scale, learning_rate=learning_rate,
                  progress=progress, callbacks=callbacks,
                  description=f"maximising class {', '.join(str(c) for c in classes)}")
    return images[0] if single else images


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
    channels, single = _as_list(channel)
    count = int(output_shape_of(find_layer(model, layer_name))[-1])
    for c in channels:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise TypeError(f"a channel is an integer index, not {type(c).__name__}")
        if not 0 <= int(c) < count:
            raise ValueError(f"channel {int(c)} is out of range: layer {layer_name!r} has "
                             f"{count} channels, 0..{count - 1}")
    return [int(c) for c in channels], single


def maximize_channel(model: keras.Model, layer, channel, *, pre_activation: bool = True,
                     steps: int | None = None, seed: int = 0, start="noise",
                     tv_weight: float = 4.0, norm_weight: float = 0.05, norm_p: int = 1,
                     jitter: int = 8, rotation: float = 0.0, scale=None,
                     learning_rate: float = 2.0, progress: bool = True,
                     callbacks=None) -> np.ndarray:
    """The input that maximises the mean activation of one channel of a layer.

    ``S(x) = mean_{i,j} A^l(x)[i, j, channel]``, the "channel objective" of
    Olah et al. (2017). ``channel``: an index or a list (one image each,
    optimised as a batch). ``pre_activation``: see
    :func:`maximization_target`. A shallow layer's channel asks for a
    colour or an edge repeated everywhere; a deep one for textures and
    object parts. Other arguments as in :func:`maximize_class`; returns
    float32 ``(H, W, 3)`` (or ``(N, H, W, 3)``) pixels in 0..255.
    """
    target = maximization_target(model, layer, pre_activation=pre_activation)
    channels, single = channels_of(model, target, channel)
    cut = layer_output_model(model, target)
    images = _run(model, cut, ("channel", target), channels, steps=steps, seed=seed,
                  start=start, tv_weight=tv_weight, norm_weight=norm_weight, norm_p=norm_p,
                  jitter=jitter, rotation=rotation, scale=scale, learning_rate=learning_rate,
                  progress=progress, callbacks=callbacks,
                  description=f"maximising {target} channel {', '.join(map(str, channels))}")
    return images[0] if single else images


def class_score(model: keras.Model, images, class_index) -> np.ndarray | float:
    """The logit of ``class_index`` for one image (a float) or a batch (an array)."""
    batch, single = model_batch(model, images)
    indices = resolve_for_model(model, class_index, batch)
    logits = predict_logits(model, batch)
    scores = logits[np.arange(len(batch)), indices]
    return float(scores[0]) if single else scores


def channel_score(model: keras.Model, images, layer, channel, *,
                  pre_activation: bool = True) -> np.ndarray | float:
    """The objective of :func:`maximize_channel`: a channel's mean activation, per image."""
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
