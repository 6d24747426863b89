"""Occlusion: hide part of the photo, watch the class score drop.

Three perturbation methods, written by hand because they are what lesson 03
is about. A masked image is ``x_i = M_i * x + (1 - M_i) * b``, with M = 1
where visible and b the baseline (what hidden pixels become, see
:func:`helpers.baseline_image`); s_c is the class score, the softmax
probability (default) or the logit.

* **Sliding-patch occlusion** (Zeiler & Fergus 2014, *Visualizing and
  Understanding Convolutional Networks*). A square patch slides over the
  image; for every position k the drop ``drop_k = s_c(x) - s_c(x_k)`` is
  credited to the pixels the patch hid:
  ``map(u) = sum_k drop_k [u in patch_k] / sum_k [u in patch_k]``.
  :func:`occlusion_reference` is this formula as a plain loop.
* **Random binary masks**: coarse random grids of visible/hidden cells (each
  visible with probability p), upsampled with nearest neighbour; a masked
  image's score counts for the pixels it showed and against those it hid:
  ``map(u) = 1/N sum_i s_c(x_i) (2 M_i(u) - 1)``.
* **RISE** (Petsiuk, Das & Saenko 2018, *RISE: Randomized Input Sampling for
  Explanation of Black-box Models*): the same grids upsampled bilinearly
  with a random sub-cell shift, so masks are smooth. The map estimates
  ``E[s_c | u visible]``; the paper's estimator ``1/(N p) sum_i s_i M_i(u)``
  divides by the *expected* coverage N p, so where the score barely moves the
  map mostly shows how many masks happened to cover u (two seeds of 2000
  masks correlated 0.44 on EfficientNet-Lite0). Dividing by the coverage the
  masks really gave, ``S_c(u) = sum_i s_i M_i(u) / sum_i M_i(u)`` (a ratio
  estimator of the same expectation, no extra forward pass), cancels that
  noise: the same two seeds correlate 0.96.

Why it is fast (:func:`perturbation_scores`, at the end of this file): the
masked copies go through the network in fixed-size batches by one compiled
function, so TensorFlow traces the model once and only ``batch_size`` masked
images exist at a time, whatever the mask count. The scores of **all**
classes are kept (4 kB per mask), so a map for any class is a cheap
contraction of the stored scores with the masks, with no new pass::

    scores = h.random_mask_scores(model, "cat_and_coffee", method="rise")
    cat, cup = scores.map("tabby"), scores.map("espresso")
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .environment import choose, tf
from . import incremental
from .models import probabilities
from .masks import (DEFAULT_BATCH_SIZE, SCORES, PatchMasks, RandomMasks, baseline_image,
                    check_patch_and_stride)
from .pipeline import (batches, cached, check_choice, explanation_call, holder,
                       model_batch, model_spec, positive_int, resolve_classes)

__all__ = [
    "occlusion_map",
    "rise",
    "random_mask_map",
    "occlusion_scores",
    "incremental_occlusion_scores",
    "occlusion_passes",
    "occlusion_pass_count",
    "random_mask_scores",
    "occlusion_reference",
]

CONTRACTION_CHUNK = 128  # masks regenerated at a time when maps are contracted


# --------------------------------------------------------------------------
# The lesson's calls: one class map per image
# --------------------------------------------------------------------------

def occlusion_map(model, images, class_index=None, *, patch_size: int = 32, stride: int = 8,
                  baseline="grey", score: str = "probability",
                  batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> np.ndarray:
    """Sliding-patch occlusion map (Zeiler & Fergus 2014, *Visualizing and Understanding
    Convolutional Networks*).

    ``map(u) = sum_k [u in patch_k] (s_c(x) - s_c(x_k)) / sum_k [u in patch_k]``:
    the mean drop of the class score over the patch positions that hid
    pixel u; positive where hiding hurts the class. ``class_index``: index
    or name, one per image, or None (predicted class). ``baseline``: what the
    patch shows (see :func:`helpers.baseline_image`). ``score``: "probability"
    (softmax of the logits) or "logit". Returns float32 (H, W), or (N, H, W)
    for several images.
    """
    _check_knobs(score, batch_size)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    PatchMasks(*call.spec.size, patch_size, stride)  # bad parameters fail before any work
    maps = [occlusion_scores(model, image, patch_size=patch_size, stride=stride,
                             baseline=baseline, score=score, batch_size=batch_size,
                             progress=progress).map(int(c))
            for image, c in zip(call.batch, call.classes)]
    return call.unwrap(np.stack(maps).astype(np.float32))


def rise(model, images, class_index=None, *, num_masks: int | None = None, grid_size: int = 7,
         keep_probability: float = 0.5, baseline="grey", seed: int | None = 0,
         score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
         progress: bool = True) -> np.ndarray:
    """RISE saliency (Petsiuk, Das & Saenko 2018, *RISE: Randomized Input Sampling for
    Explanation of Black-box Models*).

    ``S_c(u) = sum_i s_c(x_i) M_i(u) / sum_i M_i(u)``, the expected class
    score given that pixel u is visible, normalised by the coverage the
    masks actually gave (the paper divides by its expectation N p, which is
    much noisier; see the module docstring). Masks are ``grid_size`` grids
    of cells kept with probability p, upsampled bilinearly and shifted by a
    random fraction of a cell. ``num_masks``: default 2000 (300 in fast mode;
    the paper uses 4000-8000). Returns float32 (H, W) or (N, H, W).
    """
    return _random_maps("rise", model, images, class_index, num_masks, grid_size,
                        keep_probability, baseline, seed, score, batch_size, progress)


def random_mask_map(model, images, class_index=None, *, num_masks: int | None = None,
                    grid_size: int = 7, keep_probability: float = 0.5, baseline="grey",
                    seed: int | None = 0, score: str = "probability",
                    batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> np.ndarray:
    """Random binary-mask occlusion map: the mean score with pixel u shown minus hidden.

        map(u) = sum_i s_i M_i(u) / sum_i M_i(u)
                 - sum_i s_i (1 - M_i(u)) / sum_i (1 - M_i(u))

    with s_i = s_c(x_i) the score of masked copy i. For 0/1 masks this is the
    least-squares slope of the score on the pixel's visibility, and its
    expectation is E[s | u shown] - E[s | u hidden]. The plain vote
    ``1/N sum_i s_i (2 M_i(u) - 1)`` has the same expectation when exactly
    half the masks show u, but it also counts how far each pixel's coverage
    strayed from N/2, times the mean score: two seeds of 1000 masks on
    ``chelsea`` (tabby) agree 0.45 with it on probabilities and -0.26 on
    logits, and 0.88 with the difference of means on both. Pixels that every
    mask shows (or hides) have no estimate: 0 there.

    Each mask hides random cells of a ``grid_size`` grid (each kept with
    ``keep_probability``), upsampled with nearest neighbour. ``num_masks``:
    default 2000 (300 in fast mode). Returns float32 (H, W) or (N, H, W).
    """
    return _random_maps("binary", model, images, class_index, num_masks, grid_size,
                        keep_probability, baseline, seed, score, batch_size, progress)


# --------------------------------------------------------------------------
# One image, every class: the scores object
# --------------------------------------------------------------------------

def occlusion_scores(model, image, *, patch_size: int = 32, stride: int = 8, baseline="grey",
                     score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
                     progress: bool = True) -> "OcclusionScores":
    """Slide a patch over one image and keep every class's score (Zeiler & Fergus 2014).

    One forward pass per patch position (27 x 27 = 729 for 224 px, patch 32,
    stride 8; see :func:`helpers.patch_starts`), streamed ``batch_size`` at a
    time. The result gives the map of any class: ``.map("tabby")``.
    """
    check_choice(score, "score", SCORES)
    image = _one_image(model, image)
    masks = PatchMasks(image.shape[0], image.shape[1], patch_size, stride)
    clean, logits = perturbation_scores(model, image, masks, baseline=baseline, score="logit",
                                        batch_size=batch_size, progress=progress,
                                        description="occlusion")
    return OcclusionScores(masks, clean, logits, baseline, score,
                           to_probabilities=model_spec(model).probabilities)


def incremental_occlusion_scores(model, image, *, patch_size: int = 32, stride: int = 8,
                                 baseline="grey", score: str = "probability",
                                 batch_size: int = DEFAULT_BATCH_SIZE,
                                 progress: bool = True) -> OcclusionScores:
    """Sliding-patch occlusion of one image by incremental inference (Nakandala et al. 2019).

    The same scores as :func:`helpers.occlusion_scores` (Zeiler & Fergus
    2014: every class's score with the patch at every position, drop map
    ``.map(class)``), computed with fewer multiply-adds: each early layer is
    recomputed only inside the window the patch changed (see the module
    docstring and :func:`incremental_bound`). ``batch_size`` positions are
    scored at a time by one compiled function.
    """
    _check_knobs(score, batch_size)
    image = _one_image(model, image)
    masks = PatchMasks(image.shape[0], image.shape[1], patch_size, stride)
    clean, logits = incremental.incremental_patch_scores(
        model, image, masks, baseline=baseline, score="logit", batch_size=batch_size,
        progress=progress)
    return OcclusionScores(masks, clean_logits=clean, logits=logits, baseline=baseline,
                           score=score, to_probabilities=model_spec(model).probabilities)


def occlusion_passes(model, image, *, patch_size: int = 32, stride: int = 8, baseline="grey",
                     score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
                     progress: bool = False, engine: str = "auto"):
    """Sliding-patch occlusion coarse to fine: yields an :class:`OcclusionScores` per pass.

    The first pass scores every k-th position of the ``stride`` grid in each
    direction, with k the largest power of two for which the patches still
    tile the image (k * stride <= patch_size), plus the last row and column;
    each later pass halves k and scores only the positions not scored yet. A
    map from a partial result averages the drops of the positions scored so
    far; the last pass gives exactly :func:`occlusion_scores`, with the same
    number of forward passes in all (none repeated). Patch 32, stride 8:
    64, then 196, then all 729 positions (64 + 132 + 533 passes), so a first
    map is ready after a ninth of the work, which keeps a slider responsive.

    ``engine`` chooses how the positions are scored: ``"full"`` runs the
    whole model on every occluded copy (:func:`perturbation_scores`, the
    reference), ``"incremental"`` recomputes only the windows each patch
    changes (:func:`helpers.incremental.incremental_patch_scores`, Nakandala
    et al. 2019: the same scores to float round-off, about twice as fast on
    EfficientNet-Lite at patch 32), and ``"auto"`` takes the incremental
    engine when the model's early layers allow it and the full one otherwise.
    """
    _check_knobs(score, batch_size)
    check_choice(engine, "engine", OCCLUSION_ENGINES)
    image = _one_image(model, image)
    masks = PatchMasks(image.shape[0], image.shape[1], patch_size, stride)
    score_positions = _position_scorer(model, image, masks, baseline, batch_size, progress,
                                       engine)
    rows, cols = masks.grid_shape
    step = 2 ** (occlusion_pass_count(patch_size, stride) - 1)
    computed = np.zeros(masks.count, dtype=bool)
    clean, scores = None, None
    while step >= 1:
        grid = np.zeros((rows, cols), dtype=bool)
        grid[np.ix_(_every(rows, step), _every(cols, step))] = True
        new = np.flatnonzero(grid.ravel() & ~computed)
        pass_clean, pass_scores = score_positions(new, f"occlusion, stride {step * stride}")
        if scores is None:
            clean = pass_clean
            scores = np.zeros((masks.count, pass_scores.shape[1]), dtype=np.float32)
        scores[new] = pass_scores
        computed[new] = True
        yield OcclusionScores(masks, clean, scores.copy(), baseline, score,
                              computed=None if computed.all() else computed.copy(),
                              to_probabilities=model_spec(model).probabilities)
        step //= 2


def occlusion_pass_count(patch_size: int, stride: int) -> int:
    """How many passes :func:`occlusion_passes` makes: 1 + log2 of its first grid step.

    The first pass scores every k-th position with k the largest power of two
    for which ``k * stride <= patch_size``; each pass halves k down to 1.
    Patch 32, stride 8: k = 4, so 3 passes; patch 64, stride 8: 4 passes.
    """
    patch_size, stride = check_patch_and_stride(patch_size, stride)
    return (patch_size // stride).bit_length()


OCCLUSION_ENGINES = ("auto", "full", "incremental")


def _position_scorer(model, image, masks, baseline, batch_size, progress, engine):
    """``(positions, description) -> (clean, logits)`` with the engine ``engine`` names."""
    if engine != "full":
        try:
            incremental.check_incremental(model, masks)
        except ValueError:
            if engine == "incremental":
                raise
        else:
            return lambda positions, description: incremental.incremental_patch_scores(
                model, image, masks, positions, baseline=baseline, score="logit",
                batch_size=batch_size, progress=progress, description=description)
    return lambda positions, description: perturbation_scores(
        model, image, _Positions(masks, positions), baseline=baseline, score="logit",
        batch_size=batch_size, progress=progress, description=description)


def _every(length, step):
    """Every ``step``-th index of ``range(length)``, and the last one."""
    return np.union1d(np.arange(0, length, step), [length - 1])


class _Positions:
    """Some positions of a :class:`PatchMasks`, as a mask family for the engine."""

    def __init__(self, masks, index):
        self.masks, self.index, self.count = masks, np.asarray(index), len(index)

    def chunk(self, start, stop):
        return self.masks.masks_at(self.index[start:stop])


def random_mask_scores(model, image, *, method: str = "rise", num_masks: int | None = None,
                       grid_size: int = 7, keep_probability: float = 0.5, baseline="grey",
                       seed: int | None = 0, score: str = "probability",
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       progress: bool = True) -> "RandomMaskScores":
    """Score one image under ``num_masks`` random masks and keep every class's score.

    ``method``: "rise" (smooth shifted masks, Petsiuk et al. 2018) or
    "binary" (nearest-neighbour grids: mean score shown minus mean score hidden).
    ``num_masks``: default 2000 (300 in fast mode). ``seed`` makes the masks
    repeatable. The result gives the map of any class: ``.map("hotdog")``.
    """
    image = _one_image(model, image)
    count = choose(2000, 300) if num_masks is None else num_masks
    check_choice(score, "score", SCORES)
    masks = RandomMasks(image.shape[0], image.shape[1], count, grid_size, keep_probability,
                        method, seed)
    clean, logits = perturbation_scores(model, image, masks, baseline=baseline, score="logit",
                                        batch_size=batch_size, progress=progress,
                                        description=method)
    return RandomMaskScores(masks, clean, logits, baseline, score,
                            to_probabilities=model_spec(model).probabilities)


# --------------------------------------------------------------------------
# The method as a plain loop (what the lesson shows, what the tests compare with)
# --------------------------------------------------------------------------

def occlusion_reference(model, image, class_index, *, patch_size: int = 32, stride: int = 8,
                        baseline="grey", score: str = "probability") -> np.ndarray:
    """Sliding-patch occlusion written as the formula reads: one patch, one image, one call.

    Slow (one forward pass per position, unbatched), but every line is the
    method; :func:`occlusion_map` computes the same map in batches.
    """
    call = explanation_call(model, image, class_index, contrasts=True)
    x, c = call.batch[0], int(call.classes[0])
    hidden = baseline_image(x, baseline)
    score_of = _score_function(call.spec, score)
    height, width = x.shape[:2]
    masks = PatchMasks(height, width, patch_size, stride)
    drops, covered = np.zeros((height, width)), np.zeros((height, width))
    clean = score_of(x)[c]
    for top in masks.row_starts:
        for left in masks.col_starts:
            rows = slice(max(top, 0), top + patch_size)
            cols = slice(max(left, 0), left + patch_size)
            occluded = x.copy()
            occluded[rows, cols] = hidden[rows, cols]
            drops[rows, cols] += clean - score_of(occluded)[c]
            covered[rows, cols] += 1
    return (drops / covered).astype(np.float32)


def _score_function(spec, score):
    check_choice(score, "score", SCORES)

    def score_of(image):
        logits = np.asarray(spec.logits(image[None], training=False), dtype=np.float64)[0]
        if score == "logit":
            return logits
        if spec.probability == "sigmoid" or spec.contrasts:
            return spec.probabilities(logits).astype(np.float64)
        exp = np.exp(logits - logits.max())
        return exp / exp.sum()
    return score_of


# --------------------------------------------------------------------------
# Results: all classes' scores, maps for any class on demand
# --------------------------------------------------------------------------

class _StoredScores:
    """The logits of the unmasked image and of every masked copy, read as either score.

    The engine always keeps the logits: the probabilities are their softmax,
    computed here once when first asked for, so one pass gives the maps of
    both scores (``.map(c, score="logit")`` costs no forward pass).
    """

    @property
    def clean(self) -> np.ndarray:
        """(C,) scores of the unmasked image, in this result's ``score``."""
        return self._read(self.score)[0]

    @property
    def scores(self) -> np.ndarray:
        """(masks, C) scores of the masked copies, in this result's ``score``."""
        return self._read(self.score)[1]

    def _read(self, score):
        check_choice(score, "score", SCORES)
        if score == "logit":
            return self.clean_logits, self.logits
        if getattr(self, "_probabilities", None) is None:
            convert = self.to_probabilities or probabilities
            self._probabilities = (convert(self.clean_logits), convert(self.logits))
        return self._probabilities


