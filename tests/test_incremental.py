"""Incremental occlusion: the same scores as full recomputation, from fewer multiply-adds.

References: h.occlusion_scores (every occluded copy through the whole network),
TensorFlow's own FLOP count of the graph (profiler), and the changes measured
in every layer's output when a patch is put in.
"""
import numpy as np
import pytest

import helpers as h
from helpers import incremental
from helpers.incremental import _compiled, _key, _plan
from helpers.masks import patch_starts
import keras
import tensorflow as tf


def build_mbconv_net(size=32, channels=3, seed=0, activation="relu6", head=None,
                     name="mbconv_net"):
    """EfficientNet-Lite's layer types in miniature: a strided stem, a residual block
    (depthwise 3x3, project), an expanded block with a strided depthwise 5x5, a valid 3x3
    convolution with bias and activation, a head, average pooling, dense logits."""
    keras.utils.set_random_seed(seed)

    def act(name):
        if activation == "leaky":  # never flat, so every change reaches the next layer
            return keras.layers.ReLU(negative_slope=0.3, name=name)
        return keras.layers.ReLU(max_value=6.0, name=name)

    inputs = keras.Input((size, size, channels), name="input_image")
    x = keras.layers.Rescaling(1 / 128, offset=-127 / 128, name="preprocess")(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = act("stem_activation")(x)
    shortcut = x
    x = keras.layers.DepthwiseConv2D(3, padding="same", use_bias=False, name="block1_dwconv")(x)
    x = keras.layers.BatchNormalization(name="block1_bn")(x)
    x = act("block1_activation")(x)
    x = keras.layers.Conv2D(8, 1, use_bias=False, name="block1_project_conv")(x)
    x = keras.layers.BatchNormalization(name="block1_project_bn")(x)
    x = keras.layers.Add(name="block1_add")([x, shortcut])
    x = keras.layers.Conv2D(24, 1, use_bias=False, name="block2_expand_conv")(x)
    x = act("block2_expand_activation")(x)
    x = keras.layers.DepthwiseConv2D(5, strides=2, padding="same", name="block2_dwconv")(x)
    x = act("block2_activation")(x)
    x = keras.layers.Conv2D(12, 3, padding="valid", activation="relu", name="valid_conv")(x)
    x = keras.layers.Conv2D(16, 1, name="top_conv")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(10, activation=head, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=name)
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # batch norms that do something
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.3, c),
                               rng.normal(0, 0.3, c), rng.uniform(0.5, 2.0, c)])
    return model


@pytest.fixture(scope="module")
def mbconv_net():
    return build_mbconv_net()


@pytest.fixture
def photo():
    return np.random.default_rng(1).uniform(0, 255, (32, 32, 3)).astype(np.float32)


def assert_same_occlusion(fast, full, classes):
    """Same scores, and the same drop maps to 1e-4 of their peak."""
    np.testing.assert_allclose(fast.clean, full.clean, atol=1e-5)
    np.testing.assert_allclose(fast.scores, full.scores, atol=1e-5)
    expected = full.map(classes)
    peak = np.abs(expected).max()
    assert peak > 1e-5  # the maps are not zeros
    assert np.abs(fast.map(classes) - expected).max() < 1e-4 * peak


# ---------------------------------------------------------------- the bound

def tensorflow_flops(model):
    """Floating-point operations of the convolutions and matrix products, as TensorFlow's
    profiler counts them in the frozen graph (2 per multiply-add)."""
    from tensorflow.python.framework.convert_to_constants import \
        convert_variables_to_constants_v2

    function = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((1,) + tuple(model.inputs[0].shape[1:]), tf.float32))
    graph = convert_variables_to_constants_v2(function).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    profile = tf.compat.v1.profiler.profile(graph=graph, options=options)
    kinds = {"Conv2D", "DepthwiseConv2dNative", "MatMul"}
    return sum(child.total_float_ops for child in profile.children
               if graph.get_operation_by_name(child.name).type in kinds)


def test_multiply_adds_equal_tensorflows_flop_count(mbconv_net, lite0):
    for model in (mbconv_net, lite0):
        bound = h.incremental_bound(model, patch_size=8, stride=8)
        assert 2 * bound.total_macs == tensorflow_flops(model)
    bound = h.incremental_bound(mbconv_net, patch_size=8, stride=8)
    first = bound.layers[0]
    assert (first.name, first.kind, first.output_shape) == ("stem_conv", "conv 3x3/2", (16, 16, 8))
    assert first.macs == 16 * 16 * 8 * 3 * 3 * 3


