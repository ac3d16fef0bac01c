"""The demo: simulated cameras, a local broker and the daemon, events on the terminal.

Starts Mosquitto on a free port, the GStreamer RTSP camera simulator with 4 cameras
(generated scenes of people crossing, or the labelled real clips with --real-clips),
writes a config to demo-data/edge.yaml and runs `nvr-edge run` on it, then prints
every event, motion change and stats summary as it arrives. Ctrl-C stops everything.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.broker import Mosquitto  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import ensure_clips, shared_clips_dir  # noqa: E402
from harness.daemon import DaemonProcess, write_config  # noqa: E402
from harness.mqtt_capture import MqttCapture, Received  # noqa: E402


def _clip_mounts(count: int, real: bool) -> dict[str, Path]:
    if real:
        folder = shared_clips_dir()
        if folder is None:
            raise SystemExit("--real-clips: ../shared/clips is not here")
        clips = sorted(folder.glob("*.mp4"))
    else:
        generated = ensure_clips()
        clips = [generated["walkers"], generated["walkers"], generated["static"], generated["walkers"]]
    return {f"cam-{i + 1}": clips[i % len(clips)] for i in range(count)}


def _describe(msg: Received) -> str | None:
    parts = msg.topic.split("/")
    tail = "/".join(parts[2:])
    stamp = time.strftime("%H:%M:%S")
    if tail == "events":
        e = json.loads(msg.payload)
        region = ",".join(f"{v:.2f}" for v in e["region"]) if e.get("region") else "-"
        extra = f" reason={e['reason']}" if e.get("reason") else ""
        return (
            f"{stamp}  EVENT  {e['camera']:<8} {e['type']:<6} id={e['id']} "
            f"peak={e['peak_score']:.3f} region=[{region}] thumbnail={e['thumbnail']}{extra}"
        )
    if tail.endswith("/thumbnail"):
        return f"{stamp}  THUMB  {parts[3]} {len(msg.payload)} bytes JPEG"
    if tail.endswith("/motion"):
        return f"{stamp}  MOTION {parts[3]:<8} {msg.text}"
    if tail == "status":
        return f"{stamp}  STATUS {msg.text}"
    if tail == "stats":
        s = json.loads(msg.payload)
        cams = " ".join(f"{c}:{v['state'][:6]}@{v['fps_detect']:.1f}fps" for c, v in s["cameras"].items())
        return f"{stamp}  STATS  cpu={s['process']['cpu_percent']}% rss={s['process']['rss_bytes'] // 2**20}MB {cams}"
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=0, help="stop after this long (0 = until Ctrl-C)")
    parser.add_argument("--real-clips", action="store_true", help="serve ../shared/clips instead of generated scenes")
    args = parser.parse_args()

    data = REPO / "demo-data"
    data.mkdir(exist_ok=True)
    mounts = _clip_mounts(args.cameras, args.real_clips)
    print(f"demo: starting broker, {len(mounts)} simulated cameras and the daemon (data in {data})", flush=True)
    with Mosquitto() as broker, CameraSimulator(mounts) as sim:
        config = write_config(
            data / "edge.yaml",
            box_id="demo-box",
            data_dir=data / "var",
            mqtt_port=broker.port,
            cameras={name: {"url": url} for name, url in sim.urls.items()},
            stats_interval=10,
        )
        print(f"demo: broker 127.0.0.1:{broker.port}; config {config}; daemon log {data / 'edge.log'}", flush=True)
        print(f"demo: watch it yourself: mosquitto_sub -p {broker.port} -t 'nvr/#' -v", flush=True)
        seen = 0
        with (
            MqttCapture(broker.host, broker.port, ("nvr/#",)) as capture,
            DaemonProcess(config, data / "edge.log") as daemon,
        ):
            deadline = time.monotonic() + args.seconds if args.seconds else float("inf")
            try:
                while time.monotonic() < deadline and daemon.alive:
                    messages = capture.snapshot()
                    for msg in messages[seen:]:
                        line = _describe(msg)
                        if line:
                            print(line, flush=True)
                    seen = len(messages)
                    time.sleep(0.2)
            except KeyboardInterrupt:
                pass
            code = daemon.stop() if daemon.alive else daemon.proc.returncode
            time.sleep(0.3)
            for msg in capture.snapshot()[seen:]:
                line = _describe(msg)
                if line:
                    print(line, flush=True)
            print(f"demo: daemon exited with {code}", flush=True)
            return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
