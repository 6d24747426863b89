"""The model zoo: the converted ImageNet weights predict what they should; cache; lookup."""
import json
import shutil

import numpy as np
import pytest

import helpers as h
from helpers.environment import CACHE_ENV
from helpers.models import feature_model, last_spatial_layer
import keras
from helpers import models, pth

EXPECTED_CAT = {281, 282, 285}  # tabby, tiger cat, Egyptian cat


def _top(model, sample, k):
    probs = h.probabilities(h.predict_logits(model, h.prepare(sample, model)))[0]
    order = np.argsort(-probs)[:k]
    return order, probs


def test_lite0_recognises_espresso_and_the_cat(lite0):
    order, probs = _top(lite0, "coffee", 1)
    assert order[0] == 967 and probs[967] >= 0.9
    order, _ = _top(lite0, "chelsea", 3)
    assert set(order) <= EXPECTED_CAT


@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_agree(name):
    model = h.load_model(name, use_cache=False)  # converted from the wheel, nothing written
    assert h.input_size(model) == {"efficientnet_lite1": (240, 240),
                                   "efficientnet_lite2": (260, 260)}[name]
    order, probs = _top(model, "coffee", 1)
    assert order[0] == 967 and probs[967] >= 0.5
    order, _ = _top(model, "chelsea", 3)
    assert set(order) <= EXPECTED_CAT


def test_contract_and_layer_names(lite0):
    assert lite0.name == "efficientnet_lite0"
    assert h.input_size(lite0) == (224, 224)
    assert lite0.output_shape == (None, 1000)
    assert lite0.get_layer("predictions").activation is keras.activations.linear
    assert lite0.get_layer("top_activation").output.shape[1:] == (7, 7, 1280)
    assert last_spatial_layer(lite0).name == "top_activation"
    for name in ["stem_conv", "block1a_dwconv", "block2b_add", "block6d_expand_activation",
                 "block7a_project_bn", "avg_pool"]:
        h.find_layer(lite0, name)
    # Every number of the state dict lands in the model, and nothing else.
    state = pth.load_state_dict(models._lite_weights_file("efficientnet_lite0"))
    expected = sum(v.size for k, v in state.items() if not k.endswith("num_batches_tracked"))
    assert lite0.count_params() == expected