def measured_change(model, image, top, left, patch_size, layers):
    """(first row, last row, first col, last col) of the outputs of ``layers`` that change
    when the patch is put in, found by running both images through the network.

    An output the patch cannot reach is the same sum again, but a kernel that computes a
    tile of outputs together (oneDNN picks them by instruction set) may round it otherwise:
    a change counts above 1e-5 of the map's peak. Real changes here are 3e-3 of it or more.
    """
    features = keras.Model(model.inputs[0], [model.get_layer(name).output for name in layers])
    occluded = image.copy()
    occluded[max(top, 0):top + patch_size, max(left, 0):left + patch_size] = 127.5
    boxes = []
    for clean, hidden in zip(features(image[None]), features(occluded[None])):
        change = np.abs(np.asarray(hidden) - np.asarray(clean))[0].max(axis=-1)
        rows, cols = np.nonzero(change > 1e-5 * np.abs(np.asarray(clean)).max())
        boxes.append((rows.min(), rows.max(), cols.min(), cols.max()))
    return boxes


@pytest.mark.parametrize("patch_size, stride", [(8, 2), (7, 2), (12, 4)])
def test_the_windows_are_exactly_what_a_patch_changes(photo, patch_size, stride):
    model = build_mbconv_net(activation="leaky", name="leaky_net")
    plan = _plan(model, patch_size, stride)
    layers = ["stem_conv", "block1_dwconv", "block1_add", "block2_dwconv", "valid_conv"]
    starts = patch_starts(32, patch_size, stride)
    assert starts[0] < 0  # the border positions hang over the edge
    for i, j in [(0, 0), (1, len(starts) - 1), (len(starts) // 2, 2)]:
        measured = measured_change(model, photo, starts[i], starts[j], patch_size, layers)
        for name, box in zip(layers, measured):
            region = plan.changed[_key(model.get_layer(name).output)]
            predicted = (region.rows.first[i], region.rows.last[i],
                         region.cols.first[j], region.cols.last[j])
            assert predicted == box, name


def test_the_bound_on_efficientnet_lite0(lite0):
    bounds = [h.incremental_bound(lite0, patch_size=size, stride=8) for size in (16, 32, 64)]
    speedups = [bound.speedup for bound in bounds]
    assert speedups == sorted(speedups, reverse=True)  # a larger patch changes more
    assert all(1.3 < s < 2.0 for s in speedups)  # the 7x7 stages change fully
    for bound in bounds:
        assert bound.engine_speedup <= bound.speedup
        assert bound.layers[-1].changed == 1.0  # the dense layer sees every change
    # Patch 32 at an interior position: stem 3x3/2 (top padding 0) changes rows
    # ceil((a - 2) / 2) .. floor((a + 31) / 2): 17 of 112; a depthwise 3x3 adds 2.
    plan = _plan(lite0, 32, 8)
    assert plan.changed[_key(lite0.get_layer("stem_conv").output)].shape == (17, 17)
    assert plan.changed[_key(lite0.get_layer("block1a_dwconv").output)].shape == (19, 19)


# ---------------------------------------------------------------- the engine

@pytest.mark.parametrize("patch_size, stride, baseline, score, batch_size", [
    (8, 2, "grey", "probability", 7),     # starts -2, 0, 2, ...: cut at the border
    (12, 4, "blur", "logit", 64),         # one batch, padded
    (7, 2, "black", "logit", 5),          # odd patch, odd starts
    (10, 3, 40.0, "probability", 3),      # a stride not dividing 2
])
def test_incremental_equals_full_recomputation(mbconv_net, photo, patch_size, stride, baseline,
                                               score, batch_size):
    kwargs = dict(patch_size=patch_size, stride=stride, baseline=baseline, score=score,
                  progress=False)
    fast = h.incremental_occlusion_scores(mbconv_net, photo, batch_size=batch_size, **kwargs)
    full = h.occlusion_scores(mbconv_net, photo, **kwargs)
    assert isinstance(fast, type(full))
    np.testing.assert_array_equal(fast.masks.row_starts, full.masks.row_starts)
    assert fast.scores.shape == full.scores.shape and fast.scores.dtype == np.float32
    assert_same_occlusion(fast, full, list(range(10)))


@pytest.mark.parametrize("share", [1.01, 0.15])
def test_exact_wherever_the_windows_stop(mbconv_net, photo, monkeypatch, share):
    monkeypatch.setattr(incremental, "FULL_MAP_SHARE", share)
    plan = _plan(mbconv_net, 8, 4)
    stop = plan.steps[plan.cut].node.operation.name
    assert stop == ("avg_pool" if share > 1 else "block1_dwconv")
    fast = h.incremental_occlusion_scores(mbconv_net, photo, patch_size=8, stride=4,
                                          score="logit", progress=False)
    full = h.occlusion_scores(mbconv_net, photo, patch_size=8, stride=4, score="logit",
                              progress=False)
    assert_same_occlusion(fast, full, 1)


def test_one_trace_serves_every_stride_and_patch_size_of_a_plan(mbconv_net, photo):
    # Patches of 7..16 pixels change the maps up to block2's depthwise convolution
    # (windows of different sizes): one plan structure, one compiled function.
    plans = [_plan(mbconv_net, size, 2) for size in (7, 10, 16)]
    assert len({plan.signature for plan in plans}) == 1
    assert len({tuple(plan.window_lengths().ravel()) for plan in plans}) == 3
    for size, stride in [(7, 2), (10, 3), (16, 8), (10, 4)]:
        fast = h.incremental_occlusion_scores(mbconv_net, photo, patch_size=size, stride=stride,
                                              batch_size=6, score="logit", progress=False)
        full = h.occlusion_scores(mbconv_net, photo, patch_size=size, stride=stride,
                                  score="logit", progress=False)
        assert_same_occlusion(fast, full, 4)
    clean_pass, forward = _compiled(mbconv_net, plans[0], 6)
    assert forward.experimental_get_tracing_count() == 1
    assert clean_pass.experimental_get_tracing_count() == 1


def test_softmax_heads_and_grayscale(photo):
    logits = build_mbconv_net(seed=2, name="logit_head")
    softmax = build_mbconv_net(seed=2, head="softmax", name="softmax_head")
    softmax.set_weights(logits.get_weights())
    kwargs = dict(patch_size=8, stride=4, score="logit", progress=False)
    expected = h.occlusion_scores(logits, photo, **kwargs)
    assert_same_occlusion(h.incremental_occlusion_scores(softmax, photo, **kwargs), expected, 0)
    gray = build_mbconv_net(size=28, channels=1, seed=3, name="gray")
    image = photo[:28, :28, 0]
    assert_same_occlusion(h.incremental_occlusion_scores(gray, image, **kwargs),
                          h.occlusion_scores(gray, image, **kwargs), 2)


def test_efficientnet_lite0_patch_32(lite0):
    # Stride 15: 14 x 14 positions starting at -1, so border patches are cut and
    # consecutive positions fall on different sides of every stride 2.
    photo = h.prepare("chelsea", lite0)[0]
    kwargs = dict(patch_size=32, stride=15, progress=False)
    fast = h.incremental_occlusion_scores(lite0, photo, **kwargs)
    full = h.occlusion_scores(lite0, photo, **kwargs)
    assert fast.masks.row_starts[0] == -1 and fast.masks.count == 196
    tabby = h.class_index("tabby")
    assert_same_occlusion(fast, full, tabby)
    np.testing.assert_array_equal(np.argmax(fast.scores, axis=1), np.argmax(full.scores, axis=1))


# ---------------------------------------------------------------- errors

def test_other_architectures_get_a_clear_error(tiny_cnn, tiny_image):
    with pytest.raises(ValueError, match="'pool1' \\(MaxPooling2D\\).*h.occlusion_scores"):
        h.incremental_occlusion_scores(tiny_cnn, tiny_image, patch_size=8, progress=False)
    base = build_mbconv_net(name="base")
    nested = keras.Sequential([keras.Input((32, 32, 3)), base], name="nested")
    with pytest.raises(ValueError, match="'nested'.*functional Keras model.*h.occlusion_scores"):
        h.incremental_occlusion_scores(nested, tiny_image, patch_size=8, progress=False)


def test_a_patch_that_changes_every_map_is_full_recomputation(mbconv_net, photo):
    assert _plan(mbconv_net, 28, 8).cut == 0  # the stem's window already covers its map
    kwargs = dict(patch_size=28, stride=8, score="logit", progress=False)
    assert_same_occlusion(h.incremental_occlusion_scores(mbconv_net, photo, **kwargs),
                          h.occlusion_scores(mbconv_net, photo, **kwargs), 5)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(patch_size=0), ValueError, "patch_size"),
    (dict(patch_size=8.0), TypeError, "patch_size"),
    (dict(stride=9, patch_size=8), ValueError, "stride"),
    (dict(score="rank"), ValueError, "score"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(baseline="plaid", patch_size=8), ValueError, "baseline"),
])
def test_bad_knobs(mbconv_net, photo, kwargs, error, match):
    with pytest.raises(error, match=match):
        h.incremental_occlusion_scores(mbconv_net, photo, progress=False, **kwargs)


