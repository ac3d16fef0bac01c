"""End to end: real RTSP cameras -> the real daemon process -> a real Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from harness.broker import Mosquitto, free_port
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.mqtt_capture import MqttCapture
from tests.spec import EVENT_KEYS

P = "nvr/box-1"
FAST_EVENTS = {"events": {"end_after": 2.0, "update_interval": 2.0}}


def _events(capture: MqttCapture, camera: str) -> list[dict]:
    return [json.loads(m.payload) for m in capture.on_topic(f"{P}/events") if json.loads(m.payload)["camera"] == camera]


def _latest_stats(capture: MqttCapture, timeout: float, predicate=lambda s: True) -> dict:
    found = capture.wait_for(lambda m: m.topic == f"{P}/stats" and predicate(json.loads(m.payload)), timeout=timeout)
    return json.loads(found[-1].payload)


def test_moving_camera_raises_events_static_camera_none(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={"moving": {"url": cameras.urls["moving"]}, "still": {"url": cameras.urls["still"]}},
        extra=FAST_EVENTS,
    )
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
        daemon = DaemonProcess(config).start()
        try:
            capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=20)
            end = capture.wait_for(
                lambda m: m.topic == f"{P}/events" and json.loads(m.payload)["type"] == "end", timeout=90
            )[0]
            end_event = json.loads(end.payload)
            assert end_event["camera"] == "moving"
            stats = _latest_stats(
                capture,
                30,
                lambda s: all(c["state"] == "streaming" for c in s["cameras"].values()) and len(s["cameras"]) == 2,
            )
            health = run_cli("health", "--config", str(config), "--timeout", "10")
            assert health.returncode == 0, health.stdout + health.stderr
            assert json.loads(health.stdout)["status"] == "ok"
        finally:
            code = daemon.stop()
        assert code == 0, daemon.log_text()[-3000:]
        time.sleep(0.5)

        moving = _events(capture, "moving")
        start = next(e for e in moving if e["type"] == "start")
        assert start["id"] == end_event["id"]
        assert end_event["end_time"] >= start["start_time"]
        assert set(start) >= EVENT_KEYS
        assert start["box"] == "box-1" and start["end_time"] is None and 0 < start["peak_score"] <= 1
        x, y, w, h = start["region"]
        assert 0 <= x <= 1 and 0 <= y <= 1 and 0 < w <= 1 and 0 < h <= 1
        # Every start has exactly one end, also the ones the shutdown closed.
        starts = [e["id"] for e in moving if e["type"] == "start"]
        ends = [e["id"] for e in moving if e["type"] == "end"]
        assert sorted(starts) == sorted(ends)
        assert {e["reason"] for e in moving if e["type"] == "end"} <= {"quiet", "shutdown"}

        thumbs = capture.on_topic(f"{P}/events/{start['id']}/thumbnail")
        assert start["thumbnail"] and thumbs
        image = cv2.imdecode(np.frombuffer(thumbs[0].payload, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] == 640
        assert capture.on_topic(f"{P}/cameras/moving/snapshot")

        motion = [m.text for m in capture.on_topic(f"{P}/cameras/moving/motion")]
        assert "ON" in motion and motion[-1] == "OFF"
        assert motion.index("ON") < len(motion) - 1
        assert _events(capture, "still") == []
        assert "ON" not in [m.text for m in capture.on_topic(f"{P}/cameras/still/motion")]
        assert stats["cameras"]["moving"]["fps_in"] > 3
        assert capture.on_topic(f"{P}/status")[-1].text == "offline"


def test_dead_camera_reconnects_while_the_other_keeps_its_rate(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    dead_url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/stream1"
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={"moving": {"url": cameras.urls["moving"]}, "dead": {"url": dead_url}},
        stats_interval=2.0,
    )
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
        stats = _latest_stats(
            capture,
            40,
            lambda s: (
                s["cameras"]["dead"]["state"] == "reconnecting"
                and s["cameras"]["moving"]["state"] == "streaming"
                and s["uptime_s"] > 6
            ),
        )
        assert stats["cameras"]["dead"]["error"]
        assert "s3cret" not in json.dumps(stats)
        # The source sends 5 fps; the healthy camera keeps it while the other one fails.
        assert 4.5 <= stats["cameras"]["moving"]["fps_in"] <= 5.5, stats["cameras"]["moving"]
        health = run_cli("health", "--config", str(config), "--timeout", "10")
        assert health.returncode == 1, health.stdout + health.stderr
        report = json.loads(health.stdout)
        assert report["status"] == "degraded"
        assert report["checks"]["cameras"] == {"moving": "ok", "dead": "reconnecting"}
        assert daemon.alive
    assert "s3cret" not in daemon.log_text()


def test_health_without_a_daemon_exits_2(tmp_path: Path, broker: Mosquitto) -> None:
    config = write_config(tmp_path / "edge.yaml", box_id="nobody", data_dir=tmp_path, mqtt_port=broker.port, cameras={})
    result = run_cli("health", "--config", str(config), "--timeout", "2")
    assert result.returncode == 2
    assert "no answer" in result.stderr


def test_bad_config_prints_one_line_per_problem_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "box:\n"
        "  id: cluster 20\n"  # line 2: space in id
        "  data_dir: /tmp/x\n"
        "mqtt:\n"
        "  hots: 127.0.0.1\n"  # line 5: mistyped key
        "cameras:\n"
        "  gate-1:\n"
        "    url: http://10.0.0.64/stream1\n"  # line 8: not rtsp
        "  gate-1:\n"  # line 9: duplicate camera id
        "    url: rtsp://10.0.0.65/stream1\n"
    )
    for command in ("check-config", "run"):
        result = run_cli(command, "--config", str(path), timeout=30)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 4, result.stderr
        assert all(line.rstrip().endswith(")") and "(line " in line for line in lines)
        joined = "\n".join(lines)
        for expected in ("box.id", "mqtt.hots", "cameras.gate-1.url", "duplicate"):
            assert expected in joined


def test_check_config_summarises_without_secrets(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=tmp_path,
        mqtt_port=1883,
        cameras={"gate-1": {"url": "rtsp://admin:hunter2@10.0.0.64/stream1"}},
    )
    result = run_cli("check-config", "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "gate-1" in result.stdout and "hunter2" not in result.stdout
