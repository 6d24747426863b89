"""Your own model: a fine-tuned classifier saved as .keras, loaded and explained.

Lesson 12 fine-tunes a new head on the course model nested as a frozen base, saves the model,
loads it back with ``h.load_model_file`` and runs every step of the course on the file. These
tests do the same with a small nested CNN built here (milliseconds instead of minutes):

* ``h.load_model_file`` gives back the model that was saved, and refuses what a file from
  outside must not be allowed to do: a symbolic link, a folder, a file over the size limit, a
  zip that claims too much, a zip without a Keras config, a ``Lambda`` layer's code;
* ``h.train_head`` trains only the layers after the base, and its first step is Adam's, checked
  against the cross-entropy's gradient written out in numpy;
* ``h.augment`` makes the views it documents (a full crop without jitter is the plain resize);
* the lesson's steps (the model report, the layer choice, the methods, the randomisation
  check, the interventions) run on the loaded file, and the randomisation check reaches
  inside the nested base.

``python tests/test_own_model.py my_model.keras`` writes the small model, for running the
lesson on a file: ``UNMASKING_CNNS_PARAMETERS='{"MODEL_PATH": "my_model.keras"}'``.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import helpers as h  # noqa: E402
from helpers import models  # noqa: E402
from helpers import shortcuts as sc  # noqa: E402
from helpers.images import resize_image  # noqa: E402

import keras  # noqa: E402

SIZE = 32
CLASSES = 3


def small_base(seed: int = 0):
    """A small CNN of the course's contract without a classifier: 0..255 pixels in, features out."""
    keras.utils.set_random_seed(seed)
    pixels = keras.Input((SIZE, SIZE, 3), name="base_pixels")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="scale")(pixels)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(x)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D(name="features")(x)
    base = keras.Model(pixels, x, name="base")
    base.trainable = False
    return base


def small_tuned_model(base=None, *, head="softmax", dropout: float = 0.2, name="mine"):
    """The lesson's recipe in miniature: the frozen base nested as one layer, a new head."""
    base = base or small_base()
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = base(pixels, training=False)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    units, activation = (1, "sigmoid") if head == "sigmoid" else (CLASSES, head)
    scores = keras.layers.Dense(units, activation=activation, name="classes")(x)
    return keras.Model(pixels, scores, name=name)


def coloured_images(count_per_class: int = 8, seed: int = 0):
    """Images whose class is their dominant colour (red, green, blue), with noise."""
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for label in range(CLASSES):
        batch = rng.uniform(0, 120, (count_per_class, SIZE, SIZE, 3))
        batch[..., label] += 120
        images.append(batch)
        labels += [label] * count_per_class
    return np.concatenate(images).astype(np.float32), np.array(labels)


def write_small_model(path) -> Path:
    """A trained small nested model saved as ``path`` (a .keras file)."""
    model = small_tuned_model()
    images, labels = coloured_images()
    h.train_head(model, images, labels, epochs=40, learning_rate=0.05, seed=0)
    model.save(path)
    return Path(path)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return write_small_model(tmp_path_factory.mktemp("own") / "mine.keras")


@pytest.fixture(scope="module")
def loaded(saved):
    return h.load_model_file(saved)


# ---------------------------------------------------------------- loading a file

def test_the_loaded_file_is_the_saved_model(saved, loaded):
    images, labels = coloured_images(seed=1)
    original = keras.models.load_model(saved, compile=False)  # Keras itself, as a reference
    np.testing.assert_allclose(h.predict_logits(loaded, images),
                               h.predict_logits(original, images), rtol=1e-5, atol=1e-5)
    assert loaded.name == "mine" and [layer.name for layer in loaded.layers][1] == "base"
    predicted = h.predict_logits(loaded, images).argmax(axis=1)
    assert np.mean(predicted == labels) == 1.0  # the colours are learned


