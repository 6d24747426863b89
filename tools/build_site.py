"""Build the course website and every lesson's slide deck from the executed notebooks.

    python tools/build_site.py                      # website + slides into build/site, checked
    python tools/build_site.py 03 05                # lessons 03 and 05 (and the index)
    python tools/build_site.py site 03              # only lesson 03's page
    python tools/build_site.py slides               # only the slide decks (build/site/slides)
    python tools/build_site.py check build/site     # check a built site's links and assets
    python tools/build_site.py --out DIR ...        # another output folder

Nothing is re-executed: nbconvert renders the outputs the notebooks were committed with.
Everything works offline (open build/site/index.html from disk, or copy the folder to a USB
stick or any static web server): MathJax 2.7 comes from the `jupyter-server-mathjax`
package and reveal.js 5 from `sphinx-revealjs`, both copied into `_static/`; the templates
in site/templates/ replace the CDN scripts of nbconvert's `lab` and `reveal` templates.

The slide structure is derived at build time from each lesson's headings, on a copy of the
notebook (the notebooks themselves carry no slide metadata): a `#` or `##` heading starts a
slide, `###` and deeper a sub-slide (reveal.js's vertical stack, reached with the down
arrow); a cell that would overflow the slide with what is already on it starts a sub-slide;
code longer than SLIDE_CODE_LINES lines is hidden on slides (its output stays; without an
output the cell is skipped). The website shows every cell in full.

`check` (also run after every build) checks every HTML and CSS file of the site: each local
link, script, style sheet, image and font resolves to a file, each `#fragment` to an id of
its page, and no script or style sheet is loaded from the network (links to papers are
allowed and not followed). The command exits non-zero when it finds a problem.
"""

from __future__ import annotations

import argparse
import copy
import html
import importlib.util
import io
import re
import shutil
import sys
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import jinja2
import markupsafe
import nbformat
from nbconvert import HTMLExporter, SlidesExporter
from nbconvert.filters import markdown2html
from nbconvert.preprocessors import TagRemovePreprocessor
from traitlets.config import Config

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
SITE = REPO / "site"
TEMPLATES = SITE / "templates"
DEFAULT_OUT = REPO / "build" / "site"

# Course pages rendered beside the lessons, when present: (source, page, label on the index).
PAGES = (("README.md", "readme.html", "About the course, setup and the helpers package"),
         ("TEACHING.md", "teaching.html", "Teacher's guide"),
         ("helpers/README.md", "helpers.html", "The helpers package, lesson by lesson"),
         ("benchmarks/README.md", "benchmarks.html", "Performance"),
         ("tests/README.md", "tests.html", "The tests"))

MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
# The parts of MathJax 2.7 its TeX-to-HTML-CSS configuration loads (of 9.6 MB: the
# accessibility explorer, the SVG output and 50 translations are left out).
MATHJAX_PARTS = ("MathJax.js", "LICENSE", "config", "extensions", "fonts/HTML-CSS",
                 "jax/element", "jax/input", "jax/output/HTML-CSS", "localization/en")
MATHJAX_LEFT_OUT = ("extensions/a11y",)
REVEAL_THEME = "white"
REVEAL_PARTS = ("LICENSE", "dist/reveal.js", "dist/reveal.css", "dist/reset.css",
                f"dist/theme/{REVEAL_THEME}.css", "dist/theme/fonts/source-sans-pro",
                "plugin/notes/notes.js")

# Slides: 1280 x 720 (a 16:9 projector). The budget is the height a slide can show, in px
# at reveal.js's scale, used by the estimate of what fits on one slide.
SLIDE_WIDTH, SLIDE_HEIGHT = 1280, 720
SLIDE_BUDGET = 660
SLIDE_CODE_LINES = 12
HIDE_INPUT_TAG = "uc-slides-hide-input"
TEXT_LINE_PX, TEXT_CHARS = 26, 95           # 20 px prose over ~1080 px of content
CODE_LINE_PX, CODE_CHARS = 22, 95           # 19 px code
CONTENT_WIDTH = 1080
LESSON_PATTERN = "[0-9][0-9]*_*.ipynb"
# A live ipywidgets explorer needs a kernel (and its state is not saved): a page says where
# to use it instead of showing the widget's text form.
WIDGET = "application/vnd.jupyter.widget-view+json"
WIDGET_NOTE = ('<div class="uc-widget-note">Interactive explorer: its sliders and drop-downs '
               "run in JupyterLab (open this lesson's notebook there and run it).</div>")
