"""Occlusion speed on EfficientNet-Lite0: one image at a time vs streamed batches vs the floor.

    python benchmarks/occlusion_benchmark.py            # 729 positions, 2000 masks (minutes)
    python benchmarks/occlusion_benchmark.py --quick    # fewer images, same columns

Two workloads on a 224x224 photo: sliding-patch occlusion (patch 32,
stride 8: 27 x 27 = 729 positions) and RISE with 2000 random masks. Each is
timed three ways, side by side in one run:

* the articles' loop: build one masked image, ``model.predict`` it, repeat.
  Its cost per image is constant, so it is timed on the first
  ``--loop-images`` images and scaled to the full count (``--full-loop``
  times them all);
* the helpers (``h.occlusion_scores``, ``h.random_mask_scores``): masks
  streamed in fixed-size batches through one compiled function;
* the floor: the same number of ready-made images pushed through the model
  by a compiled function with the same batch size, nothing else.

The three run in ``--repeats`` interleaved rounds (a slice of the loop,
the helpers, the floor), so on a shared machine all three see the same
stretch of load; times are medians over rounds, and "helpers vs floor" is
the median of the per-round ratios of adjacent runs. Each time is given as
wall-clock seconds and as CPU seconds of the process: CPU time hardly
changes when other processes share the cores, so on a busy machine its
ratios are the reliable ones. The compiled
functions are traced before timing. Peak memory is measured in a fresh
process per mask count (``ru_maxrss``). Prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402
from helpers.masks import baseline_image  # noqa: E402

PATCH_SIZE, STRIDE = 32, 8


def peak_rss_mb() -> float:
    # Linux reports kilobytes, macOS bytes.
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024 ** 2
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def timed(function) -> np.ndarray:
    """(wall-clock seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def loop_seconds(model, image, masks, start, stop):
    """The articles' way: one masked image, one ``model.predict``; seconds for masks start..stop-1."""
    fill = baseline_image(image, "grey")

    def run():
        for i in range(start, stop):
            visible = masks.chunk(i, i + 1)[0][..., None]
            masked = visible * image + (1 - visible) * fill
            h.probabilities(model.predict(masked[None].astype(np.float32), verbose=0))

    return timed(run)


def floor_function(model, batch_size):
    import tensorflow as tf

    height, width = h.input_size(model)

    @tf.function(input_signature=[tf.TensorSpec((batch_size, height, width, 3), tf.float32)])
    def forward(images):
        return model(images, training=False)

    return forward


def make_floor(model, image, count, batch_size):
    """Seconds-returning callable: ``count`` prepared images through the bare model."""
    import tensorflow as tf

    full, rest = divmod(count, batch_size)
    images = tf.constant(np.repeat(image[None], batch_size, axis=0))
    forward_full = floor_function(model, batch_size)
    forward_rest = floor_function(model, rest) if rest else None
    forward_full(images)
    if rest:
        forward_rest(images[:rest])

    def run():
        for _ in range(full):
            forward_full(images).numpy()
        if rest:
            forward_rest(images[:rest]).numpy()

    return lambda: timed(run)


def workloads(image, quick):
    height, width = image.shape[:2]
    num_masks = 400 if quick else 2000
    return [
        (f"sliding patch {PATCH_SIZE}, stride {STRIDE}",
         h.PatchMasks(height, width, PATCH_SIZE, STRIDE),
         lambda model, batch_size: h.occlusion_scores(
             model, image, patch_size=PATCH_SIZE, stride=STRIDE, batch_size=batch_size,
             progress=False)),
        ("RISE random masks",
         h.RandomMasks(height, width, num_masks, method="rise", seed=0),
         lambda model, batch_size: h.random_mask_scores(
             model, image, method="rise", num_masks=num_masks, seed=0, batch_size=batch_size,
             progress=False)),
    ]


def speed_rows(model, image, args):
    rows = []
    for name, masks, helper in workloads(image, args.quick):
        count = masks.count
        loop_count = count if args.full_loop else min(count, args.loop_images)
        model.predict(image[None], verbose=0)  # warm-up
        helper(model, args.batch_size)  # traces the compiled function
        floor_run = make_floor(model, image, count + 1, args.batch_size)  # +1: unmasked image
        # Rounds of loop slice, helpers, floor: all three sample the same stretch of
        # machine load; the helpers/floor ratio is taken per round, from adjacent runs.
        segments = np.linspace(0, loop_count, args.repeats + 1).astype(int)
        loop_total, helper_times, floor_times = np.zeros(2), [], []
        for first, last in zip(segments[:-1], segments[1:]):
            loop_total += loop_seconds(model, image, masks, first, last)
            helper_times.append(timed(lambda: helper(model, args.batch_size)))
            floor_times.append(floor_run())
        loop = loop_total * count / loop_count
        helper_times, floor_times = np.array(helper_times), np.array(floor_times)
        rows.append((name, count, loop, loop_count, np.median(helper_times, axis=0),
                     np.median(floor_times, axis=0),
                     np.median(helper_times / floor_times, axis=0)))
        print(f"  done: {name}", file=sys.stderr)
    return rows


def child_memory(args) -> None:
    """Run in a fresh process: peak RSS before and after scoring ``--child-masks`` masks."""
    model = h.load_model("efficientnet_lite0")
    image = h.prepare(args.image, model)[0]
    h.random_mask_scores(model, image, num_masks=args.batch_size, batch_size=args.batch_size,
                         progress=False)  # warm-up: trace, allocate one batch
    before = peak_rss_mb()
    h.random_mask_scores(model, image, num_masks=args.child_masks, batch_size=args.batch_size,
                         progress=False)
    print(json.dumps({"before": before, "after": peak_rss_mb()}))


def memory_rows(args):
    rows = []
    for count in args.memory_masks:
        command = [sys.executable, os.path.abspath(__file__), "--child-masks", str(count),
                   "--batch-size", str(args.batch_size), "--image", args.image]
        output = subprocess.run(command, check=True, capture_output=True, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}).stdout
        measured = json.loads(output.strip().splitlines()[-1])
        rows.append((count, measured["before"], measured["after"]))
        print(f"  done: memory with {count} masks", file=sys.stderr)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="400 masks, 50-image loop sample, one repeat, smaller memory runs")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="rounds, default 3 (quick: 1)")
    parser.add_argument("--loop-images", type=int, default=None,
                        help="images the one-at-a-time loop is timed on (default 200, quick 50)")
    parser.add_argument("--full-loop", action="store_true", help="time the loop on every image")
    parser.add_argument("--memory-masks", type=int, nargs="*", default=None,
                        help="mask counts for the memory table (default 250 1000 4000)")
    parser.add_argument("--image", default="chelsea")
    parser.add_argument("--child-masks", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_masks is not None:
        child_memory(args)
        return
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.loop_images = args.loop_images or (50 if args.quick else 200)
    if args.memory_masks is None:
        args.memory_masks = [100, 400] if args.quick else [250, 1000, 4000]

    load_before = os.getloadavg()[0]
    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    image = h.prepare(args.image, model)[0]
    rows = speed_rows(model, image, args)
    memory = memory_rows(args)
    load_after = os.getloadavg()[0]

    print(f"Occlusion on efficientnet_lite0 (224x224), image '{args.image}', batch size "
          f"{args.batch_size}; {os.cpu_count()} CPU cores ({platform.machine()}); load average "
          f"{load_before:.1f} before, {load_after:.1f} after; medians of {args.repeats} "
          f"interleaved rounds{'; --quick' if args.quick else ''}\n")
    print("Times: wall-clock s / CPU s of the process. CPU time barely moves with other "
          "processes' load, so its ratios are the ones to trust on a shared machine.\n")
    print("| workload | forward passes | one-at-a-time `model.predict` loop | helpers "
          "| batched inference floor | helpers vs loop (wall / CPU) "
          "| helpers vs floor (wall / CPU) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, count, loop, loop_count, helper, floor, ratio in rows:
        scaled = "" if loop_count == count else f" (timed on {loop_count})"
        speedup = loop / helper
        print(f"| {name} | {count} | {loop[0]:.1f} / {loop[1]:.1f}{scaled} | "
              f"{helper[0]:.1f} / {helper[1]:.1f} | {floor[0]:.1f} / {floor[1]:.1f} | "
              f"{speedup[0]:.1f}x / {speedup[1]:.1f}x | "
              f"{100 * (ratio[0] - 1):+.0f}% / {100 * (ratio[1] - 1):+.0f}% |")
    if not memory:
        return
    print("\nPeak memory of a fresh process scoring N RISE masks (scores of all 1000 classes "
          "are kept: 4 kB per mask)\n")
    print("| masks | peak RSS after warm-up (MB) | peak RSS after the run (MB) | growth (MB) "
          "| all masked images at once would take (MB) |")
    print("|---:|---:|---:|---:|---:|")
    height, width = h.input_size(model)
    for count, before, after in memory:
        naive = count * height * width * 3 * 4 / 2 ** 20
        print(f"| {count} | {before:.0f} | {after:.0f} | {after - before:.0f} | "
              f"{naive:,.0f} |")


if __name__ == "__main__":
    main()
