"""The installed `loupe` tree built from the repository's folders, for tools that read files instead of importing.

pyproject.toml maps engine/ to `loupe`, and cli/, desktop/ and models/ to `loupe.cli`, `loupe.desktop` and
`loupe.models`. Imports resolve through that mapping, but import-linter and mypy walk one folder per package, so
they get a copy laid out as a wheel installs it: `python -m tests.layout DEST` (or `stage(dest)`) writes
DEST/loupe/...; PyInstaller builds from it too.
"""

from __future__ import annotations

import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def package_dirs(root: Path = ROOT) -> dict[str, Path]:
    """pyproject's package-dir table: installed package name -> repository folder."""
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: root / folder for name, folder in setup["package-dir"].items()}


def stage(dest: Path, root: Path = ROOT) -> Path:
    """Copy the mapped folders' files (code and package data) to DEST in the installed layout; returns
    DEST/loupe."""
    if dest.exists():
        shutil.rmtree(dest)
    for name, folder in package_dirs(root).items():
        target = dest.joinpath(*name.split("."))
        for src in folder.rglob("*"):
            if "__pycache__" in src.parts or not src.is_file() or src.suffix in (".pyc", ".so"):
                continue
            out = target / src.relative_to(folder)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, out)
    return dest / "loupe"


if __name__ == "__main__":
    print(stage(Path(sys.argv[1]).resolve()))