def test_probabilities_are_a_softmax():
    logits = np.array([[1.0, 2.0, 3.0], [1000.0, 0.0, -1000.0]], dtype=np.float32)
    probs = h.probabilities(logits)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(probs[0], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
    assert probs[1, 0] == pytest.approx(1.0)


LITE0_CACHE = ("efficientnet_lite0.keras", "efficientnet_lite0.json")


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Lite0 converted once into an empty cache folder: (the folder, the model that wrote it).

    The cache tests share this one conversion; those that damage the cache damage a copy.
    """
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        model = h.load_model()  # converts and writes the cache
    return folder, model


def _copy_cache(converted, folder):
    for name in LITE0_CACHE:
        shutil.copy(converted[0] / name, folder / name)


def test_cached_model_equals_freshly_built(converted, monkeypatch):
    folder, first = converted
    monkeypatch.setenv(CACHE_ENV, str(folder))
    assert (folder / "efficientnet_lite0.keras").exists()
    written = (folder / "efficientnet_lite0.keras").stat().st_mtime_ns
    fresh = h.load_model(use_cache=False)
    cached = h.load_model()  # reads the cache
    assert (folder / "efficientnet_lite0.keras").stat().st_mtime_ns == written  # not rebuilt
    batch = h.prepare("chelsea", fresh)
    expected = h.predict_logits(fresh, batch)
    np.testing.assert_array_equal(h.predict_logits(first, batch), expected)
    np.testing.assert_allclose(h.predict_logits(cached, batch), expected, rtol=0, atol=1e-5)


def test_corrupt_cache_is_rebuilt(converted, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    _copy_cache(converted, tmp_path)
    model_file = tmp_path / "efficientnet_lite0.keras"
    model_file.write_bytes(b"not a keras file")
    model = h.load_model()
    assert _top(model, "coffee", 1)[0][0] == 967
    meta = json.loads((tmp_path / "efficientnet_lite0.json").read_text())
    assert meta["model_sha256"] == models._sha256(model_file)


def test_stale_cache_is_rebuilt(converted, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    _copy_cache(converted, tmp_path)
    meta_file = tmp_path / "efficientnet_lite0.json"
    meta = json.loads(meta_file.read_text())
    meta["fingerprint"]["converter"] = -1
    meta_file.write_text(json.dumps(meta))
    before = (tmp_path / "efficientnet_lite0.keras").stat().st_mtime_ns
    h.load_model()
    assert json.loads(meta_file.read_text())["fingerprint"]["converter"] == models.CONVERTER_VERSION
    assert (tmp_path / "efficientnet_lite0.keras").stat().st_mtime_ns != before


def test_untrained_lite_has_same_architecture_but_other_weights(lite0):
    untrained = h.load_model(weights=None)
    assert [layer.name for layer in untrained.layers] == [layer.name for layer in lite0.layers]
    assert not np.allclose(untrained.get_layer("stem_conv").get_weights()[0],
                           lite0.get_layer("stem_conv").get_weights()[0])


def test_application_model_untrained_follows_the_contract():
    model = h.load_model("mobilenet_v2", weights=None)
    assert model.name == "mobilenet_v2"
    assert h.input_size(model) == (224, 224)
    assert model.output_shape == (None, 1000)
    assert model.layers[1].name == "preprocess"
    assert last_spatial_layer(model).name == "out_relu"


def test_application_offline_error_names_the_offline_default(monkeypatch):
    def no_network(**kwargs):
        raise OSError("URL fetch failure: Temporary failure in name resolution")

    monkeypatch.setattr(keras.applications, "VGG16", no_network)
    with pytest.raises(h.ModelUnavailableError, match="efficientnet_lite0.*ship"):
        h.load_model("vgg16")


def test_caffe_preprocessing_is_bgr_minus_mean():
    layer = models._preprocess_layer("caffe")
    pixels = np.array([[[[10.0, 20.0, 30.0]]]], dtype=np.float32)
    np.testing.assert_allclose(np.asarray(layer(pixels))[0, 0, 0],
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)


@pytest.mark.parametrize("bad, message", [
    ("efficientnet_lite9", "Did you mean 'efficientnet_lite[012]'"),
    ("resnet", "Did you mean 'resnet50'"),
])
def test_unknown_model_names(bad, message):
    with pytest.raises(ValueError, match=message):
        h.load_model(bad)


def test_a_model_name_of_the_wrong_type_is_a_type_error():
    with pytest.raises(TypeError, match="name must be a model name"):
        h.load_model(42)


def test_model_names_forgive_case_and_hyphens(lite0):
    model = h.load_model("EfficientNet-Lite0")
    assert model.name == "efficientnet_lite0"


def test_bad_weights_argument():
    with pytest.raises(ValueError, match="'imagenet' or None"):
        h.load_model(weights="cifar10")


def _nested_model():
    from tests.conftest import build_tiny_cnn

    base = build_tiny_cnn(name="base")
    return keras.Sequential([keras.Input((32, 32, 3)), base, keras.layers.Dense(4, name="head")],
                            name="outer"), base


def test_layer_lookup_inside_nested_models():
    outer, base = _nested_model()
    assert h.find_layer(outer, "conv2") is base.get_layer("conv2")
    assert "conv2" in h.layer_names(outer)
    with pytest.raises(ValueError, match="Did you mean: conv2"):
        h.find_layer(outer, "conv_2")


def test_feature_model_of_nested_layer_is_connected():
    import tensorflow as tf

    outer, base = _nested_model()
    features = feature_model(outer, "conv2_activation")
    x = tf.constant(np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)), tf.float32)
    with tf.GradientTape() as tape:
        maps, logits = features(x)
        score = tf.reduce_sum(logits[:, 1])
    grads = tape.gradient(score, maps)
    assert maps.shape == (2, 16, 16, 16)
    assert grads is not None and float(tf.reduce_sum(tf.abs(grads))) > 0
    np.testing.assert_allclose(np.asarray(logits), np.asarray(outer(x)), rtol=1e-5, atol=1e-5)


def test_feature_model_of_top_level_layers(lite0):
    features = feature_model(lite0, ["block2b_add", "top_activation"])
    batch = h.prepare("coffee", lite0)
    shallow, deep, logits = features(batch)
    assert shallow.shape == (1, 56, 56, 24) and deep.shape == (1, 7, 7, 1280)
    np.testing.assert_allclose(np.asarray(logits), h.predict_logits(lite0, batch), atol=1e-4)


def test_unknown_layer_lists_spatial_candidates(lite0):
    with pytest.raises(ValueError, match="no layer named 'top_act'.*top_activation"):
        h.find_layer(lite0, "top_act")
    with pytest.raises(TypeError, match="by its name"):
        h.find_layer(lite0, 3)
