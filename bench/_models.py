"""Model files for the benchmarks: random-weight GGUFs with real dimensions, built by loupe.models.synthetic.

The default file types are the ones the catalog ships for that model (models/catalog.toml), so the benchmark times
what a user runs. K-quants (Q4_K_M, as published for Gemma 3 4B) cannot be written by the gguf package; they are
made from the Q8_0 file by llama.cpp's own quantizer (llama_model_quantize), as a publisher would.
"""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import llama_cpp
from llama_cpp._utils import suppress_stdout_stderr
from loupe.models.synthetic import SPECS, TEXT_TYPES, SyntheticModel, build
from platformdirs import user_cache_dir

# $LOUPE_BENCH_MODELS, else the user cache (the 4B model is ~5 GB: keep it out of the repo)
DEFAULT_DIR = Path(os.environ.get("LOUPE_BENCH_MODELS") or Path(user_cache_dir("loupe")) / "bench-models")
# (text, mmproj) per model, as in models/catalog.toml; tiny models keep the generator's default f32 (their rows are
# too short for some block types)
CATALOG_TYPES = {
    "smolvlm-256m": ("q8_0", "q8_0"),
    "smolvlm-500m": ("q8_0", "q8_0"),
    "gemma3-4b": ("q4_k_m", "f16"),
}
TINY_TYPES = ("f32", "f32")
# text types made by llama.cpp's quantizer from the Q8_0 file (llama_ftype values)
LLAMA_QUANTIZED = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, "q6_k": llama_cpp.LLAMA_FTYPE_MOSTLY_Q6_K}


def default_types(name: str) -> tuple[str, str]:
    """(text, mmproj) file types the benchmark uses for `name` unless told otherwise."""
    return TINY_TYPES if name.startswith("tiny-") else CATALOG_TYPES.get(name, ("q8_0", "q8_0"))


def synthetic(
    name: str, out_dir: Path = DEFAULT_DIR, *, text_type: str | None = None, mmproj_type: str | None = None
) -> SyntheticModel:
    """Build (or reuse, if already complete) the synthetic model `name` under `out_dir`."""
    if name not in SPECS:
        raise SystemExit(f"unknown synthetic model {name!r}; known: {', '.join(sorted(SPECS))}")
    text_default, mmproj_default = default_types(name)
    text_type, mmproj_type = text_type or text_default, mmproj_type or mmproj_default
    if text_type not in LLAMA_QUANTIZED:
        return build(name, out_dir, text_type=text_type, mmproj_type=mmproj_type)
    base = build(name, out_dir, text_type="q8_0", mmproj_type=mmproj_type)
    target = base.text_path.with_name(f"{name}-{text_type}.gguf")
    # the quantized file is current only while the Q8_0 file it was made from is (its generator marker)
    source = base.text_path.with_name(base.text_path.name + ".synthetic.json").read_text()
    made_from = target.with_name(target.name + ".from.json")
    if not target.exists() or not made_from.exists() or made_from.read_text() != source:
        _llama_quantize(base.text_path, target, LLAMA_QUANTIZED[text_type])
        made_from.write_text(source)
    return SyntheticModel(name=base.name, family=base.family, text_path=target, mmproj_path=base.mmproj_path)


def _llama_quantize(src: Path, dst: Path, ftype: int) -> None:
    """Requantize `src` to `ftype` with llama.cpp; written to a .part file and renamed when complete."""
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True  # the source is Q8_0; its values are random anyway
    params.nthread = os.cpu_count() or 1
    part = dst.with_name(dst.name + ".part")
    print(f"quantizing {src.name} -> {dst.name} with llama.cpp (once; minutes for a 4B model)", flush=True)
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs a line per tensor
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(part).encode(), ctypes.byref(params))
    if rc != 0:
        part.unlink(missing_ok=True)
        raise SystemExit(f"llama.cpp could not quantize {src} to {dst.name}")
    os.replace(part, dst)


def text_types() -> list[str]:
    """Text types --text-type accepts."""
    return sorted({*TEXT_TYPES, *LLAMA_QUANTIZED})


def choices() -> list[str]:
    """Names that --model accepts."""
    return sorted(SPECS)
