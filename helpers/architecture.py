"""Inside the network: its layers, its filters, and what its layers compute for a photo.

Lesson 01 opens the model the way Zeiler & Fergus (2014, *Visualizing and
Understanding Convolutional Networks*) opened theirs:

* :func:`layer_table` and :func:`group_table` list every layer (name, type,
  output shape, parameter count, block group) as a readable table;
  :func:`show_architecture` draws the layer graph as a picture with
  matplotlib (no Graphviz): stem, block groups and head, the spatial size
  shrinking while the channels grow.
* :func:`filter_weights`, :func:`rgb_filters` and :func:`channel_filters`
  turn convolution kernels ``W[i, j, c_in, c_out]`` into small images;
  :func:`show_rgb_filters` and :func:`show_channel_filters` draw them.
* :func:`activations` returns the feature maps ``A^l(x)`` of any layer for a
  batch of images; :func:`top_channels`, :func:`show_feature_maps` and
  :func:`show_channel` show the most active ones.

Everything here is written by hand: it is what the lesson is about, and it
only reads weights and runs the model forward (via :func:`feature_model`).
"""

from __future__ import annotations

import html
import re
import weakref
from dataclasses import dataclass

import numpy as np

from .environment import PRESENTATION_WIDTH, panel_layout, presentation_mode
from .environment import tf  # noqa: F401  (quiet TensorFlow import first)
import keras

from .pipeline import (check_model, check_number, checked_shapes, detect_head, model_batch,
                       model_spec, positive_int)
from .models import walk_layers, feature_model, find_layer, last_spatial_layer, spatial_layers
from .models import PixelPreprocess
from .plot import SIGNED_CMAP, UNSIGNED_CMAP, show

__all__ = [
    "layer_table",
    "group_table",
    "show_architecture",
    "filter_weights",
    "rgb_filters",
    "channel_filters",
    "show_rgb_filters",
    "show_channel_filters",
    "activations",
    "top_channels",
    "show_feature_maps",
    "show_channel",
    "receptive_field",
    "receptive_fields",
    "model_report",
    "ModelReport",
    "dead_filters",
    "DEAD_FILTER_SHARE",
]

# A filter whose weight norm is below this share of the layer's largest is "off":
# training drove it to (almost) zero, and scaling it to its own range would
# blow rounding noise up into a pattern that looks like a strong filter.
DEAD_FILTER_SHARE = 1e-3

_CONV_TYPES = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)
_HEAD_TYPES = (keras.layers.Dense, keras.layers.Flatten, keras.layers.GlobalAveragePooling2D,
               keras.layers.GlobalMaxPooling2D, keras.layers.Dropout)


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------

@dataclass
class Table:
    """Rows of values under named columns; prints as text, shows as HTML in Jupyter.

    ``table["name"]`` is a column as a list, ``table[3]`` a row as a dict,
    ``len(table)`` the number of rows. Long tables show their first and last
    rows (``max_rows``); ``print(table.to_text(max_rows=None))`` shows all.
    """

    columns: list[str]
    rows: list[tuple]
    title: str = ""
    max_rows: int = 40

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return (dict(zip(self.columns, row)) for row in self.rows)

    def __getitem__(self, key):
        if isinstance(key, str):
            if key not in self.columns:
                raise KeyError(f"no column {key!r}; columns: {', '.join(self.columns)}")
            position = self.columns.index(key)
            return [row[position] for row in self.rows]
        return dict(zip(self.columns, self.rows[key]))

    @staticmethod
    def _format(value) -> str:
        if isinstance(value, tuple):
            return "(" + ", ".join("None" if v is None else str(v) for v in value) + ")"
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return f"{int(value):,}"
        return str(value)

    def _shown_rows(self, max_rows):
        if max_rows is None or len(self.rows) <= max_rows:
            return list(self.rows), 0
        head = max_rows // 2
        tail = max_rows - head
        return self.rows[:head] + [None] + self.rows[-tail:], len(self.rows) - max_rows

    def to_text(self, max_rows: int | None = -1) -> str:
        """The table as aligned text (``max_rows=None``: every row)."""
        max_rows = self.max_rows if max_rows == -1 else max_rows
        shown, hidden = self._shown_rows(max_rows)
        cells = [[self._format(v) for v in row] if row is not None else None for row in shown]
        widths = [max([len(c)] + [len(row[i]) for row in cells if row is not None])
                  for i, c in enumerate(self.columns)]
        numeric = [all(isinstance(row[i], (int, np.integer)) for row in self.rows)
                   for i in range(len(self.columns))]

        def line(values):
            return "  ".join(v.rjust(w) if num else v.ljust(w)
                             for v, w, num in zip(values, widths, numeric)).rstrip()

        lines = [self.title] if self.title else []
        lines += [line(self.columns), line(["-" * w for w in widths])]
        for row in cells:
            lines.append(f"... {hidden} more rows ..." if row is None else line(row))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.to_text()

    __repr__ = __str__

    def _repr_html_(self) -> str:
        shown, hidden = self._shown_rows(self.max_rows)
        caption = f"<caption>{html.escape(self.title)}</caption>" if self.title else ""
        header = "".join(f"<th>{html.escape(c)}</th>" for c in self.columns)
        body = []
        for row in shown:
            if row is None:
                body.append(f"<tr><td colspan='{len(self.columns)}' style='text-align:center'>"
                            f"… {hidden} more rows …</td></tr>")
                continue
            body.append("<tr>" + "".join(
                f"<td style='text-align:{'right' if isinstance(v, (int, np.integer)) else 'left'}'>"
                f"{html.escape(self._format(v))}</td>" for v in row) + "</tr>")
        return f"<table>{caption}<tr>{header}</tr>{''.join(body)}</table>"


