"""Quiet mode A/B on the detect path: N simulated cameras decoded and analysed as the camera
worker does (edge.source.IdleDecoder, the motion detector, the event tracker), half of
them with quiet mode (edge.quiet) and half without, side by side in one process over the
same seconds, so the machine's other load falls on both halves alike.

Each worker thread counts its own CPU (thread time) per packet, split by where the packet
is in the 60 s scene (scripts/make_clips.py `quietbusy`, as in bench_cameras.py): still
(15 s into the still half to its end) and busy (3 s after the walkers start to the end).
Recording, MQTT and the rest of the daemon are left out: they do not change with quiet mode.

  .venv/bin/python scripts/bench_quiet.py --cameras 24 --seconds 150 --bitrate 512,2048 --grain 6
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

import av
import av.error

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_cameras import BUSY_SETTLE_S, LOOP_S, bench_clips  # noqa: E402
from bench_procs import load_average  # noqa: E402

from edge.config import EventConfig, MotionConfig  # noqa: E402
from edge.events import EventTracker  # noqa: E402
from edge.idle import IdleController  # noqa: E402
from edge.motion import MotionDetector  # noqa: E402
from edge.quiet import QuietPolicy  # noqa: E402
from edge.schedule import DetectSchedule  # noqa: E402
from edge.source import IdleDecoder, luma_view, select_streams  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import default_cache  # noqa: E402

STILL_FROM_S = 15.0  # as bench_cameras.py's --idle-start


def phase(seconds: float) -> str | None:
    """'still', 'busy' or None (the settling stretches left out) for a time in the scene."""
    t = seconds % LOOP_S
    if STILL_FROM_S <= t < LOOP_S / 2:
        return "still"
    if LOOP_S / 2 + BUSY_SETTLE_S <= t:
        return "busy"
    return None


class Worker(threading.Thread):
    """One camera: decode, analyse every due frame, track events; CPU per phase."""

    def __init__(self, url: str, quiet: bool, stop: threading.Event, warmup_until: float) -> None:
        super().__init__(daemon=True)
        self.url, self.quiet, self.stop, self.warmup_until = url, quiet, stop, warmup_until
        self.cpu = {"still": 0.0, "busy": 0.0}
        self.packets = {"still": 0, "busy": 0}
        self.wakes = 0
        self.frame0: float | None = None  # wall time the simulator sent the clip's frame 0 (set once known)

    def run(self) -> None:
        detector = MotionDetector(MotionConfig())
        tracker = EventTracker("bench", "cam", EventConfig())
        schedule = DetectSchedule(5.0)
        with av.open(self.url, options={"rtsp_transport": "tcp"}, timeout=(10, 2)) as container:
            video, _ = select_streams(container)
            now = time.monotonic()
            policy = QuietPolicy(6.0 if self.quiet else 0, now=now)
            decoder = IdleDecoder(video, IdleController(0, now), quiet=policy)
            while not self.stop.is_set():
                try:
                    for packet in container.demux(video):
                        if self.stop.is_set():
                            break
                        if not packet.size:
                            continue
                        started = time.thread_time()
                        arrival = time.monotonic()
                        for frame, at in decoder.timed(decoder.feed(packet, arrival), arrival):
                            if not schedule.take(at):
                                continue
                            result = detector.process(luma_view(frame), at)
                            decoder.analysed(at, result.motion, frame)
                            tracker.update(at, result)
                            policy.event(tracker.active)
                        used = time.thread_time() - started
                        wall = time.time()
                        if self.frame0 is None or wall < self.warmup_until:
                            continue
                        where = phase(wall - self.frame0)
                        if where is not None:
                            self.cpu[where] += used
                            self.packets[where] += 1
                except av.error.ExitError:
                    continue
            self.wakes = policy.wakes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=24, help="half with quiet mode, half without")
    parser.add_argument("--seconds", type=float, default=150, help="measured, after the warm-up")
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--bitrate", type=lambda v: tuple(int(x) for x in v.split(",")), default=(512, 2048))
    parser.add_argument("--grain", type=int, default=6)
    parser.add_argument("--odd", action="store_true", help="quiet mode on the odd cameras instead of the even ones")
    args = parser.parse_args()
    detect_clip, _, _ = bench_clips(args.bitrate, args.grain)
    names = [f"cam{i}" for i in range(args.cameras)]
    print(f"{args.cameras} x {detect_clip.parent.name}; load average before {load_average():.2f}", flush=True)
    stop = threading.Event()
    with CameraSimulator({n: detect_clip for n in names}, cache_dir=default_cache().parent / "camsim") as sim:
        until = time.time() + args.warmup
        workers = [
            Worker(sim.urls[n], quiet=i % 2 == int(args.odd), stop=stop, warmup_until=until)
            for i, n in enumerate(names)
        ]
        for worker in workers:
            worker.start()
        while any(w.frame0 is None for w in workers) and time.time() < until + 30:
            for name, worker in zip(names, workers, strict=True):
                if worker.frame0 is None:
                    try:
                        worker.frame0 = sim.loop_start(name)[0]
                    except RuntimeError:
                        pass
            time.sleep(0.5)
        time.sleep(max(0.0, until + args.seconds - time.time()))
        stop.set()
        for worker in workers:
            worker.join(10)
    print("CPU per packet (ms, thread time, mean over cameras):   still    busy")
    figures = {}
    for label, quiet in (("quiet mode off", False), ("quiet mode on", True)):
        group = [w for w in workers if w.quiet is quiet]
        per = {
            where: statistics.fmean(1000 * w.cpu[where] / w.packets[where] for w in group if w.packets[where])
            for where in ("still", "busy")
        }
        figures[quiet] = per
        wakes = sum(w.wakes for w in group)
        print(f"  {label:<48}{per['still']:7.3f} {per['busy']:7.3f}   wakes {wakes}")
    for where in ("still", "busy"):
        print(f"  on / off, {where}: {figures[True][where] / figures[False][where]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
