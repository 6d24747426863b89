"""Graded assignments from the lessons, with otter-grader: one source, two versions, one grade.

The lesson notebook is the one source. For each lesson this tool writes an otter-grader
"assign" master notebook, then runs ``otter assign`` on it::

    python tools/assignments.py build [LESSONS...] --out DIR      # default: build/assignments

    DIR/<lesson>/student/<lesson>.ipynb       to hand out: the lesson without its worked
                                              solutions, every self-check kept, no outputs
    DIR/<lesson>/autograder/<lesson>.ipynb    the instructor's version: the solutions filled in
    DIR/<lesson>/autograder/autograder.zip    what grades a submission (hidden tests included)

A LESSON is its number (``00``) or its file name. How a lesson becomes an assignment:

* Every exercise with a self-check (a code cell ``answer = None`` + ``h.check_answer(answer,
  expected, ...)`` and a worked solution in ``<details><summary>Solution</summary>``) is an
  autograded question worth 1 point. Its hidden test calls the self-check's own
  ``h.check_answer(...)``, with the same expected value, tolerance and ``on_defaults``, on the
  submitted answer (helpers/exercises.py decides, so the grade and the self-check the student
  saw never disagree); a cell with several self-checks shares the point among them. A public
  test (0 points) says whether the answer is filled in and of the kind the exercise wants.
  The test runs right after the exercise's cell, so lessons that reuse one variable name
  (``answer``) for every exercise are graded exercise by exercise.
* The instructor's version has the solution's code inside the self-check cell, between the
  ``answer = None`` line and the check, and the worked solution below it; the student's
  version has neither.
* An exercise without a self-check (an open question) becomes a question graded by hand
  (0 autograded points): the student's version gets a cell to type the answer in.
* The student's version needs nothing beyond the course (no otter cells): the self-checks
  are the students' feedback.

Grading (no Docker: ``otter run`` executes the submission in this environment, so run it where
the course is installed, in the mode the class worked in: with ``UNMASKING_CNNS_FAST=1`` when the
students used fast mode, since some expected values depend on it)::

    python tools/assignments.py grade SUBMISSIONS... --autograder DIR/<lesson>/autograder/autograder.zip
        --csv grades.csv [--timeout SECONDS]

grades each notebook given (or every ``.ipynb`` in a folder given), one after the other, and
writes one row per submission: its file, each exercise's score, the total and the possible
points. ``otter run -a autograder.zip submission.ipynb`` grades one by hand.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import csv
import io
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lessons  # noqa: E402  (the one reader of a lesson's exercises)

DEFAULT_OUT = ROOT / "build" / "assignments"
OTTER_KEY = "otter"
ANSWER_TAG = "graded_answer"           # marks the self-check cell of a graded exercise
POINTS_PER_EXERCISE = 1
MISSING = ("otter-grader is not installed: pip install 'otter-grader>=7.0' (or the course's "
           "extra: pip install -e '.[teach]')")


@dataclass
class Exercise:
    """One exercise of a lesson, as graded."""

    name: str                      # exercise_1, ... (the lesson's numbering)
    solution: lessons.Solution
    calls: list[str]               # the self-check's h.check_answer(...) calls, as written
    answers: list[str]             # the variables they read, in order

    @property
    def graded(self) -> bool:
        return bool(self.calls)


def lesson_path(name: str) -> Path:
    """A lesson by its number (``00``), file name or path."""
    path = Path(name)
    if path.suffix == ".ipynb" and path.exists():
        return path.resolve()
    matches = [p for p in lessons.lesson_paths()
               if p.name == name or p.stem == name or lessons.lesson_id(p) == name.zfill(2)[:2]
               and name.isdigit()]
    if len(matches) != 1:
        raise SystemExit(f"no single lesson called {name!r}; the lessons are "
                         + ", ".join(p.stem for p in lessons.lesson_paths()))
    return matches[0]


def check_calls(source: str) -> list[tuple[str, str]]:
    """The ``h.check_answer(...)`` calls of a self-check cell: (call source, answer variable)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "check_answer"):
            if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "h"
                    and node.args and isinstance(node.args[0], ast.Name)):
                raise ValueError(f"a self-check must read h.check_answer(variable, ...), got "
                                 f"{ast.get_source_segment(source, node)!r}")
            found.append((node.lineno, ast.get_source_segment(source, node), node.args[0].id))
    return [(call, answer) for _, call, answer in sorted(found)]


