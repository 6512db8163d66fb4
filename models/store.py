"""The local model store: where model files live, how they get there, and whether they are intact.

Layout under `root` (see `default_model_root()`):

    root/<name>/<text>.gguf, <mmproj>.gguf, manifest.json   catalog models fetched by `pull`
    root/<name>/<file>.<etag>.part                          an interrupted download, resumed by `pull`
    root/<name>/<file>.corrupt                              a file that failed its check, moved aside
    root/imported/<name>/...                                copies made by `import_local(copy=True)`
    root/registry.json                                      imported models (paths, sizes, sha256)
    root/synthetic/<name>/..., manifest.json                synthetic models, built on first use

Checksums: a catalog sha256 is authoritative. When it is empty, the store trusts on first use: it
takes the sha256 the Hub publishes for the file (the LFS ETag) or else the sha256 of the first
complete download, records it in the manifest, and `verify` compares against that from then on.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from models.catalog import (
    FAMILIES,
    Catalog,
    CatalogEntry,
    ModelError,
    UnknownModelError,
    load_catalog,
)
from models.download import Fetcher, ModelDownloadError, ProgressFn, RemoteFile, RemoteInfo, sha256_file

__all__ = [
    "InstalledModel",
    "ModelDownloadError",
    "ModelError",
    "ModelFileCorrupt",
    "ModelImportError",
    "ModelNotInstalled",
    "ModelStore",
    "ResolvedModel",
    "UnknownModelError",
    "VerifyReport",
    "default_model_root",
]

Role = Literal["text", "mmproj"]
Kind = Literal["catalog", "imported", "synthetic"]
State = Literal["installed", "missing", "corrupt"]

ROLES: tuple[Role, Role] = ("text", "mmproj")
GGUF_MAGIC = b"GGUF"
MMPROJ_ARCHITECTURE = "clip"
PROJECTOR_FAMILY = {"idefics3": "smolvlm", "gemma3": "gemma3"}  # clip.projector_type -> family
ARCHITECTURE_FAMILY = {"llama": "smolvlm", "gemma3": "gemma3"}  # text general.architecture -> family
ENV_MODEL_DIR = "LOUPE_MODEL_DIR"
IMPORT_HINT = "`loupe models import TEXT.gguf --mmproj MMPROJ.gguf`"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


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


@dataclass(frozen=True)
class VerifyReport:
    """The full check of one file: `ok`, or `problem` saying what is wrong and how to fix it."""

    name: str
    role: Role
    path: Path
    ok: bool
    problem: str
    expected_sha256: str | None
    actual_sha256: str | None


@dataclass(frozen=True)
class _FileRecord:
    role: Role
    path: Path
    size: int | None  # exact size when known (manifest/registry), else None
    sha256: str | None
    sha256_source: str  # "catalog" | "hub" | "first-download" | "import" | "build" | ""


@dataclass(frozen=True)
class _ModelRecord:
    name: str
    kind: Kind
    family: str
    files: tuple[_FileRecord, _FileRecord]
    fix: str  # the command that repairs or installs it


@dataclass(frozen=True)
class _GGUFInfo:
    architecture: str
    projector_type: str
    has_vision_encoder: bool


def default_model_root() -> Path:
    """$LOUPE_MODEL_DIR, else the per-user data directory (e.g. ~/.local/share/loupe/models)."""
    override = os.environ.get(ENV_MODEL_DIR)
    if override:
        return Path(override).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("loupe", appauthor=False)) / "models"


class ModelStore:
    """Catalog, imported and synthetic models under one root directory; no state beyond the files."""

    def __init__(
        self,
        root: Path,
        *,
        catalog: Catalog | None = None,
        endpoint: str | None = None,
        token: str | bool | None = None,
        download_retries: int = 3,
        retry_wait_s: float = 1.0,
    ) -> None:
        self.root = Path(root)
        self.catalog = catalog if catalog is not None else load_catalog()
        self._fetcher = Fetcher(endpoint=endpoint, token=token, retries=download_retries, retry_wait_s=retry_wait_s)

    # ---- queries -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Catalog names (catalog order) followed by imported names (sorted)."""
        return self.catalog.names() + sorted(self._registry())

    def resolve(self, name: str | None = None) -> ResolvedModel:
        """Paths of a usable model (the catalog default when `name` is None); builds synthetic ones."""
        name = name or self.catalog.default
        record = self._record(name, build_synthetic=True)
        for file in record.files:
            state, problem = _fast_check(file.path, file.size)
            if state == "missing":
                raise ModelNotInstalled(f"model {name!r} is not installed: {file.path} is missing. Fix: {record.fix}")
            if state == "corrupt":
                raise ModelFileCorrupt(f"model {name!r}: {file.path} {problem}. Fix: {record.fix}")
        text, mmproj = record.files
        return ResolvedModel(name, text.path, mmproj.path, record.family, record.kind == "synthetic")

    def installed(self) -> list[InstalledModel]:
        """Every known model (catalog, imported, synthetic) with its state from the fast check."""
        return [self._status(name) for name in self.names()]

    def verify(self, name: str | None = None, progress: ProgressFn | None = None) -> list[VerifyReport]:
        """Full sha256 check of `name`'s files, or of every model that has files on disk when None."""
        names = [name] if name else [m.name for m in self.installed() if m.state != "missing"]
        reports: list[VerifyReport] = []
        for model_name in names:
            record = self._record(model_name, build_synthetic=False)
            reports.extend(self._verify_file(record, file, progress) for file in record.files)
        return reports

    # ---- pull ----------------------------------------------------------------------------------

    def pull(self, name: str | None = None, progress: ProgressFn | None = None) -> ResolvedModel:
        """Download a catalog model (resuming any `.part`), verify it, then give it its final name."""
        name = name or self.catalog.default
        if name not in self.catalog:
            if name in self._registry():
                raise ModelError(f"model {name!r} was imported from local files; there is nothing to pull")
            raise UnknownModelError(name, self.names())
        entry = self.catalog.get(name)
        if entry.is_synthetic:
            return self.resolve(name)
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            self._pull_file(entry, role, model_dir, progress)
        return self.resolve(name)

    def _pull_file(self, entry: CatalogEntry, role: Role, model_dir: Path, progress: ProgressFn | None) -> None:
        filename = _catalog_filename(entry, role)
        final = model_dir / filename
        manifest_path = model_dir / "manifest.json"
        recorded = _recorded_file(manifest_path, role, filename)
        if recorded and _fast_check(final, recorded.get("size"))[0] == "installed":
            return  # already installed: no network needed
        remote = RemoteFile(entry.repo_id, filename, entry.revision)
        info = self._fetcher.info(remote)
        expected, source = _expected_sha256(entry, role, info, recorded)
        if final.exists():
            if expected is not None and self._adopt_existing(final, expected):
                _update_manifest(manifest_path, entry, role, _file_entry(final, filename, expected, source, info))
                return
            _move_aside(final)
        part = model_dir / f"{filename}.{_etag_tag(info.etag)}.part"
        _remove_stale_parts(model_dir, filename, keep=part)
        self._fetcher.download(remote, info, part, progress)
        actual = self._check_download(entry.name, part, role, expected, source)
        entry_data = _file_entry(part, filename, actual, source or "first-download", info)
        _update_manifest(manifest_path, entry, role, entry_data)
        os.replace(part, final)

    @staticmethod
    def _adopt_existing(final: Path, expected: str) -> bool:
        """A file already at its final name but not in the manifest is kept only if its sha256 matches."""
        return _fast_check(final, None)[0] == "installed" and sha256_file(final) == expected

    @staticmethod
    def _check_download(name: str, part: Path, role: Role, expected: str | None, source: str) -> str:
        """Hash the finished `.part` and check it; a bad file is moved aside and ModelFileCorrupt raised."""
        actual = sha256_file(part)
        fix = f"run `loupe models pull {name}` to download it again"
        if expected is not None and actual != expected:
            bad = _move_aside(part)
            raise ModelFileCorrupt(
                f"{part.name}: sha256 {actual} does not match the expected {expected} ({source}); "
                f"the download was moved to {bad}. Fix: {fix}"
            )
        problem = _role_problem(part, role)
        if problem:
            bad = _move_aside(part)
            raise ModelFileCorrupt(f"{part.name}: {problem}; the download was moved to {bad}. Fix: {fix}")
        return actual

    # ---- import --------------------------------------------------------------------------------

    def import_local(
        self,
        text: Path,
        mmproj: Path,
        name: str | None = None,
        copy: bool = False,
        family: str | None = None,
    ) -> ResolvedModel:
        """Register a local text GGUF + mmproj GGUF pair (checked, family inferred, sha256 recorded)."""
        text, mmproj = Path(text).expanduser().resolve(), Path(mmproj).expanduser().resolve()
        text_info, mmproj_info = _inspect_pair(text, mmproj)
        family = family or _infer_family(text_info, mmproj_info)
        if family not in FAMILIES:
            raise ModelImportError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
        name = name or _slug(text.stem)
        self._check_import_name(name)
        files: dict[str, dict[str, Any]] = {}
        for role, path in (("text", text), ("mmproj", mmproj)):
            prefix = "mmproj-" if role == "mmproj" and text.name == mmproj.name else ""
            stored, digest = self._store_import(path, name, prefix) if copy else (path, sha256_file(path))
            files[role] = {"path": str(stored), "size": stored.stat().st_size, "sha256": digest}
        files["text"]["architecture"] = text_info.architecture
        files["mmproj"]["projector_type"] = mmproj_info.projector_type
        registry = self._registry()
        registry[name] = {"family": family, "copied": copy, "imported_at": _now(), "files": files}
        _write_json_atomic(self._registry_path(), {"version": 1, "models": registry})
        return self.resolve(name)

    def _check_import_name(self, name: str) -> None:
        if not _NAME_RE.fullmatch(name):
            raise ModelImportError(
                f"invalid model name {name!r}: use letters, digits, '.', '_' or '-' (at most 64 characters)"
            )
        if name in self.catalog:
            raise ModelImportError(f"model name {name!r} is taken by the catalog; choose another with --name")

    def _store_import(self, source: Path, name: str, prefix: str = "") -> tuple[Path, str]:
        """Copy `source` into root/imported/<name>/ through a `.part` file; returns (path, sha256)."""
        target_dir = self.root / "imported" / name
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

    # ---- records -------------------------------------------------------------------------------

    def _record(self, name: str, *, build_synthetic: bool) -> _ModelRecord:
        if name in self.catalog:
            entry = self.catalog.get(name)
            if entry.is_synthetic:
                return self._synthetic_record(entry, build=build_synthetic)
            return self._catalog_record(entry)
        imported = self._registry().get(name)
        if imported is None:
            raise UnknownModelError(name, self.names())
        return _imported_record(name, imported)

    def _catalog_record(self, entry: CatalogEntry) -> _ModelRecord:
        model_dir = self.root / entry.name
        recorded = _read_json(model_dir / "manifest.json").get("files", {})
        files = tuple(_catalog_file(entry, role, model_dir, recorded.get(role)) for role in ROLES)
        fix = f"run `loupe models pull {entry.name}` (or use your own files: {IMPORT_HINT})"
        if entry.gated:
            fix += f"; {entry.repo_id} is gated: accept its licence on Hugging Face and log in first"
        return _ModelRecord(entry.name, "catalog", entry.family, files, fix)  # type: ignore[arg-type]

    def _synthetic_record(self, entry: CatalogEntry, *, build: bool) -> _ModelRecord:
        model_dir = self.root / "synthetic" / entry.name
        fix = "it is rebuilt automatically the next time it is used"
        record = _synthetic_from_manifest(entry, model_dir, fix)
        intact = record is not None and all(_fast_check(f.path, f.size)[0] == "installed" for f in record.files)
        if build and not intact:
            record = self._build_synthetic(entry, model_dir, fix)
        if record is None:
            files = tuple(_FileRecord(role, model_dir / f"{role}.gguf", None, None, "") for role in ROLES)
            record = _ModelRecord(entry.name, "synthetic", entry.family, files, fix)  # type: ignore[arg-type]
        return record

    def _build_synthetic(self, entry: CatalogEntry, model_dir: Path, fix: str) -> _ModelRecord:
        """Build into a scratch directory and swap it in whole, so a crash never leaves half a model."""
        scratch = model_dir.parent / f".{entry.name}.building-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            from models.synthetic import build

            built = build(entry.synthetic, scratch)
            files = {
                role: _describe_built(Path(path), scratch)
                for role, path in (("text", built.text_path), ("mmproj", built.mmproj_path))
            }
            _write_json_atomic(scratch / "manifest.json", {"version": 1, "builder": entry.synthetic, "files": files})
            if model_dir.exists():
                shutil.rmtree(model_dir)  # generated, deterministic: nothing of the user's is lost
            os.replace(scratch, model_dir)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot build synthetic model {entry.name!r}: {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        record = _synthetic_from_manifest(entry, model_dir, fix)
        assert record is not None
        return record

    def _registry_path(self) -> Path:
        return self.root / "registry.json"

    def _registry(self) -> dict[str, Any]:
        return dict(_read_json(self._registry_path()).get("models", {}))

    # ---- status and verification ---------------------------------------------------------------

    def _status(self, name: str) -> InstalledModel:
        record = self._record(name, build_synthetic=False)
        checks = [_fast_check(f.path, f.size) for f in record.files]
        states = {state for state, _ in checks}
        state: State = "missing" if "missing" in states else "corrupt" if "corrupt" in states else "installed"
        problems = [f"{f.path.name} {p}" for f, (s, p) in zip(record.files, checks, strict=True) if p]
        detail = "; ".join(problems)
        if state == "missing" and record.kind == "synthetic":
            detail = "built on first use"
        elif state == "missing" and record.kind == "catalog":
            detail = self._partial_detail(name) or "not downloaded"
        elif state == "installed" and name in self.catalog:
            detail = self.catalog.get(name).note
        text, mmproj = record.files
        return InstalledModel(
            name=name,
            kind=record.kind,
            state=state,
            family=record.family,
            text_path=text.path,
            mmproj_path=mmproj.path,
            size_bytes=sum(f.path.stat().st_size for f in record.files if f.path.is_file()),
            detail=detail,
            is_default=name == self.catalog.default,
        )

    def _partial_detail(self, name: str) -> str:
        parts = list((self.root / name).glob("*.part"))
        if not parts:
            return ""
        held = sum(p.stat().st_size for p in parts)
        return f"partial download ({held} bytes); `loupe models pull {name}` resumes it"

    def _verify_file(self, record: _ModelRecord, file: _FileRecord, progress: ProgressFn | None) -> VerifyReport:
        def report(problem: str, actual: str | None = None) -> VerifyReport:
            ok = not problem
            text = f"{problem}. Fix: {record.fix}" if problem else ""
            return VerifyReport(record.name, file.role, file.path, ok, text, file.sha256, actual)

        state, problem = _fast_check(file.path, file.size)
        if state != "installed":
            return report(f"{file.path} {problem}")
        if file.sha256 is None:
            return report(f"{file.path} has no recorded sha256 to compare with (it was not installed by Loupe)")
        actual = sha256_file(file.path, progress)
        if actual != file.sha256:
            return report(
                f"{file.path} sha256 mismatch: expected {file.sha256} ({file.sha256_source}), got {actual}",
                actual,
            )
        return report("", actual)


# ---- file checks -------------------------------------------------------------------------------


def _fast_check(path: Path, size: int | None) -> tuple[State, str]:
    """Cheap check (no hashing): present, non-empty, GGUF magic, and the recorded size when known."""
    try:
        actual = path.stat().st_size
        with path.open("rb") as f:
            magic = f.read(4)
    except FileNotFoundError:
        return "missing", "is missing"
    except OSError as exc:
        return "corrupt", f"cannot be read ({exc.strerror or exc})"
    if actual == 0:
        return "corrupt", "is empty"
    if magic != GGUF_MAGIC:
        return "corrupt", "is not a GGUF file (bad magic bytes)"
    if size is not None and actual != size:
        return "corrupt", f"is {actual} bytes, expected {size} (truncated or incomplete)"
    return "installed", ""


def _inspect_gguf(path: Path) -> _GGUFInfo:
    """Read the few metadata keys that tell a text model from a vision projector."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        values = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("tokenizer.")}
    except Exception as exc:
        raise ModelImportError(f"{path} cannot be read as GGUF ({type(exc).__name__}: {exc})") from exc
    del reader  # release the memory map before the caller renames the file (Windows)
    return _GGUFInfo(
        architecture=str(values.get("general.architecture", "")),
        projector_type=str(values.get("clip.projector_type", "")),
        has_vision_encoder=bool(values.get("clip.has_vision_encoder", True)),
    )


def _inspect_pair(text: Path, mmproj: Path) -> tuple[_GGUFInfo, _GGUFInfo]:
    for role, path in (("text", text), ("mmproj", mmproj)):
        state, problem = _fast_check(path, None)
        if state != "installed":
            raise ModelImportError(f"{role} file {path} {problem}")
    text_info, mmproj_info = _inspect_gguf(text), _inspect_gguf(mmproj)
    text_is_proj = text_info.architecture == MMPROJ_ARCHITECTURE
    mmproj_is_proj = mmproj_info.architecture == MMPROJ_ARCHITECTURE
    if text_is_proj and not mmproj_is_proj:
        raise ModelImportError(f"the files look swapped: {text} is the vision projector and {mmproj} the text model")
    if text_is_proj:
        raise ModelImportError(f"{text} is a vision projector (mmproj) GGUF, not a text model")
    if not mmproj_is_proj:
        arch = mmproj_info.architecture or "unknown"
        raise ModelImportError(f"{mmproj} is a text model GGUF (architecture {arch}), not a vision projector")
    if not mmproj_info.has_vision_encoder:
        raise ModelImportError(f"{mmproj} is a projector without a vision encoder (audio only?)")
    return text_info, mmproj_info


def _infer_family(text_info: _GGUFInfo, mmproj_info: _GGUFInfo) -> str:
    by_projector = PROJECTOR_FAMILY.get(mmproj_info.projector_type)
    by_architecture = ARCHITECTURE_FAMILY.get(text_info.architecture)
    if by_projector and by_projector == by_architecture:
        return by_projector
    projector, architecture = mmproj_info.projector_type or "?", text_info.architecture or "?"
    found = f"projector type {projector}, text architecture {architecture}"
    if by_projector and by_architecture:
        raise ModelImportError(f"the text model and the projector do not belong together ({found})")
    raise ModelImportError(
        f"cannot tell which model family these files are ({found}); supported: {', '.join(FAMILIES)}. "
        "If you are sure, pass the family explicitly"
    )


def _role_problem(path: Path, role: Role) -> str:
    """Why a downloaded file is not what its catalog role says, or ''."""
    try:
        info = _inspect_gguf(path)
    except ModelImportError as exc:
        return str(exc)
    is_proj = info.architecture == MMPROJ_ARCHITECTURE
    if role == "text" and is_proj:
        return "expected a text model but got a vision projector (catalog error)"
    if role == "mmproj" and not is_proj:
        kind = info.architecture or "non-projector"
        return f"expected a vision projector but got a {kind} model (catalog error)"
    return ""


# ---- records from the catalog, manifests and the registry --------------------------------------


def _catalog_filename(entry: CatalogEntry, role: Role) -> str:
    return entry.text_file if role == "text" else entry.mmproj_file


def _catalog_file(entry: CatalogEntry, role: Role, model_dir: Path, recorded: dict[str, Any] | None) -> _FileRecord:
    filename = _catalog_filename(entry, role)
    if recorded is None or recorded.get("filename") != filename:
        recorded = {}
    catalog_sha = entry.text_sha256 if role == "text" else entry.mmproj_sha256
    sha, source = (catalog_sha, "catalog") if catalog_sha else (recorded.get("sha256"), recorded.get("sha256_source"))
    return _FileRecord(role, model_dir / filename, recorded.get("size"), sha, source or "")


def _imported_record(name: str, data: dict[str, Any]) -> _ModelRecord:
    files = data.get("files", {})
    records = tuple(
        _FileRecord(role, Path(files[role]["path"]), files[role].get("size"), files[role].get("sha256"), "import")
        for role in ROLES
    )
    text, mmproj = (str(r.path) for r in records)
    fix = f"re-import it: `loupe models import {text} --mmproj {mmproj} --name {name}`"
    return _ModelRecord(name, "imported", str(data.get("family", "")), records, fix)  # type: ignore[arg-type]


def _synthetic_from_manifest(entry: CatalogEntry, model_dir: Path, fix: str) -> _ModelRecord | None:
    files = _read_json(model_dir / "manifest.json").get("files")
    if not isinstance(files, dict) or set(ROLES) - set(files):
        return None
    records = tuple(
        _FileRecord(role, model_dir / files[role]["filename"], files[role]["size"], files[role]["sha256"], "build")
        for role in ROLES
    )
    return _ModelRecord(entry.name, "synthetic", entry.family, records, fix)  # type: ignore[arg-type]


def _describe_built(path: Path, scratch: Path) -> dict[str, Any]:
    path = path if path.is_absolute() else scratch / path
    try:
        relative = path.resolve().relative_to(scratch.resolve())
    except ValueError:
        raise ModelError(f"the synthetic builder wrote {path} outside its output directory {scratch}") from None
    return {"filename": relative.as_posix(), "size": path.stat().st_size, "sha256": sha256_file(path)}


def _expected_sha256(
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


def _recorded_file(manifest_path: Path, role: Role, filename: str) -> dict[str, Any] | None:
    """The manifest's record for `role`, unless the catalog has since moved to another file."""
    recorded = _read_json(manifest_path).get("files", {}).get(role)
    return recorded if isinstance(recorded, dict) and recorded.get("filename") == filename else None


def _file_entry(path: Path, filename: str, sha256: str, source: str, info: RemoteInfo) -> dict[str, Any]:
    return {
        "filename": filename,
        "size": path.stat().st_size,
        "sha256": sha256,
        "sha256_source": source,
        "etag": info.etag,
        "commit": info.commit,
        "downloaded_at": _now(),
    }


def _update_manifest(path: Path, entry: CatalogEntry, role: Role, file_record: dict[str, Any]) -> None:
    manifest = _read_json(path)
    manifest.update({"version": 1, "name": entry.name, "repo_id": entry.repo_id, "revision": entry.revision})
    manifest.setdefault("files", {})[role] = file_record
    _write_json_atomic(path, manifest)


# ---- small file helpers ------------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} is unreadable ({exc}); move it away and pull or import again") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object; move it away and pull or import again")
    return data


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a temporary file in the same directory, then os.replace it: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _move_aside(path: Path) -> Path:
    """Rename a bad file (or `.part`) to <final name>.corrupt, never deleting it; returns the new path."""
    base = path.name
    if base.endswith(".part"):
        base = base[: -len(".part")].rsplit(".", 1)[0]  # drop ".<etag tag>.part"
    target = path.with_name(f"{base}.corrupt")
    counter = 1
    while target.exists():
        target = path.with_name(f"{base}.corrupt.{counter}")
        counter += 1
    os.replace(path, target)
    return target


def _remove_stale_parts(model_dir: Path, filename: str, keep: Path) -> None:
    """Partial downloads of an older upstream version of `filename` cannot be resumed: drop them."""
    for stale in model_dir.glob(f"{glob.escape(filename)}.*.part"):
        if stale != keep:
            stale.unlink(missing_ok=True)


def _etag_tag(etag: str) -> str:
    """A short, filename-safe tag for an ETag, so a `.part` is only resumed against the same upstream file."""
    return hashlib.sha256(etag.encode()).hexdigest()[:12]


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")[:64]
    return slug or "imported-model"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
