"""The camera simulator serves real, looping, live-paced RTSP H.264 streams that several
clients can share, that come back after a reconnect or a restart, and that can stall,
change resolution, send corrupted frames, want a password or send MJPEG."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from harness.camsim import CameraSimulator
from harness.clips import ensure_clips

# The daemon's options: RTSP over TCP, start decoding at once.
OPTIONS = {"rtsp_transport": "tcp", "analyzeduration": "1", "probesize": "32768"}
FPS, SECONDS, WIDTH, HEIGHT = 5, 6, 640, 360
LOOP = FPS * SECONDS  # frames per loop of the clip
TICKS = 90000 // FPS  # RTP clock ticks per frame


@dataclass
class Received:
    at: float  # time.monotonic() on arrival
    pts: int | None
    key: bool
    size: tuple[int, int]
    frame: av.VideoFrame


def read(url: str, seconds: float) -> list[Received]:
    """Decode for `seconds` of wall time, opened as the daemon opens a camera."""
    got: list[Received] = []
    deadline = time.monotonic() + seconds
    with av.open(url, options=OPTIONS, timeout=(5, 5)) as container:
        for frame in container.decode(video=0):
            now = time.monotonic()
            got.append(Received(now, frame.pts, frame.key_frame, (frame.width, frame.height), frame))
            if now > deadline:
                break
    return got


def read_in_thread(url: str, seconds: float) -> tuple[threading.Thread, list[Received]]:
    got: list[Received] = []
    thread = threading.Thread(target=lambda: got.extend(read(url, seconds)), daemon=True)
    thread.start()
    return thread, got


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    clips = ensure_clips(
        tmp_path_factory.mktemp("clips"), kinds=("walkers",), width=WIDTH, height=HEIGHT, fps=FPS, seconds=SECONDS
    )
    return clips["walkers"]


@pytest.fixture(scope="module")
def bframes_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 s at 10 fps with B-frames, as in most real recordings (and the shared clips)."""
    path = tmp_path_factory.mktemp("bframes") / "bframes.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"bf": "2", "g": "10", "preset": "veryfast"}
        for n in range(30):
            img = np.full((120, 160, 3), 90, np.uint8)
            img[40:80, 4 * n : 4 * n + 20] = (200, 60, 60)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = n
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same scene at half the size: a camera's other resolution."""
    clips = ensure_clips(
        tmp_path_factory.mktemp("small"), kinds=("walkers",), width=WIDTH // 2, height=HEIGHT // 2, fps=FPS, seconds=4
    )
    return clips["walkers"]


@pytest.fixture(scope="module")
def sim(
    clip: Path, bframes_clip: Path, small_clip: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CameraSimulator]:
    mounts = {
        "loop": clip,
        "shared": clip,
        "stalling": clip,
        "bframes": bframes_clip,
        "switching": clip,
        "corrupting": clip,
        "locked": clip,
    }
    with CameraSimulator(
        mounts,
        cache_dir=tmp_path_factory.mktemp("camsim"),
        alternates={"switching": small_clip},
        auth={"locked": ("viewer", "pa:ss@word")},
        mjpeg=["jpeg"],
    ) as running:
        yield running


def read_tolerant(url: str, seconds: float) -> tuple[list[Received], int]:
    """Like read(), but a packet that does not decode is counted, not raised."""
    got: list[Received] = []
    errors = 0
    deadline = time.monotonic() + seconds
    with av.open(url, options=OPTIONS, timeout=(5, 5)) as container:
        for packet in container.demux(video=0):
            try:
                frames = packet.decode()
            except av.error.InvalidDataError:
                errors += 1
                continue
            now = time.monotonic()
            got.extend(Received(now, f.pts, f.key_frame, (f.width, f.height), f) for f in frames)
            if now > deadline:
                break
    return got, errors


def _gray(received: Received) -> np.ndarray:
    return received.frame.to_ndarray(format="gray")


