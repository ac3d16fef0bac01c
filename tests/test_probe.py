"""`nvr-edge probe` (issue 18) against the real RTSP camera simulator: good streams measured,
bad ones named in plain words, a verdict per camera, exit 0 only when every camera is
usable, and no password anywhere in what it prints."""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.limits import SizeLimit
from edge.probe import StreamReport, judge, probe_stream
from edge.source import SourceOptions
from harness.broker import free_port
from harness.camsim import CameraSimulator
from harness.daemon import run_cli, write_config

SECRET = "wr0ng-Pa55"


@pytest.fixture(scope="module")
def sim(clips: dict[str, Path]) -> Iterator[CameraSimulator]:
    with CameraSimulator(
        {"moving": clips["walkers"], "still": clips["static"], "locked": clips["static"]},
        auth={"locked": ("admin", "right-pw")},
        mjpeg=["mjpeg"],
    ) as running:
        yield running


def _config(tmp_path: Path, sim: CameraSimulator) -> Path:
    cameras = {
        "gate": {"url": sim.urls["moving"], "detect_url": sim.urls["still"]},
        "lane": {"url": sim.urls["moving"]},
        "locked": {"url": sim.url_with("locked", "admin", SECRET)},
        "old-cam": {"url": sim.urls["mjpeg"]},
        "dead": {"url": f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/stream1"},
        "typo": {"url": sim.urls["moving"].replace("/moving", "/movnig")},
        "spare": {"url": sim.urls["still"], "enabled": False},
    }
    return write_config(tmp_path / "edge.yaml", box_id="p", data_dir=tmp_path / "d", mqtt_port=1883, cameras=cameras)


def _rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    table = stdout.split("\n\n")[0].splitlines()[1:]
    return {(line.split()[0], line.split()[1]): re.split(r"\s{2,}", line.strip())[2:] for line in table}


def test_probe_a_config_measures_good_streams_and_names_what_is_wrong(tmp_path: Path, sim: CameraSimulator) -> None:
    started = time.monotonic()
    result = run_cli("probe", "--config", str(_config(tmp_path, sim)), "--seconds", "3")
    took = time.monotonic() - started
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert SECRET not in out and "admin" not in out, out
    rows = _rows(result.stdout)
    assert set(rows) == {
        ("gate", "main"),
        ("gate", "detect"),
        ("lane", "main+detect"),
        ("locked", "main+detect"),
        ("old-cam", "main+detect"),
        ("dead", "main+detect"),
        ("typo", "main+detect"),
    }
    ok, codec, size, fps, gop, bitrate, audio, first = rows[("gate", "main")]
    assert (ok, codec, size, gop, audio) == ("ok", "H.264", "640x360", "2.0 s", "none")
    assert 4.5 <= float(fps) <= 5.5 and bitrate.endswith("kb/s") and float(first.split()[0]) < 5
    assert rows[("lane", "main+detect")][:3] == ["ok", "H.264", "640x360"]
    assert rows[("locked", "main+detect")] == ["authentication failed (401): check the user and password in the URL"]
    assert rows[("old-cam", "main+detect")] == ["unsupported codec mjpeg: set the camera to H.264 or H.265"]
    assert rows[("dead", "main+detect")] == ["connection refused (camera down or wrong port)"]
    assert rows[("typo", "main+detect")] == ["stream path not found on the camera (404)"]
    verdicts = result.stdout.split("\n\n")[1].splitlines()
    assert "gate: usable, nothing to change" in verdicts and "lane: usable, nothing to change" in verdicts
    assert "dead: NOT USABLE: stream: connection refused (camera down or wrong port)" in verdicts
    assert verdicts[-1].startswith("2 of 6 camera(s) usable; probed in ")
    assert "not probed (enabled: false): spare" in result.stderr
    print(f"probe of 6 cameras (7 streams, 3 s each): {took:.1f} s")
    assert took < 30  # in parallel: about one stream's time, not seven


def test_probe_named_cameras_and_a_bare_url(tmp_path: Path, sim: CameraSimulator) -> None:
    config = str(_config(tmp_path, sim))
    named = run_cli("probe", "--config", config, "--seconds", "1", "gate", "lane")
    assert named.returncode == 0, named.stdout + named.stderr
    assert named.stdout.rstrip().splitlines()[-1].startswith("2 of 2 camera(s) usable")
    bare = run_cli("probe", "--seconds", "1", sim.url_with("moving", "admin", SECRET))
    assert bare.returncode == 0, bare.stdout + bare.stderr
    assert SECRET not in bare.stdout + bare.stderr and "rtsp://***@127.0.0.1:" in bare.stdout
    unknown = run_cli("probe", "--config", config, "gaet")
    assert unknown.returncode == 2 and unknown.stderr.startswith("probe: no camera gaet in the config")
    bad = run_cli("probe", f"rtsp://admin:{SECRET}@/x")
    assert bad.returncode == 2 and SECRET not in bad.stderr, bad.stderr


def test_a_camera_that_never_answers_times_out_in_words() -> None:
    server = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    held: list[socket.socket] = []
    threading.Thread(target=lambda: held.append(server.accept()[0]), daemon=True).start()
    try:
        url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/x"
        report = probe_stream("main", url, SizeLimit(4096, 2160, "max_resolution.record"), 1, SourceOptions(2, 2))
    finally:
        server.close()
    assert report.error is not None and report.error.startswith(
        "timed out waiting for the camera (it took the connection"
    )


def _stream(role: str, **measured: object) -> StreamReport:
    base = {"codec": "H.264", "width": 640, "height": 360, "fps": 5.0, "gop_s": 2.0, "first_frame_s": 0.6}
    return StreamReport(role, "rtsp://h/x", **{**base, **measured})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("streams", "advice"),
    [
        (
            [_stream("main", width=2560, height=1440), _stream("detect", width=1920, height=1080)],
            "detect stream is 1920x1080: set detect_url to the camera's sub-stream",
        ),
        (
            [_stream("main+detect", width=1920, height=1080)],
            "no detect_url: the 1920x1080 main stream is decoded for motion; set detect_url to the camera's "
            "sub-stream (e.g. 640x360)",
        ),
        (
            [_stream("main"), _stream("detect", gop_s=10.0)],
            "GOP 10 s: idle mode wakes late; set the camera's keyframe (I-frame) interval to 1-2 s",
        ),
        (
            [_stream("main", audio="pcm_alaw"), _stream("detect", audio="pcm_alaw")],
            "audio pcm_alaw is not recorded (segments take AAC, MP3 or Opus)",
        ),
        (
            [_stream("main"), _stream("detect", fps=2.0)],
            "detect stream runs at 2.0 fps, below motion.detect_fps (5): raise the camera's frame rate or lower "
            "detect_fps",
        ),
    ],
)
def test_verdicts_say_what_to_change(streams: list[StreamReport], advice: str) -> None:
    report = judge("cam", streams, detect_fps=5.0, segment_s=10.0)
    assert report.usable and report.advice == [advice]
