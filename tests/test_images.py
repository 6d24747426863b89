"""Images in any form become RGB uint8; bad input gets a clear message."""
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

import helpers as h
from helpers.images import resize_image, to_float_pixels


@pytest.mark.parametrize("name", h.sample_names())
def test_every_sample_loads_offline(name):
    image = h.load_image(name)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[-1] == 3
    assert min(image.shape[:2]) >= 200 and image.std() > 10


def test_composite_has_the_cat_left_and_the_coffee_right():
    image = h.load_image("cat_and_coffee")
    assert image.shape == (448, 448, 3)
    left, right = image[:, :224], image[:, 224:]
    assert not np.array_equal(left, right)


def test_gray_rgba_float_pil_and_path_all_work(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    gray = rgb[..., 0]
    np.testing.assert_array_equal(h.load_image(gray), np.stack([gray] * 3, -1))
    np.testing.assert_array_equal(h.load_image(rgb / 255.0), rgb)
    np.testing.assert_array_equal(h.load_image(rgb.astype(np.float64)), rgb)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(h.load_image(rgba), rgb)
    transparent = rgba.copy()
    transparent[..., 3] = 0
    assert (h.load_image(transparent) == 255).all()  # composited on white
    np.testing.assert_array_equal(h.load_image(Image.fromarray(rgb)), rgb)
    path = tmp_path / "photo.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(h.load_image(path), rgb)
    np.testing.assert_array_equal(h.load_image(str(path)), rgb)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    assert h.load_image(tmp_path / "gray.png").shape == (20, 30, 3)


@pytest.mark.parametrize("fit", ["crop", "squash", "pad"])
def test_prepare_gives_a_float_batch_of_the_model_size(fit):
    batch = h.prepare("rocket", (224, 200), fit=fit)
    assert batch.shape == (1, 224, 200, 3) and batch.dtype == np.float32
    assert 0 <= batch.min() and batch.max() <= 255


def test_crop_keeps_the_centre_and_pad_keeps_everything():
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :50] = 255  # a white band on the far left
    assert resize_image(image, 100, "crop")[:, :10].max() == 0
    padded = resize_image(image, 100, "pad")
    assert padded[50, 0].tolist() == [255, 255, 255] and padded[0, 50].tolist() == [128] * 3


def test_as_batch_accepts_a_list_a_batch_and_a_float_image_unrounded(tiny_cnn):
    batch, single = h.as_batch(["coffee", "chelsea"], tiny_cnn)
    assert batch.shape == (2, 32, 32, 3) and not single
    again, single = h.as_batch(batch, tiny_cnn)
    assert single is False and np.array_equal(again, batch)
    exact = np.full((32, 32, 3), 100.4, np.float32)
    one, single = h.as_batch(exact, tiny_cnn)
    assert single and one.shape == (1, 32, 32, 3) and one[0, 0, 0, 0] == pytest.approx(100.4)
    listed, single = h.as_batch([exact, "coffee"], tiny_cnn)
    assert not single and listed.shape == (2, 32, 32, 3)
    assert listed[0, 0, 0, 0] == pytest.approx(100.4)  # floats in a list stay unrounded too
    with pytest.raises(ValueError, match="single images"):
        h.as_batch([batch], tiny_cnn)


def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _bomb(tmp_path):
    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(path)  # a few kB on disk, 81 megapixels decoded
    return path


def _truncated_jpeg(tmp_path):
    path = tmp_path / "cut.jpg"
    Image.fromarray(h.load_image("coffee")).save(path, quality=90)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return path