# --------------------------------------------------------------------------
# Layers, block groups and the architecture picture
# --------------------------------------------------------------------------

# "block3b_expand_conv" -> "block3" (EfficientNet, VGG, Xception),
# "conv4_block2_out" -> "conv4" (ResNet), "mixed5" -> "mixed5" (Inception).
_GROUP_PATTERNS = (re.compile(r"^(block\d+)[a-z]?(?:_|$)"), re.compile(r"^(block_\d+)(?:_|$)"),
                   re.compile(r"^(conv\d+)(?:_|$)"), re.compile(r"^(stage\d+)(?:_|$)"),
                   re.compile(r"^(mixed\d+)(?:_|$)"))


def _group_from_name(name: str) -> str | None:
    if name.startswith("stem"):
        return "stem"
    if name.startswith(("top", "head")) or name in ("avg_pool", "predictions", "flatten",
                                                    "fc1", "fc2"):
        return "head"
    for pattern in _GROUP_PATTERNS:
        match = pattern.match(name)
        if match:
            return match.group(1)
    return None


def output_shape_of(layer) -> tuple:
    try:
        output = layer.output
    except (AttributeError, ValueError):
        return ()
    if isinstance(output, (list, tuple)):
        output = output[0]
    return tuple(output.shape[1:])


def _is_input(layer) -> bool:
    return isinstance(layer, (keras.layers.InputLayer, PixelPreprocess, keras.layers.Rescaling,
                              keras.layers.Normalization))


def _grouped_layers(model):
    """(layer, group) for every layer (nested models' layers included), in graph order.

    A layer's group comes from its name ("block3b_..." -> "block3"); a name
    that names no group inherits the group of the layer before it, layers
    before the first group are the "stem", and everything after the last
    spatial map (pooling, dense) is the "head".
    """
    layers = [layer for _, layer in walk_layers(model) if not isinstance(layer, keras.Model)]
    last_spatial = max((i for i, layer in enumerate(layers) if len(output_shape_of(layer)) == 3),
                       default=-1)
    grouped, current = [], "stem"
    for i, layer in enumerate(layers):
        if _is_input(layer) and current == "stem" and i <= 2:
            grouped.append((layer, "input"))
            continue
        named = _group_from_name(layer.name)
        if i > last_spatial >= 0 or (named is None and isinstance(layer, _HEAD_TYPES)
                                     and len(output_shape_of(layer)) < 3):
            named = "head"
        current = named or current
        grouped.append((layer, current))
    return grouped


def layer_group(model: keras.Model, layer) -> str:
    """The block group of one layer: "input", "stem", "block3", ..., "head"."""
    target = find_layer(model, layer)
    for candidate, group in _grouped_layers(model):
        if candidate is target:
            return group
    raise ValueError(f"layer {target.name!r} is not part of model {model.name!r}")


def _check_groups(model, grouped, group):
    if group is None:
        return None
    wanted = [group] if isinstance(group, str) else list(group)
    known = list(dict.fromkeys(g for _, g in grouped))
    unknown = [g for g in wanted if g not in known]
    if unknown:
        raise ValueError(f"model {model.name!r} has no block group {unknown[0]!r}; "
                         f"groups: {', '.join(known)}")
    return set(wanted)


def layer_table(model: keras.Model, *, group=None) -> Table:
    """Every layer: name, type, output shape (without the batch axis), parameters, block group.

    ``group``: one group name ("stem", "block2", "head", ...) or a list of
    them to show only those layers. The parameter counts include
    batch-normalisation statistics, so they sum to ``model.count_params()``.
    """
    grouped = _grouped_layers(model)
    wanted = _check_groups(model, grouped, group)
    rows = [(layer.name, type(layer).__name__, output_shape_of(layer), int(layer.count_params()), g)
            for layer, g in grouped if wanted is None or g in wanted]
    total = sum(row[3] for row in rows)
    title = f"{model.name}: {len(rows)} layers, {total:,} parameters"
    return Table(["name", "type", "output shape", "parameters", "group"], rows, title)


def _block_names(layers):
    """Distinct block prefixes ("block4a", "block4b", ...) inside a group."""
    names = []
    for layer in layers:
        match = re.match(r"^(block_?\d+[a-z]?|conv\d+_block\d+)(?:_|$)", layer.name)
        if match and match.group(1) not in names:
            names.append(match.group(1))
    return names


def _group_rows(model):
    grouped = _grouped_layers(model)
    order = list(dict.fromkeys(g for _, g in grouped))
    rows = []
    previous_shape = output_shape_of(grouped[0][0]) if grouped else ()
    for name in order:
        layers = [layer for layer, g in grouped if g == name]
        shape = output_shape_of(layers[-1])
        blocks = _block_names(layers)
        skips = sum(isinstance(layer, keras.layers.Add) for layer in layers)
        rows.append(dict(group=name, layers=len(layers), blocks=len(blocks), skips=skips,
                         input_shape=previous_shape, output_shape=shape,
                         params=int(sum(layer.count_params() for layer in layers)),
                         shapes=[output_shape_of(layer) for layer in layers]))
        previous_shape = shape
    return rows


