"""The district broker goes away five times while cameras raise events: the subscriber
receives every start and end, in order per camera, and every thumbnail.

By default each outage lasts 16 s (the link's reconnect backoff has grown past 8 s when
the broker returns); the `slow` run also has outages of 32 s, past the backoff's 30 s cap."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess
from harness.delivery import produced, tally
from harness.mqtt_capture import MqttCapture
from tests.faults.district import P, district, events

CYCLES, UP_S = 5, 6.0


@pytest.fixture(scope="module")
def three_walkers(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    with CameraSimulator({f"cam-{i}": clips["walkers"] for i in range(3)}) as sim:
        yield sim


def _arrived(capture: MqttCapture, wanted: set[tuple[str, str]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not wanted <= {(e["id"], e["type"]) for e in events(capture)}:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def _during(line: dict, outages: list[tuple[float, float]]) -> bool:
    t = datetime.fromisoformat(line["timestamp"]).timestamp()
    return any(t0 <= t <= t1 for t0, t1 in outages)


@pytest.mark.parametrize("outage_s", [16.0, pytest.param(32.0, marks=pytest.mark.slow)])
def test_five_broker_outages_lose_no_event_and_no_thumbnail(
    tmp_path: Path, three_walkers: CameraSimulator, outage_s: float
) -> None:
    broker, config, capture = district(tmp_path, three_walkers.urls)
    daemon = DaemonProcess(config).start()
    outages: list[tuple[float, float]] = []
    try:
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=30)
        for _ in range(CYCLES):
            began = time.time()
            broker.stop()
            time.sleep(outage_s)
            broker.start()
            outages.append((began, time.time()))
            time.sleep(UP_S)
            assert daemon.alive, daemon.log_text()[-3000:]
    finally:
        code = daemon.stop()  # closes open events with reason "shutdown"; flushes what it can
    made = produced(daemon.logs())
    wanted = {(i, t) for _c, i, t in made}
    if not _arrived(capture, wanted, 20):
        # What the shutdown could not flush waits in the outbox: a restart replays it.
        with DaemonProcess(config, tmp_path / "replay.log"):
            _arrived(capture, wanted, 40)
    capture.stop()
    broker.stop()

    assert code == 0
    lines = [line for line in daemon.logs() if line.get("event") == "event"]
    raised_in_outage = [line["type"] for line in lines if _during(line, outages)]
    assert raised_in_outage.count("start") >= CYCLES and raised_in_outage.count("end") >= CYCLES, raised_in_outage
    got = events(capture)
    result = tally(made, got)
    assert result.missing == [], result.line()
    assert result.out_of_order == [], result.out_of_order
    starts = {i for _c, i, t in made if t == "start"}
    assert starts == {i for _c, i, t in made if t == "end"}, "every start has its end"
    announced = {e["id"] for e in got if e["thumbnail"]}
    assert announced, "the events had thumbnails"
    missing_thumbs = [i for i in announced if not capture.on_topic(f"{P}/events/{i}/thumbnail")]
    assert missing_thumbs == []
