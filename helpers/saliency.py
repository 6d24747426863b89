"""Gradient explanations: vanilla saliency, guided backpropagation, DeconvNet, SmoothGrad
and its family (SquareGrad, VarGrad).

Vanilla saliency (Simonyan, Vedaldi & Zisserman 2014, *Deep Inside
Convolutional Networks: Visualising Image Classification Models and Saliency
Maps*) asks how much the class score would change if one pixel changed a
little: the gradient of the class **logit** S_c with respect to the input,

    M_c(x) = dS_c / dx        (one number per pixel and colour channel)

Guided backpropagation (Springenberg, Dosovitskiy, Brox & Riedmiller 2015,
*Striving for Simplicity: The All Convolutional Net*) changes only the
backward pass through every ReLU: the gradient R flowing back through a ReLU
with input z is kept where the forward activation was on AND the gradient
itself is positive,

    R_in = (z > 0) * (R_out > 0) * R_out

(for ReLU6 the forward factor is its own derivative, 1 where 0 < z < 6).

DeconvNet (Zeiler & Fergus 2014, *Visualizing and Understanding
Convolutional Networks*) reconstructs the input through transposed
convolutions and "unpooling" with the max-pooling switches, which is the
gradient through every layer except the ReLUs: there the reconstruction is
rectified and the forward activation is ignored,

    R_in = (R_out > 0) * R_out

(Springenberg et al. 2015 and the Shaikh article put the three side by side:
vanilla masks by the forward pass, DeconvNet by the backward signal, guided
backpropagation by both.)

SmoothGrad (Smilkov, Thorat, Kim, Viegas & Wattenberg 2017, *SmoothGrad:
removing noise by adding noise*) averages the sensitivity map over noisy
copies of the image, which removes the pixel-to-pixel flicker of M_c:

    M^_c(x) = 1/n * sum_k M_c(x + e_k),   e_k ~ N(0, sigma^2),
    sigma   = noise_level * (255 - 0)

SquareGrad (Hooker, Erhan, Kindermans & Kim 2019, *A Benchmark for
Interpretability Methods in Deep Neural Networks*) averages the squared maps
and VarGrad (Adebayo, Gilmer, Goodfellow & Kim 2018, *Local Explanation
Methods for Deep Neural Networks Lack Sensitivity to Parameter Values*)
takes their variance over the same noisy copies:

    SquareGrad = 1/n * sum_k M_c(x + e_k)^2
    VarGrad    = 1/n * sum_k (M_c(x + e_k) - M^_c(x))^2 = SquareGrad - M^_c(x)^2

What comes from a library and what is written here:

* Gradients are taken by one compiled function per model and method
  (``tf.function`` around a ``GradientTape``), the fast path on a CPU; the
  tests check them against tf-keras-vis ``Saliency`` and finite differences.
* Guided backpropagation and DeconvNet are written here. tf-keras-vis' own
  ``GuidedBackpropagation`` modifier only replaces an ``activation``
  attribute equal to ``relu`` (on a clone with copied weights); it misses
  Keras ``ReLU`` layers, so EfficientNet-Lite's and MobileNetV2's ReLU6
  would get no guided gradient. Here the model's graph is copied (sharing the
  weights, never editing the user's model) with a gate after every
  ReLU-family layer whose backward pass keeps only positive gradients; the
  layer's own derivative supplies the (z > 0) factor. DeconvNet's copy
  replaces every ReLU-family layer by one with the same forward pass whose
  backward pass is ReLU(R_out) alone (a layer with a fused ReLU activation
  is split into its linear part, with the layer's own weights, and that
  rectifier).
* SmoothGrad is written here: tf-keras-vis' smoothing draws all noisy
  copies at once (memory grows with the sample count), scales the noise by
  each image's own value range, uses the global numpy random state and runs
  one sample at a time. :func:`smoothgrad` streams fixed-size batches of
  noisy images through a compiled gradient function (about five times faster
  than eager gradients on a CPU) and keeps running sums of the maps, so
  memory is bounded by ``batch_size`` whatever ``samples`` is. SquareGrad
  and VarGrad are other statistics of the same stream (an online mean and
  variance, Welford's update merged batch by batch), from the same noise.
"""

from __future__ import annotations

import warnings

import numpy as np

from .environment import choose, tf
import keras

from .pipeline import (batches, cached, check_choice, check_number, check_seed,
                       explanation_call, holder, model_spec, positive_int)

