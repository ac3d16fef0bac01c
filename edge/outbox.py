"""Durable outbox: every message that must reach the broker is written here first.

A message leaves the outbox only after the broker acknowledged it (QoS 1 PUBACK), so
an uplink drop, a broker restart or a daemon crash loses nothing. Rows are replayed in
insertion order, which keeps events in order per camera.

One writer thread owns the database (see "one writer thread" below): callers queue
their requests and never wait for the disk; the event loop awaits `peek_async` and
reads the figures the writer publishes. A message is handed to the broker only once it
is committed (synchronous=FULL), and `on_stored` tells its caller when that happened.

Bound: the outbox holds at most `max_bytes` of payload. Past that, the oldest
thumbnails go first, then the oldest `update` events; retained state messages are
coalesced (only the newest per topic is kept); `start` and `end` events are never
dropped (SPEC 3.1). Answers to health requests are not coalesced (each request with an
id gets its own answer) but only the newest MAX_REPLIES wait; they give way first.

Each row keeps the camera it is about and its kind (edge/messages.py), so a purge after
consent was withdrawn decides by the same lookup as the egress.

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

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

from edge.databases import connect, small_wal, transaction
from edge.logs import get_logger
from edge.messages import EventMark, Kind, Outgoing


class Storage(StrEnum):
    """How a message is kept (the `kind` column): decides what gives way when the outbox is full."""

    EVENT = "event"  # start / end: never dropped
    UPDATE = "update"  # event update: dropped after thumbnails
    THUMBNAIL = "thumbnail"  # dropped first
    STATE = "state"  # retained state (motion, snapshot, health, discovery): newest per topic only
    REPLY = "reply"  # a health answer to a request with an id: one each, newest MAX_REPLIES kept


_STORAGE = {
    Kind.EVENT: Storage.EVENT,
    Kind.UPDATE: Storage.UPDATE,
    Kind.THUMBNAIL: Storage.THUMBNAIL,
    Kind.SNAPSHOT: Storage.STATE,
    Kind.MOTION: Storage.STATE,
    Kind.DISCOVERY: Storage.STATE,
    Kind.HEALTH: Storage.STATE,
    Kind.REPLY: Storage.REPLY,
}  # stats and the mosaic are volatile: never stored
# Dropped earlier when over budget comes first. EVENT is absent: never dropped.
_DROP_ORDER = (Storage.REPLY, Storage.THUMBNAIL, Storage.UPDATE, Storage.STATE)
MAX_REPLIES = 64  # health answers waiting at once: a burst of requests cannot fill the outbox


@dataclass(frozen=True, slots=True)
class Message:
    """A message waiting for the broker, as the MQTT link reads it."""

    seq: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    kind: Kind
    camera: str | None = None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    kind TEXT NOT NULL,
    created REAL NOT NULL,
    camera TEXT,
    content TEXT
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


@dataclass(frozen=True, slots=True)
class _Held:
    """A message queued or held in memory, not written yet; `seq` is a memory id."""

    seq: int
    message: Outgoing


_MEMORY_IDS = 1 << 62  # seqs of messages held in memory: never a database rowid
REOPEN_EVERY_S = 30.0


def _connect(path: Path | None) -> sqlite3.Connection:
    """The outbox database at `path` (None: in memory), schema in place."""

    def prepare(db: sqlite3.Connection) -> None:
        if path is not None:
            small_wal(db)
            # FULL: an event is on disk before put() returns, so a power cut or kill -9
            # loses none. Writes are rare (events, not frames), so the SD card is spared.
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        _label_legacy_rows(db)

    return connect(path, prepare)


def _label_legacy_rows(db: sqlite3.Connection) -> None:
    """An outbox written before messages were typed has no `camera` and `content`: add the
    columns and label its rows once from their topics, so the egress can purge them."""
    columns = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
    if "content" in columns:
        return
    with transaction(db):
        db.execute("ALTER TABLE outbox ADD COLUMN camera TEXT")
        db.execute("ALTER TABLE outbox ADD COLUMN content TEXT")
        for seq, topic, payload, kind in db.execute("SELECT seq, topic, payload, kind FROM outbox").fetchall():
            camera, content = _legacy_label(topic, bytes(payload), Storage(kind))
            db.execute("UPDATE outbox SET camera = ?, content = ? WHERE seq = ?", (camera, content.value, seq))


def _legacy_label(topic: str, payload: bytes, storage: Storage) -> tuple[str | None, Kind]:
    """(camera, kind) of a row written before messages were typed (SPEC 3 topic shapes)."""
    parts = topic.split("/")
    if storage in (Storage.EVENT, Storage.UPDATE):
        with contextlib.suppress(ValueError, AttributeError):
            camera = json.loads(payload).get("camera")
            return (camera if isinstance(camera, str) else None), Kind(storage.value)
        return None, Kind(storage.value)
    if storage is Storage.THUMBNAIL:
        return parts[-2].rsplit("-", 1)[0], Kind.THUMBNAIL
    if storage is Storage.REPLY:
        return None, Kind.REPLY
    if len(parts) >= 4 and parts[-3] == "cameras" and parts[-1] in ("snapshot", "motion"):
        return parts[-2], Kind.SNAPSHOT if parts[-1] == "snapshot" else Kind.MOTION
    return None, Kind.HEALTH if parts[-1] == "health" else Kind.DISCOVERY


# -- one writer thread ------------------------------------------------------------------------
#
# Crash steps (after Moonfire NVR's db layer: one writer per database; every other thread
# only enqueues, so nothing on the asyncio loop ever waits for a commit or an fsync):
# 1. put(): the message joins the writer's queue, in memory. A crash here loses it, but it
#    was never handed to the broker and its `on_stored` never ran (the daemon logs an event
#    as raised from there, harness.delivery counts from that line).
# 2. The writer takes everything queued and writes it in ONE transaction (synchronous=FULL:
#    on disk at COMMIT), then runs `on_stored` and answers the peeks queued with it. So the
#    MQTT link only ever sees committed rows (or, on a disk that refuses writes, the
#    messages held in memory: see the module notes).
# 3. ack(): joins the queue; the rows go in a later transaction. A crash before it sends
#    them again: delivery is at least once (SPEC 3.1).
# Invariant: requests take effect in the order they were queued, so a peek sees every
# put, ack and refusal queued before it.

MAX_BATCH = 512  # requests the writer takes at once: one transaction, one fsync for all
RETRY_S = 1.0  # while something waits for the disk (held messages, deferred deletes): retried this often
_IN_CHUNK = 500  # seqs per DELETE ... IN (...): under SQLite's variable limit


@dataclass(slots=True)
class _Request:
    """One call queued for the writer: `apply` changes its state before the transaction,
    `answer` is read after it and resolves `future`."""

    apply: Callable[[], None] | None = None
    answer: Callable[[], object] | None = None
    future: Future[Any] | None = None
    close: bool = False


@dataclass(frozen=True, slots=True)
class _Figures:
    """What the writer last published for other threads to read without waiting."""

    pending: int = 0
    pending_bytes: int = 0
    dropped: int = 0
    applied: int = 0  # puts taken from the queue so far


def _refuse_on_loop(what: str) -> None:
    """The blocking calls wait for the writer, which waits for the disk: never on the loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(f"Outbox.{what}() waits for the disk: on the event loop, await its async form")


