"""Bad input over MQTT: whatever a client publishes on the command topics, the real daemon
ignores it with exactly one log line and keeps serving; other topics do nothing at all."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture, Received

P = "nvr/box-1"
HEALTH = f"{P}/cmd/health"
DETECT = f"{P}/cameras/still/detect/set"
_rng = random.Random(5)

BAD_HEALTH_REQUESTS = {
    "random bytes": _rng.randbytes(300),
    "invalid utf-8": b'{"id": "\xc3\x28\xa0\xa1"}',
    "a list": b'["id", "x"]',
    "a number": b"42",
    "a JSON string": b'"x"',
    "id is a number": b'{"id": 5}',
    "id is an object": b'{"id": {"nested": {"deeper": [1, 2]}}}',
    "id is a list": b'{"id": ["a"]}',
    "no id, nested object": b'{"request": {"id": "x"}}',
    "deeply nested": b"[" * 3000,
    "cut short": b'{"id": "x"',
    "1.5 MB": b'{"id": "' + b"x" * 1_500_000 + b'"}',
    "2 MB of random bytes": _rng.randbytes(2_000_000),
}
BAD_DETECT_SETS = {
    "random bytes": _rng.randbytes(300),
    "invalid utf-8": b"\xffON\xfe",
    "a list": b'["ON"]',
    "a number": b"1",
    "a JSON string": b'"ON"',
    "an object": b'{"state": "ON"}',
    "nested objects": b'{"a": {"b": {"c": "OFF"}}}',
    "empty": b"",
    "1 MB": b"OFF" + b" " * 1_000_000,
}
# Not command topics: the daemon must not act on them (it does not even subscribe).
NOT_COMMANDS = [
    (f"{P}/cmd/reboot", b"{}"),
    (f"{P}/cmd/health/now", b'{"id": "sub-topic"}'),
    (f"{P}/cmd", b'{"id": "cmd"}'),
    (f"{P}/cameras/still/detect/set/x", b"OFF"),
    (f"{P}/cameras/still/detect", b"OFF"),
    (f"{P}/cameras/still/detect/SET", b"OFF"),
    (f"{P}/cameras/still/record/set", b"OFF"),
    ("nvr/other-box/cmd/health", b'{"id": "other-box"}'),
    ("nvr/other-box/cameras/still/detect/set", b"OFF"),
]


def _command_lines(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("event") in ("command_ignored", "command_failed")]


def _send_and_expect_one_line(capture: MqttCapture, daemon: DaemonProcess, topic: str, payload: bytes) -> None:
    """Publish one bad command and wait for its one log line, so each line maps to its input."""
    before = len(_command_lines(daemon))
    capture.publish(topic, payload)
    deadline = time.monotonic() + 15
    while len(_command_lines(daemon)) == before and time.monotonic() < deadline and daemon.alive:
        time.sleep(0.05)
    lines = _command_lines(daemon)[before:]
    assert len(lines) == 1, (topic, len(payload), lines)
    assert lines[0]["event"] == "command_ignored" and lines[0]["topic"] == topic, lines[0]


def _stats(capture: MqttCapture) -> list[dict[str, Any]]:
    return [json.loads(m.payload) for m in capture.on_topic(f"{P}/stats")]


def _health_ids(capture: MqttCapture) -> list[Any]:
    return [json.loads(m.payload)["id"] for m in capture.on_topic(f"{P}/health")]


def _is_stats(predicate: Any) -> Any:
    return lambda m: m.topic == f"{P}/stats" and predicate(json.loads(m.payload))


def test_bad_commands_are_each_one_log_line_and_the_daemon_keeps_serving(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={"still": {"url": cameras.urls["still"]}},
        stats_interval=1.0,
    )
    with MqttCapture(broker.host, broker.port, ("nvr/#",)) as capture, DaemonProcess(config) as daemon:
        capture.wait_for(_is_stats(lambda s: s["cameras"]["still"]["state"] == "streaming"), timeout=30)
        first_line = len(daemon.logs())
        began = time.time()

        bad = [(HEALTH, p) for p in BAD_HEALTH_REQUESTS.values()]
        bad += [(DETECT, p) for p in BAD_DETECT_SETS.values()]
        bad += [(f"{P}/cameras/nosuch/detect/set", b"OFF"), (f"{P}/cameras/STILL/detect/set", b"OFF")]
        for topic, payload in bad:
            _send_and_expect_one_line(capture, daemon, topic, payload)
        for topic, payload in NOT_COMMANDS:
            capture.publish(topic, payload)
        time.sleep(1.5)  # room for anything late

        # Still serving: a valid health request is answered, stats keep coming, detection untouched.
        capture.publish(HEALTH, b'{"id": "after-bad-input"}')
        answer = capture.wait_for(
            lambda m: m.topic == f"{P}/health" and json.loads(m.payload)["id"] == "after-bad-input", timeout=15
        )
        assert json.loads(answer[0].payload)["checks"]["cameras"] == {"still": "ok"}
        fresh = capture.wait_for(_is_stats(lambda s: s["time"] > began + 2), timeout=15)[-1]
        assert json.loads(fresh.payload)["cameras"]["still"]["detect"] is True
        # ... and a valid detect/set still acts.
        capture.publish(DETECT, b"OFF")
        capture.wait_for(_is_stats(lambda s: s["cameras"]["still"]["detect"] is False), timeout=15)
        assert daemon.alive
    assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.log_text()[-3000:]

    after = daemon.logs()[first_line:]
    ignored = [line for line in after if line.get("event") == "command_ignored"]
    assert len(ignored) == len(bad), ignored
    # Nothing else went wrong meanwhile: no other warnings, no reconnect of the MQTT link.
    problems = [
        line
        for line in after
        if line.get("level") in ("warning", "error", "critical") and line.get("event") != "command_ignored"
    ]
    assert problems == [], problems
    assert [line for line in after if line.get("event") == "mqtt_connected"] == []
    # Payloads are never logged; the health answers were only for valid requests (and status changes).
    assert "xxxxxxxxxxxxxxxx" not in daemon.log_text()
    assert {i for i in _health_ids(capture) if i is not None} == {"after-bad-input"}
    assert [line["enabled"] for line in after if line.get("event") == "detect_set"] == [False]  # the valid OFF
    _assert_only_own_topics(capture.snapshot())


def _assert_only_own_topics(messages: list[Received]) -> None:
    """The daemon published on its own topics only: nothing echoed to other boxes or sub-topics."""
    ours = {f"{P}/status", f"{P}/stats", f"{P}/health", f"{P}/cameras/still/motion", f"{P}/events"}
    by_test = {topic for topic, _ in NOT_COMMANDS} | {HEALTH, DETECT}
    by_test |= {f"{P}/cameras/nosuch/detect/set", f"{P}/cameras/STILL/detect/set"}
    strays = {m.topic for m in messages} - ours - by_test
    assert strays == set(), strays
