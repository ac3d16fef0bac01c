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

Prints `SERVING <name> <url>` per mount, then `READY`. Exits 0 on SIGTERM/SIGINT and
2 (one line on stderr) on a bad argument or an unreadable clip. With `--control stdin`
it reads one command per line and answers `OK <command>` (or `ERR <command>`):
`stall NAME` (no more frames, the RTSP session stays open) and `resume NAME` (frames
again from the next key frame); end of stdin stops the server, so it never outlives
the process that controls it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
from fractions import Fraction
from pathlib import Path
from typing import NoReturn

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402

# Bump when the cached elementary streams must be made again (a different conversion).
ANNEXB_FORMAT = 2
MOUNT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


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


class LoopingCamera(GstRtspServer.RTSPMediaFactory):
    """One mount: an endless, live-paced H.264 stream that all clients of the mount share.

    Shared media: every client sees the same frames at the same time (as with a real
    camera) and N clients cost one pipeline. When the last client leaves, the server
    drops the pipeline; the next client gets a new one from the start of the clip."""

    def __init__(self, name: str, h264: Path, fps: Fraction, offsets: list[int]) -> None:
        super().__init__()
        self.name = name
        self.fps = fps
        self.offsets = offsets
        self.stalled = False
        self.set_shared(True)
        self.set_launch(
            f'( multifilesrc location="{h264}" loop=true '
            f'caps="video/x-h264,stream-format=byte-stream,framerate={fps.numerator}/{fps.denominator}" '
            "! h264parse name=parse ! video/x-h264,stream-format=byte-stream,alignment=au "
            "! identity name=pace sync=true ! rtph264pay name=pay0 pt=96 )"
        )
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        pipeline = media.get_element()
        state = {"n": 0, "need_key": False}
        pipeline.get_by_name("parse").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._stamp, state)
        # The gate sits after the pacing so a stalled camera's clock keeps running.
        pipeline.get_by_name("pace").get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._gate, state)

    def _stamp(self, _pad: Gst.Pad, info: Gst.PadProbeInfo, state: dict) -> Gst.PadProbeReturn:
        """One buffer is one access unit (alignment=au): frame n decodes at n / fps and
        is shown at (n + its B-frame offset) / fps."""
        buf = info.get_buffer()
        n = state["n"]
        step, num = Gst.SECOND * self.fps.denominator, self.fps.numerator
        slot = n + self.offsets[n % len(self.offsets)] if self.offsets else n
        buf.dts = n * step // num
        buf.pts = slot * step // num
        buf.duration = (slot + 1) * step // num - buf.pts
        state["n"] = n + 1
        return Gst.PadProbeReturn.OK

    def _gate(self, _pad: Gst.Pad, info: Gst.PadProbeInfo, state: dict) -> Gst.PadProbeReturn:
        """Stalled: drop every frame. Resumed: drop until a key frame, so decoding restarts cleanly."""
        if self.stalled:
            state["need_key"] = True
            return Gst.PadProbeReturn.DROP
        if state["need_key"]:
            if info.get_buffer().has_flags(Gst.BufferFlags.DELTA_UNIT):
                return Gst.PadProbeReturn.DROP
            state["need_key"] = False
        return Gst.PadProbeReturn.OK


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RTSP camera simulator (GStreamer): MP4 files as looping cameras")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--mount", action="append", default=[], metavar="NAME=FILE.mp4")
    parser.add_argument("--clips", type=Path, help="serve the *.mp4 in this folder (by name) as cam0..camN-1")
    parser.add_argument("--count", type=int, default=0, help="how many cameras with --clips (default: one per file)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nvr-edge" / "camsim")
    parser.add_argument("--control", choices=["stdin"], help="read stall/resume commands from stdin")
    return parser.parse_args()


def mounts_from(args: argparse.Namespace) -> dict[str, Path]:
    mounts: dict[str, Path] = {}
    for spec in args.mount:
        name, sep, file = spec.partition("=")
        if not sep or not MOUNT_NAME.match(name) or not file:
            fail(f"bad --mount {spec!r}: expected NAME=FILE.mp4, NAME of letters, digits, '.', '_', '-'")
        if name in mounts:
            fail(f"mount {name} given twice")
        mounts[name] = Path(file)
    if args.count < 0 or (args.count and args.clips is None):
        fail("--count needs --clips DIR and a count >= 0")
    if args.clips is not None:
        files = sorted(f for f in args.clips.glob("*.mp4") if not f.name.startswith("."))
        if not files:
            fail(f"no .mp4 files in {args.clips}")
        for i in range(args.count or len(files)):
            mounts.setdefault(f"cam{i}", files[i % len(files)])
    if not mounts:
        fail("nothing to serve: give --mount NAME=FILE.mp4 or --clips DIR")
    for name, path in mounts.items():
        if not path.is_file():
            fail(f"mount {name}: no such file {path}")
    if not 0 <= args.port <= 65535:
        fail(f"bad --port {args.port}")
    return mounts


def watch_stdin(cameras: dict[str, LoopingCamera], loop: GLib.MainLoop) -> None:
    """Control commands, one per line; end of input stops the server."""

    def on_input(channel: GLib.IOChannel, condition: GLib.IOCondition) -> bool:
        line = channel.readline() if condition & GLib.IOCondition.IN else ""
        if not line:  # EOF or HUP: whoever controlled us is gone
            loop.quit()
            return False
        command = line.strip()
        verb, _, name = command.partition(" ")
        camera = cameras.get(name.strip())
        if verb in ("stall", "resume") and camera is not None:
            camera.stalled = verb == "stall"
            print(f"OK {command}", flush=True)
        elif command:
            print(f"ERR {command}", flush=True)
        return True

    channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
    GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, on_input)


def main() -> int:
    args = parse_args()
    Gst.init(None)
    mounts = mounts_from(args)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    cameras: dict[str, LoopingCamera] = {}
    converted: dict[Path, tuple[Path, Fraction, list[int]]] = {}
    for name, mp4 in mounts.items():
        source = mp4.resolve()
        if source not in converted:
            converted[source] = to_annexb(source, args.cache)
        cameras[name] = LoopingCamera(name, *converted[source])
        server.get_mount_points().add_factory(f"/{name}", cameras[name])
    if server.attach(None) == 0:
        fail(f"cannot listen on {args.host}:{args.port}")
    port = server.get_bound_port()
    for name in cameras:
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