class Outbox:
    """SQLite (WAL) queue of messages bound for the broker.

    Owner: its writer thread (database, held messages, deferred deletes); any thread may
    call it (calls queue up) and read `pending`, `pending_bytes`, `dropped` and `durable`."""

    def __init__(self, path: Path, max_bytes: int = 100_000_000) -> None:
        self._path = path
        self._max_bytes = max_bytes
        self._log = get_logger(component="outbox")
        self._queue: queue.SimpleQueue[_Request] = queue.SimpleQueue()
        self._submit_lock = threading.Lock()
        self._submitted = 0  # puts queued (under _submit_lock)
        self._closed = False
        self._figures = _Figures()
        self.durable = False  # set by the writer once the file is open
        self.dropped = 0
        # The writer's own state: touched only on its thread.
        self._db: sqlite3.Connection
        self._bytes = 0
        self._applied = 0
        self._spill: list[_Held] = []  # messages not written yet, in order
        self._next_memory_id = _MEMORY_IDS
        self._spill_logged = False
        self._acked: set[int] = set()  # acknowledged rows not deleted yet: never sent again
        self._ack_logged = False
        self._touches: dict[str, float] = {}  # camera -> latest sign of life of its open event
        self._unannounce: list[tuple[str, str]] = []  # (events topic, event id): stored rows to edit
        self._stored: list[Callable[[], None]] = []  # on_stored callbacks of this batch
        self._retry_at = 0.0
        self._writer = threading.Thread(target=self._run, name="outbox-writer", daemon=True)
        self._writer.start()

    # -- what any thread may call -------------------------------------------------------------
    def put(self, message: Outgoing) -> None:
        """Queue a message; the writer commits it (or, if the disk refuses it, holds it in
        memory) and then calls its `on_stored` on its thread. An event message also marks
        its event open (`start`, `update`) or closed (`end`), in the same transaction.
        Never waits."""
        if message.kind not in _STORAGE:
            raise ValueError(f"a {message.kind} message is volatile: publish it, do not store it")

        def apply() -> None:
            self._spill.append(_Held(self._next_memory_id, message))
            self._next_memory_id += 1
            self._applied += 1
            if message.on_stored is not None:
                self._stored.append(message.on_stored)

        self._submit(_Request(apply=apply), put=True)

    def touch_open(self, camera: str, t: float) -> None:
        """The camera's open event is still alive at `t` (its end, after a crash, is no
        earlier). Best effort: a failed write only makes that end a little early."""

        def apply() -> None:
            self._touches[camera] = max(t, self._touches.get(camera, t))

        self._submit(_Request(apply=apply))

    def ack(self, seqs: list[int]) -> None:
        """The broker acknowledged these: they leave the queue (and are never handed out again)."""
        self._submit(_Request(apply=lambda: self._forget(seqs)))

    def refuse(self, message: Message) -> None:
        """Give up a message the broker refuses: it leaves the queue like an acknowledged
        one, and a thumbnail's event still waiting says it has none."""
        self._submit(_Request(apply=lambda: self._give_up(message)))

    def purge(self, allowed: Callable[[str | None, Kind], bool]) -> Future[int]:
        """Drop every queued message `allowed(camera, kind)` refuses (run on the writer's
        thread); resolves to how many."""
        found: list[int] = []

        def apply() -> None:
            refused = [m.seq for m in self._peek(None, 0) if not allowed(m.camera, m.kind)]
            self._forget(refused)
            found.append(len(refused))

        return self._ask(_Request(apply=apply, answer=lambda: found[0] if found else 0))

    async def peek_async(self, limit: int = 32, after: int = 0) -> list[Message]:
        """`peek` for the event loop: awaits the writer instead of blocking."""
        return await asyncio.wrap_future(self._ask(_Request(answer=lambda: self._peek(limit, after))))

    async def open_events_async(self) -> list[OpenEvent]:
        """`open_events` for the event loop."""
        return await asyncio.wrap_future(self._ask(_Request(answer=self._open_events)))

    def peek(self, limit: int = 32, after: int = 0) -> list[Message]:
        """The oldest pending messages with seq > after, in order: stored rows first, then
        those held in memory (they are newer). Blocks: not on the event loop."""
        _refuse_on_loop("peek")
        return self._ask(_Request(answer=lambda: self._peek(limit, after))).result()

    def open_events(self) -> list[OpenEvent]:
        """Events started but never ended, oldest first. Blocks: not on the event loop."""
        _refuse_on_loop("open_events")
        return self._ask(_Request(answer=self._open_events)).result()

    def sync(self) -> None:
        """Return once everything queued before has been written (or held). Blocks."""
        _refuse_on_loop("sync")
        self._ask(_Request(answer=lambda: None)).result()

    @property
    def pending(self) -> int:
        """Messages waiting for the broker: as of the writer's last batch, plus puts still queued."""
        figures = self._figures
        return figures.pending + self._submitted - figures.applied

    @property
    def pending_bytes(self) -> int:
        """Payload bytes waiting, as of the writer's last batch."""
        return self._figures.pending_bytes

    def close(self) -> None:
        """Write what is queued, close the database, end the writer. Blocks: from the loop,
        call it through asyncio.to_thread."""
        _refuse_on_loop("close")
        with self._submit_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_Request(close=True))
        self._writer.join()

    # -- queueing -------------------------------------------------------------------------------
    def _submit(self, request: _Request, put: bool = False) -> None:
        with self._submit_lock:
            if self._closed:
                raise RuntimeError("the outbox is closed")
            self._submitted += put
            self._queue.put(request)

    def _ask(self, request: _Request) -> Future[Any]:
        request.future = Future()
        self._submit(request)
        return request.future

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        self._open()
        while True:
            batch = self._take()
            for request in batch:
                if request.apply is not None:
                    self._guarded(request.apply)
            self._write()
            self._reopen()
            self._bound_spill()
            self._publish()
            for callback in self._stored:
                self._guarded(callback)
            self._stored.clear()
            for request in batch:
                self._resolve(request)
            if any(r.close for r in batch):
                self._db.close()
                return

    def _guarded(self, call: Callable[[], None]) -> None:
        try:
            call()
        except Exception:  # noqa: BLE001 - one bad request (or callback) must not end the writer
            self._log.exception("outbox_request_failed")

    def _resolve(self, request: _Request) -> None:
        future = request.future
        if future is None or not future.set_running_or_notify_cancel():
            return
        try:
            future.set_result(request.answer() if request.answer is not None else None)
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits for it
            future.set_exception(exc)

    def _take(self) -> list[_Request]:
        """The next batch of requests; [] when it is time to retry what waits for the disk."""
        waiting = self._spill or self._acked or self._touches or self._unannounce or not self.durable
        try:
            batch = [self._queue.get(timeout=RETRY_S if waiting else None)]
        except queue.Empty:
            return []
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _open(self) -> None:
        try:
            self._db = _connect(self._path)
            self.durable = True
        except (sqlite3.Error, OSError) as exc:
            self._log.error("outbox_in_memory", error=str(exc), retry_every_s=REOPEN_EVERY_S)
            self._db = _connect(None)
            self._retry_at = time.monotonic() + REOPEN_EVERY_S
        self._bytes = self._stored_bytes()
        self._publish()

    def _stored_bytes(self) -> int:
        return int(self._db.execute("SELECT COALESCE(SUM(LENGTH(payload)),0) FROM outbox").fetchone()[0])

    def _publish(self) -> None:
        try:
            stored = int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error:
            stored = len(self._acked)
        held = sum(len(h.message.payload) for h in self._spill)
        self._figures = _Figures(
            stored - len(self._acked) + len(self._spill), self._bytes + held, self.dropped, self._applied
        )

    def _forget(self, seqs: list[int]) -> None:
        in_memory = {s for s in seqs if s >= _MEMORY_IDS}
        if in_memory:
            self._spill = [h for h in self._spill if h.seq not in in_memory]
        self._acked.update(s for s in seqs if s < _MEMORY_IDS)

    def _give_up(self, message: Message) -> None:
        self._forget([message.seq])
        parts = message.topic.rsplit("/", 3)
        if message.kind is Kind.THUMBNAIL and len(parts) == 4 and parts[1:4:2] == ["events", "thumbnail"]:
            events_topic, event_id = parts[0] + "/events", parts[2]
            self._unannounce.append((events_topic, event_id))
            for index, held in enumerate(self._spill):
                queued = held.message
                changed = _without_thumbnail(queued.payload, event_id) if queued.topic == events_topic else None
                if changed is not None:
                    self._spill[index] = _Held(held.seq, replace(queued, payload=changed))

    # -- writing: one transaction for the whole batch ---------------------------------------------
    def _write(self) -> None:
        """Deletes, edits, heartbeats and new messages in one transaction; if the disk refuses
        it, each part on its own, so whatever the disk still takes is written."""
        if not (self._acked or self._unannounce or self._touches or self._spill):
            return
        saved = (self._bytes, self.dropped)
        try:
            with transaction(self._db):
                self._delete_acked()
                for events_topic, event_id in self._unannounce:
                    self._unannounce_stored(events_topic, event_id)
                self._write_touches()
                for held in self._spill:
                    self._insert(held.message)
        except sqlite3.Error:
            self._bytes, self.dropped = saved
            self._write_piecewise()
            return
        wrote_held = bool(self._spill)
        self._acked.clear()
        self._unannounce.clear()
        self._touches.clear()
        self._spill.clear()
        self._ack_logged = False
        if wrote_held:
            self._recovered()

    def _write_piecewise(self) -> None:
        try:
            with transaction(self._db):
                self._delete_acked()
            self._acked.clear()
            self._ack_logged = False
        except sqlite3.Error as exc:
            if not self._ack_logged:
                self._log.warning("outbox_ack_deferred", error=str(exc))
                self._ack_logged = True
        for events_topic, event_id in self._unannounce:
            try:
                with transaction(self._db):
                    self._unannounce_stored(events_topic, event_id)
            except sqlite3.Error as exc:
                self._log.warning("outbox_unannounce_failed", event_id=event_id[:100], error=str(exc))
        self._unannounce.clear()
        with contextlib.suppress(sqlite3.Error):  # the disk is already reported by whichever write failed first
            with transaction(self._db):
                self._write_touches()
        self._touches.clear()
        self._flush_spill()

    def _flush_spill(self) -> None:
        """Write what waits in memory, in order, for as long as the disk takes it."""
        wrote = False
        while self._spill:
            saved = (self._bytes, self.dropped)
            try:
                with transaction(self._db):
                    self._insert(self._spill[0].message)
            except sqlite3.Error as exc:
                self._bytes, self.dropped = saved
                if not self._spill_logged:
                    self._log.error("outbox_write_failed", error=str(exc), waiting_in_memory=len(self._spill))
                    self._spill_logged = True
                return
            self._spill.pop(0)
            wrote = True
        if wrote:
            self._recovered()

    def _recovered(self) -> None:
        """After a write of held messages: the end of a write failure, if none are left."""
        if self._spill_logged and not self._spill:
            self._log.info("outbox_write_recovered")
            self._spill_logged = False

    def _delete_acked(self) -> None:
        stored = sorted(self._acked)
        for start in range(0, len(stored), _IN_CHUNK):
            chunk = stored[start : start + _IN_CHUNK]
            removed = self._db.execute(
                f"DELETE FROM outbox WHERE seq IN ({','.join('?' * len(chunk))}) RETURNING LENGTH(payload)", chunk
            ).fetchall()
            self._bytes -= sum(r[0] for r in removed)

    def _write_touches(self) -> None:
        for camera, t in self._touches.items():
            self._db.execute("UPDATE open_events SET last_seen = MAX(last_seen, ?) WHERE camera = ?", (t, camera))

    def _bound_spill(self) -> None:
        """Memory obeys the same bound and drop order as the disk."""
        held = sum(len(h.message.payload) for h in self._spill)
        for storage in _DROP_ORDER:
            for entry in [h for h in self._spill if _STORAGE[h.message.kind] is storage]:
                if held <= self._max_bytes:
                    return
                self._spill.remove(entry)
                held -= len(entry.message.payload)
                self.dropped += 1

    def _insert(self, message: Outgoing) -> None:
        """One message (inside the caller's transaction), its open-event mark and the bound."""
        storage, data = _STORAGE[message.kind], message.payload
        if message.event is not None:
            self._mark(message.event, str(message.camera), data)
        if storage is Storage.STATE:
            removed = self._db.execute(
                "DELETE FROM outbox WHERE topic = ? AND kind = ? RETURNING LENGTH(payload)",
                (message.topic, Storage.STATE.value),
            ).fetchall()
            self._bytes -= sum(r[0] for r in removed)
        self._db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain, kind, created, camera, content) VALUES (?,?,?,?,?,?,?,?)",
            (
                message.topic,
                data,
                message.qos,
                int(message.retain),
                storage.value,
                time.time(),
                message.camera,
                message.kind.value,
            ),
        )
        self._bytes += len(data)
        if storage is Storage.REPLY:
            self._bound_replies()
        self._enforce_bound()

    def _bound_replies(self) -> None:
        """Only the newest MAX_REPLIES health answers wait: the oldest requester gave up long ago."""
        removed = self._db.execute(
            "DELETE FROM outbox WHERE kind = ? AND seq NOT IN "
            "(SELECT seq FROM outbox WHERE kind = ? ORDER BY seq DESC LIMIT ?) RETURNING LENGTH(payload)",
            (Storage.REPLY.value, Storage.REPLY.value, MAX_REPLIES),
        ).fetchall()
        self._bytes -= sum(r[0] for r in removed)
        self.dropped += len(removed)

    def _mark(self, event: EventMark, camera: str, data: bytes) -> None:
        if event.ended:
            self._db.execute("DELETE FROM open_events WHERE event_id = ?", (event.id,))
            return
        self._db.execute(
            "INSERT INTO open_events (event_id, camera, payload, last_seen) VALUES (?,?,?,?) "
            "ON CONFLICT(event_id) DO UPDATE SET payload = excluded.payload, "
            "last_seen = MAX(last_seen, excluded.last_seen)",
            (event.id, camera, data, time.time()),
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

    def _unannounce_stored(self, events_topic: str, event_id: str) -> None:
        """Stored messages of event `event_id` (and its open-event record) say `thumbnail: false`."""
        kinds = (Storage.EVENT.value, Storage.UPDATE.value)
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

    def _reopen(self) -> None:
        """In memory since start: try the file again; once it opens, move everything there."""
        if self.durable or time.monotonic() < self._retry_at:
            return
        self._retry_at = time.monotonic() + REOPEN_EVERY_S
        try:
            disk = _connect(self._path)
            with transaction(disk):
                columns = "topic, payload, qos, retain, kind, created, camera, content"
                for row in self._db.execute(f"SELECT {columns} FROM outbox ORDER BY seq"):
                    disk.execute(f"INSERT INTO outbox ({columns}) VALUES (?,?,?,?,?,?,?,?)", row)
                for row in self._db.execute("SELECT event_id, camera, payload, last_seen FROM open_events"):
                    disk.execute("INSERT OR REPLACE INTO open_events VALUES (?,?,?,?)", row)
        except (sqlite3.Error, OSError):
            return
        self._db.close()
        self._db, self.durable = disk, True
        self._acked.clear()  # their rows were in the memory database: renumbered, handed out afresh
        self._bytes = self._stored_bytes()
        self._log.info("outbox_durable", path=str(self._path), pending=self.pending)

    # -- reading (on the writer thread, after the batch's transaction) ---------------------------
    def _peek(self, limit: int | None, after: int) -> list[Message]:
        """Stored rows first, then those held in memory (they are newer); None: all."""
        rows = self._db.execute(
            "SELECT seq, topic, payload, qos, retain, content, camera FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after, -1 if limit is None else limit + len(self._acked)),
        ).fetchall()
        stored = [r for r in rows if r[0] not in self._acked][:limit]
        found = [Message(r[0], r[1], bytes(r[2]), r[3], bool(r[4]), Kind(r[5]), r[6]) for r in stored]
        for held in self._spill:
            if limit is not None and len(found) >= limit:
                break
            if held.seq > after:
                m = held.message
                found.append(Message(held.seq, m.topic, m.payload, m.qos, m.retain, m.kind, m.camera))
        return found

    def _open_events(self) -> list[OpenEvent]:
        rows = self._db.execute("SELECT payload, last_seen FROM open_events ORDER BY rowid").fetchall()
        return [OpenEvent(json.loads(bytes(r[0])), float(r[1])) for r in rows]


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
