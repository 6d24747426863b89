"""Rebuild the photo collection (data/photos/*.jpg, photos.json, README.md's table).

Every photo comes out of a package this course's machines can install, and
its licence and attribution come out of the same package's copyright file:

- Debian ``gcompris-qt-data`` (GCompris' activities keep their photos in Qt
  resource files, read here by :func:`read_rcc`; the Debian copyright file
  names the author, licence and original page of each one),
- Debian ``lomiri-wallpapers-16.04`` and ``lomiri-wallpapers-20.04``,
- PyPI ``scipy==1.9.3`` (``scipy/misc/face.dat``, a public-domain raccoon;
  later SciPy releases download it instead of shipping it).

Usage (as root for ``apt-get download``; writes into this folder):

    python data/photos/make_collection.py            # photos, photos.json, README table
    python data/photos/make_collection.py --no-model # without the top-1 column update

Each photo is resized to a shorter side of at most 288 pixels (never
enlarged) and saved as JPEG quality 85 without metadata.
"""

from __future__ import annotations

import argparse
import bz2
import fnmatch
import glob
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SHORT_SIDE = 288
QUALITY = 85

GC = "gcompris/src/activities/"
ANIMALS = GC + "explore_world_animals/resource/animals/{}.webp"
CATEGORY = GC + "categorization/resource/images/{}.webp"
LOMIRI16 = "usr/share/backgrounds/{}.jpg"

# name: (title, package, original file inside the package)
PHOTOS = {
    "crocodile": ("a crocodile on a river bank", "gcompris-qt-data", ANIMALS.format("crocodile")),
    "komodo_dragon": ("a Komodo dragon", "gcompris-qt-data", ANIMALS.format("dragon")),
    "koala": ("a koala climbing a tree", "gcompris-qt-data", ANIMALS.format("koala")),
    "lemurs": ("three ring-tailed lemurs", "gcompris-qt-data", ANIMALS.format("lemur")),
    "giant_panda": ("a giant panda", "gcompris-qt-data", ANIMALS.format("panda")),
    "polar_bear": ("a polar bear in the snow", "gcompris-qt-data", ANIMALS.format("polar_bear")),
    "macaw": ("a scarlet macaw", "gcompris-qt-data", ANIMALS.format("scarlet_macaw")),
    "chameleon": ("a chameleon on a branch", "gcompris-qt-data", ANIMALS.format("chameleon")),
    "moose": ("a moose lying in heather", "gcompris-qt-data", ANIMALS.format("moose")),
    "clownfish": ("a clownfish in an anemone", "gcompris-qt-data",
                  CATEGORY.format("fishes/fish9")),
    "pufferfish": ("a pufferfish", "gcompris-qt-data", CATEGORY.format("fishes/fish28")),
    "goldfish": ("a goldfish on black", "gcompris-qt-data", CATEGORY.format("fishes/fish25")),
    "river_fish": ("a fish on a gravel bed", "gcompris-qt-data", CATEGORY.format("fishes/fish27")),
    "reef_fish": ("a shoal of fish over a coral reef", "gcompris-qt-data",
                  CATEGORY.format("fishes/fish10")),
    "anthias": ("a red reef fish", "gcompris-qt-data", CATEGORY.format("fishes/fish14")),
    "arc_de_triomphe": ("the Arc de Triomphe du Carrousel", "gcompris-qt-data",
                        CATEGORY.format("monuments/arcDeTriomphe")),
    "taj_mahal": ("the Taj Mahal", "gcompris-qt-data", CATEGORY.format("monuments/tajMahal")),
    "statue_of_liberty": ("the Statue of Liberty", "gcompris-qt-data",
                          CATEGORY.format("monuments/statueOfLiberty")),
    "winter_palace": ("the Winter Palace at night", "gcompris-qt-data",
                      CATEGORY.format("monuments/zimniPalace")),
    "great_wall": ("the Great Wall of China", "gcompris-qt-data",
                   CATEGORY.format("monuments/greatWall")),
    "leaning_tower": ("the Leaning Tower of Pisa", "gcompris-qt-data",
                      CATEGORY.format("monuments/leaningTowerOfPisa")),
    "mount_rushmore": ("Mount Rushmore", "gcompris-qt-data",
                       CATEGORY.format("monuments/mountRushmore")),
    "baseball": ("a baseball", "gcompris-qt-data", CATEGORY.format("others/baseball")),
    "volleyball": ("a volleyball", "gcompris-qt-data", CATEGORY.format("others/volleyball")),
    "frying_pan": ("a cast-iron pan on a counter", "gcompris-qt-data",
                   CATEGORY.format("others/pan")),
    "spoons": ("five spoons side by side", "gcompris-qt-data", CATEGORY.format("others/spoons")),
    "scale": ("a laboratory scale", "gcompris-qt-data",
              CATEGORY.format("others/weighingMachine")),
    "chair": ("a white chair", "gcompris-qt-data", CATEGORY.format("others/chair")),
    "teacup": ("a cup and saucer", "gcompris-qt-data", CATEGORY.format("others/cup")),
    "pillow": ("a pillow on a bed", "gcompris-qt-data", CATEGORY.format("others/pillow")),
    "bucket": ("a wooden bucket", "gcompris-qt-data", CATEGORY.format("others/bucket")),
    "dam": ("a dam releasing water", "gcompris-qt-data", CATEGORY.format("renewable/dam1")),
    "solar_panel": ("a solar panel in a field", "gcompris-qt-data",
                    CATEGORY.format("renewable/solar7")),
    "geothermal_plant": ("steam over a geothermal plant", "gcompris-qt-data",
                         CATEGORY.format("renewable/geothermal")),
    "sledgehammer": ("a sledgehammer", "gcompris-qt-data", CATEGORY.format("tools/hammer3")),
    "screwdriver": ("a screwdriver", "gcompris-qt-data", CATEGORY.format("tools/screwDriver")),
    "tape_measure": ("a rolled tape measure", "gcompris-qt-data",
                     CATEGORY.format("tools/measuringTape4")),
    "screwdrivers": ("two screwdriver handles", "gcompris-qt-data",
                     CATEGORY.format("tools/screwDriver3")),
    "dogs_at_window": ("two dogs looking out of a window", "lomiri-wallpapers-16.04",
                       LOMIRI16.format("friends_by_Aitzol_Berasategi")),
    "dandelions": ("dandelion clocks in a meadow", "lomiri-wallpapers-16.04",
                   LOMIRI16.format("seeding_by_Clements_Engelhardt")),
    "mountain_path": ("a path below mountains", "lomiri-wallpapers-16.04",
                      LOMIRI16.format("picosdeeuropa_by_Aitzol_Berasategi")),
    "forest_stream": ("a stream in a forest", "lomiri-wallpapers-16.04",
                      LOMIRI16.format("life_by_Aitzol_Berasategi")),
    "paintbrushes": ("paintbrushes", "lomiri-wallpapers-16.04",
                     LOMIRI16.format("Picture_1A_by_freespace")),
    "wall_clock": ("a wall clock", "lomiri-wallpapers-16.04",
                   LOMIRI16.format("greentock_by_Peter_Nerlich")),
    "nuthatch": ("a nuthatch on a tree trunk", "lomiri-wallpapers-20.04",
                 "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg"),
    "raccoon": ("a raccoon's face", "scipy", "scipy/misc/face.dat"),
}

