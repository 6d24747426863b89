"""Measure each lesson for planning a class: words to read and seconds to compute, per section.

    python tools/lesson_plan.py               # a Markdown table per lesson, then the overview
    python tools/lesson_plan.py 07 08         # only lessons 07 and 08
    python tools/lesson_plan.py --check       # exit 1 if TEACHING.md's tables are out of date

Reads the committed notebooks; executes nothing. A lesson's sections are its headings of
levels 1 and 2 (``#`` and ``##``) in markdown cells; ``###`` and deeper stay inside their
section. Lines inside fenced code blocks are never headings, so a ``# comment`` in a
solution's code does not start a section. The text before the lesson's title heading and the
title cell itself form the section "Opening" (the lesson's introduction).

What is measured, per section:

- **words**: the prose of the markdown cells, counted as whitespace-separated tokens that
  contain a letter or a digit (formulas count by their tokens, HTML tags not). The code and recorded output
  of a worked solution (the fenced blocks inside ``<details>``) are not counted; the
  solution's explanation is.
- **reading minutes**: words at READING_SPEED words per minute, a pace for careful reading
  of technical text with formulas (light prose is read at 200 to 250).
- **compute seconds**: the sum, over the section's code cells, of each cell's
  ``iopub.execute_input`` to ``iopub.status.idle`` (``shell.execute_reply`` when idle is
  missing), the timestamps nbclient stores when tools/run_notebooks.py executes a lesson at
  full quality. A cell without them counts as untimed.
- **figures**: the images the section's code cells display (a plotted figure, an image);
  each takes FIGURE_MINUTES to look at.
- **exercises**: the numbered exercises (``**1. Title.**`` or ``1. **Title.**`` at the start
  of a line) in a section called "Exercises".

A section's class time is its reading, figure and compute minutes. A lesson fits one session
when the class time of its sections, without the exercises and references, leaves room in
SESSION_MINUTES for an introduction, a discussion and exercise time (FIXED_MINUTES). A lesson
that does not fit is cut, at section boundaries, into the fewest sessions that do, as evenly
as possible and, where it can, before a part (``#``) or a numbered section ("2. ..."); the
teacher's plan follows the lesson's own structure. session_plan() writes the minute-by-minute plan of each session.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from itertools import combinations
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
TEACHING = ROOT / "TEACHING.md"

READING_SPEED = 180          # words per minute, technical text
FIGURE_MINUTES = 1.0         # to look at one figure
SESSION_MINUTES = 90
INTRO_MINUTES, DISCUSSION_MINUTES, EXERCISE_MINUTES = 5, 10, 25
FIXED_MINUTES = INTRO_MINUTES + DISCUSSION_MINUTES + EXERCISE_MINUTES
ROW_MINUTES = 4              # a plan's row groups sections until it lasts this long
NOT_TAUGHT = ("Exercises", "References")   # sections outside the read-and-run part

_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
_DETAILS = re.compile(r"<details>.*?</details>", re.S)
_FENCED_BLOCK = re.compile(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1[ \t]*$", re.S | re.M)
_EXERCISE = re.compile(r"^ {0,3}(?:\*\*\d+\.\s|\d+\.\s+\*\*)")
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_WORD = re.compile(r"[^\W_]")


@dataclass
class Section:
    title: str
    level: int
    words: int = 0
    seconds: float = 0.0
    figures: int = 0
    exercises: int = 0
    slowest: float = 0.0
    untimed: int = 0

    @property
    def reading_minutes(self) -> float:
        return self.words / READING_SPEED

    @property
    def class_minutes(self) -> float:
        """Reading, looking at the figures and computing at full quality."""
        return self.reading_minutes + self.figures * FIGURE_MINUTES + self.seconds / 60


@dataclass
class Lesson:
    number: str
    name: str                       # file name
    title: str
    sections: list[Section] = field(default_factory=list)

    @property
    def taught(self) -> list[Section]:
        """The sections read and run in class: all but the exercises and references."""
        return [s for s in self.sections if s.title not in NOT_TAUGHT]

    def total(self, attribute: str) -> float:
        return sum(getattr(s, attribute) for s in self.sections)

    @property
    def slowest(self) -> float:
        return max((s.slowest for s in self.sections), default=0.0)

    @property
    def taught_minutes(self) -> float:
        return sum(s.class_minutes for s in self.taught)

    @property
    def sessions(self) -> list[list[Section]]:
        """The taught sections cut into the fewest sessions that fit: cut before parts and
        numbered sections where possible, then as evenly as possible."""
        taught = self.taught
        minutes = [s.class_minutes for s in taught]
        room = SESSION_MINUTES - FIXED_MINUTES
        for count in range(1, len(taught) + 1):
            fitting = [cuts for cuts in combinations(range(1, len(taught)), count - 1)
                       if max(chunk_sums(minutes, cuts)) <= room]
            if fitting:
                best = min(fitting, key=lambda cuts: (
                    -sum(starts_topic(taught[cut]) for cut in cuts),
                    max(chunk_sums(minutes, cuts))))
                bounds = [0, *best, len(taught)]
                return [taught[a:b] for a, b in zip(bounds, bounds[1:])]
        return [[section] for section in taught]

    @property
    def fits_one_session(self) -> bool:
        return len(self.sessions) == 1


def starts_topic(section: Section) -> bool:
    """A part of the lesson (a ``#`` heading) or a numbered section ("2. Sanity check")."""
    return section.level == 1 or bool(re.match(r"\d+\.\s", section.title))


def chunk_sums(values: list[float], cuts: tuple[int, ...]) -> list[float]:
    bounds = [0, *cuts, len(values)]
    return [sum(values[a:b]) for a, b in zip(bounds, bounds[1:])]


def headings(markdown: str) -> list[tuple[int, int, str]]:
    """(line number, level, text) of each real heading: never a line inside a code fence."""
    found, fence = [], None
    for number, line in enumerate(markdown.splitlines()):
        opening = _FENCE.match(line)
        if fence:
            if opening and opening.group(1)[0] == fence[0] and len(opening.group(1)) >= len(fence):
                fence = None
            continue
        if opening:
            fence = opening.group(1)
            continue
        match = _HEADING.match(line)
        if match:
            found.append((number, len(match.group(1)), match.group(2).strip()))
    return found


def count_words(markdown: str) -> int:
    """Prose words, without the fenced code and output blocks of a worked solution."""
    prose = _DETAILS.sub(lambda block: _FENCED_BLOCK.sub(" ", block.group(0)), markdown)
    prose = _TAG.sub(" ", prose)
    return sum(1 for token in prose.split() if _WORD.search(token))


def count_exercises(markdown: str) -> int:
    prose = _DETAILS.sub(" ", markdown)
    return sum(1 for line in prose.splitlines() if _EXERCISE.match(line))


# The hosted-notebook setup cell (tools/setup_cell.py) installs the course where it is
# missing and does nothing in a lesson's run: it is no part of the lesson's time.
SETUP_CELL_ID = "course-setup"


def cell_seconds(cell) -> float | None:
    """Seconds from execute_input to idle (or execute_reply); None without timestamps."""
    stamps = cell.get("metadata", {}).get("execution", {})
    start = stamps.get("iopub.execute_input")
    end = stamps.get("iopub.status.idle") or stamps.get("shell.execute_reply")
    if not (start and end):
        return None
    parse = lambda text: datetime.fromisoformat(text.replace("Z", "+00:00"))  # noqa: E731
    return max(0.0, (parse(end) - parse(start)).total_seconds())


def measure(notebook, name: str) -> Lesson:
    """One lesson's sections, from a notebook node (as nbformat reads it)."""
    lesson = Lesson(number=name[:2], name=name, title=name)
    section = Section("Opening", 1)
    lesson.sections.append(section)
    seen_title = False
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            lines = cell.source.splitlines()
            start = 0
            for line_number, level, text in headings(cell.source) + [(len(lines), 0, "")]:
                part = "\n".join(lines[start:line_number])
                section.words += count_words(part)
                if section.title == "Exercises":
                    section.exercises += count_exercises(part)
                if level == 0:
                    break
                start = line_number + 1
                if level == 1 and not seen_title:
                    seen_title = True
                    lesson.title = text
                    section.words += count_words(text)
                elif level <= 2:
                    section = Section(text, level)
                    lesson.sections.append(section)
                else:
                    section.words += count_words(text)
        elif cell.cell_type == "code" and cell.get("id") != SETUP_CELL_ID:
            section.figures += sum(
                1 for output in cell.get("outputs", [])
                if any(kind.startswith("image/") for kind in output.get("data", {})))
            seconds = cell_seconds(cell)
            if seconds is None:
                section.untimed += 1
            else:
                section.seconds += seconds
                section.slowest = max(section.slowest, seconds)
    return lesson


def lesson_paths(only: list[str] | None = None) -> list[Path]:
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    return [p for p in paths if not only or p.name[:2] in only]


def measure_all(only: list[str] | None = None) -> list[Lesson]:
    return [measure(nbformat.read(str(p), as_version=4), p.name) for p in lesson_paths(only)]


def short_title(lesson: Lesson) -> str:
    """The title without its number and subtitle: "Grad-CAM" from "05 · Grad-CAM: where..."."""
    return lesson.title.split("·", 1)[-1].split(":", 1)[0].strip()


def lesson_table(lesson: Lesson) -> str:
    rows = ["| section | words | reading (min) | figures | compute (s) | slowest cell (s) "
            "| exercises |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    for s in lesson.sections:
        title = f"**{s.title}**" if s.level == 1 and s.title != "Opening" else s.title
        rows.append(f"| {title} | {s.words:,} | {s.reading_minutes:.1f} | {s.figures} "
                    f"| {s.seconds:.0f} | {s.slowest:.0f} | {s.exercises} |")
    seconds = lesson.total("seconds")
    rows.append(f"| **total** | **{lesson.total('words'):,}** "
                f"| **{lesson.total('reading_minutes'):.1f}** | **{lesson.total('figures')}** "
                f"| **{seconds:.0f}** ({seconds / 60:.1f} min) "
                f"| **{lesson.slowest:.0f}** | **{lesson.total('exercises')}** |")
    untimed = lesson.total("untimed")
    if untimed:
        rows.append(f"\n{untimed} code cells without timestamps.")
    return "\n".join(rows)


def session_plan(lesson: Lesson) -> str:
    """Minute by minute: introduction, the sections in rows of about ROW_MINUTES, discussion,
    exercises; one table per session when the lesson needs more than one."""
    sessions = lesson.sessions
    plans = []
    for number, taught in enumerate(sessions, 1):
        rows = ["| minutes | activity | reading (min) | figures | compute (s) |",
                "|---|---|---:|---:|---:|"]
        if number == 1:
            opening = "teacher's introduction: the question of the day, the objectives"
        else:
            above = lesson.sections[:lesson.sections.index(taught[0])]
            opening = (f"recap of session {number - 1}, while *Run All Above* "
                       f"\"{taught[0].title}\" re-creates its variables "
                       f"({sum(s.seconds for s in above):.0f} s: start it before class)")
        rows.append(f"| 0–{INTRO_MINUTES} | {opening} | | | |")
        groups: list[list[Section]] = []
        for section in taught:
            if (not groups or sum(s.class_minutes for s in groups[-1]) >= ROW_MINUTES
                    or section.level == 1):
                groups.append([])
            groups[-1].append(section)
        for index in range(len(groups) - 1, 0, -1):      # no row shorter than a minute
            if sum(s.class_minutes for s in groups[index]) < 1:
                groups[index - 1] += groups.pop(index)
        clock = start = INTRO_MINUTES
        for group in groups:
            clock += sum(s.class_minutes for s in group)
            end = max(round(clock), start)
            rows.append(f"| {start}–{end} | {'; '.join(s.title for s in group)} "
                        f"| {sum(s.reading_minutes for s in group):.1f} "
                        f"| {sum(s.figures for s in group)} "
                        f"| {sum(s.seconds for s in group):.0f} |")
            start = end
        discussion_end = start + DISCUSSION_MINUTES
        rows.append(f"| {start}–{discussion_end} | discussion | | | |")
        rows.append(f"| {discussion_end}–{SESSION_MINUTES} | exercises in class "
                    f"({SESSION_MINUTES - discussion_end} min) | | | |")
        title = f"Session {number} of {len(sessions)}\n\n" if len(sessions) > 1 else ""
        plans.append(title + "\n".join(rows))
    return "\n\n".join(plans)


def overview_table(lessons: list[Lesson]) -> str:
    rows = ["| lesson | title | words | reading (min) | figures | compute, full quality (min) "
            "| slowest cell (s) | exercises | class time without exercises (min) "
            "| fits one session |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for lesson in lessons:
        sessions = len(lesson.sessions)
        fits = "yes" if sessions == 1 else f"no: {sessions} sessions"
        rows.append(f"| {lesson.number} | {short_title(lesson)} | {lesson.total('words'):,} "
                    f"| {lesson.total('reading_minutes'):.0f} | {lesson.total('figures')} "
                    f"| {lesson.total('seconds') / 60:.1f} | {lesson.slowest:.0f} "
                    f"| {lesson.total('exercises')} | {lesson.taught_minutes:.0f} | {fits} |")
    return "\n".join(rows)


def tables(lessons: list[Lesson]) -> list[str]:
    """Every table TEACHING.md must contain verbatim: per lesson its measurements and its
    session plan, then the overview."""
    per_lesson = [[lesson_table(lesson), session_plan(lesson)] for lesson in lessons]
    return [table for pair in per_lesson for table in pair] + [overview_table(lessons)]


def stale_tables(teaching: str, lessons: list[Lesson]) -> list[str]:
    """The generated tables that the guide does not contain word for word."""
    return [table for table in tables(lessons) if table not in teaching]


def _table_blocks(lines: list[str]) -> list[tuple[int, int]]:
    """(start, end) line ranges of the Markdown tables (runs of lines starting with "|")."""
    blocks, start = [], None
    for index, line in enumerate(lines + [""]):
        if line.startswith("|") and start is None:
            start = index
        elif not line.startswith("|") and start is not None:
            blocks.append((start, index))
            start = None
    return blocks


def _section_range(lines: list[str], heading: str) -> tuple[int, int]:
    """Lines of the ``### ...`` section whose heading starts with ``heading``."""
    start = next(i for i, line in enumerate(lines) if line.startswith(heading))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("### ", "## "))),
               len(lines))
    return start, end


