"""Incremental occlusion: recompute only what the patch changed, exactly.

Nakandala, Kumar & Papakonstantinou (2019), *Incremental and Approximate
Inference for Faster Occlusion-based Deep CNN Explanations* (SIGMOD; the
system is called Krypton). Sliding-patch occlusion runs the network once per
patch position, yet a patch changes only a window of each early feature map.
A convolution with kernel k, stride s and top padding p computes output row o
from input rows ``s o - p .. s o - p + k - 1``, so when input rows a..b change,
exactly the output rows

    ceil((a + p - k + 1) / s) .. floor((b + p) / s)      (clipped to the map)

change (columns alike). A 1x1 convolution, batch norm or ReLU keeps the
window; an add takes the hull of its inputs' windows; each kxk convolution
widens it by k - 1 and each stride halves it, until it covers the whole map
and every later layer changes fully.

* :func:`incremental_bound` counts the multiply-adds a patch really changes,
  layer by layer, and the speed-up this allows over full recomputation:
  ``total MACs / changed MACs``.
* :func:`incremental_occlusion_scores` is sliding-patch occlusion computed
  that way: the unoccluded image runs once and every layer's output is kept
  (the *base* maps); for each patch position a convolution runs only on its
  changed output window, reading its input window just recomputed plus a
  halo of unchanged values from the base map (``padding="VALID"`` on the
  window, the map's zero padding where the window meets the border). Once a
  window covers most of its map it is pasted into the base map and the rest
  of the network runs as usual. The scores equal full recomputation up to
  float round-off; it returns the same :class:`helpers.occlusion.OcclusionScores` (through :func:`helpers.incremental_occlusion_scores`)
  as :func:`helpers.occlusion_scores`.

Windows have a fixed size per layer (the largest any position needs; at the
border they are shifted inside the map), so ``batch_size`` positions go
through one compiled function. The window sizes are inputs of that function,
not shapes, so TensorFlow traces it once per plan structure (which layer the
windows stop at), not once per patch size or stride. It works on functional
models whose early layers are Conv2D,
DepthwiseConv2D, BatchNormalization, ReLU, Activation, Add or a pixel
rescaling, such as the EfficientNet-Lite models of :func:`helpers.load_model`;
other models get a clear error (use :func:`helpers.occlusion_scores`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .environment import tf
import keras

from .masks import DEFAULT_BATCH_SIZE, SCORES, PatchMasks, baseline_image
from .models import PixelPreprocess
from .pipeline import batches, cached, check_choice, model_spec, positive_int

__all__ = ["incremental_bound"]

# A layer whose changed window covers at least this share of its map, and
# every layer after it, is computed on the whole map: on a window that large
# the gathering costs more than the few multiply-adds it saves.
FULL_MAP_SHARE = 0.5

_POINTWISE = (keras.layers.BatchNormalization, keras.layers.ReLU, keras.layers.Activation,
              keras.layers.LeakyReLU, keras.layers.Rescaling, PixelPreprocess)
_CONVOLUTIONS = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)


# --------------------------------------------------------------------------
# The engine's call (h.incremental_occlusion_scores in helpers.occlusion wraps it)
# --------------------------------------------------------------------------

def incremental_patch_scores(model, image, masks: PatchMasks, positions=None, *, baseline="grey",
                             score: str = "probability", batch_size: int = DEFAULT_BATCH_SIZE,
                             progress: bool = True, description: str = "incremental occlusion"):
    """The engine: ``(clean, scores)`` for some positions of ``masks``, incrementally.

    Like :func:`helpers.occlusion.perturbation_scores` for patch masks:
    ``image`` is one prepared float32 (H, W, C) image, ``positions`` indices
    into ``masks`` (row-major; all by default), and the result float32 (C,)
    scores of the unoccluded image and (len(positions), C) of the occluded
    ones (softmax probabilities of the logits, or the logits with
    ``score="logit"``), so a coarse-to-fine pass can score only its new
    positions.
    """
    check_choice(score, "score", SCORES)
    positive_int(batch_size, "batch_size")
    spec = model_spec(model)
    image = np.asarray(image, dtype=np.float32)
    if image.shape != spec.input_shape:
        raise ValueError(f"image: incremental_patch_scores needs one prepared image of shape "
                         f"{spec.input_shape} for this model; got {image.shape} "
                         "(h.prepare(photo, model)[0] makes one)")
    plan = _plan(model, masks.patch_size, masks.stride)  # a huge patch: no windows at all
    positions = np.arange(masks.count) if positions is None else np.asarray(positions)
    if positions.size and not np.issubdtype(positions.dtype, np.integer):
        raise TypeError(f"positions must be a list of integer position indices, not "
                        f"{positions.dtype} values")
    if positions.ndim != 1 or \
            (positions.size and not 0 <= positions.min() <= positions.max() < masks.count):
        raise ValueError(f"positions must be a list of position indices in 0..{masks.count - 1}")
    hidden = baseline_image(image, baseline)
    clean_pass, forward = _compiled(model, plan, batch_size)
    clean, bases = clean_pass(tf.constant(image[None]))
    window_starts = plan.window_starts()[:, positions]           # (windows, positions, 2)
    lengths = tf.constant(plan.window_lengths())
    rows, cols = np.divmod(positions, len(masks.col_starts))
    patch_starts = np.stack([masks.row_starts[rows], masks.col_starts[cols]], axis=-1)
    image_tensor, hidden_tensor = tf.constant(image), tf.constant(hidden)
    scores = np.empty((len(positions), int(clean.shape[-1])), dtype=np.float32)
    for start, stop in batches(len(positions), batch_size, progress=progress,
                               description=description, unit="img", minimum=0):
        index = np.arange(start, start + batch_size)
        index[stop - start:] = start  # the last batch is padded with its first position
        result = forward(image_tensor, hidden_tensor, bases,
                         tf.constant(window_starts[:, index].transpose(1, 0, 2)), lengths,
                         tf.constant(patch_starts[index].astype(np.int32)),
                         tf.constant(masks.patch_size, tf.int32)).numpy()
        scores[start:stop] = result[:stop - start]
    clean = clean.numpy()[0]
    if score == "probability":
        return spec.probabilities(clean), spec.probabilities(scores)
    return clean, scores


def check_incremental(model, masks: PatchMasks) -> None:
    """Raise the ValueError that says why ``model`` cannot be occluded incrementally, if it cannot."""
    _plan(model, masks.patch_size, masks.stride)


@dataclass(frozen=True)
class LayerWork:
    """One layer's multiply-adds for one occluded copy (per image)."""

    name: str
    kind: str                 # "conv 3x3/2", "depthwise 5x5/1", "dense"
    output_shape: tuple       # (H, W, C) or (units,)
    macs: int                 # full recomputation
    changed: float            # mean share of its outputs a patch changes
    computed: float           # share incremental_occlusion_scores computes (fixed windows)


