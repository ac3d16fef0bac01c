"""The recordings index (SQLite, WAL): one row per finished segment, and event links.

Crash rules (after Moonfire NVR): a segment file is written and fsynced before its
row is inserted; a deletion is marked in the index before the file is unlinked, and
the row dropped after. So after any crash the index names no file that is missing
except rows marked `deleting`, which the start-up sweep finishes (edge.retention).
One connection shared by the recorder threads, serialised by a lock: writes are one
small transaction per finished segment, not per packet, to spare SD cards.
On a read-only or full disk the index may not open at start: it can be opened later.

Each row carries the SHA-256 of its file, computed by the recorder while it wrote the
bytes (edge.recorder.SegmentFile) and stored when the segment closes; rows indexed
before hashes were kept (schema version 1) have none. `IndexReader` is the read-only
view the `export` and `verify` commands use beside the running daemon (the daemon is
the one writer).
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

SCHEMA_VERSION = 2  # 2: segments.sha256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera TEXT NOT NULL,
    path TEXT NOT NULL UNIQUE,          -- relative to <data_dir>/recordings
    start REAL NOT NULL,                -- wall-clock epoch seconds
    end REAL NOT NULL,
    bytes INTEGER NOT NULL,
    deleting INTEGER NOT NULL DEFAULT 0,
    sha256 TEXT                         -- hex, hashed while written; NULL: recorded before hashes were kept
);
CREATE INDEX IF NOT EXISTS segments_camera_time ON segments(camera, start);
CREATE INDEX IF NOT EXISTS segments_start ON segments(start);
CREATE TABLE IF NOT EXISTS segment_events (
    segment_id INTEGER NOT NULL REFERENCES segments(id) ON DELETE CASCADE,
    event_id TEXT NOT NULL,
    event_time REAL NOT NULL,
    PRIMARY KEY (segment_id, event_id)
);
"""


@dataclass(frozen=True, slots=True)
class Segment:
    id: int
    camera: str
    path: str
    start: float
    end: float
    bytes: int
    protected_until: float | None = None  # latest event time + protection, None if no event
    sha256: str | None = None  # hex digest taken while the file was written; None for older rows


