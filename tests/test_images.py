"""Images in any form become RGB uint8; bad input gets a clear message."""
import numpy as np
import pytest
from PIL import Image

import helpers as h


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
    assert h.resize_image(image, 100, "crop")[:, :10].max() == 0
    padded = h.resize_image(image, 100, "pad")
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
    ("missing file", lambda p: p / "nope.jpg", FileNotFoundError, "no image file"),
    ("folder", lambda p: p, IsADirectoryError, "is a folder"),
    ("not an image", lambda p: _write(p, "notes.txt", b"hello"), ValueError,
     "not an image PIL can read"),
    ("truncated jpeg", _truncated_jpeg, ValueError, "damaged or truncated"),
    ("decompression bomb file", _bomb, ValueError, "more than the .* accepted"),
    ("unknown sample", lambda p: "chelsee", ValueError, "Did you mean 'chelsea'"),
    ("empty array", lambda p: np.zeros((0, 5, 3), np.uint8), ValueError, "empty"),
    ("NaN", lambda p: np.full((4, 4, 3), np.nan), ValueError, "NaN or infinite"),
    ("five channels", lambda p: np.zeros((4, 4, 5)), ValueError, r"\(H, W, 3\) RGB"),
    ("a batch given as one image", lambda p: np.zeros((2, 4, 4, 3)), ValueError, "a batch"),
    ("float out of range", lambda p: np.full((4, 4, 3), 300.0), ValueError, "0..1 or 0..255"),
    ("negative integers", lambda p: np.full((4, 4), -3), ValueError, "0..255"),
    ("strings", lambda p: np.array([["a", "b"]]), TypeError, "must hold numbers"),
    ("absurd array", lambda p: np.zeros((9000, 9000), np.uint8), ValueError, "decompression bomb"),
    ("wrong type", lambda p: 42, TypeError, "cannot read an image from int"),
]


@pytest.mark.parametrize("label, make, error, message", BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_gets_a_clear_error(tmp_path, label, make, error, message):
    with pytest.raises(error, match=message):
        h.load_image(make(tmp_path))


def test_bad_fit_and_batches(tiny_cnn):
    with pytest.raises(ValueError, match="fit must be one of crop, squash, pad"):
        h.prepare("coffee", 32, fit="stretch")
    with pytest.raises(ValueError, match=r"shape \(N, 32, 32, 3\)"):
        h.as_batch(np.zeros((2, 64, 64, 3), np.float32), tiny_cnn)
    with pytest.raises(ValueError, match="empty"):
        h.as_batch([], tiny_cnn)
    with pytest.raises(ValueError, match="NaN"):
        h.as_batch(np.full((1, 32, 32, 3), np.nan, np.float32), tiny_cnn)
