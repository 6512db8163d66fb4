"""The model catalog: which models Loupe can fetch or build, read from catalog.toml into frozen values."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

Family = Literal["smolvlm", "gemma3"]
Source = Literal["huggingface", "synthetic"]
Format = Literal["gguf", "mlx", "onnx"]  # gguf: llama.cpp; mlx: mlx-vlm; onnx: ONNX Runtime (three-piece layout)

FAMILIES: tuple[str, ...] = get_args(Family)
SOURCES: tuple[str, ...] = get_args(Source)
FORMATS: tuple[str, ...] = get_args(Format)
ONNX_QUANTS = ("fp32", "fp16", "q4", "q8")  # loupe.backends.onnx QUANT_SUFFIX keys
RESERVED_NAMES = frozenset({"imported", "synthetic"})  # directory names the store uses for itself
DEFAULT_CATALOG_PATH = Path(__file__).with_name("catalog.toml")

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class ModelError(Exception):
    """Base of every model catalog/store error; `str(err)` is a one-line message that names the fix."""


class CatalogError(ModelError):
    """The catalog file itself is malformed (a packaging bug, not a user error)."""


class UnknownModelError(ModelError, LookupError):
    """A model name that is neither in the catalog nor imported."""

    def __init__(self, name: str, known: list[str]) -> None:
        super().__init__(f"unknown model {name!r}; known models: {', '.join(known) or '(none)'}")
        self.name = name
        self.known = known


@dataclass(frozen=True)
class CatalogEntry:
    """One catalog model: a text GGUF plus an mmproj GGUF on the Hub, or a synthetic builder name."""

    name: str
    display_name: str
    family: Family
    source: Source
    repo_id: str = ""
    revision: str = "main"
    text_file: str = ""
    mmproj_file: str = ""
    quantization: str = ""
    text_size: int = 0  # approximate, for display only
    mmproj_size: int = 0  # approximate, for display only
    text_sha256: str = ""  # empty: trust on first use (see catalog.toml)
    mmproj_sha256: str = ""
    license: str = ""
    license_url: str = ""
    gated: bool = False
    synthetic: str = ""  # builder name for loupe.models.synthetic.build(), when source == "synthetic"
    note: str = ""
    format: Format = "gguf"
    files: tuple[str, ...] = ()  # mlx/onnx: the repo files to fetch (glob patterns), a model directory

    @property
    def is_synthetic(self) -> bool:
        return self.source == "synthetic"

    @property
    def approx_size(self) -> int:
        return self.text_size + self.mmproj_size


@dataclass(frozen=True)
class Catalog:
    """All catalog entries by name, plus the name of the default model.

    `entries` holds the GGUF models (llama.cpp, the model store's pairs); `other_formats` the MLX and ONNX model
    directories (loupe.models.store_dirs lists, pulls and verifies them; loupe.cli.backends opens them).
    """

    entries: Mapping[str, CatalogEntry]
    default: str
    path: Path
    other_formats: Mapping[str, CatalogEntry] = field(default_factory=lambda: MappingProxyType({}))

    def get_any(self, name: str) -> CatalogEntry:
        """An entry of any format."""
        if name in self.other_formats:
            return self.other_formats[name]
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownModelError(name, self.names() + list(self.other_formats)) from None

    def get(self, name: str) -> CatalogEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise UnknownModelError(name, self.names()) from None

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[CatalogEntry]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def load_catalog(path: Path | None = None) -> Catalog:
    """Read and validate a catalog TOML file (the packaged catalog.toml when `path` is None)."""
    path = path or DEFAULT_CATALOG_PATH
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogError(f"cannot read model catalog {path}: {exc}") from exc
    raw_models = data.get("models")
    if not isinstance(raw_models, dict) or not raw_models:
        raise CatalogError(f"{path}: no [models.NAME] tables")
    parsed = {name: _parse_entry(path, name, table) for name, table in raw_models.items()}
    entries = {name: e for name, e in parsed.items() if e.format == "gguf"}
    others = {name: e for name, e in parsed.items() if e.format != "gguf"}
    default = data.get("default", "")
    if default not in entries:
        raise CatalogError(f"{path}: default = {default!r} is not one of {', '.join(entries)}")
    return Catalog(
        entries=MappingProxyType(entries), default=default, path=path, other_formats=MappingProxyType(others)
    )


def _parse_entry(path: Path, name: str, table: Any) -> CatalogEntry:
    where = f"{path}: [models.{name!r}]"
    if not isinstance(table, dict):
        raise CatalogError(f"{where} must be a table")
    if not _NAME_RE.fullmatch(name) or name in RESERVED_NAMES:
        raise CatalogError(f"{where}: invalid model name")
    known = {f.name for f in fields(CatalogEntry)} - {"name"}
    unknown = sorted(set(table) - known)
    if unknown:
        raise CatalogError(f"{where}: unknown keys {', '.join(unknown)}")
    if isinstance(table.get("files"), list):
        table = {**table, "files": tuple(table["files"])}
    try:
        entry = CatalogEntry(name=name, **table)
    except TypeError as exc:
        raise CatalogError(f"{where}: {exc}") from exc
    _check_entry(where, entry)
    return entry


def _check_entry(where: str, entry: CatalogEntry) -> None:
    if entry.family not in FAMILIES:
        raise CatalogError(f"{where}: family {entry.family!r} is not one of {', '.join(FAMILIES)}")
    if entry.source not in SOURCES:
        raise CatalogError(f"{where}: source {entry.source!r} is not one of {', '.join(SOURCES)}")
    if entry.format not in FORMATS:
        raise CatalogError(f"{where}: format {entry.format!r} is not one of {', '.join(FORMATS)}")
    if entry.is_synthetic:
        if not entry.synthetic:
            raise CatalogError(f'{where}: a synthetic entry needs `synthetic = "builder-name"`')
        return
    if entry.format != "gguf":
        _check_directory_entry(where, entry)
        return
    for key in ("repo_id", "revision", "text_file", "mmproj_file"):
        if not getattr(entry, key):
            raise CatalogError(f"{where}: missing {key}")
    for key in ("text_sha256", "mmproj_sha256"):
        value = getattr(entry, key)
        if value and not _SHA256_RE.fullmatch(value):
            raise CatalogError(f"{where}: {key} must be 64 lowercase hex digits or empty")
    for key in ("text_size", "mmproj_size"):
        if not isinstance(getattr(entry, key), int) or getattr(entry, key) < 0:
            raise CatalogError(f"{where}: {key} must be a non-negative integer")


def _check_directory_entry(where: str, entry: CatalogEntry) -> None:
    """An MLX / ONNX entry: a Hub repo and the files of its model directory, no GGUF pair."""
    for key in ("repo_id", "revision"):
        if not getattr(entry, key):
            raise CatalogError(f"{where}: missing {key}")
    if not entry.files or not all(isinstance(f, str) and f for f in entry.files):
        raise CatalogError(f"{where}: a {entry.format} entry needs `files = [...]` (the repo files to fetch)")
    if entry.text_file or entry.mmproj_file:
        raise CatalogError(f"{where}: text_file/mmproj_file are for gguf entries; list a {entry.format} model in files")
    if entry.format == "onnx" and entry.quantization not in ONNX_QUANTS:
        raise CatalogError(f"{where}: quantization must be one of {', '.join(ONNX_QUANTS)} for an onnx entry")
