"""Model files for the benchmarks: random-weight GGUFs with real dimensions, built by models.synthetic."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

from models.synthetic import SPECS, SyntheticModel, build

# $LOUPE_BENCH_MODELS, else the user cache (the 4B model is ~5 GB: keep it out of the repo)
DEFAULT_DIR = Path(os.environ.get("LOUPE_BENCH_MODELS") or Path(user_cache_dir("loupe")) / "bench-models")
# tiny models keep the generator's default f32 (their rows are too short for some block types)
DEFAULT_TYPES = {"tiny": ("f32", "f32"), "real": ("q8_0", "f16")}


def synthetic(
    name: str, out_dir: Path = DEFAULT_DIR, *, text_type: str | None = None, mmproj_type: str | None = None
) -> SyntheticModel:
    """Build (or reuse, if already complete) the synthetic model `name` under `out_dir`."""
    if name not in SPECS:
        raise SystemExit(f"unknown synthetic model {name!r}; known: {', '.join(sorted(SPECS))}")
    text_default, mmproj_default = DEFAULT_TYPES["tiny" if name.startswith("tiny-") else "real"]
    return build(name, out_dir, text_type=text_type or text_default, mmproj_type=mmproj_type or mmproj_default)


def choices() -> list[str]:
    """Names that --model accepts."""
    return sorted(SPECS)
