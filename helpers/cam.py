"""Class activation maps: Grad-CAM, Grad-CAM++, Score-CAM and guided Grad-CAM.

A convolutional layer keeps *where* things are: its output A is a stack of K
feature maps A^k of h x w cells. A class activation map weighs those maps by
how much each one matters for class c and adds them up:

    L^c = ReLU( sum_k  alpha_k^c A^k )       (h x w, then upsampled to the image)

The methods differ only in the channel weights alpha_k^c:

* **Grad-CAM** (Selvaraju, Cogswell, Das, Vedantam, Parikh & Batra 2017,
  *Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization*): the mean gradient of the class logit y^c over the map,
  alpha_k^c = 1/(h w) sum_ij dy^c / dA^k_ij.
* **Grad-CAM++** (Chattopadhay, Sarkar, Howlader & Balasubramanian 2018,
  *Grad-CAM++: Improved Visual Explanations for Deep Convolutional
  Networks*): a per-cell weighted mean of the positive gradients of
  exp(y^c), alpha_k^c = sum_ij a^kc_ij ReLU(d exp(y^c) / dA^k_ij) with
  a^kc_ij = g^2 / (2 g^2 + g^3 sum_ab A^k_ab) (g the gradient of y^c), so
  several instances of a class all count. Its maps scale with exp(y^c).
* **LayerCAM** (Jiang, Zhang, Hou, Cheng & Wei 2021, *LayerCAM: Exploring
  Hierarchical Class Activation Maps for Localization*, IEEE TIP): a weight
  per cell instead of per channel, the positive gradient,
  L^c_ij = ReLU(sum_k ReLU(dy^c/dA^k_ij) A^k_ij); it stays sharp at shallow
  layers, where the mean gradient of Grad-CAM cancels out.
* **HiResCAM** (Draelos & Carin 2020, *Use HiResCAM instead of Grad-CAM for
  faithful explanations of convolutional neural networks*): the element-wise
  product of gradient and activation, L^c_ij = ReLU(sum_k dy^c/dA^k_ij A^k_ij);
  for a model that ends in global average pooling and a dense layer, the
  cells before the ReLU add up to the logit minus its bias: each cell's map
  value is its share of the logit.
* **Score-CAM** (Wang, Wang, Du, Yang, Zhang, Ding, Mardziel & Hu 2020,
  *Score-CAM: Score-Weighted Visual Explanations for Convolutional Neural
  Networks*): no gradients. Each map A^k, upsampled and scaled to 0..1,
  masks the image; alpha_k^c is the softmax probability of class c for the
  masked image, alpha_k^c = softmax(f(X * norm(up(A^k))))_c.
  **Faster Score-CAM** (tabayashi0117's variant, ``max_N`` in tf-keras-vis)
  keeps only the ``max_channels`` maps with the largest spatial standard
  deviation.
* **Guided Grad-CAM** (Selvaraju et al. 2017): guided backpropagation
  (:func:`helpers.saliency`, ``method="guided"``) times the upsampled
  Grad-CAM, sharp edges inside the class-discriminative region.

What comes from a library and what is written here:

* Grad-CAM and Grad-CAM++ follow tf-keras-vis ``Gradcam`` and
  ``GradcamPlusPlus`` (``normalize_cam=False``, ``expand_cam=False``): the
  activations and gradients come from one compiled ``tf.function`` per model
  and layer (tf-keras-vis runs its tape eagerly, about ten times slower on a
  CPU), the channel weights (:func:`channel_weights`) are the same arithmetic
  in numpy, and the tests compare the maps with tf-keras-vis itself. Maps
  stay raw (tf-keras-vis by default rescales every map to 0..1 with
  ``(L - min) / (max - min)``; here ``normalise=True`` asks for that) and are
  upsampled here (below).
* Score-CAM is written here. tf-keras-vis' ``Scorecam`` builds all K masked
  copies of the image at once (with EfficientNet-Lite0's 1280 channels on
  "top_activation" that measured 3.7 GB above the model, see
  benchmarks/scorecam_benchmark.py); here the same arithmetic (its masks:
  scipy linear zoom, min-max to 0..1; its weights: softmax score; its top-N
  rule) runs ``batch_size`` masks at a time through a compiled function, so
  memory is bounded whatever K is. The tests check it equals tf-keras-vis.
* :func:`gradcam_parts` computes Grad-CAM by hand with ``tf.GradientTape``
  (in a traced function, as every gradient here: an eager tape holds the whole
  network's activations) and returns every intermediate, for the lesson and
  as an independent check of tf-keras-vis.
* Upsampling (:func:`upsample_map`) is bilinear with cell centres aligned
  (``tf.image.resize``): cell (i, j) of a 7 x 7 map lands at the centre of
  the 32 x 32 patch it summarises. tf-keras-vis' ``scipy.ndimage.zoom``
  aligns the corner cells with the image corners instead, which stretches
  the map outwards by up to half a cell.

Models whose last layer applies a softmax are explained through their
softmax-free twin (:mod:`helpers.pipeline`, sharing the model's weights), so
every method scores the logit y^c, as the papers do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .environment import tf
import keras

from .models import feature_model, find_layer, last_spatial_layer, spatial_layers
from .images import MAX_PIXELS, target_size
from .pipeline import (batches, cached, check_bool, check_choice, explanation_call,
                       logits_model, model_spec, positive_int, progress_bar)
from .plot import normalise_map
from .saliency import reduce_gradients, saliency

__all__ = [
    "CAM_METHODS",
    "FASTER_SCORECAM_CHANNELS",
    "gradcam",
    "guided_gradcam",
    "gradcam_parts",
    "upsample_map",
    "cam_layer",
]

CAM_METHODS = ("gradcam", "gradcam++", "layercam", "hirescam", "scorecam", "faster-scorecam")
FASTER_SCORECAM_CHANNELS = 32
_SCORECAM_METHODS = ("scorecam", "faster-scorecam")
_CELL_METHODS = ("layercam", "hirescam")  # a weight per cell, not per channel
_MASK_EPSILON = 1e-7  # keras.backend.epsilon(), as tf-keras-vis scales its masks


# --------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------

def gradcam(model, images, class_index=None, *, layer=None, method: str = "gradcam",
            max_channels: int | None = None, normalise: bool = False, batch_size: int = 16,
            progress: bool = True) -> np.ndarray:
    """A class activation map of one layer, upsampled to the image.

    ``L^c = ReLU(sum_k alpha_k^c A^k)`` with the channel weights of ``method``
    (see the module docstring for the formulas and papers):

    * ``"gradcam"``: alpha_k^c = mean_ij dy^c/dA^k_ij (Selvaraju et al. 2017);
    * ``"gradcam++"``: Chattopadhay et al. 2018, as tf-keras-vis
      ``GradcamPlusPlus`` computes it (its values scale with exp(y^c));
    * ``"layercam"``: ReLU(sum_k ReLU(dy^c/dA^k_ij) A^k_ij), a weight per
      cell (Jiang et al. 2021; tf-keras-vis ``Layercam``);
    * ``"hirescam"``: ReLU(sum_k dy^c/dA^k_ij A^k_ij), gradient times
      activation per cell (Draelos & Carin 2020);
    * ``"scorecam"``: alpha_k^c = softmax score of the image masked by map k
      (Wang et al. 2020), one forward pass per channel, ``batch_size`` masks
      at a time (streamed here; tf-keras-vis' ``Scorecam`` holds all masks);
    * ``"faster-scorecam"``: Score-CAM on the ``max_channels`` maps with the
      largest spatial std (default :data:`FASTER_SCORECAM_CHANNELS`).

    ``images``: one image (sample name, path, PIL, array), a list or a
    prepared batch. ``class_index``: None (each image's predicted class), an
    index or ImageNet name, or one per image. ``layer``: a layer name (also
    inside nested models) with a spatial map; None = the last one
    (:func:`cam_layer`). ``max_channels``: Score-CAM only; restricts
    ``"scorecam"`` to the top maps too. ``normalise``: rescale each map to
    0..1 by min and max, as tf-keras-vis does by default; off by default so
    maps of different classes and layers keep comparable units.

    Returns float32 (H, W) for one image or (N, H, W) for a batch, at the
    model's input size, upsampled by :func:`upsample_map`.
    """
    check_choice(method, "method", CAM_METHODS)
    batch_size = positive_int(batch_size, "batch_size")
    normalise = check_bool(normalise, "normalise")
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    engine = _engine(model, cam_layer(model, layer))
    max_channels = _resolve_max_channels(method, max_channels, engine.channels)
    if method in _SCORECAM_METHODS:
        cams = _score_cams(engine, call.batch, call.classes, max_channels, batch_size, progress)
    else:
        cams = _gradient_cams(engine, call.batch, call.classes, method, batch_size, progress)
    maps = upsample_map(cams, call.spec.size)
    if normalise:
        maps = np.stack([normalise_map(m) for m in maps]).astype(np.float32)
    return call.unwrap(maps)


def guided_gradcam(model, images, class_index=None, *, layer=None, reduce: str = "max_abs",
                   batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Guided Grad-CAM: guided backpropagation times the upsampled Grad-CAM.

    ``G^c = (dy^c/dx)_guided * up(L^c_Grad-CAM)`` per pixel and colour
    (Selvaraju et al. 2017), then ``reduce`` collapses the colours as in
    :func:`helpers.reduce_gradients` ("max_abs", "abs_mean", "signed", or
    None for (H, W, 3)). The guided gradient comes from
    :func:`helpers.saliency` with ``method="guided"``, the map from
    :func:`gradcam` on ``layer`` (default: the last spatial layer).

    Returns float32 (H, W) for one image or (N, H, W) for a batch
    ((H, W, 3) / (N, H, W, 3) with ``reduce=None``).
    """
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    cams = gradcam(model, call.batch, call.classes, layer=layer, method="gradcam",
                   batch_size=batch_size, progress=progress)
    guided = saliency(model, call.batch, call.classes, method="guided", reduce=None,
                      batch_size=batch_size, progress=progress)
    return call.unwrap(reduce_gradients(guided * cams[..., None], reduce))


@dataclass
class GradcamParts:
    """Every step of Grad-CAM for one image (arrays) or a batch (a leading batch axis).

    ``activations`` A (h, w, K) and ``gradients`` dy^c/dA (h, w, K) of the
    layer; ``channel_weights`` alpha_k = mean of the gradients over the map
    (K,); ``weighted_sum`` sum_k alpha_k A^k before the ReLU (h, w); ``cam``
    after the ReLU (h, w); ``heatmap`` the cam upsampled to the image (H, W).
    ``score`` is the logit y^c, ``class_index`` the class explained.
    """

    layer: str
    class_index: np.ndarray
    score: np.ndarray
    activations: np.ndarray
    gradients: np.ndarray
    channel_weights: np.ndarray
    weighted_sum: np.ndarray
    cam: np.ndarray
    heatmap: np.ndarray


def gradcam_parts(model, images, class_index=None, *, layer=None) -> GradcamParts:
    """Grad-CAM step by step, by hand with ``tf.GradientTape`` (one image or a small batch).

    1. A = the layer's activations, y^c = the class logit;
    2. gradients dy^c/dA^k_ij;
    3. channel weights alpha_k^c = 1/(h w) sum_ij dy^c/dA^k_ij;
    4. weighted sum sum_k alpha_k^c A^k;
    5. ReLU (keep what speaks *for* the class);
    6. upsample to the image (:func:`upsample_map`).

    (Selvaraju et al. 2017, *Grad-CAM*.) Same arguments as :func:`gradcam`;
    ``heatmap`` equals ``gradcam(..., method="gradcam")``.
    """
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    layer_name = cam_layer(model, layer)
    engine = _engine(model, layer_name)
    classes, single = call.classes, call.single
    # Steps 1-2: the tape of _CamEngine._gradients, traced once per (model, layer). An eager
    # tape here recorded the whole network and held every layer's activations: 0.34 GB of
    # resident memory more for three photos (the values agree to 2e-6 of their size).
    activations, gradients, scores = engine.gradients(
        tf.constant(call.batch), tf.constant(classes, dtype=tf.int32))
    gradients = np.asarray(gradients, dtype=np.float32)
    activations = np.asarray(activations, dtype=np.float32)
    channel_weights = gradients.mean(axis=(1, 2))
    weighted_sum = np.einsum("nijk,nk->nij", activations, channel_weights)
    cam = np.maximum(weighted_sum, 0.0)
    parts = GradcamParts(
        layer=layer_name, class_index=classes, score=np.asarray(scores, dtype=np.float32),
        activations=activations, gradients=gradients, channel_weights=channel_weights,
        weighted_sum=weighted_sum.astype(np.float32), cam=cam.astype(np.float32),
        heatmap=upsample_map(cam, call.spec.size))
    if single:
        parts.class_index = int(classes[0])
        for field in ("score", "activations", "gradients", "channel_weights",
                      "weighted_sum", "cam", "heatmap"):
            setattr(parts, field, getattr(parts, field)[0])
    return parts


def cam_layer(model, layer=None) -> str:
    """The name of the layer a CAM method explains; checks that it has a spatial map.

    ``layer=None`` picks :func:`helpers.last_spatial_layer` (EfficientNet-Lite:
    "top_activation"; VGG16 "block5_conv3"; ResNet50 "conv5_block3_out";
    InceptionV3 "mixed10"; Xception "block14_sepconv2_act"; MobileNetV2
    "out_relu"). A name is looked up inside nested models too; an unknown
    name or a layer without a (batch, H, W, channels) output raises a
    ValueError that lists candidates.
    """
    if layer is None:
        return last_spatial_layer(model).name
    found = find_layer(model, layer)
    spatial = spatial_layers(model)
    if any(candidate is found for candidate in spatial):
        return found.name
    try:
        shape = tuple(found.output.shape)
    except (AttributeError, ValueError):
        shape = "unknown"
    names = [candidate.name for candidate in spatial]
    raise ValueError(
        f"layer {found.name!r} has output shape {shape}, not a spatial feature map "
        f"(batch, H, W, channels) with H, W > 1, which class activation maps need. "
        f"Layers of {model.name!r} with spatial maps include: {', '.join(names[-6:])}")


def upsample_map(maps, size) -> np.ndarray:
    """Bilinear upsampling of (h, w) or (N, h, w) maps to ``size`` = (H, W), cell centres aligned.

    Cell (i, j) of an h x w map summarises the image patch around
    ((i + 0.5) H / h, (j + 0.5) W / w); that is where its value lands
    (``tf.image.resize``, half-pixel centres, edges held constant).
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim not in (2, 3):
        raise ValueError(f"maps must be (h, w) or (N, h, w); got shape {maps.shape}")
    height, width = target_size(size, "size")
    if height * width > MAX_PIXELS:  # refused before the maps are resized
        raise ValueError(f"size must be at most {MAX_PIXELS:,} pixels (height x width), got "
                         f"{height} x {width}")
    batch = maps[None] if maps.ndim == 2 else maps
    resized = tf.image.resize(batch[..., None], (height, width), method="bilinear")
    resized = np.asarray(resized, dtype=np.float32)[..., 0]
    return resized[0] if maps.ndim == 2 else resized


# --------------------------------------------------------------------------
# Per-model, per-layer engines, cached so that a class change is cheap
# --------------------------------------------------------------------------

class _CamEngine:
    """Everything built once per (model, layer): the feature model [A, logits], the
    compiled gradient function and a compiled logits function for Score-CAM."""

    def __init__(self, model, layer_name):
        self.layer_name = layer_name
        self.probabilities = model_spec(model).probabilities_tf  # softmax or sigmoid
        # [A, logits] from the input; works for layers inside nested models too.
        self.features = feature_model(logits_model(model), layer_name)
        activations, logits = self.features.outputs
        self.logits_model = keras.Model(self.features.inputs, logits)
        self.channels = int(activations.shape[-1])
        self.map_size = (int(activations.shape[1]), int(activations.shape[2]))
        shape = tuple(self.features.inputs[0].shape[1:])
        image_spec = tf.TensorSpec((None,) + shape, tf.float32)
        self.logits = tf.function(lambda x: self.logits_model(x, training=False),
                                  input_signature=[image_spec])
        self.gradients = tf.function(self._gradients, input_signature=[
            image_spec, tf.TensorSpec((None,), tf.int32)])

    def _gradients(self, images, classes):
        """A, dy^c/dA and y^c in one traced pass (the eager tape costs ~10x on a CPU)."""
        with tf.GradientTape() as tape:
            activations, logits = self.features(images, training=False)
            scores = tf.gather(logits, classes, axis=1, batch_dims=1)
        return activations, tape.gradient(scores, activations), scores

    def activations(self, batch):
        activations, _ = self.features(tf.constant(batch), training=False)
        return np.asarray(activations, dtype=np.float32)


def _engine(model, layer_name) -> _CamEngine:
    """The engine of (model, layer), built once and kept while the model lives."""
    return cached(model, ("cam", layer_name), lambda: _CamEngine(model, layer_name))


# --------------------------------------------------------------------------
# Grad-CAM and Grad-CAM++: one compiled gradient pass, the weights in numpy
# --------------------------------------------------------------------------

def _gradient_cams(engine, batch, classes, method, batch_size, progress):
    cams = np.empty((len(batch),) + engine.map_size, dtype=np.float32)
    for start, stop in batches(len(batch), batch_size, progress=progress, description=method):
        activations, gradients, scores = (np.asarray(t, dtype=np.float64) for t in engine.gradients(
            tf.constant(batch[start:stop]), tf.constant(classes[start:stop], tf.int32)))
        if method in _CELL_METHODS:
            weights = np.maximum(gradients, 0.0) if method == "layercam" else gradients
            cams[start:stop] = np.maximum((activations * weights).sum(axis=-1), 0.0)
        else:
            weights = channel_weights(activations, gradients, scores, method)
            cams[start:stop] = np.maximum(np.einsum("nijk,nk->nij", activations, weights), 0.0)
    return cams


def channel_weights(activations, gradients, scores, method="gradcam") -> np.ndarray:
    """alpha_k^c (N, K) of Grad-CAM or Grad-CAM++ from A, dy^c/dA (N, h, w, K) and y^c (N,).

    Grad-CAM: the mean gradient over the map. Grad-CAM++: with g = dy^c/dA
    and the derivatives of exp(y^c) (first e g, second e g^2, third e g^3),
    a_ij = second / (2 second + third sum_ab A_ab), normalised to sum 1 over
    the map, and alpha_k = sum_ij a_ij ReLU(first_ij) (tf-keras-vis'
    arithmetic, in float64 so that exp(y^c) does not overflow).
    """
    if method == "gradcam":
        return gradients.mean(axis=(1, 2))
    first = np.exp(scores)[:, None, None, None] * gradients
    second = first * gradients
    third = second * gradients
    denominator = 2.0 * second + third * activations.sum(axis=(1, 2), keepdims=True)
    alphas = second / (denominator + (second == 0.0))
    total = alphas.sum(axis=(1, 2), keepdims=True)
    alphas = alphas / (total + (total == 0.0))
    return (np.maximum(first, 0.0) * alphas).sum(axis=(1, 2))


# --------------------------------------------------------------------------
# Score-CAM, streamed
# --------------------------------------------------------------------------

def _top_channels(activations, count):
    """Faster Score-CAM's choice: the ``count`` maps of largest spatial std, largest first."""
    spread = tf.math.reduce_std(tf.constant(activations), axis=(0, 1))
    return np.asarray(tf.math.top_k(spread, count).indices)


def _channel_masks(activations, image_size):
    """(h, w, c) maps -> (c, H, W) masks in 0..1, built the way tf-keras-vis builds them."""
    from scipy.ndimage import zoom

    factors = (image_size[0] / activations.shape[0], image_size[1] / activations.shape[1], 1.0)
    upsampled = zoom(activations, factors, order=1, mode="nearest")
    low = upsampled.min(axis=(0, 1), keepdims=True)
    high = upsampled.max(axis=(0, 1), keepdims=True)
    masks = (upsampled - low) / (high - low + _MASK_EPSILON)
    return np.moveaxis(masks, -1, 0)


def _scorecam_weights(engine, image, activations, class_index, batch_size, bar):
    """alpha_k = softmax(f(image * mask_k))[class] for every channel in ``activations``."""
    image_size = image.shape[:2]
    weights = np.empty(activations.shape[-1], dtype=np.float32)
    for start in range(0, activations.shape[-1], batch_size):
        stop = min(start + batch_size, activations.shape[-1])
        masks = _channel_masks(activations[..., start:stop], image_size)
        masked = image[None] * masks[..., None]
        probabilities = engine.probabilities(engine.logits(tf.constant(masked)))
        weights[start:stop] = np.asarray(probabilities[:, class_index])
        bar.update(stop - start)
    return weights


def _score_cams(engine, batch, classes, max_channels, batch_size, progress):
    count = engine.channels if max_channels is None else max_channels
    cams = np.empty((len(batch),) + engine.map_size, dtype=np.float32)
    label = "Score-CAM" if count == engine.channels else f"Faster Score-CAM ({count} maps)"
    with progress_bar(len(batch) * count, progress, label, "mask") as bar:
        for index, image in enumerate(batch):
            maps = engine.activations(image[None])[0]
            if count < engine.channels:
                maps = maps[..., _top_channels(maps, count)]
            weights = _scorecam_weights(engine, image, maps, int(classes[index]), batch_size, bar)
            cams[index] = np.maximum(np.tensordot(maps, weights, axes=([-1], [0])), 0.0)
    return cams


def _resolve_max_channels(method, max_channels, channels):
    if method not in _SCORECAM_METHODS:
        if max_channels is not None:
            raise ValueError(f"max_channels applies to Score-CAM only, not to method {method!r}")
        return None
    if max_channels is None:
        # The default top-N of a layer with fewer maps than N is all of them.
        fewer = FASTER_SCORECAM_CHANNELS if method == "faster-scorecam" else channels
        return fewer if fewer < channels else None
    max_channels = positive_int(max_channels, "max_channels")
    if max_channels > channels:
        raise ValueError(f"max_channels must be between 1 and the layer's {channels} channels, "
                         f"got {max_channels}")
    return None if max_channels == channels else max_channels
