"""RTSP input: open a stream with PyAV over TCP and yield its packets until it fails.

Only the transport lives here (timeouts, probing, stall detection, error wording);
what is done with the packets is the camera worker's business (edge.camera).

Stall detection. A camera can hang with its TCP connection open: no packets, no
error. PyAV's read timeout is fixed when the stream is opened (`av.open(timeout=
(open, read))`) and cannot be changed afterwards, and closing a container from
another thread while it reads frees memory under the reader. So the stream is opened
with a read timeout that serves as a poll interval: a silent read returns with an
ExitError after that long, the silence is judged against the stream's own frame rate
(FrameClock, from packet arrivals), and demuxing resumes if it is not too long yet.

The poll interval is the stall limit the previous connection measured (stall_min
before that), so a healthy stream is never interrupted: FFmpeg checks the interrupt
before every socket read, and one that lands between an interleaved packet's header
and its payload breaks the connection (seen as an I/O error and a reconnect). Where
a silent stream waits, for the next packet's first byte, the interrupt is clean.

FFmpeg's H.264/H.265 parser holds the last frame until the next one starts; the first
interrupt of a silence hands it over (as a packet, not an error). A packet whose read
took the whole poll interval is that one: it does not count as an arrival.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

import av
import av.error
import numpy as np

from edge.bitstream import h264_slice_kind
from edge.idle import MAX_HELD, Action, IdleController
from edge.stream_errors import describe

SUPPORTED_CODECS = {"h264": "H.264", "hevc": "H.265"}
CATCH_UP_S = 1.0  # on waking from idle, held frames this recent are analysed too


class SourceError(Exception):
    """The stream could not be opened or read; `fatal` means retrying soon is pointless;
    `retry_in` (seconds), when set, is the wait before the next attempt (else: back-off)."""

    def __init__(self, message: str, fatal: bool = False, retry_in: float | None = None) -> None:
        super().__init__(message)
        self.fatal = fatal
        self.retry_in = retry_in


@dataclass(frozen=True, slots=True)
class SourceOptions:
    open_timeout: float = 10.0
    read_timeout: float = 10.0  # the longest silence tolerated, whatever the frame rate
    stall_frames: float = 5.0  # a silence of this many frame intervals is a stall...
    stall_min: float = 2.0  # ...but never shorter than this


class FrameClock:
    """Arrival times of one connection's video packets: the stream's own frame rate,
    and how long a silence may last before the stream counts as stalled."""

    WINDOW = 32  # recent gaps kept
    MIN_GAPS = 8  # gaps needed before the rate is trusted

    def __init__(self, options: SourceOptions, poll: float | None = None, now: float | None = None) -> None:
        self._options = options
        self.poll = poll or options.stall_min  # the connection's read timeout
        self._gaps: deque[float] = deque(maxlen=self.WINDOW)
        self._last = time.monotonic() if now is None else now
        self._seen = False

    def tick(self, now: float) -> None:
        """A video packet arrived."""
        if self._seen:
            self._gaps.append(now - self._last)
        self._last, self._seen = now, True

    def fps(self) -> float | None:
        """Frames per second from the median gap (the burst of probed packets at the start
        and the odd late frame do not move it); None until enough frames arrived."""
        if len(self._gaps) < self.MIN_GAPS:
            return None
        median = statistics.median(self._gaps)
        return 1.0 / median if median > 1e-3 else None

    def limit(self) -> float:
        """The longest silence allowed: several frame intervals, within [stall_min, read_timeout]."""
        fps = self.fps()
        ceiling = self._options.read_timeout
        if fps is None:
            return ceiling
        return min(ceiling, max(self._options.stall_min, self._options.stall_frames / fps))

    def measured_limit(self) -> float | None:
        """The stall limit from this connection's frame rate, once it is known."""
        return self.limit() if self.fps() is not None else None

    def check(self, now: float) -> None:
        """Raise a SourceError when the stream has been silent for too long."""
        silence = now - self._last
        if silence <= self.limit():
            return
        fps = self.fps()
        rate = f" (stream runs at {fps:.1f} fps)" if fps is not None else ""
        waited = "no frame" if self._seen else "no first frame"
        raise SourceError(f"stalled: {waited} for {silence:.1f} s{rate}")


