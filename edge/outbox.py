"""Durable outbox: every message that must reach the broker is written here first.

A message leaves the outbox only after the broker acknowledged it (QoS 1 PUBACK), so
an uplink drop, a broker restart or a daemon crash loses nothing. Rows are replayed in
insertion order, which keeps events in order per camera.

Bound: the outbox holds at most `max_bytes` of payload. Past that, the oldest
thumbnails go first, then the oldest `update` events; retained state messages are
coalesced (only the newest per topic is kept); `start` and `end` events are never
dropped (SPEC 3.1). Answers to health requests are not coalesced (each request with an
id gets its own answer) but only the newest MAX_REPLIES wait; they give way first.

A message the broker refuses (too large for it) is given up with `refuse()`, so it
never blocks the ones behind it; a refused thumbnail's event, if still queued, then
says `thumbnail: false` (SPEC 3.1: whether the thumbnail was published).

Open events: every `start` and `update` also records its event as open, in the same
transaction, and its `end` removes it. Whatever is still open when the daemon starts
again was cut off by a crash or a power cut; the daemon then sends its `end` (SPEC:
every started event ends).

A dead disk degrades durability, never delivery. A message the disk refuses (full,
read-only, I/O error) waits in memory, is published from there like any row (after
the stored ones, so order holds) and is written when the disk takes writes again. An
acknowledged row the disk will not let us delete is remembered and not sent again. If
the database cannot even be opened at start, the outbox runs in memory and tries the
file again every 30 s, moving what it holds there once it can. Each of these states is
one log line when it begins and one when it ends.
"""

from __future__ import annotations

import json
import sqlite3
import time
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
    REPLY = "reply"  # a health answer to a request with an id: one each, newest MAX_REPLIES kept


# Lower number = dropped earlier when over budget. EVENT is absent: never dropped.
_DROP_ORDER = (Kind.REPLY, Kind.THUMBNAIL, Kind.UPDATE, Kind.STATE)
MAX_REPLIES = 64  # health answers waiting at once: a burst of requests cannot fill the outbox


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
_MEMORY_IDS = 1 << 62  # seqs of messages held in memory: never a database rowid
REOPEN_EVERY_S = 30.0


