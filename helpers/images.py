"""Photos in, model-ready batches out.

Sample photos ship inside packages the course already installs, so they
work offline: scikit-image (chelsea the cat, coffee, astronaut, rocket),
scikit-learn (china, flower) and matplotlib (grace_hopper). ``cat_and_coffee``
puts the cat and the espresso side by side, for class-discrimination lessons.

Any image source works: a sample name, a file path, a PIL image, or an
array (gray, RGB or RGBA; any size). :func:`load_image` returns an RGB
uint8 array; :func:`prepare` resizes and batches it for a model (float32
pixels in 0..255, the model's own preprocessing does the rest).

How pixel values are read (:func:`to_uint8`):

- uint8 is taken as it is; bool is 0 or 255.
- Floats in 0..1 are scaled by 255; floats up to 255 are taken as pixels.
- 16-bit images are scaled by 255/65535, never clipped: uint16 arrays
  (whatever their values), 16-bit PIL images (modes ``I;16``, ``I;16B``...)
  and so 16-bit gray PNG and TIFF files. Pillow itself reduces 16-bit
  colour files to 8 bits per channel.
- Any other integer type (int32, int64, uint32, a 32-bit PIL image in mode
  ``I``...) says nothing about its bit depth, and as often holds 8-bit
  pixels as anything else: values in 0..255 are pixels, others are refused
  with a ValueError (convert 16-bit data to uint16, or scale to floats).
- Anything that is not a real number (complex, object, strings, dates,
  structured records) is refused with a TypeError.

Files, bytes (an upload) and PIL images are turned upright as their EXIF
Orientation tag says, so a phone photo does not load sideways. Files and
bytes are checked before they are decoded: at most ``MAX_FILE_BYTES`` bytes
and ``MAX_PIXELS`` pixels (a decompression bomb is refused, not decoded).

Besides the samples, every photo of the collection in ``data/photos/``
(:func:`helpers.photo_collection`) loads by its name.
"""

from __future__ import annotations

import difflib
import io
import os
import struct
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import check_bool, check_number, check_seed, is_integer, positive_int
from .photos import collection_file, photo_collection

__all__ = [
    "sample_names",
    "load_image",
    "prepare",
    "as_batch",
    "augment",
]

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger inputs are refused (decompression bombs)
MAX_FILE_BYTES = 50_000_000  # a photo file or upload larger than this is refused unread
FITS = ("crop", "squash", "pad")
MAX_VIEWS = 4096  # augmented views of one photo in one call


def _skimage(name):
    def load():
        import skimage.data

        return getattr(skimage.data, name)()
    return load


def _sklearn(filename):
    def load():
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)
    return load


def _grace_hopper():
    import matplotlib.cbook

    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        return np.asarray(Image.open(f).convert("RGB"))


def _cat_and_coffee():
    """The cat (left) and the espresso (right) side by side on one square canvas."""
    side = 448
    canvas = np.full((side, side, 3), 128, dtype=np.uint8)
    cat = _center_crop(_skimage("chelsea")(), aspect=0.8)
    coffee = _center_crop(_skimage("coffee")(), aspect=0.8)
    tile_h, tile_w = 280, 224
    top = (side - tile_h) // 2
    canvas[top:top + tile_h, :tile_w] = resize_image(cat, (tile_h, tile_w))
    canvas[top:top + tile_h, tile_w:] = resize_image(coffee, (tile_h, tile_w))
    return canvas


def _center_crop(image, aspect):
    """The largest centred crop with width / height == aspect."""
    height, width = image.shape[:2]
    if width / height > aspect:
        new_w = int(round(height * aspect))
        left = (width - new_w) // 2
        return image[:, left:left + new_w]
    new_h = int(round(width / aspect))
    top = (height - new_h) // 2
    return image[top:top + new_h]


