"""Disk faults against the real daemon: a data_dir that turns read-only while recording,
and one that is read-only from the start. Health says `failed` and why, the log says it
once, nothing crashes, and recording resumes by itself once the disk takes writes."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mounts import (
    can_fake_ext4_errors,
    is_root,
    make_read_only_under_writers,
    make_writable_again,
    mount_ext4_image,
    mount_tmpfs,
    remount,
    trigger_ext4_error,
    unmount_all,
)
from harness.mqtt_capture import MqttCapture

pytestmark = pytest.mark.skipif(not is_root(), reason="mounting a tmpfs and remounting it read-only needs root")

P = "nvr/box-1"
SEGMENT_S = 2.0  # the generated clips have a keyframe every 2 s
UNEXPECTED = {"recording_write_failed", "retention_failed", "worker_crashed", "camera_down", "tick_failed"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 256 MB tmpfs as data_dir (over the 64 MB low-space mark, so only the fault counts)."""
    data = tmp_path / "data"
    mount_tmpfs(data)
    try:
        yield data
    finally:
        unmount_all(data)


def _config(tmp_path: Path, data: Path, broker: Mosquitto, cameras: CameraSimulator) -> Path:
    return write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=data,
        mqtt_port=broker.port,
        cameras={"moving": {"url": cameras.urls["moving"]}},
        stats_interval=1.0,
        extra={"recording": {"segment_seconds": SEGMENT_S, "min_free_bytes": 0}},
    )


