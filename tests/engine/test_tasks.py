"""Tasks: built-ins load from data files, user files in three formats, bad schemas named by pointer."""

from __future__ import annotations

import json

import jsonschema
import pytest
from loupe.core.errors import TaskError
from loupe.core.tasks import builtin_names, builtin_task, load_task_file


def test_builtin_tasks_are_valid_schemas():
    assert set(builtin_names()) >= {"defects", "product", "receipt", "describe"}
    for name in builtin_names():
        task = builtin_task(name)
        jsonschema.Draft202012Validator.check_schema(task.schema)
        assert task.instructions


def test_defects_schema_shape():
    schema = builtin_task("defects").schema
    item = schema["properties"]["defects"]["items"]
    assert item["properties"]["label"]["enum"] == ["scratch", "crack", "stain", "dent", "other"]
    box = item["properties"]["box_2d"]
    assert box["minItems"] == box["maxItems"] == 4 and box["items"]["maximum"] == 1000
    assert item["properties"]["severity"] == {"type": "integer", "minimum": 1, "maximum": 5}


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}


@pytest.mark.parametrize(
    ("suffix", "text"),
    [
        (".json", json.dumps({"schema": SCHEMA, "instructions": "Is it ok?", "options": {"max_tokens": 64}})),
        (
            ".yaml",
            "instructions: Is it ok?\noptions: {max_tokens: 64}\nschema:\n  type: object\n"
            "  properties: {ok: {type: boolean}}\n  required: [ok]\n",
        ),
        (
            ".toml",
            'instructions = "Is it ok?"\n[options]\nmax_tokens = 64\n[schema]\ntype = "object"\n'
            'required = ["ok"]\n[schema.properties.ok]\ntype = "boolean"\n',
        ),
    ],
)
def test_user_task_files(tmp_path, suffix, text):
    path = tmp_path / f"check{suffix}"
    path.write_text(text)
    task = load_task_file(path)
    assert task.name == "check"
    assert task.schema == SCHEMA
    assert task.options.max_tokens == 64


def test_invalid_schema_is_refused_with_json_pointer(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(
        json.dumps({"schema": {"type": "object", "properties": {"n": {"type": "integr"}}}, "instructions": "x"})
    )
    with pytest.raises(TaskError) as info:
        load_task_file(path)
    assert info.value.pointer == "/schema/properties/n/type"
    assert "bad.json" in str(info.value)


@pytest.mark.parametrize(
    ("raw", "pointer"),
    [
        ({"schema": {"minimum": "zero"}, "instructions": "x"}, "/schema/minimum"),
        ({"schema": {"$ref": "#/$defs/missing"}, "instructions": "x"}, "/schema/$ref"),
        ({"schema": {}, "instructions": ""}, "/instructions"),
        ({"instructions": "x"}, "/schema"),
        ({"schema": {}, "instructions": "x", "options": {"max_tokens": "many"}}, "/options/max_tokens"),
        ({"schema": {}, "instructions": "x", "options": {"color": 1}}, "/options/color"),
        ({"schema": {}, "instructions": "x", "extra": 1}, "/extra"),
    ],
)
def test_bad_task_parts_named(tmp_path, raw, pointer):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(TaskError) as info:
        load_task_file(path)
    assert info.value.pointer == pointer


def test_unreadable_task_files(tmp_path):
    with pytest.raises(TaskError, match="no such task file"):
        load_task_file(tmp_path / "nope.json")
    broken = tmp_path / "broken.yaml"
    broken.write_text("schema: [unclosed\n")
    with pytest.raises(TaskError, match="not valid YAML"):
        load_task_file(broken)
    with pytest.raises(TaskError, match="unknown task file type"):
        load_task_file(tmp_path / "t.txt")


def test_external_ref_is_refused_at_load_with_pointer(tmp_path):
    path = tmp_path / "remote.json"
    path.write_text(
        json.dumps(
            {
                "schema": {"type": "object", "properties": {"a": {"$ref": "https://example.com/schemas/a.json"}}},
                "instructions": "x",
            }
        )
    )
    with pytest.raises(TaskError) as info:
        load_task_file(path)
    assert info.value.pointer == "/schema/properties/a/$ref" and "never fetches" in str(info.value)


def test_parts_only_checked_after_decoding_are_reported_at_load(tmp_path):
    path = tmp_path / "serial.yaml"
    path.write_text("instructions: Read the serial number.\nschema:\n  type: string\n  pattern: '(?<=SN)[0-9]+'\n")
    task = load_task_file(path)
    assert any("/pattern" in n for n in task.notes) and any("look-around" in n for n in task.notes)
    assert builtin_task("defects").notes == ()
