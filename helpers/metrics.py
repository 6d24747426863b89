"""Is a heatmap right? Faithfulness, sanity checks and agreement with people.

Three questions, three families of measurements, for any method's map:

1. **Faithfulness** -- does the model really depend on the pixels the map
   calls important? Deletion and insertion curves (Petsiuk, Das & Saenko
   2018, *RISE: Randomized Input Sampling for Explanation of Black-box
   Models*, BMVC): remove (or reveal) pixels in order of importance and
   track the class probability. A faithful map makes the probability fall
   fast under deletion (small area under the curve) and rise fast under
   insertion (large area).
2. **Sanity** -- does the map depend on what the model learned at all?
   The model-randomisation test (Adebayo et al. 2018, *Sanity Checks for
   Saliency Maps*, NeurIPS): re-initialise the layers from the top down,
   one block more at each stage, and compare each new map with the
   original (Spearman rank correlation, SSIM). A map that barely changes
   when the weights become noise explains the image, not the model.
3. **Plausibility** -- does the map agree with where people look? IoU of
   the map's top k% with a human mask, the pointing game (Zhang et al.
   2018, *Top-down Neural Attention by Excitation Backprop*, IJCV) and the
   rank correlation with a human attention map (see :mod:`helpers.attention`).

Everything here is written by hand: it is what the lesson is about, and the
explanation libraries the course uses do not provide these measurements.
Plots of the results (``show_curves``, ``show_cascade``) live here too,
because they draw curves and tables, not heatmaps.
"""

from __future__ import annotations

import html
import random
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

from .environment import choose, panel_layout, tf
from .architecture import layer_table, model_report, output_shape_of
from .cam import CAM_METHODS, cam_layer, gradcam
from .labels import class_name
from .masks import baseline_image
from .models import find_layer, walk_layers
from .plot import UNSIGNED_CMAP, show
from .pipeline import (batches, check_bool, check_choice, check_choices, check_number,
                       check_seed, class_label, compiled_logits, explanation_call, model_spec,
                       positive_int, progress_bar)

__all__ = [
    "deletion_curve",
    "insertion_curve",
    "road_curve",
    "noisy_linear_imputation",
    "mufidelity",
    "ScoreTable",
    "compare_maps",
    "LayerChoice",
    "layer_choice",
    "rank_correlation",
    "randomization_stages",
    "cascading_randomization",
    "top_k_mask",
    "top_k_iou",
    "pointing_game",
    "human_agreement",
    "show_curves",
    "show_cascade",
    "show_layer_choice",
]

DELETION_BASELINE = "black"
INSERTION_BASELINE = "blur"
MAX_CURVE_STEPS = 10_000  # removal steps of a deletion, insertion or ROAD curve
MAX_FIDELITY_SAMPLES = 10_000  # MuFidelity subsets
MAX_FIDELITY_CELLS = 2 ** 25  # samples x grid_size^2: the subsets held in memory


def _at_most(value: int, name: str, maximum: int, what: str) -> int:
    """A count checked against its maximum before anything is allocated for it."""
    if value > maximum:
        raise ValueError(f"{name} must be at most {maximum:,} ({what}), got {value:,}")
    return value


# --------------------------------------------------------------------------
# Input checks shared by every measurement
# --------------------------------------------------------------------------

def _as_map(heatmap, what: str = "heatmap") -> np.ndarray:
    """One 2-D float map; a (1, H, W) batch of one is accepted."""
    array = np.asarray(heatmap)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == np.bool_):
        raise TypeError(f"the {what} must be an array of numbers, not {array.dtype}")
    array = array.astype(np.float64)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"the {what} must be one 2-D (H, W) map; got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"the {what} is empty")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"the {what} contains NaN or infinite values")
    return array


def _same_shape(first, second, names=("heatmap", "human map")):
    first, second = _as_map(first, names[0]), _as_map(second, names[1])
    if first.shape != second.shape:
        raise ValueError(f"the {names[0]} has shape {first.shape} but the {names[1]} has "
                         f"{second.shape}; resize one of them (maps are compared pixel by pixel)")
    return first, second


def _maps_for_batch(heatmaps, batch: np.ndarray, single: bool) -> np.ndarray:
    """The maps as (N, H, W), checked against the images' count and size."""
    maps = np.asarray(heatmaps)
    if maps.dtype == object or not np.issubdtype(maps.dtype, np.number):
        raise TypeError(f"heatmaps must be an array of numbers, not {maps.dtype}")
    count, height, width = batch.shape[:3]
    if maps.ndim == 2:
        maps = maps[None]
    if maps.ndim != 3 or maps.shape[1:] != (height, width) or len(maps) != count:
        expected = (f"({height}, {width})" if single
                    else f"({count}, {height}, {width})")
        raise ValueError(
            f"heatmap shape {maps.shape} does not match the images: expected {expected}, one "
            f"map per image at the model's input size (explanation functions return this)")
    maps = maps.astype(np.float64)
    if not np.all(np.isfinite(maps)):
        raise ValueError("the heatmap contains NaN or infinite values")
    return maps


# --------------------------------------------------------------------------
# Fast batched class probabilities
# --------------------------------------------------------------------------

def _class_probabilities(model, images: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Probability of ``classes[i]`` for ``images[i]`` (the model's softmax or sigmoid of
    its scores, applied once, also for a model that ends in one)."""
    logits = np.asarray(compiled_logits(model)(tf.constant(images, dtype=tf.float32)))
    return model_spec(model).probabilities(logits)[np.arange(len(images)), classes]


# --------------------------------------------------------------------------
# Deletion and insertion (Petsiuk et al. 2018)
# --------------------------------------------------------------------------

@dataclass
class PerturbationCurve:
    """A deletion or insertion curve: class probability vs fraction of pixels changed.

    ``fractions`` (steps + 1,) from 0 to 1; ``scores`` (steps + 1,) for one
    image or (N, steps + 1) for a batch; ``auc`` the area under each curve
    (a float, or (N,)); ``class_index`` the class scored (int or (N,)).
    """

    kind: str
    fractions: np.ndarray
    scores: np.ndarray
    auc: float | np.ndarray
    class_index: int | np.ndarray
    baseline: str = ""

    def __repr__(self) -> str:
        auc = (f"{self.auc:.3f}" if np.ndim(self.auc) == 0
               else np.array2string(np.asarray(self.auc), precision=3))
        return (f"PerturbationCurve(kind={self.kind!r}, steps={len(self.fractions) - 1}, "
                f"auc={auc}, baseline={self.baseline!r})")


def area_under_curve(fractions, scores) -> float | np.ndarray:
    """Trapezoidal area under ``scores`` over ``fractions`` (last axis)."""
    fractions = np.asarray(fractions, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if fractions.ndim != 1 or scores.shape[-1] != len(fractions) or len(fractions) < 2:
        raise ValueError(f"need 1-D fractions (at least 2) and scores with the same last axis; "
                         f"got {fractions.shape} and {scores.shape}")
    area = np.trapezoid(scores, fractions, axis=-1)
    return float(area) if np.ndim(area) == 0 else area


def _importance_ranks(heat: np.ndarray, descending: bool = True) -> np.ndarray:
    """Each pixel's rank (0 = removed first); ties keep raster order (stable sort)."""
    order = np.argsort(-heat.ravel() if descending else heat.ravel(), kind="stable")
    rank = np.empty(heat.size, dtype=np.int64)
    rank[order] = np.arange(heat.size)
    return rank.reshape(heat.shape)


def _changed_counts(steps: int, pixels: int) -> np.ndarray:
    """Pixels changed after each step: 0, ..., all of them."""
    return np.round(np.linspace(0, pixels, steps + 1)).astype(np.int64)


def _curve_scores(model, batch, classes, steps, perturb, batch_size, progress,
                  description) -> np.ndarray:
    """(N, steps + 1) class probabilities of ``perturb(i, k)`` (image i after step k).

    One engine for every removal curve: the (image, step) jobs are streamed
    in batches of ``batch_size`` perturbed images, several images sharing a
    batch, so only one batch of perturbed images exists at a time.
    """
    count = len(batch)
    jobs = [(i, k) for i in range(count) for k in range(steps + 1)]
    scores = np.empty((count, steps + 1), dtype=np.float64)
    for start, stop in batches(len(jobs), batch_size, progress=progress,
                               description=description, unit="img", minimum=0):
        chunk = jobs[start:stop]
        perturbed = np.empty((len(chunk),) + batch.shape[1:], dtype=np.float32)
        for j, (i, k) in enumerate(chunk):
            perturbed[j] = perturb(i, k)
        image_ids = np.array([i for i, _ in chunk])
        probs = _class_probabilities(model, perturbed, classes[image_ids])
        for (i, k), p in zip(chunk, probs):
            scores[i, k] = p
    return scores


def _perturbation_curve(kind, model, images, heatmaps, class_index, steps, baseline,
                        blur_sigma, batch_size, progress) -> PerturbationCurve:
    steps = _at_most(positive_int(choose(50, 12) if steps is None else steps, "steps"),
                     "steps", MAX_CURVE_STEPS, "removal steps of the curve")
    batch_size = positive_int(batch_size, "batch_size")
    check_number(blur_sigma, "blur_sigma", minimum=0, inclusive=(False, True),
                 accepted="a positive number of pixels")
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, single, classes = call.batch, call.single, call.classes
    maps = _maps_for_batch(heatmaps, batch, single)
    changed = _changed_counts(steps, maps[0].size)
    fractions = changed / maps[0].size
    ranks = [_importance_ranks(heat) for heat in maps]
    baselines = [baseline_image(image, baseline, blur_sigma=blur_sigma) for image in batch]

    def perturb(i, k):
        chosen = (ranks[i] < changed[k])[..., None]
        if kind == "deletion":
            return np.where(chosen, baselines[i], batch[i])
        return np.where(chosen, batch[i], baselines[i])

    scores = _curve_scores(model, batch, classes, steps, perturb, batch_size, progress,
                           f"{kind} curve")
    auc = area_under_curve(fractions, scores)
    label = baseline if isinstance(baseline, str) else "custom"
    if single:
        return PerturbationCurve(kind, fractions, scores[0], float(auc[0]), int(classes[0]), label)
    return PerturbationCurve(kind, fractions, scores, auc, classes, label)


def deletion_curve(model, images, heatmaps, class_index=None, *, steps: int | None = None,
                   baseline=DELETION_BASELINE, blur_sigma: float = 10.0, batch_size: int = 32,
                   progress: bool = True) -> PerturbationCurve:
    """Deletion curve and its area (Petsiuk, Das & Saenko 2018, *RISE*).

    Pixels are removed in order of decreasing importance (the map's value),
    ``1/steps`` of them at a time, replaced by ``baseline``, and the model's
    probability of the class is recorded after each step:

        p_k = softmax(f(x with the top k/steps of pixels deleted))[c],
        AUC = integral of p over the fraction deleted (trapezoids, 0..1).

    **Lower is better**: a faithful map points at the pixels whose removal
    destroys the evidence first. ``heatmaps``: (H, W) for one image or
    (N, H, W) for a batch, at the model's input size (any method's output).
    ``baseline``: what deleted pixels become (:func:`helpers.baseline_image`):
    "black" (the paper's choice), "blur" (Gaussian sigma ``blur_sigma``
    pixels), "mean", "grey", a pixel value or an image. ``class_index``: None = the predicted class.
    Steps default to 50 (12 in fast mode), at most ``MAX_CURVE_STEPS`` = 10,000.
    Probabilities are computed in
    batches of ``batch_size`` perturbed images (several images share batches).
    """
    return _perturbation_curve("deletion", model, images, heatmaps, class_index, steps,
                               baseline, blur_sigma, batch_size, progress)


def insertion_curve(model, images, heatmaps, class_index=None, *, steps: int | None = None,
                    baseline=INSERTION_BASELINE, blur_sigma: float = 10.0, batch_size: int = 32,
                    progress: bool = True) -> PerturbationCurve:
    """Insertion curve and its area (Petsiuk, Das & Saenko 2018, *RISE*).

    The mirror of :func:`deletion_curve`: start from ``baseline`` (by
    default a blurred copy of the photo, as in the paper; Gaussian sigma
    ``blur_sigma`` pixels, a stronger blur than the paper's small kernel so
    that the class is really gone at the start) and put the original pixels
    back in order of decreasing importance:

        p_k = softmax(f(baseline with the top k/steps of pixels restored))[c].

    **Higher is better**: a faithful map restores the class's evidence first.
    Same arguments as :func:`deletion_curve`.
    """
    return _perturbation_curve("insertion", model, images, heatmaps, class_index, steps,
                               baseline, blur_sigma, batch_size, progress)


# --------------------------------------------------------------------------
# ROAD: removal by noisy linear imputation (Rong et al. 2022)
# --------------------------------------------------------------------------

ROAD_ORDERS = ("morf", "lerf")
ROAD_NOISE = 1.0  # pixel levels of 0..255
# The 8 neighbours and their weights in the imputation (Rong et al. 2022):
# direct neighbours 1/6, diagonal ones 1/12 (the weights of a full neighbourhood sum to 1).
NEIGHBOUR_WEIGHTS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
                     (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))
