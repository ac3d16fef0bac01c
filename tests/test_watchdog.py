"""sd_notify and the liveness watchdog, against a real Unix datagram socket (no daemon)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from edge.notify import Notifier, socket_address
from edge.watchdog import LoopMonitor, Watchdog, heartbeat_probe, ping_interval


class Listener:
    """The systemd side: a bound datagram socket that collects messages."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.setblocking(False)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out


@pytest.fixture
def abstract() -> Iterator[tuple[Listener, Notifier]]:
    name = f"nvr-edge-test-{uuid.uuid4().hex}"
    listener = Listener("\0" + name)
    notifier = Notifier.from_env({"NOTIFY_SOCKET": "@" + name})
    yield listener, notifier
    notifier.close()
    listener.sock.close()


def test_socket_address_forms() -> None:
    assert socket_address(None) is None
    assert socket_address("") is None
    assert socket_address("@name") == "\0name"
    assert socket_address("@") is None
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("vsock:2:1234") is None
    assert socket_address("relative/path") is None


def test_without_notify_socket_nothing_is_opened_or_sent() -> None:
    notifier = Notifier.from_env({})
    assert not notifier.enabled
    assert notifier.ready("x") is False and notifier.watchdog() is False and notifier.stopping() is False
    assert notifier._sock is None


def test_abstract_socket_gets_one_datagram_per_message(abstract: tuple[Listener, Notifier]) -> None:
    listener, notifier = abstract
    assert notifier.ready("2 camera(s) started")
    assert notifier.watchdog()
    assert notifier.stopping()
    assert listener.messages() == ["READY=1\nSTATUS=2 camera(s) started", "WATCHDOG=1", "STOPPING=1\nSTATUS=stopping"]


def test_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    listener = Listener(str(path))
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert notifier.ready()
    assert listener.messages() == ["READY=1"]


def test_a_missing_socket_is_logged_once_and_recovery_once(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    notifier = Notifier(str(path))
    with capture_logs() as logs:
        assert notifier.watchdog() is False
        assert notifier.watchdog() is False
        listener = Listener(str(path))
        assert notifier.watchdog() is True
    assert [entry["event"] for entry in logs] == ["sd_notify_failed", "sd_notify_recovered"]
    assert listener.messages() == ["WATCHDOG=1"]


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "me"}, None),
    ],
)
def test_ping_interval(env: dict[str, str], expected: float | None) -> None:
    assert ping_interval(env) == expected


def test_watchdog_is_off_without_a_socket_even_with_watchdog_usec() -> None:
    watchdog = Watchdog.from_env(Notifier(None), environ={"WATCHDOG_USEC": "2000000"})
    assert not watchdog.enabled
    asyncio.run(asyncio.wait_for(watchdog.run(), 1))  # returns at once instead of looping


def test_pings_only_while_every_probe_passes(abstract: tuple[Listener, Notifier]) -> None:
    listener, notifier = abstract
    state = {"camera": None}
    watchdog = Watchdog(notifier, 1.0, {"loop": lambda: None, "camera": lambda: state["camera"]})
    with capture_logs() as logs:
        assert watchdog.beat() is True
        state["camera"] = "gate-1: no heartbeat for 12.0 s"
        assert watchdog.beat() is False
        assert watchdog.beat() is False
        state["camera"] = None
        assert watchdog.beat() is True
        assert watchdog.beat() is True
    assert listener.messages() == ["WATCHDOG=1"] * 3
    # One line when withholding starts (naming the probe), one when it resumes: not one per tick.
    assert [(e["event"], e.get("probe")) for e in logs] == [
        ("watchdog_withheld", "camera"),
        ("watchdog_resumed", "camera"),
    ]
    assert logs[0]["reason"] == "gate-1: no heartbeat for 12.0 s"


def test_a_probe_that_raises_withholds(abstract: tuple[Listener, Notifier]) -> None:
    listener, notifier = abstract

    def broken() -> str | None:
        raise RuntimeError("status gone")

    watchdog = Watchdog(notifier, 1.0, {"loop": lambda: None})
    watchdog.add_probe("cameras", broken)
    with capture_logs() as logs:
        assert watchdog.beat() is False
    assert listener.messages() == []
    assert logs[0]["probe"] == "cameras" and "RuntimeError: status gone" in logs[0]["reason"]


def test_run_pings_periodically_and_stops_while_a_probe_fails(abstract: tuple[Listener, Notifier]) -> None:
    listener, notifier = abstract
    alive = {"ok": True}
    watchdog = Watchdog(notifier, 0.05, {"worker": lambda: None if alive["ok"] else "stalled"})

    async def scenario() -> tuple[int, int, int]:
        task = asyncio.create_task(watchdog.run())
        await asyncio.sleep(1.0)  # ~20 beats; 5 are asked, so a loaded machine still passes
        healthy = len(listener.messages())
        alive["ok"] = False
        await asyncio.sleep(0.06)  # the beat already under way may still have pinged
        listener.messages()
        await asyncio.sleep(0.5)
        stalled = len(listener.messages())
        alive["ok"] = True
        await asyncio.sleep(1.0)
        task.cancel()
        return healthy, stalled, len(listener.messages())

    healthy, stalled, resumed = asyncio.run(scenario())
    assert healthy >= 5
    assert stalled == 0
    assert resumed >= 5


def test_loop_monitor_sees_a_blocked_loop_once() -> None:
    monitor = LoopMonitor(max_lag=0.2, period=0.05)

    async def scenario() -> list[str | None]:
        task = asyncio.create_task(monitor.run())
        await asyncio.sleep(0.2)
        results = [monitor.probe()]
        time.sleep(0.4)  # the loop is blocked: no timer runs
        await asyncio.sleep(0.1)
        results.append(monitor.probe())
        await asyncio.sleep(0.2)
        results.append(monitor.probe())
        task.cancel()
        return results

    before, blocked, after = asyncio.run(scenario())
    assert before is None
    assert blocked is not None and blocked.startswith("event loop blocked for 0.")
    assert after is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_heartbeat_probe_names_the_stale_workers() -> None:
    clock = FakeClock()
    beats: dict[str, float | None] = {"gate-1": 1000.0, "gate-2": 1000.0, "park": None}
    probe = heartbeat_probe({name: (lambda n=name: beats[n]) for name in beats}, max_age=5.0, clock=clock)
    clock.now = 1004.0
    beats["gate-1"] = beats["gate-2"] = 1003.5
    assert probe() is None  # park has not beaten yet but is within max_age of the probe's creation
    clock.now = 1006.0
    assert probe() == "park: no heartbeat for 6.0 s"
    beats["park"] = 1006.0
    assert probe() is None
    clock.now = 1012.0
    beats["park"] = 1011.0
    assert probe() == "gate-1, gate-2: no heartbeat for 8.5 s"


def test_heartbeat_probe_reads_a_live_mapping_and_caps_the_reason() -> None:
    clock = FakeClock()
    beats: dict[str, object] = {}
    probe = heartbeat_probe(beats, max_age=1.0, clock=clock)  # type: ignore[arg-type]
    assert probe() is None
    for i in range(5):
        beats[f"cam-{i}"] = lambda i=i: 990.0 + i
    reason = probe()
    assert reason == "cam-0, cam-1, cam-2 (+2 more): no heartbeat for 10.0 s"
