"""Putting model files into the store: catalog files pulled from the Hub, and local files imported (or copied)."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

from loupe.models.catalog import Catalog, CatalogEntry
from loupe.models.download import Fetcher, ProgressFn, RemoteFile, sha256_file
from loupe.models.store_checks import fast_check, role_problem
from loupe.models.store_files import etag_tag, move_aside, remove_stale_parts
from loupe.models.store_records import (
    ModelFileCorrupt,
    ModelImportError,
    Role,
    catalog_filename,
    expected_sha256,
    file_entry,
    recorded_file,
    update_manifest,
)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def pull_file(fetcher: Fetcher, entry: CatalogEntry, role: Role, model_dir: Path, progress: ProgressFn | None) -> None:
    """Install one catalog file: resume or fetch its `.part`, check it, record it in the manifest, then rename it."""
    filename = catalog_filename(entry, role)
    final = model_dir / filename
    manifest_path = model_dir / "manifest.json"
    recorded = recorded_file(manifest_path, role, filename)
    if recorded and fast_check(final, recorded.get("size"))[0] == "installed":
        return  # already installed: no network needed
    remote = RemoteFile(entry.repo_id, filename, entry.revision)
    info = fetcher.info(remote)
    expected, source = expected_sha256(entry, role, info, recorded)
    if final.exists():
        if expected is not None and _adopt_existing(final, expected):
            update_manifest(manifest_path, entry, role, file_entry(final, filename, expected, source, info))
            return
        move_aside(final)
    part = model_dir / f"{filename}.{etag_tag(info.etag)}.part"
    remove_stale_parts(model_dir, filename, keep=part)
    fetcher.download(remote, info, part, progress)
    actual = _check_download(entry.name, part, role, expected, source)
    entry_data = file_entry(part, filename, actual, source or "first-download", info)
    update_manifest(manifest_path, entry, role, entry_data)
    os.replace(part, final)


def _adopt_existing(final: Path, expected: str) -> bool:
    """A file already at its final name but not in the manifest is kept only if its sha256 matches."""
    return fast_check(final, None)[0] == "installed" and sha256_file(final) == expected


def _check_download(name: str, part: Path, role: Role, expected: str | None, source: str) -> str:
    """Hash the finished `.part` and check it; a bad file is moved aside and ModelFileCorrupt raised."""
    actual = sha256_file(part)
    fix = f"run `loupe models pull {name}` to download it again"
    if expected is not None and actual != expected:
        bad = move_aside(part)
        raise ModelFileCorrupt(
            f"{part.name}: sha256 {actual} does not match the expected {expected} ({source}); "
            f"the download was moved to {bad}. Fix: {fix}"
        )
    problem = role_problem(part, role)
    if problem:
        bad = move_aside(part)
        raise ModelFileCorrupt(f"{part.name}: {problem}; the download was moved to {bad}. Fix: {fix}")
    return actual


def check_import_name(name: str, catalog: Catalog) -> None:
    """Refuse a name that is malformed or taken by the catalog."""
    if not _NAME_RE.fullmatch(name):
        raise ModelImportError(
            f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 64 characters)"
        )
    if name in catalog or name in catalog.other_formats:
        raise ModelImportError(f"model name {name!r} is taken by the catalog; choose another with --name")


def copy_import(root: Path, source: Path, name: str, prefix: str = "") -> tuple[Path, str]:
    """Copy `source` into root/imported/<name>/ through a `.part` file; returns (path, sha256)."""
    target_dir = root / "imported" / name
    target_dir.mkdir(parents=True, exist_ok=True)
    final = target_dir / f"{prefix}{source.name}"
    part = target_dir / f"{source.name}.{uuid.uuid4().hex[:8]}.part"
    try:
        shutil.copyfile(source, part)
        digest = sha256_file(part)
        os.replace(part, final)
    finally:
        part.unlink(missing_ok=True)
    return final, digest