_EMPTY_IMAGE_LEVEL = 127.5  # nothing left to impute from: every pixel removed


@lru_cache(maxsize=4)
def _dissection_ranks(height: int, width: int, leaf: int = 64) -> np.ndarray:
    """Each pixel's position in a nested-dissection order of the (height, width) grid.

    Split the longer side at its middle line, order both halves recursively,
    then the line (it separates them: the 8-neighbourhood reaches one row or
    column). Eliminating in this order keeps the sparse LU factors of a grid
    system small (George 1973); restricted to any subset of pixels it is still
    a nested dissection of that subset.
    """
    rank = np.empty((height, width), dtype=np.int64)
    position = 0

    def place(rows, cols):
        nonlocal position
        shape = rank[rows, cols].shape
        rank[rows, cols] = np.arange(position, position + shape[0] * shape[1]).reshape(shape)
        position += shape[0] * shape[1]

    def order(r0, r1, c0, c1):
        if (r1 - r0) * (c1 - c0) <= leaf or min(r1 - r0, c1 - c0) < 3:
            place(slice(r0, r1), slice(c0, c1))
        elif r1 - r0 >= c1 - c0:
            middle = (r0 + r1) // 2
            order(r0, middle, c0, c1)
            order(middle + 1, r1, c0, c1)
            place(slice(middle, middle + 1), slice(c0, c1))
        else:
            middle = (c0 + c1) // 2
            order(r0, r1, c0, middle)
            order(r0, r1, middle + 1, c1)
            place(slice(r0, r1), slice(middle, middle + 1))

    order(0, height, 0, width)
    return rank.ravel()


def imputation_system(image: np.ndarray, removed: np.ndarray):
    """The sparse system of :func:`noisy_linear_imputation`: (matrix, right-hand sides, unknowns).

    ``matrix`` (n, n) CSC, ``right-hand sides`` (n, C), ``unknowns`` the flat
    indices of the n removed pixels in nested-dissection order. At least one
    pixel must be kept (otherwise the system is singular).
    """
    from scipy.sparse import csc_matrix

    height, width, channels = image.shape
    flat = image.reshape(-1, channels).astype(np.float64)
    removed_flat = removed.ravel()
    unknown = np.flatnonzero(removed_flat)
    # Unknowns numbered in nested-dissection order, so the factors stay sparse.
    unknown = unknown[np.argsort(_dissection_ranks(height, width)[unknown], kind="stable")]
    count = unknown.size
    number = np.full(removed_flat.size, -1, dtype=np.int64)
    number[unknown] = np.arange(count)
    rows, cols = np.divmod(unknown, width)
    diagonal = np.zeros(count)
    right_hand = np.zeros((count, channels))
    entries_i, entries_j, entries_v = [np.arange(count)], [np.arange(count)], []
    for d_row, d_col, weight in NEIGHBOUR_WEIGHTS:
        r, c = rows + d_row, cols + d_col
        inside = (r >= 0) & (r < height) & (c >= 0) & (c < width)
        equation = np.flatnonzero(inside)
        neighbour = r[inside] * width + c[inside]
        diagonal[equation] += weight  # neighbours outside the image drop out of the mean
        also_removed = removed_flat[neighbour]
        entries_i.append(equation[also_removed])
        entries_j.append(number[neighbour[also_removed]])
        entries_v.append(np.full(int(also_removed.sum()), -weight))
        np.add.at(right_hand, equation[~also_removed], weight * flat[neighbour[~also_removed]])
    matrix = csc_matrix((np.concatenate([diagonal] + entries_v),
                         (np.concatenate(entries_i), np.concatenate(entries_j))),
                        shape=(count, count))
    return matrix, right_hand, unknown


def _linear_imputation(image: np.ndarray, removed: np.ndarray) -> np.ndarray:
    """The noise-free imputation: float64 (H, W, C), removed pixels solved for."""
    from scipy.sparse.linalg import splu

    result = image.reshape(-1, image.shape[-1]).astype(np.float64)
    if not removed.any():
        return result.reshape(image.shape)
    if removed.all():
        result[:] = _EMPTY_IMAGE_LEVEL
        return result.reshape(image.shape)
    matrix, right_hand, unknown = imputation_system(image, removed)
    # Symmetric and diagonally dominant (an M-matrix): LU without pivoting is stable,
    # and keeping the symmetric order keeps the nested dissection.
    factors = splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                   options={"SymmetricMode": True})
    result[unknown] = factors.solve(right_hand)
    return result.reshape(image.shape)


def _check_removed(removed, shape) -> np.ndarray:
    mask = np.asarray(removed)
    if mask.dtype != np.bool_:
        raise TypeError(f"removed must be a boolean (H, W) mask, not an array of {mask.dtype}")
    if mask.shape != tuple(shape):
        raise ValueError(f"removed has shape {mask.shape} but the image is {tuple(shape)}; "
                         "give one True/False per pixel")
    return mask


def noisy_linear_imputation(image, removed, *, noise: float = ROAD_NOISE, seed: int | None = 0
                            ) -> np.ndarray:
    """Fill removed pixels from their neighbours (Rong, Leemann, Borisov, Kasneci & Kasneci
    2022, *A Consistent and Efficient Evaluation Strategy for Attribution Methods*, ICML).

    Each removed pixel u becomes the weighted mean of its 8 neighbours v
    (direct ones weigh 1/6, diagonal ones 1/12; neighbours outside the image
    drop out of the mean), where a neighbour that is itself removed is an
    unknown too, so all removed pixels are solved together as one sparse
    linear system per image, the same for every colour channel:

        (sum_v w_uv) x_u - sum_{v removed} w_uv x_v = sum_{v kept} w_uv x_v,

    and then get Gaussian noise of standard deviation ``noise`` pixel levels
    (seeded by ``seed``; ``noise=0`` gives the plain solution). Each imputed
    pixel is a convex combination of kept pixels, so the removed region
    takes the colours around it: its outline carries no edge a model could
    read (the leak of black deletion), and the small noise hides the
    perfectly smooth surface. With every pixel removed nothing is left to
    impute from and the image becomes uniform grey (127.5).

    ``image``: (H, W, C) or (H, W) pixels in 0..255; ``removed``: boolean
    (H, W), True where a pixel is removed. Returns float32 of ``image``'s
    shape, clipped to 0..255. The system is solved with ``scipy.sparse``
    (SuperLU, unknowns in nested-dissection order).
    """
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.ndim not in (2, 3) or pixels.size == 0:
        raise ValueError(f"image must be (H, W) or (H, W, C) pixels; got shape {pixels.shape}")
    if not np.all(np.isfinite(pixels)):
        raise ValueError("image contains NaN or infinite values")
    mask = _check_removed(removed, pixels.shape[:2])
    noise = check_number(noise, "noise", minimum=0, accepted="a standard deviation in pixel "
                         "levels (0 or more)")
    rng = np.random.default_rng(check_seed(seed))
    filled = _linear_imputation(pixels.reshape(pixels.shape[:2] + (-1,)), mask)
    filled = _add_noise(filled, mask, noise, rng)
    return filled.reshape(pixels.shape).astype(np.float32)


