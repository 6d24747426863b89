"""Faithfulness metrics on EfficientNet-Lite0: ROAD and MuFidelity beside xplique, timed.

    PYTHONPATH=. python benchmarks/metrics_benchmark.py            # 3 rounds
    PYTHONPATH=. python benchmarks/metrics_benchmark.py --rounds 1 --quick

Scores two maps of one photo and class (Grad-CAM, a smooth blob, and the
gradient, scattered pixels) in one call per measure, with the same settings
in both libraries where both have the measure:

* MuFidelity (Bhatt et al. 2020): 128 subsets of a 9 x 9 grid, 20% of the
  cells set to black (0), the class logit. xplique draws each cell with
  probability 0.2 (a subset size that varies) and reports Spearman's rank
  correlation, averaged over the images; the helpers draw exactly
  round(0.2 x 81) = 16 cells and report Pearson's correlation, as in the
  paper. The table gives both correlations of the helpers' own draws.
* Deletion to black (Petsiuk et al. 2018), 20 steps, class probability:
  xplique's ``Deletion`` with ``activation="softmax"``.
* ROAD (Rong et al. 2022), MoRF and LeRF, 20 steps: xplique has no ROAD.
  Its cost is mostly the sparse solves of the imputation, timed alone
  below: the helpers' solver (unknowns in nested-dissection order, SuperLU
  without pivoting) against ``scipy.sparse.linalg.spsolve`` with its
  default ordering (what the ROAD authors' code calls), on the same
  systems (the 19 removal fractions of each map that need a solve), and
  the forward passes alone (the compiled model on as many ready images).

Rounds interleave the libraries (the order alternates each round) after
one warm-up call of every measure, which traces the compiled functions; the
tables give the median of the rounds and the ratio to the helpers.
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
from scipy.stats import spearmanr  # noqa: E402

import helpers as h  # noqa: E402
from helpers.environment import tf  # noqa: E402
from helpers.metrics import _importance_ranks, imputation_system  # noqa: E402
from helpers.pipeline import compiled_logits  # noqa: E402

SUBSETS = 128
GRID = 9
SUBSET_FRACTION = 0.2
STEPS = 20
BATCH = 32


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def helpers_measures(model, batch, maps, classes, subsets, steps):
    shared = dict(batch_size=BATCH, progress=False)
    return {
        "MuFidelity": lambda: h.mufidelity(model, batch, maps, classes, samples=subsets,
                                           grid_size=GRID, subset_fraction=SUBSET_FRACTION,
                                           baseline="black", **shared),
        "Deletion (black)": lambda: h.deletion_curve(model, batch, maps, classes, steps=steps,
                                                     baseline="black", **shared),
        "ROAD MoRF": lambda: h.road_curve(model, batch, maps, classes, order="morf",
                                          steps=steps, **shared),
        "ROAD LeRF": lambda: h.road_curve(model, batch, maps, classes, order="lerf",
                                          steps=steps, **shared),
    }


def xplique_measures(model, batch, maps, classes, subsets, steps):
    """The same measures from xplique, or {} when it does not import."""
    try:
        from xplique.metrics import Deletion, MuFidelity
    except ImportError:
        return {}
    inputs = np.asarray(batch, np.float32)
    targets = tf.one_hot(classes, h.model_spec(model).num_classes).numpy()

    def fidelity():
        return MuFidelity(model, inputs, targets, batch_size=BATCH, grid_size=GRID,
                          subset_percent=SUBSET_FRACTION, baseline_mode=0.0,
                          nb_samples=subsets).evaluate(maps)

    def deletion():
        metric = Deletion(model, inputs, targets, batch_size=BATCH, baseline_mode=0.0,
                          steps=steps, activation="softmax")
        return metric.evaluate(maps)

    return {"MuFidelity": fidelity, "Deletion (black)": deletion}


def removal_masks(maps, steps):
    """The MoRF removal masks that need a solve (neither nothing nor everything removed)."""
    masks = []
    for heat in maps:
        rank = _importance_ranks(heat)
        for k in range(1, steps):
            masks.append(rank < int(round(k * heat.size / steps)))
    return masks


def solvers(batch, maps, steps):
    """name -> () -> the solutions, on the same systems."""
    from scipy.sparse.linalg import splu, spsolve

    systems = [imputation_system(batch[0], removed) for removed in removal_masks(maps, steps)]

    def ours():
        return [splu(matrix, permc_spec="NATURAL", diag_pivot_thresh=0.0,
                     options={"SymmetricMode": True}).solve(rhs) for matrix, rhs, _ in systems]

    def default():
        return [spsolve(matrix, rhs) for matrix, rhs, _ in systems]

    return len(systems), {"helpers (nested dissection, SuperLU, no pivoting)": ours,
                          "scipy spsolve, default ordering": default}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", default="cat_and_coffee")
    parser.add_argument("--class-name", default="Egyptian_cat")
    parser.add_argument("--quick", action="store_true", help="fewer subsets and steps (smoke run)")
    args = parser.parse_args(argv)
    subsets, steps = (SUBSETS, STEPS) if not args.quick else (16, 4)

    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    photo = h.prepare(args.image, model)
    target = h.class_index(args.class_name)
    maps = np.stack([h.gradcam(model, photo, target, layer="top_activation", progress=False)[0],
                     h.saliency(model, photo, target, progress=False)[0]]).astype(np.float32)
    map_names = ["Grad-CAM", "gradient"]
    batch = np.repeat(photo, len(maps), axis=0)
    classes = np.full(len(maps), target)

    libraries = {"helpers": helpers_measures(model, batch, maps, classes, subsets, steps),
                 "xplique": xplique_measures(model, batch, maps, classes, subsets, steps)}
    system_count, solve = solvers(batch, maps, steps)
    forward = compiled_logits(model)
    images = np.repeat(photo, (steps + 1) * len(maps), axis=0)
    floor = {"forward passes alone": lambda: [forward(tf.constant(images[i:i + BATCH]))
                                              for i in range(0, len(images), BATCH)]}
    groups = {**libraries, "solvers": solve, "floor": floor}

    results = {}
    for group, functions in groups.items():  # warm-up: tracing, first factorisations
        for name, function in functions.items():
            results[group, name] = function()
    times = {(group, name): [] for group, functions in groups.items() for name in functions}
    for round_index in range(args.rounds):
        for functions_group in (list(libraries), ["solvers"], ["floor"]):
            order = functions_group if round_index % 2 == 0 else functions_group[::-1]
            names = list(dict.fromkeys(n for g in order for n in groups[g]))
            for name in names:
                for group in order:
                    if name in groups[group]:
                        wall, cpu, _ = timed(groups[group][name])
                        times[group, name].append((wall, cpu))

    def median(group, name, which=0):
        values = [t[which] for t in times.get((group, name), [])]
        return statistics.median(values) if values else None

    print(f"EfficientNet-Lite0 (224x224), image '{args.image}', class {target} "
          f"({h.class_name(target)}), maps {' and '.join(map_names)} scored in one call; "
          f"{os.cpu_count()} CPU cores ({platform.processor() or 'cpu'}); median of "
          f"{args.rounds} interleaved rounds; {subsets} subsets, {steps} steps\n")
    print("| measure | helpers wall / CPU (s) | xplique wall / CPU (s) | xplique / helpers "
          "(wall) | scores (Grad-CAM, gradient): helpers | xplique |")
    print("|---|---:|---:|---:|---|---|")
    for name in libraries["helpers"]:
        ours = (median("helpers", name), median("helpers", name, 1))
        theirs = (median("xplique", name), median("xplique", name, 1))
        shown = "—" if theirs[0] is None else f"{theirs[0]:.2f} / {theirs[1]:.2f}"
        ratio = "—" if theirs[0] is None else f"{theirs[0] / ours[0]:.2f}x"
        result = results["helpers", name]
        if name == "MuFidelity":
            rank = [spearmanr(s, d)[0] for s, d in zip(result.attribution_sums,
                                                       result.score_drops)]
            scores = (f"Pearson {result.correlation[0]:.2f}, {result.correlation[1]:.2f}; "
                      f"Spearman {rank[0]:.2f}, {rank[1]:.2f}")
            other = results.get(("xplique", name))
            other = "—" if other is None else f"mean Spearman {other:.2f}"
        else:
            scores = f"AUC {result.auc[0]:.3f}, {result.auc[1]:.3f}"
            other = results.get(("xplique", name))
            other = "—" if other is None else f"mean AUC {other:.3f}"
        if name == "MuFidelity":
            scores += f" (mean Spearman {np.mean(rank):.2f})"
        elif other != "—":
            scores += f" (mean {np.mean(result.auc):.3f})"
        print(f"| {name} | {ours[0]:.2f} / {ours[1]:.2f} | {shown} | {ratio} | {scores} | "
              f"{other} |")

    print(f"\nInside ROAD MoRF: its {system_count} sparse solves (up to "
          f"{maps[0].size * (steps - 1) // steps} unknowns, 3 colour channels) and its "
          f"{len(images)} forward passes, each timed alone:\n")
    print("| step | wall / CPU (s) | ratio to the helpers' solver (wall) | max abs difference "
          "(pixel levels) |")
    print("|---|---:|---:|---:|")
    names = list(solve)
    reference = results["solvers", names[0]]
    for name in names:
        wall, cpu = median("solvers", name), median("solvers", name, 1)
        difference = max(np.abs(a - b).max() for a, b in zip(results["solvers", name],
                                                              reference))
        print(f"| sparse solves: {name} | {wall:.2f} / {cpu:.2f} | "
              f"{wall / median('solvers', names[0]):.2f}x | {difference:.1e} |")
    wall, cpu = median("floor", "forward passes alone"), median("floor", "forward passes alone", 1)
    print(f"| forward passes alone ({len(images)} images, batch {BATCH}) | {wall:.2f} / "
          f"{cpu:.2f} | {wall / median('solvers', names[0]):.2f}x | — |")


if __name__ == "__main__":
    main()
