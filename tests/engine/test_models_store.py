"""Model catalog and store: import, fast checks, verify, and pulls from a real local fake of the Hub."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import gguf
import numpy as np
import pytest

from models.catalog import CatalogError, UnknownModelError, load_catalog
from models.store import (
    ModelDownloadError,
    ModelFileCorrupt,
    ModelImportError,
    ModelNotInstalled,
    ModelStore,
    default_model_root,
)

COMMIT = "c0ffee" + "0" * 34

# ---- tiny GGUF files ------------------------------------------------------------------------------


def write_gguf(path: Path, arch: str, *, projector: str | None = None, floats: int = 1024, seed: int = 0) -> Path:
    """A small but valid GGUF: `general.architecture = arch`, one f32 tensor of random values."""
    writer = gguf.GGUFWriter(path, arch)
    if projector is not None:
        writer.add_string("clip.projector_type", projector)
        writer.add_bool("clip.has_vision_encoder", True)
    writer.add_tensor("weight", np.random.default_rng(seed).random(floats, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    """A text GGUF (llama) and an mmproj GGUF (clip, idefics3 projector) outside the store."""
    src = tmp_path / "src"
    src.mkdir()
    text = write_gguf(src / "My-Model-Q8_0.gguf", "llama", seed=1)
    mmproj = write_gguf(src / "mmproj-My-Model.gguf", "clip", projector="idefics3", seed=2)
    return text, mmproj


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "store", token=False)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


# ---- catalog ----------------------------------------------------------------------------------------


def test_catalog_has_the_four_real_models_and_two_synthetic_ones() -> None:
    catalog = load_catalog()
    assert set(catalog.names()) == {
        "smolvlm-256m",
        "smolvlm-500m",
        "smolvlm2-2.2b",
        "gemma3-4b",
        "synthetic-smolvlm",
        "synthetic-gemma3",
    }
    assert catalog.default == "smolvlm-256m"
    small = catalog.get("smolvlm-256m")
    assert (small.repo_id, small.text_file, small.mmproj_file) == (
        "ggml-org/SmolVLM-256M-Instruct-GGUF",
        "SmolVLM-256M-Instruct-Q8_0.gguf",
        "mmproj-SmolVLM-256M-Instruct-Q8_0.gguf",
    )
    gemma = catalog.get("gemma3-4b")
    assert (gemma.family, gemma.text_file, gemma.mmproj_file) == (
        "gemma3",
        "gemma-3-4b-it-Q4_K_M.gguf",
        "mmproj-model-f16.gguf",
    )
    assert gemma.gated and gemma.license == "Gemma" and "accept" in gemma.note
    for name in ("smolvlm-256m", "smolvlm-500m", "smolvlm2-2.2b"):
        entry = catalog.get(name)
        assert entry.family == "smolvlm" and entry.license == "Apache-2.0" and entry.repo_id.startswith("ggml-org/")
        assert entry.approx_size > 100_000_000
    for name, builder, family in (
        ("synthetic-smolvlm", "tiny-smolvlm", "smolvlm"),
        ("synthetic-gemma3", "tiny-gemma3", "gemma3"),
    ):
        entry = catalog.get(name)
        assert (entry.source, entry.synthetic, entry.family) == ("synthetic", builder, family)
        assert entry.note == "random weights, output meaningless"


def test_catalog_get_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match=r"known models: smolvlm-256m, .*gemma3-4b"):
        load_catalog().get("llava")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"text_sha256": "abc"}, "64 lowercase hex"),
        ({"colour": "red"}, "unknown keys colour"),
        ({"family": "llava"}, "family 'llava'"),
        ({"repo_id": ""}, "missing repo_id"),
    ],
)
def test_catalog_refuses_malformed_entries(tmp_path: Path, change: dict[str, str], message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(_catalog_toml("x/y", "t.gguf", "m.gguf", **change))
    with pytest.raises(CatalogError, match=re.escape(message)):
        load_catalog(path)


def _catalog_toml(repo: str, text: str, mmproj: str, text_sha256: str = "", **change: str) -> str:
    """A one-model catalog ("tiny", the default) in TOML; `change` overrides or adds keys."""
    keys = {
        "display_name": "Tiny",
        "family": "smolvlm",
        "source": "huggingface",
        "repo_id": repo,
        "text_file": text,
        "mmproj_file": mmproj,
        "text_sha256": text_sha256,
        "mmproj_sha256": "",
        "license": "Apache-2.0",
        **change,
    }
    return 'default = "tiny"\n[models.tiny]\n' + "".join(f'{k} = "{v}"\n' for k, v in keys.items())


# ---- import -----------------------------------------------------------------------------------------


def test_import_registers_the_pair_with_family_and_sha256(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    resolved = store.import_local(text, mmproj)
    assert resolved.name == "my-model-q8_0"
    assert (resolved.text_path, resolved.mmproj_path) == (text, mmproj)
    assert resolved.family == "smolvlm" and not resolved.synthetic
    registry = json.loads((store.root / "registry.json").read_text())
    files = registry["models"]["my-model-q8_0"]["files"]
    assert files["text"]["sha256"] == sha256(text.read_bytes())
    assert files["mmproj"]["sha256"] == sha256(mmproj.read_bytes())
    assert files["mmproj"]["projector_type"] == "idefics3"
    again = ModelStore(store.root, token=False)  # state lives in files only
    assert again.resolve("my-model-q8_0") == resolved
    listed = {m.name: m for m in again.installed()}
    assert listed["my-model-q8_0"].state == "installed" and listed["my-model-q8_0"].kind == "imported"
    assert not list(store.root.glob("*.tmp"))  # atomic writes leave no temporaries behind


def test_import_refuses_swapped_files(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    with pytest.raises(ModelImportError, match="swapped"):
        store.import_local(mmproj, text)
    with pytest.raises(ModelImportError, match="not a vision projector"):
        store.import_local(text, text)
    with pytest.raises(ModelImportError, match="not a text model"):
        store.import_local(mmproj, mmproj)
    assert not (store.root / "registry.json").exists()


def test_import_refuses_non_gguf_and_catalog_names(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    junk = text.with_name("junk.gguf")
    junk.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelImportError, match="bad magic"):
        store.import_local(junk, mmproj)
    with pytest.raises(ModelImportError, match="taken by the catalog"):
        store.import_local(text, mmproj, name="smolvlm-256m")


def test_import_needs_explicit_family_when_projector_is_unknown(store: ModelStore, tmp_path: Path) -> None:
    text = write_gguf(tmp_path / "t.gguf", "llama")
    mmproj = write_gguf(tmp_path / "m.gguf", "clip", projector="mlp")
    with pytest.raises(ModelImportError, match="cannot tell which model family"):
        store.import_local(text, mmproj, name="odd")
    assert store.import_local(text, mmproj, name="odd", family="smolvlm").family == "smolvlm"


def test_import_copy_keeps_working_after_the_originals_are_gone(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    data = text.read_bytes()
    resolved = store.import_local(text, mmproj, name="mine", copy=True)
    text.unlink()
    mmproj.unlink()
    assert resolved.text_path.parent == store.root / "imported" / "mine"
    assert store.resolve("mine").text_path.read_bytes() == data
    assert not list(resolved.text_path.parent.glob("*.part"))


# ---- fast checks and verify ------------------------------------------------------------------------


def test_missing_catalog_model_message_names_the_fix(store: ModelStore) -> None:
    with pytest.raises(ModelNotInstalled) as err:
        store.resolve()  # the default model
    message = str(err.value)
    assert "SmolVLM-256M-Instruct-Q8_0.gguf" in message
    assert "`loupe models pull smolvlm-256m`" in message
    assert "`loupe models import TEXT.gguf --mmproj MMPROJ.gguf`" in message
    with pytest.raises(ModelNotInstalled, match="gated"):
        store.resolve("gemma3-4b")


def test_missing_imported_file_message_says_how_to_reimport(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    text.unlink()
    with pytest.raises(ModelNotInstalled, match=r"loupe models import .* --mmproj .* --name mine") as err:
        store.resolve("mine")
    assert str(text) in str(err.value)
    assert {m.name: m.state for m in store.installed()}["mine"] == "missing"


def test_truncated_file_is_caught_by_resolve_and_verify(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    full = mmproj.stat().st_size
    with mmproj.open("r+b") as f:
        f.truncate(full // 2)
    with pytest.raises(ModelFileCorrupt, match="truncated") as err:
        store.resolve("mine")
    assert str(mmproj) in str(err.value) and "re-import" in str(err.value)
    reports = {r.role: r for r in store.verify("mine")}
    assert reports["text"].ok and reports["text"].problem == ""
    assert not reports["mmproj"].ok
    assert f"expected {full}" in reports["mmproj"].problem
    assert {m.name: m.state for m in store.installed()}["mine"] == "corrupt"


def test_sha256_mismatch_is_caught_by_verify_not_by_the_fast_check(store: ModelStore, pair: tuple[Path, Path]) -> None:
    text, mmproj = pair
    store.import_local(text, mmproj, name="mine")
    expected = sha256(text.read_bytes())
    flip_last_byte(text)  # same size, same magic: only a full hash can tell
    store.resolve("mine")
    reports = {r.role: r for r in store.verify("mine")}
    assert not reports["text"].ok
    assert "sha256 mismatch" in reports["text"].problem
    assert reports["text"].expected_sha256 == expected
    assert reports["text"].actual_sha256 == sha256(text.read_bytes()) != expected
    assert reports["mmproj"].ok


def test_verify_all_covers_models_with_files_on_disk(store: ModelStore, pair: tuple[Path, Path]) -> None:
    store.import_local(*pair, name="mine")
    reports = store.verify()
    assert [(r.name, r.role, r.ok) for r in reports] == [("mine", "text", True), ("mine", "mmproj", True)]


def test_default_model_root_honours_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOUPE_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert default_model_root() == tmp_path / "elsewhere"
    monkeypatch.delenv("LOUPE_MODEL_DIR")
    assert default_model_root().parts[-2:] == ("loupe", "models")


# ---- synthetic models -------------------------------------------------------------------------------


@pytest.fixture
def fake_synthetic(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stand in for models.synthetic (written elsewhere) with a builder that records its calls."""
    calls: list[str] = []

    def build(name: str, out_dir: Path, **_: object) -> types.SimpleNamespace:
        calls.append(name)
        arch = "gemma3" if name == "tiny-gemma3" else "llama"
        text = write_gguf(out_dir / f"{name}.gguf", arch)
        mmproj = write_gguf(out_dir / f"mmproj-{name}.gguf", "clip", projector="idefics3")
        return types.SimpleNamespace(text_path=text, mmproj_path=mmproj)

    monkeypatch.setitem(sys.modules, "models.synthetic", types.SimpleNamespace(build=build))
    return calls