def test_a_link_a_folder_and_other_files_are_refused(saved, tmp_path):
    link = tmp_path / "link.keras"
    link.symlink_to(saved)
    with pytest.raises(ValueError, match="symbolic link"):
        h.load_model_file(link)
    folder = tmp_path / "folder.keras"
    folder.mkdir()
    with pytest.raises(ValueError, match="not a regular file"):
        h.load_model_file(folder)
    with pytest.raises(FileNotFoundError):
        h.load_model_file(tmp_path / "missing.keras")
    with pytest.raises(ValueError, match=r"\.keras file"):
        h.load_model_file(tmp_path / "weights.h5")
    with pytest.raises(TypeError, match="path"):
        h.load_model_file(3)
    with pytest.raises(TypeError, match="custom_objects"):
        h.load_model_file(saved, custom_objects=["layer"])
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty"):
        h.load_model_file(empty)
    text = tmp_path / "text.keras"
    text.write_text("not a zip")
    with pytest.raises(ValueError, match="not a zip"):
        h.load_model_file(text)
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    with pytest.raises(ValueError, match="without config.json"):
        h.load_model_file(no_config)


def test_sizes_are_bounded_before_keras_reads_anything(saved, monkeypatch):
    size = os.path.getsize(saved)
    monkeypatch.setattr(models, "MAX_MODEL_FILE_BYTES", size - 1)
    with pytest.raises(ValueError, match="more than"):
        h.load_model_file(saved)
    monkeypatch.setattr(models, "MAX_MODEL_FILE_BYTES", size)
    with zipfile.ZipFile(saved) as archive:
        unpacked = sum(member.file_size for member in archive.infolist())
    monkeypatch.setattr(models, "MAX_MODEL_UNPACKED_BYTES", unpacked - 1)
    with pytest.raises(ValueError, match="unpacks to"):
        h.load_model_file(saved)
    monkeypatch.setattr(models, "MAX_MODEL_UNPACKED_BYTES", unpacked)
    monkeypatch.setattr(models, "MAX_MODEL_MEMBERS", 1)
    with pytest.raises(ValueError, match="files"):
        h.load_model_file(saved)


def test_a_lambda_layer_is_not_deserialised(tmp_path):
    pixels = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0, name="code")(pixels)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(pixels, keras.layers.Dense(CLASSES)(x))
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="could not be loaded"):
        h.load_model_file(path)


# ---------------------------------------------------------------- training the head

def test_the_first_step_is_adams_on_the_cross_entropy_gradient():
    model = small_tuned_model(dropout=0.0)
    images, labels = coloured_images()
    base = model.get_layer("base")
    before_base = [w.copy() for w in base.get_weights()]
    kernel, bias = (w.astype(np.float64) for w in model.get_layer("classes").get_weights())
    rate = 0.01
    h.train_head(model, images, labels, epochs=1, batch_size=len(images), learning_rate=rate)
    # By hand: softmax cross-entropy averaged over the batch, its gradient, and Adam's first
    # step: m = (1 - b1) g, v = (1 - b2) g^2, step = rate * sqrt(1 - b2) / (1 - b1) * m /
    # (sqrt(v) + eps) = rate * g * sqrt(1 - b2) / (sqrt(1 - b2) |g| + eps).
    features = base.predict(images, verbose=0).astype(np.float64)
    scores = features @ kernel + bias
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    error = (p - np.eye(CLASSES)[labels]) / len(labels)
    eps, root = 1e-7, np.sqrt(1 - 0.999)
    for before, gradient, after in ((kernel, features.T @ error, model.get_layer("classes").kernel),
                                    (bias, error.sum(axis=0), model.get_layer("classes").bias)):
        expected = before - rate * gradient * root / (root * np.abs(gradient) + eps)
        np.testing.assert_allclose(np.asarray(after), expected, rtol=1e-4, atol=1e-6)
        assert np.abs(expected - before).max() > 1e-3  # the step moved the weights
    for old, new in zip(before_base, base.get_weights()):
        np.testing.assert_array_equal(old, new)


def test_training_is_seeded_and_its_loss_falls():
    images, labels = coloured_images()
    first, second = small_tuned_model(), small_tuned_model()
    losses = h.train_head(first, images, labels, epochs=30, learning_rate=0.05, seed=3)
    again = h.train_head(second, images, labels, epochs=30, learning_rate=0.05, seed=3)
    assert losses == pytest.approx(again, rel=1e-6) and losses[-1] < 0.75 * losses[0]
    np.testing.assert_allclose(first.get_layer("classes").kernel,
                               second.get_layer("classes").kernel, rtol=1e-6)


