"""Remux one camera's packets into fragmented-MP4 segments, without decoding.

Container: fragmented MP4 (`empty_moov` + a fragment per keyframe or second,
flushed as written). After a power cut or kill -9 the open segment stays playable up
to its last written fragment (at most ~1 s lost); every closed segment is complete.
A segment starts on a keyframe, ends at the first keyframe after
`segment_seconds`, and is fsynced (file, then directory) before it is indexed, with
the SHA-256 of its bytes taken as they were written (no second read).

Wall-clock times come from the stream's own timestamps, anchored to the clock when
a run of continuous timestamps starts: the next segment starts where the previous
ended. A timestamp that goes backwards or leaps (camera reboot, a looping source,
33-bit wrap) closes the segment and re-anchors to the clock.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from edge.bitstream import annexb, parameter_sets, parse_sps
from edge.index import RecordingIndex
from edge.logs import get_logger

MAX_GAP_S = 5.0  # a timestamp leap larger than this is a discontinuity
MAX_DRIFT_S = 3.0  # re-anchor to the clock when the stream's time drifts this far
AUDIO_CODECS_IN_MP4 = {"aac", "mp3", "opus", "alac", "flac"}
MUX_OPTIONS = {
    "movflags": "frag_keyframe+empty_moov+default_base_moof",
    "frag_duration": "1000000",
    "flush_packets": "1",
}


DISK_FULL = "disk full"
_DISK_ERRNOS = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EROFS: "read-only file system",
    errno.EIO: "I/O error",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}
_DISK_MESSAGES = {  # SQLite and FFmpeg say it in words
    "No space left": DISK_FULL,
    "database or disk is full": DISK_FULL,
    "Read-only file system": "read-only file system",
    "readonly database": "read-only file system",
    "disk I/O error": "I/O error",
    "unable to open database file": "cannot open the recordings index",
}


def describe_write_error(exc: BaseException) -> tuple[str, bool]:
    """(the reason in a few words, whether it is the disk's fault rather than one stream's).

    Disk faults are the box's business (one log line, health `failed`); other write
    errors belong to the camera whose packets caused them."""
    code = getattr(exc, "errno", None)
    if code in _DISK_ERRNOS:
        return _DISK_ERRNOS[code], True
    text = str(exc)
    for needle, reason in _DISK_MESSAGES.items():
        if needle in text:
            return reason, True
    return text[:200] or type(exc).__name__, False


def coded_size(data: bytes, codec: str, max_pixels: int) -> tuple[int, int] | None:
    """Width and height of one key frame (only when the format changed): what its SPS
    says, else decoded on its own, never into a picture larger than `max_pixels`."""
    for nal in parameter_sets(data, codec):
        info = parse_sps(nal, codec)
        if info is not None:
            return info.width, info.height
    try:
        decoder = av.CodecContext.create(codec, "r")
        assert isinstance(decoder, av.VideoCodecContext)  # `codec` is the video stream's (h264/hevc)
        decoder.options = {"max_pixels": str(max_pixels)}
        frames = decoder.decode(av.Packet(data)) + decoder.decode(None)
    except (av.error.FFmpegError, ValueError):
        return None
    return (frames[0].width, frames[0].height) if frames else None


def _discard(path: Path, file: SegmentFile | None, output: av.container.OutputContainer | None) -> None:
    """Undo a segment start that failed: close what was opened, remove the file (a header
    without fragments is worth nothing)."""
    with contextlib.suppress(OSError, av.error.FFmpegError):
        if output is not None:
            output.close()
    with contextlib.suppress(OSError):
        if file is not None:
            file.close()
    with contextlib.suppress(OSError):  # EROFS even when missing, on a read-only disk
        path.unlink(missing_ok=True)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def segment_relpath(camera: str, start: float, taken: Callable[[str], bool]) -> str:
    """`<cam>/<YYYY-MM-DD>/<HH-MM-SS>.mp4` in the box's local time; `-1`, `-2`... on a clash."""
    stamp = time.localtime(start)
    base = f"{camera}/{time.strftime('%Y-%m-%d', stamp)}/{time.strftime('%H-%M-%S', stamp)}"
    path, n = f"{base}.mp4", 0
    while taken(path):
        n += 1
        path = f"{base}-{n}.mp4"
    return path


