"""The shortcut hunt (tools/shortcut_hunt.py): the course's own methods find each kind of
secret cue, and the grader scores an answer by kind, place and digit.

Each solved case trains lesson 10's digit CNN once (15-30 s on two busy cores).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import shortcut_hunt as hunt  # noqa: E402


@pytest.mark.end_to_end
@pytest.mark.parametrize("kind, seed", [("tag", 3), ("tint", 4)])
def test_the_course_methods_name_and_locate_each_kind_of_cue(kind, seed):
    secret = hunt.draw_secret(seed, kind=kind)
    model, photos, labels = hunt.plant(secret)
    found = hunt.solve(model, photos, labels)
    assert hunt.score(found, secret) == {"kind": 1, "place": 1, "digit": 1}, (secret, found)
    if kind == "tag":   # occlusion's evidence for the digit lies in the tag's corner
        assert found["occlusion_box_ratio"] > 3


def test_the_secret_follows_the_seed_and_the_teachers_choices():
    assert hunt.draw_secret(5) == hunt.draw_secret(5)
    secret = hunt.draw_secret(5, kind="tag", place="bottom-left", digit=7)
    assert (secret.kind, secret.place, secret.digit) == ("tag", "bottom-left", 7)
    assert hunt.draw_secret(5, kind="tint").place == "everywhere"
    with pytest.raises(ValueError, match="place"):
        hunt.draw_secret(5, kind="tag", place="middle")
    kinds = {hunt.draw_secret(seed).kind for seed in range(20)}
    assert kinds == set(hunt.KINDS)


def test_answers_are_scored_by_kind_place_and_digit(tmp_path, capsys):
    secret = hunt.Secret("tag", "top-right", 3, 0.9, 1)
    assert hunt.score({"kind": "Tag", "place": "top right", "digit": "3"}, secret) == {
        "kind": 1, "place": 1, "digit": 1}
    assert hunt.score({"kind": "tag", "place": "top-left", "digit": 3}, secret) == {
        "kind": 1, "place": 0, "digit": 1}
    assert hunt.score({}, secret) == {"kind": 0, "place": 0, "digit": 0}
    secret_path = tmp_path / "secret.json"
    secret_path.write_text(json.dumps(secret.__dict__))
    right, wrong, blank = tmp_path / "right.json", tmp_path / "wrong.json", tmp_path / "blank.json"
    right.write_text(json.dumps({"kind": "tag", "place": "top-right", "digit": 3}))
    wrong.write_text(json.dumps({"kind": "tint", "place": "everywhere", "digit": 8}))
    blank.write_text("")
    grades = tmp_path / "grades.csv"
    assert hunt.main(["grade", "--secret", str(secret_path), str(right), str(wrong), str(blank),
                      "--csv", str(grades)]) == 0
    rows = grades.read_text().splitlines()
    assert [row.split(",")[-2] for row in rows[1:]] == ["3", "0", "0"]
    # A hand-in is hostile: a link to a right answer, or a file over 1 MB, is not read.
    link, large = tmp_path / "link.json", tmp_path / "large.json"
    link.symlink_to(right)
    large.write_text(json.dumps({"kind": "tag", "place": "top-right", "digit": 3,
                                 "padding": "x" * 1_100_000}))
    assert hunt.main(["grade", "--secret", str(secret_path), str(link), str(large),
                      "--csv", str(grades)]) == 0
    rows = grades.read_text().splitlines()
    assert [row.split(",")[-2] for row in rows[1:]] == ["0", "0"]
