"""Where results live: a SQLite store of jobs, items, results, reviews and an audit trail."""

from engine.store.migrations import SCHEMA_VERSION
from engine.store.records import ItemRecord, JobRecord, ReviewRecord, StoredResult
from engine.store.review import ReviewError, ReviewQueue
from engine.store.sqlite import Store, StoreError, default_db_path

__all__ = [
    "SCHEMA_VERSION", "ItemRecord", "JobRecord", "ReviewError", "ReviewQueue", "ReviewRecord", "Store", "StoreError",
    "StoredResult", "default_db_path",
]
