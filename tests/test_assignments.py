"""Graded assignments (tools/assignments.py): the student's version of every lesson holds no
solution and every self-check, the instructor's version holds them all, and otter-grader gives
lesson 00's solutions full marks and a blank or wrong answer none.

The static checks build all lessons once (7-20 s); the grading test runs lesson 00 twice in
fast mode through ``otter run`` (25 s of CPU time each, about a minute of wall time each on a
busy 2-core machine). The answers are compared within the self-checks' tolerances, as the
lessons' solution items are, so the module gives the same verdict on every CPU.
"""

from __future__ import annotations

import ast
import csv
import json
import os
import re
import sys
import zipfile
from pathlib import Path

import nbformat
import pytest

from tests import lessons

pytest.importorskip("otter", reason="otter-grader is not installed: the graded assignments need "
                                    "it (pip install -e '.[teach]')")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import assignments  # noqa: E402

pytestmark = pytest.mark.cpu_independent
LESSONS = lessons.lesson_paths()
_COMMENT = re.compile(r"<!-- (?:BEGIN|END) QUESTION -->")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("assignments")
    assert assignments.main(["build", "--out", str(out)]) == 0
    return out


def versions(built, path):
    folder = built / path.stem
    return (nbformat.read(str(folder / "student" / path.name), as_version=4),
            nbformat.read(str(folder / "autograder" / path.name), as_version=4),
            folder / "autograder" / "autograder.zip")


def lesson_text_without_solutions(notebook) -> set[str]:
    lines = set()
    for cell in notebook.cells:
        lines.update(line.strip() for line in lessons._DETAILS.sub("", cell.source).split("\n"))
    return lines


def solution_only_lines(notebook) -> set[str]:
    """Lines of the worked solutions' code that the rest of the lesson does not also have."""
    elsewhere = lesson_text_without_solutions(notebook)
    lines = set()
    for solution in lessons.solutions(notebook):
        for line in solution.code.split("\n"):
            line = line.strip()
            if line and not line.startswith("#") and len(line) > 3 and line not in elsewhere:
                lines.add(line)
    return lines


@pytest.mark.parametrize("path", LESSONS, ids=lessons.lesson_id)
def test_the_student_version_holds_no_solution_and_every_self_check(built, path):
    lesson = lessons.read(path)
    student, _, _ = versions(built, path)
    text = json.dumps(student)
    assert "<summary>" not in text and "<details>" not in text
    assert "test_self_check" not in text and "hidden=True" not in text   # no hidden test
    assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text
    student_lines = {line.strip() for cell in student.cells for line in cell.source.split("\n")}
    for test in student.metadata.get("otter", {}).get("tests", {}).values():
        student_lines.update(line.strip() for line in test.split("\n"))
    leaked = solution_only_lines(lesson) & student_lines
    assert not leaked, f"solution code in the student's version: {sorted(leaked)[:5]}"
    # The student's version is the lesson without its solutions: the same code cells, in order
    # (every self-check among them), and every piece of prose outside a solution block.
    assert ([c.source for c in student.cells if c.cell_type == "code"]
            == [c.source for c in lesson.cells if c.cell_type == "code"])
    checks = [s.check_cell for s in lessons.solutions(lesson) if s.check_cell is not None]
    student_code = [c.source for c in student.cells if c.cell_type == "code"]
    assert all(lesson.cells[i].source in student_code for i in checks)
    prose = "\n".join(_COMMENT.sub("", c.source) for c in student.cells if c.cell_type == "markdown")
    for cell in lesson.cells:
        if cell.cell_type == "markdown":
            for part in lessons._DETAILS.split(cell.source)[::2]:
                assert part.strip() in prose
    assert not any(cell.get("outputs") for cell in student.cells)


