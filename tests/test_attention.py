"""helpers.attention: the JSON format, merging answers, the clickable grid, bundled annotations."""
import importlib.util
import json
from datetime import datetime

import numpy as np
import pytest

import helpers as h
from helpers.attention import ATTENTION_DIR, AttentionAnnotation, cells_to_mask, load_annotation, save_annotation


def make(cells=((1, 2), (3, 4)), image="chelsea", cls="tabby", annotator="t1", grid=5):
    return AttentionAnnotation.create(image, cls, [list(c) for c in cells], grid_size=grid,
                                        annotator=annotator)


def test_json_round_trip(tmp_path):
    annotation = make()
    path = save_annotation(annotation, tmp_path)
    assert path.name == "chelsea__tabby__t1.json"
    loaded = load_annotation(path)
    assert loaded == annotation
    assert loaded.to_dict() == annotation.to_dict()


def test_saved_file_holds_the_documented_fields(tmp_path):
    path = save_annotation(make(cells=[(3, 4), (1, 2), (1, 2)]), tmp_path / "answer.json")
    data = json.loads(path.read_text())
    assert data["format"] == "unmasking-cnns-attention" and data["version"] == 1
    assert data["image"] == "chelsea" and data["grid_size"] == 5
    assert (data["class_index"], data["class_name"]) == (281, "tabby")
    assert data["annotator"] == "t1"
    assert data["cells"] == [[1, 2], [3, 4]]  # unique, sorted top-left first
    datetime.fromisoformat(data["timestamp"].replace("Z", "+00:00"))
    with pytest.raises(FileExistsError, match="overwrite"):
        save_annotation(make(), path)
    save_annotation(make(cells=[(0, 0)]), path, overwrite=True)
    assert load_annotation(path).cells == [[0, 0]]


def test_cells_become_pixels_of_the_right_block():
    mask = cells_to_mask([[1, 2]], grid_size=4, size=8)
    expected = np.zeros((8, 8), bool)
    expected[2:4, 4:6] = True
    np.testing.assert_array_equal(mask, expected)
    # 224 / 20 = 11.2 pixels: edges are rounded, the first and last cells are 11 x 11.
    assert cells_to_mask([[0, 0], [19, 19]], 20, 224).sum() == 2 * 11 * 11
    full = cells_to_mask([[r, c] for r in range(20) for c in range(20)], 20, (100, 60))
    assert full.all() and full.shape == (100, 60)


def test_merging_answers_gives_the_fraction_of_annotators():
    first = make(cells=[(0, 0), (1, 1)], annotator="a")
    second = make(cells=[(1, 1)], annotator="b")
    merged = h.attention_map([first, second], size=10)
    assert merged.dtype == np.float32 and merged.shape == (10, 10)
    assert merged[0, 0] == 0.5 and merged[2, 2] == 1.0 and merged[9, 9] == 0.0
    coarse = AttentionAnnotation.create("chelsea", 281, [[0, 0]], grid_size=1,
                                          annotator="c")
    assert h.attention_map([first, coarse], size=10)[9, 9] == 0.5  # grids may differ
    with pytest.raises(ValueError, match="mix images or classes"):
        h.attention_map([first, make(image="coffee", cls="espresso")])
    with pytest.raises(ValueError, match="no annotations"):
        h.attention_map([])


def test_load_a_folder_filtered_by_image_and_class(tmp_path):
    for annotator in ("a", "b"):
        save_annotation(make(annotator=annotator), tmp_path)
    save_annotation(make(image="coffee", cls="espresso"), tmp_path)
    assert len(h.load_annotations(tmp_path)) == 3
    assert len(h.load_annotations(tmp_path, image="chelsea", class_index="tabby")) == 2
    assert len(h.load_annotations(tmp_path, class_index=967)) == 1
    heat = h.human_attention_map("chelsea", "tabby", folder=tmp_path, size=5)
    assert heat[1, 2] == 1.0 and heat.sum() == 2.0


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "JSON object"),
    ('{"format": "something-else"}', "not an attention annotation"),
    ('{"version": 1, "image": "chelsea"}', "lacks the field"),
])
def test_bad_files_are_refused_with_a_clear_message(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message):
        load_annotation(path)


