"""Health that tells the truth (issue 18), against the real daemon, Mosquitto and cameras:
a start is `starting` then `ok` (never a retained `failed` or `degraded` on the way); a
clean stop leaves `offline` with cameras `unknown`, and `nvr-edge health` then says
"offline since"; a kill -9 is told apart; a broker that is down is said to be that."""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge.health import health
from edge.healthcheck import EXIT_NO_ANSWER, EXIT_OK, EXIT_STARTING
from edge.status import CameraState, CameraStatus
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/box-h"


def test_health_names_each_cameras_reason_and_starting_is_not_a_failure() -> None:
    """The pure rules: a camera still opening is `starting` within the grace period, then
    counts as not streaming; a camera already refused counts at once; `cameras` says why."""
    now = time.monotonic()
    opening = CameraStatus(state=CameraState.STARTING, started_monotonic=now - 2)
    refused = CameraStatus(state=CameraState.FAILED, error="authentication failed (401): check the user")
    streaming = CameraStatus(state=CameraState.STREAMING)
    report = health(None, {"a": opening, "b": streaming}, False, "ok", mqtt_starting=True)
    assert report["status"] == "starting" and report["checks"]["mqtt"] == "starting"
    assert report["checks"]["cameras"] == {"a": "starting", "b": "ok"}
    late = CameraStatus(state=CameraState.STARTING, started_monotonic=now - 31)
    assert health(None, {"a": late, "b": streaming}, True, "ok")["status"] == "degraded"
    report = health(None, {"a": refused, "b": streaming}, True, "ok", recording_errors={"b": "connection refused"})
    assert report["status"] == "degraded"
    assert report["cameras"]["a"] == {"state": "failed", "error": "authentication failed (401): check the user"}
    assert report["cameras"]["b"] == {"state": "streaming", "error": None, "recording_error": "connection refused"}
    assert health(None, {"a": opening}, True, "data_dir is not writable")["status"] == "failed"  # known: not hidden


def _healths(capture: MqttCapture) -> list[dict]:
    return [json.loads(m.payload) for m in capture.on_topic(f"{P}/health") if m.payload]


def test_start_stop_crash_and_broker_down_as_health_and_roll_call_tell_them(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-h",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={"gate": {"url": cameras.urls["moving"]}, "yard": {"url": cameras.urls["still"]}},
    )
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
        daemon = DaemonProcess(config).start()
        try:
            capture.wait_for(lambda m: m.topic == f"{P}/health" and json.loads(m.payload)["status"] == "ok", 30)
            statuses = [h["status"] for h in _healths(capture) if h["id"] is None]
            assert statuses[0] == "starting" and statuses[-1] == "ok", statuses
            assert not {"failed", "degraded"} & set(statuses), statuses  # a restart alerts no dashboard
            answer = run_cli("health", "--config", str(config), "--timeout", "10")
            assert answer.returncode == EXIT_OK, answer.stdout + answer.stderr
            report = json.loads(answer.stdout)
            assert report["cameras"] == {
                "gate": {"state": "streaming", "error": None},
                "yard": {"state": "streaming", "error": None},
            }
        finally:
            assert daemon.stop() == 0, daemon.log_text()[-2000:]

        # A clean stop: the retained health says offline, cameras unknown, and when.
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "offline", 10)
        last = _healths(capture)[-1]
        assert last["status"] == "offline" and last["checks"]["cameras"] == {"gate": "unknown", "yard": "unknown"}
        started = time.monotonic()
        asked = run_cli("health", "--config", str(config), "--timeout", "10")
        assert asked.returncode == EXIT_NO_ANSWER and asked.stdout == "", asked.stdout + asked.stderr
        assert asked.stderr.startswith("box-h: offline since ") and "the daemon was stopped" in asked.stderr
        assert time.monotonic() - started < 8  # told from the retained status, not after the whole timeout
        roll = run_cli("roll-call", "--config", str(config), "--wait", "3")
        assert "box-h" in roll.stdout and "gate unknown, yard unknown" in roll.stdout, roll.stdout

        # kill -9: only the broker's last will says offline; told apart from a clean stop.
        onlines = len([m for m in capture.on_topic(f"{P}/status") if m.text == "online"])
        daemon = DaemonProcess(config).start()
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", 30, count=onlines + 1)
        first = run_cli("health", "--config", str(config), "--timeout", "15")
        assert first.returncode in (EXIT_OK, EXIT_STARTING), first.stdout + first.stderr
        daemon.kill()
        deadline = time.monotonic() + 15
        while (m := capture.on_topic(f"{P}/status")) and m[-1].text != "offline":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        asked = run_cli("health", "--config", str(config), "--timeout", "10")
        assert asked.returncode == EXIT_NO_ANSWER
        assert "went away without stopping (a crash, a power cut or a lost network" in asked.stderr, asked.stderr

    broker.stop()
    down = run_cli("health", "--config", str(config), "--timeout", "5")
    assert down.returncode == EXIT_NO_ANSWER, down.stdout + down.stderr
    assert down.stderr.strip() == f"cannot reach the broker at 127.0.0.1:{broker.port}: connection refused"
