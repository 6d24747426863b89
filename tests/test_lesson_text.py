"""What a lesson states is what its cells print.

Every decimal or percentage in a lesson's prose (markdown cells and the explanations
of its worked solutions) must be a number that the lesson itself printed: in an
output of a code cell above it or in its own section, in the code (a parameter such
as ``EPSILON = 4``), or, inside a solution, in that solution's recorded output. A
number is matched after rounding to the decimals the prose gives ("0.95" matches a
printed 0.9512, not a printed 0.9), and a percentage may come from a printed share
("96 %" matches 0.962).

Numbers that are not measurements (a paper's constant, a threshold quoted from the
literature) are listed with the reason in the notebook's metadata::

    "unmasking_cnns": {"not_measured": {"127.5": "the grey value of a pixel", ...}}

Run as a script to list what a lesson states without printing it, with context:

    python tests/test_lesson_text.py 09
    python tests/test_lesson_text.py some/copy/09_evaluating_explanations.ipynb
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import lessons  # noqa: E402

# Statements known to be stale on the committed lessons; each is being corrected. The
# test fails when one of them is no longer stale, so the list only shrinks.
KNOWN_STALE: dict[str, set[str]] = {}


def not_measured(notebook) -> dict[str, str]:
    return notebook.metadata.get("unmasking_cnns", {}).get("not_measured", {})


def unprinted(path: Path) -> list[tuple[int, str, str]]:
    """(cell index, number as stated, context) of each stated number no cell printed."""
    return check_lesson(path)[1]


def check_lesson(path: Path) -> tuple[int, list[tuple[int, str, str]]]:
    """How many stated numbers the lesson has, and those no cell printed."""
    notebook = lessons.read(path)
    sections = lessons.section_of_cells(notebook)
    allowed = not_measured(notebook)
    in_code = []
    for cell in notebook.cells:
        # A self-check's expected value is not something the lesson printed.
        if cell.cell_type == "code" and "check_answer(" not in cell.source:
            in_code += lessons.output_numbers(cell.source)
    # What each code cell printed, parsed once.
    printed_by = [lessons.output_numbers(lessons.output_text(c)) if c.cell_type == "code" else []
                  for c in notebook.cells]
    solutions_by_cell: dict[int, list[lessons.Solution]] = {}
    for solution in lessons.solutions(notebook):
        solutions_by_cell.setdefault(solution.cell, []).append(solution)
    problems, checked = [], 0
    references = False
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        references = references or bool(lessons.is_references(cell))
        if references:
            continue
        printed = in_code + [value for other, values in enumerate(printed_by)
                             if other < index or sections[other] == sections[index]
                             for value in values]
        outside = cell.source
        pieces = []
        for solution in solutions_by_cell.get(index, []):
            outside = outside.replace(solution.raw, " ")
            own = printed + lessons.output_numbers(solution.output or "") \
                + lessons.output_numbers(solution.code)
            pieces.append((solution.prose, own))
        pieces.insert(0, (outside, printed))
        for text, pool in pieces:
            for stated in lessons.stated_numbers(text):
                if stated.text.replace(" %", "") in allowed or stated.text in allowed:
                    continue
                checked += 1
                if not lessons.is_printed(stated, pool):
                    problems.append((index, stated.text, _context(text, stated)))
    return checked, problems


def _context(text: str, stated: lessons.Stated, width: int = 60) -> str:
    flat = " ".join(text.split())
    literal = stated.text.replace(" %", "")
    at = flat.find(literal)
    return flat[max(0, at - width):at + len(literal) + width] if at >= 0 else flat[:2 * width]


@pytest.mark.parametrize("path", lessons.lesson_paths(), ids=lessons.lesson_id)
def test_every_stated_number_is_printed_by_the_lesson(path):
    lesson = lessons.lesson_id(path)
    found = {f"cell {index}: {text}" for index, text, _ in unprinted(path)}
    known = KNOWN_STALE.get(lesson, set())
    new = sorted(found - known)
    assert not new, (f"lesson {lesson} states numbers that none of its cells print "
                     f"(`python tests/test_lesson_text.py {lesson}` shows them in context): "
                     + "; ".join(new))
    fixed = sorted(known - found)
    assert not fixed, f"no longer stale in lesson {lesson}: remove from KNOWN_STALE: {fixed}"


@pytest.mark.parametrize("path", lessons.lesson_paths(), ids=lessons.lesson_id)
def test_not_measured_numbers_give_a_reason(path):
    for number, reason in not_measured(lessons.read(path)).items():
        float(number)
        assert isinstance(reason, str) and len(reason.split()) >= 3, (number, reason)


def lesson_code(notebook) -> str:
    """The code a student runs: code cells and the code of the worked solutions."""
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    return "\n".join(cells + [solution.code for solution in lessons.solutions(notebook)])


@pytest.mark.parametrize("path", lessons.lesson_paths(), ids=lessons.lesson_id)
def test_every_helper_a_lesson_calls_exists(path):
    import helpers as h

    code = lesson_code(lessons.read(path))
    missing = set()
    for dotted in set(re.findall(r"(?<![\w.])h((?:\.[A-Za-z_]\w*)+)", code)):
        target = h
        for name in dotted.strip(".").split("."):
            if not hasattr(target, name):
                missing.add("h" + dotted)
                break
            target = getattr(target, name)
    assert not missing, f"lesson {lessons.lesson_id(path)} calls what helpers lacks: {sorted(missing)}"


def test_the_check_catches_a_stale_number(tmp_path):
    # A copy of lesson 00 whose prose quotes a probability no cell printed.
    notebook = lessons.read(lessons.lesson_paths()[0])
    markdown = next(cell for cell in notebook.cells if cell.cell_type == "markdown")
    markdown.source += "\n\nThe model is 0.123456 sure."
    stale = tmp_path / "00_stale.ipynb"
    lessons.nbformat.write(notebook, str(stale))
    assert any(text == "0.123456" for _, text, _ in unprinted(stale))


def test_stated_numbers_are_read_as_prose_writes_them():
    found = [s.text for s in lessons.stated_numbers(
        "p rises to 0.36, 80-84 % of pixels, 96% share, a 4×4 grid in 2019, "
        "`0.5` in code, [link](http://x/1.2), 1.4x faster, arXiv:1706.03825")]
    assert found == ["0.36", "80 %", "84 %", "96 %", "1.4"]
    stated = lessons.stated_numbers("0.95")[0]
    assert lessons.is_printed(stated, [0.9512]) and not lessons.is_printed(stated, [0.9])
    assert lessons.is_printed(lessons.stated_numbers("96 %")[0], [0.962])


if __name__ == "__main__":
    chosen = [a for a in sys.argv[1:] if not a.endswith(".ipynb")]
    paths = [Path(a) for a in sys.argv[1:] if a.endswith(".ipynb")] or lessons.lesson_paths()
    for path in paths:
        if chosen and lessons.lesson_id(path) not in chosen:
            continue
        checked, problems = check_lesson(path)
        print(f"== {path.name}: {checked} stated numbers checked, {len(problems)} not printed")
        for index, text, context in problems:
            print(f"  cell {index}: {text:>8}   ...{context}...")
