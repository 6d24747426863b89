"""The one call step every explainer shares.

Occlusion, RISE, saliency, SmoothGrad, Grad-CAM, SHAP, the attacks and the
deletion curves all begin the same way: check the model, turn the images into
a batch the model accepts, decide which class each image is explained for.
They do it here, once::

    call = explanation_call(model, images, class_index)
    call.batch       # float32 (N, H, W, C): 0..255 pixels at the model's size and channels
    call.classes     # int64 (N,): one class per image, checked against the model's outputs
    call.logits      # the model's scores: the model itself, or a weight-sharing twin
                     # without its softmax or sigmoid when the model ends in one
    call.model       # the model to explain: the one given, or its contrast twin
    call.unwrap(maps)    # one map for one image, a batch for a batch

What this step guarantees to every method:

* **The model** must be a Keras model with one image input (batch, H, W, C),
  C = 1 (grayscale) or 3 (RGB), taking pixels in 0..255 (put any scaling
  inside the model, as the course's models do), and one output
  (batch, classes). A model *name* gets a TypeError that says to load it.
* **The score before the head's activation is explained.** The head is
  read once (:func:`detect_head`): a softmax (``Dense(n,
  activation="softmax")``, a ``Softmax`` layer or an
  ``Activation("softmax")``), a sigmoid (multi-label, the same three forms),
  a single output (a binary logit, or its probability through a sigmoid),
  or a linear head (the model returns its scores), also as the last layer of
  a nested model. Where the model applies a softmax or sigmoid, every method
  runs on a twin that shares the model's weights and stops before it;
  methods that report probabilities apply the model's own activation to the
  scores once (softmax, or sigmoid for a sigmoid or single-output head), so
  a model with and without its head's activation gets the same explanation.
  The user's model is never edited. A head the course cannot read (a Lambda,
  an unknown layer after the Dense, another activation) is refused with a
  message naming :func:`declare_head`, which says where the scores are.
* **Images** in any accepted form (sample name, path, PIL image, array, list,
  prepared batch) become the model's size; grayscale models get luminance
  (ITU-R BT.601 weights, as PIL's "L" mode).
* **Classes** are an index, an ImageNet name (for 1000-class models), one per
  image, or None (each image's predicted class), checked against the model's
  own number of outputs (a single-output model: class 0, its only score).
  Explainers also take a contrast, ``h.contrast(a, b)``: the score
  ``logit a - logit b`` of a weight-sharing twin (:func:`contrast_model`),
  so every method explains it as it explains a class.

And the shared plumbing: :func:`batches` (the batch loop with its progress
bar), :func:`cached` (one per-model cache policy: weak keys, so a cache never
keeps a model alive, and a bounded number of entries per model) and the knob
checks, which follow one rule: a wrong type raises TypeError, a wrong value
ValueError, and the message names the argument and what is accepted.
"""

from __future__ import annotations

import weakref
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from .environment import tf
import keras

from .images import as_batch, to_float_pixels
from .labels import NUM_CLASSES, class_index as class_index_of, class_name

__all__ = ["model_spec", "logits_model", "contrast", "declare_head", "detect_head", "HEADS"]

# ITU-R BT.601 luma weights (PIL's RGB -> "L" conversion uses the same).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
CACHE_ENTRIES_PER_MODEL = 8


# The knob checks live in .checks (below every module); re-exported for the methods.
from .checks import (check_bool, check_choice, check_choices, check_number,  # noqa: E402,F401
                     check_seed, positive_int)


# --------------------------------------------------------------------------
# One per-model cache policy
# --------------------------------------------------------------------------

_CACHES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def cached(model, key, build, *, limit: int = CACHE_ENTRIES_PER_MODEL):
    """``build()`` once per (model, key), kept while the model lives.

    Keys are held weakly by model, so letting go of a model frees everything
    built for it; each model keeps its ``limit`` most recently used entries
    (compiled functions and derived models are large). ``build`` must not
    hold ``model`` strongly (use :func:`holder`), or the entry would keep its
    own key alive.
    """
    entries = _CACHES.get(model)
    if entries is None:
        entries = _CACHES[model] = OrderedDict()
    if key in entries:
        entries.move_to_end(key)
        return entries[key]
    value = entries[key] = build()
    while len(entries) > limit:
        entries.popitem(last=False)
    return value