def _add_noise(filled: np.ndarray, removed: np.ndarray, noise: float, rng) -> np.ndarray:
    if noise > 0 and removed.any():
        filled[removed] += rng.normal(0.0, noise, size=filled[removed].shape)
    return np.clip(filled, 0.0, 255.0)


@dataclass(repr=False)
class RoadCurve(PerturbationCurve):
    """A ROAD curve: class probability vs fraction of pixels removed and imputed.

    As :class:`PerturbationCurve` (``fractions``, ``scores``, ``auc``,
    ``class_index``), plus ``order`` ("morf": most relevant first, lower AUC
    is better; "lerf": least relevant first, higher is better), ``noise``
    (pixel levels) and ``seed``.
    """

    order: str = "morf"
    noise: float = ROAD_NOISE
    seed: int | None = 0

    def __repr__(self) -> str:
        auc = (f"{self.auc:.3f}" if np.ndim(self.auc) == 0
               else np.array2string(np.asarray(self.auc), precision=3))
        return (f"RoadCurve(order={self.order!r}, steps={len(self.fractions) - 1}, auc={auc}, "
                f"noise={self.noise:g}, seed={self.seed})")


def road_curve(model, images, heatmaps, class_index=None, *, order: str = "morf",
               steps: int | None = None, noise: float = ROAD_NOISE, seed: int | None = 0,
               batch_size: int = 32, progress: bool = True) -> RoadCurve:
    """ROAD, RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci 2022, *A
    Consistent and Efficient Evaluation Strategy for Attribution Methods*, ICML).

    Like :func:`deletion_curve`, pixels are removed ``1/steps`` at a time in
    the map's order and the class probability is recorded,

        p_k = softmax(f(I(x, R_k)))[c],   AUC = integral of p over the fraction removed,

    but the removed set R_k is filled by :func:`noisy_linear_imputation`
    (I) instead of a constant, so the removal does not draw the mask's
    outline into the image (black speckles are evidence of their own, and
    an attack on the model). ``order="morf"`` removes the most relevant
    pixels first (**lower AUC is better**); ``order="lerf"`` the least
    relevant first (**higher is better**: a faithful map keeps the evidence
    until the end). The paper scores the accuracy over a data set at 10 %,
    ..., 90 % removed; for one image the class probability takes its place,
    on the same fractions as deletion (0..1; at 1 the image is uniform grey
    for every map).

    ``heatmaps``: (H, W) or (N, H, W) at the model's input size. Steps
    default to 20 (5 in fast mode): each step costs a sparse solve of up to
    H x W unknowns. The noise at step k is seeded by (``seed``, k), the same
    for every image and map, so a curve does not depend on ``batch_size`` or
    on the other maps of the call; ``seed=None`` draws fresh noise.
    """
    check_choice(order, "order", ROAD_ORDERS)
    steps = _at_most(positive_int(choose(20, 5) if steps is None else steps, "steps"),
                     "steps", MAX_CURVE_STEPS, "removal steps of the curve")
    batch_size = positive_int(batch_size, "batch_size")
    noise = check_number(noise, "noise", minimum=0, accepted="a standard deviation in pixel "
                         "levels (0 or more)")
    seed = check_seed(seed)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, single, classes = call.batch, call.single, call.classes
    maps = _maps_for_batch(heatmaps, batch, single)
    changed = _changed_counts(steps, maps[0].size)
    fractions = changed / maps[0].size
    ranks = [_importance_ranks(heat, descending=order == "morf") for heat in maps]
    fresh = np.random.SeedSequence() if seed is None else None

    def perturb(i, k):
        removed = ranks[i] < changed[k]
        filled = _linear_imputation(batch[i], removed)
        stream = [seed, k] if fresh is None else fresh.spawn(1)[0]
        return _add_noise(filled, removed, noise, np.random.default_rng(stream))

    scores = _curve_scores(model, batch, classes, steps, perturb, batch_size, progress,
                           f"ROAD {order.upper()}")
    auc = area_under_curve(fractions, scores)
    kind = f"ROAD {'MoRF' if order == 'morf' else 'LeRF'}"
    label = "noisy linear imputation"
    if single:
        return RoadCurve(kind, fractions, scores[0], float(auc[0]), int(classes[0]), label,
                         order, noise, seed)
    return RoadCurve(kind, fractions, scores, auc, classes, label, order, noise, seed)


# --------------------------------------------------------------------------
# MuFidelity (Bhatt, Weller & Moura 2020)
# --------------------------------------------------------------------------

@dataclass
class FidelityResult:
    """The result of :func:`mufidelity`.

    ``correlation``: MuFidelity, a float for one image or (N,); NaN when the
    attribution sums or the score drops do not vary (an all-zero map).
    ``attribution_sums`` and ``score_drops``: (samples,) or (N, samples), the
    two sides of the correlation; ``subsets``: (samples, G, G) boolean, the
    grid cells set to the baseline in each sample (the same for every image).
    """

    correlation: float | np.ndarray
    attribution_sums: np.ndarray
    score_drops: np.ndarray
    subsets: np.ndarray
    class_index: int | np.ndarray
    grid_size: int
    score: str
    baseline: str = ""

    def __repr__(self) -> str:
        value = (f"{self.correlation:.3f}" if np.ndim(self.correlation) == 0
                 else np.array2string(np.asarray(self.correlation), precision=3))
        return (f"FidelityResult(correlation={value}, samples={len(self.subsets)}, "
                f"grid={self.grid_size}x{self.grid_size}, score={self.score!r})")


def _cell_index(length: int, grid_size: int) -> np.ndarray:
    """The grid cell (0..grid_size - 1) of each of ``length`` rows or columns."""
    return (np.arange(length) * grid_size) // length


