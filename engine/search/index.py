"""`loupe index`: back-fill what search needs for results stored before it existed (perceptual hashes, text).

Image vectors are not back-filled here: a vector is the model's encoding of the image, which means loading the
model and encoding every image again. Vectors come from analyses made from now on (with a backend that gives them);
results without one are still found by `--dupes`, `--where`, `--text`, and by `--like` through perceptual hashes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from loupe.api import AnalyzeRequest, Engine
from loupe.store import Store


@dataclass(frozen=True)
class IndexSummary:
    """What a back-fill did: results indexed, images whose file could not be read, vectors in the store."""

    indexed: int
    unreadable: int
    results: int
    vectors: int

    def to_dict(self) -> dict[str, int]:
        """A JSON-ready dict."""
        return {
            "indexed": self.indexed,
            "unreadable": self.unreadable,
            "results": self.results,
            "vectors": self.vectors,
        }


def backfill(store: Store, progress: Callable[[int, int], None] | None = None) -> IndexSummary:
    """Hash and index every result that lacks it, each one its own committed transaction (so an interrupted
    back-fill resumes where it stopped); `progress(done, total)` after each."""
    todo = store.unindexed()
    unreadable = 0
    for n, rid in enumerate(todo, 1):
        unreadable += store.index_result(rid)
        if progress is not None:
            progress(n, len(todo))
    results = int(store.conn.execute("SELECT COUNT(*) FROM results").fetchone()[0])
    vectors = int(store.conn.execute("SELECT COUNT(*) FROM image_vectors").fetchone()[0])
    return IndexSummary(len(todo), unreadable, results, vectors)


def backfill_vectors(
    store: Store, engine: Engine, progress: Callable[[int, int], None] | None = None
) -> tuple[int, int]:
    """Image vectors for results stored without one: each image is encoded again by `engine` under its job's task
    (one token decoded, the answer thrown away: only the encoder's pooled output is kept), each result committed
    on its own so an interrupted back-fill resumes. Returns (results given vectors, results whose images could
    not be read or gave none)."""
    todo = store.without_vectors()
    added = missed = 0
    for n, rid in enumerate(todo, 1):
        stored = store.result(rid)
        task = store.job(stored.job_id).task
        task = task.with_options(max_tokens=1, retries=0)
        paths = tuple(image.path.split("#")[0] for image in stored.result.images)
        result = engine.analyze(AnalyzeRequest(paths, task))
        ids = {i.id for i in stored.result.images}
        vectors = [e for e in result.embeddings if e.image_id in ids]
        if vectors:
            store.add_embeddings(rid, vectors)
            added += 1
        else:
            missed += 1
        if progress is not None:
            progress(n, len(todo))
    return added, missed