SAMPLES = {
    "chelsea": ("Chelsea the cat (scikit-image)", _skimage("chelsea")),
    "coffee": ("a cup of espresso (scikit-image)", _skimage("coffee")),
    "astronaut": ("astronaut Eileen Collins (scikit-image)", _skimage("astronaut")),
    "rocket": ("a rocket on the launch pad (scikit-image)", _skimage("rocket")),
    "china": ("a Chinese temple (scikit-learn)", _sklearn("china.jpg")),
    "flower": ("a flower (scikit-learn)", _sklearn("flower.jpg")),
    "grace_hopper": ("Grace Hopper in uniform (matplotlib)", _grace_hopper),
    "cat_and_coffee": ("Chelsea the cat and an espresso side by side", _cat_and_coffee),
}


def sample_names() -> list[str]:
    """Names accepted by :func:`load_image` for the bundled photos."""
    return list(SAMPLES)


def _check_pixels(height, width, what):
    if height < 1 or width < 1:
        raise ValueError(f"{what} is empty ({height}x{width} pixels)")
    if height * width > MAX_PIXELS:
        raise ValueError(
            f"{what} has {height}x{width} = {height * width:,} pixels, more than the "
            f"{MAX_PIXELS:,} accepted (a decompression bomb or a mistake); resize it first")


def _from_file(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"no image file at '{path}'")
    if path.is_dir():
        raise IsADirectoryError(f"'{path}' is a folder, not an image file")
    _check_bytes(path.stat().st_size, f"image file '{path}'")
    return _decode(path, f"image file '{path}'")


def _check_bytes(size: int, what: str):
    if size == 0:
        raise ValueError(f"{what} is empty (0 bytes)")
    if size > MAX_FILE_BYTES:
        raise ValueError(f"{what} has {size:,} bytes, more than the {MAX_FILE_BYTES:,} accepted; "
                         "resize or compress it first")


def from_bytes(data, what: str = "the image bytes") -> np.ndarray:
    """An upload's bytes through the same checks as a file (size, pixels, EXIF, bit depth)."""
    data = bytes(data)
    _check_bytes(len(data), what)
    return _decode(io.BytesIO(data), what)


def _decode(source, what: str) -> np.ndarray:
    try:
        with Image.open(source) as opened:
            width, height = opened.size  # from the header: nothing decoded yet
            _check_pixels(height, width, what)
            return _from_pil(opened)
    except UnidentifiedImageError:
        raise ValueError(
            f"{what} is not an image PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP...)") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"{what} is refused as a decompression bomb: {error}") from None
    except OSError as error:
        raise ValueError(f"{what} is damaged or truncated: {error}") from None


# PIL's convert("RGB") clips these at 255; their arrays go through the rules above.
_HIGH_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")

_NOT_REAL = {"c": "complex numbers", "O": "Python objects", "U": "strings", "S": "bytes",
             "M": "dates", "m": "time spans", "V": "structured records or raw bytes"}


def _upright(image: Image.Image) -> Image.Image:
    """The image turned as its EXIF Orientation tag says (phones store photos sideways)."""
    image.load()  # a damaged file fails here, for the caller to name, not in the EXIF fallback
    try:
        return ImageOps.exif_transpose(image)
    except (SyntaxError, ValueError, TypeError, KeyError, IndexError, struct.error):
        # A damaged EXIF block (Pillow raises struct.error or TypeError on some):
        # the pixels are still good, so keep them as stored.
        return image


def _from_pil(image: Image.Image) -> np.ndarray:
    width, height = image.size
    _check_pixels(height, width, "the PIL image")
    image = _upright(image)
    if image.mode in _HIGH_BIT_MODES:
        return _to_uint8(np.asarray(image), f"the PIL image (mode {image.mode})")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return _to_uint8(np.asarray(image), "the PIL image")


def _real_array(array, what: str) -> np.ndarray:
    """``array`` as a numpy array of real numbers (bool, integers, floats), or a TypeError."""
    try:
        array = np.asarray(array)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{what} cannot be read as an array of numbers: {error}") from None
    if array.dtype.kind not in "buif":
        kind = _NOT_REAL.get(array.dtype.kind, "values that are not real numbers")
        raise TypeError(
            f"{what} must hold numbers (bool, integers or real floats), not {kind} "
            f"({array.dtype}); pixels are uint8 0..255, uint16 0..65535 or floats in 0..1 / 0..255")
    return array


