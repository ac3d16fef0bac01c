"""The rate-limited log (edge/ratelog.py): the first lines of a kind, then one summary with the count."""

from __future__ import annotations

import asyncio

import structlog
from structlog.testing import capture_logs

from edge.ratelog import RateLimitedLog


class Clock:
    """A settable monotonic clock, so an interval passes without waiting for it."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_lines_then_one_summary_per_interval_without_a_loop() -> None:
    clock = Clock()
    with capture_logs() as lines:
        log = RateLimitedLog(structlog.get_logger(), burst=3, interval_s=10.0, clock=clock)
        for i in range(1000):
            log.warning("command_ignored", n=i)
        log.warning("other_kind")  # each event name has its own budget
        clock.now += 10.0
        log.warning("command_ignored", n=1000)  # the next interval: the summary first, then the line
    events = [(line["event"], line.get("n"), line.get("suppressed")) for line in lines]
    assert events == [
        ("command_ignored", 0, None),
        ("command_ignored", 1, None),
        ("command_ignored", 2, None),
        ("other_kind", None, None),
        ("log_rate_limited", None, 997),
        ("command_ignored", 1000, None),
    ]
    assert lines[4]["suppressed_event"] == "command_ignored" and lines[4]["log_level"] == "warning"
    assert log.suppressed_total == 997


def test_on_a_loop_the_summary_comes_by_itself() -> None:
    async def flood() -> list[dict]:
        with capture_logs() as lines:
            log = RateLimitedLog(structlog.get_logger(), burst=2, interval_s=0.2)
            for _ in range(50):
                log.error("web_bad_request")
            await asyncio.sleep(0.4)  # nothing else arrives: the summary is written all the same
        return lines

    lines = asyncio.run(flood())
    assert [line["event"] for line in lines] == ["web_bad_request"] * 2 + ["log_rate_limited"]
    assert lines[-1]["suppressed"] == 48 and lines[0]["log_level"] == "error"