def test_stream_loops_live_with_monotonic_timestamps(sim: CameraSimulator) -> None:
    start = time.monotonic()
    got = read(sim.urls["loop"], 9.0)  # one and a half loops of the 6 s clip
    elapsed = got[-1].at - start
    assert {r.size for r in got} == {(WIDTH, HEIGHT)}
    assert got[0].key
    # Live pace: about fps x elapsed frames (FFmpeg hands a frame over when the next one
    # arrives, and the first ~0.6 s go to stream probing), not a file read at full speed.
    assert abs(len(got) - FPS * elapsed) <= 3, (len(got), elapsed)
    # FFmpeg gives the session's very first frame no pts; every later one has one.
    pts = [r.pts for r in got[1:]]
    assert None not in pts
    assert len(got) > LOOP + 5
    # Strictly increasing by exactly one frame, across the loop boundary too.
    assert all(b - a == TICKS for a, b in zip(pts, pts[1:], strict=False)), pts
    # Frame n + LOOP is frame n again: the same H.264 bytes, looped without re-encoding.
    for n in range(3):
        assert np.array_equal(got[n].frame.to_ndarray(format="gray"), got[n + LOOP].frame.to_ndarray(format="gray"))
    assert not np.array_equal(got[0].frame.to_ndarray(format="gray"), got[LOOP // 2].frame.to_ndarray(format="gray"))


def test_clip_with_b_frames_keeps_presentation_order(sim: CameraSimulator) -> None:
    got = read(sim.urls["bframes"], 4.0)  # crosses the 3 s loop
    pts = [r.pts for r in got[1:]]
    assert len(got) >= 35 and None not in pts
    assert all(b - a == 9000 for a, b in zip(pts, pts[1:], strict=False)), pts


def test_two_clients_at_once_and_reconnects(sim: CameraSimulator) -> None:
    url = sim.urls["shared"]
    thread, first = read_in_thread(url, 4.0)
    time.sleep(0.5)
    # Joins the running stream: its first frame is the next key frame, up to a GOP (2 s) away.
    second = read(url, 3.0)
    thread.join(10)
    assert len(first) >= 15 and len(second) >= 3, (len(first), len(second))
    assert {r.size for r in first + second} == {(WIDTH, HEIGHT)}
    assert second[0].key

    # A client that disconnects cleanly (TEARDOWN) and comes straight back gets frames.
    for _ in range(2):
        assert len(read(url, 1.0)) >= 3

    # So does one that vanished without a TEARDOWN, while another client stays on.
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        pytest.skip("ffmpeg not installed")
    thread, staying = read_in_thread(url, 4.0)
    killed = subprocess.Popen(
        [ffmpeg, "-v", "quiet", "-rtsp_transport", "tcp", "-i", url, "-c", "copy", "-f", "null", "-"],
        stdin=subprocess.DEVNULL,
    )
    time.sleep(1.0)
    killed.kill()
    killed.wait()
    again = read(url, 3.0)
    thread.join(10)
    assert len(again) >= 3
    gaps = np.diff([r.at for r in staying[3:]])
    assert len(staying) >= 15 and gaps.max() < 1.0, (len(staying), gaps.max())


def test_stall_keeps_the_session_and_resume_restarts_at_a_key_frame(sim: CameraSimulator) -> None:
    url = sim.urls["stalling"]
    thread, got = read_in_thread(url, 7.0)
    time.sleep(2.0)
    stalled_at = time.monotonic()
    sim.stall("stalling")
    time.sleep(2.5)
    resumed_at = time.monotonic()
    sim.resume("stalling")
    thread.join(15)
    assert thread.is_alive() is False
    during = [r for r in got if stalled_at + 0.5 < r.at < resumed_at]
    assert during == [], [r.at - stalled_at for r in during]
    # Everything received before the resume was sent before the stall (a loaded reader may
    # still be catching up in the first half second). FFmpeg hands a frame over when the
    # next one arrives, so the frame sent just before the stall comes out after the resume;
    # the frames sent after the resume follow it.
    last = [r.pts for r in got if r.at < resumed_at and r.pts is not None][-1]
    after = [r for r in got if r.at >= resumed_at and r.pts is not None and r.pts > last + TICKS]
    assert after, "no frames after resume"
    # Back within a GOP (2 s), at a key frame, and the pts show the time that passed.
    assert after[0].key
    assert after[0].at - resumed_at < 2.6
    assert (after[0].pts - last) / 90000 > 2.0


def test_restart_on_the_same_port(clip: Path, tmp_path: Path) -> None:
    with CameraSimulator({"cam": clip}, cache_dir=tmp_path) as sim:
        url, port = sim.urls["cam"], sim.port
        # Seconds, not a second: the first read includes the RTSP handshake, which took
        # most of a second on a loaded machine (1 frame in 1.0 s once).
        assert len(read(url, 3.0)) >= 3
        sim.stop()
        assert not sim.running
        with pytest.raises(av.error.FFmpegError):
            read(url, 1.0)
        sim.start()
        assert sim.port == port and sim.urls["cam"] == url
        assert len(read(url, 3.0)) >= 5


def test_switch_changes_resolution_at_a_key_frame_in_the_same_session(sim: CameraSimulator) -> None:
    thread, got = read_in_thread(sim.urls["switching"], 7.0)
    time.sleep(2.5)
    switched_at = time.monotonic()
    sim.switch("switching")
    thread.join(15)
    sizes = [r.size for r in got]
    first_small = sizes.index((WIDTH // 2, HEIGHT // 2))
    # One resolution, then the other from a key frame on, without going back or a gap.
    assert set(sizes[:first_small]) == {(WIDTH, HEIGHT)} and set(sizes[first_small:]) == {(WIDTH // 2, HEIGHT // 2)}
    assert got[first_small].key and got[first_small].at - switched_at < 2.6
    gaps = np.diff([r.at for r in got[3:]])
    assert gaps.max() < 0.6, gaps.max()
    pts = [r.pts for r in got[1:]]
    assert all(b - a == TICKS for a, b in zip(pts, pts[1:], strict=False)), pts  # the clock goes on
    switched_back = time.monotonic()
    sim.switch("switching")  # and back, from the big clip's next key frame...
    back = read(sim.urls["switching"], 4.0)
    sizes = [r.size for r in back]
    # ...which a new session may reach after a few small frames (the shared media's
    # pre-roll): the big size comes within a GOP and stays.
    assert (WIDTH, HEIGHT) in sizes, sizes
    first_big = sizes.index((WIDTH, HEIGHT))
    assert set(sizes[first_big:]) == {(WIDTH, HEIGHT)} and back[first_big].key
    assert back[first_big].at - switched_back < 3.5


def test_corrupt_spoils_frames_for_a_while_and_the_stream_goes_on(sim: CameraSimulator) -> None:
    result: list[tuple[list[Received], int]] = []
    thread = threading.Thread(target=lambda: result.append(read_tolerant(sim.urls["corrupting"], 11.5)), daemon=True)
    thread.start()
    time.sleep(1.5)
    sim.corrupt("corrupting", 1.0, 1.0)
    thread.join(20)
    got, _errors = result[0]
    # Frame n + LOOP is frame n again: the same bytes unless they were corrupted in between.
    assert len(got) > LOOP + 15
    same = [np.array_equal(_gray(got[n]), _gray(got[n + LOOP])) for n in range(len(got) - LOOP)]
    bad = [n for n, ok in enumerate(same) if not ok]
    assert len(bad) >= 4 and bad == list(range(bad[0], bad[-1] + 1)), same  # for a while, in one run
    assert bad[0] >= 3, same  # not before the command
    # Clean again from the next key frame after the corruption ended.
    assert len(same) - bad[-1] > 2 and got[bad[-1] + 1].key, same
    gaps = np.diff([r.at for r in got[3:]])
    assert gaps.max() < 0.6  # frames kept coming: corruption is not a stall


def test_password_mount_wants_its_credentials_and_others_stay_open(sim: CameraSimulator) -> None:
    for url in (sim.urls["locked"], sim.url_with("locked", "viewer", "wrong")):
        with pytest.raises(av.error.HTTPUnauthorizedError):
            read(url, 0.5)
    assert len(read(sim.url_with("locked", "viewer", "pa:ss@word"), 1.0)) >= 3
    assert len(read(sim.urls["loop"], 1.0)) >= 3  # no credentials needed elsewhere


def test_mjpeg_mount_sends_live_jpeg(sim: CameraSimulator) -> None:
    with av.open(sim.urls["jpeg"], options=OPTIONS, timeout=(5, 5)) as container:
        assert container.streams.video[0].codec_context.name == "mjpeg"
    got = read(sim.urls["jpeg"], 3.0)
    assert {r.size for r in got} == {(320, 240)} and len(got) >= 8
    pts = [r.pts for r in got[1:]]
    assert all(b - a == TICKS for a, b in zip(pts, pts[1:], strict=False)), pts  # live, at 5 fps


def test_bad_commands_are_refused(sim: CameraSimulator) -> None:
    for bad in (lambda: sim.switch("loop"), lambda: sim.corrupt("loop", 2.0, 1.0), lambda: sim.stall("nosuch")):
        with pytest.raises(ValueError):
            bad()
