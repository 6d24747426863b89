"""Photos in, model-ready batches out.

Sample photos ship inside packages the course already installs, so they
work offline: scikit-image (chelsea the cat, coffee, astronaut, rocket),
scikit-learn (china, flower) and matplotlib (grace_hopper). ``cat_and_coffee``
puts the cat and the espresso side by side, for class-discrimination lessons.

Any image source works: a sample name, a file path, a PIL image, or an
array (uint8 0..255 or float 0..1 / 0..255; gray, RGB or RGBA; any size).
:func:`load_image` returns an RGB uint8 array; :func:`prepare` resizes and
batches it for a model (float32 pixels in 0..255, the model's own
preprocessing does the rest).
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = [
    "SAMPLES",
    "MAX_PIXELS",
    "sample_names",
    "load_image",
    "prepare",
    "as_batch",
    "resize_image",
    "to_uint8",
    "to_float_pixels",
]

MAX_PIXELS = 64_000_000  # 8000 x 8000; larger inputs are refused (decompression bombs)
FITS = ("crop", "squash", "pad")


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
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            _check_pixels(height, width, f"image file '{path}'")
            return _from_pil(opened)
    except UnidentifiedImageError:
        raise ValueError(
            f"'{path}' is not an image PIL can read (PNG, JPEG, BMP, GIF, TIFF, WebP...)") from None
    except Image.DecompressionBombError as error:
        raise ValueError(f"image file '{path}' is refused as a decompression bomb: {error}") from None
    except OSError as error:
        raise ValueError(f"image file '{path}' is damaged or truncated: {error}") from None


def _from_pil(image: Image.Image) -> np.ndarray:
    width, height = image.size
    _check_pixels(height, width, "the PIL image")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
    elif image.mode != "RGB":
        image = image.convert("RGB")
    return to_uint8(np.asarray(image))


def to_uint8(array) -> np.ndarray:
    """An RGB uint8 (H, W, 3) image from a gray/RGB/RGBA, uint8/float array.

    Floats in 0..1 are scaled by 255; floats up to 255 are taken as pixels.
    RGBA is composited on white (transparent areas become white).
    """
    array = np.asarray(array)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                     or array.dtype == np.bool_):
        raise TypeError(f"an image array must hold numbers, not {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ValueError(
            f"an image array must be (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA; got shape "
            f"{array.shape}" + (" (a batch? pass one image at a time)" if array.ndim == 4 else ""))
    _check_pixels(array.shape[0], array.shape[1], "the image array")
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)):
            raise ValueError("the image array contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"float image values must lie in 0..1 or 0..255; got {low:.3g}..{high:.3g}")
        scale = 255.0 if high <= 1.0 else 1.0
        array = np.clip(np.round(array * scale), 0, 255).astype(np.uint8)
    elif array.dtype != np.uint8:
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(f"integer image values must lie in 0..255; got {low}..{high}")
        array = array.astype(np.uint8)
    if array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        rgb = array[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        array = np.round(rgb).astype(np.uint8)
    return np.ascontiguousarray(array)


def to_float_pixels(array) -> np.ndarray:
    """A float32 (H, W, 3) RGB image in 0..255 from floats in 0..1 or 0..255, unrounded."""
    array = np.asarray(array, dtype=np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("the image array contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 255:
        raise ValueError(f"float image values must lie in 0..1 or 0..255; got {low:.3g}..{high:.3g}")
    return array * 255.0 if high <= 1.0 else array


def load_image(source) -> np.ndarray:
    """An RGB uint8 (H, W, 3) array from a sample name, path, PIL image or array."""
    if isinstance(source, Image.Image):
        return _from_pil(source)
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        if isinstance(source, str) and text in SAMPLES:
            return to_uint8(SAMPLES[text][1]())
        path = Path(text).expanduser()
        if path.exists() or os.sep in text or "." in Path(text).name:
            return _from_file(path)
        close = difflib.get_close_matches(text, list(SAMPLES), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(
            f"{text!r} is neither a sample photo nor an existing file.{hint} "
            f"Samples: {', '.join(SAMPLES)}")
    if isinstance(source, np.ndarray) or hasattr(source, "__array__"):
        return to_uint8(source)
    raise TypeError(
        f"cannot read an image from {type(source).__name__}; pass a sample name, a file path, "
        "a PIL image or a numpy array")


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


def _target_size(model_or_size):
    if model_or_size is None:
        raise ValueError("prepare needs a model or a size")
    if hasattr(model_or_size, "inputs"):
        from .models import input_size

        return input_size(model_or_size)
    if np.isscalar(model_or_size):
        return int(model_or_size), int(model_or_size)
    return tuple(int(v) for v in model_or_size)


def prepare(source, model_or_size, *, fit: str = "crop") -> np.ndarray:
    """One image as a model-ready batch: float32 (1, H, W, 3), pixels in 0..255."""
    image = load_image(source)
    return resize_image(image, _target_size(model_or_size), fit)[None].astype(np.float32)


def as_batch(images, model_or_size, *, fit: str = "crop") -> tuple[np.ndarray, bool]:
    """Images for a model as ``(batch, single)``.

    ``images`` is one image in any accepted form, a list of them, or an
    already-prepared float batch (N, H, W, 3) of the model's size.
    ``single`` tells the caller to return one map rather than a batch.
    """
    size = _target_size(model_or_size)
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
