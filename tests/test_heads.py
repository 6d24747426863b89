"""Foreign models: every head the course reads, contrastive targets, and the model report.

Models built here as a user brings them: a functional CNN with a sigmoid
multi-label head, a single binary logit and a single probability, a model
whose preprocessing is outside, a fine-tuned model (a small CNN nested in an
outer model with a new head). Each twin pair (with and without the head's
activation) must give the same explanation for every explainer of
tests/test_contract.py.
"""
import numpy as np
import pytest

import helpers as h
import keras
from tests.test_contract import EXPLAINERS, SPATIAL

SIZE = 32
LABELS = 4


def _image(seed=0):
    return np.random.default_rng(seed).uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32)


def _trunk(inputs, prefix="", preprocess=True):
    x = keras.layers.Rescaling(1 / 127.5, offset=-1, name=f"{prefix}preprocess")(inputs) \
        if preprocess else inputs
    x = keras.layers.Conv2D(6, 3, padding="same", name=f"{prefix}conv1")(x)
    x = keras.layers.ReLU(name=f"{prefix}conv1_activation")(x)
    x = keras.layers.MaxPooling2D(2, name=f"{prefix}pool1")(x)
    x = keras.layers.Conv2D(8, 3, dilation_rate=2, padding="same", name=f"{prefix}conv2")(x)
    x = keras.layers.ReLU(name=f"{prefix}conv2_activation")(x)
    return keras.layers.GlobalAveragePooling2D(name=f"{prefix}avg_pool")(x)


def _cnn(outputs, activation=None, seed=0, name="cnn"):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    scores = keras.layers.Dense(outputs, activation=activation, name="predictions")(_trunk(inputs))
    return keras.Model(inputs, scores, name=name)


def _twin(model, activation, name):
    """The same layers followed by ``activation`` as a separate layer."""
    return keras.Model(model.inputs[0], keras.layers.Activation(activation, name="squash")(
        model.outputs[0]), name=name)


def _copy_with(model, activation, name):
    """``model`` rebuilt with ``activation`` on its Dense head, same weights."""
    copy = _cnn(model.outputs[0].shape[-1], activation, name=name)
    copy.set_weights(model.get_weights())
    return copy


def _fine_tuned(head_activation, seed=3, name="fine_tuned"):
    """A small 'pretrained' CNN used as a layer, with a new Dense head: transfer learning."""
    keras.utils.set_random_seed(seed)
    base_in = keras.Input((SIZE, SIZE, 3))
    base = keras.Model(base_in, _trunk(base_in, "base_"), name="base")
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Dropout(0.2, name="dropout")(base(inputs))
    outputs = keras.layers.Dense(3, activation=head_activation, name="new_head")(x)
    return keras.Model(inputs, outputs, name=name)


@pytest.fixture(scope="module")
def pairs():
    """name -> (model with the activation, model that returns the scores)."""
    multi_logits = h.declare_head(_cnn(LABELS, name="multi_logits"), "sigmoid")
    binary_logit = _cnn(1, name="binary_logit")
    tuned = _fine_tuned("sigmoid")
    tuned_plain = _fine_tuned(None, name="fine_tuned_logits")
    tuned_plain.set_weights(tuned.get_weights())
    inner = _cnn(LABELS, "sigmoid", name="inner_multi")
    inner.set_weights(multi_logits.get_weights())
    wrapped = keras.Sequential([keras.Input((SIZE, SIZE, 3)), inner], name="wrapped_multi")
    return {
        "sigmoid multi-label (Dense)": (_copy_with(multi_logits, "sigmoid", "multi_sigmoid"),
                                        multi_logits),
        "sigmoid multi-label (Activation layer)": (_twin(multi_logits, "sigmoid", "multi_act"),
                                                   multi_logits),
        "sigmoid head inside a nested model": (wrapped, multi_logits),
        "single probability vs binary logit": (_copy_with(binary_logit, "sigmoid", "binary_p"),
                                               binary_logit),
        "fine-tuned nested, sigmoid head": (tuned, h.declare_head(tuned_plain, "sigmoid")),
    }