@pytest.mark.parametrize("path", LESSONS, ids=lessons.lesson_id)
def test_the_instructor_version_holds_the_solutions_and_hidden_tests(built, path):
    lesson = lessons.read(path)
    _, instructor, autograder = versions(built, path)
    sources = [cell.source for cell in instructor.cells]
    found = assignments.exercises(lesson)
    assert found, "every lesson has exercises"
    with zipfile.ZipFile(autograder) as archive:
        tests = {name: archive.read(name).decode() for name in archive.namelist()
                 if name.startswith("tests/")}
    for exercise in found:
        assert any(exercise.solution.raw in source for source in sources), exercise.name
        test = tests.get(f"tests/{exercise.name}.py")
        if not exercise.graded:
            assert test is None
            continue
        check = lesson.cells[exercise.solution.check_cell].source
        cells = [c for c in instructor.cells if c.cell_type == "code"
                 and exercise.solution.code in c.source]
        assert len(cells) == 1 and cells[0].metadata["otter"]["tests"] == [exercise.name]
        # The answer cell runs the solution between `answer = None` and the self-check.
        code = cells[0].source
        first_check = code.index("h.check_answer(")
        assert code.index(exercise.solution.code) < first_check
        assert max(code.index(line) for line in check.split("\n")
                   if lessons._ANSWER_LINE.match(line)) < code.index(exercise.solution.code)
        # The hidden test applies the self-check's own call, once per call in the cell.
        assert test.count("hidden=True") == len(exercise.calls) >= 1
        assert "points = 1" in test
        for call in exercise.calls:
            assert _same_call(call, test), call


def _same_call(call: str, test: str) -> bool:
    wanted = ast.dump(ast.parse(call, mode="eval").body)
    return any(ast.dump(node) == wanted for node in ast.walk(ast.parse(test))
               if isinstance(node, ast.Call))


@pytest.mark.parametrize("path", LESSONS, ids=lessons.lesson_id)
def test_a_blank_answer_scores_nothing_on_every_exercise(built, path, tmp_path):
    """Each test file, run on the student's version's answers (None) and the lesson's
    parameters, gives 0 points (without executing the lesson)."""
    from otter.test_files import ExceptionTestFile

    lesson = lessons.read(path)
    environment = {}
    for cell in lesson.cells:
        if "parameters" in cell.metadata.get("tags", []):
            exec(cell.source, {}, environment)
    _, _, autograder = versions(built, path)
    with zipfile.ZipFile(autograder) as archive:
        archive.extractall(tmp_path)
    for exercise in assignments.exercises(lesson):
        if not exercise.graded:
            continue
        test = ExceptionTestFile.from_file(str(tmp_path / "tests" / f"{exercise.name}.py"))
        test.run({**environment, **{name: None for name in exercise.answers}})
        assert test.possible == 1 and test.score == 0, exercise.name


@pytest.mark.end_to_end
def test_otter_grades_lesson_00_solutions_full_and_blank_or_wrong_answers_zero(built, tmp_path):
    path = lessons.lesson_paths()[0]
    student, instructor, autograder = versions(built, path)
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    nbformat.write(instructor, str(submissions / "solutions.ipynb"))
    # As handed out, except: exercise 2 answered wrong, exercise 3 with the wrong kind of
    # answer, exercise 4 right (typed in); exercise 1 left blank.
    edits = {"white_block_p = None": "white_block_p = 0.5",
             "espresso_without_cat = None": "espresso_without_cat = 'espresso'",
             "lite2_uniform = None": "lite2_uniform = 0.086"}
    for cell in student.cells:
        for blank, answer in edits.items():
            if cell.source.startswith(blank):
                cell.source = cell.source.replace(blank, answer, 1)
                edits[blank] = None
    assert not any(edits.values())
    nbformat.write(student, str(submissions / "mixed.ipynb"))
    grades = tmp_path / "grades.csv"
    os.environ.setdefault("UNMASKING_CNNS_FAST", "1")
    rows = assignments.grade([submissions], autograder, grades)
    assert [row["error"] for row in rows] == ["", ""]
    with open(grades, newline="", encoding="utf-8") as handle:
        table = {Path(row["submission"]).stem: row for row in csv.DictReader(handle)}
    names = [f"exercise_{n}" for n in range(1, 5)]
    assert [float(table["solutions"][n]) for n in names] == [1, 1, 1, 1]
    assert float(table["solutions"]["total"]) == float(table["solutions"]["possible"]) == 4
    assert [float(table["mixed"][n]) for n in names] == [0, 0, 0, 1]
    assert float(table["mixed"]["total"]) == 1
