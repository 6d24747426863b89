"""ImageNet class names, lookup with suggestions, top-k tables."""
import numpy as np
import pytest

import helpers as h
from helpers.pipeline import resolve_classes


def test_thousand_names_in_keras_order():
    names = h.class_names()
    assert len(names) == 1000
    assert names[0] == "tench" and names[1] == "goldfish"
    assert (names[281], names[282], names[285]) == ("tabby", "tiger_cat", "Egyptian_cat")
    assert names[967] == "espresso" and names[934] == "hotdog" and names[928] == "ice_cream"
    assert names[999] == "toilet_tissue"


def test_lookup_by_name_lemma_wnid_and_index():
    assert h.class_index("tabby") == 281
    assert h.class_index("Tabby Cat") == 281  # a WordNet lemma of class 281
    assert h.class_index("tiger cat") == h.class_index("tiger_cat") == 282
    assert h.class_index("n07920052") == 967
    assert h.class_index("hot dog") == 934
    assert h.class_index(np.int64(5)) == 5
    assert h.class_name(967) == "espresso"


@pytest.mark.parametrize("bad, error, message", [
    ("tabbby", ValueError, "Did you mean 'tabby'"),
    ("espreso", ValueError, "Did you mean 'espresso'"),
    ("zzzzzz", ValueError, "no ImageNet class is called 'zzzzzz'"),
    (1000, ValueError, "out of range: ImageNet has classes 0..999"),
    (-1, ValueError, "out of range"),
    (2.5, TypeError, "an index"),
    (True, TypeError, "an index"),
])
def test_bad_classes(bad, error, message):
    with pytest.raises(error, match=message):
        h.class_index(bad)


def test_resolve_classes():
    assert resolve_classes("tabby", 3).tolist() == [281, 281, 281]
    assert resolve_classes(["tabby", 967], 2).tolist() == [281, 967]
    assert resolve_classes(3, 2, num_classes=10).tolist() == [3, 3]
    with pytest.raises(ValueError, match="one per image"):
        resolve_classes([1, 2], 3)
    with pytest.raises(ValueError, match="0..9"):
        resolve_classes(12, 1, num_classes=10)
    with pytest.raises(ValueError, match="needs the model"):
        resolve_classes(None, 1)


def test_top_k_table(lite0):
    table = h.top_k(lite0, "coffee", k=5, title="coffee")
    assert table.indices[0] == 967 and len(table.rows) == 5
    probs = [p for _, _, p in table.rows]
    assert probs == sorted(probs, reverse=True) and probs[0] >= 0.9
    text = str(table)
    assert text.splitlines()[0] == "coffee" and "espresso" in text
    assert "<table>" in table._repr_html_()


def test_decode_checks_its_input():
    with pytest.raises(ValueError, match="expected 1000"):
        h.decode(np.ones(10))
    with pytest.raises(ValueError, match="k must be between"):
        h.decode(np.ones(1000) / 1000, k=0)