def test_one_image_only(mbconv_net, photo):
    with pytest.raises(ValueError, match="image: this function scores one image"):
        h.incremental_occlusion_scores(mbconv_net, np.stack([photo, photo]), progress=False)
    with pytest.raises(TypeError, match="model must be a Keras model"):
        h.incremental_occlusion_scores("efficientnet_lite0", photo)


def test_some_positions_only(mbconv_net, photo):
    from helpers.incremental import incremental_patch_scores

    full = h.occlusion_scores(mbconv_net, photo, patch_size=8, stride=2, progress=False)
    positions = [0, 14, 100, 224, 7]  # corners, the middle, out of order
    clean, scores = incremental_patch_scores(mbconv_net, photo, full.masks, positions,
                                             batch_size=4, progress=False)
    np.testing.assert_allclose(clean, full.clean, atol=1e-6)
    np.testing.assert_allclose(scores, full.scores[positions], atol=1e-6)
    with pytest.raises(ValueError, match="positions must be .* in 0..224"):
        incremental_patch_scores(mbconv_net, photo, full.masks, [3, 225], progress=False)


# ---------------------------------------------------------------- coarse to fine

def test_coarse_to_fine_passes_use_the_incremental_engine(mbconv_net, photo, monkeypatch):
    """``occlusion_passes(engine="auto")`` scores through the incremental engine where it can,
    giving the full engine's passes (same positions, scores to float round-off)."""
    calls = []
    engine = incremental.incremental_patch_scores
    monkeypatch.setattr(incremental, "incremental_patch_scores",
                        lambda *args, **kwargs: calls.append(len(args[3])) or engine(*args,
                                                                                     **kwargs))
    kwargs = dict(patch_size=8, stride=2, score="logit")
    fast = list(h.occlusion_passes(mbconv_net, photo, **kwargs))
    full = list(h.occlusion_passes(mbconv_net, photo, engine="full", **kwargs))
    scored = [int(p.computed.sum()) if p.computed is not None else p.masks.count for p in fast]
    assert len(full) == 3 and calls == np.diff([0] + scored).tolist()  # each pass: new ones only
    for a, b in zip(fast, full):
        np.testing.assert_array_equal(a.computed, b.computed)
        assert_same_occlusion(a, b, list(range(10)))


def test_coarse_to_fine_falls_back_to_the_full_engine(tiny_cnn, tiny_image):
    """MaxPooling is not computed on windows: "auto" runs the full engine, "incremental" says why."""
    auto = list(h.occlusion_passes(tiny_cnn, tiny_image, patch_size=8, stride=2))
    full = list(h.occlusion_passes(tiny_cnn, tiny_image, patch_size=8, stride=2, engine="full"))
    np.testing.assert_array_equal(auto[-1].scores, full[-1].scores)
    with pytest.raises(ValueError, match="'pool1' \\(MaxPooling2D\\).*h.occlusion_scores"):
        next(h.occlusion_passes(tiny_cnn, tiny_image, patch_size=8, stride=2,
                                engine="incremental"))
    with pytest.raises(ValueError, match="engine must be one of"):
        next(h.occlusion_passes(tiny_cnn, tiny_image, engine="krypton"))