REPO_FILE_LIMIT = 1024 * 1024   # a linked repository file up to this size is copied in


@dataclass
class Lesson:
    path: Path
    number: str          # "03", or "08a" for a part
    title: str           # "Occlusion: hide a part, watch the score drop"
    summary: str         # the first paragraph of the first cell, as HTML

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def short(self) -> str:
        return f"{self.number} {self.title.split(':')[0]}"

    @property
    def page(self) -> str:
        return f"lessons/{self.stem}.html"

    @property
    def slides(self) -> str:
        return f"slides/{self.stem}.slides.html"


# ---------------------------------------------------------------------------- lessons

def lesson_info(path: Path) -> Lesson:
    """Number, title and one-paragraph summary from the notebook's first (markdown) cell."""
    notebook = nbformat.read(path, as_version=4)
    number = path.stem.split("_")[0]
    first = next((c for c in notebook.cells if c.cell_type == "markdown"), None)
    title, summary = path.stem, ""
    if first is not None:
        lines = first.source.strip().splitlines()
        if lines and lines[0].startswith("#"):
            heading = lines.pop(0).lstrip("#").strip()
            # "03 · Occlusion: ..." -> "Occlusion: ..."
            title = re.sub(rf"^{re.escape(number)}\s*[·:.\-–—]\s*", "", heading) or heading
        paragraphs = "\n".join(lines).strip().split("\n\n")
        prose = [p for p in paragraphs
                 if p.strip() and not p.lstrip().startswith(("#", "-", "*", "|", "<", ">"))]
        if prose:
            summary = markdown2html(" ".join(prose[0].split()))
    return Lesson(path=path, number=number, title=title, summary=summary)


def select(prefixes: list[str]) -> list[Path]:
    notebooks = sorted(NOTEBOOKS.glob(LESSON_PATTERN))
    if not prefixes:
        return notebooks
    missing = [p for p in prefixes if not any(nb.name.startswith(p) for nb in notebooks)]
    if missing:
        sys.exit(f"no notebook starts with: {', '.join(missing)}")
    return [nb for nb in notebooks if any(nb.name.startswith(p) for p in prefixes)]


# ----------------------------------------------------------------------- static files