class SegmentFile:
    """A segment's file descriptor, owned here rather than by FFmpeg: PyAV never closes a
    path it opened when writing the header fails (a stream without a picture size, a
    full disk), so each failed start leaked a deleted `.mp4`. Writes go straight to the
    descriptor (no Python buffer): a fragment is on disk as soon as FFmpeg flushes it.

    It hashes what it writes: the fragmented-MP4 muxer only appends, so the SHA-256 of
    the bytes in write order is the file's. Should a write ever land elsewhere than the
    end (a seek back), `sha256` is None rather than a wrong digest."""

    def __init__(self, path: Path) -> None:
        self.name = str(path)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._hash: hashlib._Hash | None = hashlib.sha256()
        self._hashed = 0  # bytes hashed: the file's length while every write appended

    def write(self, data: bytes) -> int:
        at = self.tell()  # a syscall per fragment written (about one a second)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        # Hashed once on disk: a write that fails half-way leaves the length short of `size`.
        if at != self._hashed:
            self._hash = None  # bytes overwritten or skipped: no digest rather than a wrong one
        elif self._hash is not None:
            self._hash.update(data)
            self._hashed += len(data)
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return os.lseek(self._fd, offset, whence)

    def tell(self) -> int:
        return os.lseek(self._fd, 0, os.SEEK_CUR)

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    @property
    def sha256(self) -> str | None:
        """Hex digest of everything written, or None if the writes were not all appends."""
        return None if self._hash is None else self._hash.hexdigest()

    @property
    def size(self) -> int:
        return self._hashed

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)


@dataclass
class OpenSegment:
    relpath: str
    path: Path
    file: SegmentFile
    output: av.container.OutputContainer
    video_out: av.VideoStream
    audio_out: av.AudioStream | None
    start: float  # wall clock
    first_dts: int  # video time base
    last_dts: int
    last_duration: int
    params: tuple[bytes, ...] = ()  # the stream's parameter sets this segment was made for


@dataclass
class RecorderStats:
    bytes_written: int = 0
    segments: int = 0
    disk_full: int = 0
    errors: int = 0
    last_error: str | None = None
    last_error_time: float = 0.0
    last_segment_time: float = 0.0


