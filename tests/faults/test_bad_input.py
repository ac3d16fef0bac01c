"""Bad input over MQTT: whatever a client publishes on the command topics, the daemon's
services (built in-process as edge/app.py wires them, on a real mosquitto) ignore it with
exactly one log line and keep serving; other topics do nothing at all."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path
from typing import Any

from structlog.testing import capture_logs

from harness.broker import Mosquitto
from harness.mqtt_capture import MqttCapture, Received
from tests.services import NOWHERE, box_config, build_box, serving, until

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


def test_bad_commands_are_each_one_log_line_and_the_box_keeps_serving(tmp_path: Path, broker: Mosquitto) -> None:
    """Whatever a client publishes on the command topics is ignored with exactly one log
    line, never logged itself; valid commands still act, the connection never drops."""
    bad = [(HEALTH, p) for p in BAD_HEALTH_REQUESTS.values()]
    bad += [(DETECT, p) for p in BAD_DETECT_SETS.values()]
    bad += [(f"{P}/cameras/nosuch/detect/set", b"OFF"), (f"{P}/cameras/STILL/detect/set", b"OFF")]
    config = box_config(tmp_path, broker.port, {"still": NOWHERE})

    with capture_logs() as logs, MqttCapture(broker.host, broker.port, ("nvr/#",)) as capture:
        box = build_box(config)

        def commands() -> list[dict[str, Any]]:
            return [line for line in logs if line["event"] in ("command_ignored", "command_failed")]

        async def body() -> None:
            box.cameras.start("still")
            for topic, payload in bad:  # one at a time: each line maps to its input
                before = len(commands())
                capture.publish(topic, payload)
                await until(lambda before=before: len(commands()) > before)
                assert [line["topic"] for line in commands()[before:]] == [topic]
            for topic, payload in NOT_COMMANDS:
                capture.publish(topic, payload)
            capture.publish(HEALTH, b'{"id": "after-bad-input"}')
            await until(lambda: any(b"after-bad-input" in m.payload for m in capture.on_topic(f"{P}/health")))
            assert box.cameras.statuses["still"].detect_enabled and not box.cameras.detect_reasons()
            capture.publish(DETECT, b"OFF")  # ... and a valid detect/set still acts
            await until(lambda: "still" in box.cameras.detect_reasons())

        asyncio.run(serving(box, body))

    assert len(commands()) == len(bad) and {line["event"] for line in commands()} == {"command_ignored"}
    # Nothing else went wrong meanwhile (the worker's own lines about its camera aside).
    problems = [
        line
        for line in logs
        if line["log_level"] in ("warning", "error", "critical")
        and line["event"] != "command_ignored"
        and "camera" not in line
    ]
    assert problems == [], problems
    assert box.link.connects == 1
    assert "xxxxxxxxxxxxxxxx" not in json.dumps(logs, default=str)  # payloads are never logged
    answers = [json.loads(m.payload)["id"] for m in capture.on_topic(f"{P}/health")]
    assert {i for i in answers if i is not None} == {"after-bad-input"}
    _assert_only_own_topics(capture.snapshot())


def _assert_only_own_topics(messages: list[Received]) -> None:
    """The daemon published on its own topics only: nothing echoed to other boxes or sub-topics."""
    ours = {f"{P}/status", f"{P}/stats", f"{P}/health", f"{P}/cameras/still/motion", f"{P}/events"}
    by_test = {topic for topic, _ in NOT_COMMANDS} | {HEALTH, DETECT}
    by_test |= {f"{P}/cameras/nosuch/detect/set", f"{P}/cameras/STILL/detect/set"}
    strays = {m.topic for m in messages} - ours - by_test
    assert strays == set(), strays
