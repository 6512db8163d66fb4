"""The one exception tree of the engine, so callers catch by meaning, not by library.

    LoupeError
    ├── InputError            bad input the user can fix
    │   ├── ImageError        unreadable, truncated, hostile or absurd image
    │   └── TaskError         task file or JSON Schema refused (names the JSON Pointer)
    ├── ModelLoadError        model file missing, truncated, corrupt or of the wrong kind
    ├── ConstraintError       the schema cannot be compiled to a decoding constraint
    └── BackendError          the backend failed while running (not a normal outcome)

Normal outcomes (refused, truncated, invalid) are *values* on `Result.status`, never exceptions.
"""

from __future__ import annotations


class LoupeError(Exception):
    """Base of every error Loupe raises on purpose; `str(err)` is a one-line message for users."""


class InputError(LoupeError):
    """Input the user can fix: the message says what is wrong and where."""


class ImageError(InputError):
    """An image that cannot be used: unreadable, truncated, too large, or a decompression bomb."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


class TaskError(InputError):
    """A task (or its JSON Schema) that cannot be used; `pointer` names the bad part."""

    def __init__(self, source: str, problem: str, pointer: str = "") -> None:
        where = f" at {pointer}" if pointer else ""
        super().__init__(f"{source}: {problem}{where}")
        self.source = source
        self.problem = problem
        self.pointer = pointer


class ModelLoadError(LoupeError):
    """A model that cannot be loaded; the message names the file and the fix."""


class ConstraintError(LoupeError):
    """A schema that the constraint engine refuses to compile."""


class BackendError(LoupeError):
    """A backend failure that is not a normal outcome (e.g. the runtime returned an error code)."""
