"""h.layer_choice: one method at several layers, scored by deletion and insertion.

The synthetic model below knows where its evidence is: the class score is the
mean of one thresholded convolution ("mid", 32 x 32), which fires only on a
bright square. "coarse" is that map averaged over 4 x 4 cells (8 x 8), "deep"
its global mean copied to every cell of a 4 x 4 map: Grad-CAM at "deep" is
flat (it cannot say where the square is), at "coarse" blurred, at "mid"
sharp. So the ranking is known: mid, coarse, deep.
"""
import time

import numpy as np
import pytest

import helpers as h
from helpers.metrics import _default_layers
import keras

SIZE = 32


def located_model():
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Conv2D(1, 3, padding="same", activation="relu", name="mid")(inputs)
    x = keras.layers.AveragePooling2D(4, name="pool")(x)
    x = keras.layers.Conv2D(1, 1, name="coarse")(x)
    x = keras.layers.GlobalAveragePooling2D(keepdims=True, name="gap")(x)
    x = keras.layers.UpSampling2D(4, name="deep")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="located")
    # mid = ReLU(mean of the 3 x 3 x 3 pixels - 100): only the bright square passes.
    model.get_layer("mid").set_weights([np.full((3, 3, 3, 1), 1 / 27, "float32"),
                                        np.array([-100.0], "float32")])
    model.get_layer("coarse").set_weights([np.ones((1, 1, 1, 1), "float32"),
                                           np.zeros(1, "float32")])
    # p(class 0) = sigmoid(0.6 m - 2), m the mean of "mid": 0.12 without the square, 0.98 with.
    model.get_layer("predictions").set_weights([np.array([[0.3, -0.3]], "float32"),
                                                np.array([-1.0, 1.0], "float32")])
    return model


def square_image(top, left, seed=0):
    image = np.random.default_rng(seed).uniform(0, 40, (SIZE, SIZE, 3)).astype("float32")
    image[top:top + 8, left:left + 8] = 255.0
    return image


@pytest.fixture(scope="module")
def located():
    return located_model()


@pytest.fixture(scope="module")
def squares():
    # Squares low and right: deleting in raster order (a flat map) reaches them late.
    return np.stack([square_image(22, 22), square_image(20, 14, 1), square_image(16, 23, 2)])


