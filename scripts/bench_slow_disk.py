"""A slow disk under the real daemon: does the event loop keep turning while fsync crawls?

Every fsync/fdatasync of the daemon is made slow (SLOW_FSYNC_MS, 50 ms by default, an
SD card on a bad day) by an LD_PRELOAD shim compiled with gcc into a temp dir at run
time: device-mapper's `delay` target would be the kernel's way, but this container has
no /dev/mapper. The daemon runs in a child process whose asyncio loop also runs a lag
probe (a task that sleeps PROBE_PERIOD_S and records how late it wakes): the lag is
measured inside the daemon, on the loop that serves MQTT, commands and health.

24 simulated cameras play the walkers clip, all started together, so their events come
in bursts. At the end it prints the loop lag p50/p99/max, whether the MQTT connection
stayed up (no `mqtt_disconnected`, one connect) and whether every event the daemon
raised (its `event` log lines) and every thumbnail announced reached the broker.

  .venv/bin/python scripts/bench_slow_disk.py --cameras 24 --seconds 60
  .venv/bin/python scripts/bench_slow_disk.py --fsync-ms 0     # the same run on a fast disk

Target (issue 16): lag p99 < 20 ms, connection up, nothing lost. Figures in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.broker import Mosquitto  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import ensure_clips  # noqa: E402
from harness.daemon import DaemonProcess, write_config  # noqa: E402
from harness.delivery import produced, received, tally  # noqa: E402
from harness.mqtt_capture import MqttCapture  # noqa: E402

BOX = "slowdisk"
P = f"nvr/{BOX}"
PROBE_PERIOD_S = 0.01
FAST_EVENTS = {"events": {"end_after": 2.0, "update_interval": 2.0}}

SHIM_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* Every fsync/fdatasync/syncfs of this process sleeps SLOW_FSYNC_MS first. */
static long delay_ns = -1;
static unsigned long calls = 0;

static void slow(void) {
    if (delay_ns < 0) {
        const char *ms = getenv("SLOW_FSYNC_MS");
        delay_ns = (ms ? atol(ms) : 50) * 1000000L;
    }
    __atomic_add_fetch(&calls, 1, __ATOMIC_RELAXED);
    struct timespec t = {delay_ns / 1000000000L, delay_ns % 1000000000L};
    while (nanosleep(&t, &t) != 0) {}
}

#define WRAP(name) \
    int name(int fd) { \
        static int (*real)(int); \
        if (!real) real = (int (*)(int))dlsym(RTLD_NEXT, #name); \
        slow(); \
        return real(fd); \
    }
WRAP(fsync)
WRAP(fdatasync)
WRAP(syncfs)

__attribute__((destructor)) static void report(void) {
    const char *path = getenv("SLOW_FSYNC_COUNT");
    if (!path) return;
    FILE *f = fopen(path, "a");
    if (f) { fprintf(f, "%lu\n", calls); fclose(f); }
}
"""


def build_shim(folder: Path) -> Path:
    """Compile the slow-fsync shim into `folder`; the .so to LD_PRELOAD."""
    source, lib = folder / "slowfsync.c", folder / "slowfsync.so"
    source.write_text(SHIM_C)
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(source), "-ldl"], check=True)
    return lib


def slow_env(shim: Path, fsync_ms: float, count_file: Path | None = None) -> dict[str, str]:
    """Environment for a child whose every fsync takes `fsync_ms` (0: the shim only counts)."""
    env = {"LD_PRELOAD": str(shim), "SLOW_FSYNC_MS": str(int(fsync_ms))}
    if count_file is not None:
        env["SLOW_FSYNC_COUNT"] = str(count_file)
    return env


