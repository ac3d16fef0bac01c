"""Every fsync of the daemon takes 50 ms (an LD_PRELOAD shim, scripts/bench_slow_disk.py)
while a few cameras raise events: the MQTT connection stays up (keepalive at its
5 s minimum, so a loop that stalls for seconds is dropped by the broker), the daemon
exits within 10 s of SIGTERM as SPEC 1 asks, and every event and announced thumbnail reaches the broker.

Behaviour only: the loop's lag is printed (pytest -s), never asserted; the benchmark
reports it (docs/PERFORMANCE.md)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.mqtt_capture import MqttCapture

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bench_slow_disk import P, ProbedDaemon, build_shim, daemon_config, slow_env, verdict, wait_delivered  # noqa: E402

CAMERAS, RUN_S, FSYNC_MS = 8, 25.0, 50


@pytest.fixture(scope="module")
def walkers(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    with CameraSimulator({f"cam-{i}": clips["walkers"] for i in range(CAMERAS)}) as sim:
        yield sim


def test_a_slow_disk_loses_nothing_and_keeps_the_connection(
    tmp_path: Path, broker: Mosquitto, walkers: CameraSimulator
) -> None:
    shim = build_shim(tmp_path)
    config = daemon_config(tmp_path, broker, walkers.urls, keepalive=5)
    capture = MqttCapture(broker.host, broker.port, (f"{P}/#",)).start()
    daemon = ProbedDaemon(config, tmp_path / "lag.json", env=slow_env(shim, FSYNC_MS, tmp_path / "fsyncs.txt"))
    try:
        daemon.start()
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=60)
        time.sleep(RUN_S)
        stop_at = time.time()
        code = daemon.stop(10)  # SPEC 1: exit within 10 s of SIGTERM (raises if it does not)
        wait_delivered(daemon, capture, 15)
        result = verdict(daemon, capture, tmp_path / "fsyncs.txt", code == 0, stop_at)
    finally:
        if daemon.alive:
            daemon.kill()
        capture.stop()
    print("\n".join(result.lines()))
    assert code == 0
    assert result.fsyncs, "the shim delayed the daemon's fsyncs"
    assert result.produced > 0, "the cameras raised events"
    assert result.connection_up, result.lines()[1]
    assert result.nothing_lost, result.lines()[2]
