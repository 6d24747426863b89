"""Rebuild the bundled attention annotations from hand-specified shapes.

The shapes below were written by one course author looking at each photo's
centre square crop (the model's view) with the 20 x 20 grid drawn over it,
reading row and column coordinates off the grid. Each shape is rasterised to
the cells whose centre lies inside it. Two instructions give two files per
photo and class:

* ``author-extent``: the whole visible extent of the object of the class;
* ``author-parts``: only the parts the author would look at to tell the
  class apart (eyes and nose, crema, badge and ribbons, ...).

These are not answers of study participants. Run from the repository root:
``python data/attention/make_annotations.py``.
"""
import sys
from pathlib import Path

import numpy as np
from matplotlib.path import Path as Polygon

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import helpers as h  # noqa: E402

GRID = 20
TIMESTAMP = "2026-11-22T05:00:00Z"
FOLDER = Path(__file__).resolve().parent

# Coordinates are (row, column) on the 20 x 20 grid, from 0 (top, left) to 20.
# ("ellipse", centre_row, centre_col, radius_rows, radius_cols)
# ("rect", first_row, first_col, last_row, last_col)       whole cells, inclusive
# ("polygon", [(row, col), ...])
SHAPES = {
    ("chelsea", "Egyptian_cat"): {
        "author-extent": [("polygon", [(0, 0), (0, 17), (5, 20), (11, 20), (20, 17), (20, 0)])],
        "author-parts": [("ellipse", 7.5, 6.5, 2.0, 2.8), ("ellipse", 8.5, 15.8, 1.8, 1.8),
                         ("ellipse", 15.6, 12.5, 1.5, 2.2)],
    },
    ("chelsea", "tabby"): {
        "author-extent": [("polygon", [(0, 0), (0, 17), (5, 20), (11, 20), (20, 17), (20, 0)])],
        "author-parts": [("ellipse", 2.5, 10.0, 3.0, 6.5), ("rect", 9, 0, 12, 3),
                         ("rect", 10, 16, 12, 18)],
    },
    ("coffee", "espresso"): {
        "author-extent": [("ellipse", 11.6, 9.8, 8.2, 9.9), ("ellipse", 5.5, 9.8, 4.6, 6.0)],
        "author-parts": [("ellipse", 6.4, 9.7, 3.6, 5.6)],
    },
    ("cat_and_coffee", "Egyptian_cat"): {
        "author-extent": [("rect", 4, 0, 15, 9)],
        "author-parts": [("ellipse", 8.5, 2.8, 1.4, 1.8), ("ellipse", 9.5, 8.7, 1.2, 1.3),
                         ("ellipse", 13.5, 6.5, 1.0, 1.3)],
    },
    ("cat_and_coffee", "espresso"): {
        "author-extent": [("polygon", [(4, 11.5), (4, 18.5), (7, 20), (16, 20), (16, 10),
                                       (6, 10)])],
        "author-parts": [("ellipse", 7.8, 14.5, 2.6, 4.0)],
    },
    ("grace_hopper", "military_uniform"): {
        "author-extent": [("polygon", [(11.5, 7), (11, 13), (13, 17), (15, 20), (20, 20),
                                       (20, 1), (14.5, 1.8), (12.5, 4)]),
                          ("ellipse", 2.0, 10.2, 2.4, 4.2)],
        "author-parts": [("ellipse", 1.0, 10.2, 1.2, 1.8), ("rect", 17, 13, 18, 17),
                         ("rect", 17, 3, 18, 6)],
    },
    ("rocket", "missile"): {
        "author-extent": [("rect", 6, 9, 19, 10)],
        "author-parts": [("rect", 6, 9, 9, 10)],
    },
    ("china", "palace"): {
        "author-extent": [("polygon", [(1, 4), (1, 5), (3.5, 6.5), (5, 10.5), (8, 10.8),
                                       (11.5, 11.8), (15, 12.7), (17, 11), (18.5, 9),
                                       (18.5, 5.5), (16.5, 4), (16, 0), (4.5, 0),
                                       (3.5, 2.5)])],
        "author-parts": [("rect", 1, 4, 2, 4), ("rect", 3, 1, 5, 9), ("rect", 11, 3, 12, 11),
                         ("rect", 16, 5, 17, 11)],
    },
    ("flower", "daisy"): {
        "author-extent": [("ellipse", 10.3, 9.2, 6.6, 6.6), ("ellipse", 19.8, 12.0, 2.2, 3.8)],
        "author-parts": [("ellipse", 10.0, 9.3, 2.6, 2.6)],
    },
}

NOTES = {
    "author-extent": "hand-specified shapes over the whole visible object (course author, "
                     "not a study participant)",
    "author-parts": "hand-specified shapes over the parts that tell the class apart (course "
                    "author, not a study participant)",
}


def cells_of(shapes):
    rows, cols = np.mgrid[0:GRID, 0:GRID]
    centres = np.stack([rows.ravel() + 0.5, cols.ravel() + 0.5], axis=1)
    inside = np.zeros(GRID * GRID, dtype=bool)
    for shape in shapes:
        kind, *args = shape
        if kind == "ellipse":
            centre_row, centre_col, radius_rows, radius_cols = args
            inside |= (((centres[:, 0] - centre_row) / radius_rows) ** 2
                       + ((centres[:, 1] - centre_col) / radius_cols) ** 2) <= 1
        elif kind == "rect":
            first_row, first_col, last_row, last_col = args
            inside |= ((centres[:, 0] >= first_row) & (centres[:, 0] <= last_row + 1)
                       & (centres[:, 1] >= first_col) & (centres[:, 1] <= last_col + 1))
        elif kind == "polygon":
            inside |= Polygon(args[0]).contains_points(centres)
        else:
            raise ValueError(f"unknown shape {kind!r}")
    return [[int(r), int(c)] for r, c in np.argwhere(inside.reshape(GRID, GRID))]


def main():
    for old in FOLDER.glob("*.json"):
        old.unlink()
    for (image, class_name), by_annotator in SHAPES.items():
        for annotator, shapes in by_annotator.items():
            annotation = h.AttentionAnnotation.create(image, class_name, cells_of(shapes),
                                                      grid_size=GRID, annotator=annotator,
                                                      note=NOTES[annotator])
            annotation.timestamp = TIMESTAMP
            path = h.save_annotation(annotation, FOLDER)
            print(f"{path.name}: {len(annotation.cells)} cells")


if __name__ == "__main__":
    main()
