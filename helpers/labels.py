"""The 1000 ImageNet classes: names, lookup with suggestions, top-k tables.

``data/imagenet_classes.json`` lists the ILSVRC-2012 classes in the order of
the models' outputs (the order of Keras' ``decode_predictions``): index,
WordNet id, short name (the first WordNet lemma, spaces as underscores, as
Keras spells it) and all lemmas.
"""

from __future__ import annotations

import difflib
import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checks import is_integer

__all__ = [
    "class_names",
    "class_name",
    "class_index",
    "decode",
]

def _data_dir() -> Path:
    """The course's data: helpers/data in an installed wheel, data/ in a checkout."""
    installed = Path(__file__).resolve().parent / "data"
    return installed if installed.is_dir() else Path(__file__).resolve().parent.parent / "data"


DATA_DIR = _data_dir()
NUM_CLASSES = 1000


@functools.lru_cache(maxsize=1)
def _classes() -> tuple[dict, ...]:
    path = DATA_DIR / "imagenet_classes.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"the course's data is missing ({path} not found): install helpers from the "
            "course's checkout (pip install -e .) or from a wheel built from it "
            "(pip install . or python -m pip wheel .), which carries data/ inside")
    rows = json.loads(path.read_text(encoding="utf-8"))
    if len(rows) != NUM_CLASSES or [row["index"] for row in rows] != list(range(NUM_CLASSES)):
        raise RuntimeError(f"{path} is damaged: expected 1000 classes in order")
    return tuple(rows)


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


@functools.lru_cache(maxsize=1)
def _lookup() -> dict[str, int]:
    """Normalised name or lemma -> index. The short name wins over other lemmas."""
    table: dict[str, int] = {}
    for row in _classes():
        for lemma in row["lemmas"]:
            table.setdefault(_normalise(lemma), row["index"])
    for row in _classes():
        table.setdefault(_normalise(row["name"]), row["index"])
        table.setdefault(row["wnid"].lower(), row["index"])
    return table


def class_names() -> list[str]:
    """The 1000 short names, in output order ('tench', 'goldfish', ...)."""
    return [row["name"] for row in _classes()]


def class_name(index) -> str:
    """The short name of a class index: ``class_name(281) == 'tabby'``."""
    return _classes()[_check_index(index)]["name"]


def _check_index(index) -> int:
    if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
        raise TypeError(f"a class index must be an integer, not {type(index).__name__}")
    if not 0 <= int(index) < NUM_CLASSES:
        raise ValueError(f"class index {int(index)} is out of range: ImageNet has classes 0..999")
    return int(index)


def class_index(class_or_name) -> int:
    """A class index from an index, a short name, any WordNet lemma or a WordNet id.

    ``class_index('tabby') == 281``; case, spaces, underscores and hyphens do
    not matter. An unknown name raises an error with the closest names.
    """
    if isinstance(class_or_name, (int, np.integer)) and not isinstance(class_or_name, bool):
        return _check_index(class_or_name)
    if not isinstance(class_or_name, str):
        raise TypeError(
            f"a class is an index (0..999) or an ImageNet name, not {type(class_or_name).__name__}")
    key = _normalise(class_or_name)
    table = _lookup()
    if key in table:
        return table[key]
    names = [_normalise(name) for name in class_names()]
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6)
    words = key.split()
    if not close and words:
        close = [name for name in names if any(word in name.split() for word in words)][:3]
    hint = (" Did you mean " + " or ".join(f"'{class_names()[names.index(c)]}'" for c in close)
            + "?") if close else ""
    raise ValueError(f"no ImageNet class is called {class_or_name!r}.{hint}")


def decode(probabilities, k: int = 5) -> list[tuple[int, str, float]]:
    """The top ``k`` (index, name, probability) of one probability vector."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape != (NUM_CLASSES,):
        raise ValueError(f"expected 1000 ImageNet scores, got shape {probabilities.shape}")
    if not is_integer(k):
        raise TypeError(f"k must be an integer between 1 and 1000, not {type(k).__name__} ({k!r})")
    if not 1 <= k <= NUM_CLASSES:
        raise ValueError(f"k must be between 1 and 1000, not {k}")
    order = np.argsort(-probabilities, kind="stable")[:k]
    return [(int(i), class_name(int(i)), float(probabilities[i])) for i in order]


@dataclass
class TopK:
    """The top-k classes of one image; prints as a table, shows as HTML in Jupyter."""

    rows: list[tuple[int, str, float]]
    title: str = ""

    def __str__(self) -> str:
        lines = [self.title] if self.title else []
        lines.append(f"{'rank':>4}  {'class':>5}  {'name':<24} {'probability':>11}")
        lines += [f"{rank:>4}  {index:>5}  {name:<24} {p:>11.3f}"
                  for rank, (index, name, p) in enumerate(self.rows, 1)]
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        caption = f"<caption>{self.title}</caption>" if self.title else ""
        body = "".join(
            f"<tr><td>{rank}</td><td>{index}</td><td>{name}</td>"
            f"<td style='text-align:left'><span style='display:inline-block;width:{p * 120:.0f}px;"
            f"height:0.8em;background:#4c72b0'></span> {p:.3f}</td></tr>"
            for rank, (index, name, p) in enumerate(self.rows, 1))
        return (f"<table>{caption}<tr><th>rank</th><th>class</th><th>name</th>"
                f"<th>probability</th></tr>{body}</table>")

    @property
    def indices(self) -> list[int]:
        return [index for index, _, _ in self.rows]

    @property
    def names(self) -> list[str]:
        return [name for _, name, _ in self.rows]