def softmax(logits):
    e = np.exp(logits - logits.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_the_layer_that_keeps_the_location_is_recommended(located, squares):
    choice = h.layer_choice(located, squares, 0, steps=16, progress=False)
    assert choice.layers == ["mid", "coarse", "deep"]  # the default: one layer per map size
    assert choice.map_sizes == [(32, 32), (8, 8), (4, 4)]
    assert choice.recommended == "mid"
    assert list(choice.column("rank")) == [1, 2, 3]
    deletion, insertion = choice.column("deletion"), choice.column("insertion")
    assert deletion[2] > deletion[0] + 0.4 and insertion[0] > insertion[2] + 0.4
    assert choice.scores["ins - del"].shape == (3, 3)
    np.testing.assert_allclose(choice.column("ins - del sd"),
                               choice.scores["ins - del"].std(axis=1))
    assert choice.maps.shape == (3, 3, SIZE, SIZE) and choice.maps.dtype == np.float32
    assert np.ptp(choice.maps[2, 0]) < 1e-5 * choice.maps[2, 0].max()  # "deep" is flat
    assert choice.sorted_by("ins - del").rows[0][0] == "mid"
    assert type(choice.sorted_by("rank")) is h.LayerChoice


def test_the_table_equals_gradcam_and_the_curves_one_image_at_a_time(located, squares):
    choice = h.layer_choice(located, squares, 0, layers=["deep", "mid"], steps=8,
                            progress=False)
    assert choice.layers == ["deep", "mid"]
    probabilities = softmax(np.asarray(located(squares)))[:, 0]
    np.testing.assert_allclose(choice.probabilities, probabilities, rtol=1e-5)
    for i, layer in enumerate(["deep", "mid"]):
        for n, image in enumerate(squares):
            heat = h.gradcam(located, image, 0, layer=layer, progress=False)
            np.testing.assert_allclose(choice.maps[i, n], heat, rtol=1e-5, atol=1e-7)
            deletion = h.deletion_curve(located, image, heat, 0, steps=8, progress=False)
            insertion = h.insertion_curve(located, image, heat, 0, steps=8, progress=False)
            assert choice.scores["deletion"][i, n] == pytest.approx(
                deletion.auc / probabilities[n], rel=1e-5)
            assert choice.scores["insertion"][i, n] == pytest.approx(
                insertion.auc / probabilities[n], rel=1e-5)
        row = choice.rows[i][1]
        for column in ("deletion", "insertion", "ins - del"):
            values = choice.scores[column][i]
            assert row[choice.columns.index(column)] == pytest.approx(values.mean())
            assert row[choice.columns.index(column + " sd")] == pytest.approx(values.std())
    raw = h.layer_choice(located, squares, 0, layers=["deep", "mid"], steps=8, relative=False,
                         measures=("deletion",), progress=False)
    np.testing.assert_allclose(raw.scores["deletion"],
                               choice.scores["deletion"] * probabilities, rtol=1e-5)
    assert raw.columns == ["map", "deletion", "deletion sd", "rank"]
    assert raw.recommended == "mid" and "lowest mean deletion" in raw.rule
    assert set(choice.curves["mid"]) == {"deletion", "insertion"}


def test_another_method_by_name_or_function(located, squares):
    by_name = h.layer_choice(located, squares[:2], 0, layers=["mid", "deep"], method="layercam",
                             steps=4, progress=False)
    calls = []

    def layercam(model, images, class_index, layer):
        calls.append((len(images), layer))
        return h.gradcam(model, images, class_index, layer=layer, method="layercam",
                         progress=False)

    by_function = h.layer_choice(located, squares[:2], 0, layers=["mid", "deep"],
                                 method=layercam, steps=4, progress=False)
    assert calls == [(2, "mid"), (2, "deep")]  # all images of a layer in one call
    np.testing.assert_allclose(by_function.maps, by_name.maps)
    assert by_function.method == "layercam" and by_name.method == "layercam"
    np.testing.assert_allclose(by_function.column("ins - del"), by_name.column("ins - del"))
    with pytest.raises(ValueError, match="returned shape"):
        h.layer_choice(located, squares[:2], 0, layers=["mid"],
                       method=lambda m, x, c, layer: np.zeros((4, 4)), progress=False)


def test_a_contrast_is_scored_by_its_probability_difference(located, squares):
    choice = h.layer_choice(located, squares[:2], h.contrast(0, 1), layers=["mid", "deep"],
                            steps=4, progress=False)
    probabilities = softmax(np.asarray(located(squares[:2])))
    np.testing.assert_allclose(choice.probabilities, probabilities[:, 0] - probabilities[:, 1],
                               rtol=1e-5)
    assert choice.recommended == "mid" and "class 0 - class 1" in choice.title
    with pytest.raises(ValueError, match="use relative=False"):  # p_1 - p_0 < 0
        h.layer_choice(located, squares[:1], h.contrast(1, 0), layers=["mid"], steps=2,
                       progress=False)


def test_text_html_and_figure(located, squares):
    import matplotlib.pyplot as plt

    choice = h.layer_choice(located, squares[:2], 0, layers=["mid", "deep"], steps=4,
                            progress=False)
    text = str(choice)
    assert text == repr(choice)
    assert "recommended: mid" in text and "32 x 32" in text and "rank" in text
    html = choice._repr_html_()
    assert html.startswith("<table><caption>") and "<th>layer</th>" in html
    assert "image&#x27;s probability" in html  # escaped
    figure = choice.plot()
    assert len(figure.axes) == 3 + 2  # three measures, two maps
    plt.close(figure)
    figure = h.show_layer_choice(choice, image=1, maps=False)
    assert len(figure.axes) == 3
    plt.close(figure)
    with pytest.raises(ValueError, match="image must be the index"):
        h.show_layer_choice(choice, image=2)
    with pytest.raises(TypeError, match="choice must be the LayerChoice"):
        h.show_layer_choice(str(choice))


def test_default_layers_of_lite0_are_block_ends_one_per_map_size(lite0):
    assert _default_layers(lite0) == ["block1a_project_bn", "block2b_add", "block3b_add",
                                      "block5c_add", "top_activation"]
    assert _default_layers(lite0)[-1] == h.cam_layer(lite0)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"measures": "deletion"}, TypeError, "measures must be a non-empty list"),
    ({"measures": ()}, ValueError, "measures must be a non-empty list"),
    ({"measures": ("deletion", "road")}, ValueError, "measures must be one of"),
    ({"layers": "mid"}, TypeError, r"layers must be None or a list.*layers=\['mid'\]"),
    ({"layers": 3}, TypeError, "layers must be None or a list"),
    ({"layers": []}, ValueError, "layers is empty"),
    ({"layers": ["mid", "deep", "mid"]}, ValueError, "layers lists 'mid' more than once"),
    ({"layers": ["avg_pool"]}, ValueError, "not a spatial feature map"),
    ({"layers": ["nowhere"]}, ValueError, "no layer named 'nowhere'"),
    ({"method": "cam"}, ValueError, "method must be one of"),
    ({"method": 3}, TypeError, "method must be one of .* or a function"),
    ({"steps": 0}, ValueError, "steps must be a positive integer"),
    ({"steps": 2.5}, TypeError, "steps must be a positive integer"),
    ({"relative": "yes"}, TypeError, "relative must be True or False"),
    ({"batch_size": 0}, ValueError, "batch_size must be a positive integer"),
    ({"progress": 1}, TypeError, "progress must be True or False"),
])
def test_wrong_arguments_follow_the_error_rule(located, squares, kwargs, error, match):
    with pytest.raises(error, match=match):
        h.layer_choice(located, squares[:1], 0, **{"progress": False, **kwargs})