# -- the child: the real daemon, plus a lag probe on its loop ---------------------------------
async def _probe(samples: list[float]) -> None:
    """How late the loop wakes a PROBE_PERIOD_S timer, every time (seconds)."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + PROBE_PERIOD_S
        await asyncio.sleep(PROBE_PERIOD_S)
        samples.append(max(0.0, loop.time() - due))


def _save_lags(samples: list[float], lag_file: Path, done: threading.Event) -> None:
    """Write the samples every second from a thread of its own: a starved loop (or a
    daemon killed because it would not stop) still leaves its figures behind."""
    while True:
        stop = done.wait(1.0)
        tmp = lag_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(list(samples)))
        tmp.replace(lag_file)
        if stop:
            return


def run_daemon(config_path: Path, lag_file: Path) -> int:
    """`nvr-edge run` as edge.cli does it, with the lag probe beside the daemon's tasks."""
    import cv2

    from edge.app import Daemon
    from edge.cli import _raise_fd_limit
    from edge.config import load_config
    from edge.logs import configure_logging

    config = load_config(config_path)
    _raise_fd_limit()
    cv2.setNumThreads(1)
    configure_logging(config.log.level)
    samples: list[float] = []
    done = threading.Event()
    saver = threading.Thread(target=_save_lags, args=(samples, lag_file, done), name="lag-saver", daemon=True)
    saver.start()

    async def main() -> None:
        probe = asyncio.create_task(_probe(samples))
        try:
            await Daemon(config, reload=lambda: load_config(config_path)).run()
        finally:
            probe.cancel()
            done.set()
            saver.join()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
    return 0


class ProbedDaemon(DaemonProcess):
    """The daemon started through run_daemon: the same process, a lag probe on its loop."""

    def __init__(self, config_path: Path, lag_file: Path, env: dict[str, str] | None = None) -> None:
        super().__init__(config_path, env=env)
        self.lag_file = lag_file

    def start(self) -> ProbedDaemon:
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(self.config_path), str(self.lag_file)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO,
            env={**os.environ, **(self.env or {})},
        )
        log.close()
        return self

    def lags(self) -> list[float]:
        return json.loads(self.lag_file.read_text()) if self.lag_file.exists() else []


# -- the verdict -----------------------------------------------------------------------------
@dataclass
class Verdict:
    lags: list[float]
    disconnects: int
    connects: int
    offline_seen: int
    produced: int
    missing: int
    out_of_order: int
    thumbnails: int
    thumbnails_missing: int
    fsyncs: int | None
    stopped_cleanly: bool

    def pct(self, q: float) -> float:
        if not self.lags:
            return float("nan")
        ordered = sorted(self.lags)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def connection_up(self) -> bool:
        return self.disconnects == 0 and self.connects == 1 and self.offline_seen == 0

    @property
    def nothing_lost(self) -> bool:
        return self.missing == 0 and self.thumbnails_missing == 0 and self.out_of_order == 0

    def lines(self) -> list[str]:
        ms = 1000.0
        return [
            f"loop lag: p50 {self.pct(0.5) * ms:.1f} ms, p99 {self.pct(0.99) * ms:.1f} ms, "
            f"max {max(self.lags, default=0) * ms:.1f} ms over {len(self.lags)} probes "
            f"(mean {statistics.fmean(self.lags) * ms if self.lags else 0:.1f} ms)",
            f"mqtt: {self.connects} connect(s), {self.disconnects} disconnect(s) logged, "
            f"{self.offline_seen} 'offline' (Last Will) seen before the stop: "
            f"{'up all along' if self.connection_up else 'DROPPED'}",
            f"events: {self.produced} raised, {self.missing} missing, {self.out_of_order} cameras out of order; "
            f"thumbnails: {self.thumbnails} announced, {self.thumbnails_missing} missing: "
            f"{'nothing lost' if self.nothing_lost else 'LOST SOME'}",
            f"fsync calls delayed: {self.fsyncs if self.fsyncs is not None else 'unknown (killed)'}",
            f"stop: {'clean' if self.stopped_cleanly else 'did not stop within 60 s of SIGTERM: killed'}",
        ]


