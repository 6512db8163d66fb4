"""Schema -> token-level decoding constraints, shared by every local backend."""
