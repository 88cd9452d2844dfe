"""The per-agent key-value store behind the `kv` tool: SQLite under AF_DATA_DIR.

Durable across executor restarts, so an agent re-dispatched to the same executor sees what its earlier
attempt stored. One connection per worker thread (SQLite connections are not shared across threads);
WAL lets readers run beside the writer.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

MAX_KEY_BYTES = 256
MAX_VALUE_BYTES = 64 * 1024
MAX_KEYS_PER_AGENT = 1024


class KvFull(Exception):
    """The agent already holds MAX_KEYS_PER_AGENT keys."""


class KvStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS kv (agent_id TEXT NOT NULL, key BLOB NOT NULL, value BLOB NOT NULL,"
                " PRIMARY KEY (agent_id, key)) WITHOUT ROWID"
            )

    def _connect(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
        return conn

    def get(self, agent_id: str, key: bytes) -> bytes | None:
        row = self._connect().execute("SELECT value FROM kv WHERE agent_id=? AND key=?", (agent_id, key)).fetchone()
        return bytes(row[0]) if row else None

    def put(self, agent_id: str, key: bytes, value: bytes) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            exists = conn.execute("SELECT 1 FROM kv WHERE agent_id=? AND key=?", (agent_id, key)).fetchone()
            if not exists:
                (count,) = conn.execute("SELECT COUNT(*) FROM kv WHERE agent_id=?", (agent_id,)).fetchone()
                if count >= MAX_KEYS_PER_AGENT:
                    raise KvFull(agent_id)
            conn.execute("INSERT OR REPLACE INTO kv (agent_id, key, value) VALUES (?, ?, ?)", (agent_id, key, value))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
