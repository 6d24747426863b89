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


# ---------------------------------------------------------------- hostile hand-ins

def _answer_bytes(annotator, cells=((0, 0),), timestamp="2026-05-04T10:15:00Z", **change):
    data = {**make(cells, annotator=annotator, grid=2).to_dict(), "timestamp": timestamp,
            **change}
    return json.dumps(data).encode()


def _zip(members, compression=None):
    """A zip file's bytes from (name, bytes) pairs (deflated unless told)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression or zipfile.ZIP_DEFLATED) as archive:
        for name, content in members:
            archive.writestr(name, content)
    return bytearray(buffer.getvalue())


def _central_entry(data: bytes, name: bytes) -> int:
    """Where the central directory entry of member ``name`` starts."""
    at = data.index(b"PK\x01\x02" + data[data.index(b"PK\x01\x02") + 4:][:0])
    while True:
        if data[at + 46:at + 46 + len(name)] == name:
            return at
        at = data.index(b"PK\x01\x02", at + 4)


def _patch(data: bytearray, name: bytes, offset: int, fmt: str, value) -> bytearray:
    """Set a field of member ``name``'s central directory entry (and of its local header
    for the fields both hold: flags at 8/6, CRC and sizes at 16/14 .. 24/22)."""
    import struct

    central = _central_entry(data, name)
    struct.pack_into(fmt, data, central + offset, value)
    local = struct.unpack_from("<L", data, central + 42)[0]
    if offset in (8, 16, 20, 24):
        struct.pack_into(fmt, data, local + offset - 2, value)
    return data


def _good(collection):
    return sorted(a.annotator for a in collection.annotations)


def test_a_zip_bomb_with_understated_sizes_is_refused_in_bounded_memory(tmp_path):
    import io
    import tracemalloc
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("good.json", _answer_bytes("good"))
        with archive.open("bomb.json", "w") as member:  # 64 MB of zeros, about 64 kB deflated
            for _ in range(64):
                member.write(bytes(2 ** 20))
    data = bytearray(buffer.getvalue())
    _patch(data, b"bomb.json", 24, "<L", 100)  # the header says 100 bytes
    (tmp_path / "class.zip").write_bytes(data)
    tracemalloc.start()
    try:
        collection = h.collect_annotations(tmp_path / "class.zip", skip_invalid=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2 ** 20
    assert _good(collection) == ["good"]
    (label, reason), = collection.invalid
    assert label.endswith("class.zip:bomb.json") and "more than 1,000,000 bytes" in reason


@pytest.mark.parametrize("hostile, message", [
    (lambda data: _patch(data, b"bad.json", 16, "<L", 12345), "fails its CRC check"),
    (lambda data: _patch(data, b"bad.json", 8, "<H", 0x1), "is encrypted"),
    (lambda data: _patch(data, b"bad.json", 10, "<H", 12), "compression method 12"),
    (lambda data: _patch(data, b"bad.json", 20, "<L", 3), "truncated"),
    (lambda data: _patch(data, b"bad.json", 42, "<L", 10 ** 6), "no valid local header"),
])
def test_one_broken_zip_member_is_named_and_the_others_are_merged(tmp_path, hostile, message):
    data = hostile(_zip([("a.json", _answer_bytes("A")), ("bad.json", _answer_bytes("X")),
                         ("z.json", _answer_bytes("Z"))]))
    (tmp_path / "class.zip").write_bytes(data)
    collection = h.collect_annotations(tmp_path / "class.zip", skip_invalid=True)
    assert _good(collection) == ["A", "Z"]
    (label, reason), = collection.invalid
    assert label.endswith("class.zip:bad.json") and message in reason
    with pytest.raises(ValueError, match=rf"1 file\(s\)[\s\S]*class.zip:bad.json: .*{message}"):
        h.collect_annotations(tmp_path / "class.zip")


def test_a_member_name_that_is_not_utf8_is_named_and_the_others_are_merged(tmp_path):
    data = _zip([("a.json", _answer_bytes("A")), ("qq.json", _answer_bytes("X"))])
    _patch(data, b"qq.json", 8, "<H", 0x800)          # "the name is UTF-8" ...
    for at in [i for i in range(len(data)) if data[i:i + 7] == b"qq.json"]:
        data[at:at + 2] = b"\xff\xfe"                   # ... but it is not
    (tmp_path / "class.zip").write_bytes(data)
    collection = h.collect_annotations(tmp_path / "class.zip", skip_invalid=True)
    assert _good(collection) == ["A"]
    (label, reason), = collection.invalid
    assert label.endswith(r"class.zip:\xff\xfe.json") and "not valid UTF-8" in reason


@pytest.mark.parametrize("content, message", [
    (b"PK\x05\x06" + bytes(18), "table of contents"),  # an empty archive that lies about it
    (b"not a zip at all", "not a zip file"),
    (b"PK\x05\x06" + bytes(6) + b"\xff\xff" + bytes(10), "ZIP64"),
])
def test_a_broken_zip_is_named_and_the_other_sources_are_merged(tmp_path, content, message):
    if message == "table of contents":
        content = content[:10] + b"\x01\x00" + content[12:]  # 1 member listed, none there
    (tmp_path / "broken.zip").write_bytes(content)
    save_annotation(make(annotator="A"), tmp_path / "folder")
    collection = h.collect_annotations([tmp_path / "broken.zip", tmp_path / "folder"],
                                       skip_invalid=True)
    assert _good(collection) == ["A"]
    (label, reason), = collection.invalid
    assert label.endswith("broken.zip") and message in reason


def test_folders_read_only_regular_files_and_follow_no_links(tmp_path):
    import os

    folder = tmp_path / "class"
    save_annotation(make(annotator="A"), folder)
    outside = save_annotation(make(annotator="outsider"), tmp_path / "elsewhere")
    os.symlink("/dev/zero", folder / "zero.json")
    os.symlink(outside, folder / "outside.json")
    os.symlink(tmp_path / "elsewhere", folder / "more")
    os.mkfifo(folder / "pipe.json")
    (folder / "huge.json").write_bytes(b" " * 1_000_001)
    collection = h.collect_annotations(folder, skip_invalid=True)
    assert _good(collection) == ["A"]
    reasons = {label.rsplit("/", 1)[-1]: reason for label, reason in collection.invalid}
    assert set(reasons) == {"zero.json", "outside.json", "more", "pipe.json", "huge.json"}
    assert "symbolic link: not followed" in reasons["zero.json"]
    assert "symbolic link: not followed" in reasons["outside.json"]
    assert "symbolic link: not followed" in reasons["more"]
    assert "not a regular file" in reasons["pipe.json"]
    assert "larger than 1,000,000 bytes" in reasons["huge.json"]


@pytest.mark.parametrize("content, message", [
    pytest.param(b"[" * 100_000 + b"]" * 100_000, "nested too deeply", id="deep-lists"),
    pytest.param(b'{"a": ' * 50_000 + b"1" + b"}" * 50_000, "nested too deeply",
                 id="deep-objects"),
    pytest.param(b"[" + b"9" * 5000 + b"]", "not valid JSON", id="5000-digits"),
    pytest.param(b"\xff\xfe{}", "not a UTF-8 text file", id="not-utf8"),
    pytest.param(_answer_bytes("x" * 300), "shorten the annotator id (300 characters)",
                 id="long-annotator"),
    pytest.param(_answer_bytes("A", note=[[[[[[[["deep"]]]]]]]]), None, id="any-note"),
])
def test_malformed_answers_are_named_and_the_others_merged(tmp_path, content, message):
    save_annotation(make(annotator="A"), tmp_path)
    (tmp_path / "bad.json").write_bytes(content)
    collection = h.collect_annotations(tmp_path, skip_invalid=True, out=tmp_path / "out")
    if message is None:
        assert len(collection.annotations) == 1 and not collection.invalid
        return
    assert _good(collection) == ["A"] and len(collection.written) == 1
    (label, reason), = collection.invalid
    assert label.endswith("bad.json") and message in reason


def test_ties_do_not_depend_on_the_order_of_the_sources(tmp_path):
    first, second = tmp_path / "one", tmp_path / "two"
    first.mkdir(), second.mkdir()
    (first / "a.json").write_bytes(_answer_bytes("A", cells=[(0, 0)]))
    (second / "a.json").write_bytes(_answer_bytes("A", cells=[(1, 1)],
                                                  timestamp="2026-05-04T10:15:00+00:00"))
    (second / "b.json").write_bytes(_answer_bytes("B", note="first"))
    (first / "b.json").write_bytes(_answer_bytes("B", note="second"))  # same cells and time
    results = []
    for order in ([first, second], [second, first]):
        out = tmp_path / f"out{len(results)}"
        collection = h.collect_annotations(order, out=out)
        results.append(([a.to_dict() for a in collection.annotations], collection.sources,
                         collection.duplicates, collection.replaced,
                         sorted((p.name, p.read_bytes()) for p in out.iterdir())))
    assert results[0] == results[1]
    kept = {a["annotator"]: a for a in results[0][0]}
    assert kept["A"]["cells"] == [[1, 1]]    # '[[1, 1]]' sorts after '[[0, 0]]'
    assert kept["B"]["note"] == "second"     # 'second' sorts after 'first'
    assert len(results[0][2]) == 1 and len(results[0][3]) == 1


def test_the_command_names_bad_hand_ins_and_never_shows_a_traceback(tmp_path, capsys):
    import os

    from helpers.attention import _main

    folder = tmp_path / "class"
    save_annotation(make(annotator="A"), folder)
    try:
        (folder / os.fsdecode(b"caf\xe9.json")).write_bytes(_answer_bytes("B"))  # a Latin-1 name
    except OSError:
        pytest.skip("this file system refuses file names that are not UTF-8 (APFS)")
    (folder / os.fsdecode(b"bad\xff.json")).write_text("{")
    os.symlink("/dev/zero", folder / "zero.json")
    (folder / "deep.json").write_bytes(b"[" * 100_000)
    (folder / "line\nbreak.json").write_text("{")
    command = ["merge", str(folder), "--out"]
    assert _main(command + [str(tmp_path / "out1")]) == 1
    refused = capsys.readouterr().err
    assert "4 file(s) are not valid" in refused
    assert "zero.json: is a symbolic link" in refused
    assert "deep.json: is JSON nested too deeply" in refused
    assert "line\\nbreak.json: is not valid JSON" in refused      # one report line each
    assert "bad\\xff.json: is not valid JSON" in refused
    assert not (tmp_path / "out1").exists()
    assert _main(command + [str(tmp_path / "out2"), "--skip-invalid"]) == 0
    merged = capsys.readouterr()
    assert merged.err == "" and "wrote 2 files" in merged.out
    assert "skipped " in merged.out and "bad\\xff.json" in merged.out
    assert _main(command + [str(tmp_path / "out2"), "--skip-invalid"]) == 1
    assert "2 file(s) exist" in capsys.readouterr().err
    assert _main(["merge", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 1
    assert "no folder or file" in capsys.readouterr().err


def test_importing_the_module_leaves_the_warning_filters_alone():
    import sys
    import warnings

    import helpers.attention

    before = list(warnings.filters)
    spec = importlib.util.spec_from_file_location("helpers._attention_copy",
                                                  helpers.attention.__file__)
    copy = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = copy  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(copy)  # a fresh import of the same code
    finally:
        del sys.modules[spec.name]
    assert warnings.filters == before


# ---------------------------------------------------------------- the merge under fuzzing

FUZZ_SEED = 28


def _fuzz_zip(rng) -> bytes:
    """A zip of valid answers, bad JSON and junk members, stored or deflated at random."""
    import zipfile

    members = [(f"sub/{i}.json", _answer_bytes(f"zip-{i}", cells=[(int(rng.integers(2)), 1)]))
               for i in range(int(rng.integers(1, 4)))]
    members += [("notes.txt", b"ignored"), ("__MACOSX/._0.json", b"\x00\x05")]
    if rng.integers(2):
        members += [("junk.json", rng.integers(0, 256, int(rng.integers(0, 64)),
                                               dtype=np.uint8).tobytes()),
                    ("deep.json", b"[" * 2000)]
    method = [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED][int(rng.integers(2))]
    return bytes(_zip([members[i] for i in rng.permutation(len(members))], method))


def _mutate(data: bytes, rng) -> bytes:
    """Bit flips, a truncation, a splice, random bytes inserted, or a size, count or offset
    field of the zip's records set to an extreme value."""
    import struct

    mutated = bytearray(data)
    kind = int(rng.integers(5))
    if kind == 0:
        for _ in range(int(rng.integers(1, 9))):
            at = int(rng.integers(len(mutated)))
            mutated[at] ^= 1 << int(rng.integers(8))
    elif kind == 1:
        del mutated[int(rng.integers(len(mutated))):]
    elif kind == 2:
        start, at = int(rng.integers(len(data))), int(rng.integers(len(data)))
        mutated[at:at] = data[start:start + int(rng.integers(1, 64))]
    elif kind == 3:
        at = int(rng.integers(len(mutated)))
        mutated[at:at] = rng.integers(0, 256, int(rng.integers(1, 16)), dtype=np.uint8).tobytes()
    else:  # (record signature, offsets of its 2- and 4-byte fields)
        records = {b"PK\x01\x02": ([8, 10, 28, 30, 32], [16, 20, 24, 42]),
                   b"PK\x03\x04": ([6, 8, 26, 28], [14, 18, 22]),
                   b"PK\x05\x06": ([4, 6, 8, 10, 20], [12, 16])}
        signature = list(records)[int(rng.integers(3))]
        starts = [i for i in range(len(data) - 3) if data[i:i + 4] == signature]
        if starts:
            start = starts[int(rng.integers(len(starts)))]
            shorts, longs = records[signature]
            if rng.integers(2):
                value = [0, 1, 0x7FFF, 0xFFFF][int(rng.integers(4))]
                where, fmt = start + shorts[int(rng.integers(len(shorts)))], "<H"
            else:
                value = [0, 1, 2 ** 31, 0xFFFFFFFF][int(rng.integers(4))]
                where, fmt = start + longs[int(rng.integers(len(longs)))], "<L"
            if where + struct.calcsize(fmt) <= len(mutated):
                struct.pack_into(fmt, mutated, where, value)
    return bytes(mutated)