def test_synthetic_model_is_built_once_on_first_use(store: ModelStore, fake_synthetic: list[str]) -> None:
    assert {m.name: m.state for m in store.installed()}["synthetic-gemma3"] == "missing"
    first = store.resolve("synthetic-gemma3")
    second = store.resolve("synthetic-gemma3")
    assert fake_synthetic == ["tiny-gemma3"]
    assert first == second and first.synthetic and first.family == "gemma3"
    assert first.text_path.parent == store.root / "synthetic" / "synthetic-gemma3"
    assert [r.ok for r in store.verify("synthetic-gemma3")] == [True, True]
    with first.text_path.open("r+b") as f:
        f.truncate(10)
    store.resolve("synthetic-gemma3")  # a damaged synthetic model is simply rebuilt
    assert fake_synthetic == ["tiny-gemma3", "tiny-gemma3"]
    assert not list((store.root / "synthetic").glob(".*building*"))


@pytest.mark.parametrize(("name", "family"), [("synthetic-smolvlm", "smolvlm"), ("synthetic-gemma3", "gemma3")])
def test_real_synthetic_models_build_and_import_as_their_family(store: ModelStore, name: str, family: str) -> None:
    pytest.importorskip("models.synthetic")
    built = store.resolve(name)
    assert built.family == family and built.synthetic
    assert store.import_local(built.text_path, built.mmproj_path, name=f"copy-of-{name}").family == family


