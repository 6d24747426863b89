"""Class visualisations judged by models that never saw the optimisation.

    python benchmarks/feature_vis_benchmark.py                  # 16 classes, every method
    python benchmarks/feature_vis_benchmark.py --methods fourier --classes 8

Each method optimises one image per class on EfficientNet-Lite0, the classes
in batches of ``--batch-size`` (8) as one optimisation. Each image is then
resized (``h.as_batch``: rounded to 8-bit pixels and resized bilinearly, as a
photo would be) and classified by EfficientNet-Lite1 (240 px) and
EfficientNet-Lite2 (260 px): separately trained networks of the same
family. The rank of the target class among their 1000 logits (1 = top-1)
says whether the image shows the class to another network too, or is a
pattern only Lite0 responds to. Time: wall-clock seconds per image, the
whole run of the method divided by the number of classes, after one short
warm-up run that compiles the graphs. Prints a markdown table and each
class's ranks; ``--save`` writes the images to an .npz file.

Methods (``--methods``):

* ``tf-keras-vis``: the peer library, called as its documentation shows:
  ``ActivationMaximization`` with ``ReplaceToLinear`` and ``CategoricalScore``,
  pixel-space ascent from uniform noise with its ``TotalVariation2D`` (weight
  1) and ``Norm`` (L1, weight 0.3) regularisers, its ``Jitter`` (16 pixels)
  and ``Rotate2D`` (1 degree) input modifiers and ``RMSprop(1.0, 0.999)``,
  128 steps, the model called eagerly (as the library does).
* ``pixel``: ``h.visualize_class(parameterization="pixel")``: Adam on
  sigmoid pixels with the transformation-robustness stack, 128 steps.
* ``fourier-lucid``: the decorrelated Fourier parameterisation with
  transformations of Lucid's ranges (jitter 8, scale 0.9-1.1, ±10°).
* ``fourier``: ``h.visualize_class()`` with its defaults: the decorrelated
  Fourier parameterisation, jitter 16, scale 0.8-1.2, ±15°, 128 Adam steps
  of 0.1 (lesson 02's setting).
* ``fourier-256``: the same with 256 steps of 0.05.
* ``fourier-fast``: the same with 32 steps (lesson 02 in fast mode).
* ``fourier-lucid-256``: Lucid-like transformations with 256 steps of 0.05.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402

CLASSES = ["espresso", "tabby", "goldfish", "daisy", "lemon", "tarantula", "lighthouse",
           "strawberry", "zebra", "volcano", "monarch", "flamingo", "pineapple", "jellyfish",
           "broccoli", "pizza"]

LUCID_LIKE = dict(pad=12, jitter=8, scale=(0.9, 1.1), rotation=10.0)


_PEERS = {}


def _tf_keras_vis(model, classes, steps, batch_size, seed=0):
    """tf-keras-vis' ActivationMaximization, one batch of classes at a time, seeded."""
    import keras
    from tf_keras_vis.activation_maximization import ActivationMaximization
    from tf_keras_vis.activation_maximization.input_modifiers import Jitter, Rotate2D
    from tf_keras_vis.activation_maximization.regularizers import Norm, TotalVariation2D
    from tf_keras_vis.utils.model_modifiers import ReplaceToLinear
    from tf_keras_vis.utils.scores import CategoricalScore

    if id(model) not in _PEERS:  # cloned once (ReplaceToLinear must not edit the model)
        _PEERS[id(model)] = ActivationMaximization(model, model_modifier=ReplaceToLinear(),
                                                   clone=True)
    visualizer = _PEERS[id(model)]
    height, width = h.input_size(model)
    rng = np.random.default_rng(seed)
    np.random.seed(seed)  # Jitter draws from numpy's global generator
    images = []
    for begin in range(0, len(classes), batch_size):
        chunk = [h.class_index(name) for name in classes[begin:begin + batch_size]]
        rotate = Rotate2D(degree=1)
        rotate.random_generator = np.random.default_rng(seed + begin)
        result = visualizer(CategoricalScore(chunk),
                            seed_input=rng.uniform(0, 255, (len(chunk), height, width, 3)
                                                   ).astype(np.float32),
                            input_range=(0, 255),
                            input_modifiers=[Jitter(jitter=16), rotate],
                            regularizers=[TotalVariation2D(weight=1.0), Norm(weight=0.3, p=1)],
                            steps=steps,
                            optimizer=keras.optimizers.RMSprop(1.0, 0.999))
        images.append(np.asarray(result, np.float32).reshape(len(chunk), height, width, 3))
    return np.concatenate(images)


