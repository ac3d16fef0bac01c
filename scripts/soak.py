"""Soak: N simulated cameras, a real Mosquitto and the real daemon for M minutes, with faults.

At random intervals (seeded) the broker is stopped for 10-60 s, a camera stalls (its RTSP
session stays open, no frames) or the whole camera server goes away for a while. A
"district" subscriber with a persistent session (as a real district consumer would have,
and the broker keeps sessions across its restarts) records every event it receives.

At the end it compares what the daemon says it raised (its `event` log lines, written
when an event is queued in the durable outbox) with what the district received, matched
on (id, type); it also reads the outbox file after the daemon stopped, so an event still
waiting there (durable, not lost) is told apart from a missing one. RSS and open file
descriptors come from /proc/<pid> of the daemon, sampled every minute.

    .venv/bin/python scripts/soak.py --cameras 4 --minutes 30 --seed 1 --outage-every 120

Exit code 0 when no start or end event is missing and the daemon stopped cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from harness.broker import Mosquitto  # noqa: E402
from harness.camsim import CameraSimulator  # noqa: E402
from harness.clips import ensure_clips  # noqa: E402
from harness.daemon import DaemonProcess, write_config  # noqa: E402

BOX = "soak"
P = f"nvr/{BOX}"
EventKey = tuple[str, str]  # (id, type)


class PersistentMosquitto(Mosquitto):
    """Mosquitto that keeps client sessions and queued QoS 1 messages across a restart,
    like a district broker: the subscriber misses nothing published while it reconnects."""

    def _write_conf(self) -> Path:
        conf = super()._write_conf()
        lines = [line for line in conf.read_text().splitlines() if not line.startswith("persistence")]
        lines += [
            "persistence true",
            f"persistence_location {self._workdir}/",
            "max_queued_messages 1000000",
        ]
        conf.write_text("\n".join(lines) + "\n")
        return conf


class District:
    """A paho subscriber with a persistent session: every event received, in order."""

    def __init__(self, host: str, port: int) -> None:
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        self.malformed = 0
        self.stats: list[dict[str, Any]] = []
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id="soak-district", clean_session=False, protocol=mqtt.MQTTv311
        )
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=1.0)
        self._host, self._port = host, port
        self._connected = threading.Event()

    def _on_connect(self, client: mqtt.Client, _u: object, _f: object, _rc: object, _p: object) -> None:
        client.subscribe([(f"{P}/events", 1), (f"{P}/stats", 0)])
        self._connected.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            data = json.loads(msg.payload)
        except ValueError:
            with self._lock:
                self.malformed += 1
            return
        with self._lock:
            (self.events if msg.topic == f"{P}/events" else self.stats).append(data)

    def start(self, timeout: float = 10.0) -> None:
        self._client.connect_async(self._host, self._port, keepalive=10)
        self._client.loop_start()
        if not self._connected.wait(timeout):
            raise RuntimeError("the district subscriber could not connect")
        time.sleep(0.2)  # SUBACK

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def latest_stats(self) -> dict[str, Any] | None:
        with self._lock:
            return self.stats[-1] if self.stats else None

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.events)


@dataclass
class Sample:
    t_s: float
    rss_bytes: int
    fds: int
    threads: int


def sample_process(pid: int, started: float) -> Sample | None:
    """RSS, open fds and threads of a live process, from /proc."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    rss = int(fields["VmRSS"].split()[0]) * 1024
    return Sample(round(time.monotonic() - started, 1), rss, fds, int(fields["Threads"]))


class Sampler(threading.Thread):
    """One sample a minute (and on demand) of the daemon process."""

    def __init__(self, pid: int, started: float, every_s: float = 60.0) -> None:
        super().__init__(name="sampler", daemon=True)
        self.pid, self.started, self.every_s = pid, started, every_s
        self.samples: list[Sample] = []
        self._stop = threading.Event()

    def run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.take()

    def take(self) -> Sample | None:
        sample = sample_process(self.pid, self.started)
        if sample is not None:
            self.samples.append(sample)
        return sample

    def stop(self) -> None:
        self._stop.set()


@dataclass
class Fault:
    kind: str  # broker | stall | cameras
    at_s: float
    seconds: float
    camera: str | None = None


@dataclass
class Rig:
    broker: PersistentMosquitto
    sim: CameraSimulator
    daemon: DaemonProcess
    district: District


def run_fault(rig: Rig, fault: Fault) -> None:
    """Inflict one fault for its duration, then undo it."""
    if fault.kind == "broker":
        rig.broker.stop()
        time.sleep(fault.seconds)
        rig.broker.start()
    elif fault.kind == "stall":
        assert fault.camera is not None
        rig.sim.stall(fault.camera)
        time.sleep(fault.seconds)
        rig.sim.resume(fault.camera)
    else:
        rig.sim.stop()
        time.sleep(fault.seconds)
        rig.sim.start()