def rewrite(teaching: str, lessons: list[Lesson]) -> str:
    """The guide with every measured table replaced by its regenerated version.

    Tables are replaced in place, in order, within their section (a lesson's ``### NN · ``
    section, the overview's ``### The term at a glance``); the prose around them is kept.
    A lesson whose number of tables changed (a plan that now needs another session) cannot
    be rewritten in place: ValueError says which, to edit by hand.
    """
    lines = teaching.split("\n")
    sections = [(f"### {lesson.number} · ", [lesson_table(lesson), session_plan(lesson)])
                for lesson in lessons] + [("### The term at a glance", [overview_table(lessons)])]
    for heading, generated in sections:
        new_blocks = [block for text in generated for block in
                      [text.split("\n")[a:b] for a, b in _table_blocks(text.split("\n"))]]
        start, end = _section_range(lines, heading)
        old_blocks = _table_blocks(lines[start:end])
        if len(old_blocks) != len(new_blocks):
            raise ValueError(f"{TEACHING.name}, section {heading.strip()!r}: "
                             f"{len(old_blocks)} tables, the plan now has {len(new_blocks)}; "
                             "edit this section by hand")
        for (a, b), block in reversed(list(zip(old_blocks, new_blocks))):
            lines[start + a:start + b] = block
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("lessons", nargs="*", help="two-digit lesson numbers (default: all)")
    parser.add_argument("--check", action="store_true",
                        help=f"compare with {TEACHING.name} instead of printing")
    parser.add_argument("--write", action="store_true",
                        help=f"replace the measured tables of {TEACHING.name} in place")
    args = parser.parse_args(argv)
    lessons = measure_all(args.lessons)
    if args.write:
        if args.lessons:
            parser.error("--write measures every lesson: give no lesson numbers")
        TEACHING.write_text(rewrite(TEACHING.read_text(encoding="utf-8"), lessons),
                            encoding="utf-8")
        return 0
    if args.check:
        stale = stale_tables(TEACHING.read_text(encoding="utf-8"), lessons)
        for table in stale:
            print(f"{TEACHING.name} lacks this table (re-run tools/lesson_plan.py):\n{table}\n")
        return 1 if stale else 0
    print(f"Reading speed {READING_SPEED} words per minute; compute at full quality from "
          f"each cell's execution timestamps.\n")
    for lesson in lessons:
        print(f"### {lesson.title}\n\n{lesson_table(lesson)}\n\n{session_plan(lesson)}\n")
    print(f"### Overview\n\n{overview_table(lessons)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