def _pearson(first: np.ndarray, second: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (nothing to correlate)."""
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    return float(np.corrcoef(first, second)[0, 1])


def mufidelity(model, images, heatmaps, class_index=None, *, samples: int | None = None,
               grid_size: int = 9, subset_fraction: float = 0.2, baseline="black",
               score: str = "logit", seed: int | None = 0, batch_size: int = 32,
               progress: bool = True) -> FidelityResult:
    """MuFidelity (Bhatt, Weller & Moura 2020, *Evaluating and Aggregating Feature-based
    Model Explanations*, IJCAI).

    Draw random subsets S of the image's features, set them to the baseline
    x-bar, and correlate (Pearson, over the subsets) what the map says S is
    worth with what the model loses:

        mu_F = corr_S ( sum_{u in S} g(u),  f_c(x) - f_c(x with x_S = x-bar_S) ).

    1 means the map's sums predict every drop; 0, no relation. A feature is
    a cell of a ``grid_size`` x ``grid_size`` grid over the image (pixels for
    ``grid_size`` = the image's side), and each subset holds
    round(``subset_fraction`` x G^2) cells drawn uniformly without
    replacement (the paper's fixed subset size). ``score``: "logit" (the
    class score, default) or "probability". ``baseline``: what the cells
    become (:func:`helpers.baseline_image`; black = 0 by default, so for a
    linear model the map weight x input scores exactly 1). The subsets come
    from ``seed`` and are the same for every image of the call, so maps
    compared on one image meet the same subsets. ``samples`` defaults to
    128 (32 in fast mode), at most ``MAX_FIDELITY_SAMPLES`` = 10,000 and
    samples x grid_size^2 at most ``MAX_FIDELITY_CELLS`` = 2^25; the perturbed
    images go through the model in
    batches of ``batch_size``.
    """
    samples = positive_int(choose(128, 32) if samples is None else samples, "samples")
    if samples < 2:
        raise ValueError("samples must be at least 2 (a correlation needs two subsets)")
    _at_most(samples, "samples", MAX_FIDELITY_SAMPLES, "random subsets")
    batch_size = positive_int(batch_size, "batch_size")
    grid_size = positive_int(grid_size, "grid_size")
    _at_most(samples * grid_size ** 2, "samples x grid_size^2", MAX_FIDELITY_CELLS,
             f"the subsets are held in memory; samples={samples}, grid_size={grid_size}")
    subset_fraction = check_number(subset_fraction, "subset_fraction", minimum=0, maximum=1,
                                   inclusive=(False, False),
                                   accepted="the fraction of cells in each subset")
    check_choice(score, "score", ("logit", "probability"))
    seed = check_seed(seed)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    batch, single, classes = call.batch, call.single, call.classes
    maps = _maps_for_batch(heatmaps, batch, single)
    count, height, width = maps.shape
    if grid_size > min(height, width):
        raise ValueError(f"grid_size must be at most the image's side ({min(height, width)}); "
                         f"got {grid_size}")
    cells = grid_size * grid_size
    size = max(1, int(round(subset_fraction * cells)))
    rng = np.random.default_rng(seed)
    subsets = np.zeros((samples, cells), dtype=bool)
    for subset in subsets:
        subset[rng.choice(cells, size=size, replace=False)] = True
    subsets = subsets.reshape(samples, grid_size, grid_size)
    cell_rows, cell_cols = _cell_index(height, grid_size), _cell_index(width, grid_size)
    # sum of the map over S = its per-cell sums, added over the chosen cells
    one_hot = np.eye(grid_size)
    cell_sums = np.einsum("hg,nhw,wk->ngk", one_hot[cell_rows], maps, one_hot[cell_cols])
    attribution_sums = np.einsum("sgh,ngh->ns", subsets.astype(np.float64), cell_sums)
    baselines = [baseline_image(image, baseline) for image in batch]

    def class_scores(images_, image_ids):
        logits = np.asarray(compiled_logits(model)(tf.constant(images_, dtype=tf.float32)),
                            dtype=np.float64)
        values = model_spec(model).probabilities(logits) if score == "probability" else logits
        return values[np.arange(len(images_)), classes[image_ids]]

    clean = class_scores(batch, np.arange(count))
    jobs = [(i, s) for i in range(count) for s in range(samples)]
    perturbed_scores = np.empty((count, samples))
    for start, stop in batches(len(jobs), batch_size, progress=progress,
                               description="MuFidelity", unit="img", minimum=0):
        chunk = jobs[start:stop]
        perturbed = np.empty((len(chunk),) + batch.shape[1:], dtype=np.float32)
        for j, (i, s) in enumerate(chunk):
            hidden = subsets[s][cell_rows[:, None], cell_cols[None, :]][..., None]
            perturbed[j] = np.where(hidden, baselines[i], batch[i])
        image_ids = np.array([i for i, _ in chunk])
        for (i, s), value in zip(chunk, class_scores(perturbed, image_ids)):
            perturbed_scores[i, s] = value
    drops = clean[:, None] - perturbed_scores
    correlation = np.array([_pearson(a, d) for a, d in zip(attribution_sums, drops)])
    label = baseline if isinstance(baseline, str) else "custom"
    if single:
        return FidelityResult(float(correlation[0]), attribution_sums[0], drops[0], subsets,
                              int(classes[0]), grid_size, score, label)
    return FidelityResult(correlation, attribution_sums, drops, subsets, classes, grid_size,
                          score, label)


# --------------------------------------------------------------------------
# A small table that prints as text and shows as HTML
# --------------------------------------------------------------------------

@dataclass
class ScoreTable:
    """Rows of scores, one per method; prints as text, shows as an HTML table.

    ``columns`` names the score columns; ``rows`` holds (name, scores) pairs;
    ``better`` says, per column, whether "higher" or "lower" is better;
    ``label`` heads the names' column. Scores print with three decimals,
    whole numbers (a rank) and text as they are.
    """

    columns: list[str]
    rows: list[tuple[str, list[float]]]
    better: dict[str, str] = field(default_factory=dict)
    title: str = ""
    curves: dict = field(default_factory=dict, repr=False)
    label: str = "method"

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise ValueError(f"no column {name!r}; columns: {', '.join(self.columns)}")
        index = self.columns.index(name)
        return np.array([values[index] for _, values in self.rows])

    def sorted_by(self, name: str) -> "ScoreTable":
        """The same table, best first by column ``name``."""
        values = self.column(name)
        order = np.argsort(values if self.better.get(name) == "lower" else -values,
                           kind="stable")
        return replace(self, rows=[self.rows[i] for i in order])

    def _header(self) -> list[str]:
        arrows = {"higher": " ↑", "lower": " ↓"}
        return [column + arrows.get(self.better.get(column, ""), "") for column in self.columns]

    @staticmethod
    def _cell(value) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
            return str(int(value))
        return f"{value:.3f}"

    def __str__(self) -> str:
        width = max([6, len(self.label)] + [len(name) for name, _ in self.rows])
        header = self._header()
        lines = [self.title] if self.title else []
        lines.append(f"{self.label:<{width}}  " + "  ".join(f"{h:>12}" for h in header))
        for name, values in self.rows:
            lines.append(f"{name:<{width}}  "
                         + "  ".join(f"{self._cell(v):>12}" for v in values))
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        head = "".join(f"<th>{html.escape(h)}</th>" for h in [self.label] + self._header())
        body = "".join(
            "<tr><td style='text-align:left'>" + html.escape(name) + "</td>"
            + "".join(f"<td>{html.escape(self._cell(v))}</td>" for v in values) + "</tr>"
            for name, values in self.rows)
        return f"<table>{caption}<tr>{head}</tr>{body}</table>"


MEASURES = ("deletion", "insertion", "road", "mufidelity")


def _class_title(spec, index: int) -> str:
    """'class 281 (tabby)', 'class 3', or a contrast's 'tabby - tiger_cat'."""
    if spec.contrasts:
        return class_label(index, spec.num_classes, spec.contrasts)
    return f"class {index} ({class_name(index)})" if spec.num_classes == 1000 \
        else f"class {index}"


def _one_of(curve, i: int, class_index: int):
    """Map i's curve (or fidelity) out of a call that scored several maps at once."""
    if isinstance(curve, FidelityResult):
        return FidelityResult(float(curve.correlation[i]), curve.attribution_sums[i],
                              curve.score_drops[i], curve.subsets, class_index,
                              curve.grid_size, curve.score, curve.baseline)
    extra = ((curve.order, curve.noise, curve.seed) if isinstance(curve, RoadCurve) else ())
    return type(curve)(curve.kind, curve.fractions, curve.scores[i], float(curve.auc[i]),
                       class_index, curve.baseline, *extra)


def compare_maps(model, image, heatmaps: dict, class_index=None, *, human=None,
                 steps: int | None = None, k: float | None = None, relative: bool = False,
                 deletion_baseline=DELETION_BASELINE, insertion_baseline=INSERTION_BASELINE,
                 measures=("deletion", "insertion"), road_steps: int | None = None,
                 samples: int | None = None, seed: int | None = 0, batch_size: int = 32,
                 progress: bool = True) -> ScoreTable:
    """Faithfulness scores (and agreement with ``human`` if given) of several maps.

    ``heatmaps``: {method name: (H, W) map} for one image. ``measures``
    chooses the columns of the returned :class:`ScoreTable`:

    * "deletion", "insertion": their AUCs (lower / higher is better; with
      both, also insertion - deletion), ``steps`` steps, baselines
      ``deletion_baseline`` and ``insertion_baseline`` (see :func:`deletion_curve`);
    * "road": the AUCs of :func:`road_curve` in both orders, "ROAD MoRF"
      (lower is better), "ROAD LeRF" (higher) and LeRF - MoRF, ``road_steps`` steps;
    * "mufidelity": :func:`mufidelity` ("MuFidelity", higher is better),
      ``samples`` subsets, the same subsets for every map.

    ``seed`` seeds ROAD's noise and MuFidelity's subsets. With a human map
    the table also has the IoU of the top k% (see :func:`top_k_iou`), the
    pointing game and the Spearman rank correlation. The curves (and
    fidelity results) are kept in ``table.curves[name][kind]``, kind one of
    "deletion", "insertion", "ROAD MoRF", "ROAD LeRF", "MuFidelity".
    ``relative=True`` divides the AUCs by the class probability of the
    unmodified image, so that tables of different images and classes can be
    averaged (an insertion AUC above 1 then means the partly restored images
    score higher than the photo itself).
    """
    if not isinstance(heatmaps, dict):
        raise TypeError(f"heatmaps must be a dict {{method name: map}}, not "
                        f"{type(heatmaps).__name__}")
    if not heatmaps:
        raise ValueError("heatmaps is empty: give at least one {method name: map}")
    check_choices(measures, "measures", MEASURES)
    check_bool(relative, "relative")
    check_seed(seed)
    for name, value, maximum in (("steps", steps, MAX_CURVE_STEPS),  # before any curve runs
                                 ("road_steps", road_steps, MAX_CURVE_STEPS),
                                 ("samples", samples, MAX_FIDELITY_SAMPLES)):
        if value is not None:
            _at_most(positive_int(value, name), name, maximum, "see deletion_curve, road_curve "
                     "and mufidelity")
    call = explanation_call(model, image, class_index, name="image", contrasts=True)
    model = call.model
    if not call.single and len(call.batch) != 1:
        raise ValueError(f"image: compare_maps takes one image; got a batch of "
                         f"{len(call.batch)}")
    batch, classes = call.batch, call.classes
    columns, better = [], {}

    def add(column, direction):
        columns.append(column)
        better[column] = direction

    names = list(heatmaps)
    stacked = np.stack([_as_map(heatmaps[name], f"map of {name!r}") for name in names])
    # All maps in one call per measure: the image repeated, so batches stay full.
    repeated = np.repeat(batch, len(names), axis=0)
    repeated_classes = np.repeat(classes, len(names))
    shared = dict(batch_size=batch_size, progress=progress)
    scored = {}
    if "deletion" in measures:
        scored["deletion"] = deletion_curve(model, repeated, stacked, repeated_classes,
                                            steps=steps, baseline=deletion_baseline, **shared)
        add("deletion", "lower")
    if "insertion" in measures:
        scored["insertion"] = insertion_curve(model, repeated, stacked, repeated_classes,
                                              steps=steps, baseline=insertion_baseline, **shared)
        add("insertion", "higher")
    if "deletion" in measures and "insertion" in measures:
        add("ins - del", "higher")
    if "road" in measures:
        for order in ROAD_ORDERS:
            curve = road_curve(model, repeated, stacked, repeated_classes, order=order,
                               steps=road_steps, seed=seed, **shared)
            scored[curve.kind] = curve
        add("ROAD MoRF", "lower")
        add("ROAD LeRF", "higher")
        add("LeRF - MoRF", "higher")
    if "mufidelity" in measures:
        scored["MuFidelity"] = mufidelity(model, repeated, stacked, repeated_classes,
                                          samples=samples, seed=seed, **shared)
        add("MuFidelity", "higher")
    if human is not None:
        for column in ("IoU", "pointing", "Spearman"):
            add(column, "higher")

    original = float(_class_probabilities(model, batch, classes)[0]) if relative else 1.0
    rows, curves = [], {}
    for i, name in enumerate(names):
        curves[name] = {kind: _one_of(result, i, int(classes[0]))
                        for kind, result in scored.items()}
        aucs = {kind: curve.auc for kind, curve in curves[name].items()
                if isinstance(curve, PerturbationCurve)}
        if relative:
            aucs = {kind: auc / original for kind, auc in aucs.items()}
        values = []
        for column in columns:
            if column in aucs:
                values.append(aucs[column])
            elif column == "ins - del":
                values.append(aucs["insertion"] - aucs["deletion"])
            elif column == "LeRF - MoRF":
                values.append(aucs["ROAD LeRF"] - aucs["ROAD MoRF"])
            elif column == "MuFidelity":
                values.append(curves[name]["MuFidelity"].correlation)
        if human is not None:
            agreement = human_agreement(stacked[i], human, k=k)
            values += [agreement["iou"], float(agreement["pointing"]), agreement["spearman"]]
        rows.append((name, values))
    title = _class_title(call.spec, int(classes[0]))
    if relative:
        title += ", AUC relative to the photo's probability"
    return ScoreTable(columns, rows, better, title, curves)


# --------------------------------------------------------------------------
# Which layer to explain: Grad-CAM at each candidate layer, scored by faithfulness
# --------------------------------------------------------------------------

LAYER_MEASURES = ("deletion", "insertion")
DEFAULT_LAYER_COUNT = 5  # candidate layers by default: the deepest map sizes
MAX_CHOICE_LAYERS = 16  # layers of one layer_choice call
MAX_CHOICE_IMAGES = 32  # images of one layer_choice call
MAX_CHOICE_PIXELS = 2 ** 25  # layers x images x H x W: the maps kept for the figure
_POOLING_TYPES = ("MaxPooling2D", "AveragePooling2D")  # they only subsample the layer before


def _default_layers(model) -> list[str]:
    """One layer per map size, the deepest ``DEFAULT_LAYER_COUNT`` sizes.

    From the spatial layers :func:`helpers.model_report` lists (pooling layers
    skipped: they subsample the layer before), per map size the last layer
    that ends a block group of :func:`helpers.layer_table` (EfficientNet's
    "block2b_add", ResNet's "conv4_block6_out", VGG's "block3_conv3"), or the
    last layer of that size where no group ends at it; Grad-CAM's default
    layer comes last.
    """
    spatial = [(row["layer"], tuple(row["output (H, W, C)"][:2]))
               for row in model_report(model).layers if row["type"] not in _POOLING_TYPES]
    group_of = {row["name"]: row["group"] for row in layer_table(model)}
    ends = set({group_of.get(name): name for name, _ in spatial}.values())  # the last one wins
    sizes_with_end = {size for name, size in spatial if name in ends}
    last_of_size: dict[tuple, str] = {}
    for name, size in spatial:
        if name in ends or size not in sizes_with_end:
            last_of_size[size] = name
    chosen = set(last_of_size.values())
    return [name for name, _ in spatial if name in chosen][-DEFAULT_LAYER_COUNT:]


def _image_count(images) -> int:
    """How many images ``images`` holds, read before any of them is loaded."""
    if isinstance(images, (list, tuple)):
        return len(images)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return len(images)
    return 1


def _check_layer_list(layers):
    """``layers`` as given: None, or a list or tuple of 1..MAX_CHOICE_LAYERS layers."""
    if layers is None:
        return None
    if isinstance(layers, str):
        raise TypeError(f"layers must be None or a list or tuple of layer names, not a str "
                        f"({layers!r}); one layer: layers=[{layers!r}]")
    if not isinstance(layers, (list, tuple)):
        raise TypeError(f"layers must be None or a list or tuple of layer names, not "
                        f"{type(layers).__name__}")
    if not layers:
        raise ValueError("layers is empty: give at least one layer name (None: the default "
                         "candidates)")
    _at_most(len(layers), "layers", MAX_CHOICE_LAYERS, "layers explained and scored in one call")
    return layers


def _choice_layers(model, layers) -> list[str]:
    if layers is None:
        return _default_layers(model)
    names = [cam_layer(model, layer) for layer in layers]  # each a spatial layer, or a ValueError
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"layers lists {', '.join(map(repr, repeated))} more than once")
    return names


def _choice_method(method):
    """(label, explain(model, batch, classes, layer, batch_size) -> maps) of ``method``."""
    if isinstance(method, str) or method is None:
        check_choice(method, "method", CAM_METHODS)
        return method, lambda model, batch, classes, layer, batch_size: gradcam(
            model, batch, classes, layer=layer, method=method, batch_size=batch_size,
            progress=False)
    if not callable(method):
        raise TypeError(f"method must be one of {', '.join(map(repr, CAM_METHODS))} or a "
                        f"function (model, images, class_index, layer) -> maps, not "
                        f"{type(method).__name__}")
    label = getattr(method, "__name__", type(method).__name__)

    def explain(model, batch, classes, layer, batch_size):
        def at_layer(model_, images_, class_index_):
            return method(model_, images_, class_index_, layer)

        at_layer.__name__ = label
        return _explain_batch(at_layer, model, batch, classes)

    return label, explain


@dataclass
class LayerChoice(ScoreTable):
    """Faithfulness of one explanation method at several layers (:func:`layer_choice`).

    A :class:`ScoreTable` with a row per layer (shallow to deep): the map
    size, the mean and standard deviation over the images of each measure
    (AUCs, relative to each image's class probability unless
    ``relative=False``), and the rank by ``rule``. Also:

    * ``recommended``: the best layer by ``rule``;
    * ``layers`` (L,), ``map_sizes`` [(h, w)], ``scores`` {measure: (L, N)} per
      layer and image ("ins - del" too when both AUCs are there),
      ``probabilities`` (N,) of the unchanged images;
    * ``maps`` (L, N, H, W) float32, ``images`` (N, H, W, C), ``classes`` (N,);
    * ``curves[layer][measure]``: the (batched) :class:`PerturbationCurve`;
    * ``plot()``: :func:`show_layer_choice`.
    """

    layers: list[str] = field(default_factory=list)
    map_sizes: list[tuple[int, int]] = field(default_factory=list)
    scores: dict = field(default_factory=dict, repr=False)
    probabilities: np.ndarray | None = field(default=None, repr=False)
    maps: np.ndarray | None = field(default=None, repr=False)
    images: np.ndarray | None = field(default=None, repr=False)
    classes: np.ndarray | None = field(default=None, repr=False)
    method: str = "gradcam"
    relative: bool = True
    recommended: str = ""
    rule: str = ""

    def plot(self, **options):
        """The figure of :func:`show_layer_choice`."""
        return show_layer_choice(self, **options)

    __repr__ = ScoreTable.__str__


def _check_map_pixels(layers: int, images: int, height: int, width: int):
    if layers * images * height * width > MAX_CHOICE_PIXELS:
        raise ValueError(
            f"layers x images x height x width must be at most {MAX_CHOICE_PIXELS:,} map "
            f"pixels (the maps are kept), got {layers} x {images} x {height} x {width}; "
            "give fewer layers or images")


def _choice_rule(measures) -> tuple[str, str, str]:
    """(column ranked, its direction, the rule in words)."""
    if "deletion" in measures and "insertion" in measures:
        return "ins - del", "higher", "highest mean insertion - deletion AUC"
    if "deletion" in measures:
        return "deletion", "lower", "lowest mean deletion AUC"
    return "insertion", "higher", "highest mean insertion AUC"


def _choice_classes_title(spec, classes) -> str:
    distinct = list(dict.fromkeys(int(c) for c in classes))
    if len(distinct) == 1:
        return _class_title(spec, distinct[0])
    shown = ", ".join(_class_title(spec, c) for c in distinct[:3])
    return f"each image's class ({shown}{', ...' if len(distinct) > 3 else ''})"


def layer_choice(model, images, class_index=None, *, layers=None, method="gradcam",
                 measures=LAYER_MEASURES, steps: int | None = None, relative: bool = True,
                 deletion_baseline=DELETION_BASELINE, insertion_baseline=INSERTION_BASELINE,
                 batch_size: int = 32, progress: bool = True) -> LayerChoice:
    """Which layer to explain: one method's maps at several layers, scored by faithfulness.

    Each image is explained at each candidate layer (all images of a layer
    in one call) and each map scored by lesson 09's curves (Petsiuk et al.
    2018): the deletion AUC (:func:`deletion_curve`, lower is better) and the
    insertion AUC (:func:`insertion_curve`, higher is better), divided by the
    image's probability of the class (``relative=True``, as
    ``compare_maps(..., relative=True)``) so that photos of different
    confidence can be averaged. The table has, per layer (shallow to deep),
    the map size, the mean and standard deviation (over the images; 0 for
    one) of each AUC and of insertion - deletion, and a rank. The
    recommended layer is the best by the stated rule:

        score(layer) = mean over images of (ins_i / p_i - del_i / p_i),

    the highest wins (with one measure: the lowest mean deletion, or the
    highest mean insertion).

    ``layers``: a list of spatial layer names (nested models' too); None =
    one layer per map size of :func:`helpers.model_report`'s list (pooling
    layers skipped): the last that ends a block group of
    :func:`helpers.layer_table`, else the last of that size, for the deepest
    ``DEFAULT_LAYER_COUNT`` = 5 sizes (EfficientNet-Lite0: block1a_project_bn 112 x 112, block2b_add 56,
    block3b_add 28, block5c_add 14, top_activation 7), the last one being
    Grad-CAM's default. ``method``: one of :data:`helpers.CAM_METHODS`
    (:func:`helpers.gradcam`'s ``method``; "layercam" stays sharp at shallow
    layers), or a function ``(model, images, class_index, layer) -> maps``
    ((N, H, W) at the input size). ``class_index``: None (each image's
    predicted class), a class or contrast, or one per image. ``measures``:
    "deletion", "insertion" or both; ``steps`` (default 25, 8 in fast mode),
    the baselines and ``batch_size`` as in :func:`compare_maps`.

    At most ``MAX_CHOICE_LAYERS`` = 16 layers and ``MAX_CHOICE_IMAGES`` = 32
    images, and layers x images x H x W at most 2^25 map pixels (the maps are
    kept for the figure): checked before any work. Returns a
    :class:`LayerChoice` (prints as text, a table in a notebook; ``.plot()``).
    """
    check_choices(measures, "measures", LAYER_MEASURES)
    measures = [measure for measure in LAYER_MEASURES if measure in measures]
    steps = _at_most(positive_int(choose(25, 8) if steps is None else steps, "steps"),
                     "steps", MAX_CURVE_STEPS, "removal steps of each curve")
    relative = check_bool(relative, "relative")
    batch_size = positive_int(batch_size, "batch_size")
    check_bool(progress, "progress")
    label, explain = _choice_method(method)
    layers = _check_layer_list(layers)
    spec = model_spec(model)  # the model and its head, checked before the layers are read
    names = _choice_layers(model, layers)
    count = _at_most(_image_count(images), "images", MAX_CHOICE_IMAGES,
                     "images explained at every layer in one call")
    height, width = spec.size
    _check_map_pixels(len(names), count, height, width)

    call = explanation_call(model, images, class_index, contrasts=True)
    explained, batch, classes = call.model, call.batch, call.classes
    count = _at_most(len(batch), "images", MAX_CHOICE_IMAGES,
                     "images explained at every layer in one call")
    _check_map_pixels(len(names), count, height, width)
    probabilities = _class_probabilities(explained, batch, classes)
    if relative and not np.all(probabilities > 0):
        raise ValueError(
            f"relative AUCs divide by the class probability of each image, which is "
            f"{np.array2string(probabilities, precision=3)}; for a contrast the model does "
            "not favour, or a class of probability 0, use relative=False")
    divisor = probabilities if relative else np.ones(count)

    maps = np.empty((len(names), count, height, width), dtype=np.float32)
    aucs = {measure: np.empty((len(names), count)) for measure in measures}
    curve_functions = {"deletion": (deletion_curve, deletion_baseline),
                       "insertion": (insertion_curve, insertion_baseline)}
    curves = {}
    with progress_bar(len(names) * (1 + len(measures)), progress, "layer choice",
                      unit="step") as bar:
        for i, name in enumerate(names):
            maps[i] = explain(explained, batch, classes, name, batch_size)
            bar.update(1)
            curves[name] = {}
            for measure in measures:
                function, baseline = curve_functions[measure]
                curve = function(explained, batch, maps[i], classes, steps=steps,
                                 baseline=baseline, batch_size=batch_size, progress=False)
                curves[name][measure] = curve
                aucs[measure][i] = curve.auc / divisor
                bar.update(1)
    if len(measures) == 2:
        aucs["ins - del"] = aucs["insertion"] - aucs["deletion"]

    ranked, direction, rule = _choice_rule(measures)
    means = aucs[ranked].mean(axis=1)
    order = np.argsort(means if direction == "lower" else -means, kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(1, len(names) + 1)
    recommended = names[int(order[0])]

    map_sizes = [_map_size(explained, name) for name in names]
    columns, better = ["map"], {}
    for measure in list(aucs):
        columns += [measure, f"{measure} sd"]
        better[measure] = "lower" if measure == "deletion" else "higher"
    columns.append("rank")
    better["rank"] = "lower"
    rows = []
    for i, name in enumerate(names):
        values = [f"{map_sizes[i][0]} x {map_sizes[i][1]}"]
        for measure in aucs:
            values += [float(aucs[measure][i].mean()), float(aucs[measure][i].std())]
        rows.append((name, values + [int(rank[i])]))
    title = (f"{label} at {len(names)} layers, {count} image{'s' if count != 1 else ''}, "
             f"{_choice_classes_title(call.spec, classes)}; "
             + ("AUC relative to each image's probability; " if relative else "")
             + f"recommended: {recommended} ({rule})")
    return LayerChoice(columns, rows, better, title, curves, "layer", layers=names,
                       map_sizes=map_sizes, scores=aucs, probabilities=probabilities,
                       maps=maps, images=batch, classes=classes, method=label,
                       relative=relative, recommended=recommended, rule=rule)


def _map_size(model, name: str) -> tuple[int, int]:
    shape = output_shape_of(find_layer(model, name))
    return int(shape[0]), int(shape[1])


# --------------------------------------------------------------------------
# Map similarity: Spearman rank correlation and SSIM
# --------------------------------------------------------------------------

def rank_correlation(first, second, *, absolute: bool = False) -> float:
    """Spearman rank correlation of two maps of the same shape, pixel by pixel.

    rho = Pearson correlation of the pixels' ranks (ties get their average
    rank), in -1..1: 1 = same order of importance, 0 = unrelated. With
    ``absolute=True`` the magnitudes |map| are compared (Adebayo et al. 2018
    report both, since a gradient's sign may flip while its layout stays).
    A constant map has no order: the result is NaN.
    """
    from scipy.stats import rankdata

    first, second = _same_shape(first, second, ("first map", "second map"))
    if absolute:
        first, second = np.abs(first), np.abs(second)
    if np.ptp(first) == 0 or np.ptp(second) == 0:
        return float("nan")
    first_ranks, second_ranks = rankdata(first.ravel()), rankdata(second.ravel())
    return float(np.corrcoef(first_ranks, second_ranks)[0, 1])


def _unit_range(heatmap: np.ndarray) -> np.ndarray:
    low, high = heatmap.min(), heatmap.max()
    return (heatmap - low) / (high - low) if high > low else np.zeros_like(heatmap)


def map_ssim(first, second, *, absolute: bool = False) -> float:
    """Structural similarity (Wang et al. 2004) of two maps, each scaled to 0..1 first.

    SSIM = l * c * s compares local means, contrasts and structure in 7x7
    windows (``skimage.metrics.structural_similarity``, data range 1);
    1 = identical. Scaling first makes it blind to a map's overall scale,
    as in Adebayo et al. 2018.
    """
    from skimage.metrics import structural_similarity

    first, second = _same_shape(first, second, ("first map", "second map"))
    if min(first.shape) < 7:
        raise ValueError(f"SSIM needs maps of at least 7x7 pixels; got {first.shape}")
    if absolute:
        first, second = np.abs(first), np.abs(second)
    return float(structural_similarity(_unit_range(first), _unit_range(second), data_range=1.0))


# --------------------------------------------------------------------------
# Model-randomisation sanity check (Adebayo et al. 2018)
# --------------------------------------------------------------------------

def _block_of(layer_name: str) -> str:
    """'block7a_project_bn' -> 'block7a', 'top_conv' -> 'top', 'conv2d_3' -> 'conv2d_3'."""
    head, _, rest = layer_name.partition("_")
    return head if rest and not re.fullmatch(r"\d+", rest) else layer_name


def _weighted_layers(model) -> list:
    """The layers with weights in graph order, those of nested models included (a
    fine-tuned model's pretrained base comes before its new head)."""
    import keras

    layers = [layer for _, layer in walk_layers(model)
              if layer.weights and not isinstance(layer, keras.Model)]
    names = [layer.name for layer in layers]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"model {model.name!r} has several layers named "
                         f"{', '.join(map(repr, repeated[:3]))} (inside its nested models); the "
                         "randomisation check finds layers by name: rename them")
    return layers


def _weighted_layers_top_down(model) -> list:
    return _weighted_layers(model)[::-1]


def randomization_stages(model, by: str = "block") -> list[tuple[str, list[str]]]:
    """The cascade's stages from the top (logits) down: [(stage name, [layer names])].

    ``by="block"`` groups neighbouring layers that share a name prefix
    ('block7a_expand_conv', 'block7a_bn', ... -> stage 'block7a'; 'top_conv',
    'top_bn' -> 'top'); ``by="layer"`` makes every layer with weights a stage.
    """
    if by not in ("block", "layer"):
        raise ValueError(f"by must be 'block' or 'layer', not {by!r}")
    stages: list[tuple[str, list[str]]] = []
    for layer in _weighted_layers_top_down(model):
        stage = _block_of(layer.name) if by == "block" else layer.name
        if stages and stages[-1][0] == stage:
            stages[-1][1].append(layer.name)
        else:
            stages.append((stage, [layer.name]))
    return stages


def _select_stages(model, stages, by) -> list[tuple[str, list[str]]]:
    available = randomization_stages(model, by)
    if stages is None:
        return available
    if isinstance(stages, (int, np.integer)) and not isinstance(stages, bool):
        if not 1 <= stages <= len(available):
            raise ValueError(f"stages={stages}: the model has {len(available)} stages "
                             f"(by={by!r}); give 1..{len(available)}")
        return available[:int(stages)]
    if isinstance(stages, str) or not isinstance(stages, (list, tuple)):
        raise TypeError("stages must be None (all), a count from the top, or a list of stage "
                        "or layer names")
    by_name = dict(available)
    weighted = {layer.name for layer in _weighted_layers_top_down(model)}
    chosen = []
    for name in stages:
        if name in by_name:
            chosen.append((name, list(by_name[name])))
        elif name in weighted:
            chosen.append((name, [name]))
        else:
            names = [stage for stage, _ in available]
            raise ValueError(f"{name!r} is neither a stage nor a layer with weights of "
                             f"{model.name!r}; stages from the top: {', '.join(names[:8])}, ...")
    return chosen


@dataclass
class SanityCheck:
    """The result of :func:`cascading_randomization`.

    ``stages``: names, top first; ``layers``: the layers each stage
    re-initialises (cumulative: stage i also keeps stages 0..i-1 random);
    ``maps``: (S + 1, H, W) for one image (index 0 = the trained model) or
    (N, S + 1, H, W); ``spearman`` and ``ssim``: (S,) or (N, S), each
    stage's map against the original.
    """

    stages: list[str]
    layers: list[list[str]]
    maps: np.ndarray
    spearman: np.ndarray
    ssim: np.ndarray
    class_index: int | np.ndarray
    absolute: bool = False

    def __repr__(self) -> str:
        return (f"SanityCheck(stages={len(self.stages)}: {', '.join(self.stages[:4])}"
                f"{', ...' if len(self.stages) > 4 else ''}; spearman="
                f"{np.array2string(np.asarray(self.spearman), precision=2)})")


def _explain_batch(explain, model, batch, classes) -> np.ndarray:
    class_arg = int(classes[0]) if len(classes) == 1 else [int(c) for c in classes]
    maps = np.asarray(explain(model, batch, class_arg), dtype=np.float64)
    if maps.ndim == 2 and len(batch) == 1:
        maps = maps[None]
    expected = (len(batch),) + batch.shape[1:3]
    if maps.shape != expected:
        name = getattr(explain, "__name__", type(explain).__name__)
        raise ValueError(f"the explanation function {name} returned shape {maps.shape}; "
                         f"expected {expected[1:]} or {expected} (one map per image at the "
                         "model's input size)")
    return maps


def _fresh_weights(model, seed: int) -> dict[str, list[np.ndarray]]:
    """Each layer's weights as its own initialisers draw them, seeded, RNG states restored."""
    import keras

    python_state, numpy_state = random.getstate(), np.random.get_state()
    # Derived from ``seed`` so that an untrained model built after
    # ``set_random_seed(seed)`` does not get its own weights back.
    derived = int(np.random.SeedSequence([int(seed), 2018]).generate_state(1)[0])
    try:
        keras.utils.set_random_seed(derived)
        fresh = keras.models.clone_model(model)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return {layer.name: layer.get_weights() for layer in _weighted_layers(fresh)}


def cascading_randomization(model, explain, images, class_index=None, *, stages=None,
                            by: str = "block", seed: int = 0, absolute: bool = False,
                            progress: bool = True) -> SanityCheck:
    """The model-randomisation sanity check (Adebayo et al. 2018, *Sanity Checks for
    Saliency Maps*), cascading from the top.

    ``explain(model, images, class_index)`` is any explanation function (use
    ``functools.partial`` or a lambda to set its knobs). It is called first
    on a copy of the trained model, then after re-initialising each stage
    in turn, from the logits down, the earlier stages staying random:

        stage s: weights of stages 1..s re-drawn from their initialisers,
        rho_s = Spearman(map_0, map_s),  SSIM_s = SSIM(map_0, map_s).

    A method whose maps stay similar (rho near 1) while the model becomes
    noise fails the check: its map shows the image, not what the model
    learned. The class scored is fixed to ``class_index`` of the *trained*
    model (None = its prediction), as in the paper.

    The user's model is never touched: the check works on
    ``keras.models.clone_model(model)`` with the trained weights copied in.
    A fine-tuned model that nests its pretrained base is randomised layer by
    layer through the base too: its new head first, then the base from the top.
    Random weights come from each layer's own initialiser (what a freshly
    built model gets; batch normalisation becomes the identity), seeded by
    ``seed`` (this re-seeds TensorFlow's global generator).
    ``stages``: None (all), a number of stages from the top, or a list of
    stage or layer names; see :func:`randomization_stages` (``by``).
    """
    import keras
    from tqdm.auto import tqdm

    if not callable(explain):
        raise TypeError("explain must be a function explain(model, images, class_index), "
                        f"not {type(explain).__name__}")
    seed = check_seed(seed, allow_none=False)
    call = explanation_call(model, images, class_index)
    batch, single, classes = call.batch, call.single, call.classes
    chosen = _select_stages(model, stages, by)
    fresh = _fresh_weights(model, seed)
    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    copy_layers = {layer.name: layer for layer in _weighted_layers(copy)}

    maps = [_explain_batch(explain, copy, batch, classes)]
    for _, layer_names in tqdm(chosen, desc="randomising", disable=not progress, leave=False):
        for name in layer_names:
            copy_layers[name].set_weights(fresh[name])
        maps.append(_explain_batch(explain, copy, batch, classes))
    maps = np.stack(maps, axis=1)  # (N, S + 1, H, W)

    spearman = np.array([[rank_correlation(m[0], m[s], absolute=absolute)
                          for s in range(1, len(m))] for m in maps])
    ssim = np.array([[map_ssim(m[0], m[s], absolute=absolute) for s in range(1, len(m))]
                     for m in maps])
    names = [name for name, _ in chosen]
    layer_lists = [list(layers) for _, layers in chosen]
    if single:
        return SanityCheck(names, layer_lists, maps[0].astype(np.float32), spearman[0], ssim[0],
                           int(classes[0]), absolute)
    return SanityCheck(names, layer_lists, maps.astype(np.float32), spearman, ssim, classes,
                       absolute)


# --------------------------------------------------------------------------
# Agreement with human attention
# --------------------------------------------------------------------------

def _check_percent(k) -> float:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, float, np.integer, np.floating)):
        raise TypeError(f"k is a percentage in (0, 100], not {type(k).__name__}")
    if not 0 < float(k) <= 100:
        raise ValueError(f"k is a percentage of the pixels and must lie in (0, 100]; got {k}")
    return float(k)


