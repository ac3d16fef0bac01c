#!/usr/bin/python3
"""Camera simulator: a GStreamer RTSP server serving H.264 MP4 files as looping live cameras.

Runs with Debian's system python3 (python3-gi, gir1.2-gst-rtsp-server-1.0): it needs
neither numpy nor PyAV. qtdemux does not loop (`multifilesrc loop=true ! qtdemux` ends
with the file), so each MP4 is remuxed once, without re-encoding, to an Annex-B
elementary stream with SPS/PPS before every IDR (cached); that loops through
multifilesrc. h264parse leaves timestamps unset, so a pad probe stamps
dts = n x frame duration and pts = dts (plus the clip's own B-frame offsets, kept
from the MP4 at conversion): monotonic across loops, and `identity sync=true` paces
the stream by them like a live camera. The frame rate comes from the clip generator's
`<name>.json`, else the MP4's frame timestamps, else GstPbutils.Discoverer.

  /usr/bin/python3 scripts/camsim.py --port 8554 --mount gate-1=walkers.mp4 --mount lane-1=static.mp4
  /usr/bin/python3 scripts/camsim.py --port 0 --clips DIR --count 24

Camera faults, per mount:
  --alternate NAME=OTHER.mp4  a second clip (another resolution, say) that `switch NAME`
                              changes to at its next key frame, in-band SPS/PPS, same session
  --auth NAME=USER:PASSWORD   the mount wants RTSP basic authentication (others stay open)
  --mjpeg NAME                a live MJPEG test pattern (RTP/JPEG): a codec an NVR may refuse
  --claim NAME=WxH[:REFS]     a hostile camera: the mount's SPS claims this picture size (and
                              reference frame count) while its slices stay the clip's

Prints `SERVING <name> <url>` per mount, then `READY`. Exits 0 on SIGTERM/SIGINT and
2 (one line on stderr) on a bad argument or an unreadable clip. With `--control stdin`
it reads one command per line and answers `OK <command>` (or `ERR <command>`):
`stall NAME` (no more frames, the RTSP session stays open), `resume NAME` (frames
again from the next key frame), `switch NAME` (to the alternate clip and back) and
`corrupt NAME SHARE SECONDS` (random bytes overwritten in SHARE of the slice NAL units
for SECONDS) and `clock NAME` (answers `CLOCK NAME T FRAMES FPS` before its OK: the
wall-clock time T at which the clip's frame 0 was last sent, so a benchmark knows when
each labelled frame goes out: T + (k x FRAMES + frame) / FPS); end of stdin stops the
server, so it never outlives the process that controls it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import signal
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402

# The repository root, for edge.bitstream (pure stdlib, so the system python3 imports it
# from the source tree: the simulator and the daemon read H.264 with the same code).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from edge.bitstream import (  # noqa: E402
    H264_IDR,
    H264_SLICE,
    H264_SPS,
    BitstreamError,
    annexb_spans,
    escape,
    h264_sps_fields,
    nal_type,
    rbsp,
    ue_code,
)

# Bump when the cached elementary streams must be made again (a different conversion).
ANNEXB_FORMAT = 2
MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
SLICE_NALS = (H264_SLICE, H264_IDR)
ROLE = "media.factory.role"  # GstRTSPToken field that names the client's role
ANONYMOUS = "anonymous"


def fail(message: str) -> NoReturn:
    print(f"camsim: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def sidecar_rate(mp4: Path) -> Fraction | None:
    """The exact rate from the clip generator's `<name>.json`, if there is one."""
    try:
        fps = Fraction(json.loads(mp4.with_suffix(".json").read_text())["fps"]).limit_denominator(1001)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return None
    return fps if fps > 0 else None


def discovered_rate(mp4: Path) -> Fraction | None:
    """GstPbutils.Discoverer's rate: a last resort, as it is an average over the file
    (a 3 s 10 fps clip with B-frames comes out as 29/3)."""
    try:
        info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(mp4.resolve().as_uri())
    except GLib.Error:
        return None
    for stream in info.get_video_streams():
        if stream.get_framerate_num() > 0 and stream.get_framerate_denom() > 0:
            return Fraction(stream.get_framerate_num(), stream.get_framerate_denom())
    return None


