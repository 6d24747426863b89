"""nbval, extended to what a student does beyond "Run All".

Loaded by the root conftest.py. After the last cell of each lesson, in the same
kernel, three more kinds of test items run:

* ``Solution N``: the code of the lesson's N-th worked solution (the ```python block
  inside ``<details><summary>Solution</summary>``), then the self-check it answers,
  with the solution's value in place of ``None``. It fails if the code raises, if it
  leaves the answer unset, or if the self-check rejects it.
* ``Explorer controls``: tests/widget_driver.py moves every control of the lesson's
  explorers through its values and fails on an exception or an empty figure.

``--lesson-extras=solutions`` runs the solutions but not the explorers (CI drives the
explorers once, in the README's command); ``--lesson-extras=none`` (or
``--no-lesson-extras``) leaves both out. ``--to-last-check`` runs each lesson only as
far as its last checked output, without extras (an emulated-CPU pass that compares
outputs; CI runs whole lessons under the same emulation with other parameters). The parameters cell can be overridden as papermill would, with a JSON object in
``UNMASKING_CNNS_PARAMETERS`` (e.g. ``{"MODEL_NAME": "efficientnet_lite1"}``): the
values of the names the lesson's parameters cell defines are set right after it, and
no output is compared, since another model or photo prints other numbers.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import IPyNbCell, IPyNbFile

from tests import lessons

PARAMETERS_ENV = "UNMASKING_CNNS_PARAMETERS"
DRIVER = Path(__file__).with_name("widget_driver.py")


def pytest_addoption(parser):
    parser.addoption("--lesson-extras", choices=("all", "solutions", "none"), default="all",
                     help="lessons: which extra items to run after the last cell: the worked "
                          "solutions and the explorer controls (all), the solutions only, "
                          "or none")
    parser.addoption("--no-lesson-extras", action="store_const", const="none",
                     dest="lesson_extras", help="lessons: the same as --lesson-extras=none")
    parser.addoption("--to-last-check", action="store_true",
                     help="lessons: run each lesson only as far as its last checked output "
                          "(# NBVAL_CHECK_OUTPUT), without extras: what a pass that compares "
                          "outputs needs")


def parameter_overrides() -> dict:
    text = os.environ.get(PARAMETERS_ENV, "").strip()
    if not text:
        return {}
    values = json.loads(text)
    if not isinstance(values, dict):
        raise pytest.UsageError(f"{PARAMETERS_ENV} must be a JSON object, got {text!r}")
    return values


def solution_source(solution: lessons.Solution, check_source: str | None) -> str:
    """Kernel code: the solution, then its self-check with the solution's answer."""
    lines = [
        "import helpers as _helpers",
        "_solution_verdicts = []",
        "_original_check_answer = _helpers.check_answer",
        "def _recording_check_answer(answer, *args, **kwargs):",
        "    verdict = _original_check_answer(answer, *args, **kwargs)",
        "    _solution_verdicts.append((answer, verdict))",
        "    return verdict",
        "_helpers.check_answer = _recording_check_answer",
        "try:",
        f"    exec(compile({solution.code!r}, 'solution {solution.number}', 'exec'))",
    ]
    if check_source is not None:
        lines.append(f"    exec(compile({check_source!r}, 'self-check of solution "
                     f"{solution.number}', 'exec'))")
    lines += ["finally:", "    _helpers.check_answer = _original_check_answer"]
    if check_source is not None:
        lines += [
            "assert _solution_verdicts, 'the self-check did not run'",
            "_answer, _verdict = _solution_verdicts[-1]",
            f"assert _answer is not None, 'solution {solution.number} leaves "
            f"{solution.answer_name} unset'",
            f"assert _verdict is not False, 'the self-check rejects solution "
            f"{solution.number}: ' + repr(_answer)",
        ]
    return "\n".join(lines)


class LessonFile(IPyNbFile):
    def collect(self):
        overrides = parameter_overrides()
        items = list(super().collect())
        if self.config.getoption("to_last_check"):
            if overrides:
                raise pytest.UsageError(f"--to-last-check compares outputs, which "
                                        f"{PARAMETERS_ENV} turns off: use one or the other")
            checked = [number for number, item in enumerate(items) if item.options["check"]]
            yield from items[:checked[-1] + 1] if checked else []
            return
        count = 0
        for item in items:
            if overrides:
                item.options["check"] = False
            yield item
            count = item.cell_num + 1
            if overrides and "parameters" in item.cell.metadata.get("tags", []):
                names = {}
                exec(item.cell.source, {}, names)  # the parameters cell is plain assignments
                chosen = {k: v for k, v in overrides.items() if k in names}
                source = "\n".join(f"{k} = {v!r}" for k, v in chosen.items()) or "pass"
                yield self._extra("Parameters overridden", count, source)
        extras = self.config.getoption("lesson_extras")
        if extras == "none":
            return
        notebook = self.nb
        for solution in lessons.solutions(notebook):
            if not solution.code:
                continue
            check = None
            if solution.check_cell is not None:
                check = lessons.check_source_without_blank(notebook.cells[solution.check_cell].source)
            count += 1
            yield self._extra(f"Solution {solution.number}", count,
                              solution_source(solution, check))
        if extras == "solutions":
            return
        count += 1
        yield self._extra("Explorer controls", count,
                          DRIVER.read_text(encoding="utf-8") + "\ndrive_widgets()\n")

    def _extra(self, name, number, source):
        cell = nbformat.v4.new_code_cell(source=source)
        options = defaultdict(bool, check=False)
        return IPyNbCell.from_parent(self, name=name, cell_num=number, cell=cell,
                                     options=options)


@pytest.hookimpl(hookwrapper=True)
def pytest_collect_file(file_path, parent):
    outcome = yield
    results = outcome.get_result()
    if any(type(result) is IPyNbFile for result in results):
        outcome.force_result([LessonFile.from_parent(parent, path=file_path)
                              if type(result) is IPyNbFile else result
                              for result in results])
