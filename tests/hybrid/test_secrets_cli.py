"""API keys come from the keyring (env as fallback) and are never echoed; `loupe audit` reads the trail back."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from loupe.cli import main
from loupe.core.secrets import get_api_key, redact, set_api_key
from loupe.escalate.audit import StoreAudit
from loupe.store.sqlite import Store


class MemoryRing:
    """A keyring stand-in (the real one may be a desktop service)."""

    def __init__(self, fail: bool = False) -> None:
        self.data: dict[tuple[str, str], str] = {}
        self.fail = fail

    def get_password(self, service_name: str, username: str) -> str | None:
        if self.fail:
            raise RuntimeError("no keyring backend")
        return self.data.get((service_name, username))

    def set_password(self, service_name: str, username: str, password: str) -> None:
        self.data[(service_name, username)] = password


def test_environment_first_then_keyring() -> None:
    """An explicit environment variable wins over a stored (possibly stale) keyring entry, for every secret."""
    ring = MemoryRing()
    env = {"OPENAI_API_KEY": "from-env"}
    assert get_api_key("openai", "OPENAI_API_KEY", ring=ring, environ=env) == "from-env"
    set_api_key("openai", "from-ring", ring=ring)
    assert ring.data == {("loupe", "openai"): "from-ring"}
    assert get_api_key("openai", "OPENAI_API_KEY", ring=ring, environ=env) == "from-env"
    assert get_api_key("openai", "OPENAI_API_KEY", ring=ring, environ={}) == "from-ring"
    assert get_api_key("openai", "OPENAI_API_KEY", ring=MemoryRing(fail=True), environ=env) == "from-env"
    assert get_api_key("ollama", "", ring=MemoryRing(), environ=env) is None
    assert redact("Bearer sk-1 failed", "sk-1", None) == "Bearer *** failed"


def test_loupe_audit_lists_and_exports(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    with Store(db) as store:
        StoreAudit(store, sources=("src",))(
            {
                "host": "127.0.0.1:9",
                "model": "m",
                "status": 200,
                "bytes_out": 100,
                "bytes_in": 20,
                "image_sha256": ["s1"],
                "cost_usd": 0.5,
            }
        )
    out, err = io.StringIO(), io.StringIO()
    assert main(["audit", "--db", str(db), "--json"], out, err) == 0
    payload = json.loads(out.getvalue())
    assert payload["totals"] == {"requests": 1, "bytes_out": 100, "bytes_in": 20, "cost_usd": 0.5}
    assert payload["requests"][0]["destination"] == "127.0.0.1:9"
    target = tmp_path / "audit.csv"
    assert main(["audit", "--db", str(db), "--out", str(target)], io.StringIO(), err) == 0
    (row,) = list(csv.DictReader(target.open()))
    assert row["bytes_out"] == "100" and row["image_sha256"] == "s1" and row["source_sha256"] == "src"


def test_loupe_cloud_presets() -> None:
    out = io.StringIO()
    assert main(["cloud", "presets", "--json"], out, io.StringIO()) == 0
    presets = json.loads(out.getvalue())
    assert {"openai", "gemini", "anthropic", "ollama", "lmstudio", "vllm", "llama_cpp_server"} <= set(presets)