def package_folder(package: str) -> Path:
    """A package's folder without importing it (sphinx_revealjs would import Sphinx)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"{package} is not installed: python -m pip install -r requirements.txt")
    return Path(list(spec.submodule_search_locations)[0])


def copy_parts(source: Path, target: Path, parts, left_out=()) -> None:
    skip = {source / p for p in left_out}
    for part in parts:
        src = source / part
        if not src.exists():
            sys.exit(f"missing in the installed package: {src}")
        dst = target / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True,
                            ignore=lambda d, names: [n for n in names if Path(d, n) in skip])
        else:
            shutil.copy2(src, dst)


def copy_static(out: Path, *, reveal: bool) -> None:
    static = out / "_static"
    static.mkdir(parents=True, exist_ok=True)
    for name in ("site.css", "mathjax_config.js"):
        shutil.copy2(SITE / name, static / name)
    copy_parts(package_folder("jupyter_server_mathjax") / "static", static / "mathjax",
               MATHJAX_PARTS, MATHJAX_LEFT_OUT)
    if reveal:
        copy_parts(package_folder("sphinx_revealjs") / "_static" / "revealjs",
                   static / "revealjs", REVEAL_PARTS)


# ------------------------------------------------------------------- link rewriting

MD_LINK = re.compile(r"(!?\[[^\]]*\])\(\s*<?([^)\s>]+)>?(\s+\"[^\"]*\")?\s*\)")
HTML_REF = re.compile(r"""((?:href|src)\s*=\s*)(["'])([^"']+)\2""")


def is_external(url: str) -> bool:
    return bool(urlsplit(url).scheme) or url.startswith("//")


class Linker:
    """Maps links between repository files to links between site pages.

    A lesson notebook becomes its page, a rendered Markdown page its HTML, any other file
    of the repository (a photo, a helper's source) is copied into the site under repo/.
    """

    def __init__(self, out: Path, lessons: list[Lesson], *, pages: bool):
        self.out = out
        self.targets = {lesson.path.resolve(): lesson.page if pages else lesson.slides
                        for lesson in lessons}
        if pages:
            self.targets.update({(REPO / src).resolve(): page for src, page, _ in PAGES})
        self.unlinked: list[str] = []

    def url(self, target: str, source_dir: Path, page: str) -> str | None:
        if is_external(target) or target.startswith("#"):
            return target
        parts = urlsplit(target)
        path = (source_dir / unquote(parts.path)).resolve()
        fragment = f"#{parts.fragment}" if parts.fragment else ""
        if path in self.targets:
            site_path = self.targets[path]
        elif (path.is_file() and REPO in path.parents and path.suffix != ".ipynb"
              and path.stat().st_size <= REPO_FILE_LIMIT):
            site_path = "repo/" + path.relative_to(REPO).as_posix()
            (self.out / site_path).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, self.out / site_path)
        else:
            self.unlinked.append(f"{page}: {target}")
            return None
        depth = page.count("/")
        return "../" * depth + site_path + fragment

    def markdown(self, text: str, source_dir: Path, page: str) -> str:
        def link(match):
            label, target, title = match.group(1), match.group(2), match.group(3) or ""
            url = self.url(target, source_dir, page)
            return label[1:-1] if url is None else f"{label}({url}{title})"

        def ref(match):
            url = self.url(match.group(3), source_dir, page)
            return match.group(0) if url is None else f"{match.group(1)}{match.group(2)}{url}{match.group(2)}"
        return HTML_REF.sub(ref, MD_LINK.sub(link, text))

    def notebook(self, notebook, source_dir: Path, page: str):
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                cell.source = self.markdown(cell.source, source_dir, page)
        return notebook


def read_lesson(lesson: Lesson):
    """The notebook, its outputs named by their original cell so that the website and the
    slides (whose copy splits cells) share one file per figure."""
    notebook = nbformat.read(lesson.path, as_version=4)
    notebook.metadata["title"] = f"{lesson.number} · {lesson.title}"
    for cell_index, cell in enumerate(notebook.cells):
        for index, output in enumerate(cell.get("outputs", [])):
            if output.output_type not in ("display_data", "execute_result"):
                continue
            output.setdefault("metadata", {})["filename"] = f"output_{cell_index}_{index}"
            if WIDGET in output.get("data", {}):
                output["data"] = {"text/html": WIDGET_NOTE}
    return notebook


# --------------------------------------------------------------------------- slides

def _image_height(data: str) -> float:
    from base64 import b64decode

    from PIL import Image
    try:
        width, height = Image.open(io.BytesIO(b64decode(data))).size
    except Exception:       # an unreadable image: count it as a full slide
        return SLIDE_BUDGET
    return height * min(1.0, CONTENT_WIDTH / width)


def _text_height(text: str, chars: int, line_px: int) -> float:
    lines = text.splitlines() or [""]
    return line_px * sum(1 + len(line) // chars for line in lines)


def cell_height(cell) -> float:
    """Estimated height on a slide, in px: prose, code shown, and outputs."""
    if cell.cell_type == "markdown":
        heading = 40 if cell.source.lstrip().startswith("#") else 0
        return heading + _text_height(cell.source, TEXT_CHARS, TEXT_LINE_PX)
    height = 0.0
    if HIDE_INPUT_TAG not in cell.metadata.get("tags", []):
        height += 20 + _text_height(cell.source, CODE_CHARS, CODE_LINE_PX)
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            height += _text_height(output.text, CODE_CHARS, CODE_LINE_PX)
            continue
        data = output.get("data", {})
        if "image/jpeg" in data or "image/png" in data:
            height += _image_height(data.get("image/jpeg") or data.get("image/png"))
        elif "text/html" in data:
            height += 30 * data["text/html"].count("<tr") or 60
        elif output.output_type == "error":
            height += SLIDE_BUDGET
        else:
            height += 60
    return height


def heading_level(cell) -> int:
    if cell.cell_type != "markdown":
        return 0
    match = re.match(r"(#{1,6})\s", cell.source.lstrip())
    return len(match.group(1)) if match else 0


def split_at_headings(cell) -> list:
    """A markdown cell as one cell per heading (a heading may follow prose in a cell)."""
    if cell.cell_type != "markdown":
        return [cell]
    pieces, current, fenced = [], [], False
    for line in cell.source.splitlines():
        fenced ^= line.lstrip().startswith("```")
        if not fenced and re.match(r"#{1,6}\s", line) and "".join(current).strip():
            pieces.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    pieces.append("\n".join(current).strip("\n"))
    if len(pieces) == 1:
        return [cell]
    return [nbformat.v4.new_markdown_cell(piece, metadata=copy.deepcopy(cell.metadata))
            for piece in pieces]


def derive_slides(notebook):
    """A copy of the notebook with reveal.js slide metadata derived from its structure."""
    notebook = copy.deepcopy(notebook)
    notebook.cells = [piece for cell in notebook.cells for piece in split_at_headings(cell)]
    for cell in notebook.cells:
        if cell.cell_type == "code":
            # The test markers say nothing to an audience.
            cell.source = "\n".join(line for line in cell.source.splitlines()
                                    if not line.startswith("# NBVAL_"))
        tags = list(cell.metadata.get("tags", []))
        if cell.cell_type == "code" and len(cell.source.splitlines()) > SLIDE_CODE_LINES:
            tags.append(HIDE_INPUT_TAG)
        cell.metadata["tags"] = tags
    used = 0.0
    for index, cell in enumerate(notebook.cells):
        tags = cell.metadata["tags"]
        level = heading_level(cell)
        if cell.cell_type == "code" and HIDE_INPUT_TAG in tags and not cell.get("outputs"):
            kind = "skip"
        elif index == 0 or level in (1, 2):
            kind = "slide"
        elif level >= 3:
            kind = "subslide"
        else:
            kind = "-"
        height = 0.0 if kind == "skip" else cell_height(cell)
        # Prose that introduces the next code cell goes onto the same slide as its output.
        following = notebook.cells[index + 1] if index + 1 < len(notebook.cells) else None
        needed = height
        if cell.cell_type == "markdown" and following is not None \
                and following.cell_type == "code":
            together = height + cell_height(following)
            needed = together if together <= SLIDE_BUDGET else height
        if kind == "-" and used > 0 and used + needed > SLIDE_BUDGET:
            kind = "subslide"
        if kind in ("slide", "subslide"):
            used = height
        elif kind == "-":
            used += height
        cell.metadata["slideshow"] = {"slide_type": kind}
    return notebook


# ------------------------------------------------------------------------- exporting

def _config() -> Config:
    config = Config()
    config.ExtractOutputPreprocessor.enabled = True
    return config


def _mathjax(root: str) -> str:
    return f"{root}_static/mathjax/MathJax.js?config={MATHJAX_CONFIG}"


class SharedStyles:
    """nbconvert inlines JupyterLab's style sheets (270 kB) into every page; the site
    links one copy of each instead, written to _static/nbconvert/ on first use."""

    site_out: Path
    site_root: str

    def _init_resources(self, resources):
        resources = super()._init_resources(resources)
        environment = self.environment

        def link(name):
            target = self.site_out / "_static" / "nbconvert" / name
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(environment.loader.get_source(environment, name)[0],
                                  encoding="utf-8")
            return markupsafe.Markup(f'<link rel="stylesheet" '
                                     f'href="{self.site_root}_static/nbconvert/{name}">')
        resources["include_css"] = link
        return resources


class SiteHTMLExporter(SharedStyles, HTMLExporter):
    pass


class SiteSlidesExporter(SharedStyles, SlidesExporter):
    pass


def html_exporter(out: Path, root: str) -> HTMLExporter:
    exporter = SiteHTMLExporter(config=_config(), template_name="uc_lab",
                                extra_template_basedirs=[str(TEMPLATES)])
    exporter.site_out, exporter.site_root = out, root
    exporter.mathjax_url = _mathjax(root)
    return exporter


def slides_exporter(out: Path, root: str) -> SlidesExporter:
    exporter = SiteSlidesExporter(config=_config(), template_name="uc_reveal",
                                  extra_template_basedirs=[str(TEMPLATES)])
    exporter.site_out, exporter.site_root = out, root
    exporter.mathjax_url = _mathjax(root)
    exporter.reveal_url_prefix = f"{root}_static/revealjs"
    exporter.reveal_theme = REVEAL_THEME
    exporter.reveal_transition = "none"
    exporter.reveal_number = "c/t"
    exporter.reveal_width, exporter.reveal_height = str(SLIDE_WIDTH), str(SLIDE_HEIGHT)
    exporter.register_preprocessor(
        TagRemovePreprocessor(remove_input_tags={HIDE_INPUT_TAG}, enabled=True), enabled=True)
    return exporter


def write(out: Path, page: str, body: str, resources: dict) -> int:
    target = out / page
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(body, encoding="utf-8")
    for name, data in resources.get("outputs", {}).items():
        path = (target.parent / name).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(resources.get("outputs", {}))


@dataclass
class Plan:
    """What the output folder holds once this build is done: a page or a deck is linked
    (from the index, the navigation, other pages) only where it will exist."""

    out: Path
    lessons: list[Lesson]       # every lesson of the course, in order
    chosen: set[str]            # the stems built now
    pages: bool
    slides: bool

    def has_page(self, lesson: Lesson) -> bool:
        return (self.pages and lesson.stem in self.chosen) or (self.out / lesson.page).is_file()

    def has_slides(self, lesson: Lesson) -> bool:
        return ((self.slides and lesson.stem in self.chosen)
                or (self.out / lesson.slides).is_file())

    def neighbours(self, lesson: Lesson, *, slides: bool) -> dict:
        has = self.has_slides if slides else self.has_page
        index = self.lessons.index(lesson)

        def entry(other):
            if other is None or not has(other):
                return None
            return {"href": Path(other.slides if slides else other.page).name,
                    "label": other.short}
        return {"previous": entry(self.lessons[index - 1] if index > 0 else None),
                "next": entry(self.lessons[index + 1] if index + 1 < len(self.lessons)
                              else None)}


def build_lesson_page(lesson: Lesson, plan: Plan, linker: Linker) -> None:
    notebook = read_lesson(lesson)
    linker.notebook(notebook, lesson.path.parent, lesson.page)
    uc = {"root": "../", "lesson": lesson.path.name,
          "slides": f"../{lesson.slides}" if plan.has_slides(lesson) else None,
          **plan.neighbours(lesson, slides=False)}
    resources = {"output_files_dir": f"{lesson.stem}_files", "uc": uc,
                 "metadata": {"name": lesson.stem, "path": str(lesson.path.parent)}}
    body, resources = html_exporter(plan.out, "../").from_notebook_node(notebook,
                                                                        resources=resources)
    write(plan.out, lesson.page, body, resources)


def build_lesson_slides(lesson: Lesson, plan: Plan, linker: Linker) -> dict:
    notebook = read_lesson(lesson)
    linker.notebook(notebook, lesson.path.parent, lesson.slides)
    notebook = derive_slides(notebook)
    # The figures are the lesson page's files (same cells, same names): stored once.
    resources = {"output_files_dir": f"../lessons/{lesson.stem}_files",
                 "uc": {"root": "../", **plan.neighbours(lesson, slides=True)},
                 "metadata": {"name": lesson.stem, "path": str(lesson.path.parent)}}
    body, resources = slides_exporter(plan.out, "../").from_notebook_node(notebook,
                                                                          resources=resources)
    write(plan.out, lesson.slides, body, resources)
    kinds = [c.metadata["slideshow"]["slide_type"] for c in notebook.cells]
    return {kind: kinds.count(kind) for kind in ("slide", "subslide", "skip")}


def build_page(source: str, page: str, out: Path, linker) -> str:
    text = (REPO / source).read_text(encoding="utf-8")
    title = next((line.lstrip("#").strip() for line in text.splitlines()
                  if line.startswith("#")), source)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])
    notebook.metadata["title"] = title
    linker.notebook(notebook, (REPO / source).parent, page)
    resources = {"uc": {"root": "", "lesson": None, "slides": None, "previous": None,
                        "next": None},
                 "metadata": {"name": Path(source).stem, "path": str(REPO)}}
    body, resources = html_exporter(out, "").from_notebook_node(notebook, resources=resources)
    write(out, page, body, resources)
    return title