def exercises(notebook) -> list[Exercise]:
    found = []
    for solution in lessons.solutions(notebook):
        calls, answers = [], []
        if solution.check_cell is not None:
            pairs = check_calls(notebook.cells[solution.check_cell].source)
            calls = [call for call, _ in pairs]
            answers = list(dict.fromkeys(answer for _, answer in pairs))
        found.append(Exercise(f"exercise_{solution.number}", solution, calls, answers))
    return found


def _names_read(call: str) -> list[str]:
    """The variables a self-check call reads from the notebook (``h`` is imported)."""
    tree = ast.parse(call, mode="eval")
    names = [node.id for node in ast.walk(tree)
             if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)]
    return [name for name in dict.fromkeys(names) if name != "h"]


def _test_source(config: dict, function: str) -> str:
    lines = ['"""  # BEGIN TEST CONFIG']
    lines += [f"{key}: {json.dumps(value)}" for key, value in config.items()]
    lines += ['"""  # END TEST CONFIG', function]
    return "\n".join(lines)


def public_test(exercise: Exercise) -> str:
    """0 points: every answer is filled in and of the kind the self-check wants."""
    names = list(dict.fromkeys(n for call in exercise.calls for n in _names_read(call)))
    body = [f"def test_answered({', '.join(names)}):",
            "    import contextlib, io",
            "    import helpers as h"]
    for answer in exercise.answers:
        body.append(f"    assert {answer} is not None, {answer!r} + ' is still None: replace None "
                    f"with your answer'")
    body.append("    with contextlib.redirect_stdout(io.StringIO()):  # the verdict is hidden")
    for call in exercise.calls:
        body.append("        " + _indented(call, 8))
    return _test_source({"points": 0}, "\n".join(body))


def hidden_test(exercise: Exercise, call: str) -> str:
    """The lesson's own self-check on the submitted answer: right or not, on the defaults."""
    names = _names_read(call)
    answer = check_calls(call)[0][1]
    body = [f"def test_self_check({', '.join(names)}):",
            "    import helpers as h",
            f"    verdict = {_indented(call, 4)}",
            "    assert verdict is not None, ('graded on the lesson\\'s default parameters; the "
            "notebook ran with others')",
            f"    assert verdict, 'the self-check does not accept ' + repr({answer})"]
    return _test_source({"hidden": True}, "\n".join(body))


def _indented(text: str, spaces: int) -> str:
    first, *rest = text.split("\n")
    rest = [" " * spaces + line.lstrip() for line in rest]
    return "\n".join([first, *rest])


def _raw(text: str):
    return nbformat.v4.new_raw_cell(text)


def _markdown(text: str):
    return nbformat.v4.new_markdown_cell(text)


def answer_cell(check_cell, exercise: Exercise):
    """The self-check cell with the solution's code after its ``answer = None`` lines."""
    lines = check_cell.source.split("\n")
    blanks = [i for i, line in enumerate(lines) if lessons._ANSWER_LINE.match(line)]
    if not blanks:
        raise ValueError(f"{exercise.name}: the self-check has no `answer = None` line")
    at = blanks[-1] + 1
    solution = ["# BEGIN SOLUTION NO PROMPT", *exercise.solution.code.split("\n"), "# END SOLUTION"]
    cell = copy.deepcopy(check_cell)
    cell.source = "\n".join(lines[:at] + solution + lines[at:])
    cell.outputs, cell.execution_count = [], None
    cell.metadata.setdefault("tags", [])
    cell.metadata["tags"] = [*cell.metadata["tags"], ANSWER_TAG]
    # otter runs a question's tests right after the cell whose metadata names them.
    cell.metadata[OTTER_KEY] = {"tests": [exercise.name]}
    return cell


