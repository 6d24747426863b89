"""Where do people look? A clickable grid over a photo, saved as JSON, merged into a heatmap.

A student sees the photo as the model sees it (the centre square crop of
:func:`helpers.prepare`) under an N x N grid (20 x 20 by default) and clicks
the cells they look at to decide the class. Each answer is one small JSON
file; a class's files merge into a human attention map: the fraction of
annotators who marked each cell, at any size (e.g. the model's 224 x 224),
ready to compare with any explanation (:mod:`helpers.metrics`).

The JSON format (version 1), one file per annotator, image and class::

    {
      "format": "unmasking-cnns-attention",
      "version": 1,
      "image": "chelsea",               # sample name or file name of the photo
      "grid_size": 20,                   # the grid is grid_size x grid_size cells
      "class_index": 285,                # ImageNet class index ...
      "class_name": "Egyptian_cat",      # ... and its short name (must agree)
      "annotator": "student-07",         # any id; no personal data needed
      "cells": [[7, 5], [7, 6], ...],    # marked cells as [row, column], 0-based, top-left first
      "timestamp": "2026-05-04T10:15:00Z",   # ISO 8601, UTC
      "note": "optional free text"
    }

Cell (row r, column c) covers rows r*H/N .. (r+1)*H/N and columns
c*W/N .. (c+1)*W/N of the square crop, whatever its size H x W.

A class's answers: :func:`collect_annotations` (or the command
``python -m helpers.attention merge <folders, zip files or .json files> --out
<folder>``) gathers every student's files, validates them (an error names
each bad file), drops duplicates and keeps each student's latest answer;
:func:`class_agreement` measures how much students agree (mean pairwise IoU
of their cells and Fleiss' kappa over the grid cells), and
:func:`compare_with_class` scores the models' maps against the class's map
(``python -m helpers.attention agreement <folder>`` prints the agreement).

Written by hand: no library provides such an annotation widget, and the two
agreement statistics are a few lines each (formulas in their docstrings).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import stat
import struct
import sys
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .checks import positive_int
from .images import MAX_PIXELS, SAMPLES, load_image, resize_image, target_size
from .labels import DATA_DIR, class_index as lookup_class_index, class_name as lookup_class_name
from .metrics import ScoreTable, human_agreement

__all__ = [
    "load_annotations",
    "attention_map",
    "human_attention_map",
    "attention_grid",
    "collect_annotations",
    "pairwise_iou",
    "fleiss_kappa",
    "class_agreement",
    "compare_with_class",
]

ATTENTION_FORMAT = "unmasking-cnns-attention"
ATTENTION_VERSION = 1
ATTENTION_DIR = DATA_DIR / "attention"
DEFAULT_GRID = 20
MAX_GRID = 100
_REQUIRED = ("version", "image", "grid_size", "class_index", "class_name", "annotator", "cells",
             "timestamp")


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _check_grid_size(grid_size) -> int:
    if isinstance(grid_size, (bool, np.bool_)) or not isinstance(grid_size, (int, np.integer)):
        raise TypeError(f"grid_size must be an integer, not {type(grid_size).__name__}")
    if not 1 <= grid_size <= MAX_GRID:
        raise ValueError(f"grid_size must lie in 1..{MAX_GRID}, not {grid_size}")
    return int(grid_size)


def _check_cells(cells, grid_size: int) -> list[list[int]]:
    """Unique [row, col] pairs inside the grid, sorted top-left first."""
    if isinstance(cells, (str, bytes)) or not hasattr(cells, "__iter__"):
        raise TypeError("cells must be a list of [row, column] pairs")
    checked = set()
    for cell in cells:
        if (isinstance(cell, (str, bytes)) or not hasattr(cell, "__len__") or len(cell) != 2
                or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                           for v in cell)):
            raise ValueError(f"each cell must be a [row, column] pair of integers; got {cell!r}")
        row, col = int(cell[0]), int(cell[1])
        if not (0 <= row < grid_size and 0 <= col < grid_size):
            raise ValueError(f"cell {[row, col]} lies outside the {grid_size}x{grid_size} grid "
                             f"(rows and columns are 0..{grid_size - 1})")
        checked.add((row, col))
    return [list(cell) for cell in sorted(checked)]


def _resolve_class(class_index, class_name) -> tuple[int, str]:
    if class_index is None and class_name is None:
        raise ValueError("an annotation needs its class: give class_index or class_name")
    if class_index is None:
        index = lookup_class_index(class_name)
    else:
        index = lookup_class_index(class_index)
    name = lookup_class_name(index)
    if class_name is not None and lookup_class_index(class_name) != index:
        raise ValueError(f"class_index {index} is '{name}', but class_name says {class_name!r}")
    return index, name


@dataclass
class AttentionAnnotation:
    """One annotator's cells for one image and class (the JSON format above)."""

    image: str
    class_index: int
    class_name: str
    cells: list[list[int]]
    grid_size: int = DEFAULT_GRID
    annotator: str = "anonymous"
    timestamp: str = field(default_factory=_now)
    note: str = ""
    version: int = ATTENTION_VERSION

    def __post_init__(self):
        if not isinstance(self.image, str) or not self.image.strip():
            raise ValueError("an annotation needs the image's name (a non-empty string)")
        if not isinstance(self.annotator, str) or not self.annotator.strip():
            raise ValueError("the annotator id must be a non-empty string")
        self.grid_size = _check_grid_size(self.grid_size)
        self.class_index, self.class_name = _resolve_class(self.class_index, self.class_name)
        self.cells = _check_cells(self.cells, self.grid_size)

    @classmethod
    def create(cls, image: str, class_index, cells, *, grid_size: int = DEFAULT_GRID,
               annotator: str = "anonymous", note: str = "") -> "AttentionAnnotation":
        """An annotation made now; ``class_index`` may be an index or a class name."""
        if isinstance(class_index, str):
            index, name = _resolve_class(None, class_index)
        else:
            index, name = _resolve_class(class_index, None)
        return cls(image, index, name, cells, grid_size, annotator, _now(), note)

    def to_dict(self) -> dict:
        data = {"format": ATTENTION_FORMAT, "version": self.version, "image": self.image,
                "grid_size": self.grid_size, "class_index": self.class_index,
                "class_name": self.class_name, "annotator": self.annotator,
                "cells": [list(cell) for cell in self.cells], "timestamp": self.timestamp}
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "the annotation") -> "AttentionAnnotation":
        if not isinstance(data, dict):
            raise ValueError(f"{source} must be a JSON object, not {type(data).__name__}")
        if data.get("format", ATTENTION_FORMAT) != ATTENTION_FORMAT:
            raise ValueError(f"{source} is not an attention annotation (format "
                             f"{data.get('format')!r}, expected {ATTENTION_FORMAT!r})")
        missing = [key for key in _REQUIRED if key not in data]
        if missing:
            raise ValueError(f"{source} lacks the field(s) {', '.join(missing)}; "
                             f"required: {', '.join(_REQUIRED)}")
        if data["version"] != ATTENTION_VERSION:
            raise ValueError(f"{source} has version {data['version']!r}; this course reads "
                             f"version {ATTENTION_VERSION}")
        try:
            datetime.fromisoformat(str(data["timestamp"]).replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{source} has a timestamp that is not ISO 8601: "
                             f"{data['timestamp']!r}") from None
        try:
            return cls(image=data["image"], class_index=data["class_index"],
                       class_name=data["class_name"], cells=data["cells"],
                       grid_size=data["grid_size"], annotator=data["annotator"],
                       timestamp=str(data["timestamp"]), note=str(data.get("note", "")))
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: {error}") from None

    def mask(self, size=224) -> np.ndarray:
        """The marked cells as a boolean (H, W) mask; ``size`` an int or (H, W)."""
        return cells_to_mask(self.cells, self.grid_size, size)

    def file_name(self) -> str:
        safe = lambda text: re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "x"  # noqa: E731
        return f"{safe(Path(self.image).stem)}__{safe(self.class_name)}__{safe(self.annotator)}.json"


