"""TEACHING.md's measured tables and session plans match the committed lessons.

tools/lesson_plan.py measures every lesson from its notebook (words, figures, the compute
time recorded in each cell's execution timestamps, exercises) and writes the per-lesson
tables, the minute-by-minute session plans and the term overview. The guide must contain
each of them word for word, so a lesson that changes (new text, a re-execution, a new
exercise) fails here until the guide is updated: run ``python tools/lesson_plan.py --write``. Reads the notebooks only; executes nothing.
"""

from __future__ import annotations

import copy
import sys
from datetime import datetime, timedelta
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import lesson_plan  # noqa: E402


@pytest.fixture(scope="module")
def notebooks():
    return {path.name: nbformat.read(str(path), as_version=4)
            for path in lesson_plan.lesson_paths()}


@pytest.fixture(scope="module")
def lessons(notebooks):
    return [lesson_plan.measure(nb, name) for name, nb in notebooks.items()]


@pytest.fixture(scope="module")
def teaching():
    return lesson_plan.TEACHING.read_text(encoding="utf-8")


def test_every_lesson_is_measured(lessons):
    assert [lesson.number for lesson in lessons] == [f"{n:02d}" for n in range(len(lessons))]
    for lesson in lessons:
        assert lesson.total("words") > 1000 and lesson.total("seconds") > 0, lesson.name
        assert lesson.total("exercises") >= 4, lesson.name


def test_teaching_md_has_the_measured_tables(lessons, teaching):
    stale = lesson_plan.stale_tables(teaching, lessons)
    assert not stale, (f"{len(stale)} tables of TEACHING.md are out of date; run "
                       "python tools/lesson_plan.py --write; the new tables:\n\n" + "\n\n".join(stale))


def test_every_lesson_has_a_plan_section(lessons, teaching):
    for lesson in lessons:
        assert f"\n### {lesson.number} · " in teaching, lesson.name
        plan = teaching.split(f"\n### {lesson.number} · ", 1)[1].split("\n### ", 1)[0]
        for part in ("**Objectives.**", "**Prerequisites.**", "**Discussion prompts.**",
                     "**Assessment.**"):
            assert part in plan, f"lesson {lesson.number} lacks {part}"


def test_headings_inside_code_are_not_sections(lessons):
    markdown = ("## Real\n\ntext\n\n```python\n# a comment\n## not a heading\n```\n"
                "~~~\n# nor this\n~~~\n    # indented code\n### Sub\n# Part\n")
    assert [(level, text) for _, level, text in lesson_plan.headings(markdown)] == [
        (2, "Real"), (3, "Sub"), (1, "Part")]
    adversarial = next(lesson for lesson in lessons if lesson.number == "08")
    titles = [section.title for section in adversarial.sections]
    assert titles[-2:] == ["Exercises", "References"]
    assert not any(title.lower().startswith("attacking") for title in titles)


def test_solution_code_is_not_counted_as_prose():
    cell = ("Task in five words here.\n\n<details><summary>Solution</summary>\n\n"
            "```python\nx = compute(a, b)  # many words in a comment\n```\n\n"
            "```text\nprinted output words\n```\n\nThe explanation.\n</details>")
    # "Task in five words here." + "Solution" + "The explanation."
    assert lesson_plan.count_words(cell) == 5 + 1 + 2


def test_a_changed_lesson_is_caught(notebooks, lessons, teaching):
    name = next(name for name in notebooks if name.startswith("05"))
    index = [lesson.name for lesson in lessons].index(name)

    more_text = copy.deepcopy(notebooks[name])
    prose = next(cell for cell in more_text.cells if cell.cell_type == "markdown")
    prose.source += " one more sentence of prose."
    slower = copy.deepcopy(notebooks[name])
    timed = next(cell for cell in slower.cells
                 if cell.cell_type == "code" and lesson_plan.cell_seconds(cell) is not None)
    stamps = timed.metadata.execution
    idle = datetime.fromisoformat(stamps["iopub.status.idle"].replace("Z", "+00:00"))
    stamps["iopub.status.idle"] = (idle + timedelta(seconds=30)).isoformat()

    for changed in (more_text, slower):
        altered = list(lessons)
        altered[index] = lesson_plan.measure(changed, name)
        stale = lesson_plan.stale_tables(teaching, altered)
        assert stale, "a changed lesson went unnoticed"
        assert lesson_plan.lesson_table(altered[index]) in stale


def test_write_replaces_the_tables_in_place(notebooks, teaching):
    changed = copy.deepcopy(notebooks)
    name = next(n for n in changed if n.startswith("05"))
    first = next(c for c in changed[name].cells if c.cell_type == "markdown")
    first.source += "\n\nOne more sentence of five words."
    lessons = [lesson_plan.measure(nb, n) for n, nb in changed.items()]
    assert lesson_plan.stale_tables(teaching, lessons)
    rewritten = lesson_plan.rewrite(teaching, lessons)
    assert not lesson_plan.stale_tables(rewritten, lessons)
    assert len(rewritten.splitlines()) == len(teaching.splitlines())   # the prose is kept