def holder(target, model):
    """A callable that returns ``target``: weakly when it is ``model`` itself (a cached
    function must not keep its own cache key alive), strongly for a derived model
    (a twin or a modified copy, which must live as long as the function)."""
    if target is model:
        return weakref.ref(model)
    return lambda: target


# --------------------------------------------------------------------------
# The model: shape, classes, head
# --------------------------------------------------------------------------

HEADS = ("softmax", "sigmoid", "binary", "linear")
HEAD_ACTIVATIONS = ("softmax", "sigmoid")  # squashing functions left out to reach the scores


def _activation_name(activation) -> str | None:
    """"softmax", "sigmoid" or "linear" for those activations, the name of any other, or None."""
    if activation is None:
        return None
    for name in ("softmax", "sigmoid", "linear"):
        if activation is getattr(keras.activations, name) or \
                getattr(activation, "__name__", None) == name:
            return name
    return getattr(activation, "__name__", type(activation).__name__)


def _is_softmax(activation) -> bool:
    return _activation_name(activation) == "softmax"


def _output_layer(model):
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else model.layers[-1]


def _output_layer_input(model):
    """The tensor that ``model``'s output layer takes *in this model's graph* (a layer
    used in several graphs, such as a nested model, has one input per use)."""
    history = getattr(model.outputs[0], "_keras_history", None)
    if not history:
        return model.layers[-1].input
    layer, node_index = history[0], history[1]
    inputs = layer._inbound_nodes[node_index].input_tensors
    return inputs[0] if len(inputs) == 1 else inputs


class _DenseLogits(keras.layers.Layer):
    """A ``Dense`` layer's output before its activation, with the layer's own weights."""

    def __init__(self, dense, **kwargs):
        super().__init__(name=f"{dense.name}_logits", **kwargs)
        self.dense = dense

    def call(self, inputs):
        outputs = keras.ops.matmul(inputs, self.dense.kernel)
        return outputs + self.dense.bias if self.dense.use_bias else outputs

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.dense.units,)


def _activation_replacement(layer):
    """(activation, description, callable computing ``layer``'s scores) for a layer that
    applies a softmax or sigmoid head, else None."""
    if isinstance(layer, keras.layers.Softmax):
        return "softmax", f"the Softmax layer {layer.name!r}", lambda x, *a, **k: x
    activation = _activation_name(getattr(layer, "activation", None))
    if activation in HEAD_ACTIVATIONS and isinstance(layer, keras.layers.Activation):
        return activation, f"the Activation layer {layer.name!r}", lambda x, *a, **k: x
    if activation in HEAD_ACTIVATIONS and isinstance(layer, keras.layers.Dense):
        return (activation, f"the {activation} activation of Dense layer {layer.name!r}",
                _DenseLogits(layer))
    if isinstance(layer, keras.Model):
        inner = detect_head(layer)
        if inner.twin is not None:
            return inner.activation, f"{inner.found} (inside {layer.name!r})", inner.twin
    return None


def _unknown_head(model, last) -> str | None:
    """Why the scores of ``model`` cannot be told apart from its output, or None.

    A Lambda, an activation other than softmax or sigmoid, or a layer of the
    user's own class right after a Dense layer may squash the scores in a way
    the course cannot undo; anything else is explained as it is.
    """
    if isinstance(last, keras.Model):
        inner = detect_head(last)
        return None if inner.problem is None else f"{inner.problem} (inside {last.name!r})"
    activation = _activation_name(getattr(last, "activation", None))
    if isinstance(last, keras.layers.Lambda):
        return f"its output comes from the Lambda layer {last.name!r}"
    if activation not in (None, "linear", *HEAD_ACTIVATIONS):
        return (f"its output layer {last.name!r} ({type(last).__name__}) applies the "
                f"activation {activation!r}")
    if isinstance(last, (keras.layers.ReLU, keras.layers.LeakyReLU, keras.layers.ELU,
                         keras.layers.PReLU)):
        return f"its output layer {last.name!r} is a {type(last).__name__}"
    parents = [tensor._keras_history[0] for tensor in tf.nest.flatten(_output_layer_input(model))
               if getattr(tensor, "_keras_history", None)] \
        if not isinstance(last, keras.layers.InputLayer) else []
    if not type(last).__module__.startswith("keras") and any(
            isinstance(parent, keras.layers.Dense) for parent in parents):
        return (f"its output layer {last.name!r} is a {type(last).__name__} (a layer class the "
                "course does not know) after a Dense layer")
    return None


