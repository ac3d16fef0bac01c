"""All or nothing on SQLite's autocommit connections, for the two databases' writer threads
(edge/outbox.py, edge/index.py): `with transaction(db):` ... BEGIN IMMEDIATE .. COMMIT."""

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
