"""Footage for an investigation, on the box: segment hashes taken while written, the index
migration, `nvr-edge export` (remux of real H.264 + AAC segments, gaps kept, trimmed to
keyframes, checked against the hashes), `nvr-edge verify`, and retention's leases."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path

import av
import pytest

from edge.export import Exporter, ExportError
from edge.footage import Plan, parse_time
from edge.index import IndexReader, RecordingIndex
from edge.leases import Lease, leased
from edge.recorder import MUX_OPTIONS, SegmentFile
from edge.retention import Retention
from harness.daemon import REPO, run_cli
from harness.footage import make_clip, probe, write_segments

SEGMENT_S = 4.0


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 s of 320x180 5 fps H.264 (a keyframe every 2 s) with AAC audio."""
    return make_clip(tmp_path_factory.mktemp("clips") / "av20.mp4", seconds=20)


@pytest.fixture
def box(tmp_path: Path, clip: Path) -> tuple[Path, float, list[tuple[str, float, float]]]:
    """A box whose camera `gate` recorded 12 s, was down 7.5 s, then recorded 8 s more."""
    data = tmp_path / "data"
    t0 = float(int(time.time()) - 3600)
    written = write_segments(data, "gate", clip, t0, segment_s=SEGMENT_S, gaps={3: 7.5})
    config = tmp_path / "edge.yaml"
    config.write_text(
        f"box: {{id: box-1, data_dir: {data}}}\ncameras:\n  gate: {{url: 'rtsp://127.0.0.1:1/x', share: events}}\n"
        "events: {pre_roll: 2, post_roll: 2}\n"
    )
    return config, t0, written


def _export(config: Path, *args: str) -> tuple[int, str, str]:
    result = run_cli("export", "--config", str(config), *args)
    return result.returncode, result.stdout, result.stderr


def test_segment_file_hashes_what_the_muxer_wrote(tmp_path: Path, clip: Path) -> None:
    path = tmp_path / "seg.mp4"
    file = SegmentFile(path)
    with av.open(str(clip)) as inp, av.open(file, "w", format="mp4", options=MUX_OPTIONS) as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.start_encoding()
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    file.close()
    assert file.size == path.stat().st_size > 100_000
    assert file.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_old_index_is_migrated_and_its_rows_say_they_have_no_hash(tmp_path: Path) -> None:
    db_path = tmp_path / "index.sqlite"
    with sqlite3.connect(db_path) as db:  # the schema before hashes were kept
        db.executescript(
            "CREATE TABLE segments (id INTEGER PRIMARY KEY AUTOINCREMENT, camera TEXT NOT NULL, path TEXT NOT NULL "
            "UNIQUE, start REAL NOT NULL, end REAL NOT NULL, bytes INTEGER NOT NULL, deleting INTEGER NOT NULL "
            "DEFAULT 0); INSERT INTO segments (camera, path, start, end, bytes) VALUES ('gate', 'gate/a.mp4', 1, 2, 3);"
        )
    assert IndexReader(db_path).all_segments()[0].sha256 is None  # readable before the daemon migrates it
    index = RecordingIndex(db_path)
    index.add("gate", "gate/b.mp4", 2, 3, 4, "ab" * 32)
    index.close()
    rows = {s.path: s.sha256 for s in IndexReader(db_path).all_segments("gate")}
    assert rows == {"gate/a.mp4": None, "gate/b.mp4": "ab" * 32}
    with sqlite3.connect(db_path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2


def test_parse_time_takes_what_people_type() -> None:
    local = datetime(2026, 11, 28, 15, 59, 50).timestamp()
    assert parse_time("2026-11-28T15:59:50") == local
    assert parse_time("2026-11-28 15:59:50") == local
    assert parse_time("2026-11-28T15:59:50Z") == datetime(2026, 11, 28, 15, 59, 50, tzinfo=UTC).timestamp()
    assert parse_time("2026-11-28T16:59:50+01:00") == parse_time("2026-11-28T15:59:50Z")
    assert parse_time("15:59", today=date(2026, 11, 28)) == local - 50
    assert parse_time("15:59:50", today=date(2026, 11, 28)) == local
    assert parse_time("1764345600.5") == 1764345600.5
    for bad in ("yesterday", "25:00", "2026-13-01", ""):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad)


