"""Self-checks for the exercises: ``h.check_answer(answer, expected, ...)``.

An exercise with a numeric (or one-word) answer ends with a cell like::

    answer = None        # your number here
    h.check_answer(answer, 0.43, tolerance=0.02, revisit="2. Occlusion by hand")

which prints one verdict and returns True or False:

* ``None`` (not answered yet): "Fill in your answer ...", False.
* Right: "Right: 0.44 (expected 0.43, accepted within ±0.02)", True.
* Off: how far and which way ("0.30 is 0.13 below 0.43, 30% off; accepted
  within ±0.02"), the section to revisit, False.

What can be compared (the kind is read from ``expected``):

* **numbers** (int or float): accepted when ``|answer - expected| <= max(tolerance,
  relative * |expected|)``, the rule of ``math.isclose`` and ``pytest.approx``.
  Without either bound an integer must be exact and a float is accepted
  within 1% (``relative=0.01``).
* **several numbers** (tuple, list or array): the same shape, and every entry
  within the bound; the verdict says how many entries are off and the largest
  gap.
* **text and class names** (str): case, spaces, underscores and hyphens do not
  matter; when ``expected`` names an ImageNet class, any of that class's
  names or its index is right ("tabby cat", "tabby" or 281).
* **True/False** (bool): exact; the answer must be a bool too.
* **one of several right answers**: a set (``{"tabby", "tiger cat"}``).
* **a sequence of texts** (tuple or list of str): the same length, each
  entry as above, in order.

Wrong kinds of arguments raise TypeError, impossible values ValueError, both
naming the argument; an answer of the wrong kind (text where a number is
expected) is a TypeError that says what kind of answer the exercise wants.
"""

from __future__ import annotations

import numbers

import numpy as np

from .labels import class_index

__all__ = ["check_answer"]

DEFAULT_RELATIVE = 0.01


def _is_bool(value) -> bool:
    return isinstance(value, (bool, np.bool_))


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not _is_bool(value)


def _is_integral(value) -> bool:
    return isinstance(value, numbers.Integral) and not _is_bool(value)


def _format(value, unit: str = "") -> str:
    text = f"{int(value)}" if _is_integral(value) else f"{float(value):.4g}"
    return f"{text} {unit}".rstrip() if unit else text


def _bound(name: str, value):
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{name} must be a non-negative number or None, not "
                        f"{type(value).__name__} ({value!r})")
    value = float(value)
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a non-negative finite number, got {value}")
    return value


