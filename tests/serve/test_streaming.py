"""Streaming chat completions (SSE) through the official `openai` client, and client disconnects canceling work."""

from __future__ import annotations

import json
import threading

import httpx2
import jsonschema
import openai
import pytest
from loupe.api import Engine
from loupe.backends.base import Generation, GenerationRequest
from loupe.backends.fake import FakeBackend
from loupe.core.errors import BackendError
from loupe.serve.config import ServeConfig
from loupe.serve.server import Running, serve_in_thread
from loupe.serve.worker import Workers

from tests.serve.conftest import LONG, LONG_MAX, MODEL, Canceled
from tests.serve.test_openai_client import SCHEMA, client, image_message


@pytest.fixture(scope="module")
def server(long_server: Running) -> Running:
    """This module's server: one whose context fits a generation long enough to outlast any client."""
    return long_server


def _panel(**extra: object) -> dict:
    return dict(
        model=MODEL,
        messages=image_message("Count the scratches."),
        seed=1,
        temperature=0.0,
        response_format={"type": "json_schema", "json_schema": {"name": "panel", "schema": SCHEMA}},
        **extra,
    )


def long_body(stream: bool) -> dict:
    """A chat request whose answer takes LONG_MAX tokens."""
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": "write"}],
        "max_tokens": LONG_MAX,
        "stream": stream,
        "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": LONG}},
    }


def test_stream_joins_to_the_non_stream_content_with_logprobs_and_usage(server: Running) -> None:
    c = client(server)
    whole = c.chat.completions.create(**_panel(max_tokens=200, logprobs=True))
    chunks = list(
        c.chat.completions.create(
            **_panel(max_tokens=200, logprobs=True), stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].object == "chat.completion.chunk" and chunks[0].choices[0].delta.role == "assistant"
    assert len({ch.id for ch in chunks}) == 1
    *body, usage = chunks
    text = "".join(ch.choices[0].delta.content or "" for ch in body)
    assert text == whole.choices[0].message.content
    jsonschema.validate(json.loads(text), SCHEMA)
    assert [ch.choices[0].finish_reason for ch in body][-1] == "stop"
    assert all(ch.choices[0].finish_reason is None for ch in body[:-1]) and all(ch.usage is None for ch in body)
    assert len(body) > 5  # token by token, not one lump
    tokens = [t for ch in body if ch.choices[0].logprobs for t in ch.choices[0].logprobs.content]
    expected = whole.choices[0].logprobs.content
    assert [t.token for t in tokens] == [t.token for t in expected]
    # the second request reuses the first one's KV prefix, so llama.cpp evaluates the prompt's last position in
    # another batch shape, through another CPU kernel on some CPUs (AVX2: 7e-9 apart): equal to float32 resolution
    assert [t.logprob for t in tokens] == pytest.approx([t.logprob for t in expected], rel=0, abs=1e-6)
    assert usage.choices == [] and usage.usage.completion_tokens == whole.usage.completion_tokens == len(tokens)
    assert usage.usage.prompt_tokens == whole.usage.prompt_tokens
    assert body[-1].model_extra["loupe"]["valid"] is True


def test_stream_truncated_by_max_tokens_ends_with_length(server: Running) -> None:
    chunks = list(client(server).chat.completions.create(**_panel(max_tokens=3), stream=True))
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(ch.usage is None for ch in chunks) and chunks[-1].model_extra["loupe"]["valid"] is False


def test_stream_errors_before_the_first_byte_are_json_errors(server: Running) -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "strin"}}}
    with pytest.raises(openai.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], response_format=bad, stream=True
        )
    assert info.value.code == "invalid_schema"


def test_a_stream_closed_after_its_first_chunk_cancels_the_generation(server: Running, canceled: Canceled) -> None:
    with (
        httpx2.Client(timeout=60) as http,
        http.stream("POST", server.url + "/v1/chat/completions", json=long_body(stream=True)) as r,
    ):
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        first = next(line for line in r.iter_lines() if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
    # leaving the `with` closed the connection mid-stream
    [record] = canceled.wait()
    assert record.stop == "cancelled" and record.completion_tokens < LONG_MAX  # type: ignore[attr-defined]
    r2 = client(server).chat.completions.create(**_panel(max_tokens=200))
    assert r2.choices[0].finish_reason == "stop"  # the server goes on normally


def test_a_non_stream_client_that_times_out_cancels_the_generation(server: Running, canceled: Canceled) -> None:
    with httpx2.Client(timeout=httpx2.Timeout(60, read=0.25)) as http, pytest.raises(httpx2.ReadTimeout):
        http.post(server.url + "/v1/chat/completions", json=long_body(stream=False))
    [record] = canceled.wait()
    assert record.stop == "cancelled" and record.completion_tokens < LONG_MAX  # type: ignore[attr-defined]
    r2 = client(server).chat.completions.create(**_panel(max_tokens=200))
    assert r2.choices[0].finish_reason == "stop"


def test_a_request_whose_client_left_while_it_waited_never_reaches_the_model(
    server: Running, canceled: Canceled
) -> None:
    url = server.url + "/v1/chat/completions"
    with httpx2.Client(timeout=60) as http, http.stream("POST", url, json=long_body(stream=True)) as busy:
        lines = busy.iter_lines()  # kept: dropping a half-read iterator closes the connection
        next(line for line in lines if line.startswith("data: "))  # the model is now busy with this stream
        with httpx2.Client(timeout=httpx2.Timeout(60, read=0.25)) as impatient, pytest.raises(httpx2.ReadTimeout):
            impatient.post(url, json=long_body(stream=False))  # queued behind the stream, then given up on
    first, queued = canceled.wait(2)  # the stream is canceled when closed; then the queued one is skipped
    assert first.completion_tokens > 0 and queued.completion_tokens == 0  # type: ignore[attr-defined]
    assert queued.stop == "cancelled"  # type: ignore[attr-defined]


class FailsOnCue(FakeBackend):
    """The project's scripted backend, failing before any token on request 1 and after all of them on request 2
    (a real decode cannot be made to fail on cue)."""

    def generate(self, request: GenerationRequest, *, cancel: threading.Event | None = None) -> Generation:
        if not self.requests:
            self.requests.append(request)
            raise BackendError("the model would not start")
        gen = super().generate(request, cancel=cancel)
        if len(self.requests) == 2:
            raise BackendError("the model stopped answering")
        return gen


def test_errors_before_the_first_token_are_json_and_after_it_an_sse_error_event(tmp_path) -> None:
    backend = FailsOnCue(['{"count": 1}'], model_id="fake")
    with serve_in_thread(Workers(Engine(backend, model="fake"), tmp_path / "loupe.db"), ServeConfig(port=0)) as srv:
        c = client(srv)
        body = dict(model="fake", messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"})
        with pytest.raises(openai.InternalServerError) as before:
            c.chat.completions.create(**body, stream=True)
        assert before.value.code == "model_error" and "would not start" in before.value.message
        got: list[str] = []
        with pytest.raises(openai.APIError) as after:
            for chunk in c.chat.completions.create(**body, stream=True):
                got.append(chunk.choices[0].delta.content or "")
        assert "".join(got) == '{"count": 1}'  # the tokens streamed before the failure arrived
        assert after.value.body["code"] == "model_error" and "stopped answering" in after.value.message
        again = list(c.chat.completions.create(**body, stream=True))
        assert again[-1].choices[0].finish_reason == "stop"