def _segments(source: str) -> list[tuple[str, str]]:
    """A markdown cell's text cut around its solution blocks: ("text" | "solution", part)."""
    parts, at = [], 0
    for match in lessons._DETAILS.finditer(source):
        parts += [("text", source[at:match.start()]), ("solution", match.group(0))]
        at = match.end()
    parts.append(("text", source[at:]))
    return [(kind, part.strip()) for kind, part in parts if part.strip()]


def master_notebook(path: Path):
    """The otter-grader master notebook of a lesson."""
    notebook = lessons.read(path)
    found = exercises(notebook)
    by_check = {e.solution.check_cell: e for e in found if e.graded}
    by_cell: dict[int, list[Exercise]] = {}
    for exercise in found:
        by_cell.setdefault(exercise.solution.cell, []).append(exercise)
    config = {
        "name": path.stem,
        "init_cell": False, "check_all_cell": False, "export_cell": False,
        "run_tests": False, "solutions_pdf": False, "template_pdf": False,
        "tests": {"files": False, "ok_format": False},
        "generate": {"pdf": False, "show_stdout": True},
    }
    cells = [_raw("# ASSIGNMENT CONFIG\n" + json.dumps(config, indent=1))]
    for index, cell in enumerate(notebook.cells):
        if index in by_check:
            exercise = by_check[index]
            cells += [_raw(f"# BEGIN QUESTION\nname: {exercise.name}\n"
                           f"points: {POINTS_PER_EXERCISE}\ncheck_cell: false"),
                      _raw("# BEGIN SOLUTION"), answer_cell(cell, exercise),
                      _raw("# END SOLUTION")]
            continue
        if index not in by_cell:
            cells.append(cell)
            continue
        waiting = list(by_cell[index])
        for kind, part in _segments(cell.source):
            if kind == "text":
                cells.append(_markdown(part))
                continue
            exercise = waiting.pop(0)
            if not exercise.graded:
                cells.append(_raw(f"# BEGIN QUESTION\nname: {exercise.name}\nmanual: true\n"
                                  f"points: 0"))
            cells += [_raw("# BEGIN SOLUTION"), _markdown(part), _raw("# END SOLUTION")]
            if exercise.graded:
                cells.append(_raw("# BEGIN TESTS"))
                cells.append(nbformat.v4.new_code_cell(public_test(exercise)))
                cells += [nbformat.v4.new_code_cell(hidden_test(exercise, call))
                          for call in exercise.calls]
                cells.append(_raw("# END TESTS"))
            cells.append(_raw("# END QUESTION"))
    master = copy.deepcopy(notebook)
    master.cells = cells
    master.metadata.pop("widgets", None)
    return master, found


def _otter_assign():
    """``otter assign`` as a function (one import for every lesson, not one process each)."""
    try:
        from otter.assign import main
    except ImportError:
        raise SystemExit(MISSING) from None
    return main


def _otter() -> list[str]:
    otter = shutil.which("otter", path=str(Path(sys.executable).parent))
    if otter is None:
        raise SystemExit(MISSING)
    return [otter]


def _tests_only_on_answer_cells(path: Path) -> None:
    """Each question's tests run after its self-check cell only (otter also marks the last
    cell of a question that has no check cell; in the instructor's version that is the worked
    solution, and a second run there would count the question twice)."""
    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if ANSWER_TAG not in cell.metadata.get("tags", []):
            cell.metadata.get(OTTER_KEY, {}).pop("tests", None)
    nbformat.write(notebook, str(path))


def build(path: Path, out: Path) -> dict:
    """Write the student's and the instructor's version of one lesson under ``out/<lesson>``."""
    master, found = master_notebook(path)
    target = out / path.stem
    if target.exists():
        shutil.rmtree(target)
    assign = _otter_assign()
    with tempfile.TemporaryDirectory() as scratch:
        master_path = Path(scratch) / path.name
        nbformat.write(master, str(master_path))
        said = io.StringIO()
        try:
            with contextlib.redirect_stdout(said), contextlib.redirect_stderr(said):
                assign(str(master_path), str(target), no_pdfs=True, no_run_tests=True)
        except Exception as error:
            raise SystemExit(f"otter assign failed on {path.name}: {error!r}\n"
                             f"{said.getvalue()}") from error
    for version in ("student", "autograder"):
        _tests_only_on_answer_cells(target / version / path.name)
    zips = sorted((target / "autograder").glob("*-autograder_*.zip"))
    if len(zips) != 1:
        raise SystemExit(f"otter assign wrote {len(zips)} autograder zips for {path.name}")
    zips[0].rename(target / "autograder" / "autograder.zip")
    graded = [e for e in found if e.graded]
    return {"lesson": path.stem, "graded": len(graded), "by_hand": len(found) - len(graded),
            "points": POINTS_PER_EXERCISE * len(graded), "dir": str(target)}


