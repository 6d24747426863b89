"""The shortcut hunt: a graded assignment on lesson 10's machinery (helpers.shortcuts).

The teacher plants a secret cue in a small digit model; the students get the model and clean
photos only, and must name the cue (its kind and the digit it stands for) and locate it::

    python tools/shortcut_hunt.py make --seed 7 --out hunt          # the teacher, once
        hunt/student/model.keras, hunt/student/photos.npz   to hand out (photos, labels)
        hunt/teacher/secret.json                            the answer: keep it
    (students: model = h.load_model_file("model.keras"); data = np.load("photos.npz"))
    python tools/shortcut_hunt.py grade --secret hunt/teacher/secret.json answers/*.json
        [--csv grades.csv]

The secret, drawn from the seed unless given (``--kind``, ``--place``, ``--digit``):

* **kind**: ``tag`` (lesson 10's red 5-pixel square) or ``tint`` (coloured light over the
  whole photo, ``sc.add_tint``);
* **place**: for a tag, one of the four corners; for a tint, ``everywhere``;
* **digit**: the class the cue stands for;
* **strength**: the share of that digit's training photos that carry the cue (1.0, 0.9 or
  0.8; no other digit carries it).

A student's answer is a JSON file ``{"kind": "tag", "place": "top-right", "digit": 3}``; each
of the three that is right scores 1 point. The course's methods find all three: paint each
candidate cue on the clean photos (``sc.add_tag`` in each corner, ``sc.add_tint``) and count
the photos of other digits the model then calls one digit (lesson 10's "tag on every digit"
condition); occlusion maps of tagged photos (``sc.box_share``) point into the corner.
:func:`solve` does exactly that, and tests/test_shortcut_hunt.py proves it for each kind.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KINDS = ("tag", "tint")
STRENGTHS = (1.0, 0.9, 0.8)
TAG_SIZE = 5
EPOCHS = 12


@dataclass(frozen=True)
class Secret:
    kind: str
    place: str
    digit: int
    strength: float
    seed: int


def draw_secret(seed: int, *, kind: str | None = None, place: str | None = None,
                digit: int | None = None) -> Secret:
    from helpers import shortcuts as sc

    rng = np.random.default_rng(seed)
    kind = kind or str(rng.choice(KINDS))
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    corner = str(rng.choice(sc.CORNERS))
    chosen_digit = int(rng.integers(10))
    strength = float(rng.choice(STRENGTHS))
    if kind == "tint":
        place = "everywhere"
    elif place is None:
        place = corner
    elif place not in sc.CORNERS:
        raise ValueError(f"a tag's place must be one of {', '.join(sc.CORNERS)}, not {place!r}")
    return Secret(kind, place, chosen_digit if digit is None else int(digit), strength, seed)


def cue_function(kind: str, place: str, size: int):
    from helpers import shortcuts as sc

    if kind == "tint":
        return lambda images: sc.add_tint(images)
    box = sc.tag_box(size, tag_size=TAG_SIZE, corner=place)
    return lambda images: sc.add_tag(images, box)


def plant(secret: Secret, *, epochs: int = EPOCHS):
    """The digit model trained with the secret cue, and the clean test photos and labels."""
    from helpers import shortcuts as sc

    digits = sc.digit_images(seed=0)
    images, _ = sc.plant_cue(digits.train_images, digits.train_labels,
                             cue=cue_function(secret.kind, secret.place, digits.size),
                             target_class=secret.digit, in_class=secret.strength,
                             elsewhere=0.0, seed=secret.seed)
    model = sc.train_digit_cnn(images, digits.train_labels, epochs=epochs, seed=secret.seed,
                               name="hunt_model")
    return model, digits.test_images, digits.test_labels


def candidates(size: int) -> dict[tuple[str, str], object]:
    from helpers import shortcuts as sc

    found = {("tag", corner): cue_function("tag", corner, size) for corner in sc.CORNERS}
    found[("tint", "everywhere")] = cue_function("tint", "everywhere", size)
    return found


def solve(model, photos, labels) -> dict:
    """Name and locate the cue with the course's methods: each candidate cue painted on the
    clean photos; the cue and digit that turn the most photos of other digits into that digit.
    For a tag, occlusion maps of tagged photos confirm the corner (``sc.box_share``)."""
    import helpers as h
    from helpers import shortcuts as sc

    labels = np.asarray(labels)
    best, rates = None, {}
    for (kind, place), cue in candidates(photos.shape[1]).items():
        called = sc.predicted_classes(model, cue(photos))
        for digit in range(10):
            others = labels != digit
            rate = float(np.mean(called[others] == digit))
            rates[(kind, place, digit)] = rate
            if best is None or rate > rates[best]:
                best = (kind, place, digit)
    kind, place, digit = best
    answer = {"kind": kind, "place": place, "digit": int(digit), "false_alarms": rates[best]}
    if kind == "tag":
        box = sc.tag_box(photos.shape[1], tag_size=TAG_SIZE, corner=place)
        tagged = candidates(photos.shape[1])[(kind, place)](photos[labels != digit][:20])
        maps = h.occlusion_map(model, tagged, digit, patch_size=6, stride=2,
                               baseline=sc.PAPER, score="logit", progress=False)
        answer["occlusion_box_ratio"] = float(np.nanmedian(sc.box_share(maps, box).ratio))
    return answer


def score(answer: dict, secret: Secret) -> dict[str, int]:
    """1 point for each of kind, place and digit that is right."""
    def same(a, b):
        return str(a).strip().lower().replace("_", "-").replace(" ", "-") == str(b).lower()

    points = {"kind": int(same(answer.get("kind"), secret.kind)),
              "place": int(same(answer.get("place"), secret.place)),
              "digit": 0}
    try:
        points["digit"] = int(int(answer.get("digit")) == secret.digit)
    except (TypeError, ValueError):
        pass
    return points


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("make", help="plant a secret cue, train the model, write the "
                               "students' files and the secret")
    make.add_argument("--seed", type=int, required=True)
    make.add_argument("--out", type=Path, required=True)
    make.add_argument("--kind", choices=KINDS)
    make.add_argument("--place", help="a tag's corner (top-left, top-right, ...)")
    make.add_argument("--digit", type=int, choices=range(10))
    make.add_argument("--epochs", type=int, default=EPOCHS)
    mark = commands.add_parser("grade", help="score students' answers (JSON files)")
    mark.add_argument("answers", nargs="+", type=Path)
    mark.add_argument("--secret", type=Path, required=True)
    mark.add_argument("--csv", type=Path)
    args = parser.parse_args(argv)
    if args.command == "make":
        secret = draw_secret(args.seed, kind=args.kind, place=args.place, digit=args.digit)
        model, photos, labels = plant(secret, epochs=args.epochs)
        (args.out / "student").mkdir(parents=True, exist_ok=True)
        (args.out / "teacher").mkdir(parents=True, exist_ok=True)
        model.save(args.out / "student" / "model.keras")
        np.savez_compressed(args.out / "student" / "photos.npz", photos=photos, labels=labels)
        (args.out / "teacher" / "secret.json").write_text(json.dumps(asdict(secret), indent=1))
        print(f"model and photos in {args.out / 'student'}; the secret in "
              f"{args.out / 'teacher' / 'secret.json'}")
        return 0
    # The reader of lesson 09's attention answers, a class's other hand-ins: at most 1 MB of a
    # regular file, a symbolic link refused.
    from helpers.attention import _read_file as read_hand_in

    secret = Secret(**json.loads(args.secret.read_text(encoding="utf-8")))
    rows = []
    for path in args.answers:
        try:  # a hand-in is read as lesson 09's attention answers are: bounded, no links
            answer = json.loads(read_hand_in(path, follow=False).decode("utf-8"))
            points = score(answer if isinstance(answer, dict) else {}, secret)
        except (ValueError, UnicodeDecodeError):  # JSONDecodeError is a ValueError
            points = {"kind": 0, "place": 0, "digit": 0}
        rows.append({"answer": str(path), **points, "total": sum(points.values()), "possible": 3})
        print(f"{path}: {rows[-1]['total']} / 3")
    if args.csv:
        with open(args.csv, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