def stepped_rate(dts: list[int | None]) -> Fraction | None:
    """The rate from the MP4's decode timestamps: the median step between frames."""
    steps = sorted(b - a for a, b in zip(dts, dts[1:], strict=False) if a is not None and b is not None and b > a)
    if not steps:
        return None
    return Fraction(Gst.SECOND, steps[len(steps) // 2]).limit_denominator(1001)


def _run(description: str) -> tuple[list[int | None], list[int | None], str | None]:
    """Run a finite pipeline to its end: the pts and dts of each buffer leaving the
    element named `parse`, and the error, if any."""
    pipeline = Gst.parse_launch(description)
    pts: list[int | None] = []
    dts: list[int | None] = []

    def record(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        pts.append(None if buf.pts == Gst.CLOCK_TIME_NONE else buf.pts)
        dts.append(None if buf.dts == Gst.CLOCK_TIME_NONE else buf.dts)
        return Gst.PadProbeReturn.OK

    pipeline.get_by_name("parse").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, record)
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(120 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None:
        return pts, dts, "timed out"
    if msg.type == Gst.MessageType.ERROR:
        return pts, dts, msg.parse_error()[0].message
    return pts, dts, None


def pts_offsets(stamps: list[int | None], fps: Fraction) -> list[int]:
    """Each access unit's presentation slot minus its decode slot, in frames, lowest 0.

    Empty when there is no reordering (no B-frames): then pts = dts. With B-frames the
    served pts must follow the clip's, or clients see timestamps go backwards."""
    if not stamps or None in stamps:
        return []
    slots = [round(Fraction(pts) * fps / Gst.SECOND) for pts in stamps if pts is not None]
    offsets = [slot - k for k, slot in enumerate(slots)]
    low = min(offsets)
    offsets = [offset - low for offset in offsets]
    if not any(offsets):
        return []
    if sorted(slots) != list(range(min(slots), min(slots) + len(slots))):
        return []  # gaps or a variable rate: no clean presentation order to keep
    return offsets


def to_annexb(mp4: Path, cache: Path) -> tuple[Path, Fraction, list[int]]:
    """Remux once (no re-encode) to a byte-stream .h264 that multifilesrc can loop; also
    the frame rate and the B-frame pts offsets, which an elementary stream cannot carry.

    Made again when the MP4 is newer. Written to per-process temporary names and
    renamed, so simulators started at the same time never read a half-written file."""
    key = hashlib.sha1(str(mp4.resolve()).encode()).hexdigest()[:10]
    out = cache / f"{mp4.stem}-{key}-v{ANNEXB_FORMAT}.h264"
    meta = out.with_suffix(".json")
    newest = max(mp4.stat().st_mtime_ns, _mtime_ns(mp4.with_suffix(".json")))
    if min(_mtime_ns(out), _mtime_ns(meta)) >= newest:
        try:
            known = json.loads(meta.read_text())
            return out, Fraction(known["fps"]), [int(x) for x in known["pts_offsets"]]
        except (ValueError, KeyError, TypeError, ZeroDivisionError):
            pass
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    pts, dts, error = _run(
        f'filesrc location="{mp4}" ! qtdemux ! h264parse name=parse config-interval=-1 ! '
        f'video/x-h264,stream-format=byte-stream,alignment=au ! filesink location="{tmp}"'
    )
    if error is not None or not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        fail(f"{mp4}: cannot read as an H.264 MP4 ({error or 'no data'})")
    fps = sidecar_rate(mp4) or stepped_rate(dts) or discovered_rate(mp4)
    if fps is None:
        tmp.unlink(missing_ok=True)
        fail(f"{mp4}: cannot tell its frame rate")
    offsets = pts_offsets(pts, fps)
    if offsets:
        # Serving counts access units again, from the .h264: the two counts must agree.
        again, _, error = _run(
            f'filesrc location="{tmp}" ! h264parse name=parse ! '
            "video/x-h264,stream-format=byte-stream,alignment=au ! fakesink"
        )
        if error is not None or len(again) != len(offsets):
            print(f"camsim: {mp4}: B-frame order not kept (frames {len(offsets)} vs {len(again)})", file=sys.stderr)
            offsets = []
    tmp.replace(out)
    tmp_meta = meta.with_suffix(f".{os.getpid()}.tmp")
    record = {"source": str(mp4), "fps": str(fps), "frames": len(pts), "pts_offsets": offsets}
    tmp_meta.write_text(json.dumps(record))
    tmp_meta.replace(meta)
    return out, fps, offsets


def _mtime_ns(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


@dataclass(frozen=True)
class Clip:
    """One converted clip: the looping elementary stream, its rate and B-frame offsets."""

    h264: Path
    fps: Fraction
    offsets: list[int]
    frames: int = 0  # access units in one loop (0: unknown)


def clip_frames(h264: Path) -> int:
    """Access units per loop, from the conversion's record (0 when it is not there)."""
    try:
        return int(json.loads(h264.with_suffix(".json").read_text())["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


def corrupt_slices(data: bytes, rng: random.Random) -> bytes:
    """Overwrite a few random bytes of each slice NAL payload, past the slice header.

    New values are 2..255, so no start code (00 00 01) is ever made: the access unit
    keeps its NAL layout and only the picture data is wrong, as after bit errors."""
    out = bytearray(data)
    for start, end in annexb_spans(data):
        if nal_type(data[start : start + 1], "h264") not in SLICE_NALS or end - start < 16:
            continue
        for _ in range(4 + (end - start) // 1500):
            out[rng.randrange(start + 8, end)] = rng.randrange(2, 256)
    return bytes(out)


def _bit_span(data: bytes, start: int, end: int) -> str:
    return "".join(str((data[i >> 3] >> (7 - (i & 7))) & 1) for i in range(start, end))


def claim_sps(nal: bytes, width: int, height: int, refs: int | None) -> bytes:
    """An H.264 SPS NAL unit (header included) rewritten to claim `width`x`height` (even
    numbers, 4:2:0: whole macroblocks cropped to it) and `refs` reference frames; the other
    fields are kept."""
    raw = rbsp(nal[1:])
    try:
        sps = h264_sps_fields(raw)
    except BitstreamError:
        fail("--claim: the clip's SPS does not parse")
    if not sps.frame_mbs_only:
        fail("--claim: interlaced clips are not supported")
    if sps.chroma_format != 1 or width % 2 or height % 2:
        fail("--claim: even sizes of 4:2:0 clips only")
    crop_x, crop_y = (-width % 16) // 2, (-height % 16) // 2
    cropping = "0" if not crop_x and not crop_y else "1" + "".join(map(ue_code, (0, crop_x, 0, crop_y)))
    last_one = max(i for i in range(len(raw) * 8) if (raw[i >> 3] >> (7 - (i & 7))) & 1)  # the stop bit
    out = _bit_span(raw, 0, sps.refs_at) + ue_code(sps.refs if refs is None else refs) + str(sps.gaps_allowed)
    out += ue_code(-(-width // 16) - 1) + ue_code(-(-height // 16) - 1) + "1" + str(sps.direct_8x8) + cropping
    out += _bit_span(raw, sps.tail_at, last_one + 1)  # the rest: the clip's own cropping left out
    out += "0" * (-len(out) % 8)
    return nal[:1] + escape(int(out, 2).to_bytes(len(out) // 8, "big"))


def claimed_clip(clip: Clip, cache: Path, width: int, height: int, refs: int | None) -> Clip:
    """A copy of the clip's elementary stream whose every SPS claims the given size and refs."""
    out = cache / f"{clip.h264.stem}-claims-{width}x{height}-r{refs}.h264"
    data = clip.h264.read_bytes()
    pieces, at = [], 0
    for start, end in annexb_spans(data):
        if nal_type(data[start : start + 1], "h264") == H264_SPS:
            pieces += [data[at:start], claim_sps(data[start:end], width, height, refs)]
            at = end
    pieces.append(data[at:])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(b"".join(pieces))
    tmp.replace(out)
    record = clip.h264.with_suffix(".json")
    if record.exists():
        out.with_suffix(".json").write_text(record.read_text())
    return Clip(out, clip.fps, clip.offsets, clip.frames)


class LoopingCamera(GstRtspServer.RTSPMediaFactory):
    """One mount: an endless, live-paced H.264 stream that all clients of the mount share.

    Shared media: every client sees the same frames at the same time (as with a real
    camera) and N clients cost one pipeline. When the last client leaves, the server
    drops the pipeline; the next client gets a new one from the start of the clip.

    Each clip (the main one and an optional alternate) runs as its own paced branch
    into a funnel, so both keep their clocks; a gate after the pacing lets one branch
    through at a time. That is how stall (no branch), switch (the other branch, from
    its key frame) and corruption (bytes overwritten at the gate) are done without
    touching the RTSP session."""

    def __init__(self, name: str, clips: list[Clip]) -> None:
        super().__init__()
        self.name = name
        self.clips = clips
        self.stalled = False
        self.active = 0  # the branch that is sent
        self.pending: int | None = None  # the branch to send from its next key frame
        self.switch_dts: int | None = None  # ...which is this one: from here on, no more of the old
        self.corrupt_share = 0.0
        self.corrupt_until = 0.0
        self.loop_wall: float | None = None  # wall time the active clip's frame 0 was last sent
        self._rng = random.Random(hashlib.sha1(name.encode()).digest())
        self.set_shared(True)
        self.set_launch(self._launch())
        self.connect("media-configure", self._configure)

    def _launch(self) -> str:
        branches = " ".join(
            f'multifilesrc location="{clip.h264}" loop=true '
            f'caps="video/x-h264,stream-format=byte-stream,framerate={clip.fps.numerator}/{clip.fps.denominator}" '
            f"! h264parse name=parse{i} ! video/x-h264,stream-format=byte-stream,alignment=au "
            f"! identity name=pace{i} sync=true ! mix."
            for i, clip in enumerate(self.clips)
        )
        return f"( funnel name=mix ! rtph264pay name=pay0 pt=96 {branches} )"

    def _configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        pipeline = media.get_element()
        for i, clip in enumerate(self.clips):
            state = {"n": 0, "need_key": i != self.active, "pushing": False}
            parse = pipeline.get_by_name(f"parse{i}").get_static_pad("src")
            parse.add_probe(Gst.PadProbeType.BUFFER, self._stamp, i, clip, state)
            # The gate sits after the pacing so a stalled (or unselected) branch's clock keeps running.
            pace = pipeline.get_by_name(f"pace{i}").get_static_pad("src")
            pace.add_probe(Gst.PadProbeType.BUFFER, self._gate, i, state)

    def switch(self) -> bool:
        """Send the other clip from its next key frame; False when there is no other clip."""
        if len(self.clips) < 2:
            return False
        self.pending = (self.active + 1) % len(self.clips)
        return True

    def corrupt(self, share: float, seconds: float) -> None:
        self.corrupt_share = share
        self.corrupt_until = time.monotonic() + seconds

    def _stamp(self, _pad: Gst.Pad, info: Gst.PadProbeInfo, branch: int, clip: Clip, state: dict) -> Gst.PadProbeReturn:
        """One buffer is one access unit (alignment=au): frame n decodes at n / fps and
        is shown at (n + its B-frame offset) / fps.

        Stamping runs a frame ahead of the pacing, so a pending switch is decided here, at
        the new clip's key frame, before either branch reaches the gate with that time."""
        buf = info.get_buffer()
        n = state["n"]
        step, num = Gst.SECOND * clip.fps.denominator, clip.fps.numerator
        slot = n + clip.offsets[n % len(clip.offsets)] if clip.offsets else n
        buf.dts = n * step // num
        buf.pts = slot * step // num
        buf.duration = (slot + 1) * step // num - buf.pts
        state["n"] = n + 1
        if self.pending == branch and self.switch_dts is None and not buf.has_flags(Gst.BufferFlags.DELTA_UNIT):
            self.switch_dts = buf.dts
        return Gst.PadProbeReturn.OK

    def _selected(self, branch: int, dts: int) -> bool:
        """Whether `branch` is the one sent: the old one up to the switch time, the new one from it."""
        if self.pending == branch and self.switch_dts is not None and dts >= self.switch_dts:
            self.active, self.pending, self.switch_dts = branch, None, None
        if self.active != branch:
            return False
        return self.switch_dts is None or dts < self.switch_dts

    def _gate(self, pad: Gst.Pad, info: Gst.PadProbeInfo, branch: int, state: dict) -> Gst.PadProbeReturn:
        """Drop what is not sent; after a gap, restart at a key frame so decoding restarts cleanly."""
        if state["pushing"]:  # our own corrupted copy coming through
            return Gst.PadProbeReturn.OK
        buf = info.get_buffer()
        key = not buf.has_flags(Gst.BufferFlags.DELTA_UNIT)
        if self.stalled or not self._selected(branch, buf.dts):
            state["need_key"] = True
            return Gst.PadProbeReturn.DROP
        if state["need_key"]:
            if not key:
                return Gst.PadProbeReturn.DROP
            state["need_key"] = False
        self._note_loop(branch, buf.dts)
        if time.monotonic() < self.corrupt_until and self._rng.random() < self.corrupt_share:
            return self._push_corrupted(pad, buf, state)
        return Gst.PadProbeReturn.OK

    def _note_loop(self, branch: int, dts: int) -> None:
        """Remember when the clip's frame 0 is sent (after the pacing: this is when it leaves)."""
        clip = self.clips[branch]
        if clip.frames:
            n = round(Fraction(dts) * clip.fps / Gst.SECOND)
            if n % clip.frames == 0:
                self.loop_wall = time.time()

    def _push_corrupted(self, pad: Gst.Pad, buf: Gst.Buffer, state: dict) -> Gst.PadProbeReturn:
        """Send a corrupted copy in place of `buf` (a probe cannot write to a buffer it may share)."""
        copy = Gst.Buffer.new_wrapped(corrupt_slices(buf.extract_dup(0, buf.get_size()), self._rng))
        copy.pts, copy.dts, copy.duration = buf.pts, buf.dts, buf.duration
        copy.set_flags(buf.get_flags())
        state["pushing"] = True
        try:
            pad.push(copy)
        finally:
            state["pushing"] = False
        return Gst.PadProbeReturn.DROP


class JpegCamera(GstRtspServer.RTSPMediaFactory):
    """A live MJPEG (RTP/JPEG) test pattern: a codec old cameras offer and an NVR may refuse."""

    def __init__(self, name: str, width: int = 320, height: int = 240, fps: int = 5) -> None:
        super().__init__()
        self.name = name
        self.set_shared(True)
        self.set_launch(
            # RTP/JPEG (RFC 2435) carries 4:2:0 or 4:2:2 only: I420 in, or rtpjpegpay drops every frame.
            "( videotestsrc is-live=true pattern=ball "
            f"! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 "
            "! jpegenc quality=50 ! rtpjpegpay name=pay0 pt=26 )"
        )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RTSP camera simulator (GStreamer): MP4 files as looping cameras")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--mount", action="append", default=[], metavar="NAME=FILE.mp4")
    parser.add_argument("--clips", type=Path, help="serve the *.mp4 in this folder (by name) as cam0..camN-1")
    parser.add_argument("--count", type=int, default=0, help="how many cameras with --clips (default: one per file)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nvr-edge" / "camsim")
    parser.add_argument("--control", choices=["stdin"], help="read control commands from stdin")
    parser.add_argument("--alternate", action="append", default=[], metavar="NAME=FILE.mp4")
    parser.add_argument("--auth", action="append", default=[], metavar="NAME=USER:PASSWORD")
    parser.add_argument("--mjpeg", action="append", default=[], metavar="NAME")
    parser.add_argument("--claim", action="append", default=[], metavar="NAME=WxH[:REFS]")
    return parser.parse_args()


def _pairs(specs: list[str], option: str, what: str) -> dict[str, str]:
    """`NAME=VALUE` options -> {NAME: VALUE}; exits on a malformed or repeated one."""
    found: dict[str, str] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        if not sep or not MOUNT_NAME.match(name) or not value:
            fail(f"bad {option} {spec!r}: expected NAME={what}, NAME of letters, digits, '.', '_', '-'")
        if name in found:
            fail(f"{option} {name} given twice")
        found[name] = value
    return found


def mounts_from(args: argparse.Namespace) -> dict[str, Path]:
    mounts = {name: Path(file) for name, file in _pairs(args.mount, "--mount", "FILE.mp4").items()}
    if args.count < 0 or (args.count and args.clips is None):
        fail("--count needs --clips DIR and a count >= 0")
    if args.clips is not None:
        files = sorted(f for f in args.clips.glob("*.mp4") if not f.name.startswith("."))
        if not files:
            fail(f"no .mp4 files in {args.clips}")
        for i in range(args.count or len(files)):
            mounts.setdefault(f"cam{i}", files[i % len(files)])
    if not mounts and not args.mjpeg:
        fail("nothing to serve: give --mount NAME=FILE.mp4, --clips DIR or --mjpeg NAME")
    for name, path in mounts.items():
        if not path.is_file():
            fail(f"mount {name}: no such file {path}")
    if not 0 <= args.port <= 65535:
        fail(f"bad --port {args.port}")
    return mounts


def alternates_from(args: argparse.Namespace, mounts: dict[str, Path]) -> dict[str, Path]:
    alternates = {name: Path(file) for name, file in _pairs(args.alternate, "--alternate", "FILE.mp4").items()}
    for name, path in alternates.items():
        if name not in mounts:
            fail(f"--alternate {name}: no --mount {name}")
        if not path.is_file():
            fail(f"--alternate {name}: no such file {path}")
    return alternates


def claims_from(args: argparse.Namespace, mounts: dict[str, Path]) -> dict[str, tuple[int, int, int | None]]:
    """--claim NAME=WxH[:REFS] -> {NAME: (W, H, REFS or None)}."""
    claims = {}
    for name, value in _pairs(args.claim, "--claim", "WxH[:REFS]").items():
        match = re.fullmatch(r"(\d{1,5})x(\d{1,5})(?::(\d{1,2}))?", value)
        if name not in mounts or match is None or not all(16 <= int(v) <= 16384 for v in match.groups()[:2]):
            fail(f"bad --claim {name}={value}: expected a mount's NAME=WxH[:REFS], sizes 16..16384")
        refs = None if match.group(3) is None else int(match.group(3))
        claims[name] = (int(match.group(1)), int(match.group(2)), refs)
    return claims


def credentials_from(args: argparse.Namespace, names: set[str]) -> dict[str, tuple[str, str]]:
    credentials = {}
    for name, value in _pairs(args.auth, "--auth", "USER:PASSWORD").items():
        user, sep, password = value.partition(":")
        if not sep or not user or not password:
            fail(f"--auth {name}: expected USER:PASSWORD")
        if name not in names:
            fail(f"--auth {name}: no such mount")
        credentials[name] = (user, password)
    return credentials


def mjpeg_from(args: argparse.Namespace, mounts: dict[str, Path]) -> list[str]:
    for name in args.mjpeg:
        if not MOUNT_NAME.match(name) or name in mounts or args.mjpeg.count(name) > 1:
            fail(f"bad or repeated --mjpeg {name!r}")
    return list(args.mjpeg)


def protect(
    server: GstRtspServer.RTSPServer,
    factories: dict[str, GstRtspServer.RTSPMediaFactory],
    credentials: dict[str, tuple[str, str]],
) -> None:
    """Basic authentication for the mounts in `credentials`; every other mount stays open.

    GstRTSPAuth is server-wide: clients without (valid) credentials get the `anonymous`
    role. Every role may see every mount (`access`; denied, the server would answer 404
    and a client never gets to send its password), but only a protected mount's own
    role may play it (`construct`; denied, 401 with a challenge); open mounts admit all."""
    if not credentials:
        return
    auth = GstRtspServer.RTSPAuth()
    anonymous = GstRtspServer.RTSPToken()
    anonymous.set_string(ROLE, ANONYMOUS)
    auth.set_default_token(anonymous)
    for name, (user, password) in credentials.items():
        token = GstRtspServer.RTSPToken()
        token.set_string(ROLE, f"user-{name}")
        auth.add_basic(GstRtspServer.RTSPAuth.make_basic(user, password), token)
    every_role = [ANONYMOUS] + [f"user-{name}" for name in credentials]
    for name, factory in factories.items():
        permissions = GstRtspServer.RTSPPermissions()
        for role in every_role:
            permissions.add_permission_for_role(role, "media.factory.access", True)
            allowed = name not in credentials or role == f"user-{name}"
            permissions.add_permission_for_role(role, "media.factory.construct", allowed)
        factory.set_permissions(permissions)
    server.set_auth(auth)


def control(cameras: dict[str, LoopingCamera], command: str) -> bool:
    """Apply one control command; False when it is unknown or malformed."""
    verb, *args = command.split()
    camera = cameras.get(args[0]) if args else None
    if camera is None:
        return False
    if verb in ("stall", "resume") and len(args) == 1:
        camera.stalled = verb == "stall"
        return True
    if verb == "switch" and len(args) == 1:
        return camera.switch()
    if verb == "clock" and len(args) == 1:
        clip = camera.clips[camera.active]
        if camera.loop_wall is None or not clip.frames:
            return False  # no client has played it yet
        print(f"CLOCK {camera.name} {camera.loop_wall:.6f} {clip.frames} {clip.fps}", flush=True)
        return True
    if verb == "corrupt" and len(args) == 3:
        try:
            share, seconds = float(args[1]), float(args[2])
        except ValueError:
            return False
        if not (0.0 <= share <= 1.0 and seconds >= 0):
            return False
        camera.corrupt(share, seconds)
        return True
    return False


def watch_stdin(cameras: dict[str, LoopingCamera], loop: GLib.MainLoop) -> None:
    """Control commands, one per line; end of input stops the server."""

    def on_input(channel: GLib.IOChannel, condition: GLib.IOCondition) -> bool:
        line = channel.readline() if condition & GLib.IOCondition.IN else ""
        if not line:  # EOF or HUP: whoever controlled us is gone
            loop.quit()
            return False
        command = line.strip()
        if command:
            print(f"{'OK' if control(cameras, command) else 'ERR'} {command}", flush=True)
        return True

    channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
    GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, on_input)


def main() -> int:
    args = parse_args()
    Gst.init(None)
    mounts = mounts_from(args)
    alternates = alternates_from(args, mounts)
    mjpeg = mjpeg_from(args, mounts)
    credentials = credentials_from(args, set(mounts) | set(mjpeg))
    claims = claims_from(args, mounts)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    cameras: dict[str, LoopingCamera] = {}
    converted: dict[Path, Clip] = {}

    def clip(mp4: Path) -> Clip:
        source = mp4.resolve()
        if source not in converted:
            h264, fps, offsets = to_annexb(source, args.cache)
            converted[source] = Clip(h264, fps, offsets, clip_frames(h264))
        return converted[source]

    for name, mp4 in mounts.items():
        clips = [clip(mp4)] + ([clip(alternates[name])] if name in alternates else [])
        if name in claims:
            clips = [claimed_clip(c, args.cache, *claims[name]) for c in clips]
        cameras[name] = LoopingCamera(name, clips)
    factories: dict[str, GstRtspServer.RTSPMediaFactory] = {**cameras, **{n: JpegCamera(n) for n in mjpeg}}
    for name, factory in factories.items():
        server.get_mount_points().add_factory(f"/{name}", factory)
    protect(server, factories, credentials)
    if server.attach(None) == 0:
        fail(f"cannot listen on {args.host}:{args.port}")
    port = server.get_bound_port()
    for name in factories:
        print(f"SERVING {name} rtsp://{args.host}:{port}/{name}", flush=True)
    print("READY", flush=True)

    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    if args.control == "stdin":
        watch_stdin(cameras, loop)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
