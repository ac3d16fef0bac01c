"""A log that outside input cannot flood: the first lines of each kind, then one summary.

Anyone on the broker or the LAN can send thousands of junk commands or HTTP requests a
second (10,000 commands made 10,000 lines in 0.2 s). Each kind of line (its event name)
gets `burst` lines per `interval_s`; past that the lines are counted, and one summary
line (`log_rate_limited`, with the count) closes the interval. The summary is scheduled
on the running asyncio loop; without one it is written by the next call after the
interval. Meant for one thread (the event loop), like the callers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

COMMAND_BURST = 50  # bad MQTT commands logged one by one per interval, then counted
REQUEST_BURST = 20  # malformed HTTP requests likewise
INTERVAL_S = 30.0


@dataclass
class _Window:
    started: float
    lines: int = 0
    suppressed: int = 0
    summary: asyncio.TimerHandle | None = None


class RateLimitedLog:
    """Wraps a structlog logger: `warning`, `error` and `exception` pass at most `burst`
    lines per event name per `interval_s`, then one summary with the count."""

    def __init__(
        self,
        log: Any,
        burst: int = COMMAND_BURST,
        interval_s: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = log
        self._burst = burst
        self._interval = interval_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self.suppressed_total = 0

    def warning(self, event: str, **fields: Any) -> None:
        self._emit("warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit("error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        self._emit("exception", event, fields)

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        now = self._clock()
        window = self._windows.get(event)
        if window is not None and now - window.started >= self._interval:
            self._summarise(event)
            window = None
        if window is None:
            window = self._windows[event] = _Window(started=now)
        if window.lines < self._burst:
            window.lines += 1
            getattr(self._log, level)(event, **fields)
            return
        window.suppressed += 1
        self.suppressed_total += 1
        if window.suppressed == 1:
            self._schedule(event, window.started + self._interval - now)

    def _schedule(self, event: str, delay: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: the next call after the interval writes the summary
        self._windows[event].summary = loop.call_later(max(0.0, delay), self._summarise, event)

    def _summarise(self, event: str) -> None:
        """Close `event`'s interval: one line with what was left out, if anything was."""
        window = self._windows.pop(event, None)
        if window is None:
            return
        if window.summary is not None:
            window.summary.cancel()
        if window.suppressed:
            self._log.warning(
                "log_rate_limited",
                suppressed_event=event,
                suppressed=window.suppressed,
                logged=window.lines,
                interval_s=self._interval,
            )
