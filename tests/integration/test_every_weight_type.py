"""Every text-weight type the catalog ships decodes through the real llama.cpp on the CPU running the suite.

Both weight-buffer choices run everywhere: `auto` (what this machine gets: repacked layouts where llama.cpp offers
them, never the AMX buffer) and `off` (what an AMX machine gets). No type is skipped; a file whose tensors were
quietly written as another type fails.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from loupe.api import AnalyzeRequest, Engine
from loupe.backends.gguf_file import tensor_types
from loupe.backends.llama_cpp import LlamaCppBackend
from loupe.backends.llama_cpu import ENV, plan
from loupe.core.tasks import builtin_task
from loupe.core.types import Status

from bench._models import synthetic

# ggml type numbers (ggml.h) the matrix weights of each file type must use
GGML_TYPE = {"f16": 1, "bf16": 30, "q8_0": 8, "q4_0": 2, "q4_k_m": 12}
FAMILIES = ("smolvlm", "gemma3")


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("weight-types")


@pytest.mark.parametrize("repack", ["auto", "off"])
@pytest.mark.parametrize("text_type", sorted(GGML_TYPE))
@pytest.mark.parametrize("family", FAMILIES)
def test_every_catalog_weight_type_decodes(family: str, text_type: str, repack: str, models_dir: Path, images):
    model = synthetic(f"tiny-{family}-k", models_dir, text_type=text_type, mmproj_type="f16")
    assert GGML_TYPE[text_type] in tensor_types(model.text_path), f"{text_type} weights were not written as such"
    cpu = plan({ENV: repack})
    backend = LlamaCppBackend(model.text_path, model.mmproj_path, n_threads=1, cpu=cpu)
    try:
        task = builtin_task("describe")
        result = Engine(backend).analyze(AnalyzeRequest((images["jpeg"],), task))
    finally:
        backend.close()
    assert result.status in (Status.OK, Status.TRUNCATED), result.error
    assert result.tokens.image > 0 and result.tokens.completion > 0
    if result.status is Status.OK:
        jsonschema.Draft202012Validator(task.schema).validate(json.loads(result.raw))
    assert backend.cpu.extra_buffers is (repack == "auto" and "AMX" not in (cpu.buffer_types or ()))
