"""Occlusion: hide part of the photo, watch the class score drop.

Three perturbation methods, written by hand because they are what lesson 03
is about, share one streaming engine (:func:`perturbation_scores`):

* **Sliding-patch occlusion** (Zeiler & Fergus 2014, *Visualizing and
  Understanding Convolutional Networks*). A square patch filled with
  ``fill`` slides over the image; for every position k the drop of the
  class score, ``drop_k = s_c(x) - s_c(x_k)``, is credited to the pixels the
  patch hid:  ``map(u) = sum_k drop_k [u in patch_k] / sum_k [u in patch_k]``.
* **Random binary masks**: a coarse random grid of visible/hidden cells
  (each visible with probability p = 0.5), upsampled with nearest
  neighbour; the score of each masked image is added where the mask was
  visible and subtracted where it was hidden:
  ``map(u) = 1/N sum_i s_c(x_i) (2 M_i(u) - 1)``.
* **RISE** (Petsiuk, Das & Saenko 2018, *RISE: Randomized Input Sampling
  for Explanation of Black-box Models*): the same grids upsampled bilinearly
  with a random sub-cell shift, so masks are smooth;
  ``S_c(u) = 1/(N p) sum_i s_c(x_i) M_i(u)`` estimates ``E[s_c | u visible]``.

A masked image is ``x_i = M_i * x + (1 - M_i) * fill`` (M = 1 where visible).

Why it is fast: every masked copy goes through the network in fixed-size
batches by one compiled forward function, so TensorFlow traces the model
once and only ``batch_size`` masked images exist at a time, whatever the
mask count. The scores of **all** classes are kept (4 kB per mask; a mask
itself is stored as its small grid), so a map for any class - the true
one, "hotdog", "ice cream" - is a cheap contraction of the stored scores
with the masks, with no new pass::

    scores = h.random_mask_scores(model, "cat_and_coffee", method="rise")
    cat, cup = scores.map("tabby"), scores.map("espresso")
"""

from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import dataclass, field

import numpy as np

from .environment import choose, tf  # noqa: F401  (quiet TF import first)
from ._checks import positive_int
from .images import as_batch
from .labels import resolve_classes
from .models import input_size

__all__ = [
    "FILLS",
    "SCORES",
    "MASK_METHODS",
    "fill_image",
    "patch_starts",
    "PatchMasks",
    "RandomMasks",
    "perturbation_scores",
    "OcclusionScores",
    "RandomMaskScores",
    "occlusion_scores",
    "occlusion_map",
    "random_mask_scores",
    "random_mask_map",
    "rise",
]

FILLS = ("grey", "black", "mean", "blur")
SCORES = ("probability", "logit")
MASK_METHODS = ("rise", "binary")
GREY_LEVEL = 127.5
BLUR_SIGMA_FRACTION = 0.05  # Gaussian sigma of the "blur" fill, as a fraction of the image side
DEFAULT_BATCH_SIZE = 32
CONTRACTION_CHUNK = 128  # masks regenerated at a time when maps are contracted


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

def _check_score(score: str) -> str:
    if score not in SCORES:
        raise ValueError(f"score must be one of {', '.join(SCORES)}, not {score!r}")
    return score


