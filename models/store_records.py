"""What the model store knows about a model: its errors, the values it hands out, and the records it reads."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from loupe.models.catalog import CatalogEntry, ModelError
from loupe.models.download import RemoteInfo, sha256_file
from loupe.models.store_files import now_iso, read_json, write_json_atomic

Role = Literal["text", "mmproj"]
Kind = Literal["catalog", "imported", "synthetic"]
State = Literal["installed", "missing", "corrupt"]

ROLES: tuple[Role, Role] = ("text", "mmproj")


class ModelNotInstalled(ModelError):
    """A model file is absent; the message names the file and the command that installs it."""


class ModelFileCorrupt(ModelError):
    """A model file is present but damaged (truncated, not GGUF, bad sha256); the message gives the fix."""


class ModelImportError(ModelError):
    """Local files refused by `import_local` (wrong kind of GGUF, unknown family, name taken)."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model ready to load: both files present and past the fast check."""

    name: str
    text_path: Path
    mmproj_path: Path
    family: str
    synthetic: bool


@dataclass(frozen=True)
class InstalledModel:
    """One line of `loupe models list`."""

    name: str
    kind: Kind
    state: State
    family: str
    text_path: Path | None
    mmproj_path: Path | None
    size_bytes: int  # bytes on disk now (0 when missing)
    detail: str  # why it is missing/corrupt, or a note
    is_default: bool
    format: str = "gguf"  # "gguf" (a text + mmproj pair) or "mlx" / "onnx" (a model directory at `path`)
    license: str = ""
    path: Path | None = None  # the model directory (directory formats)


@dataclass(frozen=True)
class VerifyReport:
    """The full check of one file: `ok`, or `problem` saying what is wrong and how to fix it."""

    name: str
    role: str  # "text" / "mmproj", or a directory model's file (relative path)
    path: Path
    ok: bool
    problem: str
    expected_sha256: str | None
    actual_sha256: str | None


@dataclass(frozen=True)
class FileRecord:
    """One file of a model as the store knows it: role, path, and the size and sha256 to check it against."""

    role: Role
    path: Path
    size: int | None  # exact size when known (manifest/registry), else None
    sha256: str | None
    sha256_source: str  # "catalog" | "hub" | "first-download" | "import" | "build" | ""


@dataclass(frozen=True)
class ModelRecord:
    """A model as the store knows it: its two files, its kind and family, and the command that repairs it."""

    name: str
    kind: Kind
    family: str
    files: tuple[FileRecord, FileRecord]
    fix: str  # the command that repairs or installs it


def catalog_filename(entry: CatalogEntry, role: Role) -> str:
    """The catalog entry's file name for `role`."""
    return entry.text_file if role == "text" else entry.mmproj_file


def catalog_file(entry: CatalogEntry, role: Role, model_dir: Path, recorded: dict[str, Any] | None) -> FileRecord:
    """A catalog file's record: the catalog sha256 when pinned, else what the manifest recorded."""
    filename = catalog_filename(entry, role)
    if recorded is None or recorded.get("filename") != filename:
        recorded = {}
    catalog_sha = entry.text_sha256 if role == "text" else entry.mmproj_sha256
    sha, source = (catalog_sha, "catalog") if catalog_sha else (recorded.get("sha256"), recorded.get("sha256_source"))
    return FileRecord(role, model_dir / filename, recorded.get("size"), sha, source or "")


def imported_record(name: str, data: dict[str, Any]) -> ModelRecord:
    """An imported model's record, from its registry entry."""
    files = data.get("files", {})
    records = tuple(
        FileRecord(role, Path(files[role]["path"]), files[role].get("size"), files[role].get("sha256"), "import")
        for role in ROLES
    )
    text, mmproj = (str(r.path) for r in records)
    fix = f"re-import it: `loupe models import {text} --mmproj {mmproj} --name {name}`"
    return ModelRecord(name, "imported", str(data.get("family", "")), records, fix)  # type: ignore[arg-type]


def synthetic_from_manifest(entry: CatalogEntry, model_dir: Path, fix: str) -> ModelRecord | None:
    """A built synthetic model's record, or None when its manifest is absent or incomplete."""
    files = read_json(model_dir / "manifest.json").get("files")
    if not isinstance(files, dict) or set(ROLES) - set(files):
        return None
    records = tuple(
        FileRecord(role, model_dir / files[role]["filename"], files[role]["size"], files[role]["sha256"], "build")
        for role in ROLES
    )
    return ModelRecord(entry.name, "synthetic", entry.family, records, fix)  # type: ignore[arg-type]


def describe_built(path: Path, scratch: Path) -> dict[str, Any]:
    """The manifest entry for a file the synthetic builder wrote, which must lie inside `scratch`."""
    path = path if path.is_absolute() else scratch / path
    try:
        relative = path.resolve().relative_to(scratch.resolve())
    except ValueError:
        raise ModelError(f"the synthetic builder wrote {path} outside its output directory {scratch}") from None
    return {"filename": relative.as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)}


def expected_sha256(
    entry: CatalogEntry, role: Role, info: RemoteInfo, recorded: dict[str, Any] | None
) -> tuple[str | None, str]:
    """The sha256 a download must have, and where it comes from (catalog > Hub LFS ETag > earlier record)."""
    catalog_sha = entry.text_sha256 if role == "text" else entry.mmproj_sha256
    if catalog_sha:
        return catalog_sha, "catalog"
    if info.lfs_sha256:
        return info.lfs_sha256, "hub"
    if recorded and recorded.get("etag") == info.etag and recorded.get("sha256"):
        return recorded["sha256"], str(recorded.get("sha256_source", "first-download"))
    return None, ""


def recorded_file(manifest_path: Path, role: Role, filename: str) -> dict[str, Any] | None:
    """The manifest's record for `role`, unless the catalog has since moved to another file."""
    recorded = read_json(manifest_path).get("files", {}).get(role)
    return recorded if isinstance(recorded, dict) and recorded.get("filename") == filename else None


def file_entry(path: Path, filename: str, sha256: str, source: str, info: RemoteInfo) -> dict[str, Any]:
    """The manifest entry for a downloaded file: name, size, sha256 and where it came from."""
    return {
        "filename": filename,
        "size": path.stat().st_size,
        "sha256": sha256,
        "sha256_source": source,
        "etag": info.etag,
        "commit": info.commit,
        "downloaded_at": now_iso(),
    }


def update_manifest(path: Path, entry: CatalogEntry, role: Role, file_record: dict[str, Any]) -> None:
    """Record `role`'s file in the model's manifest (written atomically)."""
    manifest = read_json(path)
    manifest.update({"version": 1, "name": entry.name, "repo_id": entry.repo_id, "revision": entry.revision})
    manifest.setdefault("files", {})[role] = file_record
    write_json_atomic(path, manifest)