def grade_one(submission: Path, autograder: Path, timeout: float | None = None) -> dict:
    """Grade one submission with ``otter run`` (no Docker); its results as a dict."""
    with tempfile.TemporaryDirectory() as scratch:
        try:
            result = subprocess.run([*_otter(), "run", "--no-logo", "-a", str(autograder),
                                     "-o", scratch, str(submission)], capture_output=True,
                                    text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"error": f"not graded: still running after {timeout:g} s"}
        results = Path(scratch) / "results.json"
        if result.returncode != 0 or not results.exists():
            return {"error": (result.stderr or result.stdout)[-2000:]}
        return json.loads(results.read_text(encoding="utf-8"))


def scores(results: dict) -> tuple[dict[str, float], float]:
    """Each question's score from an ``otter run`` results.json, and the possible points."""
    graded = [test for test in results.get("tests", []) if test.get("max_score") is not None]
    return ({test["name"]: float(test["score"]) for test in graded},
            float(sum(test["max_score"] for test in graded)))


def grade(submissions: list[Path], autograder: Path, csv_path: Path | None,
          timeout: float | None = None) -> list[dict]:
    files = []
    for submission in submissions:
        files += sorted(submission.glob("*.ipynb")) if submission.is_dir() else [submission]
    rows = []
    for submission in files:
        results = grade_one(submission, autograder, timeout)
        row = {"submission": str(submission)}
        if "error" in results:
            row.update(total=0.0, possible="", error=results["error"].strip().splitlines()[-1])
        else:
            points, possible = scores(results)
            row.update(points)
            row.update(total=sum(points.values()), possible=possible, error="")
        rows.append(row)
        print(f"{submission}: {row['total']} / {row['possible']}" +
              (f"  ({row['error']})" if row["error"] else ""), flush=True)
    if csv_path is not None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
        columns = (["submission"] + sorted(c for c in columns if c.startswith("exercise_"))
                   + ["total", "possible", "error"])
        with open(csv_path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    make = commands.add_parser("build", help="write the student's and the instructor's version "
                               "of each lesson, with its autograder")
    make.add_argument("lessons", nargs="*", help="lesson numbers or names (default: all)")
    make.add_argument("--out", type=Path, default=DEFAULT_OUT,
                      help=f"output folder (default: {DEFAULT_OUT.relative_to(ROOT)})")
    mark = commands.add_parser("grade", help="grade submissions with otter run (no Docker)")
    mark.add_argument("submissions", nargs="+", type=Path,
                      help="submitted notebooks, or folders of them")
    mark.add_argument("--autograder", type=Path, required=True,
                      help="the lesson's autograder.zip (DIR/<lesson>/autograder/autograder.zip)")
    mark.add_argument("--csv", type=Path, help="write the grades to this CSV file")
    mark.add_argument("--timeout", type=float, help="seconds one submission may run (default: "
                      "no limit); one that runs longer is reported, with 0 points")
    args = parser.parse_args(argv)
    if args.command == "build":
        paths = [lesson_path(name) for name in args.lessons] or lessons.lesson_paths()
        args.out.mkdir(parents=True, exist_ok=True)
        for path in paths:
            made = build(path, args.out)
            print(f"{made['lesson']}: {made['graded']} autograded exercises "
                  f"({made['points']} points), {made['by_hand']} graded by hand -> {made['dir']}",
                  flush=True)
        return 0
    rows = grade(args.submissions, args.autograder, args.csv, args.timeout)
    return 1 if any(row["error"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
