"""Resumable download of one Hub file into a `.part` file, on huggingface_hub's HTTP primitives.

Why not `hf_hub_download`: since huggingface_hub 1.x its temporary file is unique per process
and deleted on failure, so an interrupted pull of a multi-GB model starts again from zero, and it
keeps a second copy in the HF cache. Here the `.part` file lives next to the final file, survives
interruptions (the next pull resumes it with an HTTP Range request), and the caller decides when
it is good enough to be renamed to its final name (after the sha256 check).
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from loupe.models.catalog import ModelError

ProgressFn = Callable[[str, int, int | None], None]
"""progress(filename, bytes_done, bytes_total_or_None), called as bytes arrive."""

_CHUNK = 1 << 20
_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ModelDownloadError(ModelError):
    """The Hub (or the network) did not deliver a file; the message is one line and says what to do."""


@dataclass(frozen=True)
class RemoteFile:
    """Where a file lives on the Hub."""

    repo_id: str
    filename: str
    revision: str = "main"


@dataclass(frozen=True)
class RemoteInfo:
    """What the Hub says about a file before we download it (from a HEAD on /resolve/)."""

    url: str  # where to GET the bytes (a CDN address when the Hub redirects)
    size: int | None
    etag: str
    commit: str
    lfs_sha256: str | None  # the Hub's ETag for LFS files is their sha256


@dataclass(frozen=True)
class Fetcher:
    """Downloads from one Hub endpoint with one token; holds no state between calls."""

    endpoint: str | None = None  # None: huggingface_hub's default (HF_ENDPOINT or huggingface.co)
    token: str | bool | None = None  # None: the token huggingface_hub finds (HF_TOKEN, `hf auth login`)
    retries: int = 3  # extra attempts within one call after a dropped connection or a 5xx
    retry_wait_s: float = 1.0

    def info(self, remote: RemoteFile) -> RemoteInfo:
        """HEAD the file on the Hub; raises ModelDownloadError with a one-line reason."""
        from huggingface_hub import get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(remote.repo_id, remote.filename, revision=remote.revision, endpoint=self.endpoint)
        try:
            meta = get_hf_file_metadata(url, token=self.token, endpoint=self.endpoint)
        except _network_errors() as exc:
            raise ModelDownloadError(self._explain(exc, remote, url)) from exc
        if not meta.commit_hash or not meta.etag:
            raise ModelDownloadError(
                f"{self._host(url)} did not answer like a Hugging Face Hub for {remote.filename} "
                "(no X-Repo-Commit/ETag header); check HF_ENDPOINT and any proxy"
            )
        etag = meta.etag.lower()
        return RemoteInfo(
            url=meta.location,
            size=meta.size,
            etag=etag,
            commit=meta.commit_hash,
            lfs_sha256=etag if _SHA256_RE.fullmatch(etag) else None,
        )

    def list_files(self, repo_id: str, revision: str, patterns: list[str]) -> tuple[str, list[str]]:
        """The commit `revision` points at and the repo files there matching the glob `patterns` (sorted)."""
        from huggingface_hub import HfApi
        from huggingface_hub.utils import filter_repo_objects

        remote = RemoteFile(repo_id, "", revision)
        api = HfApi(endpoint=self.endpoint, token=self.token)
        try:
            info = api.model_info(repo_id, revision=revision)
        except _network_errors() as exc:
            raise ModelDownloadError(self._explain(exc, remote, api.endpoint)) from exc
        names = [s.rfilename for s in info.siblings or []]
        return str(info.sha or revision), sorted(filter_repo_objects(names, allow_patterns=patterns))

    def download(self, remote: RemoteFile, info: RemoteInfo, part: Path, progress: ProgressFn | None = None) -> None:
        """Append the missing bytes of `remote` to `part` (resuming whatever it holds) until complete."""
        _check_free_space(part, info.size, remote.filename)
        for attempt in range(self.retries + 1):
            try:
                self._download_once(remote, info, part, progress)
                return
            except _network_errors() as exc:
                if attempt < self.retries and _is_transient(exc):
                    time.sleep(self.retry_wait_s * (2**attempt))
                    continue
                message = self._explain(exc, remote, info.url)
                raise ModelDownloadError(message + _resume_hint(part, info.size)) from exc

    def _download_once(self, remote: RemoteFile, info: RemoteInfo, part: Path, progress: ProgressFn | None) -> None:
        from huggingface_hub import constants, get_session, hf_raise_for_status
        from huggingface_hub.utils import build_hf_headers

        done = part.stat().st_size if part.exists() else 0
        if info.size is not None and done == info.size:
            return
        if info.size is not None and done > info.size:  # not a prefix of this file: start again
            part.unlink()
            done = 0
        headers = build_hf_headers(token=self.token)
        headers["Accept-Encoding"] = "identity"
        if _origin(info.url) != _origin(self._resolve_url(remote)):
            headers.pop("authorization", None)  # never send the Hub token to a CDN
        if done:
            headers["Range"] = f"bytes={done}-"
        timeout = constants.HF_HUB_DOWNLOAD_TIMEOUT
        with get_session().stream("GET", info.url, headers=headers, timeout=timeout, follow_redirects=True) as response:
            hf_raise_for_status(response)
            if done and response.status_code != 206:  # server ignored Range: start again
                part.unlink()
                done = 0
            elif done:
                _check_content_range(response.headers.get("Content-Range"), done, remote.filename)
            with part.open("ab") as out:
                for chunk in response.iter_bytes():  # as received: a drop loses nothing
                    out.write(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(remote.filename, done, info.size)
        if info.size is not None and done != info.size:
            raise ModelDownloadError(
                f"{remote.filename}: received {done} bytes, the Hub announced {info.size}"
                + _resume_hint(part, info.size)
            )

    def _resolve_url(self, remote: RemoteFile) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(remote.repo_id, remote.filename, revision=remote.revision, endpoint=self.endpoint)

    def _explain(self, exc: BaseException, remote: RemoteFile, url: str) -> str:
        return _explain(exc, remote, self._host(url), self._repo_page(remote))

    def _repo_page(self, remote: RemoteFile) -> str:
        from huggingface_hub import constants

        return f"{(self.endpoint or constants.ENDPOINT).rstrip('/')}/{remote.repo_id}"

    @staticmethod
    def _host(url: str) -> str:
        return urlparse(url).netloc or url


def sha256_file(path: Path, progress: ProgressFn | None = None) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(path.name, done, total)
    return digest.hexdigest()


def free_bytes(directory: Path) -> int:
    """Free space on the file system holding `directory`."""
    return shutil.disk_usage(directory).free


def _check_free_space(part: Path, size: int | None, filename: str) -> None:
    held = part.stat().st_size if part.exists() else 0
    needed = (size or 0) - held
    free = free_bytes(part.parent)
    if needed > free:
        raise ModelDownloadError(
            f"not enough disk space for {filename} in {part.parent}: {needed} bytes needed, {free} free"
        )


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a failed download raises (HTTP client, Hub and I/O errors), as opposed to a bug."""
    import httpx2  # huggingface_hub's HTTP client; HfHubHTTPError derives from httpx2.HTTPError

    return (httpx2.HTTPError, httpx2.StreamError, OSError)


