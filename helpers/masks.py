"""Masks and baselines: what hides part of a photo, and what the hidden pixels become.

Every perturbation method of the course hides pixels and watches the score:
sliding patches and random masks (lesson 03), deletion and insertion curves
(lesson 09). They share this module, so a "blurred" photo or a "grey" patch
means the same thing everywhere.

* **The baseline** (:func:`baseline_image`) is what replaces hidden pixels:
  a masked image is ``x' = M * x + (1 - M) * b`` with M = 1 where visible.
  The one name, ``baseline``, is used by every method (as in Captum).
* **Patch masks** (:class:`PatchMasks`): a square slid over the image
  (Zeiler & Fergus 2014).
* **Random masks** (:class:`RandomMasks`): coarse random grids, upsampled
  with nearest neighbour (binary) or bilinearly with a random shift (RISE,
  Petsiuk et al. 2018).

A mask family is any object with ``count`` and ``chunk(start, stop)`` that
returns visible-masks (stop - start, H, W) in 0..1; only small grids are
stored, so memory does not grow with the mask count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .checks import check_choice, check_number, check_seed, positive_int

# What the occlusion engines score, and how many masked images they run at a time.
SCORES = ("probability", "logit")
DEFAULT_BATCH_SIZE = 32

__all__ = [
    "BASELINES",
    "baseline_image",
    "PatchMasks",
    "RandomMasks",
]

BASELINES = ("grey", "black", "mean", "blur", "noise")
_ALIASES = {"gray": "grey"}
MASK_METHODS = ("rise", "binary")
MAX_MASKS = 20_000  # random masks per image (every class's score is kept for each)
MAX_MASK_CELLS = 2 ** 25  # num_masks x grid_size^2: the random grids held in memory
GREY_LEVEL = 127.5
BLUR_SIGMA_FRACTION = 0.05  # default Gaussian sigma of "blur", as a fraction of the image side


def baseline_image(image, baseline="grey", *, blur_sigma: float | None = None,
                   seed: int = 0, name: str = "baseline") -> np.ndarray:
    """What hidden pixels are replaced with, as a float32 image of ``image``'s shape.

    ``baseline``: "grey" (127.5; "gray" works too), "black" (0), "mean" (the
    image's mean colour), "blur" (the image under a Gaussian blur of
    ``blur_sigma`` pixels, default 5% of its longer side), "noise" (uniform
    noise in 0..255, each pixel and channel drawn independently from
    ``np.random.default_rng(seed)``), a number (a grey level), an RGB triple,
    or an image of the same shape; values in 0..255.
    ``image``: float (H, W, C) pixels in 0..255, C = 1 or 3.
    """
    seed = check_seed(seed, allow_none=False)
    image = np.asarray(image, dtype=np.float32)
    height, width = image.shape[:2]
    if isinstance(baseline, str):
        key = _ALIASES.get(baseline, baseline)
        if key == "grey":
            return np.full_like(image, GREY_LEVEL)
        if key == "black":
            return np.zeros_like(image)
        if key == "mean":
            return np.broadcast_to(image.mean(axis=(0, 1)), image.shape).astype(np.float32)
        if key == "blur":
            from scipy.ndimage import gaussian_filter

            sigma = BLUR_SIGMA_FRACTION * max(height, width) if blur_sigma is None else \
                check_number(blur_sigma, "blur_sigma", minimum=0, inclusive=(False, True),
                             accepted="a positive number of pixels")
            return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")
        if key == "noise":
            rng = np.random.default_rng(check_seed(seed, allow_none=False))
            return rng.uniform(0, 255, image.shape).astype(np.float32)
        raise ValueError(
            f"{name} must be one of {', '.join(map(repr, BASELINES))}, a grey level, an RGB "
            f"triple or an image of shape {image.shape}; got {baseline!r}")
    if isinstance(baseline, (bool, np.bool_)) or baseline is None:
        raise TypeError(f"{name} must be one of {', '.join(map(repr, BASELINES))}, a grey "
                        f"level, an RGB triple or an image; not {baseline!r}")
    try:
        values = np.asarray(baseline, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, BASELINES))}, a grey "
                        f"level, an RGB triple or an image; not {type(baseline).__name__}"
                        ) from None
    if values.shape == (3,) and image.shape[-1] == 1:
        values = values @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # luma
    if values.ndim == 0 or values.shape == (image.shape[-1],):
        values = np.broadcast_to(values, image.shape)
    if values.shape != image.shape:
        raise ValueError(
            f"{name}: an array must be a grey level, an RGB triple or an image of shape "
            f"{image.shape}; got shape {values.shape}")
    if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 255:
        raise ValueError(f"{name}: values must be finite pixel values in 0..255")
    return np.ascontiguousarray(values, dtype=np.float32)


def check_patch_and_stride(patch_size, stride) -> tuple[int, int]:
    """``patch_size`` and ``stride`` as ints: positive, and the stride no larger than the patch."""
    patch_size = positive_int(patch_size, "patch_size")
    stride = positive_int(stride, "stride")
    if stride > patch_size:
        raise ValueError(
            f"stride {stride} is larger than patch_size {patch_size}: pixels between patches "
            "would never be hidden; use a stride of 1..patch_size")
    return patch_size, stride


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
    patch_size, stride = check_patch_and_stride(patch_size, stride)
    if patch_size > length:
        raise ValueError(
            f"patch_size {patch_size} is larger than the image ({length} pixels); use "
            f"1..{length}")
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
        return self.masks_at(np.arange(start, stop))

    def masks_at(self, index) -> np.ndarray:
        """Visible-masks (len(index), H, W) of the positions ``index`` (row-major numbers)."""
        index = np.asarray(index, dtype=np.int64)
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
        if self.count > MAX_MASKS:  # refused before the grids are drawn
            raise ValueError(f"num_masks must be at most {MAX_MASKS:,}, got {self.count:,}")
        if self.count * self.grid_size ** 2 > MAX_MASK_CELLS:
            raise ValueError(f"num_masks x grid_size^2 must be at most {MAX_MASK_CELLS:,} (the "
                             f"grids are held in memory), got {self.count:,} x "
                             f"{self.grid_size}^2")
        check_choice(self.method, "method", MASK_METHODS)
        self.seed = check_seed(self.seed)
        if self.grid_size > min(self.height, self.width):
            raise ValueError(
                f"grid_size {self.grid_size} has more cells than the image has pixels "
                f"({self.height}x{self.width}); use 1..{min(self.height, self.width)}")
        probability = check_number(self.keep_probability, "keep_probability", minimum=0,
                                   maximum=1, inclusive=(False, False),
                                   accepted="a probability strictly between 0 and 1")
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
