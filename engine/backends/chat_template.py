"""The model's own chat template (Jinja, from the GGUF) made safe to run and rendered around one user message."""

from __future__ import annotations

from pathlib import Path

import jinja2
import jinja2.sandbox
from loupe.core.errors import BackendError, ModelLoadError
from loupe.core.prompt import MEDIA
from loupe.models.chat_templates import BY_PROJECTOR


def template_source(embedded: str | None, model_path: Path, projector: str) -> tuple[str, str]:
    """(template text, note): the file's own `tokenizer.chat_template`, else the template of its family (known by
    the projector), with a note saying so; a ModelLoadError when neither exists."""
    if embedded:
        return embedded, ""
    fallback = BY_PROJECTOR.get(projector)
    if fallback is None:
        known = ", ".join(sorted(BY_PROJECTOR))
        raise ModelLoadError(
            f"{model_path} has no embedded chat template (tokenizer.chat_template), and its projector "
            f"{projector or '(unknown)'} names no family whose template Loupe has ({known})"
        )
    note = f"{model_path.name} has no chat template: using the {projector} family's (models/chat_templates.py)"
    return fallback, note


def load_chat_template(source: str | None, model_path: Path) -> jinja2.Template:
    """Compile `tokenizer.chat_template` in a sandbox; `raise_exception` in it becomes a BackendError."""
    if not source:
        raise ModelLoadError(f"{model_path} has no embedded chat template (tokenizer.chat_template)")
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )

    def raise_exception(message: str) -> None:
        raise BackendError(f"chat template error: {message}")

    env.globals["raise_exception"] = raise_exception
    try:
        return env.from_string(source)
    except jinja2.TemplateError as exc:  # a damaged or hostile template in the file's metadata
        raise ModelLoadError(f"{model_path} has a chat template that does not compile: {exc}") from None


def render_prompt(template: jinja2.Template, text: str, marker: str) -> str:
    """The full prompt text: one user message (each MEDIA placeholder as the projector's `marker`) and the
    generation prompt, with no BOS (the tokenizer adds it)."""
    messages = [{"role": "user", "content": [{"type": "text", "text": text.replace(MEDIA, marker)}]}]
    try:
        return template.render(messages=messages, add_generation_prompt=True, bos_token="", eos_token="")
    except jinja2.TemplateError as exc:  # sandbox refusals and undefined names included
        raise BackendError(f"chat template error: {exc}") from None
