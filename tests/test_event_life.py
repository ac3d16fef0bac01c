"""An event's life (edge/event_life.py) with plain values: a clock, outputs, recordings."""

from __future__ import annotations

import json
from typing import Any

from edge.config import EventConfig, parse_config
from edge.event_life import INTERRUPTED, EventLife
from edge.events import Event, EventTracker
from edge.messages import Kind, Messages, Outgoing
from edge.motion import MotionResult
from edge.outbox import OpenEvent
from edge.pipeline import EventOutput, MotionOutput
from edge.topics import Topics

T = Topics("nvr", "box-1")
JPEG = b"\xff\xd8\xff picture"
CONFIG = """
box: {id: box-1, data_dir: /tmp/nvr-event-life}
mqtt: {host: 127.0.0.1}
events: {post_roll: 5, pre_roll: 2, max_duration: 10, min_frames: 1, end_after: 3}
cameras:
  gate: {url: "rtsp://h/gate", share: full}
  lane: {url: "rtsp://h/lane", share: events}
  yard: {url: "rtsp://h/yard", share: none}
"""


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Shares:
    def __init__(self, shares: dict[str, str]) -> None:
        self.shares = shares

    def images_allowed(self, camera: str) -> bool:
        return self.shares.get(camera) == "full"

    def may_name(self, camera: str) -> bool:
        return self.shares.get(camera, "none") != "none"


