"""The course website and slide decks (tools/build_site.py).

A real build of lesson 00 (its page, its slides, the README page and the index) is checked
by independent means: the HTML is read again with BeautifulSoup, every script, style sheet,
image and font reference is resolved on disk, and a regular expression finds any URL with a
scheme in them. The link checker itself is tested on a hand-made site with one fault of
each kind, the slide structure on a hand-made notebook, the lesson list against the
notebooks folder. In Chromium (browser marker) the built pages are opened from disk and
every request is recorded: nothing leaves the machine, MathJax typesets, reveal.js starts.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("build_site", REPO / "tools" / "build_site.py")
build_site = importlib.util.module_from_spec(_spec)
sys.modules["build_site"] = build_site
_spec.loader.exec_module(build_site)

LESSON = "00"
SCHEME = re.compile(r"^(?:[a-z][a-z0-9+.-]*:)?//", re.I)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    problems = build_site.build(out, [LESSON], pages=True, slides=True)
    return out, problems


def _lesson_stem():
    return build_site.select([LESSON])[0].stem


def _references(path: Path):
    """(kind, url) of every asset a page loads, read with BeautifulSoup."""
    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    for tag in soup.find_all("script", src=True):
        yield "script", tag["src"]
    for tag in soup.find_all("link", href=True):
        yield "link", tag["href"]
    for tag in soup.find_all("img", src=True):
        yield "img", tag["src"]
    for tag in soup.find_all("style"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", tag.get_text()):
            yield "css", url


def test_the_build_reports_no_problem(site):
    out, problems = site
    assert problems == 0
    stem = _lesson_stem()
    for page in ("index.html", "readme.html", f"lessons/{stem}.html",
                 f"slides/{stem}.slides.html"):
        assert (out / page).is_file(), page


def test_no_script_or_style_comes_from_the_network(site):
    out, _ = site
    pages = list(out.rglob("*.html"))
    assert len(pages) >= 4
    for page in pages:
        for kind, url in _references(page):
            assert not SCHEME.match(url), f"{page.name} loads {url} ({kind})"
            if url.startswith("data:"):
                continue
            target = (page.parent / url.split("?")[0].split("#")[0]).resolve()
            assert target.is_file(), f"{page.name}: {url} is missing"
        inline = " ".join(t.get_text() for t in BeautifulSoup(
            page.read_text(encoding="utf-8"), "html.parser").find_all("script", src=False))
        assert not re.search(r"https?://", inline), page.name
    for sheet in out.rglob("*.css"):
        for url in re.findall(r"url\(\s*['\"]?([^'\")]+)", sheet.read_text(encoding="utf-8")):
            assert not SCHEME.match(url) or url.startswith("data:"), f"{sheet.name}: {url}"


def test_mathjax_and_revealjs_are_local_files(site):
    out, _ = site
    stem = _lesson_stem()
    lesson = (out / f"lessons/{stem}.html").read_text(encoding="utf-8")
    assert '../_static/mathjax/MathJax.js?config=' in lesson
    assert (out / "_static/mathjax/MathJax.js").is_file()
    assert (out / "_static/mathjax/config/TeX-AMS-MML_HTMLorMML-full.js").is_file()
    slides = (out / f"slides/{stem}.slides.html").read_text(encoding="utf-8")
    assert '../_static/revealjs/dist/reveal.js' in slides
    assert "MIT" in (out / "_static/revealjs/LICENSE").read_text(encoding="utf-8")
    assert "require(" not in slides, "the reveal template's require.js loader is replaced"


def test_every_internal_link_resolves(site):
    """Independent of the tool's checker: every <a href> without a scheme, by BeautifulSoup."""
    out, _ = site
    checked = 0
    ids = {}

    def ids_of(target):
        if target not in ids:
            ids[target] = {t["id"] for t in BeautifulSoup(
                target.read_text(encoding="utf-8"), "html.parser").find_all(id=True)}
        return ids[target]
    for page in out.rglob("*.html"):
        if "_static" in page.parts:
            continue
        soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
        for tag in soup.find_all("a", href=True):
            href = tag["href"]
            if SCHEME.match(href) or href.startswith(("mailto:", "http:", "https:")):
                continue
            path, _, fragment = href.partition("#")
            target = (page.parent / path).resolve() if path else page
            assert target.is_file(), f"{page.name}: {href}"
            if fragment and target.suffix == ".html":
                assert fragment in ids_of(target), f"{page.name}: {href}"
            checked += 1
    assert checked >= 5


