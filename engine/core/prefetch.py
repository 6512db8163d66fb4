"""Read, hash and decode the next image of a batch on one worker thread while the model works on the current one."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from loupe.core.errors import LoupeError
from loupe.core.images.load import LoadedImage, load_image


@dataclass(frozen=True)
class Read:
    """One file read ahead: its (sha256, size) identity and decoded image, each None when it could not be had."""

    identity: tuple[str, int] | None
    image: LoadedImage | None


def file_identity(path: str) -> tuple[str, int] | None:
    """(sha256, size) of a file's bytes, or None when it cannot be read (the engine then says why)."""
    try:
        with open(path, "rb") as f:
            return hashlib.file_digest(f, "sha256").hexdigest(), f.tell()
    except OSError:
        return None


def read(path: str, load: Callable[[str], LoadedImage] = load_image) -> Read:
    """Read `path` once: the decoded image carries the hash of the bytes it came from."""
    try:
        img = load(path)
    except LoupeError:  # the engine reports it when it loads the file itself
        return Read(file_identity(path), None)
    try:
        size = os.path.getsize(path)
    except OSError:  # gone since it was read: the bytes we decoded are still what we analyze
        size = 0
    return Read((img.sha256, size), img)


class Prefetcher:
    """At most one file read ahead, on one worker thread; `take` waits for it."""

    def __init__(self, load: Callable[[str], LoadedImage] = load_image) -> None:
        self._load = load
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loupe-prefetch")
        self._ahead: dict[str, Future[Read]] = {}

    def ahead(self, path: str) -> None:
        """Start reading `path` in the background (dropping any earlier read-ahead nobody took)."""
        if path in self._ahead:
            return
        for stale in self._ahead.values():
            stale.cancel()
        self._ahead = {path: self._pool.submit(read, path, self._load)}

    def take(self, path: str) -> Read:
        """What was read ahead for `path`; else only its identity, now (a cache hit needs no decoded image)."""
        future = self._ahead.pop(path, None)
        if future is not None and not future.cancelled():
            return future.result()
        return Read(file_identity(path), None)

    def close(self) -> None:
        """Stop the worker (a read in progress finishes first)."""
        for future in self._ahead.values():
            future.cancel()
        self._ahead.clear()
        self._pool.shutdown(wait=True)
