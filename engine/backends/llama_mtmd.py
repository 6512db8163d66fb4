"""The llama.cpp backend's image side (mtmd) as one object, so the projector context and its cap have one owner."""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import llama_cpp
import llama_cpp.mtmd_cpp as mtmd
import numpy as np
from llama_cpp._utils import suppress_stdout_stderr
from loupe.backends.base import GenerationRequest
from loupe.backends.gguf_file import projector_type
from loupe.backends.llama_model import ABORTED, LlamaModel, PrefillCancelled
from loupe.backends.projector_bf16 import ProjectorCache
from loupe.backends.reuse import ImageUnit, Unit, image_key
from loupe.core.errors import BackendError, ModelLoadError

# projectors that always make the same number of image tokens: mtmd ignores image_max_tokens for them, so their
# context is never remade for another cap (remaking reloads the projector: ~0.3 s for SmolVLM's, seconds for Gemma's)
FIXED_SIZE_PROJECTORS = frozenset({"gemma3"})
_NO_CALLBACK = mtmd.mtmd_helper_post_decode_callback()  # a NULL function pointer

Chunk = Any  # an mtmd_input_chunk pointer
Planned = list[tuple[Chunk, list[Unit]]]  # each chunk with the units it puts in the KV cache


def _route_mtmd_logs() -> None:
    """Send mtmd/clip logs through llama-cpp-python's logger (quiet unless verbose), not raw stderr."""
    from llama_cpp._logger import llama_log_callback

    mtmd.mtmd_log_set(llama_log_callback, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(llama_log_callback, ctypes.c_void_p(0))


class MtmdEncoder:
    """The projector context made for a text model: images as bitmaps, the chunks mtmd cuts a prompt into, image
    chunks encoded and decoded into the model's context, and how it tiled each picture.

    mtmd fixes the image-token cap when its context is made, so the context is remade when a request asks another
    (`use_cap`). A ModelLoadError from making it leaves the text model to its owner to close."""

    def __init__(
        self,
        mmproj_path: Path,
        model: LlamaModel,
        *,
        threads: int,
        image_max_tokens: int | None,
        projectors: ProjectorCache | None,
        verbose: bool,
    ) -> None:
        """`projectors`: where a BF16 copy of the projector is made and kept (None: the file is loaded as it is)."""
        self.mmproj_path = mmproj_path
        self.projector = projector_type(mmproj_path)
        if self.projector in FIXED_SIZE_PROJECTORS:
            image_max_tokens = None
        self.cap: int | None = image_max_tokens
        self._projectors = projectors
        # what llama.cpp loads: mmproj_path, or its BF16 copy (loupe.backends.projector_bf16)
        self.file: Path = projectors.path_for(mmproj_path) if projectors is not None else mmproj_path
        self._model = model
        self._threads = threads
        self.verbose = verbose
        self.ctx: Any = None
        self.ctx = self._init(image_max_tokens)

    def _init(self, image_max_tokens: int | None) -> Any:
        _route_mtmd_logs()
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = False
        params.print_timings = False
        params.n_threads = self._threads
        params.warmup = False
        if image_max_tokens:
            params.image_max_tokens = image_max_tokens
        with suppress_stdout_stderr(disable=self.verbose):
            ctx = mtmd.mtmd_init_from_file(str(self.file).encode(), self._model.live().model, params)
        if ctx is None and self.file != self.mmproj_path:  # a bad copy: drop it, load the file itself
            assert self._projectors is not None
            self._projectors.discard(self.file)
            self.file = self.mmproj_path
            return self._init(image_max_tokens)
        if ctx is None:
            raise ModelLoadError(
                f"llama.cpp could not load the mmproj {self.mmproj_path}: it is corrupt, truncated, or not "
                "the projector for this text model (run `loupe models verify`, or pass the matching --mmproj)"
            )
        if not mtmd.mtmd_support_vision(ctx):
            mtmd.mtmd_free(ctx)
            raise ModelLoadError(f"{self.mmproj_path} is not a vision projector (no image support)")
        return ctx

    @staticmethod
    def marker() -> str:
        """The text that stands for an image in a prompt."""
        return mtmd.mtmd_default_marker().decode()

    def request_cap(self, wanted: int | None) -> int | None:
        """The image-token cap a request gets: none for a fixed-size projector."""
        return None if self.projector in FIXED_SIZE_PROJECTORS else wanted

    def use_cap(self, cap: int | None) -> None:
        """Remake the context when a request asks another image-token cap than it was made with."""
        if cap == self.cap:
            return
        mtmd.mtmd_free(self.ctx)
        self.ctx = None
        self.ctx = self._init(cap)
        self.cap = cap

    # -- images and prompts ---------------------------------------------------------------------
    def bitmap(self, image: Any, image_id: str, cap: int | None) -> Any:
        """A PIL image as an mtmd bitmap whose id names its content (free it with `free`)."""
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        data = rgb.tobytes()
        buf = (ctypes.c_ubyte * len(data)).from_buffer_copy(data)
        bm = mtmd.mtmd_bitmap_init(rgb.width, rgb.height, buf)
        if bm is None:
            raise BackendError(f"llama.cpp could not take image {image_id} ({rgb.width}x{rgb.height})")
        # the id names the content: chunks of the same picture at the same cap find their cached embeddings
        mtmd.mtmd_bitmap_set_id(bm, image_key(rgb.width, rgb.height, data, cap).encode())
        return bm

    @staticmethod
    def bitmap_key(bitmap: Any) -> str:
        """The content key a bitmap was given."""
        return mtmd.mtmd_bitmap_get_id(bitmap).decode()

    @staticmethod
    def free(bitmaps: list[Any]) -> None:
        """Free bitmaps made by `bitmap`."""
        for bm in bitmaps:
            mtmd.mtmd_bitmap_free(bm)

    @contextlib.contextmanager
    def tokenize(self, prompt: str, bitmaps: list[Any]) -> Iterator[Planned]:
        """Within: the prompt (with its image markers) as mtmd's chunks, each with its units."""
        chunks = mtmd.mtmd_input_chunks_init()
        text = mtmd.mtmd_input_text()
        raw = prompt.encode()
        text.text, text.text_len, text.add_special, text.parse_special = raw, len(raw), True, True
        arr = (mtmd.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
        try:
            rc = mtmd.mtmd_tokenize(self.ctx, chunks, ctypes.byref(text), arr, len(bitmaps))
            if rc != 0:
                raise BackendError(f"llama.cpp could not tokenize the prompt with {len(bitmaps)} image(s) (code {rc})")
            yield self._units(chunks)
        finally:
            mtmd.mtmd_input_chunks_free(chunks)

    def _units(self, chunks: Any) -> Planned:
        """Each chunk with the units it puts in the KV cache: its text tokens, or one ImageUnit."""
        out: Planned = []
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

    @staticmethod
    def n_tokens(chunk: Chunk) -> int:
        """The tokens an image chunk adds to the context."""
        return int(mtmd.mtmd_input_chunk_get_n_tokens(chunk))

    def largest_whole(self, planned: Planned) -> int:
        """The most tokens an image chunk needs decoded in one micro-batch (it attends both ways), or 0."""
        return max(
            (
                self.n_tokens(c)
                for c, units in planned
                if isinstance(units[0], ImageUnit) and mtmd.mtmd_decode_use_non_causal(self.ctx, c)
            ),
            default=0,
        )

    # -- image chunks into the model ------------------------------------------------------------
    def encode(self, chunk: Chunk) -> np.ndarray:
        """Run the projector on an image chunk: its embeddings, a view on mtmd's buffer (valid until the next)."""
        if mtmd.mtmd_encode_chunk(self.ctx, chunk) != 0:
            raise BackendError("llama.cpp failed to encode an image")
        out = mtmd.mtmd_get_output_embd(self.ctx)
        return np.ctypeslib.as_array(out, shape=(self.n_tokens(chunk) * self._model.n_embd,))

    def decode(self, chunk: Chunk, embd: np.ndarray, n_past: int) -> int:
        """Evaluate an image chunk's embeddings in the text model's context from `n_past`; the position after."""
        new_past = llama_cpp.llama_pos(0)
        ptr = embd.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        rc = mtmd.mtmd_helper_decode_image_chunk(
            self.ctx,
            self._model.ctx,
            chunk,
            ptr,
            n_past,
            0,
            max(self._model.n_batch, self.n_tokens(chunk)),
            ctypes.byref(new_past),
            _NO_CALLBACK,
            None,
        )
        if rc == ABORTED:
            raise PrefillCancelled
        if rc != 0:
            raise BackendError(f"llama.cpp failed to decode image embeddings (code {rc})")
        return int(new_past.value)

    def describe_tiling(
        self, request: GenerationRequest, keys: list[str], slices: dict[str, list[int]]
    ) -> dict[str, tuple[str, ...]]:
        """Per image id, how mtmd cut the picture: its slices (overview + tiles for idefics3) and their tokens.
        Each slice covers the whole picture or a grid cell of it, so 0-1000 boxes stay relative to the picture."""
        cap = f", cap {self.cap} image tokens" if self.cap else ""
        out = {}
        for img, key in zip(request.images, keys, strict=True):
            tokens = slices.get(key, [])
            tokens = tokens[: len(tokens) // keys.count(key)]  # the same picture twice: its slices twice
            out[img.id] = (f"llama.cpp mtmd: {len(tokens)} slice(s) of {'+'.join(map(str, tokens))} tokens{cap}",)
        return out

    def close(self) -> None:
        """Free the projector context (again: nothing)."""
        if self.ctx is not None:
            mtmd.mtmd_free(self.ctx)
            self.ctx = None