def _score_layer_hint(model, last) -> str:
    """The name of the Dense layer nearest the output: most likely where the scores are."""
    dense = [layer.name for layer in model.layers
             if isinstance(layer, keras.layers.Dense) and layer is not last]
    return dense[-1] if dense else "NAME"


@dataclass(frozen=True)
class Head:
    """What :func:`detect_head` read from a model's last layer.

    ``kind``: one of :data:`HEADS` ("binary": one output, a logit or a
    probability), or "unknown" (``problem`` says why); ``activation``:
    "softmax" or "sigmoid" when the model applies one that the course leaves
    out, else None; ``found``: where (a sentence); ``twin``: the
    weight-sharing model that stops before it (None when the output is the
    score already).
    """

    kind: str
    activation: str | None = None
    found: str | None = None
    twin: object = None
    problem: str | None = None


def detect_head(model) -> Head:
    """The head of a Keras model: softmax, sigmoid, binary, linear, or unknown (never raises)."""
    last = _output_layer(model)
    outputs = model.outputs[0].shape[-1]
    found = _activation_replacement(last)
    if found is None:
        activation = _activation_name(getattr(last, "activation", None))
        if activation in HEAD_ACTIVATIONS:
            # A softmax or sigmoid folded into another layer type: explain a copy with a
            # linear activation (tf-keras-vis ReplaceToLinear); it does not follow later
            # weight changes of the model, so it is rebuilt per weights.
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
            ReplaceToLinear()(copy)
            found = (activation, f"the {activation} activation of {type(last).__name__} layer "
                     f"{last.name!r} (explained on a copy)", None)
            twin = copy
        else:
            problem = _unknown_head(model, last)
            if problem is not None:
                return Head("unknown", problem=problem)
            return Head("binary" if outputs == 1 else "linear")
    else:
        # Built on the model's own graph tensors (the head layer's input), so the twin
        # shares every layer and its inner layers' outputs stay reachable from its input
        # (Grad-CAM and SHAP read them).
        twin = keras.Model(model.inputs[0], found[2](_output_layer_input(model)),
                           name=f"{model.name}_logits")
    activation, description = found[0], found[1]
    kind = "binary" if outputs == 1 else activation
    return Head(kind, activation, description, twin)