@dataclass(frozen=True)
class IncrementalBound:
    """The multiply-adds a patch changes, layer by layer (:func:`incremental_bound`)."""

    patch_size: int
    stride: int
    layers: tuple

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def changed_macs(self) -> float:
        return sum(layer.macs * layer.changed for layer in self.layers)

    @property
    def computed_macs(self) -> float:
        return sum(layer.macs * layer.computed for layer in self.layers)

    @property
    def speedup(self) -> float:
        """The bound: full recomputation's MACs over the MACs a patch changes."""
        return self.total_macs / self.changed_macs

    @property
    def engine_speedup(self) -> float:
        """The same ratio for what the engine computes (whole windows, full maps after the cut)."""
        return self.total_macs / self.computed_macs


def incremental_bound(model, *, patch_size: int = 32, stride: int = 8) -> IncrementalBound:
    """The share of multiply-adds that an occluding patch really changes (Nakandala et al. 2019).

    For each convolution and dense layer of ``model``: its multiply-adds per
    image (``H_out W_out k_h k_w C_in C_out`` for a convolution, ``k_h k_w``
    per output for a depthwise one, ``in x out`` for a dense layer) and the
    mean over all patch positions of the share of its outputs that the patch
    changes, read from kernel sizes, strides, paddings and output shapes
    (the window rule of the module docstring; a layer of any other kind
    changes fully once its input changed). ``.speedup`` =
    ``sum MACs / sum MACs x changed``, the most any exact incremental method
    can save in multiply-adds over full recomputation (in time it can save
    more on a CPU, where the early, large maps cost more per multiply-add);
    ``.engine_speedup`` is the same ratio for what
    :func:`incremental_occlusion_scores` computes.
    """
    plan = _plan(model, patch_size, stride, check=False)
    layers = []
    for index, step in enumerate(plan.steps):
        macs = _macs(step.node)
        if not macs:
            continue
        layer = step.node.operation
        output = plan.changed.get(_key(step.node.outputs[0]))
        changed = 1.0 if output is None else output.share
        computed = 1.0 if index >= plan.cut or output is None else output.window_share
        layers.append(LayerWork(layer.name, _kind(layer),
                                tuple(int(d) for d in step.node.outputs[0].shape[1:]),
                                macs, changed, computed))
    return IncrementalBound(plan.patch_size, plan.stride, tuple(layers))