def group_table(model: keras.Model) -> Table:
    """One row per block group: layers, blocks, residual additions, input and output shape, parameters.

    The short version of :func:`layer_table`: it shows the design at a
    glance, the spatial size shrinking from group to group while the number
    of channels grows.
    """
    rows = [(r["group"], r["layers"], r["blocks"], r["skips"], r["input_shape"],
             r["output_shape"], r["params"]) for r in _group_rows(model)]
    total = sum(row[-1] for row in rows)
    title = f"{model.name}: {len(rows)} groups, {total:,} parameters"
    return Table(["group", "layers", "blocks", "skip adds", "input shape", "output shape",
                  "parameters"], rows, title)


def _shape_text(shape) -> str:
    return "×".join(str(v) for v in shape)


def show_architecture(model: keras.Model, *, figsize=(13, 6.5)):
    """Draw the model's layer graph, summarised by block group, with matplotlib.

    Top: one box per group (input, stem, block groups, head). A box's height
    is proportional to the spatial size of the group's output map and its
    width grows with the square root of the number of channels; under each box
    its output shape, blocks and parameters. Bottom: spatial size and channel
    count after every layer, on log scales, with the groups shaded: the
    funnel every classic CNN shares (Zeiler & Fergus 2014; Tan & Le 2019).
    Returns the figure.
    """
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyArrowPatch, Rectangle

    rows = _group_rows(model)
    if not rows:
        raise ValueError(f"model {model.name!r} has no layers to draw")
    input_height = max((r["output_shape"][0] for r in rows
                        if len(r["output_shape"]) == 3 and r["output_shape"][0]), default=1)
    max_channels = max(r["output_shape"][-1] or 1 for r in rows if r["output_shape"])
    colours = plt.get_cmap("viridis")
    fig, (top, bottom) = plt.subplots(2, 1, figsize=figsize, height_ratios=(1.25, 1))

    x, centres = 0.0, []
    for i, row in enumerate(rows):
        shape = row["output_shape"]
        channels = shape[-1] if shape and shape[-1] else 1
        spatial = len(shape) == 3
        height = 0.08 + 0.92 * (shape[0] / input_height) if spatial else 0.08
        width = 0.25 + 0.75 * np.sqrt(channels / max_channels)
        colour = ("0.8" if row["group"] == "input" else "tab:orange" if row["group"] == "stem"
                  else "tab:green" if row["group"] == "head"
                  else colours(0.15 + 0.7 * i / max(len(rows) - 1, 1)))
        top.add_patch(Rectangle((x, 0.5 - height / 2), width, height, facecolor=colour,
                                edgecolor="black", linewidth=0.8))
        spatial_shapes = [s for s in row["shapes"] if len(s) == 3]
        details = [_shape_text(shape)]
        if not spatial and spatial_shapes:  # the head: the last map, pooled, then classified
            details = [f"{_shape_text(spatial_shapes[-1])} → {_shape_text(shape)}"]
        if row["blocks"]:
            details.append(f"{row['blocks']} block{'s' if row['blocks'] > 1 else ''}"
                           + (f", {row['skips']} skip" if row["skips"] else ""))
        if row["params"]:
            details.append(f"{row['params'] / 1e3:,.0f}k params" if row["params"] < 1e6
                           else f"{row['params'] / 1e6:.2f}M params")
        top.text(x + width / 2, 0.5 + height / 2 + 0.03, row["group"], ha="center", va="bottom",
                 fontsize=9, fontweight="bold")
        top.text(x + width / 2, 0.5 - max(height, 0.08) / 2 - 0.04, "\n".join(details),
                 ha="center", va="top", fontsize=7.5)
        centres.append((x, x + width))
        x += width + 0.45
    for (_, right), (left, _) in zip(centres, centres[1:]):
        top.add_patch(FancyArrowPatch((right + 0.04, 0.5), (left - 0.04, 0.5),
                                      arrowstyle="-|>", mutation_scale=10, color="0.3"))
    top.set_xlim(-0.2, x - 0.25)
    top.set_ylim(-0.35, 1.12)
    top.set_axis_off()
    top.set_title(f"{model.name}: {model.count_params():,} parameters; box height ∝ spatial size, "
                  "box width ∝ √channels")

    grouped = _grouped_layers(model)
    shapes = [output_shape_of(layer) for layer, _ in grouped]
    index = np.arange(len(shapes))
    spatial_size = np.array([s[0] if len(s) == 3 else np.nan for s in shapes], dtype=float)
    channels = np.array([s[-1] if s else np.nan for s in shapes], dtype=float)
    bottom.step(index, spatial_size, where="post", color="tab:blue", label="height = width")
    bottom.set_yscale("log", base=2)
    bottom.set_ylabel("spatial size (pixels)", color="tab:blue")
    twin = bottom.twinx()
    twin.step(index, channels, where="post", color="tab:red", label="channels")
    twin.set_yscale("log", base=2)
    twin.set_ylabel("channels", color="tab:red")
    start = 0
    for i, row in enumerate(rows):
        end = start + row["layers"]
        if i % 2 == 0:
            bottom.axvspan(start - 0.5, end - 0.5, color="0.92", zorder=0)
        if row["layers"] >= 3:
            bottom.text((start + end - 1) / 2, 1.01, row["group"], transform=bottom.get_xaxis_transform(),
                        ha="center", va="bottom", fontsize=7.5)
        start = end
    bottom.set_xlim(-0.5, len(shapes) - 0.5)
    bottom.set_xlabel("layer (in graph order)")
    lines = bottom.get_lines() + twin.get_lines()
    bottom.legend(lines, [line.get_label() for line in lines], loc="center right", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------

def conv_layers(model: keras.Model) -> list:
    """The convolution layers (Conv2D and DepthwiseConv2D) of a model, in graph order."""
    return [layer for _, layer in walk_layers(model) if isinstance(layer, _CONV_TYPES)]


def _conv_layer(model, layer):
    if layer is None:
        layers = conv_layers(model)
        if not layers:
            raise ValueError(f"model {model.name!r} has no convolution layer")
        return layers[0]
    found = find_layer(model, layer)
    if not isinstance(found, _CONV_TYPES):
        names = [conv.name for conv in conv_layers(model)]
        shown = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "")
        raise ValueError(
            f"layer {found.name!r} is a {type(found).__name__}, which has no convolution filters; "
            f"choose a Conv2D or DepthwiseConv2D layer: {shown} ({len(names)} in all)")
    return found