def top_k_mask(heatmap, k: float) -> np.ndarray:
    """A boolean mask of the map's ``k`` % highest pixels (exactly round(k% of H*W), at least 1).

    Ties are broken in raster order, so the count is exact.
    """
    heatmap = _as_map(heatmap)
    count = max(1, int(round(_check_percent(k) / 100 * heatmap.size)))
    order = np.argsort(-heatmap.ravel(), kind="stable")[:count]
    mask = np.zeros(heatmap.size, dtype=bool)
    mask[order] = True
    return mask.reshape(heatmap.shape)


def _human_mask(human, threshold: float) -> np.ndarray:
    human = np.asarray(human)
    if human.dtype == np.bool_:
        mask = _as_map(human, "human map") > 0
    else:
        if not 0 < threshold <= 1:
            raise ValueError(f"human_threshold must lie in (0, 1], not {threshold}")
        mask = _as_map(human, "human map") >= threshold
    if not mask.any():
        raise ValueError("the human mask is empty (no pixel reaches human_threshold); "
                         "lower the threshold or check the annotations")
    return mask


def top_k_iou(heatmap, human, k: float | None = None, *, human_threshold: float = 0.5) -> float:
    """Intersection over union of the map's top ``k`` % pixels and a human mask.

    IoU = |T_k & M| / |T_k | M|, where M is ``human`` (boolean) or the pixels
    where a human attention map (fraction of annotators, 0..1) reaches
    ``human_threshold``. ``k=None`` takes as many pixels as the mask has, so
    a perfect map scores 1; with a fixed k the best possible IoU is
    min(k, m) / max(k, m) for a mask covering m % of the image.
    """
    heatmap, human_map = _same_shape(heatmap, np.asarray(human, dtype=np.float64))
    mask = _human_mask(human, human_threshold)
    k = 100.0 * mask.mean() if k is None else k
    top = top_k_mask(heatmap, k)
    return float(np.logical_and(top, mask).sum() / np.logical_or(top, mask).sum())


