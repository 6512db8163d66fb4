"""The local API through the official `openai` client: constrained JSON from an image, logprobs, errors."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import openai
import pytest
from loupe.cli import SAMPLE
from loupe.serve.server import Running

from tests.serve.conftest import MODEL, data_url

SCHEMA = {
    "type": "object",
    "properties": {
        "count": {"type": "integer", "minimum": 0, "maximum": 20},
        "kind": {"enum": ["scratch", "dent", "none"]},
        "note": {"type": "string", "maxLength": 40},
    },
    "required": ["count", "kind", "note"],
    "additionalProperties": False,
}


def client(server: Running, key: str = "unused") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0, timeout=120)


def image_message(text: str) -> list[dict]:
    return [
        {"role": "system", "content": "You inspect panels."},
        {
            "role": "user",
            "content": [{"type": "text", "text": text}, {"type": "image_url", "image_url": {"url": data_url(SAMPLE)}}],
        },
    ]


def test_chat_with_image_and_json_schema_is_schema_valid_with_logprobs(server: Running) -> None:
    r = client(server).chat.completions.create(
        model=MODEL,
        messages=image_message("Count the scratches."),
        max_tokens=200,
        seed=1,
        temperature=0.0,
        response_format={"type": "json_schema", "json_schema": {"name": "panel", "schema": SCHEMA, "strict": True}},
        logprobs=True,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), SCHEMA)
    tokens = choice.logprobs.content
    assert len(tokens) == r.usage.completion_tokens > 0
    assert b"".join(bytes(t.bytes) for t in tokens).decode() == choice.message.content
    assert all(t.logprob <= 0 for t in tokens) and any(t.logprob < 0 for t in tokens)  # sampled, not all forced
    assert r.usage.prompt_tokens > 0 and r.model == MODEL
    extras = r.model_extra["loupe"]
    assert extras["valid"] is True and set(extras["confidence"]) == {"/count", "/kind", "/note"}


def test_max_tokens_truncates_with_finish_reason_length(server: Running) -> None:
    r = client(server).chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "Describe."}],
        max_tokens=3,
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    )
    assert r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 3 and r.choices[0].logprobs is None
    assert r.model_extra["loupe"]["valid"] is False


def test_without_response_format_is_a_clear_400(server: Running) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(server).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert info.value.code == "response_format_required"
    assert "json_schema" in info.value.message


def test_bad_schema_unknown_model_and_bad_image_are_openai_errors(server: Running) -> None:
    c = client(server)
    bad_schema = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], response_format=bad_schema)
    assert info.value.code == "invalid_schema" and info.value.param == "response_format.json_schema.schema"
    with pytest.raises(openai.NotFoundError) as nf:
        c.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"}
        )
    assert nf.value.code == "model_not_found"
    broken = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]
    with pytest.raises(openai.BadRequestError) as img:
        c.chat.completions.create(model=MODEL, messages=broken, response_format={"type": "json_object"})
    assert img.value.code == "invalid_image" and img.value.param == "messages[0].content[0].image_url.url"
    with pytest.raises(openai.BadRequestError) as url:
        c.chat.completions.create(
            model=MODEL,
            response_format={"type": "json_object"},
            messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}]}
            ],
        )
    assert url.value.code is None and "data URL" in url.value.message  # refused without fetching anything


def test_models_lists_the_loaded_model(server: Running) -> None:
    assert [m.id for m in client(server).models.list().data] == [MODEL]


def test_the_event_loop_answers_while_the_model_works(server: Running) -> None:
    long = {"type": "object", "properties": {"s": {"type": "string", "minLength": 2000}}, "required": ["s"]}
    c = client(server)
    done = threading.Event()
    out: dict = {}

    def slow() -> None:
        out["r"] = c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "write"}],
            max_tokens=150,
            response_format={"type": "json_schema", "json_schema": {"name": "s", "schema": long}},
        )
        done.set()

    worker = threading.Thread(target=slow)
    worker.start()
    try:
        assert [m.id for m in c.models.list().data] == [MODEL]
        assert not done.is_set()  # /v1/models answered while the 150-token generation was still running
    finally:
        worker.join(timeout=120)
    assert out["r"].choices[0].finish_reason == "length"


def test_auth_refuses_a_request_without_the_token(start_server, tmp_path: Path) -> None:
    token = "s3cret-token-for-tests-0123456789"
    with start_server(token=token) as running:
        with pytest.raises(openai.AuthenticationError) as info:
            client(running, key="wrong-token").models.list()
        assert info.value.code == "invalid_api_key" and "wrong-token" not in str(info.value.body)
        with pytest.raises(urllib.error.HTTPError) as raw:  # no Authorization header at all
            urllib.request.urlopen(running.url + "/v1/results", timeout=30)
        assert raw.value.code == 401 and json.load(raw.value)["error"]["type"] == "authentication_error"
        assert [m.id for m in client(running, key=token).models.list().data] == [MODEL]


def test_a_prompt_over_the_context_is_a_400_and_the_server_goes_on(server: Running) -> None:
    c = client(server)
    with pytest.raises(openai.BadRequestError) as info:
        c.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "panel " * 6000}],
            response_format={"type": "json_object"},
            max_tokens=4,
        )
    assert info.value.code == "context_length_exceeded"
    r = c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "ok"}], max_tokens=4, response_format={"type": "json_object"}
    )
    assert r.choices[0].finish_reason in ("stop", "length")