SCIPY = "scipy==1.9.3"
SCIPY_ATTRIBUTION = {
    "licence": "public domain",
    "author": "unnamed (SciPy's docstring: 'raccoon-procyon-lotor.jpg' from public-domain-image.com)",
    "original": "",
}


def read_rcc(blob: bytes) -> dict[str, bytes]:
    """Files of a compiled Qt resource (.rcc): {path: bytes} (zlib or zstd entries unpacked)."""
    if blob[:4] != b"qres":
        raise ValueError("not a Qt resource file")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    entry = 14 if version == 1 else 22

    def name(offset):
        length, = struct.unpack(">H", blob[names + offset:names + offset + 2])
        return blob[names + offset + 6:names + offset + 6 + 2 * length].decode("utf-16-be")

    files = {}

    def walk(index, prefix):
        base = tree + index * entry
        name_offset, flags = struct.unpack(">IH", blob[base:base + 6])
        label = name(name_offset) if index else ""
        if flags & 2:  # a directory
            count, first = struct.unpack(">II", blob[base + 6:base + 14])
            for child in range(first, first + count):
                walk(child, prefix + label + "/" if index else "")
            return
        offset, = struct.unpack(">I", blob[base + 10:base + 14])
        size, = struct.unpack(">I", blob[data + offset:data + offset + 4])
        payload = blob[data + offset + 4:data + offset + 4 + size]
        if flags & 1:
            payload = zlib.decompress(payload[4:])  # qCompress: 4-byte length, then zlib
        elif flags & 4:
            import zstandard

            payload = zstandard.ZstdDecompressor().decompress(payload)
        files[prefix + label] = payload

    walk(0, "")
    return files


def debian_copyright(text: str) -> dict[str, dict[str, str]]:
    """{file pattern: {Copyright, License, Comment}} from a machine-readable copyright file."""
    result = {}
    for paragraph in text.split("\n\n"):
        fields, key = {}, None
        for line in paragraph.splitlines():
            if re.match(r"^[A-Za-z-]+:", line):
                key, value = line.split(":", 1)
                fields[key] = value.strip()
            elif key:
                fields[key] += " " + line.strip()
        for pattern in fields.get("Files", "").split():
            result[pattern] = fields
    return result


