"""Odd files and odd values an unlucky installer writes (issue 15, items 5, 6, 8 and 9):
a FIFO as the MQTT password file (at start and swapped in at run time), /etc/shadow-like
files, a 300-character camera id, 2000 cameras, a reserve larger than the disk, and a
camera URL with its host forgotten. The real CLI and daemon, a real broker, real files."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from harness.broker import Mosquitto, free_port
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/box-f"


def _write(path: Path, cameras: dict[str, Any], **sections: Any) -> Path:
    doc: dict[str, Any] = {"box": {"id": "box-f", "data_dir": str(path.parent / "data")}, **sections}
    doc["cameras"] = cameras
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _refused(config: Path, expected: str) -> None:
    """check-config and run both exit 2 at once with exactly the one line `expected`."""
    for command in ("check-config", "run"):
        began = time.monotonic()
        result = run_cli(command, "--config", str(config), timeout=30)
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert result.stderr.splitlines() == [expected], (command, result.stderr)
        assert time.monotonic() - began < 20


def test_a_fifo_as_password_file_at_start_exits_2_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "mqtt-password"
    os.mkfifo(fifo)
    config = _write(tmp_path / "edge.yaml", {}, mqtt={"username": "u", "password_file": str(fifo)})
    _refused(config, "mqtt.password_file: is not a regular file (line 6)")


def test_a_file_that_is_no_password_is_refused(tmp_path: Path) -> None:
    """As root, /etc/shadow went out as the broker password."""
    shadow = tmp_path / "shadow"
    shadow.write_text("".join(f"user{i}:$y$j9T$salt$hash{i}:20000:0:99999:7:::\n" for i in range(30)))
    config = _write(tmp_path / "edge.yaml", {}, mqtt={"username": "u", "password_file": str(shadow)})
    size = shadow.stat().st_size
    _refused(config, f"mqtt.password_file: is {size} bytes: larger than 1024 bytes, not a password file (line 6)")
    shadow.write_text("root:*:20000:0:99999:7:::\ndaemon:*:20000:0:99999:7:::\n")
    _refused(config, "mqtt.password_file: has more than one line: a password file holds the password alone (line 6)")


def test_a_300_character_camera_id_is_refused(tmp_path: Path) -> None:
    """It passed check-config and the worker crashed every 3 s with `File name too long`."""
    config = _write(tmp_path / "edge.yaml", {"c" * 300: {"url": "rtsp://10.0.0.9/s"}})
    _refused(config, f"cameras.{'c' * 61}...: camera id is 300 characters; at most 64 (line 5)")


def test_2000_cameras_are_refused(tmp_path: Path) -> None:
    """2000 cameras ran 2005 threads and made a 14.7 MB mosaic."""
    many = {f"cam-{i}": {"url": f"rtsp://10.0.{i // 250}.{i % 250}/s"} for i in range(2000)}
    config = _write(tmp_path / "edge.yaml", many)
    _refused(config, "cameras: 2000 cameras; a box takes at most 64 (README: Limits) (line 4)")


def test_a_url_with_its_host_forgotten_is_refused_without_the_secret(tmp_path: Path) -> None:
    """`rtsp://admin:Zq@7:xSECRETx` passed; the log and P/stats showed `rtsp://***@7:xSECRETx`."""
    config = _write(tmp_path / "edge.yaml", {"gate": {"url": "rtsp://admin:Zq@7:xSECRETx"}})
    _refused(config, "cameras.gate.url: has no valid host name or address (line 6)")


def _page_answers(base: str) -> bool:
    try:
        with urllib.request.urlopen(base + "/cameras.json", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def test_a_fifo_swapped_in_for_the_password_file_never_hangs_the_loop(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    """At the next reconnect the daemon opened the FIFO on its event loop and hung there."""
    password = tmp_path / "mqtt-password"
    password.write_text("pw\n")
    password.chmod(0o600)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "edge.yaml", box_id="box-f", data_dir=tmp_path / "data", mqtt_port=broker.port,
        cameras={"still": {"url": cameras.urls["still"]}}, stats_interval=1.0,
        extra={"mqtt": {"username": "u", "password_file": str(password)}, "web": {"listen": f"127.0.0.1:{port}"}},
    )  # fmt: skip
    with (
        MqttCapture(broker.host, broker.port, (f"{P}/status", f"{P}/stats")) as capture,
        DaemonProcess(config) as daemon,
    ):
        capture.wait_for(lambda m: m.topic == f"{P}/stats", timeout=30)
        password.unlink()
        os.mkfifo(password)
        broker.stop()
        broker.start()  # the daemon reconnects, and reads the password file again
        refused = daemon.wait_log("mqtt_link_error", timeout=30, error="mqtt.password_file: is not a regular file")
        # The loop is free: the page answers, again and again, while the link retries.
        for _ in range(5):
            assert _page_answers(base), daemon.log_text()[-2000:]
            time.sleep(0.5)
        password.unlink()
        password.write_text("pw\n")
        back = time.time()
        capture.wait_for(lambda m: m.topic == f"{P}/stats" and m.at > back, timeout=45)
        assert daemon.alive and refused["level"] == "error"
    assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.log_text()[-3000:]
    assert "pw" not in {line.get("error") for line in daemon.logs()}


def test_a_reserve_larger_than_the_disk_is_said_by_check_config_and_health(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    """min_free_bytes larger than the filesystem deletes every segment as it closes."""
    config = write_config(
        tmp_path / "edge.yaml", box_id="box-f", data_dir=tmp_path / "data", mqtt_port=broker.port,
        cameras={"still": {"url": cameras.urls["still"]}}, stats_interval=1.0,
        extra={"recording": {"min_free_bytes": "1000PB"}},
    )  # fmt: skip
    checked = run_cli("check-config", "--config", str(config))
    assert checked.returncode == 0, checked.stderr
    warning = [line for line in checked.stdout.splitlines() if "min_free_bytes" in line]
    assert len(warning) == 1 and warning[0].startswith("warning: recording.min_free_bytes (1000 PB) is more than")
    with MqttCapture(broker.host, broker.port, (f"{P}/stats",)) as capture, DaemonProcess(config) as daemon:
        capture.wait_for(
            lambda m: m.topic == f"{P}/stats" and json.loads(m.payload)["cameras"]["still"]["state"] == "streaming",
            timeout=30,
        )
        asked = run_cli("health", "--config", str(config), "--timeout", "10")
        assert daemon.alive
    assert asked.returncode == 1, asked.stderr
    report = json.loads(asked.stdout)
    assert report["status"] == "degraded" and report["checks"]["cameras"] == {"still": "ok"}
    assert report["warnings"]["disk"].startswith("recording.min_free_bytes (1000 PB) is more than the whole filesystem")
