"""Recording end to end: real RTSP cameras -> the real daemon -> fMP4 segments on disk."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/box-1"
GOP_S = 2.0  # the generated clips have a keyframe every 2 s


def probe(path: Path) -> tuple[int, float]:
    """(decoded frames, duration) as ffprobe sees the file; (0, 0) if it does not play."""
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_frames",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_frames:format=duration",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if out.returncode != 0:
        return 0, 0.0
    info = json.loads(out.stdout)
    frames = int(info.get("streams", [{}])[0].get("nb_read_frames", 0) or 0)
    return frames, float(info.get("format", {}).get("duration", 0) or 0)


def closed_segments(daemon: DaemonProcess) -> list[dict]:
    return [line for line in daemon.logs() if line.get("event") == "segment_closed"]


def disk_usage(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.mp4") if p.is_file())


def index_rows(data: Path) -> list[tuple[str, float, float, int]]:
    with sqlite3.connect(data / "index.sqlite") as db:
        return db.execute("SELECT path, start, end, bytes FROM segments WHERE deleting = 0 ORDER BY start").fetchall()


def test_ring_buffer_keeps_budget_contiguity_and_event_footage(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    budget = 2_000_000  # reached after ~20 s at the clips' ~450 kbit/s, two cameras
    segment_s = 5.0
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=data,
        mqtt_port=broker.port,
        cameras={"moving": {"url": cameras.urls["moving"]}, "still": {"url": cameras.urls["still"]}},
        extra={
            "recording": {"segment_seconds": segment_s, "max_bytes": budget, "min_free_bytes": 0},
            "events": {"end_after": 2.0, "pre_roll": 3.0, "post_roll": 3.0},
        },
    )
    samples = []
    with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
        daemon = DaemonProcess(config).start()
        try:
            deadline = time.monotonic() + 70  # ~50 s of the ring buffer turning over at its budget
            while time.monotonic() < deadline:
                samples.append(disk_usage(data / "recordings"))
                time.sleep(1.0)
            assert daemon.alive
        finally:
            assert daemon.stop() == 0
    segments = closed_segments(daemon)
    biggest = max(s["bytes"] for s in segments)
    # Sampled every second, usage never exceeds the budget by more than one segment per camera.
    assert max(samples) <= budget + 2 * biggest, (max(samples), budget, biggest)
    assert max(samples) > budget * 0.7  # the budget was really reached

    for camera in ("moving", "still"):
        mine = sorted((s for s in segments if s["path"].startswith(camera + "/")), key=lambda s: s["start"])
        assert sum(s["end"] - s["start"] for s in mine) > 55
        for before, after in zip(mine, mine[1:], strict=False):
            assert abs(after["start"] - before["end"]) <= GOP_S, (before, after)
        for seg in mine[1:-1]:
            assert abs((seg["end"] - seg["start"]) - segment_s) <= GOP_S, seg

    rows = index_rows(data)
    assert len(rows) < len(segments) - 4, "the ring did not turn: retention deleted nothing"
    assert rows and sorted(r[0] for r in rows) == sorted(
        p.relative_to(data / "recordings").as_posix() for p in (data / "recordings").rglob("*.mp4")
    )
    for path, start, end, _ in rows[:: max(1, len(rows) // 8)]:
        frames, duration = probe(data / "recordings" / path)
        assert frames > 0 and abs(duration - (end - start)) <= GOP_S

    events = [json.loads(m.payload) for m in capture.on_topic(f"{P}/events")]
    ends = [e for e in events if e["type"] == "end" and e["reason"] == "quiet"]
    assert ends, "the moving camera raised no event"
    by_path = {s["path"]: s for s in segments}
    first_start = min(s["start"] for s in segments if s["path"].startswith("moving/"))
    for end in ends:
        covered = [by_path[p] for p in end["recordings"]]
        assert min(s["start"] for s in covered) <= max(end["start_time"] - 3.0, first_start) + 0.01
        assert max(s["end"] for s in covered) >= end["end_time"] + 3.0

    # Event footage outlives plain footage of the same age.
    with sqlite3.connect(data / "index.sqlite") as db:
        linked = {
            r[0] for r in db.execute("SELECT s.path FROM segments s JOIN segment_events e ON e.segment_id = s.id")
        }
    kept = {r[0]: r[1] for r in rows}
    plain_starts = [start for path, start in kept.items() if path not in linked]
    event_starts = [start for path, start in kept.items() if path in linked]
    assert event_starts and plain_starts and min(event_starts) < min(plain_starts)


def test_kill_9_keeps_every_segment_playable_and_restart_reconciles(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "edge.yaml",
        box_id="box-1",
        data_dir=data,
        mqtt_port=broker.port,
        cameras={"moving": {"url": cameras.urls["moving"]}},
        extra={"recording": {"segment_seconds": 6.0}},
    )
    daemon = DaemonProcess(config).start()
    try:
        deadline = time.monotonic() + 60
        while len(closed_segments(daemon)) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        time.sleep(4.0)  # well into the third segment
    finally:
        daemon.kill()
    indexed = {r[0] for r in index_rows(data)}
    files = {p.relative_to(data / "recordings").as_posix() for p in (data / "recordings").rglob("*.mp4")}
    interrupted = files - indexed
    assert len(indexed) >= 2 and len(interrupted) == 1
    for path in indexed:
        assert probe(data / "recordings" / path)[0] >= 25  # ~6 s at 5 fps
    frames, _ = probe(data / "recordings" / interrupted.pop())
    assert frames >= 10  # plays up to its last fragment (~4 s were written, at most ~1 s lost)

    again = DaemonProcess(config, tmp_path / "again.log").start()
    try:
        swept = again.wait_log("daemon_started", timeout=30)
        assert swept["indexed_files"] == 1
        deadline = time.monotonic() + 30
        while not closed_segments(again) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert closed_segments(again), "recording did not continue after the restart"
    finally:
        assert again.stop() == 0
    rows = index_rows(data)
    on_disk = {p.relative_to(data / "recordings").as_posix() for p in (data / "recordings").rglob("*.mp4")}
    assert {r[0] for r in rows} == on_disk and len(rows) >= 4


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_disk_frees_oldest_footage_and_keeps_recording(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator
) -> None:
    data = tmp_path / "small"
    data.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(data)], check=True)
    try:
        config = write_config(
            tmp_path / "edge.yaml",
            box_id="box-1",
            data_dir=data,
            mqtt_port=broker.port,
            cameras={"moving": {"url": cameras.urls["moving"]}},
            extra={"recording": {"segment_seconds": 3.0, "max_bytes": "1GB", "min_free_bytes": "1MB"}},
        )
        with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture, DaemonProcess(config) as daemon:
            deadline = time.monotonic() + 40
            while len(closed_segments(daemon)) < 3 and time.monotonic() < deadline:
                time.sleep(0.5)
            # Something else fills the disk to the last byte.
            with open(data / "filler.bin", "wb", buffering=0) as filler:
                try:
                    while True:
                        filler.write(b"\0" * 65536)
                        filler.flush()
                except OSError:
                    pass
            filled_at = time.time()
            time.sleep(20)
            assert daemon.alive
            after = [s for s in closed_segments(daemon) if s["start"] > filled_at]
            assert len(after) >= 3, "recording stopped after the disk filled"
            stats = [json.loads(m.payload) for m in capture.on_topic(f"{P}/stats")]
            assert stats[-1]["recording"]["deleted_segments"] > 0
            assert stats[-1]["cameras"]["moving"]["state"] == "streaming"
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False)
