"""Camera faults (issue #5) against the real daemon, a real Mosquitto and the real RTSP simulator.

One daemon runs every fault at once, next to healthy cameras, so the module costs
about a minute: a stream that stalls with its connection open (5 fps and 1 fps, each
judged by its own frame rate), an RTSP server killed and restarted, corrupted packets,
a resolution change mid-stream, a wrong password and an unsupported codec (MJPEG).
The restarted server is a second simulator process, so that killing it touches
nothing else. Stats come from MQTT `P/stats` every second.
"""

from __future__ import annotations

import json
import re
import statistics
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import pytest

from edge.bitstream import parameter_sets
from edge.source import FrameClock, SourceError, SourceOptions
from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.clips import ensure_clips
from harness.daemon import DaemonProcess, write_config
from harness.mqtt_capture import MqttCapture

P = "nvr/faults"
RATE = 5.0  # frames per second of every 5 fps clip
HEALTHY = ("healthy-1", "healthy-2", "healthy-3")
STREAMING = (*HEALTHY, "stall", "slow-stall", "corrupt", "resize", "restart")
REFUSED = ("locked", "mjpeg")
WRONG_PASSWORD = "not-the-pass-7f3"
STALLED = re.compile(r"stalled: no frame for ([\d.]+) s \(stream runs at ([\d.]+) fps\)")


@dataclass
class Run:
    """What one daemon run under every fault left behind: stats, logs, recordings, times."""

    stats: list[tuple[float, dict[str, Any]]]  # (wall time received, payload)
    marks: dict[str, float]  # wall times of the phases
    logs: list[dict[str, Any]]
    log_text: str
    payloads: bytes  # everything published under P
    exit_code: int
    recordings: Path

    def camera(self, cam: str, since: float = 0.0, until: float = float("inf")) -> list[dict[str, Any]]:
        return [s["cameras"][cam] for at, s in self.stats if since <= at <= until and cam in s["cameras"]]

    def mean_fps(self, cam: str, since: float, until: float) -> float:
        return statistics.fmean(c["fps_in"] for c in self.camera(cam, since, until))

    def down_lines(self, cam: str) -> list[dict[str, Any]]:
        return [line for line in self.logs if line.get("event") == "camera_down" and line.get("camera") == cam]


