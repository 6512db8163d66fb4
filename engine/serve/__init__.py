"""`loupe serve`: a local HTTP API (OpenAI-compatible chat completions + Loupe's own analyze/results)."""
