"""The one error rule, held over the whole public API.

A wrong type raises TypeError and the message names the argument: every public
function of ``h`` whose required arguments this test can supply (a model, an image,
a class, a map) is called once per numeric or True/False keyword with a value of
the wrong kind ("many" for a number, "yes" for a flag). Any other outcome (no error,
another exception, a message that does not name the argument) is a failure. A
generator is advanced once, since its checks run when it starts.
"""

from __future__ import annotations

import inspect
import types

import numpy as np
import pytest

import helpers as h

# Arguments by name, for the required parameters of the functions probed.
def required_values(tiny_cnn, tiny_image):
    heat = np.random.default_rng(1).uniform(0, 1, (32, 32)).astype(np.float32)
    return {"model": tiny_cnn, "image": tiny_image, "images": tiny_image, "class_index": 0,
            "heatmap": heat, "heatmaps": {"a": heat, "b": heat[::-1]}, "target": 0,
            "layer": "conv2_activation", "source_model": tiny_cnn, "model_or_size": 32,
            "batch": tiny_image[None], "maps": heat[None], "first": heat, "count": 3,
            "probabilities": np.full((1, 10), 0.1, np.float32)}


# Parameters whose default is a number or a flag but which accept text by design.
ACCEPTS_TEXT = {
    ("perlin_noise", "colour"): "a colour map's name is a valid colour",
}
# Functions whose every argument is optional but which need one of them to do anything.
EXTRA_ARGUMENTS = {
    "show": {"heatmap": np.zeros((8, 8), np.float32)},
    "show_grid": {"heatmaps": [np.zeros((8, 8), np.float32)]},
    # Curves take one map; decode reads 1000 ImageNet scores; filters need a convolution.
    **{name: {"heatmaps": np.random.default_rng(1).uniform(0, 1, (32, 32)).astype(np.float32)}
       for name in ("deletion_curve", "insertion_curve", "road_curve", "mufidelity")},
    "decode": {"probabilities": np.full(1000, 0.001, np.float32)},
    "show_channel_filters": {"layer": "conv2"},
    "show_rgb_filters": {"layer": "conv1"},
    # The attention tools take a photo by name (answers are filed under it).
    "human_attention_map": {"image": "chelsea", "class_index": "tabby"},
    "attention_grid": {"image": "chelsea", "class_index": "tabby"},
}


def probes():
    for name in sorted(n for n in dir(h) if not n.startswith("_")):
        function = getattr(h, name)
        if not isinstance(function, types.FunctionType):
            continue
        for parameter in inspect.signature(function).parameters.values():
            default = parameter.default
            if parameter.kind not in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
                continue
            if isinstance(default, bool):
                yield name, parameter.name, "yes"
            elif isinstance(default, (int, float)) and not isinstance(default, bool):
                yield name, parameter.name, "many"


PROBES = [probe for probe in probes() if probe[:2] not in ACCEPTS_TEXT]


@pytest.mark.parametrize("name,argument,wrong", PROBES,
                         ids=[f"{n}-{a}" for n, a, _ in PROBES])
def test_a_wrong_type_is_a_type_error_that_names_the_argument(name, argument, wrong, tiny_cnn,
                                                               tiny_image):
    function = getattr(h, name)
    signature = inspect.signature(function)
    known = required_values(tiny_cnn, tiny_image)
    kwargs = dict(EXTRA_ARGUMENTS.get(name, {}))
    for parameter in signature.parameters.values():
        if parameter.default is inspect.Parameter.empty and parameter.kind in (
                parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY):
            if parameter.name in kwargs:
                continue
            if parameter.name not in known:
                pytest.skip(f"{name} needs {parameter.name}, which this test cannot supply")
            kwargs[parameter.name] = known[parameter.name]
    if "progress" in signature.parameters and argument != "progress":
        kwargs["progress"] = False
    kwargs[argument] = wrong
    with pytest.raises(TypeError) as caught:
        result = function(**kwargs)
        if inspect.isgenerator(result):
            next(result)
    assert argument in str(caught.value), (
        f"h.{name}({argument}={wrong!r}) raised TypeError without naming {argument}: "
        f"{caught.value}")


def test_the_probe_covers_most_of_the_api(tiny_cnn, tiny_image):
    known = required_values(tiny_cnn, tiny_image)
    covered = {name for name, _, _ in PROBES if all(
        p.name in known or p.default is not inspect.Parameter.empty
        or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in inspect.signature(getattr(h, name)).parameters.values())}
    assert len(covered) >= 40, sorted(covered)
