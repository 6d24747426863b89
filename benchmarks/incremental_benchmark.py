"""Incremental occlusion on EfficientNet-Lite0: full recomputation, floor, incremental inference.

    python benchmarks/incremental_benchmark.py            # patches 16, 32, 64 at stride 8 (minutes)
    python benchmarks/incremental_benchmark.py --quick    # patch 32 only, one round

Three tables on a 224x224 photo (stride 8: 27 x 27 = 729 positions for
every patch size here):

* the bound (``h.incremental_bound``): the share of multiply-adds a patch
  really changes, the speed-up it allows over full recomputation, the same
  for what the engine computes (whole windows, full maps after the layer
  where its windows stop), patch sizes 16, 24, 32, 48, 64;
* where the time goes: the batched floor's CPU time per stage of the network
  (a compiled prefix of the model up to each stage's last layer, timed on
  the same batch of 32; differences of adjacent prefixes), beside each
  stage's share of the multiply-adds and the share a 32-pixel patch changes.
  Weighting each stage's measured time by that share gives a time-weighted
  bound, the speed-up if changed outputs cost what they cost in the full
  network and unchanged ones nothing;
* speed, three ways side by side: the helpers (``h.occlusion_scores``: each
  occluded copy through the whole network), the floor (the same number of
  ready-made images through the bare model, compiled, batch 32) and the
  incremental engine (``h.incremental_occlusion_scores``, batch 32). They
  alternate in ``--repeats`` interleaved rounds so all three see the same
  stretch of machine load; times are medians, ratios the medians of the
  per-round ratios. Wall-clock and CPU seconds of the process: on a shared
  machine CPU time is the one to trust. The first incremental call for a
  patch size is timed separately (it traces and optimises the compiled
  function: once per plan structure, see ``helpers.incremental``), and the
  maps are compared with the full recomputation (max abs difference over
  the map's peak).

Prints markdown tables.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402
from helpers.incremental import _plan  # noqa: E402

STRIDE = 8
BOUND_SIZES = (16, 24, 32, 48, 64)
STAGES = ("stem", "block1", "block2", "block3", "block4", "block5", "block6", "block7", "top")


def timed(function) -> np.ndarray:
    """(wall-clock seconds, CPU seconds of this process) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    function()
    return np.array([time.perf_counter() - wall, time.process_time() - cpu])


def compiled(model, batch_size, reduce=False):
    import tensorflow as tf

    shape = (batch_size,) + tuple(model.inputs[0].shape[1:])

    @tf.function(input_signature=[tf.TensorSpec(shape, tf.float32)])
    def forward(images):
        outputs = model(images, training=False)
        return tf.reduce_sum(outputs) if reduce else outputs  # no large copy out

    return forward


def make_floor(model, image, count, batch_size):
    """Seconds-returning callable: ``count`` prepared images through the bare model."""
    import tensorflow as tf

    full, rest = divmod(count, batch_size)
    images = tf.constant(np.repeat(image[None], batch_size, axis=0))
    forward_full = compiled(model, batch_size)
    forward_rest = compiled(model, rest) if rest else None
    forward_full(images)
    if rest:
        forward_rest(images[:rest])

    def run():
        for _ in range(full):
            forward_full(images).numpy()
        if rest:
            forward_rest(images[:rest]).numpy()

    return lambda: timed(run)


def bound_rows(model):
    rows = []
    for size in BOUND_SIZES:
        bound = h.incremental_bound(model, patch_size=size, stride=STRIDE)
        plan = _plan(model, size, STRIDE)
        stop = plan.steps[plan.cut].node.operation.name
        rows.append((size, bound.changed_macs / bound.total_macs, bound.speedup,
                     bound.engine_speedup, stop, bound.total_macs))
    return rows


def stage_of(name):
    return next((stage for stage in STAGES if name.startswith(stage)), "top")


def stage_rows(model, image, args):
    """Per stage: MACs, the floor's CPU time (prefix differences), the share patch 32 changes."""
    import keras
    import tensorflow as tf

    names = [layer.name for layer in model.layers]
    ends = [max(i for i, n in enumerate(names) if stage_of(n) == stage) for stage in STAGES]
    batch = tf.constant(np.repeat(image[None], args.batch_size, axis=0))
    prefixes = []
    for end in ends:
        prefix = keras.Model(model.inputs[0], model.layers[end].output)
        forward = compiled(prefix, args.batch_size, reduce=True)
        forward(batch)
        prefixes.append(forward)
    times = []
    for _ in range(max(3, args.repeats)):
        times.append([timed(lambda f=f: f(batch).numpy())[1] for f in prefixes])
    cumulative = np.median(np.array(times), axis=0)
    stage_cpu = np.diff(np.concatenate([[0.0], cumulative]))
    bound = h.incremental_bound(model, patch_size=32, stride=STRIDE)
    rows = []
    for stage, cpu in zip(STAGES, stage_cpu):
        layers = [layer for layer in bound.layers if stage_of(layer.name) == stage]
        macs = sum(layer.macs for layer in layers)
        changed = sum(layer.macs * layer.changed for layer in layers) / macs
        shape = layers[-1].output_shape if stage != "top" else layers[0].output_shape
        rows.append((stage, shape, macs, max(cpu, 0.0), changed))
    return rows


