"""The store's table layout, one numbered migration per version (PRAGMA user_version), applied on open."""

from __future__ import annotations

import sqlite3

# Each entry brings a database from version i to version i + 1; never edit a released one, add a new one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: jobs, their items, one result per item, reviews of results
        """CREATE TABLE jobs (
            id INTEGER PRIMARY KEY,
            key TEXT NOT NULL,            -- identity of the command (inputs + task + model + settings)
            task_name TEXT NOT NULL,
            task_key TEXT NOT NULL,       -- sha256 of schema + instructions + options
            task TEXT NOT NULL,           -- JSON: the whole task, so a job can resume and edits be validated
            model TEXT NOT NULL,
            settings TEXT NOT NULL,       -- JSON: backend + model files; part of the cache key
            launch TEXT NOT NULL,         -- JSON: inputs and model arguments, to resume
            created TEXT NOT NULL,
            updated TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('running', 'interrupted', 'done'))
        )""",
        "CREATE INDEX jobs_by_key ON jobs (key, id)",
        """CREATE TABLE items (
            id INTEGER PRIMARY KEY,
            job_id INTEGER NOT NULL REFERENCES jobs (id),
            seq INTEGER NOT NULL,
            path TEXT NOT NULL,
            sha256 TEXT,
            size INTEGER,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
            UNIQUE (job_id, path)
        )""",
        "CREATE INDEX items_by_state ON items (job_id, state, seq)",
        """CREATE TABLE results (
            id INTEGER PRIMARY KEY,
            item_id INTEGER NOT NULL UNIQUE REFERENCES items (id),
            cache_key TEXT,
            cached_from INTEGER REFERENCES results (id),
            status TEXT NOT NULL,
            data TEXT,
            confidence TEXT NOT NULL,
            min_confidence REAL,
            boxes TEXT NOT NULL,
            images TEXT NOT NULL,
            raw TEXT NOT NULL,
            timings TEXT NOT NULL,
            tokens TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            error TEXT,
            model TEXT NOT NULL,
            backend TEXT NOT NULL,
            created TEXT NOT NULL
        )""",
        "CREATE INDEX results_by_cache_key ON results (cache_key)",
        """CREATE TABLE reviews (
            id INTEGER PRIMARY KEY,
            result_id INTEGER NOT NULL REFERENCES results (id),
            decision TEXT NOT NULL CHECK (decision IN ('accept', 'edit', 'reject')),
            data TEXT,
            note TEXT NOT NULL DEFAULT '',
            who TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
    ),
    (  # 2: escalation steps on results, reviews looked up by result, and the audit of what leaves the machine
        "ALTER TABLE results ADD COLUMN escalation TEXT NOT NULL DEFAULT '[]'",
        "CREATE INDEX reviews_by_result ON reviews (result_id, id)",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY,
            at TEXT NOT NULL,
            job_id INTEGER REFERENCES jobs (id),
            kind TEXT NOT NULL,
            destination TEXT NOT NULL DEFAULT '',
            detail TEXT NOT NULL DEFAULT '{}'
        )""",
    ),
    (  # 3: the line-output outbox (engine/outputs): what is owed to MQTT / webhooks / file drops, until delivered
        """CREATE TABLE outbox (
            id INTEGER PRIMARY KEY,
            sink TEXT NOT NULL,           -- 'mqtt', 'webhook', 'file'
            destination TEXT NOT NULL,    -- where it goes (URL, topic), for people reading the queue
            result_id INTEGER REFERENCES results (id),
            payload TEXT NOT NULL,        -- JSON: the verdict message
            created TEXT NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_at REAL NOT NULL DEFAULT 0,  -- unix time before which it is not tried again
            last_error TEXT,
            state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dropped')),
            done_at TEXT
        )""",
        "CREATE INDEX outbox_by_state ON outbox (state, sink, id)",
        "CREATE INDEX outbox_by_result ON outbox (result_id)",
    ),
    (  # 4: the model's own (unconstrained) per-field confidence, beside the renormalized one
        "ALTER TABLE results ADD COLUMN model_confidence TEXT NOT NULL DEFAULT '{}'",
    ),
    (  # 5: search (loupe.search): image vectors, perceptual hashes, and full-text search over answers' text
        """CREATE TABLE image_vectors (
            result_id INTEGER NOT NULL REFERENCES results (id),
            image_id TEXT NOT NULL,       -- the result's ImageInfo.id ('img_01')
            model TEXT NOT NULL,          -- vectors compare only within one model + detail + dim
            detail TEXT NOT NULL,
            dim INTEGER NOT NULL,
            vector BLOB NOT NULL,         -- dim float32 values, little-endian
            PRIMARY KEY (result_id, image_id)
        )""",
        "CREATE INDEX image_vectors_by_model ON image_vectors (model, detail, dim)",
        """CREATE TABLE image_hashes (
            result_id INTEGER NOT NULL REFERENCES results (id),
            image_id TEXT NOT NULL,
            sha256 TEXT,                  -- the image bytes' hash, so identical bytes are hashed once
            phash INTEGER,                -- 64-bit pHash as a signed integer; NULL: the image could not be read
            PRIMARY KEY (result_id, image_id)
        )""",
        "CREATE INDEX image_hashes_by_sha ON image_hashes (sha256)",
        # rowid = results.id; body = the string values of the answer (a person's edit, once there is one)
        "CREATE VIRTUAL TABLE result_text USING fts5 (body, tokenize = 'unicode61 remove_diacritics 2')",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class NewerStoreError(Exception):
    """The file was written by a newer Loupe (its user_version is past our last migration)."""


def version(conn: sqlite3.Connection) -> int:
    """The schema version recorded in the file (0 for a new, empty one)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply every missing migration up to `target`, each in its own transaction; returns the old version.

    `conn` must be in autocommit mode (isolation_level=None) so the BEGIN/COMMIT here are the only ones.
    """
    old = version(conn)
    if old > SCHEMA_VERSION:
        raise NewerStoreError(f"schema version {old} is newer than this Loupe's {SCHEMA_VERSION}; upgrade Loupe")
    for v in range(old, target):
        conn.execute("BEGIN IMMEDIATE")
        try:
            if version(conn) == v:  # another process may have migrated while we waited for the lock
                for statement in MIGRATIONS[v]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {v + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return old
