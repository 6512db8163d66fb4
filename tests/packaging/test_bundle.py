"""Smoke test of the frozen one-folder app: build it (packaging/build.sh), then analyze, serve and open the GUI.

Opt-in (`pytest -m slow tests/packaging`): the build takes minutes. Set LOUPE_BUNDLE=<dist/loupe> to test an
existing bundle instead of building one.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from loupe.cli import SAMPLE

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform != "linux", reason="the smoke test runs on Linux")]


@pytest.fixture(scope="module")
def bundle(request: pytest.FixtureRequest) -> Path:
    """The bundle folder (built here unless LOUPE_BUNDLE names one); skipped unless asked for with -m slow."""
    given = os.environ.get("LOUPE_BUNDLE")
    if given:
        return Path(given)
    if "slow" not in str(request.config.getoption("markexpr") or ""):
        pytest.skip("builds the PyInstaller bundle (minutes): opt in with `pytest -m slow tests/packaging`")
    pytest.importorskip("PyInstaller")
    subprocess.run([str(ROOT / "packaging" / "build.sh"), sys.executable], check=True, timeout=3600)
    return ROOT / "dist" / "loupe"


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    env.update(
        LOUPE_OFFLINE="1",
        HF_HUB_OFFLINE="1",
        LOUPE_DB=str(tmp_path / "loupe.db"),
        LOUPE_MODEL_DIR=str(tmp_path / "models"),
        QT_QPA_PLATFORM="offscreen",
        HOME=str(tmp_path),
    )
    return env


def _model_args(tiny_models: dict) -> list[str]:
    m = tiny_models["smolvlm"]
    return ["--model-path", str(m.text_path), "--mmproj", str(m.mmproj_path)]


def test_frozen_cli_analyses_an_image(bundle: Path, tiny_models: dict, tmp_path: Path) -> None:
    t0 = time.perf_counter()
    helped = subprocess.run(
        [str(bundle / "loupe"), "tasks", "--json"], env=_env(tmp_path), capture_output=True, text=True, timeout=120
    )
    start_s = time.perf_counter() - t0
    assert helped.returncode == 0, helped.stderr
    assert "defects" in {t["name"] for t in json.loads(helped.stdout)}  # the task files were bundled
    t0 = time.perf_counter()
    run = subprocess.run(
        [
            str(bundle / "loupe"),
            "analyze",
            str(SAMPLE),
            "--json",
            "--max-tokens",
            "64",
            "--task-file",
            str(_gauge(tmp_path)),
            *_model_args(tiny_models),
        ],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    first_s = time.perf_counter() - t0
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["status"] == "ok" and result["backend"] == "llama_cpp", result
    assert isinstance(result["data"]["value"], int) and result["confidence"]
    print(f"\nfrozen `loupe tasks` {start_s:.2f} s; frozen `loupe analyze` (load + first result) {first_s:.2f} s")


def test_frozen_cli_runs_the_model_in_its_own_process(bundle: Path, tiny_models: dict, tmp_path: Path) -> None:
    """The bundle's executable starts itself as the model process (packaging/entry.py): a segfault there (the
    test-only fault hook) is an error line for that image, and the frozen CLI exits normally."""
    env = {**_env(tmp_path), "LOUPE_WORKER_FAULT": "decode:SIGSEGV"}
    run = subprocess.run(
        [
            str(bundle / "loupe"),
            "analyze",
            str(SAMPLE),
            "--json",
            "--max-tokens",
            "16",
            "--task-file",
            str(_gauge(tmp_path)),
            *_model_args(tiny_models),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode in (0, 1), run.stderr
    result = json.loads(run.stdout.splitlines()[-1])
    assert result["status"] == "error" and "the model process crashed (SIGSEGV)" in result["error"]
    assert "Traceback" not in run.stderr


def test_frozen_serve_answers_analyze(bundle: Path, tiny_models: dict, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [str(bundle / "loupe"), "serve", "--port", str(port), "--log-level", "info", *_model_args(tiny_models)],
        env=_env(tmp_path),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # blocks until uvicorn says it is listening (or the process dies)
            if "Application startup complete" in line:
                break
        else:
            pytest.fail(f"frozen server exited with {proc.wait()}")
        image = "data:image/jpeg;base64," + base64.b64encode(SAMPLE.read_bytes()).decode()
        body = json.dumps({"image": image, "task": "defects", "options": {"max_tokens": 48}}).encode()
        req = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/analyze", data=body, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=120) as resp:
            result = json.load(resp)
        assert result["status"] in ("ok", "truncated") and result["id"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert (tmp_path / "loupe.db").exists()


def test_frozen_gui_opens_and_shows_a_result(bundle: Path, tiny_models: dict, tmp_path: Path) -> None:
    shot = tmp_path / "window.png"
    run = subprocess.run(
        [str(bundle / "loupe-app"), "--screenshot", str(shot), *_model_args(tiny_models), str(SAMPLE)],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _gauge(tmp_path: Path) -> Path:
    path = tmp_path / "gauge.json"
    path.write_text(
        json.dumps(
            {
                "instructions": "Read the gauge.",
                "schema": {
                    "type": "object",
                    "properties": {"value": {"type": "integer", "minimum": 0, "maximum": 10}},
                    "required": ["value"],
                    "additionalProperties": False,
                },
            }
        )
    )
    return path
