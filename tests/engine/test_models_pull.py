"""Model store pulls from a real local fake of the Hub: checksums, resume, retries and errors told plainly."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from loupe.models.catalog import load_catalog
from loupe.models.store import ModelDownloadError, ModelFileCorrupt, ModelNotInstalled, ModelStore

from tests.engine.fake_hub import COMMIT, FakeHub, Remote, hub_store, publish, set_hf_offline
from tests.engine.model_files import flip_last_byte, sha256


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


def interrupted_pull(hub: FakeHub, tmp_path: Path) -> tuple[Remote, ModelStore, str]:
    """A pull whose text file is cut off halfway, with no retries inside the call: (remote, store, the error)."""
    remote = publish(hub, tmp_path)
    hub.drop_once.add(f"{remote.repo}/{remote.text_file}")
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError) as err:
        store.pull("tiny")
    return remote, store, str(err.value)


def test_interrupted_pull_resumes_where_it_stopped(hub: FakeHub, tmp_path: Path) -> None:
    remote, store, message = interrupted_pull(hub, tmp_path)  # the second pull resumes
    assert "run the same command again to resume" in message
    assert "\n" not in message
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
    remote, store, _ = interrupted_pull(hub, tmp_path)
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


def test_gated_repository_says_to_accept_the_license(hub: FakeHub, tmp_path: Path) -> None:
    remote = publish(hub, tmp_path)
    hub.fail = (403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "gated"})
    store = hub_store(hub, remote, tmp_path)
    with pytest.raises(ModelDownloadError, match=r"is gated: accept its license at http://127\.0\.0\.1:\d+/test-org"):
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
    monkeypatch.setattr("loupe.models.download.free_bytes", lambda directory: 1000)
    with pytest.raises(
        ModelDownloadError,
        match=rf"disk space for {remote.text_file} .*: {len(remote.text)} bytes needed, 1000 free",
    ):
        hub_store(hub, remote, tmp_path).pull("tiny")
    assert hub.gets() == []


def test_offline_mode_is_reported_not_bypassed(hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = publish(hub, tmp_path)
    set_hf_offline(monkeypatch, True)
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
    remote, store, _ = interrupted_pull(hub, tmp_path)
    (part,) = (store.root / "tiny").glob("*.part")
    part.write_bytes(b"x" * (len(remote.text) + 10))  # cannot be a prefix of the file
    assert store.pull("tiny").text_path.read_bytes() == remote.text
    assert hub.gets()[-2].headers.get("range") is None
