"""N cameras on one box: nvr-edge against the ffmpeg job floor and Debian's motion, same streams, same run.

Each simulated camera has a main stream (1920x1080 at 15 fps, recorded by copy) and a
detect sub-stream (640x360 at 5 fps, decoded). Both loop a generated 60 s scene
(scripts/make_clips.py `quietbusy`): nobody for 30 s, then a steady stream of
walkers for 30 s. So every minute each camera goes still (the daemon's idle mode may
engage) and then busy again at a known frame, and the simulator tells when each
clip's frame 0 was sent (`clock`), so the latency from the motion in the stream to the
event on the broker is measured from the frame that starts it, not from the
daemon's own timestamps.

The measured windows are the same wall-clock intervals for every process:
- idle: from `--idle-start` s after the scene went still to the end of the still half;
- busy: from 3 s after the walkers start to the end of the loop;
over `--loops` loops after a warm-up. CPU is user+sys from /proc over those windows, as
a percentage of one core: the daemon (and its camera/record threads), the job floor
(what FFmpeg alone spends on the daemon's job: the decode floor, `ffmpeg -rtsp_transport
tcp -i DETECT_URL -f null -` per camera, plus the record floor, `ffmpeg -i MAIN_URL -c
copy -f segment` per camera) and `motion` (one camera section per camera: netcam_url
the detect stream, netcam_high_url the main stream, movie passthrough on), all
running side by side. "Other" CPU is everything
else the machine did meanwhile (other people's work): a contaminated run says so.

  .venv/bin/python scripts/bench_cameras.py --cameras 24 --loops 2
  .venv/bin/python scripts/bench_cameras.py --scaling 1,4,8,16,24,32 --loops 2 --json docs/bench-scaling.json
  .venv/bin/python scripts/bench_report.py docs/bench-scaling.json --png docs/scaling.png

Needs mosquitto, ffmpeg and motion (scripts/setup_bench.sh installs them).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "scripts"))

from bench_procs import Sample, Watch, load_average, mosaic_cpu_seconds, rss_bytes, usage  # noqa: E402

from harness.broker import Mosquitto  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import default_cache, ensure_clips  # noqa: E402
from harness.daemon import DaemonProcess, write_config  # noqa: E402
from harness.mqtt_capture import MqttCapture, Received  # noqa: E402

BOX = "bench"
P = f"nvr/{BOX}"
LOOP_S = 60.0  # the quietbusy clip: still for the first half, busy for the second
BUSY_FROM = 0.5
BUSY_SETTLE_S = 3.0  # busy window starts this long after the walkers do
WINDOW_MARGIN_S = 0.5
MAX_LATENCY_S = 10.0  # a start later than this after an onset is counted as missed
DETECT = (640, 360, 5)
MAIN = (1920, 1080, 15)
# Thread names the daemon's workers carry (edge.camera): CPU per role. The mosaic has no
# thread of its own (tiles are grabbed by the camera workers, the grid is composed in a
# pool thread): its CPU comes from the daemon's own count in stats.mosaic (see `shares`).
THREAD_GROUPS = {
    "daemon:detect": lambda name: name.startswith("camera-"),
    "daemon:record": lambda name: name.startswith("record-"),
}


@dataclass
class Result:
    cameras: int
    loops: int
    idle_after: float | None
    busy_s: float = 0.0
    idle_s: float = 0.0
    cpu_busy: dict[str, float] = field(default_factory=dict)  # % of one core
    cpu_idle: dict[str, float] = field(default_factory=dict)
    rss: dict[str, int] = field(default_factory=dict)  # peak over the samples
    fps_detect_busy: dict[str, float] = field(default_factory=dict)
    fps_detect_idle: dict[str, float] = field(default_factory=dict)
    fps_in: dict[str, float] = field(default_factory=dict)
    frames_skipped: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    onsets: int = 0
    missed: int = 0
    recording_bytes_per_s: float = 0.0
    mosaic_cpu: float = float("nan")  # % of one core: tiles + composing + JPEG, from stats.mosaic
    load_before: float = 0.0
    with_motion: bool = True
    bitrate: tuple[int, int] | None = None  # kbit/s asked of the re-encoded streams; None = the generated clips
    grain: int = 0  # strength of the sensor noise added before re-encoding (ffmpeg `noise` alls)
    stream_kbps: tuple[float, float] = (0.0, 0.0)  # what the detect and main clips really average
    notes: list[str] = field(default_factory=list)


def bench_clips(bitrates: tuple[int, int] | None = None, grain: int = 0) -> tuple[Path, Path, int]:
    """(detect clip, main clip, frame index in the detect clip where motion starts), cached.

    `bitrates` (kbit/s of the detect and the main stream): the generated clips are
    re-encoded at a camera's constant bitrate (`--bitrate`), same frames and labels,
    with `grain` (`--grain`) temporal sensor noise first: a clean generated scene leaves
    the encoder nothing to spend the bitrate on, a real sensor does not."""
    cache = default_cache() / "bench-cameras"
    clips = []
    for k, (width, height, fps) in enumerate((DETECT, MAIN)):
        made = ensure_clips(
            cache / f"{width}x{height}-{fps}", kinds=("quietbusy",), width=width, height=height, fps=fps, seconds=60
        )["quietbusy"]
        if bitrates is not None:
            folder = cache / (f"{width}x{height}-{fps}-{bitrates[k]}k" + (f"-grain{grain}" if grain else ""))
            made = at_bitrate(made, folder, bitrates[k], 2 * fps, grain)
        clips.append(made)
    with clips[0].with_suffix(".labels.csv").open() as handle:
        labels = [int(row["label"]) for row in csv.DictReader(handle)]
    onset = next(i for i in range(1, len(labels)) if labels[i] == 1 and labels[i - 1] == 0)
    return clips[0], clips[1], onset


def at_bitrate(clip: Path, folder: Path, kbps: int, gop: int, grain: int = 0) -> Path:
    """`clip` re-encoded as a camera set to a constant `kbps` would send it (x264 with the
    rate capped at the average, a keyframe every `gop` frames, no B-frames), once;
    `grain` > 0 adds that much temporal noise to every pixel first (ffmpeg `noise`)."""
    out = folder / clip.name
    if out.exists():
        return out
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{clip.stem}.tmp.mp4"
    rate = f"{kbps}k"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(clip)]
        + (["-vf", f"noise=alls={grain}:allf=t"] if grain else [])
        + ["-c:v", "libx264", "-preset", "veryfast"]
        + ["-profile:v", "main", "-bf", "0", "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
        + ["-b:v", rate, "-minrate", rate, "-maxrate", rate, "-bufsize", f"{kbps}k", "-an", str(tmp)],
        check=True,
    )
    shutil.copy(clip.with_suffix(".labels.csv"), out.with_suffix(".labels.csv"))
    tmp.rename(out)
    return out


def recording_bytes(data_dir: Path) -> int:
    root = data_dir / "recordings"
    return sum(p.stat().st_size for p in root.rglob("*.mp4") if p.is_file()) if root.exists() else 0


def motion_config(folder: Path, cameras: list[tuple[str, str, str]]) -> Path:
    """Debian motion 4.5 set up like the daemon: detect on the sub-stream, record the main
    stream by passthrough (no re-encoding), no pictures, no web control, no streaming."""
    folder.mkdir(parents=True, exist_ok=True)
    main = [
        "daemon off",
        "setup_mode off",
        f"log_file {folder / 'motion.log'}",
        "log_level 4",
        f"target_dir {folder / 'movies'}",
        "webcontrol_port 0",
        "stream_port 0",
        "picture_output off",
        "movie_output on",
        "movie_passthrough on",
        "movie_max_time 10",
        "threshold 1500",
        "despeckle_filter EedDl",
        "minimum_motion_frames 1",
        "event_gap 5",
        "pre_capture 3",
        "post_capture 0",
    ]
    for k, (name, detect_url, main_url) in enumerate(cameras):
        conf = folder / f"{name}.conf"
        conf.write_text(
            "\n".join(
                [
                    f"camera_id {k + 1}",
                    f"camera_name {name}",
                    f"netcam_url {detect_url}",
                    "netcam_params rtsp_transport=tcp",
                    f"netcam_high_url {main_url}",
                    "netcam_high_params rtsp_transport=tcp",
                    f"width {DETECT[0]}",
                    f"height {DETECT[1]}",
                    f"framerate {DETECT[2]}",
                ]
            )
            + "\n"
        )
        main.append(f"camera {conf}")
    path = folder / "motion.conf"
    path.write_text("\n".join(main) + "\n")
    return path


def system_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (everything but idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / 100.0


def wait_until(t: float) -> None:
    while (left := t - time.time()) > 0:
        time.sleep(min(left, 0.5))


class Bench:
    """One run for N cameras: start everything, measure the windows, stop everything."""

    def __init__(self, args: argparse.Namespace, cameras: int) -> None:
        self.args = args
        self.n = cameras
        self.work = Path(tempfile.mkdtemp(prefix=f"nvr-bench-cams{cameras}-"))
        self.procs: list[subprocess.Popen[bytes]] = []

    def run(self) -> Result:
        args = self.args
        detect_clip, main_clip, onset = bench_clips(args.bitrate, args.grain)
        kbps = (8 * detect_clip.stat().st_size / LOOP_S / 1000, 8 * main_clip.stat().st_size / LOOP_S / 1000)
        res = Result(
            self.n,
            args.loops,
            args.idle_after,
            load_before=load_average(),
            with_motion=not args.no_motion,
            bitrate=args.bitrate,
            grain=args.grain,
            stream_kbps=kbps,
        )
        names = [f"cam{i}" for i in range(self.n)]
        mounts = {**{f"{c}-sub": detect_clip for c in names}, **{f"{c}-main": main_clip for c in names}}
        (self.work / "broker").mkdir(exist_ok=True)
        broker = Mosquitto(workdir=self.work / "broker")
        broker.start()
        sim = CameraSimulator(mounts, cache_dir=default_cache().parent / "camsim").start(timeout=120)
        daemon: DaemonProcess | None = None
        capture = MqttCapture("127.0.0.1", broker.port, (f"{P}/events", f"{P}/stats")).start()
        try:
            extra: dict[str, Any] = {"recording": {"segment_seconds": 10, "max_bytes": "100GB"}}
            if args.idle_after is not None:
                extra["motion"] = {"idle_after": args.idle_after}
            cams = {c: {"url": sim.urls[f"{c}-main"], "detect_url": sim.urls[f"{c}-sub"]} for c in names}
            config = write_config(
                self.work / "edge.yaml",
                box_id=BOX,
                data_dir=self.work / "data",
                mqtt_port=broker.port,
                cameras=cams,
                stats_interval=args.stats_interval,
                extra=extra,
            )
            daemon = DaemonProcess(config).start()
            clocks = self._clocks(sim, names, daemon)
            floor = [self._ffmpeg(sim.urls[f"{c}-sub"]) for c in names] if not args.no_floor else []
            rec_floor = [self._ffmpeg_copy(sim.urls[f"{c}-main"], c) for c in names] if not args.no_floor else []
            motion = self._motion(sim, names) if not args.no_motion else None
            watch = Watch(
                groups={
                    "daemon": [daemon.proc.pid],  # type: ignore[union-attr]
                    "floor": [p.pid for p in floor],
                    "recfloor": [p.pid for p in rec_floor],
                    **({"motion": [motion.pid]} if motion else {}),
                    "camsim": [sim._proc.pid] if sim._proc else [],  # noqa: SLF001 - measuring, not driving
                },
                thread_pid=daemon.proc.pid,  # type: ignore[union-attr]
                thread_groups=THREAD_GROUPS,
            )
            self._measure(res, watch, clocks, capture, onset, names, daemon)
        finally:
            for proc in self.procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT if proc.args[0] == "ffmpeg" else signal.SIGTERM)
            for proc in self.procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
            if daemon is not None and daemon.alive:
                try:
                    daemon.stop(20)
                except subprocess.TimeoutExpired:
                    res.notes.append("daemon did not stop within 20 s")
            capture.stop()
            sim.stop()
            broker.stop()
            if not args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        return res

    def _clocks(self, sim: CameraSimulator, names: list[str], daemon: DaemonProcess) -> dict[str, float]:
        """Wall time of frame 0 of each camera's detect clip, once the daemon plays every mount."""
        deadline = time.time() + 60 + 2 * self.n
        clocks: dict[str, float] = {}
        while time.time() < deadline and len(clocks) < self.n:
            if not daemon.alive:
                raise RuntimeError(f"daemon exited: {daemon.log_text()[-2000:]}")
            for c in names:
                if c in clocks:
                    continue
                try:
                    sim.loop_start(f"{c}-main")
                    clocks[c] = sim.loop_start(f"{c}-sub")[0]
                except RuntimeError:
                    pass
            time.sleep(0.5)
        if len(clocks) < self.n:
            raise RuntimeError(f"only {len(clocks)}/{self.n} cameras streaming after start-up")
        return clocks

    def _ffmpeg(self, url: str) -> subprocess.Popen[bytes]:
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-f", "null", "-"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def _ffmpeg_copy(self, url: str, name: str) -> subprocess.Popen[bytes]:
        """The record floor: FFmpeg copying a main stream into 10 s MP4 segments, as the daemon records it."""
        folder = self.work / "recfloor" / name
        folder.mkdir(parents=True, exist_ok=True)
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-rtsp_transport", "tcp", "-i", url, "-c", "copy"]
        cmd += ["-f", "segment", "-segment_time", "10", "-reset_timestamps", "1", str(folder / "%05d.mp4")]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def _motion(self, sim: CameraSimulator, names: list[str]) -> subprocess.Popen[bytes]:
        conf = motion_config(self.work / "motion", [(c, sim.urls[f"{c}-sub"], sim.urls[f"{c}-main"]) for c in names])
        proc = subprocess.Popen(
            ["motion", "-n", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=self.work / "motion",
        )
        self.procs.append(proc)
        return proc

    def _measure(
        self,
        res: Result,
        watch: Watch,
        clocks: dict[str, float],
        capture: MqttCapture,
        onset: int,
        names: list[str],
        daemon: DaemonProcess,
    ) -> None:
        args = self.args
        ref = clocks[names[0]]
        # Each camera's phase against the first one's, in (-LOOP/2, LOOP/2].
        offsets = {c: (t - ref + LOOP_S / 2) % LOOP_S - LOOP_S / 2 for c, t in clocks.items()}
        early, late = min(offsets.values()), max(offsets.values())
        first = int((time.time() + args.warmup - ref) // LOOP_S) + 1
        idle_win: list[tuple[Sample, Sample]] = []
        busy_win: list[tuple[Sample, Sample]] = []
        other: list[float] = []
        windows: list[tuple[str, float, float]] = []
        for j in range(first, first + args.loops):
            base = ref + j * LOOP_S
            windows.append(("idle", base + late + args.idle_start, base + LOOP_S * BUSY_FROM + early - WINDOW_MARGIN_S))
            windows.append(
                ("busy", base + LOOP_S * BUSY_FROM + late + BUSY_SETTLE_S, base + LOOP_S + early - WINDOW_MARGIN_S)
            )
        if windows[0][2] - windows[0][1] < 3:
            raise SystemExit(f"--idle-start {args.idle_start} leaves no idle window in a {LOOP_S / 2:.0f} s still half")
        rec_bytes = 0
        rec_seconds = 0.0
        data_dir = self.work / "data"
        for kind, start, end in windows:
            if not daemon.alive:
                raise RuntimeError(f"daemon exited: {daemon.log_text()[-2000:]}")
            wait_until(start)
            s0, sys0, b0 = watch.sample(time.time()), system_busy_seconds(), recording_bytes(data_dir)
            wait_until(end)
            s1, sys1, b1 = watch.sample(time.time()), system_busy_seconds(), recording_bytes(data_dir)
            ours = sum(s1.cpu[g] - s0.cpu[g] for g in watch.groups)
            other.append(100 * ((sys1 - sys0) - ours) / (s1.at - s0.at))
            (idle_win if kind == "idle" else busy_win).append((s0, s1))
            rec_bytes += b1 - b0
            rec_seconds += s1.at - s0.at
            for group, value in s1.rss.items():
                res.rss[group] = max(res.rss.get(group, 0), value)
        res.cpu_idle, res.idle_s = usage(idle_win)
        res.cpu_busy, res.busy_s = usage(busy_win)
        res.cpu_idle["other"] = statistics.fmean(other[0::2])
        res.cpu_busy["other"] = statistics.fmean(other[1::2])
        res.recording_bytes_per_s = rec_bytes / rec_seconds if rec_seconds else 0.0
        res.rss["daemon_end"] = rss_bytes(watch.groups["daemon"][0])
        time.sleep(args.stats_interval + 1)  # the stats message covering the last window
        self._stats(res, capture.on_topic(f"{P}/stats"), windows)
        self._latency(res, capture.on_topic(f"{P}/events"), clocks, onset, windows[0][1], windows[-1][2])

    def _stats(self, res: Result, stats: list[Received], windows: list[tuple[str, float, float]]) -> None:
        """fps_detect per camera averaged over the stats intervals that lie inside each kind of window."""
        docs = [json.loads(m.payload) for m in stats]
        for kind, target in (("busy", res.fps_detect_busy), ("idle", res.fps_detect_idle)):
            spans = [(a, b) for k, a, b in windows if k == kind]
            per_cam: dict[str, list[float]] = {}
            for prev, doc in zip(docs, docs[1:], strict=False):
                if any(a <= prev["time"] and doc["time"] <= b for a, b in spans):
                    for cam, entry in doc["cameras"].items():
                        per_cam.setdefault(cam, []).append(entry["fps_detect"])
            target.update({cam: statistics.fmean(v) for cam, v in per_cam.items()})
        inside = [d for d in docs if windows[0][1] <= d["time"] <= windows[-1][2] + self.args.stats_interval + 1]
        if inside:
            first, last = inside[0], inside[-1]
            if last["time"] > first["time"] and "mosaic" in last:
                used = mosaic_cpu_seconds(last) - mosaic_cpu_seconds(first)
                res.mosaic_cpu = 100 * used / (last["time"] - first["time"])
            for cam, entry in last["cameras"].items():
                res.frames_skipped[cam] = entry["frames_skipped"] - first["cameras"][cam]["frames_skipped"]
                res.fps_in[cam] = entry["fps_in"]

    def _latency(
        self, res: Result, events: list[Received], clocks: dict[str, float], onset: int, start: float, end: float
    ) -> None:
        """From the frame where the walkers enter (sent at T + (k x frames + onset) / fps by the
        simulator's clock) to the `start` event's arrival at the subscriber."""
        fps = DETECT[2]
        starts: dict[str, list[float]] = {}
        for msg in events:
            doc = json.loads(msg.payload)
            if doc.get("type") == "start":
                starts.setdefault(doc["camera"], []).append(msg.at)
        for cam, t0 in clocks.items():
            k = int((start - t0) // LOOP_S) - 1
            while (at := t0 + k * LOOP_S + onset / fps) <= end:
                k += 1
                if at < start - LOOP_S / 2:
                    continue
                res.onsets += 1
                found = [t - at for t in starts.get(cam, []) if 0 <= t - at <= MAX_LATENCY_S]
                if found:
                    res.latencies.append(min(found))
                else:
                    res.missed += 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def report(res: Result) -> str:
    """The human-readable summary of one run, with the issue's targets checked."""
    n = res.cameras
    lines = [
        f"== {n} camera(s): main {MAIN[0]}x{MAIN[1]}@{MAIN[2]} recorded by copy, "
        f"detect {DETECT[0]}x{DETECT[1]}@{DETECT[2]} decoded; idle_after "
        f"{'default' if res.idle_after is None else res.idle_after}"
        + f"; streams average {res.stream_kbps[0]:.0f} / {res.stream_kbps[1]:.0f} kbit/s"
        + (f" (re-encoded asking {res.bitrate[0]} / {res.bitrate[1]})" if res.bitrate else "")
        + (f", sensor grain {res.grain}" if res.grain else ""),
        f"measured {res.loops} loop(s): busy {res.busy_s:.1f} s, idle {res.idle_s:.1f} s; "
        f"load average before {res.load_before:.2f}",
        "CPU, % of one core         busy      idle   per camera (busy / idle)",
    ]
    for group in ("recfloor", "floor"):
        if group in res.cpu_busy and "jobfloor" not in res.cpu_busy:
            res.cpu_busy["jobfloor"] = res.cpu_busy.get("floor", 0) + res.cpu_busy.get("recfloor", 0)
            res.cpu_idle["jobfloor"] = res.cpu_idle.get("floor", 0) + res.cpu_idle.get("recfloor", 0)
    labels = {
        "floor": "ffmpeg decode floor",
        "recfloor": "ffmpeg record floor",
        "jobfloor": "job floor (both)",
        "motion": "Debian motion",
        "other": "other (not ours)",
    }
    groups = ("daemon", "daemon:detect", "daemon:record", "floor", "recfloor", "jobfloor", "motion", "camsim", "other")
    for group in groups:
        if group not in res.cpu_busy:
            continue
        b, i = res.cpu_busy[group], res.cpu_idle.get(group, float("nan"))
        per = f"{b / n:6.2f} / {i / n:5.2f}" if group not in ("camsim", "other") else ""
        label = labels.get(group, group)
        lines.append(f"  {label:<24}{b:7.1f}  {i:8.1f}   {per}")
    rest_b = res.cpu_busy["daemon"] - res.cpu_busy.get("daemon:detect", 0) - res.cpu_busy.get("daemon:record", 0)
    lines.append(f"  {'daemon:rest (loop, MQTT)':<24}{rest_b:7.1f}")
    lines.append(shares(res))
    mb = 1024 * 1024
    lines.append(
        f"RSS: daemon peak {res.rss.get('daemon', 0) / mb:.0f} MB ({res.rss.get('daemon', 0) / mb / n:.1f} MB/camera)"
        + (f", motion {res.rss['motion'] / mb:.0f} MB" if res.rss.get("motion") else "")
        + f", ffmpeg floors {(res.rss.get('floor', 0) + res.rss.get('recfloor', 0)) / mb:.0f} MB"
    )
    fb, fi = list(res.fps_detect_busy.values()), list(res.fps_detect_idle.values())
    if fb:
        lines.append(
            f"fps_detect (source {DETECT[2]} fps): busy min {min(fb):.2f} mean {statistics.fmean(fb):.2f}; "
            f"idle mean {statistics.fmean(fi) if fi else float('nan'):.2f}; fps_in mean "
            f"{statistics.fmean(res.fps_in.values()) if res.fps_in else float('nan'):.2f}"
        )
    skipped = sum(res.frames_skipped.values())
    lines.append(
        f"frames skipped in the measured loops: {skipped} (worst camera {max(res.frames_skipped.values(), default=0)})"
    )
    lat = res.latencies
    lines.append(
        f"motion-to-event latency on the broker: p50 {pct(lat, 0.5):.2f} s, p95 {pct(lat, 0.95):.2f} s, "
        f"max {max(lat, default=float('nan')):.2f} s over {len(lat)} onsets; missed {res.missed}/{res.onsets}"
    )
    lines.append(
        f"recording: {res.recording_bytes_per_s / 1e6:.2f} MB/s "
        f"({res.recording_bytes_per_s * 8 / 1e3 / n:.0f} kbit/s per camera)"
    )
    lines += targets(res)
    lines += [f"note: {note}" for note in res.notes]
    return "\n".join(lines)


def shares(res: Result) -> str:
    """Issue #8's mosaic (on by default, every 10 s) as a share of the daemon's CPU, from
    the daemon's own count (stats.mosaic); bench_mosaic.py measures it A/B with the page."""
    if math.isnan(res.mosaic_cpu):  # no mosaic figures in stats
        return "  mosaic: no figures in stats (mosaic.interval 0?)"
    mean_daemon = (res.cpu_busy["daemon"] * res.busy_s + res.cpu_idle["daemon"] * res.idle_s) / (
        res.busy_s + res.idle_s
    )
    share = 100 * res.mosaic_cpu / mean_daemon
    return f"  mosaic (tiles, grid, JPEG) {res.mosaic_cpu:.2f} % of a core = {share:.2f} % of the daemon"


def targets(res: Result) -> list[str]:
    """Issue #19's targets for this run (set for N = 24 on this machine): against Debian
    motion and the job floor (FFmpeg decoding the detect streams and copying the main ones)."""
    out = ["targets (issue #19, set for 24 cameras):"]
    d_b, d_i = res.cpu_busy.get("daemon", 0), res.cpu_idle.get("daemon", 0)
    n = res.cameras

    def line(ok: bool, text: str) -> str:
        return f"  [{'met' if ok else 'MISSED'}] {text}"

    out.append(line(sum(res.frames_skipped.values()) == 0, "no frames skipped at steady state"))
    p95 = pct(res.latencies, 0.95)
    out.append(line(p95 < 1.0 and res.missed == 0, f"event latency p95 {p95:.2f} s < 1 s, none missed"))
    m_b, m_i = res.cpu_busy.get("motion"), res.cpu_idle.get("motion")
    if m_b and m_i:
        out.append(line(d_i <= 0.75 * m_i, f"idle: daemon {d_i:.1f} % <= 0.75 x motion {m_i:.1f} % ({d_i / m_i:.2f}x)"))
        out.append(line(d_b <= 0.75 * m_b, f"busy: daemon {d_b:.1f} % <= 0.75 x motion {m_b:.1f} % ({d_b / m_b:.2f}x)"))
    f_b, r_b = res.cpu_busy.get("floor"), res.cpu_busy.get("recfloor")
    if f_b and r_b:
        job = f_b + r_b
        out.append(
            line(
                d_b <= 1.2 * job,
                f"busy: daemon {d_b:.1f} % <= 1.2 x job floor {job:.1f} % (decode {f_b:.1f} + record "
                f"{r_b:.1f}) ({d_b / job:.2f}x)",
            )
        )
    rss_mb = res.rss.get("daemon", 0) / 1024 / 1024
    budget = 150 + 10 * n
    out.append(line(rss_mb <= budget, f"RSS {rss_mb:.0f} MB <= 150 MB + 10 MB per camera = {budget} MB"))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=24)
    parser.add_argument("--scaling", help="comma-separated camera counts, run one after another, e.g. 1,4,8,16,24,32")
    parser.add_argument(
        "--loops", type=int, default=2, help="60 s scene loops measured (each: one idle, one busy window)"
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=90,
        help="seconds after start-up before the first measured loop; the default covers a still half and the "
        "walkers' onset after it, where each camera earns idle mode (edge.idle.SizeTrust)",
    )
    parser.add_argument(
        "--idle-after", type=float, default=None, help="the daemon's motion.idle_after (default: its own)"
    )
    parser.add_argument("--idle-start", type=float, default=15, help="idle window starts this long into the still half")
    parser.add_argument("--stats-interval", type=float, default=5)
    parser.add_argument(
        "--bitrate",
        type=lambda v: tuple(int(x) for x in v.split(",")),
        help="DETECT,MAIN kbit/s: re-encode the scene at cameras' constant bitrates, e.g. 512,2048",
    )
    parser.add_argument(
        "--grain",
        type=int,
        default=0,
        help="with --bitrate: temporal sensor noise added first (ffmpeg noise strength, e.g. 6), so that the "
        "encoder spends the bitrate as on a real camera",
    )
    parser.add_argument("--no-motion", action="store_true", help="leave Debian's motion out")
    parser.add_argument("--no-floor", action="store_true", help="leave the ffmpeg floor out")
    parser.add_argument("--json", type=Path, help="append each run's figures to this JSON file (a list)")
    parser.add_argument(
        "--quiet-load", type=float, default=0.5, help="before each run, wait for the load average to drop below this"
    )
    parser.add_argument("--quiet-wait", type=float, default=300, help="...for at most this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, recordings)")
    args = parser.parse_args()
    if args.grain < 0:
        parser.error("--grain must be 0 or more")
    if args.grain and not args.bitrate:
        parser.error("--grain needs --bitrate (the noise is added when the clips are re-encoded)")
    counts = [int(x) for x in args.scaling.split(",")] if args.scaling else [args.cameras]
    wanted = ["mosquitto", *([] if args.no_floor else ["ffmpeg"]), *([] if args.no_motion else ["motion"])]
    missing = [tool for tool in wanted if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing:
        print(f"missing {', '.join(missing)}: run scripts/setup_bench.sh", file=sys.stderr)
        return 2
    results = []
    for n in counts:
        deadline = time.time() + args.quiet_wait
        while (load := load_average()) > args.quiet_load and time.time() < deadline:
            time.sleep(5)
        if load > args.quiet_load:
            print(f"warning: load average {load:.2f} before the {n}-camera run: figures may be contaminated")
        res = Bench(args, n).run()
        print(report(res), flush=True)
        results.append(asdict(res))
        if args.json:
            old = json.loads(args.json.read_text()) if args.json.exists() else []
            args.json.write_text(json.dumps([*old, asdict(res)], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