class SegmentRecorder:
    """One per camera.

    Owner: the thread that records the camera (its camera or record worker): it alone
    calls `begin` and `write`. `close` may also come from the loop's helper thread when
    a worker did not stop in time (shutdown, reload), so `begin`, `write` and `close`
    hold `_lock`. Any thread may read `current`, `open_bytes()` and `stats` (single
    attribute reads and counters)."""

    def __init__(
        self,
        camera: str,
        recordings_dir: Path,
        index: RecordingIndex,
        segment_seconds: float,
        on_segment: Callable[[], None] = lambda: None,
        on_disk_full: Callable[[], None] = lambda: None,
        on_error: Callable[[BaseException], None] = lambda exc: None,
        ready: Callable[[], bool] = lambda: True,
        max_size: tuple[int, int] = (4096, 2160),
    ) -> None:
        self.camera = camera
        self.max_size = max_size  # the camera's max_resolution.record: the recording worker refuses larger
        self._dir = recordings_dir
        self._index = index
        self._segment_seconds = segment_seconds
        self._on_segment = on_segment
        self._on_disk_full = on_disk_full
        self._on_error = on_error  # logs, rate-limited: never one line per packet
        self._ready = ready  # False while the disk could not be opened for recording
        self._log = get_logger(camera=camera, component="recorder")
        self._video: av.VideoStream | None = None
        self._template_params: tuple[bytes, ...] = ()  # the opened stream's, from its extradata
        self._audio: av.AudioStream | None = None
        self._open: OpenSegment | None = None
        self._next_start: float | None = None  # chained start of the next segment
        self._unindexed: list[tuple[str, float, float, int, str | None]] = []  # finished, index write failed
        self.stats = RecorderStats()
        self._lock = threading.RLock()  # begin/write/close: the owner, or a late close from outside

    # -- stream lifecycle ----------------------------------------------------------
    def begin(self, video: av.VideoStream, audio: av.AudioStream | None) -> None:
        """A (re)opened input: new templates, new time anchor."""
        with self._lock:
            self._begin(video, audio)

    def _begin(self, video: av.VideoStream, audio: av.AudioStream | None) -> None:
        self._close()
        self._video = video
        self._template_params = parameter_sets(video.codec_context.extradata or b"", video.codec_context.name)
        self._audio = None
        self._next_start = None
        if audio is not None:
            if audio.codec_context.name in AUDIO_CODECS_IN_MP4:
                self._audio = audio
            else:
                self._log.info("audio_dropped", codec=audio.codec_context.name, reason="not storable in MP4")

    @property
    def current(self) -> OpenSegment | None:
        return self._open

    def open_bytes(self) -> int:
        """Bytes on disk the index does not count yet: the open segment and unindexed ones."""
        pending = sum(entry[3] for entry in self._unindexed)
        seg = self._open
        if seg is None:
            return pending
        try:
            return pending + seg.path.stat().st_size
        except OSError:
            return pending

    # -- packets -------------------------------------------------------------------
    def write(self, packet: av.Packet) -> None:
        """Mux one demuxed packet (video or audio) into the current segment."""
        with self._lock:
            self._write(packet)

    def _write(self, packet: av.Packet) -> None:
        if self._video is None or packet.dts is None or not self._ready():
            return
        if packet.stream is not self._video:
            self._write_audio(packet)
            return
        seg = self._open
        tb = float(self._video.time_base)
        data = bytes(packet) if packet.is_keyframe else b""
        # A camera that changes resolution or encoding mid-stream sends new parameter sets with
        # its next keyframe; an MP4 track has one set (its sample description), so the segment ends.
        params = parameter_sets(data, self._video.codec_context.name)
        changed = False
        if seg is not None:
            step = (packet.dts - seg.last_dts) * tb
            if step < 0 or step > MAX_GAP_S:
                self._log.info("timestamp_discontinuity", jump_s=round(step, 3))
                self._close()
                self._next_start = None
                seg = None
            elif params and params != seg.params:
                self._close()  # the time line goes on: only the track's format changes
                seg = None
                changed = True
            elif packet.is_keyframe and (packet.dts - seg.first_dts) * tb >= self._segment_seconds:
                self._close()
                seg = None
        if seg is None:
            if not packet.is_keyframe:
                return  # a segment must start on a keyframe to play on its own
            seg = self._start(packet, params or self._template_params, data)
            if seg is None:
                return
            if changed:
                ctx = seg.video_out.codec_context
                self._log.info("stream_format_changed", width=ctx.width, height=ctx.height)
        dts, duration = packet.dts, packet.duration
        self._mux(seg, packet, seg.video_out, seg.first_dts)  # rebases the packet in place
        seg.last_dts = dts
        seg.last_duration = duration or seg.last_duration

    def _write_audio(self, packet: av.Packet) -> None:
        seg = self._open
        if seg is None or seg.audio_out is None or self._audio is None or packet.stream is not self._audio:
            return
        # the open segment was started by write() from the video stream begin() set; demuxed
        # streams have a time base; write() passes on only packets with a dts
        assert self._video is not None and self._video.time_base is not None and self._audio.time_base is not None
        assert packet.dts is not None
        offset = int(seg.first_dts * float(self._video.time_base) / float(self._audio.time_base))
        if packet.dts < offset:
            return
        self._mux(seg, packet, seg.audio_out, offset)

    def _mux(self, seg: OpenSegment, packet: av.Packet, out_stream: av.stream.Stream, offset: int) -> None:
        assert packet.dts is not None  # write() passes on only packets with a dts
        packet.dts -= offset
        if packet.pts is not None:
            packet.pts -= offset
        else:
            packet.pts = packet.dts
        packet.stream = out_stream
        try:
            seg.output.mux(packet)
        except (OSError, av.error.FFmpegError) as exc:
            self._fail(exc)

    def _start(self, packet: av.Packet, params: tuple[bytes, ...], data: bytes) -> OpenSegment | None:
        assert self._video is not None and packet.dts is not None  # write() checked both before calling
        now = time.time()
        start = self._next_start if self._next_start is not None else now
        if abs(start - now) > MAX_DRIFT_S:
            start = now
        relpath = segment_relpath(self.camera, start, lambda p: (self._dir / p).exists())
        path = self._dir / relpath
        file: SegmentFile | None = None
        output: av.container.OutputContainer | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            file = SegmentFile(path)
            output = av.open(file, "w", format="mp4", options=MUX_OPTIONS)
            video_out = output.add_stream_from_template(self._video)
            if params != self._template_params:
                self._describe_format(video_out, params, data)
            audio_out = output.add_stream_from_template(self._audio) if self._audio is not None else None
            output.start_encoding()
        except (OSError, av.error.FFmpegError, ValueError) as exc:
            self._fail(exc)
            _discard(path, file, output)
            return None
        self._open = OpenSegment(
            relpath, path, file, output, video_out, audio_out, start, packet.dts, packet.dts, 0, params
        )
        return self._open

    def _describe_format(self, video_out: av.VideoStream, params: tuple[bytes, ...], data: bytes) -> None:
        """The stream changed format since it was opened: the new segment's sample
        description gets the new parameter sets and picture size, not the SDP's."""
        assert self._video is not None  # called by _start(), which write() calls only with it set
        ctx = video_out.codec_context
        ctx.extradata = annexb(params)
        size = coded_size(data, self._video.codec_context.name, self.max_size[0] * self.max_size[1])
        if size is not None:
            ctx.width, ctx.height = size

    def close(self) -> None:
        """Finish the open segment: close, fsync file and directory, then index it."""
        with self._lock:
            self._close()

    def _close(self) -> None:
        seg, self._open = self._open, None
        if seg is None:
            return
        try:
            seg.output.close()
        except (OSError, av.error.FFmpegError) as exc:
            self._fail(exc, closing=True)
        finally:
            seg.file.close()
        video_tb = self._video.time_base if self._video is not None else None
        tb = float(video_tb) if video_tb is not None else 0.0
        end = seg.start + (seg.last_dts - seg.first_dts + seg.last_duration) * tb
        self._next_start = end
        try:
            size = seg.path.stat().st_size
            fsync_path(seg.path)
            fsync_path(seg.path.parent)
        except OSError as exc:
            self._fail(exc, closing=True)
            return
        if size == 0:
            with contextlib.suppress(OSError):
                seg.path.unlink(missing_ok=True)
            return
        digest = seg.file.sha256 if seg.file.size == size else None
        if digest is None:
            self._log.warning("segment_not_hashed", path=seg.relpath, bytes=size, hashed=seg.file.size)
        self._unindexed.append((seg.relpath, seg.start, end, size, digest))
        if not self._index_pending():
            return
        self.stats.bytes_written += size
        self.stats.segments += 1
        self.stats.last_segment_time = time.time()
        self._log.info("segment_closed", path=seg.relpath, start=round(seg.start, 3), end=round(end, 3), bytes=size)
        self._on_segment()

    def _index_pending(self) -> bool:
        """Index finished segments, oldest first; on a full disk they wait for the next try
        (and count as open bytes for the budget meanwhile)."""
        while self._unindexed:
            relpath, start, end, size, digest = self._unindexed[0]
            try:
                self._index.add(self.camera, relpath, start, end, size, digest)
            except sqlite3.Error as exc:
                self._fail(exc, closing=True)
                return False
            self._unindexed.pop(0)
        return True

    def _fail(self, exc: BaseException, closing: bool = False) -> None:
        """Write errors never stop the camera: free space if the disk is full, go on."""
        self.stats.errors += 1
        self.stats.last_error_time = time.time()
        self.stats.last_error, _ = describe_write_error(exc)
        if self.stats.last_error == DISK_FULL:
            self.stats.disk_full += 1
            self._on_disk_full()
        self._on_error(exc)
        if not closing and self._open is not None:
            self._close()