# ---- pull against a local imitation of the Hub -----------------------------------------------------


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class FakeHub:
    """Serves HEAD/GET /{repo}/resolve/{revision}/{file} with the headers huggingface_hub relies on."""

    files: dict[str, bytes] = field(default_factory=dict)  # "repo/file" -> content
    etag_is_sha256: bool = True  # LFS files: the ETag is the sha256; otherwise a git-style sha1
    cdn_redirect: bool = False  # HEAD answers 302 to another origin, like the real Hub does for LFS files
    drop_once: set[str] = field(default_factory=set)  # files whose next GET is cut off halfway
    ignore_range: bool = False
    fail: tuple[int, dict[str, str]] | None = None
    fail_only: str | None = None  # "GET" or "HEAD": apply `fail` to that method only
    seen: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def etag(self, content: bytes) -> str:
        return sha256(content) if self.etag_is_sha256 else hashlib.sha1(content).hexdigest()

    def gets(self) -> list[Seen]:
        return [s for s in self.seen if s.method == "GET"]


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HubServer

    def log_message(self, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def _answer(self, *, head: bool) -> None:
        hub = self.server.hub
        hub.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = urlsplit(self.path).path
        if hub.fail is not None and hub.fail_only in (None, self.command):
            status, headers = hub.fail
            return self._reply(status, b"", head, headers)
        if path.startswith("/cdn/"):
            key = next((k for k, v in hub.files.items() if hub.etag(v) == path[5:]), None)
            return self._send_file(key, head, {}) if key else self._reply(404, b"", head, {})
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
        key = f"{match['repo']}/{match['file']}" if match else ""
        if key not in hub.files:
            return self._reply(404, b"", head, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        etag = hub.etag(hub.files[key])
        if hub.cdn_redirect:
            return self._reply(
                302,
                b"",
                head,
                {
                    "Location": f"http://localhost:{hub.port}/cdn/{etag}",
                    "X-Linked-ETag": f'"{etag}"',
                    "X-Linked-Size": str(len(hub.files[key])),
                    "X-Repo-Commit": COMMIT,
                },
            )
        return self._send_file(key, head, {"ETag": f'"{etag}"', "X-Repo-Commit": COMMIT})

    def _send_file(self, key: str, head: bool, headers: dict[str, str]) -> None:
        hub = self.server.hub
        content = hub.files[key]
        total = len(content)
        status, start = 200, 0
        requested = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if requested and not hub.ignore_range:
            status, start = 206, int(requested[1])
            headers = {**headers, "Content-Range": f"bytes {start}-{total - 1}/{total}"}
        body = content[start:]
        headers = {**headers, "Accept-Ranges": "bytes"}
        if not head and key in hub.drop_once:
            hub.drop_once.discard(key)
            self._reply(status, body[: len(body) // 2], head, headers, declared=len(body))
            self.close_connection = True  # the client sees the connection die mid-body
            return
        self._reply(status, body, head, headers)

    def _reply(
        self, status: int, body: bytes, head: bool, headers: dict[str, str], declared: int | None = None
    ) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body) if declared is None else declared))
        self.end_headers()
        if not head:
            self.wfile.write(body)
            self.wfile.flush()


class _HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub) -> None:
        super().__init__(("127.0.0.1", 0), _HubHandler)
        self.hub = hub
        hub.port = self.server_address[1]


