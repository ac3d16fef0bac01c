"""`nvr-edge probe`: connect to every camera's streams as the daemon would, before it runs.

Each stream (`url`, and `detect_url` when it is another stream) is opened with the
daemon's own code (edge/source.py: the same RTSP options, timeouts, `max_pixels` and
error words from edge/stream_errors.py) and read for a few seconds without decoding,
but for the first picture: codec, size, frame rate, keyframe interval (GOP), bitrate,
audio and the time to the first picture. Streams are probed in parallel threads, so
24 cameras take about as long as one. Each camera then gets a verdict: usable or not,
and what to change. Nothing here ever shows a password (edge/redact.py).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TextIO

import av

from edge.config import RTSP_MESSAGE, CameraConfig, Config
from edge.limits import SizeLimit
from edge.recorder import AUDIO_CODECS_IN_MP4
from edge.redact import redact_text, redact_url, url_problem
from edge.source import (
    SUPPORTED_CODECS,
    FrameClock,
    SourceError,
    SourceOptions,
    decode,
    demux_packets,
    open_stream,
    select_streams,
)

WINDOW_S = 5.0  # bitrate and frame rate are measured over this long
GOP_WAIT_S = 11.0  # a long keyframe interval is waited for up to this long (from the first packet)
BIG_DETECT_PIXELS = 1280 * 720  # a detect stream larger than this costs decoding for nothing
LONG_GOP_S = 4.0  # idle mode decodes keyframes only: a longer interval wakes it late
SLOW_FIRST_FRAME_S = 5.0
MAX_THREADS = 64


@dataclass
class StreamReport:
    """What one stream turned out to be (or why it could not be read)."""

    role: str  # "main" (url, recorded) or "detect" (detect_url, decoded) or "main+detect"
    url: str
    error: str | None = None
    codec: str | None = None
    width: int = 0
    height: int = 0
    fps: float | None = None
    gop_s: float | None = None
    gop_at_least_s: float | None = None  # no second keyframe came within the wait
    bitrate_bps: float | None = None
    audio: str | None = None
    first_frame_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def recorded(self) -> bool:
        return self.role != "detect"


@dataclass
class CameraReport:
    camera: str
    streams: list[StreamReport]
    problems: list[str] = field(default_factory=list)  # make it unusable
    advice: list[str] = field(default_factory=list)  # usable, but worth changing

    @property
    def usable(self) -> bool:
        return not self.problems


def probe_stream(
    role: str, url: str, limit: SizeLimit, seconds: float = WINDOW_S, options: SourceOptions | None = None
) -> StreamReport:
    """Open `url` as the daemon does and measure it; never raises."""
    report = StreamReport(role, url)
    options = options or SourceOptions()
    started = time.monotonic()
    try:
        container = open_stream(url, options, options.stall_min, limit.max_pixels)
    except SourceError as exc:
        report.error = str(exc)
        return report
    try:
        _measure(container, report, limit, started, seconds, options)
    except SourceError as exc:
        report.error = report.error or str(exc)
    except Exception as exc:  # noqa: BLE001 - a probe reports, it never crashes the others
        report.error = redact_text(f"internal error: {type(exc).__name__}: {exc}", [url])
    finally:
        container.close()
    return report


def _measure(
    container: av.container.InputContainer,
    report: StreamReport,
    limit: SizeLimit,
    started: float,
    seconds: float,
    options: SourceOptions,
) -> None:
    video, audio = select_streams(container)  # SourceError: no video, or not H.264/H.265
    ctx = video.codec_context
    report.codec = SUPPORTED_CODECS.get(ctx.name, ctx.name)
    report.width, report.height = ctx.width, ctx.height
    report.audio = audio.codec_context.name if audio is not None else None
    limit.check(ctx.width, ctx.height, "stream")  # as the daemon refuses it
    clock = FrameClock(options, options.stall_min)
    keyframes: list[float] = []
    times: list[float] = []  # video packet times (s, stream clock)
    size = 0
    first_at: float | None = None
    for packet in demux_packets(container, [video], report.url, clock):
        now = time.monotonic()
        if first_at is None:
            first_at = now
        t = float(packet.pts * packet.time_base) if packet.pts is not None and packet.time_base else None
        if now - first_at <= seconds:
            size += packet.size
            if t is not None:
                times.append(t)
        if packet.is_keyframe and t is not None:
            keyframes.append(t)
        if report.first_frame_s is None:
            frames = decode(packet)
            if frames:
                report.first_frame_s = now - started
                report.width, report.height = frames[0].width, frames[0].height
                limit.check(report.width, report.height, "picture")
        measured = now - first_at >= seconds and report.first_frame_s is not None
        if measured and (len(keyframes) >= 2 or now - first_at >= GOP_WAIT_S):
            break
    if len(times) >= 2 and times[-1] > times[0]:
        span = times[-1] - times[0]
        report.fps = (len(times) - 1) / span
        report.bitrate_bps = size * 8 / (span + 1 / report.fps)
    if len(keyframes) >= 2:
        report.gop_s = keyframes[1] - keyframes[0]
    elif keyframes:
        report.gop_at_least_s = (times[-1] - keyframes[0]) if times else None


def streams_of(camera: CameraConfig) -> list[tuple[str, str, SizeLimit]]:
    """(role, url, size limit) of each stream the daemon would open for `camera`."""
    record = SizeLimit(*camera.max_resolution.record, "max_resolution.record")
    if camera.detect_url is None or camera.detect_url == camera.url:
        return [("main+detect", camera.url, record)]
    detect = SizeLimit(*camera.max_resolution.detect, "max_resolution.detect")
    return [("main", camera.url, record), ("detect", camera.detect_url, detect)]


def judge(camera: str, streams: list[StreamReport], detect_fps: float, segment_s: float) -> CameraReport:
    """The verdict: problems make a camera unusable; advice says what would make it better."""
    report = CameraReport(camera, streams)
    for stream in streams:
        name = {"main": "main stream", "detect": "detect stream", "main+detect": "stream"}[stream.role]
        if stream.error is not None:
            report.problems.append(f"{name}: {stream.error}")
            continue
        if stream.first_frame_s is None:
            report.problems.append(f"{name}: no picture could be decoded")
        decoded = stream.role != "main"
        if decoded and stream.width * stream.height > BIG_DETECT_PIXELS:
            size = f"{stream.width}x{stream.height}"
            if stream.role == "detect":
                report.advice.append(f"detect stream is {size}: set detect_url to the camera's sub-stream")
            else:
                report.advice.append(
                    f"no detect_url: the {size} main stream is decoded for motion; set detect_url to the "
                    "camera's sub-stream (e.g. 640x360)"
                )
        gop = stream.gop_s or stream.gop_at_least_s
        more = "" if stream.gop_s else "more than "
        if decoded and gop is not None and gop > LONG_GOP_S:
            report.advice.append(
                f"GOP {more}{gop:.0f} s: idle mode wakes late; set the camera's keyframe (I-frame) interval to 1-2 s"
            )
        if stream.recorded and gop is not None and gop > segment_s:
            report.advice.append(
                f"main stream GOP {more}{gop:.0f} s: segments are cut at keyframes, so they run longer than "
                f"recording.segment_seconds ({segment_s:g} s)"
            )
        if decoded and stream.fps is not None and stream.fps < detect_fps * 0.9:
            report.advice.append(
                f"{name} runs at {stream.fps:.1f} fps, below motion.detect_fps ({detect_fps:g}): "
                "raise the camera's frame rate or lower detect_fps"
            )
        if stream.recorded and stream.audio and stream.audio not in AUDIO_CODECS_IN_MP4:
            report.advice.append(f"audio {stream.audio} is not recorded (segments take AAC, MP3 or Opus)")
        if stream.first_frame_s is not None and stream.first_frame_s > SLOW_FIRST_FRAME_S:
            report.advice.append(f"{name} takes {stream.first_frame_s:.1f} s to its first picture")
    return report


# ------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------


def _rate(bps: float | None) -> str:
    if bps is None:
        return "-"
    return f"{bps / 1e6:.1f} Mb/s" if bps >= 1e6 else f"{bps / 1e3:.0f} kb/s"


def _gop(stream: StreamReport) -> str:
    if stream.gop_s is not None:
        return f"{stream.gop_s:.1f} s"
    return f">{stream.gop_at_least_s:.0f} s" if stream.gop_at_least_s else "-"


def _audio(stream: StreamReport) -> str:
    if not stream.audio:
        return "none"
    if not stream.recorded:
        return f"{stream.audio} (not recorded: detect stream)"
    return f"{stream.audio} ({'recorded' if stream.audio in AUDIO_CODECS_IN_MP4 else 'not recorded'})"


HEADER = ("camera", "stream", "result", "codec", "size", "fps", "GOP", "bitrate", "audio", "first picture")


def rows(reports: Iterable[CameraReport]) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for report in reports:
        for stream in report.streams:
            if stream.error is not None:
                out.append((report.camera, stream.role, stream.error, *("-",) * 7))
                continue
            out.append(
                (
                    report.camera,
                    stream.role,
                    "ok",
                    stream.codec or "-",
                    f"{stream.width}x{stream.height}" if stream.width else "-",
                    f"{stream.fps:.1f}" if stream.fps else "-",
                    _gop(stream),
                    _rate(stream.bitrate_bps),
                    _audio(stream),
                    f"{stream.first_frame_s:.2f} s" if stream.first_frame_s is not None else "-",
                )
            )
    return out


def table(reports: list[CameraReport]) -> str:
    """One row per stream (an unreachable one: its reason in place of the figures)."""
    lines = [HEADER, *rows(reports)]
    measured = [line for line in lines if line[2] in ("ok", "result")]  # a reason spans the row
    widths = [max(len(line[i]) for line in (measured if i >= 2 else lines)) for i in range(len(HEADER) - 1)]
    out = []
    for line in lines:
        cells = [cell.ljust(width) for cell, width in zip(line, widths, strict=False)]
        if line[2] not in ("ok", "result"):  # the reason: the rest of the row is empty anyway
            out.append("  ".join([*cells[:2], line[2]]).rstrip())
        else:
            out.append("  ".join([*cells, line[-1]]).rstrip())
    return "\n".join(out)


def verdicts(reports: list[CameraReport]) -> str:
    lines = []
    for report in reports:
        if report.problems:
            lines.append(f"{report.camera}: NOT USABLE: " + "; ".join(report.problems))
        else:
            lines.append(f"{report.camera}: usable" + ("" if report.advice else ", nothing to change"))
        lines += [f"  - {advice}" for advice in report.advice]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------
# Running it
# ------------------------------------------------------------------------------------


@dataclass
class Target:
    """A camera to probe: its id, its streams, and what its verdict is measured against."""

    camera: str
    streams: list[tuple[str, str, SizeLimit]]
    detect_fps: float = 5.0
    segment_s: float = 10.0


def probe_all(
    targets: list[Target], seconds: float = WINDOW_S, progress: Callable[[int, int], None] | None = None
) -> list[CameraReport]:
    """Every stream of every target at once (threads); reports in the targets' order."""
    jobs = [(t, role, url, limit) for t in targets for role, url, limit in t.streams]
    results: dict[tuple[str, str], StreamReport] = {}
    done, lock = 0, threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, min(MAX_THREADS, len(jobs))), thread_name_prefix="probe") as pool:
        futures = {
            pool.submit(probe_stream, role, url, limit, seconds): (t.camera, role) for t, role, url, limit in jobs
        }
        for future in as_completed(futures):
            results[futures[future]] = future.result()
            with lock:
                done += 1
                if progress is not None:
                    progress(done, len(jobs))
    return [
        judge(t.camera, [results[(t.camera, role)] for role, _, _ in t.streams], t.detect_fps, t.segment_s)
        for t in targets
    ]


