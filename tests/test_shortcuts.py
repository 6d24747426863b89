"""Shortcuts: the box-share measure, cue planting, the watermark overlay, seeded training."""
import numpy as np
import pytest
from fontTools.ttLib import TTFont
from PIL import ImageFont

from helpers import shortcuts as sc


# ---------------------------------------------------------------- box share

def test_box_share_by_hand():
    heat = np.zeros((4, 5), np.float32)
    heat[0, 0], heat[0, 1], heat[3, 4], heat[2, 2] = 3.0, 1.0, 4.0, -10.0
    result = sc.box_share(heat, (0, 0, 2, 2))        # rows 0-1, cols 0-1: 4 of 20 pixels
    assert result.share == pytest.approx(4.0 / 8.0)  # negative mass does not count
    assert result.area == pytest.approx(4 / 20)
    assert result.ratio == pytest.approx(0.5 / 0.2)


def test_box_share_of_a_uniform_map_is_the_area_share():
    result = sc.box_share(np.ones((10, 10)), (2, 3, 7, 5))
    assert result.share == pytest.approx(10 / 100)
    assert result.ratio == pytest.approx(1.0)


def test_box_share_batches_and_empty_maps():
    maps = np.stack([np.ones((4, 4)), -np.ones((4, 4)), np.eye(4)])
    result = sc.box_share(maps, (0, 0, 2, 2))
    assert result.share.shape == (3,)
    assert result.share[0] == pytest.approx(0.25)
    assert np.isnan(result.share[1])                  # no positive mass: it points nowhere
    assert result.share[2] == pytest.approx(0.5)      # 2 of the 4 diagonal pixels
    assert "3 maps" in str(result)


@pytest.mark.parametrize("box, error, words", [
    ((0, 0, 5, 2), ValueError, "box"),        # bottom beyond the image
    ((2, 2, 2, 3), ValueError, "box"),        # empty
    ((0, 0, 2), TypeError, "box"),
    ((0.0, 0, 2, 2), TypeError, "box"),
    (None, TypeError, "box"),
])
def test_box_share_rejects_bad_boxes(box, error, words):
    with pytest.raises(error, match=words):
        sc.box_share(np.ones((4, 4)), box)


def test_box_share_rejects_bad_maps():
    with pytest.raises(ValueError, match="heatmap"):
        sc.box_share(np.ones(4), (0, 0, 1, 1))
    with pytest.raises(ValueError, match="heatmap"):
        sc.box_share(np.full((4, 4), np.nan), (0, 0, 1, 1))
    with pytest.raises(TypeError, match="heatmap"):
        sc.box_share("map", (0, 0, 1, 1))


# ---------------------------------------------------------------- digits and cues

def test_tag_box_corners():
    assert sc.tag_box(32, tag_size=5) == (1, 1, 6, 6)
    assert sc.tag_box(32, tag_size=5, corner="bottom-right") == (26, 26, 31, 31)
    assert sc.tag_box(32, tag_size=4, corner="top-right", margin=0) == (0, 28, 4, 32)
    with pytest.raises(ValueError, match="corner"):
        sc.tag_box(32, corner="middle")
    with pytest.raises(ValueError, match="tag_size"):
        sc.tag_box(8, tag_size=8)


def test_add_tag_paints_only_the_box_and_copies():
    images = np.full((2, 8, 8, 3), 100.0, np.float32)
    tagged = sc.add_tag(images, (1, 2, 3, 5), colour=(10, 20, 30))
    assert np.all(images == 100.0)                                   # input untouched
    assert np.all(tagged[:, 1:3, 2:5] == np.array([10, 20, 30], np.float32))
    outside = np.ones((8, 8), bool)
    outside[1:3, 2:5] = False
    assert np.all(tagged[:, outside] == 100.0)
    assert sc.add_tag(images[0], (0, 0, 1, 1)).shape == (8, 8, 3)
    with pytest.raises(ValueError, match="colour"):
        sc.add_tag(images, (0, 0, 1, 1), colour=(300, 0, 0))
    with pytest.raises(TypeError, match="images"):
        sc.add_tag([[1, 2, 3]], (0, 0, 1, 1))