def migrate(db: sqlite3.Connection) -> None:
    """Bring an index made by an older nvr-edge up to SCHEMA_VERSION (in place, one transaction)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(segments)")}
    with db:
        if "sha256" not in columns:
            db.execute("ALTER TABLE segments ADD COLUMN sha256 TEXT")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


class RecordingIndex:
    def __init__(self, path: Path, connect: bool = True) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if connect:
            self.open()

    def open(self) -> None:
        """Connect and create the schema. Raises OSError or sqlite3.Error when the disk is
        read-only or full: the caller retries later (the daemon starts without recording)."""
        with self._lock:
            if self._db is not None:
                return
            self._path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                # Small, truncated WAL: it must never be what fills a small disk.
                db.execute("PRAGMA wal_autocheckpoint=64")
                db.execute("PRAGMA journal_size_limit=262144")
                db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
                db.execute("PRAGMA foreign_keys=ON")
                db.executescript(_SCHEMA)
                migrate(db)
            except sqlite3.Error:
                db.close()
                raise
            self._db = db

    @property
    def is_open(self) -> bool:
        return self._db is not None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise sqlite3.OperationalError("the recordings index is not open")
        return self._db

    def add(self, camera: str, path: str, start: float, end: float, size: int, sha256: str | None = None) -> int:
        with self._lock, self._conn() as db:
            cur = db.execute(
                "INSERT OR REPLACE INTO segments (camera, path, start, end, bytes, sha256) VALUES (?,?,?,?,?,?)",
                (camera, path, start, end, size, sha256),
            )
            return int(cur.lastrowid or 0)

    def paths_between(self, camera: str, t0: float, t1: float) -> list[str]:
        """Finished segments of `camera` overlapping [t0, t1], oldest first."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT path FROM segments WHERE camera = ? AND deleting = 0 AND end >= ? AND start <= ? "
                    "ORDER BY start",
                    (camera, t0, t1),
                )
                .fetchall()
            )
        return [r[0] for r in rows]

    def link_event(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> bool:
        """Protect the segments covering [t0, t1] as footage of `event_id`.

        False if the index could not be written (disk full): callers retry later."""
        try:
            self._link_event(camera, event_id, event_time, t0, t1)
        except sqlite3.Error:
            return False
        return True

    def _link_event(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> None:
        with self._lock, self._conn() as db:
            db.execute(
                "INSERT OR REPLACE INTO segment_events (segment_id, event_id, event_time) "
                "SELECT id, ?, ? FROM segments WHERE camera = ? AND deleting = 0 AND end >= ? AND start <= ?",
                (event_id, event_time, camera, t0, t1),
            )

    def deletion_order(self, protect_s: float, now: float, limit: int = 64) -> list[Segment]:
        """Oldest first, footage of events after plain footage (SPEC 4); event footage
        older than `protect_s` counts as plain."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT s.id, s.camera, s.path, s.start, s.end, s.bytes, MAX(e.event_time) AS ev "
                    "FROM segments s LEFT JOIN segment_events e ON e.segment_id = s.id "
                    "WHERE s.deleting = 0 GROUP BY s.id "
                    "ORDER BY (ev IS NOT NULL AND ev + ? >= ?), s.start LIMIT ?",
                    (protect_s, now, limit),
                )
                .fetchall()
            )
        return [Segment(*r) for r in rows]

    def mark_deleting(self, segment_id: int) -> None:
        with self._lock, self._conn() as db:
            db.execute("UPDATE segments SET deleting = 1 WHERE id = ?", (segment_id,))

    def unmark_deleting(self, segment_id: int) -> None:
        """The file could not be unlinked (read-only disk): it still counts."""
        with self._lock, self._conn() as db:
            db.execute("UPDATE segments SET deleting = 0 WHERE id = ?", (segment_id,))

    def remove(self, segment_id: int) -> None:
        with self._lock, self._conn() as db:
            db.execute("DELETE FROM segments WHERE id = ?", (segment_id,))

    def all_rows(self) -> list[tuple[int, str, int]]:
        """(id, path, deleting) of every row, for the start-up sweep."""
        with self._lock:
            return [(r[0], r[1], r[2]) for r in self._conn().execute("SELECT id, path, deleting FROM segments")]

    def totals(self) -> tuple[int, float | None]:
        """(bytes of indexed segments, start of the oldest)."""
        with self._lock:
            size, oldest = (
                self._conn()
                .execute("SELECT COALESCE(SUM(bytes), 0), MIN(start) FROM segments WHERE deleting = 0")
                .fetchone()
            )
        return int(size), oldest

    def per_camera(self) -> dict[str, tuple[int, int]]:
        """camera -> (segments, bytes) currently kept."""
        with self._lock:
            rows = (
                self._conn()
                .execute(
                    "SELECT camera, COUNT(*), COALESCE(SUM(bytes), 0) FROM segments WHERE deleting = 0 GROUP BY camera"
                )
                .fetchall()
            )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def close(self) -> None:
        with self._lock:
            db, self._db = self._db, None
            if db is not None:
                db.close()


_SEGMENT_COLUMNS = "id, camera, path, start, end, bytes, NULL, {sha}"


class IndexReader:
    """A read-only connection to the index, for commands that run beside the daemon.

    Works on an index an older nvr-edge made (no sha256 column: every hash reads None)."""

    def __init__(self, path: Path) -> None:
        if not path.is_file():
            raise FileNotFoundError(f"no recordings index at {path} (has the daemon recorded anything yet?)")
        self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
        self._db.execute("PRAGMA query_only=ON")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(segments)")}
        self._columns = _SEGMENT_COLUMNS.format(sha="sha256" if "sha256" in columns else "NULL")
        self._lock = threading.Lock()

    def _rows(self, where: str, args: tuple[object, ...]) -> list[Segment]:
        with self._lock:
            rows = self._db.execute(f"SELECT {self._columns} FROM segments WHERE deleting = 0 AND {where}", args)
            return [Segment(*row) for row in rows.fetchall()]

    def segments_between(self, camera: str, t0: float, t1: float) -> list[Segment]:
        """Finished segments of `camera` overlapping [t0, t1), oldest first."""
        return self._rows("camera = ? AND end > ? AND start < ? ORDER BY start", (camera, t0, t1))

    def last_before(self, camera: str, t: float) -> Segment | None:
        rows = self._rows("camera = ? AND start < ? ORDER BY end DESC LIMIT 1", (camera, t))
        return rows[0] if rows else None

    def first_after(self, camera: str, t: float) -> Segment | None:
        rows = self._rows("camera = ? AND end > ? ORDER BY start LIMIT 1", (camera, t))
        return rows[0] if rows else None

    def cameras(self) -> list[str]:
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT DISTINCT camera FROM segments WHERE deleting = 0")]

    def all_segments(self, camera: str | None = None) -> list[Segment]:
        if camera is None:
            return self._rows("1 ORDER BY camera, start", ())
        return self._rows("camera = ? ORDER BY start", (camera,))

    def still_indexed(self, segment_id: int) -> bool:
        """False once retention has deleted (or begun deleting) the segment."""
        with self._lock:
            row = self._db.execute("SELECT deleting FROM segments WHERE id = ?", (segment_id,)).fetchone()
        return row is not None and row[0] == 0

    def event_span(self, event_id: str) -> tuple[str, float] | None:
        """(camera, latest time the event was seen) of an event whose footage is indexed, else None."""
        with self._lock:
            row = self._db.execute(
                "SELECT s.camera, MAX(e.event_time) FROM segment_events e JOIN segments s ON s.id = e.segment_id "
                "WHERE e.event_id = ? AND s.deleting = 0 GROUP BY s.camera",
                (event_id,),
            ).fetchone()
        return None if row is None else (str(row[0]), float(row[1]))

    def close(self) -> None:
        with self._lock:
            self._db.close()