PAIR_NAMES = ["sigmoid multi-label (Dense)", "sigmoid multi-label (Activation layer)",
              "sigmoid head inside a nested model", "single probability vs binary logit",
              "fine-tuned nested, sigmoid head"]


@pytest.mark.parametrize("name", list(EXPLAINERS))
@pytest.mark.parametrize("pair", PAIR_NAMES)
def test_a_head_activation_gives_the_score_models_explanation(pair, name, pairs):
    squashed, scores = pairs[pair]
    image = _image()
    target = 0 if scores.outputs[0].shape[-1] == 1 else 2
    expected = np.asarray(EXPLAINERS[name](scores, image, target), dtype=np.float64)
    assert np.abs(expected).max() > 0  # not comparing zeros
    got = np.asarray(EXPLAINERS[name](squashed, image, target), dtype=np.float64)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=2e-5 * np.abs(expected).max(),
                               err_msg=f"{pair}: {squashed.name}")


# ---------------------------------------------------------------- each head found once

def test_each_head_is_read_once_and_the_model_is_untouched(pairs):
    expected = {"sigmoid multi-label (Dense)": ("sigmoid", "Dense layer 'predictions'"),
                "sigmoid multi-label (Activation layer)": ("sigmoid", "Activation layer 'squash'"),
                "sigmoid head inside a nested model": ("sigmoid", "inside 'inner_multi'"),
                "single probability vs binary logit": ("binary", "Dense layer 'predictions'"),
                "fine-tuned nested, sigmoid head": ("sigmoid", "Dense layer 'new_head'")}
    for pair, (kind, where) in expected.items():
        squashed, scores = pairs[pair]
        spec = h.model_spec(squashed)
        assert (spec.head, spec.activation, spec.probability) == (kind, "sigmoid", "sigmoid")
        assert where in spec.found and spec.softmax is None, pair
        assert h.model_spec(scores).activation is None
    assert h.model_spec(_cnn(3, "softmax")).head == "softmax"
    assert h.model_spec(_cnn(3)).head == "linear" and h.model_spec(_cnn(3)).probability == "softmax"
    binary = _cnn(1, name="binary_plain")
    assert (h.model_spec(binary).head, h.model_spec(binary).probability) == ("binary", "sigmoid")
    squashed, scores = pairs["sigmoid multi-label (Dense)"]
    assert squashed.get_layer("predictions").activation is keras.activations.sigmoid
    image = _image()[None]
    np.testing.assert_allclose(h.predict_logits(squashed, image), h.predict_logits(scores, image),
                               atol=1e-5)
    np.testing.assert_allclose(h.model_spec(squashed).probabilities(h.predict_logits(squashed,
                                                                                     image)),
                               np.asarray(squashed(image)), atol=1e-6)


def test_probabilities_use_the_heads_own_activation(pairs):
    """Occlusion on the probability of a sigmoid head: the sigmoid's drop, not a softmax's."""
    squashed, _ = pairs["sigmoid multi-label (Dense)"]
    image = _image()
    got = h.occlusion_map(squashed, image, 1, patch_size=16, stride=16, baseline="black",
                          progress=False)
    probability = np.asarray(squashed(image[None]))[0, 1]
    expected = np.zeros((SIZE, SIZE), np.float32)
    for top in (0, 16):
        for left in (0, 16):
            hidden = image.copy()
            hidden[top:top + 16, left:left + 16] = 0
            expected[top:top + 16, left:left + 16] = probability - np.asarray(
                squashed(hidden[None]))[0, 1]
    assert np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(got, expected, atol=1e-5)
    curve = h.deletion_curve(squashed, image, np.ones((SIZE, SIZE)), 1, steps=2, progress=False)
    assert curve.scores[0] == pytest.approx(probability, abs=1e-5)


def test_a_binary_model_is_attacked_on_its_sigmoid_loss(pairs):
    probability_model, logit_model = pairs["single probability vs binary logit"]
    image = _image()
    logit = float(h.predict_logits(logit_model, image[None])[0, 0])
    loss = h.cross_entropy(probability_model, image, 0)
    assert loss == pytest.approx(np.log1p(np.exp(-logit)), rel=1e-4)  # -log sigmoid(z)
    np.testing.assert_allclose(h.loss_gradient(probability_model, image, 0),
                               h.loss_gradient(logit_model, image, 0), rtol=1e-4, atol=1e-7)
    assert np.abs(h.loss_gradient(logit_model, image, 0)).max() > 0  # not a softmax of one score