def _connect(path: Path | None) -> sqlite3.Connection:
    """The outbox database at `path` (None: in memory), schema in place."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(str(path) if path is not None else ":memory:", isolation_level=None, check_same_thread=False)
    try:
        if path is not None:
            db.execute("PRAGMA journal_mode=WAL")
            # Small, truncated WAL: it must never be what fills a small disk.
            db.execute("PRAGMA wal_autocheckpoint=64")
            db.execute("PRAGMA journal_size_limit=262144")
            # FULL: an event is on disk before put() returns, so a power cut or kill -9
            # loses none. Writes are rare (events, not frames), so the SD card is spared.
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
    except sqlite3.Error:
        db.close()
        raise
    return db


class Outbox:
    """SQLite (WAL) queue of messages bound for the broker. Used from one thread."""

    def __init__(self, path: Path, max_bytes: int = 100_000_000) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self.dropped = 0
        self._log = get_logger(component="outbox")
        self._spill: list[tuple[int, _Pending]] = []  # (memory id, message) the disk refused
        self._next_memory_id = _MEMORY_IDS
        self._spill_logged = False
        self._acked_unsaved: set[int] = set()  # acknowledged rows the disk would not let us delete
        self._retry_at = 0.0
        try:
            self._db = _connect(path)
            self.durable = True
        except (sqlite3.Error, OSError) as exc:
            self._log.error("outbox_in_memory", error=str(exc), retry_every_s=REOPEN_EVERY_S)
            self._db = _connect(None)
            self.durable = False
            self._retry_at = time.monotonic() + REOPEN_EVERY_S
        self._bytes = self._stored_bytes()

    def _stored_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)),0) FROM outbox").fetchone()[0])

    def put(self, topic: str, payload: bytes | str, qos: int, retain: bool, kind: Kind) -> None:
        """Store a message durably (committed before this returns); if the disk refuses
        it, it waits in memory (see the module notes)."""
        data = payload.encode() if isinstance(payload, str) else payload
        self._hold((topic, data, qos, retain, kind, None))

    def put_event(self, topic: str, event: dict[str, object], kind: Kind) -> None:
        """Queue an event message (QoS 1) and, atomically with it, mark its event open
        (`start`, `update`) or closed (`end`)."""
        data = json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
        self._hold((topic, data, 1, False, kind, event))

    def _hold(self, message: _Pending) -> None:
        self._spill.append((self._next_memory_id, message))
        self._next_memory_id += 1
        self._flush_spill()
        self._bound_spill()

    def touch_open(self, camera: str, t: float) -> None:
        """The camera's open event is still alive at `t` (its end, after a crash, is no
        earlier). Best effort: a failed write only makes that end a little early."""
        try:
            with self._db:
                self._db.execute("UPDATE open_events SET last_seen = MAX(last_seen, ?) WHERE camera = ?", (t, camera))
        except sqlite3.Error:
            pass  # the disk is already reported by whichever write failed first

    def open_events(self) -> list[OpenEvent]:
        """Events started but never ended, oldest first."""
        rows = self._db.execute("SELECT payload, last_seen FROM open_events ORDER BY rowid").fetchall()
        return [OpenEvent(json.loads(bytes(r[0])), float(r[1])) for r in rows]

    def _flush_spill(self) -> None:
        """Write what waits in memory, in order, for as long as the disk takes it."""
        while self._spill:
            try:
                self._insert(*self._spill[0][1])
            except sqlite3.Error as exc:
                if not self._spill_logged:
                    self._log.error("outbox_write_failed", error=str(exc), waiting_in_memory=len(self._spill))
                    self._spill_logged = True
                return
            self._spill.pop(0)
            if self._spill_logged and not self._spill:
                self._log.info("outbox_write_recovered")
                self._spill_logged = False

    def _bound_spill(self) -> None:
        """Memory obeys the same bound and drop order as the disk."""
        held = sum(len(m[1]) for _i, m in self._spill)
        for kind in _DROP_ORDER:
            for entry in [e for e in self._spill if e[1][4] is kind]:
                if held <= self._max_bytes:
                    return
                self._spill.remove(entry)
                held -= len(entry[1][1])
                self.dropped += 1

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
            if kind is Kind.REPLY:
                self._bound_replies()
            self._enforce_bound()

    def _bound_replies(self) -> None:
        """Only the newest MAX_REPLIES health answers wait: the oldest requester gave up long ago."""
        removed = self._db.execute(
            "DELETE FROM outbox WHERE kind = ? AND seq NOT IN "
            "(SELECT seq FROM outbox WHERE kind = ? ORDER BY seq DESC LIMIT ?) RETURNING LENGTH(payload)",
            (Kind.REPLY.value, Kind.REPLY.value, MAX_REPLIES),
        ).fetchall()
        self._bytes -= sum(r[0] for r in removed)
        self.dropped += len(removed)

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

    def _reopen(self) -> None:
        """In memory since start: try the file again; once it opens, move everything there."""
        if self.durable or time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + REOPEN_EVERY_S
        try:
            disk = _connect(self._path)
            with disk:
                for row in self._db.execute(
                    "SELECT topic, payload, qos, retain, kind, created FROM outbox ORDER BY seq"
                ):
                    disk.execute(
                        "INSERT INTO outbox (topic, payload, qos, retain, kind, created) VALUES (?,?,?,?,?,?)", row
                    )
                for row in self._db.execute("SELECT event_id, camera, payload, last_seen FROM open_events"):
                    disk.execute("INSERT OR REPLACE INTO open_events VALUES (?,?,?,?)", row)
        except (sqlite3.Error, OSError):
            return
        self._db.close()
        self._db, self.durable = disk, True
        self._bytes = self._stored_bytes()
        self._log.info("outbox_durable", path=str(self._path), pending=self.pending)

    def peek(self, limit: int = 32, after: int = 0) -> list[Message]:
        """The oldest pending messages with seq > after, in order: stored rows first,
        then those waiting in memory (they are newer)."""
        self._reopen()
        self._flush_spill()
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, kind FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, limit + len(self._acked_unsaved)),
        ).fetchall()
        found = [
            Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), Kind(r[5]))
            for r in rows
            if r[0] not in self._acked_unsaved
        ][:limit]
        for memory_id, (topic, data, qos, retain, kind, _event) in self._spill:
            if len(found) >= limit:
                break
            if memory_id > after:
                found.append(Message(memory_id, topic, data, qos, retain, kind))
        return found

    def ack(self, seqs: list[int]) -> None:
        """Remove messages the broker acknowledged."""
        in_memory = {s for s in seqs if s >= _MEMORY_IDS}
        if in_memory:
            self._spill = [e for e in self._spill if e[0] not in in_memory]
        stored = [s for s in seqs if s < _MEMORY_IDS] + sorted(self._acked_unsaved)
        if not stored:
            return
        marks = ",".join("?" * len(stored))
        try:
            with self._db:
                removed = self._db.execute(
                    f"DELETE FROM outbox WHERE seq IN ({marks}) RETURNING LENGTH(payload)", stored
                ).fetchall()
        except sqlite3.Error as exc:
            if not self._acked_unsaved:
                self._log.warning("outbox_ack_deferred", error=str(exc))
            self._acked_unsaved.update(stored)  # not sent again; deleted when the disk allows
            return
        self._bytes -= sum(r[0] for r in removed)
        self._acked_unsaved.clear()

    def refuse(self, message: Message) -> None:
        """Give up a message the broker refuses: it leaves the queue like an acknowledged
        one, and a thumbnail's event still waiting says it has none."""
        self.ack([message.seq])
        parts = message.topic.rsplit("/", 3)
        if message.kind is Kind.THUMBNAIL and len(parts) == 4 and parts[1:4:2] == ["events", "thumbnail"]:
            self._unannounce_thumbnail(parts[0] + "/events", parts[2])

    def _unannounce_thumbnail(self, events_topic: str, event_id: str) -> None:
        """Queued messages of event `event_id` (and its open-event record) say `thumbnail: false`."""
        kinds = (Kind.EVENT.value, Kind.UPDATE.value)
        try:
            with self._db:
                for seq, payload in self._db.execute(
                    "SELECT seq, payload FROM outbox WHERE topic = ? AND kind IN (?, ?)", (events_topic, *kinds)
                ).fetchall():
                    changed = _without_thumbnail(bytes(payload), event_id)
                    if changed is not None:
                        self._db.execute("UPDATE outbox SET payload = ? WHERE seq = ?", (changed, seq))
                        self._bytes += len(changed) - len(payload)
                for (payload,) in self._db.execute(
                    "SELECT payload FROM open_events WHERE event_id = ?", (event_id,)
                ).fetchall():
                    changed = _without_thumbnail(bytes(payload), event_id)
                    if changed is not None:
                        self._db.execute("UPDATE open_events SET payload = ? WHERE event_id = ?", (changed, event_id))
        except sqlite3.Error as exc:
            self._log.warning("outbox_unannounce_failed", event_id=event_id[:100], error=str(exc))
        for index, (memory_id, pending) in enumerate(self._spill):
            changed = _without_thumbnail(pending[1], event_id) if pending[0] == events_topic else None
            if changed is not None:
                self._spill[index] = (memory_id, (pending[0], changed, *pending[2:]))

    @property
    def pending(self) -> int:
        try:
            stored = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            stored = len(self._acked_unsaved)
        return stored - len(self._acked_unsaved) + len(self._spill)

    @property
    def pending_bytes(self) -> int:
        return self._bytes + sum(len(m[1]) for _i, m in self._spill)

    def close(self) -> None:
        self._db.close()


def _without_thumbnail(payload: bytes, event_id: str) -> bytes | None:
    """The event JSON with `thumbnail: false` when it is event `event_id`'s and says true; else None."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(event, dict) or event.get("id") != event_id or event.get("thumbnail") is not True:
        return None
    event["thumbnail"] = False
    return json.dumps(event, separators=(",", ":"), allow_nan=False).encode()
