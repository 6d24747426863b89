"""Reading the lesson notebooks as data: their prose, outputs, solutions and self-checks.

Shared by the static tests of what the lessons state (tests/test_lesson_text.py) and
by the notebook plugin that executes every solution and widget in CI
(notebooks/conftest.py).

A lesson's exercise is a markdown cell with the task, a self-check code cell::

    answer = None  # ...
    h.check_answer(answer, 0.43, tolerance=0.02, revisit="...", on_defaults=...)

and a worked solution in a collapsed block of markdown::

    <details><summary>Solution</summary>

    ```python
    ...                 # ends by assigning the self-check's variable (answer = ...)
    ```

    ```text
    what the code printed when the lesson was executed (tools/run_notebooks.py)
    ```

    The explanation, quoting only numbers the code or the lesson printed.
    </details>
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"

_DETAILS = re.compile(r"<details>\s*<summary>\s*Solution\s*</summary>(.*?)</details>", re.S)
_FENCE = re.compile(r"```(\w*)[^\n]*\n(.*?)```", re.S)
_ANSWER_LINE = re.compile(r"^\s*([A-Za-z_]\w*)\s*=\s*None\b.*$", re.M)
# A number as prose writes it: 0.95, -1.2, 96 %, 80-84 %, 1.4x. Integers without a
# percent sign are counts, sizes, years and indices, not measurements.
_NUMBER = re.compile(r"(?<![\w./])(-?\d+(?:\.\d+)?)(?![\w.]*\d)")
_PERCENT_AFTER = re.compile(r"^\s?(?:%|\s?per\s?cent)")
_RANGE_TO_PERCENT = re.compile(r"^\s?(?:-|–|to)\s?\d+(?:\.\d+)?\s?%")
_OUTPUT_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def lesson_paths() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def lesson_id(path: Path) -> str:
    return path.name[:2]


def read(path: Path):
    return nbformat.read(str(path), as_version=4)


@dataclass
class Solution:
    """One worked solution: where it is, its code, its recorded output, its prose."""

    cell: int                 # index of the markdown cell that holds it
    number: int               # 1, 2, ... in the order of the lesson
    code: str
    output: str | None        # the ```text block, if recorded
    prose: str                # the explanation, without the code and output blocks
    check_cell: int | None = None       # the self-check code cell it answers
    answer_name: str | None = None      # the variable that self-check reads
    raw: str = field(default="", repr=False)


def solutions(notebook) -> list[Solution]:
    """Every ``<details><summary>Solution</summary>`` block, linked to its self-check.

    The self-check of a solution is the nearest code cell with ``check_answer(``
    before it that no earlier solution has claimed, after the previous solution.
    """
    found = []
    previous_cell = -1
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        for match in _DETAILS.finditer(cell.source):
            body = match.group(1)
            code = "\n".join(text for kind, text in _FENCE.findall(body) if kind == "python")
            outputs = [text for kind, text in _FENCE.findall(body) if kind == "text"]
            prose = _FENCE.sub(" ", body)
            solution = Solution(cell=index, number=len(found) + 1, code=code.strip(),
                                output=outputs[0] if outputs else None, prose=prose,
                                raw=match.group(0))
            checks = [i for i in range(previous_cell + 1, index)
                      if notebook.cells[i].cell_type == "code"
                      and "check_answer(" in notebook.cells[i].source]
            claimed = {s.check_cell for s in found}
            checks = [i for i in checks if i not in claimed]
            if checks:
                solution.check_cell = checks[-1]
                names = _ANSWER_LINE.findall(notebook.cells[checks[-1]].source)
                solution.answer_name = names[0] if names else None
            found.append(solution)
        if _DETAILS.search(cell.source):
            previous_cell = index
    return found


def check_source_without_blank(source: str) -> str:
    """A self-check cell without its ``answer = None`` line, to run after a solution."""
    return _ANSWER_LINE.sub("", source)


def output_text(cell) -> str:
    """Everything a code cell printed or displayed as text."""
    parts = []
    for output in cell.get("outputs", []):
        if "text" in output:
            parts.append(output["text"])
        data = output.get("data", {})
        for kind in ("text/plain", "text/html", "text/markdown"):
            if kind in data:
                value = data[kind]
                parts.append(value if isinstance(value, str) else "".join(value))
    return "\n".join(parts)


def output_numbers(text: str) -> list[float]:
    return [float(x) for x in _OUTPUT_NUMBER.findall(text)]


@dataclass(frozen=True)
class Stated:
    text: str          # as written: "0.95", "84 %"
    value: float
    decimals: int
    percent: bool


def _strip_non_prose(markdown: str) -> str:
    text = _FENCE.sub(" ", markdown)
    text = re.sub(r"`[^`\n]*`", " ", text)                 # inline code
    text = re.sub(r"\]\([^)]*\)", "]", text)                 # link targets
    text = re.sub(r"<[^>]+>", " ", text)                     # html tags
    text = re.sub(r"arXiv:\s*\S+|doi:\s*\S+", " ", text, flags=re.I)
    return text


def stated_numbers(markdown: str) -> list[Stated]:
    """The decimals and percentages a piece of prose states (not those in code)."""
    text = _strip_non_prose(markdown)
    found = []
    for match in _NUMBER.finditer(text):
        literal = match.group(1)
        after = text[match.end():match.end() + 16]
        percent = bool(_PERCENT_AFTER.match(after) or _RANGE_TO_PERCENT.match(after))
        if "." not in literal and not percent:
            continue
        decimals = len(literal.split(".")[1]) if "." in literal else 0
        found.append(Stated(literal + (" %" if percent else ""), float(literal), decimals,
                            percent))
    return found


def is_printed(stated: Stated, printed: list[float]) -> bool:
    """True when some printed number rounds to the stated one (a share may be stated in %)."""
    tolerance = 0.5 * 10.0 ** -stated.decimals + 1e-9
    for value in printed:
        if abs(value - stated.value) <= tolerance:
            return True
        if stated.percent and abs(100 * value - stated.value) <= tolerance:
            return True
    return False


def section_of_cells(notebook) -> list[int]:
    """The index of the ``#``/``##`` section each cell belongs to."""
    section, sections = 0, []
    for cell in notebook.cells:
        if cell.cell_type == "markdown" and re.match(r"#{1,2} ", cell.source.lstrip()):
            section += 1
        sections.append(section)
    return sections


def is_references(cell) -> bool:
    return cell.cell_type == "markdown" and re.match(r"#{1,3} References", cell.source.lstrip())
