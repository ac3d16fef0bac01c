"""The recordings index (SQLite, WAL): one row per finished segment, and event links.

Crash rules (after Moonfire NVR): a segment file is written and fsynced before its
row is inserted; a deletion is marked in the index before the file is unlinked, and
the row dropped after. So after any crash the index names no file that is missing
except rows marked `deleting`, which the start-up sweep finishes (edge.retention).
On a read-only or full disk the index may not open at start: it can be opened later.

One writer thread owns the write connection (after Moonfire NVR's db layer): writes are
queued to it and it commits whatever is queued in one transaction, so a recorder's
segment row, retention's marks and the event loop's event links never wait for each
other's commits and checkpoints (the checkpoints are what fsync: WAL + NORMAL).
Recorder and retention threads wait for their write's result; the event loop only
queues its links (`link_event` returns a future) and reads the totals the writer keeps.
Reads go through a connection of the reading thread's own: a WAL reader sees the last
commit and never waits for the writer.

Each row carries the SHA-256 of its file, computed by the recorder while it wrote the
bytes (edge.recorder.SegmentFile) and stored when the segment closes; rows indexed
before hashes were kept (schema version 1) have none. `IndexReader` is the read-only
view the `export` and `verify` commands use beside the running daemon (the daemon is
the one writer).
"""

from __future__ import annotations

import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from edge.databases import connect, small_wal, transaction

SCHEMA_VERSION = 2  # 2: segments.sha256
MAX_BATCH = 256  # writes committed together

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

T = TypeVar("T")
# A queued write: runs in the writer's transaction, returns (result, change to the indexed bytes).
_WriteFn = Callable[[sqlite3.Connection], tuple[Any, int]]


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


@dataclass(frozen=True, slots=True)
class _Write:
    fn: _WriteFn
    future: Future[Any]


