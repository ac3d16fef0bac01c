"""One worker thread per camera: stream -> decoder -> frame pipeline (edge.pipeline) -> sink.

A camera's trouble stays inside its own thread: it reconnects with backoff and
jitter, reports `state` and `error` for stats, and never blocks another camera or
the event loop. Outputs (events with their thumbnail, motion ON/OFF) are handed to a
sink that must not block (the app posts them onto the asyncio loop).
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Iterable

import av

from edge.backoff import Backoff
from edge.config import CameraConfig, EventConfig
from edge.idle import Action
from edge.limits import FormatGuard, SizeLimit
from edge.logs import get_logger
from edge.mosaic import Frame, TileGrabber
from edge.pipeline import CameraOutput, FramePipeline, Moment
from edge.recorder import SegmentRecorder
from edge.redact import redact_url
from edge.source import (
    FrameClock,
    IdleDecoder,
    SourceError,
    SourceOptions,
    demux_packets,
    open_stream,
    select_streams,
)
from edge.status import CameraState, CameraStatus

Sink = Callable[[CameraOutput], None]

# A failure that retrying cannot fix soon (wrong password, no such stream) is retried
# slowly; a dropped connection quickly at first.
_FAST_BACKOFF = (1.0, 30.0)
_SLOW_BACKOFF = (30.0, 300.0)


_PR_SET_NAME = 15
_LIBC = ctypes.CDLL(None, use_errno=True)  # the process's own symbols: libc's prctl


def name_os_thread(name: str) -> None:
    """Give the calling thread its name in /proc/<pid>/task/<tid>/comm (15 bytes at
    most), so top -H and the benchmarks can tell camera and record workers apart."""
    try:
        _LIBC.prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)
    except (AttributeError, OSError):
        pass


def _limit(camera: CameraConfig) -> SizeLimit:
    """The size limit of the stream the camera worker decodes: the sub-stream's, or the
    main stream's when there is no separate sub-stream."""
    if camera.detect_url is not None and camera.detect_url != camera.url:
        return SizeLimit(*camera.max_resolution.detect, "max_resolution.detect")
    return SizeLimit(*camera.max_resolution.record, "max_resolution.record")