def _visualize(**options):
    return lambda model, classes, steps, batch_size: h.visualize_class(
        model, classes, steps=steps, batch_size=batch_size, progress=False, **options)


METHODS = {  # key: (description, steps, run)
    "tf-keras-vis": ("tf-keras-vis ActivationMaximization, pixel space, TV + L1 + jitter + "
                     "rotation, RMSprop", 128, _tf_keras_vis),
    "pixel": ("h.visualize_class, pixel space (Adam 0.1, transformations)", 128,
              _visualize(parameterization="pixel")),
    "fourier-lucid": ("h.visualize_class, Fourier, Lucid-like transformations", 128,
                      _visualize(transforms=h.Transforms(**LUCID_LIKE))),
    "fourier": ("h.visualize_class, Fourier (the defaults; lesson 02)", 128, _visualize()),
    "fourier-256": ("h.visualize_class, Fourier, 256 steps of 0.05", 256,
                    _visualize(learning_rate=0.05)),
    "fourier-fast": ("h.visualize_class, Fourier, fast mode", 32, _visualize()),
    "fourier-lucid-256": ("h.visualize_class, Fourier, Lucid-like transformations, 256 steps "
                          "of 0.05", 256, _visualize(learning_rate=0.05,
                                                     transforms=h.Transforms(**LUCID_LIKE))),
}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--classes", type=int, default=len(CLASSES),
                        help="use the first N classes of the fixed list")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=None,
                        help="override every method's number of steps")
    parser.add_argument("--save", default=None, help="write the images to this .npz file")
    args = parser.parse_args(argv)

    h.seed_everything(0)
    classes = CLASSES[:args.classes]
    model = h.load_model("efficientnet_lite0")
    judges = {name: h.load_model(f"efficientnet_{name}") for name in ("lite1", "lite2")}
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f} at the start; {len(classes)} classes, "
          f"batch {args.batch_size}")
    rows, saved = [], {}
    for key in args.methods:
        description, steps, run = METHODS[key]
        steps = args.steps or steps
        run(model, classes[:2], 2, 2)                             # compile the graphs
        start = time.perf_counter()
        images = run(model, classes, steps, args.batch_size)
        seconds = (time.perf_counter() - start) / len(classes)
        found = {name: h.class_rank(judge, list(images), classes)
                 for name, judge in judges.items()}
        found["lite0"] = h.class_rank(model, list(images), classes)
        saved[key] = images
        rows.append((key, description, steps, seconds, found))
        print(f"{key}: {seconds:.1f} s per image; ranks " + "; ".join(
            f"{name} {list(map(int, r))}" for name, r in found.items()), flush=True)

    print()
    print("| method | steps | time per image (s) | Lite2: target first | Lite2: top 5 | "
          "Lite1: target first | Lite1: top 5 | Lite2 median rank | Lite0 (the optimised "
          "model): target first |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    count = len(classes)
    for key, description, steps, seconds, found in rows:
        lite1, lite2, lite0 = found["lite1"], found["lite2"], found["lite0"]
        print(f"| {description} | {steps} | {seconds:.1f} | {np.sum(lite2 == 1)}/{count} | "
              f"{np.sum(lite2 <= 5)}/{count} | {np.sum(lite1 == 1)}/{count} | "
              f"{np.sum(lite1 <= 5)}/{count} | {np.median(lite2):g} | "
              f"{np.sum(lite0 == 1)}/{count} |")
    print()
    print("| class | " + " | ".join(f"{key} (Lite1 / Lite2)" for key, *_ in rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for index, name in enumerate(classes):
        print(f"| {name} | " + " | ".join(
            f"{found['lite1'][index]} / {found['lite2'][index]}" for *_, found in rows) + " |")
    if args.save:
        np.savez_compressed(args.save, classes=np.array(classes), **saved)


if __name__ == "__main__":
    main()
