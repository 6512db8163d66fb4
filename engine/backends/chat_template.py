"""The model's own chat template (Jinja, from the GGUF) made safe to run and rendered around one user message."""

from __future__ import annotations

from pathlib import Path

import jinja2
import jinja2.sandbox

from engine.errors import BackendError, ModelLoadError
from engine.prompt import MEDIA


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
