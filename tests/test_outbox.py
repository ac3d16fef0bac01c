"""The durable outbox: order, acknowledgement, survival across reopen, the drop policy."""

import json
from pathlib import Path

from edge.outbox import MAX_REPLIES, Kind, Outbox, _Request


def _on_writer(box: Outbox, sql: str) -> None:
    """Run `sql` on the outbox's database from its writer thread (the only one that may touch it)."""
    box._ask(_Request(answer=lambda: box._db.execute(sql))).result()


def test_messages_come_back_in_order_until_acked(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(5):
        box.put("t/events", f"e{i}", 1, False, Kind.EVENT)
    first = box.peek(3)
    assert [m.payload for m in first] == [b"e0", b"e1", b"e2"]
    box.ack([first[0].seq, first[1].seq])
    assert [m.payload for m in box.peek(10)] == [b"e2", b"e3", b"e4"]
    assert box.pending == 3


def test_pending_messages_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put("a", b"\x00\xff", 1, True, Kind.STATE)
    box.put("b", "start", 1, False, Kind.EVENT)
    box.close()
    again = Outbox(path)
    msgs = again.peek(10)
    assert [(m.topic, m.payload, m.retain, m.kind) for m in msgs] == [
        ("a", b"\x00\xff", True, Kind.STATE),
        ("b", b"start", False, Kind.EVENT),
    ]
    assert again.pending_bytes == 7


def test_retained_state_keeps_only_the_newest_per_topic(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put("cam/motion", "ON", 1, True, Kind.STATE)
    box.put("events", "start", 1, False, Kind.EVENT)
    box.put("cam/motion", "OFF", 1, True, Kind.STATE)
    assert [(m.topic, m.payload) for m in box.peek(10)] == [("events", b"start"), ("cam/motion", b"OFF")]


def test_over_budget_thumbnails_then_updates_go_never_starts_or_ends(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite", max_bytes=1000)
    box.put("events", b"s" * 100, 1, False, Kind.EVENT)
    box.put("thumb/1", b"j" * 400, 1, False, Kind.THUMBNAIL)
    box.put("events", b"u" * 100, 1, False, Kind.UPDATE)
    box.put("thumb/2", b"j" * 400, 1, False, Kind.THUMBNAIL)
    # 1000 bytes: at the bound, nothing dropped yet.
    box.sync()
    assert box.pending == 4 and box.dropped == 0
    box.put("events", b"e" * 100, 1, False, Kind.EVENT)  # over: the oldest thumbnail goes
    assert [m.topic for m in box.peek(10)] == ["events", "events", "thumb/2", "events"]
    for _ in range(10):  # events alone past the bound: updates and thumbnails go, events stay
        box.put("events", b"x" * 100, 1, False, Kind.EVENT)
    kinds = [m.kind for m in box.peek(100)]
    assert Kind.THUMBNAIL not in kinds and Kind.UPDATE not in kinds
    assert kinds.count(Kind.EVENT) == 12


def _event(kind: str, event_id: str = "cam-1", camera: str = "cam", score: float = 0.1) -> dict[str, object]:
    return {"id": event_id, "type": kind, "camera": camera, "start_time": 100.0, "end_time": None, "score": score}


def test_started_events_stay_open_until_their_end_is_queued_also_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    box = Outbox(path)
    box.put_event("t/events", _event("start"), Kind.EVENT)
    box.put_event("t/events", _event("start", "other-1", "other"), Kind.EVENT)
    box.put_event("t/events", _event("update", score=0.3), Kind.UPDATE)
    box.put_event("t/events", _event("end", "other-1", "other"), Kind.EVENT)
    assert [json.loads(m.payload)["type"] for m in box.peek(10)] == ["start", "start", "update", "end"]
    box.close()
    again = Outbox(path)
    [still_open] = again.open_events()
    assert still_open.payload["id"] == "cam-1" and still_open.payload["score"] == 0.3  # the latest state
    again.put_event("t/events", _event("end"), Kind.EVENT)
    assert again.open_events() == []


def test_touch_keeps_the_latest_sign_of_life_of_a_camera_s_open_event(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put_event("t/events", _event("start"), Kind.EVENT)
    first = box.open_events()[0].last_seen
    box.touch_open("cam", first + 30)
    box.touch_open("cam", first + 10)  # never backwards
    box.touch_open("nobody", first + 99)
    assert box.open_events()[0].last_seen == first + 30


def test_a_disk_that_refuses_writes_delays_durability_not_delivery(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put("t/events", "stored", 1, False, Kind.EVENT)
    _on_writer(box, "PRAGMA query_only=ON")  # the disk refuses every write from here on
    box.put("t/events", "held", 1, False, Kind.EVENT)
    box.put("t/health", "h", 1, True, Kind.STATE)
    batch = box.peek(10)
    assert [m.payload for m in batch] == [b"stored", b"held", b"h"]  # stored first: order holds
    assert box.pending == 3
    box.ack([m.seq for m in batch])  # the stored row cannot be deleted ...
    assert box.peek(10) == [] and box.pending == 0  # ... but is not sent again
    _on_writer(box, "PRAGMA query_only=OFF")  # the disk takes writes again
    box.put("t/events", "later", 1, False, Kind.EVENT)
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
    box.put_event("t/events", _event("start"), Kind.EVENT)
    box.put("t/events", "second", 1, False, Kind.EVENT)
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
        box.put(f"t/events/{i}/thumbnail", b"x" * 200, 1, False, Kind.THUMBNAIL)
        box.put_event("t/events", _event("start", f"cam-{i}"), Kind.EVENT)
    kinds = [m.kind for m in box.peek(100)]
    assert kinds.count(Kind.EVENT) == 20 and kinds.count(Kind.THUMBNAIL) < 20
    assert box.dropped == 20 - kinds.count(Kind.THUMBNAIL)


def test_health_answers_are_each_kept_but_only_the_newest_max_replies(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put("p/health", b'{"id":null}', 1, True, Kind.STATE)
    for i in range(MAX_REPLIES + 5):
        box.put("p/health", f'{{"id":"r{i}"}}', 1, True, Kind.REPLY)
    box.put("p/health", b'{"id":null,"status":"degraded"}', 1, True, Kind.STATE)  # coalesces states only
    payloads = [m.payload for m in box.peek(1000)]
    assert payloads[0] == b'{"id":"r5"}' and payloads[-2] == f'{{"id":"r{MAX_REPLIES + 4}"}}'.encode()
    assert len(payloads) == MAX_REPLIES + 1 and box.dropped == 5
    assert box.pending_bytes == sum(map(len, payloads))


def test_a_refused_thumbnail_leaves_and_its_queued_event_says_it_has_none(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put("p/events/cam-1/thumbnail", b"\xff\xd8\xff" + b"j" * 100, 1, False, Kind.THUMBNAIL)
    box.put_event("p/events", {**_event("start"), "thumbnail": True}, Kind.EVENT)
    box.put_event("p/events", {**_event("start", "other-1", "other"), "thumbnail": True}, Kind.EVENT)
    [thumb, *_] = box.peek(10)
    box.refuse(thumb)
    events = [json.loads(m.payload) for m in box.peek(10)]
    assert [(e["id"], e["thumbnail"]) for e in events] == [("cam-1", False), ("other-1", True)]
    assert [e.payload["thumbnail"] for e in box.open_events()] == [False, True]  # an interrupted end says so too
    assert box.pending_bytes == sum(len(m.payload) for m in box.peek(10))


def test_a_refused_message_of_another_kind_just_leaves(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    box.put("p/cameras/cam/snapshot", b"\xff\xd8\xff" + b"j" * 100, 1, True, Kind.STATE)
    box.put_event("p/events", {**_event("start"), "thumbnail": True}, Kind.EVENT)
    box.refuse(box.peek(1)[0])
    assert [json.loads(m.payload)["thumbnail"] for m in box.peek(10)] == [True]