def test_lesson_page_has_its_figures_and_navigation(site):
    out, _ = site
    stem = _lesson_stem()
    soup = BeautifulSoup((out / f"lessons/{stem}.html").read_text(encoding="utf-8"),
                         "html.parser")
    images = [img["src"] for img in soup.find_all("img")]
    notebook = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    figures = sum(1 for c in notebook.cells for o in c.get("outputs", [])
                  if {"image/png", "image/jpeg"} & set(o.get("data", {})))
    assert len(images) == figures
    assert all(src.startswith(f"{stem}_files/") for src in images)
    # Each explorer says where it runs, instead of its widget's text form.
    widgets = sum(1 for c in notebook.cells for o in c.get("outputs", [])
                  if build_site.WIDGET in o.get("data", {}))
    assert widgets >= 1
    assert len(soup.select(".uc-widget-note")) == widgets
    assert "children=(" not in soup.get_text()
    hrefs = {a["href"] for a in soup.select("nav.uc-nav a")}
    assert "../index.html" in hrefs and f"../slides/{stem}.slides.html" in hrefs


def test_slides_follow_the_headings(site):
    out, _ = site
    stem = _lesson_stem()
    soup = BeautifulSoup((out / f"slides/{stem}.slides.html").read_text(encoding="utf-8"),
                         "html.parser")
    top = soup.select("div.slides > section")
    notebook = nbformat.read(REPO / "notebooks" / f"{stem}.ipynb", as_version=4)
    headings = sum(1 for c in notebook.cells if c.cell_type == "markdown"
                   for line in c.source.splitlines() if re.match(r"#{1,2}\s", line))
    assert len(top) == headings
    # The slides show the same figures as the page, from the same files.
    page_images = {img["src"].split("/")[-1] for img in BeautifulSoup(
        (out / f"lessons/{stem}.html").read_text(encoding="utf-8"), "html.parser")("img")}
    slide_images = {img["src"] for img in soup("img")}
    assert {src.split("/")[-1] for src in slide_images} == page_images
    assert all(src.startswith(f"../lessons/{stem}_files/") for src in slide_images)