@pytest.mark.parametrize("change, message", [
    ({"version": 2}, "version 2"),
    ({"cells": [[0, 5]]}, "outside the 5x5 grid"),
    ({"cells": [[0]]}, "pair of integers"),
    ({"cells": "0,0"}, "list of"),
    ({"class_name": "espresso"}, "class_index 281 is 'tabby'"),
    ({"class_index": 1000}, "out of range"),
    ({"grid_size": 0}, "grid_size"),
    ({"annotator": ""}, "annotator"),
    ({"timestamp": "yesterday"}, "ISO 8601"),
])
def test_invalid_fields_are_refused(tmp_path, change, message):
    data = {**make().to_dict(), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message):
        load_annotation(path)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_annotation(tmp_path / "none.json")
    with pytest.raises(FileNotFoundError):
        h.load_annotations(tmp_path / "none")


def test_clicked_cells_end_up_in_the_saved_file(tmp_path):
    grid = h.attention_grid("chelsea", "tabby", grid_size=5, annotator="student-1",
                            folder=tmp_path, display_size=100)
    assert len(grid.cells) == 5 and len(grid.cells[0]) == 5
    grid.cells[1][2].value = True          # set programmatically
    grid.cells[4][0].click()               # a simulated click toggles on ...
    grid.cells[0][0].click()
    grid.cells[0][0].click()               # ... and off again
    assert grid.marked_cells() == [[1, 2], [4, 0]]
    assert grid.cells[1][2].style.button_color != grid.cells[0][0].style.button_color
    grid.save_button.click()
    assert "Saved 2 cells" in grid.status.value
    saved = load_annotation(tmp_path / "chelsea__tabby__student-1.json")
    assert saved.cells == [[1, 2], [4, 0]] and saved.grid_size == 5
    assert saved.class_index == 281 and saved.image == "chelsea"
    grid.clear()
    assert grid.marked_cells() == []
    grid.set_cells([[3, 3]])
    assert grid.annotation().cells == [[3, 3]]