def test_export_keeps_the_gap_audio_and_real_time(box: tuple[Path, float, list], tmp_path: Path) -> None:
    config, t0, written = box
    out = tmp_path / "out.mp4"
    # From 5.1 s (the keyframe at or before it is at 4 s) to 22.3 s, across the 7.5 s gap after 12 s.
    code, stdout, stderr = _export(
        config, "--camera", "gate", "--from", str(t0 + 5.1), "--to", str(t0 + 22.3), "-o", str(out)
    )
    assert code == 0, stderr
    assert "gap:" in stdout and "(7.5 s, at 8.0 s in the file): not recorded" in stdout
    doc = json.loads((tmp_path / "out.mp4.json").read_text())
    assert doc["actual"]["from"] == pytest.approx(t0 + 4.0, abs=0.01)
    assert doc["actual"]["to"] >= t0 + 22.3 and doc["actual"]["to"] - (t0 + 22.3) <= 0.2 + 1e-3
    assert [(g["at_s"], g["seconds"]) for g in doc["gaps"]] == [(8.0, 7.5)]
    assert [s["path"] for s in doc["segments"]] == [w[0] for w in written[1:4]]
    assert all(s["check"] == "ok" for s in doc["segments"])
    assert doc["file"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert doc["file"]["bytes"] == out.stat().st_size and doc["box"] == "box-1" and doc["nvr_edge_version"]
    seen = probe(out)
    assert seen["errors"] == "" and seen["audio"]
    assert seen["duration"] == pytest.approx(doc["actual"]["seconds"], abs=0.25)
    # 4..12 s and 19.5..22.3 s at 5 fps (the frame at 22.1 s ends at 22.3): 40 + 14 frames, all decoded.
    assert seen["frames"] == doc["file"]["video_frames"] == 54
    # The same range again: the same bytes (a district can re-export and compare).
    assert _export(config, "--camera", "gate", "--from", str(t0 + 5.1), "--to", str(t0 + 22.3), "-o",
                   str(tmp_path / "again.mp4"))[0] == 0  # fmt: skip
    assert (tmp_path / "again.mp4").read_bytes() == out.read_bytes()


def test_export_to_stdout_is_the_same_file(box: tuple[Path, float, list], tmp_path: Path) -> None:
    config, t0, _ = box
    args = ["--camera", "gate", "--from", str(t0 + 1), "--to", str(t0 + 9)]
    assert _export(config, *args, "-o", str(tmp_path / "a.mp4"))[0] == 0
    piped = subprocess.run(
        [sys.executable, "-m", "edge", "export", "--config", str(config), *args, "-o", "-"],
        capture_output=True, cwd=REPO, timeout=60, check=False,
    )  # fmt: skip
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "a.mp4").read_bytes()
    assert b"SHA-256 " + hashlib.sha256(piped.stdout).hexdigest().encode() in piped.stderr


def test_an_event_export_is_its_pre_roll_to_post_roll(box: tuple[Path, float, list], tmp_path: Path) -> None:
    config, t0, written = box
    index = RecordingIndex(config.parent / "data" / "index.sqlite")
    event_id = f"gate-{int((t0 + 6.5) * 1000)}"
    index.link_event("gate", event_id, t0 + 9.0, t0 + 4.5, t0 + 11.0)
    index.close()
    out = tmp_path / "event.mp4"
    code, stdout, stderr = _export(config, "--event", event_id, "-o", str(out))
    assert code == 0, stderr
    doc = json.loads(out.with_name("event.mp4.json").read_text())
    assert doc["event"] == event_id and doc["camera"] == "gate" and doc["share"] == "events"
    assert doc["requested"]["from"] == pytest.approx(t0 + 4.5) and doc["requested"]["to"] == pytest.approx(t0 + 11.0)
    assert doc["actual"]["from"] == pytest.approx(t0 + 4.0, abs=0.01) and probe(out)["errors"] == ""
    code, _, stderr = _export(config, "--event", "gate-1000", "-o", str(tmp_path / "none.mp4"))
    assert code == 1 and "no footage of event gate-1000" in stderr


def test_nothing_recorded_says_what_is_nearest(box: tuple[Path, float, list], tmp_path: Path) -> None:
    config, t0, _ = box
    code, stdout, stderr = _export(config, "--camera", "gate", "--from", str(t0 + 13), "--to", str(t0 + 18), "-o",
                                   str(tmp_path / "x.mp4"))  # fmt: skip
    assert code == 1 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1
    assert "nothing recorded of gate" in stderr and "footage ends at" in stderr and "footage starts at" in stderr
    assert not list(tmp_path.glob("x.mp4*"))
    for args, why in (
        (["--camera", "gate", "--from", "noon", "--to", "13:00"], "is not a time"),
        (["--camera", "gate", "--from", "13:00", "--to", "12:00"], "must be after"),
        (["--camera", "yard", "--from", "12:00", "--to", "13:00"], "no camera 'yard'"),
        (["--camera", "gate", "--from", "12:00"], "give --camera, --from and --to"),
    ):
        code, _, stderr = _export(config, *args)
        assert code == 2 and why in stderr, (args, stderr)