def filter_weights(model: keras.Model, layer=None) -> np.ndarray:
    """The raw kernel of a convolution layer as float32 ``(kh, kw, in_channels, filters)``.

    ``layer`` defaults to the first convolution. A depthwise convolution
    (one kh x kw filter per channel) is returned as ``(kh, kw, 1, channels)``,
    so every layer reads the same way: filter ``f`` looks at input channel
    ``c`` through ``W[:, :, c, f]``.
    """
    conv = _conv_layer(model, layer)
    kernel = np.asarray(conv.get_weights()[0], dtype=np.float32)
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        kh, kw, channels, multiplier = kernel.shape
        kernel = kernel.reshape(kh, kw, 1, channels * multiplier)
    return kernel


def _check_scale(scale):
    if scale not in ("filter", "layer"):
        raise ValueError(f"scale must be 'filter' (each filter to its own range) or 'layer' "
                         f"(one range for all), not {scale!r}")


def rgb_filters(model: keras.Model, layer=None, *, scale: str = "filter") -> np.ndarray:
    """First-layer filters as RGB tiles ``(filters, kh, kw, 3)`` in 0..1, for display.

    A filter that sees the three colour channels of the photo can be drawn
    as a tiny colour image: weight 0 becomes mid-grey and
    ``tile = 0.5 + W / (2 max|W|)``, so a reddish tile responds to red, a
    tile with a dark and a bright half to an edge. ``scale="filter"`` uses
    each filter's own ``max|W|`` (shape is visible even for weak filters),
    ``"layer"`` one maximum for all (strengths are comparable). A filter whose
    norm is below ``DEAD_FILTER_SHARE`` of the largest is switched off by
    training; it keeps the layer's range under either scale, so it stays grey
    instead of showing its rounding noise as a pattern. Only layers with 3
    input channels qualify; see :func:`channel_filters` for the rest.
    """
    _check_scale(scale)
    conv = _conv_layer(model, layer)
    kernel = filter_weights(model, conv)
    if kernel.shape[2] != 3:
        raise ValueError(
            f"layer {conv.name!r} sees {kernel.shape[2]} input channels, not 3 (RGB), so its "
            "filters are not colour images; use h.channel_filters(model, layer) to see them "
            "one input channel at a time")
    tiles = np.transpose(kernel, (3, 0, 1, 2))  # (filters, kh, kw, 3)
    axes = (1, 2, 3) if scale == "filter" else None
    limit = np.max(np.abs(tiles), axis=axes, keepdims=scale == "filter")
    if scale == "filter":
        off = dead_filters(kernel)
        limit[off] = np.max(np.abs(tiles))
    limit = np.where(limit > 0, limit, 1.0)
    return (0.5 + tiles / (2 * limit)).astype(np.float32)


def dead_filters(kernel) -> np.ndarray:
    """Which filters of a kernel ``(kh, kw, in, filters)`` are off: norm < DEAD_FILTER_SHARE of the largest."""
    norms = np.sqrt(np.sum(np.square(np.asarray(kernel, dtype=np.float64)), axis=(0, 1, 2)))
    return norms < DEAD_FILTER_SHARE * norms.max()


def channel_filters(model: keras.Model, layer, *, scale: str = "filter") -> np.ndarray:
    """A convolution's filters one input channel at a time: ``(filters, in_channels, kh, kw)`` in -1..1.

    ``W[:, :, c, f] / max|W|`` (per filter or per layer, as in
    :func:`rgb_filters`), signed: draw it with a diverging colour map. A deep
    filter mixes tens or hundreds of input channels, each itself a pattern
    detector, so its slices are not pictures of anything; a 1x1 filter is a
    single number per input channel.
    """
    _check_scale(scale)
    kernel = filter_weights(model, layer)
    slices = np.transpose(kernel, (3, 2, 0, 1))  # (filters, in, kh, kw)
    axes = (1, 2, 3) if scale == "filter" else None
    limit = np.max(np.abs(slices), axis=axes, keepdims=scale == "filter")
    limit = np.where(limit > 0, limit, 1.0)
    return (slices / limit).astype(np.float32)


def _tile_grid(count: int, ncols: int, size: float) -> tuple[int, int, float]:
    """Rows, columns and tile size of a grid of small tiles (see :func:`helpers.panel_layout`).

    In presentation mode the rows wrap like every grid of the course, and the
    tiles grow to fill most of the projected width, so that a filter or a
    feature map is still seen from the back of the room.
    """
    rows, columns, size = panel_layout(count, ncols, size)
    if presentation_mode():
        size = max(size, 0.8 * PRESENTATION_WIDTH / columns)
    return rows, columns, size


