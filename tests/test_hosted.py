"""The hosted-notebook setup cell: the same in every lesson, and what it does.

Every lesson's second cell (tools/setup_cell.ipy, written by tools/setup_cell.py) installs
the course on a host that lacks it (Colab and the like), keeping the host's TensorFlow,
and does nothing where ``helpers`` is importable. Here the cell runs in an IPython shell
in a subprocess where ``importlib.util.find_spec`` hides ``helpers`` (and TensorFlow) as
a host would, and ``%pip`` is a recorder: no network, no install. The requirement it
records is then given to the real pip as a dry run against a stand-in project.
tools/hosted_check.sh runs the real thing in a host-like environment.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import lessons  # noqa: E402
from tools import setup_cell  # noqa: E402

pytest.importorskip("IPython")

HARNESS = """
import importlib.metadata, importlib.util, json, sys
from IPython.core.interactiveshell import InteractiveShell

source, hidden, report = sys.argv[1], set(sys.argv[2].split(",")) - {""}, sys.argv[3]
real_find_spec, real_distributions = importlib.util.find_spec, importlib.metadata.distributions
importlib.util.find_spec = lambda name, package=None: (
    None if name in hidden else real_find_spec(name, package))
hidden_distributions = {"tensorflow", "tensorflow-cpu"} if "tensorflow" in hidden else set()
importlib.metadata.distributions = lambda **kwargs: [
    d for d in real_distributions(**kwargs)
    if (d.name or "").lower().replace("_", "-") not in hidden_distributions]
calls = []

def pip(line):
    calls.append(line)
    if "install_succeeds" in sys.argv[4:]:
        hidden.discard("helpers")

shell = InteractiveShell.instance()
shell.register_magic_function(pip, "line", "pip")
result = shell.run_cell(open(source, encoding="utf-8").read())
error = result.error_in_exec
with open(report, "w", encoding="utf-8") as file:
    json.dump({"pip": calls, "error": None if error is None else
               [type(error).__name__, str(error)]}, file)
"""


def run_cell(tmp_path, cwd, *, hidden=("helpers",), source=None, install_succeeds=True):
    """Run the reference cell as a host would: (what it printed, pip lines, error)."""
    harness, report = tmp_path / "harness.py", tmp_path / "report.json"
    harness.write_text(HARNESS, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if key != "UNMASKING_CNNS_SOURCE"}
    if source is not None:
        env["UNMASKING_CNNS_SOURCE"] = source
    result = subprocess.run(
        [sys.executable, str(harness), str(setup_cell.REFERENCE), ",".join(hidden),
         str(report)] + (["install_succeeds"] if install_succeeds else []),
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    outcome = json.loads(report.read_text(encoding="utf-8"))
    return result.stdout, outcome["pip"], outcome["error"]


def fake_course(folder: Path, name: str = "unmasking-cnns") -> Path:
    """A folder whose pyproject.toml names the project as the course's does."""
    (folder / "notebooks").mkdir(parents=True)
    (folder / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\nbuild-backend = "setuptools.build_meta"\n'
        f'\n[project]\nname = "{name}"\nversion = "0.1.0"\n\n'
        '[project.optional-dependencies]\ncpu = []\n\n[tool.setuptools]\npackages = []\n',
        encoding="utf-8")
    return folder


