"""Every `loupe` command, given what users get wrong (an output path in a missing or read-only folder, a store that
does not exist, a typo'd task, model, job or result), answers with one line on stderr and exit code 2, before any
model loads: never a traceback, never an empty store created. The commands are enumerated from the parser, so a new
one cannot be forgotten: it needs cases here, or a reason it takes nothing that can be wrong."""

from __future__ import annotations

import argparse
import importlib
import io
import os
import tempfile
from pathlib import Path

import pytest
from loupe.cli.main import main, parser
from loupe.store import Store

# (a typo'd task, model, job) -- what each case is built from; {…} are filled in per test
TASK, MODEL, JOB = "defetcs", "smolvln-256m", "999"

CASES: dict[str, list[list[str]]] = {
    "analyze": [
        ["analyze", "{img}", "--out", "{nodir}/r.jsonl"],
        ["analyze", "{img}", "--out", "{ro}/r.jsonl"],
        ["analyze", "{img}", "--task", TASK],
        ["analyze", "{img}", "--model", MODEL],
        ["analyze", "{img}", "--escalate", "--db", "{ro}/s.db"],
    ],
    "demo": [["demo", "--task", TASK], ["demo", "--model", MODEL]],
    "tasks": [["tasks", "show", TASK]],
    "models pull": [["models", "pull", MODEL]],
    "models import": [["models", "import", "{nodir}/t.gguf", "--mmproj", "{nodir}/m.gguf"]],
    "models verify": [["models", "verify", MODEL]],
    "batch": [
        ["batch", "{img}", "--task", TASK],
        ["batch", "{img}", "--model", MODEL],
        ["batch", "{img}", "--db", "{ro}/s.db"],
        ["batch", "--resume", JOB, "--db", "{store}"],
    ],
    "review list": [["review", "list", "--db", "{nostore}"], ["review", "list", JOB, "--db", "{store}"]],
    "review accept": [["review", "accept", "1", "--db", "{nostore}"], ["review", "accept", JOB, "--db", "{store}"]],
    "review edit": [
        ["review", "edit", "1", "{{}}", "--db", "{nostore}"],
        ["review", "edit", JOB, "{{}}", "--db", "{store}"],
    ],
    "review reject": [["review", "reject", "1", "--db", "{nostore}"], ["review", "reject", JOB, "--db", "{store}"]],
    "export": [
        ["export", "--out", "{tmp}/x.jsonl", "--db", "{nostore}"],
        ["export", "--out", "{nodir}/x.csv", "--db", "{store}"],
        ["export", "--out", "{ro}/x.csv", "--db", "{store}"],
        ["export", "--overlays", "{ro}/boxes", "--db", "{store}"],
        ["export", "--labelled", "--out", "{ro}/labelled", "--db", "{store}"],
        ["export", JOB, "--out", "{tmp}/x.jsonl", "--db", "{store}"],
    ],
    "import": [
        ["import", "{nodir}"],
        ["import", "{tmp}", "--db", "{nostore}"],  # no job file in it: nothing created
        ["import", "{tmp}", "--db", "{ro}/s.db"],
    ],
    "audit": [
        ["audit", "--db", "{nostore}"],
        ["audit", "--out", "{nodir}/a.csv", "--db", "{store}"],
        ["audit", "--job", JOB, "--db", "{store}"],
    ],
    "cloud key": [["cloud", "key", "opneai"]],
    "cloud test": [["cloud", "test", "--cloud-config", "{nodir}/cloud.toml"], ["cloud", "test", "--db", "{ro}/s.db"]],
    "watch": [
        ["watch", "{tmp}", "--task", TASK],
        ["watch", "{tmp}", "--model", MODEL],
        ["watch", "{nodir}"],
        ["watch", "{tmp}", "--db", "{ro}/s.db"],
        ["watch", "{tmp}", "--frames", "{ro}/frames"],
    ],
    "kiosk": [
        ["kiosk", "--source", "{tmp}", "--task", TASK],
        ["kiosk", "--source", "{tmp}", "--model", MODEL],
        ["kiosk", "--source", "{tmp}", "--db", "{ro}/s.db"],
        ["kiosk", "--source", "{tmp}", "--screenshot", "{nodir}/k.png"],
    ],
    "outbox": [["outbox", "--db", "{nostore}"]],
    "eval": [
        ["eval", "{nodir}/labelled"],
        ["eval", "{labels}", "--out", "{ro}/report"],
        ["eval", "{labels}", "--task", TASK],
        ["eval", "{labels}", "--model", MODEL],
        ["eval", "{labels}", "--db", "{ro}/s.db"],
    ],
    "gui": [["gui", "--task", TASK], ["gui", "--db", "{ro}/s.db"], ["gui", "--screenshot", "{nodir}/g.png"]],
    "search": [
        ["search", "--dupes", "--db", "{nostore}"],
        ["search", "--like", JOB, "--db", "{store}"],
        ["search", "--like", "{nodir}/x.jpg", "--db", "{store}"],
        ["search", "--where", "defects label crack", "--db", "{store}"],
        ["search", "--db", "{store}"],
        ["search", "--text", "**", "--db", "{store}"],
        ["search", "--dupes", "--db", "{store}", "--out", "{nodir}/found.csv"],
    ],
    "index": [["index", "--db", "{nostore}"]],
    "serve": [
        ["serve", "--model", MODEL],
        ["serve", "--db", "{ro}/s.db"],
        ["serve", "--model-path", "{nodir}/t.gguf", "--mmproj", "{nodir}/m.gguf"],
    ],
}

