"""The knob checks every module shares, with one rule.

A wrong type raises TypeError, a wrong value ValueError, and the message names
the argument and what is accepted: ``positive_int(0, "samples")`` says
"samples must be a positive integer (at least 1), got 0".
"""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []

# Counts with one maximum in every function that takes them, checked by positive_int before
# anything is allocated: a batch of images is held in memory at once (1,024 images of
# 224 x 224 x 3 float32 are 0.6 GB).
MAXIMA = {"batch_size": (1024, "images per model call")}


def is_integer(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def positive_int(value, name: str) -> int:
    """``value`` as an int >= 1 (and at most its maximum, for a name in ``MAXIMA``)."""
    if not is_integer(value):
        raise TypeError(f"{name} must be a positive integer, not {type(value).__name__} "
                        f"({value!r})")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer (at least 1), got {value}")
    if name in MAXIMA and value > MAXIMA[name][0]:
        maximum, what = MAXIMA[name]
        raise ValueError(f"{name} must be at most {maximum:,} ({what}), got {value:,}")
    return int(value)


def check_seed(value, name: str = "seed", *, allow_none: bool = True) -> int | None:
    """A seed: a non-negative integer (or None for fresh randomness where allowed)."""
    if value is None and allow_none:
        return None
    accepted = "a non-negative integer" + (" or None" if allow_none else "")
    if not is_integer(value):
        raise TypeError(f"{name} must be {accepted}, not {type(value).__name__} ({value!r})")
    if value < 0:
        raise ValueError(f"{name} must be {accepted}, got {value}")
    return int(value)


def check_number(value, name: str, *, minimum=None, maximum=None, inclusive=(True, True),
                 accepted: str = "") -> float:
    """A finite real number within [minimum, maximum] (bounds open where not ``inclusive``)."""
    what = accepted or "a number"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be {what}, not {type(value).__name__} ({value!r})")
    value = float(value)
    low_ok = minimum is None or (value >= minimum if inclusive[0] else value > minimum)
    high_ok = maximum is None or (value <= maximum if inclusive[1] else value < maximum)
    if not np.isfinite(value) or not (low_ok and high_ok):
        left = "[" if inclusive[0] else "("
        right = "]" if inclusive[1] else ")"
        bounds = f"{left}{'-inf' if minimum is None else minimum}, " \
                 f"{'inf' if maximum is None else maximum}{right}"
        raise ValueError(f"{name} must be {what} in {bounds}, got {value}")
    return value


def check_choice(value, name: str, options) -> object:
    """One of ``options`` (strings, possibly None)."""
    if value in options and (value is None or isinstance(value, str)):
        return value
    listed = ", ".join(repr(option) for option in options)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{name} must be one of {listed}, not {type(value).__name__} ({value!r})")
    raise ValueError(f"{name} must be one of {listed}, not {value!r}")


def check_choices(values, name: str, options) -> list:
    """A non-empty list or tuple of ``options`` (strings), in the order given."""
    listed = ", ".join(repr(option) for option in options)
    if isinstance(values, str) or not isinstance(values, (list, tuple)):
        raise TypeError(f"{name} must be a non-empty list or tuple of {listed}; got {values!r}")
    if not values:
        raise ValueError(f"{name} must be a non-empty list or tuple of {listed}; got {values!r}")
    return [check_choice(value, name, options) for value in values]


def check_bool(value, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, not {type(value).__name__} ({value!r})")
    return bool(value)


def check_labels(labels, count: int, classes: int | None = None, name: str = "labels"):
    """``labels`` as an integer array of ``count`` class indices, one per image, each in
    ``0..classes - 1`` when ``classes`` is given."""
    array = np.asarray(labels)
    if array.shape != (count,) or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must be {count} integer class labels, one per image; got "
                         f"shape {array.shape} and dtype {array.dtype}")
    if classes is not None and count and (array.min() < 0 or array.max() >= classes):
        raise ValueError(f"{name} must lie in 0..{classes - 1} (the model's classes), got "
                         f"{array.min()}..{array.max()}")
    return array