def _set_hf_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: set the variable and the constant."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hub on 127.0.0.1; the suite-wide offline mode is lifted since only it can be reached."""
    _set_hf_offline(monkeypatch, False)
    fake = FakeHub()
    server = _HubServer(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass
class Remote:
    """One model published on the fake hub, plus a catalog that points at it."""

    text: bytes
    mmproj: bytes
    catalog_path: Path
    repo: str = "test-org/Tiny-GGUF"
    text_file: str = "Tiny-Q8_0.gguf"
    mmproj_file: str = "mmproj-Tiny-Q8_0.gguf"


def publish(hub: FakeHub, tmp_path: Path, *, text_sha: str | None = "", mmproj_sha: str | None = "") -> Remote:
    """Put a tiny model on the hub; sha arguments: "" leaves the catalog empty, None pins the true sha256."""
    work = tmp_path / "publish"
    work.mkdir(exist_ok=True)
    text = write_gguf(work / "t.gguf", "llama", floats=64 * 1024, seed=3).read_bytes()  # ~256 KiB
    mmproj = write_gguf(work / "m.gguf", "clip", projector="idefics3", floats=16 * 1024, seed=4).read_bytes()
    remote = Remote(text, mmproj, tmp_path / "catalog.toml")
    hub.files[f"{remote.repo}/{remote.text_file}"] = text
    hub.files[f"{remote.repo}/{remote.mmproj_file}"] = mmproj
    remote.catalog_path.write_text(
        _catalog_toml(
            remote.repo,
            remote.text_file,
            remote.mmproj_file,
            text_sha256=sha256(text) if text_sha is None else text_sha,
            mmproj_sha256=sha256(mmproj) if mmproj_sha is None else mmproj_sha,
        )
    )
    return remote


def hub_store(hub: FakeHub, remote: Remote, tmp_path: Path, **kwargs: object) -> ModelStore:
    options: dict = {"token": False, "download_retries": 0, "retry_wait_s": 0.0, **kwargs}
    return ModelStore(tmp_path / "store", catalog=load_catalog(remote.catalog_path), endpoint=hub.endpoint, **options)


def test_pull_with_a_matching_catalog_sha256_installs_the_files(hub: FakeHub, tmp_path: Path) -> None:
    hub.cdn_redirect = True
    remote = publish(hub, tmp_path, text_sha=None, mmproj_sha=None)
    store = hub_store(hub, remote, tmp_path, token="hf_secret")
    progress: list[tuple[str, int, int | None]] = []
    resolved = store.pull("tiny", progress=lambda *event: progress.append(event))
    assert resolved.text_path.read_bytes() == remote.text
    assert resolved.mmproj_path.read_bytes() == remote.mmproj
    assert resolved.text_path == store.root / "tiny" / remote.text_file
    manifest = json.loads((store.root / "tiny" / "manifest.json").read_text())
    assert manifest["files"]["text"]["sha256"] == sha256(remote.text)
    assert manifest["files"]["text"]["sha256_source"] == "catalog"
    assert manifest["files"]["mmproj"]["commit"] == COMMIT
    assert (remote.text_file, len(remote.text), len(remote.text)) in progress
    assert not list((store.root / "tiny").glob("*.part"))
    heads = [s for s in hub.seen if s.method == "HEAD"]
    assert len(heads) == 2 and all(s.headers.get("authorization") == "Bearer hf_secret" for s in heads)
    gets = hub.gets()
    assert len(gets) == 2 and all(s.path.startswith("/cdn/") and "authorization" not in s.headers for s in gets)
    before = len(hub.seen)
    assert store.pull("tiny") == resolved  # already installed: no network at all
    assert len(hub.seen) == before
    assert all(r.ok for r in store.verify("tiny"))


def test_pull_with_a_wrong_sha256_moves_the_download_aside(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path, text_sha="0" * 64)
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelFileCorrupt, match="does not match the expected 0000") as err:
        store.pull("tiny")
    corrupt = store.root / "tiny" / f"{remote.text_file}.corrupt"
    assert str(corrupt) in str(err.value) and "loupe models pull tiny" in str(err.value)
    assert corrupt.read_bytes() == remote.text  # kept, not deleted
    assert not (store.root / "tiny" / remote.text_file).exists()  # never at its final name
    with pytest.raises(ModelNotInstalled):
        store.resolve("tiny")