# --------------------------------------------------------------------------
# Geometry: which rows and columns of each map a patch changes
# --------------------------------------------------------------------------

@dataclass
class _Axis:
    """Along one axis of a map: the changed interval first..last (inclusive) for each
    patch position, and the fixed-size window the engine computes (``length`` rows from
    ``start``). The first ``count`` entries are the positions scored; the rest probe every
    other start a patch of this size could have, so the window sizes and the plan do not
    depend on the stride (one compiled function serves every stride)."""

    size: int
    first: np.ndarray
    last: np.ndarray
    count: int

    @property
    def length(self) -> int:
        return int((self.last - self.first).max()) + 1

    @property
    def start(self) -> np.ndarray:
        # Shifted inside the map at the border, so every window has one size.
        return np.minimum(self.first, self.size - self.length)

    def mean_share(self) -> float:
        changed = self.last[:self.count] - self.first[:self.count] + 1
        return float(changed.mean()) / self.size


@dataclass
class _Region:
    rows: _Axis
    cols: _Axis

    @property
    def share(self) -> float:
        return self.rows.mean_share() * self.cols.mean_share()

    @property
    def window_share(self) -> float:
        return self.rows.length * self.cols.length / (self.rows.size * self.cols.size)

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows.length, self.cols.length

    def same_window(self, other: "_Region") -> bool:
        return all(a.length == b.length and np.array_equal(a.start, b.start)
                   for a, b in ((self.rows, other.rows), (self.cols, other.cols)))


def _same_padding(size_in: int, size_out: int, kernel: int, stride: int) -> int:
    """TensorFlow's top (left) padding for padding="same": the smaller half."""
    return max((size_out - 1) * stride + kernel - size_in, 0) // 2


