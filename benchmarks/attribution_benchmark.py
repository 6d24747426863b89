"""Attribution methods on EfficientNet-Lite0: the helpers beside xplique, timed side by side.

    PYTHONPATH=. python benchmarks/attribution_benchmark.py            # 3 rounds
    PYTHONPATH=. python benchmarks/attribution_benchmark.py --rounds 1 --quick

Times Gradient x Input, Integrated Gradients, SquareGrad, VarGrad, DeconvNet,
vanilla saliency (for reference) and KernelSHAP on superpixels for one
photo and class, each with the same settings in both libraries:

* Integrated Gradients: black baseline, the trapezoid rule on 50 points of
  the path (``steps=49`` here, ``steps=50`` in xplique, which counts points);
* SquareGrad / VarGrad: 50 noisy copies, sigma = 15% of the 0..255 range
  (xplique's ``noise`` is that sigma in input units, 38.25);
* KernelSHAP: the same SLIC superpixels (passed to xplique as its
  ``map_to_interpret_space``), hidden to grey (127.5), 500 coalitions.

Rounds interleave the two libraries (the order alternates each round) after
one warm-up call of every method, which traces the compiled functions;
the table gives the median of the rounds, the ratio xplique / helpers, and
how close the maps are: the largest difference relative to the map's peak
for deterministic methods, the correlation for sampled ones (other draws),
beside the correlation between two seeds of the helpers' own estimate.
Wall-clock and CPU seconds of the process.

xplique is not a requirement of the course: it pins an older TensorFlow, so
it runs here only in a separate environment that has the course's
requirements plus ``pip install --no-deps xplique==2.0.2`` and tf-keras,
einops, tensorflow-probability and opencv-python-headless. Without it the
script times the helpers alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402
from helpers.environment import tf  # noqa: E402

SIGMA = 0.15 * 255
PATH_POINTS = 50
NOISY_COPIES = 50
COALITIONS = 500
SEGMENTS = 50


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, np.asarray(result)


def helpers_methods(model, batch, class_index, segments, points, copies, coalitions, seed=0):
    """name -> () -> a (H, W) map, reduced over colours the way xplique reduces."""
    def channel_mean(maps):
        return maps.mean(axis=-1)

    return {
        "Gradient x Input": lambda: channel_mean(h.gradient_x_input(
            model, batch, class_index, reduce=None, progress=False)[0]),
        "Integrated Gradients": lambda: channel_mean(h.integrated_gradients(
            model, batch, class_index, steps=points - 1, rule="trapezoid", reduce=None,
            progress=False).maps[0]),
        "SquareGrad": lambda: channel_mean(h.squaregrad(
            model, batch, class_index, samples=copies, noise_level=SIGMA / 255, reduce=None,
            seed=seed, progress=False)[0]),
        "VarGrad": lambda: channel_mean(h.vargrad(
            model, batch, class_index, samples=copies, noise_level=SIGMA / 255, reduce=None,
            seed=seed, progress=False)[0]),
        "DeconvNet": lambda: channel_mean(h.saliency(
            model, batch, class_index, method="deconvnet", reduce=None, progress=False)[0]),
        "Saliency (vanilla)": lambda: h.saliency(model, batch, class_index, reduce="max_abs",
                                                 progress=False)[0],
        "KernelSHAP (superpixels)": lambda: h.kernel_shap(
            model, batch, class_index, segments=segments, baseline="grey", samples=coalitions,
            seed=seed, progress=False).maps[0],
    }


def xplique_methods(model, batch, class_index, segments, points, copies, coalitions):
    """The same methods from xplique, or {} when it does not import."""
    try:
        from xplique.attributions import (DeconvNet, GradientInput, IntegratedGradients,
                                          KernelShap, Saliency, SquareGrad, VarGrad)
    except ImportError:
        return {}
    inputs = tf.constant(batch)
    targets = tf.one_hot([class_index], h.model_spec(model).num_classes)
    explainers = {
        "Gradient x Input": GradientInput(model),
        "Integrated Gradients": IntegratedGradients(model, steps=points, batch_size=16,
                                                    baseline_value=0.0),
        "SquareGrad": SquareGrad(model, nb_samples=copies, noise=SIGMA, batch_size=8),
        "VarGrad": VarGrad(model, nb_samples=copies, noise=SIGMA, batch_size=8),
        "DeconvNet": DeconvNet(model),
        "Saliency (vanilla)": Saliency(model),
        "KernelSHAP (superpixels)": KernelShap(
            model, batch_size=32, nb_samples=coalitions, ref_value=np.full(3, 127.5, np.float32),
            map_to_interpret_space=lambda _: tf.constant(segments, tf.int32)),
    }
    return {name: (lambda e=explainer: _one_map(e.explain(inputs, targets)))
            for name, explainer in explainers.items()}


def _one_map(maps):
    """xplique's (1, H, W, 1) or (1, H, W) answer as (H, W)."""
    maps = np.asarray(maps)[0]
    return maps[..., 0] if maps.ndim == 3 else maps


