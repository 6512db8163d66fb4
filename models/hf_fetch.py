"""Fetch an MLX / ONNX catalog model (a Hugging Face model directory) file by file, and pin its files.

Directory models take the same resumable download as GGUF pairs (loupe.models.download.Fetcher): the repo's files
matching the entry's `files` patterns are listed at one commit, each goes to a `.part` beside its final name
(resumed with a Range request after an interruption), LFS files are checked against the sha256 the Hub
publishes, and only then renamed. When every file is in, <dir>/manifest.json records each file's sha256 (the
Hub's for LFS files, else the first download's: trust on first use) and size; `dir_problems` checks against
it from then on. Manifests written before (a `sha256` map only) are still read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from loupe.models.catalog import CatalogEntry, ModelError
from loupe.models.download import Fetcher, ProgressFn, RemoteFile, RemoteInfo, sha256_file
from loupe.models.store_files import etag_tag, move_aside, now_iso, read_json, remove_stale_parts, write_json_atomic
from loupe.models.store_records import ModelFileCorrupt

MANIFEST = "manifest.json"


def model_dir(entry: CatalogEntry, root: Path) -> Path:
    """Where the directory of `entry` lives under the model root."""
    return root / entry.name


def fetch(
    entry: CatalogEntry,
    root: Path,
    *,
    offline: bool,
    fetcher: Fetcher | None = None,
    progress: ProgressFn | None = None,
) -> Path:
    """The local directory of `entry`, downloading what it lacks unless `offline` (then it must be there)."""
    target = model_dir(entry, root)
    problems = dir_problems(target)
    if not problems:
        return target
    if offline:
        rel, problem = problems[0]
        what = "is not downloaded" if rel == MANIFEST else f"is incomplete ({rel} {problem})"
        raise ModelError(
            f"model {entry.name!r} {what} and Loupe is offline "
            f"(unset LOUPE_OFFLINE/HF_HUB_OFFLINE, or pass --model-path DIR)"
        )
    return pull_dir(fetcher or Fetcher(), entry, root, progress)


def pull_dir(fetcher: Fetcher, entry: CatalogEntry, root: Path, progress: ProgressFn | None = None) -> Path:
    """Download every file of `entry` that is not already in place (resuming `.part`s), then write the manifest."""
    target = model_dir(entry, root)
    old = pinned_files(target)
    commit, names = fetcher.list_files(entry.repo_id, entry.revision, list(entry.files))
    if not names:
        raise ModelError(
            f"{entry.repo_id}@{entry.revision} has no files matching {', '.join(entry.files)} (catalog error)"
        )
    unsafe = [n for n in names if Path(n).is_absolute() or ".." in Path(n).parts]
    if unsafe:
        raise ModelError(f"{entry.repo_id} lists files outside its directory ({', '.join(unsafe)}); refusing them")
    files = {rel: _pull_file(fetcher, entry, commit, target, rel, old.get(rel), progress) for rel in names}
    write_json_atomic(
        target / MANIFEST,
        {
            "version": 1,
            "name": entry.name,
            "format": entry.format,
            "repo_id": entry.repo_id,
            "revision": entry.revision,
            "patterns": list(entry.files),
            "commit": commit,
            "files": files,
            "sha256": {rel: f["sha256"] for rel, f in files.items()},
        },
    )
    return target


def _pull_file(
    fetcher: Fetcher,
    entry: CatalogEntry,
    commit: str,
    target: Path,
    rel: str,
    recorded: dict[str, Any] | None,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """One file in place and checked; returns its manifest record."""
    final = target / rel
    if recorded and _fast_problem(final, recorded.get("size")) == "":
        return recorded  # already in place: no network for this file
    remote = RemoteFile(entry.repo_id, rel, commit)
    info = fetcher.info(remote)
    expected, source = _expected(info, recorded)
    if final.exists():
        if expected is not None and sha256_file(final) == expected:
            return _record(final, expected, source, info)
        if expected is not None:
            move_aside(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    part = final.with_name(f"{final.name}.{etag_tag(info.etag)}.part")
    remove_stale_parts(final.parent, final.name, keep=part)
    fetcher.download(remote, info, part, progress)
    actual = sha256_file(part)
    if expected is not None and actual != expected:
        bad = move_aside(part)
        raise ModelFileCorrupt(
            f"{rel}: sha256 {actual} does not match the expected {expected} ({source}); the "
            f"download was moved to {bad}. Fix: run `loupe models pull {entry.name}` again"
        )
    os.replace(part, final)
    return _record(final, actual, source or "first-download", info)


def _expected(info: RemoteInfo, recorded: dict[str, Any] | None) -> tuple[str | None, str]:
    """The sha256 a download must have and where it comes from (the Hub's LFS ETag > an earlier record)."""
    if info.lfs_sha256:
        return info.lfs_sha256, "hub"
    if recorded and recorded.get("etag") == info.etag and recorded.get("sha256"):
        return str(recorded["sha256"]), str(recorded.get("sha256_source", "first-download"))
    return None, ""


def _record(path: Path, sha256: str, source: str, info: RemoteInfo) -> dict[str, Any]:
    return {
        "size": path.stat().st_size,
        "sha256": sha256,
        "sha256_source": source,
        "etag": info.etag,
        "commit": info.commit,
        "downloaded_at": now_iso(),
    }


def pinned_files(directory: Path) -> dict[str, dict[str, Any]]:
    """What the manifest pins, path -> {"sha256", and "size" when recorded}; {} without a manifest."""
    manifest = read_json(directory / MANIFEST)
    details = manifest.get("files") if isinstance(manifest.get("files"), dict) else {}
    digests = manifest.get("sha256") if isinstance(manifest.get("sha256"), dict) else {}
    return {rel: {**details.get(rel, {}), "sha256": digest} for rel, digest in digests.items()}


def pin(directory: Path) -> dict[str, str]:
    """Record the sha256 of every file in `directory` (a directory made elsewhere); returns path -> sha256."""
    digests = {
        p.relative_to(directory).as_posix(): sha256_file(p)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and p.name != MANIFEST and ".cache" not in p.parts
    }
    write_json_atomic(directory / MANIFEST, {"version": 1, "sha256": digests})
    return digests


def dir_problems(directory: Path, *, full: bool = False, progress: ProgressFn | None = None) -> list[tuple[str, str]]:
    """(file, problem) for each pinned file that is missing or the wrong size, or with `full` whose sha256
    differs; empty when all is well. A directory without a manifest is one problem."""
    pins = pinned_files(directory)
    if not pins:
        return [(MANIFEST, "is missing (the download never finished)")]
    problems = []
    for rel, pin_ in pins.items():
        problem = _fast_problem(directory / rel, pin_.get("size"))
        if not problem and full:
            actual = sha256_file(directory / rel, progress)
            if actual != pin_["sha256"]:
                problem = f"sha256 mismatch: expected {pin_['sha256']}, got {actual}"
        if problem:
            problems.append((rel, problem))
    return problems


def verify_dir(directory: Path) -> list[str]:
    """Files whose sha256 differs from the pinned one, or that are missing (empty list: all good)."""
    return [rel for rel, _ in dir_problems(directory, full=True)]


def _fast_problem(path: Path, size: int | None) -> str:
    try:
        actual = path.stat().st_size
    except FileNotFoundError:
        return "is missing"
    if size is not None and actual != size:
        return f"is {actual} bytes, expected {size}"
    return ""
