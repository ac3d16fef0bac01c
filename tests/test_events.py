"""The event tracker as a pure function of motion results over time."""

from __future__ import annotations

from edge.config import EventConfig
from edge.events import EventTracker
from edge.motion import MotionResult
from tests.spec import EVENT_KEYS

MOVING = MotionResult(True, 0.02, (0.1, 0.2, 0.1, 0.3))
STILL = MotionResult(False, 0.0, None)
SPEC_KEYS = EVENT_KEYS


def feed(tracker: EventTracker, results, t0: float = 1000.0, fps: float = 5.0):
    steps = []
    for i, r in enumerate(results):
        steps.append(tracker.update(t0 + i / fps, r))
    return steps


def events_of(steps):
    return [e for s in steps for e in s.events]


def test_start_after_min_frames_and_end_after_quiet_gap() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=3, end_after=2.0))
    steps = feed(tracker, [STILL] * 3 + [MOVING] * 10 + [STILL] * 20)
    events = events_of(steps)
    assert [e.type for e in events if e.type != "update"] == ["start", "end"]
    start, end = events[0], events[-1]
    assert steps[5].events == (start,) and steps[5].motion_on is True
    assert start.start_time == 1000.0 + 3 / 5 and start.id == f"cam-{int(start.start_time * 1000)}"
    assert end.id == start.id and end.reason == "quiet"
    assert end.end_time == 1000.0 + 12 / 5
    assert [s.motion_on for s in steps if s.motion_on is not None] == [True, False]
    assert not tracker.active


def test_short_blips_do_not_start_events() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=3))
    assert events_of(feed(tracker, [MOVING, MOVING, STILL] * 10)) == []


def test_a_run_of_new_provisional_blobs_is_not_an_object_until_one_is_seen_again() -> None:
    """Insects at a lamp, a flag at connection: each frame a new blob in a calm place, counted
    at once (provisional, seen once). Three such frames are not one object; an object
    followed twice among them is, and starts at once."""
    flash = MotionResult(True, 0.01, (0.1, 0.1, 0.1, 0.1), seen=1, provisional=True)
    tracker = EventTracker("box", "cam", EventConfig(min_frames=3))
    assert events_of(feed(tracker, [flash] * 6)) == []
    again = MotionResult(True, 0.01, (0.1, 0.1, 0.1, 0.1), seen=2, provisional=True)
    steps = feed(tracker, [flash, flash, again])
    assert [e.type for e in events_of(steps)] == ["start"] and steps[2].events
    judged = MotionResult(True, 0.01, (0.1, 0.1, 0.1, 0.1), seen=1)  # not provisional: travelled
    assert [e.type for e in events_of(feed(EventTracker("box", "cam", EventConfig(min_frames=3)), [judged] * 3))] == [
        "start"
    ]


def test_new_peak_marks_the_best_frame_including_before_the_start() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=3))
    big = MotionResult(True, 0.05, (0.5, 0.5, 0.2, 0.2))
    steps = feed(tracker, [MOVING, big, MOVING, MOVING])
    assert [s.new_peak for s in steps] == [True, True, False, False]
    assert events_of(steps)[0].peak_score == 0.05 and events_of(steps)[0].region == big.region


def test_updates_are_rate_limited() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=1, update_interval=5.0, end_after=60))
    growing = [MotionResult(True, 0.01 * 1.6**i, (0.1, 0.1, 0.1, 0.1)) for i in range(10)]
    # 10 frames at 1 fps, peak grows 1.6x per frame: at most one update per 5 s.
    steps = [tracker.update(100.0 + i, r) for i, r in enumerate(growing)]
    updates = [e for e in events_of(steps) if e.type == "update"]
    assert 1 <= len(updates) <= 2
    times = [100.0 + i for i, s in enumerate(steps) if any(e.type == "update" for e in s.events)]
    assert all(b - a >= 5.0 for a, b in zip(times, times[1:], strict=False))


def test_max_duration_splits_long_events_each_start_has_one_end() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=2, max_duration=10.0, end_after=2.0))
    steps = feed(tracker, [MOVING] * 130 + [STILL] * 20, fps=5.0)  # 26 s of motion
    events = events_of(steps)
    starts = [e.id for e in events if e.type == "start"]
    ends = [e for e in events if e.type == "end"]
    assert len(starts) == 3 and sorted(starts) == sorted(e.id for e in ends)
    assert [e.reason for e in ends] == ["max_duration", "max_duration", "quiet"]


