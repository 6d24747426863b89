"""helpers is layered one way, and its modules use each other's public names only.

The layers are declared once, in pyproject.toml ([tool.importlinter]); import-linter
checks every import, function-level ones included. The rules it does not cover
are checked here: no module imports another module's private (underscore) names,
and no module hides an import of its own package inside a function (such imports
once dodged cycles; a lazy import of a heavy third-party library is fine).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
MODULES = sorted((REPO / "helpers").glob("*.py"))


def internal_imports(path: Path):
    """(node, imported names) of each import from helpers itself in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (
                node.level > 0 or (node.module or "").split(".")[0] == "helpers"):
            yield node, [alias.name for alias in node.names]


def test_the_layer_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) \
        or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -r requirements.txt)")
    result = subprocess.run([lint, "--config", str(REPO / "pyproject.toml")], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_module_imports_another_modules_private_names(path):
    private = [(node.lineno, name) for node, names in internal_imports(path)
               for name in names if name.startswith("_") and name != "__version__"]
    assert not private, f"{path.name} imports private names: {private}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.stem)
def test_no_import_of_helpers_hides_inside_a_function(path):
    hidden = [node.lineno for node, _ in internal_imports(path) if node.col_offset > 0]
    # helpers/__init__.py loads the attention command's module on first use (see there).
    assert path.name == "__init__.py" or not hidden, \
        f"{path.name} imports helpers' own modules inside functions at lines {hidden}"


def test_ruff_finds_nothing():
    # pyproject's [tool.ruff]: unused and undefined names, import and statement errors.
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -r requirements.txt)")
    result = subprocess.run([ruff, "check", "--output-format", "concise", "helpers", "tests",
                             "tools", "benchmarks"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