def _class_indices(class_index, clean: np.ndarray) -> tuple[np.ndarray, bool]:
    """Class indices for one image and whether a single class was asked for."""
    if class_index is None:
        return np.array([int(np.argmax(clean))]), True
    single = not isinstance(class_index, (list, tuple, np.ndarray))
    items = [class_index] if single else list(class_index)
    if not items:
        raise ValueError("class_index is an empty list; give at least one class")
    return resolve_classes(items, len(items), num_classes=len(clean)), single


@dataclass
class OcclusionScores(_StoredScores):
    """Sliding-patch occlusion of one image: the scores of all classes at every position.

    ``map(class_index)`` turns them into the drop map of any class (or of
    several, given a list) without running the model again; ``score=`` reads
    the probabilities or the logits from the same passes.
    """

    masks: PatchMasks
    clean_logits: np.ndarray  # (C,) logits of the unmasked image
    logits: np.ndarray        # (positions, C) logits with the patch at each position
    baseline: object = "grey"
    score: str = "probability"  # what .clean, .scores and .map read by default
    computed: np.ndarray | None = None  # (positions,) which were scored; None: all
    to_probabilities: object = None  # the model's softmax or sigmoid (None: softmax)

    def drop_grid(self, class_index=None, *, score: str | None = None) -> np.ndarray:
        """Score drop with the patch at each grid position: (rows, cols), or (K, rows, cols)."""
        clean, scores = self._read(self.score if score is None else score)
        classes, single = _class_indices(class_index, clean)
        drops = clean[classes][:, None] - scores[:, classes].T
        grids = drops.reshape(len(classes), *self.masks.grid_shape)
        return grids[0] if single else grids

    def map(self, class_index=None, *, score: str | None = None) -> np.ndarray:
        """Per-pixel mean score drop over the patches that hid the pixel: (H, W) or (K, H, W).

        ``class_index``: an index or name, a list of them, or None for the
        top-1 class of the unmasked image. ``score``: "probability" or
        "logit" (default: the result's own ``score``).
        """
        grids = self.drop_grid(class_index, score=score)
        single = grids.ndim == 2
        rows, cols = self.masks.hidden_rows(), self.masks.hidden_cols()
        stacked = grids[None] if single else grids
        if self.computed is None:
            total = np.einsum("yh,kyx,xw->khw", rows, stacked, cols, optimize=True)
            coverage = np.outer(rows.sum(axis=0), cols.sum(axis=0))
        else:  # a coarse pass: only the positions scored so far count
            scored = self.computed.reshape(self.masks.grid_shape).astype(np.float64)
            stacked = np.where(scored > 0, stacked, 0.0)
            total = np.einsum("yh,kyx,xw->khw", rows, stacked, cols, optimize=True)
            coverage = np.einsum("yh,yx,xw->hw", rows, scored, cols, optimize=True)
        maps = (total / coverage).astype(np.float32)
        return maps[0] if single else maps


