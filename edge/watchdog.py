"""systemd's watchdog: WATCHDOG=1 only while every part of the daemon shows signs of life.

systemd restarts a service whose WATCHDOG=1 pings stop for WatchdogSec. Pinging from
a timer alone would only prove that the timer runs; here each ping first asks a set of
liveness probes, and a single failing probe withholds it. Because the pinging task runs
on the asyncio loop, a hung loop stops the pings by itself; the probes add what that
cannot see: a loop that still turns but blocks for long stretches (`LoopMonitor`) and
a camera worker thread that is wedged (`heartbeat_probe`).

A probe is a plain callable returning None (alive) or a short reason, so the daemon
wires new ones without this module knowing about cameras. Withholding is logged once
with the probe and reason, and resuming once, never a line per tick.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping

from edge.logs import get_logger
from edge.notify import Notifier

Probe = Callable[[], str | None]
Clock = Callable[[], float]

ENV_USEC = "WATCHDOG_USEC"
ENV_PID = "WATCHDOG_PID"
MAX_NAMES_IN_REASON = 3


def ping_interval(environ: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """Seconds between pings (half of WATCHDOG_USEC, as sd_watchdog_enabled advises), or None.

    None when systemd asked for no watchdog: WATCHDOG_USEC unset, unparsable or 0, or
    WATCHDOG_PID naming another process (the variables leaked to a child)."""
    env = os.environ if environ is None else environ
    try:
        usec = int(env.get(ENV_USEC, ""))
    except ValueError:
        return None
    if usec <= 0:
        return None
    owner = env.get(ENV_PID)
    if owner is not None:
        try:
            if int(owner) != (os.getpid() if pid is None else pid):
                return None
        except ValueError:
            return None
    return usec / 1e6 / 2


class Watchdog:
    """Pings systemd every `interval` seconds while all probes pass; inert when interval is None."""

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        probes: Mapping[str, Probe] | None = None,
    ) -> None:
        self.notifier = notifier
        self.interval = interval if notifier.enabled else None
        self.probes: dict[str, Probe] = dict(probes or {})
        self.withholding: tuple[str, str] | None = None  # (probe, reason) while pings are withheld
        self._withheld_since: float | None = None
        self._log = get_logger(component="watchdog")

    @classmethod
    def from_env(
        cls, notifier: Notifier, probes: Mapping[str, Probe] | None = None, environ: Mapping[str, str] | None = None
    ) -> Watchdog:
        return cls(notifier, ping_interval(environ), probes)

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def add_probe(self, name: str, probe: Probe) -> None:
        self.probes[name] = probe

    def failing(self) -> tuple[str, str] | None:
        """The first probe that fails, with its reason; None when all pass.

        A probe that raises counts as failing: a watchdog that cannot tell whether a
        part is alive must not vouch for it."""
        for name, probe in self.probes.items():
            try:
                reason = probe()
            except Exception as exc:  # noqa: BLE001 - reported as the probe's failure
                reason = f"probe raised {type(exc).__name__}: {exc}"
            if reason is not None:
                return name, reason
        return None

    def beat(self) -> bool:
        """One tick: ping when every probe passes, else withhold. True when WATCHDOG=1 was sent."""
        failure = self.failing()
        now = time.monotonic()
        if failure is not None:
            if self.withholding is None:
                self._withheld_since = now
                self._log.warning("watchdog_withheld", probe=failure[0], reason=failure[1])
            self.withholding = failure
            return False
        if self.withholding is not None:
            withheld = now - (self._withheld_since or now)
            self._log.info("watchdog_resumed", probe=self.withholding[0], withheld_s=round(withheld, 1))
            self.withholding = None
        return self.notifier.watchdog()

    async def run(self) -> None:
        """Beat every interval until cancelled; returns at once when disabled."""
        if self.interval is None:
            return
        self._log.info("watchdog_started", interval_s=self.interval, probes=sorted(self.probes))
        while True:
            self.beat()
            await asyncio.sleep(self.interval)


class LoopMonitor:
    """Measures how late the event loop runs a timer; its probe fails after a long block.

    A task wakes every `period` seconds and records by how much it overslept. The probe
    reports the worst lateness since the previous call, so one blocked stretch longer
    than `max_lag` withholds one ping. A loop hung for good needs no probe: the watchdog
    task runs on it and stops too."""

    def __init__(self, max_lag: float, period: float = 0.5, clock: Clock = time.monotonic) -> None:
        self.max_lag = max_lag
        self.period = period
        self._clock = clock
        self._worst = 0.0

    def record(self, lateness: float) -> None:
        self._worst = max(self._worst, lateness)

    async def run(self) -> None:
        while True:
            due = self._clock() + self.period
            await asyncio.sleep(self.period)
            self.record(self._clock() - due)

    def probe(self) -> str | None:
        worst, self._worst = self._worst, 0.0
        if worst > self.max_lag:
            return f"event loop blocked for {worst:.1f} s"
        return None


def heartbeat_probe(
    heartbeats: Mapping[str, Callable[[], float | None]], max_age: float, clock: Clock = time.monotonic
) -> Probe:
    """A probe over named heartbeats (callables returning the last `time.monotonic()` of a
    sign of life, or None before the first one): fails when any is older than `max_age`.

    The mapping is read at every call, so it may be a live dict. A heartbeat that has not
    beaten yet is aged from the probe's creation, giving a starting worker `max_age` to
    show up. The reason names the stalest ones: `gate-1, gate-2: no heartbeat for 12.3 s`."""
    created = clock()

    def probe() -> str | None:
        now = clock()
        stale: list[tuple[float, str]] = []
        for name, beat in heartbeats.items():
            last = beat()
            age = now - (created if last is None else last)
            if age > max_age:
                stale.append((age, name))
        if not stale:
            return None
        stale.sort(key=lambda item: (-item[0], item[1]))  # stalest first, then by name
        names = ", ".join(name for _, name in stale[:MAX_NAMES_IN_REASON])
        more = f" (+{len(stale) - MAX_NAMES_IN_REASON} more)" if len(stale) > MAX_NAMES_IN_REASON else ""
        return f"{names}{more}: no heartbeat for {stale[0][0]:.1f} s"

    return probe