class StreamWorker:
    """A thread that keeps one RTSP stream open: reconnects with backoff and jitter,
    keeps `status.state`/`error` current, reconnects a stream that stalls (judged by
    its own frame rate, edge.source.FrameClock). Subclasses say what to do with the packets."""

    def __init__(
        self, camera_id: str, url: str, source_options: SourceOptions | None, role: str, limit: SizeLimit
    ) -> None:
        self.camera_id = camera_id
        self.status = CameraStatus()
        self._url = url
        self._source_options = source_options or SourceOptions()
        self._guard = FormatGuard(limit)  # max_resolution, decoder memory, resolution flapping
        self._stop = threading.Event()
        self._log = get_logger(camera=camera_id, role=role, url=redact_url(url))
        self._thread = threading.Thread(target=self._run, name=f"{role}-{camera_id}", daemon=True)

    @property
    def name(self) -> str:
        """e.g. "camera-gate-1" or "record-gate-1": names the worker in logs and watchdog reasons."""
        return self._thread.name

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        name_os_thread(self._thread.name)
        backoff = Backoff(*_FAST_BACKOFF)
        first = True
        poll = self._source_options.stall_min  # then the last connection's stall limit, once measured
        while not self._stop.is_set():
            self.status.heartbeat_monotonic = time.monotonic()
            if not first:
                self.status.reconnects += 1
            first = False
            try:
                container = open_stream(self._url, self._source_options, poll, self._guard.limit.max_pixels)
                self.status.heartbeat_monotonic = time.monotonic()  # an open may take its whole timeout
                clock = FrameClock(self._source_options, poll)
                try:
                    self._serve(container, backoff, clock)
                finally:
                    container.close()
                    poll = clock.measured_limit() or poll
                error = SourceError("the camera ended the stream")
            except SourceError as exc:
                error = exc
            except Exception as exc:  # noqa: BLE001 - a bug must not kill the camera for good
                self._log.exception("worker_crashed")
                error = SourceError(f"internal error: {type(exc).__name__}")
            self._on_down(stopping=self._stop.is_set())
            if self._stop.is_set():
                break
            if error.fatal:
                backoff.initial, backoff.maximum = _SLOW_BACKOFF
            self.status.state = CameraState.FAILED if error.fatal else CameraState.RECONNECTING
            self.status.error = str(error)
            if error.fatal:
                self._refused(error)
            delay = error.retry_in if error.retry_in is not None else backoff.next_delay()
            self._log.warning(
                "camera_down", state=self.status.state.value, error=str(error), retry_in_s=round(delay, 1)
            )
            self._rest(delay)

    def _rest(self, seconds: float) -> None:
        """Back off for `seconds` (until stop), showing signs of life every second."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
            self.status.heartbeat_monotonic = time.monotonic()
            self._stop.wait(min(1.0, left))

    def _streaming(self, backoff: Backoff, width: int, height: int) -> None:
        """The first packet or frame arrived: the camera is up."""
        self.status.state = CameraState.STREAMING
        self.status.error = None
        backoff.initial, backoff.maximum = _FAST_BACKOFF
        backoff.reset()
        self._log.info("camera_streaming", width=width, height=height)

    def _serve(self, container: av.container.InputContainer, backoff: Backoff, clock: FrameClock) -> None:
        raise NotImplementedError

    def _select(self, container: av.container.InputContainer) -> tuple[av.VideoStream, av.AudioStream | None]:
        """The streams to use, once their format passed the guard (a SourceError if not)."""
        video, audio = select_streams(container)
        self._guard.opened(video)
        return video, audio

    def _on_down(self, stopping: bool) -> None:
        """The stream is gone (or the worker is stopping)."""

    def _refused(self, error: SourceError) -> None:
        """The stream was refused (retried slowly): wrong password, too large, held back..."""


class RecordWorker(StreamWorker):
    """Records a camera's main stream when detection uses a separate sub-stream: no decoding.

    `max_size`: the camera's max_resolution.record (default: the recorder's)."""

    def __init__(
        self,
        camera_id: str,
        url: str,
        recorder: SegmentRecorder,
        source_options: SourceOptions | None = None,
        max_size: tuple[int, int] | None = None,
    ) -> None:
        limit = SizeLimit(*(max_size or recorder.max_size), "max_resolution.record")
        super().__init__(camera_id, url, source_options, role="record", limit=limit)
        self.recorder = recorder

    def _serve(self, container: av.container.InputContainer, backoff: Backoff, clock: FrameClock) -> None:
        video, audio = self._select(container)
        self.recorder.begin(video, audio)
        streams: list[av.stream.Stream] = [video] + ([audio] if audio is not None else [])
        for packet in demux_packets(container, streams, self._url, clock, self._stop):
            if self._stop.is_set():
                return
            if self.status.state is not CameraState.STREAMING:
                self._streaming(backoff, video.codec_context.width, video.codec_context.height)
            if packet.stream is video:
                self._guard.packet(packet)
                self.status.frames_in += 1
            self.status.last_frame_monotonic = self.status.heartbeat_monotonic = time.monotonic()
            self.recorder.write(packet)

    def _on_down(self, stopping: bool) -> None:
        self.recorder.close()

    def _refused(self, error: SourceError) -> None:
        """Stats show the camera worker's state: the main stream's refusal shows as its
        `recording_error` (edge.recordings.camera_stats)."""
        self.recorder.stats.last_error = str(error)
        self.recorder.stats.last_error_time = time.time()


class CameraWorker(StreamWorker):
    """Decodes the detect stream (and records it when it is the only stream) and hands
    every decoded frame to its FramePipeline (edge.pipeline), which decides everything
    about detection; outputs go to the sink in the order the pipeline made them.

    Threads: the worker thread owns the pipeline, fed under `_lock`; close_events (any thread)
    takes that lock; set_detect, request_tile (any thread) only store a flag."""

    def __init__(
        self,
        camera_id: str,
        camera: CameraConfig,
        box_id: str,
        events: EventConfig,
        sink: Sink,
        source_options: SourceOptions | None = None,
        recorder: SegmentRecorder | None = None,
    ) -> None:
        super().__init__(camera_id, camera.effective_detect_url, source_options, role="camera", limit=_limit(camera))
        self.camera = camera
        self.recorder = recorder
        self._sink = sink
        self._lock = threading.Lock()  # serialises the pipeline: shutdown may close its event from outside
        self._pipeline = FramePipeline.for_camera(camera_id, camera, box_id, events, self.status)
        # The mosaic's tile (edge/mosaic.py), grabbed only when asked for and only for a
        # share: full camera, masks applied in the grab: no other copy of the frame is kept.
        self._grabber = TileGrabber(camera.privacy_masks) if camera.share == "full" else None
        self._tile_wanted = False
        self.tile: Frame | None = None
        self.tile_cpu_s = 0.0  # CPU this thread spent on tiles (the mosaic's cost, in stats)

    def request_tile(self) -> None:
        """The mosaic wants a fresh tile: it is grabbed from the next decoded frame."""
        self._tile_wanted = self._grabber is not None

    def set_detect(self, enabled: bool) -> None:
        """detect/set ON|OFF: applied by the worker on its next frame."""
        self._pipeline.set_detect(enabled)

    def close_events(self, reason: str) -> None:
        """End an open event now (shutdown, camera lost); idempotent."""
        with self._lock:
            self._deliver(self._pipeline.close(time.time(), reason))

    def _deliver(self, outputs: Iterable[CameraOutput]) -> None:
        """Hand outputs to the sink; called under `_lock`, so two threads' outputs never interleave."""
        for output in outputs:
            self._sink(output)

    def _serve(self, container: av.container.InputContainer, backoff: Backoff, clock: FrameClock) -> None:
        video, audio = self._select(container)
        streams: list[av.stream.Stream] = [video]
        if self.recorder is not None:
            self.recorder.begin(video, audio)
            streams += [audio] if audio is not None else []
        with self._lock:
            idle = self._pipeline.connect(time.monotonic())
        decoder = IdleDecoder(video, idle, copy_held=self.recorder is not None)
        for packet in demux_packets(container, streams, self._url, clock, self._stop):
            if self._stop.is_set():
                return
            self.status.heartbeat_monotonic = time.monotonic()
            if packet.stream is video:
                self._guard.packet(packet)  # before the decoder sees its parameter sets
                self._video_packet(packet, decoder, backoff)
            if self.recorder is not None:
                self.recorder.write(packet)  # after decoding: write() rebases the packet

    def _video_packet(self, packet: av.Packet, decoder: IdleDecoder, backoff: Backoff) -> None:
        """Decode and analyse, or (idle mode, edge.idle) hold the packet back undecoded."""
        arrival = time.monotonic()
        frames = decoder.feed(packet, arrival)
        if self._pipeline.sync_idle():
            self._log_idle()
        if decoder.action is Action.HOLD:
            self.status.frames_in += 1  # it arrived; it is only not decoded
            self.status.last_frame_monotonic = time.monotonic()
            return
        for frame, at in decoder.timed(frames, arrival):
            self._guard.frame(frame.width, frame.height)
            if self.status.state is not CameraState.STREAMING:
                self._streaming(backoff, frame.width, frame.height)
            self._on_frame(frame, at)

    def _log_idle(self) -> None:
        idle = self._pipeline.idle
        if idle is None:
            return
        if idle.idle:
            self._log.debug("idle_enter")
            return
        wake = idle.last_wake
        self._log.debug("idle_wake", reason=wake.reason if wake else None, size=wake.size if wake else None)

    def _on_down(self, stopping: bool) -> None:
        if self.recorder is not None:
            self.recorder.close()
        self.close_events("shutdown" if stopping else "camera_lost")

    def _on_frame(self, frame: av.VideoFrame, arrival: float) -> None:
        """Count the frame, grab a tile if one is wanted, and feed the pipeline. `arrival`
        (monotonic): when its packet arrived, earlier than now for idle mode's catch-up."""
        status = self.status
        status.frames_in += 1
        status.last_frame_monotonic = arrival
        status.width, status.height = frame.width, frame.height
        if self._tile_wanted and self._grabber is not None:
            self._tile_wanted = False
            started = time.thread_time()
            self.tile = self._grabber.grab(frame)
            self.tile_cpu_s += time.thread_time() - started
        late = max(0.0, time.monotonic() - arrival)
        at = Moment(arrival, time.time() - late, frame.time)
        with self._lock:
            outcome = self._pipeline.feed(frame, at)
            self._deliver(outcome.outputs)
        if outcome.detect_changed:
            self._log.info("detect_set", enabled=status.detect_enabled)
        if outcome.idle_changed:
            self._log_idle()