def progress_line(err: TextIO) -> Callable[[int, int], None]:
    """`probing: 31/48 streams` rewritten in place on a terminal; nothing in a pipe or a log."""
    started = time.monotonic()

    def show(done: int, total: int) -> None:
        if err.isatty():
            end = "\n" if done == total else ""
            print(f"\rprobing: {done}/{total} streams, {time.monotonic() - started:.0f} s", end=end, file=err)
            err.flush()

    return show


def run(targets: list[Target], seconds: float, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """Probe, print the table and the verdicts; 0 when every camera is usable, else 1."""
    streams = sum(len(t.streams) for t in targets)
    print(f"probing {len(targets)} camera(s), {streams} stream(s), {seconds:g} s each ...", file=err, flush=True)
    started = time.monotonic()
    reports = probe_all(targets, seconds, progress_line(err))
    print(table(reports), file=out)
    print("", file=out)
    print(verdicts(reports), file=out)
    usable = sum(r.usable for r in reports)
    print(
        f"{usable} of {len(reports)} camera(s) usable; probed in {time.monotonic() - started:.1f} s",
        file=out,
        flush=True,
    )
    return 0 if usable == len(reports) else 1


def url_target(url: str) -> Target:
    """`nvr-edge probe URL`: one stream, judged as a camera without a detect_url.
    ValueError (one line, never the URL's password) when it is no camera URL."""
    problem = url_problem(url) if url.lower().startswith(("rtsp://", "rtsps://")) else RTSP_MESSAGE
    if problem is not None:
        raise ValueError(f"{redact_url(url)}: {problem}")
    return Target(redact_url(url), streams_of(CameraConfig(url=url)))


def config_targets(config: Config, cameras: list[str], err: TextIO) -> list[Target]:
    """The config's cameras (those named, else every enabled one); ValueError for an unknown id."""
    unknown = [cam for cam in cameras if cam not in config.cameras]
    if unknown:
        raise ValueError(f"no camera {', '.join(unknown)} in the config (it has {', '.join(config.cameras) or 'none'})")
    chosen = cameras or [cam for cam, c in config.cameras.items() if c.enabled]
    skipped = [cam for cam, c in config.cameras.items() if not c.enabled and cam not in chosen]
    if skipped:
        print(f"not probed (enabled: false): {', '.join(skipped)}", file=err)
    if not chosen:
        raise ValueError("no enabled camera in the config")
    return [
        Target(
            cam,
            streams_of(config.cameras[cam]),
            config.cameras[cam].motion.detect_fps,
            config.recording.segment_seconds,
        )
        for cam in chosen
    ]
