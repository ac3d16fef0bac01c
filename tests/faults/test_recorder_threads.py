"""Who may touch a recorder (issue 16): its recording thread writes; a late `close` from the
loop's helper thread (a worker that did not stop in time) must not tear a segment apart,
and the retention thread must never see the recorders' dict change under it."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import av
import pytest

import edge.recorder as recorder_module
from edge.config import parse_config
from edge.recordings import Recordings
from harness.footage import make_clip


def playable(path: Path) -> bool:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-count_packets",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=nb_read_packets",
            "-of",
            "csv=p=0",
            str(path),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return out.returncode == 0 and out.stdout.strip().isdigit() and int(out.stdout.strip()) > 0


def recordings_in(tmp_path: Path, cameras: int = 1) -> Recordings:
    cams = "".join(f"  c{i}:\n    url: rtsp://10.0.0.{i + 1}/s\n" for i in range(cameras))
    config = parse_config(
        f"box:\n  id: t\n  data_dir: {tmp_path / 'data'}\nrecording:\n  segment_seconds: 1\ncameras:\n{cams}"
    )
    recordings = Recordings(config)
    recordings.start()
    return recordings


def test_a_close_from_another_thread_while_the_owner_writes_leaves_playable_segments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Widen the race: the owner pauses inside write(), between taking the open segment and
    # muxing into it, which is where a close from outside would pull the segment away.
    real = recorder_module.parameter_sets

    def slow_parameter_sets(*args: object) -> tuple[bytes, ...]:
        time.sleep(0.001)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(recorder_module, "parameter_sets", slow_parameter_sets)
    clip = make_clip(tmp_path / "clip.mp4", seconds=20, fps=15, size="320x180", gop_s=0.5)
    recordings = recordings_in(tmp_path)
    recorder = recordings.recorder_for("c0")
    stop = threading.Event()
    closes = 0

    def closer() -> None:
        nonlocal closes
        while not stop.is_set():
            recorder.close()  # as the supervisor's helper thread does after a join timed out
            closes += 1
            time.sleep(0.0005)

    thread = threading.Thread(target=closer)
    with av.open(str(clip)) as inp:
        video = inp.streams.video[0]
        recorder.begin(video, None)
        thread.start()
        try:
            for packet in inp.demux(video):
                if packet.dts is not None:
                    recorder.write(packet)
        finally:
            stop.set()
            thread.join()
        recorder.close()
    recordings.close()
    segments = sorted((tmp_path / "data" / "recordings").rglob("*.mp4"))
    assert closes > 10 and segments, (closes, segments)
    assert recorder.stats.errors == 0, recorder.stats.last_error
    assert all(playable(seg) for seg in segments), [seg.name for seg in segments if not playable(seg)]


def test_the_recorders_dict_is_replaced_not_changed_while_others_read_it(tmp_path: Path) -> None:
    recordings = recordings_in(tmp_path, cameras=3)
    for cam in ("c0", "c1"):
        recordings.recorder_for(cam)
    seen_by_retention = recordings.recorders  # what a reader iterating right now holds
    recordings.recorder_for("c2")
    recordings.retire("c0")
    assert list(seen_by_retention) == ["c0", "c1"]
    assert list(recordings.recorders) == ["c1", "c2"]
    recordings.close()
