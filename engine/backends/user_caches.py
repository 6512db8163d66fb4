"""The on-disk caches every user-facing entry point (CLI, app, local escalation) gives the llama.cpp backend."""

from __future__ import annotations

from typing import Any


def llama_cache_kwargs() -> dict[str, Any]:
    """Keyword arguments for LlamaCppBackend: the task-prefix KV store ($LOUPE_PREFIX_CACHE) and the BF16 projector
    copies ($LOUPE_PROJECTOR_CACHE), each in the per-user cache unless turned off or moved."""
    from loupe.backends.prefix_store import PrefixStore
    from loupe.backends.projector_bf16 import ProjectorCache

    return {"prefix_store": PrefixStore.default(), "projectors": ProjectorCache.default()}