def pointing_game(heatmap, human, *, tolerance: float = 15, human_threshold: float = 0.5) -> bool:
    """The pointing game (Zhang et al. 2018, *Top-down Neural Attention by Excitation Backprop*).

    A hit if the map's maximum (the first in raster order when tied) falls
    inside the human mask or within ``tolerance`` pixels of it (the paper
    uses 15 px). The score over a set of images is the fraction of hits.
    """
    from scipy.ndimage import distance_transform_edt

    heatmap, _ = _same_shape(heatmap, np.asarray(human, dtype=np.float64))
    if tolerance < 0:
        raise ValueError(f"tolerance is a distance in pixels, >= 0; got {tolerance}")
    mask = _human_mask(human, human_threshold)
    row, col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    distance = distance_transform_edt(~mask)[row, col]  # 0 inside the mask
    return bool(distance <= tolerance)


def human_agreement(heatmap, human, *, k: float | None = None, tolerance: float = 15,
                    human_threshold: float = 0.5) -> dict:
    """IoU of the top k %, pointing game and Spearman correlation of a map with a human map.

    Returns {"iou": float, "pointing": bool, "spearman": float}.
    """
    return {
        "iou": top_k_iou(heatmap, human, k, human_threshold=human_threshold),
        "pointing": pointing_game(heatmap, human, tolerance=tolerance,
                                  human_threshold=human_threshold),
        "spearman": rank_correlation(heatmap, np.asarray(human, dtype=np.float64)),
    }


