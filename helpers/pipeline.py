"""The one call step every explainer shares.

Occlusion, RISE, saliency, SmoothGrad, Grad-CAM, SHAP, the attacks and the
deletion curves all begin the same way: check the model, turn the images into
a batch the model accepts, decide which class each image is explained for.
They do it here, once::

    call = explanation_call(model, images, class_index)
    call.batch       # float32 (N, H, W, C): 0..255 pixels at the model's size and channels
    call.classes     # int64 (N,): one class per image, checked against the model's outputs
    call.logits      # the model's logits: the model itself, or a weight-sharing twin
                     # without its softmax when the model ends in one
    call.unwrap(maps)    # one map for one image, a batch for a batch

What this step guarantees to every method:

* **The model** must be a Keras model with one image input (batch, H, W, C),
  C = 1 (grayscale) or 3 (RGB), taking pixels in 0..255 (put any scaling
  inside the model, as the course's models do), and one output
  (batch, classes). A model *name* gets a TypeError that says to load it.
* **The logit is explained.** A model that ends in a softmax (the usual
  ``Dense(n, activation="softmax")``, a ``Softmax`` layer or an
  ``Activation("softmax")``, also as the last layer of a nested model) is
  detected once; every method then runs on a twin that shares the model's
  weights and stops before the softmax. Methods that report probabilities
  apply the softmax to those logits once, so a model with and without its
  softmax head gets the same explanation. The user's model is never edited.
* **Images** in any accepted form (sample name, path, PIL image, array, list,
  prepared batch) become the model's size; grayscale models get luminance
  (ITU-R BT.601 weights, as PIL's "L" mode).
* **Classes** are an index, an ImageNet name (for 1000-class models), one per
  image, or None (each image's predicted class), checked against the model's
  own number of outputs.

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
from .labels import NUM_CLASSES, class_index as class_index_of

__all__ = ["model_spec", "logits_model"]

# ITU-R BT.601 luma weights (PIL's RGB -> "L" conversion uses the same).
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)
CACHE_ENTRIES_PER_MODEL = 8


# The knob checks live in .checks (below every module); re-exported for the methods.
from .checks import (check_bool, check_choice, check_number, check_seed,  # noqa: E402,F401
                     positive_int)


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
# The model: shape, classes, softmax head
# --------------------------------------------------------------------------

def _is_softmax(activation) -> bool:
    return activation is keras.activations.softmax or \
        getattr(activation, "__name__", None) == "softmax"


def _output_layer(model):
    history = getattr(model.outputs[0], "_keras_history", None)
    return history[0] if history else model.layers[-1]


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


def _softmax_replacement(layer):
    """(description, callable) that computes ``layer``'s logits, or None if no softmax."""
    if isinstance(layer, keras.layers.Softmax) or (
            isinstance(layer, keras.layers.Activation) and _is_softmax(layer.activation)):
        return f"the {type(layer).__name__} layer {layer.name!r}", lambda x, *a, **k: x
    if isinstance(layer, keras.layers.Dense) and _is_softmax(layer.activation):
        return f"the softmax activation of Dense layer {layer.name!r}", _DenseLogits(layer)
    if isinstance(layer, keras.Model):
        inner = _logit_twin(layer)
        if inner is not None:
            description, twin = inner
            return f"{description} (inside {layer.name!r})", twin
    return None


def _logit_twin(model):
    """(description, weight-sharing logits model) for a softmax-ending model, else None."""
    last = _output_layer(model)
    found = _softmax_replacement(last)
    if found is None:
        activation = getattr(last, "activation", None)
        if activation is not None and _is_softmax(activation):
            # A softmax folded into another layer type: explain a copy with a
            # linear activation (tf-keras-vis ReplaceToLinear); it does not follow
            # later weight changes of the model, so it is rebuilt per weights.
            from tf_keras_vis.utils.model_modifiers import ReplaceToLinear

            copy = keras.models.clone_model(model)
            copy.set_weights(model.get_weights())
            ReplaceToLinear()(copy)
            return f"the softmax activation of {type(last).__name__} layer {last.name!r} " \
                   "(explained on a copy)", copy
        return None
    description, replacement = found
    # Built on the model's own graph tensors (the softmax layer's input), so the
    # twin shares every layer and its inner layers' outputs stay reachable from
    # its input (Grad-CAM and SHAP read them).
    return description, keras.Model(model.inputs[0], replacement(last.input),
                                    name=f"{model.name}_logits")


