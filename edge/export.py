"""One MP4 of a camera's footage over a time range, stitched from its segments by remuxing
(no decoding, no re-encoding), each segment checked against the SHA-256 it was recorded
with, and a manifest (the JSON beside the file) saying what went in.

The output is fragmented MP4 written strictly in order (never a seek back), so it can be
streamed while it is built (stdout, the HTTP API) and hashed as it is written. Its
timeline is real time: second 0 is the first keyframe at or before `from`, and a gap in
the recording is a jump in the timestamps (players hold the last picture, the JSON lists
it), never a join. A segment whose picture format differs from the first one's (the
camera was reconfigured) cannot share its MP4 track: it is left out and said so.

`python -m edge.export` is the daemon's export child (edge.api): the same code in its own
low-priority process, so an export never takes CPU or the GIL from the cameras and a
crash in FFmpeg on a bad file cannot take the daemon down.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import av

from edge import __version__
from edge.footage import EXIT_FAILED, EXIT_OK, GAP_S, Gap, Plan, local_iso, nothing_recorded
from edge.index import IndexReader, Segment
from edge.leases import Lease

MUX_OPTIONS = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
IN_MEMORY_MAX = 64 * 2**20  # segments up to this are read once, hashed and demuxed from memory
# A segment's moov says all a remux needs: probing it decodes frames, and with no decoder
# allowed FFmpeg does not even decode the first one (cost: docs/PERFORMANCE.md "Measured
# facts"). What only decoding would tell (the pixel aspect ratio) comes from the pasp box.
INPUT_OPTIONS = {"probesize": "32", "analyzeduration": "0", "codec_whitelist": "none"}
WRITE_QUEUE = 64  # chunks (FFmpeg's, ~32 KiB) waiting for the writer thread: a bound on memory
TIMELINE = (
    "real time: second 0 of the file is actual.from; a gap in the recording is a jump in the "
    "timestamps (the picture holds), never a join; gaps[].at_s says where"
)
CHECK_OK, CHECK_MISMATCH, CHECK_NONE = "ok", "mismatch", "no hash recorded (recorded before nvr-edge kept hashes)"


class ExportError(Exception):
    """The export cannot be made (or completed): one line for a person; exit code 1."""


class HashingWriter:
    """The output as FFmpeg sees it: append-only (not seekable), counted as written, and
    written and hashed on a thread of its own (hashlib and file writes release the GIL, so
    the second core does that while this one remuxes). A write error (disk full, a closed
    pipe) is raised by the next write or by `finish`."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._hash = hashlib.sha256()
        self.bytes = 0
        self.abandoned = False  # a failed export: FFmpeg's closing bytes must not make it look whole
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=WRITE_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._drain, name="export-writer", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while (data := self._queue.get()) is not None:
            if self._error is None and not self.abandoned:
                try:
                    self._raw.write(data)
                    self._hash.update(data)
                except BaseException as exc:  # noqa: BLE001 - handed to the writing thread
                    self._error = exc

    def write(self, data: bytes) -> int:
        if self._error is not None:
            raise self._error
        if not self.abandoned:
            self._queue.put(bytes(data))
            self.bytes += len(data)
        return len(data)

    def finish(self) -> None:
        """Wait until everything is written (then `sha256` is final); raises a write error."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if self._error is not None and not self.abandoned:
            raise self._error
        self._raw.flush()

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.bytes

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


@dataclass
class _Track:
    out: av.stream.Stream
    tb: float = 0.0  # the output stream's time base, once the muxer has chosen it
    last_dts: int | None = None


@dataclass
class _State:
    """What the remux loop carries from one segment to the next."""

    start: float  # requested from
    end: float  # requested to
    origin: float | None = None  # wall clock of second 0 (the first keyframe kept)
    pending: list[tuple[av.Packet, float, bool, float]] = field(default_factory=list)  # before `from`
    video_end: float | None = None  # wall clock where the last video packet written ends
    video_packets: int = 0
    done: bool = False


def _video_signature(stream: av.VideoStream) -> tuple[object, ...]:
    ctx = stream.codec_context
    return (ctx.name, ctx.width, ctx.height, bytes(ctx.extradata or b""))


def _audio_signature(stream: av.AudioStream) -> tuple[object, ...]:
    ctx = stream.codec_context
    return (ctx.name, ctx.sample_rate, ctx.layout.name, bytes(ctx.extradata or b""))


def _describe_video(stream: av.VideoStream) -> str:
    return f"{stream.codec_context.name} {stream.codec_context.width}x{stream.codec_context.height}"


class Exporter:
    """Writes one plan's footage into `out`; `manifest()` afterwards describes it."""

    def __init__(
        self,
        plan: Plan,
        recordings_dir: Path,
        *,
        allow_mismatch: bool = False,
        lease: Lease | None = None,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> None:
        self.plan = plan
        self._dir = recordings_dir
        self._allow_mismatch = allow_mismatch
        self._lease = lease
        self._progress = progress
        self.checks: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.gaps: list[tuple[Gap, str]] = []
        self.notes: list[str] = []
        self._skipped_since_written: str | None = None
        self._video: _Track | None = None
        self._audio: _Track | None = None
        self._video_sig: tuple[object, ...] | None = None
        self._audio_sig: tuple[object, ...] | None = None
        self._output: av.container.OutputContainer | None = None
        self._state = _State(plan.start, plan.end)
        self.writer: HashingWriter | None = None
        self.video_desc = ""
        self.audio_desc: str | None = None

    # -- reading a segment, checked ------------------------------------------------------
    def _read(self, seg: Segment) -> tuple[str | io.BytesIO, str]:
        """(what av.open reads, the SHA-256 of the file's bytes): one read when it fits in memory."""
        path = self._dir / seg.path
        digest = hashlib.sha256()
        try:
            with path.open("rb") as file:
                size = os.fstat(file.fileno()).st_size
                if size <= IN_MEMORY_MAX:
                    data = file.read()
                    digest.update(data)
                    return io.BytesIO(data), digest.hexdigest()
                while chunk := file.read(1 << 20):
                    digest.update(chunk)
        except FileNotFoundError:
            raise ExportError(
                f"{seg.path} was deleted while this export read it (retention freed space for recording): "
                "the export is incomplete and was not kept; try again"
            ) from None
        except OSError as exc:
            raise ExportError(f"{seg.path}: cannot be read ({exc.strerror or exc})") from None
        return str(path), digest.hexdigest()

    def _check(self, seg: Segment, found: str) -> None:
        entry: dict[str, Any] = {
            "path": seg.path,
            "start": round(seg.start, 3),
            "end": round(seg.end, 3),
            "bytes": seg.bytes,
            "sha256": seg.sha256,
        }
        if seg.sha256 is None:
            entry["check"] = CHECK_NONE
        elif seg.sha256 == found:
            entry["check"] = CHECK_OK
        else:
            if not self._allow_mismatch:
                raise ExportError(
                    f"{seg.path}: its SHA-256 does not match the one recorded when it was written "
                    "(changed or corrupted since): refused (--allow-mismatch exports it anyway and says so in the JSON)"
                )
            entry["check"] = CHECK_MISMATCH
            entry["sha256_found"] = found
        self.checks.append(entry)

    # -- writing -----------------------------------------------------------------------
    def run(self, out: BinaryIO) -> None:
        """Remux every planned segment into `out`. Raises ExportError (the output is then incomplete).

        The next segment is read and hashed on another thread while this one is remuxed."""
        self.writer = HashingWriter(out)
        segments = self.plan.segments
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export-reader") as reader:
            ahead: Future[tuple[str | io.BytesIO, str]] | None = reader.submit(self._read, segments[0])
            try:
                for n, seg in enumerate(segments):
                    source = ahead.result() if ahead is not None else self._read(seg)
                    ahead = reader.submit(self._read, segments[n + 1]) if n + 1 < len(segments) else None
                    if self._lease is not None:
                        self._lease.refresh()
                    self._segment(seg, *source)
                    if self._progress is not None:
                        self._progress(n + 1, len(segments), self.writer.bytes)
                    if self._state.done:
                        break
                if self._output is None or self._state.origin is None:
                    raise ExportError(f"no playable picture of {self.plan.camera} in the requested range")
                output, self._output = self._output, None
                output.close()
                self.writer.finish()
            except BaseException:
                self.writer.abandoned = True
                raise
            finally:
                if ahead is not None:
                    ahead.cancel()
                if self._output is not None:
                    with contextlib.suppress(Exception):
                        self._output.close()
                with contextlib.suppress(BaseException):
                    self.writer.finish()

    def _segment(self, seg: Segment, source: str | io.BytesIO, found: str) -> None:
        self._check(seg, found)
        try:
            with av.open(source, "r", format="mp4", options=INPUT_OPTIONS) as inp:
                self._remux(seg, inp)
        except av.error.FFmpegError as exc:
            if self.checks[-1]["check"] == CHECK_MISMATCH:  # allowed in, but it does not even play
                self._skip(seg, f"cannot be read as MP4 ({exc})")
                return
            raise ExportError(f"{seg.path}: cannot be read as MP4 ({exc})") from None

    def _skip(self, seg: Segment, reason: str) -> None:
        self.skipped.append({"path": seg.path, "start": round(seg.start, 3), "end": round(seg.end, 3),
                             "reason": reason})  # fmt: skip
        self._skipped_since_written = reason

    def _open_output(self, video: av.VideoStream, audio: av.AudioStream | None) -> None:
        assert self.writer is not None
        self._output = av.open(self.writer, "w", format="mp4", options=MUX_OPTIONS)
        video_out = self._output.add_stream_from_template(video)
        self._video = _Track(video_out)
        if video.sample_aspect_ratio:  # the pasp box; the codec (not opened) does not know it
            video_out.codec_context.sample_aspect_ratio = video.sample_aspect_ratio
        self._video_sig = _video_signature(video)
        self.video_desc = _describe_video(video)
        if audio is not None:
            self._audio = _Track(self._output.add_stream_from_template(audio))
            self._audio_sig = _audio_signature(audio)
            self.audio_desc = f"{audio.codec_context.name} {audio.codec_context.sample_rate} Hz"
        self._output.start_encoding()
        for track in (self._video, self._audio):
            if track is not None:
                assert track.out.time_base is not None  # start_encoding() has the muxer choose it
                track.tb = float(track.out.time_base)

    def _remux(self, seg: Segment, inp: av.container.InputContainer) -> None:
        if not inp.streams.video:
            self._skip(seg, "has no video stream")
            return
        video = inp.streams.video[0]
        audio = inp.streams.audio[0] if inp.streams.audio else None
        if self._output is None:
            self._open_output(video, audio)
        elif _video_signature(video) != self._video_sig:
            self._skip(
                seg, f"picture format changed ({self.video_desc} -> {_describe_video(video)}): export it separately"
            )
            return
        if audio is not None and (self._audio is None or _audio_signature(audio) != self._audio_sig):
            if self._audio is not None or self.audio_desc is None:
                self.notes.append(
                    f"{seg.path}: its audio ({audio.codec_context.name}) differs from the first's: left out"
                )
            audio = None
        start = self._segment_start(seg)
        base: float | None = None  # seconds of the first video dts in the file
        early_audio: list[tuple[av.Packet, int]] = []  # with its dts
        streams = [video] + ([audio] if audio is not None else [])
        assert video.time_base is not None  # libavformat gives every stream of an opened input one
        video_tb = float(video.time_base)
        audio_tb = 0.0
        if audio is not None:
            assert audio.time_base is not None  # likewise
            audio_tb = float(audio.time_base)
        for packet in inp.demux(streams):
            if packet.dts is None:
                continue
            is_video = packet.stream is video
            tb = video_tb if is_video else audio_tb
            if base is None:
                if not is_video:
                    early_audio.append((packet, packet.dts))
                    continue
                base = packet.dts * video_tb
                for held, held_dts in early_audio:
                    self._packet(held, start + held_dts * audio_tb - base, False, audio_tb)
            self._packet(packet, start + packet.dts * tb - base, is_video, tb)
            if self._state.done:
                return

    def _segment_start(self, seg: Segment) -> float:
        """Where this segment sits on the timeline; notes a gap before it (or an overlap: a clock step)."""
        state = self._state
        start = seg.start
        if state.video_end is not None:
            if start - state.video_end > GAP_S:
                reason = f"left out: {self._skipped_since_written}" if self._skipped_since_written else "not recorded"
                self.gaps.append((Gap(state.video_end, start), reason))
            elif start < state.video_end - GAP_S:
                self.notes.append(
                    f"{seg.path} starts {state.video_end - start:.2f} s before the previous one ends "
                    "(the box's clock was re-anchored): placed right after it"
                )
                start = state.video_end
        self._skipped_since_written = None
        return start

    def _packet(self, packet: av.Packet, wall: float, is_video: bool, tb: float) -> None:
        state = self._state
        if is_video and wall >= state.end and state.origin is not None:
            state.done = True
            return
        if state.origin is None:
            self._before_start(packet, wall, is_video, tb)
            return
        if wall < state.origin or wall >= state.end:
            return
        self._write(packet, wall, is_video, tb)

    def _before_start(self, packet: av.Packet, wall: float, is_video: bool, tb: float) -> None:
        """Hold packets from the last keyframe at or before `from`; write them once past it."""
        state = self._state
        if is_video and packet.is_keyframe and (wall <= state.start or not state.pending):
            state.pending = [(packet, wall, True, tb)]
        elif state.pending:
            state.pending.append((packet, wall, is_video, tb))
        if not is_video or wall < state.start or not state.pending:
            return
        held, state.pending = state.pending, []
        state.origin = held[0][1]
        for item, at, video, item_tb in held:
            if at >= state.origin:
                self._write(item, at, video, item_tb)

    def _write(self, packet: av.Packet, wall: float, is_video: bool, in_tb: float) -> None:
        state = self._state
        track = self._video if is_video else self._audio
        assert track is not None and self._output is not None and state.origin is not None
        assert packet.dts is not None  # _remux passes on only packets with a dts
        assert track.out.time_base is not None  # chosen by the muxer in _open_output
        out_tb = track.tb
        dts = round((wall - state.origin) / out_tb)
        if track.last_dts is not None and dts <= track.last_dts:
            dts = track.last_dts + 1
        offset = 0 if packet.pts is None else round((packet.pts - packet.dts) * in_tb / out_tb)
        duration = round(packet.duration * in_tb / out_tb) if packet.duration else 0
        packet.stream = track.out
        packet.time_base = track.out.time_base
        packet.dts, packet.pts = dts, dts + max(0, offset)
        packet.duration = duration
        track.last_dts = dts
        if is_video:
            state.video_packets += 1
            state.video_end = wall + duration * out_tb
        try:
            self._output.mux(packet)
        except av.error.FFmpegError as exc:
            raise ExportError(f"writing the export failed: {exc}") from None
        except BrokenPipeError:
            raise ExportError("the output was closed before the export was complete") from None

    # -- the manifest ------------------------------------------------------------------------
    @property
    def actual(self) -> tuple[float, float] | None:
        state = self._state
        if state.origin is None or state.video_end is None:
            return None
        return state.origin, state.video_end

    def manifest(
        self, box: str, name: str | None, event: str | None = None, share: str | None = None
    ) -> dict[str, Any]:
        """What the JSON beside the file says (README: "Getting footage for an investigation")."""
        assert self.writer is not None and self.actual is not None
        origin, end = self.actual
        doc: dict[str, Any] = {
            "nvr_edge_version": __version__,
            "box": box,
            "camera": self.plan.camera,
            "event": event,
            "share": share,
            "created_local": local_iso(time.time()),
            "requested": _span(self.plan.start, self.plan.end),
            "actual": _span(origin, end) | {"seconds": round(end - origin, 3)},
            "file": {
                "name": name,
                "bytes": self.writer.bytes,
                "sha256": self.writer.sha256,
                "video": self.video_desc,
                "audio": self.audio_desc,
                "video_frames": self._state.video_packets,
            },
            "timeline": TIMELINE,
            "gaps": [gap.as_dict(origin) | {"reason": why} for gap, why in self.gaps],
            "segments": self.checks,
            "skipped": self.skipped,
            "notes": self.notes,
            "mismatches_allowed": self._allow_mismatch,
        }
        return doc


def _span(start: float, end: float) -> dict[str, Any]:
    return {"from": round(start, 3), "to": round(end, 3), "from_local": local_iso(start), "to_local": local_iso(end)}


# -- planning from the index ---------------------------------------------------------------
def plan_from_index(reader: IndexReader, camera: str, start: float, end: float) -> Plan:
    """The plan, or ExportError with the nearest footage when nothing is recorded."""
    segments = reader.segments_between(camera, start, end)
    if not segments:
        raise ExportError(
            nothing_recorded(camera, start, end, reader.last_before(camera, start), reader.first_after(camera, end))
        )
    return Plan(camera, start, end, segments)


def event_range(reader: IndexReader, event_id: str, pre_roll: float, post_roll: float) -> tuple[str, float, float]:
    """(camera, from, to) of an event: its start (from its id, `<camera>-<start ms>`) less the
    pre-roll, to the last time it was seen plus the post-roll."""
    found = reader.event_span(event_id)
    camera, _, millis = event_id.rpartition("-")
    if found is None or not millis.isdigit() or found[0] != camera:
        raise ExportError(f"no footage of event {event_id} in the index (never recorded, or deleted since)")
    start = int(millis) / 1000
    return camera, start - pre_roll, max(found[1], start) + post_roll


def export_to_file(exporter: Exporter, output: Path | None, manifest_path: Path | None, **about: Any) -> dict[str, Any]:
    """Run `exporter` into `output` (None: stdout). The file appears under its name only
    when complete (written as NAME.partial, then renamed); the JSON is written last."""
    if output is None:
        exporter.run(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        doc = exporter.manifest(name=None, **about)
    else:
        partial = output.with_name(output.name + ".partial")
        try:
            with partial.open("wb") as file:
                exporter.run(file)
                file.flush()
                os.fsync(file.fileno())
            doc = exporter.manifest(name=output.name, **about)
            partial.replace(output)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    if manifest_path is not None:
        tmp = manifest_path.with_name(manifest_path.name + ".partial")
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(manifest_path)
    return doc


# -- the daemon's export child ---------------------------------------------------------------
def _child_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m edge.export", description="the daemon's export child (edge.api)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--box", required=True)
    parser.add_argument("--camera", required=True)
    parser.add_argument("--from", dest="start", type=float, required=True)
    parser.add_argument("--to", dest="end", type=float, required=True)
    parser.add_argument("--event")
    parser.add_argument("--share")
    parser.add_argument("-o", "--output", type=Path, required=True)
    return parser.parse_args(argv)


def child_main(argv: list[str] | None = None) -> int:
    """Export at the lowest CPU priority into OUTPUT(.partial) and OUTPUT.json; errors: one line on stderr."""
    args = _child_arguments(argv)
    with contextlib.suppress(OSError):
        os.nice(19)  # the cameras come first: the export takes what CPU they leave
    try:
        reader = IndexReader(args.data_dir / "index.sqlite")
        plan = plan_from_index(reader, args.camera, args.start, args.end)
        with Lease(args.data_dir, (s.path for s in plan.segments)) as lease:
            exporter = Exporter(plan, args.data_dir / "recordings", lease=lease)
            manifest = args.output.with_name(args.output.name + ".json")
            export_to_file(exporter, args.output, manifest, box=args.box, event=args.event, share=args.share)
    except (ExportError, FileNotFoundError) as exc:
        print(str(exc).strip().splitlines()[0], file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(child_main())