# --------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------

def show_curves(curves: dict, *, ax=None, title: str | None = None):
    """Plot deletion, insertion or ROAD curves {method: PerturbationCurve} with their AUC.

    Batched curves are averaged over images. Returns the axes.
    """
    import matplotlib.pyplot as plt

    if not isinstance(curves, dict) or not curves:
        raise TypeError("curves must be a non-empty dict {method name: PerturbationCurve}")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.6))
    kinds = set()
    for name, curve in curves.items():
        if not isinstance(curve, PerturbationCurve):
            raise TypeError(f"curves[{name!r}] is a {type(curve).__name__}, not a "
                            "PerturbationCurve")
        scores = np.atleast_2d(curve.scores).mean(axis=0)
        ax.plot(curve.fractions, scores, label=f"{name} (AUC {np.mean(curve.auc):.3f})")
        kinds.add(curve.kind)
    kind = kinds.pop() if len(kinds) == 1 else "perturbation"
    action = {"deletion": "deleted", "insertion": "inserted"}.get(kind, "removed (imputed)")
    ax.set_xlabel("fraction of pixels " + (action if kind != "perturbation" else "changed"))
    ax.set_ylabel("class probability")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    verdict = "" if kind == "perturbation" else \
        f" ({'lower' if kind in ('deletion', 'ROAD MoRF') else 'higher'} AUC is better)"
    ax.set_title(title or kind + verdict)
    return ax


