"""h.check_answer: verdicts, the tolerance rule against math.isclose, clear errors."""
import math

import numpy as np
import pytest

import helpers as h


def verdict(capsys, *args, **kwargs):
    result = h.check_answer(*args, **kwargs)
    return result, capsys.readouterr().out


def test_unanswered_asks_for_an_answer(capsys):
    result, out = verdict(capsys, None, 0.43, tolerance=0.02, revisit="Section 2")
    assert result is False
    assert "Fill in your answer" in out and "Revisit" not in out


def test_number_right_and_off_say_how_far_and_what_to_revisit(capsys):
    result, out = verdict(capsys, 0.44, 0.43, tolerance=0.02)
    assert result is True and out.startswith("Right: 0.44") and "±0.02" in out
    result, out = verdict(capsys, 0.30, 0.43, tolerance=0.02, revisit="2. Occlusion by hand")
    assert result is False
    assert "0.13 below the expected value, 30% off" in out
    assert "Revisit: 2. Occlusion by hand" in out
    result, out = verdict(capsys, 12, 10, unit="px")
    assert result is False and "12 px is 2 px above" in out and "exactly" in out


@pytest.mark.parametrize("tolerance, relative", [
    (0.05, None), (None, 0.1), (0.01, 0.2), (0.3, 0.01), (0.0, 0.0)])
def test_tolerance_rule_agrees_with_pytest_approx(capsys, tolerance, relative):
    # pytest.approx accepts |a - e| <= max(abs, rel * |e|): the rule check_answer documents.
    expected = 1.7
    allowed = max(tolerance or 0.0, (relative or 0.0) * expected)
    bounds = {key: value for key, value in (("abs", tolerance), ("rel", relative))
              if value is not None}
    for answer in np.linspace(1.0, 2.4, 57):
        if math.isclose(abs(answer - expected), allowed, abs_tol=1e-9):
            continue  # exactly on the boundary: float rounding decides either way
        reference = bool(float(answer) == pytest.approx(expected, **bounds))
        assert h.check_answer(float(answer), expected, tolerance=tolerance,
                              relative=relative) is reference
    capsys.readouterr()


def test_defaults_integers_exact_floats_one_percent(capsys):
    assert h.check_answer(4, 4) is True
    assert h.check_answer(4.2, 4) is False
    assert h.check_answer(np.int64(7), 7) is True
    assert h.check_answer(1.009, 1.0) is True and h.check_answer(1.011, 1.0) is False
    assert h.check_answer(np.float32(0.5), 0.5) is True
    capsys.readouterr()


def test_non_finite_answer_is_not_right(capsys):
    result, out = verdict(capsys, float("nan"), 1.0)
    assert result is False and "not a finite number" in out


def test_several_numbers(capsys):
    assert h.check_answer((1.0, 2.0, 3.0), np.array([1.0, 2.01, 3.0]), tolerance=0.05) is True
    result, out = verdict(capsys, [1.0, 2.5, 3.0], (1, 2, 3), tolerance=0.1)
    assert result is False and "1 of 3 numbers are off" in out and "position 1" in out
    result, out = verdict(capsys, [1.0, 2.0], (1, 2, 3))
    assert result is False and "shape (2,)" in out and "shape (3,)" in out
    result, out = verdict(capsys, np.ones((2, 2)), np.zeros((2, 2)), tolerance=0.5)
    assert result is False and "4 of 4" in out
    assert h.check_answer([1.0, float("nan")], [1.0, 2.0]) is False
    capsys.readouterr()


def test_text_and_class_names(capsys):
    assert h.check_answer("Tabby Cat", "tabby") is True       # a lemma of class 281
    assert h.check_answer(281, "tabby") is True
    assert h.check_answer("tiger_cat", "tiger cat") is True
    assert h.check_answer("Egyptian cat", "tabby") is False
    assert h.check_answer("  Receptive-Field ", "receptive field") is True  # not a class
    result, out = verdict(capsys, "espresso", "cup", revisit="the top-5 table")
    assert result is False and "'espresso' is not the answer" in out and "top-5" in out


def test_booleans(capsys):
    assert h.check_answer(False, False) is True
    assert h.check_answer(np.bool_(True), True) is True
    assert h.check_answer(True, False) is False
    capsys.readouterr()


def test_sets_and_sequences_of_texts(capsys):
    assert h.check_answer("tiger cat", {"tabby", "tiger_cat", "Egyptian_cat"}) is True
    assert h.check_answer(285, {"tabby", "Egyptian_cat"}) is True
    assert h.check_answer("espresso", {"tabby", "tiger_cat"}) is False
    assert h.check_answer(3, {3, 4}) is True and h.check_answer(5, {3, 4}) is False
    assert h.check_answer(("tabby", "tiger cat"), ["tabby", "tiger_cat"]) is True
    result, out = verdict(capsys, ["tiger cat", "tabby"], ("tabby", "tiger_cat"))
    assert result is False and "2 of 2 entries differ" in out
    capsys.readouterr()


@pytest.mark.parametrize("answer, expected, kwargs, error, message", [
    ("0.5", 0.5, {}, TypeError, "answer must be a number"),
    (True, 1, {}, TypeError, "answer must be a number"),
    (1, True, {}, TypeError, "answer must be True or False"),
    (0.5, "tabby", {}, TypeError, "answer must be a text"),
    ("abc", (1, 2), {}, TypeError, "answer must be numbers"),
    (["a", "b"], (1, 2), {}, TypeError, "answer must hold numbers only"),
    ("tabby", ("tabby", "tiger_cat"), {}, TypeError, "tuple or list of 2 texts"),
    (1, 1, {"tolerance": "0.1"}, TypeError, "tolerance must be a non-negative number"),
    (1, 1, {"tolerance": -0.1}, ValueError, "tolerance must be a non-negative finite"),
    (1, 1, {"relative": float("inf")}, ValueError, "relative must be a non-negative finite"),
    ("a", "a", {"tolerance": 0.1}, ValueError, "apply to numeric answers only"),
    (True, True, {"relative": 0.1}, ValueError, "apply to numeric answers only"),
    (1, 1, {"unit": 3}, TypeError, "unit must be a text"),
    (1, 1, {"revisit": 3}, TypeError, "revisit must be a text"),
    (1, None, {}, TypeError, "expected must be the right answer"),
    (1, float("nan"), {}, ValueError, "expected must be a finite number"),
    (1, set(), {}, ValueError, "empty set"),
    (1, {"a": 1}, {}, TypeError, "expected must be a number"),
])
def test_bad_arguments_raise_clear_errors(answer, expected, kwargs, error, message):
    with pytest.raises(error, match=message):
        h.check_answer(answer, expected, **kwargs)


def test_off_the_defaults_the_check_says_so_instead_of_judging(capsys):
    # A student who re-runs a lesson with another model or photo must not see a correct
    # answer rejected against a value measured for the defaults.
    result, out = verdict(capsys, 0.30, 0.43, tolerance=0.02, on_defaults=False)
    assert result is None and "default parameters only" in out and "Right" not in out
    result, out = verdict(capsys, None, 0.43, on_defaults=False)
    assert result is False and "Fill in your answer" in out
    with pytest.raises(TypeError, match="on_defaults"):
        h.check_answer(0.4, 0.43, on_defaults="yes")
