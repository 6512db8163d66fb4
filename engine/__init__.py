"""Loupe: images in, JSON that matches your schema out, with a small vision-language model on your own machine.

The public names (`from loupe import Engine, AnalyzeRequest, ModelSpec, Task, Result, Status, load_task,
open_model`) come from loupe.api, imported on first use so that `import loupe.<anything>` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loupe.api import AnalyzeRequest, Engine, ModelSpec, Result, Status, Task, load_task, open_model

__all__ = ["AnalyzeRequest", "Engine", "ModelSpec", "Result", "Status", "Task", "load_task", "open_model"]


def __getattr__(name: str) -> Any:
    """The facade's names, from loupe.api on first use."""
    if name in __all__:
        from loupe import api

        return getattr(api, name)
    raise AttributeError(f"module 'loupe' has no attribute {name!r}")