def save_annotation(annotation: AttentionAnnotation, path=None, *,
                    overwrite: bool = False) -> Path:
    """Write an annotation as JSON; ``path`` a file or a folder (default: ./attention_answers).

    In a folder the file is named ``<image>__<class>__<annotator>.json``.
    Returns the path written. An existing file is kept unless ``overwrite``.
    """
    if not isinstance(annotation, AttentionAnnotation):
        raise TypeError(f"expected an AttentionAnnotation, not {type(annotation).__name__}")
    target = Path("attention_answers") if path is None else Path(path)
    if target.suffix.lower() != ".json":
        target = target / annotation.file_name()
    if target.exists() and not overwrite:
        raise FileExistsError(f"'{target}' exists; pass overwrite=True or another path")
    target.parent.mkdir(parents=True, exist_ok=True)
    data = annotation.to_dict()
    # One field per line, the cells on one line: short files that read well in a diff.
    cells = json.dumps(data.pop("cells"))
    text = json.dumps({**data, "cells": "CELLS"}, indent=1).replace('"CELLS"', cells)
    target.write_text(text + "\n", encoding="utf-8")
    return target


def load_annotation(path) -> AttentionAnnotation:
    """Read and validate one annotation file; a clear ValueError says what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no annotation file at '{_display(path)}'")
    try:
        return _parse(_read_file(path, follow=True))
    except ValueError as error:
        raise ValueError(f"'{_display(path)}' {error}") from None


def load_annotations(folder=None, *, image: str | None = None,
                     class_index=None) -> list[AttentionAnnotation]:
    """Every ``*.json`` annotation in ``folder`` (default: the course's data/attention),
    optionally only those of one ``image`` and class (an index or name), sorted by file name."""
    folder = ATTENTION_DIR if folder is None else Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no folder '{folder}'")
    wanted = None if class_index is None else lookup_class_index(class_index)
    found = []
    for path in sorted(folder.glob("*.json")):
        annotation = load_annotation(path)
        if image is not None and annotation.image != image:
            continue
        if wanted is not None and annotation.class_index != wanted:
            continue
        found.append(annotation)
    return found


def _size(size) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else tuple(size)
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"size must be positive, got {size}")
    if int(height) * int(width) > MAX_PIXELS:  # refused before the mask is allocated
        raise ValueError(f"size must be at most {MAX_PIXELS:,} pixels (height x width), got "
                         f"{int(height)} x {int(width)}")
    return int(height), int(width)


def cells_to_mask(cells, grid_size: int = DEFAULT_GRID, size=224) -> np.ndarray:
    """Grid cells [[row, col], ...] as a boolean (H, W) mask of ``size``."""
    grid_size = _check_grid_size(grid_size)
    height, width = _size(size)
    row_edges = np.round(np.linspace(0, height, grid_size + 1)).astype(int)
    col_edges = np.round(np.linspace(0, width, grid_size + 1)).astype(int)
    mask = np.zeros((height, width), dtype=bool)
    for row, col in _check_cells(cells, grid_size):
        mask[row_edges[row]:row_edges[row + 1], col_edges[col]:col_edges[col + 1]] = True
    return mask


def attention_map(annotations, size=224) -> np.ndarray:
    """Merge annotations into a human attention map: per pixel, the fraction
    of annotators who marked it (float32 0..1, shape ``size``).

    All annotations must be of the same image and class (filter with
    :func:`load_annotations`); they may use different grid sizes.
    """
    if isinstance(annotations, AttentionAnnotation):
        annotations = [annotations]
    annotations = list(annotations)
    if not annotations:
        raise ValueError("no annotations to merge (check the folder, image and class)")
    for item in annotations:
        if not isinstance(item, AttentionAnnotation):
            raise TypeError(f"expected AttentionAnnotation objects, not {type(item).__name__}")
    kinds = {(a.image, a.class_index) for a in annotations}
    if len(kinds) > 1:
        listed = ", ".join(f"{image}/{lookup_class_name(index)}" for image, index in sorted(kinds))
        raise ValueError(f"the annotations mix images or classes ({listed}); merge one "
                         "image and class at a time")
    size = target_size(size, "size")
    total = sum(a.mask(size).astype(np.float32) for a in annotations)
    return (total / len(annotations)).astype(np.float32)


def human_attention_map(image: str, class_index, *, folder=None, size=224) -> np.ndarray:
    """The merged human attention map of one image and class from a folder of answers."""
    return attention_map(load_annotations(folder, image=image, class_index=class_index), size)


# --------------------------------------------------------------------------
# A class's answers: collect, agree, compare
# --------------------------------------------------------------------------

@dataclass
class Collection:
    """What :func:`collect_annotations` found: the kept annotations and what it dropped.

    ``annotations``: one per (image, class, annotator), each student's latest
    answer; ``sources``: where each kept one came from; ``duplicates``: files
    identical to a kept answer; ``replaced``: older answers of the same
    student, image and class; ``invalid``: (file, reason) for each bad file
    skipped (only with ``skip_invalid=True``); ``written``: files written to
    ``out``.
    """

    annotations: list
    sources: list
    duplicates: list = field(default_factory=list)
    replaced: list = field(default_factory=list)
    invalid: list = field(default_factory=list)
    written: list = field(default_factory=list)

    def groups(self) -> dict:
        """{(image, class_name): [annotations]}, sorted by image and class."""
        grouped = {}
        for a in sorted(self.annotations, key=lambda a: (a.image, a.class_name, a.annotator)):
            grouped.setdefault((a.image, a.class_name), []).append(a)
        return grouped

    def __str__(self) -> str:
        valid = len(self.annotations) + len(self.duplicates) + len(self.replaced)
        lines = [f"{len(self.annotations)} answers kept from {valid} "
                 f"valid files ({len(self.duplicates)} duplicates, {len(self.replaced)} older "
                 f"answers replaced, {len(self.invalid)} invalid files skipped)"]
        for (image, name), found in self.groups().items():
            lines.append(f"  {_display(image)} / {name}: {len(found)} student(s)")
        for source, reason in self.invalid:
            lines.append(f"  skipped {source}: {reason}")
        return "\n".join(lines)

    __repr__ = __str__


# --------------------------------------------------------------------------
# Reading hand-ins: every file and zip member is bounded and checked on its own
# --------------------------------------------------------------------------

MAX_ANSWER_BYTES = 1_000_000     # an answer is a few kB; a larger file or zip member is refused
MAX_ZIP_MEMBERS = 20_000         # a class of 40 students x 20 photos hands in 800
MAX_ZIP_DIRECTORY = 4 * 2 ** 20  # bytes of a zip's table of contents (about 80 bytes a member)
MAX_FILE_NAME = 255              # bytes of a file name on common file systems (ext4, APFS, NTFS)
_CHUNK = 64 * 1024

_EOCD = struct.Struct("<4s4H2LH")            # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")   # central directory entry
_LOCAL = struct.Struct("<4s2B4HL2L2H")       # local file header


def _printable(text: str) -> str:
    """``text`` with control characters and lone surrogates escaped, so that a hand-in's
    names cannot break a report line or its encoding."""
    try:  # undecodable bytes of a file name come back as themselves, then shown as \xNN
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate from a JSON escape
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def _display(name) -> str:
    """A file or member name as printable text, very long names shortened."""
    text = name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else str(name)
    text = _printable(text)
    return text if len(text) <= 240 else f"{text[:160]}...{text[-60:]}"


def _read_bounded(descriptor: int, what: str) -> bytes:
    """At most MAX_ANSWER_BYTES from an open regular file, counting what is actually read."""
    parts, total = [], 0
    while True:
        chunk = os.read(descriptor, _CHUNK)
        if not chunk:
            return b"".join(parts)
        total += len(chunk)
        if total > MAX_ANSWER_BYTES:
            raise ValueError(f"is larger than {MAX_ANSWER_BYTES:,} bytes: not an attention "
                             f"answer ({what})")
        parts.append(chunk)


def _read_file(path, *, follow: bool) -> bytes:
    """A regular file's bytes, bounded; with ``follow=False`` a symbolic link is refused.

    Opened non-blocking (a FIFO cannot hang the merge) and checked with fstat after
    opening, so what is read is the regular file that was checked."""
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    if not follow:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if not follow and os.path.islink(path):
            raise ValueError("is a symbolic link: not followed (copy the file itself)") from None
        raise ValueError(f"cannot be opened: {error.strerror or error}") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ValueError("is not a regular file (a device, pipe or socket): not read")
        return _read_bounded(descriptor, "a file")
    except OSError as error:
        raise ValueError(f"cannot be read: {error.strerror or error}") from None
    finally:
        os.close(descriptor)


def _folder_files(root: Path):
    """(label, bytes or ValueError) for every ``*.json`` in a folder and its subfolders.

    Hidden files and folders are skipped; symbolic links are never followed (a
    link named ``*.json`` or leading to a folder is reported); only regular files
    are read. Iterative, so a deep tree cannot exhaust the stack."""
    pending = [os.fspath(root)]
    while pending:
        folder = pending.pop()
        try:
            with os.scandir(folder) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as error:
            yield _display(folder), ValueError(f"cannot be listed: {error.strerror or error}")
            continue
        for entry in reversed(entries):  # the stack pops subfolders in name order
            if entry.name.startswith("."):
                continue
            json_name = entry.name.lower().endswith(".json")
            try:
                if entry.is_symlink():
                    if json_name or os.path.isdir(entry.path):
                        yield _display(entry.path), ValueError(
                            "is a symbolic link: not followed (copy the file or folder itself)")
                elif entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif json_name:
                    if not entry.is_file(follow_symlinks=False):
                        raise ValueError("is not a regular file (a device, pipe or socket): "
                                         "not read")
                    yield _display(entry.path), _read_file(entry.path, follow=False)
            except (ValueError, OSError) as error:
                yield _display(entry.path), ValueError(str(error))


def _zip64_sizes(extra: bytes, sizes: list) -> list:
    """Replace the 0xFFFFFFFF placeholders of (file size, compressed size, offset) from the
    ZIP64 extra field (tag 1) that holds them, in that order."""
    at = 0
    while at + 4 <= len(extra):
        tag, length = struct.unpack_from("<2H", extra, at)
        if tag == 1:
            values = extra[at + 4:at + 4 + length]
            index = 0
            for slot, value in enumerate(sizes):
                if value == 0xFFFFFFFF:
                    if index + 8 > len(values):
                        raise ValueError("has a truncated ZIP64 size field (corrupt)")
                    sizes[slot] = struct.unpack_from("<Q", values, index)[0]
                    index += 8
            return sizes
        at += 4 + length
    if 0xFFFFFFFF in sizes:
        raise ValueError("lacks the ZIP64 size field its header announces (corrupt)")
    return sizes


def _zip_directory(file, size: int):
    """(entries, directory bytes, concat) of a zip file, every size checked before reading."""
    tail_length = min(size, _EOCD.size + 65535)
    file.seek(size - tail_length)
    tail = file.read(tail_length)
    at = tail.rfind(b"PK\x05\x06")
    while at >= 0 and at + _EOCD.size > len(tail):
        at = tail.rfind(b"PK\x05\x06", 0, at)
    if at < 0:
        raise ValueError("is not a zip file (no end-of-archive record): not read")
    _, disk, directory_disk, _, entries, directory_size, directory_offset, _ = \
        _EOCD.unpack_from(tail, at)
    directory_end = size - tail_length + at
    if 0xFFFF in (entries, disk, directory_disk) or 0xFFFFFFFF in (directory_size,
                                                                    directory_offset):
        start = directory_end - _EOCD64_LOCATOR.size - _EOCD64.size
        if start < 0:
            raise ValueError("is a truncated ZIP64 archive (corrupt): not read")
        file.seek(start)
        record = file.read(_EOCD64.size + _EOCD64_LOCATOR.size)
        if record[:4] != b"PK\x06\x06" or record[_EOCD64.size:_EOCD64.size + 4] != b"PK\x06\x07":
            raise ValueError("has a broken ZIP64 end-of-archive record (corrupt): not read")
        (_, _, _, _, disk, directory_disk, _, entries, directory_size,
         directory_offset) = _EOCD64.unpack_from(record)
        directory_end = start
    if disk or directory_disk:
        raise ValueError("spans several disks (a split archive): not read")
    if entries > MAX_ZIP_MEMBERS:
        raise ValueError(f"has {entries:,} members, more than the {MAX_ZIP_MEMBERS:,} a class's "
                         "answers need: not read")
    if directory_size > MAX_ZIP_DIRECTORY:
        raise ValueError(f"has a table of contents of {directory_size:,} bytes, more than the "
                         f"{MAX_ZIP_DIRECTORY:,} accepted: not read")
    concat = directory_end - directory_size - directory_offset  # bytes prepended to the archive
    if concat < 0:
        raise ValueError("has a table of contents that does not fit the file (corrupt): not read")
    file.seek(directory_offset + concat)
    directory = file.read(directory_size)
    if len(directory) != directory_size:
        raise ValueError("has a truncated table of contents (corrupt): not read")
    return entries, directory, concat


def _zip_member(file, header_offset: int, method: int, compressed: int, crc: int) -> bytes:
    """One member's bytes: the real decompressed size is counted as it streams (never the
    header's claim), at most MAX_ANSWER_BYTES, and the CRC is checked."""
    if compressed > MAX_ANSWER_BYTES + 4096:  # deflate never grows an answer by more
        raise ValueError(f"is larger than {MAX_ANSWER_BYTES:,} bytes: not an attention answer")
    file.seek(header_offset)
    header = file.read(_LOCAL.size)
    if len(header) != _LOCAL.size or header[:4] != b"PK\x03\x04":
        raise ValueError("has no valid local header (corrupt)")
    name_length, extra_length = _LOCAL.unpack(header)[-2:]
    file.seek(header_offset + _LOCAL.size + name_length + extra_length)
    inflate = zlib.decompressobj(-15) if method == 8 else None
    parts, total, check, left = [], 0, 0, compressed
    try:
        while left > 0 and not (inflate and inflate.eof):
            chunk = file.read(min(_CHUNK, left))
            if not chunk:
                raise ValueError("is truncated (corrupt)")
            left -= len(chunk)
            while chunk:
                data = chunk if inflate is None else inflate.decompress(
                    chunk, MAX_ANSWER_BYTES + 1 - total)
                chunk = b"" if inflate is None else inflate.unconsumed_tail
                total += len(data)
                if total > MAX_ANSWER_BYTES:
                    raise ValueError(f"decompresses to more than {MAX_ANSWER_BYTES:,} bytes: not "
                                     "an attention answer")
                check = zlib.crc32(data, check)
                parts.append(data)
    except zlib.error as error:
        raise ValueError(f"is corrupt ({error})") from None
    if inflate is not None and not inflate.eof:
        raise ValueError("is truncated (its compressed data ends early; corrupt)")
    if check != crc:
        raise ValueError("fails its CRC check (corrupt)")
    return b"".join(parts)


def _zip_files(path: Path, label: str):
    """(label, bytes or ValueError) for every ``*.json`` member of a zip file.

    The table of contents and each member are read by this module, with every
    size checked before it is read: a failure of one member (corrupt, bad CRC,
    encrypted, an unknown compression, a name that is not UTF-8) is reported
    for that member alone and the others are still read."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_BINARY", 0))
    except OSError as error:
        yield label, ValueError(f"cannot be opened: {error.strerror or error}")
        return
    with open(descriptor, "rb") as file:
        try:
            facts = os.fstat(descriptor)
            if not stat.S_ISREG(facts.st_mode):
                raise ValueError("is not a regular file: not read")
            entries, directory, concat = _zip_directory(file, facts.st_size)
        except (ValueError, OSError) as error:
            yield label, ValueError(str(error) if isinstance(error, ValueError) else
                                    f"cannot be read: {error.strerror or error}")
            return
        at = 0
        for _ in range(entries):
            if at + _CENTRAL.size > len(directory):
                yield label, ValueError("has a truncated table of contents (corrupt): the "
                                        "members listed after this point are not read")
                return
            fields = _CENTRAL.unpack_from(directory, at)
            (signature, _, _, _, _, flags, method, _, _, crc, compressed, size, name_length,
             extra_length, comment_length, _, _, _, offset) = fields
            if signature != b"PK\x01\x02":
                yield label, ValueError("has a broken table of contents (corrupt): the members "
                                        "listed after this point are not read")
                return
            start = at + _CENTRAL.size
            raw_name = directory[start:start + name_length]
            extra = directory[start + name_length:start + name_length + extra_length]
            at = start + name_length + extra_length + comment_length
            shown = _display(raw_name if flags & 0x800 else raw_name.decode("cp437"))
            base = shown.rsplit("/", 1)[-1]
            if (shown.endswith("/") or not shown.lower().endswith(".json")
                    or "__MACOSX" in shown or base.startswith(".")):
                continue
            member = f"{label}:{shown}"
            try:
                if flags & 0x800:
                    try:
                        raw_name.decode("utf-8")
                    except UnicodeDecodeError:
                        raise ValueError("has a name that is not valid UTF-8 although its "
                                         "header says so (corrupt)") from None
                if flags & 0x1:
                    raise ValueError("is encrypted (password-protected): not read; zip the "
                                     "answers without a password")
                if method not in (0, 8):
                    raise ValueError(f"uses compression method {method}; only stored and "
                                     "deflated members are read (re-zip with any standard tool)")
                size, compressed, offset = _zip64_sizes(extra, [size, compressed, offset])
                yield member, _zip_member(file, offset + concat, method, compressed, crc)
            except ValueError as error:
                yield member, error
            except OSError as error:
                yield member, ValueError(f"cannot be read: {error.strerror or error}")


def _annotation_files(source: Path):
    """(label, bytes or ValueError) for every .json answer in a folder (recursively), a
    zip file or a .json file; the source itself may be a link (it was named by hand)."""
    label = _display(source)
    try:
        facts = source.stat()
    except FileNotFoundError:
        raise FileNotFoundError(f"no folder or file '{label}'") from None
    except OSError as error:
        raise ValueError(f"'{label}' cannot be read: {error.strerror or error}") from None
    if stat.S_ISDIR(facts.st_mode):
        yield from _folder_files(source)
    elif stat.S_ISREG(facts.st_mode) and source.suffix.lower() == ".zip":
        yield from _zip_files(source, label)
    elif stat.S_ISREG(facts.st_mode) and source.suffix.lower() == ".json":
        try:
            yield label, _read_file(source, follow=True)
        except ValueError as error:
            yield label, error
    else:
        raise ValueError(f"'{label}' is neither a folder, a .zip nor a .json file")


def _parse(content: bytes) -> AttentionAnnotation:
    try:
        data = json.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        raise ValueError("is not a UTF-8 text file") from None
    except RecursionError:
        raise ValueError("is JSON nested too deeply to be an attention answer") from None
    except ValueError as error:  # json.JSONDecodeError, or an integer of thousands of digits
        raise ValueError(f"is not valid JSON: {error}") from None
    try:
        annotation = AttentionAnnotation.from_dict(data, source="the file")
    except RecursionError:
        raise ValueError("holds values nested too deeply to be an attention answer") from None
    except (TypeError, ValueError) as error:
        raise ValueError(str(error).replace("the file ", "", 1).replace("the file: ", "", 1)) \
            from None
    name = annotation.file_name()
    if len(name.encode("utf-8")) > MAX_FILE_NAME:
        raise ValueError(f"its image name and annotator id make a file name of "
                         f"{len(name.encode('utf-8'))} bytes, more than the {MAX_FILE_NAME} a "
                         f"file system holds: shorten the annotator id ({len(annotation.annotator)}"
                         " characters)")
    return annotation


def _timestamp(annotation: AttentionAnnotation) -> datetime:
    moment = datetime.fromisoformat(annotation.timestamp.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _canonical(annotation: AttentionAnnotation) -> str:
    return json.dumps(annotation.to_dict(), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True)


def _rank(item) -> tuple:
    """The order that picks a student's kept answer: the latest time, then (a tie) the answer
    whose canonical JSON sorts last; identical answers keep the first label in sort order."""
    annotation, label = item
    return _timestamp(annotation), _canonical(annotation), _Reversed(label)


class _Reversed(str):
    __slots__ = ()

    def __lt__(self, other):
        return str.__gt__(self, other)

    def __gt__(self, other):
        return str.__lt__(self, other)


def collect_annotations(sources, *, out=None, skip_invalid: bool = False,
                        overwrite: bool = False) -> Collection:
    """Gather a class's answers from folders, zip files and .json files into one set.

    Every ``*.json`` file (folders searched recursively, zip files opened) is
    validated like :func:`load_annotation`; every hand-in is treated as hostile:
    a file or zip member is read up to ``MAX_ANSWER_BYTES`` (a member's real
    decompressed size is counted as it streams, whatever its header claims),
    symbolic links inside a folder are not followed and only regular files are
    read. A bad file or member (too large, corrupt, failing its CRC, encrypted,
    a name that is not UTF-8, malformed or deeply nested JSON, an annotator id
    too long for a file name, ...) raises one ValueError that names every bad
    one and why, unless ``skip_invalid=True``: then they are listed in the
    result's ``invalid`` and every valid answer is still merged.

    Identical answers (same image, class, annotator and cells) count once;
    when one student answered the same image and class more than once, the
    answer with the latest timestamp is kept, and between answers with the
    same time the one whose canonical JSON (sorted keys, no spaces) sorts last:
    the result never depends on the order of the sources. With ``out`` (a
    folder) the kept answers are written there, one file each, named
    ``<image>__<class>__<annotator>.json``, ready for :func:`load_annotations`;
    files already there are refused before anything is written, unless
    ``overwrite``.
    """
    if isinstance(sources, (str, Path)):
        sources = [sources]
    sources = [Path(source) for source in sources]
    if not sources:
        raise ValueError("collect_annotations needs at least one folder, zip or .json file")
    answers: dict = {}
    invalid = []
    for source in sources:
        for label, content in _annotation_files(source):
            try:
                if isinstance(content, ValueError):
                    raise content
                annotation = _parse(content)
            except ValueError as error:
                invalid.append((label, str(error)))
                continue
            key = (annotation.image, annotation.class_index, annotation.annotator)
            answers.setdefault(key, []).append((annotation, label))
    invalid.sort()
    if invalid and not skip_invalid:
        listed = "\n".join(f"  {label}: {reason}" for label, reason in invalid)
        raise ValueError(f"{len(invalid)} file(s) are not valid attention answers "
                         f"(fix or remove them, or pass skip_invalid=True):\n{listed}")
    if not answers:
        raise ValueError("no attention answers (*.json) found in "
                         + ", ".join(f"'{_display(source)}'" for source in sources))
    kept, duplicates, replaced = [], [], []
    for found in answers.values():
        winner = max(found, key=_rank)
        kept.append(winner)
        for annotation, label in found:
            if annotation is winner[0]:
                continue
            same = (annotation.cells == winner[0].cells
                    and annotation.grid_size == winner[0].grid_size)
            (duplicates if same else replaced).append(label)
    kept.sort(key=lambda item: item[0].file_name())
    collection = Collection([a for a, _ in kept], [label for _, label in kept],
                            sorted(duplicates), sorted(replaced), invalid)
    if out is not None:
        folder = Path(out)
        names = [a.file_name() for a in collection.annotations]
        clashes = {name for name in names if names.count(name) > 1}
        if clashes:  # ids that differ only in characters a file name cannot hold
            raise ValueError("annotator ids clash once made into file names: "
                             + ", ".join(sorted(_display(name) for name in clashes)))
        if not overwrite:
            present = [name for name in names if os.path.lexists(folder / name)]
            if present:
                raise FileExistsError(
                    f"{len(present)} file(s) exist in '{_display(folder)}' (e.g. "
                    f"{_display(present[0])}); pass overwrite=True (--overwrite) or another "
                    "folder")
        collection.written = [save_annotation(a, folder, overwrite=overwrite)
                              for a in collection.annotations]
    return collection


def _same_grid(annotations) -> tuple[list, int]:
    if isinstance(annotations, AttentionAnnotation):
        annotations = [annotations]
    annotations = list(annotations)
    for item in annotations:
        if not isinstance(item, AttentionAnnotation):
            raise TypeError(f"expected AttentionAnnotation objects, not {type(item).__name__}")
    if len(annotations) < 2:
        raise ValueError(f"agreement needs at least 2 students' answers, got {len(annotations)}")
    kinds = {(a.image, a.class_index) for a in annotations}
    if len(kinds) > 1:
        raise ValueError("the answers mix images or classes; measure one image and class at a "
                         "time (Collection.groups() splits them)")
    sizes = {a.grid_size for a in annotations}
    if len(sizes) > 1:
        raise ValueError(f"the answers use different grid sizes {sorted(sizes)}; agreement is "
                         "measured cell by cell on one grid")
    return annotations, sizes.pop()


def pairwise_iou(annotations) -> np.ndarray:
    """IoU of the marked cells for every pair of students: |A & B| / |A | B|.

    Returns the n(n-1)/2 values (pairs in order (0,1), (0,2), ..., (1,2), ...);
    their mean is the class's mean pairwise IoU. Two empty answers agree
    perfectly (IoU 1).
    """
    annotations, _ = _same_grid(annotations)
    cells = [{tuple(cell) for cell in a.cells} for a in annotations]
    values = [len(a & b) / len(a | b) if a | b else 1.0
              for a, b in itertools.combinations(cells, 2)]
    return np.array(values, dtype=np.float64)


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa (Fleiss 1971, *Measuring nominal scale agreement among many raters*).

    ``counts``: an (items, categories) array, ``counts[i, j]`` = how many of
    the n raters put item i in category j (every row sums to n). With
    p_j = sum_i n_ij / (N n), P_i = (sum_j n_ij^2 - n) / (n (n - 1)),
    P = mean_i P_i and P_e = sum_j p_j^2:
    kappa = (P - P_e) / (1 - P_e): 1 for perfect agreement, 0 for the
    agreement chance alone gives, negative below it. NaN when P_e = 1 (every
    rating in one category: there is nothing to agree on).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] < 1 or counts.shape[1] < 2:
        raise ValueError(f"counts must be an (items, categories) array with at least two "
                         f"categories; got shape {counts.shape}")
    if (counts < 0).any() or not np.allclose(counts, np.round(counts)):
        raise ValueError("counts must be non-negative whole numbers of raters")
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError("every item needs the same number of raters, at least 2; got "
                         f"{sorted(set(raters.astype(int).tolist()))}")
    n = raters[0]
    shares = counts.sum(axis=0) / counts.sum()
    per_item = ((counts ** 2).sum(axis=1) - n) / (n * (n - 1))
    expected = float((shares ** 2).sum())
    if np.isclose(expected, 1.0):
        return float("nan")
    return float((per_item.mean() - expected) / (1 - expected))


def cell_counts(annotations) -> np.ndarray:
    """(grid_size, grid_size) ints: how many students marked each cell (the class's map)."""
    annotations, grid_size = _same_grid(annotations)
    counts = np.zeros((grid_size, grid_size), dtype=np.int64)
    for a in annotations:
        for row, col in a.cells:
            counts[row, col] += 1
    return counts


@dataclass
class Agreement:
    """How much a class agrees on one image and class (:func:`class_agreement`)."""

    image: str
    class_name: str
    students: int
    mean_iou: float
    iou_spread: float       # standard deviation over the pairs
    kappa: float
    mean_cells: float       # cells a student marks, on average
    cell_frequency: np.ndarray = field(repr=False)  # (G, G): fraction who marked each cell

    def __str__(self) -> str:
        return (f"{self.image} / {self.class_name}: {self.students} students, mean pairwise IoU "
                f"{self.mean_iou:.2f} (sd {self.iou_spread:.2f}), Fleiss' kappa "
                f"{self.kappa:.2f}, {self.mean_cells:.0f} cells each on average")


def class_agreement(annotations) -> Agreement:
    """Agreement between students on one image and class.

    Mean (and standard deviation) of the pairwise IoU of their cells
    (:func:`pairwise_iou`), and Fleiss' kappa with every grid cell an item
    rated "marked" or "not marked" by each student (:func:`fleiss_kappa`).
    IoU ignores the cells nobody marked; kappa counts them, and corrects for
    the agreement expected by chance from how many cells students mark.
    """
    annotations, grid_size = _same_grid(annotations)
    counts = cell_counts(annotations).ravel()
    n = len(annotations)
    ious = pairwise_iou(annotations)
    return Agreement(annotations[0].image, annotations[0].class_name, n, float(ious.mean()),
                     float(ious.std()), fleiss_kappa(np.stack([counts, n - counts], axis=1)),
                     float(np.mean([len(a.cells) for a in annotations])),
                     (counts.reshape(grid_size, grid_size) / n).astype(np.float32))


def compare_with_class(maps: dict, annotations, *, size=224, k: float | None = None,
                       human_threshold: float = 0.5):
    """Score each model map against the class's map (fraction of students per cell).

    ``maps``: {method: (H, W) map}; ``annotations``: the class's answers for
    one image and class. Uses the plausibility measures of lesson 09
    (:func:`helpers.metrics.human_agreement`: IoU of the map's top pixels with
    the cells at least ``human_threshold`` of the students marked, the
    pointing game, Spearman correlation with the class's map). Returns a
    :class:`helpers.metrics.ScoreTable`.
    """
    if not isinstance(maps, dict):
        raise TypeError(f"maps must be a dict {{method name: (H, W) map}}, not "
                        f"{type(maps).__name__}")
    if not maps:
        raise ValueError("maps is empty: give at least one {method name: (H, W) map}")
    agreement = class_agreement(annotations)
    shapes = {np.shape(heat) for heat in maps.values()}
    if len(shapes) == 1 and len(next(iter(shapes))) == 2:
        size = next(iter(shapes))
    human = attention_map(annotations, size)
    rows = []
    for name, heat in maps.items():
        scores = human_agreement(heat, human, k=k, human_threshold=human_threshold)
        rows.append((name, [scores["iou"], float(scores["pointing"]), scores["spearman"]]))
    return ScoreTable(["IoU", "pointing", "Spearman"], rows,
                      {"IoU": "higher", "pointing": "higher", "Spearman": "higher"},
                      title=f"maps vs the class's map: {agreement}")


def _say(text, stream) -> None:
    """Print a report that may quote hand-ins: every line printable, in the stream's encoding."""
    text = "\n".join(_printable(line) for line in str(text).split("\n"))
    encoding = getattr(stream, "encoding", None) or "utf-8"
    print(text.encode(encoding, "backslashreplace").decode(encoding, "replace"), file=stream)


def _main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m helpers.attention",
        description="Collect a class's attention answers and measure how much students agree.")
    commands = parser.add_subparsers(dest="command", required=True)
    merge = commands.add_parser(
        "merge", help="gather answers from folders, zip files and JSON files into one folder "
        "(validated, deduplicated)",
        description="Gather a class's answers into one folder. Every hand-in is read as "
        f"untrusted: a file or zip member larger than {MAX_ANSWER_BYTES:,} bytes (its real "
        "decompressed size) is refused, symbolic links inside folders are not followed, only "
        "regular files are read, and every bad file or member is named with the reason. "
        "A student's latest answer (per image and class) is kept; between two answers with "
        "the same time, the one whose canonical JSON (sorted keys, no spaces) sorts last, so "
        "the result never depends on the order of the sources.")
    merge.add_argument("sources", nargs="+", help="folders, .zip or .json files")
    merge.add_argument("--out", required=True, help="folder to write the kept answers to")
    merge.add_argument("--skip-invalid", action="store_true",
                       help="skip bad files and zip members (each listed with the reason) and "
                            "merge every valid answer, instead of stopping")
    merge.add_argument("--overwrite", action="store_true",
                       help="replace files already in --out")
    agree = commands.add_parser("agreement", help="agreement between students per image and "
                                "class (mean pairwise IoU, Fleiss' kappa)")
    agree.add_argument("sources", nargs="+", help="folders, .zip or .json files")
    agree.add_argument("--skip-invalid", action="store_true",
                       help="skip bad files and zip members (listed) instead of stopping")
    args = parser.parse_args(argv)
    try:
        if args.command == "merge":
            collection = collect_annotations(args.sources, out=args.out,
                                             skip_invalid=args.skip_invalid,
                                             overwrite=args.overwrite)
            _say(collection, sys.stdout)
            _say(f"wrote {len(collection.written)} files to {args.out}", sys.stdout)
        else:
            collection = collect_annotations(args.sources, skip_invalid=args.skip_invalid)
            for found in collection.groups().values():
                _say(class_agreement(found) if len(found) > 1 else
                     f"{found[0].image} / {found[0].class_name}: 1 student, no agreement yet",
                     sys.stdout)
    except (ValueError, OSError) as error:
        _say(f"error: {error}", sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say("interrupted: nothing more was read or written", sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - a command prints a message, never a traceback
        _say(f"error: the merge stopped on an unexpected {type(error).__name__}: {error} "
             "(please report this with the files that caused it)", sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------
# The widget
# --------------------------------------------------------------------------

_MARKED = "rgba(255, 196, 0, 0.55)"
_UNMARKED = "transparent"


def _cell_button_class():
    """A Button that remembers whether it is marked (``value``), toggled by a click.

    ipywidgets' ToggleButton cannot be made transparent (it has no colour
    style), so each cell is a plain Button whose colour follows ``value``.
    """
    import ipywidgets
    import traitlets

    class CellButton(ipywidgets.Button):
        value = traitlets.Bool(False)

        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.style.button_color = _UNMARKED
            self.on_click(lambda button: setattr(button, "value", not button.value))
            self.observe(self._recolour, "value")

        def _recolour(self, change):
            self.style.button_color = _MARKED if change["new"] else _UNMARKED

    return CellButton


class AttentionGrid:
    """A photo under an N x N grid of clickable cells; save the marked cells as JSON.

    ``grid.cells[row][col].value`` is True for a marked cell (a click
    toggles it); :meth:`annotation` and :meth:`save` turn the marked cells
    into an :class:`AttentionAnnotation`. Display ``grid`` (or
    ``grid.widget``) in a notebook.
    """

    def __init__(self, image, class_index=None, *, grid_size: int = DEFAULT_GRID,
                 annotator: str = "", folder="attention_answers", image_name: str | None = None,
                 display_size: int = 440):
        import ipywidgets as widgets
        from PIL import Image

        self.grid_size = _check_grid_size(grid_size)
        display_size = positive_int(display_size, "display_size")
        if image_name is None:
            if isinstance(image, str) and image in SAMPLES:
                image_name = image
            elif isinstance(image, (str, Path)):
                image_name = Path(image).name
            else:
                raise ValueError("pass image_name=... for an image that is not a sample or a file")
        self.image_name = image_name
        self.folder = Path(folder)
        photo = resize_image(load_image(image), (display_size, display_size), "crop")
        buffer = io.BytesIO()
        Image.fromarray(photo).save(buffer, format="PNG")
        n = self.grid_size
        picture = widgets.Image(value=buffer.getvalue(), format="png", layout=widgets.Layout(
            grid_area=f"1 / 1 / {n + 1} / {n + 1}", width="100%", height="100%",
            object_fit="fill"))
        CellButton = _cell_button_class()
        self.cells = [[CellButton(
            description="", tooltip=f"row {row}, column {col}",
            layout=widgets.Layout(grid_area=f"{row + 1} / {col + 1} / {row + 2} / {col + 2}",
                                  width="100%", height="100%", margin="0", padding="0",
                                  border="1px solid rgba(255, 255, 255, 0.3)"))
            for col in range(n)] for row in range(n)]
        cell_px = display_size / n
        self.board = widgets.GridBox(
            [picture] + [button for row in self.cells for button in row],
            layout=widgets.Layout(grid_template_rows=f"repeat({n}, {cell_px:.2f}px)",
                                  grid_template_columns=f"repeat({n}, {cell_px:.2f}px)",
                                  grid_gap="0px", width=f"{display_size}px"))
        if class_index is None:
            class_text = ""
        elif isinstance(class_index, str):
            class_text = lookup_class_name(lookup_class_index(class_index))
        else:
            class_text = lookup_class_name(class_index)
        self.annotator_box = widgets.Text(value=annotator, description="your id",
                                          placeholder="e.g. student-07")
        self.class_box = widgets.Text(value=class_text, description="class",
                                      placeholder="e.g. tabby")
        self.save_button = widgets.Button(description="Save", icon="save", button_style="success")
        self.clear_button = widgets.Button(description="Clear", icon="eraser")
        self.status = widgets.HTML(value=f"Click the cells you look at to decide the class; "
                                         f"answers go to <code>{self.folder}/</code>.")
        self.save_button.on_click(lambda _: self._save_clicked())
        self.clear_button.on_click(lambda _: self.clear())
        self.widget = widgets.VBox([
            widgets.HBox([self.annotator_box, self.class_box]),
            self.board,
            widgets.HBox([self.save_button, self.clear_button]),
            self.status,
        ])

    def marked_cells(self) -> list[list[int]]:
        """The marked cells as [row, col] pairs, top-left first."""
        return [[row, col] for row in range(self.grid_size) for col in range(self.grid_size)
                if self.cells[row][col].value]

    def set_cells(self, cells) -> None:
        """Mark exactly ``cells`` (a list of [row, col]); the others are cleared."""
        wanted = {tuple(cell) for cell in _check_cells(cells, self.grid_size)}
        for row in range(self.grid_size):
            for col in range(self.grid_size):
                self.cells[row][col].value = (row, col) in wanted

    def clear(self) -> None:
        self.set_cells([])

    def annotation(self, note: str = "") -> AttentionAnnotation:
        """The current answer as an annotation (needs an annotator id and a class)."""
        annotator = self.annotator_box.value.strip()
        if not annotator:
            raise ValueError("type an id in the 'your id' box first (any name, e.g. student-07)")
        if not self.class_box.value.strip():
            raise ValueError("type the class in the 'class' box first (e.g. tabby)")
        if not self.marked_cells():
            raise ValueError("no cell is marked yet: click the cells you look at")
        return AttentionAnnotation.create(self.image_name, self.class_box.value.strip(),
                                          self.marked_cells(), grid_size=self.grid_size,
                                          annotator=annotator, note=note)

    def save(self, path=None, *, overwrite: bool = True) -> Path:
        """Save the current answer to ``path`` (a .json file or a folder; default ``folder``)."""
        return save_annotation(self.annotation(), self.folder if path is None else path,
                               overwrite=overwrite)

    def _save_clicked(self) -> None:
        try:
            path = self.save()
        except (ValueError, OSError) as error:
            self.status.value = f"<b style='color:#b00'>Not saved:</b> {error}"
        else:
            self.status.value = (f"Saved {len(self.marked_cells())} cells to "
                                 f"<code>{path}</code>.")

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)


def attention_grid(image, class_index=None, *, grid_size: int = DEFAULT_GRID,
                   annotator: str = "", folder="attention_answers",
                   display_size: int = 440) -> AttentionGrid:
    """The clickable human-attention grid for one photo (see :class:`AttentionGrid`)."""
    return AttentionGrid(image, class_index, grid_size=grid_size, annotator=annotator,
                         folder=folder, display_size=display_size)


if __name__ == "__main__":
    sys.exit(_main())