def _fuzz_folder(folder, rng) -> None:
    """A folder of answers with JSON-level damage, junk, links and subfolders."""
    import contextlib
    import os

    folder.mkdir(parents=True)
    for i in range(int(rng.integers(1, 5))):
        text = bytearray(_answer_bytes(f"folder-{i}", cells=[(1, int(rng.integers(2)))]))
        damage = int(rng.integers(6))
        if damage == 1:    # a character deleted
            del text[int(rng.integers(len(text)))]
        elif damage == 2:  # a byte replaced
            text[int(rng.integers(len(text)))] = int(rng.integers(256))
        elif damage == 3:  # a field's value replaced by another JSON value
            data = json.loads(text)
            field = list(data)[int(rng.integers(len(data)))]
            data[field] = [None, -1, 1e309, "", [], {}, [[0, 0, 0]], "x" * 300, [[0]] * 3,
                           2 ** 70, True][int(rng.integers(11))]
            text = bytearray(json.dumps(data).encode())
        sub = folder / ("deeper" if rng.integers(2) else "")
        sub.mkdir(exist_ok=True)
        (sub / f"{i}.json").write_bytes(bytes(text))
    junk = rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8).tobytes()
    (folder / "junk.json").write_bytes(junk)
    with contextlib.suppress(OSError):  # a file system may refuse names that are not UTF-8
        (folder / os.fsdecode(b"\xff name.json")).write_bytes(junk[:10])
    if rng.integers(2):
        os.symlink("/dev/zero", folder / "zero.json")
    if rng.integers(2):
        (folder / "big.json").write_bytes(b"[" * 1_000_001)


