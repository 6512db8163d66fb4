"""Find stored results again: similar images (`like`), near-duplicates (`dupes`), field filters (`where`) and
full-text search (`text`), all over one results store (loupe.store), all answering `Hit` rows."""

from loupe.search.filters import Filters, parse_where
from loupe.search.find import Hit, Hits, SearchError, dupes, like, text, where
from loupe.search.index import IndexSummary, backfill, backfill_vectors

__all__ = [
    "Filters",
    "Hit",
    "Hits",
    "IndexSummary",
    "SearchError",
    "backfill",
    "backfill_vectors",
    "dupes",
    "like",
    "parse_where",
    "text",
    "where",
]