def _wait(capture: MqttCapture, predicate: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
    found = capture.wait_for(lambda m: m.topic == f"{P}/stats" and predicate(json.loads(m.payload)), timeout)
    return json.loads(found[-1].payload)


def _states(stats: dict[str, Any], cams: tuple[str, ...]) -> set[str]:
    return {stats["cameras"][c]["state"] for c in cams}


def declared_size(mp4: Path) -> tuple[int, int]:
    """Width and height in the MP4's H.264 sample description (what players size the picture by).

    The avc1 entry follows `stsd` (its box header, 4 bytes of version and flags, the
    entry count); inside it, 24 bytes of reserved and reference fields precede them."""
    head = mp4.read_bytes()[:65536]  # empty_moov: the moov comes first
    entry = head.index(b"avc1", head.index(b"stsd"))
    width, height = struct.unpack(">HH", head[entry + 28 : entry + 32])
    return width, height


def _sleep_until(t: float) -> None:
    time.sleep(max(0.0, t - time.time()))


@pytest.fixture(scope="module")
def run(clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("camera-faults")
    walkers, static = clips["walkers"], clips["static"]
    small = ensure_clips(kinds=("walkers",), width=320, height=180)["walkers"]
    slow = ensure_clips(kinds=("walkers",), width=320, height=180, fps=1, seconds=30)["walkers"]
    mounts = {
        "healthy-1": walkers,
        "healthy-2": static,
        "healthy-3": walkers,
        "stall": walkers,
        "slow-stall": slow,
        "corrupt": walkers,
        "resize": walkers,
        "locked": walkers,
    }
    sim = CameraSimulator(
        mounts, alternates={"resize": small}, auth={"locked": ("admin", "s3cret-pw")}, mjpeg=["mjpeg"]
    )
    server = CameraSimulator({"restart": walkers})
    with Mosquitto() as broker, sim, server:
        cameras = {name: {"url": sim.urls[name]} for name in mounts if name != "locked"}
        cameras["locked"] = {"url": sim.url_with("locked", "admin", WRONG_PASSWORD)}
        cameras["mjpeg"] = {"url": sim.urls["mjpeg"]}
        cameras["restart"] = {"url": server.urls["restart"]}
        config = write_config(
            tmp / "edge.yaml",
            box_id="faults",
            data_dir=tmp / "data",
            mqtt_port=broker.port,
            cameras=cameras,
            stats_interval=1.0,
            extra={"recording": {"segment_seconds": 4}},
        )
        marks: dict[str, float] = {}
        with MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
            daemon = DaemonProcess(config).start()
            try:
                _wait(capture, lambda s: _states(s, STREAMING) == {"streaming"}, 60)
                # The 1 fps camera needs 8 frame gaps before its rate is known; the baseline
                # runs meanwhile.
                marks["baseline"] = time.time()
                _sleep_until(marks["baseline"] + 11)
                marks["faults"] = time.time()
                sim.stall("stall")
                sim.stall("slow-stall")
                sim.corrupt("corrupt", 0.5, 12)
                sim.switch("resize")
                server.stop()
                _sleep_until(marks["faults"] + 4)
                sim.resume("stall")
                _sleep_until(marks["faults"] + 6)
                server.start()
                _sleep_until(marks["faults"] + 9)
                sim.resume("slow-stall")
                marks["corrupt_end"] = marks["faults"] + 12
                _sleep_until(marks["faults"] + 22)
                marks["faults_end"] = time.time()
                _wait(capture, lambda s: _states(s, STREAMING) == {"streaming"}, 20)
                marks["recovered"] = time.time()
            finally:
                code = daemon.stop()
            stats = [(m.at, json.loads(m.payload)) for m in capture.on_topic(f"{P}/stats")]
            payloads = b"\n".join(m.payload for m in capture.snapshot())
        yield Run(stats, marks, daemon.logs(), daemon.log_text(), payloads, code, tmp / "data" / "recordings")


def test_healthy_cameras_keep_their_frame_rate(run: Run) -> None:
    for cam in HEALTHY:
        before = run.mean_fps(cam, run.marks["baseline"] + 1, run.marks["faults"])
        during = run.mean_fps(cam, run.marks["faults"] + 1, run.marks["faults_end"])
        assert abs(before - RATE) <= 0.1 * RATE, (cam, before)  # the measure measures the source
        assert abs(during - before) <= 0.1 * before, (cam, before, during)
        seen = run.camera(cam, run.marks["baseline"])
        assert {c["state"] for c in seen} == {"streaming"}, cam
        assert seen[-1]["reconnects"] == 0, cam


def _first_stall(run: Run, cam: str) -> tuple[float, float, float]:
    """(wall time seen, silence in the message, rate in the message) of the camera's stall."""
    for at, stats in run.stats:
        entry = stats["cameras"][cam]
        if at >= run.marks["faults"] and entry["state"] == "reconnecting":
            match = STALLED.fullmatch(entry["error"] or "")
            assert match, entry
            return at, float(match.group(1)), float(match.group(2))
    raise AssertionError(f"{cam} never reported a stall")


def test_stall_is_judged_by_the_streams_own_frame_rate(run: Run) -> None:
    seen, silence, fps = _first_stall(run, "stall")
    assert abs(fps - RATE) <= 0.1 * RATE
    # 5 fps: the 2 s floor applies, far below the 10 s read timeout. Seen in the stats within
    # 4 s of the stall (2 s and the next stats message), not 4 s plus (the frame FFmpeg's parser
    # holds, handed over at the first interrupt, is not an arrival).
    assert 2.0 <= silence <= 3.5 and seen - run.marks["faults"] <= 4.0, (silence, seen - run.marks["faults"])

    slow_seen, slow_silence, slow_fps = _first_stall(run, "slow-stall")
    assert abs(slow_fps - 1.0) <= 0.1
    # 1 fps: five frame intervals, not the 5 fps camera's 2 s (and no false stall before).
    assert 5.0 <= slow_silence <= 8.0, slow_silence
    assert slow_seen > seen
    assert run.camera("slow-stall", until=run.marks["faults"])[-1]["reconnects"] == 0

    for cam in ("stall", "slow-stall"):
        final = run.camera(cam)[-1]
        assert final["state"] == "streaming" and final["error"] is None, final
        assert final["reconnects"] >= 1


def test_restarted_rtsp_server_is_reconnected(run: Run) -> None:
    during = run.camera("restart", run.marks["faults"], run.marks["faults"] + 6)
    down = [c for c in during if c["state"] == "reconnecting"]
    assert down and all(c["error"] for c in down), during
    final = run.camera("restart")[-1]
    assert final["state"] == "streaming" and final["reconnects"] >= 1
    restarted = run.marks["faults"] + 6
    back = [at for at, s in run.stats if at > restarted and s["cameras"]["restart"]["state"] == "streaming"]
    assert back and back[0] - restarted <= 10  # fast backoff: back within seconds


def test_corrupted_packets_cost_frames_not_the_stream(run: Run) -> None:
    during = run.camera("corrupt", run.marks["faults"], run.marks["corrupt_end"])
    assert len(during) >= 8
    assert {c["state"] for c in during} == {"streaming"}
    assert run.camera("corrupt")[-1]["reconnects"] == 0
    assert run.mean_fps("corrupt", run.marks["faults"] + 1, run.marks["corrupt_end"]) >= 0.5 * RATE


def test_resolution_change_keeps_the_session_and_starts_a_new_segment(run: Run) -> None:
    before = run.camera("resize", until=run.marks["faults"])[-1]
    after = run.camera("resize", run.marks["faults"] + 4)
    assert (before["width"], before["height"]) == (640, 360)
    assert {(c["width"], c["height"]) for c in after} == {(320, 180)}
    assert {c["state"] for c in after} == {"streaming"} and after[-1]["reconnects"] == 0

    sizes = []
    for segment in sorted(run.recordings.glob("resize/*/*.mp4")):
        with av.open(str(segment)) as container:
            decoded = {(f.width, f.height) for f in container.decode(video=0)}
        header = declared_size(segment)
        assert decoded == {header}, (segment.name, header, decoded)  # one size per segment, as declared
        sizes.append(header)
    assert (640, 360) in sizes and (320, 180) in sizes, sizes
    assert sizes.index((320, 180)) > sizes.index((640, 360))


@pytest.mark.parametrize(
    ("cam", "wording"),
    [("locked", "authentication failed (401)"), ("mjpeg", "unsupported codec mjpeg")],
)
def test_refused_camera_fails_clearly_and_retries_slowly(run: Run, cam: str, wording: str) -> None:
    seen = run.camera(cam, run.marks["baseline"])
    assert {c["state"] for c in seen} == {"failed"}
    assert all(wording in c["error"] for c in seen), seen[-1]
    attempts = seen[-1]["reconnects"] + 1
    lines = run.down_lines(cam)
    # One line per attempt, each saying why; the next try 15 s or more away (fast: 0.5-1 s).
    assert attempts <= 3 and len(lines) in (attempts, attempts + 1), (attempts, lines)
    assert all(line["state"] == "failed" and wording in line["error"] for line in lines)
    assert all(line["retry_in_s"] >= 15 for line in lines), lines


def test_no_traceback_no_secret_clean_exit(run: Run) -> None:
    assert run.exit_code == 0
    assert "Traceback" not in run.log_text
    assert not [line for line in run.logs if line.get("event") == "worker_crashed"]
    # Every camera line is JSON (aiomqtt's own warnings are the MQTT link's business).
    plain = [line["line"] for line in run.logs if line.get("event") == "non_json_output"]
    assert not [text for text in plain if "rtsp" in text or any(cam in text for cam in (*STREAMING, *REFUSED))]
    for secret in (WRONG_PASSWORD, "s3cret-pw"):
        assert secret not in run.log_text and secret.encode() not in run.payloads
    assert any(line.get("camera") == "locked" for line in run.logs)  # the camera was logged, masked


# -- units: the stall clock and the parameter sets, without processes ------------------------


def _ticked(fps: float, frames: int, start: float = 100.0) -> tuple[FrameClock, float]:
    clock = FrameClock(SourceOptions(), now=start)
    t = start
    for _ in range(frames):
        t += 1 / fps
        clock.tick(t)
    return clock, t


@pytest.mark.parametrize(("fps", "limit"), [(25.0, 2.0), (5.0, 2.0), (1.0, 5.0), (0.5, 10.0), (0.1, 10.0)])
def test_stall_limit_follows_the_frame_rate_within_floor_and_ceiling(fps: float, limit: float) -> None:
    clock, t = _ticked(fps, 20)
    assert clock.fps() == pytest.approx(fps)
    assert clock.limit() == pytest.approx(limit)
    clock.check(t + limit - 0.01)
    with pytest.raises(SourceError, match=rf"stalled: no frame for [\d.]+ s \(stream runs at {fps:.1f} fps\)"):
        clock.check(t + limit + 0.01)


def test_stall_limit_is_the_read_timeout_until_the_rate_is_known() -> None:
    clock, t = _ticked(5.0, FrameClock.MIN_GAPS)  # 7 gaps: one short
    assert clock.fps() is None and clock.measured_limit() is None
    assert clock.limit() == SourceOptions().read_timeout
    silent = FrameClock(SourceOptions(), now=0.0)
    with pytest.raises(SourceError, match="no first frame for 10.5 s"):
        silent.check(10.5)


def test_parameter_sets_are_read_up_to_the_first_slice() -> None:
    sps, pps, sei = b"\x67\x4d\x00\x1f\xab", b"\x68\xee\x3c\x80", b"\x06\x05\x01"
    unit = b"\x00\x00\x00\x01" + sps + b"\x00\x00\x00\x01" + pps + b"\x00\x00\x01" + sei
    unit += b"\x00\x00\x01\x65\x88\x84" + b"\x00\x00\x01\x67\x99"  # IDR slice, then bytes that look like an SPS
    assert parameter_sets(unit, "h264") == (sps, pps)
    assert parameter_sets(b"\x00\x00\x01\x41\x9a", "h264") == ()  # a P slice: none
    vps, hsps = b"\x40\x01\x0c", b"\x42\x01\x01"
    assert parameter_sets(b"\x00\x00\x01" + vps + b"\x00\x00\x01" + hsps + b"\x00\x00\x01\x26\x01", "hevc") == (
        vps,
        hsps,
    )
    assert parameter_sets(unit, "mjpeg") == ()
