"""SIGHUP: a new configuration file is applied to the cameras it concerns and no others
(the reload itself, an invalid file included, is also tested in-process: tests/test_services.py)."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

from edge.config import parse_config
from edge.reload import plan_reload
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/box-1"
BASE = """
box: {id: box-1, data_dir: /tmp/nvr-reload-unit}
mqtt: {host: 127.0.0.1}
cameras:
  a: {url: "rtsp://h/a"}
  b: {url: "rtsp://h/b"}
"""


def test_plan_touches_only_the_cameras_that_changed() -> None:
    running = parse_config(BASE)
    loaded = parse_config(BASE.replace('b: {url: "rtsp://h/b"}', 'c: {url: "rtsp://h/c"}\n  a2: {url: "rtsp://h/x"}'))
    plan = plan_reload(running, loaded)
    assert plan.stop == ("b",) and sorted(plan.start) == ["a2", "c"] and plan.needs_restart == ()
    # A camera whose own settings change is restarted; so is every camera when the
    # event rules they are built with change.
    changed = parse_config(BASE.replace("rtsp://h/b", "rtsp://h/b2"))
    assert (plan_reload(running, changed).stop, plan_reload(running, changed).start) == (("b",), ("b",))
    events = parse_config(BASE + "events: {end_after: 9}\n")
    assert sorted(plan_reload(running, events).stop) == ["a", "b"]
    disabled = parse_config(BASE.replace('"rtsp://h/a"}', '"rtsp://h/a", enabled: false}'))
    assert plan_reload(running, disabled).stop == ("a",) and plan_reload(running, disabled).start == ()


def test_sections_the_daemon_cannot_swap_keep_their_running_values() -> None:
    running = parse_config(BASE)
    loaded = parse_config(BASE.replace("mqtt: {host: 127.0.0.1}", "mqtt: {host: 10.9.9.9}"))
    plan = plan_reload(running, loaded)
    assert plan.needs_restart == ("mqtt",) and not plan.changes_anything
    assert plan.config.mqtt.host == "127.0.0.1"


def _fps(capture: MqttCapture, since: float, camera: str) -> list[float]:
    out = []
    for m in capture.on_topic(f"{P}/stats"):
        stats = json.loads(m.payload)
        if stats["time"] >= since and camera in stats["cameras"]:
            out.append(stats["cameras"][camera]["fps_in"])
    return out


def _stats_after(capture: MqttCapture, t: float, predicate, timeout: float) -> dict:
    found = capture.wait_for(
        lambda m: m.topic == f"{P}/stats" and json.loads(m.payload)["time"] > t and predicate(json.loads(m.payload)),
        timeout=timeout,
    )
    return json.loads(found[0].payload)


def test_sighup_adds_and_removes_cameras_while_another_keeps_its_rate(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    def config(names: dict[str, str]) -> Path:
        return write_config(
            tmp_path / "edge.yaml",
            box_id="box-1",
            data_dir=tmp_path / "data",
            mqtt_port=broker.port,
            cameras={name: {"url": cameras.urls[mount]} for name, mount in names.items()},
            stats_interval=1.0,
        )

    path = config({"keep": "still", "old": "moving"})
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(path) as daemon:
        first = _stats_after(
            capture, 0, lambda s: all(c["state"] == "streaming" for c in s["cameras"].values()), timeout=30
        )
        assert set(first["cameras"]) == {"keep", "old"}
        time.sleep(4)
        before = _fps(capture, time.time() - 3, "keep")
        config({"keep": "still", "new": "moving"})
        hup = time.time()
        daemon.proc.send_signal(signal.SIGHUP)
        after = _stats_after(
            capture,
            hup,
            lambda s: set(s["cameras"]) == {"keep", "new"} and s["cameras"]["new"]["state"] == "streaming",
            timeout=30,
        )
        assert after["cameras"]["keep"]["reconnects"] == first["cameras"]["keep"]["reconnects"]
        time.sleep(4)
        during = _fps(capture, hup, "keep")
        # fps_in is counted per 1 s stats interval: at 5 fps one frame's arrival jitter moves
        # a frame between intervals (4 then 6). Over the window the rate holds; no second
        # loses more than that one frame (a reconnect or a 0.4 s hiccup would).
        rate = sum(before) / len(before)
        assert sum(during) / len(during) >= 0.9 * rate and min(during) >= 0.7 * rate, (before, during)
        reloaded = daemon.wait_log("reloaded", timeout=5)
        assert reloaded["stopped"] == ["old"] and reloaded["started"] == ["new"]
        streaming = [line["camera"] for line in daemon.logs() if line.get("event") == "camera_streaming"]
        assert streaming.count("keep") == 1, streaming  # never reconnected

        # An invalid file changing nothing: tests/test_services.py, on a daemon built in-process.
        assert len([line for line in daemon.logs() if line.get("event") == "reloaded"]) == 1
        assert daemon.alive
