"""The course as a student meets it: JupyterLab in a real, headless Chromium.

:class:`JupyterLabServer` starts JupyterLab from this Python environment on a
free localhost port, with a random token, in a temporary copy of the
notebooks (the committed notebooks are never touched), with its own settings,
workspace and runtime folders (a user's JupyterLab settings cannot leak in).
:class:`NotebookPage` drives one notebook in the browser the way a student
does: the menus (*Edit > Clear Outputs of All Cells*, *Run > Run All Cells*),
drop-downs, slider handles, buttons; it reads the kernel status from the
page, finds error outputs and widgets that failed to render, and times how
long a figure takes to change after a widget event, measured in the page.
JupyterLab is started with ``expose_app_in_browser`` so that error outputs
can be read from the notebook's cell models (``window.jupyterapp``), exactly.

Playwright drives the system's Chromium (Debian's ``chromium`` package, or
the executable named by ``UNMASKING_CNNS_CHROMIUM``); no browser is ever
downloaded, and the launch flags keep Chromium off the network.

Used by ``tests/e2e/test_browser.py`` and ``benchmarks/responsiveness.py``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPOSITORY / "notebooks"

CHROMIUM_ENV = "UNMASKING_CNNS_CHROMIUM"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser")
# Headless, and off the network: no updates, no sync, no background requests.
CHROMIUM_FLAGS = (
    "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-quic",
)
HOW_TO_ENABLE = (
    "Chromium was not found: the browser tests drive Debian's Chromium with Playwright. "
    "To run them, install it (`sudo apt-get install chromium`, giving /usr/bin/chromium) or set "
    f"{CHROMIUM_ENV}=/path/to/chromium; never `playwright install`. .ci/run installs it in CI.")

# JupyterLab settings for a reproducible page: every cell stays in the DOM
# (no virtual scrolling, so every output can be inspected), no news or update
# checks (offline, and no pop-up over the notebook).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
        "fetchNews": "false", "checkForUpdates": False},
}

# What a failure looks like on the page. JupyterLab renders an error output as
# stderr text, so errors are read from the notebook's cell models (exact), and,
# for errors inside widget outputs (a failing interact callback), from stderr
# text that carries a traceback; plus widgets that failed to render.
STDERR_OUTPUT = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'
TRACEBACK = r"Traceback \(most recent call last\)|^\s*(\w+\.)*\w*(Error|Exception)(: |$)"
WIDGET_ERROR = ".jupyter-widgets-error-widget"
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook in the front tab
WIDGET_ERROR_TEXT = "Error displaying widget"


def find_chromium() -> str | None:
    """The Chromium executable: ``$UNMASKING_CNNS_CHROMIUM``, /usr/bin/chromium or on PATH."""
    named = os.environ.get(CHROMIUM_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    for candidate in CHROMIUM_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_chromium(playwright, executable: str):
    return playwright.chromium.launch(executable_path=executable, headless=True,
                                      args=list(CHROMIUM_FLAGS))


class JupyterLabServer:
    """JupyterLab on 127.0.0.1, serving a temporary copy of ``notebooks``.

    Use as a context manager. ``fast`` sets ``UNMASKING_CNNS_FAST`` for the
    kernels it starts. ``root`` is the copy (what the kernels write lands there).
    """

    def __init__(self, notebooks: Path = NOTEBOOKS, *, fast: bool = True,
                 startup_timeout: float = 180.0):
        self.notebooks = Path(notebooks)
        self.fast = fast
        self.startup_timeout = startup_timeout
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.scratch = Path(tempfile.mkdtemp(prefix="unmasking-cnns-lab-"))
        self.root = self.scratch / "notebooks"
        self.log_path = self.scratch / "jupyterlab.log"
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> "JupyterLabServer":
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> None:
        shutil.copytree(self.notebooks, self.root,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints", "attention_answers"))
        settings = self.scratch / "lab-settings"
        for name, values in LAB_SETTINGS.items():
            path = settings / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values))
        env = dict(os.environ)
        env.update({
            "UNMASKING_CNNS_FAST": "1" if self.fast else "0",
            "JUPYTER_CONFIG_DIR": str(self.scratch / "config"),
            "JUPYTER_RUNTIME_DIR": str(self.scratch / "runtime"),
            "JUPYTER_DATA_DIR": str(self.scratch / "data"),
            "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        })
        command = [
            sys.executable, "-m", "jupyter", "lab", "--no-browser",
            "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0", f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}", "--ServerApp.allow_root=True",
            f"--LabApp.user_settings_dir={settings}",
            f"--LabApp.workspaces_dir={self.scratch / 'workspaces'}",
            "--LabApp.extension_manager=readonly", "--LabApp.expose_app_in_browser=True",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        ]
        self._log = open(self.log_path, "w")
        self.process = subprocess.Popen(command, cwd=self.root, env=env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.process.returncode}:\n"
                                   f"{self.log_tail()}")
            try:
                self.api("GET", "status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterLab did not answer within "
                                       f"{self.startup_timeout:.0f} s:\n{self.log_tail()}")
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            try:
                self.shutdown_kernels()
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)

    def url(self, notebook: str) -> str:
        """The notebook's page; ``reset`` starts from an empty workspace (no other tabs)."""
        return f"http://127.0.0.1:{self.port}/lab/tree/{notebook}?reset&token={self.token}"

    def api(self, method: str, path: str):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/{path}", method=method,
            headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Shut down every kernel, so the next notebook gets the CPU to itself."""
        for session in self.api("GET", "sessions") or []:
            self.api("DELETE", f"sessions/{session['id']}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class NotebookPage:
    """One notebook open in JupyterLab, driven through the page.

    Screenshots go to ``screenshots`` as ``<prefix>-NN-<step>.png``.
    Cells are addressed by a piece of their source, looked up in the file,
    so a test names the cell a reader would recognise.
    """

    def __init__(self, page, server: JupyterLabServer, notebook: str, screenshots: Path,
                 prefix: str | None = None):
        self.page = page
        self.server = server
        self.notebook = notebook
        self.path = server.root / notebook
        self.screenshots = Path(screenshots)
        self.prefix = prefix or Path(notebook).stem
        self.shots = 0
        self.sources = [cell.source for cell in nbformat.read(self.path, as_version=4).cells]

    # ---- pictures --------------------------------------------------------------

    def shot(self, step: str, cell=None) -> Path:
        """Screenshot of the page (scrolled to ``cell`` if given)."""
        self.shots += 1
        path = self.screenshots / f"{self.prefix}-{self.shots:02d}-{step}.png"
        if cell is not None:
            cell.scroll_into_view_if_needed()
        self.page.screenshot(path=str(path))
        return path

    # ---- opening, running, waiting -------------------------------------------

    def open(self, timeout: float = 180.0) -> None:
        """Open the notebook and wait until every cell is on the page and the kernel is idle."""
        self.page.goto(self.server.url(self.notebook))
        self.page.wait_for_function(
            "([panel, count]) => document.querySelectorAll(panel + ' .jp-Cell').length === count",
            arg=[PANEL, len(self.sources)], timeout=timeout * 1000, polling=250)
        self.wait_until(lambda state: state["kernel"] == "idle", timeout, "the kernel to start")
        self.shot("opened")

    def state(self) -> dict:
        """Kernel status (from the status bar) and the code cells' prompts."""
        return self.page.evaluate("""() => {
            const status = document.querySelector('.jp-StatusBar-TextItem[title^="Change kernel"]');
            const text = status ? status.textContent : '';
            const panelNode = document.querySelector('%s');
            const prompts = Array.from(panelNode ? panelNode.querySelectorAll('.jp-CodeCell .jp-InputPrompt') : [])
                .map(prompt => prompt.textContent.trim());
            const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            let errors = 0;
            if (panel && panel.content && panel.content.widgets) {
                for (const cell of panel.content.widgets) {
                    if (cell.model.type !== 'code') continue;
                    errors += cell.model.outputs.toJSON()
                        .filter(output => output.output_type === 'error').length;
                }
            }
            return {kernel: (text.split('|').pop() || '').trim().toLowerCase(), prompts, errors};
        }""" % PANEL)

    def wait_until(self, done, timeout: float, what: str, *, settle: int = 1) -> dict:
        """Poll :meth:`state` until ``done(state)`` holds ``settle`` times in a row."""
        deadline = time.monotonic() + timeout
        in_a_row = 0
        while True:
            state = self.state()
            in_a_row = in_a_row + 1 if done(state) else 0
            if in_a_row >= settle:
                return state
            if time.monotonic() > deadline:
                self.shot("timeout")
                raise TimeoutError(f"{self.notebook}: waited {timeout:.0f} s for {what}; "
                                   f"last state {state}")
            time.sleep(0.5)

    def menu(self, menu: str, item: str) -> None:
        self.page.get_by_role("menuitem", name=menu, exact=True).click()
        self.page.get_by_role("menuitem", name=item, exact=True).click()

    def run_all(self, timeout: float = 600.0) -> float:
        """Clear every output, *Run All Cells*, wait until the kernel is idle; seconds taken.

        Done means: no cell queued ``[*]``, the kernel idle, and either every
        code cell numbered or an error shown (Run All stops at an error).
        """
        self.page.locator(f"{PANEL} .jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.menu("Edit", "Clear Outputs of All Cells")
        start = time.monotonic()
        self.menu("Run", "Run All Cells")

        def finished(state):
            numbered = all(prompt[1:-2].isdigit() for prompt in state["prompts"])
            queued = any("*" in prompt for prompt in state["prompts"])
            return state["kernel"] == "idle" and not queued and (numbered or state["errors"])

        self.wait_until(finished, timeout, "Run All Cells to finish", settle=3)
        elapsed = time.monotonic() - start
        self.shot("ran-all")
        return elapsed

    def run_cells(self, *cells: str | int, timeout: float = 300.0) -> None:
        """Run cells one by one, as a student does (select it, Ctrl+Enter), waiting for each.

        A cell is its index or a piece of its source that only it contains.
        """
        for cell in cells:
            index = cell if isinstance(cell, int) else self.cell_index(cell)
            position = self.code_position(index)
            self.page.locator(f"{PANEL} .jp-Cell").nth(index).locator(
                ".jp-InputPrompt").first.click()
            self.page.keyboard.press("Escape")
            self.page.keyboard.press("Control+Enter")
            self.wait_until(
                lambda state: state["prompts"][position][1:-2].isdigit()
                and state["kernel"] == "idle", timeout, f"cell {index} to run", settle=2)

    def tagged(self, tag: str) -> int:
        """Index of the first cell tagged ``tag`` (e.g. the papermill ``parameters`` cell)."""
        cells = nbformat.read(self.path, as_version=4).cells
        for index, cell in enumerate(cells):
            if tag in cell.metadata.get("tags", []):
                return index
        raise LookupError(f"{self.notebook}: no cell is tagged {tag!r}")

    def save(self, timeout: float = 60.0) -> None:
        """Save with Ctrl+S and wait until the file on disk is rewritten."""
        before = self.path.stat().st_mtime_ns
        self.page.locator(f"{PANEL} .jp-Notebook").first.click(position={"x": 5, "y": 5})
        self.page.keyboard.press("Control+s")
        deadline = time.monotonic() + timeout
        while self.path.stat().st_mtime_ns == before or self.page.locator(
                ".lm-TabBar-tab.lm-mod-current.jp-mod-dirty").count():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.notebook} was not saved within {timeout:.0f} s")
            time.sleep(0.25)

    # ---- what the page shows ---------------------------------------------------

    def errors(self) -> list[str]:
        """Error outputs of the cells, tracebacks in widget outputs, widgets that failed to render."""
        return self.page.evaluate("""([stderrOutput, traceback, widgetError, widgetText]) => {
            const found = [];
            const panel = window.jupyterapp.shell.currentWidget;
            panel.content.widgets.forEach((cell, index) => {
                if (cell.model.type !== 'code') return;
                for (const output of cell.model.outputs.toJSON()) {
                    if (output.output_type === 'error') {
                        found.push(`cell ${index}: ${output.ename}: ${output.evalue}`);
                    }
                }
            });
            const pattern = new RegExp(traceback, 'm');
            for (const output of panel.node.querySelectorAll('.widget-output ' + stderrOutput)) {
                if (pattern.test(output.textContent)) found.push(output.textContent.trim().slice(-2000));
            }
            for (const element of panel.node.querySelectorAll(widgetError)) {
                found.push('widget error: ' + element.textContent.trim().slice(0, 2000));
            }
            for (const output of panel.node.querySelectorAll('.jp-OutputArea-output')) {
                if (output.textContent.includes(widgetText)) found.push(output.textContent.trim());
            }
            return found;
        }""", [STDERR_OUTPUT, TRACEBACK, WIDGET_ERROR, WIDGET_ERROR_TEXT])

    def saved_errors(self) -> list[str]:
        """Error outputs in the saved copy of the notebook (after :meth:`save`)."""
        found = []
        for index, cell in enumerate(nbformat.read(self.path, as_version=4).cells):
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    found.append(f"cell {index}: {output.get('ename')}: {output.get('evalue')}")
        return found

    def cell_index(self, piece: str) -> int:
        matches = [i for i, source in enumerate(self.sources) if piece in source]
        if len(matches) != 1:
            raise LookupError(f"{self.notebook}: {len(matches)} cells contain {piece!r}; "
                              "name a piece of source that only one cell has")
        return matches[0]

    def code_position(self, index: int) -> int:
        """Position of cell ``index`` among the code cells (prompts list order)."""
        cells = nbformat.read(self.path, as_version=4).cells
        if cells[index].cell_type != "code":
            raise LookupError(f"{self.notebook}: cell {index} is not a code cell")
        return sum(cell.cell_type == "code" for cell in cells[:index])

    def cell(self, piece: str):
        """The page's cell whose source contains ``piece``."""
        return self.page.locator(f"{PANEL} .jp-Cell").nth(self.cell_index(piece))

    @staticmethod
    def control(cell, kind: str, description: str):
        """A widget in ``cell`` by kind (dropdown, slider, text, ...) and its label."""
        label = cell.page.locator("label.widget-label",
                                  has_text=re.compile(rf"^\s*{re.escape(description)}\s*$"))
        return cell.locator(f".widget-{kind}").filter(has=label).first

    def choose(self, cell, description: str, value: str | None = None) -> str:
        """Pick ``value`` (default: the option after the current one) in a drop-down."""
        select = self.control(cell, "dropdown", description).locator("select")
        if value is None:
            options = select.locator("option").evaluate_all("os => os.map(o => o.value)")
            current = select.input_value()
            value = options[(options.index(current) + 1) % len(options)]
        select.select_option(value)
        return value

    def enter(self, cell, description: str, value: str) -> str:
        """Type ``value`` into a text box or combobox (one input event, as when pasting)."""
        self.control(cell, "text", description).locator("input").fill(value)
        return value

    def slider_value(self, cell, description: str) -> int | float:
        """A slider's value as the page shows it (an int for an IntSlider)."""
        handle = self.control(cell, "slider", description).locator(".noUi-handle").first
        value = float(handle.get_attribute("aria-valuenow"))  # "8.0" for an IntSlider's 8
        return int(value) if value.is_integer() else value

    def nudge(self, cell, description: str, key: str = "ArrowRight") -> int | float:
        """Move a slider one step with the keyboard (as a student would); new value."""
        handle = self.control(cell, "slider", description).locator(".noUi-handle").first
        handle.focus()
        handle.press(key)
        return self.slider_value(cell, description)

    def figure_signature(self, cell) -> str:
        """The image data shown by the cell's widget output (what changes on redraw)."""
        return cell.evaluate("""cell => Array.from(cell.querySelectorAll('.widget-output img'))
            .map(img => img.src).join('|')""")

    def arm_figure_timer(self, cell) -> None:
        """Start watching the cell's figures; the clock starts at the next user event.

        Every redraw after the event is recorded (a coarse-to-fine explorer
        draws several times for one change): ``wait_for_new_figure`` gives the
        first, ``wait_for_draws`` the n-th.
        """
        cell.evaluate("""cell => {
            const signature = () => Array.from(cell.querySelectorAll('.widget-output img'))
                .map(img => img.src);
            if (window.__figureTimer && window.__figureTimer.stop) window.__figureTimer.stop();
            let shown = signature();
            const count = shown.length;
            const timer = {start: null, draws: []};
            window.__figureTimer = timer;
            const startClock = () => { if (timer.start === null) timer.start = performance.now(); };
            for (const type of ['change', 'input', 'keydown', 'pointerdown']) {
                cell.addEventListener(type, startClock, {capture: true, once: true});
            }
            const observer = new MutationObserver(() => {
                const now = signature();
                if (now.length >= count && now.length > 0 && now.join('|') !== shown.join('|')) {
                    timer.draws.push(performance.now());
                    shown = now;
                }
            });
            timer.stop = () => observer.disconnect();
            observer.observe(cell, {subtree: true, childList: true, attributes: true,
                                    attributeFilter: ['src']});
        }""")

    def wait_for_new_figure(self, timeout: float) -> float:
        """Seconds from the user event to the changed figure, measured in the page."""
        return self.wait_for_draws(1, timeout)[0]

    def wait_for_draws(self, count: int, timeout: float) -> list[float]:
        """Seconds from the user event to each of the first ``count`` redraws."""
        self.page.wait_for_function(
            f"() => window.__figureTimer && window.__figureTimer.start !== null"
            f" && window.__figureTimer.draws.length >= {int(count)}",
            timeout=timeout * 1000, polling=20)
        timer = self.page.evaluate("() => ({start: window.__figureTimer.start,"
                                   " draws: window.__figureTimer.draws})")
        return [(time - timer["start"]) / 1000 for time in timer["draws"]]