@dataclass
class RandomMaskScores(_StoredScores):
    """Random-mask occlusion of one image: the scores of all classes for every mask.

    ``map(class_index)`` contracts the stored scores with the masks for any
    class (rebuilding masks from their small grids, chunk by chunk);
    ``maps_at(class_index, counts)`` shows the map as masks accumulate;
    ``score=`` reads the probabilities or the logits from the same passes.
    """

    masks: RandomMasks
    clean_logits: np.ndarray
    logits: np.ndarray
    baseline: object = "grey"
    score: str = "probability"
    to_probabilities: object = None  # the model's softmax or sigmoid (None: softmax)

    def map(self, class_index=None, *, num_masks: int | None = None,
            score: str | None = None) -> np.ndarray:
        """The map of a class (or a list of classes) from the first ``num_masks`` masks (all by default).

        RISE: ``sum_i s_i M_i / sum_i M_i``; binary: that minus
        ``sum_i s_i (1 - M_i) / sum_i (1 - M_i)`` (see :func:`random_mask_map`).
        """
        classes, single = _class_indices(class_index, self.clean)
        count = self.masks.count if num_masks is None else positive_int(num_masks, "num_masks")
        maps = self._partial_sums(classes, [count], score)[0]
        return maps[0] if single else maps

    def maps_at(self, class_index, counts, *, score: str | None = None) -> np.ndarray:
        """Maps of one class from the first n masks, for each n in ``counts``: (len, H, W)."""
        classes, single = _class_indices(class_index, self.clean)
        if not single:
            raise ValueError("class_index: maps_at takes one class; call it once per class")
        counts = [positive_int(n, "a mask count") for n in counts]
        return self._partial_sums(classes, counts, score)[:, 0]

    def _partial_sums(self, classes: np.ndarray, counts: list[int], score=None) -> np.ndarray:
        """Maps of ``classes`` from the first n masks, n in ``counts``: (len(counts), K, H, W)."""
        if not counts or min(counts) < 1 or max(counts) > self.masks.count:
            raise ValueError(f"mask counts must lie in 1..{self.masks.count} (the masks scored)")
        scores = self._read(self.score if score is None else score)[1]
        weights = scores[:, classes].astype(np.float64)  # (N, K)
        running = np.zeros((len(classes), self.masks.height, self.masks.width))
        coverage = np.zeros((self.masks.height, self.masks.width))
        totals = np.cumsum(weights, axis=0)  # (N, K): every mask's score, shown or not
        snapshots, done = {}, 0
        for boundary in sorted(set(counts)):
            while done < boundary:
                stop = min(done + CONTRACTION_CHUNK, boundary)
                chunk = self.masks.chunk(done, stop).astype(np.float64)
                coverage += chunk.sum(axis=0)
                running += np.tensordot(weights[done:stop].T, chunk, axes=1)
                done = stop
            # A pixel no mask showed (or, for binary masks, hid) has no estimate: 0 there.
            maps = np.divide(running, coverage, out=np.zeros_like(running),
                             where=coverage > 0)
            if self.masks.method == "binary":
                hidden = boundary - coverage
                hidden_sums = totals[boundary - 1][:, None, None] - running
                maps = np.where((coverage > 0) & (hidden > 0),
                                maps - np.divide(hidden_sums, hidden,
                                                 out=np.zeros_like(running), where=hidden > 0),
                                0.0)
            snapshots[boundary] = maps.astype(np.float32)
        return np.stack([snapshots[n] for n in counts])


