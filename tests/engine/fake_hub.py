"""A local imitation of the Hugging Face Hub on 127.0.0.1, and a catalog and store that point at it."""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from loupe.models.catalog import load_catalog
from loupe.models.store import ModelStore

from tests.engine.model_files import catalog_toml, sha256, write_gguf

COMMIT = "c0ffee" + "0" * 34


@dataclass
class Seen:
    """One request the fake Hub received."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case


@dataclass
class FakeHub:
    """Serves HEAD/GET /{repo}/resolve/{revision}/{file} with the headers huggingface_hub relies on."""

    files: dict[str, bytes] = field(default_factory=dict)  # "repo/file" -> content
    etag_is_sha256: bool = True  # LFS files: the ETag is the sha256; otherwise a git-style sha1
    lfs_suffixes: tuple[str, ...] = ()  # when set, only files ending so are LFS (sha256 ETag), as on the real Hub
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

    def etag_of(self, key: str) -> str:
        """The ETag of file `key`: a git sha1 for a non-LFS file when `lfs_suffixes` is set."""
        content = self.files[key]
        if self.lfs_suffixes and not key.endswith(self.lfs_suffixes):
            return hashlib.sha1(content).hexdigest()
        return self.etag(content)

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
            key = next((k for k in hub.files if hub.etag_of(k) == path[5:]), None)
            return self._send_file(key, head, {}) if key else self._reply(404, b"", head, {})
        listing = re.fullmatch(r"/api/models/(?P<repo>[^/]+/[^/]+)/revision/(?P<rev>[^/]+)", path)
        if listing:  # HfApi.model_info: the repo's commit and its files
            names = [k[len(listing["repo"]) + 1 :] for k in hub.files if k.startswith(listing["repo"] + "/")]
            if not names:
                return self._reply(404, b"", head, {"X-Error-Code": "RepoNotFound"})
            info = {"id": listing["repo"], "sha": COMMIT, "siblings": [{"rfilename": n} for n in names]}
            return self._reply(200, json.dumps(info).encode(), head, {"Content-Type": "application/json"})
        match = re.fullmatch(r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
        key = f"{match['repo']}/{match['file']}" if match else ""
        if key not in hub.files:
            return self._reply(404, b"", head, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
        etag = hub.etag_of(key)
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


def set_hf_offline(monkeypatch: pytest.MonkeyPatch, offline: bool) -> None:
    """huggingface_hub reads HF_HUB_OFFLINE once, at import: set the variable and the constant."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1" if offline else "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hub on 127.0.0.1; the suite-wide offline mode is lifted since only it can be reached."""
    set_hf_offline(monkeypatch, False)
    with serving(FakeHub()) as fake:
        yield fake


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
        catalog_toml(
            remote.repo,
            remote.text_file,
            remote.mmproj_file,
            text_sha256=sha256(text) if text_sha is None else text_sha,
            mmproj_sha256=sha256(mmproj) if mmproj_sha is None else mmproj_sha,
        )
    )
    return remote


def hub_store(hub: FakeHub, remote: Remote, tmp_path: Path, **kwargs: object) -> ModelStore:
    """A ModelStore whose catalog is `remote`'s and whose endpoint is the fake Hub (no retries by default)."""
    options: dict = {"token": False, "download_retries": 0, "retry_wait_s": 0.0, **kwargs}
    return ModelStore(tmp_path / "store", catalog=load_catalog(remote.catalog_path), endpoint=hub.endpoint, **options)


@contextmanager
def serving(fake: FakeHub) -> Iterator[FakeHub]:
    """Serve `fake` on 127.0.0.1 for the duration (outside pytest, e.g. desktop/screenshots.py)."""
    server = _HubServer(fake)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
