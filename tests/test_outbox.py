"""The durable outbox: order, acknowledgement, survival across reopen, the drop policy."""

import json
from pathlib import Path

from edge.messages import EventMark, Kind, Outgoing
from edge.outbox import MAX_REPLIES, Outbox, _Request


def _msg(topic: str, payload: str | bytes, kind: Kind, retain: bool = False, camera: str | None = None) -> Outgoing:
    data = payload.encode() if isinstance(payload, str) else payload
    return Outgoing(kind, topic, data, camera, retain=retain)


def _ev(topic: str, event: dict[str, object]) -> Outgoing:
    """An event message as edge.messages.Messages.event builds it."""
    kind = Kind.UPDATE if event["type"] == "update" else Kind.EVENT
    data = json.dumps(event, separators=(",", ":")).encode()
    mark = EventMark(str(event["id"]), ended=event["type"] == "end")
    return Outgoing(kind, topic, data, str(event["camera"]), event=mark)


def _on_writer(box: Outbox, sql: str) -> None:
    """Run `sql` on the outbox's database from its writer thread (the only one that may touch it)."""
    box._ask(_Request(answer=lambda: box._db.execute(sql))).result()


def test_messages_come_back_in_order_until_acked(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(5):
        box.put(_msg("t/events", f"e{i}", Kind.EVENT))
    first = box.peek(3)
    assert [m.payload for m in first] == [b"e0", b"e1", b"e2"]
    box.ack([first[0].seq, first[1].seq])
    assert [m.payload for m in box.peek(10)] == [b"e2", b"e3", b"e4"]
    assert box.pending == 3


def test_pending_messages_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put(_msg("a", b"\x00\xff", Kind.HEALTH, retain=True))
    box.put(_msg("b", "start", Kind.EVENT))
    box.close()
    again = Outbox(path)
    msgs = again.peek(10)
    assert [(m.topic, m.payload, m.retain, m.kind) for m in msgs] == [
        ("a", b"\x00\xff", True, Kind.HEALTH),
        ("b", b"start", False, Kind.EVENT),
    ]
    assert again.pending_bytes == 7


def test_retained_state_keeps_only_the_newest_per_topic(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_msg("cam/motion", "ON", Kind.MOTION, retain=True))
    box.put(_msg("events", "start", Kind.EVENT))
    box.put(_msg("cam/motion", "OFF", Kind.MOTION, retain=True))
    assert [(m.topic, m.payload) for m in box.peek(10)] == [("events", b"start"), ("cam/motion", b"OFF")]


def test_over_budget_thumbnails_then_updates_go_never_starts_or_ends(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    box.put(_msg("events", b"s" * 100, Kind.EVENT))
    box.put(_msg("thumb/1", b"j" * 400, Kind.THUMBNAIL))
    box.put(_msg("events", b"u" * 100, Kind.UPDATE))
    box.put(_msg("thumb/2", b"j" * 400, Kind.THUMBNAIL))
    # 1000 bytes: at the bound, nothing dropped yet.
    box.sync()
    assert box.pending == 4 and box.dropped == 0
    box.put(_msg("events", b"e" * 100, Kind.EVENT))  # over: the oldest thumbnail goes
    assert [m.topic for m in box.peek(10)] == ["events", "events", "thumb/2", "events"]
    for _ in range(10):  # events alone past the bound: updates and thumbnails go, events stay
        box.put(_msg("events", b"x" * 100, Kind.EVENT))
    kinds = [m.kind for m in box.peek(100)]
    assert Kind.THUMBNAIL not in kinds and Kind.UPDATE not in kinds
    assert kinds.count(Kind.EVENT) == 12


def _event(kind: str, event_id: str = "cam-1", camera: str = "cam", score: float = 0.1) -> dict[str, object]:
    return {"id": event_id, "type": kind, "camera": camera, "start_time": 100.0, "end_time": None, "score": score}


def test_started_events_stay_open_until_their_end_is_queued_also_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put(_ev("t/events", _event("start")))
    box.put(_ev("t/events", _event("start", "other-1", "other")))
    box.put(_ev("t/events", _event("update", score=0.3)))
    box.put(_ev("t/events", _event("end", "other-1", "other")))
    assert [json.loads(m.payload)["type"] for m in box.peek(10)] == ["start", "start", "update", "end"]
    box.close()
    again = Outbox(path)
    [still_open] = again.open_events()
    assert still_open.payload["id"] == "cam-1" and still_open.payload["score"] == 0.3  # the latest state
    again.put(_ev("t/events", _event("end")))
    assert again.open_events() == []


def test_touch_keeps_the_latest_sign_of_life_of_a_camera_s_open_event(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_ev("t/events", _event("start")))
    first = box.open_events()[0].last_seen
    box.touch_open("cam", first + 30)
    box.touch_open("cam", first + 10)  # never backwards
    box.touch_open("nobody", first + 99)
    assert box.open_events()[0].last_seen == first + 30


def test_a_disk_that_refuses_writes_delays_durability_not_delivery(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_msg("t/events", "stored", Kind.EVENT))
    _on_writer(box, "PRAGMA query_only=ON")  # the disk refuses every write from here on
    box.put(_msg("t/events", "held", Kind.EVENT))
    box.put(_msg("t/health", "h", Kind.HEALTH, retain=True))
    batch = box.peek(10)
    assert [m.payload for m in batch] == [b"stored", b"held", b"h"]  # stored first: order holds
    assert box.pending == 3
    box.ack([m.seq for m in batch])  # the stored row cannot be deleted ...
    assert box.peek(10) == [] and box.pending == 0  # ... but is not sent again
    _on_writer(box, "PRAGMA query_only=OFF")  # the disk takes writes again
    box.put(_msg("t/events", "later", Kind.EVENT))
    [later] = box.peek(10)
    assert later.payload == b"later"
    box.ack([later.seq])
    box.close()
    assert Outbox(tmp_path / "o.sqlite").peek(10) == []  # the deferred delete happened


def test_an_outbox_that_cannot_open_runs_in_memory_and_moves_to_disk_when_it_can(tmp_path: Path) -> None:
    blocked = tmp_path / "data"
    blocked.write_text("a file where the data directory should be")
    box = Outbox(blocked / "o.sqlite")
    assert not box.durable
    box.put(_ev("t/events", _event("start")))
    box.put(_msg("t/events", "second", Kind.EVENT))
    assert [m.payload for m in box.peek(10)][1:] == [b"second"]
    blocked.unlink()
    box._retry_at = 0.0  # the 30 s retry timer, run out
    first = box.peek(1)
    assert box.durable and (blocked / "o.sqlite").exists()
    box.ack([m.seq for m in first])
    box.close()
    again = Outbox(blocked / "o.sqlite")
    assert [m.payload for m in again.peek(10)] == [b"second"]
    assert [e.payload["id"] for e in again.open_events()] == ["cam-1"]


def test_memory_held_messages_obey_the_bound_and_never_drop_starts_or_ends(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    _on_writer(box, "PRAGMA query_only=ON")
    for i in range(20):
        box.put(_msg(f"t/events/{i}/thumbnail", b"x" * 200, Kind.THUMBNAIL))
        box.put(_ev("t/events", _event("start", f"cam-{i}")))
    kinds = [m.kind for m in box.peek(100)]
    assert kinds.count(Kind.EVENT) == 20 and kinds.count(Kind.THUMBNAIL) < 20
    assert box.dropped == 20 - kinds.count(Kind.THUMBNAIL)


def test_health_answers_are_each_kept_but_only_the_newest_max_replies(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_msg("p/health", b'{"id":null}', Kind.HEALTH, retain=True))
    for i in range(MAX_REPLIES + 5):
        box.put(_msg("p/health", f'{{"id":"r{i}"}}', Kind.REPLY, retain=True))
    box.put(_msg("p/health", b'{"id":null,"status":"degraded"}', Kind.HEALTH, retain=True))  # coalesces states only
    payloads = [m.payload for m in box.peek(1000)]
    assert payloads[0] == b'{"id":"r5"}' and payloads[-2] == f'{{"id":"r{MAX_REPLIES + 4}"}}'.encode()
    assert len(payloads) == MAX_REPLIES + 1 and box.dropped == 5
    assert box.pending_bytes == sum(map(len, payloads))


def test_a_refused_thumbnail_leaves_and_its_queued_event_says_it_has_none(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_msg("p/events/cam-1/thumbnail", b"\xff\xd8\xff" + b"j" * 100, Kind.THUMBNAIL))
    box.put(_ev("p/events", {**_event("start"), "thumbnail": True}))
    box.put(_ev("p/events", {**_event("start", "other-1", "other"), "thumbnail": True}))
    [thumb, *_] = box.peek(10)
    box.refuse(thumb)
    events = [json.loads(m.payload) for m in box.peek(10)]
    assert [(e["id"], e["thumbnail"]) for e in events] == [("cam-1", False), ("other-1", True)]
    assert [e.payload["thumbnail"] for e in box.open_events()] == [False, True]  # an interrupted end says so too
    assert box.pending_bytes == sum(len(m.payload) for m in box.peek(10))


def test_a_refused_message_of_another_kind_just_leaves(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put(_msg("p/cameras/cam/snapshot", b"\xff\xd8\xff" + b"j" * 100, Kind.SNAPSHOT, retain=True))
    box.put(_ev("p/events", {**_event("start"), "thumbnail": True}))
    box.refuse(box.peek(1)[0])
    assert [json.loads(m.payload)["thumbnail"] for m in box.peek(10)] == [True]


def test_each_message_keeps_its_camera_and_kind_and_a_purge_decides_by_them(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put(_msg("p/cameras/lane/snapshot", b"\xff\xd8\xff", Kind.SNAPSHOT, retain=True, camera="lane"))
    box.put(_ev("p/events", _event("start", "lane-1", "lane")))
    box.put(_msg("p/health", b"{}", Kind.HEALTH, retain=True))
    box.close()
    again = Outbox(path)
    assert [(m.camera, m.kind) for m in again.peek(10)] == [
        ("lane", Kind.SNAPSHOT),
        ("lane", Kind.EVENT),
        (None, Kind.HEALTH),
    ]
    assert again.purge(lambda camera, kind: kind is not Kind.SNAPSHOT).result() == 1
    assert [m.kind for m in again.peek(10)] == [Kind.EVENT, Kind.HEALTH]


def test_stats_and_the_mosaic_are_never_stored(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for kind in (Kind.STATS, Kind.MOSAIC):
        try:
            box.put(_msg("p/x", b"x", kind))
        except ValueError:
            continue
        raise AssertionError(f"{kind} was queued")


def test_an_outbox_written_before_messages_were_typed_is_labelled_on_open(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "o.sqlite"
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, payload BLOB NOT NULL,"
        " qos INTEGER NOT NULL, retain INTEGER NOT NULL, kind TEXT NOT NULL, created REAL NOT NULL);"
    )
    rows = [
        ("p/events", json.dumps(_event("start", "gate-1-5", "gate-1")).encode(), 0, "event"),
        ("p/events/gate-1-5/thumbnail", b"\xff\xd8\xff", 0, "thumbnail"),
        ("p/cameras/gate-1/motion", b"ON", 1, "state"),
        ("p/cameras/gate-1/snapshot", b"\xff\xd8\xff", 1, "state"),
        ("p/health", b"{}", 1, "state"),
        ("p/health", b'{"id":"x"}', 1, "reply"),
        ("homeassistant/sensor/n/x/config", b"{}", 1, "state"),
    ]
    old.executemany(
        "INSERT INTO outbox (topic, payload, qos, retain, kind, created) VALUES (?,?,1,?,?,0)",
        [(t, p, r, k) for t, p, r, k in rows],
    )
    old.commit()
    old.close()
    box = Outbox(path)
    assert [(m.camera, m.kind) for m in box.peek(10)] == [
        ("gate-1", Kind.EVENT),
        ("gate-1", Kind.THUMBNAIL),
        ("gate-1", Kind.MOTION),
        ("gate-1", Kind.SNAPSHOT),
        (None, Kind.HEALTH),
        (None, Kind.REPLY),
        (None, Kind.DISCOVERY),
    ]