def test_add_tint_darkens_the_paper_and_keeps_the_ink():
    image = np.full((4, 4, 3), sc.PAPER, np.float32)
    image[0, 0] = 0.0
    tinted = sc.add_tint(image, colour=(255, 127.5, 0))
    assert np.allclose(tinted[1, 1], [sc.PAPER, sc.PAPER / 2, 0.0])
    assert np.all(tinted[0, 0] == 0.0)


def test_plant_cue_counts_and_seeding():
    labels = np.array([0] * 10 + [1] * 20 + [2] * 30)
    images = np.zeros((60, 4, 4, 3), np.float32)
    cue = lambda x: x + 1.0  # noqa: E731  (marks an image by brightening it)
    marked, has_cue = sc.plant_cue(images, labels, cue=cue, target_class=1, in_class=0.75,
                                   elsewhere=0.1, seed=3)
    assert has_cue[labels == 1].sum() == 15          # round(0.75 * 20)
    assert has_cue[labels != 1].sum() == 4           # round(0.1 * 40)
    assert np.all(marked[has_cue] == 1.0) and np.all(marked[~has_cue] == 0.0)
    again, has_cue_again = sc.plant_cue(images, labels, cue=cue, target_class=1, in_class=0.75,
                                        elsewhere=0.1, seed=3)
    assert np.array_equal(has_cue, has_cue_again) and np.array_equal(marked, again)
    _, other_seed = sc.plant_cue(images, labels, cue=cue, target_class=1, in_class=0.75,
                                 elsewhere=0.1, seed=4)
    assert not np.array_equal(has_cue, other_seed)
    perfect, where = sc.plant_cue(images, labels, cue=cue, target_class=2)
    assert np.array_equal(where, labels == 2)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(cue="tag"), TypeError, "cue"),
    (dict(target_class=7), ValueError, "target_class"),
    (dict(target_class=1.0), TypeError, "target_class"),
    (dict(in_class=1.5), ValueError, "in_class"),
    (dict(elsewhere="half"), TypeError, "elsewhere"),
    (dict(seed=-1), ValueError, "seed"),
])
def test_plant_cue_errors_name_the_argument(kwargs, error, words):
    arguments = dict(cue=lambda x: x, target_class=1)
    arguments.update(kwargs)
    with pytest.raises(error, match=words):
        sc.plant_cue(np.zeros((4, 2, 2, 3)), np.array([0, 1, 0, 1]), **arguments)


def test_plant_cue_rejects_labels_of_the_wrong_length():
    with pytest.raises(ValueError, match="labels"):
        sc.plant_cue(np.zeros((4, 2, 2, 3)), np.array([0, 1]), cue=lambda x: x, target_class=1)


def test_digit_images_are_the_sklearn_digits_on_paper():
    digits = sc.digit_images(size=16, digit_size=8, test_fraction=0.25, seed=0)
    total = len(digits.train_labels) + len(digits.test_labels)
    assert total == 1797 and digits.size == 16
    assert digits.train_images.dtype == np.float32
    assert digits.train_images.min() >= sc.INK - 1e-3
    assert digits.train_images.max() <= sc.PAPER + 1e-3
    margin = np.concatenate([digits.train_images[:, :4], digits.train_images[:, -4:]], axis=1)
    assert np.all(margin == sc.PAPER)               # the digit sits in the centre
    assert np.array_equal(np.bincount(digits.test_labels, minlength=10) > 40, [True] * 10)
    with pytest.raises(ValueError, match="digit_size"):
        sc.digit_images(size=16, digit_size=20)


