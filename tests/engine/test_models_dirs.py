"""MLX / ONNX directory models in `loupe models`: listed, pulled (resumably) from the fake Hub, verified.

The Hub is tests/engine/fake_hub.py on 127.0.0.1; the model is the committed tiny SmolVLM (tests/backends/tiny),
published there under the q4 file names the catalog's ONNX entries use. Nothing touches the network.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from pathlib import Path

import pytest
from loupe.backends import registry
from loupe.cli import main
from loupe.cli.models import models_list, models_pull, models_verify
from loupe.models.catalog import load_catalog
from loupe.models.hf_fetch import pin
from loupe.models.store import ModelDownloadError, ModelError, ModelImportError, ModelStore

from tests.backends.conftest import TINY
from tests.engine.fake_hub import COMMIT, FakeHub, Seen
from tests.engine.model_files import catalog_toml, flip_last_byte, write_gguf

HF = TINY / "smolvlm" / "hf"
REPO = "test-org/Tiny-ONNX"
ENTRY = f"""
[models.tiny-onnx]
display_name = "Tiny ONNX"
family = "smolvlm"
source = "huggingface"
format = "onnx"
repo_id = "{REPO}"
quantization = "q4"
files = ["*.json", "*.jinja", "onnx/*_q4.onnx"]
license = "Apache-2.0"
note = "tiny"
"""


def _q4(rel: str) -> str:
    return rel.replace(".onnx", "_q4.onnx")


def publish_dir(hub: FakeHub, tmp_path: Path) -> tuple[ModelStore, dict[str, bytes]]:
    """The tiny model on the fake Hub (plus files the entry does not want); a store on it; the wanted files."""
    hub.lfs_suffixes = (".onnx", ".safetensors")  # JSON files get a git sha1 ETag, as on the real Hub
    wanted: dict[str, bytes] = {}
    for path in sorted(p for p in HF.rglob("*") if p.is_file()):
        rel, data = path.relative_to(HF).as_posix(), path.read_bytes()
        if rel.startswith("onnx/"):
            hub.files[f"{REPO}/{rel.replace('.onnx', '_fp16.onnx')}"] = data
            rel = _q4(rel)
        hub.files[f"{REPO}/{rel}"] = data
        if not rel.endswith(".safetensors"):
            wanted[rel] = data
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(catalog_toml("test-org/Tiny-GGUF", "t.gguf", "m.gguf") + ENTRY)
    store = ModelStore(
        tmp_path / "store",
        catalog=load_catalog(catalog),
        endpoint=hub.endpoint,
        token=False,
        download_retries=0,
        retry_wait_s=0.0,
    )
    return store, wanted


def _cli(action, store: ModelStore, **args: object) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = action(store, argparse.Namespace(**{"json": False, **args}), out, err)
    return code, out.getvalue()


def _listed(store: ModelStore) -> dict[str, dict]:
    code, out = _cli(models_list, store, json=True)
    assert code == 0
    return {row["name"]: row for row in json.loads(out)}


def _file_gets(hub: FakeHub, since: int) -> dict[str, Seen]:
    """The file downloads (GET .../resolve/COMMIT/FILE) the hub saw after request number `since`, by file."""
    prefix = f"/resolve/{COMMIT}/"
    return {s.path.split(prefix)[1]: s for s in hub.seen[since:] if s.method == "GET" and prefix in s.path}


def _files(path: Path) -> dict[str, bytes]:
    return {
        p.relative_to(path).as_posix(): p.read_bytes()
        for p in path.rglob("*")
        if p.is_file() and p.name != "manifest.json"
    }


def test_pull_lists_and_verifies_a_directory_model(hub: FakeHub, tmp_path: Path, monkeypatch) -> None:
    for module in ("onnxruntime", "mlx", "mlx_vlm"):  # the backend extra is needed to run the model, not to pull it
        monkeypatch.setitem(sys.modules, module, None)
    store, wanted = publish_dir(hub, tmp_path)
    before = _listed(store)
    assert before["tiny-onnx"] | {"detail": ""} == before["tiny-onnx"] | {
        "format": "onnx",
        "state": "missing",
        "kind": "catalog",
        "license": "Apache-2.0",
        "path": None,
        "size_bytes": 0,
        "detail": "",
    }
    assert before["tiny"]["format"] == "gguf" and before["tiny"]["license"] == "Apache-2.0"

    progress: list[tuple[str, int, int | None]] = []
    path = store.directories.pull("tiny-onnx", progress=lambda *event: progress.append(event))
    assert path == store.root / "tiny-onnx" and _files(path) == wanted  # no fp16 files, no safetensors
    decoder = "onnx/decoder_model_merged_q4.onnx"
    assert (decoder, len(wanted[decoder]), len(wanted[decoder])) in progress
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["commit"] == COMMIT and set(manifest["sha256"]) == set(wanted)
    assert manifest["files"][decoder]["sha256_source"] == "hub"  # LFS: checked against the Hub's sha256
    assert manifest["files"]["config.json"]["sha256_source"] == "first-download"

    after = _listed(store)["tiny-onnx"]
    assert after["state"] == "installed" and after["path"] == str(path) and after["detail"] == "tiny"
    assert after["size_bytes"] == sum(len(d) for d in wanted.values())
    code, text = _cli(models_list, store)
    (line,) = [ln for ln in text.splitlines() if "tiny-onnx" in ln]
    assert line.split()[:4] == ["tiny-onnx", "onnx", "catalog", "installed"] and line.endswith(str(path))

    seen = len(hub.seen)
    code, out = _cli(models_pull, store, name="tiny-onnx", json=True)
    assert code == 0 and json.loads(out) == {"name": "tiny-onnx", "format": "onnx", "path": str(path)}
    assert len(hub.seen) == seen  # already there: no request at all
    reports = store.verify("tiny-onnx")
    assert {r.role for r in reports} == set(wanted) and all(r.ok for r in reports)

    catalog = tmp_path / "catalog.toml"  # the catalog entry now wants one more file: only that one is fetched
    catalog.write_text(catalog.read_text().replace('"onnx/*_q4.onnx"]', '"onnx/*_q4.onnx", "*.safetensors"]'))
    wider = ModelStore(
        store.root, catalog=load_catalog(catalog), endpoint=hub.endpoint, token=False, download_retries=0
    )
    seen = len(hub.seen)
    wider.directories.pull("tiny-onnx")
    assert set(_file_gets(hub, seen)) == {"model.safetensors"} and (path / "model.safetensors").is_file()


def test_an_interrupted_file_is_resumed_and_finished_files_are_kept(hub: FakeHub, tmp_path: Path) -> None:
    store, wanted = publish_dir(hub, tmp_path)
    vision = "onnx/vision_encoder_q4.onnx"
    hub.drop_once.add(f"{REPO}/{vision}")
    with pytest.raises(ModelDownloadError, match="run the same command again to resume"):
        store.directories.pull("tiny-onnx")
    (part,) = (store.root / "tiny-onnx" / "onnx").glob("vision_encoder_q4.onnx.*.part")
    held = part.stat().st_size
    assert 0 < held < len(wanted[vision])
    row = _listed(store)["tiny-onnx"]
    assert row["state"] == "missing" and f"partial download ({held} bytes)" in row["detail"]

    seen = len(hub.seen)
    path = store.directories.pull("tiny-onnx")
    gets = _file_gets(hub, seen)
    assert gets[vision].headers["range"] == f"bytes={held}-"  # resumed, not started again
    assert "onnx/decoder_model_merged_q4.onnx" not in gets  # finished before the drop: its sha256 matched, kept
    assert _files(path) == wanted and not list(path.rglob("*.part"))
    assert all(r.ok for r in store.verify("tiny-onnx"))


def test_verify_names_a_changed_and_a_missing_file_and_pull_repairs(hub: FakeHub, tmp_path: Path) -> None:
    store, wanted = publish_dir(hub, tmp_path)
    path = store.directories.pull("tiny-onnx")
    embed = "onnx/embed_tokens_q4.onnx"
    flip_last_byte(path / embed)
    (path / "tokenizer.json").unlink()

    code, out = _cli(models_verify, store, name="tiny-onnx")
    assert code == 1
    lines = {ln.split(":", 1)[0]: ln for ln in out.splitlines()}
    assert "sha256 mismatch" in lines[f"tiny-onnx {embed}"] and "move it away" in lines[f"tiny-onnx {embed}"]
    assert "tokenizer.json is missing" in lines["tiny-onnx tokenizer.json"]
    assert lines["tiny-onnx config.json"] == "tiny-onnx config.json: ok"
    code, out = _cli(models_verify, store, name="tiny-onnx", json=True)
    bad = {r["role"] for r in json.loads(out) if not r["ok"]}
    assert bad == {embed, "tokenizer.json"}
    row = _listed(store)["tiny-onnx"]
    assert row["state"] == "corrupt" and "tokenizer.json is missing" in row["detail"]

    (path / embed).rename(tmp_path / "bad.onnx")  # as the fix says
    seen = len(hub.seen)
    store.directories.pull("tiny-onnx")
    fetched = set(_file_gets(hub, seen))
    assert fetched == {embed, "tokenizer.json"}  # only what failed
    assert _files(path) == wanted and all(r.ok for r in store.verify())


def test_a_directory_fetched_earlier_is_listed_verified_and_used(tmp_path: Path, monkeypatch, images) -> None:
    root = tmp_path / "models"
    fetched = root / "smolvlm-256m-onnx-q4"
    shutil.copytree(HF, fetched, ignore=shutil.ignore_patterns("*.safetensors"))
    for onnx in list((fetched / "onnx").glob("*.onnx")):
        onnx.rename(onnx.with_name(_q4(onnx.name)))
    pin(fetched)  # the sha256-only manifest the first-use fetch wrote before this store knew directories
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(root))
    out, err = io.StringIO(), io.StringIO()
    assert main(["models", "list", "--json"], out=out, err=err) == 0
    rows = {row["name"]: row for row in json.loads(out.getvalue())}
    assert rows["smolvlm-256m-onnx-q4"]["state"] == "installed" and rows["smolvlm-256m-onnx-q4"]["format"] == "onnx"
    assert rows["smolvlm-256m-onnx-q4"]["path"] == str(fetched)
    assert rows["smolvlm-256m-mlx"]["state"] == "missing" and rows["smolvlm-256m-mlx"]["format"] == "mlx"
    assert rows["smolvlm-256m"]["format"] == "gguf"
    out = io.StringIO()
    assert main(["models", "verify", "smolvlm-256m-onnx-q4"], out=out, err=err) == 0
    assert "onnx/decoder_model_merged_q4.onnx: ok" in out.getvalue()

    analyze = ["analyze", str(images["jpeg"]), "--task", "describe", "--model", "smolvlm-256m-onnx-q4", "--ep", "cpu"]
    absent = registry.BackendEntry(registry.BACKENDS["onnx"].load, "loupe_absent_module", "onnx")
    with monkeypatch.context() as patch:  # as if loupe[onnx] were not installed: told at use time, with the fix
        patch.setitem(registry.BACKENDS, "onnx", absent)
        err = io.StringIO()
        assert main(analyze, out=io.StringIO(), err=err) != 0 and "pip install 'loupe[onnx]'" in err.getvalue()
    pytest.importorskip("onnxruntime")
    out, err = io.StringIO(), io.StringIO()
    assert main(analyze, out=out, err=err) == 0, err.getvalue()
    result = json.loads(out.getvalue())
    assert result["status"] == "ok" and result["backend"] == "onnx" and result["model"] == "smolvlm-256m-onnx-q4"


def test_pull_errors_are_one_clear_line(hub: FakeHub, tmp_path: Path) -> None:
    store, _ = publish_dir(hub, tmp_path)
    hub.files[f"{REPO}/../escape.json"] = b"{}"
    with pytest.raises(ModelError, match=r"lists files outside its directory \(../escape.json\)"):
        store.directories.pull("tiny-onnx")
    hub.files = {}  # the repo is gone from the Hub
    with pytest.raises(ModelDownloadError, match=f"repository {REPO} not found on 127.0.0.1"):
        store.directories.pull("tiny-onnx")
    with pytest.raises(ModelError, match="unknown model 'nope'; known models: tiny, tiny-onnx"):
        _cli(models_pull, store, name="nope")
    assert not (store.root / "tiny-onnx" / "manifest.json").exists()


def test_an_mlx_entry_pulls_its_safetensors_directory(hub: FakeHub, tmp_path: Path) -> None:
    gemma = TINY / "gemma3" / "hf"
    for path in (p for p in gemma.iterdir() if p.is_file()):
        hub.files[f"test-org/Tiny-MLX/{path.name}"] = path.read_bytes()
    hub.files["test-org/Tiny-MLX/README.md"] = b"not wanted"
    catalog = tmp_path / "catalog.toml"
    catalog.write_text(
        catalog_toml("test-org/Tiny-GGUF", "t.gguf", "m.gguf")
        + ENTRY.replace("tiny-onnx", "tiny-mlx")
        .replace('"onnx"', '"mlx"')
        .replace(REPO, "test-org/Tiny-MLX")
        .replace('"onnx/*_q4.onnx"', '"*.safetensors"')
    )
    store = ModelStore(
        tmp_path / "store", catalog=load_catalog(catalog), endpoint=hub.endpoint, token=False, download_retries=0
    )
    path = store.directories.pull("tiny-mlx")
    assert sorted(_files(path)) == sorted(p.name for p in gemma.iterdir() if p.is_file())
    row = _listed(store)["tiny-mlx"]
    assert (row["format"], row["state"], row["path"]) == ("mlx", "installed", str(path))


def test_an_import_may_not_take_a_directory_model_name(hub: FakeHub, tmp_path: Path) -> None:
    store, _ = publish_dir(hub, tmp_path)
    text = write_gguf(tmp_path / "t.gguf", "llama")
    mmproj = write_gguf(tmp_path / "m.gguf", "clip", projector="idefics3")
    with pytest.raises(ModelImportError, match="'tiny-onnx' is taken by the catalog"):
        store.import_local(text, mmproj, name="tiny-onnx")