@dataclass(frozen=True)
class ModelSpec:
    """What every method needs to know about a model, read once and cached.

    ``input_shape`` (H, W, C); ``num_classes``: the scores the methods index;
    ``head``: "softmax", "sigmoid", "binary" or "linear" (see :func:`detect_head`);
    ``activation``: the softmax or sigmoid the model applies and the methods
    leave out (None when the model returns its scores); ``found``: where it
    was found; ``probability``: how scores become probabilities, "softmax" or
    "sigmoid" (the model's own head; for a model that returns scores, sigmoid
    for a single output and softmax otherwise, unless :func:`declare_head`
    says); ``contrasts``: the (a, b) class pairs of a contrast twin's extra
    scores (``logit a - logit b``, after the model's own classes).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    head: str
    activation: str | None
    found: str | None
    _logits: object  # the twin, or a weak reference to the model itself
    probability: str = "softmax"
    contrasts: tuple = ()

    @property
    def softmax(self) -> str | None:
        """Where the softmax head was found (None when the model has none)."""
        return self.found if self.activation == "softmax" else None

    @property
    def size(self) -> tuple[int, int]:
        return self.input_shape[:2]

    @property
    def channels(self) -> int:
        return self.input_shape[2]

    @property
    def logits(self):
        return self._logits() if isinstance(self._logits, weakref.ref) else self._logits

    def probabilities(self, logits) -> np.ndarray:
        """The model's probabilities from its scores (numpy, float32, last axis classes).

        Softmax or sigmoid as :attr:`probability` says; a contrast's score is
        ``p_a - p_b``.
        """
        logits = np.asarray(logits, dtype=np.float64)
        base = logits[..., :self.num_classes - len(self.contrasts)]
        if self.probability == "softmax":
            result = softmax(base)
        else:
            result = (1.0 / (1.0 + np.exp(-base))).astype(np.float32)
        if self.contrasts:
            first, second = (list(side) for side in zip(*self.contrasts))
            result = np.concatenate([result, result[..., first] - result[..., second]], axis=-1)
        return result

    def probabilities_tf(self, logits):
        """:meth:`probabilities` inside a traced function (float32 tensors)."""
        base = logits[..., :self.num_classes - len(self.contrasts)]
        result = tf.nn.softmax(base) if self.probability == "softmax" else tf.sigmoid(base)
        if self.contrasts:
            first, second = (list(side) for side in zip(*self.contrasts))
            result = tf.concat([result, tf.gather(result, first, axis=-1)
                                - tf.gather(result, second, axis=-1)], axis=-1)
        return result


def softmax(logits) -> np.ndarray:
    """Softmax over the last axis, computed stably in float64, returned as float32."""
    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


def check_model(model, name: str = "model"):
    """``model`` if it is a Keras model; a TypeError that says what to pass otherwise."""
    if isinstance(model, keras.Model):
        return model
    if isinstance(model, str):
        raise TypeError(f"{name} must be a Keras model, not the string {model!r}; load it "
                        f"first: model = h.load_model({model!r}) (h.MODEL_NAMES lists the "
                        "names)")
    raise TypeError(f"{name} must be a Keras model (e.g. h.load_model()), not "
                    f"{type(model).__name__}")


def checked_shapes(model) -> tuple[tuple[int, int, int], int]:
    """(input shape (H, W, C), number of outputs) of a model the course can explain."""
    if len(model.inputs) != 1:
        raise ValueError(f"model {model.name!r} has {len(model.inputs)} inputs; the course "
                         "explains models with one image input (batch, height, width, channels)")
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or shape[1] is None or shape[2] is None or shape[3] not in (1, 3):
        raise ValueError(
            f"model {model.name!r} has input shape {shape}; the course needs a fixed image "
            "input (batch, height, width, 1 or 3 channels) of 0..255 pixels")
    outputs = [tuple(output.shape) for output in model.outputs]
    if len(outputs) != 1 or len(outputs[0]) != 2 or outputs[0][-1] is None:
        raise ValueError(
            f"model {model.name!r} must have one output of shape (batch, classes); its "
            f"outputs have shapes {outputs}")
    return (int(shape[1]), int(shape[2]), int(shape[3])), int(outputs[0][-1])


def _read_spec(model) -> ModelSpec:
    input_shape, num_classes = checked_shapes(model)
    head = detect_head(model)
    if head.kind == "unknown":
        layer = _score_layer_hint(model, _output_layer(model))
        raise ValueError(
            f"model {model.name!r}: the course cannot tell its scores from its output: "
            f"{head.problem}. Say what the head is: h.declare_head(model, 'softmax', "
            f"layer={layer!r}) (or 'sigmoid': the activation the model applies to that "
            "layer's scores), or h.declare_head(model, 'softmax' or 'sigmoid') if its output "
            "is the scores themselves")
    probability = "sigmoid" if head.activation == "sigmoid" or num_classes == 1 else "softmax"
    return ModelSpec(name=model.name, input_shape=input_shape, num_classes=num_classes,
                     head=head.kind, activation=head.activation, found=head.found,
                     _logits=weakref.ref(model) if head.twin is None else head.twin,
                     probability=probability)


_SPECS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_spec(model, name: str = "model") -> ModelSpec:
    """The checked :class:`ModelSpec` of ``model`` (read once per model)."""
    check_model(model, name)
    spec = _SPECS.get(model)
    if spec is None:
        spec = _SPECS[model] = _read_spec(model)
    return spec


def _output_width(layer) -> int | None:
    """The last dimension of a layer's (batch, k) output, None for any other output."""
    shape = getattr(getattr(layer, "output", None), "shape", None)
    return int(shape[-1]) if shape is not None and len(shape) == 2 and shape[-1] else None


