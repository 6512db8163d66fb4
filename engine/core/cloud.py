"""Where a cloud endpoint is and how to talk to it: plain settings (the desktop edits them, the cloud backend uses
them), with no client and no key (keys live in the keyring, loupe.core.secrets)."""

from __future__ import annotations

from dataclasses import dataclass

from loupe.core.errors import BackendError

RESPONSE_STYLES = ("json_schema", "json_object", "none")  # how a server takes the schema (loupe.backends.cloud)


@dataclass(frozen=True)
class Preset:
    """Where a provider's OpenAI-compatible endpoint lives and which env var may hold its key."""

    base_url: str
    key_env: str = ""  # "" for servers that need no key
    model: str = ""
    response_format: str = "json_schema"  # one of RESPONSE_STYLES: how this server takes the schema


PRESETS: dict[str, Preset] = {
    "openai": Preset("https://api.openai.com/v1", "OPENAI_API_KEY", "gpt-4o-mini"),
    "gemini": Preset("https://generativelanguage.googleapis.com/v1beta/openai/", "GEMINI_API_KEY", "gemini-2.0-flash"),
    # Anthropic's compatibility layer ignores response_format: the schema rides in the prompt, replies are validated
    "anthropic": Preset(
        "https://api.anthropic.com/v1/", "ANTHROPIC_API_KEY", "claude-3-5-haiku-latest", response_format="none"
    ),
    "ollama": Preset("http://127.0.0.1:11434/v1"),
    "lmstudio": Preset("http://127.0.0.1:1234/v1"),
    "vllm": Preset("http://127.0.0.1:8000/v1"),
    "llama_cpp_server": Preset("http://127.0.0.1:8080/v1"),  # llama.cpp's own `llama-server`
    # `python -m llama_cpp.server` (llama-cpp-python) refuses type json_schema (HTTP 500); it takes json_object + schema
    "llama_cpp_python": Preset("http://127.0.0.1:8000/v1", response_format="json_object"),
}


@dataclass(frozen=True)
class CloudConfig:
    """Everything about one cloud endpoint except its key (which lives in the keyring, see loupe.core.secrets)."""

    preset: str = "openai"
    base_url: str = ""  # "" = the preset's
    model: str = ""  # "" = the preset's
    response_format: str = ""  # "" = the preset's; json_schema | json_object | none (RESPONSE_STYLES)
    enabled: bool = False  # nothing leaves the machine unless the user turned this on
    max_side: int = 1024  # longest image edge sent, in pixels
    image_format: str = "PNG"  # PNG | JPEG
    timeout_s: float = 60.0
    max_retries: int = 3  # extra attempts on 429 / 5xx / timeouts
    backoff_s: float = 0.5  # first backoff; doubles each retry, plus up to 100% jitter
    backoff_max_s: float = 30.0
    price_in_per_mtok: float = 0.0  # USD per million prompt tokens
    price_out_per_mtok: float = 0.0  # USD per million completion tokens

    def preset_entry(self) -> Preset:
        """The preset this config starts from."""
        preset = PRESETS.get(self.preset)
        if preset is None:
            raise BackendError(f"unknown cloud preset {self.preset!r} (known: {', '.join(PRESETS)})")
        return preset

    def schema_style(self) -> str:
        """How the schema is sent: the config's `response_format`, else the preset's."""
        style = self.response_format or self.preset_entry().response_format
        if style not in RESPONSE_STYLES:
            raise BackendError(f"unknown response_format {style!r} (known: {', '.join(RESPONSE_STYLES)})")
        return style

    def resolved(self) -> tuple[str, str]:
        """(base_url, model) after applying the preset."""
        preset = self.preset_entry()
        return (self.base_url or preset.base_url), (self.model or preset.model)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """Estimated USD for one call from the configured prices."""
        return (prompt_tokens * self.price_in_per_mtok + completion_tokens * self.price_out_per_mtok) / 1e6