def _wait_online(capture: MqttCapture, daemon: DaemonProcess, timeout: float = 20) -> None:
    """Wait for `online`, failing at once (with the log) if the daemon exits instead."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(m.text == "online" for m in capture.on_topic(f"{P}/status")):
            return
        assert daemon.alive, f"the daemon exited:\n{daemon.log_text()[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no online within {timeout} s:\n{daemon.log_text()[-3000:]}")


def _ask_health(capture: MqttCapture, timeout: float = 10) -> dict[str, Any]:
    request_id = uuid.uuid4().hex
    capture.publish(f"{P}/cmd/health", json.dumps({"id": request_id}))
    found = capture.wait_for(
        lambda m: m.topic == f"{P}/health" and json.loads(m.payload)["id"] == request_id, timeout=timeout
    )
    return json.loads(found[0].payload)


def _wait_health(capture: MqttCapture, predicate: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        report = _ask_health(capture)
        if predicate(report) or time.monotonic() > deadline:
            return report
        time.sleep(0.5)


def _wait_stats(capture: MqttCapture, predicate: Any, timeout: float, after: float = 0.0) -> dict[str, Any]:
    found = capture.wait_for(
        lambda m: (
            m.topic == f"{P}/stats" and json.loads(m.payload)["time"] > after and predicate(json.loads(m.payload))
        ),
        timeout=timeout,
    )
    return json.loads(found[-1].payload)


def _events(daemon: DaemonProcess, name: str) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("event") == name]


def _segments_on_disk(data: Path) -> set[str]:
    root = data / "recordings"
    return {p.relative_to(root).as_posix() for p in root.rglob("*.mp4")} if root.exists() else set()


def _wait_new_segments(daemon: DaemonProcess, after: float, count: int, timeout: float) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [s for s in _events(daemon, "segment_closed") if s["start"] >= after - 0.5]
        if len(new) >= count:
            return new
        time.sleep(0.5)
    raise AssertionError(f"fewer than {count} segments closed after the disk came back:\n{daemon.log_text()[-3000:]}")


def _assert_quiet_log(daemon: DaemonProcess, only_disk_line: bool = True) -> None:
    """One line for the fault and one for the recovery; nothing per packet, nothing crashed.

    With `only_disk_line` False, other parts (the outbox) may say it too, but once each."""
    assert len(_events(daemon, "disk_write_failed")) == 1, _events(daemon, "disk_write_failed")
    assert len(_events(daemon, "disk_write_recovered")) == 1, daemon.log_text()[-3000:]
    unexpected = [line for line in daemon.logs() if line.get("event") in UNEXPECTED]
    assert unexpected == [], unexpected
    problems = [line["event"] for line in daemon.logs() if line.get("level") in ("warning", "error", "critical")]
    if only_disk_line:
        assert problems == ["disk_write_failed"], problems
    else:
        assert len(problems) == len(set(problems)), problems


def test_data_dir_turns_read_only_while_recording_then_recovers(
    tmp_path: Path, small_disk: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = _config(tmp_path, small_disk, broker, cameras)
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
        daemon.wait_log("segment_closed", timeout=30)
        assert _ask_health(capture)["checks"]["disk"] == "ok"

        make_read_only_under_writers(small_disk)
        broke_at = time.time()
        report = _wait_health(capture, lambda r: r["status"] == "failed", timeout=10)
        assert report["status"] == "failed", report
        assert "read-only" in report["checks"]["disk"], report
        # Recording really fails (the next segment cannot be created), the camera streams on.
        stats = _wait_stats(capture, lambda s: s["recording"]["write_errors"] >= 3, timeout=20, after=broke_at)
        assert "read-only" in stats["recording"]["disk"]
        assert stats["cameras"]["moving"]["state"] == "streaming"
        failed = daemon.wait_log("disk_write_failed", timeout=5)
        assert failed["reason"] == "read-only file system"
        on_disk_while_broken = _segments_on_disk(small_disk)

        make_writable_again(small_disk)
        fixed_at = time.time()
        new = _wait_new_segments(daemon, fixed_at, count=2, timeout=20)
        assert {s["path"] for s in new} - on_disk_while_broken, "no new segment file after the disk came back"
        assert {s["path"] for s in new} <= _segments_on_disk(small_disk)
        report = _wait_health(capture, lambda r: r["status"] == "ok", timeout=10)
        assert report["status"] == "ok" and report["checks"]["disk"] == "ok", report
        assert daemon.alive
    assert daemon.proc is not None and daemon.proc.returncode == 0
    _assert_quiet_log(daemon)
    recovered = _events(daemon, "disk_write_recovered")[0]
    assert recovered["failures"] >= 3


def test_daemon_starts_degraded_on_a_read_only_data_dir_and_recovers(
    tmp_path: Path, small_disk: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    """Started on a dead disk, the box still streams, answers health (failed, and why) and
    keeps the district informed; once the disk is writable again, recording starts."""
    config = _config(tmp_path, small_disk, broker, cameras)
    remount(small_disk, "ro")
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
        _wait_online(capture, daemon)
        stats = _wait_stats(capture, lambda s: s["cameras"]["moving"]["state"] == "streaming", timeout=30)
        assert "read-only" in stats["recording"]["disk"], stats["recording"]
        report = _ask_health(capture)
        assert report["status"] == "failed" and "read-only" in report["checks"]["disk"], report
        assert report["checks"]["cameras"] == {"moving": "ok"}
        time.sleep(6)  # past a retry of the storage: still one log line
        assert len(_events(daemon, "disk_write_failed")) == 1
        assert _segments_on_disk(small_disk) == set()

        remount(small_disk, "rw")
        fixed_at = time.time()
        _wait_new_segments(daemon, fixed_at, count=1, timeout=25)
        assert _segments_on_disk(small_disk)
        report = _wait_health(capture, lambda r: r["status"] == "ok", timeout=10)
        assert report["checks"]["disk"] == "ok", report
        assert daemon.alive
    assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.log_text()[-3000:]
    _assert_quiet_log(daemon, only_disk_line=False)


def _fill(data: Path) -> Path:
    """Something else takes every last byte of the disk."""
    filler = data / "filler.bin"
    with open(filler, "wb", buffering=0) as out:
        for chunk in (1 << 20, 1 << 12):
            try:
                while True:
                    out.write(b"\0" * chunk)
            except OSError:
                pass
    return filler


def test_full_disk_frees_footage_says_so_once_and_recovers(
    tmp_path: Path, small_disk: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    """No reserve configured (min_free_bytes 0): a write that fails with ENOSPC still frees
    the oldest footage; once there is none left, the disk status says it is full, once.

    Read from stats, which bypass the outbox (on a full disk the outbox cannot store the
    health answer: see the test below)."""
    config = _config(tmp_path, small_disk, broker, cameras)
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
        deadline = time.monotonic() + 30
        while len(_events(daemon, "segment_closed")) < 3 and time.monotonic() < deadline:
            time.sleep(0.5)
        filled_at = time.time()
        filler = _fill(small_disk)
        stats = _wait_stats(
            capture, lambda s: s["recording"]["disk"] == "recording cannot write: disk full", 20, after=filled_at
        )
        assert stats["cameras"]["moving"]["state"] == "streaming"
        stats = _wait_stats(capture, lambda s: s["recording"]["deleted_segments"] > 0, timeout=20, after=filled_at)
        assert stats["recording"]["disk_full_events"] > 0
        time.sleep(4)  # two more keyframes that cannot be written: no more log lines
        assert daemon.wait_log("disk_write_failed", timeout=1)["reason"] == "disk full"

        filler.unlink()
        freed_at = time.time()
        _wait_new_segments(daemon, freed_at, count=2, timeout=20)
        stats = _wait_stats(capture, lambda s: s["recording"]["disk"] == "ok", timeout=10, after=freed_at)
        assert stats["recording"]["write_errors"] > 0
        assert daemon.alive
    assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.log_text()[-3000:]
    assert len(_events(daemon, "disk_write_failed")) == 1, _events(daemon, "disk_write_failed")
    unexpected = [line for line in daemon.logs() if line.get("event") in UNEXPECTED]
    assert unexpected == [], unexpected


def test_full_disk_health_is_still_answered_without_a_log_flood(
    tmp_path: Path, small_disk: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    config = _config(tmp_path, small_disk, broker, cameras)
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
        daemon.wait_log("segment_closed", timeout=30)
        _fill(small_disk)
        report = _wait_health(capture, lambda r: "disk full" in r["checks"]["disk"], timeout=15)
        assert report["status"] == "failed" and "disk full" in report["checks"]["disk"], report
        time.sleep(3)
    lines = [line["event"] for line in daemon.logs() if line.get("level") in ("warning", "error", "critical")]
    assert max(lines.count(event) for event in set(lines)) <= 3, {e: lines.count(e) for e in set(lines)}


@pytest.mark.skipif(not can_fake_ext4_errors(), reason="needs loop devices and mkfs.ext4")
def test_kernel_remounts_the_disk_read_only_under_open_files(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    """The real fault: ext4 with errors=remount-ro hits an error, every open file (index,
    outbox, the segment being written) turns read-only at once. The box keeps streaming,
    answers health, and events still reach the district from memory."""
    data = tmp_path / "data"
    mount_ext4_image(tmp_path / "disk.img", data)
    try:
        config = _config(tmp_path, data, broker, cameras)
        with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
            daemon.wait_log("segment_closed", timeout=30)
            trigger_ext4_error(data)
            broke_at = time.time()
            report = _wait_health(capture, lambda r: r["status"] == "failed", timeout=15)
            assert report["checks"]["disk"] == "recording cannot write: read-only file system", report
            assert report["checks"]["cameras"] == {"moving": "ok"}
            # The walkers clip raises an event within ~20 s: it must arrive though nothing can be stored.
            capture.wait_for(
                lambda m: m.topic == f"{P}/events" and json.loads(m.payload)["start_time"] > broke_at, timeout=40
            )
            stats = _wait_stats(capture, lambda s: s["recording"]["write_errors"] > 0, timeout=15, after=broke_at)
            assert stats["cameras"]["moving"]["state"] == "streaming"
            assert daemon.alive
        assert daemon.proc is not None and daemon.proc.returncode == 0, daemon.log_text()[-3000:]
        assert len(_events(daemon, "disk_write_failed")) == 1
        assert [line for line in daemon.logs() if line.get("event") in UNEXPECTED] == []
        problems = [line["event"] for line in daemon.logs() if line.get("level") in ("warning", "error", "critical")]
        assert len(problems) == len(set(problems)), problems
    finally:
        unmount_all(data)
