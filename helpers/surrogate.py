"""A superpixel surrogate: KernelSHAP on superpixels, with shap's KernelExplainer.

LIME (Ribeiro, Singh & Guestrin 2016, *"Why Should I Trust You?":
Explaining the Predictions of Any Classifier*) explains one prediction by a
simple model fitted to the classifier's answers on perturbed copies of the
photo: cut it into M superpixels, hide random subsets of them (hidden pixels
become the baseline b), and fit a weighted linear model over the on/off
vector z in {0, 1}^M,

    g(z) = phi_0 + sum_s phi_s z_s  ~  S_c(x_z),   x_z = z * x + (1 - z) * b

KernelSHAP (Lundberg & Lee 2017, *A Unified Approach to Interpreting Model
Predictions*) is that recipe with the one weighting of the samples, the
Shapley kernel, and the constraint that make phi_s the superpixels' Shapley
values::

    pi(z) = (M - 1) / (binom(M, |z|) |z| (M - |z|)),
    phi_0 = S_c(b),   sum_s phi_s = S_c(x) - S_c(b)      (completeness)

The estimate is shap's ``KernelExplainer`` (already a course dependency, and
the lesson on SHAP is where it belongs); this module adds the superpixels
(scikit-image's SLIC or quick shift), the masked photos built and scored in
fixed-size batches through the compiled logits (memory bounded by
``batch_size``), seeded sampling (numpy's global random state, which shap
draws from, is restored afterwards) and the result with its check. The
``lime`` package (0.2.0.1) also installs and runs on this stack, but it would
be one more dependency, with no release since 2020, for a method whose
Shapley-kernel form shap already provides.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from .environment import choose, tf
from .labels import NUM_CLASSES
from .masks import baseline_image
from .pipeline import (class_label, batches, check_choice, check_number, check_seed, compiled_logits,
                       explanation_call, positive_int)

__all__ = [
    "kernel_shap",
    "superpixels",
]

SEGMENTATIONS = ("slic", "quickshift")
MAX_SAMPLES = 20_000  # KernelSHAP on/off vectors per image (shap holds samples x segments)
MAX_SEGMENTS = 1_000  # superpixels asked of SLIC


# --------------------------------------------------------------------------
# The method
# --------------------------------------------------------------------------

def kernel_shap(model, images, class_index=None, *, segments=None, num_segments: int = 50,
                baseline="blur", blur_sigma: float | None = None, samples: int | None = None,
                seed: int = 0, batch_size: int = 32, progress: bool = True
                ) -> "SuperpixelExplanation":
    """Shapley values of superpixels by KernelSHAP (shap's ``KernelExplainer``).

    Lundberg & Lee 2017, *A Unified Approach to Interpreting Model
    Predictions* (LIME, Ribeiro et al. 2016, with the Shapley kernel)::

        phi = argmin sum_z pi(z) (S_c(x_z) - phi_0 - sum_s phi_s z_s)^2,
        phi_0 = S_c(b),  sum_s phi_s = S_c(x) - S_c(b)

    with x_z the photo whose superpixels with z_s = 0 show the baseline,
    S_c the class logit. ``segments``: None (SLIC superpixels of each image,
    about ``num_segments``, :func:`superpixels`), or integer labels (H, W)
    for every image or (N, H, W) one per image. ``baseline``: what a hidden
    superpixel shows (:func:`helpers.baseline_image`; default "blur", which
    keeps the photo natural-looking where grey or black patches are
    something the model never saw). ``samples``: on/off vectors z per image
    (default 1000, 200 in fast mode; at most 2^M - 2), scored in batches of
    ``batch_size`` masked photos. ``seed`` fixes the draws (the same for
    every image).

    Returns a :class:`SuperpixelExplanation`: ``.maps`` float32 (H, W) for
    one image or (N, H, W) for a batch, each pixel showing its superpixel's
    value phi_s, and the values, segments and completeness check.
    """
    num_segments = positive_int(num_segments, "num_segments")
    samples = positive_int(choose(1000, 200) if samples is None else samples, "samples")
    if samples > MAX_SAMPLES:  # shap allocates samples x segments up front
        raise ValueError(f"samples must be at most {MAX_SAMPLES:,} (on/off vectors per image), "
                         f"got {samples:,}")
    if num_segments > MAX_SEGMENTS:
        raise ValueError(f"num_segments must be at most {MAX_SEGMENTS:,}, got {num_segments:,}")
    seed = check_seed(seed, allow_none=False)
    batch_size = positive_int(batch_size, "batch_size")
    import shap  # after the checks: a refused call returns at once

    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, classes = call.batch, call.classes
    labels = _segments_for(batch, segments, num_segments)
    forward = compiled_logits(model)

    maps = np.empty(batch.shape[:-1], dtype=np.float32)
    values, logits, baseline_logits, evaluated = [], [], [], []
    saved_state = np.random.get_state()  # shap samples from numpy's global generator
    try:
        for index, (image, label, class_id) in enumerate(zip(batch, labels, classes)):
            hidden = baseline_image(image, baseline, blur_sigma=blur_sigma, seed=seed)
            count = int(label.max()) + 1
            score = _masked_scores(forward, image, hidden, label, int(class_id), batch_size,
                                   progress, f"KernelSHAP image {index + 1}/{len(batch)}")
            np.random.seed(seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # shap's notes on sample counts
                explainer = shap.KernelExplainer(score, np.zeros((1, count)))
                phi = np.asarray(explainer.shap_values(np.ones((1, count)), nsamples=samples,
                                                       l1_reg=False, silent=True),
                                 dtype=np.float64).reshape(-1)
            values.append(phi)
            maps[index] = phi[label]
            logits.append(float(score(np.ones((1, count)))[0]))
            baseline_logits.append(float(np.asarray(explainer.expected_value).reshape(-1)[0]))
            evaluated.append(int(explainer.nsamplesAdded))
    finally:
        np.random.set_state(saved_state)

    def out(array):
        return array[0] if call.single else array

    return SuperpixelExplanation(
        maps=out(maps), values=out(values), segments=out(labels),
        classes=out(classes.astype(np.int64)), logits=out(np.asarray(logits)),
        baseline_logits=out(np.asarray(baseline_logits)),
        attribution_sum=out(np.asarray([v.sum() for v in values])),
        samples=out(np.asarray(evaluated)), images=batch, single=call.single,
        num_classes=call.spec.num_classes,
        contrasts=call.spec.contrasts)


def superpixels(image, num_segments: int = 50, *, method: str = "slic",
                compactness: float = 10.0) -> np.ndarray:
    """Integer labels 0..M-1 (H, W) of ``image``'s superpixels, from scikit-image.

    ``"slic"``: SLIC (Achanta et al. 2012, *SLIC Superpixels Compared to
    State-of-the-Art Superpixel Methods*), about ``num_segments`` compact
    regions (``compactness`` trades colour for shape); ``"quickshift"``:
    quick shift (Vedaldi & Soatto 2008), LIME's default, whose number of
    regions follows the image (``num_segments`` is not used).
    ``image``: float or uint8 (H, W, C) pixels in 0..255, C = 1 or 3.
    """
    from skimage.segmentation import quickshift, slic

    num_segments = positive_int(num_segments, "num_segments")
    if num_segments > MAX_SEGMENTS:
        raise ValueError(f"num_segments must be at most {MAX_SEGMENTS:,}, got {num_segments:,}")
    check_choice(method, "method", SEGMENTATIONS)
    compactness = check_number(compactness, "compactness", minimum=0, inclusive=(False, True),
                               accepted="a positive number")
    image = np.asarray(image, dtype=np.float64) / 255.0
    if image.ndim == 2:
        image = image[..., None]
    if method == "slic":
        labels = slic(image, n_segments=num_segments, compactness=compactness, start_label=0,
                      channel_axis=-1)
    else:
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        labels = quickshift(rgb, kernel_size=4, max_dist=200, ratio=0.2, rng=0)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int64)


# --------------------------------------------------------------------------
# The result
# --------------------------------------------------------------------------

@dataclass(repr=False)
class SuperpixelExplanation:
    """KernelSHAP values of superpixels, painted as maps, with the completeness check.

    * ``maps``: float32 (H, W) per image, each pixel its superpixel's phi_s,
    * ``values``: phi per superpixel (M,) of each image; ``segments``: labels (H, W),
    * ``logits``: S_c(x); ``baseline_logits``: S_c(b), every superpixel hidden,
    * ``attribution_sum``: sum_s phi_s; ``gap`` = attribution_sum - (logits -
      baseline_logits) (KernelSHAP imposes it: ~0), ``relative_gap``,
    * ``samples``: on/off vectors evaluated per image.

    Per-image fields are arrays (N,) (``values`` a list) for a batch and
    single values for one image.
    """

    maps: np.ndarray
    values: object
    segments: np.ndarray
    classes: np.ndarray
    logits: np.ndarray
    baseline_logits: np.ndarray
    attribution_sum: np.ndarray
    samples: np.ndarray
    images: np.ndarray
    single: bool = False
    num_classes: int = NUM_CLASSES
    contrasts: tuple = ()  # the (a, b) pairs of scores past the model's classes

    @property
    def gap(self):
        return self.attribution_sum - (self.logits - self.baseline_logits)

    @property
    def relative_gap(self):
        return np.abs(self.gap) / np.maximum(np.abs(self.logits - self.baseline_logits), 1e-12)

    @property
    def class_names(self):
        names = [class_label(c, self.num_classes, self.contrasts)
                 for c in np.atleast_1d(self.classes)]
        return names[0] if self.single else names

    def table(self) -> str:
        """Superpixels, samples and the completeness check, one line per image."""
        lines = ["KernelSHAP on superpixels",
                 f"{'image':>5} {'class':<20} {'M':>4} {'samples':>7} {'S(x)':>8} {'S(b)':>8} "
                 f"{'sum phi':>8} {'gap':>8}"]
        values = [self.values] if self.single else self.values
        names = np.atleast_1d(np.asarray(self.class_names, dtype=object))
        rows = zip(values, *(np.atleast_1d(a) for a in (self.samples, self.logits,
                                                         self.baseline_logits,
                                                         self.attribution_sum, self.gap)),
                   names)
        for image, (phi, count, fx, fb, total, gap, name) in enumerate(rows):
            lines.append(f"{image:>5} {name[:20]:<20} {len(phi):>4} {count:>7} {fx:>8.3f} "
                         f"{fb:>8.3f} {total:>8.3f} {gap:>8.3f}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()

    __repr__ = __str__


# --------------------------------------------------------------------------
# Plumbing
# --------------------------------------------------------------------------

def _segments_for(batch, segments, num_segments) -> np.ndarray:
    """Superpixel labels (N, H, W), 0..M-1, for every image of ``batch``."""
    if segments is None:
        return np.stack([superpixels(image, num_segments) for image in batch])
    labels = np.asarray(segments)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"segments must be integer labels (H, W) or (N, H, W), not "
                        f"{labels.dtype}")
    if labels.shape == batch.shape[1:3]:
        labels = np.broadcast_to(labels, batch.shape[:3])
    if labels.shape != batch.shape[:3]:
        raise ValueError(f"segments must have shape {batch.shape[1:3]} (every image) or "
                         f"{batch.shape[:3]} (one per image); got {labels.shape}")
    # Labels as 0..M-1 per image, so z_s indexes them directly.
    return np.stack([np.unique(label, return_inverse=True)[1].reshape(label.shape)
                     for label in labels]).astype(np.int64)


def _masked_scores(forward, image, hidden, labels, class_id, batch_size, progress, description):
    """``f(z)`` for shap: the class logit of the photo with superpixels z_s = 0 hidden."""
    def score(masks):
        masks = np.asarray(masks, dtype=np.float32)
        scores = np.empty(len(masks), dtype=np.float64)
        for start, stop in batches(len(masks), batch_size, progress=progress,
                                   description=description):
            visible = masks[start:stop][:, labels][..., None]  # (n, H, W, 1)
            chunk = visible * image + (1.0 - visible) * hidden
            scores[start:stop] = np.asarray(forward(tf.constant(chunk)))[:, class_id]
        return scores
    return score