def _conv_axis(axis: _Axis, size_out: int, kernel: int, stride: int, pad: int) -> _Axis:
    first = np.maximum(0, -(-(axis.first + pad - kernel + 1) // stride))  # ceiling division
    last = np.minimum(size_out - 1, (axis.last + pad) // stride)
    return _Axis(size_out, first, last, axis.count)


def _hull(regions: list[_Region]) -> _Region:
    def axis(parts):
        return _Axis(parts[0].size, np.min([p.first for p in parts], axis=0),
                     np.max([p.last for p in parts], axis=0), parts[0].count)
    return _Region(axis([r.rows for r in regions]), axis([r.cols for r in regions]))


def _conv_geometry(layer, node):
    """(kernel, strides, pads (top, left, bottom, right)) of a window-computable convolution,
    or None when the engine cannot compute it on windows."""
    if not isinstance(layer, _CONVOLUTIONS) or layer.data_format != "channels_last" \
            or tuple(layer.dilation_rate) != (1, 1) or getattr(layer, "groups", 1) != 1 \
            or layer.padding not in ("same", "valid"):
        return None
    (_, h_in, w_in, _), (_, h_out, w_out, _) = node.input_tensors[0].shape, node.outputs[0].shape
    (kh, kw), (sh, sw) = layer.kernel_size, layer.strides
    if layer.padding == "valid":
        return (kh, kw), (sh, sw), (0, 0, 0, 0)
    top, left = _same_padding(h_in, h_out, kh, sh), _same_padding(w_in, w_out, kw, sw)
    bottom = (h_out - 1) * sh + kh - h_in - top
    right = (w_out - 1) * sw + kw - w_in - left
    return (kh, kw), (sh, sw), (top, left, max(bottom, 0), max(right, 0))


def _spatial(tensor) -> bool:
    shape = tensor.shape
    return len(shape) == 4 and shape[1] is not None and shape[2] is not None


def _key(tensor) -> int:
    return id(tensor)


@dataclass
class _Step:
    node: object
    kind: str            # "pointwise", "conv", "add" or "other"
    conv: tuple | None = None


@dataclass
class _Plan:
    """The graph in order, every tensor's changed region, and where the windows stop."""

    patch_size: int
    stride: int
    input_key: int
    output_key: int
    steps: list
    changed: dict        # tensor key -> _Region (true changed region), None once it is all
    cut: int             # steps[cut:] run on whole maps
    windows: list        # tensor keys computed on windows, in order (index into the starts)
    direct: dict = None  # step index -> which inputs are used as they are (no halo to read)

    def __post_init__(self):
        self.direct = {}
        for index, step in enumerate(self.steps[:self.cut]):
            output = self.changed[_key(step.node.outputs[0])]
            sources = [self.changed[_key(t)] for t in step.node.input_tensors]
            if step.kind == "conv":
                kernel, strides, pads = step.conv
                self.direct[index] = (_same_starts(sources[0], output, kernel, strides, pads),)
            elif step.kind == "add":
                self.direct[index] = tuple(source.same_window(output) for source in sources)

    @property
    def signature(self) -> tuple:
        """What the compiled function depends on: not the patch size, nor the stride."""
        return self.cut, tuple(sorted(self.direct.items()))

    def window_starts(self) -> np.ndarray:
        """(windows, positions, 2) int32: each window's top-left corner for every position."""
        starts = []
        for key in self.windows:
            region = self.changed[key]
            rows, cols = np.meshgrid(region.rows.start[:region.rows.count],
                                     region.cols.start[:region.cols.count], indexing="ij")
            starts.append(np.stack([rows.ravel(), cols.ravel()], axis=-1))
        return np.stack(starts).astype(np.int32)

    def window_lengths(self) -> np.ndarray:
        """(windows, 2) int32: each window's height and width."""
        return np.array([self.changed[key].shape for key in self.windows], dtype=np.int32)


def _same_starts(source: _Region, output: _Region, kernel, strides, pads) -> bool:
    """True when a convolution reads exactly its input's window, for every position a
    patch can have (a 1x1 convolution of stride 1): no halo to read from the base map."""
    region = tuple((length - 1) * s + k for length, s, k in zip(output.shape, strides, kernel))
    return region == source.shape and \
        np.array_equal(strides[0] * output.rows.start - pads[0], source.rows.start) and \
        np.array_equal(strides[1] * output.cols.start - pads[1], source.cols.start)


def _nodes(model):
    """The nodes of a functional model in an order where inputs come first."""
    by_depth = getattr(model, "_nodes_by_depth", None)
    if by_depth is None or len(model.inputs) != 1:
        raise ValueError(
            f"model {model.name!r}: incremental occlusion needs a functional Keras model with "
            "one image input; use h.occlusion_scores for this model")
    return [node for depth in sorted(by_depth, reverse=True) for node in by_depth[depth]
            if node.operation is not None and not node.is_input]


def _step_kind(node) -> tuple[str, tuple | None]:
    layer = node.operation
    if not (node.outputs and all(_spatial(t) for t in node.input_tensors + node.outputs)):
        return "other", None
    if isinstance(layer, _POINTWISE) and len(node.input_tensors) == 1 and \
            getattr(layer, "axis", -1) in (-1, 3, [-1], [3]):
        return "pointwise", None
    if isinstance(layer, keras.layers.Add):
        return "add", None
    geometry = _conv_geometry(layer, node)
    return ("conv", geometry) if geometry is not None else ("other", None)


def _plan(model, patch_size, stride, *, check: bool = True) -> _Plan:
    """Read the graph of ``model``'s logits and follow the patch's region through it."""
    spec = model_spec(model)
    graph = spec.logits
    height, width = spec.size
    masks = PatchMasks(height, width, patch_size, stride)  # checks the knobs
    nodes = _nodes(graph)
    input_key = _key(graph.inputs[0])

    def patch_axis(starts, size):
        starts = np.concatenate([starts, np.arange(1 - patch_size, size)])
        return _Axis(size, np.maximum(starts, 0), np.minimum(starts + patch_size, size) - 1,
                     len(starts) - (size + patch_size - 1))

    changed = {input_key: _Region(patch_axis(masks.row_starts, height),
                                  patch_axis(masks.col_starts, width))}
    steps, cut = [], None
    for index, node in enumerate(nodes):
        kind, conv = _step_kind(node)
        steps.append(_Step(node, kind, conv))
        inputs = [changed.get(_key(t)) for t in node.input_tensors]
        region = None
        if all(r is not None for r in inputs) and kind != "other":
            if kind == "pointwise":
                region = inputs[0]
            elif kind == "add":
                region = _hull(inputs)
            else:
                (kh, kw), (sh, sw), (top, left, _, _) = conv
                _, h_out, w_out, _ = node.outputs[0].shape
                region = _Region(_conv_axis(inputs[0].rows, h_out, kh, sh, top),
                                 _conv_axis(inputs[0].cols, w_out, kw, sw, left))
        changed[_key(node.outputs[0])] = region
        if cut is None and (region is None or region.window_share >= FULL_MAP_SHARE):
            cut = index
            if check and region is None and kind == "other" and _spatial(node.outputs[0]):
                raise ValueError(
                    f"model {model.name!r}: layer {node.operation.name!r} "
                    f"({type(node.operation).__name__}) comes while the patch still changes "
                    "a small window of the maps, and incremental occlusion computes only "
                    "Conv2D, DepthwiseConv2D (dilation 1, padding 'same' or 'valid'), "
                    "BatchNormalization, ReLU, Activation, Add and rescaling layers on "
                    "windows (EfficientNet-Lite from h.load_model works); use "
                    "h.occlusion_scores for this model")
    cut = len(steps) if cut is None else cut
    windows = [input_key] + [_key(step.node.outputs[0]) for step in steps[:cut]]
    return _Plan(patch_size, stride, input_key, _key(graph.outputs[0]), steps, changed, cut,
                 windows)


def _macs(node) -> int:
    layer = node.operation
    if isinstance(layer, keras.layers.DepthwiseConv2D) and _spatial(node.outputs[0]):
        _, h_out, w_out, channels = node.outputs[0].shape
        return h_out * w_out * channels * int(np.prod(layer.kernel_size))
    if isinstance(layer, keras.layers.Conv2D) and _spatial(node.outputs[0]):
        _, h_out, w_out, out_channels = node.outputs[0].shape
        in_channels = node.input_tensors[0].shape[-1]
        return h_out * w_out * out_channels * in_channels * int(np.prod(layer.kernel_size)) \
            // getattr(layer, "groups", 1)
    if isinstance(layer, keras.layers.Dense) or hasattr(layer, "dense"):
        dense = getattr(layer, "dense", layer)  # the logits twin's softmax-free Dense
        return int(np.prod(node.input_tensors[0].shape[1:])) * dense.units
    return 0


def _kind(layer) -> str:
    if isinstance(layer, _CONVOLUTIONS):
        name = "depthwise" if isinstance(layer, keras.layers.DepthwiseConv2D) else "conv"
        (kh, kw), (sh, _) = layer.kernel_size, layer.strides
        return f"{name} {kh}x{kw}/{sh}"
    return "dense"


# --------------------------------------------------------------------------
# The engine: windows in, scores out, one traced function
# --------------------------------------------------------------------------

def _crop(full, offset, region_start, region_shape):
    """(B, rh, rw, C): ``full`` (H, W, C) on each item's region, whose top-left corner
    ``region_start`` (B, 2) lies ``offset`` = (top, left) pixels inside ``full``'s padding."""
    rows = region_start[:, 0:1] + offset[0] + tf.range(region_shape[0])
    cols = region_start[:, 1:2] + offset[1] + tf.range(region_shape[1])
    flat = tf.reshape(full, (-1, full.shape[-1]))
    return tf.gather(flat, rows[:, :, None] * full.shape[1] + cols[:, None, :])


def _read(base, offset, window, window_start, window_shape, region_start, region_shape):
    """A map on each item's region: the item's own window where the region overlaps it,
    the base map elsewhere (unchanged there; zero padding beyond the border).

    ``window`` (B, h, w, C) starts at ``window_start`` (B, 2); ``base`` is the
    unoccluded map, zero-padded so that the map starts ``offset`` inside it."""
    from_base = _crop(base, offset, region_start, region_shape)
    shift = region_start - window_start          # the region's corner inside the window
    rows = shift[:, 0:1] + tf.range(region_shape[0])
    cols = shift[:, 1:2] + tf.range(region_shape[1])
    inside = ((rows >= 0) & (rows < window_shape[0]))[:, :, None] & \
        ((cols >= 0) & (cols < window_shape[1]))[:, None, :]
    index = tf.clip_by_value(rows, 0, window_shape[0] - 1)[:, :, None] * window_shape[1] + \
        tf.clip_by_value(cols, 0, window_shape[1] - 1)[:, None, :]
    flat = tf.reshape(window, (window.shape[0], -1, window.shape[-1]))
    from_window = tf.gather(flat, index, batch_dims=1)
    return tf.where(inside[..., None], from_window, from_base)


def _convolve(layer, x, strides):
    kernel = tf.convert_to_tensor(layer.kernel)
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        y = tf.nn.depthwise_conv2d(x, kernel, (1, *strides, 1), "VALID")
    else:
        y = tf.nn.conv2d(x, kernel, strides, "VALID")
    if layer.use_bias:
        y = y + tf.convert_to_tensor(layer.bias)
    return layer.activation(y)


_NO_PADS = (0, 0, 0, 0)


def _base_keys(plan: _Plan) -> list:
    """The base maps the engine reads, as (tensor key, zero padding (top, left, bottom,
    right)), in a fixed order: halos of windowed convolutions, the shortcut of an add whose
    window is smaller, and every window pasted into its whole map after the cut."""
    needed = {}
    for index, step in enumerate(plan.steps):
        inputs = step.node.input_tensors
        for tensor, direct in zip(inputs, plan.direct.get(index) or (True,) * len(inputs)):
            key = _key(tensor)
            if key not in plan.windows:
                continue
            if index >= plan.cut:
                needed[(key, _NO_PADS)] = None
            elif not direct:
                needed[(key, step.conv[2] if step.kind == "conv" else _NO_PADS)] = None
    return list(needed)


def _compiled(model, plan: _Plan, batch_size: int):
    """(clean pass, forward) for one model, plan structure and batch size, cached.

    ``clean_pass(image[None]) -> (logits (1, C), base maps)``;
    ``forward(image, hidden, bases, window starts (B, windows, 2), window lengths
    (windows, 2), patch starts (B, 2), patch size) -> logits (B, C)``. Window sizes are
    inputs, not shapes, so one trace serves every patch size with the same plan structure
    (for EfficientNet-Lite0: where the windows stop), and every stride.
    """
    # The functions call the graph's layers, never the model object, so the cache entry
    # does not keep the model alive.
    key = ("incremental", plan.signature, batch_size)
    return cached(model, key, lambda: _build(plan, model_spec(model).input_shape, batch_size))


def _build(plan: _Plan, input_shape, batch_size):
    base_keys = _base_keys(plan)
    slot = {key: i for i, key in enumerate(plan.windows)}

    def call(node, values):
        args, kwargs = node.arguments.fill_in(values)
        return node.operation(*args, **kwargs)

    @tf.function(input_signature=[tf.TensorSpec((1,) + input_shape, tf.float32)])
    def clean_pass(image):
        values = {plan.input_key: image}
        for step in plan.steps:
            outputs = tf.nest.flatten(call(step.node, values))
            for tensor, value in zip(step.node.outputs, outputs):
                values[_key(tensor)] = value
        bases = tuple(tf.pad(values[key][0], [[top, bottom], [left, right], [0, 0]])
                      for key, (top, left, bottom, right) in base_keys)
        return values[plan.output_key], bases

    base_shapes = clean_pass.get_concrete_function().structured_outputs[1]
    signature = [tf.TensorSpec(input_shape, tf.float32), tf.TensorSpec(input_shape, tf.float32),
                 tuple(tf.TensorSpec(b.shape, tf.float32) for b in base_shapes),
                 tf.TensorSpec((batch_size, len(plan.windows), 2), tf.int32),
                 tf.TensorSpec((len(plan.windows), 2), tf.int32),
                 tf.TensorSpec((batch_size, 2), tf.int32), tf.TensorSpec((), tf.int32)]

    @tf.function(input_signature=signature)
    def forward(image, hidden, bases, starts, lengths, patch, patch_size):
        base = dict(zip(base_keys, bases))
        values, pasted = {}, {}

        def window(key):
            return values[key], starts[:, slot[key]], lengths[slot[key]]

        def full_map(key):
            """A windowed map pasted into its base map (once), or a whole map as it is."""
            if key not in slot:
                return values[key]
            if key not in pasted:
                region = plan.changed[key]
                pasted[key] = _read(base[(key, _NO_PADS)], (0, 0), *window(key),
                                    tf.zeros((batch_size, 2), tf.int32),
                                    (region.rows.size, region.cols.size))
            return pasted[key]

        # The occluded image on its window: the baseline where the patch is.
        start, shape = starts[:, slot[plan.input_key]], lengths[slot[plan.input_key]]
        rows = start[:, 0:1] + tf.range(shape[0]) - patch[:, 0:1]
        cols = start[:, 1:2] + tf.range(shape[1]) - patch[:, 1:2]
        in_patch = ((rows >= 0) & (rows < patch_size))[:, :, None] & \
            ((cols >= 0) & (cols < patch_size))[:, None, :]
        values[plan.input_key] = tf.where(in_patch[..., None], _crop(hidden, (0, 0), start, shape),
                                          _crop(image, (0, 0), start, shape))

        for index, step in enumerate(plan.steps):
            node, out_key = step.node, _key(step.node.outputs[0])
            in_keys = [_key(t) for t in node.input_tensors]
            if index >= plan.cut:
                outputs = tf.nest.flatten(call(node, {k: full_map(k) for k in in_keys}))
                for tensor, value in zip(node.outputs, outputs):
                    values[_key(tensor)] = value
            elif step.kind == "pointwise":
                values[out_key] = node.operation(values[in_keys[0]])
            elif step.kind == "add":
                out_start, out_shape = starts[:, slot[out_key]], lengths[slot[out_key]]
                values[out_key] = tf.add_n([
                    values[k] if direct else
                    _read(base[(k, _NO_PADS)], (0, 0), *window(k), out_start, out_shape)
                    for k, direct in zip(in_keys, plan.direct[index])])
            else:
                kernel, strides, pads = step.conv
                if plan.direct[index][0]:
                    x = values[in_keys[0]]
                else:  # the window the outputs need: the input's window and a halo
                    region_start = starts[:, slot[out_key]] * strides - pads[:2]
                    region_shape = (lengths[slot[out_key]] - 1) * strides + kernel
                    x = _read(base[(in_keys[0], pads)], pads[:2], *window(in_keys[0]),
                              region_start, region_shape)
                values[out_key] = _convolve(node.operation, x, strides)
        return values[plan.output_key]

    return clean_pass, forward