# --------------------------------------------------------------------------
# The streaming engine every method here shares
# --------------------------------------------------------------------------

def perturbation_scores(model, image, masks, *, baseline="grey", score: str = "probability",
                        batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True,
                        description: str = "masked images"):
    """Scores of every class for the unmasked image and for each masked copy.

    ``image``: float32 (H, W, C) pixels of the model's size. ``masks``: an
    object with ``count`` and ``chunk(start, stop) -> (n, H, W)`` visible-masks
    (:class:`helpers.PatchMasks`, :class:`helpers.RandomMasks`). Images are
    built and scored ``batch_size`` at a time by one compiled function (the
    last batch is padded), so the images in flight are bounded by the batch
    size, not the mask count.

    Returns ``(clean, scores)``: float32 (C,) for the unmasked image and
    (masks.count, C) for the masked ones (softmax probabilities of the
    logits, or the logits with ``score="logit"``).
    """
    _check_knobs(score, batch_size)
    spec = model_spec(model)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != spec.input_shape:
        raise ValueError(f"image: perturbation_scores needs one prepared image of shape "
                         f"{spec.input_shape} for this model; got {image.shape} "
                         "(h.prepare(photo, model)[0] makes one)")
    hidden = baseline_image(image, baseline)
    forward = _compiled_forward(model, batch_size, score)
    image_tensor, hidden_tensor = tf.constant(image), tf.constant(hidden)
    height, width = spec.size

    total = masks.count + 1  # item 0 is the unmasked image
    outputs = None
    for start, stop in batches(total, batch_size, progress=progress, description=description,
                               unit="img", minimum=0):
        visible = np.ones((batch_size, height, width), dtype=np.float32)
        first = max(start, 1)
        if stop > first:
            visible[first - start:stop - start] = masks.chunk(first - 1, stop - 1)
        result = forward(image_tensor, hidden_tensor, tf.constant(visible)).numpy()
        if outputs is None:
            outputs = np.empty((total, result.shape[-1]), dtype=np.float32)
        outputs[start:stop] = result[:stop - start]
    return outputs[0], outputs[1:]