def show_rgb_filters(model: keras.Model, layer=None, *, scale: str = "filter", ncols: int = 8,
                     tile_size: float = 0.9, title: str | None = None):
    """Draw the RGB filters of a first layer as a grid of tiles; returns the figure."""
    import matplotlib.pyplot as plt

    conv = _conv_layer(model, layer)
    tiles = rgb_filters(model, conv, scale=scale)
    off = dead_filters(filter_weights(model, conv))
    count = len(tiles)
    check_number(tile_size, "tile_size", minimum=0, inclusive=(False, True),
                 accepted="a tile size in inches")
    nrows, ncols, tile_size = _tile_grid(count, ncols, tile_size)
    fig, axes = plt.subplots(nrows, ncols, figsize=(tile_size * ncols, tile_size * nrows + 0.5),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i < count:
            ax.imshow(tiles[i], interpolation="nearest")
            ax.set_title(f"{i} off" if off[i] else str(i), fontsize="small", pad=2,
                         color="#c44e52" if off[i] else "black")
    kh, kw = tiles.shape[1:3]
    switched_off = f"; {int(off.sum())} off (norm < {DEAD_FILTER_SHARE:g} of the largest)" \
        if off.any() else ""
    fig.suptitle(title or f"{model.name} · {conv.name}: {count} filters of {kh}×{kw}×3 "
                 f"(grey = 0, scale per {scale}{switched_off})", fontsize="medium")
    fig.tight_layout()
    return fig


def show_channel_filters(model: keras.Model, layer, *, filters=None, channels=None,
                         scale: str = "filter", ncols: int = 8, tile_size: float = 0.8):
    """Draw a deeper layer's filters one input channel at a time, red + / blue −; returns the figure.

    The picture depends on the kernel:

    * kh x kw with several input channels: one row per filter, one column
      per input channel (``filters``, ``channels``: index lists; default the
      first 6 filters and 8 channels);
    * depthwise (one kh x kw filter per channel): a grid of ``filters``
      (default the first 16), ``ncols`` per row;
    * 1 x 1: a single weight per (filter, input channel), drawn as one
      matrix, filters across and input channels down (default all).
    """
    import matplotlib.pyplot as plt

    positive_int(ncols, "ncols")
    check_number(tile_size, "tile_size", minimum=0, inclusive=(False, True),
                 accepted="a tile size in inches")
    conv = _conv_layer(model, layer)
    slices = channel_filters(model, conv, scale=scale)
    n_out, n_in, kh, kw = slices.shape
    shape_text = f"{n_out} filters of {kh}×{kw}×{n_in}"
    if isinstance(conv, keras.layers.DepthwiseConv2D):
        shape_text = f"{n_out} depthwise filters of {kh}×{kw}, one per channel"
    label = "weight / max|weight|"
    if kh == kw == 1:
        filters = _check_indices(range(n_out) if filters is None else filters, n_out, "filter",
                                 conv.name)
        channels = _check_indices(range(n_in) if channels is None else channels, n_in,
                                  "input channel", conv.name)
        matrix = slices[np.ix_(filters, channels)][..., 0, 0].T  # (channels, filters)
        fig, ax = plt.subplots(figsize=(min(12.0, 2.5 + 0.08 * len(filters)),
                                        min(6.0, 1.5 + 0.15 * len(channels))))
        shown = ax.imshow(matrix, cmap=SIGNED_CMAP, vmin=-1, vmax=1, aspect="auto",
                          interpolation="nearest")
        ax.set_xlabel("filter (output channel)")
        ax.set_ylabel("input channel")
        ax.set_title(f"{conv.name}: {shape_text}: each filter is one weight per input channel",
                     fontsize=9)
        fig.colorbar(shown, ax=ax, fraction=0.04, pad=0.02, label=label)
        return fig
    if n_in == 1:
        filters = _check_indices(range(min(16, n_out)) if filters is None else filters, n_out,
                                 "filter", conv.name)
        ncols = min(ncols, len(filters))
        nrows = int(np.ceil(len(filters) / ncols))
        fig, axes = plt.subplots(nrows, ncols, squeeze=False,
                                 figsize=(tile_size * ncols + 1.2, tile_size * nrows + 0.6))
        for ax in axes.flat:
            ax.set_axis_off()
        for ax, f in zip(axes.flat, filters):
            shown = ax.imshow(slices[f, 0], cmap=SIGNED_CMAP, vmin=-1, vmax=1, interpolation="nearest")
            ax.set_title(f"ch {f}", fontsize=7, pad=2)
    else:
        filters = _check_indices(range(min(6, n_out)) if filters is None else filters, n_out,
                                 "filter", conv.name)
        channels = _check_indices(range(min(8, n_in)) if channels is None else channels, n_in,
                                  "input channel", conv.name)
        fig, axes = plt.subplots(len(filters), len(channels), squeeze=False,
                                 figsize=(tile_size * len(channels) + 1.2,
                                          tile_size * len(filters) + 0.6))
        for r, f in enumerate(filters):
            for c, ch in enumerate(channels):
                ax = axes[r, c]
                shown = ax.imshow(slices[f, ch], cmap=SIGNED_CMAP, vmin=-1, vmax=1,
                                  interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(f"in {ch}", fontsize=7, pad=2)
                if c == 0:
                    ax.set_ylabel(f"filter {f}", fontsize=7)
    fig.suptitle(f"{conv.name}: {shape_text}", fontsize=9)
    fig.colorbar(shown, ax=axes, fraction=0.03, pad=0.02, label=label)
    return fig


def _check_indices(indices, size, what, layer_name):
    indices = [int(i) for i in (indices if np.ndim(indices) else [indices])]
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise ValueError(f"{what} {bad[0]} is out of range: layer {layer_name!r} has {size} "
                         f"{what}s, 0..{size - 1}")
    return indices


# --------------------------------------------------------------------------
# Activations (feature maps)
# --------------------------------------------------------------------------

_FEATURE_MODELS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def layer_output_model(model, layer_name):
    """The model cut at one layer, built once per (model, layer) for interactive use."""
    try:
        cache = _FEATURE_MODELS.setdefault(model, {})
    except TypeError:  # an object that cannot be weakly referenced: no caching
        cache = {}
    if layer_name not in cache:
        cache[layer_name] = feature_model(model, layer_name, include_output=False)
    return cache[layer_name]


def activations(model: keras.Model, images, layer, *, batch_size: int = 32,
                fit: str = "crop") -> np.ndarray:
    """The output ``A^l(x)`` of any layer for one image or a batch, as float32.

    ``images``: one image in any accepted form (sample name, path, PIL,
    array) or a list, or a prepared batch. Returns ``(h, w, channels)`` for
    one image and ``(N, h, w, channels)`` for a batch (a dense layer gives
    ``(units,)`` / ``(N, units)``). Images run through the model up to the
    layer in chunks of ``batch_size``.
    """
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)):
        raise TypeError(f"batch_size must be a positive integer, not "
                        f"{type(batch_size).__name__} ({batch_size!r})")
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    found = find_layer(model, layer)
    batch, single = model_batch(model, images, fit=fit)
    cut = layer_output_model(model, found.name)
    outputs = [np.asarray(cut(batch[i:i + batch_size], training=False), dtype=np.float32)
               for i in range(0, len(batch), batch_size)]
    maps = np.concatenate(outputs, axis=0)
    return maps[0] if single else maps