def test_the_grid_explains_what_is_missing(tmp_path):
    grid = h.attention_grid("coffee", grid_size=4, folder=tmp_path, display_size=80)
    grid.cells[0][0].value = True
    grid.save_button.click()               # no id, no class: reported, nothing written
    assert "Not saved" in grid.status.value and not list(tmp_path.iterdir())
    grid.annotator_box.value = "s2"
    with pytest.raises(ValueError, match="class"):
        grid.annotation()
    grid.class_box.value = "espreso"
    with pytest.raises(ValueError, match="espresso"):
        grid.annotation()
    grid.class_box.value = "espresso"
    grid.clear()
    with pytest.raises(ValueError, match="no cell"):
        grid.annotation()
    with pytest.raises(ValueError, match="image_name"):
        h.attention_grid(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(ValueError, match="grid_size"):
        h.attention_grid("coffee", grid_size=0)


def test_the_widget_has_the_photo_under_the_grid():
    import ipywidgets

    grid = h.attention_grid("chelsea", "tabby", grid_size=3, display_size=90)
    children = grid.board.children
    assert isinstance(children[0], ipywidgets.Image) and len(children) == 1 + 9
    assert children[0].layout.grid_area == "1 / 1 / 4 / 4"   # spans the whole board
    assert children[1 + 3 * 1 + 2].layout.grid_area == "2 / 3 / 3 / 4"  # cell (1, 2)
    assert "application/vnd.jupyter.widget-view+json" in grid._repr_mimebundle_()


def test_bundled_annotations_load_and_match_their_recipe():
    annotations = h.load_annotations()
    assert len(annotations) >= 10
    samples = set(h.sample_names())
    for annotation in annotations:
        assert annotation.image in samples
        assert annotation.grid_size == 20 and annotation.cells
    kinds = {(a.image, a.class_name) for a in annotations}
    assert {("chelsea", "tabby"), ("coffee", "espresso"), ("cat_and_coffee", "espresso"),
            ("cat_and_coffee", "Egyptian_cat"), ("grace_hopper", "military_uniform")} <= kinds
    # The files are exactly what data/attention/make_annotations.py produces.
    spec = importlib.util.spec_from_file_location("make_annotations",
                                                  ATTENTION_DIR / "make_annotations.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    for annotation in annotations:
        shapes = recipe.SHAPES[(annotation.image, annotation.class_name)][annotation.annotator]
        assert recipe.cells_of(shapes) == annotation.cells
    # The two halves of cat_and_coffee do not overlap.
    cat = h.human_attention_map("cat_and_coffee", "Egyptian_cat")
    cup = h.human_attention_map("cat_and_coffee", "espresso")
    assert cat.shape == (224, 224) and not np.any((cat > 0) & (cup > 0))


# --------------------------------------------------------------------------
# A class's answers: collect, agree, compare
# --------------------------------------------------------------------------

def three_students(grid=2):
    """A = {(0,0),(0,1)}, B = {(0,0)}, C = {(0,0),(1,1)} on a 2 x 2 grid (values by hand below)."""
    return [make(cells, annotator=name, grid=grid)
            for name, cells in [("A", [(0, 0), (0, 1)]), ("B", [(0, 0)]),
                                ("C", [(0, 0), (1, 1)])]]


def test_pairwise_iou_by_hand():
    # A&B = 1 cell of 2 -> 1/2; A&C = 1 of 3 -> 1/3; B&C = 1 of 2 -> 1/2
    np.testing.assert_allclose(h.pairwise_iou(three_students()), [1 / 2, 1 / 3, 1 / 2])
    assert h.class_agreement(three_students()).mean_iou == pytest.approx(4 / 9)


def test_fleiss_kappa_by_hand_over_grid_cells():
    # Cells marked by 3, 1, 0 and 1 of the 3 students: P_i = 1, 1/3, 1, 1/3 -> P = 2/3;
    # p(marked) = 5/12, P_e = (5/12)^2 + (7/12)^2 = 37/72; kappa = (2/3 - 37/72) / (35/72) = 11/35.
    agreement = h.class_agreement(three_students())
    assert agreement.kappa == pytest.approx(11 / 35)
    assert agreement.students == 3 and agreement.mean_cells == pytest.approx(5 / 3)
    np.testing.assert_allclose(agreement.cell_frequency, [[1, 1 / 3], [0, 1 / 3]])


def test_fleiss_kappa_matches_the_worked_example_of_fleiss_1971():
    # The 10 subjects x 5 categories, 14 raters example reproduced in the literature
    # (e.g. Wikipedia's "Fleiss' kappa"): P = 0.378, P_e = 0.213, kappa = 0.210.
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
              [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
              [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert h.fleiss_kappa(counts) == pytest.approx(0.210, abs=5e-4)


def test_agreement_extremes_and_errors():
    same = [make([(0, 0)], annotator=name, grid=2) for name in "AB"]
    assert h.class_agreement(same).mean_iou == 1 and h.class_agreement(same).kappa == 1
    apart = [make([(0, 0), (0, 1)], annotator="A", grid=2),
             make([(1, 0), (1, 1)], annotator="B", grid=2)]
    assert h.class_agreement(apart).mean_iou == 0 and h.class_agreement(apart).kappa == -1
    with pytest.raises(ValueError, match="at least 2 students"):
        h.class_agreement(same[:1])
    with pytest.raises(ValueError, match="different grid sizes"):
        h.class_agreement([same[0], make([(0, 0)], annotator="C", grid=3)])
    with pytest.raises(ValueError, match="mix images or classes"):
        h.class_agreement([same[0], make([(0, 0)], cls="Egyptian_cat", annotator="C", grid=2)])
    with pytest.raises(ValueError, match="same number of raters"):
        h.fleiss_kappa([[1, 1], [2, 1]])


def test_collect_merges_folders_and_zips_dedupes_and_keeps_the_latest(tmp_path):
    import zipfile

    first, second = tmp_path / "pc1", tmp_path / "pc2"
    a, b, c = three_students()
    save_annotation(a, first / "sub")           # found recursively
    save_annotation(b, first)
    save_annotation(a, second)                  # the same answer again: a duplicate
    old = AttentionAnnotation(**{**c.__dict__, "cells": [[1, 0]],
                                 "timestamp": "2020-01-01T00:00:00Z"})
    save_annotation(old, second)
    with zipfile.ZipFile(tmp_path / "late.zip", "w") as archive:   # C's later answer
        archive.writestr("answers/c.json", json.dumps(c.to_dict()))
        archive.writestr("__MACOSX/._c.json", b"\x00\x01")          # resource forks: ignored
    collection = h.collect_annotations([first, second, tmp_path / "late.zip"],
                                       out=tmp_path / "merged")
    assert [x.annotator for x in collection.annotations] == ["A", "B", "C"]
    assert collection.annotations[2].cells == c.cells
    assert len(collection.duplicates) == 1 and len(collection.replaced) == 1
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == [
        "chelsea__tabby__A.json", "chelsea__tabby__B.json", "chelsea__tabby__C.json"]
    assert h.load_annotations(tmp_path / "merged") == collection.annotations
    assert "3 answers kept from 5 valid files" in str(collection)


def test_collect_names_every_bad_file(tmp_path):
    save_annotation(make(annotator="A"), tmp_path)
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "outside.json").write_text(json.dumps({**make(annotator="B").to_dict(),
                                                       "cells": [[9, 9]]}))
    with pytest.raises(ValueError, match=r"2 file\(s\)[\s\S]*broken.json: is not valid JSON"
                                         r"[\s\S]*outside.json.*outside the 5x5 grid"):
        h.collect_annotations(tmp_path)
    collection = h.collect_annotations(tmp_path, skip_invalid=True)
    assert len(collection.annotations) == 1 and len(collection.invalid) == 2
    with pytest.raises(FileNotFoundError, match="no folder or file"):
        h.collect_annotations(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least one folder"):
        h.collect_annotations([])


def test_the_command_merges_and_reports_agreement(tmp_path, capsys):
    from helpers.attention import _main

    for answer in three_students():
        save_annotation(answer, tmp_path / "class")
    assert _main(["merge", str(tmp_path / "class"), "--out", str(tmp_path / "out")]) == 0
    assert "wrote 3 files" in capsys.readouterr().out
    assert _main(["agreement", str(tmp_path / "out")]) == 0
    assert "3 students, mean pairwise IoU 0.44" in capsys.readouterr().out
    assert "kappa 0.31" in str(h.class_agreement(three_students()))
    (tmp_path / "out" / "bad.json").write_text("[]")
    assert _main(["agreement", str(tmp_path / "out")]) == 1
    assert "bad.json" in capsys.readouterr().err


def test_compare_with_class_scores_maps_against_the_class_map():
    answers = [make([(0, 0), (0, 1)], annotator=name, grid=2) for name in "AB"] + \
              [make([(0, 0)], annotator="C", grid=2)]
    top_row = np.zeros((64, 64), np.float32)  # large enough for the pointing game's 15 px
    top_row[:32] = 2 - np.linspace(0, 1, 32 * 64).reshape(32, 64)  # maximum at the top edge
    bottom = top_row[::-1].copy()
    table = h.compare_with_class({"top": top_row, "bottom": bottom}, answers)
    iou = dict(zip(["top", "bottom"], table.column("IoU")))
    assert iou["top"] == pytest.approx(1.0) and iou["bottom"] == pytest.approx(0.0)
    assert table.column("pointing").tolist() == [1.0, 0.0]