def speed_rows(model, image, args):
    rows = []
    for size in args.patch_sizes:
        masks = h.PatchMasks(*image.shape[:2], size, STRIDE)

        def helpers_run():
            return h.occlusion_scores(model, image, patch_size=size, stride=STRIDE,
                                      batch_size=args.batch_size, progress=False)

        def incremental_run():
            return h.incremental_occlusion_scores(model, image, patch_size=size, stride=STRIDE,
                                                  batch_size=args.batch_size, progress=False)

        first = timed(incremental_run)  # traces (when this plan structure is new)
        full, fast = helpers_run(), incremental_run()
        tabby = h.class_index("tabby")
        expected = full.map(tabby)
        error = np.abs(fast.map(tabby) - expected).max() / np.abs(expected).max()
        floor_run = make_floor(model, image, masks.count + 1, args.batch_size)
        helper_times, floor_times, incremental_times = [], [], []
        for _ in range(args.repeats):
            helper_times.append(timed(helpers_run))
            floor_times.append(floor_run())
            incremental_times.append(timed(incremental_run))
        helper_times, floor_times, incremental_times = map(
            np.array, (helper_times, floor_times, incremental_times))
        rows.append(dict(
            size=size, count=masks.count, first=first, error=error,
            helpers=np.median(helper_times, axis=0), floor=np.median(floor_times, axis=0),
            incremental=np.median(incremental_times, axis=0),
            vs_floor=np.median(floor_times / incremental_times, axis=0),
            vs_helpers=np.median(helper_times / incremental_times, axis=0),
            bound=h.incremental_bound(model, patch_size=size, stride=STRIDE).speedup))
        print(f"  done: patch {size}", file=sys.stderr)
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="patch 32 only, one round")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=None, help="rounds, default 3 (quick: 1)")
    parser.add_argument("--patch-sizes", type=int, nargs="*", default=None,
                        help="patch sizes timed (default 16 32 64; quick: 32)")
    parser.add_argument("--image", default="chelsea")
    args = parser.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    if args.patch_sizes is None:
        args.patch_sizes = [32] if args.quick else [16, 32, 64]

    load_before = os.getloadavg()[0]
    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    image = h.prepare(args.image, model)[0]
    bounds = bound_rows(model)
    stages = stage_rows(model, image, args)
    speeds = speed_rows(model, image, args)
    load_after = os.getloadavg()[0]

    print(f"Incremental occlusion on efficientnet_lite0 (224x224), image '{args.image}', "
          f"stride {STRIDE}, batch size {args.batch_size}; {os.cpu_count()} CPU cores "
          f"({platform.machine()}); load average {load_before:.1f} before, {load_after:.1f} "
          f"after; medians of {args.repeats} interleaved rounds"
          f"{'; --quick' if args.quick else ''}\n")
    print(f"The bound: multiply-adds per occluded copy ({bounds[0][5] / 1e6:.0f} M for full "
          "recomputation)\n")
    print("| patch | MACs a patch changes | bound: speed-up over full recomputation "
          "| engine's MACs: speed-up | windows stop at |")
    print("|---:|---:|---:|---:|---|")
    for size, share, bound, engine, stop in (row[:5] for row in bounds):
        print(f"| {size} | {100 * share:.1f}% | {bound:.2f}x | {engine:.2f}x | `{stop}` |")

    total_macs = sum(row[2] for row in stages)
    total_cpu = sum(row[3] for row in stages)
    weighted = sum(row[3] * row[4] for row in stages)
    print(f"\nWhere the floor's time goes (CPU s per batch of {args.batch_size}, prefix "
          "differences), and what a 32-pixel patch changes\n")
    print("| stage | output | share of MACs | share of CPU time | changed by patch 32 "
          "(MAC-weighted) |")
    print("|---|---|---:|---:|---:|")
    for stage, shape, macs, cpu, changed in stages:
        print(f"| {stage} | {'x'.join(map(str, shape))} | {100 * macs / total_macs:.1f}% | "
              f"{100 * cpu / total_cpu:.1f}% | {100 * changed:.1f}% |")
    patch32 = next(row for row in bounds if row[0] == 32)
    print(f"\nPatch 32: MAC bound {patch32[2]:.2f}x, time-weighted bound "
          f"{total_cpu / weighted:.2f}x\n")

    print("Times: wall-clock s / CPU s of the process.\n")
    print("| patch | positions | helpers (full recomputation) | batched inference floor "
          "| incremental | incremental vs floor (wall / CPU) "
          "| incremental vs helpers (wall / CPU) | MAC bound | first incremental call "
          "(traces) | max map difference / peak |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for row in speeds:
        print(f"| {row['size']} | {row['count']} | {row['helpers'][0]:.1f} / "
              f"{row['helpers'][1]:.1f} | {row['floor'][0]:.1f} / {row['floor'][1]:.1f} | "
              f"{row['incremental'][0]:.1f} / {row['incremental'][1]:.1f} | "
              f"{row['vs_floor'][0]:.2f}x / {row['vs_floor'][1]:.2f}x | "
              f"{row['vs_helpers'][0]:.2f}x / {row['vs_helpers'][1]:.2f}x | "
              f"{row['bound']:.2f}x | {row['first'][0]:.1f} / {row['first'][1]:.1f} | "
              f"{row['error']:.0e} |")


if __name__ == "__main__":
    main()
