"""The package installs as a library: declared ranges, the lock inside them, data in the wheel.

requirements.txt is the tested lock; pyproject.toml declares what helpers needs as
ranges, so that `pip install` of the checkout or of a wheel brings it, without a
TensorFlow flavour (a host that has one keeps it). runtime.txt tells Binder
(repo2docker) which Python to build.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
# The distribution of each third-party module helpers imports.
DISTRIBUTION_OF = {"numpy": "numpy", "keras": "keras", "tf_keras_vis": "tf-keras-vis",
                   "shap": "shap", "scipy": "scipy", "PIL": "pillow", "skimage": "scikit-image",
                   "sklearn": "scikit-learn", "matplotlib": "matplotlib",
                   "fontTools": "fonttools", "tqdm": "tqdm", "ipywidgets": "ipywidgets",
                   "traitlets": "ipywidgets", "IPython": "ipywidgets"}
TENSORFLOW = {"tensorflow", "tensorflow-cpu", "absl"}


def pins() -> dict[str, tuple[str, Requirement]]:
    """Each pinned distribution of requirements.txt: (version, requirement)."""
    found = {}
    for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        requirement = Requirement(line)
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        (spec,) = requirement.specifier
        found[canonicalize_name(requirement.name)] = (spec.version, requirement)
    return found


def declared() -> dict[str, Requirement]:
    return {canonicalize_name(Requirement(text).name): Requirement(text)
            for text in PYPROJECT["project"]["dependencies"]}


def imported_distributions() -> set[str]:
    """The third-party distributions helpers imports, anywhere in a module."""
    modules = set()
    for path in (REPO / "helpers").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    third_party = modules - set(sys.stdlib_module_names) - {"helpers", "tensorflow", "absl"}
    unknown = third_party - set(DISTRIBUTION_OF)
    assert not unknown, f"helpers imports {sorted(unknown)}: add them to DISTRIBUTION_OF"
    return {canonicalize_name(DISTRIBUTION_OF[m]) for m in third_party}


def test_every_library_helpers_imports_is_declared_as_a_range():
    missing = imported_distributions() - set(declared())
    assert not missing, f"pyproject.toml does not declare {sorted(missing)}"
    for name, requirement in declared().items():
        assert not any(spec.operator == "==" for spec in requirement.specifier), \
            f"{name} is pinned in pyproject.toml; pins belong in requirements.txt"


def test_the_lock_lies_inside_the_declared_ranges():
    locked = pins()
    for name, requirement in declared().items():
        assert name in locked, f"{name} is declared but not pinned in requirements.txt"
        version, _ = locked[name]
        assert requirement.specifier.contains(version, prereleases=True), \
            f"requirements.txt pins {name}=={version}, outside pyproject's {requirement}"


def test_no_tensorflow_flavour_is_forced_on_a_host():
    assert not TENSORFLOW & set(declared()), "TensorFlow belongs in an extra, not the core"
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {canonicalize_name(Requirement(t).name) for t in extras["cpu"]} \
        == {"tensorflow-cpu", "tensorflow"}


def test_python_versions_are_stated_truthfully():
    supported = SpecifierSet(PYPROJECT["project"]["requires-python"])
    # numpy and scipy of the lock have no wheels for 3.10; the lock installs on 3.11-3.13.
    assert "3.10" not in supported and all(v in supported for v in ("3.11", "3.12", "3.13"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"Python 3\.11 to 3\.13", readme), "README's Setup must state 3.11 to 3.13"


def test_binder_builds_a_python_the_lock_installs_on():
    # repo2docker reads runtime.txt as "python-X.Y" and then installs requirements.txt.
    text = (REPO / "runtime.txt").read_text(encoding="utf-8").strip()
    match = re.fullmatch(r"python-(\d+)\.(\d+)", text)
    assert match, f"runtime.txt must read python-X.Y, not {text!r}"
    assert f"{match[1]}.{match[2]}" in SpecifierSet(PYPROJECT["project"]["requires-python"])


def test_a_built_wheel_carries_the_data_and_works_outside_the_checkout(tmp_path):
    pytest.importorskip("setuptools")
    wheels, site = tmp_path / "wheels", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", str(REPO), "-w", str(wheels)],
                   check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(site), str(wheel)], check=True, capture_output=True)
    probe = ("import helpers.labels as labels, helpers.photos as photos; "
             "print(labels.__file__); print(labels.DATA_DIR); "
             "print(labels.class_name(281), len(photos.photo_collection()))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, env={"PYTHONPATH": str(site), "PATH": "/usr/bin"})
    assert result.returncode == 0, result.stderr[-2000:]
    module, data_dir, classes = result.stdout.splitlines()[-3:]
    assert module.startswith(str(site)) and data_dir.startswith(str(site)), result.stdout
    assert classes.startswith("tabby") and int(classes.split()[-1]) >= 40
