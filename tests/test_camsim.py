"""The camera simulator serves real, looping, live RTSP H.264 streams."""

from __future__ import annotations

import time
from pathlib import Path

import av
import pytest

from harness.camsim import CameraSimulator
from harness.clips import ensure_clips

OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1000000", "probesize": "32768"}


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_clips(tmp_path_factory.mktemp("clips"), seconds=4)["walkers"]


def read_frames(url: str, seconds: float) -> list[av.VideoFrame]:
    frames = []
    with av.open(url, options=OPTIONS, timeout=(5, 5)) as container:
        start = time.monotonic()
        for frame in container.decode(video=0):
            frames.append(frame)
            if time.monotonic() - start > seconds:
                break
    return frames


def test_stream_loops_live_with_increasing_timestamps(short_clip: Path) -> None:
    with CameraSimulator({"cam": short_clip}) as sim:
        frames = read_frames(sim.urls["cam"], 9.0)  # the clip is 4 s: at least two loops
    assert all((f.width, f.height) == (640, 360) for f in frames)
    assert 40 <= len(frames) <= 55  # 5 fps, live pace (plus the first buffered frames)
    pts = [f.pts for f in frames if f.pts is not None]
    assert all(b > a for a, b in zip(pts, pts[1:], strict=False))


def test_two_clients_share_a_mount_and_restart_keeps_the_url(short_clip: Path) -> None:
    with CameraSimulator({"cam": short_clip}) as sim:
        with av.open(sim.urls["cam"], options=OPTIONS, timeout=(5, 5)) as first:
            second = read_frames(sim.urls["cam"], 2.0)
            one = next(first.decode(video=0))
        assert one.width == 640 and len(second) >= 5
        url = sim.urls["cam"]
        sim.stop()
        with pytest.raises(av.error.FFmpegError):
            read_frames(url, 1.0)
        sim.start()
        assert len(read_frames(url, 2.0)) >= 5