def test_the_index_lists_every_lesson(site):
    """Every notebook of notebooks/ is listed, in order, with its title and summary; a
    build of one lesson links that lesson's page and slides, and no other."""
    out, _ = site
    notebooks = sorted((REPO / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    soup = BeautifulSoup((out / "index.html").read_text(encoding="utf-8"), "html.parser")
    rows = soup.select("table.uc-lessons tbody tr")
    assert [row["id"] for row in rows] == [f"lesson-{p.stem.split('_')[0]}" for p in notebooks]
    for row, path in zip(rows, notebooks):
        links = {a["href"] for a in row("a")}
        built = path.stem == _lesson_stem()
        assert links == ({f"lessons/{path.stem}.html", f"slides/{path.stem}.slides.html"}
                         if built else set()), path.name
        first = nbformat.read(path, as_version=4).cells[0].source
        title = row.select_one(".uc-title").get_text()
        assert title and title in first.splitlines()[0]
        summary = row.select_one(".uc-summary").get_text(" ", strip=True)
        assert len(summary) > 40 and summary.split()[0] in first, path.name
    pages = {a["href"] for a in soup.select("main > p a")}
    assert "readme.html" in pages


def test_checker_finds_each_kind_of_fault(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "ok.css").write_text("body { background: url(missing.png); }")
    (tmp_path / "a.html").write_text(
        '<html><head><script src="https://cdn.example/x.js"></script>'
        '<link rel="stylesheet" href="ok.css"><link rel="stylesheet" href="//cdn.example/y.css">'
        '</head><body id="top"><a href="sub/b.html#here">fine</a>'
        '<a href="sub/b.html#nowhere">no anchor</a><a href="gone.html">gone</a>'
        '<a href="https://arxiv.org/abs/1">a paper</a><img src="data:image/png;base64,AA">'
        '<script>import("https://cdn.example/z.mjs")</script></body></html>')
    (tmp_path / "sub/b.html").write_text('<p id="here"><a href="../a.html#top">back</a></p>')
    problems = build_site.check(tmp_path, quiet=True)
    # Two network style/script tags, one network import, a missing anchor, a missing
    # page, a missing image inside a style sheet; the paper link and the data URI are fine.
    assert problems == 6


def test_derived_slide_structure():
    picture = {"image/png": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhf"
                            "DwAChwGA60e6kgAAAABJRU5ErkJggg==", "text/plain": "<Figure>"}
    notebook = new_notebook(cells=[
        new_markdown_cell("# 99 · Title\n\nSummary."),
        new_markdown_cell("## Section\n\nProse."),
        new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(1)",
                      outputs=[new_output("stream", name="stdout", text="1\n")]),
        new_markdown_cell("Prose before a heading.\n\n### Sub-section\n\nMore."),
        new_code_cell("\n".join(f"x{i} = {i}" for i in range(30)),
                      outputs=[new_output("display_data", data=picture)]),
        new_code_cell("\n".join(f"y{i} = {i}" for i in range(30))),
        new_markdown_cell("\n".join(["A long paragraph line. " * 4] * 40)),
    ])
    derived = build_site.derive_slides(notebook)
    kinds = [(c.cell_type, c.metadata["slideshow"]["slide_type"]) for c in derived.cells]
    assert kinds == [("markdown", "slide"), ("markdown", "slide"), ("code", "-"),
                     ("markdown", "-"), ("markdown", "subslide"), ("code", "-"),
                     ("code", "skip"), ("markdown", "subslide")]
    assert "NBVAL" not in derived.cells[2].source
    assert build_site.HIDE_INPUT_TAG in derived.cells[5].metadata["tags"]
    assert notebook.cells[1].metadata == {}, "the notebook itself is left alone"


@pytest.mark.browser
def test_pages_work_offline_in_chromium(site):
    from tests.e2e.jupyterlab import HOW_TO_ENABLE, find_chromium, launch_chromium
    executable = find_chromium()
    if executable is None:
        pytest.skip(HOW_TO_ENABLE)
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    out, _ = site
    stem = _lesson_stem()
    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)
        try:
            for page_path, ready in (
                    ("index.html", "() => document.querySelectorAll('tbody tr').length"),
                    (f"lessons/{stem}.html", "() => document.querySelectorAll("
                                             "'.MathJax, .MathJax_Display').length"),
                    (f"slides/{stem}.slides.html", "() => window.Reveal && Reveal.isReady()"
                                                   " && Reveal.getTotalSlides()")):
                page = browser.new_page()
                requests, failed, errors = [], [], []
                page.on("request", lambda r: requests.append(r.url))
                page.on("requestfailed", lambda r: failed.append(r.url))
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto((out / page_path).as_uri())
                page.wait_for_function(ready, timeout=30_000)
                page.wait_for_timeout(500)
                leaving = [u for u in requests if not u.startswith(("file:", "data:", "about:"))]
                assert leaving == [], page_path
                # MathJax's MathML output declares TeX web fonts that the package does not
                # ship; the HTML-CSS output in use draws with its STIX-Web fonts.
                failed = [u for u in failed if "/mathjax/fonts/HTML-CSS/TeX/" not in u
                          and not u.startswith("about:")]
                assert failed == [], page_path
                assert errors == [], page_path
                page.close()
        finally:
            browser.close()