class Footage:
    """Segments of 10 s from t=0; every protect call is kept."""

    def __init__(self) -> None:
        self.protected: list[tuple[str, str, float, float, float]] = []

    def protect(self, camera: str, event_id: str, event_time: float, t0: float, t1: float) -> None:
        self.protected.append((camera, event_id, event_time, t0, t1))

    def covering(self, camera: str, t0: float, t1: float) -> list[str]:
        return [f"{camera}/{s:04d}.mp4" for s in range(int(t0 // 10) * 10, int(t1) + 1, 10)]


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **fields: Any) -> None:
        self.lines.append((event, fields))

    warning = info


def _life(now: float = 1000.0, shares: dict[str, str] | None = None) -> tuple[EventLife, Clock, Footage, Log]:
    clock, footage, log = Clock(now), Footage(), Log()
    consent = Shares(shares or {"gate": "full", "lane": "events", "yard": "none"})
    return EventLife(parse_config(CONFIG), Messages(T), consent, footage, clock, log), clock, footage, log


def _event(camera: str, kind: str, start: float, end: float | None = None, reason: str | None = None) -> Event:
    return Event(f"{camera}-{int(start * 1000)}", kind, "box-1", camera, start, end, 0.1, 0.2, None, reason)  # type: ignore[arg-type]


def _payloads(messages: list[Outgoing]) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in messages if m.kind in (Kind.EVENT, Kind.UPDATE)]


def test_a_start_goes_out_at_once_with_its_picture_and_footage_so_far() -> None:
    life, _clock, footage, log = _life(now=1000.0)
    out = life.take(EventOutput("gate", _event("gate", "start", 995.0), JPEG))
    assert [m.kind for m in out] == [Kind.THUMBNAIL, Kind.SNAPSHOT, Kind.EVENT]
    assert out[0].topic == T.thumbnail("gate-995000") and out[1].retain and out[0].payload == JPEG
    [start] = _payloads(out)
    assert start["thumbnail"] is True and start["recordings"] == ["gate/0990.mp4", "gate/1000.mp4"]
    assert footage.protected == [("gate", "gate-995000", 1000.0, 993.0, 1000.0)]  # open: up to now
    assert life.last_events["gate"] == {"type": "start", "time": 995.0}
    assert log.lines == []
    out[-1].on_stored()  # type: ignore[misc]  # the outbox's writer committed it
    assert log.lines == [
        ("event", {"camera": "gate", "id": "gate-995000", "type": "start", "score": 0.2, "reason": None})
    ]


def test_an_end_and_what_follows_it_wait_for_the_post_roll_in_order() -> None:
    life, clock, footage, _log = _life(now=1000.0)
    life.take(EventOutput("gate", _event("gate", "start", 990.0), None))
    assert life.take(EventOutput("gate", _event("gate", "end", 990.0, end=999.0, reason="quiet"), None)) == []
    assert life.take(MotionOutput("gate", False)) == []  # behind the end
    out = life.take(MotionOutput("lane", True))  # another camera does not wait
    assert [(m.kind, m.camera) for m in out] == [(Kind.MOTION, "lane")]
    clock.now = 1003.9
    assert life.release() == []
    clock.now = 1004.0  # end_time + post_roll
    out = life.release()
    assert [m.kind for m in out] == [Kind.EVENT, Kind.MOTION] and out[1].payload == b"OFF"
    [end] = _payloads(out)
    assert end["type"] == "end" and end["recordings"] == ["gate/0980.mp4", "gate/0990.mp4", "gate/1000.mp4"]
    assert footage.protected[-1] == ("gate", "gate-990000", 999.0, 988.0, 1004.0)
    assert life.release() == []


def test_a_max_duration_split_ends_the_old_event_before_the_new_one_starts() -> None:
    life, clock, _footage, _log = _life(now=0.0)
    tracker = EventTracker("box-1", "gate", EventConfig(min_frames=1, max_duration=10, end_after=3))
    moving = MotionResult(True, 0.05, (0.1, 0.1, 0.2, 0.2))
    sent: list[Outgoing] = []
    for i in range(60):  # 12 s of motion at 5 fps
        clock.now = 1000.0 + i / 5
        step = tracker.update(clock.now, moving)
        for event in step.events:
            sent += life.take(EventOutput("gate", event, None))
    clock.now += 10
    sent += life.release()
    kinds = [(p["type"], p.get("reason")) for p in _payloads(sent)]
    assert kinds == [("start", None), ("end", "max_duration"), ("start", None)], kinds
    first, second = _payloads(sent)[0]["id"], _payloads(sent)[2]["id"]
    assert first != second


def test_shutdown_releases_everything_held_at_once() -> None:
    life, _clock, _footage, _log = _life(now=1000.0)
    life.take(EventOutput("gate", _event("gate", "start", 990.0), None))
    life.take(EventOutput("gate", _event("gate", "end", 990.0, end=999.5, reason="quiet"), None))
    life.take(EventOutput("gate", _event("gate", "start", 999.9), None))
    out = life.release(force=True)
    assert [p["type"] for p in _payloads(out)] == ["end", "start"]
    assert life.release(force=True) == []


def test_an_events_camera_never_sends_a_picture_and_a_none_camera_nothing() -> None:
    life, _clock, _footage, _log = _life()
    lane = life.take(EventOutput("lane", _event("lane", "start", 999.0), JPEG))
    assert [m.kind for m in lane] == [Kind.EVENT] and _payloads(lane)[0]["thumbnail"] is False
    assert life.take(EventOutput("yard", _event("yard", "start", 999.0), JPEG)) == []
    assert life.take(MotionOutput("yard", True)) == []
    assert "yard" not in life.last_events


def test_consent_withdrawn_while_an_end_waits_drops_the_end() -> None:
    shares = {"gate": "full"}
    life, clock, _footage, _log = _life(now=1000.0, shares=shares)
    life.take(EventOutput("gate", _event("gate", "start", 990.0), None))
    life.take(EventOutput("gate", _event("gate", "end", 990.0, end=999.0, reason="quiet"), None))
    shares["gate"] = "none"  # a reload while the end waits for its post-roll
    clock.now = 1010.0
    assert life.release() == []


def test_events_a_crash_left_open_end_interrupted_at_their_last_sign_of_life() -> None:
    # `old` left the config since; the egress still knows its share (it keeps the last one).
    life, _clock, footage, log = _life(now=2000.0, shares={"gate": "full", "old": "events", "yard": "none"})
    start = {"id": "gate-990000", "type": "update", "box": "box-1", "camera": "gate", "start_time": 990.0}
    start |= {"end_time": None, "score": 0.1, "peak_score": 0.2, "region": None, "thumbnail": True, "recordings": []}
    gone = {**start, "id": "old-5000", "camera": "old", "start_time": 5.0}
    hidden = {**start, "id": "yard-7000", "camera": "yard", "start_time": 7.0}  # share none now
    out = life.recover([OpenEvent(start, 1003.0), OpenEvent(gone, 1.0), OpenEvent(hidden, 9.0)])
    ends = _payloads(out)
    assert [(e["id"], e["type"], e["reason"], e["end_time"]) for e in ends] == [
        ("gate-990000", "end", INTERRUPTED, 1003.0),
        ("old-5000", "end", INTERRUPTED, 5.0),  # never before its start
    ]
    assert ends[0]["recordings"] == ["gate/0980.mp4", "gate/0990.mp4", "gate/1000.mp4"]
    assert ends[0]["thumbnail"] is True and ends[1]["recordings"] == []
    assert footage.protected == [("gate", "gate-990000", 1003.0, 988.0, 1008.0)]
    assert all(m.event is not None and m.event.ended for m in out)
    assert [f["id"] for e, f in log.lines if e == "event_closed_after_restart"] == ["gate-990000", "old-5000"]


def test_the_heartbeat_names_cameras_with_an_open_event_every_two_seconds() -> None:
    life, clock, _footage, _log = _life(now=1000.0)
    assert life.heartbeats() == {}  # nothing open
    life.take(EventOutput("gate", _event("gate", "start", 999.0), None))
    life.take(EventOutput("lane", _event("lane", "start", 999.0), None))
    clock.now = 1001.0
    assert life.heartbeats() == {}  # not yet two seconds since the last beat
    clock.now = 1002.0
    assert life.heartbeats() == {"gate": 1002.0, "lane": 1002.0}
    life.take(EventOutput("lane", _event("lane", "end", 999.0, end=1001.5, reason="quiet"), None))
    clock.now = 1004.0
    assert life.heartbeats() == {"gate": 1004.0}
    clock.now = 900.0  # the wall clock stepped back: still beating, at the new time
    assert life.heartbeats() == {"gate": 900.0}