def _describe(exc: BaseException, url: str, reading: bool = False, waited: float | None = None) -> SourceError:
    """Turn a PyAV/OS exception into words a person can act on, credentials masked
    (edge/stream_errors.py: the wording `nvr-edge probe` shows too)."""
    words = describe(exc, url, reading, waited)
    return SourceError(words.message, fatal=words.fatal)


def open_stream(
    url: str, options: SourceOptions, poll: float, max_pixels: int | None = None
) -> av.container.InputContainer:
    """Open `url` with short probing (0.4-0.8 s to first frame instead of ~5 s).

    `poll` is how long a silent read waits before the stall check (FrameClock.poll).
    `max_pixels` bounds the pictures the probe may decode (FFmpeg decodes a few frames
    while opening): a hostile SPS is then refused by the decoder instead of allocated."""
    settings = {"rtsp_transport": "tcp", "analyzeduration": "1000000", "probesize": "32768"}
    if max_pixels is not None:
        settings["max_pixels"] = str(max_pixels)
    started = time.monotonic()
    try:
        return av.open(url, options=settings, timeout=(options.open_timeout, poll))
    except Exception as exc:  # noqa: BLE001 - every failure becomes a worded SourceError
        waited = time.monotonic() - started
        raise _describe(exc, url, waited=waited if waited >= 0.95 * min(poll, options.open_timeout) else None) from exc


def select_streams(container: av.container.InputContainer) -> tuple[av.VideoStream, av.AudioStream | None]:
    """The first video stream (required, H.264 or H.265: what MP4 segments and browsers
    take as sent) and the first audio stream, if any."""
    if not container.streams.video:
        raise SourceError("the stream has no video track", fatal=True)
    video = container.streams.video[0]
    codec = video.codec_context.name
    if codec not in SUPPORTED_CODECS:
        wanted = " or ".join(SUPPORTED_CODECS.values())
        raise SourceError(f"unsupported codec {codec}: set the camera to {wanted}", fatal=True)
    video.thread_type = "SLICE"  # one thread per stream: many small streams share the cores
    audio = container.streams.audio[0] if container.streams.audio else None
    return video, audio


def demux_packets(
    container: av.container.InputContainer,
    streams: list[av.stream.Stream],
    url: str,
    clock: FrameClock,
    stop: threading.Event | None = None,
) -> Iterator[av.Packet]:
    """Packets of `streams` (the video stream first) until the stream fails or stalls
    (judged by `clock`) or `stop` is set; always ends with a SourceError."""
    video = streams[0]
    while True:
        asked = time.monotonic()
        try:
            for packet in container.demux(streams):
                now = time.monotonic()
                if not packet.size:
                    continue
                if packet.stream is video and now - asked < clock.poll:
                    clock.tick(now)
                else:  # sound alone does not make a camera, nor a frame the interrupt flushed
                    clock.check(now)
                yield packet
                asked = time.monotonic()
        except av.error.ExitError:  # the read timeout (poll interval) passed without a packet
            if stop is not None and stop.is_set():
                raise SourceError("stopping") from None
            clock.check(time.monotonic())
            continue
        except SourceError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _describe(exc, url, reading=True) from exc
        raise SourceError("the camera ended the stream")


def decode(packet: av.Packet) -> list[av.VideoFrame]:
    """Decode one packet; a corrupt packet costs its frame, not the stream."""
    try:
        return packet.decode()
    except av.error.FFmpegError:  # corrupted data: the decoder resyncs at the next good slice
        return []


def _decode_with(codec: av.VideoCodecContext, packet: av.Packet) -> list[av.VideoFrame]:
    """Decode with the stream's decoder: held packets may be copies that belong to no stream."""
    try:
        return codec.decode(packet)
    except av.error.FFmpegError:
        return []