def _normalise(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def _class_of(value):
    """The ImageNet class index a text or index names, or None."""
    try:
        return class_index(value)
    except (TypeError, ValueError):
        return None


def _text_matches(answer, expected: str) -> bool:
    if isinstance(answer, str) and _normalise(answer) == _normalise(expected):
        return True
    expected_class = _class_of(expected)
    return expected_class is not None and _class_of(answer) == expected_class


def _check_text_answer(answer, expected_text: str, where: str = "answer") -> None:
    if isinstance(answer, str):
        return
    if _is_integral(answer) and _class_of(expected_text) is not None:
        return
    raise TypeError(f"{where} must be a text (a word or a class name in quotes, like "
                    f"'{expected_text}'), not {type(answer).__name__} ({answer!r})")


def _tolerance_text(tolerance, relative, expected, unit) -> tuple[float, str]:
    """The accepted gap for ``expected`` and how to say it."""
    allowed = max(tolerance or 0.0, (relative or 0.0) * abs(float(expected)))
    if allowed == 0:
        return 0.0, "exactly"
    return allowed, f"within ±{allowed:.2g}{' ' + unit if unit else ''}"


def _verdict(right: bool, message: str, revisit: str) -> bool:
    if right:
        print(f"Right: {message}")
    else:
        print(f"Not yet: {message}" + (f"\nRevisit: {revisit}" if revisit else ""))
    return bool(right)


def _number_verdict(answer, expected, tolerance, relative, unit, revisit) -> bool:
    if not _is_number(answer):
        raise TypeError(f"answer must be a number (like {_format(expected)}), not "
                        f"{type(answer).__name__} ({answer!r})")
    answer_value, expected_value = float(answer), float(expected)
    allowed, within = _tolerance_text(tolerance, relative, expected_value, unit)
    if not np.isfinite(answer_value):
        return _verdict(False, f"{answer_value} is not a finite number; expected "
                        f"{_format(expected, unit)}", revisit)
    gap = answer_value - expected_value
    if abs(gap) <= allowed * (1 + 1e-12):
        return _verdict(True, f"{_format(answer, unit)} (expected {_format(expected, unit)}, "
                        f"accepted {within})", revisit)
    side = "above" if gap > 0 else "below"
    share = (f", {abs(gap) / abs(expected_value):.0%} off" if expected_value != 0 else "")
    return _verdict(False, f"{_format(answer, unit)} is {_format(abs(gap), unit)} {side} "
                    f"the expected value{share} (accepted {within})", revisit)


def _array_verdict(answer, expected, tolerance, relative, unit, revisit) -> bool:
    if isinstance(answer, str) or _is_bool(answer) or (np.ndim(answer) == 0
                                                       and not _is_number(answer)):
        raise TypeError(f"answer must be numbers (a tuple, list or array of shape "
                        f"{np.shape(expected)}), not {type(answer).__name__} ({answer!r})")
    try:
        answer_array = np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"answer must hold numbers only (shape {np.shape(expected)}), "
                        f"got {answer!r}") from None
    expected_array = np.asarray(expected, dtype=np.float64)
    if answer_array.shape != expected_array.shape:
        return _verdict(False, f"your answer has shape {answer_array.shape} ({answer_array.size} "
                        f"numbers); the exercise asks for shape {expected_array.shape}", revisit)
    allowed = np.maximum(tolerance or 0.0, (relative or 0.0) * np.abs(expected_array))
    gaps = np.abs(answer_array - expected_array)
    off = ~(gaps <= allowed * (1 + 1e-12))  # NaN counts as off
    within = ("exactly" if not np.any(allowed) else
              f"within ±{float(np.max(allowed)):.2g}{' ' + unit if unit else ''}"
              if np.ptp(allowed) == 0 else "within the tolerance of each")
    if not np.any(off):
        return _verdict(True, f"all {expected_array.size} numbers match (accepted {within})",
                        revisit)
    worst = int(np.nanargmax(np.where(np.isnan(gaps), np.inf, gaps)))
    position = np.unravel_index(worst, expected_array.shape)
    position = position[0] if len(position) == 1 else position
    given, wanted = answer_array.flat[worst], expected_array.flat[worst]
    return _verdict(False, f"{int(off.sum())} of {expected_array.size} numbers are off; the "
                    f"largest gap is at position {position}: {_format(given, unit)} instead of "
                    f"{_format(wanted, unit)} (accepted {within})", revisit)


def _texts_verdict(answer, expected, revisit) -> bool:
    if isinstance(answer, str) or not isinstance(answer, (list, tuple, np.ndarray)):
        raise TypeError(f"answer must be a tuple or list of {len(expected)} texts, not "
                        f"{type(answer).__name__} ({answer!r})")
    answer = list(answer)
    if len(answer) != len(expected):
        return _verdict(False, f"your answer has {len(answer)} entries; the exercise asks for "
                        f"{len(expected)}", revisit)
    for position, (given, wanted) in enumerate(zip(answer, expected)):
        _check_text_answer(given, wanted, f"answer[{position}]")
    wrong = [position for position, (given, wanted) in enumerate(zip(answer, expected))
             if not _text_matches(given, wanted)]
    if not wrong:
        return _verdict(True, f"all {len(expected)} entries match, in order", revisit)
    listed = ", ".join(str(position) for position in wrong)
    return _verdict(False, f"{len(wrong)} of {len(expected)} entries differ (positions {listed})",
                    revisit)


