"""The photo collection, the photo picker and the colour-map convention."""

from __future__ import annotations

import datetime
import io
import json

import ipywidgets as widgets
import matplotlib
import numpy as np
import pytest
from PIL import Image

import helpers as h
from helpers.photos import PHOTOS_DIR

matplotlib.use("Agg")

LICENCES = ("CC0-1.0", "CC-BY-", "CC-BY-SA-", "public-domain", "public domain")


def _png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def _upload_entry(name, content):
    """One file as ipywidgets 8's FileUpload holds it."""
    return {"name": name, "type": "image/png", "size": len(content),
            "content": memoryview(content),
            "last_modified": datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)}


# -- the collection ---------------------------------------------------------------------------

def test_collection_is_large_documented_and_loadable():
    names = h.photo_collection()
    assert len(names) >= 40
    assert not set(names) & set(h.sample_names())  # sample names keep their meaning
    manifest = json.loads((PHOTOS_DIR / "photos.json").read_text())
    readme = (PHOTOS_DIR / "README.md").read_text()
    total = 0
    for name in names:
        entry = manifest[name]
        assert entry["licence"].startswith(LICENCES), (name, entry["licence"])
        assert entry["package"] and entry["version"] and entry["file"] and entry["author"]
        assert f"| `{name}` |" in readme
        image = h.load_image(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
        assert 160 <= min(image.shape[:2]) <= 288
        total += (PHOTOS_DIR / f"{name}.jpg").stat().st_size
    assert total < 5_000_000


def test_the_eight_samples_still_load_by_name():
    for name in h.sample_names():
        assert h.load_image(name).shape[2] == 3


def test_collection_photos_excludes_shuffles_and_is_reproducible():
    everything = h.collection_photos()
    assert sorted(everything) == sorted(h.photo_collection())
    some = h.collection_photos(10, exclude="koala", seed=3)
    assert len(some) == len(set(some)) == 10 and "koala" not in some
    assert some == h.collection_photos(10, exclude=["koala"], seed=3)
    assert some != h.collection_photos(10, exclude=["koala"], seed=4)
    assert h.collection_photos(exclude=["koala", "koala"]) == h.collection_photos(exclude="koala")
    assert h.collection_photos(exclude=(name for name in ["koala"])) == \
        h.collection_photos(exclude="koala")  # a generator is read once
    left = h.collection_photos(exclude=["koala", "chelsea", "goldfish"])
    assert len(left) == len(everything) - 2


@pytest.mark.parametrize("kwargs, error, message", [
    ({"n": 0}, ValueError, "n must be a positive integer"),
    ({"n": 2.5}, TypeError, "n must be a positive integer, not float"),
    ({"n": 1000}, ValueError, "n=1000 is more than the .* collection photos"),
    ({"exclude": 3}, TypeError, "exclude must be a photo name or a list of names"),
    ({"exclude": [np.zeros((2, 2, 3))]}, TypeError, "exclude must hold photo names"),
    ({"seed": -1}, ValueError, "seed must be a non-negative integer"),
])
def test_collection_photos_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        h.collection_photos(**kwargs)


def test_unknown_name_suggests_collection_photos():
    with pytest.raises(ValueError, match="'koalla' is neither .* Did you mean 'koala'"):
        h.load_image("koalla")


# -- bytes: the upload's loader ---------------------------------------------------------------

def test_bytes_load_like_the_same_file(tmp_path):
    array = np.random.default_rng(0).integers(0, 256, (12, 17, 3), dtype=np.uint8)
    content = _png(array)
    (tmp_path / "a.png").write_bytes(content)
    np.testing.assert_array_equal(h.load_image(content), h.load_image(tmp_path / "a.png"))
    np.testing.assert_array_equal(h.load_image(memoryview(content)), array)


def test_bytes_are_turned_upright_by_exif():
    array = np.zeros((10, 20, 3), np.uint8)
    array[:, :5] = 255  # white on the left as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", exif=exif, quality=95)
    shown = h.load_image(buffer.getvalue())
    assert shown.shape[:2] == (20, 10)
    assert shown[:5].mean() > 200 and shown[-5:].mean() < 50  # the left edge is now the top


def test_16_bit_bytes_are_scaled_not_clipped():
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(buffer, "PNG")
    assert h.load_image(buffer.getvalue()).max() == 255
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4), 32768, np.uint16)).save(buffer, "PNG")
    assert h.load_image(buffer.getvalue()).max() == 128