def luma_view(frame: av.VideoFrame) -> np.ndarray:
    """The Y plane as a zero-copy 2-D view (costs nothing, unlike to_ndarray(gray))."""
    if frame.format.name.startswith(("yuv", "yuvj", "nv12", "nv21", "gray")):
        plane = frame.planes[0]
        # numpy's stubs (before Python 3.12's collections.abc.Buffer) take only the buffer types
        # they know; a PyAV plane exports the buffer protocol
        data = np.frombuffer(plane, np.uint8)  # type: ignore[call-overload]
        return data.reshape(plane.height, plane.line_size)[:, : plane.width]
    return frame.to_ndarray(format="gray")


def copy_packet(packet: av.Packet) -> av.Packet:
    """A packet with the same bytes and times that nothing else will touch."""
    copy = av.Packet(bytes(packet))
    copy.pts, copy.dts, copy.time_base = packet.pts, packet.dts, packet.time_base
    return copy


class IdleDecoder:
    """A camera's video decoder with idle mode (edge.idle): `feed` a packet, get the frames
    to analyse; while the controller says the camera is idle, only keyframes are decoded
    and the packets in between are held back, to be decoded in order when it wakes.

    The daemon's camera worker and the motion evaluation both decode through this, so
    the evaluation measures what the daemon does. `copy_held`: hold copies (the caller
    hands the packets on to something that changes them, e.g. the recorder)."""

    def __init__(self, video: av.VideoStream, idle: IdleController, copy_held: bool = False) -> None:
        self.idle = idle
        self.action = Action.DECODE  # what was done with the last packet
        self.held: list[tuple[av.Packet, float]] = []  # held packets and when each arrived
        # On waking, the frames of held packets that arrived in the last CATCH_UP_S, with
        # their arrival times: analysed before this packet's, so an event starts from the
        # frame where the change began, not from the packet that tipped the sizes (at a
        # constant bitrate that can be a few frames later).
        self.recent: list[tuple[av.VideoFrame, float]] = []
        self.decoded = 0  # packets handed to the decoder (the rest were held and dropped)
        self._codec = video.codec_context
        self._h264 = self._codec.name == "h264"
        self._copy = copy_held

    def feed(self, packet: av.Packet, now: float) -> list[av.VideoFrame]:
        """The frames of this packet to analyse ([] when it was held back or is corrupt);
        on waking, `recent` holds the catch-up frames to analyse before them (see `timed`)."""
        self.recent = []
        key = packet.is_keyframe
        kind = None
        if not key and self._h264:
            kind = h264_slice_kind(bytes(memoryview(packet)[:256]), packet.size)
        self.action = action = self.idle.packet(now, packet.size, key, kind)
        if action is Action.HOLD:
            if key:  # a skipped keyframe: decoding can restart from it on waking
                self.held.clear()
            if len(self.held) >= MAX_HELD:
                del self.held[0]
            self.held.append((copy_packet(packet) if self._copy else packet, now))
            return []
        if action is Action.WAKE:
            for held, at in self.held:  # the decoder needs them as references
                frames = _decode_with(self._codec, held)
                if now - at <= CATCH_UP_S:
                    self.recent += [(frame, at) for frame in frames]
            self.decoded += len(self.held)
        if action is not Action.DECODE:
            self.held.clear()
        self.decoded += 1
        return _decode_with(self._codec, packet)

    def timed(self, frames: list[av.VideoFrame], now: float) -> list[tuple[av.VideoFrame, float]]:
        """What to analyse after `feed`, oldest first, with arrival times: the catch-up
        frames (`recent`, only on waking), then `frames`, this packet's, which arrived `now`."""
        return [*self.recent, *((frame, now) for frame in frames)]

    def analysed(self, now: float, motion: bool) -> None:
        """A motion result of a frame from `feed`: it may wake the camera (a keyframe showed motion)."""
        self.idle.analysed(now, motion)
