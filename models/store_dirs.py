"""The model store's view of MLX / ONNX directory models: their state for `loupe models list`, pull and verify."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loupe.models.catalog import Catalog, CatalogEntry, UnknownModelError
from loupe.models.download import Fetcher, ProgressFn
from loupe.models.hf_fetch import MANIFEST, dir_problems, model_dir, pinned_files, pull_dir
from loupe.models.store_files import partial_detail, read_json
from loupe.models.store_records import InstalledModel, State, VerifyReport


@dataclass(frozen=True)
class DirectoryModels:
    """The catalog's directory-format entries under one model root (root/<name>/, pinned by manifest.json)."""

    root: Path
    catalog: Catalog
    fetcher: Fetcher

    def names(self) -> list[str]:
        return list(self.catalog.other_formats)

    def __contains__(self, name: object) -> bool:
        return name in self.catalog.other_formats

    def entry(self, name: str) -> CatalogEntry:
        if name not in self:
            raise UnknownModelError(name, self.names())
        return self.catalog.other_formats[name]

    def installed(self) -> list[InstalledModel]:
        """Every directory model with its state from the fast check (manifest present, files there, sizes)."""
        return [self.status(name) for name in self.names()]

    def status(self, name: str) -> InstalledModel:
        entry = self.entry(name)
        directory = model_dir(entry, self.root)
        problems = dir_problems(directory)
        state: State = "installed"
        detail = entry.note
        if problems and problems[0][0] == MANIFEST:
            parts = list(directory.rglob("*.part")) if directory.is_dir() else []
            state, detail = "missing", partial_detail(name, parts) or "not downloaded"
        elif problems:
            state = "corrupt"
            detail = "; ".join(f"{rel} {problem}" for rel, problem in problems) + f"; `loupe models pull {name}`"
        size = sum((directory / rel).stat().st_size for rel in pinned_files(directory) if (directory / rel).is_file())
        return InstalledModel(
            name=name,
            kind="catalog",
            state=state,
            family=entry.family,
            text_path=None,
            mmproj_path=None,
            size_bytes=size if state != "missing" else 0,
            detail=detail,
            is_default=False,
            format=entry.format,
            license=entry.license,
            path=directory if state != "missing" else None,
        )

    def pull(self, name: str, progress: ProgressFn | None = None) -> Path:
        """Download what the directory lacks (nothing when it passes the fast check for the same `files`); its path."""
        entry = self.entry(name)
        directory = model_dir(entry, self.root)
        same_files = read_json(directory / MANIFEST).get("patterns", list(entry.files)) == list(entry.files)
        if same_files and not dir_problems(directory):
            return directory
        return pull_dir(self.fetcher, entry, self.root, progress)

    def verify(self, name: str, progress: ProgressFn | None = None) -> list[VerifyReport]:
        """Full sha256 check against the manifest: one report per pinned file (one for a missing manifest)."""
        directory = model_dir(self.entry(name), self.root)
        problems = dict(dir_problems(directory, full=True, progress=progress))
        if MANIFEST in problems:
            return [
                VerifyReport(
                    name,
                    MANIFEST,
                    directory / MANIFEST,
                    False,
                    f"{directory} is not downloaded. Fix: run `loupe models pull {name}`",
                    None,
                    None,
                )
            ]
        reports = []
        for rel, pin in pinned_files(directory).items():
            problem = problems.get(rel, "")
            move = "" if problem == "is missing" else "move it away and "
            text = (
                (
                    f"{directory / rel} {problem}. Fix: {move}run `loupe models pull {name}` "
                    "(only the files that fail are fetched again)"
                )
                if problem
                else ""
            )
            reports.append(
                VerifyReport(
                    name, rel, directory / rel, not problem, text, pin["sha256"], None if problem else pin["sha256"]
                )
            )
        return reports