def test_bad_bytes_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="the image bytes is empty"):
        h.load_image(b"")
    with pytest.raises(ValueError, match="the image bytes is not an image PIL can read"):
        h.load_image(b"hello, not a photo")
    with pytest.raises(ValueError, match="damaged or truncated"):
        h.load_image(_png(np.zeros((64, 64, 3)))[:-40])
    bomb = io.BytesIO()
    Image.new("1", (9000, 9000)).save(bomb, "PNG")  # 8 MB of pixels compress to a few KB
    with pytest.raises(ValueError, match="9000x9000 .* decompression bomb"):
        h.load_image(bomb.getvalue())
    import helpers.images as images

    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    with pytest.raises(ValueError, match="more than the 100 accepted"):
        h.load_image(_png(np.random.default_rng(0).integers(0, 256, (32, 32, 3))))


# -- the picker -------------------------------------------------------------------------------

def test_picker_offers_samples_and_collection():
    picker = h.photo_picker()
    assert picker.value == "chelsea" and picker.label == "chelsea"
    keys = [key for _, key in picker.dropdown.options]
    assert keys[:len(h.sample_names())] == h.sample_names()
    assert set(h.photo_collection()) <= set(keys)
    picker.dropdown.value = "koala"
    assert picker.value == "koala" and picker.label == "koala"
    assert isinstance(picker, widgets.ValueWidget)


def test_picker_takes_a_path_or_array_from_the_parameters_cell(tmp_path):
    array = np.full((20, 30, 3), 7, np.uint8)
    (tmp_path / "my_dog.png").write_bytes(_png(array))
    for given, label in ((str(tmp_path / "my_dog.png"), "my_dog"), (tmp_path / "my_dog.png", "my_dog"),
                         (array, "your photo"), (Image.fromarray(array), "your photo")):
        picker = h.photo_picker(given)
        np.testing.assert_array_equal(picker.value, array)
        assert picker.label == label
        assert picker.dropdown.options[0][1] == "given"
    assert h.photo_picker("coffee").value == "coffee"  # a name stays a name


def test_picker_upload_flows_into_value_and_observers():
    picker = h.photo_picker("coffee")
    seen = []
    picker.observe(lambda change: seen.append(picker.label), names="value")
    array = np.full((24, 36, 3), 200, np.uint8)
    picker.upload.value = (_upload_entry("holiday.png", _png(array)),)
    np.testing.assert_array_equal(picker.value, array)
    assert picker.label == "holiday" and seen[-1] == "holiday"
    picker.dropdown.value = "coffee"  # and back to a bundled photo
    assert picker.value == "coffee"
    picker.dropdown.value = "upload-1"  # the upload stays on offer
    np.testing.assert_array_equal(picker.value, array)


def test_picker_refuses_a_bad_upload_and_keeps_the_photo():
    picker = h.photo_picker("coffee")
    picker.upload.value = (_upload_entry("notes.png", b"not an image"),)
    assert picker.value == "coffee"
    assert "Upload refused" in picker.children[1].value and "notes.png" in picker.children[1].value
    with pytest.raises(ValueError, match="the uploaded file 'x.png' is empty"):
        picker.add_upload(b"", "x.png")
    with pytest.raises(TypeError, match="content must be the file's bytes, not str"):
        picker.add_upload("photo.png")


