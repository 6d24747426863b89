"""Execute lesson notebooks in place, the way they are committed, and time them.

    python tools/run_notebooks.py                 # every lesson, full quality
    python tools/run_notebooks.py --fast 03 05    # lessons 03 and 05 in fast mode
    python tools/run_notebooks.py --check         # execute copies, keep the originals

Outputs are kept (a reader sees every figure without running anything);
each worked solution's code (the ```python block inside a lesson's
``<details><summary>Solution</summary>``) is run after the lesson, in its
kernel, and what it prints is written into the solution as a ```text block, so
the explanation beside it can quote it; the saved ipywidgets state is dropped, since live widgets need a kernel
anyway and the state of a large drop-down can weigh hundreds of kB.
Prints a table of execution times and file sizes.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import lessons  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SIZE_LIMIT = 2 * 1024 * 1024


def select(prefixes: list[str]) -> list[Path]:
    notebooks = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if not prefixes:
        return notebooks
    chosen = [nb for nb in notebooks if any(nb.name.startswith(p) for p in prefixes)]
    missing = [p for p in prefixes if not any(nb.name.startswith(p) for nb in notebooks)]
    if missing:
        sys.exit(f"no notebook starts with: {', '.join(missing)}")
    return chosen


SOLUTION_OUTPUT_LINES = 40


def printed_text(cell) -> str:
    """What a solution printed: its stdout and the value of its last line."""
    parts = []
    for output in cell.outputs:
        if output.output_type == "error":
            raise RuntimeError(f"a solution raised {output.ename}: {output.evalue}\n"
                               f"{cell.source}")
        if output.output_type == "stream" and output.name == "stdout":
            parts.append(output.text)
        elif output.output_type == "execute_result" and "text/plain" in output.data:
            parts.append(output.data["text/plain"] + "\n")
    lines = "".join(parts).rstrip("\n").splitlines()
    if len(lines) > SOLUTION_OUTPUT_LINES:
        lines = lines[:SOLUTION_OUTPUT_LINES] + ["..."]
    return "\n".join(lines)


def with_output(solution_markdown: str, printed: str) -> str:
    """A solution block with its ```text output block written after its code."""
    start = solution_markdown.find("```python")
    end = solution_markdown.find("```", start + len("```python")) + 3
    rest = solution_markdown[end:]
    stripped = rest.lstrip()
    if stripped.startswith("```text"):
        rest = stripped[stripped.find("```", len("```text")) + 3:]
    block = f"\n\n```text\n{printed}\n```" if printed else ""
    return solution_markdown[:end] + block + "\n\n" + rest.lstrip("\n")


def execute(path: Path, *, fast: bool, timeout: int, write_to: Path) -> float:
    notebook = nbformat.read(path, as_version=4)
    os.environ["UNMASKING_CNNS_FAST"] = "1" if fast else "0"
    solutions = [s for s in lessons.solutions(notebook) if s.code]
    lesson_cells = len(notebook.cells)
    notebook.cells += [nbformat.v4.new_code_cell(s.code) for s in solutions]
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    printed = [printed_text(cell) for cell in notebook.cells[lesson_cells:]]
    del notebook.cells[lesson_cells:]
    for solution, text in zip(solutions, printed):
        cell = notebook.cells[solution.cell]
        cell.source = cell.source.replace(solution.raw, with_output(solution.raw, text), 1)
    notebook.metadata.pop("widgets", None)
    for cell in notebook.cells:
        # The hosted-notebook setup cell is no part of the lesson's time (tools/lesson_plan.py):
        # it stays without timestamps, as tools/setup_cell.py writes it.
        if cell.get("id") == "course-setup":
            cell.metadata.pop("execution", None)
    nbformat.write(notebook, write_to)
    return elapsed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lessons", nargs="*", help="notebook name prefixes, e.g. 03 05")
    parser.add_argument("--fast", action="store_true", help="fast mode (fewer samples/steps)")
    parser.add_argument("--check", action="store_true",
                        help="execute copies in a temporary folder; leave the notebooks alone")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args(argv)

    rows, failed = [], False
    with tempfile.TemporaryDirectory() as scratch:
        for path in select(args.lessons):
            target = Path(scratch) / path.name if args.check else path
            if args.check:
                shutil.copy(path, target)
            try:
                seconds = execute(path, fast=args.fast, timeout=args.timeout, write_to=target)
            except Exception as error:  # report every notebook, then fail
                print(f"{path.name}: FAILED: {type(error).__name__}: {str(error)[:2000]}")
                failed = True
                continue
            size = target.stat().st_size
            rows.append((path.name, seconds, size))
            flag = "  (over 2 MB!)" if size > SIZE_LIMIT else ""
            print(f"{path.name}: {seconds:.0f} s, {size / 1024:.0f} kB{flag}", flush=True)
    mode = "fast" if args.fast else "full"
    print(f"\n| notebook | {mode} mode (s) | size (kB) |\n|---|---:|---:|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.0f} | {size / 1024:.0f} |")
    print(f"| **all** | **{sum(r[1] for r in rows):.0f}** | |")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
