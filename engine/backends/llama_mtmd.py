"""The llama.cpp backend's projector side (mtmd): its context and image-token cap, images as bitmaps, the chunks
mtmd cuts a prompt into, and how it tiled each picture (a mixin of LlamaCppBackend, which holds the state)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
from llama_cpp._utils import suppress_stdout_stderr
from loupe.backends.base import GenerationRequest
from loupe.backends.reuse import ImageUnit, Unit, image_key
from loupe.core.errors import BackendError, ModelLoadError

# projectors that always make the same number of image tokens: mtmd ignores image_max_tokens for them, so their
# context is never remade for another cap (remaking reloads the projector: ~0.3 s for SmolVLM's, seconds for Gemma's)
FIXED_SIZE_PROJECTORS = frozenset({"gemma3"})


def _route_mtmd_logs() -> None:
    """Send mtmd/clip logs through llama-cpp-python's logger (quiet unless verbose), not raw stderr."""
    from llama_cpp._logger import llama_log_callback

    mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))


class MtmdMixin:
    """The projector context of a LlamaCppBackend and what it does with images."""

    mmproj_path: Path
    mmproj_file: Path  # what llama.cpp loads: mmproj_path, or its BF16 copy (loupe.backends.projector_bf16)
    _projectors: Any  # ProjectorCache | None
    verbose: bool
    _llm: llama_cpp.Llama
    _mtmd: Any
    _mtmd_cap: int | None
    _threads: int

    def _init_mtmd(self, threads: int, image_max_tokens: int | None) -> Any:
        _route_mtmd_logs()
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = threads
        params.warmup = False
        if image_max_tokens:
            params.image_max_tokens = image_max_tokens
        with suppress_stdout_stderr(disable=self.verbose):
            ctx = mtmd.mtmd_init_from_file(str(self.mmproj_file).encode(), self._llm.model, params)
        if ctx is None and self.mmproj_file != self.mmproj_path:  # a bad copy: drop it, load the file itself
            self._projectors.discard(self.mmproj_file)
            self.mmproj_file = self.mmproj_path
            return self._init_mtmd(threads, image_max_tokens)
        if ctx is None:
            self._llm.close()
            raise ModelLoadError(
                f"llama.cpp could not load the mmproj {self.mmproj_path}: it is corrupt, truncated, or not "
                "the projector for this text model (run `loupe models verify`, or pass the matching --mmproj)"
            )
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            self._llm.close()
            raise ModelLoadError(f"{self.mmproj_path} is not a vision projector (no image support)")
        return ctx

    def _use_image_cap(self, cap: int | None) -> None:
        """mtmd fixes the image-token cap when its context is made: remake it when a request asks another."""
        if cap == self._mtmd_cap:
            return
        mtmd.mtmd_free(self._mtmd)
        self._mtmd = None
        self._mtmd = self._init_mtmd(self._threads, cap)
        self._mtmd_cap = cap

    def _describe_tiling(self, request: GenerationRequest, keys: list[str], slices: dict[str, list[int]]) -> dict:
        """Per image id, how mtmd cut the picture: its slices (overview + tiles for idefics3) and their tokens.
        Each slice covers the whole picture or a grid cell of it, so 0-1000 boxes stay relative to the picture."""
        cap = f", cap {self._mtmd_cap} image tokens" if self._mtmd_cap else ""
        out = {}
        for img, key in zip(request.images, keys, strict=True):
            tokens = slices.get(key, [])
            tokens = tokens[: len(tokens) // keys.count(key)]  # the same picture twice: its slices twice
            out[img.id] = (f"llama.cpp mtmd: {len(tokens)} slice(s) of {'+'.join(map(str, tokens))} tokens{cap}",)
        return out

    def _bitmap(self, image: Any, image_id: str, cap: int | None) -> Any:
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        data = rgb.tobytes()
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        bm = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buf)
        if bm is None:
            raise BackendError(f"llama.cpp could not take image {image_id} ({rgb.width}x{rgb.height})")
        # the id names the content: chunks of the same picture at the same cap find their cached embeddings
        mtmd.mtmd_bitmap_set_id(bm, image_key(rgb.width, rgb.height, data, cap).encode())
        return bm

    def _units(self, chunks: Any) -> list[tuple[Any, list[Unit]]]:
        """Each chunk with the units it puts in the KV cache: its text tokens, or one ImageUnit."""
        out: list[tuple[Any, list[Unit]]] = []
        slices: dict[str, int] = {}
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            chunk = mtmd.mtmd_input_chunks_get(chunks, i)
            if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                size = ctypes.c_size_t()
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(size))
                out.append((chunk, [int(ptr[j]) for j in range(size.value)]))
                continue
            key = (mtmd.mtmd_input_chunk_get_id(chunk) or b"").decode()
            slices[key] = slices.get(key, -1) + 1
            out.append((chunk, [ImageUnit(key, slices[key], int(mtmd.mtmd_input_chunk_get_n_pos(chunk)))]))
        return out
