"""The photo collection: 46 real photographs that ship with the course.

``data/photos/`` holds 46 openly licensed real photographs (animals, fish,
objects, tools, buildings, scenes; its README lists each one's source
package, licence and author, and the course model's top-1 class):

    h.photo_collection()                       # their names
    h.load_image("koala")                      # one, like any sample name
    h.collection_photos(8, exclude=["koala"])  # several, never the one explained

The explorers' photo picker (:func:`helpers.photo_picker`) offers them
beside the samples; it lives in :mod:`helpers.widgets`.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np

from .labels import DATA_DIR
from .checks import check_seed, positive_int

__all__ = ["photo_collection", "collection_photos"]

PHOTOS_DIR = DATA_DIR / "photos"


@lru_cache(maxsize=1)
def _manifest() -> dict:
    path = PHOTOS_DIR / "photos.json"
    return json.loads(path.read_text()) if path.exists() else {}


def photo_collection() -> list[str]:
    """Names of the photo collection, each loadable with :func:`helpers.load_image`."""
    return list(_manifest())


def photo_title(name: str) -> str:
    """A short description of a collection photo (its README row's "what")."""
    return _manifest()[name]["title"]


def collection_file(name: str) -> Path:
    """The JPEG file of a collection photo."""
    return PHOTOS_DIR / f"{name}.jpg"


def collection_photos(n=None, *, exclude=(), seed=0) -> list[str]:
    """``n`` names from the collection (all when None), shuffled by ``seed``.

    ``exclude``: a name or names never to include (the photo being
    explained, so a background set or a statistic never contains it).
    The same ``seed`` gives the same photos in the same order.
    """
    if isinstance(exclude, str):
        exclude = (exclude,)
    try:
        exclude = list(exclude)  # once: a generator could be read only once
    except TypeError:
        raise TypeError(f"exclude must be a photo name or a list of names, not "
                        f"{type(exclude).__name__}") from None
    wrong = [item for item in exclude if not isinstance(item, str)]
    if wrong:
        raise TypeError(f"exclude must hold photo names (strings), not "
                        f"{type(wrong[0]).__name__} ({wrong[0]!r})")
    excluded = set(exclude)  # a name given twice is excluded once
    seed = check_seed(seed, "seed")
    names = [name for name in photo_collection() if name not in excluded]
    order = np.random.default_rng(seed).permutation(len(names))
    names = [names[i] for i in order]
    if n is None:
        return names
    n = positive_int(n, "n")
    if n > len(names):
        raise ValueError(f"n={n} is more than the {len(names)} collection photos left after "
                         f"excluding {len(excluded)}; use n=None for all of them")
    return names[:n]
