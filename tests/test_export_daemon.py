"""Footage the real daemon recorded from the RTSP simulator, across a camera restart: every
segment's hash (taken while written) matches its file; `nvr-edge export` beside the running
daemon stitches a range spanning several segments and the restart (ffprobe: duration, frame
count, no decode error; the gap reported), and an event; a tampered segment is refused by
name and found by `verify`."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config
from harness.footage import probe
from harness.mqtt_capture import MqttCapture

P = "nvr/box-1"


def _segments(daemon: DaemonProcess, after: float = 0.0) -> list[dict]:
    return [e for e in daemon.logs() if e.get("event") == "segment_closed" and e["start"] > after]


def _wait(predicate, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.3)


def test_recorded_footage_exports_across_a_restart_and_verifies(
    tmp_path: Path, broker: Mosquitto, clips: dict[str, Path]
) -> None:
    data = tmp_path / "data"
    with CameraSimulator({"gate": clips["walkers"]}) as sim:
        config = write_config(
            tmp_path / "edge.yaml",
            box_id="box-1",
            data_dir=data,
            mqtt_port=broker.port,
            cameras={"gate": {"url": sim.urls["gate"]}},
            extra={
                "recording": {"segment_seconds": 3.0, "min_free_bytes": 0},
                "events": {"end_after": 2.0, "pre_roll": 2.0, "post_roll": 2.0},
            },
        )
        with MqttCapture(broker.host, broker.port, (f"{P}/events",)) as capture, DaemonProcess(config) as daemon:
            _wait(lambda: len(_segments(daemon)) >= 2, 60, "no segment recorded")
            sim.stop()  # the camera goes down for a while
            down = time.time()
            time.sleep(6)
            sim.start()
            _wait(lambda: len(_segments(daemon, after=down)) >= 3, 60, "recording did not resume")
            ends = capture.wait_for(lambda m: json.loads(m.payload)["type"] == "end", timeout=60)
            event = json.loads(ends[0].payload)
            _check_hashes(data)
            _export_range(config, data, tmp_path, down)
            _export_event(config, event, tmp_path)
            _tamper(config, data, tmp_path)
        assert not [e for e in daemon.logs() if e.get("level") == "error" and "api" in str(e.get("event"))]


def _check_hashes(data: Path) -> None:
    """The recorder hashed each segment as it wrote it: the index's digest is the file's."""
    with sqlite3.connect(data / "index.sqlite") as db:
        rows = db.execute("SELECT path, bytes, sha256 FROM segments").fetchall()
    assert len(rows) >= 5
    for path, size, digest in rows:
        content = (data / "recordings" / path).read_bytes()
        assert len(content) == size and digest == hashlib.sha256(content).hexdigest(), path


def _export_range(config: Path, data: Path, tmp_path: Path, down: float) -> None:
    with sqlite3.connect(data / "index.sqlite") as db:
        first, last = db.execute("SELECT MIN(start), MAX(end) FROM segments").fetchone()
        count = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    out = tmp_path / "range.mp4"
    result = run_cli(
        "export",
        "--config",
        str(config),
        "--camera",
        "gate",
        "--from",
        str(first + 1.0),
        "--to",
        str(last),
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "range.mp4.json").read_text())
    assert len(doc["segments"]) == count and all(s["check"] == "ok" for s in doc["segments"])
    assert doc["actual"]["from"] <= first + 1.0 and doc["actual"]["to"] == pytest.approx(last, abs=0.5)
    # The camera was down 6 s (and the daemon took a moment to reconnect): one gap, said and kept.
    assert len(doc["gaps"]) == 1, doc["gaps"]
    gap = doc["gaps"][0]
    assert 5.0 <= gap["seconds"] <= 40 and gap["from"] <= down + 3 and gap["reason"] == "not recorded"
    assert "gap: " in result.stdout and doc["skipped"] == []
    seen = probe(out)
    assert seen["errors"] == "", seen["errors"]
    assert seen["frames"] == doc["file"]["video_frames"] > 50
    assert seen["duration"] == pytest.approx(doc["actual"]["seconds"], abs=0.5)
    # Real time: the file lasts the recording plus the gap, not the recording alone.
    recorded = sum(s["end"] - s["start"] for s in doc["segments"]) - (doc["actual"]["from"] - first)
    assert seen["duration"] == pytest.approx(recorded + gap["seconds"], abs=1.0)


def _export_event(config: Path, event: dict, tmp_path: Path) -> None:
    out = tmp_path / "event.mp4"
    result = run_cli("export", "--config", str(config), "--event", event["id"], "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = json.loads((tmp_path / "event.mp4.json").read_text())
    assert doc["event"] == event["id"] and doc["camera"] == "gate"
    assert doc["requested"]["from"] == pytest.approx(event["start_time"] - 2.0, abs=0.01)
    assert doc["requested"]["to"] >= event["end_time"] + 2.0 - 0.01
    assert doc["actual"]["from"] <= event["start_time"] - 2.0 + 0.01
    assert {s["path"] for s in doc["segments"]} <= set(event["recordings"])
    assert probe(out)["errors"] == ""


def _tamper(config: Path, data: Path, tmp_path: Path) -> None:
    with sqlite3.connect(data / "index.sqlite") as db:
        path, start, end = db.execute(
            "SELECT path, start, end FROM segments ORDER BY start LIMIT 1 OFFSET 1"
        ).fetchone()
    victim = data / "recordings" / path
    raw = bytearray(victim.read_bytes())
    raw[-100] ^= 0xFF  # a byte of the last frame
    victim.write_bytes(bytes(raw))
    result = run_cli(
        "export", "--config", str(config), "--camera", "gate", "--from", str(start), "--to", str(end),
        "-o", str(tmp_path / "tampered.mp4"),
    )  # fmt: skip
    assert result.returncode == 1 and path in result.stderr and "does not match" in result.stderr
    assert not list(tmp_path.glob("tampered.mp4*"))
    verified = run_cli("verify", "--config", str(config))
    assert verified.returncode == 1
    assert [line.split(":")[0] for line in verified.stdout.splitlines()[:-1]] == [f"MISMATCH {path}"]
