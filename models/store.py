"""The local model store: where model files live, how they get there, and whether they are intact.

Layout under `root` (see `default_model_root()`):

    root/<name>/<text>.gguf, <mmproj>.gguf, manifest.json   catalog models fetched by `pull`
    root/<name>/<file>.<etag>.part                          an interrupted download, resumed by `pull`
    root/<name>/<file>.corrupt                              a file that failed its check, moved aside
    root/<name>/<repo files...>, manifest.json              an MLX / ONNX model directory (loupe.models.store_dirs)
    root/imported/<name>/...                                copies made by `import_local(copy=True)`
    root/registry.json                                      imported models (paths, sizes, sha256)
    root/synthetic/<name>/..., manifest.json                synthetic models, built on first use

Checksums: a catalog sha256 is authoritative. When it is empty, the store trusts on first use: it
takes the sha256 the Hub publishes for the file (the LFS ETag) or else the sha256 of the first
complete download, records it in the manifest, and `verify` compares against that from then on.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from loupe.models.catalog import (
    FAMILIES,
    Catalog,
    CatalogEntry,
    ModelError,
    UnknownModelError,
    load_catalog,
)
from loupe.models.download import Fetcher, ModelDownloadError, ProgressFn, sha256_file
from loupe.models.paths import user_data_file
from loupe.models.store_checks import fast_check, infer_family, inspect_pair
from loupe.models.store_dirs import DirectoryModels
from loupe.models.store_files import now_iso, partial_detail, read_json, slug, write_json_atomic
from loupe.models.store_install import check_import_name, copy_import, pull_file
from loupe.models.store_records import (
    ROLES,
    FileRecord,
    InstalledModel,
    ModelFileCorrupt,
    ModelImportError,
    ModelNotInstalled,
    ModelRecord,
    ResolvedModel,
    State,
    VerifyReport,
    catalog_file,
    describe_built,
    imported_record,
    synthetic_from_manifest,
)

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

ENV_MODEL_DIR = "LOUPE_MODEL_DIR"
IMPORT_HINT = "`loupe models import TEXT.gguf --mmproj MMPROJ.gguf`"


def default_model_root() -> Path:
    """$LOUPE_MODEL_DIR, else the per-user data directory (e.g. ~/.local/share/loupe/models)."""
    return user_data_file(ENV_MODEL_DIR, "models")


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
        self.directories = DirectoryModels(self.root, self.catalog, self._fetcher)  # MLX / ONNX model directories

    # ---- queries -------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Catalog names (catalog order) followed by imported names (sorted)."""
        return self.catalog.names() + sorted(self._registry())

    def resolve(self, name: str | None = None) -> ResolvedModel:
        """Paths of a usable model (the catalog default when `name` is None); builds synthetic ones."""
        name = name or self.catalog.default
        record = self._record(name, build_synthetic=True)
        for file in record.files:
            state, problem = fast_check(file.path, file.size)
            if state == "missing":
                raise ModelNotInstalled(f"model {name!r} is not installed: {file.path} is missing. Fix: {record.fix}")
            if state == "corrupt":
                raise ModelFileCorrupt(f"model {name!r}: {file.path} {problem}. Fix: {record.fix}")
        text, mmproj = record.files
        return ResolvedModel(name, text.path, mmproj.path, record.family, record.kind == "synthetic")

    def installed(self) -> list[InstalledModel]:
        """Every known model (catalog, imported, synthetic) with its state from the fast check."""
        return [self._status(name) for name in self.names()]

    def listing(self) -> list[InstalledModel]:
        """`installed()` followed by the catalog's MLX / ONNX directory models: every line of `loupe models list`."""
        return self.installed() + self.directories.installed()

    def verify(self, name: str | None = None, progress: ProgressFn | None = None) -> list[VerifyReport]:
        """Full sha256 check of `name`'s files, or of every model that has files on disk when None."""
        names = [name] if name else [m.name for m in self.listing() if m.state != "missing"]
        reports: list[VerifyReport] = []
        for model_name in names:
            if model_name in self.directories:
                reports.extend(self.directories.verify(model_name, progress))
                continue
            record = self._record(model_name, build_synthetic=False)
            reports.extend(self._verify_file(record, file, progress) for file in record.files)
        return reports

    # ---- pull ----------------------------------------------------------------------------------

    def pull(self, name: str | None = None, progress: ProgressFn | None = None) -> ResolvedModel:
        """Download a catalog model (resuming any `.part`), verify it, then give it its final name."""
        name = name or self.catalog.default
        if name not in self.catalog:
            if name in self.directories:
                raise ModelError(f"model {name!r} is a model directory; pull it with ModelStore.directories.pull")
            if name in self._registry():
                raise ModelError(f"model {name!r} was imported from local files; there is nothing to pull")
            raise UnknownModelError(name, self.names() + self.directories.names())
        entry = self.catalog.get(name)
        if entry.is_synthetic:
            return self.resolve(name)
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        for role in ROLES:
            pull_file(self._fetcher, entry, role, model_dir, progress)
        return self.resolve(name)

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
        text_info, mmproj_info = inspect_pair(text, mmproj)
        family = family or infer_family(text_info, mmproj_info)
        if family not in FAMILIES:
            raise ModelImportError(f"family {family!r} is not one of {', '.join(FAMILIES)}")
        name = name or slug(text.stem)
        check_import_name(name, self.catalog)
        files: dict[str, dict[str, Any]] = {}
        for role, path in (("text", text), ("mmproj", mmproj)):
            prefix = "mmproj-" if role == "mmproj" and text.name == mmproj.name else ""
            stored, digest = copy_import(self.root, path, name, prefix) if copy else (path, sha256_file(path))
            files[role] = {"path": str(stored), "size": stored.stat().st_size, "sha256": digest}
        files["text"]["architecture"] = text_info.architecture
        files["mmproj"]["projector_type"] = mmproj_info.projector_type
        registry = self._registry()
        registry[name] = {"family": family, "copied": copy, "imported_at": now_iso(), "files": files}
        write_json_atomic(self._registry_path(), {"version": 1, "models": registry})
        return self.resolve(name)

    # ---- records -------------------------------------------------------------------------------

    def _record(self, name: str, *, build_synthetic: bool) -> ModelRecord:
        if name in self.catalog:
            entry = self.catalog.get(name)
            if entry.is_synthetic:
                return self._synthetic_record(entry, build=build_synthetic)
            return self._catalog_record(entry)
        imported = self._registry().get(name)
        if imported is None:
            raise UnknownModelError(name, self.names())
        return imported_record(name, imported)

    def _catalog_record(self, entry: CatalogEntry) -> ModelRecord:
        model_dir = self.root / entry.name
        recorded = read_json(model_dir / "manifest.json").get("files", {})
        files = tuple(catalog_file(entry, role, model_dir, recorded.get(role)) for role in ROLES)
        fix = f"run `loupe models pull {entry.name}` (or use your own files: {IMPORT_HINT})"
        if entry.gated:
            fix += f"; {entry.repo_id} is gated: accept its license on Hugging Face and log in first"
        return ModelRecord(entry.name, "catalog", entry.family, files, fix)  # type: ignore[arg-type]

    def _synthetic_record(self, entry: CatalogEntry, *, build: bool) -> ModelRecord:
        model_dir = self.root / "synthetic" / entry.name
        fix = "it is rebuilt automatically the next time it is used"
        record = synthetic_from_manifest(entry, model_dir, fix)
        intact = record is not None and all(fast_check(f.path, f.size)[0] == "installed" for f in record.files)
        if build and not intact:
            record = self._build_synthetic(entry, model_dir, fix)
        if record is None:
            files = tuple(FileRecord(role, model_dir / f"{role}.gguf", None, None, "") for role in ROLES)
            record = ModelRecord(entry.name, "synthetic", entry.family, files, fix)  # type: ignore[arg-type]
        return record

    def _build_synthetic(self, entry: CatalogEntry, model_dir: Path, fix: str) -> ModelRecord:
        """Build into a scratch directory and swap it in whole, so a crash never leaves half a model."""
        scratch = model_dir.parent / f".{entry.name}.building-{uuid.uuid4().hex[:8]}"
        scratch.mkdir(parents=True)
        try:
            from loupe.models.synthetic import build

            built = build(entry.synthetic, scratch)
            files = {
                role: describe_built(Path(path), scratch)
                for role, path in (("text", built.text_path), ("mmproj", built.mmproj_path))
            }
            write_json_atomic(scratch / "manifest.json", {"version": 1, "builder": entry.synthetic, "files": files})
            if model_dir.exists():
                shutil.rmtree(model_dir)  # generated, deterministic: nothing of the user's is lost
            os.replace(scratch, model_dir)
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"cannot build synthetic model {entry.name!r}: {type(exc).__name__}: {exc}") from exc
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        record = synthetic_from_manifest(entry, model_dir, fix)
        assert record is not None
        return record

    def _registry_path(self) -> Path:
        return self.root / "registry.json"

    def _registry(self) -> dict[str, Any]:
        return dict(read_json(self._registry_path()).get("models", {}))

    # ---- status and verification ---------------------------------------------------------------

    def _status(self, name: str) -> InstalledModel:
        record = self._record(name, build_synthetic=False)
        checks = [fast_check(f.path, f.size) for f in record.files]
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
            license=self.catalog.get(name).license if name in self.catalog else "",
        )

    def _partial_detail(self, name: str) -> str:
        return partial_detail(name, list((self.root / name).glob("*.part")))

    def _verify_file(self, record: ModelRecord, file: FileRecord, progress: ProgressFn | None) -> VerifyReport:
        def report(problem: str, actual: str | None = None) -> VerifyReport:
            ok = not problem
            text = f"{problem}. Fix: {record.fix}" if problem else ""
            return VerifyReport(record.name, file.role, file.path, ok, text, file.sha256, actual)

        state, problem = fast_check(file.path, file.size)
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
