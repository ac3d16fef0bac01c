#!/usr/bin/python3
"""Camera simulator: a GStreamer RTSP server serving H.264 MP4 files as looping live cameras.

Runs with Debian's system python3 (python3-gi, gir1.2-gst-rtsp-server-1.0): it needs
neither numpy nor PyAV. Each MP4 is converted once to an Annex-B elementary stream
(cached), because qtdemux does not loop; the elementary stream loops through
multifilesrc and is sent without re-encoding. h264parse leaves timestamps unset, so a
pad probe stamps pts = dts = n x frame duration: monotonic across loops, and the
server paces the stream by them.

  /usr/bin/python3 scripts/camsim.py --port 8554 --mount gate-1=walkers.mp4 --mount lane-1=static.mp4
  /usr/bin/python3 scripts/camsim.py --port 0 --clips DIR --count 24

Prints `SERVING <name> <url>` per mount, then `READY`. With `--control stdin` it
reads `stall NAME` (frames stop, the RTSP session stays open) and `resume NAME`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
from fractions import Fraction
from pathlib import Path

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import GLib, Gst, GstPbutils, GstRtspServer  # noqa: E402


def fail(message: str) -> None:
    print(f"camsim: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def frame_rate(mp4: Path) -> Fraction:
    """From the clip generator's sidecar if present, else GStreamer's discoverer."""
    sidecar = mp4.with_suffix(".json")
    if sidecar.exists():
        try:
            return Fraction(json.loads(sidecar.read_text())["fps"]).limit_denominator(1001)
        except (ValueError, KeyError, TypeError):
            pass
    info = GstPbutils.Discoverer.new(10 * Gst.SECOND).discover_uri(mp4.resolve().as_uri())
    for stream in info.get_video_streams():
        if stream.get_framerate_num() > 0:
            return Fraction(stream.get_framerate_num(), stream.get_framerate_denom())
    fail(f"{mp4}: cannot tell its frame rate")
    raise AssertionError


def to_annexb(mp4: Path, cache: Path) -> Path:
    """Convert once (remux, no re-encode) to a byte-stream .h264 that can loop."""
    key = hashlib.sha1(str(mp4.resolve()).encode()).hexdigest()[:10]
    out = cache / f"{mp4.stem}-{key}.h264"
    if out.exists() and out.stat().st_mtime >= mp4.stat().st_mtime:
        return out
    cache.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp")
    pipeline = Gst.parse_launch(
        f'filesrc location="{mp4}" ! qtdemux ! h264parse ! '
        f'video/x-h264,stream-format=byte-stream,alignment=au ! filesink location="{tmp}"'
    )
    pipeline.set_state(Gst.State.PLAYING)
    msg = pipeline.get_bus().timed_pop_filtered(60 * Gst.SECOND, Gst.MessageType.EOS | Gst.MessageType.ERROR)
    pipeline.set_state(Gst.State.NULL)
    if msg is None or msg.type == Gst.MessageType.ERROR:
        detail = msg.parse_error()[0].message if msg is not None else "timed out"
        tmp.unlink(missing_ok=True)
        fail(f"{mp4}: cannot read as H.264 MP4 ({detail})")
    tmp.replace(out)
    return out


class LoopingCamera(GstRtspServer.RTSPMediaFactory):
    """One mount: an endless live H.264 stream shared by every client of the mount."""

    def __init__(self, name: str, h264: Path, fps: Fraction) -> None:
        super().__init__()
        self.name = name
        self.stalled = False
        self._duration = int(Gst.SECOND / fps)
        self.set_shared(True)
        self.set_launch(
            f'( multifilesrc location="{h264}" loop=true '
            f'caps="video/x-h264,stream-format=byte-stream,framerate={fps.numerator}/{fps.denominator}" '
            f"! h264parse name=parse ! video/x-h264,stream-format=byte-stream,alignment=au ! identity sync=true "
            f"! rtph264pay name=pay0 pt=96 config-interval=0 )"
        )
        self.connect("media-configure", self._configure)

    def _configure(self, _factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
        parse = media.get_element().get_by_name("parse")
        counter = [0]
        parse.get_static_pad("src").add_probe(Gst.PadProbeType.BUFFER, self._stamp, counter)

    def _stamp(self, _pad: Gst.Pad, info: Gst.PadProbeInfo, counter: list[int]) -> Gst.PadProbeReturn:
        buf = info.get_buffer()
        buf.pts = buf.dts = counter[0] * self._duration
        buf.duration = self._duration
        counter[0] += 1
        # A stalled camera keeps its RTSP session but sends nothing; time runs on.
        return Gst.PadProbeReturn.DROP if self.stalled else Gst.PadProbeReturn.OK


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="RTSP camera simulator (GStreamer)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    parser.add_argument("--mount", action="append", default=[], metavar="NAME=FILE.mp4")
    parser.add_argument("--clips", type=Path, help="serve the *.mp4 in this folder as cam0..camN-1")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "nvr-edge" / "camsim")
    parser.add_argument("--control", choices=["stdin"], help="read stall/resume commands")
    return parser.parse_args()


def mounts_from(args: argparse.Namespace) -> dict[str, Path]:
    mounts: dict[str, Path] = {}
    for spec in args.mount:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            fail(f"bad --mount {spec!r}: expected NAME=FILE.mp4")
        mounts[name] = Path(file)
    if args.clips is not None:
        files = sorted(args.clips.glob("*.mp4"))
        if not files:
            fail(f"no .mp4 files in {args.clips}")
        for i in range(args.count or len(files)):
            mounts[f"cam{i}"] = files[i % len(files)]
    if not mounts:
        fail("nothing to serve: give --mount NAME=FILE.mp4 or --clips DIR")
    for name, path in mounts.items():
        if not path.is_file():
            fail(f"mount {name}: no such file {path}")
    return mounts


def main() -> None:
    args = parse_args()
    Gst.init(None)
    mounts = mounts_from(args)
    server = GstRtspServer.RTSPServer()
    server.set_address(args.host)
    server.set_service(str(args.port))
    cameras: dict[str, LoopingCamera] = {}
    converted: dict[Path, tuple[Path, Fraction]] = {}
    for name, mp4 in mounts.items():
        if mp4 not in converted:
            converted[mp4] = (to_annexb(mp4, args.cache), frame_rate(mp4))
        h264, fps = converted[mp4]
        cameras[name] = LoopingCamera(name, h264, fps)
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

        def on_line(channel: GLib.IOChannel, condition: GLib.IOCondition) -> bool:
            if condition & (GLib.IOCondition.HUP | GLib.IOCondition.ERR):
                return False
            line = channel.readline().strip()
            verb, _, name = line.partition(" ")
            camera = cameras.get(name)
            if verb in ("stall", "resume") and camera is not None:
                camera.stalled = verb == "stall"
                print(f"OK {line}", flush=True)
            elif line:
                print(f"ERR {line}", flush=True)
            return True

        channel = GLib.IOChannel.unix_new(sys.stdin.fileno())
        GLib.io_add_watch(channel, GLib.PRIORITY_DEFAULT, GLib.IOCondition.IN | GLib.IOCondition.HUP, on_line)
    loop.run()


if __name__ == "__main__":
    main()