def build_index(out: Path, lessons: list[Lesson], pages, *, has_page, has_slides) -> None:
    """The index lists every lesson; it links what the output folder holds."""
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)),
                                     autoescape=True)
    readme = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    course = {"title": readme[0].lstrip("# ").strip() if readme else "Unmasking CNNs",
              "tagline": next((line.strip("* ") for line in readme if line.startswith("*")), ""),
              "about": "A JupyterLab course that opens up a real ImageNet-pretrained image "
                       "classifier, lesson by lesson, on real photos. These pages are the "
                       "executed lessons, with every figure; the slides are the same lessons "
                       "as slide decks."}
    entries = []
    for lesson in lessons:
        page = lesson.page if has_page(lesson) else None
        slides = lesson.slides if has_slides(lesson) else None
        entries.append({"number": lesson.number, "title": lesson.title,
                        "summary": lesson.summary, "href": page or slides, "page": page,
                        "slides": slides})
    links = [{"href": page, "label": label} for page, label in pages]
    (out / "index.html").write_text(
        environment.get_template("course_index.html.j2").render(
            course=course, lessons=entries, pages=links), encoding="utf-8")


def build(out: Path, prefixes: list[str], *, pages: bool, slides: bool) -> int:
    """Build the chosen lessons (all without prefixes) into out; return the problems found."""
    start = time.perf_counter()
    everything = [lesson_info(path) for path in select([])]
    chosen = {path.stem for path in select(prefixes)}
    out.mkdir(parents=True, exist_ok=True)
    plan = Plan(out=out, lessons=everything, chosen=chosen, pages=pages, slides=slides)
    copy_static(out, reveal=slides or any(plan.has_slides(lesson) for lesson in everything))
    linker = Linker(out, [lesson for lesson in everything
                          if (plan.has_page if pages else plan.has_slides)(lesson)],
                    pages=pages)
    if pages:
        for source, page, _ in PAGES:
            if (REPO / source).exists():
                build_page(source, page, out, linker)
    for lesson in everything:
        if lesson.stem not in chosen:
            continue
        t0 = time.perf_counter()
        if pages:
            build_lesson_page(lesson, plan, linker)
        counts = build_lesson_slides(lesson, plan, linker) if slides else {}
        deck = (f"  slides {counts['slide']} + sub-slides {counts['subslide']}, "
                f"{counts['skip']} cells skipped" if counts else "")
        print(f"{lesson.stem:42s} {time.perf_counter() - t0:5.1f} s{deck}")
    rendered = [(page, label) for _, page, label in PAGES if (out / page).is_file()]
    build_index(out, everything, rendered, has_page=plan.has_page,
                has_slides=plan.has_slides)
    for entry in linker.unlinked:
        print(f"unlinked (not part of this build): {entry}")
    elapsed = time.perf_counter() - start
    files = [p for p in out.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(f"built {out} in {elapsed:.1f} s: {len(files)} files, {size / 2**20:.1f} MiB")
    return check(out)


# -------------------------------------------------------------------------- checking

CSS_URL = re.compile(r"""url\(\s*(['"]?)([^'")]+)\1\s*\)|@import\s+(['"])([^'"]+)\3""")
ASSET_TAGS = {("script", "src"), ("link", "href"), ("img", "src"), ("source", "src"),
              ("iframe", "src"), ("video", "src"), ("audio", "src"), ("embed", "src")}


class _Page(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []     # (kind, url): kind "link" or "asset"
        self.styles: list[str] = []
        self.scripts: list[str] = []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if attrs.get(key):
                self.ids.add(attrs[key])
        if tag == "a" and attrs.get("href"):
            self.refs.append(("link", attrs["href"]))
        for asset_tag, key in ASSET_TAGS:
            if tag == asset_tag and attrs.get(key):
                kind = "link" if tag == "link" and "stylesheet" not in attrs.get("rel", "") \
                    and "icon" not in attrs.get("rel", "") else "asset"
                self.refs.append((kind, attrs[key]))
        if attrs.get("style"):
            self.styles.append(attrs["style"])
        if tag in ("style", "script") and not attrs.get("src"):
            self._in = tag

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "style":
            self.styles.append(data)
        elif self._in == "script":
            self.scripts.append(data)


def _css_urls(text: str) -> list[str]:
    return [m.group(2) or m.group(4) for m in CSS_URL.finditer(text)]


def check(root: Path, *, quiet: bool = False) -> int:
    """Print every broken local reference and every network asset; return the count."""
    root = root.resolve()
    problems: list[str] = []
    parsed: dict[Path, _Page] = {}

    def page(path: Path) -> _Page:
        if path not in parsed:
            parser = _Page()
            parser.feed(path.read_text(encoding="utf-8", errors="replace"))
            parsed[path] = parser
        return parsed[path]

    def resolve(origin: Path, url: str, kind: str, fragments: list) -> None:
        if url.startswith(("data:", "mailto:", "javascript:")):
            return
        if is_external(url):
            if kind == "asset":
                problems.append(f"{origin.relative_to(root)}: loads {url} from the network")
            return
        parts = urlsplit(url)
        target = origin if not parts.path else (origin.parent / unquote(parts.path)).resolve()
        if root not in target.parents and target != root:
            problems.append(f"{origin.relative_to(root)}: {url} points outside the site")
        elif not target.is_file():
            problems.append(f"{origin.relative_to(root)}: {url} does not exist")
        elif parts.fragment and target.suffix == ".html":
            fragments.append((origin, target, parts.fragment, url))

    fragments: list = []
    html_files = sorted(root.rglob("*.html"))
    css_files = sorted(root.rglob("*.css"))
    for path in html_files:
        parser = page(path)
        for kind, url in parser.refs:
            resolve(path, html.unescape(url), kind, fragments)
        for style in parser.styles:
            for url in _css_urls(style):
                resolve(path, url, "asset", fragments)
        for script in parser.scripts:
            for url in re.findall(r"""(?:src|import)\s*[=(]?\s*['"]((?:https?:)?//[^'"]+)""",
                                  script):
                problems.append(f"{path.relative_to(root)}: a script loads {url}")
    for path in css_files:
        for url in _css_urls(path.read_text(encoding="utf-8", errors="replace")):
            resolve(path, url, "asset", fragments)
    for origin, target, fragment, url in fragments:
        # nbconvert's heading ids keep the heading's percent-encoding; a browser tries both.
        if not {fragment, unquote(fragment)} & page(target).ids:
            problems.append(f"{origin.relative_to(root)}: {url}: no such anchor")
    for problem in problems:
        print(f"broken: {problem}")
    if not quiet:
        print(f"checked {len(html_files)} pages and {len(css_files)} style sheets: "
              f"{len(problems)} problems")
    return len(problems)


COMMANDS = ("all", "site", "slides", "check")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("words", nargs="*", metavar="[COMMAND] LESSON",
                        help="a command: all (default: pages and slides), site (the pages "
                             "and the index), slides (the slide decks) or check (a built "
                             "site, the folder may follow); then notebook name prefixes "
                             "(e.g. 03 05)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder")
    args = parser.parse_args(argv)
    words = list(args.words)
    args.command = words.pop(0) if words and words[0] in COMMANDS else "all"
    args.lessons = words
    if args.command == "check":
        return 1 if check(Path(args.lessons[0]) if args.lessons else args.out) else 0
    problems = build(args.out, args.lessons, pages=args.command in ("all", "site"),
                     slides=args.command in ("all", "slides"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
