"""TCAV on EfficientNet-Lite0: the helpers beside xplique, on the same images, layer and sets.

    PYTHONPATH=. python benchmarks/concepts_benchmark.py                 # lesson 11's sets
    PYTHONPATH=. python benchmarks/concepts_benchmark.py --random-sets 3 --set-size 10

Both libraries get the same images: lesson 11's concepts (black-and-white
stripes, dots, the watermark on photo crops), its R + 1 random sets (random
crops of the photo collection) and its class images (random crops for
``zebra``, watermarked crops for ``carton``, crops of the goldfish photo for
``goldfish``), at one layer. Each library trains, for every concept, one
CAV against each of the R random sets, and R random-vs-random CAVs (random
set 0 against each of the others) as the null, then scores every CAV on
every class:

* the helpers: ``h.concept_cavs`` (scikit-learn's L2 logistic regression,
  C = 1, on flattened activations, each image through the network once)
  and ``h.tcav_test`` (the class's gradients once per image, dotted with
  every CAV; the t-test and correction);
* xplique 2.0.2: ``Cav`` (its default, scikit-learn's ``SGDClassifier``
  with the hinge loss, alpha = 0.01, a 20 % test split; the activations
  of both sets are computed anew for each CAV, by ``model.predict``) and
  ``Tcav(model, layer).score(images, class, cav)`` (a gradient pass of the
  class images per CAV). xplique has no
  statistical test: its R scores are compared here with its own null by
  the same t-test as the helpers' (``scipy.stats.ttest_ind``).

The classifiers differ (logistic regression and a linear SVM find nearby but
not equal normals), so the scores are compared within their sampling error:
for each class and concept, the difference of the two libraries' mean
scores over R CAVs, divided by its standard error
sqrt(sd_helpers^2 / R + sd_xplique^2 / R) (|z| < 3 is "the same within
sampling error"; two scores that are constant over the R CAVs and equal
give z = 0). Wall-clock and CPU seconds of each library's whole run, in one
process, the helpers first and then xplique, after one warm-up of each.

xplique is not a requirement of the course: it pins an older TensorFlow, so
it runs here only in a separate environment that has the course's
requirements plus ``pip install --no-deps xplique==2.0.2`` and tf-keras,
einops and tensorflow-probability. Without it the script times the helpers
alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings

os.environ.setdefault("UNMASKING_CNNS_FAST", "0")

import numpy as np  # noqa: E402

import helpers as h  # noqa: E402

CLASSES = ("zebra", "carton", "goldfish")


def lesson_sets(model, set_size, class_images, random_sets):
    """Lesson 11's concepts, random sets and class images (the same seeds)."""
    black_and_white = [(0, 0, 0), (255, 255, 255)]
    concepts = {
        "striped": h.texture_images("stripes", model, count=set_size, colours=black_and_white,
                                    seed=1),
        "dotted": h.texture_images("dots", model, count=set_size, seed=2),
        "watermark": h.concepts.watermark_images(model, count=set_size, seed=3)[0],
    }
    randoms = [h.random_images(model, count=set_size, seed=i) for i in range(random_sets + 1)]
    classes = {
        "zebra": h.concepts.photo_crops(model, count=class_images, seed=100),
        "carton": h.concepts.watermark_images(model, count=class_images, seed=101)[0],
        "goldfish": h.concepts.photo_crops(model, count=class_images, photos=["goldfish"],
                                           min_fraction=0.5, max_fraction=1.0, seed=102),
    }
    return concepts, randoms, classes


def helpers_run(model, concepts, randoms, classes, layer):
    """{(class, concept): R scores} and {class: null scores}, with the helpers."""
    cavs = h.concept_cavs(model, concepts, [layer], random_sets=randoms, progress=False)
    scores, null, verdicts = {}, {}, {}
    for name, images in classes.items():
        result = h.tcav_test(model, images, name, cavs, progress=False)
        for row in result.rows:
            scores[name, row.concept] = row.scores
            null[name] = row.random_scores
            verdicts[name, row.concept] = (row.p_value, row.corrected_p, row.significant)
    return scores, null, verdicts


