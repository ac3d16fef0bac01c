"""Durable outbox: every message that must reach the broker is written here first.

A message leaves the outbox only after the broker acknowledged it (QoS 1 PUBACK), so
an uplink drop, a broker restart or a daemon crash loses nothing. Rows are replayed in
insertion order, which keeps events in order per camera.

Bound: the outbox holds at most `max_bytes` of payload. Past that, the oldest
thumbnails go first, then the oldest `update` events; retained state messages are
coalesced (only the newest per topic is kept); `start` and `end` events are never
dropped (SPEC 3.1).

Open events: every `start` and `update` also records its event as open, in the same
transaction, and its `end` removes it. Whatever is still open when the daemon starts
again was cut off by a crash or a power cut; the daemon then sends its `end` (SPEC:
every started event ends).
"""

from __future__ import annotations

import sqlite3
import time
import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from edge.logs import get_logger


class Kind(StrEnum):
    """What a message is: decides what gives way when the outbox is full."""

    EVENT = "event"  # start / end: never dropped
    UPDATE = "update"  # event update: dropped after thumbnails
    THUMBNAIL = "thumbnail"  # dropped first
    STATE = "state"  # retained state (motion, snapshot, health): newest per topic only


# Lower number = dropped earlier when over budget. EVENT is absent: never dropped.
_DROP_ORDER = (Kind.THUMBNAIL, Kind.UPDATE, Kind.STATE)


@dataclass(frozen=True, slots=True)
class Message:
    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_kind ON outbox(kind, seq);
CREATE INDEX IF NOT EXISTS outbox_topic ON outbox(topic);
CREATE TABLE IF NOT EXISTS open_events (
    event_id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    payload BLOB NOT NULL,
    last_seen REAL NOT NULL
);
"""


@dataclass(frozen=True, slots=True)
class OpenEvent:
    """An event whose `end` was never queued: its latest payload and last sign of life."""

    payload: dict[str, object]
    last_seen: float


# A queued message, and what it does to the open-events table (None: nothing).
_Pending = tuple[str, bytes, int, bool, Kind, dict[str, object] | None]


class Outbox:
    """SQLite (WAL) queue of messages bound for the broker. Used from one thread."""

    def __init__(self, path: Path, max_bytes: int = 100_000_000) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # Small, truncated WAL: it must never be what fills a small disk.
        self._db.execute("PRAGMA wal_autocheckpoint=64")
        self._db.execute("PRAGMA journal_size_limit=262144")
        # FULL: an event is on disk before put() returns, so a power cut or kill -9
        # loses none. Writes are rare (events, not frames), so the SD card is spared.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._max_bytes = max_bytes
        self.dropped = 0
        self._spill: list[_Pending] = []
        self._spill_logged = False
        self._log = get_logger(component="outbox")
        self._bytes = int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)),0) FROM outbox").fetchone()[0])

    def put(self, topic: str, payload: bytes | str, qos: int, retain: bool, kind: Kind) -> None:
        """Store a message durably (committed before this returns).

        If the disk cannot take it (full, read-only), the message waits in memory and
        is written, in order, by the next put or peek that succeeds."""
        data = payload.encode() if isinstance(payload, str) else payload
        self._spill.append((topic, data, qos, retain, kind, None))
        self._flush_spill()

    def put_event(self, topic: str, event: dict[str, object], kind: Kind) -> None:
        """Queue an event message (QoS 1) and, atomically with it, mark its event open
        (`start`, `update`) or closed (`end`)."""
        data = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        self._spill.append((topic, data, 1, False, kind, event))
        self._flush_spill()

    def touch_open(self, camera: str, t: float) -> None:
        """The camera's open event is still alive at `t` (its end, after a crash, is no
        earlier). Best effort: a failed write only makes that end a little early."""
        try:
            with self._db:
                self._db.execute("UPDATE open_events SET last_seen = MAX(last_seen, ?) WHERE camera = ?", (t, camera))
        except sqlite3.Error as exc:
            self._log.warning("outbox_touch_failed", error=str(exc))

    def open_events(self) -> list[OpenEvent]:
        """Events started but never ended, oldest first."""
        rows = self._db.execute("SELECT payload, last_seen FROM open_events ORDER BY rowid").fetchall()
        return [OpenEvent(json.loads(bytes(r[0])), float(r[1])) for r in rows]

    def _flush_spill(self) -> None:
        while self._spill:
            try:
                self._insert(*self._spill[0])
            except sqlite3.Error as exc:
                if not self._spill_logged:
                    self._log.error("outbox_write_failed", error=str(exc), waiting_in_memory=len(self._spill))
                    self._spill_logged = True
                return
            self._spill.pop(0)
            self._spill_logged = False

    def _insert(
        self, topic: str, data: bytes, qos: int, retain: bool, kind: Kind, event: dict[str, object] | None
    ) -> None:
        with self._db:
            if event is not None:
                self._mark(event, data)
            if kind is Kind.STATE:
                removed = self._db.execute(
                    "DELETE FROM outbox WHERE topic = ? AND kind = ? RETURNING LENGTH(payload)",
                    (topic, Kind.STATE.value),
                ).fetchall()
                self._bytes -= sum(r[0] for r in removed)
            self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain, kind, created) VALUES (?,?,?,?,?,?)",
                (topic, data, qos, int(retain), kind.value, time.time()),
            )
            self._bytes += len(data)
            self._enforce_bound()

    def _mark(self, event: dict[str, object], data: bytes) -> None:
        if event["type"] == "end":
            self._db.execute("DELETE FROM open_events WHERE event_id = ?", (event["id"],))
            return
        self._db.execute(
            "INSERT INTO open_events (event_id, camera, payload, last_seen) VALUES (?,?,?,?) "
            "ON CONFLICT(event_id) DO UPDATE SET payload = excluded.payload, "
            "last_seen = MAX(last_seen, excluded.last_seen)",
            (event["id"], event["camera"], data, time.time()),
        )

    def _enforce_bound(self) -> None:
        for kind in _DROP_ORDER:
            while self._bytes > self._max_bytes:
                row = self._db.execute(
                    "DELETE FROM outbox WHERE seq = (SELECT seq FROM outbox WHERE kind = ? "
                    "ORDER BY seq LIMIT 1) RETURNING LENGTH(payload)",
                    (kind.value,),
                ).fetchone()
                if row is None:
                    break
                self._bytes -= row[0]
                self.dropped += 1

    def peek(self, limit: int = 32, after: int = 0) -> list[Message]:
        """The oldest pending messages with seq > after, in order."""
        self._flush_spill()
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, kind FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit),
        ).fetchall()
        return [Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), Kind(r[5])) for r in rows]

    def ack(self, seqs: list[int]) -> None:
        """Remove messages the broker acknowledged."""
        if not seqs:
            return
        marks = ",".join("?" * len(seqs))
        try:
            with self._db:
                removed = self._db.execute(
                    f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING LENGTH(payload)", seqs
                ).fetchall()
        except sqlite3.Error as exc:  # sent again later: delivery is at-least-once
            self._log.warning("outbox_ack_failed", error=str(exc))
            return
        self._bytes -= sum(r[0] for r in removed)

    @property
    def pending(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]) + len(self._spill)

    @property
    def pending_bytes(self) -> int:
        return self._bytes

    def close(self) -> None:
        self._db.close()