__all__ = [
    "SALIENCY_METHODS",
    "saliency",
    "smoothgrad",
    "squaregrad",
    "vargrad",
    "reduce_gradients",
    "guided_backprop_model",
    "deconvnet_model",
    "relu_family_layers",
]

SALIENCY_METHODS = ("vanilla", "guided", "deconvnet")
REDUCTIONS = ("max_abs", "abs_mean", "signed", None)
STATISTICS = ("mean", "square", "variance")
_RELU_ACTIVATIONS = ("relu", "relu6")


# --------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------

def saliency(model, images, class_index=None, *, method: str = "vanilla",
             reduce: str | None = "max_abs", batch_size: int = 16,
             progress: bool = True) -> np.ndarray:
    """Gradient of the class logit with respect to the input pixels.

    ``M_c(x) = dS_c / dx`` (Simonyan et al. 2014, *Deep Inside Convolutional
    Networks*), with S_c the logit (not the softmax probability, whose
    gradient also depends on every other class; a model that ends in a
    softmax is differentiated before it). ``method="guided"`` uses guided
    backpropagation (Springenberg et al. 2015, *Striving for Simplicity*),
    see :func:`guided_backprop_model`; ``method="deconvnet"`` the DeconvNet
    reconstruction (Zeiler & Fergus 2014, *Visualizing and Understanding
    Convolutional Networks*), see :func:`deconvnet_model`.

    ``images``: one image (sample name, path, PIL, array) or a list or a
    prepared batch. ``class_index``: None (each image's predicted class), an
    index or ImageNet name, or one per image. ``reduce``: how the colour
    channels become one map, see :func:`reduce_gradients`; None keeps the
    (H, W, C) gradients. ``batch_size`` images per gradient call.

    Returns float32 (H, W) for one image or (N, H, W) for a batch
    ((H, W, C) / (N, H, W, C) with ``reduce=None``), in logit units per
    pixel-value unit (0..255 scale).
    """
    _check_method(method)
    _check_reduce(reduce)
    batch_size = positive_int(batch_size, "batch_size")
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    gradients_of = gradient_function(model, method)
    gradients = np.empty(call.batch.shape, dtype=np.float32)
    for start, stop in batches(len(call.batch), batch_size, progress=progress,
                               description="saliency"):
        gradients[start:stop] = gradients_of(tf.constant(call.batch[start:stop]),
                                             tf.constant(call.classes[start:stop], tf.int32))
    return call.unwrap(reduce_gradients(gradients, reduce))


