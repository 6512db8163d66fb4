"""Where results live: a SQLite store of jobs, items, results, reviews and an audit trail."""

from loupe.store.migrations import SCHEMA_VERSION
from loupe.store.records import ItemRecord, JobRecord, ReviewRecord, StoredResult
from loupe.store.review import ReviewError, ReviewQueue
from loupe.store.sqlite import Store, StoreError, default_db_path

__all__ = [
    "SCHEMA_VERSION", "ItemRecord", "JobRecord", "ReviewError", "ReviewQueue", "ReviewRecord", "Store", "StoreError",
    "StoredResult", "default_db_path",
]
