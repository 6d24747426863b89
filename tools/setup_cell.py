"""Put the hosted-notebook setup cell (tools/setup_cell.ipy) into every lesson.

Each lesson's second cell, right after its title, is the same setup cell: on a host
that lacks the course (Colab and the like) it installs the course and keeps the host's
TensorFlow; where ``helpers`` is importable it does nothing and prints nothing.
tests/test_hosted.py checks that every lesson carries tools/setup_cell.ipy unchanged
and tests what the cell does.

    python tools/setup_cell.py           # insert the cell, or bring an older copy up to date
    python tools/setup_cell.py --check   # list the lessons whose cell differs (exit 1)

Only the setup cell is written; the other cells and their outputs are left as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE = Path(__file__).with_suffix(".ipy")
CELL_ID = "course-setup"
POSITION = 1  # after the title cell


def reference_source() -> str:
    return REFERENCE.read_text(encoding="utf-8").rstrip("\n")


def lessons() -> list[Path]:
    return sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def source_of(cell: dict) -> str:
    source = cell.get("source", "")
    return source if isinstance(source, str) else "".join(source)


def setup_cell(notebook: dict) -> dict | None:
    """The lesson's setup cell, found by its id, or None."""
    return next((cell for cell in notebook["cells"] if cell.get("id") == CELL_ID), None)


def new_cell(source: str) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": CELL_ID, "metadata": {},
            "outputs": [], "source": source.splitlines(keepends=True)}


def write(path: Path, source: str) -> bool:
    """Insert or update the setup cell of one lesson; True if the file changed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    cells = notebook["cells"]
    old = setup_cell(notebook)
    if old is not None:
        if source_of(old) == source:
            return False
        cells[cells.index(old)] = new_cell(source)
    else:
        cells.insert(POSITION, new_cell(source))
    updated = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    path.write_text(updated, encoding="utf-8")
    return updated != text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only list lessons that differ")
    args = parser.parse_args(argv)
    source = reference_source()
    differing = []
    for path in lessons():
        cell = setup_cell(json.loads(path.read_text(encoding="utf-8")))
        if cell is None or source_of(cell) != source:
            differing.append(path)
            if not args.check:
                write(path, source)
    verb = "differ" if args.check else "written"
    print(f"{len(differing)} of {len(lessons())} lessons {verb}"
          + "".join(f"\n  {path.relative_to(REPO)}" for path in differing))
    return 1 if args.check and differing else 0


if __name__ == "__main__":
    sys.exit(main())
