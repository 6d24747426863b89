"""Shortcuts: cues a model uses that are not the object ("right for the wrong reasons").

A *shortcut* (Geirhos et al. 2020, *Shortcut learning in deep neural
networks*) is a feature that predicts the label in the training data but not
in the world: the cloudy sky behind every tank photo, the copyright tag on
the horse photos of PASCAL VOC (Lapuschkin et al. 2019, *Unmasking Clever
Hans predictors and assessing what machines really learn*), a Chinese-text
watermark on ImageNet's `carton` photos (Li et al. 2023, *A Whac-A-Mole
Dilemma: Shortcuts Come in Multiples Where Mitigating One Amplifies
Others*, ImageNet-W). This module plants one and measures both kinds:

* **A planted shortcut** on scikit-learn's handwritten digits (they ship
  inside its wheel): :func:`digit_images` draws them as small RGB pictures,
  :func:`add_tag` / :func:`add_tint` paint a cue, :func:`plant_cue` puts it on
  a chosen share of one class and of the others, :func:`train_digit_cnn`
  trains a small seeded CNN of the course's contract (0..255 RGB pixels in,
  logits out), so every explainer of the course runs on it.
* **The ImageNet-W watermark**: :func:`add_watermark` is the recipe of the
  ``imagenet-w`` package re-written with Pillow (white "捷径捷径捷径" at
  opacity 0.5, font size 36 at 224 px, at x = 1 %, y = 40 %), drawn with
  the subset of its OFL font in ``data/fonts``; :func:`add_bar` is the
  plain-bar control; :func:`prediction_shift` reports a class's rank and
  probability before and after, apart from top-1 changes.
* **Does a map point at the cue?** :func:`box_share`: the share of a map's
  positive mass inside the cue's box, against the box's share of the image
  (the proportion of the energy-based pointing game of Wang et al. 2020,
  *Score-CAM*). A ratio of 1 is what a map that ignores the box gets.

Every function takes keyword parameters, returns plain float32 arrays or a
small result object, and raises a TypeError or ValueError that names the
argument at fault.
"""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass

import numpy as np

from .checks import check_labels
from .labels import DATA_DIR, class_name
from .models import probabilities
from .pipeline import predict_logits

__all__ = [
    "CARTON",
    "WATERMARK_TEXT",
    "LATIN_TEXT",
    "FONT_PATH",
    "PAPER",
    "INK",
    "TAG_COLOUR",
    "Digits",
    "digit_images",
    "tag_box",
    "add_tag",
    "add_tint",
    "plant_cue",
    "digit_cnn",
    "train_digit_cnn",
    "predicted_classes",
    "accuracy",
    "BoxShare",
    "box_share",
    "watermark_font_size",
    "watermark_alpha",
    "watermark_box",
    "add_watermark",
    "add_bar",
    "class_ranks",
    "PredictionShift",
    "prediction_shift",
]

CARTON = 478                        # ImageNet class "carton"
WATERMARK_TEXT = "捷径捷径捷径"        # "shortcut" three times, ImageNet-W's watermark
LATIN_TEXT = "shortcut"             # the same word in Latin letters: the control
FONT_PATH = DATA_DIR / "fonts" / "watermark-serif-sc-extralight-subset.otf"
# ImageNet-W's font size per image size; other sizes get int(size / 6.22).
_RECIPE_FONT_SIZES = {224: 36, 384: 62, 512: 82, 518: 84}
PAPER, INK = 235.0, 20.0            # grey levels of the digits' paper and ink
TAG_COLOUR = (220.0, 30.0, 30.0)    # a red tag
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")


# --------------------------------------------------------------------------
# Argument checks
# --------------------------------------------------------------------------