def _is_16_bit(array: np.ndarray) -> bool:
    return array.dtype.kind == "u" and array.dtype.itemsize == 2  # either byte order


def _integers_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if _is_16_bit(array):
        # 65535 -> 255, rounded exactly in integers.
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    low, high = int(array.min()), int(array.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"{what}: integer image values must lie in 0..255, got {low}..{high}. A 16-bit image "
            "should be a uint16 array (scaled by 255/65535); other ranges: scale to floats "
            "in 0..1 first")
    return array.astype(np.uint8)


def _floats_to_uint8(array: np.ndarray, what: str) -> np.ndarray:
    if array.dtype.itemsize < 4:
        array = array.astype(np.float32)  # float16 is too coarse near 255 to scale in
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ValueError(
            f"{what}: float image values must lie in 0..1 or 0..255; got {low:.3g}..{high:.3g}")
    scale = 255.0 if high <= 1.0 else 1.0
    return np.clip(np.round(array * scale), 0, 255).astype(np.uint8)


def to_uint8(array) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image from a gray/RGB/RGBA array of real numbers.

    uint8 is kept; bool becomes 0/255; floats in 0..1 are scaled by 255 and
    floats up to 255 taken as pixels; uint16 (16-bit) is scaled by 255/65535;
    other integer types must lie in 0..255. Complex, object, string, date and
    structured arrays raise TypeError; values out of range raise ValueError.
    RGBA is composited on white (transparent areas become white).
    """
    return _to_uint8(array, "the image array")


def _to_uint8(array, what: str) -> np.ndarray:
    array = _real_array(array, what)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(
            f"{what} must be (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; got shape "
            f"{array.shape}" + (" (a batch? pass one image at a time)" if array.ndim == 4 else ""))
    _check_pixels(array.shape[0], array.shape[1], what)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype.kind == "f":
        array = _floats_to_uint8(array, what)
    elif array.dtype != np.uint8:
        array = _integers_to_uint8(array, what)
    if array.ndim == 2:  # gray, stacked only now that the size is checked and 8-bit
        array = np.stack([array] * 3, axis=-1)
    if array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        rgb = array[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        array = np.round(rgb).astype(np.uint8)
    return np.ascontiguousarray(array)


def to_float_pixels(array) -> np.ndarray:
    """A float32 image in 0..255, unrounded, from floats in 0..1 or 0..255.

    Integer arrays are pixel values read as :func:`to_uint8` reads them
    (uint16 scaled by 255/65535, bool 0/255, others in 0..255), not rounded.
    """
    array = _real_array(array, "the image array")
    if array.dtype == np.bool_:
        return array.astype(np.float32) * 255.0
    if _is_16_bit(array):
        return array.astype(np.float32) * np.float32(255 / 65535)
    if not np.all(np.isfinite(array)):
        raise ValueError("the image array contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if array.dtype.kind != "f":
        if low < 0 or high > 255:
            raise ValueError(
                f"the image array: integer image values must lie in 0..255, got {low:.0f}.."
                f"{high:.0f}; a 16-bit image should be a uint16 array")
        return array.astype(np.float32)
    if low < 0 or high > 255:
        raise ValueError(f"float image values must lie in 0..1 or 0..255; got {low:.3g}..{high:.3g}")
    array = array.astype(np.float32)
    return array * 255.0 if high <= 1.0 else array


def load_image(source) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a photo name, path, bytes, PIL image or array.

    Names are the samples (:func:`sample_names`) and the photo collection
    (:func:`helpers.photo_collection`). Bytes are an encoded file (an
    upload), checked like a file. Files, bytes and PIL images are turned upright by their EXIF orientation; pixel
    values are read by the rules of :func:`to_uint8` (16-bit scaled, never
    clipped).
    """
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return from_bytes(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(source, str) and text in SAMPLES:
            return to_uint8(SAMPLES[text][1]())
        if isinstance(source, str) and text in photo_collection():
            return _from_file(collection_file(text))
        path = Path(text).expanduser()
        if path.exists() or os.sep in text or "." in Path(text).name:
            return _from_file(path)
        known = list(SAMPLES) + photo_collection()
        close = difflib.get_close_matches(text, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"{text!r} is neither a photo name nor an existing file.{hint} "
            f"Samples: {', '.join(SAMPLES)}; the collection's {len(known) - len(SAMPLES)} "
            "names: h.photo_collection()")
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return to_uint8(source)
    raise TypeError(
        f"cannot read an image from {type(source).__name__}; pass a photo name, a file path, "
        "bytes of an image file, a PIL image or a numpy array")


def resize_image(image: np.ndarray, size, fit: str = "squash") -> np.ndarray:
    """Resize an RGB uint8 image to ``size`` = (height, width).

    ``fit``: "crop" scales the shorter side and crops the centre (how
    ImageNet models are evaluated), "squash" stretches the whole photo,
    "pad" fits the whole photo and pads with grey.
    """
    if fit not in FITS:
        raise ValueError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    height, width = (int(size), int(size)) if np.isscalar(size) else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise ValueError(f"target size must be positive, got {(height, width)}")
    pil = Image.fromarray(image)
    in_w, in_h = pil.size
    if fit == "squash":
        return np.asarray(pil.resize((width, height), Image.BILINEAR))
    if fit == "crop":
        scale = max(width / in_w, height / in_h)
    else:
        scale = min(width / in_w, height / in_h)
    new_w, new_h = max(1, round(in_w * scale)), max(1, round(in_h * scale))
    resized = pil.resize((new_w, new_h), Image.BILINEAR)
    if fit == "crop":
        left, top = (new_w - width) // 2, (new_h - height) // 2
        return np.asarray(resized.crop((left, top, left + width, top + height)))
    canvas = Image.new("RGB", (width, height), (128, 128, 128))
    canvas.paste(resized, ((width - new_w) // 2, (height - new_h) // 2))
    return np.asarray(canvas)


def target_size(model_or_size, name: str = "model_or_size") -> tuple[int, int]:
    """(height, width) for a Keras model (read from its input shape) or a size.

    A size is one positive int (a square) or (height, width). The full check of
    a model (one image input, 1 or 3 channels) happens where it is called.
    """
    if isinstance(model_or_size, str):
        raise TypeError(f"{name} must be a Keras model or an input size (an int or (height, "
                        f"width)), not the string {model_or_size!r}; to use a model by name, "
                        f"load it first: model = h.load_model({model_or_size!r})")
    shape = getattr(model_or_size, "input_shape", None)
    if shape is not None and hasattr(model_or_size, "inputs"):
        if isinstance(shape, list) or len(shape) != 4 or None in tuple(shape[1:3]):
            raise ValueError(f"{name}: the model's input shape is {shape}; the course's methods "
                             "take models with one image input (batch, height, width, "
                             "channels) of a fixed size")
        return int(shape[1]), int(shape[2])
    sizes = (model_or_size,) * 2 if np.isscalar(model_or_size) else model_or_size
    if not isinstance(sizes, (tuple, list, np.ndarray)) or len(sizes) != 2 or not all(
            is_integer(v) for v in sizes):
        raise TypeError(f"{name} must be a Keras model or an input size (an int or (height, "
                        f"width) ints), not {type(model_or_size).__name__} ({model_or_size!r})")
    if min(sizes) < 1:
        raise ValueError(f"{name}: an input size must be positive, got {model_or_size!r}")
    return int(sizes[0]), int(sizes[1])


def prepare(source, model_or_size, *, fit: str = "crop") -> np.ndarray:
    """One image as a model-ready batch: float32 (1, H, W, 3), pixels in 0..255."""
    image = load_image(source)
    return resize_image(image, target_size(model_or_size), fit)[None].astype(np.float32)


def as_batch(images, model_or_size, *, fit: str = "crop") -> tuple[np.ndarray, bool]:
    """Images for a model as ``(batch, single)``.

    ``images`` is one image in any accepted form, a list of them, or an
    already-prepared float batch (N, H, W, 3) of the model's size.
    ``single`` tells the caller to return one map rather than a batch.
    """
    size = target_size(model_or_size)
    if isinstance(images, np.ndarray) and images.ndim == 4:
        if images.shape[1:3] != tuple(size) or images.shape[-1] != 3:
            raise ValueError(
                f"a batch must have shape (N, {size[0]}, {size[1]}, 3) for this model; got "
                f"{images.shape}. Pass single images (any size) to have them resized")
        if len(images) == 0:
            raise ValueError("the batch is empty")
        batch = images.astype(np.float32)
        if not np.all(np.isfinite(batch)):
            raise ValueError("the batch contains NaN or infinite values")
        return batch, False
    if (isinstance(images, np.ndarray) and images.ndim == 3 and images.shape[-1] == 3
            and np.issubdtype(images.dtype, np.floating) and images.shape[:2] == tuple(size)):
        # A float image already at the model's size keeps its exact values
        # (an adversarial image's small perturbation must not be rounded away).
        return to_float_pixels(images)[None], True
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("the list of images is empty")
        singles = [as_batch(image, size, fit=fit) for image in images]
        if not all(single for _, single in singles):
            raise ValueError("a list must hold single images, not batches")
        return np.concatenate([batch for batch, _ in singles]), False
    return prepare(images, size, fit=fit), True


# --------------------------------------------------------------------------
# Augmented views: more training images from a few photos
# --------------------------------------------------------------------------

def augment(image, count: int, *, size, scale=(0.5, 1.0), flip: bool = True,
            jitter: float = 0.2, seed: int = 0) -> np.ndarray:
    """``count`` random views of one photo: crops, mirror images and colour changes.

    Each view is a square crop whose side is a random share of the photo's
    shorter side (uniform in ``scale``) at a random place, resized to ``size``
    (bilinear), mirrored left-right with probability 1/2 when ``flip``, and
    colour-jittered: contrast, saturation and brightness each multiplied by a
    factor uniform in [1 - jitter, 1 + jitter] (contrast about the view's mean
    grey, saturation about each pixel's luminance), then clipped to 0..255.
    The same ``seed`` gives the same views. Returns float32 (count, H, W, 3).
    """
    pixels = load_image(image)
    count = positive_int(count, "count")
    if count > MAX_VIEWS:
        raise ValueError(f"count must be at most {MAX_VIEWS} views of one photo, got {count}")
    height, width = target_size(size, "size")
    try:
        low, high = (float(v) for v in scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale must be two numbers (smallest, largest share of the shorter "
                        f"side), not {scale!r}") from None
    if not 0 < low <= high <= 1:
        raise ValueError(f"scale must satisfy 0 < smallest <= largest <= 1, got {scale!r}")
    flip = check_bool(flip, "flip")
    jitter = check_number(jitter, "jitter", minimum=0, maximum=1)
    rng = np.random.default_rng(check_seed(seed, allow_none=False))
    rows, cols = pixels.shape[:2]
    shorter = min(rows, cols)
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    views = np.empty((count, height, width, 3), dtype=np.float32)
    for i in range(count):
        side = max(1, int(round(shorter * rng.uniform(low, high))))
        top = int(rng.integers(0, rows - side + 1))
        left = int(rng.integers(0, cols - side + 1))
        crop = Image.fromarray(pixels[top:top + side, left:left + side])
        view = np.asarray(crop.resize((width, height), Image.BILINEAR), dtype=np.float32)
        if flip and rng.random() < 0.5:
            view = view[:, ::-1]
        contrast, saturation, brightness = rng.uniform(1 - jitter, 1 + jitter, size=3)
        grey = view @ luma
        view = grey.mean() + (view - grey.mean()) * contrast
        grey = view @ luma
        view = grey[..., None] + (view - grey[..., None]) * saturation
        views[i] = np.clip(view * brightness, 0, 255)
    return views