def check_answer(answer, expected, *, tolerance=None, relative=None, unit: str = "",
                 revisit: str = "", on_defaults: bool = True) -> bool | None:
    """Print whether ``answer`` matches ``expected`` and return True or False.

    Parameters
    ----------
    answer
        The student's answer; ``None`` means "not answered yet" (prints a
        reminder and returns False, so a notebook with blank answers runs).
    expected
        The right answer: a number, a tuple/list/array of numbers, a text or
        ImageNet class name, a bool, a set of acceptable answers, or a
        tuple/list of texts.
    tolerance, relative
        For numbers only: the accepted absolute gap and the accepted gap as a
        share of ``|expected|``; the larger of the two applies. Neither given:
        integers exact, floats within 1%.
    unit
        Printed after numbers ("px", "%", "cells").
    revisit
        The section to read again, printed when the answer is not right.
    on_defaults
        Whether the notebook runs with the parameters ``expected`` was measured
        for (a lesson passes e.g. ``on_defaults=MODEL_NAME == "efficientnet_lite0"``).
        False: the check says plainly that it knows the answer only for the
        defaults, points to the solution, and returns None.

    Returns
    -------
    bool or None
        True when right, False when not (or not answered yet), None when the
        parameters differ from those ``expected`` was measured for.
    """
    if not isinstance(unit, str):
        raise TypeError(f"unit must be a text such as 'px', not {type(unit).__name__}")
    if not isinstance(revisit, str):
        raise TypeError(f"revisit must be a text naming a section, not {type(revisit).__name__}")
    if not _is_bool(on_defaults):
        raise TypeError(f"on_defaults must be True or False, not {type(on_defaults).__name__} "
                        f"({on_defaults!r})")
    tolerance = _bound("tolerance", tolerance)
    relative = _bound("relative", relative)
    numeric = _is_number(expected) or (
        not isinstance(expected, (str, set, frozenset, dict)) and not _is_bool(expected)
        and np.ndim(expected) > 0 and np.size(expected) > 0
        and all(_is_number(value) for value in np.ravel(np.asarray(expected, dtype=object))))
    if not numeric and (tolerance is not None or relative is not None):
        raise ValueError("tolerance and relative apply to numeric answers only; expected is "
                         f"{type(expected).__name__} ({expected!r})")
    if expected is None:
        raise TypeError("expected must be the right answer (a number, numbers, a text, a bool "
                        "or a set of acceptable answers), not None")
    if _is_number(expected) and not np.isfinite(float(expected)):
        raise ValueError(f"expected must be a finite number, got {expected}")
    if answer is None:
        print("Fill in your answer (replace None with it), then run this cell again.")
        return False
    if not on_defaults:
        print("This self-check knows the answer for the lesson's default parameters only, and "
              "you changed them: open the solution and run its code on your settings to compare.")
        return None
    if numeric and tolerance is None and relative is None:
        whole = all(_is_integral(value) for value in np.ravel(np.asarray(expected, dtype=object)))
        relative = 0.0 if whole else DEFAULT_RELATIVE

    if _is_bool(expected):
        if not _is_bool(answer):
            raise TypeError(f"answer must be True or False, not {type(answer).__name__} "
                            f"({answer!r})")
        return _verdict(bool(answer) == bool(expected),
                        f"{bool(answer)}" if bool(answer) == bool(expected)
                        else f"{bool(answer)} is not the answer", revisit)
    if _is_number(expected):
        return _number_verdict(answer, expected, tolerance, relative, unit, revisit)
    if numeric:
        if np.any(~np.isfinite(np.asarray(expected, dtype=np.float64))):
            raise ValueError("expected must hold finite numbers only")
        return _array_verdict(answer, expected, tolerance, relative, unit, revisit)
    if isinstance(expected, str):
        _check_text_answer(answer, expected)
        right = _text_matches(answer, expected)
        return _verdict(right, f"{answer!r}" if right else
                        f"{answer!r} is not the answer", revisit)
    if isinstance(expected, (set, frozenset)):
        if not expected:
            raise ValueError("expected is an empty set: give at least one acceptable answer")
        if not all(isinstance(option, str) or _is_number(option) for option in expected):
            raise TypeError("a set of acceptable answers must hold texts or numbers only")
        right = any(_text_matches(answer, option) if isinstance(option, str)
                    else _is_number(answer) and not isinstance(answer, str)
                    and float(answer) == float(option) for option in expected)
        return _verdict(right, f"{answer!r} (one of the {len(expected)} accepted answers)"
                        if right else f"{answer!r} is not among the accepted answers", revisit)
    if isinstance(expected, (list, tuple)) and expected and all(
            isinstance(value, str) for value in expected):
        return _texts_verdict(answer, expected, revisit)
    raise TypeError("expected must be a number, a tuple/list/array of numbers, a text, a bool, "
                    f"a set of acceptable answers or a tuple/list of texts, not "
                    f"{type(expected).__name__} ({expected!r})")
