"""Gradient maps on EfficientNet-Lite0: the helpers vs tf-keras-vis (eager) vs xplique.

One photo, one class, three methods (vanilla saliency, guided backpropagation,
Grad-CAM at "top_activation"), each timed three ways in the same process:

* the helpers (one compiled ``tf.function`` per model, method and layer),
* tf-keras-vis ``Saliency`` / ``Gradcam`` as the helpers used them before
  (eager gradient tape; guided backpropagation on the helpers' guided copy),
* xplique ``Saliency`` / ``GuidedBackprop`` / ``GradCAM``, when it can be
  imported (it is not a requirement of the course: run this script with the
  Python of a scratch environment that has it, the helpers on PYTHONPATH).

Every variant gets a warm-up call (tracing), then the variants alternate in
``--rounds`` rounds of ``--calls`` calls each; the table shows the median
seconds per call and the ratio to the helpers, and the largest difference of
each map from the helpers' map (relative to its peak), so a faster variant
cannot win by computing something else.

    python benchmarks/gradient_benchmark.py [--image chelsea] [--class tabby] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import helpers as h  # noqa: E402
from helpers.saliency import guided_backprop_model  # noqa: E402

LAYER = "top_activation"


def _quiet(function):
    def run(*args):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(*args)
    return run


def helpers_variants(model, batch, class_index):
    return {
        "saliency": lambda: h.saliency(model, batch, class_index, reduce=None, progress=False)[0],
        "guided backpropagation": lambda: h.saliency(model, batch, class_index, method="guided",
                                                     reduce=None, progress=False)[0],
        "Grad-CAM": lambda: h.gradcam(model, batch, class_index, layer=LAYER, progress=False)[0],
    }


def tf_keras_vis_variants(model, batch, class_index):
    from tf_keras_vis.gradcam import Gradcam
    from tf_keras_vis.saliency import Saliency
    from tf_keras_vis.utils.scores import CategoricalScore

    score = CategoricalScore([class_index])
    vanilla = Saliency(model, clone=False)
    guided = Saliency(guided_backprop_model(model), clone=False)
    gradcam = Gradcam(model, clone=False)

    def cam():
        low = gradcam(score, batch, penultimate_layer=LAYER, seek_penultimate_conv_layer=False,
                      expand_cam=False, normalize_cam=False)
        return h.upsample_map(np.asarray(low)[0], batch.shape[1:3])
    return {
        "saliency": _quiet(lambda: np.asarray(vanilla(score, batch, keepdims=True,
                                                      gradient_modifier=None,
                                                      normalize_map=False))[0]),
        "guided backpropagation": _quiet(lambda: np.asarray(guided(
            score, batch, keepdims=True, gradient_modifier=None, normalize_map=False))[0]),
        "Grad-CAM": _quiet(cam),
    }


def xplique_variants(model, batch, class_index):
    try:
        from xplique.attributions import GradCAM, GuidedBackprop, Saliency
    except Exception as error:  # not installed, or incompatible with this stack
        print(f"xplique not available here ({type(error).__name__}: {error}); skipped")
        return {}
    targets = np.zeros((1, 1000), np.float32)
    targets[0, class_index] = 1.0
    vanilla = Saliency(model)
    guided = GuidedBackprop(model)
    gradcam = GradCAM(model, conv_layer=LAYER)
    # xplique's Saliency returns max |gradient| over channels: compare with that reduction.
    return {
        "saliency": lambda: np.asarray(vanilla.explain(batch, targets))[0],
        "guided backpropagation": lambda: np.asarray(guided.explain(batch, targets))[0],
        "Grad-CAM": lambda: np.asarray(gradcam.explain(batch, targets))[0],
    }


def _difference(reference, other):
    """Largest difference relative to the reference's peak; a one-channel map is compared with
    the reduction of the helpers' (H, W, 3) gradient that matches it best."""
    reference = np.asarray(reference, np.float64)
    other = np.asarray(other, np.float64)
    if other.ndim == 3 and other.shape[-1] == 1:
        other = other[..., 0]
    candidates = [reference]
    if reference.ndim == 3 and other.ndim == 2:
        candidates = [np.abs(reference).max(axis=-1), np.abs(reference).mean(axis=-1),
                      reference.sum(axis=-1)]
    return min(float(np.abs(other - c).max() / max(np.abs(c).max(), 1e-30))
               for c in candidates if c.shape == other.shape) if any(
        c.shape == other.shape for c in candidates) else float("nan")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--class", dest="class_name", default="tabby")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    batch = h.prepare(args.image, model)
    class_index = h.class_index(args.class_name)
    sources = {"helpers (compiled)": helpers_variants(model, batch, class_index),
               "tf-keras-vis (eager)": tf_keras_vis_variants(model, batch, class_index),
               "xplique": xplique_variants(model, batch, class_index)}
    maps, times = {}, {}
    for source, variants in sources.items():
        for method, run in variants.items():
            maps[source, method] = run()  # warm-up: traces compiled functions
            times[source, method] = []
    for _ in range(args.rounds):
        for key in times:
            run = sources[key[0]][key[1]]
            start = time.perf_counter()
            for _ in range(args.calls):
                run()
            times[key].append((time.perf_counter() - start) / args.calls)
    print(f"EfficientNet-Lite0, {args.image}, class {args.class_name}; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs; median of {args.rounds} rounds x {args.calls} calls\n")
    print("| method | implementation | s per call | vs helpers | max difference vs helpers |")
    print("|---|---|---:|---:|---:|")
    for method in helpers_variants(model, batch, class_index):
        base = statistics.median(times["helpers (compiled)", method])
        for source in sources:
            if (source, method) not in times:
                continue
            seconds = statistics.median(times[source, method])
            difference = _difference(maps["helpers (compiled)", method], maps[source, method])
            print(f"| {method} | {source} | {seconds:.3f} | {seconds / base:.1f}x | "
                  f"{difference:.1e} |")


if __name__ == "__main__":
    main()
