"""A BF16 copy of the vision projector for CPUs that multiply BF16 natively, made once and kept in the cache.

Image encoding is most of the time of one analysis on a CPU (SigLIP over 1024 patches for one 512 px SmolVLM tile).
llama.cpp multiplies F16 and Q8_0 weights at about the speed of fp32 on an AVX-512 CPU, but BF16 weights with the
AVX512_BF16 dot product (llamafile's tinyBLAS): measured on SmolVLM-256M dimensions, 2 threads, alternating runs,
encode took 1.30 s with BF16 weights against 1.72 s with Q8_0 and 1.70 s with F16. The published projectors are F16
or Q8_0, so on such a CPU the backend converts the matrix weights once and loads the copy instead.

- Only 2-D matrix weights stored as F16 or Q8_0 are converted (the ones the converters chose to shrink); F32 tensors
  (patch embedding, positions, norms, biases) stay as they are. SmolVLM and Gemma 3 were trained in BF16, so an F16
  file converts back without loss for values in BF16's range; Q8_0 gains a rounding of at most 2^-9 of each weight,
  well under its own quantization step.
- The copy costs memory: a Q8_0 projector (99 MiB for SmolVLM) becomes about twice as large (181 MiB).
  `LOUPE_PROJECTOR_CACHE=off` keeps the file as is; a directory moves the copies.
- Copies are keyed by the source file's path, size and modification time, written atomically, and the least
  recently used are removed past a size bound. Any failure (unreadable source, full disk) means: use the original.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path

from loupe.backends.cache_files import cache_root, trim_lru

log = logging.getLogger(__name__)

ENV = "LOUPE_PROJECTOR_CACHE"  # a directory, or 0/off/no to use projector files as they are
DEFAULT_MAX_BYTES = 4 << 30  # a few models' projectors (Gemma 3's is ~0.8 GiB)
VERSION = 1  # of the conversion rule below; part of the key
_SUFFIX = "-bf16.gguf"
# ggml type numbers (ggml.h): F16 1, Q8_0 8 are converted; BF16 30 is the target
_CONVERTED = frozenset({1, 8})


def cpu_has_bf16() -> bool:
    """Whether the CPU backend llama.cpp loaded has the AVX-512 BF16 dot product (llama_print_system_info)."""
    import llama_cpp

    info = llama_cpp.llama_print_system_info().decode("utf-8", "replace")
    return "AVX512_BF16 = 1" in info


class ProjectorCache:
    """BF16 copies `<key>-bf16.gguf` of projector files in one directory."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    @classmethod
    def default(cls) -> ProjectorCache | None:
        """None when the CPU has no BF16 dot product or $LOUPE_PROJECTOR_CACHE says off; else a directory there or
        in the per-user cache."""
        root = cache_root(ENV, "projectors")
        return None if root is None or not cpu_has_bf16() else cls(root)

    def key(self, source: Path) -> str:
        st = source.stat()
        ident = f"{VERSION}\0{source.resolve()}\0{st.st_size}\0{st.st_mtime_ns}"
        return hashlib.sha256(ident.encode()).hexdigest()[:32]

    def path_for(self, source: Path) -> Path:
        """The BF16 copy of `source` (made now if missing), or `source` itself when it has nothing to convert or
        the copy cannot be made."""
        try:
            target = self.root / (self.key(source) + _SUFFIX)
            if target.is_file() and target.stat().st_size > 0:
                with contextlib.suppress(OSError):
                    os.utime(target)
                return target
            if not convertible(source):
                return source
            self.root.mkdir(parents=True, exist_ok=True)
            convert(source, target)
        except (OSError, ValueError, ImportError) as exc:
            log.warning("using the projector %s as is: no BF16 copy (%s)", source, exc)
            return source
        self._trim(keep=target)
        return target

    def discard(self, copy: Path) -> None:
        """Drop a copy llama.cpp refused (the caller falls back to the original)."""
        if copy.parent == self.root:
            copy.unlink(missing_ok=True)

    def _trim(self, keep: Path) -> None:
        trim_lru(self.root, "*" + _SUFFIX, self.max_bytes, keep=keep)


def _converted(tensor_type: int, n_dims: int) -> bool:
    return n_dims == 2 and tensor_type in _CONVERTED


def convertible(source: Path) -> bool:
    """Whether `source` has matrix weights this module would convert."""
    from loupe.backends.gguf_file import tensor_kinds

    return any(_converted(ttype, n_dims) for ttype, n_dims in tensor_kinds(source))


def convert(source: Path, target: Path) -> None:
    """Write `source` to `target` with its F16/Q8_0 matrix weights as BF16 (metadata and other tensors unchanged).
    Streams one tensor at a time; the file appears complete or not at all."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(source)
    arch_field = reader.fields.get(gguf.Keys.General.ARCHITECTURE)
    if arch_field is None:
        raise ValueError(f"{source} has no general.architecture")
    part = target.with_name(f"{target.name}.{os.getpid()}.part")
    writer = gguf.GGUFWriter(part, str(arch_field.contents()), endianess=reader.endianess)
    try:
        for field in reader.fields.values():
            if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                continue
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(field.name, field.contents(), vtype, sub_type=sub)
        bf16 = gguf.GGMLQuantizationType.BF16
        plan = []
        for t in reader.tensors:
            converted = _converted(int(t.tensor_type), len(t.shape))
            if converted:
                rows = tuple(int(n) for n in reversed(t.shape))  # numpy order; BF16 is 2 bytes per value
                writer.add_tensor_info(
                    t.name, (*rows[:-1], rows[-1] * 2), np.dtype(np.uint8), 2 * int(np.prod(rows)), raw_dtype=bf16
                )
            else:
                writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
            plan.append((t, converted))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for t, converted in plan:
            data = gguf.quants.quantize(gguf.quants.dequantize(t.data, t.tensor_type), bf16) if converted else t.data
            writer.write_tensor_data(data, tensor_endianess=reader.endianess)
        writer.close()
        os.replace(part, target)
    except BaseException:
        writer.close()
        part.unlink(missing_ok=True)
        raise