def test_a_base_shared_by_two_models_trains_each_head_alone():
    base = small_base()
    first, second = small_tuned_model(base, name="first"), small_tuned_model(base, name="second")
    untouched = np.asarray(first.get_layer("classes").kernel).copy()
    images, labels = coloured_images()
    h.train_head(second, images, labels, epochs=2)
    np.testing.assert_array_equal(np.asarray(first.get_layer("classes").kernel), untouched)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(learning_rate=2.0), ValueError, "learning_rate"),
    (dict(learning_rate="fast"), TypeError, "learning_rate"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(seed="one"), TypeError, "seed"),
    (dict(base="other"), ValueError, "base 'other'"),
    (dict(base=3), TypeError, "base"),
])
def test_train_head_arguments_follow_the_error_rule(kwargs, error, match):
    images, labels = coloured_images(2)
    with pytest.raises(error, match=match):
        h.train_head(small_tuned_model(), images, labels, **kwargs)


def test_train_head_refuses_models_and_labels_it_cannot_train():
    images, labels = coloured_images(2)
    with pytest.raises(ValueError, match="labels must lie"):
        h.train_head(small_tuned_model(), images, labels + 1)
    with pytest.raises(ValueError, match="labels must be"):
        h.train_head(small_tuned_model(), images, labels[:-1])
    with pytest.raises(ValueError, match="softmax classifier"):
        h.train_head(small_tuned_model(head="sigmoid"), images, labels)
    flat = keras.Sequential([keras.Input((SIZE, SIZE, 3)), keras.layers.Flatten(),
                             keras.layers.Dense(CLASSES)])
    with pytest.raises(ValueError, match="base: .* nest exactly one"):
        h.train_head(flat, images, labels)
    with pytest.raises(ValueError, match="batch"):
        h.train_head(small_tuned_model(), images[0], labels[:1])


# ---------------------------------------------------------------- augmented views

def _square_photo():
    rows, cols = np.mgrid[0:90, 0:90]
    return np.stack([rows * 2, cols * 2, (rows + cols) % 256], axis=-1).astype(np.uint8)


def test_a_full_crop_without_jitter_is_the_plain_resize():
    photo = _square_photo()
    plain = np.asarray(resize_image(photo, 40, fit="squash"), dtype=np.float32)
    views = h.augment(photo, 3, size=40, scale=(1.0, 1.0), flip=False, jitter=0.0)
    assert views.shape == (3, 40, 40, 3) and views.dtype == np.float32
    for view in views:
        np.testing.assert_allclose(view, plain, atol=1e-3)
    mirrored = h.augment(photo, 16, size=40, scale=(1.0, 1.0), flip=True, jitter=0.0, seed=1)
    flipped = [bool(np.allclose(view, plain[:, ::-1], atol=1e-3)) for view in mirrored]
    assert all(f or np.allclose(view, plain, atol=1e-3) for f, view in zip(flipped, mirrored))
    assert 0 < sum(flipped) < len(flipped)


def test_views_are_seeded_and_stay_pixels():
    views = h.augment("coffee", 5, size=(30, 40), seed=2)
    assert views.shape == (5, 30, 40, 3) and views.min() >= 0 and views.max() <= 255
    np.testing.assert_array_equal(views, h.augment("coffee", 5, size=(30, 40), seed=2))
    assert not np.array_equal(views, h.augment("coffee", 5, size=(30, 40), seed=3))
    # Brightness alone within 1 +- jitter: the mean moves by at most that factor (before clipping).
    photo = np.full((20, 20, 3), 100, dtype=np.uint8)
    means = h.augment(photo, 20, size=10, flip=False, jitter=0.1).mean(axis=(1, 2, 3))
    assert means.min() >= 90 - 1e-3 and means.max() <= 110 + 1e-3


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(count=0), ValueError, "count"),
    (dict(count=2.5), TypeError, "count"),
    (dict(count=10_000), ValueError, "count"),
    (dict(scale=(0.0, 1.0)), ValueError, "scale"),
    (dict(scale=0.5), TypeError, "scale"),
    (dict(flip="yes"), TypeError, "flip"),
    (dict(jitter=2.0), ValueError, "jitter"),
    (dict(size="big"), TypeError, "size"),
])
def test_augment_arguments_follow_the_error_rule(kwargs, error, match):
    arguments = dict(count=2, size=16) | kwargs
    with pytest.raises(error, match=match):
        h.augment("coffee", arguments.pop("count"), **arguments)


