"""The task prompt's KV cache kept on disk, so a new process does not prefill the same instructions + schema again.

Every request starts with the task's text (instructions and the schema, ~800 tokens for `defects`); within one
process the KV cache already keeps it (loupe.backends.reuse). A fresh process (`loupe analyze` run by a script,
the app or a station restarted) would prefill it again: ~2 s on 2 cores for SmolVLM-256M, about a minute for
Gemma 3 4B. The backend saves that prefix's KV state here once and loads it instead. Only text before the first
image is ever stored (task instructions and schema, no image content), under the per-user cache directory.
Entries are keyed by the model file's identity, the llama.cpp version and the exact tokens; the oldest are
removed past a size bound; a damaged entry is deleted and the prefix evaluated as usual.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from loupe.backends.cache_files import cache_root, trim_lru

DEFAULT_MAX_BYTES = 1 << 30  # Gemma 3 4B's ~800-token prefix is ~110 MB; SmolVLM-256M's ~18 MB
MIN_TOKENS = 32  # shorter prefixes are cheaper to evaluate than to read
_SUFFIX = ".kv"
ENV = "LOUPE_PREFIX_CACHE"  # a directory, or 0/off/no to disable


class PrefixStore:
    """Files `<key>.kv` in one directory, least recently used removed beyond `max_bytes`."""

    def __init__(self, root: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.root = Path(root)
        self.max_bytes = max_bytes

    @classmethod
    def default(cls) -> PrefixStore | None:
        """$LOUPE_PREFIX_CACHE (a directory; 0/off/no: none), else the per-user cache directory."""
        root = cache_root(ENV, "prefix-kv")
        return None if root is None else cls(root)

    @staticmethod
    def key(model: str, tokens: Sequence[int]) -> str:
        """The entry name for `tokens` evaluated by `model` (a string naming the model file and runtime)."""
        h = hashlib.sha256(model.encode())
        h.update(len(tokens).to_bytes(4, "little"))
        h.update(b"".join(int(t).to_bytes(4, "little", signed=True) for t in tokens))
        return h.hexdigest()[:40]

    def load(self, key: str) -> bytes | None:
        """The saved state, or None; a hit is marked as recently used."""
        path = self.root / (key + _SUFFIX)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        with contextlib.suppress(OSError):  # a read-only cache still serves its entries
            os.utime(path)
        return data or None

    def save(self, key: str, data: bytes) -> None:
        """Write atomically, then trim to the size bound. A full disk or read-only cache is not an error."""
        if not data or len(data) > self.max_bytes:
            return
        path = self.root / (key + _SUFFIX)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part")
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            return
        self._trim()

    def discard(self, key: str) -> None:
        """Remove an entry llama.cpp refused (written by another build, or damaged)."""
        (self.root / (key + _SUFFIX)).unlink(missing_ok=True)

    def _trim(self) -> None:
        trim_lru(self.root, "*" + _SUFFIX, self.max_bytes)
