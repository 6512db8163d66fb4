"""The audit trail of everything that leaves the machine: one store row per cloud request, readable back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from loupe.store.sqlite import Store

KIND = "cloud-request"


@dataclass
class StoreAudit:
    """An audit sink for CloudBackend: writes each request (never its key or image bytes) to the store.

    `sources` holds the sha256s of the original image files of the request in hand (set by the runner).
    Like the Store, it must be used on the thread that opened the store (call Engine.analyze, not submit).
    """

    store: Store
    job_id: int | None = None
    sources: tuple[str, ...] = ()

    def __call__(self, call: dict[str, Any]) -> None:
        """Record one request: host, model, HTTP status, bytes out/in, image sha256s, tokens, cost."""
        detail = {**call, "source_sha256": list(self.sources)}
        self.store.record_audit(KIND, destination=str(call.get("host", "")), detail=detail, job_id=self.job_id)


def audit_rows(store: Store, *, job_id: int | None = None) -> list[dict[str, Any]]:
    """Every audited request (oldest first), one flat dict each, for `loupe audit` and exports."""
    sql, args = "SELECT * FROM audit WHERE kind = ?", [KIND]
    if job_id is not None:
        sql += " AND job_id = ?"
        args.append(job_id)
    rows = store.conn.execute(sql + " ORDER BY id", args).fetchall()
    return [
        {
            "id": r["id"],
            "at": r["at"],
            "job_id": r["job_id"],
            "destination": r["destination"],
            **json.loads(r["detail"]),
        }
        for r in rows
    ]


def spend_history(store: Store, *, since: float = 0.0) -> list[tuple[float, float]]:
    """(epoch seconds, USD) of every audited request since `since`, to seed a budget Ledger's windows."""
    out = []
    for row in audit_rows(store):
        t = datetime.fromisoformat(row["at"]).timestamp()
        if t >= since:
            out.append((t, float(row.get("cost_usd") or 0.0)))
    return out


def totals(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Requests, bytes out/in and estimated spend over some audit rows."""
    return {
        "requests": len(rows),
        "bytes_out": sum(int(r.get("bytes_out") or 0) for r in rows),
        "bytes_in": sum(int(r.get("bytes_in") or 0) for r in rows),
        "cost_usd": round(sum(float(r.get("cost_usd") or 0.0) for r in rows), 8),
    }
