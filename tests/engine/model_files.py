"""Tiny but valid GGUF files and one-model catalogs for the model store tests, built in tmp dirs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import gguf
import numpy as np


def write_gguf(path: Path, arch: str, *, projector: str | None = None, floats: int = 1024, seed: int = 0) -> Path:
    """A small but valid GGUF: `general.architecture = arch`, one f32 tensor of random values."""
    writer = gguf.GGUFWriter(path, arch)
    if projector is not None:
        writer.add_string("clip.projector_type", projector)
        writer.add_bool("clip.has_vision_encoder", True)
    writer.add_tensor("weight", np.random.default_rng(seed).random(floats, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def sha256(data: bytes) -> str:
    """The hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def flip_last_byte(path: Path) -> None:
    """Damage a file without changing its size or magic: only a full hash can tell."""
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def catalog_toml(repo: str, text: str, mmproj: str, text_sha256: str = "", **change: str) -> str:
    """A one-model catalog ("tiny", the default) in TOML; `change` overrides or adds keys."""
    keys = {
        "display_name": "Tiny",
        "family": "smolvlm",
        "source": "huggingface",
        "repo_id": repo,
        "text_file": text,
        "mmproj_file": mmproj,
        "text_sha256": text_sha256,
        "mmproj_sha256": "",
        "license": "Apache-2.0",
        **change,
    }
    return 'default = "tiny"\n[models.tiny]\n' + "".join(f'{k} = "{v}"\n' for k, v in keys.items())