def _integer(value, name: str, minimum: int | None = None) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _fraction(value, name: str, *, low_open: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number between 0 and 1, not {type(value).__name__}")
    value = float(value)
    if not (0.0 < value <= 1.0 if low_open else 0.0 <= value <= 1.0):
        interval = "in (0, 1]" if low_open else "between 0 and 1"
        raise ValueError(f"{name} must be {interval}, got {value}")
    return value


def _colour(value, name: str) -> np.ndarray:
    try:
        colour = np.asarray(value, dtype=np.float32)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an RGB triple of numbers, not {value!r}") from None
    if colour.shape != (3,) or not np.all(np.isfinite(colour)) or colour.min() < 0 \
            or colour.max() > 255:
        raise ValueError(f"{name} must be an RGB triple of values in 0..255, got {value!r}")
    return colour


def _pixels(images, name: str = "images") -> tuple[np.ndarray, bool]:
    """RGB pixels 0..255 as float32 (N, H, W, 3), and whether one image was given."""
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{name} must be a numpy array of RGB pixels (H, W, 3) or "
                        f"(N, H, W, 3), not {type(images).__name__}")
    single = images.ndim == 3
    batch = images[None] if single else images
    if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape:
        raise ValueError(f"{name} must have shape (H, W, 3) or (N, H, W, 3) with RGB "
                         f"channels, got {images.shape}")
    batch = batch.astype(np.float32)
    if not np.all(np.isfinite(batch)) or batch.min() < 0 or batch.max() > 255:
        raise ValueError(f"{name} must hold finite pixel values in 0..255")
    return batch, single


def _box(box, height: int, width: int, name: str = "box") -> tuple[int, int, int, int]:
    try:
        values = tuple(box)
    except TypeError:
        raise TypeError(f"{name} must be (top, left, bottom, right) in pixels, not "
                        f"{type(box).__name__}") from None
    if len(values) != 4 or not all(isinstance(v, numbers.Integral) and
                                   not isinstance(v, (bool, np.bool_)) for v in values):
        raise TypeError(f"{name} must be four integers (top, left, bottom, right), got {box!r}")
    top, left, bottom, right = (int(v) for v in values)
    if not (0 <= top < bottom <= height and 0 <= left < right <= width):
        raise ValueError(f"{name} {box!r} must satisfy 0 <= top < bottom <= {height} and "
                         f"0 <= left < right <= {width} (bottom and right are exclusive)")
    return top, left, bottom, right


# --------------------------------------------------------------------------
# Part 1: a planted shortcut on handwritten digits
# --------------------------------------------------------------------------

@dataclass
class Digits:
    """scikit-learn's 1797 handwritten digits as RGB pictures, split into train and test."""

    train_images: np.ndarray   # float32 (N, size, size, 3), pixels 0..255
    train_labels: np.ndarray   # int64 (N,)
    test_images: np.ndarray
    test_labels: np.ndarray

    @property
    def size(self) -> int:
        return int(self.train_images.shape[1])


def digit_images(*, size: int = 32, digit_size: int = 24, test_fraction: float = 0.3,
                 seed: int = 0) -> Digits:
    """The UCI handwritten digits shipped with scikit-learn, drawn as RGB pictures.

    Each 8 x 8 digit (ink 0..16) is resized bilinearly to ``digit_size``
    pixels and centred on a ``size`` x ``size`` sheet of paper: grey level
    :data:`PAPER` where there is no ink, :data:`INK` where the ink is full
    (pixel = PAPER + (INK - PAPER) * ink / 16). The margin leaves room for a
    cue in a corner. The split is stratified by label and seeded
    (``sklearn.model_selection.train_test_split``). No download: the data
    ship inside scikit-learn's wheel (Alpaydin & Kaynak 1998, UCI).
    """
    from PIL import Image
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    size = _integer(size, "size", 8)
    digit_size = _integer(digit_size, "digit_size", 8)
    if digit_size > size:
        raise ValueError(f"digit_size ({digit_size}) must not exceed size ({size})")
    test_fraction = _fraction(test_fraction, "test_fraction", low_open=True)
    if test_fraction == 1.0:
        raise ValueError("test_fraction must leave images to train on (use less than 1)")
    seed = _integer(seed, "seed", 0)
    digits = load_digits()
    offset = (size - digit_size) // 2
    images = np.full((len(digits.images), size, size, 3), PAPER, dtype=np.float32)
    for i, ink in enumerate(digits.images.astype(np.float32) / 16.0):
        big = np.asarray(Image.fromarray(ink).resize((digit_size, digit_size),
                                                               Image.BILINEAR))
        sheet = PAPER + (INK - PAPER) * np.clip(big, 0.0, 1.0)
        images[i, offset:offset + digit_size, offset:offset + digit_size] = sheet[..., None]
    labels = digits.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return Digits(train_x, train_y, test_x, test_y)


