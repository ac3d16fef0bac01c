"""kill -9 of the daemon while events wait in the outbox (the broker is down): after a
restart, every event raised before the kill reaches the district, and the events the
kill cut off are closed with an `end` that says why."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess
from harness.delivery import produced, tally
from tests.faults.district import P, district, events


@pytest.fixture(scope="module")
def walkers(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    with CameraSimulator({"a": clips["walkers"], "b": clips["walkers"]}) as sim:
        yield sim


def _open_after_a_closed_one(daemon: DaemonProcess) -> bool:
    """True once some camera has a finished event and a newer one still open."""
    made = produced(daemon.logs())
    for camera in {k[0] for k in made}:
        kinds = [t for c, _i, t in made if c == camera]
        if "end" in kinds and kinds[-1] in ("start", "update") and kinds.index("end") < len(kinds) - 1:
            return True
    return False


def test_kill_9_with_pending_events_loses_none_and_closes_the_open_ones(
    tmp_path: Path, walkers: CameraSimulator
) -> None:
    broker, config, capture = district(tmp_path, walkers.urls)
    first = DaemonProcess(config, tmp_path / "first.log").start()
    second = DaemonProcess(config, tmp_path / "second.log")
    try:
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=30)
        broker.stop()  # from here on everything waits in the outbox
        deadline = time.monotonic() + 120
        while not _open_after_a_closed_one(first):
            assert first.alive and time.monotonic() < deadline, first.log_text()[-3000:]
            time.sleep(0.5)
        first.kill()
        made = produced(first.logs())
        started = {i for _c, i, t in made if t == "start"}
        cut_off = started - {i for _c, i, t in made if t == "end"}
        assert cut_off, "the kill was meant to cut an event off"

        broker.start()
        second.start()
        wanted = {(i, t) for _c, i, t in made} | {(i, "end") for i in cut_off}
        deadline = time.monotonic() + 60
        while not wanted <= {(e["id"], e["type"]) for e in events(capture)}:
            if time.monotonic() > deadline:
                break  # the assertions below say what is missing
            time.sleep(0.5)
        time.sleep(1.0)  # duplicates and stragglers
    finally:
        if second.alive:
            second.stop()
        capture.stop()
        broker.stop()

    got = events(capture)
    result = tally(made, got)
    assert result.missing == [], result.line()
    assert result.out_of_order == [], result.out_of_order
    ends = {e["id"]: e for e in got if e["type"] == "end"}
    for event_id in cut_off:
        end = ends[event_id]
        assert end["reason"] == "interrupted"
        start = next(e for e in got if e["id"] == event_id and e["type"] == "start")
        assert start["start_time"] <= end["end_time"] <= time.time()
        assert end["recordings"], "the recorded footage of a cut-off event is still listed"
    # Every thumbnail announced before the kill arrived too.
    announced = {e["id"] for e in got if e["thumbnail"] and e["id"] in started}
    assert announced, "the events had thumbnails"
    for event_id in announced:
        assert capture.on_topic(f"{P}/events/{event_id}/thumbnail"), event_id
    # The restarted daemon's log says which events it closed.
    closed = [line["id"] for line in second.logs() if line.get("event") == "event_closed_after_restart"]
    assert sorted(closed) == sorted(cut_off)
