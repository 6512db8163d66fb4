"""The outbox: line-output messages committed with the result and kept until a sink has taken them."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loupe.store.records import dumps, now
from loupe.store.sqlite import Store

DEFAULT_MAX_PENDING = 10_000


@dataclass(frozen=True)
class OutboxEntry:
    """One message owed to one sink."""

    id: int
    sink: str
    destination: str
    result_id: int | None
    payload: dict[str, Any]
    attempts: int
    next_at: float
    last_error: str | None
    state: str


@dataclass(frozen=True)
class Message:
    """What to queue: a payload for a sink (by name) and where it is going."""

    sink: str
    destination: str
    payload: dict[str, Any]


class Outbox:
    """A bounded, ordered queue per sink inside the store file; when full, the oldest pending message of that sink
    is marked `dropped` (counted, never silently lost: `loupe outbox` and the kiosk show it)."""

    def __init__(self, store: Store, *, max_pending: int = DEFAULT_MAX_PENDING) -> None:
        self.store = store
        self.max_pending = max_pending

    def put(self, messages: Sequence[Message], *, result_id: int | None = None) -> int:
        """Queue messages in one transaction; returns how many old ones were dropped to stay within the bound."""
        dropped = 0
        with self.store._tx() as c:
            for m in messages:
                c.execute(
                    "INSERT INTO outbox (sink, destination, result_id, payload, created) VALUES (?, ?, ?, ?, ?)",
                    (m.sink, m.destination, result_id, dumps(m.payload), now()),
                )
                over = (
                    c.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND sink = ?", (m.sink,)).fetchone()[
                        0
                    ]
                    - self.max_pending
                )
                if over > 0:
                    cur = c.execute(
                        "UPDATE outbox SET state = 'dropped', done_at = ? WHERE id IN (SELECT id FROM outbox"
                        " WHERE state = 'pending' AND sink = ? ORDER BY id LIMIT ?)",
                        (now(), m.sink, over),
                    )
                    dropped += cur.rowcount
        return dropped

    def head(self, sink: str) -> OutboxEntry | None:
        """The oldest pending message of a sink (messages go out in order)."""
        row = self.store.conn.execute(
            "SELECT * FROM outbox WHERE state = 'pending' AND sink = ? ORDER BY id LIMIT 1", (sink,)
        ).fetchone()
        return None if row is None else _entry(row)

    def mark_sent(self, entry_id: int) -> None:
        """The sink took it."""
        with self.store._tx() as c:
            c.execute(
                "UPDATE outbox SET state = 'sent', attempts = attempts + 1, last_error = NULL, done_at = ?"
                " WHERE id = ?",
                (now(), entry_id),
            )

    def mark_failed(self, entry_id: int, error: str, retry_in: float) -> None:
        """The sink refused or was unreachable: try again after `retry_in` seconds."""
        with self.store._tx() as c:
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_at = ? WHERE id = ?",
                (error, time.time() + retry_in, entry_id),
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """{sink: {pending, sent, dropped}}."""
        out: dict[str, dict[str, int]] = {}
        for sink, state, n in self.store.conn.execute("SELECT sink, state, COUNT(*) FROM outbox GROUP BY sink, state"):
            out.setdefault(sink, {"pending": 0, "sent": 0, "dropped": 0})[state] = int(n)
        return out

    def has_result(self, result_id: int) -> bool:
        """True when messages for this result were queued already (so a restart does not queue them twice)."""
        return (
            self.store.conn.execute("SELECT 1 FROM outbox WHERE result_id = ? LIMIT 1", (result_id,)).fetchone()
            is not None
        )

    def entries(self, *, state: str | None = None) -> list[OutboxEntry]:
        """Every message (of a state), oldest first."""
        where, args = (" WHERE state = ?", (state,)) if state else ("", ())
        return [_entry(r) for r in self.store.conn.execute(f"SELECT * FROM outbox{where} ORDER BY id", args)]


def _entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row["id"],
        sink=row["sink"],
        destination=row["destination"],
        result_id=row["result_id"],
        payload=json.loads(row["payload"]),
        attempts=row["attempts"],
        next_at=row["next_at"],
        last_error=row["last_error"],
        state=row["state"],
    )