def _compiled_forward(model, batch_size: int, score: str):
    """One traced function per (model, batch size, score): masks in, scores out.

    A fixed input shape means TensorFlow traces the model once; blending the
    masked images inside the function avoids building them in numpy.
    """
    spec = model_spec(model)

    def build():
        logits_ref = holder(spec.logits, model)
        shape = spec.input_shape

        @tf.function(input_signature=[
            tf.TensorSpec(shape, tf.float32),
            tf.TensorSpec(shape, tf.float32),
            tf.TensorSpec((batch_size,) + shape[:2], tf.float32),
        ])
        def forward(image, hidden, visible):
            masked = hidden + visible[..., None] * (image - hidden)
            logits = logits_ref()(masked, training=False)
            return spec.probabilities_tf(logits) if score == "probability" else logits
        return forward
    return cached(model, ("perturbation", batch_size, score), build)


def _check_knobs(score, batch_size):
    check_choice(score, "score", SCORES)
    positive_int(batch_size, "batch_size")


def _one_image(model, image):
    batch, single = model_batch(model, image, name="image")
    if not single and len(batch) != 1:
        raise ValueError(
            f"image: this function scores one image; got a batch of {len(batch)} (loop over "
            "them, or use occlusion_map / random_mask_map / rise, which take batches)")
    return batch[0]


def _random_maps(method, model, images, class_index, num_masks, grid_size, keep_probability,
                 baseline, seed, score, batch_size, progress):
    _check_knobs(score, batch_size)
    call = explanation_call(model, images, class_index, contrasts=True)
    model = call.model
    count = choose(2000, 300) if num_masks is None else num_masks
    RandomMasks(*call.spec.size, count, grid_size, keep_probability, method, seed)  # early checks
    maps = [random_mask_scores(model, image, method=method, num_masks=count, grid_size=grid_size,
                               keep_probability=keep_probability, baseline=baseline, seed=seed,
                               score=score, batch_size=batch_size, progress=progress).map(int(c))
            for image, c in zip(call.batch, call.classes)]
    return call.unwrap(np.stack(maps).astype(np.float32))
