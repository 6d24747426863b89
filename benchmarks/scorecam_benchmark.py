"""Score-CAM on EfficientNet-Lite0 "top_activation" (1280 maps): time and peak memory.

Compares, in one run, on the same photo and class:

* tf-keras-vis ``Scorecam`` as it ships (all 1280 masked images built at once),
* ``h.gradcam(method="scorecam")``: the same arithmetic, masks streamed
  ``batch_size`` at a time through a compiled function,
* Faster Score-CAM (top-N maps by spatial std) in tf-keras-vis (``max_N``)
  and in ``h.gradcam(method="faster-scorecam")``,
* a one-mask-at-a-time loop (a batch of 1 per forward pass), the baseline.

Each variant runs in its own process after a warm-up call, so its peak
resident memory (``ru_maxrss``) minus the resident memory before the call is
what the call itself needed. Prints a markdown table.

    python benchmarks/scorecam_benchmark.py [--image cat_and_coffee] [--class tabby]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

LAYER = "top_activation"


def _resident_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _tf_keras_vis(model, image, class_index, max_n):
    import keras
    from tf_keras_vis.scorecam import Scorecam
    from tf_keras_vis.utils.scores import CategoricalScore

    import helpers as h

    keras.config.disable_interactive_logging()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cam = Scorecam(model, clone=False)(
            CategoricalScore([class_index]), image[None], penultimate_layer=LAYER,
            seek_penultimate_conv_layer=False, max_N=max_n, expand_cam=False,
            normalize_cam=False)
    return h.upsample_map(np.asarray(cam)[0], image.shape[:2])


def _one_at_a_time(model, image, class_index, max_n):
    """The plain loop: for each map, mask the image and run the model on it alone.

    ``max_n`` keeps the first maps (only the warm-up uses it).
    """
    import tensorflow as tf
    from scipy.ndimage import zoom

    import helpers as h

    from helpers.models import feature_model

    features = feature_model(model, LAYER, include_output=False)
    activations = np.asarray(features(image[None]))[0]
    logits_of = tf.function(lambda x: model(x, training=False),
                            input_signature=[tf.TensorSpec((None,) + image.shape, tf.float32)])
    factors = (image.shape[0] / activations.shape[0], image.shape[1] / activations.shape[1])
    channels = activations.shape[-1] if max_n is None else max_n
    weights = np.empty(channels, dtype=np.float32)
    for k in range(channels):
        mask = zoom(activations[..., k], factors, order=1, mode="nearest")
        mask = (mask - mask.min()) / (mask.max() - mask.min() + 1e-7)
        logits = logits_of(tf.constant((image * mask[..., None])[None]))
        weights[k] = np.asarray(tf.nn.softmax(logits))[0, class_index]
    cam = np.maximum(activations[..., :channels] @ weights, 0)
    return h.upsample_map(cam, image.shape[:2])


def _ours(model, image, class_index, max_n, batch_size):
    import helpers as h

    method = "scorecam" if max_n is None else "faster-scorecam"
    return h.gradcam(model, image, class_index, layer=LAYER, method=method,
                     max_channels=max_n, batch_size=batch_size, progress=False)


def _run(variant, image_name, class_name, batch_size, queue):
    import helpers as h

    model = h.load_model("efficientnet_lite0")
    image = h.as_batch(image_name, model)[0][0]
    class_index = h.class_index(class_name)
    kind, max_n = variant
    call = {
        "tf-keras-vis": lambda n: _tf_keras_vis(model, image, class_index, n),
        "streamed": lambda n: _ours(model, image, class_index, n, batch_size),
        "loop": lambda n: _one_at_a_time(model, image, class_index, n),
    }[kind]
    call(2)  # warm-up: builds and compiles what the variant needs
    before = _resident_mb()
    start = time.perf_counter()
    heatmap = call(max_n)
    seconds = time.perf_counter() - start
    queue.put((seconds, max(_peak_mb() - before, 0.0), heatmap))


def measure(variant, image_name, class_name, batch_size):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_run, args=(variant, image_name, class_name, batch_size,
                                                  queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="cat_and_coffee")
    parser.add_argument("--class", dest="class_name", default="tabby")
    parser.add_argument("--top", type=int, default=32, help="maps kept by Faster Score-CAM")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()

    variants = [
        ("one mask at a time (loop)", ("loop", None)),
        ("tf-keras-vis Scorecam (all masks at once)", ("tf-keras-vis", None)),
        (f"h.gradcam scorecam (streamed, batch {args.batch_size})", ("streamed", None)),
        (f"tf-keras-vis Scorecam max_N={args.top}", ("tf-keras-vis", args.top)),
        (f"h.gradcam faster-scorecam (top {args.top}, streamed)", ("streamed", args.top)),
    ]
    results = {}
    for label, variant in variants:
        print(f"running: {label} ...", file=sys.stderr, flush=True)
        results[label] = measure(variant, args.image, args.class_name, args.batch_size)

    loop_seconds = results[variants[0][0]][0]
    reference = {None: results[variants[1][0]][2], args.top: results[variants[3][0]][2]}
    full_reference = reference[None]
    print(f"Score-CAM of '{args.class_name}' on '{args.image}', EfficientNet-Lite0 "
          f"'{LAYER}' (7x7x1280), {os.cpu_count()} CPU cores\n")
    print("| variant | forward passes | time (s) | speed-up vs loop | peak extra memory (MB) "
          "| max abs diff vs tf-keras-vis (same N) | correlation with full Score-CAM |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (kind, max_n) in variants:
        seconds, memory, heatmap = results[label]
        same = reference[max_n]
        diff = float(np.abs(heatmap - same).max() / (np.abs(same).max() or 1.0))
        correlation = float(np.corrcoef(heatmap.ravel(), full_reference.ravel())[0, 1])
        print(f"| {label} | {1280 if max_n is None else max_n} | {seconds:.1f} | "
              f"{loop_seconds / seconds:.1f}x | {memory:.0f} | {diff:.1e} (relative) | "
              f"{correlation:.3f} |")


if __name__ == "__main__":
    main()