def fill_image(image, fill="grey") -> np.ndarray:
    """What hidden pixels are replaced with, as a float32 (H, W, 3) image.

    ``fill``: "grey" (127.5), "black" (0), "mean" (the image's mean colour),
    "blur" (the image under a Gaussian blur of sigma = 5% of its side), a
    number (a grey level), an RGB triple, or an (H, W, 3) array; values in
    0..255. ``image``: float (H, W, 3) pixels in 0..255.
    """
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    if isinstance(fill, str):
        if fill == "grey":
            return np.full_like(image, GREY_LEVEL)
        if fill == "black":
            return np.zeros_like(image)
        if fill == "mean":
            return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
        if fill == "blur":
            from scipy.ndimage import gaussian_filter

            sigma = BLUR_SIGMA_FRACTION * max(height, width)
            return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")
        raise ValueError(
            f"unknown fill {fill!r}; use one of {', '.join(FILLS)}, a grey level, an RGB "
            "triple or an (H, W, 3) image")
    values = np.asarray(fill, dtype=np.float32)
    if values.ndim == 0 or values.shape == (3,):
        values = np.broadcast_to(values, image.shape)
    if values.shape != image.shape:
        raise ValueError(
            f"a fill array must be a grey level, an RGB triple or an image of shape "
            f"{image.shape}; got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255:
        raise ValueError("fill values must be finite pixel values in 0..255")
    return np.ascontiguousarray(values, dtype=np.float32)


# --------------------------------------------------------------------------
# Mask families: each yields visible-masks (1 = visible) in chunks
# --------------------------------------------------------------------------

def patch_starts(length: int, patch_size: int, stride: int) -> np.ndarray:
    """First pixel of every patch position along one axis (may be negative).

    The grid of positions, spaced by ``stride``, is centred on the image and
    hangs over each edge by up to ``patch_size // 2 - stride`` pixels, so an
    edge pixel is hidden by about half as many patches as an interior one
    (without the overhang a corner pixel would be hidden by a single patch).
    Patches are cut at the image edge. 224 px, patch 32, stride 8: 27
    positions (-8, 0, ..., 200).
    """
    length = positive_int(length, "the image size")
    patch_size = positive_int(patch_size, "patch_size")
    stride = positive_int(stride, "stride")
    if patch_size > length:
        raise ValueError(
            f"patch_size {patch_size} is larger than the image ({length} pixels); use "
            f"1..{length}")
    if stride > patch_size:
        raise ValueError(
            f"stride {stride} is larger than patch_size {patch_size}: pixels between patches "
            "would never be hidden; use a stride of 1..patch_size")
    overhang = max(0, patch_size // 2 - stride)
    positions = math.ceil((length + 2 * overhang - patch_size) / stride) + 1
    covered = (positions - 1) * stride + patch_size
    first = -((covered - length) // 2)
    return first + stride * np.arange(positions)


@dataclass
class PatchMasks:
    """Every position of a ``patch_size`` square slid by ``stride`` over an image."""

    height: int
    width: int
    patch_size: int
    stride: int
    row_starts: np.ndarray = field(init=False, repr=False)
    col_starts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.row_starts = patch_starts(self.height, self.patch_size, self.stride)
        self.col_starts = patch_starts(self.width, self.patch_size, self.stride)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return len(self.row_starts), len(self.col_starts)

    @property
    def count(self) -> int:
        return len(self.row_starts) * len(self.col_starts)

    def _indicators(self, starts, length):
        """(positions, length) 0/1: which pixels of the axis each patch covers."""
        pixels = np.arange(length)
        return ((pixels >= starts[:, None]) & (pixels < starts[:, None] + self.patch_size)
                ).astype(np.float32)

    def hidden_rows(self) -> np.ndarray:
        return self._indicators(self.row_starts, self.height)

    def hidden_cols(self) -> np.ndarray:
        return self._indicators(self.col_starts, self.width)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Visible-masks (stop - start, H, W) of positions start..stop-1 (row-major)."""
        index = np.arange(start, stop)
        rows = self.hidden_rows()[index // len(self.col_starts)]
        cols = self.hidden_cols()[index % len(self.col_starts)]
        return 1.0 - rows[:, :, None] * cols[:, None, :]


def _bilinear_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) weights of a half-pixel bilinear resize, edges clamped."""
    centres = (np.arange(size_out) + 0.5) * size_in / size_out - 0.5
    centres = np.clip(centres, 0, size_in - 1)
    low = np.floor(centres).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    weight = (centres - low).astype(np.float32)
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    np.add.at(matrix, (np.arange(size_out), low), 1 - weight)
    np.add.at(matrix, (np.arange(size_out), high), weight)
    return matrix


def _nearest_matrix(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) 0/1 weights of a nearest-neighbour resize."""
    cells = np.arange(size_out) * size_in // size_out
    matrix = np.zeros((size_out, size_in), dtype=np.float32)
    matrix[np.arange(size_out), cells] = 1.0
    return matrix


@dataclass
class RandomMasks:
    """N random masks from coarse ``grid_size`` x ``grid_size`` grids of visible cells.

    Only the small grids (and, for RISE, the shifts) are stored; a mask is
    rebuilt on demand as ``A_rows[shift] @ grid @ A_cols[shift].T`` with a
    fixed resize matrix A, so N masks cost N * grid_size**2 bytes, not N
    images. ``method``: "rise" (bilinear, randomly shifted by up to one
    cell, Petsiuk et al. 2018) or "binary" (nearest neighbour, no shift).
    """

    height: int
    width: int
    count: int
    grid_size: int = 7
    keep_probability: float = 0.5
    method: str = "rise"
    seed: int | None = 0
    grids: np.ndarray = field(init=False, repr=False)
    shifts: np.ndarray = field(init=False, repr=False)

    def __post_init__(self):
        self.count = positive_int(self.count, "num_masks")
        self.grid_size = positive_int(self.grid_size, "grid_size")
        if self.method not in MASK_METHODS:
            raise ValueError(f"method must be one of {', '.join(MASK_METHODS)}, not {self.method!r}")
        if self.grid_size > min(self.height, self.width):
            raise ValueError(
                f"grid_size {self.grid_size} has more cells than the image has pixels "
                f"({self.height}x{self.width}); use 1..{min(self.height, self.width)}")
        probability = self.keep_probability
        if not isinstance(probability, numbers.Real) or not 0 < probability < 1:
            raise ValueError(
                f"keep_probability must be a number strictly between 0 and 1, not {probability!r}")
        rng = np.random.default_rng(self.seed)
        self.grids = rng.random((self.count, self.grid_size, self.grid_size)) < probability
        if self.method == "rise":
            cell_h = math.ceil(self.height / self.grid_size)
            cell_w = math.ceil(self.width / self.grid_size)
            self.shifts = np.stack([rng.integers(0, cell_h, self.count),
                                    rng.integers(0, cell_w, self.count)], axis=1)
            # Upsample to one cell more than the image, then crop at the shift.
            self._rows = _bilinear_matrix(self.grid_size, (self.grid_size + 1) * cell_h)
            self._cols = _bilinear_matrix(self.grid_size, (self.grid_size + 1) * cell_w)
        else:
            self.shifts = np.zeros((self.count, 2), dtype=np.int64)
            self._rows = _nearest_matrix(self.grid_size, self.height)
            self._cols = _nearest_matrix(self.grid_size, self.width)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Visible-masks (stop - start, H, W), float32 in 0..1."""
        shifts = self.shifts[start:stop]
        rows = self._rows[shifts[:, 0:1] + np.arange(self.height)]  # (n, H, grid)
        cols = self._cols[shifts[:, 1:2] + np.arange(self.width)]   # (n, W, grid)
        grids = self.grids[start:stop].astype(np.float32)
        return np.einsum("nhg,ngk,nwk->nhw", rows, grids, cols, optimize=True)


# --------------------------------------------------------------------------
# The streaming engine
# --------------------------------------------------------------------------

_FORWARD_CACHE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _compiled_forward(model, batch_size: int, score: str):
    """One traced function per (model, batch size, score): masks in, scores out.

    A fixed input shape means TensorFlow traces the model once; blending the
    masked images inside the function avoids building them in numpy.
    """
    per_model = _FORWARD_CACHE.setdefault(model, {})
    key = (batch_size, score)
    if key in per_model:
        return per_model[key]
    height, width = input_size(model)
    model_ref = weakref.ref(model)  # the cache must not keep the model alive

    @tf.function(input_signature=[
        tf.TensorSpec((height, width, 3), tf.float32),
        tf.TensorSpec((height, width, 3), tf.float32),
        tf.TensorSpec((batch_size, height, width), tf.float32),
    ])
    def forward(image, fill, visible):
        masked = fill + visible[..., None] * (image - fill)
        logits = model_ref()(masked, training=False)
        return tf.nn.softmax(logits) if score == "probability" else logits

    per_model[key] = forward
    return forward


def perturbation_scores(model, image, masks, *, fill="grey", score: str = "probability",
                        batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True,
                        description: str = "masked images"):
    """Scores of every class for the unmasked image and for each masked copy.

    The engine every method here shares. ``image``: float32 (H, W, 3) pixels
    of the model's size. ``masks``: an object with ``count`` and
    ``chunk(start, stop) -> (n, H, W)`` visible-masks (:class:`PatchMasks`,
    :class:`RandomMasks`). Images are built and scored ``batch_size`` at a
    time by one compiled function (the last batch is padded), so the images
    in flight are bounded by the batch size, not the mask count (the
    returned scores take 4 kB per mask for 1000 classes).

    Returns ``(baseline, scores)``: float32 (C,) for the unmasked image and
    (masks.count, C) for the masked ones (softmax probabilities, or logits
    with ``score="logit"``).
    """
    from tqdm.auto import tqdm

    score = _check_score(score)
    batch_size = positive_int(batch_size, "batch_size")
    image = np.asarray(image, dtype=np.float32)
    height, width = input_size(model)
    if image.shape != (height, width, 3):
        raise ValueError(f"perturbation_scores needs one prepared image of shape "
                         f"({height}, {width}, 3) for this model; got {image.shape} "
                         "(h.prepare(photo, model)[0] makes one)")
    fill = fill_image(image, fill)
    forward = _compiled_forward(model, batch_size, score)
    image_tensor, fill_tensor = tf.constant(image), tf.constant(fill)

    total = masks.count + 1  # item 0 is the unmasked image
    outputs = None
    with tqdm(total=total, desc=description, unit="img", disable=not progress,
              leave=False) as bar:
        for start in range(0, total, batch_size):
            stop = min(start + batch_size, total)
            visible = np.ones((batch_size, height, width), dtype=np.float32)
            first = max(start, 1)
            if stop > first:
                visible[first - start:stop - start] = masks.chunk(first - 1, stop - 1)
            result = forward(image_tensor, fill_tensor, tf.constant(visible)).numpy()
            if outputs is None:
                outputs = np.empty((total, result.shape[-1]), dtype=np.float32)
            outputs[start:stop] = result[:stop - start]
            bar.update(stop - start)
    return outputs[0], outputs[1:]


# --------------------------------------------------------------------------
# Results: all classes' scores, maps for any class on demand
# --------------------------------------------------------------------------

def _class_indices(class_index, baseline: np.ndarray) -> tuple[np.ndarray, bool]:
    """Class indices for one image and whether a single class was asked for."""
    if class_index is None:
        return np.array([int(np.argmax(baseline))]), True
    single = not isinstance(class_index, (list, tuple, np.ndarray))
    items = [class_index] if single else list(class_index)
    if not items:
        raise ValueError("class_index is an empty list; give at least one class")
    return resolve_classes(items, len(items), num_classes=len(baseline)), single


@dataclass
class OcclusionScores:
    """Sliding-patch occlusion of one image: the scores of all classes at every position.

    ``map(class_index)`` turns them into the drop map of any class (or of
    several, given a list) without running the model again.
    """

    masks: PatchMasks
    baseline: np.ndarray  # (C,) scores of the unmasked image
    scores: np.ndarray    # (positions, C) scores with the patch at each position
    fill: object = "grey"
    score: str = "probability"

    def drop_grid(self, class_index=None) -> np.ndarray:
        """Score drop with the patch at each grid position: (rows, cols), or (K, rows, cols)."""
        classes, single = _class_indices(class_index, self.baseline)
        drops = self.baseline[classes][:, None] - self.scores[:, classes].T
        grids = drops.reshape(len(classes), *self.masks.grid_shape)
        return grids[0] if single else grids

    def map(self, class_index=None) -> np.ndarray:
        """Per-pixel mean score drop over the patches that hid the pixel: (H, W) or (K, H, W).

        ``class_index``: an index or name, a list of them, or None for the
        top-1 class of the unmasked image.
        """
        grids = self.drop_grid(class_index)
        single = grids.ndim == 2
        rows, cols = self.masks.hidden_rows(), self.masks.hidden_cols()
        stacked = grids[None] if single else grids
        total = np.einsum("yh,kyx,xw->khw", rows, stacked, cols, optimize=True)
        coverage = np.outer(rows.sum(axis=0), cols.sum(axis=0))
        maps = (total / coverage).astype(np.float32)
        return maps[0] if single else maps


@dataclass
class RandomMaskScores:
    """Random-mask occlusion of one image: the scores of all classes for every mask.

    ``map(class_index)`` contracts the stored scores with the masks for any
    class (rebuilding masks from their small grids, chunk by chunk);
    ``maps_at(class_index, counts)`` shows the map as masks accumulate.
    """

    masks: RandomMasks
    baseline: np.ndarray
    scores: np.ndarray
    fill: object = "grey"
    score: str = "probability"

    def _partial_sums(self, classes: np.ndarray, counts: list[int]) -> np.ndarray:
        """Maps of ``classes`` from the first n masks, n in ``counts``: (len(counts), K, H, W)."""
        if not counts or min(counts) < 1 or max(counts) > self.masks.count:
            raise ValueError(f"mask counts must lie in 1..{self.masks.count} (the masks scored)")
        weights = self.scores[:, classes].astype(np.float64)  # (N, K)
        running = np.zeros((len(classes), self.masks.height, self.masks.width))
        snapshots, done = {}, 0
        for boundary in sorted(set(counts)):
            while done < boundary:
                stop = min(done + CONTRACTION_CHUNK, boundary)
                chunk = self.masks.chunk(done, stop)
                if self.masks.method == "binary":
                    chunk = 2.0 * chunk - 1.0  # +score where visible, -score where hidden
                running += np.tensordot(weights[done:stop].T, chunk, axes=1)
                done = stop
            scale = boundary * (self.masks.keep_probability if self.masks.method == "rise" else 1)
            snapshots[boundary] = (running / scale).astype(np.float32)
        return np.stack([snapshots[n] for n in counts])

    def maps_at(self, class_index, counts) -> np.ndarray:
        """Maps of one class from the first n masks, for each n in ``counts``: (len, H, W)."""
        classes, single = _class_indices(class_index, self.baseline)
        if not single:
            raise ValueError("maps_at takes one class; call it once per class")
        counts = [positive_int(n, "a mask count") for n in counts]
        return self._partial_sums(classes, counts)[:, 0]

    def map(self, class_index=None, *, num_masks: int | None = None) -> np.ndarray:
        """The map of a class (or a list of classes) from the first ``num_masks`` masks (all by default).

        RISE: ``1/(N p) sum_i s_i M_i``; binary: ``1/N sum_i s_i (2 M_i - 1)``.
        """
        classes, single = _class_indices(class_index, self.baseline)
        count = self.masks.count if num_masks is None else positive_int(num_masks, "num_masks")
        maps = self._partial_sums(classes, [count])[0]
        return maps[0] if single else maps


# --------------------------------------------------------------------------
# The lesson's calls
# --------------------------------------------------------------------------

def _one_image(model, image):
    batch, single = as_batch(image, model)
    if not single and len(batch) != 1:
        raise ValueError(
            f"this function scores one image; got a batch of {len(batch)} (loop over them, or "
            "use occlusion_map / random_mask_map / rise, which take batches)")
    return batch[0]


def occlusion_scores(model, image, *, patch_size: int = 32, stride: int = 8, fill="grey",
                     score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
                     progress: bool = True) -> OcclusionScores:
    """Slide a patch over one image and keep every class's score (Zeiler & Fergus 2014).

    One forward pass per patch position (27 x 27 = 729 for 224 px, patch 32,
    stride 8; see :func:`patch_starts`), streamed ``batch_size`` at a time.
    The result gives the map of any class: ``.map("tabby")``.
    """
    image = _one_image(model, image)
    masks = PatchMasks(image.shape[0], image.shape[1], patch_size, stride)
    baseline, scores = perturbation_scores(model, image, masks, fill=fill, score=score,
                                           batch_size=batch_size, progress=progress,
                                           description="occlusion")
    return OcclusionScores(masks, baseline, scores, fill, score)


def random_mask_scores(model, image, *, method: str = "rise", num_masks: int | None = None,
                       grid_size: int = 7, keep_probability: float = 0.5, fill="grey",
                       seed: int | None = 0, score: str = "probability",
                       batch_size: int = DEFAULT_BATCH_SIZE,
                       progress: bool = True) -> RandomMaskScores:
    """Score one image under ``num_masks`` random masks and keep every class's score.

    ``method``: "rise" (smooth shifted masks, Petsiuk et al. 2018) or
    "binary" (nearest-neighbour grids, +score visible / -score hidden).
    ``num_masks``: default 2000 (300 in fast mode). ``seed`` makes the
    masks repeatable. The result gives the map of any class: ``.map("hotdog")``.
    """
    image = _one_image(model, image)
    count = choose(2000, 300) if num_masks is None else num_masks
    masks = RandomMasks(image.shape[0], image.shape[1], count, grid_size, keep_probability,
                        method, seed)
    baseline, scores = perturbation_scores(model, image, masks, fill=fill, score=score,
                                           batch_size=batch_size, progress=progress,
                                           description=method)
    return RandomMaskScores(masks, baseline, scores, fill, score)


def _maps_per_image(model, images, class_index, compute):
    """Run ``compute(model, image) -> scores object`` per image; one class's map each."""
    batch, single = as_batch(images, model)
    if class_index is not None:
        classes = resolve_classes(class_index, len(batch),
                                  num_classes=int(model.outputs[0].shape[-1]))
    maps = []
    for i, image in enumerate(batch):
        result = compute(model, image[None])
        maps.append(result.map(None if class_index is None else int(classes[i])))
    maps = np.stack(maps).astype(np.float32)
    return maps[0] if single else maps


def occlusion_map(model, images, class_index=None, *, patch_size: int = 32, stride: int = 8,
                  fill="grey", score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
                  progress: bool = True) -> np.ndarray:
    """Sliding-patch occlusion map (Zeiler & Fergus 2014, *Visualizing and Understanding
    Convolutional Networks*).

    ``map(u) = sum_k [u in patch_k] (s_c(x) - s_c(x_k)) / sum_k [u in patch_k]``:
    the mean drop of the class score over the patch positions that hid
    pixel u; positive where hiding hurts the class. ``class_index``: index
    or name, one per image, or None (predicted class). ``fill``: one of
    :data:`FILLS` or a colour (see :func:`fill_image`). Returns float32
    (H, W), or (N, H, W) for several images.
    """
    _check_score(score)
    positive_int(batch_size, "batch_size")
    height, width = input_size(model)
    PatchMasks(height, width, patch_size, stride)  # bad parameters fail before any work
    return _maps_per_image(model, images, class_index, lambda m, image: occlusion_scores(
        m, image, patch_size=patch_size, stride=stride, fill=fill, score=score,
        batch_size=batch_size, progress=progress))


def _random_map(method, model, images, class_index, num_masks, grid_size, keep_probability,
                fill, seed, score, batch_size, progress):
    _check_score(score)
    positive_int(batch_size, "batch_size")
    height, width = input_size(model)
    count = choose(2000, 300) if num_masks is None else num_masks
    RandomMasks(height, width, 1, grid_size, keep_probability, method)  # early checks
    positive_int(count, "num_masks")
    return _maps_per_image(model, images, class_index, lambda m, image: random_mask_scores(
        m, image, method=method, num_masks=count, grid_size=grid_size,
        keep_probability=keep_probability, fill=fill, seed=seed, score=score,
        batch_size=batch_size, progress=progress))


def random_mask_map(model, images, class_index=None, *, num_masks: int | None = None,
                    grid_size: int = 7, keep_probability: float = 0.5, fill="grey",
                    seed: int | None = 0, score: str = "probability",
                    batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = True) -> np.ndarray:
    """Random binary-mask occlusion map: ``map(u) = 1/N sum_i s_c(x_i) (2 M_i(u) - 1)``.

    Each mask hides random cells of a ``grid_size`` grid (each kept with
    ``keep_probability``), upsampled with nearest neighbour; a masked
    image's score counts for the pixels it showed and against those it hid.
    ``num_masks``: default 2000 (300 in fast mode). Returns float32 (H, W)
    or (N, H, W).
    """
    return _random_map("binary", model, images, class_index, num_masks, grid_size,
                       keep_probability, fill, seed, score, batch_size, progress)


def rise(model, images, class_index=None, *, num_masks: int | None = None, grid_size: int = 7,
         keep_probability: float = 0.5, fill="grey", seed: int | None = 0,
         score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
         progress: bool = True) -> np.ndarray:
    """RISE saliency (Petsiuk, Das & Saenko 2018, *RISE: Randomized Input Sampling for
    Explanation of Black-box Models*).

    ``S_c(u) = 1/(N p) sum_i s_c(x_i) M_i(u)``, the expected class
    probability given that pixel u is visible; masks are ``grid_size`` grids
    of cells kept with probability p, upsampled bilinearly and shifted by a
    random fraction of a cell. ``num_masks``: default 2000 (300 in fast
    mode; the paper uses 4000-8000). Returns float32 (H, W) or (N, H, W).
    """
    return _random_map("rise", model, images, class_index, num_masks, grid_size,
                       keep_probability, fill, seed, score, batch_size, progress)
