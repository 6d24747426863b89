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

__all__ = [
    "class_names",
    "class_name",
    "class_index",
    "top_k",
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


def top_k(model, image, k: int = 5, *, fit: str = "crop", title: str = "") -> TopK:
    """The model's top-``k`` classes for one image, as a readable table."""
    from .models import probabilities
    from .pipeline import model_batch, predict_logits, positive_int

    k = positive_int(k, "k")
    batch, single = model_batch(model, image, fit=fit, name="image")
    if not single and len(batch) != 1:
        raise ValueError(f"image: top_k takes one image; got a batch of {len(batch)}")
    probs = probabilities(predict_logits(model, batch))[0]
    if len(probs) != NUM_CLASSES:
        raise ValueError(f"model: top_k names ImageNet classes, but the model has {len(probs)} "
                         "outputs; use h.probabilities(h.predict_logits(model, batch))")
    return TopK(decode(probs, k), title)


def resolve_classes(class_index, batch_size: int, *, model=None, batch=None,
                    num_classes: int = NUM_CLASSES, name: str = "class_index") -> np.ndarray:
    """One class index per image, as an int array of length ``batch_size``.

    ``class_index`` may be None (each image's top-1 prediction, which needs
    ``model`` and ``batch``), an index or name for every image, or a list
    with one index or name per image. ``num_classes`` bounds indices for
    models that are not 1000-class ImageNet models; names are ImageNet names,
    so they need a 1000-class model.
    """
    if class_index is None:
        if model is None or batch is None:
            raise ValueError(f"{name}=None (the predicted class) needs the model and batch")
        from .pipeline import predict_logits

        return np.argmax(predict_logits(model, batch), axis=-1).astype(np.int64)
    items = list(class_index) if isinstance(class_index, (list, tuple, np.ndarray)) else None
    if items is None:
        items = [class_index] * batch_size
    if len(items) != batch_size:
        raise ValueError(f"{name}: got {len(items)} classes for {batch_size} images; give one "
                         "per image (or one for all)")
    indices = []
    for item in items:
        if isinstance(item, str):
            if num_classes != NUM_CLASSES:
                raise ValueError(
                    f"{name}: {item!r} is an ImageNet class name, but the model has "
                    f"{num_classes} classes; give an index 0..{num_classes - 1}")
            index = class_index_of(item)
        elif isinstance(item, (bool, np.bool_)) or not isinstance(item, (int, np.integer)):
            raise TypeError(f"{name} must be a class index (integer) or an ImageNet class "
                            f"name (str), or a list of them; got {type(item).__name__} "
                            f"({item!r})")
        else:
            index = int(item)
        if not 0 <= index < num_classes:
            raise ValueError(f"{name}: class index {index} is out of range: the model has "
                             f"classes 0..{num_classes - 1}")
        indices.append(index)
    return np.asarray(indices, dtype=np.int64)


class_index_of = class_index