def test_a_model_with_its_preprocessing_outside():
    """A model trained on -1..1 inputs explains 0..255 pixels once its scaling is put inside."""
    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3))
    bare = keras.Model(inputs, keras.layers.Dense(3, name="scores")(
        _trunk(inputs, "bare_", preprocess=False)), name="bare")
    assert not h.model_report(bare).preprocessing_inside
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    course_ready = keras.Model(pixels, bare(keras.layers.Rescaling(1 / 127.5, offset=-1)(pixels)),
                               name="course_ready")
    report = h.model_report(course_ready)
    assert report.preprocessing_inside and report.nested == ["bare"]
    image = _image()
    saliency = h.saliency(course_ready, image, 1, reduce=None, progress=False)
    import tensorflow as tf
    scaled = tf.constant(image[None] / 127.5 - 1)
    with tf.GradientTape() as tape:
        tape.watch(scaled)
        score = bare(scaled)[:, 1]
    np.testing.assert_allclose(saliency, tape.gradient(score, scaled)[0] / 127.5, rtol=1e-4,
                               atol=1e-8)
    for name in ("gradcam", "occlusion", "integrated gradients", "expected gradients"):
        heat = np.asarray(EXPLAINERS[name](course_ready, image, 1))
        assert heat.shape == (SIZE, SIZE) and np.isfinite(heat).all(), name


# ---------------------------------------------------------------- a head it cannot read

def _lambda_head():
    keras.utils.set_random_seed(6)
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    scores = keras.layers.Dense(LABELS, name="scores")(_trunk(inputs))
    squashed = keras.layers.Lambda(lambda z: keras.ops.sigmoid(2 * z), name="squash")(scores)
    return keras.Model(inputs, squashed, name="lambda_head")