def declare_head(model, activation: str, *, layer=None):
    """Tell the course what a model's head is, where it cannot see it; returns ``model``.

    ``activation``: what turns the model's scores into probabilities,
    "softmax" (one class per image) or "sigmoid" (multi-label, or a single
    yes/no output). ``layer``: the name of the top-level layer whose output
    holds those scores, one per class, when the model applies the activation
    after it (e.g. in a Lambda); None (default) when the model's output *is*
    the scores. Every explainer then explains those scores, on a
    weight-sharing twin that stops at ``layer`` (the model is not edited),
    and methods that report probabilities apply ``activation`` to them.

    Softmax, sigmoid, single-output and linear heads are found without it;
    it is needed for a head the course cannot read (a Lambda, an unknown
    layer after the Dense, another activation), and for a model that returns
    multi-label logits (declare "sigmoid", or its probabilities would be a
    softmax).
    """
    check_model(model)
    check_choice(activation, "activation", HEAD_ACTIVATIONS)
    input_shape, num_classes = checked_shapes(model)
    twin, found = None, f"declared: the output is the scores, {activation} gives probabilities"
    if layer is not None:
        if isinstance(layer, keras.layers.Layer):
            layer = layer.name
        if not isinstance(layer, str):
            raise TypeError(f"layer must be a layer name (str) or None, not "
                            f"{type(layer).__name__}")
        candidates = [item for item in model.layers
                      if not isinstance(item, (keras.layers.InputLayer, keras.Model))
                      and _output_width(item) == num_classes]
        chosen = next((item for item in candidates if item.name == layer), None)
        if chosen is None:
            raise ValueError(
                f"layer: model {model.name!r} has no top-level layer {layer!r} with "
                f"{num_classes} scores per image; candidates: "
                f"{', '.join(item.name for item in candidates) or 'none'}")
        if chosen is not _output_layer(model):
            twin = keras.Model(model.inputs[0], chosen.output, name=f"{model.name}_logits")
            found = f"declared: the {activation} after layer {layer!r}"
    _CACHES.pop(model, None)  # functions built for an earlier reading of the head
    _SPECS[model] = ModelSpec(
        name=model.name, input_shape=input_shape, num_classes=num_classes,
        head="binary" if num_classes == 1 else activation,
        activation=None if twin is None else activation, found=found,
        _logits=weakref.ref(model) if twin is None else twin, probability=activation)
    return model


def logits_model(model):
    """The Keras model that returns ``model``'s scores: itself, or its twin without the
    softmax or sigmoid head."""
    return model_spec(model).logits


def compiled_logits(model):
    """The logits as one traced ``tf.function`` (any batch size), cached per model.

    On a CPU an eager Keras call costs several times more than the compiled
    graph; every lesson reuses this one.
    """
    spec = model_spec(model)

    def build():
        logits = holder(spec.logits, model)
        return tf.function(lambda batch: logits()(batch, training=False),
                           input_signature=[tf.TensorSpec((None,) + spec.input_shape,
                                                          tf.float32)])
    return cached(model, "compiled_logits", build)


def predict_logits(model, batch, batch_size: int = 32) -> np.ndarray:
    """Logits of a prepared float32 batch (N, H, W, C) of 0..255 pixels, in chunks."""
    batch_size = positive_int(batch_size, "batch_size")
    batch = np.asarray(batch, dtype=np.float32)
    forward = compiled_logits(model)
    outputs = [forward(tf.constant(batch[i:i + batch_size])).numpy()
               for i in range(0, len(batch), batch_size)]
    return np.concatenate(outputs, axis=0)


# --------------------------------------------------------------------------
# Images and classes for a model
# --------------------------------------------------------------------------

def _to_gray(batch: np.ndarray) -> np.ndarray:
    """(N, H, W, 3) -> (N, H, W, 1): exact for gray images stored as RGB, luma otherwise."""
    if np.array_equal(batch[..., 0], batch[..., 1]) and np.array_equal(batch[..., 1],
                                                                       batch[..., 2]):
        return np.ascontiguousarray(batch[..., :1])
    return np.tensordot(batch, LUMA_WEIGHTS, axes=([-1], [0]))[..., None].astype(np.float32)