def top_channels(feature_maps, count: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """The ``count`` channels with the largest mean activation, strongest first.

    ``feature_maps``: ``(h, w, C)`` or ``(N, h, w, C)`` (means over the
    batch too). Returns ``(channel indices, mean activations)``.
    """
    maps = np.asarray(feature_maps, dtype=np.float32)
    if maps.ndim not in (3, 4):
        raise ValueError(f"feature maps must be (h, w, channels) or (N, h, w, channels); got shape "
                         f"{maps.shape}")
    if isinstance(count, (bool, np.bool_)) or not isinstance(count, (int, np.integer)):
        raise TypeError(f"count must be a positive integer, not {type(count).__name__} "
                        f"({count!r})")
    if count < 1:
        raise ValueError(f"count must be a positive integer, got {count}")
    means = maps.reshape(-1, maps.shape[-1]).mean(axis=0)
    order = np.argsort(-means, kind="stable")[:count]
    return order, means[order]


def _spatial_layer(model, layer):
    found = find_layer(model, layer)
    if len(output_shape_of(found)) != 3:
        names = [spatial.name for spatial in spatial_layers(model)]
        raise ValueError(
            f"layer {found.name!r} outputs shape {output_shape_of(found)}, not a spatial map "
            f"(h, w, channels); choose one of the {len(names)} spatial layers, e.g. "
            f"{', '.join(names[:3])} ... {names[-1] if names else ''}")
    return found


def show_feature_maps(model: keras.Model, image, layer, *, count: int = 15, ncols: int = 8,
                      size: float = 1.5, fit: str = "crop"):
    """The photo and the ``count`` most active channels of a layer for it; returns the figure.

    Each map is drawn in its own colour range (``UNSIGNED_CMAP``: dark = 0) and titled
    with its channel index and mean activation.
    """
    import matplotlib.pyplot as plt

    found = _spatial_layer(model, layer)
    batch, single = model_batch(model, image, fit=fit, name="image")
    if not single and len(batch) != 1:
        raise ValueError(f"show_feature_maps takes one image; got a batch of {len(batch)}")
    maps = activations(model, batch, found, fit=fit)[0]
    channels, means = top_channels(maps, count)
    panels = len(channels) + 1
    check_number(size, "size", minimum=0, inclusive=(False, True), accepted="a tile size in inches")
    nrows, ncols, size = _tile_grid(panels, ncols, size)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.5),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    axes.flat[0].imshow(batch[0] / 255.0, interpolation="bilinear")
    axes.flat[0].set_title("photo", fontsize="small")
    for ax, channel, mean in zip(axes.flat[1:], channels, means):
        ax.imshow(maps[..., channel], cmap=UNSIGNED_CMAP, interpolation="nearest")
        ax.set_title(f"ch {channel}: {mean:.2f}", fontsize="small")
    h_, w_, c_ = maps.shape
    fig.suptitle(f"{found.name}: {h_}×{w_}×{c_}; the {len(channels)} most active channels "
                 "(title: channel and mean activation)", fontsize="medium")
    fig.tight_layout()
    return fig


def show_channel(model: keras.Model, image, layer, channel: int, *, fit: str = "crop",
                 size: float = 3.0):
    """One channel of a layer for one photo: the map, and the map upsampled over the photo."""
    import matplotlib.pyplot as plt
    from PIL import Image

    found = _spatial_layer(model, layer)
    batch, single = model_batch(model, image, fit=fit, name="image")
    if not single and len(batch) != 1:
        raise ValueError(f"show_channel takes one image; got a batch of {len(batch)}")
    maps = activations(model, batch, found, fit=fit)[0]
    (channel,) = _check_indices(channel, maps.shape[-1], "channel", found.name)
    feature = maps[..., channel]
    height, width = batch.shape[1:3]
    upsampled = np.asarray(Image.fromarray(feature).resize((width, height), Image.BILINEAR))
    fig, axes = plt.subplots(1, 3, figsize=(size * 3.4, size))
    show(batch[0], title="photo", ax=axes[0], colorbar=False)
    show(heatmap=feature, ax=axes[1], cmap=UNSIGNED_CMAP, alpha=1.0,
         title=f"{found.name} channel {channel} ({feature.shape[0]}×{feature.shape[1]})",
         colorbar_label="activation")
    axes[1].images[0].set_interpolation("nearest")
    show(batch[0], upsampled, ax=axes[2], cmap=UNSIGNED_CMAP, alpha=0.6,
         title=f"upsampled over the photo (max {feature.max():.2f})")
    fig.tight_layout()
    return fig