@pytest.fixture(scope="module")
def small_digits():
    digits = sc.digit_images(size=16, digit_size=12)
    return digits.train_images[:96], digits.train_labels[:96]


def test_training_is_seeded(small_digits):
    images, labels = small_digits
    first = sc.train_digit_cnn(images, labels, epochs=1, batch_size=32, seed=5)
    second = sc.train_digit_cnn(images, labels, epochs=1, batch_size=32, seed=5)
    other = sc.train_digit_cnn(images, labels, epochs=1, batch_size=32, seed=6)
    for a, b in zip(first.get_weights(), second.get_weights()):
        assert np.array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), other.get_weights()))
    assert first.output.shape[-1] == 10               # logits, the course's contract
    assert first.get_layer("logits").activation.__name__ == "linear"
    assert 0.0 <= sc.accuracy(first, images, labels) <= 1.0


def test_training_errors_name_the_argument(small_digits):
    images, labels = small_digits
    with pytest.raises(ValueError, match="epochs"):
        sc.train_digit_cnn(images, labels, epochs=0)
    with pytest.raises(ValueError, match="labels"):
        sc.train_digit_cnn(images, labels[:10])
    with pytest.raises(ValueError, match="learning_rate"):
        sc.train_digit_cnn(images, labels, learning_rate=0)


# ---------------------------------------------------------------- the watermark

def test_recipe_font_sizes():
    assert sc.watermark_font_size(224) == 36
    assert sc.watermark_font_size(384) == 62
    assert sc.watermark_font_size(240) == 38 and sc.watermark_font_size(260) == 41
    with pytest.raises(TypeError, match="image_size"):
        sc.watermark_font_size(224.0)


def test_font_subset_has_the_glyphs_and_not_the_reserved_name():
    font = TTFont(sc.FONT_PATH)
    characters = font.getBestCmap()
    assert all(ord(c) in characters for c in sc.WATERMARK_TEXT + sc.LATIN_TEXT)
    names = {record.nameID: record.toUnicode() for record in font["name"].names}
    assert "Open Font License" in names[13]
    assert "Source" not in names[1] + names[4] + names[6] + names[16]   # reserved font name
    assert (sc.FONT_PATH.parent / "OFL.txt").exists()


def brute_force_blend(image, alpha, colour):
    """out = (1 - a) * image + a * colour, pixel by pixel."""
    out = np.empty_like(image, dtype=np.float64)
    for row in range(image.shape[0]):
        for col in range(image.shape[1]):
            a = alpha[row, col]
            out[row, col] = (1 - a) * image[row, col] + a * np.asarray(colour, np.float64)
    return out


def test_watermark_is_the_blend_of_its_alpha_layer():
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3)).astype(np.float32)
    marked = sc.add_watermark(image, text="捷径", opacity=0.5, font_size=20, x=0.05, y=0.3,
                              colour=(255, 200, 0))
    alpha = sc.watermark_alpha(64, text="捷径", opacity=0.5, font_size=20, x=0.05, y=0.3)
    assert alpha.max() <= round(0.5 * 255) / 255 + 1e-6 and alpha.max() > 0.3
    expected = brute_force_blend(image, alpha, (255, 200, 0))
    assert np.abs(marked - expected).max() <= 1.0      # 8-bit compositing rounds
    untouched = alpha == 0
    assert np.array_equal(marked[untouched], image[untouched])
    assert marked.dtype == np.float32 and np.all(marked == np.rint(marked))


def test_watermark_geometry_follows_the_recipe():
    # Anchored at (x * W, y * H) = (2.24, 89.6): Pillow's own text box, moved there
    # (within the antialiased edge pixel).
    font = ImageFont.truetype(str(sc.FONT_PATH), 36, layout_engine=ImageFont.Layout.BASIC)
    left, top, right, bottom = font.getbbox(sc.WATERMARK_TEXT)
    box = sc.watermark_box(224)
    assert abs(box[0] - (89.6 + top)) <= 1.5 and abs(box[1] - (2.24 + left)) <= 1.5
    assert abs(box[2] - (89.6 + bottom)) <= 1.5 and abs(box[3] - (2.24 + right)) <= 1.5
    assert sc.watermark_box((224, 224), text=sc.WATERMARK_TEXT) == box
    lower = sc.watermark_box(224, y=0.6)
    assert lower[0] - box[0] == pytest.approx(0.2 * 224, abs=1)