def _checked_pixels(batch: np.ndarray, name: str) -> np.ndarray:
    if not np.issubdtype(batch.dtype, np.number) or np.issubdtype(batch.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers (pixels 0..255), not {batch.dtype}")
    batch = batch.astype(np.float32)
    if not np.all(np.isfinite(batch)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return batch


def model_batch(model, images, *, fit: str = "crop", name: str = "images"):
    """``(batch, single)``: ``images`` as float32 (N, H, W, C) pixels for ``model``.

    ``images``: one image in any form :func:`helpers.load_image` reads, a list
    of them, or a prepared batch (N, H, W, C) at the model's size (kept as
    it is; an RGB batch for a grayscale model is converted). A float image
    already at the model's size keeps its exact values (an adversarial
    image's small perturbation must not be rounded away). ``single`` tells
    the caller to return one map rather than a batch.
    """
    spec = model_spec(model)
    height, width, channels = spec.input_shape
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError(f"{name}: the list of images is empty")
        parts = [model_batch(model, image, fit=fit, name=f"{name}[{i}]")
                 for i, image in enumerate(images)]
        if not all(single for _, single in parts):
            raise ValueError(f"{name}: a list must hold single images, not batches")
        return np.concatenate([batch for batch, _ in parts]), False
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[1:3] != (height, width) or images.shape[-1] not in (channels, 3):
            raise ValueError(
                f"{name}: a batch must have shape (N, {height}, {width}, {channels}) for model "
                f"{spec.name!r}; got {images.shape}. Pass single images (any size) to have "
                "them resized")
        if len(images) == 0:
            raise ValueError(f"{name}: the batch is empty")
        batch = _checked_pixels(images, name)
        return (_to_gray(batch) if batch.shape[-1] != channels else batch), False
    if (channels == 1 and isinstance(images, np.ndarray) and images.shape[:2] == (height, width)
            and images.ndim in (2, 3) and (images.ndim == 2 or images.shape[-1] == 1)
            and np.issubdtype(images.dtype, np.floating)):
        gray = to_float_pixels(np.repeat(images.reshape(height, width, 1), 3, axis=-1))
        return np.ascontiguousarray(gray[None, ..., :1]), True
    batch, single = as_batch(images, (height, width), fit=fit)
    return (_to_gray(batch) if channels == 1 else batch), single


@dataclass(frozen=True)
class Contrast:
    """Class ``first`` versus class ``second``: the score explained is
    ``logit(first) - logit(second)`` (made by :func:`contrast`)."""

    first: object
    second: object

    def __str__(self) -> str:
        return f"{self.first} vs {self.second}"


def contrast(first, second) -> Contrast:
    """"Why ``first`` and not ``second``?": a target every explainer accepts as ``class_index``.

    ``h.gradcam(model, "chelsea", h.contrast("tabby", "tiger_cat"))`` explains
    the difference of the two classes' scores (logits, before any softmax or
    sigmoid), ``z_first - z_second``: what speaks for the first class *more
    than* for the second. Classes are indices or ImageNet names. Gradients
    are linear, so a contrast's gradient is the difference of the two
    gradients (saliency, gradient x input, integrated gradients); Grad-CAM
    weights its channels by that difference before the ReLU. Methods that
    report probabilities use ``p_first - p_second``. Attacks and other
    functions that take one class refuse it.
    """
    for value, name in ((first, "first"), (second, "second")):
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, int, np.integer)):
            raise TypeError(f"contrast: {name} must be a class index (integer) or an ImageNet "
                            f"class name (str), not {type(value).__name__} ({value!r})")
    return Contrast(first, second)