def test_picker_drives_interactive_output():
    picker = h.photo_picker()
    calls = []
    widgets.interactive_output(lambda image: calls.append(image), {"image": picker})
    picker.dropdown.value = "rocket"
    picker.add_upload(_png(np.zeros((8, 8, 3))), "black.png")
    assert calls[0] == "chelsea" and calls[1] == "rocket" and calls[-1].shape == (8, 8, 3)


@pytest.mark.parametrize("value, kwargs, error, message", [
    (42, {}, TypeError, "value must be None, a photo name, a file path, a PIL image or an array"),
    ("no_such_photo.jpg", {}, FileNotFoundError, "no image file at 'no_such_photo.jpg'"),
    ("chelsee", {}, ValueError, "Did you mean 'chelsea'"),
    (np.zeros((4, 4, 5)), {}, ValueError, r"\(H, W, 3\) RGB"),
    (None, {"description": 3}, TypeError, "description must be a string, not int"),
])
def test_picker_bad_value(value, kwargs, error, message):
    with pytest.raises(error, match=message):
        h.photo_picker(value, **kwargs)


# -- colour maps ------------------------------------------------------------------------------

def test_colour_maps_follow_the_sign():
    import matplotlib.pyplot as plt

    assert h.map_cmap(np.array([[0.0, 2.0]])) == (h.UNSIGNED_CMAP, False)
    assert h.map_cmap(np.array([[-0.1, 2.0]])) == (h.SIGNED_CMAP, True)
    assert h.map_cmap(np.array([[0.0, 2.0]]), symmetric=True) == (h.SIGNED_CMAP, True)
    assert h.map_cmap(np.array([[-1.0, 2.0]]), cmap="gray") == ("gray", True)
    image = np.zeros((4, 4, 3), np.uint8)
    ax = h.show(image, np.linspace(0, 1, 16).reshape(4, 4))
    assert ax.images[-1].get_cmap().name == h.UNSIGNED_CMAP
    signed = np.linspace(-1, 3, 16).reshape(4, 4)
    ax = h.show(image, signed)
    assert ax.images[-1].get_cmap().name == h.SIGNED_CMAP
    assert ax.images[-1].get_clim() == (-3.0, 3.0)  # symmetric: zero in the middle
    fig = h.show_grid([image, image], [np.ones((4, 4)), signed])
    assert [a.images[-1].get_cmap().name for a in fig.axes[:2]] == [h.UNSIGNED_CMAP,
                                                                   h.SIGNED_CMAP]
    plt.close("all")


def test_colour_maps_are_perceptual_and_diverging():
    lightness = matplotlib.colormaps[h.UNSIGNED_CMAP](np.linspace(0, 1, 64))[:, :3] @ [0.3, 0.59,
                                                                                     0.11]
    assert np.all(np.diff(lightness) > 0)  # monotonic brightness: reads as more / less
    diverging = matplotlib.colormaps[h.SIGNED_CMAP](np.linspace(0, 1, 65))[:, :3] @ [0.3, 0.59,
                                                                                   0.11]
    assert diverging.argmax() == 32  # brightest (white) exactly at zero
    assert abs(diverging[0] - diverging[-1]) < 0.15  # both ends equally strong


def test_overlay_puts_zero_of_a_signed_map_in_the_middle():
    photo = np.zeros((1, 3, 3), np.uint8)
    blended = h.overlay(photo, np.array([[-2.0, 0.0, 1.0]]), alpha=1.0)
    middle = np.array(matplotlib.colormaps[h.SIGNED_CMAP](0.5)[:3])
    np.testing.assert_allclose(blended[0, 1], middle, atol=1e-6)
    unsigned = h.overlay(photo, np.array([[0.0, 0.5, 1.0]]), alpha=1.0)
    np.testing.assert_allclose(unsigned[0, 2], matplotlib.colormaps[h.UNSIGNED_CMAP](1.0)[:3],
                               atol=1e-6)
    with pytest.raises(TypeError, match="symmetric must be True, False or None"):
        h.overlay(photo, np.zeros((1, 3)), symmetric="yes")