def show_cascade(checks, image=None, *, max_columns: int = 7, size: float = 1.9,
                 clip_percentile: float = 99.0, cmap: str | None = None):
    """The sanity check's cascade: each method's map as the model is randomised, top down.

    ``checks``: a :class:`SanityCheck` (one image) or {method: SanityCheck}.
    One row of maps per method (columns: the trained model, then cumulative
    stages, thinned to ``max_columns``), and a last panel with the Spearman
    rank correlation against the original map per stage. Each map is shown
    clipped at its ``clip_percentile`` (a few extreme gradients would
    otherwise hide the rest), alone or over ``image``, in ``cmap`` (default the
    course's unsigned map, :data:`helpers.UNSIGNED_CMAP`). Returns the figure.
    """
    import matplotlib.pyplot as plt

    cmap = cmap or UNSIGNED_CMAP

    if isinstance(checks, SanityCheck):
        checks = {"map": checks}
    if not isinstance(checks, dict) or not checks:
        raise TypeError("checks must be a SanityCheck or a non-empty dict {method: SanityCheck}")
    for name, check in checks.items():
        if not isinstance(check, SanityCheck) or check.maps.ndim != 3:
            raise TypeError(f"checks[{name!r}] must be the SanityCheck of one image")
    first = next(iter(checks.values()))
    stage_count = len(first.stages)
    # Presentation mode: fewer stages per row, so each map stays large on a projector.
    _, max_columns, size = panel_layout(max_columns, max_columns, size)
    columns = np.unique(np.round(np.linspace(0, stage_count, min(max_columns, stage_count + 1)))
                        .astype(int))
    rows = len(checks)
    fig = plt.figure(figsize=(size * (len(columns) + 2.6), size * rows + 0.4),
                     layout="constrained")
    grid = fig.add_gridspec(rows, len(columns) + 2)
    for r, (name, check) in enumerate(checks.items()):
        for c, column in enumerate(columns):
            ax = fig.add_subplot(grid[r, c])
            heat = np.abs(check.maps[column]) if check.absolute else check.maps[column]
            heat = np.minimum(heat, np.percentile(heat, clip_percentile))
            show(image, heat, ax=ax, colorbar=False, cmap=cmap,
                 alpha=0.6 if image is not None else 1.0)
            label = "trained" if column == 0 else f"…{check.stages[column - 1]}"
            ax.set_title(label if r == 0 else "", fontsize="small")
            if c == 0:
                ax.text(-0.08, 0.5, name, transform=ax.transAxes, rotation=90,
                        ha="right", va="center")
    curve_ax = fig.add_subplot(grid[:, len(columns):])
    for name, check in checks.items():
        curve_ax.plot(np.arange(1, len(check.stages) + 1), check.spearman, marker="o",
                      markersize=3, label=name)
    ticks = np.arange(1, stage_count + 1)
    step = max(1, stage_count // 8)
    curve_ax.set_xticks(ticks[::step], [first.stages[i - 1] for i in ticks[::step]],
                        rotation=60, fontsize="small")
    curve_ax.axhline(0, color="grey", lw=0.8)
    lowest = min(np.nanmin(check.spearman) if np.isfinite(check.spearman).any() else 0.0
                 for check in checks.values())
    curve_ax.set_ylim(min(-0.2, lowest - 0.05), 1.05)
    curve_ax.set_xlabel("randomised down to")
    curve_ax.set_ylabel("Spearman ρ with the trained model's map")
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(fontsize="small")
    fig.suptitle("Cascading model randomisation (Adebayo et al. 2018)")
    return fig


def show_layer_choice(choice, *, image: int = 0, maps: bool = True, size: float = 2.2,
                      cmap: str | None = None):
    """The figure of a :func:`layer_choice`: which layer's maps are the most faithful.

    Top, one panel per measure (deletion, insertion, insertion - deletion):
    each layer's mean AUC (a horizontal bar, shallow layers on top, labelled
    with its map size) with its standard deviation over the images (error
    bar) and each image as a dot; the recommended layer is drawn darker, in
    bold and named in the title. Below (``maps=True``) the maps of image
    number ``image`` at every layer, over the photo, each scaled to its own
    maximum, in ``cmap`` (default :data:`helpers.UNSIGNED_CMAP`); panels of
    ``size`` inches. Returns the figure.
    """
    import matplotlib.pyplot as plt

    if not isinstance(choice, LayerChoice):
        raise TypeError(f"choice must be the LayerChoice that h.layer_choice returns, not "
                        f"{type(choice).__name__}")
    check_bool(maps, "maps")
    check_number(size, "size", minimum=0, inclusive=(False, True),
                 accepted="a positive size in inches")
    count = len(choice.classes)
    if isinstance(image, (bool, np.bool_)) or not isinstance(image, (int, np.integer)):
        raise TypeError(f"image must be the index of one of the {count} images, not "
                        f"{type(image).__name__} ({image!r})")
    if not 0 <= image < count:
        raise ValueError(f"image must be the index of one of the {count} images (0..{count - 1}),"
                         f" got {image}")
    cmap = cmap or UNSIGNED_CMAP
    panels = list(choice.scores)
    layer_count = len(choice.layers)
    _, map_columns, size = panel_layout(layer_count, layer_count, size)
    map_rows = -(-layer_count // map_columns) if maps else 0
    chart_height = 1.2 + 0.45 * layer_count
    width = max(size * map_columns, 1.6 + 3.2 * len(panels))
    fig = plt.figure(figsize=(width, chart_height + map_rows * (size + 0.3)),
                     layout="constrained")
    top, bottom = (fig.subfigures(2, 1, height_ratios=[chart_height, map_rows * (size + 0.3)])
                   if maps else (fig, None))
    axes = np.atleast_1d(top.subplots(1, len(panels), sharey=True))
    positions = np.arange(layer_count)
    best = choice.layers.index(choice.recommended)
    labels = [f"{name} ({h} x {w})" for name, (h, w) in zip(choice.layers, choice.map_sizes)]
    offsets = (np.linspace(-0.2, 0.2, count) if count > 1 else np.zeros(1))
    for ax, measure in zip(axes, panels):
        values = choice.scores[measure]
        colours = ["#1f77b4" if i != best else "#08306b" for i in positions]
        ax.barh(positions, values.mean(axis=1), xerr=values.std(axis=1), color=colours,
                alpha=0.55, capsize=3, error_kw={"elinewidth": 1})
        for i in positions:
            ax.plot(values[i], i + offsets, "o", color="black", markersize=3, alpha=0.7)
        direction = "lower" if measure == "deletion" else "higher"
        ax.set_title(f"{measure} ({direction} is better)", fontsize="medium")
        ax.axvline(0, color="grey", lw=0.8)
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("AUC / the photo's probability" if choice.relative else "AUC",
                      fontsize="small")
    axes[0].set_yticks(positions, labels, fontsize="small")
    axes[0].invert_yaxis()  # shallow layers on top, as in the table
    for i, tick in enumerate(axes[0].get_yticklabels()):
        tick.set_fontweight("bold" if i == best else "normal")
    top.suptitle(f"{choice.method} per layer, {count} image{'s' if count != 1 else ''}: "
                 f"recommended {choice.recommended} ({choice.rule})", fontsize="medium")
    if maps:
        map_axes = np.atleast_1d(bottom.subplots(map_rows, map_columns)).ravel()
        for i, ax in enumerate(map_axes):
            if i >= layer_count:
                ax.axis("off")
                continue
            show(choice.images[image], choice.maps[i, image], ax=ax, colorbar=False,
                 cmap=cmap, alpha=0.6)
            ax.set_title(choice.layers[i] + (" (recommended)" if i == best else ""),
                         fontsize="small", fontweight="bold" if i == best else "normal")
    return fig
