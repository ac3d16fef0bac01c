"""Camera workers' signs of life, as the systemd watchdog reads them: a worker beats while
it streams and while it waits out a broken camera, and goes stale once its thread is gone."""

from __future__ import annotations

import time

from edge.camera import CameraWorker
from edge.config import CameraConfig, EventConfig
from edge.watchdog import heartbeat_probe
from harness.camsim import CameraSimulator


def _fresh_for(probe, seconds: float) -> list[str]:
    """Reasons the probe gave while sampled every 0.25 s for `seconds` (empty: always fresh)."""
    reasons, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (reason := probe()) is not None:
            reasons.append(reason)
        time.sleep(0.25)
    return reasons


def test_a_worker_beats_through_a_stall_and_back_off_and_goes_stale_when_its_thread_ends(
    cameras: CameraSimulator,
) -> None:
    worker = CameraWorker("moving", CameraConfig(url=cameras.urls["moving"]), "box", EventConfig(), lambda _o: None)
    beats = {worker.name: lambda: worker.status.heartbeat_monotonic}
    # The longest silence of a healthy worker is one RTSP open or read timeout (10 s);
    # the daemon allows WORKER_MAX_SILENCE_S (45 s) before it withholds the watchdog.
    probe = heartbeat_probe(beats, max_age=11.0)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while worker.status.state.value != "streaming" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.status.state.value == "streaming"
        assert heartbeat_probe(beats, max_age=0.5)() is None  # every packet beats
        cameras.stall("moving")  # no packets, connection open: stall detection, then back-off
        try:
            assert _fresh_for(probe, 20.0) == []
            assert worker.status.reconnects >= 1  # it did go through a reconnect meanwhile
        finally:
            cameras.resume("moving")
    finally:
        worker.stop()
        assert worker.join(15)
    time.sleep(2.0)
    reason = heartbeat_probe(beats, max_age=1.5)()
    assert reason is not None and worker.name in reason


def test_a_failed_camera_waiting_out_its_slow_retry_still_beats(cameras: CameraSimulator) -> None:
    missing = cameras.urls["moving"].rsplit("/", 1)[0] + "/no-such-stream"  # 404: retried slowly
    worker = CameraWorker("gone", CameraConfig(url=missing), "box", EventConfig(), lambda _o: None)
    probe = heartbeat_probe({worker.name: lambda: worker.status.heartbeat_monotonic}, max_age=3.0)
    worker.start()
    try:
        deadline = time.monotonic() + 15
        while worker.status.state.value != "failed" and time.monotonic() < deadline:
            time.sleep(0.2)
        assert worker.status.state.value == "failed", worker.status.error
        assert _fresh_for(probe, 12.0) == []  # inside a back-off of 15 s or more
        assert worker.status.reconnects == 0  # ... that was not over yet
    finally:
        worker.stop()
        assert worker.join(5)