def test_close_ends_the_open_event_with_a_reason() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=1))
    feed(tracker, [MOVING] * 3)
    step = tracker.close(2000.0, "shutdown")
    assert [e.type for e in step.events] == ["end"] and step.events[0].reason == "shutdown"
    assert step.motion_on is False
    assert tracker.close(2001.0, "shutdown").events == ()


def test_clock_going_backwards_does_not_crash() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=2, end_after=1.0))
    tracker.update(100.0, MOVING)
    tracker.update(50.0, MOVING)
    steps = [tracker.update(40.0 + i, STILL) for i in range(70)]
    assert any(e.type == "end" for e in events_of(steps))


def test_payload_has_exactly_the_spec_keys() -> None:
    tracker = EventTracker("cluster-20", "gate-1", EventConfig(min_frames=1))
    start = tracker.update(1764345600.1234, MOVING).events[0]
    payload = start.to_payload(thumbnail=True, recordings=["gate-1/a.mp4"])
    assert set(payload) == SPEC_KEYS
    assert payload["start_time"] == 1764345600.123 and payload["end_time"] is None
    assert payload["region"] == [0.1, 0.2, 0.1, 0.3] and payload["recordings"] == ["gate-1/a.mp4"]
    end = tracker.close(1764345605.0, "quiet").events[0].to_payload(False, [])
    assert set(end) == SPEC_KEYS | {"reason"} and end["end_time"] is not None


def test_max_duration_split_leaves_the_thumbnail_to_the_new_event() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=2, max_duration=10.0, end_after=2.0))
    steps = feed(tracker, [MOVING] * 60, fps=5.0)  # the split falls on t0 + 10 s, frame 50
    split = next(i for i, s in enumerate(steps) if any(e.type == "end" for e in s.events))
    assert steps[split].events[0].reason == "max_duration" and steps[split].motion_on is False
    assert not steps[split].new_peak  # a picture kept now would go out with the old event's end
    assert steps[split + 1].new_peak and steps[split + 1].events[0].type == "start"
    assert steps[split + 1].events[0].start_time == 1000.0 + split / 5


def test_update_when_the_region_moves_far() -> None:
    tracker = EventTracker("box", "cam", EventConfig(min_frames=1, update_interval=1.0, end_after=60))
    left = MotionResult(True, 0.02, (0.0, 0.4, 0.1, 0.2))
    right = MotionResult(True, 0.02, (0.8, 0.4, 0.1, 0.2))
    steps = feed(tracker, [left] * 10 + [right] * 10, fps=5.0)
    updates = [e for e in events_of(steps) if e.type == "update"]
    assert len(updates) == 1 and updates[0].peak_score == 0.02


def test_every_start_has_exactly_one_end_whatever_the_input() -> None:
    import random

    rnd = random.Random(0)
    tracker = EventTracker("box", "cam", EventConfig(min_frames=2, end_after=1.0, max_duration=5.0))
    events = []
    t = 0.0
    for _ in range(5000):
        t += rnd.choice([0.2, 0.2, 0.2, 1.5, -0.5])  # jitter, gaps and a clock stepping back
        r = rnd.choice([MOVING, MOVING, STILL, MotionResult(False, 0.0, None, "lighting")])
        events += tracker.update(t, r).events
        if rnd.random() < 0.002:
            events += tracker.close(t, "camera_lost").events
    events += tracker.close(t, "shutdown").events
    starts = [e.id for e in events if e.type == "start"]
    ends = [e.id for e in events if e.type == "end"]
    assert starts and sorted(starts) == sorted(ends) and len(set(starts)) == len(starts)
    open_ids: set[str] = set()
    for e in events:  # never two open at once, nothing about an event that is not open
        if e.type == "start":
            assert not open_ids
            open_ids.add(e.id)
        else:
            assert e.id in open_ids
            if e.type == "end":
                open_ids.remove(e.id)
                assert e.end_time is not None and e.end_time >= e.start_time
