"""Rebuild the watermark font of lesson 10 from the ``imagenet-w`` package.

ImageNet-W (Li et al., CVPR 2023) draws its watermark with Adobe's Source Han
Serif SC ExtraLight (SIL Open Font License 1.1), which the ``imagenet-w``
package ships. That font is 21 MB; the lesson needs a handful of glyphs. This
script takes the font out of the package's wheel or sdist *without installing
the package* (it depends on torch), keeps only the glyphs of ``TEXT``, renames
the font (the licence reserves the name "Source" for the original, and a
subset is a Modified Version) and writes it next to this file.

    pip download --no-deps imagenet-w==1.0.0 -d /tmp/imagenet-w
    python data/fonts/make_font_subset.py /tmp/imagenet-w/imagenet_w-1.0.0-py3-none-any.whl

The argument may also be the sdist (``.tar.gz``) or the ``.otf`` itself. The
script checks the source font's checksum, checks that the subset draws every
glyph exactly as the full font does (Pillow, at the sizes the lesson uses),
and prints the subset's checksum: rebuilding gives the same bytes as the
committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
from fontTools import subset
from fontTools.ttLib import TTFont
from PIL import Image, ImageDraw, ImageFont

FOLDER = Path(__file__).resolve().parent
OUTPUT = FOLDER / "watermark-serif-sc-extralight-subset.otf"
MEMBER = "imagenet_w/fonts/SourceHanSerifSC-ExtraLight.otf"   # path inside the package
SOURCE_SHA256 = "9f5605324c82b264efc87a7cf0e8e2f26a02ec67f539843368f066cb2e08aed0"

# The watermark ("shortcut" in Chinese), a few more Chinese words for the
# lesson's exercises (carton, watermark, Chinese), and printable ASCII for the
# Latin-text control.
TEXT = "捷径" + "纸箱" + "水印" + "中文" + "".join(chr(c) for c in range(0x20, 0x7F))
FAMILY = "Watermark Serif SC"
STYLE = "ExtraLight"
POSTSCRIPT = "WatermarkSerifSC-ExtraLight-Subset"
NOTE = ("Subset of Source Han Serif SC ExtraLight (Version 2.001) made for the Unmasking CNNs "
        "course by data/fonts/make_font_subset.py; renamed because the SIL Open Font License "
        "reserves the font name 'Source' for the original.")


def read_source(path: Path) -> bytes:
    """The font's bytes from a wheel, an sdist or the .otf file."""
    name = path.name
    if name.endswith(".whl") or name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            return archive.read(MEMBER)
    if name.endswith((".tar.gz", ".tgz")):
        with tarfile.open(path) as archive:
            member = next(m for m in archive.getmembers() if m.name.endswith("/" + MEMBER))
            return archive.extractfile(member).read()
    return path.read_bytes()


def make_subset(data: bytes) -> bytes:
    options = subset.Options()
    options.name_IDs = ["*"]          # keep copyright (0) and licence (13, 14) records
    options.name_languages = ["*"]
    options.notdef_outline = True
    options.glyph_names = False
    font = TTFont(io.BytesIO(data), recalcTimestamp=False)
    subsetter = subset.Subsetter(options)
    subsetter.populate(text=TEXT)
    subsetter.subset(font)
    rename(font)
    out = io.BytesIO()
    font.save(out)
    return out.getvalue()


def rename(font: TTFont) -> None:
    """Drop the Reserved Font Name from every name the font carries."""
    names = font["name"]
    full = f"{FAMILY} {STYLE}"
    replacements = {1: full, 3: f"2.001;{POSTSCRIPT}", 4: full, 6: POSTSCRIPT, 16: FAMILY,
                    17: STYLE}
    for record in list(names.names):
        if record.nameID in replacements:
            record.string = replacements[record.nameID]
        elif record.nameID in (18, 20, 21) or 256 <= record.nameID:
            names.removeNames(nameID=record.nameID)
    original = names.getDebugName(10) or ""
    names.removeNames(nameID=10)
    names.setName(f"{NOTE} Original description: {original}".strip(), 10, 3, 1, 0x409)
    cff = font["CFF "].cff
    cff.fontNames = [POSTSCRIPT]
    top = cff.topDictIndex[0]
    top.FullName, top.FamilyName = full, FAMILY
    for sub_font in getattr(top, "FDArray", []):
        sub_font.FontName = POSTSCRIPT


def check_rendering(original: bytes, subset_font: bytes) -> None:
    """The subset must draw the glyphs exactly as the original does."""
    for size in (36, 38, 41):   # the recipe's sizes at 224, 240 and 260 pixels
        for text in ("捷径捷径捷径", "纸箱纸箱纸箱", "shortcut", "水印中文"):
            pictures = []
            for data in (original, subset_font):
                font = ImageFont.truetype(io.BytesIO(data), size,
                                          layout_engine=ImageFont.Layout.BASIC)
                layer = Image.new("L", (8 * size, 2 * size), 0)
                ImageDraw.Draw(layer).text((2.24, 3.6), text, fill=255, font=font)
                pictures.append(np.asarray(layer))
            if not np.array_equal(*pictures):
                sys.exit(f"the subset draws {text!r} at size {size} differently")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path,
                        help="the imagenet-w wheel or sdist, or SourceHanSerifSC-ExtraLight.otf")
    args = parser.parse_args(argv)
    original = read_source(args.source)
    digest = hashlib.sha256(original).hexdigest()
    if digest != SOURCE_SHA256:
        print(f"warning: the source font's sha256 is {digest}, not {SOURCE_SHA256} "
              "(imagenet-w 1.0.0); the subset will differ from the committed one")
    result = make_subset(original)
    check_rendering(original, result)
    OUTPUT.write_bytes(result)
    print(f"{OUTPUT.name}: {len(result):,} bytes (from {len(original):,}), "
          f"sha256 {hashlib.sha256(result).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
