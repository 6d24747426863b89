"""Integrated Gradients and Gradient x Input: attributions that add up to the score.

A saliency map tells how sensitive the class logit S_c is to each pixel; it
does not say how much each pixel *contributed*. Integrated Gradients
(Sundararajan, Taly & Yan 2017, *Axiomatic Attribution for Deep Networks*)
walks a straight path from a baseline image b (what "absent" means: black,
blurred, noise, ...) to the photo x and adds up the gradients on the way::

    IG_i(x) = (x_i - b_i) * integral_0^1 dS_c(b + a (x - b)) / dx_i  da

By the fundamental theorem of calculus for path integrals the attributions
are **complete**: ``sum_i IG_i(x) = S_c(x) - S_c(b)``. The integral is a sum
over ``steps`` points a_k with weights w_k (:func:`integration_points`):
the trapezoid rule (error ~ 1/steps^2 for a smooth score) or a left, middle
or right Riemann sum (the paper's right sum: error ~ 1/steps). How far the
sum of attributions is from S_c(x) - S_c(b) tells whether there were enough
steps; the result reports it (:class:`IntegratedGradientsExplanation`).

Gradient x Input (Shrikumar, Greenside, Shcherbina & Kundaje 2016, *Not
Just a Black Box: Learning Important Features Through Propagating
Activation Differences*) is the one-step version with the zero baseline,
``x_i * dS_c(x) / dx_i``: the first-order Taylor estimate of each pixel's
share of S_c(x) - S_c(0). The course's models take 0..255 pixels, so zero
is black.

Both are written here (a weighted sum of gradients is the whole method);
the gradients come from the compiled gradient function that saliency and
SmoothGrad use (:mod:`helpers.saliency`), fed fixed-size batches of path
points, with running sums, so memory does not grow with ``steps``.
Expected gradients (lesson 07, :func:`helpers.expected_gradients`) are
integrated gradients averaged over baselines drawn from a background set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .environment import choose, tf
from .labels import NUM_CLASSES
from .masks import baseline_image
from .pipeline import (class_label, batches, check_choice, check_seed, explanation_call, positive_int,
                       predict_logits)
from .saliency import REDUCTIONS, gradient_function, reduce_gradients

__all__ = [
    "integrated_gradients",
    "gradient_x_input",
    "integration_points",
    "INTEGRATION_RULES",
]

INTEGRATION_RULES = ("trapezoid", "riemann_right", "riemann_left", "riemann_middle")
MAX_STEPS = 10_000  # gradient evaluations per image; 20-300 reach completeness within 5%


# --------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------

def integrated_gradients(model, images, class_index=None, *, baseline="black",
                         steps: int | None = None, rule: str = "trapezoid",
                         reduce: str | None = "signed", blur_sigma: float | None = None,
                         seed: int = 0, batch_size: int = 8, progress: bool = True
                         ) -> "IntegratedGradientsExplanation":
    """Integrated Gradients of the class logit along the straight path from a baseline.

    Sundararajan, Taly & Yan 2017, *Axiomatic Attribution for Deep Networks*::

        IG_i = (x_i - b_i) * sum_k w_k dS_c(b + a_k (x - b)) / dx_i
        sum_i IG_i ~ S_c(x) - S_c(b)                       (completeness)

    ``baseline``: b, as :func:`helpers.baseline_image` makes it: "black"
    (the paper's choice; the default), "blur" (``blur_sigma``), "grey",
    "mean", "noise" (uniform 0..255, drawn from ``seed``), a level, an RGB
    triple, an image, or a batch (N, H, W, C) with one baseline per image.
    ``steps``: gradient evaluations of the path integral (default 64, 16 in
    fast mode, at most ``MAX_STEPS`` = 10,000; the trapezoid rule uses
    steps + 1 points, the ends included),
    ``rule``: one of :data:`INTEGRATION_RULES` (:func:`integration_points`).
    ``reduce``: how the colour channels become one map (default "signed",
    the sum, which keeps completeness; see :func:`helpers.reduce_gradients`;
    None keeps (H, W, C)). Path points go through the compiled gradient
    function ``batch_size`` at a time (default 8: a gradient keeps every layer's
    activations for the backward pass, and 16 points of EfficientNet-Lite0 held
    0.51 GB of resident memory where 8 hold 0.21 GB, for 9 % more time on 2 cores).

    Returns an :class:`IntegratedGradientsExplanation`: ``.maps`` float32
    (H, W) for one image or (N, H, W) for a batch, and the completeness
    check (``print(result)``).
    """
    check_choice(reduce, "reduce", REDUCTIONS)
    steps = positive_int(choose(64, 16) if steps is None else steps, "steps")
    alphas, weights = integration_points(steps, rule)
    batch_size = positive_int(batch_size, "batch_size")
    seed = check_seed(seed, allow_none=False)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, classes = call.batch, call.classes.astype(np.int32)
    baselines = _baselines(batch, baseline, blur_sigma, seed)
    gradients_of = gradient_function(model, "vanilla")

    points = len(alphas)
    sums = np.zeros(batch.shape, dtype=np.float64)
    starts = baselines.astype(np.float32)
    differences = batch - starts
    path = np.empty((min(batch_size, len(batch) * points),) + batch.shape[1:], np.float32)
    for start, stop in batches(len(batch) * points, batch_size, progress=progress,
                               description="integrated gradients", minimum=0):
        # Work items (image, path point) in image-major order.
        items = np.arange(start, stop)
        owners, steps_of = items // points, items % points
        chunk = path[:len(items)]
        np.multiply(alphas[steps_of, None, None, None], differences[owners], out=chunk)
        chunk += starts[owners]
        grads = np.asarray(gradients_of(tf.constant(chunk), tf.constant(classes[owners])))
        for owner in np.unique(owners):
            rows = owners == owner
            sums[owner] += np.tensordot(weights[steps_of[rows]], grads[rows], axes=1)
    attributions = (batch.astype(np.float64) - baselines) * sums
    return _explanation(model, call, attributions, baselines, reduce,
                        baseline=_describe(baseline), steps=steps, rule=rule,
                        batch_size=batch_size)


def gradient_x_input(model, images, class_index=None, *, reduce: str | None = "signed",
                     batch_size: int = 16, progress: bool = True) -> np.ndarray:
    """Gradient x Input: each pixel value times the gradient of the class logit.

    ``A_i = x_i * dS_c(x) / dx_i`` (Shrikumar et al. 2016, *Not Just a Black
    Box: Learning Important Features Through Propagating Activation
    Differences*): integrated gradients from a black (all-zero) baseline in a
    single step, exact for a linear model. x is in 0..255 pixels (the
    course's models scale inside). ``reduce``: the colour channels summed by
    default ("signed"); None keeps (H, W, C).

    Returns float32 (H, W) for one image or (N, H, W) for a batch.
    """
    check_choice(reduce, "reduce", REDUCTIONS)
    batch_size = positive_int(batch_size, "batch_size")
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    gradients_of = gradient_function(model, "vanilla")
    products = np.empty(call.batch.shape, dtype=np.float32)
    for start, stop in batches(len(call.batch), batch_size, progress=progress,
                               description="gradient x input"):
        chunk = call.batch[start:stop]
        products[start:stop] = chunk * np.asarray(gradients_of(
            tf.constant(chunk), tf.constant(call.classes[start:stop], tf.int32)))
    return call.unwrap(reduce_gradients(products, reduce))


def integration_points(steps: int, rule: str = "trapezoid") -> tuple[np.ndarray, np.ndarray]:
    """``(alphas, weights)``: where on the path [0, 1] the gradient is taken, and its weight.

    ``"trapezoid"``: a_k = k/m for k = 0..m, weights 1/m (1/2m at both ends);
    ``"riemann_right"``: a_k = k/m, k = 1..m (Sundararajan et al.'s sum);
    ``"riemann_left"``: k = 0..m-1; ``"riemann_middle"``: (k + 1/2)/m; each
    weight 1/m. The weights sum to 1. ``steps`` is at most ``MAX_STEPS``.
    """
    steps = positive_int(steps, "steps")
    if steps > MAX_STEPS:  # refused before the path is allocated
        raise ValueError(f"steps must be at most {MAX_STEPS:,} (gradient evaluations per "
                         f"image; 20-300 are enough), got {steps:,}")
    check_choice(rule, "rule", INTEGRATION_RULES)
    weights = np.full(steps, 1.0 / steps)
    if rule == "trapezoid":
        alphas = np.arange(steps + 1) / steps
        weights = np.full(steps + 1, 1.0 / steps)
        weights[[0, -1]] /= 2
    elif rule == "riemann_right":
        alphas = np.arange(1, steps + 1) / steps
    elif rule == "riemann_left":
        alphas = np.arange(steps) / steps
    else:
        alphas = (np.arange(steps) + 0.5) / steps
    return alphas.astype(np.float32), weights


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------

@dataclass(repr=False)
class IntegratedGradientsExplanation:
    """Integrated-gradients maps with their completeness check.

    * ``maps``: float32 (H, W) for one image, (N, H, W) for a batch (or with
      the colour axis when ``reduce=None``); > 0 pushes towards the class,
    * ``classes``: the explained class of each image,
    * ``logits``: S_c(x); ``baseline_logits``: S_c(b),
    * ``attribution_sum``: the sum of every attribution (pixels and colours),
    * ``gap`` = attribution_sum - (logits - baseline_logits), ``relative_gap``
      = |gap| / |logits - baseline_logits|: zero for the exact integral;
      it shrinks as ``steps`` grows,
    * ``baselines``: the baseline images (N, H, W, C), ``images``: the inputs.

    Per-image fields are arrays (N,) for a batch and numbers for one image.
    """

    maps: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    baseline_logits: np.ndarray
    attribution_sum: np.ndarray
    images: np.ndarray
    baselines: np.ndarray
    baseline: str = ""
    steps: int = 0
    rule: str = "trapezoid"
    single: bool = False
    num_classes: int = NUM_CLASSES
    contrasts: tuple = ()  # the (a, b) pairs of scores past the model's classes

    @property
    def gap(self):
        return self.attribution_sum - (self.logits - self.baseline_logits)

    @property
    def relative_gap(self):
        target = np.abs(self.logits - self.baseline_logits)
        return np.abs(self.gap) / np.maximum(target, 1e-12)

    @property
    def class_names(self):
        names = [class_label(c, self.num_classes, self.contrasts)
                 for c in np.atleast_1d(self.classes)]
        return names[0] if self.single else names

    def table(self) -> str:
        """The completeness check as text: sum of attributions against S_c(x) - S_c(b)."""
        lines = [f"integrated gradients from a {self.baseline} baseline: {self.steps} steps, "
                 f"{self.rule.replace('_', ' ')} rule",
                 f"{'image':>5} {'class':<20} {'S(x)':>8} {'S(b)':>8} {'S(x)-S(b)':>9} "
                 f"{'sum IG':>8} {'gap':>8} {'rel.gap':>7}"]
        names = np.atleast_1d(np.asarray(self.class_names, dtype=object))
        rows = zip(*(np.atleast_1d(a) for a in (self.logits, self.baseline_logits,
                                                 self.attribution_sum, self.gap,
                                                 self.relative_gap)), names)
        for image, (fx, fb, total, gap, rel, name) in enumerate(rows):
            lines.append(f"{image:>5} {name[:20]:<20} {fx:>8.3f} {fb:>8.3f} {fx - fb:>9.3f} "
                         f"{total:>8.3f} {gap:>8.3f} {rel:>7.1%}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__


# --------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------

def _baselines(batch, baseline, blur_sigma, seed) -> np.ndarray:
    """One baseline image per image of ``batch`` (N, H, W, C), float64."""
    if isinstance(baseline, np.ndarray) and baseline.ndim == 4:
        if baseline.shape != batch.shape:
            raise ValueError(f"baseline: a batch of baselines must have the images' shape "
                             f"{batch.shape}, one per image; got {baseline.shape}")
        return np.stack([baseline_image(image, b) for image, b in zip(batch, baseline)]
                        ).astype(np.float64)
    return np.stack([baseline_image(image, baseline, blur_sigma=blur_sigma, seed=seed)
                     for image in batch]).astype(np.float64)


def _describe(baseline) -> str:
    if isinstance(baseline, str):
        return baseline
    values = np.asarray(baseline)
    return "custom image" if values.ndim >= 2 else f"level {values.tolist()}"


def _explanation(model, call, attributions, baselines, reduce, **fields):
    batch_size = fields.pop("batch_size")
    classes = call.classes
    rows = np.arange(len(classes))
    both = predict_logits(model, np.concatenate([call.batch, baselines.astype(np.float32)]),
                          batch_size).astype(np.float64)
    logits = both[:len(classes)][rows, classes]
    baseline_logits = both[len(classes):][rows, classes]
    attribution_sum = attributions.reshape(len(classes), -1).sum(axis=-1)
    maps = reduce_gradients(attributions.astype(np.float32), reduce)

    def out(array):
        return array[0] if call.single else array

    return IntegratedGradientsExplanation(
        maps=out(maps), classes=out(classes.astype(np.int64)), logits=out(logits),
        baseline_logits=out(baseline_logits), attribution_sum=out(attribution_sum),
        images=call.batch, baselines=baselines.astype(np.float32), single=call.single,
        num_classes=call.spec.num_classes,
        contrasts=call.spec.contrasts, **fields)