def migrate(db: sqlite3.Connection) -> None:
    """Bring an index made by an older nvr-edge up to SCHEMA_VERSION (in place, one transaction)."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(segments)")}
    with transaction(db):
        if "sha256" not in columns:
            db.execute("ALTER TABLE segments ADD COLUMN sha256 TEXT")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def _connect_writer(path: Path) -> sqlite3.Connection:
    return connect(path, _prepare)


def _prepare(db: sqlite3.Connection) -> None:
    small_wal(db)
    db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable at checkpoints, never corrupt
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(_SCHEMA)
    migrate(db)


def _totals(db: sqlite3.Connection) -> tuple[int, float | None]:
    size, oldest = db.execute("SELECT COALESCE(SUM(bytes), 0), MIN(start) FROM segments WHERE deleting = 0").fetchone()
    return int(size), oldest


def _oldest(db: sqlite3.Connection) -> float | None:
    row = db.execute("SELECT start FROM segments WHERE deleting = 0 ORDER BY start LIMIT 1").fetchone()
    return None if row is None else float(row[0])


class RecordingIndex:
    """Finished segments and their event links.

    Owner: its writer thread (write connection, totals); any thread may queue writes, read
    `totals` and query through a connection of its own."""

    def __init__(self, path: Path, connect: bool = True) -> None:
        self._path = path
        self._open_lock = threading.Lock()  # one open() at a time
        self._lock = threading.Lock()  # guards the writer's queue, closing and the readers list
        self._queue: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._bytes = 0  # indexed bytes of segments not being deleted: the writer's
        self._totals: tuple[int, float | None] = (0, None)  # published by the writer
        self._generation = 0  # bumped by close(): each thread's read connection is renewed
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        if connect:
            self.open()

    def open(self) -> None:
        """Connect and create the schema. Raises OSError or sqlite3.Error when the disk is
        read-only or full: the caller retries later (the daemon starts without recording)."""
        with self._open_lock:
            if self._writer is not None:
                return
            db = _connect_writer(self._path)
            try:
                self._bytes, oldest = _totals(db)
            except sqlite3.Error:
                db.close()
                raise
            requests: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
            writer = threading.Thread(target=self._run, args=(db, requests), name="index-writer", daemon=True)
            with self._lock:
                self._totals = (self._bytes, oldest)
                self._queue, self._writer = requests, writer
            writer.start()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    # -- the writer thread -------------------------------------------------------------------
    def _run(self, db: sqlite3.Connection, requests: queue.SimpleQueue[_Write | None]) -> None:
        closing = False
        while not closing:
            batch: list[_Write] = []
            item = requests.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= MAX_BATCH:
                    break
                try:
                    item = requests.get_nowait()
                except queue.Empty:
                    break
            closing = item is None
            if batch:
                self._commit(db, batch)
        db.close()

    def _commit(self, db: sqlite3.Connection, batch: list[_Write]) -> None:
        """The batch in one transaction; if that fails, each write alone, so each caller gets
        its own answer (a full disk may take a link but not a new row)."""
        try:
            with transaction(db):
                outcomes = [write.fn(db) for write in batch]
        except Exception:  # noqa: BLE001 - sorted out one write at a time below
            for write in batch:
                self._commit_one(db, write)
        else:
            self._bytes += sum(delta for _result, delta in outcomes)
            for write, (result, _delta) in zip(batch, outcomes, strict=True):
                write.future.set_result(result)
        try:
            self._totals = (self._bytes, _oldest(db))
        except sqlite3.Error:
            self._totals = (self._bytes, self._totals[1])

    def _commit_one(self, db: sqlite3.Connection, write: _Write) -> None:
        try:
            with transaction(db):
                result, delta = write.fn(db)
        except Exception as exc:  # noqa: BLE001 - the caller's to handle (sqlite3.Error: the disk)
            write.future.set_exception(exc)
            return
        self._bytes += delta
        write.future.set_result(result)

    def _queue_write(self, fn: _WriteFn) -> Future[Any]:
        future: Future[Any] = Future()
        with self._lock:
            if self._writer is None:
                raise sqlite3.OperationalError("the recordings index is not open")
            self._queue.put(_Write(fn, future))
        return future

    # -- writes --------------------------------------------------------------------------------
    def add(self, camera: str, path: str, start: float, end: float, size: int, sha256: str | None = None) -> int:
        """Index a finished (fsynced) segment; waits for the commit. Not on the event loop."""

        def write(db: sqlite3.Connection) -> tuple[int, int]:
            old = db.execute("SELECT bytes, deleting FROM segments WHERE path = ?", (path,)).fetchone()
            cur = db.execute(
                "INSERT OR REPLACE INTO segments (camera, path, start, end, bytes, sha256) VALUES (?,?,?,?,?,?)",
                (camera, path, start, end, size, sha256),
            )
            replaced = int(old[0]) if old is not None and not old[1] else 0
            return int(cur.lastrowid or 0), size - replaced

        return int(self._queue_write(write).result())

    def link_event(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> Future[bool]:
        """Protect the segments covering [t0, t1] as footage of `event_id`. Queued, never waits:
        resolves to False if the index could not be written (disk full): callers retry later."""

        def write(db: sqlite3.Connection) -> tuple[None, int]:
            db.execute(
                "INSERT OR REPLACE INTO segment_events (segment_id, event_id, event_time) "
                "SELECT id, ?, ? FROM segments WHERE camera = ? AND deleting = 0 AND end >= ? AND start <= ?",
                (event_id, event_time, camera, t0, t1),
            )
            return None, 0

        linked: Future[bool] = Future()
        try:
            queued = self._queue_write(write)
        except sqlite3.Error:
            linked.set_result(False)
            return linked
        queued.add_done_callback(lambda done: linked.set_result(done.exception() is None))
        return linked

    def mark_deleting(self, segment_id: int) -> None:
        def write(db: sqlite3.Connection) -> tuple[None, int]:
            rows = db.execute(
                "UPDATE segments SET deleting = 1 WHERE id = ? AND deleting = 0 RETURNING bytes", (segment_id,)
            ).fetchall()
            return None, -sum(int(r[0]) for r in rows)

        self._queue_write(write).result()

    def unmark_deleting(self, segment_id: int) -> None:
        """The file could not be unlinked (read-only disk): it still counts."""

        def write(db: sqlite3.Connection) -> tuple[None, int]:
            rows = db.execute(
                "UPDATE segments SET deleting = 0 WHERE id = ? AND deleting = 1 RETURNING bytes", (segment_id,)
            ).fetchall()
            return None, sum(int(r[0]) for r in rows)

        self._queue_write(write).result()

    def remove(self, segment_id: int) -> None:
        def write(db: sqlite3.Connection) -> tuple[None, int]:
            rows = db.execute("DELETE FROM segments WHERE id = ? RETURNING bytes, deleting", (segment_id,)).fetchall()
            return None, -sum(int(r[0]) for r in rows if not r[1])

        self._queue_write(write).result()

    # -- reads -------------------------------------------------------------------------------------
    def _reader(self) -> sqlite3.Connection:
        """This thread's read connection (made on first use, renewed after a close and reopen)."""
        if self._writer is None:
            raise sqlite3.OperationalError("the recordings index is not open")
        generation = self._generation
        local = self._local
        if getattr(local, "generation", None) != generation:
            db = sqlite3.connect(str(self._path), isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA query_only=ON")
            with self._lock:
                self._readers.append(db)
            local.db, local.generation = db, generation
        return local.db  # type: ignore[no-any-return]

    def paths_between(self, camera: str, t0: float, t1: float) -> list[str]:
        """Finished segments of `camera` overlapping [t0, t1], oldest first."""
        rows = (
            self._reader()
            .execute(
                "SELECT path FROM segments WHERE camera = ? AND deleting = 0 AND end >= ? AND start <= ? "
                "ORDER BY start",
                (camera, t0, t1),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def deletion_order(self, protect_s: float, now: float, limit: int = 64) -> list[Segment]:
        """Oldest first, footage of events after plain footage (SPEC 4); event footage
        older than `protect_s` counts as plain."""
        rows = (
            self._reader()
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

    def all_rows(self) -> list[tuple[int, str, int]]:
        """(id, path, deleting) of every row, for the start-up sweep."""
        return [(r[0], r[1], r[2]) for r in self._reader().execute("SELECT id, path, deleting FROM segments")]

    def totals(self) -> tuple[int, float | None]:
        """(bytes of indexed segments, start of the oldest), as of the writer's last commit: never waits."""
        if self._writer is None:
            raise sqlite3.OperationalError("the recordings index is not open")
        return self._totals

    def per_camera(self) -> dict[str, tuple[int, int]]:
        """camera -> (segments, bytes) currently kept."""
        rows = (
            self._reader()
            .execute(
                "SELECT camera, COUNT(*), COALESCE(SUM(bytes), 0) FROM segments WHERE deleting = 0 GROUP BY camera"
            )
            .fetchall()
        )
        return {r[0]: (int(r[1]), int(r[2])) for r in rows}

    def close(self) -> None:
        """Commit what is queued and close every connection. Blocks: not on the event loop."""
        with self._open_lock, self._lock:
            writer, self._writer = self._writer, None
            if writer is None:
                return
            self._generation += 1
            self._queue.put(None)
            readers, self._readers = self._readers, []
        for db in readers:
            with contextlib.suppress(sqlite3.Error):
                db.close()
        writer.join()


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
