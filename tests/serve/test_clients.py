"""The local API driven by the libraries people use (openai tools, instructor, LangChain) on the tiny model: each
gets parsed Pydantic objects; replies and stream chunks match OpenAI's published response schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import instructor
import jsonschema
import openai
import pytest
from langchain_openai import ChatOpenAI
from loupe.serve.server import Running
from pydantic import BaseModel, Field

from tests.serve.conftest import MODEL
from tests.serve.test_openai_client import client, image_message


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true`, which parts of OpenAI's 3.1 spec still write, as JSON Schema: or null."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _nullable(v) for k, v in node.items() if k != "nullable"}
    return {"anyOf": [out, {"type": "null"}]} if node.get("nullable") is True else out


SPEC = _nullable(json.loads(Path(__file__).with_name("openai_schemas.json").read_text()))


def openai_valid(body: dict[str, Any], name: str) -> None:
    """`body` matches OpenAI's published component schema `name` (refs resolved inside the committed file)."""
    jsonschema.Draft202012Validator({"$defs": SPEC["$defs"], "$ref": f"#/$defs/{name}"}).validate(body)


class Panel(BaseModel):
    """A default Pydantic model: no `extra="forbid"`, so its schema is open."""

    kind: Literal["scratch", "dent", "none"]
    count: int = Field(ge=0, le=20)


def panel_tool(strict: bool | None = None, name: str = "report_panel") -> dict[str, Any]:
    function: dict[str, Any] = {
        "name": name,
        "description": "Report the panel.",
        "parameters": Panel.model_json_schema(),
    }
    if strict is not None:
        function["strict"] = strict
    return {"type": "function", "function": function}


def test_a_forced_tool_call_is_answered_as_tool_calls_under_the_parameters(server: Running) -> None:
    r = client(server).chat.completions.create(
        model=MODEL,
        messages=image_message("Report the panel."),
        tools=[panel_tool(strict=True), panel_tool(name="other")],
        tool_choice={"type": "function", "function": {"name": "report_panel"}},
        max_tokens=60,
    )
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.function.name == "report_panel" and call.id.startswith("call_")
    Panel.model_validate_json(call.function.arguments)
    assert isinstance(r.system_fingerprint, str)
    notes = r.model_extra["loupe"]["notes"]
    assert any("strict" in n and "additionalProperties: false" in n for n in notes)
    openai_valid(r.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse")


def test_auto_and_required_choose_among_several_tools(server: Running) -> None:
    c = client(server)
    tools = [panel_tool(strict=True), panel_tool(strict=True, name="other")]
    for choice in ("auto", "required"):
        r = c.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "x"}], tools=tools, tool_choice=choice, max_tokens=80
        )
        assert r.choices[0].finish_reason == "tool_calls"
        [call] = r.choices[0].message.tool_calls
        assert call.function.name in ("report_panel", "other")
        Panel.model_validate_json(call.function.arguments)


def test_a_streamed_tool_call_joins_to_the_unstreamed_one_and_every_chunk_matches_openais_schema(
    server: Running,
) -> None:
    c = client(server)
    body = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        tools=[panel_tool(strict=True)],
        tool_choice="required",
        max_tokens=60,
    )
    whole = c.chat.completions.create(**body)
    openai_valid(whole.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse")
    chunks = list(c.chat.completions.create(**body, stream=True, stream_options={"include_usage": True}))
    for ch in chunks:
        openai_valid(ch.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionStreamResponse")
    first = chunks[0].choices[0].delta.tool_calls[0]
    assert first.id.startswith("call_") and first.type == "function"
    assert first.function.name == "report_panel"
    args = "".join(
        tc.function.arguments or "" for ch in chunks if ch.choices for tc in ch.choices[0].delta.tool_calls or []
    )
    assert args == whole.choices[0].message.tool_calls[0].function.arguments
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "tool_calls"
    assert len([ch for ch in chunks if ch.choices]) > 5  # token by token


def test_content_replies_and_chunks_match_openais_schemas(server: Running) -> None:
    c = client(server)
    fmt = {"type": "json_schema", "json_schema": {"name": "panel", "schema": Panel.model_json_schema(), "strict": True}}
    r = c.chat.completions.create(
        model=MODEL, messages=image_message("x"), response_format=fmt, max_tokens=60, logprobs=True
    )
    openai_valid(r.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionResponse")
    Panel.model_validate_json(r.choices[0].message.content)
    chunks = list(
        c.chat.completions.create(
            model=MODEL,
            messages=image_message("x"),
            response_format=fmt,
            max_tokens=60,
            logprobs=True,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    for ch in chunks:
        openai_valid(ch.model_dump(mode="json", exclude_unset=True), "CreateChatCompletionStreamResponse")


@pytest.mark.parametrize("mode", [instructor.Mode.TOOLS, instructor.Mode.JSON_SCHEMA, instructor.Mode.MD_JSON])
def test_instructor_gets_a_pydantic_object(server: Running, mode: instructor.Mode) -> None:
    ins = instructor.from_openai(client(server), mode=mode)
    panel = ins.chat.completions.create(
        model=MODEL,
        response_model=Panel,
        messages=image_message("Report the panel."),
        max_tokens=80,
        max_retries=0,  # the first answer must already validate
    )
    assert isinstance(panel, Panel)


@pytest.mark.parametrize("method", ["function_calling", "json_schema"])
def test_langchain_structured_output_gets_a_pydantic_object(server: Running, method: str) -> None:
    llm = ChatOpenAI(model=MODEL, base_url=server.url + "/v1", api_key="unused", max_retries=0, timeout=120)
    panel = llm.with_structured_output(Panel, method=method).invoke("Report the panel.", max_tokens=80)
    assert isinstance(panel, Panel)