@dataclass(frozen=True)
class ModelSpec:
    """What every method needs to know about a model, read once and cached.

    ``input_shape`` (H, W, C); ``num_classes``; ``softmax``: where the softmax
    head was found (None when the model returns logits already).
    """

    name: str
    input_shape: tuple[int, int, int]
    num_classes: int
    softmax: str | None
    _logits: object  # the twin, or a weak reference to the model itself

    @property
    def size(self) -> tuple[int, int]:
        return self.input_shape[:2]

    @property
    def channels(self) -> int:
        return self.input_shape[2]

    @property
    def logits(self):
        return self._logits() if isinstance(self._logits, weakref.ref) else self._logits


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


def _read_spec(model) -> ModelSpec:
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
    twin = _logit_twin(model)
    return ModelSpec(name=model.name, input_shape=(int(shape[1]), int(shape[2]), int(shape[3])),
                     num_classes=int(outputs[0][-1]),
                     softmax=None if twin is None else twin[0],
                     _logits=weakref.ref(model) if twin is None else twin[1])


_SPECS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def model_spec(model, name: str = "model") -> ModelSpec:
    """The checked :class:`ModelSpec` of ``model`` (read once per model)."""
    check_model(model, name)
    spec = _SPECS.get(model)
    if spec is None:
        spec = _SPECS[model] = _read_spec(model)
    return spec


def logits_model(model):
    """The Keras model that returns ``model``'s logits: itself, or its softmax-free twin."""
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


def resolve_classes(class_index, batch_size: int, *, model=None, batch=None,
                    num_classes: int = NUM_CLASSES, name: str = "class_index") -> np.ndarray:
    """One class index per image, as an int array of length ``batch_size``.

    ``class_index`` may be None (each image's top-1 prediction, which needs
    ``model`` and ``batch``), an index or name for every image, or a list
    with one index or name per image. ``num_classes`` bounds indices for
    models that are not 1000-class ImageNet models; names are ImageNet names,
    so they need a 1000-class model.
    """
    if class_index is None:
        if model is None or batch is None:
            raise ValueError(f"{name}=None (the predicted class) needs the model and batch")
        return np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    items = list(class_index) if isinstance(class_index, (list, tuple, np.ndarray)) else None
    if items is None:
        items = [class_index] * batch_size
    if len(items) != batch_size:
        raise ValueError(f"{name}: got {len(items)} classes for {batch_size} images; give one "
                         "per image (or one for all)")
    indices = []
    for item in items:
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
        indices.append(index)
    return np.asarray(indices, dtype=np.int64)


def resolve_for_model(model, class_index, batch: np.ndarray, *, name: str = "class_index"
                      ) -> np.ndarray:
    """One class per image of ``batch``, checked against the model's outputs (None: predicted)."""
    spec = model_spec(model)
    if class_index is None:
        return np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    return resolve_classes(class_index, len(batch), num_classes=spec.num_classes, name=name)


@dataclass
class ExplanationCall:
    """A checked call: the batch, one class per image, the logits model, and how to answer."""

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


def explanation_call(model, images, class_index=None, *, fit: str = "crop",
                     resolve: bool = True, name: str = "images") -> ExplanationCall:
    """Turn (model, images, class_index) into an :class:`ExplanationCall`.

    ``resolve=False`` leaves ``classes`` as None (for methods that choose
    classes themselves, e.g. SHAP's ranks).
    """
    spec = model_spec(model)
    batch, single = model_batch(model, images, fit=fit, name=name)
    classes = resolve_for_model(model, class_index, batch) if resolve else None
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
