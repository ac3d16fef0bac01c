"""Receiving and decoding N RTSP streams: PyAV threads (as the daemon does it) against
one ffmpeg process per stream (the decode floor of bench_cameras.py), one after the
other on the same simulated streams.

It separates what the daemon cannot avoid from what it adds: `demux` only receives
packets, `decode` receives and decodes every frame (what the floor does), and the
daemon's own figures in bench_cameras.py add motion analysis and idle mode on top.

  .venv/bin/python scripts/bench_decode.py --cameras 24 --seconds 40
  .venv/bin/python scripts/bench_decode.py --clip main    # the 1080p15 main streams: recording's receive cost
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import av

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_cameras import DETECT, MAIN  # noqa: E402
from bench_procs import cpu_seconds, load_average  # noqa: E402

from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import default_cache, ensure_clips  # noqa: E402


def pyav_worker(url: str, decode: bool, stop: threading.Event) -> None:
    """Open as the daemon does (RTSP over TCP, one slice thread) and read until stopped."""
    with av.open(url, options={"rtsp_transport": "tcp"}, timeout=(10, 2)) as container:
        video = container.streams.video[0]
        video.thread_type = "SLICE"
        for packet in container.demux(video):
            if stop.is_set():
                break
            if decode and packet.size:
                video.codec_context.decode(packet)


def measure(urls: list[str], mode: str, warmup: float, seconds: float) -> float:
    """CPU (% of one core) over `seconds` after `warmup`, for one way of reading the streams."""
    if mode == "ffmpeg":
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i"]
        procs = [
            subprocess.Popen([*cmd, url, "-f", "null", "-"], stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for url in urls
        ]
        try:
            time.sleep(warmup)
            before, start = sum(cpu_seconds(p.pid) for p in procs), time.time()
            time.sleep(seconds)
            used, wall = sum(cpu_seconds(p.pid) for p in procs) - before, time.time() - start
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
        return 100 * used / wall
    stop = threading.Event()
    threads = [threading.Thread(target=pyav_worker, args=(url, mode == "decode", stop), daemon=True) for url in urls]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    before, start = cpu_seconds(os.getpid()), time.time()
    time.sleep(seconds)
    used, wall = cpu_seconds(os.getpid()) - before, time.time() - start
    stop.set()
    for thread in threads:
        thread.join(5)
    return 100 * used / wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=40, help="measured window per mode")
    parser.add_argument("--warmup", type=float, default=10)
    parser.add_argument("--clip", choices=("detect", "main"), default="detect")
    args = parser.parse_args()
    width, height, fps = DETECT if args.clip == "detect" else MAIN
    folder = default_cache() / "bench-cameras" / f"{width}x{height}-{fps}"
    clip = ensure_clips(folder, kinds=("quietbusy",), width=width, height=height, fps=fps, seconds=60)["quietbusy"]
    names = [f"cam{i}" for i in range(args.cameras)]
    print(f"{args.cameras} x {width}x{height}@{fps} ({clip.name}); load average before {load_average():.2f}")
    with CameraSimulator({name: clip for name in names}, cache_dir=default_cache().parent / "camsim") as sim:
        urls = [sim.urls[name] for name in names]
        figures = {mode: measure(urls, mode, args.warmup, args.seconds) for mode in ("ffmpeg", "decode", "demux")}
    print(f"  ffmpeg -f null, one process per stream: {figures['ffmpeg']:5.1f} % of one core")
    print(f"  PyAV threads, receive and decode:       {figures['decode']:5.1f} %")
    print(f"  PyAV threads, receive only:             {figures['demux']:5.1f} %")
    print(f"  PyAV decode / ffmpeg: {figures['decode'] / figures['ffmpeg']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
