"""Layer tables, filters as images and activations, checked on a tiny CNN with hand-set weights."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import helpers as h  # noqa: E402
from helpers.architecture import conv_layers, layer_group  # noqa: E402
import keras  # noqa: E402

SIZE = 8


def build_known_cnn():
    """8x8 RGB in; a 3x3 conv with two readable filters, a depthwise 3x3, a 1x1 projection."""
    inputs = keras.Input((SIZE, SIZE, 3), name="input_image")
    x = keras.layers.Conv2D(2, 3, padding="valid", name="conv1")(inputs)              # 6x6x2
    x = keras.layers.ReLU(name="conv1_activation")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="valid", use_bias=False,
                                     name="block1_dwconv")(x)                         # 4x4x2
    x = keras.layers.Conv2D(3, 1, name="block1_project")(x)                           # 4x4x3
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(2, name="predictions")(x)
    model = keras.Model(inputs, outputs, name="known_cnn")

    conv = np.zeros((3, 3, 3, 2), np.float32)
    conv[:, :, 0, 0] = 1.0              # filter 0: "red", the sum of the red channel
    conv[0, :, :, 1] = 2.0              # filter 1: bright top row minus bright bottom row
    conv[2, :, :, 1] = -2.0
    model.get_layer("conv1").set_weights([conv, np.array([0.0, -1.0], np.float32)])
    depthwise = np.arange(18, dtype=np.float32).reshape(3, 3, 2, 1) / 18.0 - 0.5
    model.get_layer("block1_dwconv").set_weights([depthwise])
    project = np.array([[[[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]]], np.float32)        # (1,1,2,3)
    model.get_layer("block1_project").set_weights([project, np.array([0.0, 1.0, 0.0], np.float32)])
    dense = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]], np.float32)
    model.get_layer("predictions").set_weights([dense, np.array([0.5, 0.0], np.float32)])
    return model, conv, depthwise, project


@pytest.fixture(scope="module")
def known():
    return build_known_cnn()


@pytest.fixture
def pixels():
    return np.random.default_rng(1).integers(0, 256, (2, SIZE, SIZE, 3)).astype(np.float32)


def _conv_by_loops(images, kernel, bias):
    """A 'valid' convolution (cross-correlation, as Keras computes it) with plain loops."""
    n, height, width, _ = images.shape
    kh, kw, _, filters = kernel.shape
    out = np.zeros((n, height - kh + 1, width - kw + 1, filters), np.float64)
    for b in range(n):
        for i in range(out.shape[1]):
            for j in range(out.shape[2]):
                patch = images[b, i:i + kh, j:j + kw, :]
                for f in range(filters):
                    out[b, i, j, f] = np.sum(patch * kernel[..., f]) + bias[f]
    return out


# ---------------------------------------------------------------- layer table

def test_layer_table_lists_every_layer_with_shape_params_and_group(known):
    model, *_ = known
    table = h.layer_table(model)
    assert table["name"] == ["input_image", "conv1", "conv1_activation", "block1_dwconv",
                             "block1_project", "avg_pool", "predictions"]
    assert table["type"] == ["InputLayer", "Conv2D", "ReLU", "DepthwiseConv2D", "Conv2D",
                             "GlobalAveragePooling2D", "Dense"]
    assert table["output shape"] == [(8, 8, 3), (6, 6, 2), (6, 6, 2), (4, 4, 2), (4, 4, 3), (3,),
                                     (2,)]
    # 3*3*3*2 + 2 biases; 3*3*2 depthwise; 2*3 + 3; 3*2 + 2.
    assert table["parameters"] == [0, 56, 0, 18, 9, 0, 8]
    assert table["group"] == ["input", "conv1", "conv1", "block1", "block1", "head", "head"]
    assert sum(table["parameters"]) == model.count_params()
    assert table[1] == {"name": "conv1", "type": "Conv2D", "output shape": (6, 6, 2),
                        "parameters": 56, "group": "conv1"}


def test_layer_table_prints_as_text_and_html(known):
    model, *_ = known
    table = h.layer_table(model)
    text = str(table)
    assert text.splitlines()[0] == "known_cnn: 7 layers, 91 parameters"
    assert "block1_dwconv" in text and "(4, 4, 2)" in text
    page = table._repr_html_()
    assert page.startswith("<table>") and page.count("<tr>") == 1 + len(table)
    assert "<td style='text-align:right'>56</td>" in page


def test_long_tables_are_shortened_for_display(known):
    model, *_ = known
    table = h.layer_table(model)
    table.max_rows = 4
    assert "... 3 more rows ..." in str(table)
    assert "3 more rows" in table._repr_html_()
    assert len(table.to_text(max_rows=None).splitlines()) == 2 + 1 + 7


def test_layer_table_filters_by_group_and_names_the_groups(known):
    model, *_ = known
    assert h.layer_table(model, group="block1")["name"] == ["block1_dwconv", "block1_project"]
    assert h.layer_table(model, group=["input", "head"])["name"] == [
        "input_image", "avg_pool", "predictions"]
    with pytest.raises(ValueError, match="no block group 'block9'.*groups: input, conv1, block1"):
        h.layer_table(model, group="block9")
    assert layer_group(model, "block1_project") == "block1"


def test_group_table_summarises_groups(known):
    model, *_ = known
    table = h.group_table(model)
    assert table["group"] == ["input", "conv1", "block1", "head"]
    assert table["output shape"] == [(8, 8, 3), (6, 6, 2), (4, 4, 3), (2,)]
    assert table["input shape"][2] == (6, 6, 2)
    assert table["parameters"] == [0, 56, 27, 8]
    assert table["layers"] == [1, 2, 2, 2]


def test_architecture_of_the_real_model(lite0):
    table = h.group_table(lite0)
    assert table["group"] == ["input", "stem"] + [f"block{i}" for i in range(1, 8)] + ["head"]
    shapes = dict(zip(table["group"], table["output shape"]))
    assert shapes["stem"] == (112, 112, 32)
    assert shapes["block2"] == (56, 56, 24)
    assert shapes["block7"] == (7, 7, 320)
    assert shapes["head"] == (1000,)
    assert dict(zip(table["group"], table["blocks"]))["block6"] == 4
    assert sum(table["parameters"]) == lite0.count_params()
    assert layer_group(lite0, "top_activation") == "head"
    assert layer_group(lite0, "block4b_expand_conv") == "block4"


def test_show_architecture_draws_every_group(known):
    model, *_ = known
    fig = h.show_architecture(model)
    texts = [t.get_text() for t in fig.axes[0].texts]
    for group in ("input", "conv1", "block1", "head"):
        assert group in texts
    assert "4×4×3" in " ".join(texts)
    plt.close(fig)


# ---------------------------------------------------------------- filters

def test_filter_weights_are_the_kernel(known):
    model, conv, depthwise, project = known
    np.testing.assert_array_equal(h.filter_weights(model), conv)  # the first conv by default
    np.testing.assert_array_equal(h.filter_weights(model, "block1_project"), project)
    # A depthwise kernel reads like the others: (kh, kw, 1 input channel, one filter per channel).
    np.testing.assert_array_equal(h.filter_weights(model, "block1_dwconv"),
                                  depthwise.reshape(3, 3, 1, 2))
    assert [layer.name for layer in conv_layers(model)] == [
        "conv1", "block1_dwconv", "block1_project"]


def test_rgb_filters_map_zero_to_grey_and_keep_colour_and_sign(known):
    model, *_ = known
    tiles = h.rgb_filters(model, "conv1")
    assert tiles.shape == (2, 3, 3, 3) and tiles.dtype == np.float32
    red = tiles[0]
    np.testing.assert_allclose(red[..., 0], 1.0)        # the red weights: full red
    np.testing.assert_allclose(red[..., 1:], 0.5)       # zero weights: grey
    edge = tiles[1]
    np.testing.assert_allclose(edge[0], 1.0)            # +2 at the top: white
    np.testing.assert_allclose(edge[1], 0.5)
    np.testing.assert_allclose(edge[2], 0.0)            # -2 at the bottom: black
    # One scale for the layer: the red filter (max 1) is half as strong as the edge (max 2).
    layer_scaled = h.rgb_filters(model, "conv1", scale="layer")
    np.testing.assert_allclose(layer_scaled[0, ..., 0], 0.75)
    np.testing.assert_allclose(layer_scaled[1], edge)


def test_channel_filters_are_signed_slices(known):
    model, conv, depthwise, project = known
    slices = h.channel_filters(model, "conv1")
    assert slices.shape == (2, 3, 3, 3)                 # (filters, in, kh, kw)
    np.testing.assert_allclose(slices[1, 2], conv[:, :, 2, 1] / 2.0)
    one_by_one = h.channel_filters(model, "block1_project", scale="layer")
    assert one_by_one.shape == (3, 2, 1, 1)
    np.testing.assert_allclose(one_by_one[:, :, 0, 0], project[0, 0].T / 2.0)
    per_channel = h.channel_filters(model, "block1_dwconv")
    assert per_channel.shape == (2, 1, 3, 3)
    np.testing.assert_allclose(per_channel[1, 0], depthwise[:, :, 1, 0]
                               / np.abs(depthwise[:, :, 1, 0]).max())


def test_filter_errors_name_the_problem(known):
    model, *_ = known
    with pytest.raises(ValueError, match="'avg_pool' is a GlobalAveragePooling2D.*no convolution "
                                         "filters.*conv1, block1_dwconv, block1_project"):
        h.filter_weights(model, "avg_pool")
    with pytest.raises(ValueError, match="sees 2 input channels, not 3.*channel_filters"):
        h.rgb_filters(model, "block1_project")
    with pytest.raises(ValueError, match="no layer named 'conv'.*Did you mean"):
        h.rgb_filters(model, "conv")
    with pytest.raises(ValueError, match="scale must be 'filter'.*or 'layer'"):
        h.rgb_filters(model, scale="global")
    with pytest.raises(ValueError, match="filter 5 is out of range.*2 filters"):
        h.show_channel_filters(model, "conv1", filters=[5])


def test_filter_figures(known, lite0):
    model, *_ = known
    for fig in (h.show_rgb_filters(model), h.show_channel_filters(model, "conv1"),
                h.show_channel_filters(model, "block1_dwconv"),
                h.show_channel_filters(model, "block1_project")):
        assert fig.axes
        plt.close(fig)
    fig = h.show_rgb_filters(lite0)
    assert "stem_conv: 32 filters of 3×3×3" in fig._suptitle.get_text()
    plt.close(fig)
    tiles = h.rgb_filters(lite0)
    assert tiles.shape == (32, 3, 3, 3) and 0.0 <= tiles.min() and tiles.max() <= 1.0


def test_tile_grids_follow_presentation_mode(lite0):
    """32 stem filters: 8 tiles per row normally; rows of 4 larger tiles on a projector."""
    from helpers.environment import PRESENTATION_COLUMNS, PRESENTATION_WIDTH

    def columns_and_width(fig):
        grid = fig.axes[0].get_subplotspec().get_gridspec()
        return grid.ncols, fig.get_size_inches()[0]

    try:
        h.setup(presentation=False)
        normal = h.show_rgb_filters(lite0)
        h.setup(presentation=True)
        projected = h.show_rgb_filters(lite0)
        maps = h.show_feature_maps(lite0, "chelsea", "stem_activation", count=15)
    finally:
        h.setup(presentation=False)
    (normal_columns, normal_width), (columns, width) = map(columns_and_width, (normal, projected))
    assert normal_columns == 8 and columns == PRESENTATION_COLUMNS == 4
    assert width > normal_width and width <= PRESENTATION_WIDTH
    assert columns_and_width(maps)[0] == 4
    for fig in (normal, projected, maps):
        plt.close(fig)


# ---------------------------------------------------------------- activations

def test_activations_equal_a_hand_computation(known, pixels):
    model, conv, depthwise, project = known
    expected_conv = _conv_by_loops(pixels.astype(np.float64), conv, [0.0, -1.0])
    np.testing.assert_allclose(h.activations(model, pixels, "conv1"), expected_conv,
                               rtol=1e-5, atol=1e-3)
    relu = np.maximum(expected_conv, 0.0)
    np.testing.assert_allclose(h.activations(model, pixels, "conv1_activation"), relu,
                               rtol=1e-5, atol=1e-3)
    # Depthwise: each channel with its own 3x3 filter.
    expected_dw = np.stack([
        _conv_by_loops(relu[..., c:c + 1], depthwise[:, :, c:c + 1, :], [0.0])[..., 0]
        for c in range(2)], axis=-1)
    dw = h.activations(model, pixels, "block1_dwconv")
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-5, atol=1e-2)
    expected_project = expected_dw @ project[0, 0] + np.array([0.0, 1.0, 0.0])
    np.testing.assert_allclose(h.activations(model, pixels, "block1_project"), expected_project,
                               rtol=1e-5, atol=1e-2)
    # A dense layer's activations are the model's logits.
    np.testing.assert_allclose(h.activations(model, pixels, "predictions"),
                               np.asarray(model(pixels)), rtol=1e-5, atol=1e-3)


def test_activations_single_image_and_chunks(known, pixels):
    model, *_ = known
    both = h.activations(model, pixels, "block1_dwconv")
    single = h.activations(model, pixels[1], "block1_dwconv")
    assert single.shape == (4, 4, 2) and single.dtype == np.float32
    np.testing.assert_allclose(single, both[1], rtol=1e-6)
    np.testing.assert_allclose(h.activations(model, pixels, "block1_dwconv", batch_size=1), both,
                               rtol=1e-6)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        h.activations(model, pixels, "conv1", batch_size=0)
    with pytest.raises(ValueError, match="no layer named 'conv_1'"):
        h.activations(model, pixels, "conv_1")


def test_top_channels_rank_by_mean_activation():
    maps = np.zeros((2, 2, 4), np.float32)
    maps[..., 0] = 1.0
    maps[..., 2] = 3.0
    maps[0, 0, 3] = 8.0                                  # mean 2
    channels, means = h.top_channels(maps, 3)
    assert channels.tolist() == [2, 3, 0]
    np.testing.assert_allclose(means, [3.0, 2.0, 1.0])
    other = np.zeros_like(maps)
    other[..., 1] = 10.0                                 # channel 1: mean 5 over the batch
    batch_channels, batch_means = h.top_channels(np.stack([maps, other]), 2)
    assert batch_channels.tolist() == [1, 2]
    np.testing.assert_allclose(batch_means, [5.0, 1.5])
    with pytest.raises(ValueError, match="count must be a positive integer"):
        h.top_channels(maps, 0)
    with pytest.raises(ValueError, match=r"feature maps must be \(h, w, channels\)"):
        h.top_channels(np.zeros(5), 1)


def test_feature_map_figures_and_channel_errors(known, pixels):
    model, *_ = known
    fig = h.show_feature_maps(model, pixels[0], "conv1_activation", count=2)
    maps = h.activations(model, pixels[0], "conv1_activation")
    best = int(np.argmax(maps.mean(axis=(0, 1))))
    assert fig.axes[1].get_title().startswith(f"ch {best}:")
    plt.close(fig)
    fig = h.show_channel(model, pixels[0], "block1_dwconv", 1)
    assert "block1_dwconv channel 1" in fig.axes[1].get_title()
    plt.close(fig)
    with pytest.raises(ValueError, match="channel 2 is out of range: layer 'block1_dwconv' has 2 "
                                         "channels, 0..1"):
        h.show_channel(model, pixels[0], "block1_dwconv", 2)
    with pytest.raises(ValueError, match="'predictions' outputs shape \\(2,\\), not a spatial map"):
        h.show_feature_maps(model, pixels[0], "predictions")


def _gradient_support(model, layer_name, size):
    """Brute force: rows and columns of input pixels whose gradient reaches the centre unit.

    Outside the receptive field the gradient is a sum of zeros, but a kernel that computes a
    tile together (oneDNN picks them by instruction set) may leave round-off there: a row or
    column counts above 1e-5 of the largest. The edges of the field carry 25 % of it or more.
    """
    import tensorflow as tf

    probe = keras.Model(model.inputs, model.get_layer(layer_name).output)
    image = tf.constant(np.random.default_rng(1).uniform(0, 255, (1, size, size, 3)), tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(image)
        maps = probe(image)
        centre = maps[0, maps.shape[1] // 2, maps.shape[2] // 2, :]
        total = tf.reduce_sum(centre)
    gradient = np.abs(tape.gradient(total, image).numpy()[0]).sum(axis=-1)
    by_row, by_column = gradient.sum(axis=1), gradient.sum(axis=0)
    rows = np.flatnonzero(by_row > 1e-5 * by_row.max())
    columns = np.flatnonzero(by_column > 1e-5 * by_column.max())
    return rows.max() - rows.min() + 1, columns.max() - columns.min() + 1


def test_receptive_field_matches_the_gradient_support_of_a_linear_stack():
    # No ReLU, so every pixel inside the receptive field has a non-zero gradient.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((96, 96, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same", name="a")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="b")(x)
    skip = keras.layers.AveragePooling2D(2, name="c")(x)
    x = keras.layers.Conv2D(4, 5, padding="same", dilation_rate=2, name="d")(skip)
    x = keras.layers.Add(name="e")([x, skip])
    model = keras.Model(inputs, x)
    # by hand: a (3, 2), b (7, 2), c (9, 4), d (9 + 4*2*4 = 41, 4), e: the larger branch
    expected = {"a": (3, 2), "b": (7, 2), "c": (9, 4), "d": (41, 4), "e": (41, 4)}
    assert {name: h.receptive_field(model, name) for name in expected} == expected
    for name in ("a", "b", "c", "d"):
        assert _gradient_support(model, name, 96) == (expected[name][0],) * 2


def test_receptive_field_of_the_course_model(lite0):
    # 3x3/2 stem, then the MBConv depthwise kernels and strides of EfficientNet-Lite0
    assert h.receptive_field(lite0, "stem_activation") == (3, 2)
    assert h.receptive_field(lite0, "block2a_dwconv") == (11, 4)
    assert h.receptive_field(lite0, "top_activation") == (851, 32)
    with pytest.raises(ValueError, match="not a spatial map"):
        h.receptive_field(lite0, "predictions")


def test_dead_filters_stay_grey_under_per_filter_scaling():
    kernel = np.random.default_rng(0).normal(size=(3, 3, 3, 4)).astype(np.float32)
    kernel[..., 2] *= 1e-8                       # what training left of a switched-off filter
    assert h.dead_filters(kernel).tolist() == [False, False, True, False]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3))
    conv = keras.layers.Conv2D(4, 3, use_bias=False, name="conv")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([kernel])
    tiles = h.rgb_filters(model, "conv")
    assert np.allclose(tiles[2], 0.5, atol=1e-6)            # not blown up to full contrast
    assert np.isclose(np.abs(tiles[0] - 0.5).max(), 0.5)    # live filters use their own range