@pytest.mark.parametrize(("etag_is_sha256", "source"), [(True, "hub"), (False, "first-download")])
def test_pull_without_catalog_sha256_trusts_on_first_use(
    hub: FakeHub, tmp_path: Path, etag_is_sha256: bool, source: str
) -> None:
    hub.etag_is_sha256 = etag_is_sha256
    remote = publish(hub, tmp_path)
    store = hub_store(hub, remote, tmp_path)
    resolved = store.pull("tiny")
    manifest = json.loads((store.root / "tiny" / "manifest.json").read_text())
    assert manifest["files"]["text"]["sha256"] == sha256(remote.text)
    assert manifest["files"]["text"]["sha256_source"] == source
    flip_last_byte(resolved.text_path)
    reports = {r.role: r for r in store.verify("tiny")}
    assert not reports["text"].ok and "sha256 mismatch" in reports["text"].problem
    assert f"({source})" in reports["text"].problem


def test_pull_checks_the_hub_published_sha256(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    damaged = remote.mmproj[:-1] + bytes([remote.mmproj[-1] ^ 0xFF])
    hub.files[f"{remote.repo}/{remote.mmproj_file}"] = damaged  # served bytes differ from the published sha256
    hub.etag = lambda content: sha256(remote.mmproj if content == damaged else content)  # type: ignore[method-assign]
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelFileCorrupt, match=r"\(hub\)"):
        store.pull("tiny")
    assert (store.root / "tiny" / f"{remote.mmproj_file}.corrupt").read_bytes() == damaged
    assert (store.root / "tiny" / remote.text_file).read_bytes() == remote.text  # the good file stays