def host_versions(*, tensorflow: bool = True) -> list[str]:
    """The pins the cell adds: this environment's own TensorFlow, Keras, numpy and kernel."""
    names = ["keras", "numpy", "ipykernel"] + (["tensorflow", "tensorflow-cpu"] if tensorflow else [])
    found = []
    for name in names:
        try:
            found.append(f"{name}=={importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    return sorted(found)


def requirement(line: str, *, tensorflow: bool = True) -> str:
    """The course's requirement in a recorded pip line, after checking the rest of it."""
    words = shlex.split(line)
    assert words[:2] == ["install", "-q"] and len(words) >= 3, line
    assert sorted(words[3:]) == host_versions(tensorflow=tensorflow), line
    return words[2]


@pytest.mark.parametrize("path", lessons.lesson_paths(), ids=lessons.lesson_id)
def test_every_lesson_starts_with_the_reference_setup_cell(path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    cells = notebook["cells"]
    cell = setup_cell.setup_cell(notebook)
    assert cell is not None, "no setup cell: run python tools/setup_cell.py"
    assert setup_cell.source_of(cell) == setup_cell.reference_source(), \
        "the setup cell differs from tools/setup_cell.ipy: run python tools/setup_cell.py"
    index = cells.index(cell)
    assert index == setup_cell.POSITION and cells[0]["cell_type"] == "markdown"
    assert cell["cell_type"] == "code" and cell["outputs"] == [], "the cell keeps no outputs"
    code_before = [c for c in cells[:index] if c["cell_type"] == "code"]
    assert not code_before, "the setup cell must be the lesson's first code cell"


def test_the_cell_does_nothing_where_helpers_is_importable(tmp_path):
    printed, pip, error = run_cell(tmp_path, tmp_path, hidden=())
    assert (printed, pip, error) == ("", [], None)


def test_a_checkout_above_the_notebook_is_installed_without_a_tensorflow(tmp_path):
    course = fake_course(tmp_path / "course")
    printed, pip, error = run_cell(tmp_path, course / "notebooks")
    assert error is None and len(pip) == 1, (printed, pip, error)
    # TensorFlow is there: the extra that would add tensorflow-cpu is left out, and the
    # host's TensorFlow, Keras, numpy and ipykernel are asked for at the versions it has.
    assert requirement(pip[0]) == f"unmasking-cnns @ {course.resolve().as_uri()}"
    assert "Installing the course from" in printed


def test_a_clone_inside_the_working_folder_is_found(tmp_path):
    (tmp_path / "sample_data").mkdir()
    fake_course(tmp_path / "other", name="unmasking-cnns-fork")  # another project: skipped
    course = fake_course(tmp_path / "unmasking-cnns")
    _, pip, error = run_cell(tmp_path, tmp_path)
    assert error is None and requirement(pip[0]).endswith(course.resolve().as_uri())


def test_the_variable_names_the_source_and_no_tensorflow_brings_the_cpu_extra(tmp_path):
    wheel = tmp_path / "wheels" / "unmasking_cnns-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    fake_course(tmp_path / "course")  # the variable wins over a checkout above
    (tmp_path / "course" / "notebooks" / "here").mkdir()
    _, pip, error = run_cell(tmp_path, tmp_path / "course" / "notebooks" / "here",
                             hidden=("helpers", "tensorflow"), source=str(wheel))
    assert error is None
    assert requirement(pip[0], tensorflow=False) == f"unmasking-cnns[cpu] @ {wheel.as_uri()}"
    url = "git+file:///srv/git/unmasking-cnns.git@main"
    _, pip, error = run_cell(tmp_path, tmp_path, source=url)
    assert error is None and requirement(pip[0]) == f"unmasking-cnns @ {url}"


def test_without_a_source_the_cell_says_what_to_set(tmp_path):
    fake_course(tmp_path / "elsewhere", name="another-course")
    (tmp_path / "work").mkdir()
    printed, pip, error = run_cell(tmp_path, tmp_path / "work")
    assert pip == [] and error[0] == "RuntimeError"
    assert "UNMASKING_CNNS_SOURCE" in error[1] and "no copy of it was found" in error[1]


def test_a_failed_install_is_reported(tmp_path):
    course = fake_course(tmp_path / "course")
    _, pip, error = run_cell(tmp_path, course / "notebooks", install_succeeds=False)
    assert len(pip) == 1 and error[0] == "RuntimeError"
    assert error[1].startswith("pip could not install the course beside the host's TensorFlow")


def test_pip_accepts_the_requirement_the_cell_writes(tmp_path):
    pytest.importorskip("setuptools")
    course = fake_course(tmp_path / "with space" / "course")
    _, pip, _ = run_cell(tmp_path, course / "notebooks", hidden=("helpers", "tensorflow"))
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-index",
         "--no-build-isolation", "--quiet", "--report", "-"] + shlex.split(pip[0])[2:],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (install,) = json.loads(result.stdout)["install"]
    assert install["metadata"]["name"] == "unmasking-cnns"
    assert install["requested_extras"] == ["cpu"]