def tag_box(size: int, *, tag_size: int = 5, corner: str = "top-left",
            margin: int = 1) -> tuple[int, int, int, int]:
    """The (top, left, bottom, right) pixels of a square tag in a corner (bottom, right
    exclusive)."""
    size = _integer(size, "size", 1)
    tag_size = _integer(tag_size, "tag_size", 1)
    margin = _integer(margin, "margin", 0)
    if corner not in CORNERS:
        raise ValueError(f"corner must be one of {', '.join(CORNERS)}, not {corner!r}")
    if tag_size + margin > size:
        raise ValueError(f"tag_size + margin ({tag_size} + {margin}) must fit in size {size}")
    top = margin if corner.startswith("top") else size - margin - tag_size
    left = margin if corner.endswith("left") else size - margin - tag_size
    return top, left, top + tag_size, left + tag_size


def add_tag(images, box, *, colour=TAG_COLOUR) -> np.ndarray:
    """A copy of ``images`` with the pixels of ``box`` painted ``colour`` (a solid tag).

    ``images``: float or uint8 pixels 0..255, (H, W, 3) or (N, H, W, 3).
    ``box``: (top, left, bottom, right), see :func:`tag_box`. Returns float32.
    """
    batch, single = _pixels(images)
    top, left, bottom, right = _box(box, batch.shape[1], batch.shape[2])
    batch[:, top:bottom, left:right] = _colour(colour, "colour")
    return batch[0] if single else batch


def add_tint(images, *, colour=(170.0, 200.0, 255.0)) -> np.ndarray:
    """A copy of ``images`` seen under coloured light: each channel times ``colour / 255``.

    On the digits the paper takes the colour (a bluish "sky" by default) and
    the dark ink stays dark: a background cue, like the cloudy sky behind
    the tanks of the old anecdote.
    """
    batch, single = _pixels(images)
    batch = batch * (_colour(colour, "colour") / 255.0)
    return batch[0] if single else batch