def test_a_probability_of_zero_cannot_be_divided_by(located, squares):
    flat = np.zeros((1, SIZE, SIZE, 3), "float32")
    saturated = keras.models.clone_model(located)
    saturated.set_weights(located.get_weights())
    saturated.get_layer("predictions").set_weights([np.array([[0.3, -0.3]], "float32"),
                                                    np.array([-500.0, 500.0], "float32")])
    with pytest.raises(ValueError, match="use relative=False"):
        h.layer_choice(saturated, flat, 0, layers=["mid"], steps=2, progress=False)
    raw = h.layer_choice(saturated, flat, 0, layers=["mid"], steps=2, relative=False,
                         progress=False)
    assert np.all(raw.scores["deletion"] == 0)


@pytest.mark.parametrize("kwargs,match", [
    ({"layers": ["mid"] * 17}, "layers must be at most 16"),
    ({"images": ["chelsea"] * 33}, "images must be at most 32"),
    ({"images": np.zeros((33, SIZE, SIZE, 3), "float32")}, "images must be at most 32"),
])
def test_counts_are_bounded_before_any_work(located, squares, kwargs, match):
    arguments = {"images": squares[:1], **kwargs}
    start = time.perf_counter()
    with pytest.raises(ValueError, match=match):
        h.layer_choice(located, arguments.pop("images"), 0, progress=False, **arguments)
    assert time.perf_counter() - start < 0.5


def test_the_maps_kept_are_bounded_before_any_image_is_loaded():
    inputs = keras.Input((2048, 2048, 3))
    x = keras.layers.Conv2D(1, 3, padding="same", name="a")(inputs)
    x = keras.layers.Conv2D(1, 3, padding="same", name="b")(x)
    x = keras.layers.Conv2D(1, 3, padding="same", name="c")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    big = keras.Model(inputs, keras.layers.Dense(2)(x))
    start = time.perf_counter()
    with pytest.raises(ValueError, match=r"layers x images x height x width must be at most "
                                         r"33,554,432 .*3 x 3 x 2048 x 2048"):
        h.layer_choice(big, ["no such photo"] * 3, 0, layers=["a", "b", "c"], progress=False)
    assert time.perf_counter() - start < 0.5


def test_lite0_two_photos_two_layers(lite0):
    start = time.perf_counter()
    choice = h.layer_choice(lite0, ["chelsea", "coffee"], layers=["block5c_add",
                                                                  "top_activation"],
                            steps=4, progress=False)
    elapsed = time.perf_counter() - start
    assert choice.layers == ["block5c_add", "top_activation"]
    assert choice.map_sizes == [(14, 14), (7, 7)]
    assert choice.maps.shape == (2, 2, 224, 224)
    assert choice.recommended in choice.layers
    assert np.all(np.isfinite(choice.scores["ins - del"]))
    assert "each image's class" in choice.title  # a cat and an espresso
    assert elapsed < 60, elapsed  # about 5 s on a laptop CPU