# ---------------------------------------------------------------- the lesson's steps on the file

def test_the_lessons_steps_run_on_the_loaded_file(loaded):
    report = h.model_report(loaded)
    assert report.nested == ["base"] and report.head == "softmax" and report.num_classes == 3
    assert "0..255 becomes -1..1" in report.preprocessing
    images, labels = coloured_images(1, seed=4)
    classes = h.predict_logits(loaded, images).argmax(axis=1)
    choice = h.layer_choice(loaded, images, classes, layers=["conv1", "conv2"], steps=3,
                            progress=False)
    assert choice.recommended in ("conv1", "conv2") and choice.layers == ["conv1", "conv2"]
    maps = {
        "occlusion": h.occlusion_map(loaded, images, classes, patch_size=8, stride=8,
                                     progress=False),
        "saliency": h.saliency(loaded, images, classes, progress=False),
        "Grad-CAM": h.gradcam(loaded, images, classes, progress=False),
        "Grad-CAM conv1": h.gradcam(loaded, images, classes, layer="conv1", progress=False),
        "SmoothGrad": h.smoothgrad(loaded, images, classes, samples=2, progress=False),
        "SHAP": h.expected_gradients(loaded, images, classes, background=images[:2], samples=4,
                                     progress=False).maps[:, 0],
    }
    for name, heat in maps.items():
        assert heat.shape == (len(images), SIZE, SIZE) and np.isfinite(heat).all(), name
    watermarked = sc.add_watermark(images)
    assert watermarked.shape == images.shape
    assert h.predict_logits(loaded, watermarked).shape == (len(images), CLASSES)


def test_the_randomisation_check_reaches_inside_the_nested_base(loaded):
    stages = h.randomization_stages(loaded)
    assert [stage for stage, _ in stages] == ["classes", "conv2", "conv1"]
    image = coloured_images(1, seed=5)[0][0]
    check = h.cascading_randomization(loaded, lambda m, x, c: h.gradcam(m, x, c, layer="conv1",
                                                                        progress=False),
                                      image, 0, progress=False)
    assert check.maps.shape == (4, SIZE, SIZE)
    np.testing.assert_allclose(check.maps[0], h.gradcam(loaded, image, 0, layer="conv1",
                                                        progress=False), rtol=1e-4, atol=1e-6)
    assert not np.allclose(check.maps[-1], check.maps[0])
    # The trained model itself is untouched.
    np.testing.assert_allclose(h.gradcam(loaded, image, 0, layer="conv1", progress=False),
                               check.maps[0], rtol=1e-4, atol=1e-6)


def test_a_nested_and_a_flat_model_randomise_alike():
    """The same layers and weights, nested or flat: the same stages, each re-drawn the same."""
    nested = small_tuned_model(dropout=0.0)
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    x = pixels
    for layer in nested.get_layer("base").layers[1:]:
        x = layer(x)
    flat = keras.Model(pixels, nested.get_layer("classes")(x), name="flat")
    assert h.randomization_stages(flat) == h.randomization_stages(nested)
    image = coloured_images(1, seed=6)[0][0]

    def explain(m, x, c):
        return h.gradcam(m, x, c, layer="conv1", progress=False)

    one = h.cascading_randomization(nested, explain, image, 1, seed=4, progress=False)
    two = h.cascading_randomization(flat, explain, image, 1, seed=4, progress=False)
    np.testing.assert_allclose(one.maps, two.maps, rtol=1e-4, atol=1e-6)


def test_layers_of_the_same_name_inside_and_outside_are_refused():
    base = small_base()
    pixels = keras.Input((SIZE, SIZE, 3))
    x = base(pixels)
    model = keras.Model(pixels, keras.layers.Dense(CLASSES, name="conv1")(x))
    with pytest.raises(ValueError, match="several layers named 'conv1'"):
        h.randomization_stages(model)


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "my_model.keras")
    print(write_small_model(target))
