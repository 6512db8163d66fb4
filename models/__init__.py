"""Model catalog, download/store, and synthetic test models."""
