"""Health requests (issue 15, items 7 and 9): every request with an id gets its own
answer, also when many arrive at once, and an id that is not printable text (a lone
surrogate, which JSON can carry as an escape) is refused with one log line, never
echoed into the retained health."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import REPO, DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/box-1"
CLI_AT_ONCE = 6
RAW_AT_ONCE = 40


@pytest.fixture(scope="module")
def running(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, MqttCapture]]:
    """A broker, one camera and the daemon; a subscriber to everything under P."""
    tmp = tmp_path_factory.mktemp("health")
    with Mosquitto() as broker, CameraSimulator({"still": clips["static"]}) as sim:
        config = write_config(
            tmp / "edge.yaml",
            box_id="box-1",
            data_dir=tmp / "data",
            mqtt_port=broker.port,
            cameras={"still": {"url": sim.urls["still"]}},
        )
        with DaemonProcess(config) as daemon, MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
            capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=30)
            yield config, capture
            assert daemon.alive, daemon.log_text()[-3000:]


def _answers(capture: MqttCapture) -> dict[str, dict]:
    """Health answers received so far, by request id."""
    found = {}
    for m in capture.on_topic(f"{P}/health"):
        report = json.loads(m.payload.decode("utf-8"))  # strict: the retained health is always text
        if report.get("id") is not None:
            found[report["id"]] = report
    return found


def test_six_nvr_edge_health_at_once_are_all_answered(running: tuple[Path, MqttCapture]) -> None:
    config, _capture = running
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "edge", "health", "--config", str(config), "--timeout", "20"],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(CLI_AT_ONCE)
    ]
    results = [(p.wait(timeout=40), *p.communicate()) for p in procs]
    # 0 ok, 1 degraded or failed, 4 starting: each an answer (edge.healthcheck).
    answered = [json.loads(out)["id"] for code, out, _err in results if code in (0, 1, 4)]
    assert len(answered) == CLI_AT_ONCE, [(code, err.strip()) for code, _out, err in results]
    assert len(set(answered)) == CLI_AT_ONCE, "each got its own answer"


def test_many_raw_requests_with_distinct_ids_each_get_their_answer(running: tuple[Path, MqttCapture]) -> None:
    _config, capture = running
    ids = [f"raw-{i}" for i in range(RAW_AT_ONCE)]
    for request_id in ids:
        capture.publish(f"{P}/cmd/health", json.dumps({"id": request_id}))
    deadline = time.monotonic() + 20
    while not set(ids) <= set(_answers(capture)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(set(ids) - set(_answers(capture))) == []


def test_an_id_with_a_lone_surrogate_is_refused_and_never_echoed(running: tuple[Path, MqttCapture]) -> None:
    config, capture = running
    log = config.with_suffix(".log")
    before = log.read_text().count('"command_ignored"')
    for payload in (b'{"id": "\\ud800"}', b'{"id": "a\\udfffb"}', b'{"id": "line\\nbreak"}'):
        capture.publish(f"{P}/cmd/health", payload)
    capture.publish(f"{P}/cmd/health", json.dumps({"id": "after-the-bad-ones"}))
    capture.wait_for(lambda m: m.topic == f"{P}/health" and b"after-the-bad-ones" in m.payload, timeout=20)
    lines = [json.loads(line) for line in log.read_text().splitlines()[-200:] if '"command_ignored"' in line]
    assert log.read_text().count('"command_ignored"') - before == 3, lines[-3:]
    assert all("printable" in line["error"] for line in lines[-3:]), lines[-3:]
    for m in capture.on_topic(f"{P}/health"):
        text = m.payload.decode("utf-8")  # raises on invalid UTF-8
        assert "\\ud8" not in text and "\\udf" not in text and "line\\nbreak" not in text
