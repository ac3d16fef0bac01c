"""The daemon's services built in-process (tests/services.py; also tests/faults/test_bad_input.py)
against a real mosquitto: what a whole daemon process was started for, without its start-up."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from structlog.testing import capture_logs

from edge.app import Daemon
from edge.config import Config, ConfigError
from harness.broker import Mosquitto
from harness.mqtt_capture import MqttCapture
from tests.services import NOWHERE, Box, P, box_config, build_box, serving, until


def test_health_says_starting_then_failed_on_the_injected_clock(tmp_path: Path, broker: Mosquitto) -> None:
    """The status service's grace for a broker not reached yet runs on its clock, not the wall's."""
    now = [1000.0]
    config = box_config(tmp_path, broker.port, {"still": NOWHERE})
    box = build_box(config, monotonic=lambda: now[0])
    try:
        box.cameras.start("still")
        assert box.reporter.health(None)["checks"]["mqtt"] == "starting"
        now[0] += 3600
        assert box.reporter.health(None)["checks"]["mqtt"] != "starting"
        box.reporter.stopping = True
        assert box.reporter.health("x")["status"] == "offline"
    finally:
        asyncio.run(box.cameras.stop_all(time.monotonic() + 5))
        box.outbox.close()


def test_reload_starts_and_stops_only_what_changed_and_an_invalid_file_changes_nothing(
    tmp_path: Path, broker: Mosquitto
) -> None:
    """The reload a SIGHUP runs (edge/reloader.py), on a daemon built in-process
    (tests/test_reload.py sends the signal to a daemon process)."""
    sources: list[Config | ConfigError] = []

    def source() -> Config:
        loaded = sources.pop(0)
        if isinstance(loaded, ConfigError):
            raise loaded
        return loaded

    with capture_logs() as logs, MqttCapture(broker.host, broker.port, (f"{P}/#",)) as capture:
        daemon = Daemon(box_config(tmp_path, broker.port, {"keep": NOWHERE, "old": NOWHERE}), reload=source)

        async def body() -> None:
            for cam in daemon.config.cameras:
                daemon.cameras.start(cam)
            keep = daemon.cameras.workers["keep"]
            sources.append(box_config(tmp_path, broker.port, {"keep": NOWHERE, "new": NOWHERE}))
            await daemon.reloader.reload()
            assert set(daemon.cameras.workers) == {"keep", "new"} and daemon.cameras.workers["keep"] is keep
            assert set(daemon.cameras.statuses) == {"keep", "new"}
            sources.append(ConfigError(["cameras: must be a mapping (line 1)", "bogus: unknown key (line 2)"]))
            await daemon.reloader.reload()
            assert set(daemon.cameras.workers) == {"keep", "new"}
            await until(lambda: [m.text for m in capture.on_topic(f"{P}/cameras/old/motion")][-1:] == ["OFF"])

        asyncio.run(serving(_as_box(daemon), body))

    reloaded = [line for line in logs if line["event"] == "reloaded"]
    assert [(line["stopped"], line["started"]) for line in reloaded] == [(["old"], ["new"])]
    assert [line["problem"] for line in logs if line["event"] == "reload_rejected"] == [
        "cameras: must be a mapping (line 1)",
        "bogus: unknown key (line 2)",
    ]


def _as_box(daemon: Daemon) -> Box:
    return Box(daemon.outbox, daemon.link, daemon.publisher, daemon.cameras, daemon.reporter, daemon.commands)