def plant_cue(images, labels, *, cue, target_class: int, in_class: float = 1.0,
              elsewhere: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Put a cue on a share of one class's images and on a share of the others'.

    ``cue``: a function from images (N, H, W, 3) to the same images with the
    cue (``lambda x: add_tag(x, box)``). Exactly ``round(in_class * n_target)``
    images of ``target_class`` get it, chosen at random (``seed``), and
    ``round(elsewhere * n_other)`` of the others. ``in_class=1, elsewhere=0``
    makes the cue a perfect shortcut for the class; equal shares make it
    independent of the label (decorrelated).

    Returns ``(images_with_cue, has_cue)``: float32 (N, H, W, 3) and bool (N,).
    """
    batch, single = _pixels(images)
    if single:
        raise ValueError("images must be a batch (N, H, W, 3): the cue goes on a share of them")
    labels = check_labels(labels, len(batch))
    if not callable(cue):
        raise TypeError(f"cue must be a function from images to images with the cue, not "
                        f"{type(cue).__name__}")
    target_class = _integer(target_class, "target_class", 0)
    if target_class not in set(labels.tolist()):
        raise ValueError(f"target_class {target_class} does not occur in labels "
                         f"(classes {sorted(set(labels.tolist()))})")
    in_class = _fraction(in_class, "in_class")
    elsewhere = _fraction(elsewhere, "elsewhere")
    seed = _integer(seed, "seed", 0)
    rng = np.random.default_rng(seed)
    has_cue = np.zeros(len(batch), dtype=bool)
    for members, share in ((np.flatnonzero(labels == target_class), in_class),
                           (np.flatnonzero(labels != target_class), elsewhere)):
        chosen = rng.permutation(members)[:int(round(share * len(members)))]
        has_cue[chosen] = True
    out = batch.copy()
    if has_cue.any():
        marked = np.asarray(cue(batch[has_cue]), dtype=np.float32)
        if marked.shape != batch[has_cue].shape:
            raise ValueError(f"cue must return images of the shape it was given "
                             f"{batch[has_cue].shape}, got {marked.shape}")
        out[has_cue] = marked
    return out, has_cue


def digit_cnn(*, size: int = 32, classes: int = 10, seed: int = 0, name: str = "digit_cnn"):
    """A small CNN of the course's contract: RGB pixels 0..255 in, ``classes`` logits out.

    Rescaling(1/255) ("preprocess"), four 3x3 ReLU convolutions of 16, 32,
    64, 64 channels ("conv1".."conv4") with 2x2 max pooling after the first
    three, global average pooling and a dense layer ("logits", no softmax).
    At 32 px the last map ("conv4") has 4 x 4 cells, "conv3" 8 x 8. Seeded
    initial weights, not compiled (:func:`train_digit_cnn` trains one).
    """
    import keras

    size = _integer(size, "size", 8)
    classes = _integer(classes, "classes", 2)
    seed = _integer(seed, "seed", 0)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((size, size, 3), name="pixels")
    x = keras.layers.Rescaling(1 / 255.0, name="preprocess")(inputs)
    for index, filters in enumerate((16, 32, 64, 64), start=1):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                name=f"conv{index}")(x)
        if index < 4:
            x = keras.layers.MaxPooling2D(2, name=f"pool{index}")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inputs, outputs, name=name)


def train_digit_cnn(images, labels, *, epochs: int = 15, batch_size: int = 32,
                    learning_rate: float = 2e-3, seed: int = 0, name: str = "digit_cnn"):
    """A :func:`digit_cnn` trained on ``images`` and ``labels``, seeded (weights and shuffling).

    Adam (Kingma & Ba 2015) on the softmax cross-entropy of the logits. The
    seed is set globally (``keras.utils.set_random_seed``: Python, numpy and
    TensorFlow), so the same seed on the same machine gives the same weights;
    other CPUs differ in the last bits, which training amplifies a little, so
    report rounded accuracies. About 10-20 s on two CPU cores for the 1257
    training digits.
    """
    import keras

    batch, single = _pixels(images)
    if single:
        raise ValueError("images must be a batch (N, H, W, 3) to train on")
    if batch.shape[1] != batch.shape[2]:
        raise ValueError(f"images must be square, got {batch.shape[1]}x{batch.shape[2]}")
    labels = check_labels(labels, len(batch))
    epochs = _integer(epochs, "epochs", 1)
    batch_size = _integer(batch_size, "batch_size", 1)
    if isinstance(learning_rate, bool) or not isinstance(learning_rate, numbers.Real) \
            or not learning_rate > 0:
        raise ValueError(f"learning_rate must be a positive number, got {learning_rate!r}")
    classes = max(10, int(labels.max()) + 1)
    model = digit_cnn(size=batch.shape[1], classes=classes, seed=seed, name=name)
    model.compile(optimizer=keras.optimizers.Adam(float(learning_rate)),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(seed)
    model.fit(batch, labels, epochs=epochs, batch_size=batch_size, shuffle=True, verbose=0)
    return model


def predicted_classes(model, images, *, batch_size: int = 256) -> np.ndarray:
    """The top-1 class of each image: int64 (N,)."""
    batch, _ = _pixels(images)
    return np.argmax(predict_logits(model, batch, _integer(batch_size, "batch_size", 1)),
                     axis=-1).astype(np.int64)


def accuracy(model, images, labels) -> float:
    """The share of ``images`` whose top-1 class equals its label."""
    labels = np.asarray(labels)
    predicted = predicted_classes(model, images)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels must have one entry per image ({len(predicted)}), got shape "
                         f"{labels.shape}")
    return float(np.mean(predicted == labels))


# --------------------------------------------------------------------------
# Does a map point at the cue?
# --------------------------------------------------------------------------

@dataclass
class BoxShare:
    """How much of a map's positive mass lies inside a box, against the box's area.

    ``share``: sum of max(map, 0) inside the box / sum of max(map, 0) over
    the image (NaN for a map without positive values). ``area``: the box's
    share of the image. ``ratio = share / area``: 1 for a map that spreads
    its mass evenly, above 1 for a map that points into the box.
    Arrays (N,) for a batch of maps.
    """

    share: np.ndarray | float
    area: float
    ratio: np.ndarray | float

    def __str__(self) -> str:
        share, ratio = np.atleast_1d(self.share), np.atleast_1d(self.ratio)
        if share.size == 1:
            return (f"{share[0]:.0%} of the positive mass in a box of {self.area:.1%} of the "
                    f"image ({ratio[0]:.1f}x its area share)")
        return (f"{len(share)} maps: median {np.nanmedian(share):.0%} of the positive mass in a "
                f"box of {self.area:.1%} of the image (median {np.nanmedian(ratio):.1f}x)")


def box_share(heatmap, box) -> BoxShare:
    """The share of a map's positive mass inside ``box``, and the box's share of the image.

    ``share = sum_{u in box} max(m(u), 0) / sum_u max(m(u), 0)``, the
    proportion of the energy-based pointing game (Wang et al. 2020,
    *Score-CAM*), compared with ``area = |box| / |image|``, what a map that
    ignores the box would put there on average. Only the positive part
    counts: the evidence *for* the class in signed maps (occlusion drops,
    SHAP values); absolute gradients and CAMs are positive anyway.

    ``heatmap``: float (H, W) or a batch (N, H, W). ``box``: (top, left,
    bottom, right) pixels, bottom and right exclusive. Returns a
    :class:`BoxShare` (floats for one map, arrays for a batch).
    """
    if isinstance(heatmap, (str, bytes)) or heatmap is None:
        raise TypeError(f"heatmap must be an array (H, W) or (N, H, W), not "
                        f"{type(heatmap).__name__}")
    maps = np.asarray(heatmap, dtype=np.float64)
    single = maps.ndim == 2
    if single:
        maps = maps[None]
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"heatmap must have shape (H, W) or (N, H, W), got {np.shape(heatmap)}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("heatmap contains NaN or infinite values")
    top, left, bottom, right = _box(box, maps.shape[1], maps.shape[2])
    positive = np.maximum(maps, 0.0)
    total = positive.sum(axis=(1, 2))
    inside = positive[:, top:bottom, left:right].sum(axis=(1, 2))
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    area = (bottom - top) * (right - left) / (maps.shape[1] * maps.shape[2])
    ratio = share / area
    if single:
        return BoxShare(float(share[0]), float(area), float(ratio[0]))
    return BoxShare(share, float(area), ratio)


# --------------------------------------------------------------------------
# Part 2: ImageNet-W's watermark
# --------------------------------------------------------------------------

def watermark_font_size(image_size: int) -> int:
    """The ImageNet-W font size for an image of ``image_size`` pixels (36 at 224).

    The package's table: 224 -> 36, 384 -> 62, 512 -> 82, 518 -> 84; any
    other size -> int(size / 6.22) (240 -> 38, 260 -> 41).
    """
    image_size = _integer(image_size, "image_size", 1)
    return _RECIPE_FONT_SIZES.get(image_size, int(image_size / 6.22))


@functools.lru_cache(maxsize=16)
def _font(font_size: int, font_path: str):
    from PIL import ImageFont

    # Pillow's basic layout gives the same pixels with or without libraqm.
    return ImageFont.truetype(font_path, font_size, layout_engine=ImageFont.Layout.BASIC)


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, not {type(text).__name__}")
    if not text.strip():
        raise ValueError("text must contain at least one visible character")
    missing = sorted({c for c in text if ord(c) not in _font_characters()})
    if missing:
        raise ValueError(f"text has characters the bundled font subset lacks: {''.join(missing)!r} "
                         "(data/fonts/make_font_subset.py lists the characters it keeps)")
    return text


@functools.lru_cache(maxsize=1)
def _font_characters() -> frozenset:
    from fontTools.ttLib import TTFont

    return frozenset(TTFont(FONT_PATH).getBestCmap())


def _size(size) -> tuple[int, int]:
    if isinstance(size, numbers.Integral) and not isinstance(size, (bool, np.bool_)):
        side = _integer(size, "size", 1)
        return side, side
    try:
        height, width = size
    except (TypeError, ValueError):
        raise TypeError(f"size must be an int or (height, width), not {size!r}") from None
    return _integer(height, "size", 1), _integer(width, "size", 1)


def _watermark_layer(height, width, *, text, opacity, x, y, font_size, colour=(255, 255, 255)):
    """The transparent RGBA layer with the text, as ImageNet-W draws it (a PIL image)."""
    from PIL import Image, ImageDraw

    text = _check_text(text)
    opacity = _fraction(opacity, "opacity")
    x, y = _fraction(x, "x"), _fraction(y, "y")
    font_size = watermark_font_size(width) if font_size is None else _integer(
        font_size, "font_size", 1)
    red, green, blue = (int(round(c)) for c in _colour(colour, "colour"))
    layer = Image.new("RGBA", (width, height), (255, 255, 255, 0))
    ImageDraw.Draw(layer).text((x * width, y * height), text,
                               fill=(red, green, blue, round(opacity * 255)),
                               font=_font(font_size, str(FONT_PATH)))
    return layer


def watermark_alpha(size, *, text: str = WATERMARK_TEXT, opacity: float = 0.5,
                    x: float = 0.01, y: float = 0.4, font_size: int | None = None) -> np.ndarray:
    """The watermark's opacity at every pixel: float32 (H, W) in 0..opacity.

    The layer ImageNet-W draws (Li et al. 2023): ``text`` in the bundled font
    (Source Han Serif SC ExtraLight, subset), its top-left anchor at
    (x * W, y * H), in a colour whose alpha is round(opacity * 255); Pillow's
    antialiasing makes the glyphs' edges partly transparent. ``size``: an
    int (square) or (H, W). ``font_size``: None = :func:`watermark_font_size`
    of the width.
    """
    height, width = _size(size)
    layer = _watermark_layer(height, width, text=text, opacity=opacity, x=x, y=y,
                             font_size=font_size)
    return np.asarray(layer, dtype=np.float32)[..., 3] / 255.0


def watermark_box(size, **watermark) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels the watermark touches (bottom, right exclusive).

    ``watermark``: the keywords of :func:`watermark_alpha` (text, x, y,
    font_size; opacity does not move the box).
    """
    watermark["opacity"] = 1.0
    alpha = watermark_alpha(size, **watermark)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        raise ValueError("the watermark falls outside the image: no pixel is touched")
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def add_watermark(images, *, text: str = WATERMARK_TEXT, opacity: float = 0.5,
                  colour=(255, 255, 255), x: float = 0.01, y: float = 0.4,
                  font_size: int | None = None) -> np.ndarray:
    """ImageNet-W's watermark on each image (Li et al. 2023, *A Whac-A-Mole Dilemma*).

    The recipe of the ``imagenet-w`` package (its ``AddWatermark``), with
    Pillow and without torch: the text is drawn on a transparent RGBA layer
    in ``colour`` with alpha round(opacity * 255), and the layer is
    alpha-composited over the photo, ``out = (1 - a) * photo + a * colour``
    per pixel with ``a`` from :func:`watermark_alpha`, in 8-bit arithmetic.
    Defaults: white "捷径捷径捷径", opacity 0.5, font size 36 at 224 px
    (:func:`watermark_font_size`), anchored at x = 1 %, y = 40 % of the image.
    ``text=LATIN_TEXT`` draws the Latin-letter control.

    ``images``: pixels 0..255 (H, W, 3) or (N, H, W, 3), rounded to 8 bits
    first, as in the package (which composites PIL images). Returns float32
    of the same shape, integer-valued.
    """
    from PIL import Image

    batch, single = _pixels(images)
    layer = _watermark_layer(batch.shape[1], batch.shape[2], text=text, opacity=opacity, x=x,
                             y=y, font_size=font_size, colour=colour)
    out = np.empty_like(batch)
    for i, image in enumerate(np.rint(batch).astype(np.uint8)):
        photo = Image.fromarray(image, "RGB").convert("RGBA")
        out[i] = np.asarray(Image.alpha_composite(photo, layer).convert("RGB"), np.float32)
    return out[0] if single else out


def add_bar(images, box, *, opacity: float = 0.5, colour=(255, 255, 255)) -> np.ndarray:
    """A plain translucent bar over ``box``: ``(1 - opacity) * photo + opacity * colour``.

    The control for the watermark: the same place, the same colour, no
    letters. Rounded to 8-bit levels like the watermark. ``box``: (top,
    left, bottom, right), e.g. :func:`watermark_box`.
    """
    batch, single = _pixels(images)
    top, left, bottom, right = _box(box, batch.shape[1], batch.shape[2])
    opacity = _fraction(opacity, "opacity")
    region = batch[:, top:bottom, left:right]
    batch[:, top:bottom, left:right] = np.rint(
        (1.0 - opacity) * region + opacity * _colour(colour, "colour"))
    return batch[0] if single else batch


def class_ranks(logits, class_index: int) -> np.ndarray:
    """The 1-based rank of ``class_index`` among the logits of each row: int64 (N,).

    Rank 1 is the top-1 class; ties count in the class's favour.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim == 1:
        logits = logits[None]
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (classes,) or (N, classes), got {logits.shape}")
    class_index = _integer(class_index, "class_index", 0)
    if class_index >= logits.shape[1]:
        raise ValueError(f"class_index {class_index} is out of range for {logits.shape[1]} classes")
    return 1 + (logits > logits[:, class_index:class_index + 1]).sum(axis=1).astype(np.int64)


@dataclass
class PredictionShift:
    """What an edit of the images did to one class and to the top-1, image by image."""

    class_index: int
    rank_before: np.ndarray         # int64 (N,), 1 = top-1
    rank_after: np.ndarray
    probability_before: np.ndarray  # float32 (N,)
    probability_after: np.ndarray
    top1_before: np.ndarray         # int64 (N,)
    top1_after: np.ndarray
    names: list | None = None       # one label per image, for the table
    imagenet: bool = True           # class indices are ImageNet classes (named in the table)

    @property
    def top1_changed(self) -> np.ndarray:
        return self.top1_after != self.top1_before

    @property
    def became_class(self) -> np.ndarray:
        return self.top1_after == self.class_index

    @property
    def probability_factor(self) -> np.ndarray:
        return self.probability_after / np.maximum(self.probability_before, 1e-30)

    def table(self) -> str:
        def label(index):
            return class_name(int(index)) if self.imagenet else str(int(index))

        names = self.names or [str(i) for i in range(len(self.rank_before))]
        width = max(6, max(len(n) for n in names))
        lines = [f"{'image':<{width}}  rank before -> after   p before -> after  "
                 f"top-1 before -> after"]
        for i, name in enumerate(names):
            change = "" if not self.top1_changed[i] else "  (changed)"
            lines.append(
                f"{name:<{width}}  {self.rank_before[i]:>6} -> {self.rank_after[i]:<6}  "
                f"{self.probability_before[i]:8.5f} -> {self.probability_after[i]:<8.5f}  "
                f"{label(self.top1_before[i])} -> {label(self.top1_after[i])}{change}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()


def prediction_shift(model, clean, edited, *, class_index: int = CARTON, names=None,
                     batch_size: int = 32) -> PredictionShift:
    """Rank and probability of ``class_index`` and the top-1, before and after an edit.

    ``clean`` and ``edited``: the same images without and with the edit,
    float (N, H, W, 3) of the model's size, pixels 0..255. Separates the two
    things an edit can do: move one class (the shortcut: its rank and
    probability) and disrupt the prediction (the top-1 changes, to that
    class or to another).
    """
    clean, _ = _pixels(clean, "clean")
    edited, _ = _pixels(edited, "edited")
    if clean.shape != edited.shape:
        raise ValueError(f"clean and edited must have the same shape, got {clean.shape} and "
                         f"{edited.shape}")
    if names is not None and len(names) != len(clean):
        raise ValueError(f"names must give one label per image ({len(clean)}), got {len(names)}")
    batch_size = _integer(batch_size, "batch_size", 1)
    logits = predict_logits(model, np.concatenate([clean, edited]), batch_size)
    before, after = logits[:len(clean)], logits[len(clean):]
    class_index = _integer(class_index, "class_index", 0)
    ranks_before, ranks_after = class_ranks(before, class_index), class_ranks(after, class_index)
    p_before = probabilities(before)[:, class_index]
    p_after = probabilities(after)[:, class_index]
    return PredictionShift(class_index, ranks_before, ranks_after, p_before, p_after,
                           before.argmax(axis=1).astype(np.int64),
                           after.argmax(axis=1).astype(np.int64),
                           None if names is None else list(names),
                           imagenet=logits.shape[1] == 1000)