def _explain(exc: BaseException, remote: RemoteFile, host: str, repo_page: str) -> str:
    """One line that says what went wrong and what to do, for any error a download can raise."""
    from huggingface_hub import errors

    what = f"{remote.repo_id}/{remote.filename}@{remote.revision}"
    if isinstance(exc, errors.OfflineModeIsEnabled):
        return f"cannot download {what}: offline mode is on (HF_HUB_OFFLINE); unset it to download"
    if isinstance(exc, errors.GatedRepoError):
        return (
            f"{remote.repo_id} is gated: accept its license at {repo_page} and log in "
            "(`hf auth login` or HF_TOKEN), then pull again"
        )
    if isinstance(exc, errors.RepositoryNotFoundError):
        return f"repository {remote.repo_id} not found on {host} (or it is private and you are not logged in)"
    if isinstance(exc, errors.RevisionNotFoundError):
        return f"revision {remote.revision!r} not found in {remote.repo_id}"
    if isinstance(exc, errors.RemoteEntryNotFoundError):
        return f"file {remote.filename} not found in {remote.repo_id}@{remote.revision}"
    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else "error"
        return f"cannot download {what}: HTTP {status} from {host}; try again later"
    name = type(exc).__name__
    if "Timeout" in name:
        return f"cannot download {what}: {host} timed out; check your connection and try again"
    if name in {"ConnectError", "ConnectionError"} or isinstance(exc, ConnectionError):
        return f"cannot download {what}: cannot reach {host}; check your connection and try again"
    if name in {"RemoteProtocolError", "ReadError", "NetworkError"}:
        return f"cannot download {what}: the connection to {host} was lost"
    if isinstance(exc, OSError):
        return f"cannot download {what}: {exc.strerror or exc}"
    return f"cannot download {what}: {name}: {_first_line(exc)}"


def _is_transient(exc: BaseException) -> bool:
    """Worth retrying within the same call: a dropped/timed-out connection or a 5xx/429 answer."""
    from huggingface_hub import errors

    if isinstance(exc, errors.HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    return type(exc).__name__ in {"RemoteProtocolError", "ReadError", "ReadTimeout", "ConnectTimeout"}


def _check_content_range(value: str | None, start: int, filename: str) -> None:
    match = _CONTENT_RANGE_RE.fullmatch(value or "")
    if match is None or int(match.group(1)) != start:
        raise ModelDownloadError(
            f"{filename}: the server answered a resume request with range {value!r}, expected bytes {start}-"
        )


def _resume_hint(part: Path, size: int | None) -> str:
    held = part.stat().st_size if part.exists() else 0
    if not held:
        return ""
    of = f" of {size}" if size else ""
    return f" ({held}{of} bytes kept in {part.name}; run the same command again to resume)"


def _origin(url: str) -> tuple[str, str, int | None]:
    parsed = urlparse(url)
    return parsed.scheme, (parsed.hostname or "").lower(), parsed.port


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""
