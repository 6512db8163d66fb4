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


@pytest.mark.parametrize(
    "mode", [instructor.Mode.TOOLS, instructor.Mode.TOOLS_STRICT, instructor.Mode.JSON_SCHEMA, instructor.Mode.MD_JSON]
)
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


def test_stop_ends_the_answer_before_the_stop_sequence_streamed_or_not(server: Running) -> None:
    c = client(server)
    fmt = {"type": "json_schema", "json_schema": {"name": "panel", "schema": Panel.model_json_schema()}}
    body = dict(model=MODEL, messages=[{"role": "user", "content": "x"}], response_format=fmt, max_tokens=60)
    full = c.chat.completions.create(**body).choices[0].message.content
    assert '"count"' in full
    r = c.chat.completions.create(**body, stop=["count", "never"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].message.content == full[: full.index("count")]
    assert r.usage.completion_tokens < len(full)  # the model stopped there, not after the whole answer
    assert r.model_extra["loupe"]["valid"] is False
    chunks = list(c.chat.completions.create(**body, stop="count", stream=True))
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks) == full[: full.index("count")]
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"frequency_penalty": -1}, "frequency_penalty"),
        ({"logit_bias": {"42": 5}}, "logit_bias"),
        ({"top_p": 0.5, "temperature": 0.7}, "top_p"),
        ({"top_logprobs": 3, "logprobs": True}, "top_logprobs"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"functions": [{"name": "f"}]}, "functions"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_a_parameter_loupe_cannot_honour_is_a_400_naming_it(server: Running, extra: dict, param: str) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client(server).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "x"}],
            response_format={"type": "json_object"},
            max_tokens=4,
            extra_body=extra,
        )
    assert info.value.param == param and param in info.value.message and "\n" not in info.value.message


def test_parameters_that_do_not_change_a_greedy_answer_are_honoured(server: Running) -> None:
    c = client(server)
    body = dict(model=MODEL, messages=[{"role": "user", "content": "x"}], response_format={"type": "json_object"})
    plain = c.chat.completions.create(**body, max_tokens=8)
    same = c.chat.completions.create(
        **body, max_tokens=8, top_p=0.3, presence_penalty=0, frequency_penalty=0, seed=7, user="u", metadata={"a": "b"}
    )
    assert same.choices[0].message.content == plain.choices[0].message.content


def test_tool_requests_refused_up_front(server: Running) -> None:
    c = client(server)
    x = [{"role": "user", "content": "x"}]
    cases = [
        (dict(tools=[panel_tool()], response_format={"type": "json_object"}), "tool_choice", "tool_choice_conflict"),
        (dict(tools=[panel_tool()], tool_choice="none"), "response_format", "response_format_required"),
        (
            dict(tools=[panel_tool()], tool_choice={"type": "function", "function": {"name": "nope"}}),
            "tool_choice",
            None,
        ),
        (dict(tool_choice="required", response_format={"type": "json_object"}), "tool_choice", None),
    ]
    for extra, param, code in cases:
        with pytest.raises(openai.BadRequestError) as info:
            c.chat.completions.create(model=MODEL, messages=x, max_tokens=4, **extra)
        assert info.value.param == param and info.value.code == code, extra
    with pytest.raises(openai.BadRequestError) as no_format:
        c.chat.completions.create(model=MODEL, messages=x)
    assert "tools" in no_format.value.message  # the message says a tool call is the other way
    open_map = {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": {"type": "integer"}}
    with pytest.raises(openai.BadRequestError) as strict:
        c.chat.completions.create(
            model=MODEL,
            messages=x,
            response_format={"type": "json_schema", "json_schema": {"name": "m", "schema": open_map, "strict": True}},
        )
    assert strict.value.code == "invalid_schema" and "additionalProperties: false" in strict.value.message


def test_a_tool_conversation_and_tool_choice_none_answer_under_the_response_format(server: Running) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "panel", "schema": Panel.model_json_schema()}}
    r = client(server).chat.completions.create(
        model=MODEL,
        max_tokens=60,
        tools=[panel_tool()],
        tool_choice="none",
        response_format=fmt,
        messages=[
            {"role": "user", "content": "Report the panel."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "report_panel", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "kind is required"},
        ],
    )
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.tool_calls is None
    Panel.model_validate_json(r.choices[0].message.content)


def test_models_by_id_and_a_bare_string_image_url(server: Running) -> None:
    c = client(server)
    card = c.models.retrieve(MODEL)
    assert card.id == MODEL and card.object == "model"
    with pytest.raises(openai.NotFoundError) as info:
        c.models.retrieve("gpt-4o")
    assert info.value.code == "model_not_found" and info.value.body["type"] == "invalid_request_error"
    [part] = [p for p in image_message("x")[1]["content"] if p["type"] == "image_url"]
    bare = [{"role": "user", "content": [{"type": "image_url", "image_url": part["image_url"]["url"]}]}]
    r = c.chat.completions.create(model=MODEL, messages=bare, response_format={"type": "json_object"}, max_tokens=4)
    assert r.usage.prompt_tokens > 60  # the image's tokens are in the prompt