def smoothgrad(model, images, class_index=None, *, noise_level: float = 0.15,
               samples: int | None = None, method: str = "vanilla",
               reduce: str | None = "max_abs", statistic="mean", batch_size: int = 8,
               seed: int | None = 0, progress: bool = True):
    """SmoothGrad: the saliency map averaged over noisy copies of the image.

    ``M^_c(x) = 1/n sum_k M_c(x + sigma e_k)``, e_k ~ N(0, I), with
    ``sigma = noise_level * 255`` (a fraction of the 0..255 pixel range) and
    M_c the vanilla, guided or DeconvNet gradient of the logit reduced over
    the colour channels by ``reduce`` (Smilkov et al. 2017, *SmoothGrad:
    removing noise by adding noise*). Each noisy copy's map is reduced before
    averaging: with the default ``"max_abs"`` this averages magnitudes,
    which converge much faster than signed gradients, whose +/- speckle
    cancels only slowly. ``reduce=None`` (or ``"signed"``, which is linear)
    averages the raw gradients, the gradient of the Gaussian-blurred score
    ``d/dx E[S_c(x + e)]``. Noisy pixels are not clipped to 0..255.

    ``statistic``: what is kept of the n maps: ``"mean"`` (SmoothGrad),
    ``"square"`` (the mean of the squared maps, SquareGrad, Hooker et al.
    2019) or ``"variance"`` (their variance, 1/n normalised, VarGrad,
    Adebayo et al. 2018); a tuple of them returns a dict {statistic: maps},
    all from the same noisy copies at the cost of one. They are kept as an
    online mean and variance (Welford), merged batch by batch.

    ``samples``: n (default 50, fewer in fast mode). The noisy images are
    streamed through a compiled gradient function ``batch_size`` at a time
    with running statistics, so memory does not grow with ``samples`` (each
    image in a batch costs about 30 MB on EfficientNet-Lite0; on a 2-core
    CPU batches of 8 are as fast as larger ones, see benchmarks/). Noise
    sample k is ``np.random.default_rng((seed, k)).standard_normal((H, W, C))``:
    the same for every image, batch, batch size and statistic, so results
    repeat for a given ``seed`` (None: fresh noise each call).

    Written here rather than with tf-keras-vis' ``smooth_samples`` (see the
    module docstring). Returns float32 (H, W) / (N, H, W), or (H, W, C) /
    (N, H, W, C) with ``reduce=None``.
    """
    _check_method(method)
    _check_reduce(reduce)
    wanted = _check_statistics(statistic)
    noise_level = check_number(noise_level, "noise_level", minimum=0,
                               accepted="a fraction of the 0..255 range (e.g. 0.15)")
    samples = positive_int(choose(50, 10) if samples is None else samples, "samples")
    batch_size = positive_int(batch_size, "batch_size")
    seed = check_seed(seed)
    if seed is None:
        seed = int(np.random.SeedSequence().entropy)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, classes = call.batch, call.classes.astype(np.int32)
    gradients_of = gradient_function(model, method)
    sigma = np.float32(noise_level * 255.0)
    image_shape = batch.shape[1:]
    running = _RunningMoments(batch.shape if reduce is None else batch.shape[:-1])
    total = len(batch) * samples
    noisy = np.empty((min(batch_size, total),) + image_shape, dtype=np.float32)
    for start, stop in batches(total, batch_size, progress=progress, description="SmoothGrad",
                               minimum=0):
        # Work items (image, sample) in image-major order; one batch may hold
        # samples of several images.
        items = range(start, stop)
        owners = np.fromiter((item // samples for item in items), dtype=np.int64)
        for row, item in enumerate(items):
            noisy[row] = batch[item // samples]
            if sigma > 0:
                noisy[row] += sigma * _noise(seed, item % samples, image_shape)
        grads = gradients_of(tf.constant(noisy[:len(items)]), tf.constant(classes[owners]))
        maps = reduce_gradients(np.asarray(grads), reduce)
        for owner in np.unique(owners):
            running.add(owner, maps[owners == owner])
    results = {name: call.unwrap(running.statistic(name).astype(np.float32)) for name in wanted}
    return results[statistic] if isinstance(statistic, str) else results


def squaregrad(model, images, class_index=None, **knobs) -> np.ndarray:
    """SquareGrad (Hooker et al. 2019, *A Benchmark for Interpretability Methods in
    Deep Neural Networks*): ``1/n sum_k M_c(x + e_k)^2``, the mean squared map over
    SmoothGrad's noisy copies; the knobs and noise of :func:`smoothgrad`."""
    return smoothgrad(model, images, class_index, statistic="square", **knobs)


def vargrad(model, images, class_index=None, **knobs) -> np.ndarray:
    """VarGrad (Adebayo et al. 2018, *Local Explanation Methods for Deep Neural
    Networks Lack Sensitivity to Parameter Values*): ``1/n sum_k (M_c(x + e_k) -
    M^_c(x))^2``, the variance of the map over SmoothGrad's noisy copies (equal to
    SquareGrad minus SmoothGrad squared); the knobs and noise of :func:`smoothgrad`."""
    return smoothgrad(model, images, class_index, statistic="variance", **knobs)


def reduce_gradients(gradients, reduce="max_abs") -> np.ndarray:
    """Collapse the colour axis of (..., H, W, C) gradients into one map per pixel.

    ``"max_abs"``: max_c |g_c|, as Simonyan et al. (2014) visualise saliency;
    ``"abs_mean"``: mean_c |g_c|;
    ``"signed"``: sum_c g_c, the change of the score when the pixel gets
    brighter in all channels (positive: brightening raises the score);
    ``None``: the gradients unchanged.
    """
    _check_reduce(reduce)
    gradients = np.asarray(gradients, dtype=np.float32)
    if reduce is None:
        return gradients
    if reduce == "max_abs":
        return np.abs(gradients).max(axis=-1)
    if reduce == "abs_mean":
        return np.abs(gradients).mean(axis=-1)
    return gradients.sum(axis=-1, dtype=np.float64).astype(np.float32)


def guided_backprop_model(model) -> keras.Model:
    """A copy of ``model``'s logits whose ReLUs back-propagate guided gradients.

    Forward pass: identical to the logits of ``model`` (same layers, shared
    weights). Backward pass: after every ReLU-family layer (Keras ``ReLU``
    layers, ReLU6 included, ``Activation("relu")`` and conv/dense layers with
    ``activation="relu"``) a gate keeps only positive gradients, so the
    gradient through that ReLU becomes (z > 0)(R > 0) R (Springenberg et al.
    2015). ``model`` itself is never modified. The copy is cached per model.
    """
    spec = model_spec(model)

    def build():
        if not relu_family_layers(spec.logits):
            warnings.warn(f"model {model.name!r} has no ReLU-family layer: guided "
                          "backpropagation equals the vanilla gradient", stacklevel=3)
        return _modified_copy(spec.logits, _call_with_gate)
    return cached(model, "guided", build)


def deconvnet_model(model) -> keras.Model:
    """A copy of ``model``'s logits whose ReLUs back-propagate as in a DeconvNet.

    Forward pass: identical to the logits of ``model`` (shared weights).
    Backward pass: through every ReLU-family layer (as in
    :func:`guided_backprop_model`) the signal is rectified and the forward
    activation ignored, R_in = (R > 0) R (Zeiler & Fergus 2014, *Visualizing
    and Understanding Convolutional Networks*); everything else (convolutions
    transposed, max-pooling switches) is the ordinary gradient. ``model``
    itself is never modified. The copy is cached per model.
    """
    spec = model_spec(model)

    def build():
        if not relu_family_layers(spec.logits):
            warnings.warn(f"model {model.name!r} has no ReLU-family layer: DeconvNet "
                          "equals the vanilla gradient", stacklevel=3)
        return _modified_copy(spec.logits, _call_deconvnet)
    return cached(model, "deconvnet", build)


# --------------------------------------------------------------------------
# Plumbing: checks, noise, the compiled gradient function
# --------------------------------------------------------------------------

def _check_method(method):
    check_choice(method, "method", SALIENCY_METHODS)


def _check_reduce(reduce):
    check_choice(reduce, "reduce", REDUCTIONS)


def _check_statistics(statistic) -> tuple:
    if isinstance(statistic, (tuple, list)) and statistic:
        return tuple(check_choice(name, "statistic", STATISTICS) for name in statistic)
    return (check_choice(statistic, "statistic", STATISTICS),)


class _RunningMoments:
    """Per-image running mean, mean of squares and variance of maps, in float64.

    Each batch's maps of one image are merged into the running values with
    Chan et al.'s pairwise form of Welford's update, so the variance never
    comes from subtracting two large, nearly equal sums.
    """

    def __init__(self, shape):
        self.count = np.zeros(shape[0], dtype=np.int64)
        self.mean = np.zeros(shape, dtype=np.float64)
        self.square = np.zeros(shape, dtype=np.float64)
        self.m2 = np.zeros(shape, dtype=np.float64)

    def add(self, owner, maps):
        maps = np.asarray(maps, dtype=np.float64)
        count, new = self.count[owner], len(maps)
        total = count + new
        batch_mean = maps.mean(axis=0)
        delta = batch_mean - self.mean[owner]
        self.mean[owner] += delta * (new / total)
        self.m2[owner] += ((maps - batch_mean) ** 2).sum(axis=0) + delta ** 2 * (count * new / total)
        self.square[owner] += ((maps ** 2).mean(axis=0) - self.square[owner]) * (new / total)
        self.count[owner] = total

    def statistic(self, name):
        if name == "mean":
            return self.mean
        if name == "square":
            return self.square
        count = np.maximum(self.count, 1).reshape((-1,) + (1,) * (self.m2.ndim - 1))
        return self.m2 / count


def _noise(seed, sample, shape):
    """Standard normal noise of sample ``sample``: the same for every image and batch size."""
    return np.random.default_rng((seed, sample)).standard_normal(shape, dtype=np.float32)


def gradient_function(model, method):
    """A compiled ``(images, classes) -> d logit[class] / d images``, cached per model."""
    spec = model_spec(model)

    def build():
        target = {"guided": guided_backprop_model,
                  "deconvnet": deconvnet_model}.get(method, lambda _: spec.logits)(model)
        target_ref = holder(target, model)

        @tf.function(input_signature=[tf.TensorSpec((None,) + spec.input_shape, tf.float32),
                                      tf.TensorSpec((None,), tf.int32)])
        def gradients(images, classes):
            with tf.GradientTape() as tape:
                tape.watch(images)
                logits = target_ref()(images, training=False)
                scores = tf.gather(logits, classes, axis=1, batch_dims=1)
            return tape.gradient(scores, images)
        return gradients
    return cached(model, ("gradients", method), build)


# --------------------------------------------------------------------------
# Guided backpropagation and DeconvNet as model modifiers on a copy
# --------------------------------------------------------------------------

@tf.custom_gradient
def _keep_positive_gradient(inputs):
    """Identity forward; backward passes only the positive part of the gradient."""
    def backward(upstream):
        return tf.nn.relu(upstream)
    return tf.identity(inputs), backward


class _PositiveGradientGate(keras.layers.Layer):
    """Placed after a ReLU so that the pair back-propagates (z > 0)(R > 0) R."""

    def call(self, inputs):
        return _keep_positive_gradient(inputs)

    def compute_output_shape(self, input_shape):
        return input_shape


def _is_relu_family(layer) -> bool:
    """Keras ReLU layers (any max_value) and layers whose activation is relu or relu6."""
    if isinstance(layer, keras.layers.ReLU):
        return True
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) in _RELU_ACTIVATIONS


def relu_family_layers(model) -> list[str]:
    """Names of the layers that guided backpropagation modifies (nested models included)."""
    names = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            names += relu_family_layers(layer)
        elif _is_relu_family(layer):
            names.append(layer.name)
    return names


def _rectified_backward(forward):
    """``forward`` on the way in; on the way back only ReLU(upstream), whatever the input."""
    @tf.custom_gradient
    def rectifier(inputs):
        def backward(upstream):
            return tf.nn.relu(upstream)
        return forward(inputs), backward
    return rectifier


class _WithoutActivation:
    """A layer seen without its activation: its own ``call`` then stops at the linear part.

    Dense and convolution layers apply ``self.activation`` last in ``call``;
    calling the layer class's ``call`` on this view (every other attribute,
    the weights included, is the layer's own) gives the pre-activation z with
    shared weights, without editing or copying the layer.
    """

    activation = None

    def __init__(self, layer):
        object.__setattr__(self, "_layer", layer)

    def __getattr__(self, name):
        return getattr(self._layer, name)


class _DeconvnetReLU(keras.layers.Layer):
    """A ReLU-family layer's forward pass whose backward pass is ReLU(R_out) alone."""

    def __init__(self, layer, **kwargs):
        super().__init__(name=f"{layer.name}_deconvnet", dtype=layer.dtype_policy, **kwargs)
        self.relu_layer = layer

    def call(self, inputs):
        layer = self.relu_layer
        if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            return _rectified_backward(layer.call)(inputs)
        # A fused activation (Conv2D(..., activation="relu")): the linear part
        # keeps its ordinary gradient; only the rectifier is replaced.
        linear = type(layer).call(_WithoutActivation(layer), inputs)
        return _rectified_backward(layer.activation)(linear)

    def compute_output_shape(self, input_shape):
        return self.relu_layer.compute_output_shape(input_shape)


def _call_with_gate(layer, *args, **kwargs):
    outputs = layer(*args, **kwargs)
    if _is_relu_family(layer):
        outputs = _PositiveGradientGate(name=f"{layer.name}_guided")(outputs)
    return outputs


def _call_deconvnet(layer, *args, **kwargs):
    if _is_relu_family(layer):
        return _DeconvnetReLU(layer)(*args, **kwargs)
    return layer(*args, **kwargs)


def _modified_copy(model, call_function):
    """``model``'s graph rebuilt with ``call_function`` calling each layer.

    Layers are shared (same weights, no copy in memory); nested models are
    rebuilt the same way, so that their ReLUs are modified too.
    """
    def share_or_copy(layer):
        return _modified_copy(layer, call_function) if isinstance(layer, keras.Model) else layer

    if isinstance(model, keras.Sequential):
        # clone_model's call_function does not apply to Sequential models:
        # rebuild it as a functional graph instead.
        if not model.inputs:
            raise ValueError(f"the Sequential model {model.name!r} is not built; call it once first")
        template = model.inputs[0]
        inputs = keras.Input(shape=tuple(template.shape[1:]), dtype=template.dtype)
        x = inputs
        for layer in model.layers:
            x = call_function(share_or_copy(layer), x)
        return keras.Model(inputs, x, name=model.name)
    try:
        return keras.models.clone_model(model, clone_function=share_or_copy,
                                        call_function=call_function)
    except ValueError as error:
        raise TypeError(
            f"guided backpropagation and DeconvNet rebuild the model's graph, so they need a "
            f"Functional or Sequential Keras model; {type(model).__name__} {model.name!r} "
            f"cannot be rebuilt ({error})") from None
