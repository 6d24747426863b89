"""Responsiveness of the course as a student meets it: JupyterLab in a browser.

    python benchmarks/responsiveness.py                  # widgets in full mode + every notebook, fast and full
    python benchmarks/responsiveness.py --fast           # widgets in fast mode
    python benchmarks/responsiveness.py --no-notebooks   # widgets only (minutes)
    python benchmarks/responsiveness.py --no-widgets     # notebook execution times only

Widgets: JupyterLab (from this environment, on a temporary copy of the
notebooks) and headless Chromium, as in ``tests/e2e``. Lessons 05 (Grad-CAM)
and 03 (occlusion) are opened and run with *Run All Cells*; then their
interactive sections are driven like a student would: the Grad-CAM class box
and layer drop-down, the occlusion patch-size slider (a new size each time, so
the occlusion is computed, not read from the lesson's cache) and class
drop-down (scores cached). Each time is measured in the page, from the user
event to the moment the figure's image data changes (EfficientNet-Lite0): to
the first new figure, and to the final one (lesson 03's explorer draws one
figure per coarse-to-fine pass, ``h.occlusion_pass_count`` of them).

Notebooks: the wall time of executing every lesson in fast and in full mode
(``tools/run_notebooks.py --check``: copies are executed, the committed
notebooks are left alone).

Prints markdown tables. Times depend on the machine and on what else runs on
it; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from tests.e2e.jupyterlab import (  # noqa: E402
    HOW_TO_ENABLE, NOTEBOOKS, JupyterLabServer, NotebookPage, find_chromium, launch_chromium)

GRADCAM_CLASSES = ["espresso", "Egyptian_cat", "tabby", "coffee_mug", "tiger_cat", "cup"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.1f} (1 min), {five:.1f} (5 min)"


def timed_changes(notebook: NotebookPage, cell, change, repeats: int, timeout: float,
                  draws=None) -> list[tuple[float, float]]:
    """Apply ``change(i)`` ``repeats`` times; (first, final) seconds from event to figure.

    ``draws(value)`` is how many figures one change draws, given what ``change``
    returned (the coarse-to-fine occlusion explorer draws one per pass); by
    default one, so first and final are the same redraw.
    """
    seconds = []
    for i in range(repeats):
        notebook.arm_figure_timer(cell)
        value = change(i)
        times = notebook.wait_for_draws(1 if draws is None else draws(value), timeout)
        seconds.append((times[0], times[-1]))
        notebook.wait_until(lambda state: state["kernel"] == "idle", timeout, "the kernel")
        errors = notebook.errors()
        if errors:
            raise RuntimeError(f"{notebook.notebook}: errors after a widget change: {errors}")
    return seconds


def measure_widgets(*, fast: bool, repeats: int, timeout: float, screenshots: Path) -> list[tuple]:
    from playwright.sync_api import sync_playwright

    from helpers import occlusion_pass_count  # lesson 03's explorer draws once per pass

    executable = find_chromium()
    if executable is None:
        sys.exit(HOW_TO_ENABLE)
    rows = []
    with JupyterLabServer(NOTEBOOKS, fast=fast) as lab, sync_playwright() as playwright:
        browser = launch_chromium(playwright, executable)

        def open_lesson(name: str) -> NotebookPage:
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(timeout * 1000)
            notebook = NotebookPage(context.new_page(), lab, name, screenshots,
                                    prefix=f"benchmark-{Path(name).stem}")
            notebook.open()
            seconds = notebook.run_all(timeout=1800)
            if notebook.errors():
                raise RuntimeError(f"{name}: errors after Run All Cells: {notebook.errors()}")
            rows.append((name, "Run All Cells (in the browser)", [(seconds, seconds)]))
            print(f"{name}: Run All Cells {seconds:.0f} s", flush=True)
            return notebook

        gradcam = open_lesson("05_gradcam.ipynb")
        explore = gradcam.cell("widgets.interactive_output(explore")
        current = explore.locator(".widget-text input").first.input_value()
        classes = [name for name in GRADCAM_CLASSES if name != current]
        rows.append(("05_gradcam.ipynb", "class (combobox)", timed_changes(
            gradcam, explore, lambda i: gradcam.enter(explore, "class", classes[i % len(classes)]),
            repeats, timeout)))
        # Twice round the layer list: a layer's first use traces its compiled gradient
        # function (the lesson's own cells have used three of them already), later ones reuse it.
        layers = gradcam.control(explore, "dropdown", "layer").locator("option").count()
        for round_name in ("first round through the list", "second round"):
            rows.append(("05_gradcam.ipynb", f"layer (drop-down of {layers}; {round_name})",
                         timed_changes(gradcam, explore, lambda i: gradcam.choose(explore, "layer"),
                                       layers, timeout)))
        gradcam.shot("after", explore)
        gradcam.page.context.close()
        lab.shutdown_kernels()

        occlusion = open_lesson("03_occlusion.ipynb")
        explore = occlusion.cell("control.observe(on_change")
        stride = occlusion.slider_value(explore, "stride")
        rows.append(("03_occlusion.ipynb", f"patch size (slider, stride {stride}; computed "
                     "coarse to fine)", timed_changes(
                         occlusion, explore, lambda i: occlusion.nudge(explore, "patch"), repeats,
                         timeout, draws=lambda patch: occlusion_pass_count(patch, stride))))
        rows.append(("03_occlusion.ipynb", "class (drop-down; cached scores)", timed_changes(
            occlusion, explore, lambda i: occlusion.choose(explore, "class"), repeats, timeout)))
        occlusion.shot("after", explore)
        occlusion.page.context.close()
        browser.close()
    return rows


def execute_notebooks(fast: bool) -> tuple[dict, float, str]:
    """Seconds per notebook from ``tools/run_notebooks.py --check``, the wall time, the status."""
    command = [sys.executable, str(REPOSITORY / "tools" / "run_notebooks.py"), "--check"]
    if fast:
        command.append("--fast")
    start = time.perf_counter()
    result = subprocess.run(command, cwd=REPOSITORY, capture_output=True, text=True)
    wall = time.perf_counter() - start
    times = {match[1]: float(match[2]) for match in
             re.finditer(r"^(\S+\.ipynb): (\d+) s", result.stdout, re.MULTILINE)}
    failed = re.findall(r"^(\S+\.ipynb): FAILED", result.stdout, re.MULTILINE)
    status = "ok" if result.returncode == 0 else f"failed: {', '.join(failed) or result.stderr[-500:]}"
    return times, wall, status


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fast", action="store_true",
                        help="widgets measured with the kernels in fast mode (default: full)")
    parser.add_argument("--repeats", type=int, default=5, help="widget changes per row")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait per redraw")
    parser.add_argument("--no-widgets", action="store_true", help="skip the browser part")
    parser.add_argument("--no-notebooks", action="store_true",
                        help="skip executing every notebook (fast and full)")
    parser.add_argument("--screenshots", type=Path, default=None,
                        help="folder for screenshots (default: a temporary folder)")
    args = parser.parse_args(argv)

    print(f"{platform.platform()}, Python {platform.python_version()}, {os.cpu_count()} CPU cores; "
          f"load average at start {load()}", flush=True)
    if not args.no_widgets:
        import tempfile

        screenshots = args.screenshots or Path(tempfile.mkdtemp(prefix="responsiveness-"))
        screenshots.mkdir(parents=True, exist_ok=True)
        print(f"screenshots: {screenshots}", flush=True)
        rows = measure_widgets(fast=args.fast, repeats=args.repeats, timeout=args.timeout,
                               screenshots=screenshots)
        mode = "fast" if args.fast else "full"
        print(f"\nWidget change to updated figure, in the browser ({mode} mode, "
              f"EfficientNet-Lite0; load average now {load()}):\n")
        print("First and final: the first figure after the change, and the last one it draws "
              "(the same unless the explorer refines coarse to fine).\n")
        print("| lesson | change | first, median (s) | first, max (s) | final, median (s) | "
              "final, max (s) | n |\n|---|---|---:|---:|---:|---:|---:|")
        for lesson, change, seconds in rows:
            first, final = [s[0] for s in seconds], [s[1] for s in seconds]
            print(f"| {lesson} | {change} | {statistics.median(first):.2f} | {max(first):.2f} | "
                  f"{statistics.median(final):.2f} | {max(final):.2f} | {len(seconds)} |")
    if not args.no_notebooks:
        results = {}
        for fast in (True, False):
            mode = "fast" if fast else "full"
            print(f"\nexecuting every notebook in {mode} mode ...", flush=True)
            results[mode] = execute_notebooks(fast)
            print(f"{mode} mode: {results[mode][1]:.0f} s wall, {results[mode][2]}", flush=True)
        names = sorted(set(results["fast"][0]) | set(results["full"][0]))
        print(f"\nExecuting every notebook (tools/run_notebooks.py --check; "
              f"load average now {load()}):\n")
        print("| notebook | fast mode (s) | full mode (s) |\n|---|---:|---:|")
        for name in names:
            cells = [f"{results[m][0][name]:.0f}" if name in results[m][0] else "failed"
                     for m in ("fast", "full")]
            print(f"| {name} | {cells[0]} | {cells[1]} |")
        print(f"| **all (sum)** | **{sum(results['fast'][0].values()):.0f}** | "
              f"**{sum(results['full'][0].values()):.0f}** |")
        print(f"| wall time, with kernel starts | {results['fast'][1]:.0f} | "
              f"{results['full'][1]:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