def _one_class(item, num_classes: int, name: str) -> int:
    if isinstance(item, str):
        if num_classes != NUM_CLASSES:
            raise ValueError(
                f"{name}: {item!r} is an ImageNet class name, but the model has "
                f"{num_classes} classes; give an index 0..{num_classes - 1}")
        index = class_index_of(item)
    elif isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
        raise TypeError(f"{name} must be a class index (integer) or an ImageNet class "
                        f"name (str), or a list of them; got {type(item).__name__} "
                        f"({item!r})")
    else:
        index = int(item)
    if not 0 <= index < num_classes:
        raise ValueError(f"{name}: class index {index} is out of range: the model has "
                         f"classes 0..{num_classes - 1}")
    return index


def _targets(class_index, batch_size: int, num_classes: int, name: str, contrasts: bool) -> list:
    """One target per image: a class index, or an (a, b) pair for a contrast."""
    items = list(class_index) if isinstance(class_index, (list, tuple, np.ndarray)) else None
    if items is None:
        items = [class_index] * batch_size
    if len(items) != batch_size:
        raise ValueError(f"{name}: got {len(items)} classes for {batch_size} images; give one "
                         "per image (or one for all)")
    targets = []
    for item in items:
        if not isinstance(item, Contrast):
            targets.append(_one_class(item, num_classes, name))
            continue
        if not contrasts:
            raise ValueError(
                f"{name}: {item} is a contrast (h.contrast), which the explainers accept "
                "(saliency, Grad-CAM, occlusion, SHAP, the curves...); this function takes "
                "one class: give a class index or name")
        pair = (_one_class(item.first, num_classes, name),
                _one_class(item.second, num_classes, name))
        if pair[0] == pair[1]:
            raise ValueError(f"{name}: {item} contrasts class {pair[0]} with itself (its score "
                             "difference is zero everywhere); give two different classes")
        targets.append(pair)
    return targets


def resolve_classes(class_index, batch_size: int, *, model=None, batch=None,
                    num_classes: int = NUM_CLASSES, name: str = "class_index") -> np.ndarray:
    """One class index per image, as an int array of length ``batch_size``.

    ``class_index`` may be None (each image's top-1 prediction, which needs
    ``model`` and ``batch``), an index or name for every image, or a list
    with one index or name per image. ``num_classes`` bounds indices for
    models that are not 1000-class ImageNet models; names are ImageNet names,
    so they need a 1000-class model. A contrast (:func:`contrast`) is
    refused here: :func:`explanation_call` turns it into a score of its own.
    """
    if class_index is None:
        if model is None or batch is None:
            raise ValueError(f"{name}=None (the predicted class) needs the model and batch")
        return np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    return np.asarray(_targets(class_index, batch_size, num_classes, name, False),
                      dtype=np.int64)


def resolve_for_model(model, class_index, batch: np.ndarray, *, name: str = "class_index"
                      ) -> np.ndarray:
    """One class per image of ``batch``, checked against the model's outputs (None: predicted)."""
    spec = model_spec(model)
    if class_index is None:
        return np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    return resolve_classes(class_index, len(batch), num_classes=spec.num_classes, name=name)