def _merge_or_refuse(label, sources, clean):
    """The merge with and without skip_invalid: every clean answer kept, no stray error."""
    try:
        collection = h.collect_annotations(sources, skip_invalid=True)
    except Exception as error:  # noqa: BLE001 - any exception is the bug being hunted
        raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
    kept = {a.annotator: a for a in collection.annotations}
    for answer in clean:  # every valid answer of an untouched source survives
        assert kept.get(answer.annotator) == answer, label
    for annotation in collection.annotations:
        assert isinstance(annotation, AttentionAnnotation), label
    for name, reason in collection.invalid:
        assert name.isprintable() and len(reason) > 10, (label, name, reason)
    backwards = h.collect_annotations(list(reversed(sources)), skip_invalid=True)
    assert ([a.to_dict() for a in backwards.annotations], backwards.invalid) == \
        ([a.to_dict() for a in collection.annotations], collection.invalid), \
        f"{label}: the order of the sources matters"
    try:
        h.collect_annotations(sources)
    except ValueError as error:
        assert collection.invalid and "not valid attention answers" in str(error), label
        return "refused", collection
    except Exception as error:  # noqa: BLE001
        raise AssertionError(f"{label}: {type(error).__name__}: {error}") from error
    assert not collection.invalid, label
    return "merged", collection