# commands with no output path, no store and no name to get wrong
NOTHING_TO_GET_WRONG = {
    "models list": "lists what is there",
    "cloud presets": "prints a fixed table",
    "doctor": "reports this machine",
}


def leaves(p: argparse.ArgumentParser, prefix: str = "") -> dict[str, argparse.ArgumentParser]:
    """Every runnable command of the parser, by its words ("review list")."""
    subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: p}
    found: dict[str, argparse.ArgumentParser] = {}
    for name, child in subs[0].choices.items():
        found.update(leaves(child, f"{prefix} {name}".strip()))
    return found


def test_every_command_has_cases_or_a_reason() -> None:
    commands = set(leaves(parser()))
    assert commands == set(CASES) | set(NOTHING_TO_GET_WRONG), "give a new command cases in CASES"
    assert not set(CASES) & set(NOTHING_TO_GET_WRONG)


def test_every_help_has_examples_and_every_option_a_help_text() -> None:
    p = parser()
    for name, sp in {"loupe": p, **leaves(p)}.items():
        assert "examples:\n  loupe " in sp.format_help(), f"`{name} --help` shows no examples"
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction):
                continue
            assert action.help, f"{name}: {action.option_strings or action.dest} has no help text"


def _unwritable(tmp: Path) -> Path:
    """A folder nobody may create files in: a read-only tmp folder, or (as root, who may write anyway) /sys."""
    folder = tmp / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    for candidate in (folder, Path("/sys"), Path("/proc")):
        try:
            with tempfile.NamedTemporaryFile(dir=candidate):
                pass
        except OSError:
            return candidate
    pytest.fail("no folder here refuses new files")


@pytest.fixture
def places(tmp_path: Path, picture: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("LOUPE_DB", str(tmp_path / "default.db"))
    Store(tmp_path / "store.db").close()  # a real store with no jobs and no results
    labels = tmp_path / "labels.jsonl"
    labels.write_text(f'{{"image": "{picture}", "data": {{"defects": []}}}}\n')
    return {
        "tmp": str(tmp_path),
        "img": str(picture),
        "nodir": str(tmp_path / "no-such-folder"),
        "ro": str(_unwritable(tmp_path)),
        "store": str(tmp_path / "store.db"),
        "nostore": str(tmp_path / "typo.db"),
        "labels": str(labels),
    }


@pytest.mark.parametrize("argv", [pytest.param(argv, id=" ".join(argv)) for cases in CASES.values() for argv in cases])
def test_a_mistake_is_one_line_and_exit_2(
    argv: list[str], places: dict[str, str], capfd: pytest.CaptureFixture[str]
) -> None:
    args = [a.format(**places) for a in argv]
    out, err = io.StringIO(), io.StringIO()
    code = main(args, out=out, err=err)
    captured = capfd.readouterr()
    said = err.getvalue() + captured.err
    assert code == 2, said
    assert "Traceback" not in said
    assert said.count("\n") == 1 and said.startswith("error: "), said
    assert not Path(places["nostore"]).exists(), "a command created the store it was asked to read"
    assert not Path(places["nodir"]).exists()
    assert os.listdir(places["ro"]) == [] or places["ro"] in ("/sys", "/proc")


def test_an_unknown_option_gets_the_commands_own_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["batch", "photos/", "--format", "csv"])  # (batch's --out is a folder, with --ray)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: loupe batch ")
    assert err.rstrip().endswith("loupe batch: error: unrecognized arguments: --format csv")


def test_an_unexpected_failure_is_one_line_unless_debugging(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    cli_main = importlib.import_module("loupe.cli.main")  # loupe.cli.main is also the function `main`

    def broken(args: argparse.Namespace, out: io.StringIO, err: io.StringIO) -> int:
        raise PermissionError(13, "Permission denied", "/somewhere/out.jsonl")

    monkeypatch.setitem(cli_main.COMMANDS, "doctor", broken)
    err = io.StringIO()
    assert main(["doctor"], out=io.StringIO(), err=err) == 2
    assert err.getvalue() == "error: /somewhere/out.jsonl: Permission denied\n"

    monkeypatch.setitem(cli_main.COMMANDS, "doctor", lambda *a: 1 / 0)
    err = io.StringIO()
    assert main(["doctor"], out=io.StringIO(), err=err) == 1
    assert err.getvalue().count("\n") == 1 and "LOUPE_DEBUG=1" in err.getvalue()

    monkeypatch.setenv("LOUPE_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(["doctor"], out=io.StringIO(), err=io.StringIO())


def test_models_list_has_column_headers(places: dict[str, str]) -> None:
    out = io.StringIO()
    assert main(["models", "list"], out=out, err=io.StringIO()) == 0
    header = out.getvalue().splitlines()[0].split()
    assert header[:5] == ["NAME", "TYPE", "KIND", "STATE", "SIZE"]
