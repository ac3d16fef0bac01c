"""The real daemon under systemd's notify protocol: READY=1, WATCHDOG=1 pings, STOPPING=1.

The test plays systemd: it binds a Unix datagram socket, passes it in NOTIFY_SOCKET with
WATCHDOG_USEC, and runs `python -m edge run` against a real broker and RTSP camera. A
process frozen with SIGSTOP is the real hung daemon: no ping may arrive while it is
frozen, and pings resume once it runs again. (A wedged camera worker withholding the
pings, end to end: tests/faults/test_wedged_worker.py.)
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.broker import Mosquitto
from harness.camsim import CameraSimulator
from harness.daemon import DaemonProcess, run_cli, write_config

WATCHDOG_USEC = 2_000_000  # systemd's WatchdogSec=2: the daemon pings every second
PING_EVERY = WATCHDOG_USEC / 1e6 / 2


class FakeSystemd:
    """Collects (arrival monotonic time, message) from the notify socket on a thread."""

    def __init__(self) -> None:
        self.name = f"nvr-edge-notify-{uuid.uuid4().hex[:12]}"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.1)
        self.received: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._collect, daemon=True)
        self._thread.start()

    @property
    def env(self) -> dict[str, str]:
        return {"NOTIFY_SOCKET": "@" + self.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}

    def _collect(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            with self._lock:
                self.received.append((time.monotonic(), data.decode()))

    def messages(self, since: float = 0.0, until: float = float("inf")) -> list[tuple[float, str]]:
        with self._lock:
            return [(t, m) for t, m in self.received if since <= t <= until]

    def wait_for(self, key: str, timeout: float, since: float = 0.0) -> float:
        """Arrival time of the first message holding `key` (e.g. READY=1) after `since`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, message in self.messages(since):
                if key in message.split("\n"):
                    return at
            time.sleep(0.05)
        raise TimeoutError(f"no {key} within {timeout} s; got {self.messages(since)}")

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def systemd() -> Iterator[FakeSystemd]:
    fake = FakeSystemd()
    yield fake
    fake.close()


def _config(tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator) -> Path:
    return write_config(
        tmp_path / "edge.yaml",
        box_id="box-sd",
        data_dir=tmp_path / "data",
        mqtt_port=broker.port,
        cameras={"still": {"url": cameras.urls["still"]}},
    )


def _pings(systemd: FakeSystemd, since: float, until: float = float("inf")) -> list[float]:
    return [t for t, m in systemd.messages(since, until) if m == "WATCHDOG=1"]


def test_ready_watchdog_stopping_and_a_frozen_daemon_stops_pinging(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator, systemd: FakeSystemd
) -> None:
    daemon = DaemonProcess(_config(tmp_path, broker, cameras), env=systemd.env).start()
    try:
        ready_at = systemd.wait_for("READY=1", timeout=30)
        # READY=1 comes once the cameras and the MQTT task have started, and before any ping.
        assert any(line.get("event") == "daemon_started" for line in daemon.logs())
        first = systemd.messages()[0][1].split("\n")
        assert first[0] == "READY=1" and first[1].startswith("STATUS=1 camera")

        time.sleep(4 * PING_EVERY + 0.3)
        pings = _pings(systemd, ready_at)
        assert len(pings) >= 4, systemd.messages()
        gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
        assert max(gaps) < WATCHDOG_USEC / 1e6, gaps  # what systemd requires; every second when idle
        assert sum(gaps) / len(gaps) < PING_EVERY * 1.3, gaps

        # Frozen for longer than WATCHDOG_USEC: systemd would see no ping and restart it.
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        time.sleep(WATCHDOG_USEC / 1e6 + 1.0)
        thawed_at = time.monotonic()
        os.kill(daemon.proc.pid, signal.SIGCONT)
        # A ping sent just before the stop may be read a little after it (a loaded machine).
        assert _pings(systemd, frozen_at + 0.5, thawed_at) == []
        resumed_at = systemd.wait_for("WATCHDOG=1", timeout=5, since=thawed_at)
        assert resumed_at - thawed_at < 3 * PING_EVERY
        time.sleep(2 * PING_EVERY + 0.3)
        assert len(_pings(systemd, thawed_at)) >= 2
        assert "STOPPING=1" not in {m for _, m in systemd.messages()}
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]
    stopping = [m for _, m in systemd.messages() if m.split("\n")[0] == "STOPPING=1"]
    assert stopping == ["STOPPING=1\nSTATUS=stopping"]
    assert [line["event"] for line in daemon.logs() if line.get("event", "").startswith("watchdog_")] == [
        "watchdog_started"
    ], "a 3 s freeze is under the loop-lag limit: nothing withheld"


def test_without_notify_socket_no_watchdog_runs(
    tmp_path: Path, broker: Mosquitto, cameras: CameraSimulator, systemd: FakeSystemd
) -> None:
    """WATCHDOG_USEC alone (no NOTIFY_SOCKET): the daemon runs as always and notifies nothing."""
    daemon = DaemonProcess(_config(tmp_path, broker, cameras), env={"WATCHDOG_USEC": str(WATCHDOG_USEC)}).start()
    try:
        daemon.wait_log("daemon_started", timeout=30)
        time.sleep(3 * PING_EVERY)
    finally:
        code = daemon.stop()
    assert code == 0, daemon.log_text()[-3000:]
    events = {line.get("event", "") for line in daemon.logs()}
    assert not {e for e in events if e.startswith(("watchdog_", "sd_notify_"))}, events
    assert "daemon_stopped" in events
    assert systemd.messages() == []


def test_bad_config_exits_2_without_ready(tmp_path: Path, systemd: FakeSystemd) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("box: {id: Bad Id}\ncameras: {}\n")
    result = run_cli("run", "--config", str(bad), env=systemd.env, timeout=30)
    assert result.returncode == 2, result.stderr
    assert "box.id" in result.stderr
    time.sleep(0.2)
    assert systemd.messages() == []