def test_a_head_it_cannot_read_names_what_to_pass():
    model = _lambda_head()
    assert h.model_report(model).head == "unknown"
    with pytest.raises(ValueError, match=r"cannot tell its scores from its output: its output "
                                         r"comes from the Lambda layer 'squash'.*"
                                         r"h.declare_head\(model, 'softmax', layer='scores'\)"):
        h.saliency(model, _image(), 0, progress=False)
    tanh = keras.Model(model.inputs[0], keras.layers.Activation("tanh", name="tanh")(
        model.get_layer("scores").output), name="tanh_head")
    with pytest.raises(ValueError, match="applies the activation 'tanh'"):
        h.gradcam(tanh, _image(), 0, progress=False)
    h.declare_head(model, "sigmoid", layer="scores")
    spec = h.model_spec(model)
    assert (spec.head, spec.probability) == ("sigmoid", "sigmoid")
    scores = keras.Model(model.inputs[0], model.get_layer("scores").output, name="scores_only")
    for name in ("saliency", "gradcam", "occlusion (logit)"):
        np.testing.assert_allclose(EXPLAINERS[name](model, _image(), 2),
                                   EXPLAINERS[name](scores, _image(), 2), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("call, error, match", [
    (lambda m: h.declare_head(m, "relu", layer="scores"), ValueError,
     "activation must be one of"),
    (lambda m: h.declare_head(m, "sigmoid", layer=3), TypeError, "layer must be a layer name"),
    (lambda m: h.declare_head(m, "sigmoid", layer="conv1"), ValueError,
     r"layer: model 'lambda_head' has no top-level layer 'conv1' with 4 scores per image; "
     r"candidates: scores, squash"),
    (lambda m: h.declare_head("efficientnet_lite0", "sigmoid"), TypeError,
     "model must be a Keras model"),
    (lambda m: h.contrast(1.5, 2), TypeError, "contrast: first must be a class index"),
    (lambda m: h.contrast(0, None), TypeError, "contrast: second must be a class index"),
    (lambda m: h.saliency(m, _image(), h.contrast(1, 1), progress=False), ValueError,
     "contrasts class 1 with itself"),
    (lambda m: h.saliency(m, _image(), h.contrast(1, 7), progress=False), ValueError,
     "class index 7 is out of range"),
    (lambda m: h.fgsm(m, _image(), h.contrast(0, 1), progress=False), ValueError,
     r"class_index: 0 vs 1 is a contrast \(h.contrast\).*give a class index or name"),
    (lambda m: h.model_report("efficientnet_lite0"), TypeError, "model must be a Keras model"),
])
def test_errors_name_the_argument_and_what_is_accepted(call, error, match):
    model = _lambda_head()
    if "contrast" in match or "class index" in match or "fgsm" in repr(call):
        model = _cnn(LABELS, name="plain")
    with pytest.raises(error, match=match):
        call(model)


# ---------------------------------------------------------------- contrastive targets

@pytest.fixture(scope="module")
def softmax_cnn():
    return _cnn(LABELS, "softmax", seed=7, name="softmax_cnn")


LINEAR_IN_THE_SCORE = {  # explainers whose map is linear in the explained score
    "saliency (signed)": lambda m, x, c: h.saliency(m, x, c, reduce=None, progress=False),
    "gradient x input": EXPLAINERS["gradient x input"],
    "integrated gradients": EXPLAINERS["integrated gradients"],
    "occlusion (logit)": EXPLAINERS["occlusion (logit)"],
    "occlusion (probability)": EXPLAINERS["occlusion"],
    "rise (logit)": lambda m, x, c: h.rise(m, x, c, num_masks=12, score="logit", progress=False),
    "binary masks": EXPLAINERS["binary masks"],
    "grad-cam weighted sum": lambda m, x, c: h.gradcam_parts(m, x, c).weighted_sum,
    "expected gradients": EXPLAINERS["expected gradients"],
    "kernel shap": EXPLAINERS["kernel shap"],
}


@pytest.mark.parametrize("name", list(LINEAR_IN_THE_SCORE))
def test_a_contrasts_map_is_the_difference_of_the_two_maps(name, softmax_cnn):
    explain = LINEAR_IN_THE_SCORE[name]
    image = _image(1)
    first, second = (np.asarray(explain(softmax_cnn, image, c), np.float64) for c in (1, 3))
    got = np.asarray(explain(softmax_cnn, image, h.contrast(1, 3)), np.float64)
    assert np.abs(first - second).max() > 0
    np.testing.assert_allclose(got, first - second, rtol=1e-4,
                               atol=1e-5 * np.abs(first - second).max())


def test_the_contrasts_gradient_is_its_finite_difference(softmax_cnn):
    image = _image(2).astype(np.float64)
    gradient = h.saliency(softmax_cnn, image, h.contrast(0, 2), reduce=None, progress=False)
    direction = np.random.default_rng(0).standard_normal(image.shape)
    step = 1e-2

    def score(x):
        logits = h.predict_logits(softmax_cnn, x[None].astype(np.float32)).astype(np.float64)[0]
        return logits[0] - logits[2]

    numeric = (score(image + step * direction) - score(image - step * direction)) / (2 * step)
    assert float(np.sum(gradient * direction)) == pytest.approx(numeric, rel=2e-2)


def test_contrasts_in_every_explainer_and_mixed_with_classes(softmax_cnn):
    images = [_image(3), _image(4)]
    targets = [h.contrast(1, 3), 2]
    for name, explain in EXPLAINERS.items():
        if name in ("loss gradient", "fgsm", "iterative fgsm"):
            continue  # attacks take one class
        both = np.asarray(explain(softmax_cnn, images, targets))
        alone = np.asarray(explain(softmax_cnn, images[0], h.contrast(1, 3)))
        plain = np.asarray(explain(softmax_cnn, images[1], 2))
        shape = alone.shape
        assert both.shape == (2,) + shape and (name in SPATIAL or shape == (SIZE, SIZE)), name
        np.testing.assert_allclose(both[0], alone, rtol=1e-4,
                                   atol=1e-5 * (np.abs(alone).max() + 1e-12), err_msg=name)
        np.testing.assert_allclose(both[1], plain, rtol=1e-4,
                                   atol=1e-5 * (np.abs(plain).max() + 1e-12), err_msg=name)


def test_a_contrast_reports_probability_differences_and_names(softmax_cnn):
    image = _image(5)
    p = np.asarray(softmax_cnn(image[None]))[0]
    curve = h.deletion_curve(softmax_cnn, image, np.ones((SIZE, SIZE)), h.contrast(1, 3),
                             steps=2, progress=False)
    assert curve.scores[0] == pytest.approx(p[1] - p[3], abs=1e-6)
    result = h.integrated_gradients(softmax_cnn, image, h.contrast(1, 3), steps=4,
                                    progress=False)
    assert result.class_names == "class 1 - class 3"
    logits = h.predict_logits(softmax_cnn, image[None])[0]
    assert result.logits == pytest.approx(logits[1] - logits[3], abs=1e-5)
    assert h.contrast("tabby", "tiger_cat").first == "tabby"
    assert str(h.contrast("tabby", "tiger_cat")) == "tabby vs tiger_cat"


# ---------------------------------------------------------------- the model report

def test_the_model_report_reads_a_fine_tuned_model():
    report = h.model_report(_fine_tuned("sigmoid"))
    assert (report.input_size, report.channels, report.num_classes) == ((32, 32), 3, 3)
    assert report.head == "sigmoid" and "Dense layer 'new_head'" in report.head_detail
    assert report.preprocessing_inside and "0..255 becomes -1..1" in report.preprocessing
    assert report.nested == ["base"]
    # By hand: conv 3x3 -> 3 (jump 1); pool 2/2 -> 3 + 1 = 4 (jump 2); conv 3x3 with dilation 2
    # -> 4 + (3 - 1) * 2 * 2 = 12 (jump 2).
    fields = {row["layer"]: (row["receptive field"], row["jump"]) for row in report.layers}
    assert fields == {"base_conv1": (3, 1), "base_conv1_activation": (3, 1),
                      "base_pool1": (4, 2), "base_conv2": (12, 2),
                      "base_conv2_activation": (12, 2)}
    assert report.layers[-1]["note"] == "Grad-CAM default"
    assert all(row["applies"] == "yes" for row in report.explainers)
    text = str(report)
    assert "head           sigmoid" in text and "base_conv2_activation" in text
    page = report._repr_html_()
    assert "<table>" in page and "&#x27;new_head&#x27;" in page  # escaped


def test_the_model_report_of_a_model_without_spatial_layers_or_relu():
    inputs = keras.Input((8, 8, 1), name="pixels")
    outputs = keras.layers.Dense(2, activation="softmax", name="probabilities")(
        keras.layers.Flatten()(inputs))
    report = h.model_report(keras.Model(inputs, outputs, name="flat<&>"))
    assert report.head == "softmax" and not report.preprocessing_inside
    assert "put the scaling inside" in report.preprocessing and len(report.layers) == 0
    applies = {row["explainer"]: row["applies"] for row in report.explainers}
    assert applies["guided backpropagation, DeconvNet"] == "no"
    assert applies["Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM, Score-CAM"] == "no"
    assert "flat&lt;&amp;&gt;" in report._repr_html_()


def test_receptive_fields_of_vgg16_match_the_published_values():
    # Araujo et al. (2019): VGG16's conv5_3 sees 196 pixels, pool5 212; jumps 16 and 32.
    vgg = keras.applications.VGG16(weights=None, include_top=False, input_shape=(32, 32, 3))
    fields = h.receptive_fields(vgg)
    assert fields[id(vgg.get_layer("block5_conv3"))] == (196, 16)
    assert fields[id(vgg.get_layer("block5_pool"))] == (212, 32)
    assert h.receptive_field(vgg, "block3_conv3") == (40, 4)
    nested = keras.Sequential([keras.Input((32, 32, 3)), vgg], name="nested_vgg")
    assert h.receptive_field(nested, "block5_conv3") == (196, 16)


def test_the_course_models_report(lite0):
    report = h.model_report(lite0)
    assert (report.input_size, report.head, report.num_classes) == ((224, 224), "linear", 1000)
    assert "PixelPreprocess 'preprocess'" in report.preprocessing
    fields = {row["layer"]: row["receptive field"] for row in report.layers}
    assert fields["top_activation"] == 851 and fields["stem_activation"] == 3