def next_fault(rng: random.Random, cameras: list[str], at_s: float, room_s: float) -> Fault:
    """Broker outages (10-60 s) half the time, a stalled camera or the camera server down otherwise."""
    roll = rng.random()
    if roll < 0.5:
        return Fault("broker", at_s, min(rng.uniform(10, 60), room_s))
    if roll < 0.85:
        return Fault("stall", at_s, min(rng.uniform(5, 40), room_s), rng.choice(cameras))
    return Fault("cameras", at_s, min(rng.uniform(5, 30), room_s))


def run_faults(rig: Rig, args: argparse.Namespace, started: float, log: list[Fault]) -> None:
    """Until the end of the run: wait a random interval, inflict a fault, repeat."""
    rng = random.Random(args.seed)
    cameras = [f"cam-{i + 1}" for i in range(args.cameras)]
    end = started + args.minutes * 60
    while True:
        wait = rng.uniform(0.5, 1.5) * args.outage_every
        room = end - time.monotonic() - wait - 10  # every fault is over 10 s before the end
        if room < 10:  # the shortest fault (a broker outage) would not fit
            break
        time.sleep(wait)
        fault = next_fault(rng, cameras, round(time.monotonic() - started, 1), room)
        print(f"[{fault.at_s:7.1f} s] fault: {fault.kind} {fault.camera or ''} for {fault.seconds:.0f} s", flush=True)
        log.append(fault)
        run_fault(rig, fault)
        if not rig.daemon.alive:
            return
    time.sleep(max(0.0, end - time.monotonic()))


def produced_events(daemon: DaemonProcess) -> list[EventKey]:
    """What the daemon says it queued for the broker (one `event` line per message)."""
    return [(line["id"], line["type"]) for line in daemon.logs() if line.get("event") == "event" and "id" in line]


def queued_events(outbox: Path) -> set[EventKey]:
    """Events still in the durable outbox after the daemon stopped (delivered at its next start)."""
    if not outbox.exists():
        return set()
    try:
        with sqlite3.connect(f"file:{outbox}?mode=ro", uri=True) as db:
            rows = db.execute("SELECT payload FROM outbox WHERE topic = ?", (f"{P}/events",)).fetchall()
    except sqlite3.Error:
        return set()
    found = set()
    for (payload,) in rows:
        event = json.loads(bytes(payload))
        found.add((event["id"], event["type"]))
    return found


def log_counts(daemon: DaemonProcess) -> dict[str, int]:
    lines = daemon.logs()
    return {
        "log_lines": len(lines),
        "log_warnings": sum(1 for line in lines if line.get("level") in ("warning", "error", "critical")),
        "log_not_json": sum(1 for line in lines if line.get("event") == "non_json_output"),
    }


@dataclass
class Report:
    cameras: int
    minutes: float
    seed: int
    outage_every_s: float
    faults: list[dict[str, Any]]
    produced: int
    produced_by_type: dict[str, int]
    received: int
    received_distinct: int
    missing: int
    missing_by_type: dict[str, int]
    missing_keys: list[EventKey]
    queued_at_exit: int
    duplicates: int
    malformed: int
    rss_start: int
    rss_end: int
    fds_start: int
    fds_end: int
    threads_start: int
    threads_end: int
    per_minute: list[dict[str, Any]]
    daemon_exit_code: int | None
    log_lines: int
    log_warnings: int  # warning, error and critical lines
    log_not_json: int  # lines on stdout/stderr that are not structlog JSON
    log_path: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        lost = self.missing_by_type.get("start", 0) + self.missing_by_type.get("end", 0)
        return lost == 0 and self.daemon_exit_code == 0 and self.produced > 0


def compare(produced: list[EventKey], received: list[dict[str, Any]], queued: set[EventKey]) -> dict[str, Any]:
    """Missing = produced (id, type) never received and not still queued; duplicates = exact re-deliveries."""
    got = {(e["id"], e["type"]) for e in received}
    missing = sorted(set(produced) - got - queued)
    payloads = Counter(json.dumps(e, sort_keys=True) for e in received)
    return {
        "produced": len(produced),
        "produced_by_type": dict(Counter(t for _, t in produced)),
        "received": len(received),
        "received_distinct": len(payloads),
        "missing": len(missing),
        "missing_by_type": dict(Counter(t for _, t in missing)),
        "missing_keys": missing[:50],
        "queued_at_exit": len(set(produced) & (queued - got)),
        "duplicates": sum(n - 1 for n in payloads.values()),
    }


def wait_drained(district: District, timeout: float) -> bool:
    """Until a fresh stats message says the outbox is empty."""
    deadline = time.monotonic() + timeout
    asked = time.time()
    while time.monotonic() < deadline:
        stats = district.latest_stats()
        if stats is not None and stats["time"] > asked and stats["outbox"]["pending"] == 0:
            return True
        time.sleep(0.5)
    return False