SAMPLED = {"SquareGrad", "VarGrad", "KernelSHAP (superpixels)"}


def correlation(first, second):
    return np.corrcoef(first.ravel(), second.ravel())[0, 1]


def agreement(name, ours, theirs):
    if theirs is None:
        return "—"
    if name in SAMPLED:
        return f"r = {correlation(ours, theirs):.3f}"
    return f"{np.abs(ours - theirs).max() / np.abs(theirs).max():.1e}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--quick", action="store_true",
                        help="fewer path points, noisy copies and coalitions (a smoke run)")
    args = parser.parse_args(argv)
    points, copies, coalitions = (PATH_POINTS, NOISY_COPIES, COALITIONS) if not args.quick \
        else (8, 8, 64)

    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    batch = h.prepare(args.image, model)
    class_index = int(np.argmax(h.predict_logits(model, batch)))
    segments = h.superpixels(batch[0], SEGMENTS)
    libraries = {"helpers": helpers_methods(model, batch, class_index, segments, points,
                                            copies, coalitions),
                 "xplique": xplique_methods(model, batch, class_index, segments, points,
                                            copies, coalitions)}
    names = list(libraries["helpers"])
    times = {(library, name): [] for library in libraries for name in names}
    maps = {}
    for library, methods in libraries.items():  # warm-up: tracing and model copies
        for name, method in methods.items():
            maps[library, name] = np.asarray(method(), dtype=np.float64)
    # Sampled methods: how far two seeds of the same estimator agree, for scale.
    reseeded = helpers_methods(model, batch, class_index, segments, points, copies, coalitions,
                               seed=1)
    other_seed = {name: correlation(maps["helpers", name], np.asarray(reseeded[name]()))
                  for name in SAMPLED}
    for round_index in range(args.rounds):
        order = list(libraries) if round_index % 2 == 0 else list(reversed(libraries))
        for name in names:
            for library in order:
                if name in libraries[library]:
                    wall, cpu, _ = timed(libraries[library][name])
                    times[library, name].append((wall, cpu))

    def median(library, name, which):
        values = [t[which] for t in times[library, name]]
        return statistics.median(values) if values else None

    print(f"EfficientNet-Lite0 (224x224), image '{args.image}', class {class_index} "
          f"({h.class_name(class_index)}); {os.cpu_count()} CPU cores "
          f"({platform.processor() or 'cpu'}); median of {args.rounds} interleaved rounds; "
          f"{points} path points, {copies} noisy copies, {coalitions} coalitions of "
          f"{int(segments.max()) + 1} superpixels\n")
    print("| method | helpers wall / CPU (s) | xplique wall / CPU (s) | xplique / helpers "
          "(wall) | maps: max rel. difference or correlation | helpers, seed 0 vs 1 |")
    print("|---|---:|---:|---:|---|---|")
    for name in names:
        ours = (median("helpers", name, 0), median("helpers", name, 1))
        theirs = (median("xplique", name, 0), median("xplique", name, 1))
        shown = "—" if theirs[0] is None else f"{theirs[0]:.2f} / {theirs[1]:.2f}"
        ratio = "—" if theirs[0] is None else f"{theirs[0] / ours[0]:.2f}x"
        print(f"| {name} | {ours[0]:.2f} / {ours[1]:.2f} | {shown} | {ratio} | "
              f"{agreement(name, maps['helpers', name], maps.get(('xplique', name)))} | "
              f"{f'r = {other_seed[name]:.3f}' if name in other_seed else '—'} |")


if __name__ == "__main__":
    main()
