"""Recorded footage without waiting for it: real H.264 (+ AAC) clips made by ffmpeg, cut on
keyframes into fragmented-MP4 segments exactly as the recorder muxes them, and indexed
with their wall-clock times and SHA-256, gaps where a test wants them. For export tests
and the export benchmark; the recorder itself is exercised by the daemon tests.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import av

from edge.index import RecordingIndex
from edge.recorder import MUX_OPTIONS, segment_relpath


def make_clip(
    path: Path,
    *,
    seconds: float = 20,
    fps: int = 5,
    size: str = "320x180",
    audio: bool = True,
    gop_s: float = 2.0,
    bitrate: str | None = None,
) -> Path:
    """A test-pattern clip (moving, so frames differ) with a sine tone; cached by its path."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.mp4")
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    cmd += ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-bf", "0"]
    cmd += ["-g", str(int(gop_s * fps)), "-keyint_min", str(int(gop_s * fps)), "-sc_threshold", "0"]
    cmd += ["-b:v", bitrate, "-maxrate", bitrate, "-bufsize", bitrate] if bitrate else ["-crf", "28"]
    if audio:
        cmd += ["-c:a", "aac", "-b:a", "32k", "-ac", "1"]
    subprocess.run([*cmd, str(tmp)], check=True, timeout=300)
    tmp.replace(path)
    return path


def _cuts(inp: av.container.InputContainer, segment_s: float) -> list[list[av.Packet]]:
    """The clip's packets (video and audio, demux order) cut at the first keyframe after each
    `segment_s`. The packets refer to `inp`'s streams: use them while it is open."""
    video = inp.streams.video[0]
    assert video.time_base is not None  # libavformat gives every stream of an opened input one
    segments: list[list[av.Packet]] = []
    first_key = None
    for packet in inp.demux():
        if packet.dts is None:
            continue
        if packet.stream is video and packet.is_keyframe:
            at = float(packet.dts * video.time_base)
            if first_key is None or at - first_key >= segment_s - 1e-6:
                first_key = at
                segments.append([])
        if segments:
            segments[-1].append(packet)
    return segments


def write_segments(
    data_dir: Path,
    camera: str,
    clip: Path,
    start: float,
    *,
    segment_s: float = 4.0,
    gaps: dict[int, float] | None = None,
) -> list[tuple[str, float, float]]:
    """Index the clip as `camera`'s recording from wall time `start`: (path, start, end) per segment.

    `gaps` maps a segment number to seconds of silence before it (the camera down)."""
    recordings = data_dir / "recordings"
    index = RecordingIndex(data_dir / "index.sqlite")
    written = []
    wall = start
    try:
        with av.open(str(clip)) as inp:
            templates = [s for s in inp.streams if s.type in ("video", "audio")]
            for n, packets in enumerate(_cuts(inp, segment_s)):
                wall += (gaps or {}).get(n, 0.0)
                relpath = segment_relpath(camera, wall, lambda p: (recordings / p).exists())
                path = recordings / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                video = next(p for p in packets if p.stream.type == "video")
                zero = float(video.dts * video.stream.time_base)
                end_s = zero
                with av.open(str(path), "w", format="mp4", options=MUX_OPTIONS) as out:
                    outs = {s.index: out.add_stream_from_template(s) for s in templates}
                    out.start_encoding()
                    for packet in packets:
                        assert packet.dts is not None  # _cuts keeps only packets with a dts
                        tb = packet.stream.time_base
                        shift = round(zero / tb)
                        if packet.stream.type == "video":
                            end_s = max(end_s, float((packet.dts + (packet.duration or 0)) * tb))
                        if packet.dts < shift:
                            continue
                        target = outs[packet.stream.index]
                        packet.pts = (packet.pts if packet.pts is not None else packet.dts) - shift
                        packet.dts -= shift
                        packet.stream = target
                        out.mux(packet)
                end = wall + end_s - zero
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                index.add(camera, relpath, wall, end, path.stat().st_size, digest)
                written.append((relpath, wall, end))
                wall = end
    finally:
        index.close()
    return written


def repeat_segment(
    data_dir: Path, camera: str, segment: Path, start: float, count: int, seconds: float, *, link: bool = False
) -> list[tuple[str, float, float]]:
    """`count` back-to-back copies of one segment file (hard links with `link`): an hour in moments."""
    recordings = data_dir / "recordings"
    digest = hashlib.sha256(segment.read_bytes()).hexdigest()
    size = segment.stat().st_size
    index = RecordingIndex(data_dir / "index.sqlite")
    written = []
    try:
        for n in range(count):
            wall = start + n * seconds
            relpath = segment_relpath(camera, wall, lambda p: (recordings / p).exists())
            path = recordings / relpath
            path.parent.mkdir(parents=True, exist_ok=True)
            if link:
                os.link(segment, path)
            else:
                shutil.copyfile(segment, path)
            index.add(camera, relpath, wall, wall + seconds, size, digest)
            written.append((relpath, wall, wall + seconds))
    finally:
        index.close()
    return written


def probe(path: Path) -> dict[str, object]:
    """ffprobe's view: duration, video frames decoded, audio stream, and every decode error."""
    info = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_type,nb_read_frames:format=duration", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    decode = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-f", "null", "-"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    doc = json.loads(info.stdout or "{}")
    streams = {s["codec_type"]: s for s in doc.get("streams", [])}
    return {
        "duration": float(doc.get("format", {}).get("duration", 0) or 0),
        "frames": int(streams.get("video", {}).get("nb_read_frames", 0) or 0),
        "audio": "audio" in streams,
        "errors": (info.stderr + decode.stderr).strip(),
    }


def footage_block(
    data_dir: Path, camera: str, clip: Path, start: float, count: int, scratch: Path
) -> list[tuple[str, float, float]]:
    """`count` back-to-back segments of the whole of `clip` (hard links to one segment made from
    it) from wall time `start`: an hour of a camera in a second, for exports that must take a while."""
    one = write_segments(scratch, camera, clip, start, segment_s=float("inf"))
    source = scratch / "recordings" / one[0][0]
    return repeat_segment(data_dir, camera, source, start, count, one[0][2] - one[0][1], link=True)
