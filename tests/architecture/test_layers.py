"""The layers hold: import-linter's contracts pass on the installed layout, and they do fail on an upward import."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.layout import ROOT, package_dirs, stage

LINT = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """lint-imports with the repository's contracts over a staged tree (its `loupe` first on the path)."""
    (tree / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(tree / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (it comes with .[dev])")
    tree = tmp_path_factory.mktemp("layout")
    stage(tree)
    return tree


def test_the_contracts_hold(staged: Path) -> None:
    run = _lint(staged)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "source", "reported"),
    [
        # the core reaching up to the facade from inside a function (the kind of import that hid the old cycle)
        (
            "core/upward.py",
            "def f():\n    from loupe.api import Engine\n    return Engine\n",
            "loupe.core.upward -> loupe.api",
        ),
        # two features that the contract keeps apart
        ("export/sideways.py", "import loupe.escalate.policy\n", "loupe.export.sideways -> loupe.escalate.policy"),
        # the desktop reaching for the CLI
        ("desktop/launch.py", "from loupe.cli import main\n", "loupe.desktop.launch -> loupe.cli"),
    ],
)
def test_an_import_against_the_layers_is_reported(tmp_path: Path, module: str, source: str, reported: str) -> None:
    if not LINT.exists():
        pytest.skip("import-linter is not installed (it comes with .[dev])")
    stage(tmp_path)
    (tmp_path / "loupe" / module).write_text(f'"""A fixture that breaks the layers."""\n\n{source}')
    run = _lint(tmp_path)
    assert run.returncode != 0
    assert reported in run.stdout, run.stdout


def _layered() -> set[str]:
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers" and "containers" not in c)["layers"]
    return {name.strip() for layer in layers for name in layer.split("|")}


def test_every_part_of_loupe_is_in_a_layer() -> None:
    engine = package_dirs()["loupe"]
    parts = {
        f"loupe.{p.stem}"
        for p in engine.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.stem not in ("__init__", "__main__")
    }
    parts |= {"loupe.cli", "loupe.desktop", "loupe.models"}
    assert parts - _layered() == set()


def test_nothing_is_imported_by_a_name_computed_at_run_time() -> None:
    """import-linter sees `import` statements only: a module looked up by name would hide a dependency."""
    found = []
    for folder in package_dirs().values():
        for path in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Call):
                    name = ast.unparse(node.func)
                    if name.endswith("import_module") or name == "__import__":
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


# The desktop reaches features through their package's face (its __init__), never a module inside one; the core
# (plain data: Task, Result, errors, images) is everyone's vocabulary. screenshots.py is a developer's tool that
# builds a synthetic model for the README's pictures.
FACES = {
    "loupe",
    "loupe.api",
    "loupe.wiring",
    "loupe.taskfile",
    "loupe.store",
    "loupe.batch",
    "loupe.escalate",
    "loupe.eval",
    "loupe.export",
    "loupe.floor",
    "loupe.models",
    "loupe.search",
}
EXCEPTIONS = {("screenshots.py", "loupe.models.synthetic")}


def test_the_desktop_uses_the_facade_the_wiring_and_package_faces_only() -> None:
    desktop = package_dirs()["loupe.desktop"]
    reached = []
    for path in desktop.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            for name in names:
                if not name.startswith("loupe") or name.startswith(("loupe.desktop", "loupe.core")):
                    continue
                if name not in FACES and (path.name, name) not in EXCEPTIONS:
                    reached.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert reached == []