def soak(args: argparse.Namespace, work: Path) -> Report:
    clip = ensure_clips()["walkers"]
    mounts = {f"cam-{i + 1}": clip for i in range(args.cameras)}
    broker = PersistentMosquitto(workdir=work / "broker")
    (work / "broker").mkdir(parents=True, exist_ok=True)
    broker.start()
    sim = CameraSimulator(mounts).start()
    district = District(broker.host, broker.port)
    district.start()
    config = write_config(
        work / "edge.yaml",
        box_id=BOX,
        data_dir=work / "data",
        mqtt_port=broker.port,
        cameras={name: {"url": url} for name, url in sim.urls.items()},
        stats_interval=5.0,
        extra={
            "events": {"end_after": 3.0, "update_interval": 3.0},
            "recording": {"max_bytes": f"{max(64, 16 * args.cameras)}MB"},
        },
    )
    daemon = DaemonProcess(config).start()
    assert daemon.proc is not None
    rig = Rig(broker, sim, daemon, district)
    started = time.monotonic()
    warmup_s = min(60.0, args.minutes * 60 * 0.2)
    sampler = Sampler(daemon.proc.pid, started)
    faults: list[Fault] = []
    problems: list[str] = []
    try:
        print(f"soak: {args.cameras} cameras, {args.minutes} min, seed {args.seed}, work dir {work}", flush=True)
        time.sleep(warmup_s)
        first = sampler.take()
        sampler.start()
        run_faults(rig, args, started, log=faults)
        last = sampler.take()
        sampler.stop()
        if not broker.running:
            broker.start()
        if not wait_drained(district, 60):
            problems.append("the outbox did not drain within 60 s of the end")
    finally:
        code = daemon.stop() if daemon.alive else (daemon.proc.returncode if daemon.proc else None)
        time.sleep(3)  # the last messages reach the subscriber
        district.stop()
        sim.stop()
        broker.stop()
    if first is None or last is None:
        problems.append("the daemon was not running when sampled")
        first = last = first or last or Sample(0, 0, 0, 0)
    result = compare(produced_events(daemon), district.received(), queued_events(work / "data" / "outbox.sqlite"))
    return Report(
        cameras=args.cameras,
        minutes=args.minutes,
        seed=args.seed,
        outage_every_s=args.outage_every,
        faults=[asdict(f) for f in faults],
        malformed=district.malformed,
        rss_start=first.rss_bytes,
        rss_end=last.rss_bytes,
        fds_start=first.fds,
        fds_end=last.fds,
        threads_start=first.threads,
        threads_end=last.threads,
        per_minute=[asdict(s) for s in sampler.samples],
        daemon_exit_code=code,
        log_path=str(daemon.log_path),
        **log_counts(daemon),
        problems=problems,
        **result,
    )


def print_report(r: Report) -> None:
    mb = 1 / 2**20
    kinds = Counter(f["kind"] for f in r.faults)
    outage = sum(f["seconds"] for f in r.faults if f["kind"] == "broker")
    print()
    print(f"soak: {r.cameras} cameras, {r.minutes} min, seed {r.seed}, a fault every ~{r.outage_every_s:.0f} s")
    print(
        f"faults: {kinds.get('broker', 0)} broker outages ({outage:.0f} s in all), "
        f"{kinds.get('stall', 0)} camera stalls, {kinds.get('cameras', 0)} camera-server stops"
    )
    print(f"events produced: {r.produced} {r.produced_by_type}")
    print(f"events received: {r.received} ({r.received_distinct} distinct payloads, {r.malformed} malformed)")
    print(f"missing: {r.missing} {r.missing_by_type}; still queued in the outbox at exit: {r.queued_at_exit}")
    if r.missing_keys:
        print(f"  first missing: {r.missing_keys[:10]}")
    print(f"duplicates: {r.duplicates}")
    print(f"rss: start {r.rss_start * mb:.1f} MB, end {r.rss_end * mb:.1f} MB")
    print(f"open fds: start {r.fds_start}, end {r.fds_end}; threads: start {r.threads_start}, end {r.threads_end}")
    for s in r.per_minute:
        print(f"  t={s['t_s']:7.1f} s  rss={s['rss_bytes'] * mb:7.1f} MB  fds={s['fds']:4d}  threads={s['threads']}")
    print(f"daemon exit code: {r.daemon_exit_code}; log: {r.log_path}")
    print(f"log: {r.log_lines} lines, {r.log_warnings} warnings/errors, {r.log_not_json} not JSON")
    for problem in r.problems:
        print(f"problem: {problem}")
    print("OK" if r.ok else "FAILED")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--outage-every", type=float, default=120.0, help="mean seconds between faults")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (recordings, logs)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nvr-soak-"))
    report = soak(args, work)
    print_report(report)
    if args.json:
        args.json.write_text(json.dumps({**asdict(report), "ok": report.ok}, indent=2))
    if not args.keep:
        shutil.rmtree(work / "data", ignore_errors=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