def receptive_field(model: keras.Model, layer) -> tuple[int, int]:
    """The theoretical receptive field of one unit of ``layer``: ``(size, jump)`` in input pixels.

    Walks the layer graph from the input: a window of ``k`` (dilation ``d``)
    with stride ``s`` turns ``(r, j)`` into ``(r + (k - 1) d j, j s)``
    (Araujo, Norris & Sim 2019, *Computing Receptive Fields of Convolutional
    Neural Networks*, Distill); element-wise layers keep it; where branches
    meet (a residual add) the larger field wins; a nested model is walked
    from the field of its input. ``size`` is the side of the square of
    input pixels that can influence one unit, ``jump`` the distance in input
    pixels between neighbouring units. Most of a unit's sensitivity lies
    near the centre of this square (Luo et al. 2016, *Understanding the
    Effective Receptive Field in Deep Convolutional Neural Networks*).
    """
    target = find_layer(model, layer)
    if len(output_shape_of(target)) != 3:
        raise ValueError(f"layer {target.name!r} outputs shape {output_shape_of(target)}, not a "
                         "spatial map: its units see the whole image")
    fields = receptive_fields(model)
    if id(target) not in fields:
        raise ValueError(f"layer {target.name!r} could not be reached from the model's input")
    return fields[id(target)]


def receptive_fields(model: keras.Model) -> dict:
    """``{id(layer): (size, jump)}`` for every layer reached from the input, nested ones too
    (see :func:`receptive_field`)."""
    fields: dict[int, tuple[int, int]] = {}
    _walk_fields(model, (1, 1), fields)
    return fields


def _field_step(layer, field, fields):
    """The field after ``layer`` (a nested model is walked inside), recorded in ``fields``."""
    if isinstance(layer, keras.Model):
        field = _walk_fields(layer, field, fields)
    elif _is_input(layer):
        field = (1, 1)
    else:
        size, jump = field
        kernel = getattr(layer, "kernel_size", None) or getattr(layer, "pool_size", None)
        if kernel is not None:
            strides = getattr(layer, "strides", None) or kernel
            dilation = getattr(layer, "dilation_rate", (1, 1)) or (1, 1)
            size = size + (int(kernel[0]) - 1) * int(dilation[0]) * jump
            jump = jump * int(strides[0])
        field = (int(size), int(jump))
    fields[id(layer)] = max(field, fields.get(id(layer), field))
    return field


def _walk_fields(model, start, fields):
    """Walk ``model``'s graph from a field ``start`` at its input; the field of its output."""
    if isinstance(model, keras.Sequential):
        field = start
        for layer in model.layers:
            field = _field_step(layer, field, fields)
        return field
    by_tensor: dict[int, tuple[int, int]] = {}
    for depth in sorted(model._nodes_by_depth, reverse=True):  # inputs first
        for node in model._nodes_by_depth[depth]:
            layer = node.operation
            if isinstance(layer, keras.layers.InputLayer):
                field = start
                fields[id(layer)] = start
            else:
                known = [by_tensor[id(t)] for t in node.input_tensors if id(t) in by_tensor]
                if not known:
                    continue
                field = _field_step(layer, max(known), fields)
            for tensor in node.output_tensors:
                by_tensor[id(tensor)] = field
    outputs = [by_tensor[id(t)] for t in model.outputs if id(t) in by_tensor]
    return max(outputs) if outputs else start


# --------------------------------------------------------------------------
# What the course sees in a model, before it explains it
# --------------------------------------------------------------------------

_RELU_ACTIVATIONS = ("relu", "relu6")


@dataclass
class ModelReport:
    """What the course sees in a model (:func:`model_report`); text with ``print``, a table
    in a notebook."""

    name: str
    input_size: tuple[int, int]
    channels: int
    input_range: str
    preprocessing_inside: bool
    preprocessing: str
    head: str
    head_detail: str
    num_classes: int
    nested: list[str]
    layers: Table
    explainers: Table

    def summary(self) -> list[tuple[str, str]]:
        """(what, value) rows of the report's first part."""
        height, width = self.input_size
        colours = {1: "grayscale", 3: "RGB"}.get(self.channels, "?")
        return [("model", self.name),
                ("input", f"{height} x {width} pixels, {self.channels} channel"
                          f"{'s' if self.channels != 1 else ''} ({colours})"),
                ("input range", self.input_range),
                ("preprocessing", self.preprocessing),
                ("head", f"{self.head}: {self.head_detail}"),
                ("classes", f"{self.num_classes}"),
                ("nested models", ", ".join(self.nested) or "none")]

    def __str__(self) -> str:
        width = max(len(what) for what, _ in self.summary())
        lines = [f"{what.ljust(width)}  {value}" for what, value in self.summary()]
        return "\n".join(lines + ["", self.layers.to_text(), "", self.explainers.to_text()])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(what)}</th>"
                       f"<td style='text-align:left'>{html.escape(value)}</td></tr>"
                       for what, value in self.summary())
        return (f"<table>{rows}</table>{self.layers._repr_html_()}"
                f"{self.explainers._repr_html_()}")


