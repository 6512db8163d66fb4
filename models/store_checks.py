"""Checks on GGUF files for the model store: the fast check without hashing, and what kind of GGUF a file is."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from loupe.models.catalog import FAMILIES
from loupe.models.store_records import ModelImportError, Role, State

GGUF_MAGIC = b"GGUF"
MMPROJ_ARCHITECTURE = "clip"
PROJECTOR_FAMILY = {"idefics3": "smolvlm", "gemma3": "gemma3"}  # clip.projector_type -> family
ARCHITECTURE_FAMILY = {"llama": "smolvlm", "gemma3": "gemma3"}  # text general.architecture -> family


@dataclass(frozen=True)
class GGUFInfo:
    """The few GGUF metadata values that tell a text model from a vision projector."""

    architecture: str
    projector_type: str
    has_vision_encoder: bool


def fast_check(path: Path, size: int | None) -> tuple[State, str]:
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


def inspect_gguf(path: Path) -> GGUFInfo:
    """Read the few metadata keys that tell a text model from a vision projector."""
    from gguf import GGUFReader

    try:
        reader = GGUFReader(path)
        values = {key: field.contents() for key, field in reader.fields.items() if not key.startswith("tokenizer.")}
    except Exception as exc:
        raise ModelImportError(f"{path} cannot be read as GGUF ({type(exc).__name__}: {exc})") from exc
    del reader  # release the memory map before the caller renames the file (Windows)
    return GGUFInfo(
        architecture=str(values.get("general.architecture", "")),
        projector_type=str(values.get("clip.projector_type", "")),
        has_vision_encoder=bool(values.get("clip.has_vision_encoder", True)),
    )


def inspect_pair(text: Path, mmproj: Path) -> tuple[GGUFInfo, GGUFInfo]:
    """Check that `text` is a text model and `mmproj` a vision projector; their metadata, or ModelImportError."""
    for role, path in (("text", text), ("mmproj", mmproj)):
        state, problem = fast_check(path, None)
        if state != "installed":
            raise ModelImportError(f"{role} file {path} {problem}")
    text_info, mmproj_info = inspect_gguf(text), inspect_gguf(mmproj)
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


def infer_family(text_info: GGUFInfo, mmproj_info: GGUFInfo) -> str:
    """The model family both files agree on, or ModelImportError saying why none can be told."""
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


def role_problem(path: Path, role: Role) -> str:
    """Why a downloaded file is not what its catalog role says, or ''."""
    try:
        info = inspect_gguf(path)
    except ModelImportError as exc:
        return str(exc)
    is_proj = info.architecture == MMPROJ_ARCHITECTURE
    if role == "text" and is_proj:
        return "expected a text model but got a vision projector (catalog error)"
    if role == "mmproj" and not is_proj:
        kind = info.architecture or "non-projector"
        return f"expected a vision projector but got a {kind} model (catalog error)"
    return ""