def test_interrupted_pull_resumes_where_it_stopped(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.drop_once.add(f"{remote.repo}/{remote.text_file}")
    store = hub_store(hub, remote, tmp_path)  # no retries inside the call: the second pull resumes
    with pytest.raises(ModelDownloadError, match="run the same command again to resume") as err:
        store.pull("tiny")
    assert "\n" not in str(err.value)
    parts = list((store.root / "tiny").glob("*.part"))
    half = len(remote.text) // 2
    assert len(parts) == 1 and parts[0].stat().st_size == half
    resolved = store.pull("tiny")
    assert resolved.text_path.read_bytes() == remote.text
    assert hub.gets()[-2].headers.get("range") == f"bytes={half}-"  # text resumed, then mmproj fetched
    assert not list((store.root / "tiny").glob("*.part"))


def test_dropped_connection_is_resumed_within_one_pull(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.drop_once.add(f"{remote.repo}/{remote.text_file}")
    store = hub_store(hub, remote, tmp_path, download_retries=2)
    resolved = store.pull("tiny")
    assert resolved.text_path.read_bytes() == remote.text
    assert [g.headers.get("range") for g in hub.gets()][:2] == [None, f"bytes={len(remote.text) // 2}-"]


def test_a_server_that_ignores_range_restarts_the_file(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.drop_once.add(f"{remote.repo}/{remote.text_file}")
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError):
        store.pull("tiny")
    hub.ignore_range = True
    assert store.pull("tiny").text_path.read_bytes() == remote.text


def test_server_error_becomes_a_one_line_download_error(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.fail = (500, {})
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError) as err:
        store.pull("tiny")
    message = str(err.value)
    assert "HTTP 500" in message and "127.0.0.1" in message and "\n" not in message
    assert not (store.root / "tiny" / remote.text_file).exists()


def test_gated_repository_says_to_accept_the_licence(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.fail = (403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError, match=r"is gated: accept its licence at http://127\.0\.0\.1:\d+/test-org"):
        store.pull("tiny")


def test_unreachable_hub_becomes_a_download_error(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = ModelStore(
        tmp_path / "store",
        catalog=load_catalog(remote.catalog_path),
        endpoint=f"http://127.0.0.1:{port}",
        token=False,
    )
    with pytest.raises(ModelDownloadError, match=r"cannot reach 127\.0\.0\.1"):
        store.pull("tiny")


def test_pull_repairs_a_damaged_install_and_keeps_the_bad_copy(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    store = hub_store(hub, remote, tmp_path)
    text_path = store.pull("tiny").text_path
    with text_path.open("r+b") as f:
        f.truncate(100)
    with pytest.raises(ModelFileCorrupt, match="loupe models pull tiny"):
        store.resolve("tiny")
    assert {m.name: m.state for m in store.installed()}["tiny"] == "corrupt"
    assert store.pull("tiny").text_path.read_bytes() == remote.text
    assert (text_path.parent / f"{remote.text_file}.corrupt").stat().st_size == 100


def test_pull_refuses_to_start_without_disk_space(
    hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = publish(hub, tmp_path)
    monkeypatch.setattr("models.download.free_bytes", lambda directory: 1000)
    with pytest.raises(
        ModelDownloadError,
        match=rf"disk space for {remote.text_file} .*: {len(remote.text)} bytes needed, 1000 free",
    ):
        hub_store(hub, remote, tmp_path).pull("tiny")
    assert hub.gets() == []


def test_offline_mode_is_reported_not_bypassed(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = publish(hub, tmp_path)
    _set_hf_offline(monkeypatch, True)
    with pytest.raises(ModelDownloadError, match="offline mode is on"):
        hub_store(hub, remote, tmp_path).pull("tiny")
    assert hub.seen == []


def test_a_failing_download_is_retried_then_reported(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.fail, hub.fail_only = (503, {}), "GET"
    store = hub_store(hub, remote, tmp_path, download_retries=2)
    with pytest.raises(ModelDownloadError, match="HTTP 503") as err:
        store.pull("tiny")
    assert "\n" not in str(err.value)
    assert len(hub.gets()) == 3  # first try + 2 retries


def test_a_partial_file_longer_than_the_remote_one_is_restarted(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.drop_once.add(f"{remote.repo}/{remote.text_file}")
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError):
        store.pull("tiny")
    (part,) = (store.root / "tiny").glob("*.part")
    part.write_bytes(b"x" * (len(remote.text) + 10))  # cannot be a prefix of the file
    assert store.pull("tiny").text_path.read_bytes() == remote.text
    assert hub.gets()[-2].headers.get("range") is None
