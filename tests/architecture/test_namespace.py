"""Installed, Loupe is one `loupe` namespace: nothing named engine, models or desktop lands in site-packages."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.layout import ROOT, package_dirs


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The distribution as pip builds it (offline: the venv's setuptools, no build isolation)."""
    out = tmp_path_factory.mktemp("wheel")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return next(out.glob("loupe-*.whl"))


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"loupe"}
    for data in (
        "loupe/core/tasks/defects.json",
        "loupe/samples/scratched-panel.jpg",
        "loupe/models/catalog.toml",
        "loupe/desktop/app.py",
        "loupe/cli/__main__.py",
    ):
        assert data in names
    entry_points = next(zipfile.ZipFile(wheel).read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "loupe = loupe.cli:main" in entry_points


def test_the_installed_wheel_imports_as_loupe(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    installed = {p.name for p in target.iterdir() if not p.name.endswith(".dist-info")}
    assert installed - {"bin"} == {"loupe"}  # bin/: the console scripts
    code = (
        "import importlib.util, loupe; print(loupe.Engine.__module__, loupe.__file__); "
        "print([importlib.util.find_spec(n) for n in ('engine', 'models', 'desktop')])"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={"PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    module, where = run.stdout.splitlines()[0].split()
    assert module == "loupe.api.engine" and Path(where).is_relative_to(target)
    assert run.stdout.splitlines()[1] == "[None, None, None]"


def test_pyproject_lists_every_package() -> None:
    """setuptools installs only the packages named (package-dir maps three folders): none may be forgotten."""
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = set()
    for name, folder in package_dirs().items():
        for init in folder.rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join([name, *init.parent.relative_to(folder).parts]))
    assert found == listed