def verdict(
    daemon: ProbedDaemon, capture: MqttCapture, count_file: Path | None, stopped: bool, stop_at: float
) -> Verdict:
    """What the run showed: lag, connection, delivery (call after the daemon stopped)."""
    logs = daemon.logs()
    made = produced(logs)
    got = received(m.payload for m in capture.on_topic(f"{P}/events"))
    result = tally(made, got)
    announced = {e["id"] for e in got if e.get("thumbnail")}
    thumbs_missing = [i for i in announced if not capture.on_topic(f"{P}/events/{i}/thumbnail")]
    fsyncs = None
    if count_file is not None and count_file.exists():
        fsyncs = sum(int(n) for n in count_file.read_text().split())
    return Verdict(
        lags=daemon.lags(),
        disconnects=sum(1 for line in logs if line.get("event") == "mqtt_disconnected"),
        connects=sum(1 for line in logs if line.get("event") == "mqtt_connected"),
        offline_seen=sum(1 for m in capture.on_topic(f"{P}/status") if m.text == "offline" and m.at < stop_at),
        produced=len(made),
        missing=len(result.missing),
        out_of_order=len(result.out_of_order),
        thumbnails=len(announced),
        thumbnails_missing=len(thumbs_missing),
        fsyncs=fsyncs,
        stopped_cleanly=stopped,
    )


def wait_delivered(daemon: DaemonProcess, capture: MqttCapture, timeout: float) -> None:
    """Until every event the daemon logged has reached the broker, or `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        made = {(i, t) for _c, i, t in produced(daemon.logs())}
        got = {(e["id"], e["type"]) for e in received(m.payload for m in capture.on_topic(f"{P}/events"))}
        if made <= got:
            return
        time.sleep(0.5)


def daemon_config(work: Path, broker: Mosquitto, urls: dict[str, str], keepalive: int = 30) -> Path:
    return write_config(
        work / "edge.yaml",
        box_id=BOX,
        data_dir=work / "data",
        mqtt_port=broker.port,
        cameras={name: {"url": url} for name, url in urls.items()},
        extra={**FAST_EVENTS, "mqtt": {"keepalive": keepalive}, "recording": {"segment_seconds": 10}},
    )


def run(args: argparse.Namespace) -> Verdict:
    work = Path(tempfile.mkdtemp(prefix="nvr-slowdisk-"))
    shim = build_shim(work)
    count_file = work / "fsyncs.txt"
    walkers = ensure_clips()["walkers"]
    broker = Mosquitto(workdir=work / "broker")
    broker.start()
    sim = CameraSimulator({f"cam-{i}": walkers for i in range(args.cameras)}).start(timeout=120)
    capture = MqttCapture(broker.host, broker.port, (f"{P}/#",)).start()
    env = slow_env(shim, args.fsync_ms, count_file)
    daemon = ProbedDaemon(daemon_config(work, broker, sim.urls), work / "lag.json", env=env)
    try:
        daemon.start()
        capture.wait_for(lambda m: m.topic == f"{P}/status" and m.text == "online", timeout=60)
        time.sleep(args.seconds)
        stop_at = time.time()
        try:
            stopped = daemon.stop(60) == 0
        except subprocess.TimeoutExpired:
            stopped = False
        wait_delivered(daemon, capture, 20)
        return verdict(daemon, capture, count_file, stopped, stop_at)
    finally:
        if daemon.alive:
            daemon.kill()
        capture.stop()
        sim.stop()
        broker.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        return run_daemon(Path(sys.argv[2]), Path(sys.argv[3]))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cameras", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the cameras run")
    parser.add_argument("--fsync-ms", type=float, default=50.0, help="delay of every fsync (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, data)")
    args = parser.parse_args()
    result = run(args)
    print(f"{args.cameras} cameras, {args.seconds:.0f} s, every fsync +{args.fsync_ms:.0f} ms")
    for line in result.lines():
        print("  " + line)
    target = result.pct(0.99) < 0.020 and result.connection_up and result.nothing_lost
    print(f"  target (lag p99 < 20 ms, connection up, nothing lost): {'met' if target else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