def _preprocessing(model) -> str | None:
    """The scaling layer before the model's first convolution or dense layer, described."""
    for _, layer in walk_layers(model):
        if isinstance(layer, PixelPreprocess):
            return (f"inside: {type(layer).__name__} {layer.name!r} "
                    f"(x * {layer.scale:.6g} + {tuple(round(v, 4) for v in layer.offset)})")
        if isinstance(layer, keras.layers.Rescaling):
            scale, offset = np.asarray(layer.scale, float), np.asarray(layer.offset, float)
            if scale.size == 1 and offset.size == 1:
                scale, offset = float(scale), float(offset)
                return (f"inside: Rescaling {layer.name!r} (x * {scale:.6g} "
                        f"{'-' if offset < 0 else '+'} {abs(offset):.6g}: 0..255 becomes "
                        f"{offset:.4g}..{255 * scale + offset:.4g})")
            return f"inside: Rescaling {layer.name!r} (per-channel scale and offset)"
        if isinstance(layer, keras.layers.Normalization):
            return f"inside: Normalization {layer.name!r} (mean and variance)"
        if isinstance(layer, (*_CONV_TYPES, keras.layers.Dense, keras.layers.SeparableConv2D)):
            return None
    return None


def _has_relu(model) -> bool:
    for _, layer in walk_layers(model):
        if isinstance(layer, keras.layers.ReLU):
            return True
        activation = getattr(layer, "activation", None)
        if getattr(activation, "__name__", None) in _RELU_ACTIVATIONS:
            return True
    return False


def model_report(model: keras.Model) -> ModelReport:
    """What the course sees in ``model`` before explaining it.

    The input (size, channels, the 0..255 pixel range the course passes),
    whether the model scales its pixels itself (a ``Rescaling``,
    ``Normalization`` or the zoo's ``PixelPreprocess`` layer before its first
    convolution), its head (softmax, sigmoid, binary, linear, or unknown: see
    :func:`helpers.detect_head` and :func:`helpers.declare_head`), the models
    nested in it, every spatial layer with its output size and receptive
    field (:func:`receptive_field`; the default Grad-CAM layer marked), and
    which explainers apply. ``print(report)`` for text; a notebook shows
    tables.
    """
    check_model(model)
    input_shape, num_classes = checked_shapes(model)
    try:
        spec = model_spec(model)  # refuses a head it cannot read, unless declared
    except ValueError:
        spec = None
    if spec is None:
        head_kind = "unknown"
        detail = f"{detect_head(model).problem}; declare it: h.declare_head(model, 'softmax' " \
                 "or 'sigmoid', layer=...)"
    else:
        head_kind = spec.head
        detail = "the output is the scores (explained as it is)" if spec.found is None else \
            spec.found + ("; explained on the scores before it" if spec.activation else "")
        detail += f"; probabilities: {spec.probability}"
    preprocessing = _preprocessing(model)
    nested = [layer.name for _, layer in walk_layers(model) if isinstance(layer, keras.Model)]

    fields = receptive_fields(model)
    spatial = [layer for layer in spatial_layers(model) if not _is_input(layer)]
    default = last_spatial_layer(model).name if spatial else None
    rows = []
    for layer in spatial:
        size, jump = fields.get(id(layer), (None, None))
        rows.append((layer.name, type(layer).__name__, output_shape_of(layer),
                     "?" if size is None else size, "?" if jump is None else jump,
                     "Grad-CAM default" if layer.name == default else ""))
    layers = Table(["layer", "type", "output (H, W, C)", "receptive field", "jump", "note"],
                   rows, title=f"{len(rows)} spatial layers (receptive field and jump in input "
                               "pixels)")

    ready = head_kind != "unknown"
    need_head = "declare the head first (h.declare_head)"
    relu = _has_relu(model)

    def row(method, applies, note):
        return (method, "yes" if applies and ready else "no", note if ready else need_head)

    explainers = Table(["explainer", "applies", "note"], [
        row("occlusion, RISE, binary masks, KernelSHAP", True,
            "forward passes only: any model"),
        row("saliency, SmoothGrad, integrated gradients, gradient x input", True,
            "gradients of the score with respect to the pixels"),
        row("SHAP expected gradients (pixels)", True, "gradients; a background set"),
        row("guided backpropagation, DeconvNet", relu,
            "rewrite the ReLUs" if relu else "the model has no ReLU to rewrite"),
        row("Grad-CAM, Grad-CAM++, LayerCAM, HiResCAM, Score-CAM", bool(spatial),
            f"a spatial layer (default {default!r})" if spatial
            else "needs a layer with an (H, W, C) output; the model has none"),
        row("deletion, insertion, ROAD, MuFidelity", True, "forward passes of any map"),
    ], title="which explainers apply")
    return ModelReport(
        name=model.name, input_size=input_shape[:2], channels=input_shape[2],
        input_range="0..255 pixels (what the course passes to every model)",
        preprocessing_inside=preprocessing is not None,
        preprocessing=preprocessing or (
            "none found before the first convolution: the model sees 0..255 pixels as they "
            "are; if it was trained on scaled pixels, put the scaling inside (a Rescaling "
            "layer before it)"),
        head=head_kind, head_detail=detail, num_classes=num_classes, nested=nested,
        layers=layers, explainers=explainers)
