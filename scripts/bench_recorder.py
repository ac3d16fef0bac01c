"""Recorder benchmark: CPU per camera-hour of nvr-edge's recorder against ffmpeg's segment muxer.

Both record the same simulated RTSP streams (H.264, copied, no re-encoding) at the
same time; CPU (user+sys from /proc) is measured over the same steady-state window
after a warm-up, so interpreter start-up and stream probing are left out of both.

  .venv/bin/python scripts/bench_recorder.py --cameras 4 --seconds 60
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_procs import cpu_seconds  # noqa: E402


def child(urls: list[str], seconds: float, out: Path) -> None:
    """Our recorder alone: one RecordWorker per stream, the index and retention; no MQTT."""
    from edge.camera import RecordWorker
    from edge.config import parse_config
    from edge.logs import configure_logging
    from edge.recordings import Recordings

    configure_logging("warning")
    cams = "".join(f"  c{i}:\n    url: {url}\n" for i, url in enumerate(urls))
    config = parse_config(f"box:\n  id: bench\n  data_dir: {out}\nrecording:\n  segment_seconds: 10\ncameras:\n{cams}")
    recordings = Recordings(config)
    recordings.start()
    workers = [RecordWorker(cam, c.url, recordings.recorder_for(cam)) for cam, c in config.cameras.items()]
    for w in workers:
        w.start()
    time.sleep(seconds)
    for w in workers:
        w.stop()
    for w in workers:
        w.join(5)
    recordings.finish_segments()
    recordings.close()
    segments = sum(r.stats.segments for r in recordings.recorders.values())
    print(json.dumps({"segments": segments}))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--warmup", type=float, default=10, help="seconds before the measured window")
    parser.add_argument("--child", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        child(args.child, args.seconds, args.out)
        return 0

    from harness.camsim import CameraSimulator
    from harness.clips import default_cache, ensure_clips

    cache = default_cache() / f"bench-{args.width}x{args.height}-{args.fps}"
    clip = ensure_clips(cache, kinds=("walkers",), width=args.width, height=args.height, fps=args.fps, seconds=20)
    work = Path(tempfile.mkdtemp(prefix="nvr-bench-rec-"))
    mounts = {f"cam{i}": clip["walkers"] for i in range(args.cameras)}
    with CameraSimulator(mounts) as sim:
        urls = list(sim.urls.values())
        ours = subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--seconds",
                str(args.seconds + args.warmup + 2),
                "--out",
                str(work / "ours"),
                "--child",
                *urls,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        ffmpegs = []
        for i, url in enumerate(urls):
            target = work / "ffmpeg" / f"cam{i}"
            target.mkdir(parents=True)
            ffmpegs.append(
                subprocess.Popen(
                    [
                        "ffmpeg",
                        "-nostdin",
                        "-loglevel",
                        "error",
                        "-rtsp_transport",
                        "tcp",
                        "-i",
                        url,
                        "-c",
                        "copy",
                        "-f",
                        "segment",
                        "-segment_time",
                        "10",
                        "-reset_timestamps",
                        "1",
                        str(target / "%05d.mp4"),
                    ],
                )
            )
        time.sleep(args.warmup)
        ours_start = cpu_seconds(ours.pid)
        ffmpeg_start = sum(cpu_seconds(p.pid) for p in ffmpegs)
        time.sleep(args.seconds)
        ours_cpu = cpu_seconds(ours.pid) - ours_start
        ffmpeg_cpu = sum(cpu_seconds(p.pid) for p in ffmpegs) - ffmpeg_start
        for proc in ffmpegs:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
        out, _ = ours.communicate(timeout=120)
    ours_result = json.loads(out.strip().splitlines()[-1])
    hours = args.cameras * args.seconds / 3600
    ours_rate = ours_cpu / hours
    ffmpeg_rate = ffmpeg_cpu / hours
    print(f"streams: {args.cameras} x {args.width}x{args.height}@{args.fps} H.264 over RTSP/TCP, {args.seconds:.0f} s")
    print(f"nvr-edge recorder: {ours_rate:8.1f} CPU-s per camera-hour ({ours_result['segments']} segments)")
    print(f"ffmpeg -c copy -f segment: {ffmpeg_rate:8.1f} CPU-s per camera-hour")
    print(f"ratio nvr-edge / ffmpeg: {ours_rate / ffmpeg_rate:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