BAD_INPUTS = [
    ("missing file", lambda p: p / "nope.jpg", FileNotFoundError, "no image file at '.*nope.jpg'"),
    ("folder", lambda p: p, IsADirectoryError, "'.*' is a folder"),
    ("not an image", lambda p: _write(p, "notes.txt", b"hello"), ValueError,
     "'.*notes.txt' is not an image PIL can read"),
    ("truncated jpeg", _truncated_jpeg, ValueError,
     "image file '.*cut.jpg' is damaged or truncated"),
    ("decompression bomb file", _bomb, ValueError,
     "image file '.*bomb.png' has .* more than the .* accepted"),
    ("unknown sample", lambda p: "chelsee", ValueError,
     "'chelsee' is neither .* Did you mean 'chelsea'"),
    ("empty array", lambda p: np.zeros((0, 5, 3), np.uint8), ValueError, "the image array is empty"),
    ("NaN", lambda p: np.full((4, 4, 3), np.nan), ValueError, "the image array contains NaN or infinite"),
    ("five channels", lambda p: np.zeros((4, 4, 5)), ValueError,
     r"the image array must be .*\(H, W, 3\) RGB"),
    ("a batch given as one image", lambda p: np.zeros((2, 4, 4, 3)), ValueError,
     r"the image array must be .*got shape \(2, 4, 4, 3\) \(a batch\?"),
    ("float out of range", lambda p: np.full((4, 4, 3), 300.0), ValueError,
     "the image array: float image values must lie in 0..1 or 0..255"),
    ("negative integers", lambda p: np.full((4, 4), -3), ValueError,
     "the image array: integer image values must lie in 0..255, got -3..-3"),
    ("12-bit values in an int64 array", lambda p: np.full((4, 4), 4095), ValueError,
     "the image array: .* 0..255, got 4095..4095. A 16-bit image should be a uint16 array"),
    ("uint32 beyond 255", lambda p: np.full((4, 4), 70000, np.uint32), ValueError,
     "the image array: .* 0..255, got 70000..70000"),
    ("strings", lambda p: np.array([["a", "b"]]), TypeError,
     "the image array must hold numbers .* not strings"),
    ("bytes", lambda p: np.array([[b"a", b"b"]]), TypeError, "the image array .* not bytes"),
    ("complex", lambda p: np.ones((4, 4, 3), np.complex128), TypeError,
     r"the image array must hold numbers \(bool, integers or real floats\), not complex numbers"),
    ("objects", lambda p: np.full((4, 4), None, dtype=object), TypeError,
     "the image array .* not Python objects"),
    ("dates", lambda p: np.full((4, 4), np.datetime64("2026-12-01")), TypeError,
     "the image array .* not dates"),
    ("time spans", lambda p: np.full((4, 4), np.timedelta64(3, "s")), TypeError,
     "the image array .* not time spans"),
    ("structured records", lambda p: np.zeros((4, 4), dtype=[("r", "u1"), ("g", "u1")]), TypeError,
     "the image array .* not structured records"),
    ("a ragged list in an array wrapper", lambda p: _ArrayLike([[1, 2], [3]]), TypeError,
     "the image array cannot be read as an array of numbers"),
    ("a 32-bit PIL image beyond 8 bits", lambda p: Image.fromarray(np.full((4, 4), 4095, np.int32)),
     ValueError, r"the PIL image \(mode I\): integer image values must lie in 0..255, got 4095"),
    ("a float PIL image out of range", lambda p: Image.fromarray(np.full((4, 4), 300, np.float32)),
     ValueError, r"the PIL image \(mode F\): float image values must lie in 0..1 or 0..255"),
    ("absurd array", lambda p: np.zeros((9000, 9000), np.uint8), ValueError,
     "the image array has 9000x9000 .* decompression bomb"),
    ("wrong type", lambda p: 42, TypeError, "cannot read an image from int; pass a photo name"),
]


class _ArrayLike:
    """Has ``__array__`` (as torch tensors do) but holds something numpy cannot shape."""

    def __init__(self, rows):
        self.rows = rows

    def __array__(self, dtype=None, copy=None):
        return np.array(self.rows)