def test_watermark_opacity_scales_the_layer():
    full = sc.watermark_alpha(224, opacity=1.0)
    half = sc.watermark_alpha(224, opacity=0.5)
    assert np.abs(half - full * 128 / 255).max() <= 1.5 / 255
    assert not sc.watermark_alpha(224, opacity=0.0).any()
    image = np.full((224, 224, 3), 50.0, np.float32)
    assert np.array_equal(sc.add_watermark(image, opacity=0.0), image)


def test_watermark_on_a_batch_equals_one_by_one():
    images = np.random.default_rng(1).uniform(0, 255, (2, 48, 48, 3)).astype(np.float32)
    batch = sc.add_watermark(images, text=sc.LATIN_TEXT)
    for image, marked in zip(images, batch):
        assert np.array_equal(sc.add_watermark(image, text=sc.LATIN_TEXT), marked)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(opacity=1.5), ValueError, "opacity"),
    (dict(x=-0.1), ValueError, "x must"),
    (dict(text=3), TypeError, "text"),
    (dict(text="猫"), ValueError, "text"),        # not in the subset
    (dict(font_size=0), ValueError, "font_size"),
    (dict(colour=(1, 2)), ValueError, "colour"),
])
def test_watermark_errors_name_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        sc.add_watermark(np.zeros((32, 32, 3), np.float32), **kwargs)


def test_bar_is_the_plain_blend():
    image = np.random.default_rng(2).integers(0, 256, (10, 12, 3)).astype(np.float32)
    barred = sc.add_bar(image, (2, 3, 5, 9), opacity=0.25)
    expected = image.copy()
    expected[2:5, 3:9] = np.rint(0.75 * image[2:5, 3:9] + 0.25 * 255)
    assert np.array_equal(barred, expected)
    with pytest.raises(ValueError, match="opacity"):
        sc.add_bar(image, (0, 0, 1, 1), opacity=-1)


# ---------------------------------------------------------------- ranks and shifts

def test_class_ranks_by_hand():
    logits = np.array([[0.1, 3.0, 2.0, -1.0], [5.0, 1.0, 1.0, 0.0]])
    assert list(sc.class_ranks(logits, 2)) == [2, 2]   # a tie counts in the class's favour
    assert list(sc.class_ranks(logits, 3)) == [4, 4]
    with pytest.raises(ValueError, match="class_index"):
        sc.class_ranks(logits, 4)


def test_prediction_shift_on_a_tiny_model(tiny_cnn, tiny_image):
    clean = np.stack([tiny_image, tiny_image[::-1]])
    edited = sc.add_bar(clean, (0, 0, 16, 32), opacity=1.0)
    shift = sc.prediction_shift(tiny_cnn, clean, edited, class_index=3, names=["a", "b"])
    logits = np.asarray(tiny_cnn(np.concatenate([clean, edited]), training=False))
    assert np.array_equal(shift.rank_before, sc.class_ranks(logits[:2], 3))
    assert np.array_equal(shift.top1_after, logits[2:].argmax(axis=1))
    assert np.array_equal(shift.top1_changed, logits[:2].argmax(1) != logits[2:].argmax(1))
    assert "a " in shift.table() and "rank" in str(shift)
    with pytest.raises(ValueError, match="same shape"):
        sc.prediction_shift(tiny_cnn, clean, edited[:1])
    with pytest.raises(ValueError, match="names"):
        sc.prediction_shift(tiny_cnn, clean, edited, names=["a"])
