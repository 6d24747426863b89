"""SmoothGrad speed on EfficientNet-Lite0: batched noisy samples vs one at a time.

    python benchmarks/smoothgrad_benchmark.py                 # 50 samples, the defaults
    python benchmarks/smoothgrad_benchmark.py --batch-sizes 16 --repeats 1

Every configuration computes the same SmoothGrad map (same seed, same noise)
with ``h.smoothgrad``; only ``batch_size`` changes, so the ratio measures
batching alone. ``batch_size=1`` is the one-sample-at-a-time loop.
tf-keras-vis' own smoothing (``Saliency(..., smooth_samples=n)``: eager, one
noisy copy per step, noise scaled by the image's own range) is timed as a
reference; its map differs (other noise), so it is not compared.
The gradient function is compiled before timing; each row is the best of
``--repeats`` runs. Memory: the process's peak resident size after each row
(rows run in increasing batch size, so each peak is that batch size's need).
Prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def best_time(function, repeats):
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--no-tf-keras-vis", action="store_true",
                        help="skip the tf-keras-vis reference row (the slowest)")
    args = parser.parse_args(argv)

    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    batch, _ = h.as_batch(args.image, model)
    class_index = int(np.argmax(h.predict_logits(model, batch)))

    def run(batch_size):
        return h.smoothgrad(model, batch, class_index, samples=args.samples,
                            batch_size=batch_size, reduce=None, seed=0, progress=False)

    run(2)  # compiles the gradient function (one trace serves every batch size)
    loop_seconds, loop_result = best_time(lambda: run(1), args.repeats)
    rows = [("h.smoothgrad, one sample at a time", 1, loop_seconds, 0.0, peak_mb())]
    for batch_size in sorted(args.batch_sizes):
        seconds, result = best_time(lambda: run(batch_size), args.repeats)
        difference = float(np.abs(result - loop_result).max() / np.abs(loop_result).max())
        rows.append(("h.smoothgrad, batched", batch_size, seconds, difference, peak_mb()))

    if not args.no_tf_keras_vis:
        from tf_keras_vis.saliency import Saliency
        from tf_keras_vis.utils.scores import CategoricalScore

        explainer = Saliency(model, clone=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            explainer(CategoricalScore([class_index]), batch, gradient_modifier=None)  # warm-up
            seconds, _ = best_time(lambda: explainer(
                CategoricalScore([class_index]), batch, smooth_samples=args.samples,
                smooth_noise=0.15, keepdims=True, gradient_modifier=None,
                normalize_map=False), 1)
        rows.append(("tf-keras-vis Saliency(smooth_samples), eager", 1, seconds, None, None))

    print(f"SmoothGrad, {args.samples} samples, efficientnet_lite0 (224x224), image "
          f"'{args.image}'; {os.cpu_count()} CPU cores ({platform.processor() or 'cpu'}); "
          f"best of {args.repeats} runs (tf-keras-vis: 1 run)\n")
    print("| implementation | batch size | time (s) | samples/s | speed-up vs loop "
          "| max rel. difference vs loop | peak RSS (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, batch_size, seconds, difference, peak in rows:
        shown = "—" if difference is None else f"{difference:.1e}"
        memory = "—" if peak is None else f"{peak:.0f}"
        print(f"| {name} | {batch_size} | {seconds:.2f} | {args.samples / seconds:.1f} | "
              f"{loop_seconds / seconds:.2f}x | {shown} | {memory} |")


if __name__ == "__main__":
    main()
