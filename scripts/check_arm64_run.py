"""The run half of scripts/check-arm64.sh: nvr-edge inside the arm64 root (through qemu)
against a Mosquitto and the camera simulator started here, on the host.

The chroot shares the host's network, so the daemon inside reaches both on 127.0.0.1.
Steps, each timed and printed: `nvr-edge --version`; `check-config` on a valid config;
`probe` of the two cameras; a run of --seconds with events received on the broker;
`nvr-edge health` from inside; a clean stop (exit 0). Exit 0 when every step passed.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.broker import Mosquitto  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import ensure_clips  # noqa: E402
from harness.mqtt_capture import MqttCapture  # noqa: E402

BOX = "pi-check"
CONFIG_IN_ROOT = "/etc/nvr-edge/edge.yaml"
DATA_IN_ROOT = "/var/lib/nvr-edge-check"
NVR_EDGE = "/opt/nvr-edge/venv/bin/nvr-edge"


def in_root(root: Path, *argv: str) -> list[str]:
    env = ["/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "PYTHONUNBUFFERED=1"]
    return ["chroot", str(root), *env, *argv]


def step(name: str, started: float, ok: bool, detail: str = "") -> bool:
    print(f"check-arm64: {'PASS' if ok else 'FAIL'} {name} ({time.monotonic() - started:.1f} s){detail}", flush=True)
    return ok


def run_step(root: Path, name: str, argv: list[str], expect: int = 0, timeout: float = 600) -> tuple[bool, str]:
    started = time.monotonic()
    result = subprocess.run(in_root(root, *argv), capture_output=True, text=True, timeout=timeout)
    output = (result.stdout + result.stderr).strip()
    ok = result.returncode == expect
    step(name, started, ok, f", exit {result.returncode}")
    print("    " + output.replace("\n", "\n    "), flush=True)
    return ok, output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    root: Path = args.root
    results: list[bool] = []
    clips = ensure_clips()
    ok, _ = run_step(root, "nvr-edge --version", [NVR_EDGE, "--version"])
    results.append(ok)
    with Mosquitto() as broker, CameraSimulator({"cam-1": clips["walkers"], "cam-2": clips["walkers"]}) as sim:
        config = {
            "box": {"id": BOX, "data_dir": DATA_IN_ROOT},
            "mqtt": {"host": "127.0.0.1", "port": broker.port, "stats_interval": 10},
            "cameras": {name: {"url": url} for name, url in sim.urls.items()},
        }
        path = root / CONFIG_IN_ROOT.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        results.append(run_step(root, "check-config", [NVR_EDGE, "check-config", "--config", CONFIG_IN_ROOT])[0])
        results.append(run_step(root, "probe", [NVR_EDGE, "probe", "--config", CONFIG_IN_ROOT])[0])
        log_path = root.parent / "daemon.log"
        health_ok, code = False, None
        with MqttCapture(broker.host, broker.port, (f"nvr/{BOX}/#",)) as capture, log_path.open("w") as log_file:
            started = time.monotonic()
            daemon = subprocess.Popen(
                in_root(root, NVR_EDGE, "run", "--config", CONFIG_IN_ROOT), stdout=log_file, stderr=subprocess.STDOUT
            )
            try:
                capture.wait_for(lambda m: m.topic == f"nvr/{BOX}/status" and m.text == "online", timeout=180)
                online_s = time.monotonic() - started
                print(f"check-arm64: daemon online after {online_s:.1f} s (imports under emulation)", flush=True)
                time.sleep(args.seconds)
                health_ok, _ = run_step(
                    root, "nvr-edge health (from inside)", [NVR_EDGE, "health", "--config", CONFIG_IN_ROOT]
                )
            finally:
                daemon.send_signal(signal.SIGTERM)
                try:
                    code = daemon.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    daemon.kill()
                    code = daemon.wait()
            time.sleep(1)
            messages = capture.snapshot()
        events = [json.loads(m.payload) for m in messages if m.topic == f"nvr/{BOX}/events"]
        stats = [json.loads(m.payload) for m in messages if m.topic == f"nvr/{BOX}/stats"]
        starts = [e for e in events if e["type"] == "start"]
        ends = [e for e in events if e["type"] == "end"]
        fps = {
            cam: entry.get("fps_in")
            for cam, entry in (stats[-1]["cameras"].items() if stats else {}.items())
            if isinstance(entry, dict)
        }
        detail = (
            f": {len(starts)} starts, {len(ends)} ends from {sorted({e['camera'] for e in starts})}, "
            f"{len(stats)} stats (last fps_in {fps}), daemon exit {code}"
        )
        run_ok = bool(starts) and len(starts) == len(ends) and code == 0
        results.append(step(f"run for {args.seconds:g} s, events on the broker", started, run_ok, detail))
        results.append(health_ok)
        log = log_path.read_text(errors="replace")
        tracebacks = log.count("Traceback")
        errors = [line for line in log.splitlines() if '"level": "error"' in line]
        results.append(step("daemon log", started, tracebacks == 0, f": {tracebacks} tracebacks, {len(errors)} errors"))
        if not run_ok or tracebacks:
            print("    " + log[-4000:].replace("\n", "\n    "), flush=True)
        print(f"check-arm64: the daemon's log is in {log_path}", flush=True)
    passed = sum(results)
    print(f"check-arm64: {passed} of {len(results)} checks passed", flush=True)
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