def test_a_tampered_segment_is_refused_by_name_and_found_by_verify(
    box: tuple[Path, float, list], tmp_path: Path
) -> None:
    config, t0, written = box
    data = config.parent / "data"
    assert run_cli("verify", "--config", str(config)).returncode == 0
    victim = data / "recordings" / written[1][0]
    raw = bytearray(victim.read_bytes())
    raw[len(raw) // 2] ^= 0x01  # one bit of one frame
    victim.write_bytes(bytes(raw))

    range_args = ["--camera", "gate", "--from", str(t0), "--to", str(t0 + 11)]
    code, stdout, stderr = _export(config, *range_args, "-o", str(tmp_path / "x.mp4"))
    assert code == 1 and written[1][0] in stderr and "does not match" in stderr
    assert not list(tmp_path.glob("x.mp4*"))  # nothing passed off as an export

    code, stdout, stderr = _export(config, *range_args, "-o", str(tmp_path / "y.mp4"), "--allow-mismatch")
    assert code == 0, stderr
    doc = json.loads((tmp_path / "y.mp4.json").read_text())
    assert doc["mismatches_allowed"] is True
    checks = {s["path"]: s for s in doc["segments"]}
    assert checks[written[1][0]]["check"] == "mismatch" and "MISMATCH allowed in" in stdout
    assert checks[written[1][0]]["sha256_found"] == hashlib.sha256(bytes(raw)).hexdigest()
    assert checks[written[0][0]]["check"] == "ok"

    result = run_cli("verify", "--config", str(config))
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith(f"MISMATCH {written[1][0]}: recorded ")
    assert "checked 5 segments" in result.stdout and "1 problem(s)" in result.stdout
    (data / "recordings" / written[4][0]).unlink()
    result = run_cli("verify", "--config", str(config), "--camera", "gate")
    assert result.returncode == 1 and f"MISSING {written[4][0]}" in result.stdout


def test_a_picture_format_change_is_left_out_and_said(tmp_path: Path, clip: Path) -> None:
    data = tmp_path / "data"
    t0 = float(int(time.time()) - 600)
    first = write_segments(data, "gate", clip, t0, segment_s=SEGMENT_S)
    other = make_clip(tmp_path / "small.mp4", seconds=4, size="240x136")
    later = write_segments(data, "gate", other, first[-1][2], segment_s=SEGMENT_S)
    after = write_segments(data, "gate", clip, later[-1][2], segment_s=SEGMENT_S)
    reader = IndexReader(data / "index.sqlite")
    plan = Plan("gate", t0 + 14, after[0][2], reader.segments_between("gate", t0 + 14, after[0][2]))
    exporter = Exporter(plan, data / "recordings")
    with (tmp_path / "out.mp4").open("wb") as out:
        exporter.run(out)
    doc = exporter.manifest("box-1", "out.mp4")
    assert [s["path"] for s in doc["skipped"]] == [later[0][0]]
    assert "picture format changed (h264 320x180 -> h264 240x136)" in doc["skipped"][0]["reason"]
    assert len(doc["gaps"]) == 1 and doc["gaps"][0]["reason"].startswith("left out: picture format changed")
    assert probe(tmp_path / "out.mp4")["errors"] == ""


def test_retention_skips_leased_segments_unless_the_disk_is_full(tmp_path: Path, clip: Path) -> None:
    data = tmp_path / "data"
    written = write_segments(data, "gate", clip, time.time() - 600, segment_s=SEGMENT_S)
    index = RecordingIndex(data / "index.sqlite")
    retention = Retention(data / "recordings", index, 1, 0, 0.0, leased=lambda: leased(data))
    reader = IndexReader(data / "index.sqlite")
    plan = Plan("gate", 0, time.time(), reader.all_segments()[:2])  # an export of the two oldest
    lease = Lease(data, [seg.path for seg in plan.segments])
    assert leased(data) == {written[0][0], written[1][0]}
    assert retention.enforce() == 3  # over budget: everything but what the export reads goes
    assert [s.path for s in reader.all_segments()] == [written[0][0], written[1][0]]

    # Then a write finds the disk full: recording wins over the export, which fails clearly.
    retention.disk_full()
    assert retention.enforce() == 2 and reader.all_segments() == []
    out = tmp_path / "out.mp4"
    with pytest.raises(ExportError, match="was deleted while this export read it"), out.open("wb") as file:
        Exporter(plan, data / "recordings", lease=lease).run(file)
    lease.release()
    assert leased(data) == set()
    reader.close()
    index.close()


def test_a_lease_of_a_dead_process_does_not_count(tmp_path: Path) -> None:
    (tmp_path / "leases").mkdir()
    (tmp_path / "leases" / "1-0-0.json").write_text(json.dumps({"pid": 2**22 + 12345, "paths": ["gate/a.mp4"]}))
    assert leased(tmp_path) == set() and not list((tmp_path / "leases").iterdir())
