"""Model catalog, downloads and the model store (the synthetic test-model builders are in loupe.models.synthetic)."""

from loupe.models.catalog import DEFAULT_CATALOG_PATH, CatalogEntry, ModelError, load_catalog
from loupe.models.store import InstalledModel, ModelNotInstalled, ModelStore, default_model_root

__all__ = [
    "DEFAULT_CATALOG_PATH",
    "CatalogEntry",
    "InstalledModel",
    "ModelError",
    "ModelNotInstalled",
    "ModelStore",
    "default_model_root",
    "load_catalog",
]
