"""ONNX Runtime backend: the onnx-community three-piece VLM layout (vision encoder, token embeddings, decoder
with past KV), run on a chosen execution provider, decoded by the shared constrained loop (backends.decode).

A model directory holds config.json + the processor/tokenizer files, and onnx/ with
vision_encoder{SUFFIX}.onnx, embed_tokens{SUFFIX}.onnx and decoder_model_merged{SUFFIX}.onnx, where SUFFIX
is "" (fp32), "_fp16", "_q4" or "_quantized" (q8), as the published onnx-community exports name them.
"""

from __future__ import annotations

import importlib.util
import os
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import onnxruntime as ort
from loupe.backends import hf_inputs
from loupe.backends.base import GenerationRequest
from loupe.backends.decode import Feed
from loupe.backends.hf_backend import HfBackend
from loupe.core.errors import BackendError, ModelLoadError

# --ep NAME -> ONNX Runtime provider, in the order "best available" tries them
EXECUTION_PROVIDERS: dict[str, str] = {
    "qnn": "QNNExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "dml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
PROVIDER_PACKAGES = {
    "qnn": "onnxruntime-qnn",
    "openvino": "onnxruntime-openvino",
    "dml": "onnxruntime-directml",
    "coreml": "onnxruntime (macOS build)",
    "cpu": "onnxruntime",
}
QUANT_SUFFIX = {"fp32": "", "fp16": "_fp16", "q4": "_q4", "q8": "_quantized"}
PIECES = ("vision_encoder", "embed_tokens", "decoder_model_merged")
_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def pick_provider(ep: str | None, available: list[str] | None = None) -> str:
    """The ONNX Runtime provider for `--ep` (None: the best one this onnxruntime build has)."""
    have = ort.get_available_providers() if available is None else available
    if ep is None:
        return next(p for p in EXECUTION_PROVIDERS.values() if p in have or p == "CPUExecutionProvider")
    if ep not in EXECUTION_PROVIDERS:
        raise BackendError(f"unknown execution provider {ep!r} (known: {', '.join(EXECUTION_PROVIDERS)})")
    provider = EXECUTION_PROVIDERS[ep]
    if provider not in have:
        names = [k for k, v in EXECUTION_PROVIDERS.items() if v in have]
        raise BackendError(
            f"execution provider {ep!r} is not in this onnxruntime build (available: {', '.join(names) or 'none'}); "
            f"install {PROVIDER_PACKAGES[ep]} instead of onnxruntime, or pass --ep cpu"
        )
    return provider


class OnnxBackend(HfBackend):
    """A loaded three-piece ONNX VLM on one execution provider."""

    name: ClassVar[str] = "onnx"

    def __init__(
        self,
        model_dir: str | Path,
        *,
        quant: str = "fp32",
        ep: str | None = None,
        model_id: str | None = None,
        n_ctx: int = 8192,
        n_threads: int | None = None,
    ) -> None:
        t0 = time.perf_counter()
        self.model_dir = Path(model_dir)
        hf_inputs.check_model_dir(self.model_dir)
        if quant not in QUANT_SUFFIX:
            raise BackendError(f"unknown ONNX quantisation {quant!r} (known: {', '.join(QUANT_SUFFIX)})")
        self.model_id = model_id or self.model_dir.name
        self.provider = pick_provider(ep)
        paths = [self.model_dir / "onnx" / f"{p}{QUANT_SUFFIX[quant]}.onnx" for p in PIECES]
        missing = [p.name for p in paths if not p.is_file()]
        if missing:
            raise ModelLoadError(f"{self.model_dir / 'onnx'} lacks {', '.join(missing)} (quantisation {quant!r})")
        options = ort.SessionOptions()
        options.intra_op_num_threads = n_threads or max(1, min(os.cpu_count() or 1, 8))
        options.log_severity_level = 3
        try:
            self._vision, self._embed, self._decoder = (
                ort.InferenceSession(str(p), options, providers=[self.provider]) for p in paths
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise ModelLoadError(
                f"ONNX Runtime cannot load {self.model_dir} ({exc.__class__.__name__}: {exc}); "
                "a file may be truncated or corrupt"
            ) from None
        self._past = [(i.name, i.shape, i.type) for i in self._decoder.get_inputs() if i.name.startswith("past_")]
        self._float = _DTYPES.get(self._decoder.get_inputs()[0].type, np.float32)
        self._decoder_inputs = {i.name for i in self._decoder.get_inputs()}
        self._finish_loading(n_ctx, t0)

    @classmethod
    def is_available(cls) -> bool:
        """Whether onnxruntime (and transformers, for the processor) are installed."""
        return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "transformers"))

    # -- the three pieces -----------------------------------------------------------------------
    def image_features(self, pixel_values: np.ndarray, pixel_mask: np.ndarray | None) -> np.ndarray:
        """Features for every real (non-padding) image tile, flattened to [tokens, hidden]."""
        flat = pixel_values.reshape(-1, *pixel_values.shape[-3:])
        real = ~np.all(flat == 0, axis=(1, 2, 3))
        flat = flat[real].astype(_DTYPES.get(self._vision.get_inputs()[0].type, np.float32))
        mask = (
            np.ones((flat.shape[0], *flat.shape[-2:]), dtype=bool)
            if pixel_mask is None
            else pixel_mask.reshape(-1, *pixel_mask.shape[-2:])[real].astype(bool)
        )
        if len(self._vision.get_inputs()[0].shape) == 5:  # the published exports take [batch, images, ...]
            flat, mask = flat[None], mask[None]
        feeds = {self._vision.get_inputs()[0].name: flat}
        if len(self._vision.get_inputs()) > 1:
            feeds[self._vision.get_inputs()[1].name] = mask
        (features,) = self._vision.run(None, feeds)
        return features.reshape(-1, features.shape[-1])

    def embed(self, ids: np.ndarray) -> np.ndarray:
        (embeds,) = self._embed.run(None, {"input_ids": ids.astype(np.int64)})
        return embeds

    def _empty_past(self) -> dict[str, np.ndarray]:
        past = {}
        for name, shape, dtype in self._past:
            heads, head_dim = (d if isinstance(d, int) else 0 for d in (shape[1], shape[3]))
            past[name] = np.zeros((1, heads, 0, head_dim), dtype=_DTYPES.get(dtype, np.float32))
        return past

    def _run_decoder(self, embeds: np.ndarray, past: dict[str, np.ndarray], n_past: int) -> np.ndarray:
        n = embeds.shape[1]
        feeds = {
            "inputs_embeds": embeds.astype(self._float),
            "attention_mask": np.ones((1, n_past + n), np.int64),
            "position_ids": np.arange(n_past, n_past + n, dtype=np.int64)[None],
            **past,
        }
        outputs = self._decoder.run(None, {k: v for k, v in feeds.items() if k in self._decoder_inputs})
        for (name, _, _), value in zip(self._past, outputs[1:], strict=True):
            past[name] = value
        return outputs[0][0, -1].astype(np.float32)

    def first_logits(
        self, request: GenerationRequest, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, dict[str, np.ndarray], int, int]:
        """Prefill: (logits for the first output token, the KV cache, prompt tokens, image tokens)."""
        timings = {} if timings is None else timings
        inputs = hf_inputs.prepare(self.processor, request, timings)
        t1 = time.perf_counter()
        ids = inputs["input_ids"]
        embeds = self.embed(ids)
        is_image = ids[0] == self._image_token
        if request.images:
            features = self.image_features(inputs["pixel_values"], inputs.get("pixel_attention_mask"))
            timings["encode_ms"] = (time.perf_counter() - t1) * 1000
            if features.shape[0] != int(is_image.sum()):
                raise BackendError(
                    f"the vision encoder gave {features.shape[0]} image tokens for {int(is_image.sum())} placeholders"
                )
            embeds[0, is_image] = features.astype(embeds.dtype)
        if ids.shape[1] >= self.n_ctx:
            raise BackendError(f"prompt needs more than the context of {self.n_ctx} tokens; lower the image detail")
        past = self._empty_past()
        t2 = time.perf_counter()
        logits = self._run_decoder(embeds, past, 0)
        timings["prefill_ms"] = (time.perf_counter() - t2) * 1000
        return logits, past, int(ids.shape[1]), int(is_image.sum())

    # -- one generation (HfBackend.generate) ----------------------------------------------------
    def _feeder(self, past: dict[str, np.ndarray], n_prompt: int) -> Feed:
        n_past = n_prompt

        def feed(tokens: list[int]) -> np.ndarray:
            nonlocal n_past
            logits = self._run_decoder(self.embed(np.array([tokens])), past, n_past)
            n_past += len(tokens)
            return logits

        return feed

    def close(self) -> None:
        """Drop the sessions."""
        self._vision = self._embed = self._decoder = None  # type: ignore[assignment]
