"""End-to-end: the lessons in JupyterLab, in a real (headless) Chromium.

nbval executes notebooks but cannot see whether their widgets work: a
drop-down that never reaches the kernel, or a figure that never redraws, fails
silently. These tests open the lessons in JupyterLab the way a student does,
run them from the menu, and use their widgets:

* lessons 00 and 05: *Run All Cells*, the kernel goes idle, no cell shows an
  error (on the page, and in the saved notebook); lessons 03 and 09 run only the
  cells their widget needs, one by one as a student would (nbval runs them whole);
* lesson 00 (photo drop-down, block-size slider), lesson 03 (patch-size
  slider) and lesson 05 (class and layer drop-downs, and a photo file uploaded
  through the photo picker): the displayed figure's
  image data changes after the widget changes, within ``REDRAW_DEADLINE_S``
  (a deadline that catches a figure that never redraws, not a speed target;
  ``benchmarks/responsiveness.py`` measures the speed); lesson 03 refines its
  map coarse to fine, and every pass must reach the page;
* lesson 09's human-attention grid: clicked cells end up in the saved JSON.

JupyterLab runs on 127.0.0.1 in a temporary copy of ``notebooks/`` (the
committed notebooks are never modified) with ``UNMASKING_CNNS_FAST=1``.
Screenshots of each step go to a folder printed at the start
(``$UNMASKING_CNNS_SCREENSHOTS`` to choose it). Without Chromium the tests are
skipped with a message saying how to enable them; deselect them with
``python -m pytest -m "not browser"``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import nbformat
import pytest

import helpers as h

DATA = Path(__file__).resolve().parents[2] / "data"

from .jupyterlab import (HOW_TO_ENABLE, NOTEBOOKS, JupyterLabServer, NotebookPage,
                         find_chromium, launch_chromium)

pytestmark = pytest.mark.browser

RUN_ALL_DEADLINE_S = 420
REDRAW_DEADLINE_S = 60
VIEWPORT = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def chromium():
    executable = find_chromium()
    if executable is None:
        pytest.skip(HOW_TO_ENABLE)
    pytest.importorskip("playwright", reason="the browser tests need the `playwright` package "
                        "(pip install -r requirements.txt)")
    return executable


@pytest.fixture(scope="module")
def screenshots(request, tmp_path_factory):
    folder = os.environ.get("UNMASKING_CNNS_SCREENSHOTS")
    folder = Path(folder) if folder else tmp_path_factory.mktemp("browser-screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"browser test screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def lab(chromium):
    with JupyterLabServer(NOTEBOOKS, fast=True) as server:
        yield server


@pytest.fixture(scope="module")
def browser(chromium):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright, chromium)
        yield browser
        browser.close()


@pytest.fixture
def open_notebook(browser, lab, screenshots):
    """Open a notebook in a fresh browser tab; on the way out, a last screenshot and no kernels."""
    contexts, pages = [], []

    def opener(name: str, prefix: str | None = None) -> NotebookPage:
        if not (lab.root / name).exists():
            pytest.fail(f"notebooks/{name} does not exist")
        context = browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(REDRAW_DEADLINE_S * 1000)
        contexts.append(context)
        notebook = NotebookPage(context.new_page(), lab, name, screenshots, prefix)
        pages.append(notebook)
        notebook.open()
        return notebook

    yield opener
    for notebook in pages:
        try:
            notebook.shot("end")
        except Exception:  # a crashed page must not hide the test's own failure
            pass
    for context in contexts:
        context.close()
    lab.shutdown_kernels()


def run_all_without_errors(notebook: NotebookPage) -> float:
    seconds = notebook.run_all(timeout=RUN_ALL_DEADLINE_S)
    errors = notebook.errors()
    assert not errors, (f"{notebook.notebook} shows errors after Run All Cells "
                        f"(screenshots: {notebook.screenshots}):\n" + "\n---\n".join(errors))
    notebook.save()
    saved = notebook.saved_errors()
    assert not saved, f"{notebook.notebook} saved with errors: {saved}"
    return seconds


def assert_redraws(notebook: NotebookPage, cell, change, what: str, draws=None) -> float:
    """Apply ``change`` (a widget action) and wait until the cell's figure differs.

    ``draws(value)``: how many figures the change must draw, given what
    ``change`` returned (a coarse-to-fine explorer draws one per pass); one
    by default. Seconds to the first.
    """
    before = notebook.figure_signature(cell)
    assert before, f"{notebook.notebook}: the interactive cell shows no figure before {what}"
    notebook.arm_figure_timer(cell)
    value = change()
    expected = 1 if draws is None else draws(value)
    try:
        times = notebook.wait_for_draws(expected, REDRAW_DEADLINE_S)
    except Exception as error:
        notebook.shot(f"no-redraw-{what}", cell)
        drawn = notebook.page.evaluate("() => window.__figureTimer.draws.length")
        raise AssertionError(f"{notebook.notebook}: {drawn} of the {expected} figures expected "
                             f"were drawn within {REDRAW_DEADLINE_S} s after {what} -> "
                             f"{value!r}") from error
    seconds = times[0]
    assert notebook.figure_signature(cell) != before
    notebook.wait_until(lambda state: state["kernel"] == "idle", REDRAW_DEADLINE_S,
                        "the kernel after the redraw")
    notebook.shot(f"after-{what}", cell)
    assert not notebook.errors(), f"{notebook.notebook}: errors after {what}: {notebook.errors()}"
    print(f"{notebook.notebook}: {what} -> {value!r}: figure changed after {seconds:.2f} s")
    return seconds


def test_an_error_in_a_cell_is_seen(lab, open_notebook):
    """The error check can fail: a notebook with a failing cell is caught, on the page and on disk."""
    probe = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("print('before the error')"),
        nbformat.v4.new_code_cell("1 / 0"),
        nbformat.v4.new_code_cell("print('never reached')"),
    ])
    probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                    "language": "python"}
    nbformat.write(probe, lab.root / "error_probe.ipynb")
    notebook = open_notebook("error_probe.ipynb")
    notebook.run_all(timeout=120)
    assert any("ZeroDivisionError" in text for text in notebook.errors())
    notebook.save()
    assert any("ZeroDivisionError" in text for text in notebook.saved_errors())
    assert notebook.state()["prompts"][2] == "[ ]:", "Run All should stop at the error"


def test_getting_started_widgets_redraw(open_notebook):
    notebook = open_notebook("00_getting_started.ipynb")
    run_all_without_errors(notebook)
    explore = notebook.cell("widgets.interactive_output(explore")
    notebook.shot("interactive", explore)
    assert_redraws(notebook, explore, lambda: notebook.choose(explore, "Photo"), "photo")
    assert_redraws(notebook, explore, lambda: notebook.nudge(explore, "block size"), "block-size")


def test_occlusion_patch_size_redraws(open_notebook):
    notebook = open_notebook("03_occlusion.ipynb")
    # The setup, the parameters, the first map and what the explorer starts from: the maps at
    # the default patch (its cache), the photo's top 4 (its classes) and the fills' maps.
    notebook.run_cells("Setup for hosted notebooks", notebook.tagged("parameters"),
                       "h.setup(SEED)", "occlusion = h.occlusion_scores(model, photo,",
                       "target = h.class_index(CLASS)",
                       "top4 = h.top_k(model, photo, k=4)", "BASELINE_PATCH, BASELINE_STRIDE = 48",
                       "from tornado.ioloop import IOLoop", "control.observe(on_change")
    assert not notebook.errors(), notebook.errors()
    explore = notebook.cell("control.observe(on_change")
    notebook.shot("interactive", explore)
    stride = notebook.slider_value(explore, "stride")
    # Coarse to fine: every pass must reach the page, not only the first (a pass that runs in a
    # later turn of the kernel is drawn outside the widget event that started it).
    assert_redraws(notebook, explore, lambda: notebook.nudge(explore, "patch"), "patch-size",
                   draws=lambda patch: h.occlusion_pass_count(patch, stride))


def test_gradcam_class_layer_and_uploaded_photo_redraw(open_notebook, tmp_path):
    notebook = open_notebook("05_gradcam.ipynb")
    run_all_without_errors(notebook)
    explore = notebook.cell("widgets.interactive_output(explore")
    notebook.shot("interactive", explore)
    # The class is a combobox (a text box with a list of the 1000 classes).
    assert_redraws(notebook, explore, lambda: notebook.enter(explore, "class", "espresso"), "class")
    assert_redraws(notebook, explore, lambda: notebook.choose(explore, "layer"), "layer")
    # A student's own photo file, through the photo picker's upload button (a file chooser).
    photo = tmp_path / "my_koala.jpg"
    photo.write_bytes((DATA / "photos" / "koala.jpg").read_bytes())

    def upload():
        with notebook.page.expect_file_chooser() as chooser:
            explore.locator("button", has_text="Upload").click()
        chooser.value.set_files(str(photo))
        return photo.name

    assert_redraws(notebook, explore, upload, "upload")
    chosen = notebook.control(explore, "dropdown", "Photo").locator("option:checked").inner_text()
    assert chosen.replace("\xa0", " ") == "my_koala (uploaded)", chosen  # the page shows nbsp


def test_attention_grid_saves_clicked_cells(lab, open_notebook):
    notebook = open_notebook("09_evaluating_explanations.ipynb")
    notebook.run_cells(notebook.tagged("parameters"), "h.setup(", "h.attention_grid(")
    assert not notebook.errors(), notebook.errors()
    grid = notebook.cell("h.attention_grid(")
    notebook.shot("grid", grid)
    clicked = [[3, 4], [7, 5], [7, 6], [12, 10]]
    for row, col in clicked:
        grid.locator(f'button[title="row {row}, column {col}"]').click()
    notebook.control(grid, "text", "your id").locator("input").fill("browser-test")
    notebook.shot("grid-marked", grid)
    grid.locator(".widget-button", has_text="Save").click()
    answers = lab.root / "attention_answers"
    deadline = time.monotonic() + REDRAW_DEADLINE_S
    while not list(answers.glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.25)
    notebook.shot("grid-saved", grid)
    saved = sorted(answers.glob("*.json"))
    assert len(saved) == 1, f"expected one answer in {answers}, found {saved}"
    answer = json.loads(saved[0].read_text())
    assert answer["cells"] == clicked
    assert answer["annotator"] == "browser-test"
    assert "Saved 4 cells" in grid.text_content()