@pytest.mark.parametrize("label, make, error, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(tmp_path, label, make, error, message):
    with pytest.raises(error, match=message):
        h.load_image(make(tmp_path))


def test_bad_fit_and_batches(tiny_cnn):
    with pytest.raises(ValueError, match="fit must be one of crop, squash, pad"):
        h.prepare("coffee", 32, fit="stretch")
    with pytest.raises(ValueError, match=r"a batch must have shape \(N, 32, 32, 3\)"):
        h.as_batch(np.zeros((2, 64, 64, 3), np.float32), tiny_cnn)
    with pytest.raises(ValueError, match="the list of images is empty"):
        h.as_batch([], tiny_cnn)
    with pytest.raises(ValueError, match="the batch contains NaN"):
        h.as_batch(np.full((1, 32, 32, 3), np.nan, np.float32), tiny_cnn)


# ---------------------------------------------------------------------------
# Photos as users have them: sideways phone photos, 16-bit files
# ---------------------------------------------------------------------------

def _marked_photo():
    """20 x 30 gray with a red 8 x 8 block in the stored top-left corner."""
    photo = np.full((20, 30, 3), 128, np.uint8)
    photo[:8, :8] = (255, 0, 0)
    return photo


def _is_red(pixel):
    return pixel[0] > 200 and pixel[1] < 70 and pixel[2] < 70


# Orientation 6: stored on its side, shown turned 90 degrees clockwise (the stored
# top-left lands top-right); 8: counter-clockwise (bottom-left); 3: upside down.
@pytest.mark.parametrize("orientation, shape, red_at", [
    (6, (30, 20, 3), (2, -3)), (8, (30, 20, 3), (-3, 2)), (3, (20, 30, 3), (-3, -3))])
def test_exif_orientation_turns_the_photo_upright(tmp_path, orientation, shape, red_at):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "phone.jpg"
    Image.fromarray(_marked_photo()).save(path, quality=95, exif=exif)
    with Image.open(path) as opened:
        from_pil = h.load_image(opened)
    for image in (h.load_image(path), from_pil):
        assert image.shape == shape
        assert _is_red(image[red_at]) and not _is_red(image[2, 2])


def test_a_photo_without_orientation_is_unchanged_and_a_pil_image_is_not_modified(tmp_path):
    photo = _marked_photo()
    Image.fromarray(photo).save(tmp_path / "plain.png")
    np.testing.assert_array_equal(h.load_image(tmp_path / "plain.png"), photo)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(photo).save(tmp_path / "turned.png", exif=exif)
    with Image.open(tmp_path / "turned.png") as opened:
        assert h.load_image(opened).shape == (30, 20, 3)
        assert opened.size == (30, 20)  # the caller's image keeps its own orientation


def test_a_damaged_exif_block_leaves_the_photo_as_stored(tmp_path, monkeypatch):
    def broken_exif(image, **_):
        raise struct.error("required argument is not an integer")  # what Pillow raises on some
    monkeypatch.setattr(ImageOps, "exif_transpose", broken_exif)
    np.testing.assert_array_equal(h.load_image(Image.fromarray(_marked_photo())), _marked_photo())


GRADIENT_16 = (np.arange(256) * 257).astype(np.uint16)  # 0..65535; 255/65535 scales it to 0..255


def _png_16_bit_rgb(path, rgb):
    """A 16-bit colour PNG, written by hand: PIL cannot write one."""
    height, width, _ = rgb.shape
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    return path


def _gradient_file(tmp_path, kind):
    gray = np.tile(GRADIENT_16, (4, 1))
    if kind == "png":
        Image.fromarray(gray).save(tmp_path / "g.png")  # mode I;16
        return tmp_path / "g.png"
    if kind == "tiff":
        Image.fromarray(gray).save(tmp_path / "g.tif")
        return tmp_path / "g.tif"
    if kind == "big-endian tiff":
        Image.fromarray(gray.astype(">u2")).save(tmp_path / "gb.tif")  # mode I;16B
        return tmp_path / "gb.tif"
    return _png_16_bit_rgb(tmp_path / "rgb.png", np.stack([gray] * 3, axis=-1))


@pytest.mark.parametrize("kind", ["png", "tiff", "big-endian tiff", "colour png"])
def test_16_bit_files_load_as_a_full_gradient_not_saturated(tmp_path, kind):
    image = h.load_image(_gradient_file(tmp_path, kind))
    assert image.shape == (4, 256, 3)
    np.testing.assert_array_equal(image[0, :, 0], np.arange(256))  # PIL's convert would clip to 255
    assert (image == 255).mean() < 0.01
    assert (image[..., 0] == image[..., 2]).all()


def test_16_bit_and_32_bit_pil_images():
    gradient = np.tile(GRADIENT_16, (2, 1))
    for pil in (Image.fromarray(gradient), Image.fromarray(gradient.astype(">u2"))):
        assert pil.mode in ("I;16", "I;16B")
        np.testing.assert_array_equal(h.load_image(pil)[0, :, 1], np.arange(256))
    eight_bit = np.tile(np.arange(256, dtype=np.int32), (2, 1))
    assert Image.fromarray(eight_bit).mode == "I"
    np.testing.assert_array_equal(h.load_image(Image.fromarray(eight_bit))[1, :, 0], np.arange(256))
    unit = Image.fromarray((np.arange(256, dtype=np.float32) / 255)[None])
    assert unit.mode == "F"
    np.testing.assert_array_equal(h.load_image(unit)[0, :, 0], np.arange(256))
    pixels = Image.fromarray(np.arange(256, dtype=np.float32)[None])
    np.testing.assert_array_equal(h.load_image(pixels)[0, :, 2], np.arange(256))


def test_integer_arrays_follow_their_bit_depth():
    gradient = np.tile(GRADIENT_16, (2, 1))
    np.testing.assert_array_equal(h.load_image(gradient)[0, :, 0], np.arange(256))
    np.testing.assert_array_equal(h.load_image(gradient.astype(">u2"))[0, :, 0], np.arange(256))
    rgb16 = np.stack([gradient, gradient[:, ::-1], np.zeros_like(gradient)], axis=-1)
    image = h.load_image(rgb16)
    assert image[0, 0].tolist() == [0, 255, 0] and image[0, -1].tolist() == [255, 0, 0]
    # uint16 is 16-bit whatever its values: 255 in 16 bits is almost black.
    assert h.load_image(np.full((2, 2), 255, np.uint16)).max() == 1
    pixels = np.tile(np.arange(256), (2, 1))
    for dtype in (np.int16, np.int32, np.uint32, np.int64, np.uint64):
        np.testing.assert_array_equal(h.load_image(pixels.astype(dtype))[0, :, 0], np.arange(256))
    mask = np.zeros((2, 2), bool)
    mask[0, 0] = True
    assert h.load_image(mask)[..., 0].tolist() == [[255, 0], [0, 0]]
    np.testing.assert_array_equal(h.load_image(np.ones((2, 2), np.float16)), 255)


def test_float_pixels_keep_16_bit_precision_and_refuse_what_is_not_a_number():
    exact = to_float_pixels(np.array([[0, 128, 257, 65535]], np.uint16))
    np.testing.assert_allclose(exact, [[0, 128 * 255 / 65535, 1.0, 255.0]], rtol=1e-6)
    assert exact.dtype == np.float32
    np.testing.assert_array_equal(to_float_pixels(np.array([[0, 1]], np.uint8)), [[0, 1]])
    np.testing.assert_allclose(to_float_pixels(np.array([[0.5]])), [[127.5]])
    with pytest.raises(TypeError, match="the image array must hold numbers .* not complex numbers"):
        to_float_pixels(np.ones((2, 2, 3), np.complex64))
    with pytest.raises(ValueError, match="the image array: integer image values must lie in 0..255"):
        to_float_pixels(np.full((2, 2, 3), 4095, np.int32))
    with pytest.raises(ValueError, match="float image values must lie in 0..1 or 0..255"):
        to_float_pixels(np.full((2, 2, 3), -1.0))