def attribution(copyright_: dict, original: str) -> dict[str, str]:
    """The copyright paragraph of ``original`` (GCompris lists the .jpg its .webp came from)."""
    stem = os.path.splitext(original.split("gcompris/", 1)[-1])[0]
    found = None
    for pattern, fields in copyright_.items():
        pattern_stem = os.path.splitext(pattern.replace("16.04/", "usr/share/backgrounds/")
                                        .replace("20.04/", "usr/share/backgrounds/"))[0]
        if pattern_stem == stem or fnmatch.fnmatch(original, pattern):
            found = fields
    if found is None:
        raise LookupError(f"no copyright paragraph names {original}")
    return {"licence": found.get("License", ""), "author": found.get("Copyright", ""),
            "original": found.get("Comment", "")}


def small(image: Image.Image) -> Image.Image:
    image = image.convert("RGB")
    scale = SHORT_SIDE / min(image.size)
    if scale < 1:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.LANCZOS)
    return image


def fetch(work: Path) -> dict[str, dict]:
    """Download and unpack the packages; {package: {"version", "root", "copyright"}}."""
    packages = {}
    debs = sorted({package for _, package, _ in PHOTOS.values() if package != "scipy"})
    subprocess.run(["apt-get", "download", *debs], cwd=work, check=True)
    for package in debs:
        deb, = glob.glob(str(work / f"{package}_*.deb"))
        version = Path(deb).name.split("_")[1].replace("%3a", ":")
        root = work / package
        subprocess.run(["dpkg", "-x", deb, str(root)], check=True)
        text = (root / "usr/share/doc" / package / "copyright").read_text()
        packages[package] = {"version": version, "root": root, "copyright": debian_copyright(text)}
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(work),
                    SCIPY], check=True)
    wheel, = glob.glob(str(work / "scipy-*.whl"))
    packages["scipy"] = {"version": SCIPY.split("==")[1], "wheel": wheel}
    return packages


def extract(packages: dict) -> dict[str, tuple[Image.Image, dict]]:
    photos = {}
    rcc = {}
    if "gcompris-qt-data" in packages:
        for path in glob.glob(str(packages["gcompris-qt-data"]["root"] /
                                  "usr/share/gcompris-qt/rcc/*.rcc")):
            rcc.update(read_rcc(Path(path).read_bytes()))
    for name, (title, package, original) in PHOTOS.items():
        info = packages[package]
        if package == "scipy":
            import zipfile

            with zipfile.ZipFile(info["wheel"]) as wheel:
                raw = bz2.decompress(wheel.read(original))
            image = Image.fromarray(np.frombuffer(raw, np.uint8).reshape(768, 1024, 3))
            credit = dict(SCIPY_ATTRIBUTION)
        elif package == "gcompris-qt-data":
            image = Image.open(io.BytesIO(rcc[original]))
            credit = attribution(info["copyright"], original)
        else:
            image = Image.open(info["root"] / original)
            credit = attribution(info["copyright"], original)
        photos[name] = (small(image), {"title": title, "package": package,
                                        "version": info["version"], "file": original, **credit})
    return photos


def top1(names):
    sys.path.insert(0, str(HERE.parent.parent))
    import helpers as h

    model = h.load_model()
    batch = np.concatenate([h.prepare(str(HERE / f"{name}.jpg"), model) for name in names])
    logits = model.predict(batch, batch_size=16, verbose=0)
    probabilities = np.exp(logits - logits.max(1, keepdims=True))
    probabilities /= probabilities.sum(1, keepdims=True)
    return {name: (h.class_name(int(p.argmax())), float(p.max()))
            for name, p in zip(names, probabilities)}


def write_table(manifest, classes):
    rows = ["| photo | what | top-1 (probability) | source package | original file | licence | "
            "author | original |", "|---|---|---|---|---|---|---|---|"]
    for name, entry in manifest.items():
        label, probability = classes.get(name, ("", 0.0))
        package = f"{entry['package']} {entry['version']}"
        origin = entry["original"] if entry["original"].startswith("https://") else ""
        rows.append(f"| `{name}` | {entry['title']} | {label} ({probability:.2f}) | {package} | "
                    f"`{entry['file']}` | {entry['licence']} | {entry['author']} | {origin} |")
    readme = HERE / "README.md"
    text = readme.read_text()
    start, end = "<!-- table -->", "<!-- /table -->"
    before, rest = text.split(start)
    _, after = rest.split(end)
    readme.write_text(before + start + "\n" + "\n".join(rows) + "\n" + end + after)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-model", action="store_true", help="keep the README's top-1 column")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        photos = extract(fetch(Path(work)))
    manifest = {}
    for name, (image, entry) in photos.items():
        image.save(HERE / f"{name}.jpg", quality=QUALITY, optimize=True)
        entry["size"] = list(image.size)
        manifest[name] = entry
    classes = {} if args.no_model else top1(list(manifest))
    for name, (label, probability) in classes.items():
        manifest[name]["top1"] = label
        manifest[name]["top1_probability"] = round(probability, 2)
    (HERE / "photos.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n")
    if classes:
        write_table(manifest, classes)
    total = sum((HERE / f"{name}.jpg").stat().st_size for name in manifest)
    print(f"{len(manifest)} photos, {total / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
