"""Where results live: a SQLite store of jobs, items, results, reviews and an audit trail."""

from loupe.store.migrations import SCHEMA_VERSION
from loupe.store.records import ItemRecord, JobRecord, ReviewRecord, StoredResult, cache_key
from loupe.store.review import ReviewError, ReviewQueue, for_review, needs_review
from loupe.store.sqlite import Store, StoreError, default_db_path

__all__ = [
    "SCHEMA_VERSION",
    "ItemRecord",
    "JobRecord",
    "ReviewError",
    "ReviewQueue",
    "ReviewRecord",
    "Store",
    "StoreError",
    "StoredResult",
    "cache_key",
    "default_db_path",
    "for_review",
    "needs_review",
]