def xplique_run(model, concepts, randoms, classes, layer, seed=0):
    """The same with xplique's Cav and Tcav, or None when it does not import."""
    try:
        from xplique.concepts import Cav, Tcav
    except ImportError:
        return None
    np.random.seed(seed)  # its train/test split and SGD draw from numpy's global state
    positives = dict(concepts, random=randoms[0])
    vectors = {(concept, i): Cav(model, layer)(images, randoms[i])
               for concept, images in positives.items() for i in range(1, len(randoms))}
    tester = Tcav(model, layer)
    scores = {}
    for (concept, i), vector in vectors.items():
        for name, images in classes.items():
            scores.setdefault((name, concept), []).append(
                float(tester.score(images, h.class_index(name), vector)))
    null = {name: np.array(scores.pop((name, "random"))) for name in classes}
    return {key: np.array(value) for key, value in scores.items()}, null


def p_values(scores, null):
    from scipy import stats

    found = {}
    for (name, concept), values in scores.items():
        if np.ptp(values) == 0 and np.ptp(null[name]) == 0:
            found[name, concept] = 1.0 if values[0] == null[name][0] else 0.0
        else:
            with warnings.catch_warnings():  # one side constant: a valid test
                warnings.filterwarnings("ignore", message="Precision loss occurred")
                found[name, concept] = float(stats.ttest_ind(values, null[name]).pvalue)
    return found


def z_score(first, second):
    error = np.sqrt(np.var(first, ddof=1) / len(first) + np.var(second, ddof=1) / len(second))
    difference = float(np.mean(first) - np.mean(second))
    if error == 0:
        return 0.0 if difference == 0 else float("inf")
    return difference / error


def timed(function):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function()
    return time.perf_counter() - wall, time.process_time() - cpu, result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", default="block6d_add")
    parser.add_argument("--random-sets", type=int, default=10, help="R")
    parser.add_argument("--set-size", type=int, default=20)
    parser.add_argument("--class-images", type=int, default=20)
    args = parser.parse_args(argv)

    h.seed_everything(0)
    model = h.load_model("efficientnet_lite0")
    concepts, randoms, classes = lesson_sets(model, args.set_size, args.class_images,
                                             args.random_sets)
    small = ({name: images[:4] for name, images in concepts.items()},
             [images[:4] for images in randoms[:3]],
             {name: images[:2] for name, images in classes.items()})
    helpers_run(model, *small, args.layer)                  # warm-up: tracing
    ours_wall, ours_cpu, (ours, ours_null, verdicts) = timed(
        lambda: helpers_run(model, concepts, randoms, classes, args.layer))
    warm = xplique_run(model, *small, args.layer)           # warm-up, or None
    theirs = None
    if warm is not None:
        their_wall, their_cpu, theirs = timed(
            lambda: xplique_run(model, concepts, randoms, classes, args.layer))

    print(f"EfficientNet-Lite0 (224x224), layer {args.layer}; R = {args.random_sets} random "
          f"sets of {args.set_size}, {args.class_images} images per class; {os.cpu_count()} "
          f"CPU cores ({platform.processor() or 'cpu'})\n")
    print(f"helpers: {ours_wall:.1f} s wall, {ours_cpu:.1f} s CPU (CAVs, scores and tests)")
    if theirs is None:
        print("xplique: not installed here (see the docstring)")
    else:
        print(f"xplique: {their_wall:.1f} s wall, {their_cpu:.1f} s CPU (CAVs and scores; "
              f"{their_wall / ours_wall:.1f}x the helpers' wall time)")
    print()
    print("| class | concept | helpers TCAV (mean ± sd) | helpers p / corrected / significant "
          "| xplique TCAV (mean ± sd) | xplique p (same t-test) | z of the difference |")
    print("|---|---|---:|---|---:|---:|---:|")
    their_p = p_values(*theirs) if theirs is not None else {}
    for (name, concept), values in ours.items():
        p, corrected, significant = verdicts[name, concept]
        cells = [name, concept, f"{values.mean():.2f} ± {values.std():.2f}",
                 f"{p:.2g} / {corrected:.2g} / {'yes' if significant else 'no'}"]
        if theirs is None:
            cells += ["—", "—", "—"]
        else:
            other = theirs[0][name, concept]
            cells += [f"{other.mean():.2f} ± {other.std():.2f}", f"{their_p[name, concept]:.2g}",
                      f"{z_score(values, other):+.1f}"]
        print("| " + " | ".join(cells) + " |")
    print()
    for name in classes:
        line = f"null of {name}: helpers {ours_null[name].mean():.2f} ± {ours_null[name].std():.2f}"
        if theirs is not None:
            other = theirs[1][name]
            line += (f", xplique {other.mean():.2f} ± {other.std():.2f} "
                     f"(z {z_score(ours_null[name], other):+.1f})")
        print(line)


if __name__ == "__main__":
    main()
