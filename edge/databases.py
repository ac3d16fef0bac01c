"""What the box's two SQLite databases (edge/outbox.py, edge/index.py) do alike: a small
write-ahead log, and all-or-nothing writes on their writers' autocommit connections."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """The statements inside are written together or not at all (ROLLBACK on any error)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def small_wal(db: sqlite3.Connection) -> None:
    """WAL, checkpointed often and truncated: the log must never be what fills a small disk."""
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA wal_autocheckpoint=64")
    db.execute("PRAGMA journal_size_limit=262144")