class _ScoreDifferences(keras.layers.Layer):
    """The scores, followed by ``score[a] - score[b]`` for each contrast pair (a, b)."""

    def __init__(self, pairs, **kwargs):
        super().__init__(**kwargs)
        self.pairs = tuple(pairs)

    def call(self, scores):
        first = [a for a, _ in self.pairs]
        second = [b for _, b in self.pairs]
        return keras.ops.concatenate([scores, keras.ops.take(scores, first, axis=-1)
                                      - keras.ops.take(scores, second, axis=-1)], axis=-1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (input_shape[-1] + len(self.pairs),)


def contrast_model(model, pairs):
    """A weight-sharing twin whose scores are ``model``'s, then ``z_a - z_b`` for each pair.

    Cached per model; its :class:`ModelSpec` has the same head and lists the
    pairs (``contrasts``), so methods that report probabilities give
    ``p_a - p_b`` for them. Every method then explains one of its scores as
    it explains a class.
    """
    spec = model_spec(model)
    pairs = tuple((int(a), int(b)) for a, b in pairs)
    if spec.contrasts:
        raise ValueError(f"model {model.name!r} is a contrast twin already; contrast the "
                         "classes of the model it was made from")

    def build():
        logits = spec.logits
        twin = keras.Model(logits.inputs[0], _ScoreDifferences(
            pairs, name=f"{model.name}_contrasts")(logits.outputs[0]),
            name=f"{model.name}_contrast")
        _SPECS[twin] = ModelSpec(
            name=twin.name, input_shape=spec.input_shape, num_classes=spec.num_classes + len(pairs),
            head=spec.head, activation=spec.activation, found=spec.found,
            _logits=weakref.ref(twin), probability=spec.probability, contrasts=pairs)
        return twin
    return cached(model, ("contrast", pairs), build)


def class_label(index: int, num_classes: int, contrasts: tuple = ()) -> str:
    """A score's name for tables: the ImageNet name, "class 3", or "tabby - tiger_cat"
    (``num_classes`` counts the contrasts' scores too, as a contrast twin's spec does)."""
    base = num_classes - len(contrasts)
    index = int(index)
    if index >= base:
        first, second = contrasts[index - base]
        return f"{class_label(first, base)} - {class_label(second, base)}"
    return class_name(index) if base == NUM_CLASSES else f"class {index}"


@dataclass
class ExplanationCall:
    """A checked call: the model to explain, the batch, one class per image, how to answer.

    ``model`` is the model given, or its contrast twin when ``class_index``
    holds a contrast (its classes then index the twin's extra scores): a
    method computes everything on ``call.model``.
    """

    model: object
    spec: ModelSpec
    batch: np.ndarray
    classes: np.ndarray | None
    single: bool

    @property
    def logits(self):
        return self.spec.logits

    def unwrap(self, maps):
        """One image in, one map out; a batch in, a batch out."""
        return maps[0] if self.single else maps


def call_classes(model, class_index, batch: np.ndarray, *, contrasts: bool = True,
                 name: str = "class_index"):
    """``(model, classes)``: one score per image of ``batch`` (None: the predicted class).

    Contrasts become scores of :func:`contrast_model` (returned in place of
    ``model``); without any, ``model`` itself.
    """
    spec = model_spec(model)
    if class_index is None:
        return model, np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    targets = _targets(class_index, len(batch), spec.num_classes, name, contrasts)
    pairs = tuple(dict.fromkeys(t for t in targets if isinstance(t, tuple)))
    if pairs:
        model = contrast_model(model, pairs)
        targets = [spec.num_classes + pairs.index(t) if isinstance(t, tuple) else t
                   for t in targets]
    return model, np.asarray(targets, dtype=np.int64)


def explanation_call(model, images, class_index=None, *, fit: str = "crop",
                     resolve: bool = True, contrasts: bool = False,
                     name: str = "images") -> ExplanationCall:
    """Turn (model, images, class_index) into an :class:`ExplanationCall`.

    ``resolve=False`` leaves ``classes`` as None (for methods that choose
    classes themselves, e.g. SHAP's ranks). ``contrasts=True``: the method
    accepts :func:`contrast` targets (and must then use ``call.model``).
    """
    spec = model_spec(model)
    batch, single = model_batch(model, images, fit=fit, name=name)
    classes = None
    if resolve:
        model, classes = call_classes(model, class_index, batch, contrasts=contrasts)
        spec = model_spec(model)
    return ExplanationCall(model, spec, batch, classes, single)


# --------------------------------------------------------------------------
# One batch loop with its progress bar
# --------------------------------------------------------------------------

def progress_bar(total: int, enabled: bool, description: str, unit: str = "it"):
    """A tqdm.auto bar that disappears when done; ``enabled=False`` hides it."""
    from tqdm.auto import tqdm

    check_bool(enabled, "progress")
    return tqdm(total=total, disable=not enabled, desc=description, unit=unit, leave=False)


def batches(total: int, batch_size: int, *, progress: bool = True, description: str = "",
            unit: str = "image", minimum: int | None = None):
    """``(start, stop)`` of each batch of ``total`` items, with one progress bar.

    The bar is shown only when there is more than one batch (or more than
    ``minimum`` items, when given): a single quick step needs no bar.
    """
    check_bool(progress, "progress")
    threshold = batch_size if minimum is None else minimum
    with progress_bar(total, bool(progress) and total > threshold, description, unit) as bar:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            yield start, stop
            bar.update(stop - start)
