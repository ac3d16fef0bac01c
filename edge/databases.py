"""What the box's two SQLite databases (edge/outbox.py, edge/index.py) do alike: how a
writer's connection is opened, a small write-ahead log, and all-or-nothing writes on
their writers' autocommit connections."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path


def connect(path: Path | None, prepare: Callable[[sqlite3.Connection], None]) -> sqlite3.Connection:
    """An autocommit connection to `path` (None: in memory), usable from the writer thread
    that did not open it, made ready by `prepare`; closed again if that fails."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path) if path is not None else ":memory:", isolation_level=None, check_same_thread=False)
    try:
        prepare(db)
    except sqlite3.Error:
        db.close()
        raise
    return db


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