def test_fuzzed_hand_ins_merge_every_valid_answer_in_bounded_memory(tmp_path):
    import collections
    import time
    import tracemalloc

    rng = np.random.default_rng(FUZZ_SEED)
    clean = [make([(0, 1)], annotator=f"clean-{i}", grid=2) for i in range(3)]
    for answer in clean:
        save_annotation(answer, tmp_path / "clean")
    outcomes = collections.Counter()
    invalid = 0
    start = time.perf_counter()
    tracemalloc.start()
    try:
        for case in range(300):
            kind = ["random bytes", "mutated zip", "valid zip", "folder"][case % 4]
            source = tmp_path / f"case{case}"
            if kind == "random bytes":
                source = source.with_suffix(".zip")
                source.write_bytes(rng.integers(0, 256, int(rng.integers(0, 300)),
                                                dtype=np.uint8).tobytes())
            elif kind == "folder":
                _fuzz_folder(source, rng)
            else:
                data = _fuzz_zip(rng)
                source = source.with_suffix(".zip")
                source.write_bytes(_mutate(data, rng) if kind == "mutated zip" else data)
            tracemalloc.reset_peak()
            outcome, collection = _merge_or_refuse(f"{kind} #{case}",
                                                   [tmp_path / "clean", source], clean)
            # One answer's bytes (at most 1 MB) and its parse, never a whole bomb or stream.
            assert tracemalloc.get_traced_memory()[1] < 6 * 2 ** 20, f"{kind} #{case}"
            outcomes[kind, outcome] += 1
            invalid += len(collection.invalid)
            if kind == "valid zip":  # nothing in it is lost: 1..3 answers besides the clean ones
                assert len(collection.annotations) >= 4, case
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    assert sum(outcomes.values()) == 300
    assert outcomes["mutated zip", "refused"] >= 20 and outcomes["valid zip", "merged"] >= 20
    assert outcomes["folder", "refused"] == 75 and invalid >= 500, outcomes
    assert seconds < 60, seconds
